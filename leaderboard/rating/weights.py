"""Per-battle weights for the fits: inverse propensity and inverse pair frequency.

A weighted fit maximises sum_b w_b * log-likelihood_b. Under Bradley-Terry any positive weights
estimate the same strengths; what they change is which comparisons the estimate leans on when the
model is not exactly right, and that is the point of them:

    propensity      w = 1 / (probability with which the battle's pair was drawn): the board then
                    estimates what uniform pairs would have given, whatever the sampler did
                    (Chiang et al. 2024, arXiv 2403.04132, eq. 7).
    pair-frequency  w = 1 / max(battles of the battle's unordered pair, 50), as lmarena/arena-rank
                    reweights: every pair with 50 battles or more weighs the same in total, so a
                    few much-sampled pairs do not dominate the board.

The engine rescales weights to average 1 per battle (`_normalised`): the estimate and the sandwich
intervals do not depend on their scale, but the ridge does, and at mean 1 it weighs what it weighs on
unweighted votes. Uniform weights therefore give exactly the unweighted fit.
"""

from __future__ import annotations

import numpy as np

from leaderboard.rating.bradley_terry import _check_count, _integers

WEIGHTINGS = ("none", "propensity", "pair-frequency")
# arena-rank's floor: pairs with fewer battles than this weigh as if they had this many.
PAIR_FREQUENCY_FLOOR = 50


def pair_frequency_weights(
    model_a: np.ndarray,
    model_b: np.ndarray,
    n_models: int,
    *,
    count: np.ndarray | None = None,
    floor: int = PAIR_FREQUENCY_FLOOR,
) -> np.ndarray:
    """Per row, 1 / max(battles of its unordered pair, floor), float64 (the engine rescales it).

    count, if given, is each row's multiplicity (see `aggregate`): the pair's battles are the sum of
    its rows' counts.
    """
    a = _integers("model_a", np.asarray(model_a))
    b = _integers("model_b", np.asarray(model_b))
    if a.ndim != 1 or a.shape != b.shape:
        raise ValueError("model_a and model_b must be 1-D arrays of the same length")
    if floor < 1:
        raise ValueError("floor must be at least 1")
    c = _check_count(count, a.size)
    key = np.minimum(a, b).astype(np.int64) * n_models + np.maximum(a, b)
    pairs, inverse = np.unique(key, return_inverse=True)
    battles = np.bincount(inverse, weights=c, minlength=pairs.size)
    weights: np.ndarray = 1.0 / np.maximum(battles, floor)[inverse]
    return weights


def propensity_weights(propensity: np.ndarray) -> np.ndarray:
    """Per battle, 1 / the probability with which its pair was drawn (each in (0, 1])."""
    p = np.asarray(propensity, dtype=np.float64)
    if p.ndim != 1:
        raise ValueError("propensity must be a 1-D array, one per battle")
    bad = np.flatnonzero(~((p > 0.0) & (p <= 1.0)))
    if bad.size:
        raise ValueError(f"propensity[{bad[0]}] = {p[bad[0]]} is not a probability in (0, 1]")
    weights: np.ndarray = 1.0 / p
    return weights


def _normalised(weights: np.ndarray | None, count: np.ndarray | None, votes: int) -> np.ndarray | None:
    """The weights rescaled to average 1 per battle (rows counted `count` times), or None for none.

    None also for weights that are all equal: those give exactly the unweighted fit, so the exact
    unweighted paths (and their bootstrap draws) serve them.
    """
    if weights is None:
        return None
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (votes,):
        raise ValueError(
            f"weights must be a 1-D array with one entry per vote ({votes}), got shape {w.shape}"
        )
    bad = np.flatnonzero(~(np.isfinite(w) & (w > 0.0)))
    if bad.size:
        raise ValueError(f"weights[{bad[0]}] = {w[bad[0]]} is not a positive finite number")
    if not votes or (w == w[0]).all():
        return None
    total = float(w.sum()) if count is None else float(w @ count)
    battles = float(votes) if count is None else float(count.sum())
    if total <= 0.0:  # every row has count 0: nothing to weigh
        return None
    normalised: np.ndarray = w * (battles / total)
    return normalised
