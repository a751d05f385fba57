"""Ratings with bootstrap intervals and ranks: pure numpy, no database, no Django."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest

from leaderboard.rating import (
    A_WINS,
    B_WINS,
    RIDGE,
    SCALE,
    aggregate,
    bootstrap,
    fit,
    newton,
    rank_from_intervals,
    rate,
    rate_style,
)
from leaderboard.rating.bradley_terry import _PairProblem
from tests.leaderboard.rating.simulate import centred, simulate


def test_shuffling_or_swapping_sides_changes_nothing() -> None:
    rng = np.random.default_rng(5)
    a, b, outcome = simulate(rng, rng.normal(0, 1, 8), 3000, tie_share=0.2)
    order = rng.permutation(a.size)
    swap = rng.random(a.size) < 0.5
    swapped = np.where(outcome == A_WINS, B_WINS, np.where(outcome == B_WINS, A_WINS, outcome))
    a2, b2 = np.where(swap, b, a)[order], np.where(swap, a, b)[order]
    outcome2 = np.where(swap, swapped, outcome)[order]

    first = rate(a, b, outcome, 8, bootstrap=200, seed=3)
    second = rate(a2, b2, outcome2, 8, bootstrap=200, seed=3)

    for field in ("rating", "ci_lower", "ci_upper", "rank", "votes"):
        np.testing.assert_array_equal(getattr(first, field), getattr(second, field))


def test_it_ranks_a_model_below_every_model_whose_interval_lies_wholly_above() -> None:
    lower = np.array([10.0, 5.0, 0.0, -10.0, 5.0])
    upper = np.array([20.0, 12.0, 8.0, 1.0, 10.0])
    # Model 4's interval touches model 0's lower bound at 10: touching is overlapping.
    assert rank_from_intervals(lower, upper).tolist() == [1, 1, 2, 4, 1]


def test_it_puts_ratings_on_the_display_scale_with_mean_1000() -> None:
    rng = np.random.default_rng(8)
    a, b, outcome = simulate(rng, rng.normal(0, 1, 6), 3000, tie_share=0.3)

    result = rate(a, b, outcome, 6, bootstrap=100)

    assert result.rating.mean() == pytest.approx(1000.0)
    np.testing.assert_allclose(
        result.rating, 1000.0 + 400.0 * fit(aggregate(a, b, outcome, 6), 6) / np.log(10)
    )
    assert (result.ci_lower <= result.rating).all() and (result.rating <= result.ci_upper).all()
    assert result.votes.tolist() == (np.bincount(a, minlength=6) + np.bincount(b, minlength=6)).tolist()
    assert result.bootstrap == 100 and result.seed == 0


def test_an_anchor_pins_one_model_and_shifts_the_rest_with_it() -> None:
    rng = np.random.default_rng(9)
    a, b, outcome = simulate(rng, rng.normal(0, 1, 5), 2000)

    free = rate(a, b, outcome, 5, bootstrap=100)
    pinned = rate(a, b, outcome, 5, bootstrap=100, anchor=2, anchor_rating=1200.0)

    shift = 1200.0 - free.rating[2]
    assert pinned.rating[2] == pytest.approx(1200.0)
    np.testing.assert_allclose(pinned.rating, free.rating + shift)
    np.testing.assert_allclose(pinned.ci_lower, free.ci_lower + shift)
    np.testing.assert_allclose(pinned.ci_upper, free.ci_upper + shift)
    np.testing.assert_array_equal(pinned.rank, free.rank)


def test_a_model_without_votes_sits_at_the_centre() -> None:
    a, b, outcome = np.array([0, 1, 0]), np.array([1, 0, 1]), np.array([A_WINS, A_WINS, B_WINS])
    result = rate(a, b, outcome, 3, bootstrap=50)
    assert result.votes[2] == 0
    np.testing.assert_allclose([result.rating[2], result.ci_lower[2], result.ci_upper[2]], 1000.0)


def test_it_rates_a_board_without_votes_at_the_centre() -> None:
    empty = np.array([], dtype=np.int64)
    result = rate(empty, empty, empty, 3, bootstrap=10)
    assert result.rating.tolist() == result.ci_lower.tolist() == [1000.0] * 3
    assert result.rank.tolist() == [1, 1, 1] and result.votes.tolist() == [0, 0, 0]


def test_the_same_seed_gives_identical_intervals_and_another_seed_different_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(bootstrap, "_CHUNK_BYTES", 50_000)  # many chunks, so that two workers share them
    rng = np.random.default_rng(6)
    a, b, outcome = simulate(rng, rng.normal(0, 1, 7), 2000, tie_share=0.3)

    first = rate(a, b, outcome, 7, bootstrap=300, seed=1)
    again = rate(a, b, outcome, 7, bootstrap=300, seed=1, workers=2)
    other = rate(a, b, outcome, 7, bootstrap=300, seed=2)

    np.testing.assert_array_equal(first.ci_lower, again.ci_lower)
    np.testing.assert_array_equal(first.ci_upper, again.ci_upper)
    assert not np.array_equal(first.ci_lower, other.ci_lower)
    np.testing.assert_array_equal(first.rating, other.rating)


def test_rounds_shared_with_a_busy_pool_are_the_same_rounds(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fit run in a pool's only thread, its helper queued behind it in that pool (as a recompute
    runs its fits): the caller takes every chunk itself and cancels the helper, without waiting."""
    monkeypatch.setattr(bootstrap, "_CHUNK_BYTES", 50_000)
    rng = np.random.default_rng(8)
    a, b, outcome = simulate(rng, rng.normal(0, 1, 7), 2000, tie_share=0.3)
    x = rng.normal(0, 1, (a.size, 2))
    alone = rate(a, b, outcome, 7, bootstrap=120, seed=3)
    styled = rate_style(a, b, outcome, x, 7, bootstrap=12, seed=3)

    with ThreadPoolExecutor(1) as pool:
        shared = pool.submit(lambda: rate(a, b, outcome, 7, bootstrap=120, seed=3, workers=2, pool=pool))
        shared_style = pool.submit(
            lambda: rate_style(a, b, outcome, x, 7, bootstrap=12, seed=3, workers=2, pool=pool)
        )
        got, got_style = shared.result(timeout=60), shared_style.result(timeout=60)

    np.testing.assert_array_equal(got.ci_lower, alone.ci_lower)
    np.testing.assert_array_equal(got.ci_upper, alone.ci_upper)
    np.testing.assert_array_equal(got_style.ratings.ci_upper, styled.ratings.ci_upper)
    np.testing.assert_array_equal(got_style.coef_lower, styled.coef_lower)


def test_a_failed_chunk_fails_the_fit_and_stops_the_helpers(monkeypatch: pytest.MonkeyPatch) -> None:
    done: list[int] = []

    def work(child: np.random.Generator, size: int) -> np.ndarray:
        done.append(size)
        if len(done) == 3:
            raise ArithmeticError("chunk 3")
        return np.zeros((size, 2))

    with pytest.raises(ArithmeticError, match="chunk 3"):
        bootstrap._run_chunks(np.random.default_rng(0), [1] * 50, work, workers=2)
    assert len(done) < 50


def test_counted_rows_rate_exactly_like_repeated_rows() -> None:
    rng = np.random.default_rng(15)
    a, b, outcome = simulate(rng, rng.normal(0, 1, 7), 1500, tie_share=0.3)
    count = rng.integers(0, 5, a.size)
    count[:50] = 0

    counted = rate(a, b, outcome, 7, bootstrap=200, seed=4, count=count)
    repeated = rate(
        np.repeat(a, count), np.repeat(b, count), np.repeat(outcome, count), 7, bootstrap=200, seed=4
    )
    again = rate(a, b, outcome, 7, bootstrap=200, seed=4, count=count, workers=2)

    for field in ("rating", "ci_lower", "ci_upper", "rank", "votes"):
        np.testing.assert_array_equal(getattr(counted, field), getattr(repeated, field))
        np.testing.assert_array_equal(getattr(counted, field), getattr(again, field))
    assert counted.votes.sum() == 2 * count.sum()


@pytest.mark.parametrize(
    ("votes", "models", "spread", "tie_share"),
    [(60_000, 30, 1.0, 0.3), (50_000, 30, 4.0, 0.1), (800, 12, 1.0, 0.2), (40, 5, 1.0, 0.0)],
)
def test_bootstrap_rounds_match_exact_refits_of_the_same_resampled_counts(
    monkeypatch: pytest.MonkeyPatch, votes: int, models: int, spread: float, tie_share: float
) -> None:
    rng = np.random.default_rng(16)
    a, b, outcome = simulate(rng, rng.normal(0, spread, models), votes, tie_share=tie_share)
    fast_solve = bootstrap._Chord.solve
    worst: list[float] = []

    def checked(chord: Any, n: np.ndarray, score: np.ndarray) -> np.ndarray:
        fast = fast_solve(chord, n, score)
        problem = _PairProblem(chord.graph, score.astype(float), n.astype(float), RIDGE)
        exact = newton._newton(problem, np.repeat(chord.theta[:, None], n.shape[1], axis=1), 1e-10).T
        gap = (fast - fast.mean(axis=1, keepdims=True)) - (exact - exact.mean(axis=1, keepdims=True))
        worst.append(float(np.abs(gap).max()) * SCALE)
        return fast

    monkeypatch.setattr(bootstrap._Chord, "solve", checked)
    rate(a, b, outcome, models, bootstrap=200, seed=1)

    assert worst and max(worst) <= 1e-3  # display points


def test_its_intervals_cover_the_true_ratings_about_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(12)
    truth = np.array([0.8, 0.3, 0.0, -0.4, -0.7])
    true_rating = 1000.0 + SCALE * centred(truth)
    covered = 0
    repetitions = 300
    for repetition in range(repetitions):
        a, b, outcome = simulate(rng, truth, 400, tie_share=0.3)
        result = rate(a, b, outcome, truth.size, bootstrap=200, seed=repetition)
        covered += int(((result.ci_lower <= true_rating) & (true_rating <= result.ci_upper)).sum())

    assert 0.90 <= covered / (repetitions * truth.size) <= 0.99
