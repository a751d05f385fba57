"""Ratings with 95% intervals, ranks and rank ranges: `rate`.

Intervals
    intervals="bootstrap" (the default of `rate`, as the live board publishes) as below;
    intervals="sandwich" the closed-form robust intervals of `sandwich`, same point estimate. Both
    take per-battle weights (see `weights`); weighted votes are resampled as rows of identical
    (pair, outcome, weight) battles (`_WeightedRows`).

Bootstrap
    Poisson bootstrap over battles: every battle gets an independent Poisson(1) weight in each round.
    Summed over the c battles of one (pair, outcome) cell that weight is Poisson(c), so one draw per
    cell (lower wins, higher wins, half-half; an empty cell is always 0) resamples battles exactly at
    the cost of the aggregated counts. Unlike the multinomial bootstrap the total number of battles
    varies between rounds (by about its square root); both give the same intervals asymptotically,
    and the Poisson one needs no sequential draws (see `poisson`). Intervals are the 2.5th and 97.5th
    percentiles of the mean-centred round estimates, widened if needed to contain the point estimate
    (percentile intervals of a skewed bootstrap distribution can miss it, and a board whose dot lies
    outside its whisker confuses readers). Same seed, same output, for any number of `workers`:
    rounds run in chunks that bound memory, each chunk with its own generator spawned from the seed,
    optionally in worker threads. BLAS is held to one thread throughout (see `_one_blas_thread`).

Refits (an approximation, bounded by the tests)
    A round moves the estimate by about one standard error, so each round is refitted by iterating
    theta <- theta - H0^-1 grad(theta) with H0 the Hessian at the point estimate, factored once
    (Cholesky), for all the rounds of a chunk at once: a chord (simplified Newton) method. Its steps
    cost one gradient and two triangular solves, against a Hessian build and an LU per round per step
    for Newton; the first gradient, at the point estimate, is linear in the draws. It converges
    linearly, so a round stops once the error left, estimated from its last two steps, is below
    _CHORD_TOL; one that has not settled after _CHORD_MAX_STEPS or shrinks too slowly is refitted by
    the exact Newton method, warm-started from the point estimate. The gradients run in float32
    (counts and weights are whole numbers, exact in float32; only the small per-round move of each
    logit is rounded). The tests hold rounds to 1e-3 display points of exact per-round refits of the
    same draws, far below the Monte Carlo error of a percentile of 1000 rounds.

Anchor
    `rate(..., anchor=k, anchor_rating=r)` shifts every number (point ratings and interval bounds) by
    one constant so that model k's point rating is exactly r: differences, interval widths and ranks
    are the same as without an anchor. Pin a long-lived model to keep the displayed numbers stable
    while models come and go.

Rank
    1 + the number of models whose interval lies wholly above this model's (lower bound greater than
    this model's upper bound), among all models passed in (among the rated ones with `min_votes`).
    That is also the best plausible rank, `rank_lower`; the worst, `rank_upper`, counts the models
    not wholly below (upper bound at or above this model's lower bound), itself included.

Models not yet rated
    With `min_votes` (see `rated`), models with fewer battles or an unidentified strength keep their
    votes in the fit but get NaN for rating and bounds and 0 for ranks; the published scale (mean
    1000) and the ranks are over the rated models. Without it every model is rated, as before.

Models without votes
    Their theta is 0 (the centre, 1000 before anchoring) with a zero-width interval; they count in the
    mean and the ranks. The services layer passes and shows only models with votes.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import scipy.linalg
import scipy.sparse
import scipy.sparse.csgraph
import scipy.special
from threadpoolctl import threadpool_limits

from leaderboard.rating.bradley_terry import (
    CENTRE,
    RIDGE,
    SCALE,
    PairCounts,
    _check_count,
    _check_votes,
    _counts_from_cells,
    _fit_scores,
    _Graph,
    _pair_outcome_cells,
    _PairProblem,
    _votes_per_model,
    _weighted_cells,
    fit,
)
from leaderboard.rating.newton import _newton
from leaderboard.rating.outcomes import B_WINS, TIE
from leaderboard.rating.poisson import _PoissonTable
from leaderboard.rating.ranks import rank_range
from leaderboard.rating.rated import rated_models
from leaderboard.rating.sandwich import _pair_covariance, centred_variance
from leaderboard.rating.weights import _normalised

INTERVAL = (2.5, 97.5)
INTERVALS = ("bootstrap", "sandwich")
# Half-width of a 95% normal interval in standard errors (1.96), for the sandwich.
Z = float(scipy.special.ndtri(INTERVAL[1] / 100.0))

# Bootstrap rounds that the chord iteration leaves unsettled are refitted by Newton, which stops
# earlier than a point fit: the error left is far below the Monte Carlo error of a percentile.
_BOOTSTRAP_STEP_TOL = 1e-3
# Memory one bootstrap chunk may use (per worker thread): bounds peak memory. Smaller chunks also keep
# a chunk's Poisson draws in cache.
_CHUNK_BYTES = 32 << 20
# Rounds iterate with the point estimate's Hessian until the error left, estimated from the last two
# steps, is below this (logits) ...
_CHORD_TOL = 2.5e-6
# ... or hand over to the exact Newton refit after this many steps, or once a step shrinks by less
# than _CHORD_SLOW (a round far from the point estimate, where the fixed Hessian is a poor guide).
_CHORD_MAX_STEPS = 8
_CHORD_SLOW = 0.5


@dataclass(frozen=True)
class Ratings:
    rating: np.ndarray  # (n_models,) display scale; NaN for a model not yet rated
    ci_lower: np.ndarray  # 95% interval (percentile bootstrap or sandwich), display scale
    ci_upper: np.ndarray
    rank: np.ndarray  # int: 1 + number of models whose ci_lower > this model's ci_upper (= rank_lower)
    votes: np.ndarray  # int: battles each model took part in
    bootstrap: int  # rounds used (0 for sandwich intervals)
    seed: int
    rank_lower: np.ndarray  # int: best plausible rank (the rank above); 0 for a model not yet rated
    rank_upper: np.ndarray  # int: worst plausible rank: rated models whose ci_upper >= this ci_lower
    rated: np.ndarray  # bool: False where `min_votes` (see `rated`) held the model back
    intervals: str  # "bootstrap" or "sandwich"


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
    # arrays; counting 192 bytes sizes chunks to stay in cache.
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
    contracts the error many-fold per step at the cost of one
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
    rated: np.ndarray | None = None,
) -> Ratings:
    """Ratings from the point estimate and bootstrap rounds (rounds, n_models), both mean-centred."""
    if rated is not None and not rated.all():
        # Re-centred on the rated models, in the point estimate and in every round alike.
        theta = theta - (theta[rated].mean() if rated.any() else 0.0)
        if rated.any():
            rounds = rounds - rounds[:, rated].mean(axis=1, keepdims=True)
    rating = CENTRE + SCALE * theta
    if rounds.shape[0]:
        lower, upper = CENTRE + SCALE * np.percentile(rounds, INTERVAL, axis=0)
        lower = np.minimum(lower, rating)
        upper = np.maximum(upper, rating)
    else:
        lower, upper = rating.copy(), rating.copy()
    return _published(
        rating, lower, upper, votes, rated, anchor, anchor_rating, int(rounds.shape[0]), seed, "bootstrap"
    )


def _summarise_sandwich(
    theta: np.ndarray,
    cov: np.ndarray,
    votes: np.ndarray,
    anchor: int | None,
    anchor_rating: float,
    seed: int,
    rated: np.ndarray | None = None,
) -> Ratings:
    """Ratings with sandwich intervals from the strengths' covariance (see `sandwich`)."""
    if rated is not None and not rated.all():
        theta = theta - (theta[rated].mean() if rated.any() else 0.0)
    half = Z * SCALE * np.sqrt(centred_variance(cov, rated))
    rating = CENTRE + SCALE * theta
    return _published(
        rating, rating - half, rating + half, votes, rated, anchor, anchor_rating, 0, seed, "sandwich"
    )


def _published(
    rating: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    votes: np.ndarray,
    rated: np.ndarray | None,
    anchor: int | None,
    anchor_rating: float,
    rounds: int,
    seed: int,
    intervals: str,
) -> Ratings:
    """The anchor's shift, models not yet rated blanked out, and ranks among the rated."""
    if anchor is not None:
        if not 0 <= anchor < rating.size:
            raise ValueError(f"anchor {anchor} is not a model index below {rating.size}")
        shift = anchor_rating - rating[anchor]
        rating, lower, upper = rating + shift, lower + shift, upper + shift
    if rated is None:
        rated = np.ones(rating.size, dtype=bool)
    elif not rated.all():
        rating, lower, upper = (np.where(rated, x, np.nan) for x in (rating, lower, upper))
    rank_lower, rank_upper = rank_range(lower, upper, rated)
    return Ratings(
        rating=rating,
        ci_lower=lower,
        ci_upper=upper,
        rank=rank_lower,
        votes=votes,
        bootstrap=rounds,
        seed=seed,
        rank_lower=rank_lower,
        rank_upper=rank_upper,
        rated=rated,
        intervals=intervals,
    )


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
    intervals: str = "bootstrap",
    weights: np.ndarray | None = None,
    min_votes: int | None = None,
) -> Ratings:
    """Ratings with 95% intervals and ranks for votes given as model indices and outcomes.

    count, if given, is each row's multiplicity (see `aggregate`): identical output, intervals
    included, to passing every row `count` times, without building the repeats.

    intervals: "bootstrap" (`bootstrap` rounds, see above) or "sandwich" (closed form, see
    `sandwich`; `bootstrap`, `workers` and `pool` then go unused). weights, one positive number per
    row (see `weights`: `propensity_weights`, `pair_frequency_weights`), weigh each vote's
    log-likelihood in the fit and in both kinds of interval; None (the default) weighs every vote
    alike. min_votes, if given, reports models with fewer battles, or whose strength the votes do
    not identify, as not yet rated (see `rated`); None rates every model, as before.

    workers > 1 refits bootstrap chunks in that many threads, the calling one included; the result is
    identical for any value. The others come from `pool` if given (a pool shared with other work,
    whose threads join in once free), else from a pool of its own. BLAS is held to one thread while
    it runs (see `_one_blas_thread`).
    """
    if bootstrap < 0:
        raise ValueError("bootstrap must be >= 0")
    if intervals not in INTERVALS:
        raise ValueError(f"intervals must be one of {', '.join(INTERVALS)}, not {intervals!r}")
    a, b, o = _check_votes(model_a, model_b, outcome, n_models)
    weight = _check_count(count, a.size)
    battle_weight = _normalised(weights, weight, a.size)
    votes = _votes_per_model(a, b, n_models, weight)
    if battle_weight is None:
        keys, cells = _pair_outcome_cells(a, b, o, n_models, weight)
        sums = squares = cells.astype(np.float64)
    else:
        keys, cells, sums, squares = _weighted_cells(a, b, o, n_models, weight, battle_weight)
    counts = _counts_from_cells(keys, cells, n_models)
    rated = None
    if min_votes is not None:
        rated = rated_models(counts.i, counts.j, counts.wins_i, counts.wins_j, votes, n_models, min_votes)
    with _one_blas_thread():
        if battle_weight is None:
            theta = fit(counts, n_models)
        else:
            theta = _fit_scores(counts.i, counts.j, sums[:, 0] + 0.5 * sums[:, 2], sums.sum(axis=1), n_models)
        if intervals == "sandwich":
            cov = _pair_covariance(counts.i, counts.j, theta, sums, squares, n_models)
            return _summarise_sandwich(theta, cov, votes, anchor, anchor_rating, seed, rated)
        rng = np.random.default_rng(seed)
        if battle_weight is None:
            rounds = _bootstrap_pairs(counts, n_models, theta, bootstrap, rng, workers, pool)
        else:
            rows = _WeightedRows.of(a, b, o, weight, battle_weight, counts, n_models)
            rounds = _bootstrap_weighted_pairs(
                rows, counts, sums.sum(axis=1), n_models, theta, bootstrap, rng, workers, pool
            )
    return _summarise(theta, rounds, votes, anchor, anchor_rating, seed, rated)


@dataclass(frozen=True)
class _WeightedRows:
    """Weighted votes for the bootstrap: one row per (pair, outcome class, weight) with its battles.

    A battle's Poisson(1) bootstrap weight summed over the c identical battles of a row is
    Poisson(c), as for unweighted cells: one draw per row resamples battles exactly. Weights constant
    per pair (pair-frequency) give one row per cell; propensities that change with every draw give
    up to one row per vote, and the bootstrap then costs what the style board's does.
    """

    pair: np.ndarray  # index into the PairCounts rows
    cls: np.ndarray  # 0 the pair's i wins, 1 its j wins, 2 half-half
    weight: np.ndarray
    count: np.ndarray  # int64 battles

    @classmethod
    def of(
        cls,
        a: np.ndarray,
        b: np.ndarray,
        o: np.ndarray,
        count: np.ndarray | None,
        weight: np.ndarray,
        counts: PairCounts,
        n_models: int,
    ) -> _WeightedRows:
        outcome_class = ((a < b) == (o == B_WINS)).astype(np.int64)
        outcome_class[o >= TIE] = 2
        key = np.minimum(a, b).astype(np.int64) * n_models + np.maximum(a, b)
        pair_keys = counts.i * n_models + counts.j
        cell = np.searchsorted(pair_keys, key) * 3 + outcome_class
        order = np.lexsort((weight, cell))
        cell, w = cell[order], weight[order]
        c = np.ones(cell.size, dtype=np.int64) if count is None else count[order].astype(np.int64)
        new = np.ones(cell.size, dtype=bool)
        new[1:] = (cell[1:] != cell[:-1]) | (w[1:] != w[:-1])
        starts = np.flatnonzero(new)
        battles = np.add.reduceat(c, starts) if starts.size else np.zeros(0, dtype=np.int64)
        kept = battles > 0
        cell, w, battles = cell[starts][kept], w[starts][kept], battles[kept]
        return cls(cell // 3, cell % 3, w, battles)


def _bootstrap_weighted_pairs(
    rows: _WeightedRows,
    counts: PairCounts,
    weighted_n: np.ndarray,
    n_models: int,
    theta: np.ndarray,
    rounds: int,
    rng: np.random.Generator,
    workers: int,
    pool: Executor | None = None,
) -> np.ndarray:
    """`_bootstrap_pairs` for weighted votes: (rounds, n_models) mean-centred refits.

    Each round draws Poisson(battles) per row and sums weight x draw per pair into the weighted
    battles and scores that the chord refits take; orientation and chord as `_bootstrap_pairs`.
    """
    pairs = counts.i.size
    if rounds == 0 or pairs == 0:
        return np.zeros((rounds, n_models))
    diff = theta[counts.i] - theta[counts.j]
    flip = diff < 0
    first, second = np.where(flip, counts.j, counts.i), np.where(flip, counts.i, counts.j)
    # Score of the pair's first (stronger) model in each row: 1, 0 or 1/2.
    score_i = np.array([1.0, 0.0, 0.5])[rows.cls]
    score_first = np.where(flip[rows.pair], 1.0 - score_i, score_i)
    columns = np.arange(rows.pair.size)
    shape = (pairs, rows.pair.size)
    to_n = scipy.sparse.csr_matrix((rows.weight.astype(np.float32), (rows.pair, columns)), shape=shape)
    to_score = scipy.sparse.csr_matrix(
        ((rows.weight * score_first).astype(np.float32), (rows.pair, columns)), shape=shape
    )
    table = _PoissonTable(rows.count)
    chord = _Chord(_Graph.build(first, second, n_models), np.abs(diff), weighted_n, theta)

    def work(child: np.random.Generator, size: int) -> np.ndarray:
        draws = np.ascontiguousarray(table.draw(child, size).T)  # (rows, rounds)
        n = np.ascontiguousarray(to_n @ draws, dtype=np.float32)
        score = np.ascontiguousarray(to_score @ draws, dtype=np.float32)
        fitted = chord.solve(n, score)
        centred: np.ndarray = fitted - fitted.mean(axis=1, keepdims=True)
        return centred

    per_round = 16 * rows.pair.size + 192 * pairs
    return _run_chunks(rng, _chunks(rounds, per_round), work, workers, pool)


def _one_blas_thread() -> threadpool_limits:
    """Hold BLAS to one thread of its own (a process-wide setting, restored on exit).

    Every BLAS call here is small (solves with a few hundred unknowns, thin matrix products), so BLAS
    threads cannot help, and OpenBLAS's spin while they wait, taking cores from our own worker
    threads. So no OPENBLAS_NUM_THREADS=1 is needed.
    """
    return threadpool_limits(1, user_api="blas")
