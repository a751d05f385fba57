"""The rating engine: pure numpy, no database, no Django."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy.optimize import minimize
from scipy.special import expit

from leaderboard import rating
from leaderboard.rating import (
    A_WINS,
    B_WINS,
    BOTH_BAD,
    RIDGE,
    SCALE,
    STYLE_FEATURES,
    TIE,
    _PoissonTable,
    aggregate,
    battle_count_matrix,
    fit,
    load_battles,
    predicted_win_matrix,
    rank_from_intervals,
    rate,
    rate_style,
    style_delta,
    win_rate_matrix,
)

REPO = Path(__file__).resolve().parents[2]
LLMFAO = REPO.parent / "shared" / "data" / "llmfao"


def simulate(
    rng: np.random.Generator, theta: np.ndarray, votes: int, tie_share: float = 0.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Battles between random pairs under Bradley-Terry.

    Ties are drawn so that a tie counted as half a win keeps the expected score at sigmoid(theta_a -
    theta_b): the half-win likelihood then estimates theta without bias.
    """
    m = theta.size
    a = rng.integers(0, m, votes)
    b = (a + rng.integers(1, m, votes)) % m
    p = expit(theta[a] - theta[b])
    tie = tie_share * 2 * np.minimum(p, 1 - p)
    u = rng.random(votes)
    outcome = np.where(u < tie, TIE, np.where(u < tie + p - tie / 2, A_WINS, B_WINS))
    return a, b, outcome


def centred(theta: np.ndarray) -> np.ndarray:
    return theta - theta.mean()


def log_strengths(ratings: np.ndarray) -> np.ndarray:
    return (ratings - 1000.0) / SCALE


# --- Maximum likelihood -------------------------------------------------------------------------------


def read_llmfao() -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray, dict[str, float]]:
    if not (LLMFAO / "llmfao.csv").exists():
        pytest.skip(f"LLMFAO reference data not found at {LLMFAO} (shared/ beside the repository)")
    with open(LLMFAO / "llmfao.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    with open(LLMFAO / "llmfao-golden.csv", newline="") as f:
        golden = {
            r["item"]: float(r["score"]) for r in csv.DictReader(f) if r["algorithm"] == "bradley_terry"
        }
    names = sorted({r["left"] for r in rows} | {r["right"] for r in rows})
    index = {name: i for i, name in enumerate(names)}
    a = np.array([index[r["left"]] for r in rows])
    b = np.array([index[r["right"]] for r in rows])
    outcome = np.array([{"left": A_WINS, "right": B_WINS, "tie": TIE}[r["winner"]] for r in rows])
    return names, a, b, outcome, golden


def test_it_reproduces_the_llmfao_reference() -> None:
    names, a, b, outcome, golden = read_llmfao()
    theta = fit(aggregate(a, b, outcome, len(names)), len(names))

    strength = np.exp(theta) / np.exp(theta).sum()
    expected = np.array([golden[name] for name in names])
    assert np.max(np.abs(strength - expected) / expected) <= 1e-3
    assert [names[i] for i in np.argsort(-strength)] == [names[i] for i in np.argsort(-expected)]


def independent_fit(a: np.ndarray, b: np.ndarray, outcome: np.ndarray, m: int) -> np.ndarray:
    """Per-vote negative log-likelihood, ties as half wins, minimised by scipy's BFGS; mean-centred.

    The first model is pinned at 0 to fix the scale's offset, so there is no ridge here.
    """
    score = np.where(outcome == A_WINS, 1.0, np.where(outcome == B_WINS, 0.0, 0.5))

    def theta_of(free: np.ndarray) -> np.ndarray:
        return np.concatenate([[0.0], free])

    def nll(free: np.ndarray) -> float:
        d = theta_of(free)[a] - theta_of(free)[b]
        return float(np.sum(score * np.logaddexp(0.0, -d) + (1.0 - score) * np.logaddexp(0.0, d)))

    def grad(free: np.ndarray) -> np.ndarray:
        d = theta_of(free)[a] - theta_of(free)[b]
        per_vote = expit(d) - score
        return (np.bincount(a, per_vote, m) - np.bincount(b, per_vote, m))[1:]

    result = minimize(
        nll, np.zeros(m - 1), jac=grad, method="BFGS", options={"gtol": 1e-9, "maxiter": 10_000}
    )
    return centred(theta_of(result.x))


def test_it_agrees_with_an_independent_maximum_likelihood_fit() -> None:
    rng = np.random.default_rng(11)
    truth = rng.normal(0.0, 1.0, 12)
    a, b, outcome = simulate(rng, truth, 6000, tie_share=0.3)
    outcome[::7] = np.where(outcome[::7] == TIE, BOTH_BAD, outcome[::7])

    ours = fit(aggregate(a, b, outcome, 12), 12)

    assert np.max(np.abs(ours - independent_fit(a, b, outcome, 12))) <= 1e-4
    assert abs(ours.mean()) < 1e-12


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


def test_it_counts_ties_and_both_bad_as_half_a_win_each() -> None:
    a = np.array([0, 1, 0, 2, 0])
    b = np.array([1, 0, 1, 0, 2])
    outcome = np.array([A_WINS, A_WINS, TIE, BOTH_BAD, B_WINS])

    counts = aggregate(a, b, outcome, 3)

    assert counts.i.tolist() == [0, 0] and counts.j.tolist() == [1, 2]
    assert counts.wins_i.tolist() == [1.5, 0.5] and counts.wins_j.tolist() == [1.5, 1.5]
    assert counts.n.tolist() == [3, 2] and counts.ties.tolist() == [1, 1]
    np.testing.assert_array_equal(battle_count_matrix(counts, 3), [[0, 3, 2], [3, 0, 0], [2, 0, 0]])
    rates = win_rate_matrix(counts, 3)
    assert rates[0, 1] == 0.5 and rates[0, 2] == 0.25 and rates[2, 0] == 0.75
    assert np.isnan(rates[1, 2]) and np.isnan(rates[0, 0])


def test_it_counts_the_same_with_few_or_many_models_and_any_integer_type() -> None:
    rng = np.random.default_rng(1)
    a, b, outcome = simulate(rng, rng.normal(0, 1, 5), 500, tie_share=0.3)
    dense = aggregate(a, b, outcome, 5)
    # 5000 possible models for 500 votes: counted by sorting the pairs seen instead of a dense table.
    sparse = aggregate(a.astype(np.int32), b.astype(np.uint16), outcome.astype(np.int8), 5000)

    for field in ("i", "j", "wins_i", "wins_j", "n", "ties"):
        np.testing.assert_array_equal(getattr(dense, field), getattr(sparse, field))


def test_counted_rows_give_the_same_counts_as_repeated_rows_with_few_or_many_models() -> None:
    rng = np.random.default_rng(14)
    a, b, outcome = simulate(rng, rng.normal(0, 1, 6), 300, tie_share=0.3)
    count = rng.integers(0, 4, a.size)
    repeated = [np.repeat(column, count) for column in (a, b, outcome)]

    for n_models in (6, 5000):  # the dense table and the sort-based count
        counted = aggregate(a, b, outcome, n_models, count=count)
        expected = aggregate(*repeated, n_models)
        for field in ("i", "j", "wins_i", "wins_j", "n", "ties"):
            np.testing.assert_array_equal(getattr(counted, field), getattr(expected, field))


def test_it_rejects_votes_it_cannot_count() -> None:
    with pytest.raises(ValueError, match="negative"):
        aggregate(np.array([0]), np.array([1]), np.array([A_WINS]), 2, count=np.array([-1]))
    with pytest.raises(ValueError, match="one entry per vote"):
        aggregate(np.array([0]), np.array([1]), np.array([A_WINS]), 2, count=np.array([1, 2]))
    with pytest.raises(ValueError, match="integers"):
        aggregate(np.array([0]), np.array([1]), np.array([A_WINS]), 2, count=np.array([1.5]))
    with pytest.raises(ValueError, match="against itself"):
        aggregate(np.array([0, 1]), np.array([1, 1]), np.array([A_WINS, A_WINS]), 2)
    with pytest.raises(ValueError, match="model index"):
        aggregate(np.array([0]), np.array([2]), np.array([A_WINS]), 2)
    with pytest.raises(ValueError, match="outcome"):
        aggregate(np.array([0]), np.array([1]), np.array([4]), 2)


def test_predicted_win_matrix_is_the_logistic_of_strength_differences() -> None:
    theta = np.array([0.0, np.log(3.0)])
    np.testing.assert_allclose(predicted_win_matrix(theta), [[0.5, 0.25], [0.75, 0.5]])


def test_weights_multiply_the_pair_counts_and_init_warm_starts() -> None:
    rng = np.random.default_rng(2)
    a, b, outcome = simulate(rng, rng.normal(0, 1, 6), 2000, tie_share=0.3)
    counts = aggregate(a, b, outcome, 6)
    doubled = aggregate(np.concatenate([a, a]), np.concatenate([b, b]), np.concatenate([outcome, outcome]), 6)

    np.testing.assert_allclose(
        fit(counts, 6, weights=np.full(counts.i.size, 2.0)), fit(doubled, 6), atol=1e-10
    )
    theta = fit(counts, 6)
    np.testing.assert_allclose(fit(counts, 6, init=theta + 5.0), theta, atol=1e-10)


def test_a_model_with_only_wins_or_only_losses_stays_finite() -> None:
    a = np.array([0, 0, 0, 0, 0, 1, 2, 1, 2, 3, 3, 3])
    b = np.array([1, 2, 1, 2, 3, 2, 1, 2, 1, 1, 2, 2])
    outcome = np.array([A_WINS] * 5 + [A_WINS, A_WINS, B_WINS, TIE] + [B_WINS] * 3)

    result = rate(a, b, outcome, 4, bootstrap=200)

    assert np.isfinite(result.rating).all() and np.isfinite(result.ci_lower).all()
    assert np.isfinite(result.ci_upper).all()
    assert result.rating[0] == result.rating.max() and result.rating[3] == result.rating.min()
    assert result.rank[0] == 1


def test_the_ridge_is_too_small_to_matter_on_ordinary_data() -> None:
    rng = np.random.default_rng(4)
    a, b, outcome = simulate(rng, rng.normal(0, 1, 10), 4000)
    counts = aggregate(a, b, outcome, 10)
    assert np.max(np.abs(fit(counts, 10) - fit(counts, 10, ridge=RIDGE / 100))) < 1e-5


# --- Ratings, intervals and ranks ---------------------------------------------------------------------


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
    monkeypatch.setattr(rating, "_CHUNK_BYTES", 50_000)  # many chunks, so that two workers share them
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
    monkeypatch.setattr(rating, "_CHUNK_BYTES", 50_000)
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
        rating._run_chunks(np.random.default_rng(0), [1] * 50, work, workers=2)
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
    fast_solve = rating._Chord.solve
    worst: list[float] = []

    def checked(chord: Any, n: np.ndarray, score: np.ndarray) -> np.ndarray:
        fast = fast_solve(chord, n, score)
        problem = rating._PairProblem(chord.graph, score.astype(float), n.astype(float), RIDGE)
        exact = rating._newton(problem, np.repeat(chord.theta[:, None], n.shape[1], axis=1), 1e-10).T
        gap = (fast - fast.mean(axis=1, keepdims=True)) - (exact - exact.mean(axis=1, keepdims=True))
        worst.append(float(np.abs(gap).max()) * SCALE)
        return fast

    monkeypatch.setattr(rating._Chord, "solve", checked)
    rate(a, b, outcome, models, bootstrap=200, seed=1)

    assert worst and max(worst) <= 1e-3  # display points


def test_style_bootstrap_rounds_match_exact_refits_of_the_same_weights(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = np.random.default_rng(17)
    a, b, outcome, x = simulate_style(rng, rng.normal(0, 1, 8), np.array([0.4, -0.2]), 20_000, np.zeros(8))
    fast_solve = rating._StyleChord.solve
    worst: list[tuple[float, float]] = []

    def checked(chord: Any, weights: np.ndarray) -> np.ndarray:
        fast = fast_solve(chord, weights)
        for r in range(weights.shape[0]):
            problem = rating._StyleProblem(chord.design, weights[r].astype(float), RIDGE)
            exact = rating._newton(problem, chord.params[:, None], 1e-10)[:, 0]
            exact[: chord.m] -= exact[: chord.m].mean()
            gap = np.abs(fast[r] - exact)
            worst.append((float(gap[: chord.m].max()) * SCALE, float(gap[chord.m :].max())))
        return fast

    monkeypatch.setattr(rating._StyleChord, "solve", checked)
    monkeypatch.setattr(rating, "_STYLE_BLOCK", 3000)  # several blocks of battles per pass
    rate_style(a, b, outcome, x, 8, bootstrap=20, seed=2)

    ratings, coefs = np.max(worst, axis=0)
    assert ratings <= 1e-3 and coefs <= 1e-5


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


def test_the_poisson_sampler_draws_the_poisson_distribution() -> None:
    from scipy import stats

    means = np.array([0, 1, 4, 40, 2500])
    many = _PoissonTable(means).draw(np.random.default_rng(0), 200_000).astype(np.int64)
    # One mean alone takes another path (16-bit buckets), the style bootstrap's Poisson(1) weights.
    one = _PoissonTable(np.ones(1, dtype=np.int64)).draw(np.random.default_rng(1), 2_000_000)

    assert (many[:, 0] == 0).all()
    for draws, mean in [
        *((many[:, c], m) for c, m in enumerate(means[1:], 1)),
        (one[:, 0].astype(np.int64), 1),
    ]:
        observed = np.bincount(draws - draws.min())
        values = np.arange(observed.size) + draws.min()
        expected = stats.poisson.pmf(values, mean) * draws.size
        keep = expected > 5
        chi2 = float(np.sum((observed[keep] - expected[keep]) ** 2 / expected[keep]))
        assert stats.chi2.sf(chi2, keep.sum() - 1) > 1e-4, mean


# --- Style control ------------------------------------------------------------------------------------


def test_style_delta_is_the_normalised_difference() -> None:
    np.testing.assert_allclose(style_delta(np.array([[3, 0]]), np.array([[1, 0]])), [[0.4, 0.0]])


def simulate_style(
    rng: np.random.Generator, theta: np.ndarray, beta: np.ndarray, votes: int, length_bias: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    m = theta.size
    a = rng.integers(0, m, votes)
    b = (a + rng.integers(1, m, votes)) % m
    scale = np.exp(length_bias)
    count_a = rng.poisson(300 * scale[a, None], (votes, beta.size))
    count_b = rng.poisson(300 * scale[b, None], (votes, beta.size))
    x = style_delta(count_a, count_b)
    z = theta[a] - theta[b] + ((x - x.mean(axis=0)) / x.std(axis=0)) @ beta
    outcome = np.where(rng.random(votes) < expit(z), A_WINS, B_WINS)
    return a, b, outcome, x


def test_style_control_recovers_known_coefficients() -> None:
    rng = np.random.default_rng(3)
    theta = np.linspace(1.0, -1.0, 6)
    beta = np.array([0.5, -0.25])
    a, b, outcome, x = simulate_style(rng, theta, beta, 30_000, np.zeros(6))

    result = rate_style(a, b, outcome, x, 6, bootstrap=50)

    spread = (result.coef_upper - result.coef_lower) / 3.92
    assert (np.abs(result.coef - beta) <= 4 * spread).all()
    assert (spread < 0.03).all()
    assert np.max(np.abs(log_strengths(result.ratings.rating) - centred(theta))) < 0.1
    assert (result.ratings.ci_lower <= result.ratings.rating).all()


def test_style_coefficient_intervals_cover_the_truth_about_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(18)
    theta = np.array([0.6, 0.2, -0.1, -0.7])
    beta = np.array([0.5])
    covered = 0
    repetitions = 150
    for repetition in range(repetitions):
        # Battles drawn from the fitted model itself: the logit is the strength difference plus beta
        # times the feature standardised over these battles, as rate_style standardises it.
        a, b, outcome, x = simulate_style(rng, theta, beta, 500, np.log([1.5, 1.0, 0.8, 1.2]))
        result = rate_style(a, b, outcome, x, theta.size, bootstrap=200, seed=repetition)
        covered += int(result.coef_lower[0] <= beta[0] <= result.coef_upper[0])

    assert 0.90 <= covered / repetitions <= 0.99


def test_style_control_takes_out_a_liking_for_long_answers() -> None:
    rng = np.random.default_rng(10)
    # Models 0 and 1 are equally good; model 0 writes twice as long and voters like length.
    theta = np.array([0.0, 0.0, -0.5, 0.5])
    a, b, outcome, x = simulate_style(rng, theta, np.array([0.6]), 20_000, np.log([2.0, 1.0, 1.0, 1.0]))

    plain = log_strengths(rate(a, b, outcome, 4, bootstrap=0).rating)
    styled = log_strengths(rate_style(a, b, outcome, x, 4, bootstrap=0).ratings.rating)

    assert plain[0] - plain[1] > 0.3
    assert abs(styled[0] - styled[1]) < 0.1


def test_style_control_is_reproducible_and_agrees_with_plain_ratings_when_style_does_not_matter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(rating, "_CHUNK_BYTES", 2_000_000)  # several chunks for the two workers
    rng = np.random.default_rng(13)
    theta = rng.normal(0, 1, 5)
    a, b, outcome, x = simulate_style(rng, theta, np.zeros(3), 5000, np.zeros(5))

    first = rate_style(a, b, outcome, x, 5, bootstrap=40, seed=4)
    again = rate_style(a, b, outcome, x, 5, bootstrap=40, seed=4, workers=2)
    plain = rate(a, b, outcome, 5, bootstrap=0)

    np.testing.assert_array_equal(first.ratings.ci_lower, again.ratings.ci_lower)
    np.testing.assert_array_equal(first.coef_upper, again.coef_upper)
    assert np.max(np.abs(first.ratings.rating - plain.rating)) < 10.0


# --- Battle files and the command line ----------------------------------------------------------------


def battle_records() -> list[dict[str, Any]]:
    rng = np.random.default_rng(21)
    names = ["alpha", "beta", "gamma", "delta"]
    a, b, outcome = simulate(rng, np.array([1.0, 0.4, 0.0, -0.6]), 300, tie_share=0.3)
    outcome[::9] = np.where(outcome[::9] == TIE, BOTH_BAD, outcome[::9])
    winners = {A_WINS: "model_a", B_WINS: "model_b", TIE: "tie", BOTH_BAD: "tie (bothbad)"}
    records = []
    for i, j, o in zip(a, b, outcome, strict=True):
        tokens = rng.integers(20, 900, 2)
        records.append(
            {
                "model_a": names[i],
                "model_b": names[j],
                "winner": winners[int(o)],
                "conv_metadata": {
                    "sum_assistant_a_tokens": int(tokens[0]),
                    "sum_assistant_b_tokens": int(tokens[1]),
                    "header_count_a": {f"h{k}": int(rng.integers(0, 2)) for k in range(1, 7)},
                    "header_count_b": {f"h{k}": int(rng.integers(0, 2)) for k in range(1, 7)},
                    "list_count_a": {
                        "ordered": int(rng.integers(0, 4)),
                        "unordered": int(rng.integers(0, 4)),
                    },
                    "list_count_b": {
                        "ordered": int(rng.integers(0, 4)),
                        "unordered": int(rng.integers(0, 4)),
                    },
                    "bold_count_a": {"**": int(rng.integers(0, 5)), "__": 0},
                    "bold_count_b": {"**": int(rng.integers(0, 5)), "__": 0},
                },
            }
        )
    return records


def write_json(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text(json.dumps(records, indent=1))
    return path


def write_jsonl(path: Path, records: list[Any]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def write_csv(path: Path, records: list[dict[str, Any]]) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["model_a", "model_b", "winner", "conv_metadata"])
        writer.writeheader()
        for r in records:
            writer.writerow({**r, "conv_metadata": json.dumps(r["conv_metadata"])})
    return path


def run_cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "leaderboard.rating", *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_load_battles_reads_names_outcomes_and_style_counts(tmp_path: Path) -> None:
    records = battle_records()
    models, a, _, outcome, features = load_battles(write_json(tmp_path / "b.json", records), style=True)

    assert models == ["alpha", "beta", "delta", "gamma"]
    assert [models[i] for i in a[:3]] == [r["model_a"] for r in records[:3]]
    assert outcome.tolist()[:3] == [
        {"model_a": A_WINS, "model_b": B_WINS, "tie": TIE, "tie (bothbad)": BOTH_BAD}[r["winner"]]
        for r in records[:3]
    ]
    assert features is not None and features.shape == (len(records), len(STYLE_FEATURES))
    meta = records[0]["conv_metadata"]
    length = (meta["sum_assistant_a_tokens"] - meta["sum_assistant_b_tokens"]) / (
        meta["sum_assistant_a_tokens"] + meta["sum_assistant_b_tokens"] + 1
    )
    assert features[0, 0] == pytest.approx(length)
    assert load_battles(tmp_path / "b.json")[4] is None


def test_the_cli_gives_the_same_ratings_from_json_json_lines_and_csv(tmp_path: Path) -> None:
    records = battle_records()
    outputs = []
    for path in (
        write_json(tmp_path / "b.json", records),
        write_jsonl(tmp_path / "b.jsonl", records),
        write_csv(tmp_path / "b.csv", records),
    ):
        done = run_cli(path, "--json", "--style", "--bootstrap", "30", "--seed", "7")
        assert done.returncode == 0, done.stderr
        outputs.append(json.loads(done.stdout))

    assert outputs[0] == outputs[1] == outputs[2]
    result = outputs[0]
    assert result["models"][0]["model"] == "alpha"
    assert set(result["models"][0]) == {"model", "rating", "ci_lower", "ci_upper", "rank", "votes"}
    ratings = [row["rating"] for row in result["models"]]
    assert ratings == sorted(ratings, reverse=True)
    assert [c["feature"] for c in result["style"]["coefficients"]] == list(STYLE_FEATURES)
    assert len(result["style"]["models"]) == 4


def test_the_cli_prints_a_readable_table(tmp_path: Path) -> None:
    done = run_cli(write_json(tmp_path / "b.json", battle_records()), "--bootstrap", "20")
    assert done.returncode == 0, done.stderr
    assert "rank" in done.stdout and "alpha" in done.stdout and "95% interval" in done.stdout


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.json", None, "cannot read"),
        ("bad.jsonl", '{"model_a": "x", "model_b": "y", "winner": "tie"}\n{"model_a": "x",\n', "line 2"),
        (
            "bad.json",
            '[{"model_a": "x", "model_b": "y", "winner": "tie"}, {"model_a": "x", "winner": "tie"}]',
            "record 2",
        ),
        ("bad.csv", "model_a,model_b,winner\nx,y,tie\nx,y,draw\n", "line 3: unknown winner 'draw'"),
        (
            "self.jsonl",
            '\n{"model_a": "x", "model_b": "x", "winner": "model_a"}\n',
            "line 2: model_a and model_b",
        ),
        ("nocolumn.csv", "model_a,winner\nx,tie\n", "lacks model_b"),
    ],
)
def test_the_cli_rejects_a_bad_file_naming_the_line(
    tmp_path: Path, name: str, content: str | None, message: str
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_text(content)

    done = run_cli(path)

    assert done.returncode == 2
    assert message in done.stderr and name in done.stderr
    assert done.stdout == ""


def test_the_cli_wants_style_counts_on_every_record_for_style_control(tmp_path: Path) -> None:
    records = battle_records()
    del records[4]["conv_metadata"]
    done = run_cli(write_jsonl(tmp_path / "b.jsonl", records), "--style")
    assert done.returncode == 2 and "line 5: missing conv_metadata" in done.stderr


def test_style_control_point_estimate_agrees_with_a_general_purpose_optimiser() -> None:
    """The same penalised likelihood (ties half a win, ridge on strengths and coefficients) handed
    to scipy's L-BFGS with a tight tolerance: the two optima agree to 1e-5 logits."""
    rng = np.random.default_rng(11)
    theta = np.array([0.8, 0.3, 0.0, -0.4, -0.9])
    beta = np.array([0.6, -0.3, 0.2])
    a, b, outcome, x = simulate_style(rng, theta, beta, 4000, rng.normal(0, 0.3, 5))
    outcome[rng.random(a.size) < 0.2] = TIE
    m, k = theta.size, beta.size
    z = (x - x.mean(axis=0)) / x.std(axis=0)
    y = np.where(outcome == A_WINS, 1.0, np.where(outcome == B_WINS, 0.0, 0.5))

    def objective(params: np.ndarray) -> tuple[float, np.ndarray]:
        t, c = params[:m], params[m:]
        d = t[a] - t[b] + z @ c
        p = expit(d)
        loss = np.sum(np.logaddexp(0, d) - y * d) + 0.5 * rating.RIDGE * np.sum(params**2)
        r = p - y
        grad = np.concatenate([np.bincount(a, r, m) - np.bincount(b, r, m), z.T @ r]) + rating.RIDGE * params
        return float(loss), grad

    reference = minimize(
        objective, np.zeros(m + k), jac=True, method="L-BFGS-B", options={"gtol": 1e-12, "ftol": 0}
    )
    result = rate_style(a, b, outcome, x, m, bootstrap=0)

    expected = reference.x[:m] - reference.x[:m].mean()
    assert np.max(np.abs(log_strengths(result.ratings.rating) - expected)) < 1e-5
    assert np.max(np.abs(result.coef - reference.x[m:])) < 1e-5
