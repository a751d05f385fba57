"""Sandwich (robust) intervals: the closed-form covariance of the (weighted) Bradley-Terry estimate.

Covariance
    The estimate solves sum_b w_b s_b(theta) = ridge * theta, where s_b is battle b's score (the
    gradient of its log-likelihood: (y_b - p_b) (e_a - e_b), ties y = 1/2) and w_b its weight. Its
    covariance is H^-1 J H^-1 (Huber 1967; White 1982), with H = sum_b w_b p_b (1 - p_b) (e_a - e_b)
    (e_a - e_b)' + ridge I the Hessian of the penalised objective and J = sum_b w_b^2 s_b s_b' the sum
    of the per-battle score outer products. When the model is right and the weights are 1, J is
    close to H and this is the inverse Fisher information; when it is not (voters who disagree with
    each other, weights), the sandwich stays honest where H^-1 alone would not. Both are sums over
    battles that depend on a battle only through its (pair, outcome) cell and its weight, so the
    plain board needs per-cell sums of w and w^2 (`bradley_terry._weighted_cells`): O(votes) to
    aggregate, O(pairs + models^3) after. Style control has continuous covariates and sums over
    battles (`style._style_covariance`). This follows lmarena/arena-rank and Chiang et al. 2024
    (arXiv 2403.04132); intervals are estimate +/- 1.96 standard errors (normal approximation), on
    the display scale SCALE points per logit.

Identifiability
    The likelihood does not change when every strength of a connected part of the comparison graph
    moves by one constant: along that direction (the part's all-ones vector) H has only the ridge, a
    1e4-fold smaller eigenvalue that would cost the solve its accuracy, and J is exactly zero. The
    covariance is therefore computed with H + s * (the projection on those directions), which leaves
    H^-1 J H^-1 unchanged (J sends them to zero and they are eigenvectors of H) but is well
    conditioned. What comes out is the covariance of the strengths as fitted, mean zero within each
    part; `centred_variance` turns it into the variance of each strength minus the mean of the rated
    models, the published ratings' constraint. An anchor shifts every rating and bound by one
    constant (as for the bootstrap), so it moves no interval's width.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
import scipy.sparse
import scipy.sparse.csgraph
import scipy.special

from leaderboard.rating.bradley_terry import (
    RIDGE,
    _check_count,
    _check_votes,
    _counts_from_cells,
    _fit_scores,
    _Graph,
    _pair_outcome_cells,
    _weighted_cells,
)
from leaderboard.rating.weights import _normalised


def _components(i: np.ndarray, j: np.ndarray, n_models: int) -> np.ndarray:
    """Label of each model's connected part of the comparison graph (a model without votes alone)."""
    adjacency = scipy.sparse.csr_matrix((np.ones(i.size), (i, j)), shape=(n_models, n_models))
    _, label = scipy.sparse.csgraph.connected_components(adjacency, directed=False)
    return np.asarray(label)


def _robust_covariance(hessian: np.ndarray, outer: np.ndarray, label: np.ndarray) -> np.ndarray:
    """H^-1 J H^-1 for (m + k) parameters, the first m strengths labelled by connected part.

    Each part's all-ones direction (in the strengths) is lifted from the ridge to the mean diagonal
    of H before solving; see the module's docstring for why that changes nothing but the accuracy.
    """
    d, m = hessian.shape[0], label.size
    if d == 0:
        return np.zeros((0, 0))
    lifted = hessian.copy()
    if m:
        lift = max(float(np.trace(hessian)) / d, 1.0)
        size = np.bincount(label).astype(np.float64)
        same = label[:, None] == label[None, :]
        lifted[:m, :m] += same * (lift / size[label])[None, :]
    factor = scipy.linalg.cho_factor(lifted)
    left = scipy.linalg.cho_solve(factor, outer)
    cov = scipy.linalg.cho_solve(factor, left.T)
    covariance: np.ndarray = 0.5 * (cov + cov.T)
    return covariance


def centred_variance(cov: np.ndarray, rated: np.ndarray | None = None) -> np.ndarray:
    """Variance of each theta_i - mean(theta over rated models), from the strengths' covariance (m, m).

    rated, a bool mask, defaults to every model (the mean-centred scale of `fit`).
    """
    m = cov.shape[0]
    u = np.full(m, 1.0 / max(m, 1)) if rated is None else rated / max(int(np.count_nonzero(rated)), 1)
    cu = cov @ u
    variance: np.ndarray = np.diag(cov) - 2.0 * cu + float(u @ cu)
    return np.maximum(variance, 0.0)


def _pair_covariance(
    i: np.ndarray,
    j: np.ndarray,
    theta: np.ndarray,
    sums: np.ndarray,
    squares: np.ndarray,
    n_models: int,
    ridge: float = RIDGE,
) -> np.ndarray:
    """H^-1 J H^-1 of the plain board, (n_models, n_models) logits^2, from per-(pair, outcome) cells.

    sums and squares are (pairs, 3): per cell (i wins, j wins, half-half) the sum of the battles'
    weights and of their squares (both the battle counts when unweighted).
    """
    d = theta[i] - theta[j]
    p = scipy.special.expit(d)
    q = scipy.special.expit(-d)
    graph = _Graph.build(i, j, n_models)
    curvature = sums.sum(axis=1) * p * q
    # Score of i per battle: 1 - p = q when i wins, -p when j wins, 1/2 - p = (q - p) / 2 half-half.
    spread = squares[:, 0] * q * q + squares[:, 1] * p * p + squares[:, 2] * (0.25 * (q - p) ** 2)
    hessian = graph.hessian(curvature[:, None])[:, :, 0]
    hessian[np.diag_indices(n_models)] += ridge
    outer = graph.hessian(spread[:, None])[:, :, 0]
    return _robust_covariance(hessian, outer, _components(i, j, n_models))


def sandwich_covariance(
    model_a: np.ndarray,
    model_b: np.ndarray,
    outcome: np.ndarray,
    n_models: int,
    *,
    count: np.ndarray | None = None,
    weights: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The (weighted) fit and its sandwich covariance: (theta (m,), cov (m, m)), both in logits.

    theta is mean-centred as `fit` returns it; cov is its covariance (rows and columns sum to zero
    within each connected part). count and weights as for `rate`. For the variance of pair
    differences (theta_i - theta_j), which an active sampler weighs, take cov_ii + cov_jj - 2 cov_ij.
    """
    a, b, o = _check_votes(model_a, model_b, outcome, n_models)
    c = _check_count(count, a.size)
    w = _normalised(weights, c, a.size)
    i, j, score, n, sums, squares = _pair_sums(a, b, o, n_models, c, w)
    theta = _fit_scores(i, j, score, n, n_models)
    return theta, _pair_covariance(i, j, theta, sums, squares, n_models)


def _pair_sums(
    a: np.ndarray,
    b: np.ndarray,
    o: np.ndarray,
    n_models: int,
    count: np.ndarray | None,
    weight: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """i, j, weighted score of i, weighted battles, and the per-cell sums and sums of squares."""
    if weight is None:
        keys, cells = _pair_outcome_cells(a, b, o, n_models, count)
        counts = _counts_from_cells(keys, cells, n_models)
        sums = cells.astype(np.float64)
        return counts.i, counts.j, counts.wins_i, counts.n.astype(np.float64), sums, sums
    keys, cells, sums, squares = _weighted_cells(a, b, o, n_models, count, weight)
    i, j = keys // max(n_models, 1), keys % max(n_models, 1)
    return i, j, sums[:, 0] + 0.5 * sums[:, 2], sums.sum(axis=1), sums, squares
