"""Battles drawn from known strengths (and style coefficients), for the rating tests."""

from __future__ import annotations

import numpy as np
from scipy.special import expit

from leaderboard.rating import A_WINS, B_WINS, SCALE, TIE, style_delta


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


def centred(theta: np.ndarray) -> np.ndarray:
    return theta - theta.mean()


def log_strengths(ratings: np.ndarray) -> np.ndarray:
    return (ratings - 1000.0) / SCALE
