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
    on it would shrink the uncertainty of what is estimated. The board weighs each vote by
    1/propensity (their eq. 7), and then where the votes fell matters only through the propensities:
    after n votes drawn with pair probabilities P, model k's variance is about
        V_k(P) = sum_p c_pk / P_p / n,    c_pk = q_p * ((L+)_ik - (L+)_jk)**2,
    L+ the pseudo-inverse of the Bradley-Terry information of one vote on every pair (q_p = p(1 - p)
    at the board's ratings) and p = (i, j). The board is as good as its worst interval, so the plan
    aims at the pair probabilities that make the largest variance smallest: for weights lam on the
    models, P_p ~ sqrt(sum_k lam_k c_pk) minimises sum_k lam_k V_k, and multiplicative updates move
    lam to the models whose variance would be largest (a minimax: the weights where no other P lowers
    the maximum). A model's variance there is the board's own (its interval's half-width / 1.96,
    squared, n votes' worth) plus what n more votes at P, the floor mixed in, would add: a model left
    wide by the votes so far, or by an unlucky draw, is caught up. A pair's gain is that sqrt, the
    weights of the final update; what they leave out (the boost, the operator's weights) the mixture
    adds. Models not in focus (not drawable) weigh nothing.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import expit

# Display ratings to logits: 400 points per factor of 10 in the odds (leaderboard.rating's scale).
LOGITS_PER_POINT = math.log(10.0) / 400.0
# The board's intervals: estimate +/- Z standard errors.
Z = 1.96
# Multiplicative updates of the models' weights in `plan_gains`: enough to settle within a percent
# of the minimax on the arenas of bench/active.py, a second at 200 models.
ROUNDS = 300


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
    ratings: np.ndarray,
    widths: np.ndarray,
    focus: np.ndarray,
    *,
    votes: float,
    floor: float = 0.0,
) -> np.ndarray:
    """Each pair's gain (see the module's docstring), one per pair of `pairs(len(ratings))`.

    ratings are the board's display ratings and widths its 95% intervals' widths (display points; NaN
    or inf where a model has none), focus the models whose intervals count (those that can be
    drawn), votes the number of votes on the board and floor the share the sampler spreads evenly.
    """
    logits = np.asarray(ratings, dtype=np.float64) * LOGITS_PER_POINT
    k = logits.size
    i, j = pairs(k)
    if i.size == 0:
        return np.zeros(0)
    q = expit(logits[i] - logits[j])
    q *= 1.0 - q
    laplacian = np.zeros((k, k))
    laplacian[i, j] = laplacian[j, i] = -q
    laplacian[np.diag_indices(k)] = -laplacian.sum(axis=1)
    inverse = np.linalg.pinv(laplacian)
    width = np.nan_to_num(np.asarray(widths, dtype=np.float64), nan=0.0, posinf=0.0)
    counted = np.asarray(focus, dtype=bool)
    if not counted.any():
        counted = np.ones(k, dtype=bool)  # no model to go by: every model alike
    n = max(float(votes), 1.0)
    # The board's variance times n^2 (its score sums so far); a model without an interval adds none.
    past = np.where(counted & (width > 0), n * (width / (2 * Z) * LOGITS_PER_POINT) ** 2, 0.0) * n
    lam = counted / counted.sum()
    for _ in range(ROUNDS):
        gain = _gains(inverse, q, lam, i, j)
        mixed = floor / i.size + (1.0 - floor) * gain / gain.sum()
        # sum_p c_pk / mixed_p for every k, as the diagonal of L+ W L+ (W: the Laplacian weighing
        # pair p by q_p / mixed_p): k x k products, where c itself would be pairs x models.
        weighted = np.zeros((k, k))
        weighted[i, j] = weighted[j, i] = -q / mixed
        weighted[np.diag_indices(k)] = -weighted.sum(axis=1)
        added = np.einsum("ik,ik->k", inverse, weighted @ inverse)
        variance = np.where(counted, past + n * added, 0.0)
        lam = lam * np.exp(2.0 * (variance / variance.max() - 1.0))
        lam /= lam.sum()
    return _gains(inverse, q, lam, i, j)


def _gains(inverse: np.ndarray, q: np.ndarray, lam: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """sqrt(sum_k lam_k c_pk) for every pair p = (i, j): q_p (e_i - e_j)' L+ diag(lam) L+ (e_i - e_j)."""
    spread = inverse @ (lam[:, None] * inverse)
    diagonal = np.diag(spread)
    gains: np.ndarray = np.sqrt(np.maximum(q * (diagonal[i] + diagonal[j] - 2.0 * spread[i, j]), 0.0))
    return gains


def choose(p: np.ndarray, u: float) -> int:
    """The pair a uniform number u in [0, 1) falls on."""
    cumulative = np.cumsum(p)
    return min(int(np.searchsorted(cumulative, u * cumulative[-1], side="right")), p.size - 1)
