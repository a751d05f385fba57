"""Interval coverage over repeated simulated arenas: each kind of 95% interval holds the truth about 95%
of the time. The full figures, with more arenas, come from bench/sampling.py."""

from __future__ import annotations

import numpy as np
from scipy.special import expit

from leaderboard.rating import A_WINS, B_WINS, SCALE, TIE, propensity_weights, rate, rate_style
from tests.leaderboard.rating.simulate import centred, simulate, simulate_style

ARENAS = 200
THETA = np.linspace(1.0, -1.0, 6)
TRUTH = 1000.0 + SCALE * centred(THETA)
BETA = np.array([0.4, -0.2])
# The test's share of the target 0.93-0.97, widened by about two standard errors of 1,200 intervals.
LOW, HIGH = 0.92, 0.98


def covered(lower: np.ndarray, upper: np.ndarray, truth: np.ndarray) -> int:
    return int(((lower <= truth) & (truth <= upper)).sum())


def test_plain_bootstrap_and_sandwich_intervals_cover_the_truth_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(50)
    hits = {"bootstrap": 0, "sandwich": 0}
    for arena in range(ARENAS):
        a, b, outcome = simulate(rng, THETA, 3000, tie_share=0.3)
        for intervals in hits:
            result = rate(a, b, outcome, THETA.size, bootstrap=1000, seed=arena, intervals=intervals)
            hits[intervals] += covered(result.ci_lower, result.ci_upper, TRUTH)

    for intervals, hit in hits.items():
        assert LOW <= hit / (ARENAS * THETA.size) <= HIGH, (intervals, hit / (ARENAS * THETA.size))


def test_style_bootstrap_and_sandwich_intervals_cover_the_truth_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(51)
    hits = {"bootstrap": 0, "sandwich": 0}
    coef_hits = dict.fromkeys(hits, 0)
    for arena in range(ARENAS):
        habits = rng.normal(0, 0.3, THETA.size)  # verbosity that goes with the model, as in real arenas
        a, b, outcome, x = simulate_style(rng, THETA, BETA, 3000, habits)
        for intervals in hits:
            result = rate_style(a, b, outcome, x, THETA.size, bootstrap=100, seed=arena, intervals=intervals)
            hits[intervals] += covered(result.ratings.ci_lower, result.ratings.ci_upper, TRUTH)
            coef_hits[intervals] += covered(result.coef_lower, result.coef_upper, BETA)

    for intervals in hits:
        assert LOW <= hits[intervals] / (ARENAS * THETA.size) <= HIGH, (intervals, hits[intervals])
        assert 0.9 <= coef_hits[intervals] / (ARENAS * BETA.size) <= 0.99, (intervals, coef_hits[intervals])


def test_propensity_weighted_sandwich_intervals_cover_the_truth_under_a_skewed_sampler() -> None:
    """Pairs drawn with unequal, known probabilities (one pair 20 times as often as the rarest), each
    battle weighed by 1 / its pair's probability: the weighted sandwich stays honest."""
    rng = np.random.default_rng(52)
    first, second = np.triu_indices(THETA.size, 1)
    hit = 0
    for _ in range(ARENAS):
        chance = rng.lognormal(0.0, 1.0, first.size)
        chance /= chance.sum()
        pick = rng.choice(first.size, 3000, p=chance)
        swap = rng.random(pick.size) < 0.5
        a = np.where(swap, second[pick], first[pick])
        b = np.where(swap, first[pick], second[pick])
        p = expit(THETA[a] - THETA[b])
        u = rng.random(pick.size)
        tie = 0.3 * 2 * np.minimum(p, 1 - p)
        outcome = np.where(u < tie, TIE, np.where(u < tie + p - tie / 2, A_WINS, B_WINS))
        weights = propensity_weights(chance[pick])
        result = rate(a, b, outcome, THETA.size, intervals="sandwich", weights=weights)
        hit += covered(result.ci_lower, result.ci_upper, TRUTH)

    assert LOW <= hit / (ARENAS * THETA.size) <= HIGH
