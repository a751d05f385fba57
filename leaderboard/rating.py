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
    cell (lower wins, higher wins, half-half; an empty cell is always 0) resamples battles exactly at
    the cost of the aggregated counts. Unlike the multinomial bootstrap the total number of battles
    varies between rounds (by about its square root); both give the same intervals asymptotically,
    and the Poisson one needs no sequential draws. The draws come from a table sampler,
    `_PoissonTable`, over 32-bit uniforms: each value's probability is exact to within 2**-32.
    Intervals are the 2.5th and 97.5th percentiles of the mean-centred round estimates, widened if
    needed to contain the point estimate (percentile intervals of a skewed bootstrap distribution can
    miss it, and a board whose dot lies outside its whisker confuses readers). Same seed, same output,
    for any number of `workers`: rounds run in chunks that bound memory, each chunk with its own
    generator spawned from the seed, optionally in worker threads. BLAS is held to one thread
    throughout (threadpoolctl; see `_one_blas_thread`).

Bootstrap refits (an approximation, measured)
    A round moves the estimate by about one standard error, so each round is refitted by iterating
    theta <- theta - H0^-1 grad(theta) with H0 the Hessian at the point estimate, factored once
    (Cholesky), for all the rounds of a chunk at once: a chord (simplified Newton) method. Its steps
    cost one gradient and two triangular solves, against a Hessian build and an LU per round per step
    for Newton; the first gradient, at the point estimate, is linear in the draws. It converges
    linearly, by a factor of 20 to 50 per step on full boards (slower on small ones), so a round
    stops once the error left, estimated from its last two steps, is below 2.5e-6 logits (1e-6 for
    style rounds; about three gradients a round); one that has not settled after eight steps or
    shrinks too slowly is refitted by the exact Newton method above, warm-started from the point
    estimate. The gradients run in float32 (counts and weights are whole numbers, exact in float32;
    only the small per-round move of each logit is rounded). Measured against exact per-round refits
    of the same draws, rounds differ by at most 4.4e-4 display points (boards from 3M votes / 200
    models down to 40 votes / 5 models, strengths spread up to 4 logits) and style rounds by 1.4e-4
    display points and 2e-7 in the coefficients (the tests hold them to 1e-3 display points and
    1e-5), far below the Monte Carlo error of a percentile of 1000 rounds (a few percent of the
    interval's half-width: 0.2 display points on a full board). See bench/rating.py for speed.

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
    counts, so this fit and its bootstrap run over battles: O(battles) per step, each battle with a
    Poisson(1) weight per round. The point fit is Newton warm-started from the plain pair-count fit;
    the rounds use the same chord iteration as above (`_StyleChord`), whose steps need the gradient
    only.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import itertools
import json
import math
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import scipy.linalg
import scipy.sparse
import scipy.sparse.csgraph
import scipy.special
from threadpoolctl import threadpool_limits

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
# Bootstrap rounds that the chord iteration leaves unsettled are refitted by Newton, which stops
# earlier, usually after two steps instead of three: the error left is of order 1e-7 logits, far below
# the Monte Carlo error of a percentile.
_BOOTSTRAP_STEP_TOL = 1e-3
_MAX_ITER = 200
_MAX_HALVINGS = 50
# A trial point must lower the objective by the Armijo fraction of the predicted decrease; the
# relative slack absorbs rounding in sums of millions of terms near the optimum.
_ARMIJO = 1e-4
_ROUNDOFF = 1e-12
# Memory one bootstrap chunk may use (per worker thread): bounds peak memory. Smaller chunks also keep
# a chunk's Poisson draws in cache (measured fastest near 8 rounds of 200 models).
_CHUNK_BYTES = 32 << 20
# Guide buckets per entry of a Poisson table (rounded up to a power of two): more buckets, fewer draws
# that land on a step of the CDF and need a search, but a larger table to gather from.
_GUIDE_BUCKETS = 16
# Poisson means from this up are drawn by numpy's sampler rather than from a table (see _PoissonTable).
_TABLE_MAX_MEAN = 1000
# Bootstrap rounds iterate with the point estimate's Hessian (see "Bootstrap" above) until the error
# left, estimated from the last two steps, is below this (logits; 4e-4 display points) ...
_CHORD_TOL = 2.5e-6
# ... for the style model's rounds this: its error estimate proved less reliable (measured 1.2e-3
# display points left at 2.5e-6, 5e-5 at 1e-6) ...
_STYLE_CHORD_TOL = 1e-6
# ... or hand over to the exact Newton refit after this many steps, or once a step shrinks by less
# than _CHORD_SLOW (a round far from the point estimate, where the fixed Hessian is a poor guide).
_CHORD_MAX_STEPS = 8
_CHORD_SLOW = 0.5
# Values (battles x rounds) per block of the style bootstrap's passes (see _StyleChord). Some numpy
# calls hold the GIL (repeat, reduceat, a matrix-vector product), and worker threads hand it over
# between calls: blocks of a million values keep those hand-overs rare. Blocks of 65536 values, which
# stay in cache, were 15% faster on one thread but no faster on two.
_STYLE_BLOCK = 1 << 20
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
    into it (indexed search, Devroye 1986, III.2.4) brings that to a few ns. Each draw inverts one
    32-bit uniform (half of a raw 64-bit output of the generator, the cheapest random numbers numpy
    has) against the CDF rounded down to multiples of 2**-32: every value's probability is exact to
    within 2**-32, and each table covers c ± (8 sqrt(c) + 12), cutting tails of probability below
    2e-15. A table has a power of two of guide buckets, so a uniform's bucket is a bit shift; a
    bucket that holds no step of the CDF gives the value outright, and only the few draws (about 2%)
    that land in one that does are finished by a short search. Means of _TABLE_MAX_MEAN and more,
    rare, are drawn by numpy's own sampler.
    """

    def __init__(self, means: np.ndarray) -> None:
        means = np.asarray(means, dtype=np.int64)
        # Means this large are few on any board but would each need a table of thousands of entries:
        # they are drawn by numpy instead (exact too), their table slot standing at 0.
        self._large = np.flatnonzero(means >= _TABLE_MAX_MEAN)
        self._large_means = means[self._large]
        values, which = np.unique(np.where(means >= _TABLE_MAX_MEAN, 0, means), return_inverse=True)
        reach = np.ceil(8 * np.sqrt(values) + 12).astype(np.int64)
        first = np.maximum(values - reach, 0)
        sizes = values + reach - first + 1
        starts = np.cumsum(sizes) - sizes
        owner = np.repeat(np.arange(values.size), sizes)
        value = np.arange(int(sizes.sum())) - np.repeat(starts - first, sizes)
        cdf = scipy.special.pdtr(value, values[owner])
        # thresholds[t]: how many 32-bit uniforms u give a value <= the one at t; the last takes the rest.
        self._thresholds = np.minimum(np.floor(cdf * 2.0**32), 2.0**32).astype(np.int64)
        self._thresholds[starts + sizes - 1] = 1 << 32
        # At most 4096 buckets a table (16 KB): tables near _TABLE_MAX_MEAN search a little more often.
        bits = np.clip(np.ceil(np.log2(_GUIDE_BUCKETS * sizes)), 1, 12).astype(np.int64)
        self._one_table = values.size == 1
        if self._one_table:
            # One table (the style bootstrap's Poisson(1) per battle): 2**16 buckets, so that a bucket
            # is a raw 16-bit number, half the random bits, no shift, and far fewer draws to search.
            bits[:] = 16
        buckets = np.left_shift(1, bits)
        bucket_starts = np.cumsum(buckets) - buckets
        # Bucket b of a table holds the uniforms from b << s to (b + 1) << s - 1 (s = 32 - bits), and a
        # draw stops past every threshold <= u: so, counted within the table, it stops at position
        # low[b] = #{t: ceil(t / 2**s) <= b} for the least u and high[b] = #{t: t >> s <= b} for the
        # greatest. Both are cumulative counts, in one bincount over slots 0..buckets of each table.
        shift = np.repeat(32 - bits, sizes)
        slot = np.repeat(bucket_starts + np.arange(values.size), sizes)
        span = int(buckets.sum()) + values.size
        ceiling = slot + ((self._thresholds + (1 << shift) - 1) >> shift)
        floor = slot + (self._thresholds >> shift)
        inside = np.ones(span, dtype=bool)
        inside[bucket_starts + np.arange(values.size) + buckets] = False  # the extra slot per table
        positions = []
        for counted in (ceiling, floor):
            total = np.cumsum(np.bincount(counted, minlength=span))
            before = np.concatenate([[0], total])[bucket_starts + np.arange(values.size)]
            positions.append((total - np.repeat(before, buckets + 1))[inside] + np.repeat(starts, buckets))
        low, high = positions
        offset = np.repeat(starts - first, buckets)  # table position minus the value it stands for
        if sizes.sum() >= 1 << 24:
            # Not before some 80M battles on one board, spread over thousands of distinct cell sizes.
            raise ValueError("too many distinct Poisson means for one table")
        # float32 so that draws feed float32 arithmetic without a conversion; -1 - position marks a
        # bucket holding a step of the CDF (positions stay below 2**24, exact in float32).
        self._answer = np.where(low == high, low - offset, -1 - low).astype(np.float32)
        # Index-sized, so that buckets are computed as the indices np.take wants (it would convert
        # 32-bit ones first, an extra pass over every draw).
        self._shift = (32 - bits)[which].astype(np.intp)
        self._bucket_start = bucket_starts[which].astype(np.intp)
        self._offset = (starts - first)[which]

    def draw(self, rng: np.random.Generator, rounds: int) -> np.ndarray:
        """(rounds, len(means)) float32 draws (whole numbers).

        Rounds-major because every step broadcasts a per-mean vector: along the last axis numpy runs
        one long inner loop, along the first it would run one short loop per mean.
        """
        cells = self._shift.size
        if self._one_table:
            bucket = rng.bit_generator.random_raw((rounds * cells + 3) // 4).view(np.uint16)
            bucket = bucket[: rounds * cells].reshape(rounds, cells)
        else:
            raw = rng.bit_generator.random_raw((rounds * cells + 1) // 2)
            u = raw.view(np.uint32)[: rounds * cells].reshape(rounds, cells)
            bucket = np.right_shift(u, self._shift, dtype=np.intp)
            bucket += self._bucket_start
        draws = np.take(self._answer, bucket)
        flat = draws.reshape(-1)
        todo = np.flatnonzero(flat < 0)
        if todo.size:
            # Step through the CDF from the bucket's first position to the one u stops at.
            position = (-1.0 - flat[todo]).astype(np.int64)
            if self._one_table:
                # Where u lies within its bucket is uniform and independent of the bucket: fresh bits.
                low = rng.bit_generator.random_raw((todo.size + 3) // 4).view(np.uint16)[: todo.size]
                target = (bucket.reshape(-1)[todo].astype(np.int64) << 16) + low
            else:
                target = u.reshape(-1)[todo].astype(np.int64)
            going = np.arange(todo.size)
            while going.size:
                going = going[self._thresholds[position[going]] <= target[going]]
                position[going] += 1
            flat[todo] = position - self._offset[todo % cells]
        if self._large.size:
            draws[:, self._large] = rng.poisson(self._large_means, (rounds, self._large.size))
        return draws


def _chunks(rounds: int, per_round_bytes: int) -> list[int]:
    size = max(1, min(rounds, _CHUNK_BYTES // max(per_round_bytes, 1)))
    return [min(size, rounds - start) for start in range(0, rounds, size)]


def _run_chunks(
    rng: np.random.Generator,
    sizes: list[int],
    work: Callable[[np.random.Generator, int], np.ndarray],
    workers: int,
    pool: Executor | None = None,
) -> np.ndarray:
    """Run work(child_rng, rounds) per chunk and stack the (rounds, d) results in chunk order.

    Each chunk owns a generator spawned from the seed, so the output does not depend on the number of
    workers or on scheduling. The calling thread works through the chunks, and workers - 1 helpers
    take chunks from the same queue: threads of `pool` where one is given, a pool the caller shares
    with other work (its threads help once they are free, and a helper that has not started by the
    time the chunks run out is cancelled), else threads of a pool of its own. numpy and scipy release
    the GIL in the heavy loops, so helper threads use separate cores.
    """
    children = rng.spawn(len(sizes))
    results: list[np.ndarray | None] = [None] * len(sizes)
    queue = iter(range(len(sizes)))
    lock = threading.Lock()

    def take_chunks() -> None:
        nonlocal queue
        while True:
            with lock:
                k = next(queue, None)
            if k is None:
                return
            try:
                results[k] = work(children[k], sizes[k])
            except BaseException:
                with lock:
                    queue = iter(())  # a failed chunk fails the whole: no more chunks for anyone
                raise

    helpers = min(workers, len(sizes)) - 1
    if helpers <= 0:
        take_chunks()
        return np.concatenate(results)
    with contextlib.ExitStack() as stack:
        if pool is None:
            pool = stack.enter_context(ThreadPoolExecutor(max_workers=helpers))
        started = [pool.submit(take_chunks) for _ in range(helpers)]
        try:
            take_chunks()
        finally:
            for helper in started:
                if not helper.cancel():
                    helper.result()
    return np.concatenate(results)


def _bootstrap_pairs(
    counts: PairCounts,
    n_models: int,
    theta: np.ndarray,
    rounds: int,
    rng: np.random.Generator,
    workers: int,
    pool: Executor | None = None,
) -> np.ndarray:
    """(rounds, n_models) mean-centred refits on Poisson-resampled battles (workers, pool: see
    `_run_chunks`)."""
    pairs = counts.i.size
    if rounds == 0 or pairs == 0:
        # Without votes every round is the point estimate (all zeros).
        return np.zeros((rounds, n_models))
    # Orient every pair so that its first model is the stronger at the point estimate (logit >= 0),
    # for float32 accuracy on lopsided pairs (see _Chord).
    diff = theta[counts.i] - theta[counts.j]
    flip = diff < 0
    first, second = np.where(flip, counts.j, counts.i), np.where(flip, counts.i, counts.j)
    wins_i, wins_j = counts.wins_i - 0.5 * counts.ties, counts.wins_j - 0.5 * counts.ties
    cells = np.concatenate([np.where(flip, wins_j, wins_i), np.where(flip, wins_i, wins_j), counts.ties])
    table = _PoissonTable(cells.astype(np.int64))
    chord = _Chord(_Graph.build(first, second, n_models), np.abs(diff), counts.n.astype(np.float64), theta)

    def work(child: np.random.Generator, size: int) -> np.ndarray:
        draws = table.draw(child, size).reshape(size, 3, pairs)
        # (pairs, rounds) layout: the sparse incidence products then run over contiguous rounds.
        won, lost, half = draws[:, 0].T, draws[:, 1].T, draws[:, 2].T
        n = np.ascontiguousarray(won + lost + half)
        score = np.ascontiguousarray(won + 0.5 * half)
        fitted = chord.solve(n, score)
        centred: np.ndarray = fitted - fitted.mean(axis=1, keepdims=True)
        return centred

    # Per pair and round: three draws with their temporaries (about 20 bytes each) and a few float32
    # arrays; counting 192 bytes makes chunks of the size that measured fastest.
    return _run_chunks(rng, _chunks(rounds, 192 * pairs), work, workers, pool)


def _chord_refits(
    factor: tuple[np.ndarray, bool], gradient: Callable[[np.ndarray | None], np.ndarray], tol: float
) -> tuple[np.ndarray, np.ndarray]:
    """Iterate delta <- delta - H0^-1 gradient(delta) for many rounds: (moves (d, rounds), settled).

    gradient(None) is the gradient at the point estimate (delta = 0), which callers compute without
    exp. A round has settled once the error left, estimated from the shrinking of its last two steps
    (linear convergence: step * ratio / (1 - ratio)), is below tol; rounds still going after
    _CHORD_MAX_STEPS or shrinking too slowly are left unsettled for the caller to refit exactly.
    """
    delta = -scipy.linalg.cho_solve(factor, gradient(None), check_finite=False)
    last = np.abs(delta).max(axis=0)
    settled = np.zeros(delta.shape[1], dtype=bool)
    slow = np.zeros(delta.shape[1], dtype=bool)
    for _ in range(_CHORD_MAX_STEPS):
        step = -scipy.linalg.cho_solve(factor, gradient(delta), check_finite=False)
        delta += step
        size = np.abs(step).max(axis=0)
        ratio = size / np.maximum(last, 1e-300)
        settled = (size * ratio <= tol * (1.0 - ratio)) & (ratio < 1.0)
        slow |= ~settled & (ratio > _CHORD_SLOW)
        last = size
        if (settled | slow).all():
            break
    return delta, settled & np.isfinite(delta).all(axis=0)


@dataclass(frozen=True)
class _Parts:
    """Connected parts of the comparison graph, to project out per-part all-ones components.

    The likelihood's gradient sums to zero over each part; float32 sums do not quite, and the Hessian
    along a part's all-ones direction is only the ridge, so that rounding would be magnified 1e4-fold.
    """

    label: np.ndarray
    size: np.ndarray

    @classmethod
    def of(cls, graph: _Graph) -> _Parts:
        m = graph.n_models
        adjacency = scipy.sparse.csr_matrix((np.ones(graph.i.size), (graph.i, graph.j)), shape=(m, m))
        _, label = scipy.sparse.csgraph.connected_components(adjacency, directed=False)
        return cls(label, np.bincount(label, minlength=1).astype(np.float64))

    def project(self, grad: np.ndarray) -> np.ndarray:
        means = np.zeros((self.size.size, grad.shape[1]))
        np.add.at(means, self.label, grad)
        grad -= (means / self.size[:, None])[self.label]
        return grad


class _Chord:
    """Refits of Bradley-Terry on resampled pair counts by iterating with the point estimate's Hessian.

    A bootstrap round moves the estimate by about one standard error, so the Hessian at the point
    estimate is within a few percent of the round's own: theta <- theta - H0^-1 grad(theta) then
    contracts the error twenty- to fiftyfold per step (on 200 models and 3M votes) at the cost of one
    gradient and two triangular solves with a Cholesky factor computed once, instead of a Hessian
    build and an LU per round per step. The gradient runs in float32 (pair counts are whole numbers,
    exact), with the logit's point value folded into the sparse product so that only the small
    per-round move is rounded. Rounds that do not settle fast are refitted by the exact Newton method.
    """

    def __init__(self, graph: _Graph, logit: np.ndarray, n: np.ndarray, theta: np.ndarray) -> None:
        self.graph = graph
        self.theta = theta
        m, pairs = graph.n_models, graph.i.size
        e = np.exp(-logit)
        p = 1.0 / (1.0 + e)
        hess = graph.hessian((n * p * e * p)[:, None])[:, :, 0]
        hess[np.diag_indices(m)] += RIDGE
        self.factor = scipy.linalg.cho_factor(hess)
        # The gradient's per-pair term n p - score is computed as (n - score) - n (1 - p): pairs are
        # oriented so that 1 - p = 1 / (1 + exp(logit)) is the smaller side, which float32 then gives
        # to a relative 1e-7 even for a lopsided pair, where p itself would round to 1.
        self.q = (e / (1.0 + e)).astype(np.float32)[:, None]
        self.incidence = graph.incidence.astype(np.float32)
        # Row k of `logit` @ [delta; 1] is logit_k + delta_i - delta_j, in one sparse product.
        rows = np.concatenate([np.arange(pairs)] * 3)
        cols = np.concatenate([graph.i, graph.j, np.full(pairs, m)])
        values = np.concatenate([np.ones(pairs), -np.ones(pairs), logit])
        self.logit = scipy.sparse.csr_matrix((values.astype(np.float32), (rows, cols)), shape=(pairs, m + 1))
        self.parts = _Parts.of(graph)

    def solve(self, n: np.ndarray, score: np.ndarray) -> np.ndarray:
        """(rounds, n_models) refits for per-pair battles n and scores (pairs, rounds), float32."""
        m, rounds = self.graph.n_models, n.shape[1]
        lost = n - score
        resid = np.empty_like(n)
        shift = np.ones((m + 1, rounds), dtype=np.float32)

        def gradient(delta: np.ndarray | None) -> np.ndarray:
            if delta is None:  # at the point estimate the gradient is linear in the counts
                np.multiply(n, self.q, out=resid)
            else:
                shift[:m] = delta
                with np.errstate(over="ignore"):  # exp -> inf: 1 - p is 0 in float32, rightly
                    np.exp(self.logit @ shift, out=resid)
                np.add(resid, 1.0, out=resid)
                np.divide(n, resid, out=resid)
            np.subtract(lost, resid, out=resid)
            grad = self.parts.project((self.incidence @ resid).astype(np.float64))
            grad += RIDGE * (self.theta[:, None] if delta is None else self.theta[:, None] + delta)
            return grad

        delta, settled = _chord_refits(self.factor, gradient, _CHORD_TOL)
        fitted = self.theta[:, None] + delta
        redo = np.flatnonzero(~settled)
        if redo.size:
            problem = _PairProblem(
                self.graph, score[:, redo].astype(np.float64), n[:, redo].astype(np.float64), RIDGE
            )
            start = np.repeat(self.theta[:, None], redo.size, axis=1)
            fitted[:, redo] = _newton(problem, start, _BOOTSTRAP_STEP_TOL)
        return fitted.T


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
    count: np.ndarray | None = None,
    pool: Executor | None = None,
) -> Ratings:
    """Ratings with 95% bootstrap intervals and ranks for votes given as model indices and outcomes.

    count, if given, is each row's multiplicity (see `aggregate`): identical output, intervals
    included, to passing every row `count` times, without building the repeats.

    workers > 1 refits bootstrap chunks in that many threads, the calling one included; the result is
    identical for any value. The others come from `pool` if given (a pool shared with other work,
    whose threads join in once free), else from a pool of its own. BLAS is held to one thread while
    it runs (see `_one_blas_thread`).
    """
    if bootstrap < 0:
        raise ValueError("bootstrap must be >= 0")
    a, b, o = _check_votes(model_a, model_b, outcome, n_models)
    weight = _check_count(count, a.size)
    keys, cells = _pair_outcome_cells(a, b, o, n_models, weight)
    counts = _counts_from_cells(keys, cells, n_models)
    with _one_blas_thread():
        theta = fit(counts, n_models)
        rounds = _bootstrap_pairs(
            counts, n_models, theta, bootstrap, np.random.default_rng(seed), workers, pool
        )
    return _summarise(theta, rounds, _votes_per_model(a, b, n_models, weight), anchor, anchor_rating, seed)


def _one_blas_thread() -> threadpool_limits:
    """Hold BLAS to one thread of its own (a process-wide setting, restored on exit).

    Every BLAS call here is small (solves with a few hundred unknowns, thin matrix products), so BLAS
    threads cannot help, and OpenBLAS's spin while they wait: on one core of two, 1000 rounds on 300k
    votes took 0.26 to 0.64 s with OpenBLAS's default two threads against 0.16 s with one; with our
    own worker threads they compete for the same cores. So no OPENBLAS_NUM_THREADS=1 is needed.
    """
    return threadpool_limits(1, user_api="blas")


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
    def build(
        cls,
        a: np.ndarray,
        b: np.ndarray,
        o: np.ndarray,
        x: np.ndarray,
        mean: np.ndarray,
        std: np.ndarray,
        n_models: int,
    ) -> _StyleDesign:
        """x: (battles, k) features as given, standardised here with their mean and std.

        Large arrays are made once, temporaries a block of battles at a time: on some machines a
        fresh page costs more than the arithmetic on it. Each battle's features are gathered as one
        row (a cache line) in pair order, then turned feature-major block by block."""
        flip = a > b
        key = np.minimum(a, b).astype(np.int64)
        key *= n_models
        key += np.maximum(a, b)
        # A 16-bit key sorts by radix, several times faster than int64's merge sort.
        order = np.argsort(key.astype(np.uint16) if n_models <= 256 else key, kind="stable")
        key, flip = key[order], flip[order]
        # Score of the lower-index model by outcome, and by outcome + 4 when it is B: a tie or a
        # both-bad vote is half a win either way.
        score = np.full(8, 0.5)
        score[[A_WINS, B_WINS, 4 + A_WINS, 4 + B_WINS]] = 1.0, 0.0, 0.0, 1.0
        code = o[order].astype(np.intp)
        code[flip] += 4
        y = score[code]
        k, battles = x.shape[1], a.size
        with_one = np.empty((1 + k, battles))
        with_one_32 = np.empty((1 + k, battles), dtype=np.float32)
        with_one[0] = with_one_32[0] = 1.0
        for start in range(0, battles, _STYLE_BLOCK):
            end = min(start + _STYLE_BLOCK, battles)
            block = with_one[1:, start:end]
            block[...] = x[order[start:end]].T
            block -= mean[:, None]
            block /= std[:, None]
            np.negative(block, out=block, where=flip[start:end])
            with_one_32[1:, start:end] = block
        seg_start = np.flatnonzero(np.concatenate([[True], key[1:] != key[:-1]])) if key.size else key
        seg_len = np.diff(np.concatenate([seg_start, [key.size]]))
        pair = key[seg_start]
        graph = _Graph.build(pair // n_models, pair % n_models, n_models)
        return cls(graph, seg_start, seg_len, y, with_one, with_one_32)


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


class _StyleChord:
    """Bootstrap refits of the style model by iterating with the point estimate's Hessian, like `_Chord`.

    A step needs only the gradient: per battle and round the logit's move (the pair's strength
    difference repeated over its battles plus a small matrix product with the features and the point
    logit), exp, the weighted residual and two reductions (per-pair sums, a matrix product with the
    features); no per-round Hessian, which would cost as many passes again. The passes run block by
    block of battles (blocks end where a pair does; see _STYLE_BLOCK). float32 throughout; the
    weights are whole numbers and the features standardised, so rounding moves the refits by about
    1e-7 logits.
    """

    def __init__(self, design: _StyleDesign, point: _StyleProblem, params: np.ndarray) -> None:
        self.design = design
        self.params = params
        self.m = design.graph.n_models
        z0 = point.logits(params)
        _, p, pq = _softplus_terms(z0)
        self.factor = scipy.linalg.cho_factor(point.hessian(pq[:, None], np.zeros(1, dtype=np.int64))[0])
        self.y = design.y.astype(np.float32)
        self.resid0 = (p - design.y).astype(np.float32)
        # Features and the point logit in one (k + 1, battles) matrix: [beta move, 1] @ this is the
        # battle-specific part of the logit.
        self.features = np.vstack([design.with_one_32[1:], z0.astype(np.float32)])
        self.parts = _Parts.of(design.graph)

    def blocks(self, rounds: int) -> list[tuple[int, int, int, int]]:
        """(first battle, end battle, first pair, end pair) of blocks of about _STYLE_BLOCK values."""
        d = self.design
        pairs = d.seg_start.size
        ends = np.append(d.seg_start, d.y.size)
        want = max(1, _STYLE_BLOCK // max(rounds, 1))
        cuts = np.unique(np.searchsorted(ends, np.arange(want, d.y.size, want), side="left"))
        pair_edges = np.concatenate([[0], cuts[(cuts > 0) & (cuts < pairs)], [pairs]])
        return [(int(ends[p0]), int(ends[p1]), int(p0), int(p1)) for p0, p1 in itertools.pairwise(pair_edges)]

    def solve(self, weights: np.ndarray) -> np.ndarray:
        """(rounds, m + k) refits, theta mean-centred, for per-battle weights (rounds, battles) float32."""
        d, m = self.design, self.m
        graph, k = d.graph, self.features.shape[0] - 1
        rounds = weights.shape[0]
        blocks = self.blocks(rounds)
        per_pair = np.empty((rounds, d.seg_start.size), dtype=np.float32)
        move = np.ones((rounds, k + 1), dtype=np.float32)

        def gradient(delta: np.ndarray | None) -> np.ndarray:
            beta = np.zeros((k, rounds), dtype=np.float32)
            if delta is not None:
                theta = delta[:m].astype(np.float32)
                pair_move = np.ascontiguousarray((theta[graph.j] - theta[graph.i]).T)
                move[:, :k] = delta[m:].T
            for start, end, first, last in blocks:
                w = weights[:, start:end]
                if delta is None:  # at the point estimate the gradient is linear in the weights
                    resid = w * self.resid0[start:end]
                else:
                    # -(logit), then exp(-logit), then weight * (sigmoid(logit) - y).
                    resid = np.repeat(pair_move[:, first:last], d.seg_len[first:last], axis=1)
                    resid -= move @ self.features[:, start:end]
                    np.exp(resid, out=resid)
                    resid += 1.0
                    np.reciprocal(resid, out=resid)
                    resid -= self.y[start:end]
                    resid *= w
                per_pair[:, first:last] = np.add.reduceat(resid, d.seg_start[first:last] - start, axis=1)
                beta += self.features[:k, start:end] @ resid.T
            grad = np.concatenate(
                [self.parts.project(graph.incidence @ per_pair.T.astype(np.float64)), beta]
            ).astype(np.float64)
            grad += RIDGE * (self.params[:, None] if delta is None else self.params[:, None] + delta)
            return grad

        delta, settled = _chord_refits(self.factor, gradient, _STYLE_CHORD_TOL)
        fitted = (self.params[:, None] + delta).T
        for r in np.flatnonzero(~settled):
            problem = _StyleProblem(d, weights[r].astype(np.float64), RIDGE)
            fitted[r] = _newton(problem, self.params[:, None], _BOOTSTRAP_STEP_TOL)[:, 0]
        fitted[:, :m] -= fitted[:, :m].mean(axis=1, keepdims=True)
        return fitted


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
    pool: Executor | None = None,
) -> StyleRatings:
    """Style-controlled ratings: Bradley-Terry with per-battle covariates, bootstrapped over battles.

    features is (battles, k), each column already (a - b)/(a + b + 1) (see `style_delta`); it is
    standardised here (a column without spread is left at zero and gets a zero coefficient).
    Ratings, scale, anchor, intervals, ranks, workers and pool follow `rate`; the bootstrap gives
    every battle a Poisson(1) weight per round, like `rate`, and refits warm-started from the point
    estimate.
    """
    if bootstrap < 0:
        raise ValueError("bootstrap must be >= 0")
    a, b, o = _check_votes(model_a, model_b, outcome, n_models)
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] != a.size:
        raise ValueError(f"features must be (battles, k) = ({a.size}, k), got {x.shape}")
    k = x.shape[1]
    if not all(np.isfinite(x[:, j]).all() for j in range(k)):
        raise ValueError("features must be finite")
    # Column by column, without a transposed copy: numpy sums a strided column in the same order as
    # a contiguous one, so these are the same numbers.
    mean = np.array([x[:, j].mean() for j in range(k)]) if a.size else np.zeros(k)
    std = np.array([x[:, j].std() for j in range(k)]) if a.size else np.ones(k)
    std = np.where(std > 0, std, 1.0)

    design = _StyleDesign.build(a, b, o, x, mean, std, n_models)
    point = _StyleProblem(design, None, RIDGE)
    # Warm start from the plain fit on pair counts (cheap): Newton over battles then needs fewer steps.
    keys, cells = _pair_outcome_cells(a, b, o, n_models)
    with _one_blas_thread():
        start = np.concatenate([fit(_counts_from_cells(keys, cells, n_models), n_models), np.zeros(k)])
        params = _newton(point, start[:, None])[:, 0]
        params[:n_models] -= params[:n_models].mean()
        if bootstrap and a.size:
            chord = _StyleChord(design, point, params)
            table = _PoissonTable(np.ones(1, dtype=np.int64))

            def work(child: np.random.Generator, size: int) -> np.ndarray:
                return chord.solve(table.draw(child, size * a.size).reshape(size, a.size))

            # About ten float32 values per battle and round are alive at once.
            sizes = _chunks(bootstrap, a.size * 40)
            rounds = _run_chunks(np.random.default_rng(seed), sizes, work, workers, pool)
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
