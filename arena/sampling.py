"""How likely each pair of models is to be drawn into an anonymous battle: pure numpy, no Django.

Pairs are listed as np.triu_indices(K, 1) lists them: (0, 1), (0, 2), ..., (K-2, K-1), one entry per
unordered pair of the K models (`pairs`). Every function returns one probability per pair, summing
to 1, so that the battle can store the probability of the pair it got (its propensity).

weights (`weight_pairs`)
    The operator's sampler: a first model by weight, a second by weight among the rest, so
    P({i, j}) = w_i/W * w_j/(W - w_i) + w_j/W * w_i/(W - w_j).

active (`active_pairs`)
    A mixture, over the models that can be drawn now:
      floor  spread evenly over every pair, so that no pair's probability falls below floor/pairs
             and an inverse-propensity weight stays within 1/floor of a uniform sampler's;
      boost  spread over the pairs of new models (few votes on the board, or none yet), by weight;
      rest   in proportion to w_i * w_j * gain_ij, the gains of the latest plan (`plan_gains`); a
             pair with a model the plan does not know (new since, or a private variant, never on
             the public board) counts as an average pair, at the mean of the others' gains.
    Without gains for any pair (no plan covers these models) the rest follows the weights sampler.

Gains (`plan_gains`)
    Chiang et al. 2024 (arXiv 2403.04132, eq. 9) draw a pair in proportion to how much one more vote
    on it would shrink the uncertainty of what is estimated. Here that is the board's ratings. Their
    covariance C is the inverse of the Bradley-Terry information of the votes so far (at the board's
    ratings, with a weak prior so that a model without votes is very uncertain but finite, then
    mean-centred as the board shows them); one more vote on the pair (i, j), of information
    q = p(1 - p) along u = e_i - e_j, shrinks model k's variance by
        q * (C u)_k**2 / (1 + q * u'Cu)                                   (Sherman-Morrison).
    A pair's gain is the square root of those shrinks summed over the models, each model weighted by
    the width of its interval on the board to the power 2 * FOCUS: the widest intervals, those that
    keep the board from a target precision, weigh most. The widths come from the board rather than
    from C, because the board's intervals account for what C leaves out (its vote weights).
    For a pair estimated from its own n votes alone (per-vote variance s2) the root of the shrink is
    sqrt(s2/(n(n+1))), where eq. 9 has the shrink of the standard deviation,
    sqrt(s2/n) - sqrt(s2/(n+1)): both grow with the pair's uncertainty and fall with its votes, the
    root of the shrink as 1/n rather than n^-1.5, which spreads the votes better on the simulated
    arenas of bench/active.py.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import expit

# Display ratings to logits: 400 points per factor of 10 in the odds (leaderboard.rating's scale).
LOGITS_PER_POINT = math.log(10.0) / 400.0
# Prior precision on each logit strength: a standard deviation of 10 logits (1700 points), weak
# beside a handful of votes, but finite for a model that has none.
PRIOR = 1e-2
# How strongly the gains favour the widest intervals on the board (see bench/active.py).
FOCUS = 10.0


def pairs(n_models: int) -> tuple[np.ndarray, np.ndarray]:
    """The (i, j) indices of every unordered pair, i < j, in the order of the probabilities."""
    i, j = np.triu_indices(n_models, 1)
    return i, j


def weight_pairs(weights: np.ndarray) -> np.ndarray:
    """The operator's sampler: each pair's probability when both models are drawn by weight."""
    w = np.asarray(weights, dtype=np.float64)
    i, j = pairs(w.size)
    total = w.sum()
    return w[i] * w[j] / total * (1.0 / (total - w[i]) + 1.0 / (total - w[j]))


def active_pairs(
    weights: np.ndarray, gains: np.ndarray, new: np.ndarray, *, floor: float, boost: float
) -> np.ndarray:
    """The active sampler's pair probabilities (see the module's docstring).

    gains holds one value per pair, NaN where the plan lacks either model; new marks the models with
    few votes.
    """
    w = np.asarray(weights, dtype=np.float64)
    i, j = pairs(w.size)
    both = w[i] * w[j]
    g = np.asarray(gains, dtype=np.float64)
    known = ~np.isnan(g)
    score = both * np.where(known, g, g[known].mean() if known.any() else 0.0)
    rest = score / score.sum() if score.sum() > 0 else weight_pairs(w)
    newish = np.asarray(new, dtype=bool)
    touching = both * (newish[i] | newish[j])
    boosted = touching / touching.sum() if touching.sum() > 0 else np.zeros_like(both)
    share = boost if touching.sum() > 0 else 0.0
    p = floor / i.size + share * boosted + (1.0 - floor - share) * rest
    return p / p.sum()


def plan_gains(
    n_models: int,
    pair_i: np.ndarray,
    pair_j: np.ndarray,
    votes: np.ndarray,
    ratings: np.ndarray,
    widths: np.ndarray,
    focus: np.ndarray,
) -> np.ndarray:
    """Each pair's gain (see the module's docstring), one per pair of `pairs(n_models)`.

    pair_i, pair_j and votes give the votes per pair (a pair may repeat; its votes add up), ratings
    the board's display ratings and widths its intervals' widths (in any unit: only their ratios
    count), focus the models whose intervals count (those that can be drawn).
    """
    k = n_models
    logits = np.asarray(ratings, dtype=np.float64) * LOGITS_PER_POINT
    a, b = np.asarray(pair_i), np.asarray(pair_j)
    n = np.asarray(votes, dtype=np.float64)
    p = expit(logits[a] - logits[b])
    weight = n * p * (1.0 - p)
    info = np.zeros((k, k))
    np.add.at(info, (a, b), -weight)
    np.add.at(info, (b, a), -weight)
    info[np.diag_indices(k)] = -info.sum(axis=1) + PRIOR
    centre = np.eye(k) - 1.0 / k
    cov = centre @ np.linalg.inv(info) @ centre
    width = np.nan_to_num(np.asarray(widths, dtype=np.float64), nan=0.0, posinf=0.0)
    chosen = np.asarray(focus, dtype=bool) & (width > 0)
    lam = np.zeros(k)
    if chosen.any():
        lam[chosen] = (width[chosen] / width[chosen].max()) ** (2 * FOCUS)
    else:
        lam[:] = 1.0  # no interval to go by: every model alike
    lam /= lam.sum()
    spread = cov @ (lam[:, None] * cov)  # sum over models m of lam_m * C[m, :]' C[m, :]
    i, j = pairs(k)
    q = expit(logits[i] - logits[j])
    q *= 1.0 - q
    diff = cov[i, i] + cov[j, j] - 2.0 * cov[i, j]
    shrink = spread[i, i] + spread[j, j] - 2.0 * spread[i, j]
    return np.sqrt(np.maximum(q * shrink / (1.0 + q * diff), 0.0))


def choose(p: np.ndarray, u: float) -> int:
    """The pair a uniform number u in [0, 1) falls on."""
    cumulative = np.cumsum(p)
    return min(int(np.searchsorted(cumulative, u * cumulative[-1], side="right")), p.size - 1)
