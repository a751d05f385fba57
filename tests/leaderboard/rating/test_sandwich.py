"""Sandwich intervals, per-battle weights, rank ranges and young boards. Pure numpy, no database."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy.special import expit

from leaderboard.rating import (
    A_WINS,
    B_WINS,
    BOTH_BAD,
    RIDGE,
    SCALE,
    STYLE_RIDGE,
    TIE,
    centred_variance,
    pair_frequency_weights,
    propensity_weights,
    rank_range,
    rate,
    rate_style,
    sandwich_covariance,
    style_delta,
)
from leaderboard.rating.bootstrap import Z
from tests.leaderboard.rating.simulate import log_strengths, simulate, simulate_style

SCORE = {A_WINS: 1.0, B_WINS: 0.0, TIE: 0.5, BOTH_BAD: 0.5}


def half_width(lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    return (upper - lower) / 2


def per_battle_sandwich(
    a: np.ndarray,
    b: np.ndarray,
    y: np.ndarray,
    z: np.ndarray,
    params: np.ndarray,
    w: np.ndarray,
    ridge: np.ndarray,
) -> np.ndarray:
    """H^-1 J H^-1 summed battle by battle from its definition, for (theta, beta); z (battles, k).

    Solved on the strengths' sum-zero subspace (an orthonormal basis of it): inverting H itself,
    whose all-ones direction holds only the ridge, would magnify rounding 1e8-fold there.
    """
    m, k = params.size - z.shape[1], z.shape[1]
    u = np.zeros((a.size, m))
    u[np.arange(a.size), a] = 1.0
    u[np.arange(a.size), b] = -1.0
    u = np.hstack([u, z])
    p = expit(u @ params)
    hessian = (u * (w * p * (1 - p))[:, None]).T @ u + np.diag(ridge)
    score = u * (w * (y - p))[:, None]
    basis = np.zeros((m + k, m - 1 + k))
    basis[:m, : m - 1] = np.linalg.qr(np.eye(m) - 1.0 / m)[0][:, : m - 1]
    basis[m:, m - 1 :] = np.eye(k)
    inverse = np.linalg.inv(basis.T @ hessian @ basis)
    outer = basis.T @ (score.T @ score) @ basis
    cov: np.ndarray = basis @ inverse @ outer @ inverse @ basis.T
    return cov


def test_sandwich_intervals_agree_with_the_bootstraps_on_a_large_board() -> None:
    rng = np.random.default_rng(31)
    a, b, outcome = simulate(rng, rng.normal(0, 1, 20), 200_000, tie_share=0.3)

    boot = rate(a, b, outcome, 20, bootstrap=1000, seed=1)
    sandwich = rate(a, b, outcome, 20, intervals="sandwich")

    ratio = half_width(boot.ci_lower, boot.ci_upper) / half_width(sandwich.ci_lower, sandwich.ci_upper)
    assert 0.97 <= ratio.mean() <= 1.03
    assert (np.abs(ratio - 1) < 0.1).all()  # each within the Monte Carlo error of 1000 rounds
    np.testing.assert_array_equal(sandwich.rating, boot.rating)
    assert sandwich.intervals == "sandwich" and sandwich.bootstrap == 0
    assert boot.intervals == "bootstrap"


def test_style_sandwich_intervals_agree_with_the_style_bootstraps() -> None:
    rng = np.random.default_rng(32)
    a, b, outcome, x = simulate_style(rng, rng.normal(0, 1, 8), np.array([0.4, -0.2]), 60_000, np.zeros(8))

    boot = rate_style(a, b, outcome, x, 8, bootstrap=400, seed=2)
    sandwich = rate_style(a, b, outcome, x, 8, intervals="sandwich")

    ratings = half_width(boot.ratings.ci_lower, boot.ratings.ci_upper) / half_width(
        sandwich.ratings.ci_lower, sandwich.ratings.ci_upper
    )
    coefs = half_width(boot.coef_lower, boot.coef_upper) / half_width(
        sandwich.coef_lower, sandwich.coef_upper
    )
    assert (np.abs(ratings - 1) < 0.15).all() and (np.abs(coefs - 1) < 0.15).all()
    np.testing.assert_array_equal(sandwich.coef, boot.coef)


def test_the_plain_sandwich_is_the_per_battle_sum_of_its_definition_with_ties_and_weights() -> None:
    rng = np.random.default_rng(33)
    a, b, outcome = simulate(rng, np.array([0.9, 0.2, 0.0, -0.5, -1.1]), 700, tie_share=0.4)
    outcome[::7] = np.where(outcome[::7] == TIE, BOTH_BAD, outcome[::7])
    w = rng.uniform(0.2, 3.0, a.size)
    w /= w.mean()  # already at mean 1, as the engine rescales

    result = rate(a, b, outcome, 5, intervals="sandwich", weights=w)

    theta = log_strengths(result.rating)
    y = np.array([SCORE[int(o)] for o in outcome])
    cov = per_battle_sandwich(a, b, y, np.zeros((a.size, 0)), theta, w, np.full(5, RIDGE))
    expected = Z * SCALE * np.sqrt(centred_variance(cov))
    np.testing.assert_allclose(half_width(result.ci_lower, result.ci_upper), expected, rtol=1e-6)


def test_the_style_sandwich_is_the_per_battle_sum_of_its_definition() -> None:
    rng = np.random.default_rng(34)
    theta, beta = np.array([0.6, 0.1, -0.2, -0.5]), np.array([0.5, -0.3])
    a, b, outcome, x = simulate_style(rng, theta, beta, 900, np.log([1.4, 1.0, 0.8, 1.1]))
    outcome[rng.random(a.size) < 0.2] = TIE
    w = rng.uniform(0.5, 2.0, a.size)
    w /= w.mean()

    result = rate_style(a, b, outcome, x, 4, intervals="sandwich", weights=w)

    params = np.concatenate([log_strengths(result.ratings.rating), result.coef])
    z = (x - x.mean(axis=0)) / x.std(axis=0)
    y = np.array([SCORE[int(o)] for o in outcome])
    ridge = np.concatenate([np.full(4, RIDGE), np.full(2, STYLE_RIDGE)])
    cov = per_battle_sandwich(a, b, y, z, params, w, ridge)
    ratings = Z * SCALE * np.sqrt(centred_variance(cov[:4, :4]))
    np.testing.assert_allclose(
        half_width(result.ratings.ci_lower, result.ratings.ci_upper), ratings, rtol=1e-6
    )
    coefs = Z * np.sqrt(np.diag(cov)[4:])
    np.testing.assert_allclose(half_width(result.coef_lower, result.coef_upper), coefs, rtol=1e-6)


def test_sandwich_covariance_is_what_the_sandwich_intervals_are_made_of() -> None:
    rng = np.random.default_rng(35)
    a, b, outcome = simulate(rng, np.array([0.5, 0.0, -0.5]), 3000)

    theta, cov = sandwich_covariance(a, b, outcome, 3)
    result = rate(a, b, outcome, 3, intervals="sandwich")

    np.testing.assert_allclose(theta, log_strengths(result.rating), atol=1e-12)
    np.testing.assert_allclose(cov.sum(axis=0), 0.0, atol=1e-12)  # mean-zero strengths
    np.testing.assert_allclose(
        Z * SCALE * np.sqrt(np.diag(cov)), half_width(result.ci_lower, result.ci_upper), rtol=1e-12
    )


def test_counted_rows_give_the_same_sandwich_as_repeated_rows() -> None:
    rng = np.random.default_rng(36)
    a, b, outcome = simulate(rng, rng.normal(0, 1, 6), 1200, tie_share=0.3)
    count = rng.integers(0, 4, a.size)

    counted = rate(a, b, outcome, 6, intervals="sandwich", count=count)
    repeated = rate(
        np.repeat(a, count), np.repeat(b, count), np.repeat(outcome, count), 6, intervals="sandwich"
    )

    np.testing.assert_allclose(counted.ci_lower, repeated.ci_lower, rtol=1e-12)
    np.testing.assert_array_equal(counted.rank_upper, repeated.rank_upper)


def test_an_anchor_shifts_sandwich_intervals_without_changing_their_width() -> None:
    rng = np.random.default_rng(37)
    a, b, outcome = simulate(rng, rng.normal(0, 1, 5), 2000)

    free = rate(a, b, outcome, 5, intervals="sandwich")
    pinned = rate(a, b, outcome, 5, intervals="sandwich", anchor=3, anchor_rating=1250.0)

    shift = 1250.0 - free.rating[3]
    assert pinned.rating[3] == pytest.approx(1250.0)
    np.testing.assert_allclose(pinned.ci_lower, free.ci_lower + shift)
    np.testing.assert_allclose(pinned.ci_upper, free.ci_upper + shift)


def test_a_model_without_votes_sits_at_the_centre_with_a_sandwich_of_zero_width() -> None:
    a, b, outcome = np.array([0, 1, 0, 1]), np.array([1, 0, 1, 0]), np.array([A_WINS, A_WINS, B_WINS, TIE])
    result = rate(a, b, outcome, 3, intervals="sandwich")
    np.testing.assert_allclose([result.rating[2], result.ci_lower[2], result.ci_upper[2]], 1000.0)
    assert result.ci_upper[0] - result.ci_lower[0] > 100


def test_it_refuses_an_unknown_kind_of_interval() -> None:
    with pytest.raises(ValueError, match="intervals must be one of bootstrap, sandwich"):
        rate(np.array([0]), np.array([1]), np.array([A_WINS]), 2, intervals="jackknife")


# --- Weights ------------------------------------------------------------------------------------------


def test_uniform_weights_give_exactly_the_unweighted_ratings_and_intervals() -> None:
    rng = np.random.default_rng(40)
    a, b, outcome = simulate(rng, rng.normal(0, 1, 6), 3000, tie_share=0.2)
    x = rng.normal(0, 1, (a.size, 2))
    uniform = np.full(a.size, 0.37)

    for intervals in ("bootstrap", "sandwich"):
        plain = rate(a, b, outcome, 6, bootstrap=100, intervals=intervals)
        weighted = rate(a, b, outcome, 6, bootstrap=100, intervals=intervals, weights=uniform)
        for field in ("rating", "ci_lower", "ci_upper", "rank_lower", "rank_upper"):
            np.testing.assert_array_equal(getattr(weighted, field), getattr(plain, field))
        styled = rate_style(a, b, outcome, x, 6, bootstrap=20, intervals=intervals)
        styled_weighted = rate_style(a, b, outcome, x, 6, bootstrap=20, intervals=intervals, weights=uniform)
        np.testing.assert_array_equal(styled_weighted.ratings.ci_upper, styled.ratings.ci_upper)
        np.testing.assert_array_equal(styled_weighted.coef_lower, styled.coef_lower)


def test_whole_number_weights_fit_like_repeated_votes() -> None:
    """A weight of 3 is the vote three times over in the estimate (not in the intervals: three
    copies of a vote are three times the evidence, one vote weighed 3 is not)."""
    rng = np.random.default_rng(41)
    a, b, outcome = simulate(rng, rng.normal(0, 1, 6), 4000, tie_share=0.3)
    w = rng.integers(1, 4, a.size)

    weighted = rate(a, b, outcome, 6, intervals="sandwich", weights=w.astype(float))
    repeated = rate(a, b, outcome, 6, intervals="sandwich", count=w)

    np.testing.assert_allclose(weighted.rating, repeated.rating, atol=1e-3)
    assert (
        half_width(weighted.ci_lower, weighted.ci_upper) > half_width(repeated.ci_lower, repeated.ci_upper)
    ).all()


def test_pair_frequency_weights_are_one_over_the_pairs_battles_floored_at_50() -> None:
    a = np.array([0] * 60 + [2] * 10 + [1] * 40)
    b = np.array([1] * 30 + [1] * 0 + [1] * 30 + [1] * 10 + [0] * 40)
    b[30:60] = 0
    a[30:60] = 1  # the pair (0, 1) either way round: 60 + 40 battles
    w = pair_frequency_weights(a, b, 3)

    np.testing.assert_allclose(w[:60], 1 / 100)
    np.testing.assert_allclose(w[60:70], 1 / 50)  # (1, 2): 10 battles, floored at 50
    np.testing.assert_allclose(w[70:], 1 / 100)
    counted = pair_frequency_weights(np.array([0, 2]), np.array([1, 1]), 3, count=np.array([80, 5]))
    np.testing.assert_allclose(counted, [1 / 80, 1 / 50])


def test_pair_frequency_weights_give_every_well_sampled_pair_the_same_total_weight() -> None:
    rng = np.random.default_rng(42)
    # Pair (0, 1) drawn ten times as often as the others.
    a, b, outcome = simulate(rng, np.array([0.4, 0.0, -0.2, -0.3]), 6000)
    many = rng.random(a.size) < 0.7
    a[many], b[many] = 0, 1
    w = pair_frequency_weights(a, b, 4)
    key = np.minimum(a, b) * 4 + np.maximum(a, b)
    totals = np.array([w[key == k].sum() for k in np.unique(key)])
    np.testing.assert_allclose(totals, 1.0)

    weighted = rate(a, b, outcome, 4, intervals="sandwich", weights=w)
    plain = rate(a, b, outcome, 4, intervals="sandwich")
    # Weighing the much-sampled pair down widens the intervals of the two models it holds.
    assert (
        half_width(weighted.ci_lower, weighted.ci_upper)[:2] > half_width(plain.ci_lower, plain.ci_upper)[:2]
    ).all()


def test_weighted_bootstrap_and_sandwich_intervals_agree() -> None:
    rng = np.random.default_rng(43)
    a, b, outcome = simulate(rng, rng.normal(0, 1, 10), 80_000, tie_share=0.3)
    propensity = np.where(a + b < 8, 0.03, 0.01)  # two levels: one row per (pair, outcome, weight)
    w = propensity_weights(propensity)

    boot = rate(a, b, outcome, 10, bootstrap=600, seed=3, weights=w, workers=2)
    sandwich = rate(a, b, outcome, 10, intervals="sandwich", weights=w)

    ratio = half_width(boot.ci_lower, boot.ci_upper) / half_width(sandwich.ci_lower, sandwich.ci_upper)
    assert (np.abs(ratio - 1) < 0.12).all() and 0.96 <= ratio.mean() <= 1.04
    again = rate(a, b, outcome, 10, bootstrap=600, seed=3, weights=w)
    np.testing.assert_array_equal(again.ci_lower, boot.ci_lower)


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        (np.array([1.0, -1.0, 1.0]), "weights\\[1\\] = -1.0 is not a positive finite number"),
        (np.array([1.0, np.nan, 1.0]), "weights\\[1\\] = nan"),
        (np.array([1.0, 1.0]), "one entry per vote \\(3\\)"),
    ],
)
def test_it_refuses_weights_that_are_not_one_positive_number_per_vote(
    weights: np.ndarray, message: str
) -> None:
    a, b, outcome = np.array([0, 1, 0]), np.array([1, 0, 1]), np.array([A_WINS, A_WINS, B_WINS])
    with pytest.raises(ValueError, match=message):
        rate(a, b, outcome, 2, weights=weights)


def test_propensities_must_be_probabilities() -> None:
    np.testing.assert_allclose(propensity_weights(np.array([0.5, 0.01, 1.0])), [2.0, 100.0, 1.0])
    for bad in (0.0, 1.5, np.nan):
        with pytest.raises(ValueError, match="is not a probability in \\(0, 1\\]"):
            propensity_weights(np.array([0.5, bad]))


# --- Ranks --------------------------------------------------------------------------------------------


def test_the_rank_range_runs_from_the_models_surely_above_to_those_not_surely_below() -> None:
    lower = np.array([30.0, 15.0, 10.0, 0.0, 12.0])
    upper = np.array([40.0, 25.0, 20.0, 5.0, 14.0])

    best, worst = rank_range(lower, upper)

    # 30-40 is above all; 15-25, 10-20 and 12-14 overlap (but 12-14 lies below 15-25); 0-5 below all.
    assert best.tolist() == [1, 2, 2, 5, 3]
    assert worst.tolist() == [1, 3, 4, 5, 4]
    rated = np.array([True, True, False, True, True])
    best, worst = rank_range(lower, upper, rated)
    assert best.tolist() == [1, 2, 0, 4, 3] and worst.tolist() == [1, 2, 0, 4, 3]


def test_ratings_carry_the_rank_range_for_both_kinds_of_interval() -> None:
    rng = np.random.default_rng(44)
    a, b, outcome = simulate(rng, np.array([1.0, 0.95, 0.0, -1.0]), 3000)
    for intervals in ("bootstrap", "sandwich"):
        result = rate(a, b, outcome, 4, bootstrap=200, intervals=intervals)
        assert result.rank_lower[:2].tolist() == [1, 1] and result.rank_upper[:2].tolist() == [2, 2]
        assert result.rank_lower[2:].tolist() == result.rank_upper[2:].tolist() == [3, 4]
        np.testing.assert_array_equal(result.rank, result.rank_lower)


# --- Young boards -------------------------------------------------------------------------------------


def young_board(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A dozen to forty battles among four models; model 0 has won every one of its battles, and the
    headers feature is zero on every answer but one, so its standardised column is one spike."""
    rng = np.random.default_rng(seed)
    votes = int(rng.integers(8, 40))
    a = rng.integers(0, 4, votes)
    b = (a + rng.integers(1, 4, votes)) % 4
    outcome = np.where(rng.random(votes) < 0.5, A_WINS, B_WINS)
    outcome = np.where(a == 0, A_WINS, np.where(b == 0, B_WINS, outcome))
    count_a = rng.poisson(300, (votes, 2)).astype(float)
    count_b = rng.poisson(300, (votes, 2)).astype(float)
    count_a[:, 1] = count_b[:, 1] = 0
    count_a[rng.integers(votes), 1] = 2
    return a, b, outcome, style_delta(count_a, count_b)


@pytest.mark.parametrize("seed", [2, 5, 10, 11, 12])
def test_a_young_style_board_shows_no_absurd_numbers_and_no_overflow(seed: int) -> None:
    """Before the ridge on the style coefficients these boards showed ratings of 3855 to 7566 with
    upper bounds up to 16139, coefficients up to -63 and an overflow warning in exp."""
    a, b, outcome, x = young_board(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an overflow warning fails the test
        boot = rate_style(a, b, outcome, x, 4, bootstrap=100, seed=seed)
        sandwich = rate_style(a, b, outcome, x, 4, intervals="sandwich")

    for result in (boot, sandwich):
        assert np.abs(result.ratings.rating - 1000).max() < 2500
        assert np.abs(result.ratings.ci_upper - 1000).max() < 3500
        assert np.abs(result.coef).max() < 3


def test_min_votes_reports_an_unbeaten_model_and_a_thin_one_as_not_yet_rated() -> None:
    a, b, outcome, x = young_board(2)
    a = np.append(a, [1, 2])
    b = np.append(b, [3, 3])
    outcome = np.append(outcome, [A_WINS, B_WINS])
    x = np.vstack([x, np.zeros((2, 2))])
    a, b, x = np.append(a, [4]), np.append(b, [1]), np.vstack([x, np.zeros((1, 2))])
    outcome = np.append(outcome, [TIE])  # model 4: one battle

    for intervals in ("bootstrap", "sandwich"):
        plain = rate(a, b, outcome, 5, bootstrap=100, intervals=intervals, min_votes=5)
        styled = rate_style(a, b, outcome, x, 5, bootstrap=50, intervals=intervals, min_votes=5)
        for result in (plain, styled.ratings):
            assert result.rated.tolist() == [False, True, True, True, False]
            assert np.isnan(result.rating[[0, 4]]).all() and np.isnan(result.ci_upper[[0, 4]]).all()
            assert result.rank[[0, 4]].tolist() == result.rank_upper[[0, 4]].tolist() == [0, 0]
            # The published scale is centred on the models it rates.
            assert result.rating[1:4].mean() == pytest.approx(1000.0)
            assert np.abs(result.ci_lower[1:4] - 1000).max() < 1000
            assert set(result.rank_upper[1:4]) <= {1, 2, 3}
    assert rate(a, b, outcome, 5, bootstrap=10).rated.all()  # no min_votes: every model, as before


def test_a_style_feature_without_variation_is_not_identified_when_min_votes_is_given() -> None:
    rng = np.random.default_rng(45)
    a, b, outcome, x = simulate_style(rng, np.array([0.3, 0.0, -0.3]), np.array([0.4]), 600, np.zeros(3))
    x = np.hstack([x, np.zeros((a.size, 1))])

    shown = rate_style(a, b, outcome, x, 3, intervals="sandwich", min_votes=10)
    before = rate_style(a, b, outcome, x, 3, intervals="sandwich")

    assert np.isnan([shown.coef[1], shown.coef_lower[1], shown.coef_upper[1]]).all()
    assert np.isfinite(shown.coef[0]) and shown.ratings.rated.all()
    assert before.coef[1] == before.coef_lower[1] == 0.0
