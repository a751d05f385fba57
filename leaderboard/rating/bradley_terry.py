"""Bradley-Terry by maximum likelihood on votes aggregated to pair counts.

Model
    Model i has a log-strength theta_i and beats model j with probability
    sigmoid(theta_i - theta_j). A tie or a both-bad vote counts as half a win for each side, so a pair
    with score s (wins + ties/2) out of n battles contributes s*log(p) + (n - s)*log(1 - p) to the
    log-likelihood. That likelihood depends on the votes only through per-pair counts, so votes are
    first aggregated to one row per unordered pair (`aggregate`), and the fit costs O(pairs), not
    O(votes).

Fit
    Newton's method on the penalised negative log-likelihood with the analytic gradient and Hessian
    (see `newton`), stopping when a step is below 1e-6 logits in every coordinate.

Ridge
    The objective carries a tiny L2 penalty, RIDGE/2 * sum(theta**2) with RIDGE = 1e-4 (a Gaussian prior
    with a standard deviation of 100 logits). It does three things. A model with only wins (or only
    losses) has no finite maximum-likelihood strength; with the ridge it stays finite but visibly
    extreme, with a wide interval. The likelihood does not change when every theta moves by the same
    constant; the ridge picks the solution with mean zero (within each connected part of the
    comparison graph, because the likelihood's gradient sums to zero over each part). And it shifts a
    model with n battles by only about RIDGE * theta / (n p (1 - p)): the tests reproduce the LLMFAO
    reference to 1e-3.

Scale
    Display rating = CENTRE + SCALE * theta = 1000 + 400 * log10-odds, with theta mean-centred over all
    models passed in, so their mean rating is 1000 (see `bootstrap.rate` for the anchor).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse
import scipy.special

from leaderboard.rating.newton import _newton
from leaderboard.rating.outcomes import A_WINS, B_WINS, BOTH_BAD, TIE

RIDGE = 1e-4
CENTRE = 1000.0
SCALE = 400.0 / math.log(10.0)  # display points per logit

# Pair counts are aggregated through a dense (n_models**2) bincount unless that table would be far
# larger than the votes themselves; then a sort-based np.unique is cheaper.
_DENSE_PAIRS_PER_VOTE = 4


@dataclass(frozen=True)
class PairCounts:
    """Votes aggregated per unordered pair of models, one row per pair with i < j, sorted by (i, j).

    wins_i and wins_j count a tie or a both-bad vote as half a win for each side, so
    wins_i + wins_j == n. ties is the number of those half-half battles; the bootstrap needs it to
    resample battles exactly.
    """

    i: np.ndarray  # int64
    j: np.ndarray  # int64
    wins_i: np.ndarray  # float64
    wins_j: np.ndarray  # float64
    n: np.ndarray  # int64, battles
    ties: np.ndarray  # int64


# --- Aggregation -------------------------------------------------------------------------------------


def _check_votes(
    model_a: np.ndarray, model_b: np.ndarray, outcome: np.ndarray, n_models: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    a = np.asarray(model_a)
    b = np.asarray(model_b)
    o = np.asarray(outcome)
    if a.ndim != 1 or a.shape != b.shape or a.shape != o.shape:
        raise ValueError("model_a, model_b and outcome must be 1-D arrays of the same length")
    # Integer arrays keep their dtype (no int64 copies of millions of votes); the pair keys that need
    # 64 bits are built as such.
    a, b, o = _integers("model_a", a), _integers("model_b", b), _integers("outcome", o)
    for name, arr in (("model_a", a), ("model_b", b)):
        bad = np.flatnonzero((arr < 0) | (arr >= n_models))
        if bad.size:
            raise ValueError(f"{name}[{bad[0]}] = {arr[bad[0]]} is not a model index below {n_models}")
    bad = np.flatnonzero(a == b)
    if bad.size:
        raise ValueError(f"vote {bad[0]} pits model {a[bad[0]]} against itself")
    bad = np.flatnonzero((o < A_WINS) | (o > BOTH_BAD))
    if bad.size:
        raise ValueError(f"outcome[{bad[0]}] = {o[bad[0]]} is not one of A_WINS, B_WINS, TIE, BOTH_BAD")
    return a, b, o


def _integers(name: str, arr: np.ndarray) -> np.ndarray:
    if np.issubdtype(arr.dtype, np.integer):
        return arr
    if arr.size:
        raise ValueError(f"{name} must hold integers, not {arr.dtype}")
    return arr.astype(np.int64)  # an empty list arrives as float64


def _check_count(count: np.ndarray | None, votes: int) -> np.ndarray | None:
    if count is None:
        return None
    c = _integers("count", np.asarray(count))
    if c.shape != (votes,):
        raise ValueError(f"count must be a 1-D array with one entry per vote ({votes}), got shape {c.shape}")
    bad = np.flatnonzero(c < 0)
    if bad.size:
        raise ValueError(f"count[{bad[0]}] = {c[bad[0]]} is negative")
    return c


def _bincount(keys: np.ndarray, count: np.ndarray | None, length: int) -> np.ndarray:
    """np.bincount of keys, each key counted `count` times when given (exact: float64 sums of ints)."""
    if count is None:
        return np.bincount(keys, minlength=length)
    return np.bincount(keys, weights=count, minlength=length).astype(np.int64)


def _pair_outcome_cells(
    a: np.ndarray, b: np.ndarray, o: np.ndarray, n_models: int, count: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Key (lo * n_models + hi) of each pair seen and its (lo wins, hi wins, half-half) counts.

    Built in place in one int64 array plus byte-sized temporaries, to keep peak memory near the size
    of the votes themselves. count, if given, is each row's multiplicity.
    """
    # Outcome class relative to the pair: 0 the lower index wins, 1 the higher, 2 half-half.
    cls = ((a < b) == (o == B_WINS)).astype(np.int8)
    cls[o >= TIE] = 2
    key = np.minimum(a, b).astype(np.int64)
    key *= n_models
    key += np.maximum(a, b)
    if n_models * n_models <= _DENSE_PAIRS_PER_VOTE * a.size + 65536:
        key *= 3
        key += cls
        cells = _bincount(key, count, 3 * n_models * n_models).reshape(-1, 3)
        keys = np.flatnonzero(cells.any(axis=1))
        return keys, cells[keys]
    keys, inverse = np.unique(key, return_inverse=True)
    inverse *= 3
    inverse += cls
    cells = _bincount(inverse, count, 3 * keys.size).reshape(-1, 3)
    seen = cells.any(axis=1)  # a pair whose rows all have count 0 was never seen
    return keys[seen], cells[seen]


def aggregate(
    model_a: np.ndarray,
    model_b: np.ndarray,
    outcome: np.ndarray,
    n_models: int,
    *,
    count: np.ndarray | None = None,
) -> PairCounts:
    """Count votes per unordered pair of models (see PairCounts): O(votes), no loop over votes.

    count, if given, is a non-negative whole number per row: the row stands for that many identical
    votes (rows already aggregated by SQL), with the same result as repeating it. Raises ValueError
    for an index out of range, a model against itself, an unknown outcome code or a bad count.
    """
    a, b, o = _check_votes(model_a, model_b, outcome, n_models)
    keys, cells = _pair_outcome_cells(a, b, o, n_models, _check_count(count, a.size))
    return _counts_from_cells(keys, cells, n_models)


def _weighted_cells(
    a: np.ndarray,
    b: np.ndarray,
    o: np.ndarray,
    n_models: int,
    count: np.ndarray | None,
    weight: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """`_pair_outcome_cells` with per-vote weights: keys, battles (pairs, 3), and per cell the sum of
    the weights and of their squares (each row counted `count` times), both (pairs, 3) float64.

    The fit needs the sums, the sandwich's score variance the sums of squares.
    """
    cls = ((a < b) == (o == B_WINS)).astype(np.int64)
    cls[o >= TIE] = 2
    key = np.minimum(a, b).astype(np.int64) * n_models + np.maximum(a, b)
    if n_models * n_models <= _DENSE_PAIRS_PER_VOTE * a.size + 65536:
        cell, length, keys = key * 3 + cls, 3 * n_models * n_models, None
    else:
        keys, inverse = np.unique(key, return_inverse=True)
        cell, length = inverse * 3 + cls, 3 * keys.size
    battles = _bincount(cell, count, length).reshape(-1, 3)
    per_row = weight if count is None else weight * count
    sums = np.bincount(cell, weights=per_row, minlength=length).reshape(-1, 3)
    squares = np.bincount(cell, weights=per_row * weight, minlength=length).reshape(-1, 3)
    seen = np.flatnonzero(battles.any(axis=1))
    pair_keys = seen if keys is None else keys[seen]
    return pair_keys, battles[seen], sums[seen], squares[seen]


def _counts_from_cells(keys: np.ndarray, cells: np.ndarray, n_models: int) -> PairCounts:
    ties = cells[:, 2]
    return PairCounts(
        i=keys // max(n_models, 1),
        j=keys % max(n_models, 1),
        wins_i=cells[:, 0] + 0.5 * ties,
        wins_j=cells[:, 1] + 0.5 * ties,
        n=cells.sum(axis=1),
        ties=ties,
    )


def _votes_per_model(
    a: np.ndarray, b: np.ndarray, n_models: int, count: np.ndarray | None = None
) -> np.ndarray:
    return _bincount(a, count, n_models) + _bincount(b, count, n_models)


# --- Bradley-Terry on pair counts --------------------------------------------------------------------


def _softplus_terms(d: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For logits d: softplus(d), sigmoid(d) and sigmoid(d) * (1 - sigmoid(d)), stable for any d.

    One exp serves all three: with e = exp(-|d|) and q = 1 / (1 + e) = sigmoid(|d|),
    softplus(d) = max(d, 0) + log1p(e), sigmoid(d) is q or 1 - q by the sign of d, and p(1 - p) = e q².
    The sign is applied with copysign (0.5 ± (q - 0.5), exact in floating point) because np.where on
    a random mask is branchy and costs more than the rest together; for d < 0 that gives p to an
    absolute 1e-16, all the gradient needs (the loss and the curvature use the exact forms).
    """
    e = np.exp(-np.abs(d))
    q = 1.0 / (1.0 + e)
    softplus = np.maximum(d, 0.0) + np.log1p(e)
    p = np.copysign(q - 0.5, d)
    p += 0.5
    pq = e * q
    pq *= q
    return softplus, p, pq


@dataclass(frozen=True)
class _Graph:
    """Which models each pair row joins, as sparse incidence matrices (n_models, pairs).

    A product with `incidence` (+1 at i, -1 at j) turns per-pair terms into per-model sums for all
    rounds at once, without a Python loop or np.add.at (which is slow); `touches` is its absolute value.
    """

    i: np.ndarray
    j: np.ndarray
    n_models: int
    incidence: scipy.sparse.csr_matrix
    touches: scipy.sparse.csr_matrix

    @classmethod
    def build(cls, i: np.ndarray, j: np.ndarray, n_models: int) -> _Graph:
        pairs = i.size
        rows = np.concatenate([i, j])
        cols = np.tile(np.arange(pairs), 2)
        signs = np.concatenate([np.ones(pairs), -np.ones(pairs)])
        incidence = scipy.sparse.csr_matrix((signs, (rows, cols)), shape=(n_models, pairs))
        return cls(i, j, n_models, incidence, abs(incidence))

    def hessian(self, pair_weight: np.ndarray, extra: int = 0) -> np.ndarray:
        """(n_models + extra, n_models + extra, rounds) Hessian of the pair terms; extra rows left zero.

        Filled as (d, d, rounds) because assigning whole rows of rounds at once is several times faster
        than scattering into (rounds, d, d); callers solve on the transposed view.
        """
        m = self.n_models
        hess = np.zeros((m + extra, m + extra, pair_weight.shape[1]))
        hess[self.i, self.j] = -pair_weight
        hess[self.j, self.i] = -pair_weight
        diag = np.arange(m)
        hess[diag, diag] = self.touches @ pair_weight
        return hess


def _column_sums(values: np.ndarray) -> np.ndarray:
    # einsum is several times faster than .sum(axis=0) on tall arrays with few columns.
    sums: np.ndarray = np.einsum("pr->r", values)
    return sums


class _PairProblem:
    """Bradley-Terry on pair counts: score (wins of i, ties half) and n per pair, one column per round."""

    def __init__(self, graph: _Graph, score: np.ndarray, n: np.ndarray, ridge: float) -> None:
        self.graph = graph
        self.score = score
        self.n = n
        self.ridge = ridge

    def _data(self, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if cols.size == self.score.shape[1]:
            return self.score, self.n
        return self.score[:, cols], self.n[:, cols]

    def loss_grad(self, theta: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        score, n = self._data(cols)
        d = theta[self.graph.i] - theta[self.graph.j]
        softplus, p, pq = _softplus_terms(d)
        # -log-likelihood of a pair: n * softplus(d) - score * d (ties as half wins)
        loss = _column_sums(n * softplus - score * d) + 0.5 * self.ridge * _column_sums(theta * theta)
        grad = self.graph.incidence @ (n * p - score) + self.ridge * theta
        return loss, grad, n * pq

    def hessian(self, weight: np.ndarray, cols: np.ndarray) -> np.ndarray:
        hess = self.graph.hessian(weight)
        diag = np.arange(self.graph.n_models)
        hess[diag, diag] += self.ridge
        return hess.transpose(2, 0, 1)


def fit(
    counts: PairCounts,
    n_models: int,
    *,
    init: np.ndarray | None = None,
    weights: np.ndarray | None = None,
    ridge: float = RIDGE,
) -> np.ndarray:
    """Bradley-Terry maximum likelihood (with the tiny ridge): mean-centred log-strengths, (n_models,).

    init warm-starts Newton (any vector; only differences matter). weights, one per pair row,
    multiply that row's counts (for weighting or a pair-level bootstrap; `rate` resamples battles
    within pairs instead, see `leaderboard.rating.bootstrap`).
    """
    score = counts.wins_i.astype(np.float64)
    n = counts.n.astype(np.float64)
    if weights is not None:
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != score.shape:
            raise ValueError(f"weights has shape {w.shape}, expected one per pair row {score.shape}")
        score, n = score * w, n * w
    return _fit_scores(counts.i, counts.j, score, n, n_models, init=init, ridge=ridge)


def _fit_scores(
    i: np.ndarray,
    j: np.ndarray,
    score: np.ndarray,
    n: np.ndarray,
    n_models: int,
    *,
    init: np.ndarray | None = None,
    ridge: float = RIDGE,
) -> np.ndarray:
    """`fit` on per-pair rows given as (weighted) score of i and (weighted) battles, float64."""
    start = np.zeros(n_models) if init is None else np.asarray(init, dtype=np.float64)
    if start.shape != (n_models,):
        raise ValueError(f"init has shape {start.shape}, expected ({n_models},)")
    start = start - start.mean() if n_models else start
    problem = _PairProblem(_Graph.build(i, j, n_models), score[:, None], n[:, None], ridge)
    theta = _newton(problem, start[:, None])[:, 0]
    return theta - theta.mean() if n_models else theta


# --- Matrices for display ----------------------------------------------------------------------------


def battle_count_matrix(counts: PairCounts, n_models: int) -> np.ndarray:
    """(n_models, n_models) int: battles between each two models, symmetric, zero diagonal."""
    out = np.zeros((n_models, n_models), dtype=np.int64)
    out[counts.i, counts.j] = counts.n
    out[counts.j, counts.i] = counts.n
    return out


def win_rate_matrix(counts: PairCounts, n_models: int) -> np.ndarray:
    """Observed share of row's wins over column (ties half); NaN where they never met and on the diagonal."""
    out = np.full((n_models, n_models), np.nan)
    out[counts.i, counts.j] = counts.wins_i / counts.n
    out[counts.j, counts.i] = counts.wins_j / counts.n
    return out


def predicted_win_matrix(theta: np.ndarray) -> np.ndarray:
    """Modelled probability that row beats column: sigmoid(theta_row - theta_col), 0.5 on the diagonal."""
    theta = np.asarray(theta, dtype=np.float64)
    wins: np.ndarray = scipy.special.expit(theta[:, None] - theta[None, :])
    return wins
