"""Style control: Bradley-Terry with per-battle covariates, `rate_style`.

The log-odds that A beats B are theta_A - theta_B + beta . x, where x holds, per style feature,
(a - b)/(a + b + 1) of the two answers' counts (`style_delta`), standardised over the battles. The
ratings are then the strengths with style held equal, and beta says how much a standard deviation of
each feature moves the log-odds (a ridge, STYLE_RIDGE, holds it to sane values on a young board).
Continuous covariates do not reduce to pair counts, so this fit and its bootstrap run over battles:
O(battles) per step, each battle with a Poisson(1) weight per round. The point fit is Newton
warm-started from the plain pair-count fit; the rounds use the same chord iteration as `bootstrap`
(`_StyleChord`), whose steps need the gradient only. Sandwich intervals (`_style_covariance`) sum
the Hessian and the score outer products over battles once. The tests hold the rounds to 1e-3
display points and 1e-5 in the coefficients of exact refits.
"""

from __future__ import annotations

import itertools
from concurrent.futures import Executor
from dataclasses import dataclass

import numpy as np
import scipy.linalg
import scipy.special

from leaderboard.rating.bootstrap import (
    _BOOTSTRAP_STEP_TOL,
    INTERVAL,
    INTERVALS,
    Ratings,
    Z,
    _chord_refits,
    _chunks,
    _one_blas_thread,
    _Parts,
    _run_chunks,
    _summarise,
    _summarise_sandwich,
)
from leaderboard.rating.bradley_terry import (
    RIDGE,
    _check_votes,
    _counts_from_cells,
    _Graph,
    _pair_outcome_cells,
    _softplus_terms,
    _votes_per_model,
    fit,
)
from leaderboard.rating.newton import _newton
from leaderboard.rating.outcomes import A_WINS, B_WINS
from leaderboard.rating.poisson import _PoissonTable
from leaderboard.rating.rated import rated_models
from leaderboard.rating.sandwich import _components, _robust_covariance
from leaderboard.rating.weights import _normalised

STYLE_FEATURES = ("length", "headers", "lists", "bold")
# Ridge on the style coefficients: a Gaussian prior with a standard deviation of 1 logit per
# standard deviation of a feature (real boards measure 0.05 to 0.3), as strong as FastChat's style
# control (scikit-learn's C = 1) and far milder than arena-rank's. On a young board whose feature
# barely varies it keeps the coefficient, and the strengths confounded with it, from running off to
# thousands of points; a weaker one (0.1) still let them reach 5,000. Where styles go with models
# (bench/rating.py's arenas) it moves ratings by at most 0.03 points at 1M battles, 0.3 at 100k.
STYLE_RIDGE = 1.0

# The chord iteration's error estimate is less reliable here than on pair counts: a tighter bound.
_STYLE_CHORD_TOL = 1e-6
# Values (battles x rounds) per block of the style bootstrap's passes (see _StyleChord). Some numpy
# calls hold the GIL (repeat, reduceat, a matrix-vector product), and worker threads hand it over
# between calls: blocks of a million values keep those hand-overs rare.
_STYLE_BLOCK = 1 << 20
# Battles per block of the Hessian's and the sandwich's sums (`_StyleDesign.blocks`): temporaries of a
# few MB, in cache, where whole-length ones cost fresh pages.
_OUTER_BLOCK = 1 << 16


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
    order: np.ndarray  # the battles as given, in this order (to put per-battle weights in it)

    @property
    def x(self) -> np.ndarray:  # (k, battles)
        return self.with_one[1:]

    def blocks(self) -> list[tuple[int, int, int, int]]:
        """(first battle, end battle, first pair, end pair) of blocks of about _OUTER_BLOCK battles,
        each ending where a pair does (a pair longer than that is one block)."""
        battles, pairs = self.y.size, self.seg_start.size
        ends = np.append(self.seg_start, battles)
        cuts = np.searchsorted(ends, np.arange(_OUTER_BLOCK, battles, _OUTER_BLOCK), side="left")
        edges = np.unique(np.concatenate([[0], cuts[(cuts > 0) & (cuts < pairs)], [pairs]]))
        return [(int(ends[p0]), int(ends[p1]), int(p0), int(p1)) for p0, p1 in itertools.pairwise(edges)]

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
        # A 16-bit key sorts by radix, cheaper than int64's merge sort.
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
            # take, not x[order]: the same rows, gathered several times faster.
            block[...] = np.take(x, order[start:end], axis=0).T
            block -= mean[:, None]
            block /= std[:, None]
            np.negative(block, out=block, where=flip[start:end])
            with_one_32[1:, start:end] = block
        seg_start = np.flatnonzero(np.concatenate([[True], key[1:] != key[:-1]])) if key.size else key
        seg_len = np.diff(np.concatenate([seg_start, [key.size]]))
        pair = key[seg_start]
        graph = _Graph.build(pair // n_models, pair % n_models, n_models)
        return cls(graph, seg_start, seg_len, y, with_one, with_one_32, order)


class _StyleProblem:
    """Bradley-Terry with per-battle covariates, parameters (theta (m), beta (k)), for one round.

    Rounds are not batched here, unlike the pair problem: every evaluation already streams over all
    battles, so per-call overhead does not matter, and one-dimensional arrays keep numpy on its
    fastest loops.
    """

    def __init__(self, design: _StyleDesign, weight: np.ndarray | None, ridge: float | np.ndarray) -> None:
        self.design = design
        self.m = design.graph.n_models
        self.weight = weight  # (battles,) battle times bootstrap weights, None for all ones
        self.wy = design.y if weight is None else weight * design.y
        # Per parameter (a scalar: the same for all), as a column to scale (m + k, 1) parameters.
        self.ridge = np.broadcast_to(np.asarray(ridge, dtype=np.float64), (self.m + design.x.shape[0],))[
            :, None
        ]

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
        loss += 0.5 * float((self.ridge * params)[:, 0] @ params[:, 0])
        return np.array([loss]), grad, curv[:, None]

    def hessian(self, curv: np.ndarray, cols: np.ndarray) -> np.ndarray:
        d, m = self.design, self.m
        k = d.with_one.shape[0] - 1
        c = curv[:, 0].astype(np.float32)
        # Row 0 gives the per-pair curvature, the others the theta-beta cross terms; block by block
        # of whole pairs, as `_style_outers`, without a (1 + k, battles) temporary.
        per_pair = np.empty((k + 1, d.seg_start.size), dtype=np.float32)
        square = np.zeros((k, k), dtype=np.float32)
        for start, end, first, last in d.blocks():
            rows = d.with_one_32[:, start:end]
            weighted = rows * c[start:end]
            per_pair[:, first:last] = np.add.reduceat(weighted, d.seg_start[first:last] - start, axis=1)
            square += weighted[1:] @ rows[1:].T
        per_pair = per_pair.astype(np.float64)
        hess = d.graph.hessian(per_pair[0][:, None], extra=k)[:, :, 0]
        cross = d.graph.incidence @ per_pair[1:].T
        hess[:m, m:] = cross
        hess[m:, :m] = cross.T
        hess[m:, m:] = square
        hess[np.diag_indices(m + k)] += self.ridge[:, 0]
        return hess[None]


class _StyleChord:
    """Bootstrap refits of the style model by iterating with the point estimate's Hessian, as `_Chord` does.

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
        self.ridge = point.ridge
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
                    with np.errstate(over="ignore"):  # exp -> inf: the sigmoid is 0 in float32, rightly
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
            grad += self.ridge * (self.params[:, None] if delta is None else self.params[:, None] + delta)
            return grad

        delta, settled = _chord_refits(self.factor, gradient, _STYLE_CHORD_TOL)
        fitted = (self.params[:, None] + delta).T
        for r in np.flatnonzero(~settled):
            problem = _StyleProblem(d, weights[r].astype(np.float64), self.ridge[:, 0])
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
    intervals: str = "bootstrap",
    weights: np.ndarray | None = None,
    min_votes: int | None = None,
) -> StyleRatings:
    """Style-controlled ratings: Bradley-Terry with per-battle covariates, bootstrapped over battles.

    features is (battles, k), each column already (a - b)/(a + b + 1) (see `style_delta`); it is
    standardised here (a column without spread is left at zero and gets a zero coefficient).
    Ratings, scale, anchor, intervals, weights, min_votes, ranks, workers and pool follow `rate`;
    the bootstrap gives every battle a Poisson(1) weight per round (times its own weight), like
    `rate`, and refits warm-started from the point estimate. With min_votes given, a coefficient
    whose feature has no spread is reported as NaN (not identified) rather than 0.
    """
    if bootstrap < 0:
        raise ValueError("bootstrap must be >= 0")
    if intervals not in INTERVALS:
        raise ValueError(f"intervals must be one of {', '.join(INTERVALS)}, not {intervals!r}")
    a, b, o = _check_votes(model_a, model_b, outcome, n_models)
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] != a.size:
        raise ValueError(f"features must be (battles, k) = ({a.size}, k), got {x.shape}")
    k = x.shape[1]
    if not all(np.isfinite(x[:, j]).all() for j in range(k)):
        raise ValueError("features must be finite")
    battle_weight = _normalised(weights, None, a.size)
    # Column by column, without a transposed copy: numpy sums a strided column in the same order as
    # a contiguous one, so these are the same numbers.
    mean = np.array([x[:, j].mean() for j in range(k)]) if a.size else np.zeros(k)
    std = np.array([x[:, j].std() for j in range(k)]) if a.size else np.ones(k)
    spread = std > 0
    std = np.where(spread, std, 1.0)

    design = _StyleDesign.build(a, b, o, x, mean, std, n_models)
    weight = None if battle_weight is None else battle_weight[design.order]
    ridge = np.concatenate([np.full(n_models, RIDGE), np.full(k, STYLE_RIDGE)])
    point = _StyleProblem(design, weight, ridge)
    # Warm start from the plain fit on pair counts (cheap): Newton over battles then needs fewer steps.
    keys, cells = _pair_outcome_cells(a, b, o, n_models)
    counts = _counts_from_cells(keys, cells, n_models)
    votes = _votes_per_model(a, b, n_models)
    rated = None
    if min_votes is not None:
        rated = rated_models(counts.i, counts.j, counts.wins_i, counts.wins_j, votes, n_models, min_votes)
    with _one_blas_thread():
        start = np.concatenate([fit(counts, n_models), np.zeros(k)])
        params = _newton(point, start[:, None])[:, 0]
        params[:n_models] -= params[:n_models].mean()
        if intervals == "sandwich":
            cov = _style_covariance(point, params)
            rounds = np.zeros((0, n_models + k))
        elif bootstrap and a.size:
            chord = _StyleChord(design, point, params)
            table = _PoissonTable(np.ones(1, dtype=np.int64))
            scale = None if weight is None else weight.astype(np.float32)

            def work(child: np.random.Generator, size: int) -> np.ndarray:
                draws = table.draw(child, size * a.size).reshape(size, a.size)
                return chord.solve(draws if scale is None else draws * scale)

            # About ten float32 values per battle and round are alive at once.
            sizes = _chunks(bootstrap, a.size * 40)
            rounds = _run_chunks(np.random.default_rng(seed), sizes, work, workers, pool)
        else:
            rounds = np.zeros((bootstrap, n_models + k))  # without battles every round is all zeros
    coef = params[n_models:]
    if intervals == "sandwich":
        ratings = _summarise_sandwich(
            params[:n_models], cov[:n_models, :n_models], votes, anchor, anchor_rating, seed, rated
        )
        half = Z * np.sqrt(np.maximum(np.diag(cov)[n_models:], 0.0))
        coef_lower, coef_upper = coef - half, coef + half
    else:
        ratings = _summarise(
            params[:n_models], rounds[:, :n_models], votes, anchor, anchor_rating, seed, rated
        )
        if rounds.shape[0]:
            coef_lower, coef_upper = np.percentile(rounds[:, n_models:], INTERVAL, axis=0)
            coef_lower, coef_upper = np.minimum(coef_lower, coef), np.maximum(coef_upper, coef)
        else:
            coef_lower, coef_upper = coef.copy(), coef.copy()
    if min_votes is not None and not spread.all():
        coef, coef_lower, coef_upper = (np.where(spread, c, np.nan) for c in (coef, coef_lower, coef_upper))
    return StyleRatings(
        ratings=ratings,
        coef=coef,
        coef_lower=coef_lower,
        coef_upper=coef_upper,
        feature_mean=mean,
        feature_std=std,
    )


def _style_outers(design: _StyleDesign, per_battle: tuple[np.ndarray, ...]) -> list[np.ndarray]:
    """For each vector v, sum_b v_b u_b u_b' over battles, u_b = (e_i - e_j, x_b) its parameter direction.

    (m + k, m + k) each, float64 throughout (the point Hessian of `_StyleProblem` rounds in float32,
    harmless for a search direction, not for a covariance). One pass over the battles, block by block
    of whole pairs, so that no (1 + k, battles) temporary is made.
    """
    graph, m = design.graph, design.graph.n_models
    k = design.with_one.shape[0] - 1
    per_pair = [np.zeros((k + 1, design.seg_start.size)) for _ in per_battle]
    square = [np.zeros((k, k)) for _ in per_battle]
    for start, end, first, last in design.blocks():
        rows = design.with_one[:, start:end]
        for vector, sums, block in zip(per_battle, per_pair, square, strict=True):
            weighted = rows * vector[start:end]
            sums[:, first:last] = np.add.reduceat(weighted, design.seg_start[first:last] - start, axis=1)
            block += weighted[1:] @ rows[1:].T
    outers = []
    for sums, block in zip(per_pair, square, strict=True):
        outer = graph.hessian(sums[0][:, None], extra=k)[:, :, 0]
        cross = graph.incidence @ sums[1:].T
        outer[:m, m:] = cross
        outer[m:, :m] = cross.T
        outer[m:, m:] = block
        outers.append(outer)
    return outers


def _style_covariance(point: _StyleProblem, params: np.ndarray) -> np.ndarray:
    """Sandwich covariance H^-1 J H^-1 of (theta, beta) at the point estimate (see `sandwich`)."""
    design, m = point.design, point.m
    z = point.logits(params)
    p = scipy.special.expit(z)
    curvature = p * scipy.special.expit(-z)
    resid = p - design.y  # a battle's score is -(y - p) u_b: the sign goes in the square
    w = point.weight
    if w is not None:
        curvature *= w
        resid *= w
    hessian, outer = _style_outers(design, (curvature, resid * resid))
    hessian[np.diag_indices(hessian.shape[0])] += point.ridge[:, 0]
    return _robust_covariance(hessian, outer, _components(design.graph.i, design.graph.j, m))
