"""Votes to pair counts and the maximum-likelihood fit: pure numpy, no database, no Django."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from scipy.optimize import minimize
from scipy.special import expit

from leaderboard.rating import (
    A_WINS,
    B_WINS,
    BOTH_BAD,
    RIDGE,
    TIE,
    aggregate,
    battle_count_matrix,
    fit,
    predicted_win_matrix,
    rate,
    win_rate_matrix,
)
from tests.leaderboard.rating.simulate import centred, simulate

# In the repository (tests/data/README.md gives its source and licence): a fresh clone runs this test.
LLMFAO = Path(__file__).resolve().parents[2] / "data" / "llmfao"


def read_llmfao() -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray, dict[str, float]]:
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
