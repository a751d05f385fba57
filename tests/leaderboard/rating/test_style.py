"""Style control: Bradley-Terry with per-battle covariates. Pure numpy, no database, no Django."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from scipy.optimize import minimize
from scipy.special import expit

from leaderboard.rating import (
    A_WINS,
    B_WINS,
    RIDGE,
    SCALE,
    STYLE_RIDGE,
    TIE,
    bootstrap,
    newton,
    rate,
    rate_style,
    style,
    style_delta,
)
from tests.leaderboard.rating.simulate import centred, log_strengths, simulate_style


def test_style_delta_is_the_normalised_difference() -> None:
    np.testing.assert_allclose(style_delta(np.array([[3, 0]]), np.array([[1, 0]])), [[0.4, 0.0]])


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
    monkeypatch.setattr(bootstrap, "_CHUNK_BYTES", 2_000_000)  # several chunks for the two workers
    rng = np.random.default_rng(13)
    theta = rng.normal(0, 1, 5)
    a, b, outcome, x = simulate_style(rng, theta, np.zeros(3), 5000, np.zeros(5))

    first = rate_style(a, b, outcome, x, 5, bootstrap=40, seed=4)
    again = rate_style(a, b, outcome, x, 5, bootstrap=40, seed=4, workers=2)
    plain = rate(a, b, outcome, 5, bootstrap=0)

    np.testing.assert_array_equal(first.ratings.ci_lower, again.ratings.ci_lower)
    np.testing.assert_array_equal(first.coef_upper, again.coef_upper)
    assert np.max(np.abs(first.ratings.rating - plain.rating)) < 10.0


def test_style_bootstrap_rounds_match_exact_refits_of_the_same_weights(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = np.random.default_rng(17)
    a, b, outcome, x = simulate_style(rng, rng.normal(0, 1, 8), np.array([0.4, -0.2]), 20_000, np.zeros(8))
    fast_solve = style._StyleChord.solve
    worst: list[tuple[float, float]] = []

    def checked(chord: Any, weights: np.ndarray) -> np.ndarray:
        fast = fast_solve(chord, weights)
        for r in range(weights.shape[0]):
            problem = style._StyleProblem(chord.design, weights[r].astype(float), chord.ridge[:, 0])
            exact = newton._newton(problem, chord.params[:, None], 1e-10)[:, 0]
            exact[: chord.m] -= exact[: chord.m].mean()
            gap = np.abs(fast[r] - exact)
            worst.append((float(gap[: chord.m].max()) * SCALE, float(gap[chord.m :].max())))
        return fast

    monkeypatch.setattr(style._StyleChord, "solve", checked)
    monkeypatch.setattr(style, "_STYLE_BLOCK", 3000)  # several blocks of battles per pass
    rate_style(a, b, outcome, x, 8, bootstrap=20, seed=2)

    ratings, coefs = np.max(worst, axis=0)
    assert ratings <= 1e-3 and coefs <= 1e-5


def test_style_control_point_estimate_agrees_with_a_general_purpose_optimiser() -> None:
    """The same penalised likelihood (ties half a win, RIDGE on strengths, STYLE_RIDGE on
    coefficients) handed to scipy's L-BFGS with a tight tolerance: the two optima agree to 1e-5 logits."""
    rng = np.random.default_rng(11)
    theta = np.array([0.8, 0.3, 0.0, -0.4, -0.9])
    beta = np.array([0.6, -0.3, 0.2])
    a, b, outcome, x = simulate_style(rng, theta, beta, 4000, rng.normal(0, 0.3, 5))
    outcome[rng.random(a.size) < 0.2] = TIE
    m, k = theta.size, beta.size
    z = (x - x.mean(axis=0)) / x.std(axis=0)
    y = np.where(outcome == A_WINS, 1.0, np.where(outcome == B_WINS, 0.0, 0.5))
    ridge = np.concatenate([np.full(m, RIDGE), np.full(k, STYLE_RIDGE)])

    def objective(params: np.ndarray) -> tuple[float, np.ndarray]:
        t, c = params[:m], params[m:]
        d = t[a] - t[b] + z @ c
        p = expit(d)
        loss = np.sum(np.logaddexp(0, d) - y * d) + 0.5 * np.sum(ridge * params**2)
        r = p - y
        grad = np.concatenate([np.bincount(a, r, m) - np.bincount(b, r, m), z.T @ r]) + ridge * params
        return float(loss), grad

    reference = minimize(
        objective, np.zeros(m + k), jac=True, method="L-BFGS-B", options={"gtol": 1e-12, "ftol": 0}
    )
    result = rate_style(a, b, outcome, x, m, bootstrap=0)

    expected = reference.x[:m] - reference.x[:m].mean()
    assert np.max(np.abs(log_strengths(result.ratings.rating) - expected)) < 1e-5
    assert np.max(np.abs(result.coef - reference.x[m:])) < 1e-5


def test_style_sandwich_is_the_same_whatever_the_block_of_its_sums(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(7)
    a, b, outcome, x = simulate_style(rng, np.linspace(0.8, -0.8, 5), np.array([0.4, 0.1]), 3000, np.zeros(5))
    weights = rng.uniform(0.5, 2.0, a.size)

    whole = rate_style(a, b, outcome, x, 5, intervals="sandwich", weights=weights)
    # Blocks of 7 battles end where a pair does: many blocks, some of them one long pair.
    monkeypatch.setattr(style, "_OUTER_BLOCK", 7)
    blocked = rate_style(a, b, outcome, x, 5, intervals="sandwich", weights=weights)

    for field in ("rating", "ci_lower", "ci_upper"):
        np.testing.assert_allclose(
            getattr(blocked.ratings, field), getattr(whole.ratings, field), rtol=0, atol=1e-9
        )
    np.testing.assert_allclose(blocked.coef_lower, whole.coef_lower, rtol=0, atol=1e-12)
    assert (whole.ratings.ci_upper - whole.ratings.ci_lower > 1.0).all()
