"""Bradley-Terry ratings for the arena: point estimates, bootstrap intervals, ranks and style control.

Pure numpy/scipy (STYLE rule 5): arrays in, arrays out, nothing from Django, no printing except in
the command-line `main()` at the bottom.

Model
    Model i has a log-strength theta_i and beats model j with probability
    sigmoid(theta_i - theta_j). A tie or a both-bad vote counts as half a win for each side, so a pair
    with score s (wins + ties/2) out of n battles contributes s*log(p) + (n - s)*log(1 - p) to the
    log-likelihood. That likelihood depends on the votes only through per-pair counts, so votes are
    first aggregated to one row per unordered pair (`aggregate`), and the fit costs O(pairs), not
    O(votes).

Fit
    Newton's method on the penalised negative log-likelihood with the analytic gradient and Hessian,
    safeguarded by a backtracking (Armijo) line search. It stops when a Newton step is smaller than
    1e-6 logits in every coordinate; convergence is quadratic there, so the error left after taking
    that last step is of order 1e-12.

Ridge
    The objective carries a tiny L2 penalty, RIDGE/2 * sum(theta**2) with RIDGE = 1e-4 (a Gaussian prior
    with a standard deviation of 100 logits). It does three things. A model with only wins (or only
    losses) has no finite maximum-likelihood strength; with the ridge it stays finite but visibly
    extreme (a model that won all 5 of its battles ends about 9 logits, 1570 display points, above the
    model it beat) with a wide interval. The likelihood does not change when every theta moves by the
    same constant; the ridge picks the solution with mean zero (within each connected part of the
    comparison graph, because the likelihood's gradient sums to zero over each part). And it shifts a
    model with n battles by only about RIDGE * theta / (n p (1 - p)), under 1e-5 relative on the LLMFAO
    reference data, which the tests reproduce to 1e-3.

Scale and anchor
    Display rating = 1000 + 400 * log10-odds = 1000 + (400 / ln 10) * theta, with theta mean-centred over
    all models passed in, so their mean rating is 1000. `rate(..., anchor=k, anchor_rating=r)` instead
    shifts every number (point ratings and interval bounds) by one constant so that model k's point
    rating is exactly r: differences, interval widths and ranks are the same as without an anchor. Pin
    a long-lived model to keep the displayed numbers stable while models come and go.

Bootstrap
    Poisson bootstrap over battles: every battle gets an independent Poisson(1) weight in each round.
    Summed over the c battles of one (pair, outcome) cell that weight is Poisson(c), so one draw per
    cell resamples battles exactly at the cost of the aggregated counts. Unlike the multinomial
    bootstrap the total number of battles varies between rounds (by about its square root); both
    give the same intervals asymptotically, and the Poisson one needs no sequential draws (the draws
    come from a table sampler, `_PoissonTable`, several times faster than numpy's). Each round is
    refitted by Newton warm-started from the point estimate, many rounds at once (batched Hessian
    solves), in chunks that bound memory, optionally in worker threads (`workers`, same output for any
    number); a round stops after a step below 1e-3 logits, leaving an error of about 1e-7. Intervals
    are the 2.5th and 97.5th percentiles of the mean-centred round estimates, widened if needed to
    contain the point estimate (percentile intervals of a skewed bootstrap distribution can miss it,
    and a board whose dot lies outside its whisker confuses readers). Same seed, same output.

Rank
    1 + the number of models whose interval lies wholly above this model's (lower bound greater than
    this model's upper bound), among all models passed in.

Models without votes
    Their theta is 0 (the centre, 1000 before anchoring) with a zero-width interval; they count in the
    mean and the ranks. The services layer passes and shows only models with votes.

Style control
    The same model as a logistic regression with per-battle covariates: the log-odds that A beats B
    are theta_A - theta_B + beta . x, where x holds, per style feature, (a - b)/(a + b + 1) of the two
    answers' counts (`style_delta`), standardised over the battles. The ratings are then the
    strengths with style held equal, and beta says how much a standard deviation of each feature
    moves the log-odds (the ridge applies to beta too). Continuous covariates do not reduce to pair
    counts, so this fit and its bootstrap run over battles: O(battles) per Newton step, one round at a
    time, each battle with a Poisson(1) weight per round.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import sys
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import scipy.sparse
import scipy.special

A_WINS = 0
B_WINS = 1
TIE = 2
BOTH_BAD = 3

RIDGE = 1e-4
CENTRE = 1000.0
SCALE = 400.0 / math.log(10.0)  # display points per logit
INTERVAL = (2.5, 97.5)

STYLE_FEATURES = ("length", "headers", "lists", "bold")

# Newton stops when every coordinate of a step is below this (logits); see "Fit" above.
_STEP_TOL = 1e-6
# Bootstrap rounds stop earlier, usually after two Newton steps instead of three: the error left is
# of order 1e-7 logits (measured up to 2.3e-7, i.e. 4e-5 display points), far below the Monte Carlo
# error of a percentile, and it saves a third of the Hessian solves.
_BOOTSTRAP_STEP_TOL = 1e-3
_MAX_ITER = 200
_MAX_HALVINGS = 50
# A trial point must lower the objective by the Armijo fraction of the predicted decrease; the
# relative slack absorbs rounding in sums of millions of terms near the optimum.
_ARMIJO = 1e-4
_ROUNDOFF = 1e-12
# Memory one bootstrap chunk may use (per worker thread): bounds peak memory while keeping enough
# rounds per chunk that per-chunk Python overhead does not matter.
_CHUNK_BYTES = 32 << 20
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


@dataclass(frozen=True)
class Ratings:
    rating: np.ndarray  # (n_models,) display scale
    ci_lower: np.ndarray  # 95% percentile bootstrap interval, display scale
    ci_upper: np.ndarray
    rank: np.ndarray  # int: 1 + number of models whose ci_lower > this model's ci_upper
    votes: np.ndarray  # int: battles each model took part in
    bootstrap: int  # rounds used
    seed: int


@dataclass(frozen=True)
class StyleRatings:
    """Style-adjusted ratings and the style coefficients, each with a 95% bootstrap interval.

    Coefficients are natural log-odds per standard deviation of each feature (features in the order
    given to `rate_style`; STYLE_FEATURES for the command line and `load_battles`). A positive
    coefficient means voters favour the answer with more of that feature, other things equal.
    """

    ratings: Ratings
    coef: np.ndarray  # (k,)
    coef_lower: np.ndarray
    coef_upper: np.ndarray
    feature_mean: np.ndarray  # (k,) used to standardise the features
    feature_std: np.ndarray


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


def _pair_outcome_cells(
    a: np.ndarray, b: np.ndarray, o: np.ndarray, n_models: int
) -> tuple[np.ndarray, np.ndarray]:
    """Key (lo * n_models + hi) of each pair seen and its (lo wins, hi wins, half-half) counts.

    Built in place in one int64 array plus byte-sized temporaries, to keep peak memory near the size
    of the votes themselves.
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
        cells = np.bincount(key, minlength=3 * n_models * n_models).reshape(-1, 3)
        keys = np.flatnonzero(cells.any(axis=1))
        return keys, cells[keys]
    keys, inverse = np.unique(key, return_inverse=True)
    inverse *= 3
    inverse += cls
    cells = np.bincount(inverse, minlength=3 * keys.size).reshape(-1, 3)
    return keys, cells


def aggregate(model_a: np.ndarray, model_b: np.ndarray, outcome: np.ndarray, n_models: int) -> PairCounts:
    """Count votes per unordered pair of models (see PairCounts): O(votes), no loop over votes.

    Raises ValueError for an index out of range, a model against itself or an unknown outcome code.
    """
    a, b, o = _check_votes(model_a, model_b, outcome, n_models)
    keys, cells = _pair_outcome_cells(a, b, o, n_models)
    return _counts_from_cells(keys, cells, n_models)


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


def _votes_per_model(a: np.ndarray, b: np.ndarray, n_models: int) -> np.ndarray:
    return np.bincount(a, minlength=n_models) + np.bincount(b, minlength=n_models)


# --- Batched Newton ----------------------------------------------------------------------------------


class _Problem(Protocol):
    """A penalised negative log-likelihood over d parameters for r bootstrap rounds at once.

    `cols` selects the rounds (columns of the problem's per-round data) that `params` (d, len(cols))
    belong to, so converged rounds drop out of the batch.
    """

    def loss_grad(self, params: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray, Any]: ...

    def hessian(self, curvature: Any, cols: np.ndarray) -> np.ndarray: ...


def _newton(
    problem: _Problem,
    start: np.ndarray,
    tol: float = _STEP_TOL,
    first: tuple[np.ndarray, np.ndarray, Any] | None = None,
) -> np.ndarray:
    """Minimise `problem` for every round (column of start) by line-searched Newton; returns (d, r).

    first, if given, is problem.loss_grad at start, computed more cheaply by the caller.
    """
    x = np.array(start, dtype=np.float64, copy=True)
    live = np.arange(x.shape[1])
    loss, grad, curv = problem.loss_grad(x, live) if first is None else first
    for _ in range(_MAX_ITER):
        step = -np.linalg.solve(problem.hessian(curv, live), grad.T[:, :, None])[:, :, 0].T
        # Near the optimum Newton converges quadratically: a step this small leaves an error of the
        # order of its square, so take it and stop without paying for another evaluation.
        done = np.abs(step).max(axis=0, initial=0.0) <= tol
        x[:, live[done]] += step[:, done]
        if done.all():
            break
        if done.any():
            going = ~done
            live, loss, grad, step, curv = live[going], loss[going], grad[:, going], step[:, going], None
        loss, grad, curv, moved = _line_search(problem, x, live, loss, grad, step)
        live = live[moved]
        if not live.size:
            break
    return x


def _line_search(
    problem: _Problem, x: np.ndarray, live: np.ndarray, loss: np.ndarray, grad: np.ndarray, step: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Halve each round's step until the Armijo condition holds; moves x[:, live] in place.

    Returns loss, gradient and curvature at the new points, and a mask of the rounds that moved: a
    round that cannot lower its objective at all sits at the optimum to within rounding.
    """
    slope = np.einsum("dr,dr->r", grad, step)
    t = np.ones(live.size)
    pending = np.arange(live.size)
    new_loss = np.empty(live.size)
    new_grad = np.empty_like(grad)
    new_curv: np.ndarray | None = None
    for _ in range(_MAX_HALVINGS):
        cols = live[pending]
        trial = x[:, cols] + t[pending] * step[:, pending]
        l_try, g_try, c_try = problem.loss_grad(trial, cols)
        bound = loss[pending] + _ARMIJO * t[pending] * slope[pending] + _ROUNDOFF * np.abs(loss[pending])
        ok = l_try <= bound
        if ok.all() and pending.size == live.size:  # the usual case: full steps everywhere
            x[:, live] = trial
            return l_try, g_try, c_try, np.ones(live.size, dtype=bool)
        took = pending[ok]
        x[:, live[took]] = trial[:, ok]
        new_loss[took] = l_try[ok]
        new_grad[:, took] = g_try[:, ok]
        if new_curv is None:
            new_curv = np.empty((c_try.shape[0], live.size))
        new_curv[:, took] = c_try[:, ok]
        pending = pending[~ok]
        if not pending.size:
            break
        t[pending] *= 0.5
    assert new_curv is not None
    moved = np.ones(live.size, dtype=bool)
    moved[pending] = False
    return new_loss[moved], new_grad[:, moved], new_curv[:, moved], moved


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
    within pairs instead, see "Bootstrap" above).
    """
    score = counts.wins_i.astype(np.float64)
    n = counts.n.astype(np.float64)
    if weights is not None:
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != score.shape:
            raise ValueError(f"weights has shape {w.shape}, expected one per pair row {score.shape}")
        score, n = score * w, n * w
    start = np.zeros(n_models) if init is None else np.asarray(init, dtype=np.float64)
    if start.shape != (n_models,):
        raise ValueError(f"init has shape {start.shape}, expected ({n_models},)")
    start = start - start.mean() if n_models else start
    problem = _PairProblem(_Graph.build(counts.i, counts.j, n_models), score[:, None], n[:, None], ridge)
    theta = _newton(problem, start[:, None])[:, 0]
    return theta - theta.mean() if n_models else theta


# --- Bootstrap ---------------------------------------------------------------------------------------


class _PoissonTable:
    """Draws Poisson(c) for a fixed vector of integer means c, many rounds at a time, by inversion.

    numpy's Generator.poisson costs about 50 ns a draw at means near 50 (a rejection sampler); the
    bootstrap redraws the same means every round, so a CDF table per distinct mean with a guide table
    into it (indexed search, Devroye 1986, III.2.4) brings that to a few ns. Exact up to the rounding
    of the CDF: each table covers c ± (12 sqrt(c) + 30), cutting tails of probability below 1e-32.
    """

    def __init__(self, means: np.ndarray) -> None:
        values, which = np.unique(np.asarray(means, dtype=np.int64), return_inverse=True)
        reach = (12 * np.sqrt(values) + 30).astype(np.int64)
        first = np.maximum(values - reach, 0)
        sizes = values + reach - first + 1
        starts = np.cumsum(sizes) - sizes
        # Four guide buckets per table entry: then only about one draw in thirty lands in a bucket
        # that holds a jump of the CDF and needs a search.
        buckets = 4 * sizes
        bucket_starts = 4 * starts
        self._cdf = np.empty(int(sizes.sum()))
        # For u in bucket t = floor(u * buckets) the answer (first k with cdf[k] > u) lies in
        # [lower[t], upper[t]]; the 1e-12 margins keep that true when u * buckets rounds across an edge.
        self._lower = np.empty(int(buckets.sum()), dtype=np.int64)
        self._upper = np.empty(int(buckets.sum()), dtype=np.int64)
        for value, low, size, start in zip(values, first, sizes, starts, strict=True):
            table = scipy.special.pdtr(np.arange(low, low + size), value)
            table[-1] = 1.0
            self._cdf[start : start + size] = table
            edges = np.arange(4 * size + 1) / (4 * size)
            guide = slice(4 * start, 4 * (start + size))
            self._lower[guide] = start + np.searchsorted(table, edges[:-1] - 1e-12, side="right")
            upper = np.searchsorted(table, edges[1:] + 1e-12, side="right")
            self._upper[guide] = start + np.minimum(upper, size - 1)
        self._bucket_start = bucket_starts[which]
        self._buckets = buckets[which].astype(np.float64)
        self._base = (starts - first)[which]  # table index minus the value it stands for

    def draw(self, rng: np.random.Generator, rounds: int) -> np.ndarray:
        """(rounds, len(means)) int64 draws.

        Rounds-major because every step broadcasts a per-mean vector: along the last axis numpy runs
        one long inner loop, along the first it would run one short loop per mean.
        """
        u = rng.random((rounds, self._buckets.size))
        bucket = (u * self._buckets).astype(np.int64)
        bucket += self._bucket_start
        found = self._lower[bucket]
        flat, flat_u = found.reshape(-1), u.reshape(-1)
        todo = np.flatnonzero(self._cdf[flat] <= flat_u)
        if todo.size:
            # Bisect the few draws not at their bucket's lower end, keeping cdf[low] <= u < cdf[high].
            low, high, target = flat[todo], self._upper[bucket.reshape(-1)[todo]], flat_u[todo]
            open_ = np.flatnonzero(high - low > 1)
            while open_.size:
                mid = (low[open_] + high[open_]) // 2
                right = self._cdf[mid] <= target[open_]
                low[open_[right]] = mid[right]
                high[open_[~right]] = mid[~right]
                open_ = open_[high[open_] - low[open_] > 1]
            flat[todo] = high
        found -= self._base
        draws: np.ndarray = found
        return draws


def _chunks(rounds: int, per_round_bytes: int) -> list[int]:
    size = max(1, min(rounds, _CHUNK_BYTES // max(per_round_bytes, 1)))
    return [min(size, rounds - start) for start in range(0, rounds, size)]


def _run_chunks(
    rng: np.random.Generator,
    sizes: list[int],
    work: Callable[[np.random.Generator, int], np.ndarray],
    workers: int,
) -> np.ndarray:
    """Run work(child_rng, rounds) per chunk and stack the (rounds, d) results in chunk order.

    Each chunk owns a generator spawned from the seed, so the output does not depend on the number of
    workers or on scheduling. numpy and scipy release the GIL in the heavy loops, so worker threads use
    separate cores.
    """
    children = rng.spawn(len(sizes))
    if workers <= 1 or len(sizes) == 1:
        return np.concatenate([work(child, size) for child, size in zip(children, sizes, strict=True)])
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return np.concatenate(list(pool.map(work, children, sizes)))


def _bootstrap_pairs(
    counts: PairCounts,
    n_models: int,
    theta: np.ndarray,
    rounds: int,
    rng: np.random.Generator,
    workers: int,
) -> np.ndarray:
    """(rounds, n_models) mean-centred refits on Poisson-resampled battles."""
    cells = np.stack(
        [counts.wins_i - 0.5 * counts.ties, counts.wins_j - 0.5 * counts.ties, counts.ties], axis=1
    )
    table = _PoissonTable(cells.reshape(-1).astype(np.int64))
    pairs = counts.i.size
    graph = _Graph.build(counts.i, counts.j, n_models)

    def work(child: np.random.Generator, size: int) -> np.ndarray:
        draws = table.draw(child, size).reshape(size, pairs, 3)
        first, second, half = draws[:, :, 0], draws[:, :, 1], draws[:, :, 2]
        # Explicit sums: a numpy reduction over an axis of length 3 is several times slower.
        score = np.ascontiguousarray((first + 0.5 * half).T)
        n = np.ascontiguousarray((first + second + half).T, dtype=np.float64)
        problem = _PairProblem(graph, score, n, RIDGE)
        fitted = _newton(problem, np.repeat(theta[:, None], size, axis=1), _BOOTSTRAP_STEP_TOL).T
        centred: np.ndarray = fitted - fitted.mean(axis=1, keepdims=True)
        return centred

    if rounds == 0 or pairs == 0:
        # Without votes every round is the point estimate (all zeros).
        return np.zeros((rounds, n_models))
    # About a dozen pair-by-round temporaries and one Hessian per round are alive at once.
    per_round = 8 * (12 * pairs + n_models * n_models)
    return _run_chunks(rng, _chunks(rounds, per_round), work, workers)


def _summarise(
    theta: np.ndarray,
    rounds: np.ndarray,
    votes: np.ndarray,
    anchor: int | None,
    anchor_rating: float,
    seed: int,
) -> Ratings:
    rating = CENTRE + SCALE * theta
    if rounds.shape[0]:
        lower, upper = CENTRE + SCALE * np.percentile(rounds, INTERVAL, axis=0)
        lower = np.minimum(lower, rating)
        upper = np.maximum(upper, rating)
    else:
        lower, upper = rating.copy(), rating.copy()
    if anchor is not None:
        if not 0 <= anchor < theta.size:
            raise ValueError(f"anchor {anchor} is not a model index below {theta.size}")
        shift = anchor_rating - rating[anchor]
        rating, lower, upper = rating + shift, lower + shift, upper + shift
    return Ratings(
        rating=rating,
        ci_lower=lower,
        ci_upper=upper,
        rank=rank_from_intervals(lower, upper),
        votes=votes,
        bootstrap=int(rounds.shape[0]),
        seed=seed,
    )


def rank_from_intervals(lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """1 + the number of models whose lower bound is above this model's upper bound."""
    above = lower.size - np.searchsorted(np.sort(lower), upper, side="right")
    return (1 + above).astype(np.int64)


def rate(
    model_a: np.ndarray,
    model_b: np.ndarray,
    outcome: np.ndarray,
    n_models: int,
    *,
    bootstrap: int = 1000,
    seed: int = 0,
    anchor: int | None = None,
    anchor_rating: float = 1000.0,
    workers: int = 1,
) -> Ratings:
    """Ratings with 95% bootstrap intervals and ranks for votes given as model indices and outcomes.

    workers > 1 refits bootstrap chunks in that many threads; the result is identical for any value.
    Use it only where BLAS runs single-threaded (OPENBLAS_NUM_THREADS=1): OpenBLAS's own threads spin
    while waiting and slow the batched solves down even without ours.
    """
    if bootstrap < 0:
        raise ValueError("bootstrap must be >= 0")
    a, b, o = _check_votes(model_a, model_b, outcome, n_models)
    keys, cells = _pair_outcome_cells(a, b, o, n_models)
    counts = _counts_from_cells(keys, cells, n_models)
    theta = fit(counts, n_models)
    rounds = _bootstrap_pairs(counts, n_models, theta, bootstrap, np.random.default_rng(seed), workers)
    return _summarise(theta, rounds, _votes_per_model(a, b, n_models), anchor, anchor_rating, seed)


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


# --- Style control -----------------------------------------------------------------------------------


def style_delta(a_counts: np.ndarray, b_counts: np.ndarray) -> np.ndarray:
    """Per battle and feature, (a - b) / (a + b + 1) of the two answers' counts: in (-1, 1), 0 when equal.

    The +1 keeps it finite when both are zero; the ratio makes 100 vs 200 tokens weigh like 1000 vs 2000.
    """
    a = np.asarray(a_counts, dtype=np.float64)
    b = np.asarray(b_counts, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"a_counts {a.shape} and b_counts {b.shape} differ in shape")
    return (a - b) / (a + b + 1.0)


@dataclass(frozen=True)
class _StyleDesign:
    """Battles prepared for the style fit, shared by the point fit and every bootstrap round.

    Battles are flipped so that each reads as (lower index, higher index) and sorted by pair: the
    theta part of every logit is then one difference per pair, repeated over its battles, and
    per-pair sums are contiguous np.add.reduceat segments instead of scatters. Continuous covariates
    do not aggregate further: battles with identical covariates are rare (length ratios are almost
    all distinct), so de-duplicating would cost a sort for little gain.
    """

    graph: _Graph  # one row per pair present
    seg_start: np.ndarray  # first battle of each pair
    seg_len: np.ndarray
    y: np.ndarray  # (battles,) score of the lower-index model, ties 0.5
    # (1 + k, battles): a row of ones, then the standardised, flipped features. Feature-major, so that
    # scaling by a per-battle vector broadcasts along the long axis (numpy's fast loop).
    with_one: np.ndarray
    # The same in float32 for the Hessian: its rounding only perturbs Newton's search direction (the
    # fixed point comes from the float64 gradient), and it halves the memory traffic of the costliest
    # pass of a round.
    with_one_32: np.ndarray

    @property
    def x(self) -> np.ndarray:  # (k, battles)
        return self.with_one[1:]

    @classmethod
    def build(cls, a: np.ndarray, b: np.ndarray, o: np.ndarray, x: np.ndarray, n_models: int) -> _StyleDesign:
        a, b = a.astype(np.int64), b.astype(np.int64)
        flip = a > b
        key = np.where(flip, b * n_models + a, a * n_models + b)
        order = np.argsort(key, kind="stable")
        key, flip, o = key[order], flip[order], o[order]
        score_a = np.where(o == A_WINS, 1.0, np.where(o == B_WINS, 0.0, 0.5))
        y = np.where(flip, 1.0 - score_a, score_a)
        with_one = np.empty((1 + x.shape[1], a.size))
        with_one[0] = 1.0
        with_one[1:] = x[order].T
        with_one[1:] *= np.where(flip, -1.0, 1.0)
        seg_start = np.flatnonzero(np.concatenate([[True], key[1:] != key[:-1]])) if key.size else key
        seg_len = np.diff(np.concatenate([seg_start, [key.size]]))
        pair = key[seg_start]
        graph = _Graph.build(pair // n_models, pair % n_models, n_models)
        return cls(graph, seg_start, seg_len, y, with_one, with_one.astype(np.float32))


class _StyleProblem:
    """Bradley-Terry with per-battle covariates, parameters (theta (m), beta (k)), for one round.

    Rounds are not batched here, unlike the pair problem: every evaluation already streams over all
    battles, so per-call overhead does not matter, and one-dimensional arrays keep numpy on its
    fastest loops.
    """

    def __init__(self, design: _StyleDesign, weight: np.ndarray | None, ridge: float) -> None:
        self.design = design
        self.m = design.graph.n_models
        self.weight = weight  # (battles,) bootstrap weights, None for all ones
        self.wy = design.y if weight is None else weight * design.y
        self.ridge = ridge

    def logits(self, params: np.ndarray) -> np.ndarray:
        d = self.design
        theta, beta = params[: self.m], params[self.m :]
        z = np.repeat(theta[d.graph.i] - theta[d.graph.j], d.seg_len)
        z += beta @ d.x
        return z

    def loss_grad(self, params: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        z = self.logits(params[:, 0])
        return self.terms(params, z, *_softplus_terms(z))

    def terms(
        self, params: np.ndarray, z: np.ndarray, softplus: np.ndarray, p: np.ndarray, pq: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Loss, gradient and per-battle curvature from the logits and their softplus terms."""
        w = self.weight
        if w is None:
            loss = softplus.sum() - self.wy @ z
            resid = p - self.wy
            curv = pq
        else:
            loss = w @ softplus - self.wy @ z
            resid = w * p
            resid -= self.wy
            curv = w * pq
        d = self.design
        per_pair = np.add.reduceat(resid, d.seg_start) if resid.size else np.zeros(0)
        grad = np.concatenate([d.graph.incidence @ per_pair, d.x @ resid])[:, None]
        grad += self.ridge * params
        loss += 0.5 * self.ridge * float(params[:, 0] @ params[:, 0])
        return np.array([loss]), grad, curv[:, None]

    def hessian(self, curv: np.ndarray, cols: np.ndarray) -> np.ndarray:
        d, m = self.design, self.m
        k = d.with_one.shape[0] - 1
        weighted = d.with_one_32 * curv[:, 0].astype(np.float32)
        # Row 0 gives the per-pair curvature, the others the theta-beta cross terms.
        per_pair = np.add.reduceat(weighted, d.seg_start, axis=1) if curv.size else np.zeros((k + 1, 0))
        per_pair = per_pair.astype(np.float64)
        hess = d.graph.hessian(per_pair[0][:, None], extra=k)[:, :, 0]
        cross = d.graph.incidence @ per_pair[1:].T
        hess[:m, m:] = cross
        hess[m:, :m] = cross.T
        hess[m:, m:] = weighted[1:] @ d.with_one_32[1:].T
        hess[np.diag_indices(m + k)] += self.ridge
        return hess[None]


def rate_style(
    model_a: np.ndarray,
    model_b: np.ndarray,
    outcome: np.ndarray,
    features: np.ndarray,
    n_models: int,
    *,
    bootstrap: int = 100,
    seed: int = 0,
    anchor: int | None = None,
    anchor_rating: float = 1000.0,
    workers: int = 1,
) -> StyleRatings:
    """Style-controlled ratings: Bradley-Terry with per-battle covariates, bootstrapped over battles.

    features is (battles, k), each column already (a - b)/(a + b + 1) (see `style_delta`); it is
    standardised here (a column without spread is left at zero and gets a zero coefficient).
    Ratings, scale, anchor, intervals and ranks follow `rate`; the bootstrap gives every battle a
    Poisson(1) weight per round, like `rate`, and refits warm-started from the point estimate.
    """
    if bootstrap < 0:
        raise ValueError("bootstrap must be >= 0")
    a, b, o = _check_votes(model_a, model_b, outcome, n_models)
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] != a.size:
        raise ValueError(f"features must be (battles, k) = ({a.size}, k), got {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("features must be finite")
    mean = x.mean(axis=0) if a.size else np.zeros(x.shape[1])
    std = x.std(axis=0) if a.size else np.ones(x.shape[1])
    std = np.where(std > 0, std, 1.0)
    x = (x - mean) / std

    design = _StyleDesign.build(a, b, o, x, n_models)
    k = x.shape[1]
    point = _StyleProblem(design, None, RIDGE)
    params = _newton(point, np.zeros((n_models + k, 1)))[:, 0]
    params[:n_models] -= params[:n_models].mean()
    # Every round starts from the point estimate, so the logits and their softplus terms there are the
    # same for all rounds: compute them once and let each round's first evaluation reuse them.
    z0 = point.logits(params)
    terms0 = _softplus_terms(z0)
    table = _PoissonTable(np.ones(1, dtype=np.int64))

    def work(child: np.random.Generator, size: int) -> np.ndarray:
        fitted = np.empty((size, n_models + k))
        draws = table.draw(child, a.size * size).reshape(size, a.size).astype(np.float64)
        for r in range(size):
            problem = _StyleProblem(design, draws[r], RIDGE)
            start = params[:, None]
            first = problem.terms(start, z0, *terms0)
            fitted[r] = _newton(problem, start, _BOOTSTRAP_STEP_TOL, first)[:, 0]
        fitted[:, :n_models] -= fitted[:, :n_models].mean(axis=1, keepdims=True)
        return fitted

    if bootstrap and a.size:
        # One round's weights (8 bytes a battle) and a dozen per-battle temporaries per round.
        rounds = _run_chunks(np.random.default_rng(seed), _chunks(bootstrap, a.size * 8 * 12), work, workers)
    else:
        rounds = np.zeros((bootstrap, n_models + k))  # without battles every round is all zeros
    ratings = _summarise(
        params[:n_models], rounds[:, :n_models], _votes_per_model(a, b, n_models), anchor, anchor_rating, seed
    )
    coef = params[n_models:]
    if rounds.shape[0]:
        coef_lower, coef_upper = np.percentile(rounds[:, n_models:], INTERVAL, axis=0)
        coef_lower, coef_upper = np.minimum(coef_lower, coef), np.maximum(coef_upper, coef)
    else:
        coef_lower, coef_upper = coef.copy(), coef.copy()
    return StyleRatings(
        ratings=ratings,
        coef=coef,
        coef_lower=coef_lower,
        coef_upper=coef_upper,
        feature_mean=mean,
        feature_std=std,
    )


# --- Battle files and the command line ---------------------------------------------------------------

WINNERS = {"model_a": A_WINS, "model_b": B_WINS, "tie": TIE, "tie (bothbad)": BOTH_BAD}

# Per style feature, the conv_metadata keys for answer A and answer B in the published clean_battle
# dumps. A value is a count or a dict of counts (h1..h6, ordered/unordered, **/__), which are summed.
STYLE_KEYS = {
    "length": ("sum_assistant_a_tokens", "sum_assistant_b_tokens"),
    "headers": ("header_count_a", "header_count_b"),
    "lists": ("list_count_a", "list_count_b"),
    "bold": ("bold_count_a", "bold_count_b"),
}


class BattleFileError(ValueError):
    """A battles file that cannot be used; the message names the file and the line or record."""


Battles = tuple[list[str], np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]


def iter_records(path: str | Path) -> Iterable[tuple[str, Any]]:
    """(where, record) pairs of a battles file, `where` naming its line or record for messages.

    The format is told by the first character: "[" a JSON array, "{" JSON lines, anything else
    CSV with a header row (a conv_metadata column holds JSON).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")  # -sig: a spreadsheet's byte-order mark
    except (OSError, UnicodeDecodeError) as exc:
        raise BattleFileError(f"{path}: cannot read: {exc}") from exc
    stripped = text.lstrip()
    if not stripped:
        raise BattleFileError(f"{path}: the file is empty")
    if stripped[0] == "[":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise BattleFileError(f"{path}, line {exc.lineno}: not valid JSON: {exc.msg}") from exc
        return ((f"record {n}", r) for n, r in enumerate(data, 1))
    if stripped[0] == "{":
        return _json_lines(path, text)
    return _csv_rows(path, text)


def load_battles(path: str | Path, *, style: bool = False) -> Battles:
    """Read battles in the public Chatbot Arena format: a JSON array, JSON lines or a CSV file.

    Each record has model_a, model_b and winner (model_a, model_b, tie or tie (bothbad)). Returns
    (models sorted by name, model_a, model_b, outcome, features): index arrays into models, outcome
    codes, and with style=True the (battles, 4) `style_delta` of STYLE_FEATURES taken from each
    record's conv_metadata (then required on every record), else None. The format is told by the
    first character: "[" a JSON array, "{" JSON lines, anything else CSV with a header row (a
    conv_metadata column holds JSON). Raises BattleFileError naming the line or record at fault.
    """
    path = Path(path)
    records = iter_records(path)

    names_a: list[str] = []
    names_b: list[str] = []
    outcomes: list[int] = []
    counts: list[list[float]] = []
    for where, record in records:
        try:
            a, b, outcome = read_battle(record)
            if style:
                counts.append(_read_style(record))
        except BattleFileError as exc:
            raise BattleFileError(f"{path}, {where}: {exc}") from None
        names_a.append(a)
        names_b.append(b)
        outcomes.append(outcome)
    models = sorted(set(names_a) | set(names_b))
    index = {name: i for i, name in enumerate(models)}
    model_a = np.array([index[name] for name in names_a], dtype=np.int64)
    model_b = np.array([index[name] for name in names_b], dtype=np.int64)
    features = None
    if style:
        both = np.array(counts, dtype=np.float64).reshape(-1, 2, len(STYLE_FEATURES))
        features = style_delta(both[:, 0], both[:, 1])
    return models, model_a, model_b, np.array(outcomes, dtype=np.int64), features


def _json_lines(path: Path, text: str) -> Iterable[tuple[str, Any]]:
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            yield f"line {number}", json.loads(line)
        except json.JSONDecodeError as exc:
            raise BattleFileError(f"{path}, line {number}: not valid JSON: {exc.msg}") from exc


def _csv_rows(path: Path, text: str) -> Iterable[tuple[str, Any]]:
    reader = csv.DictReader(io.StringIO(text))
    missing = [field for field in ("model_a", "model_b", "winner") if field not in (reader.fieldnames or [])]
    if missing:
        raise BattleFileError(f"{path}, line 1: the CSV header lacks {', '.join(missing)}")
    for row in reader:
        where = f"line {reader.line_num}"
        metadata = row.get("conv_metadata")
        if metadata:
            try:
                row["conv_metadata"] = json.loads(metadata)
            except json.JSONDecodeError as exc:
                raise BattleFileError(f"{path}, {where}: conv_metadata is not valid JSON: {exc.msg}") from exc
        yield where, row


def read_battle(record: Any) -> tuple[str, str, int]:
    if not isinstance(record, dict):
        raise BattleFileError(
            f"expected an object with model_a, model_b and winner, got {type(record).__name__}"
        )
    names = []
    for field in ("model_a", "model_b"):
        name = record.get(field)
        if not isinstance(name, str) or not name:
            raise BattleFileError(f"missing or empty field {field!r}")
        names.append(name)
    winner = record.get("winner")
    if winner is None:
        raise BattleFileError("missing field 'winner'")
    if winner not in WINNERS:
        raise BattleFileError(f"unknown winner {winner!r} (expected one of {', '.join(WINNERS)})")
    if names[0] == names[1]:
        raise BattleFileError(f"model_a and model_b are both {names[0]!r}")
    return names[0], names[1], WINNERS[winner]


def style_counts(metadata: Any) -> list[list[float]]:
    """[a-side, b-side] counts of STYLE_FEATURES from a conv_metadata dict; missing counts are 0."""
    metadata = metadata if isinstance(metadata, dict) else {}
    sides: list[list[float]] = [[], []]
    for keys in STYLE_KEYS.values():
        for side, key in zip(sides, keys, strict=True):
            value = metadata.get(key)
            parts = value.values() if isinstance(value, dict) else [value]
            side.append(
                float(sum(p for p in parts if isinstance(p, int | float) and not isinstance(p, bool)))
            )
    return sides


def _read_style(record: dict[str, Any]) -> list[float]:
    metadata = record.get("conv_metadata")
    if not isinstance(metadata, dict):
        raise BattleFileError("missing conv_metadata (needed for style control)")
    sides: list[list[float]] = [[], []]
    for keys in STYLE_KEYS.values():
        for side, key in zip(sides, keys, strict=True):
            side.append(_style_count(metadata, key))
    return sides[0] + sides[1]


def _style_count(metadata: dict[str, Any], key: str) -> float:
    value = metadata.get(key)
    parts = value.values() if isinstance(value, dict) else [value]
    total = 0.0
    for part in parts:
        if isinstance(part, bool) or not isinstance(part, int | float) or not part >= 0:
            raise BattleFileError(f"conv_metadata.{key} must be a count or a dict of counts, got {value!r}")
        total += part
    return total


def _rows(models: Sequence[str], ratings: Ratings) -> list[dict[str, Any]]:
    order = sorted(range(len(models)), key=lambda i: (-ratings.rating[i], models[i]))
    return [
        {
            "model": models[i],
            "rating": float(ratings.rating[i]),
            "ci_lower": float(ratings.ci_lower[i]),
            "ci_upper": float(ratings.ci_upper[i]),
            "rank": int(ratings.rank[i]),
            "votes": int(ratings.votes[i]),
        }
        for i in order
    ]


def _table(rows: list[dict[str, Any]]) -> str:
    width = max([len("model"), *(len(row["model"]) for row in rows)])
    lines = [f"{'rank':>4}  {'model':<{width}}  {'rating':>8}  {'95% interval':>17}  {'votes':>7}"]
    for row in rows:
        interval = f"{row['ci_lower']:.1f} .. {row['ci_upper']:.1f}"
        model = f"{row['model']:<{width}}"
        lines.append(f"{row['rank']:>4}  {model}  {row['rating']:>8.1f}  {interval:>17}  {row['votes']:>7}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m leaderboard.rating",
        description="Bradley-Terry ratings with bootstrap intervals from a file of arena battles.",
    )
    parser.add_argument("battles", metavar="BATTLES", help="JSON array, JSON lines or CSV file of battles")
    parser.add_argument(
        "--bootstrap",
        type=int,
        default=None,
        metavar="N",
        help="bootstrap rounds (default 1000; 100 for --style)",
    )
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (default 0)")
    parser.add_argument("--style", action="store_true", help="also fit style control from conv_metadata")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    args = parser.parse_args(argv)
    if args.bootstrap is not None and args.bootstrap < 0:
        parser.error("--bootstrap must be >= 0")

    try:
        models, model_a, model_b, outcome, features = load_battles(args.battles, style=args.style)
    except BattleFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    n = len(models)
    plain = rate(model_a, model_b, outcome, n, bootstrap=_or(args.bootstrap, 1000), seed=args.seed)
    result: dict[str, Any] = {"models": _rows(models, plain)}
    if features is not None:
        styled = rate_style(
            model_a, model_b, outcome, features, n, bootstrap=_or(args.bootstrap, 100), seed=args.seed
        )
        result["style"] = {
            "coefficients": [
                {"feature": name, "coef": float(c), "ci_lower": float(lo), "ci_upper": float(hi)}
                for name, c, lo, hi in zip(
                    STYLE_FEATURES, styled.coef, styled.coef_lower, styled.coef_upper, strict=True
                )
            ],
            "models": _rows(models, styled.ratings),
        }

    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{len(outcome)} battles, {n} models, {plain.bootstrap} bootstrap rounds, seed {args.seed}\n")
    print(_table(result["models"]))
    if "style" in result:
        print("\nStyle control: log-odds per standard deviation of (a - b)/(a + b + 1)\n")
        for row in result["style"]["coefficients"]:
            interval = f"{row['ci_lower']:+.3f} .. {row['ci_upper']:+.3f}"
            print(f"  {row['feature']:<8} {row['coef']:+.3f}  ({interval})")
        print("\nStyle-controlled ratings\n")
        print(_table(result["style"]["models"]))
    return 0


def _or(value: int | None, default: int) -> int:
    return default if value is None else value


if __name__ == "__main__":
    sys.exit(main())
