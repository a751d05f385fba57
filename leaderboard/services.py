"""Votes in, snapshot out: rows to arrays, arrays through the rating engine, results to rows."""

from __future__ import annotations

import time
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

import numpy as np
from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone
from threadpoolctl import threadpool_limits

from arena.models import Answer, Battle, Vote
from arena.services import sampling_plan_write
from config import metrics
from leaderboard import boards, integrity_service, locks, rating, testing, weighting
from leaderboard.models import ExcludedVotes, Rating, Snapshot
from leaderboard.votes import (
    OUTCOME_OF,
    BoardCounts,
    CellWeights,
    Exclusions,
    Filters,
    board_counts,
    current_filters,
    exclusions,
    style_rows,
)

LOCK = "leaderboard.recompute"  # leaderboard.locks: it dies with a killed worker
CHECKED_KEY = "leaderboard:checked-up-to"  # config.health.BOARD_CHECKED_KEY


@dataclass(frozen=True)
class VoteArrays:
    model_ids: list[int]  # index -> LLM primary key
    model_a: np.ndarray
    model_b: np.ndarray
    outcome: np.ndarray
    count: np.ndarray  # votes per row
    features: np.ndarray | None = None  # style control: (votes, 4) style_delta, one vote per row
    weights: np.ndarray | None = None  # per row, the weight of each of its votes (None: all alike)


def vote_arrays(
    counts: BoardCounts,
    filters: Filters,
    *,
    style: bool = False,
    excluded: np.ndarray | None = None,
    weights: str = "none",
) -> VoteArrays:
    """A board's votes as index arrays for the rating engine: its cells with their counts, or for
    style control one row per vote with that vote's style features (leaving out the `excluded` ids
    the counts were taken without, if given, rather than the votes flagged now); each row weighted
    as `weights` says (`leaderboard.weighting`; the counts must carry their propensity sums for
    "propensity")."""
    if not style:
        return cell_arrays(counts, weights=weights)
    model_ids = np.union1d(counts.model_a, counts.model_b)
    rows = style_rows(filters, excluded, propensity=weights == "propensity")
    a, b = np.searchsorted(model_ids, rows.model_a), np.searchsorted(model_ids, rows.model_b)
    w = None
    if weights == "propensity":
        w = weighting.vote_weights(rows.weight, weighting.unknown_weight(_cell_weights(counts)))
    elif weights == "pair-frequency":
        w = rating.pair_frequency_weights(a, b, model_ids.size)
    return VoteArrays(
        model_ids=model_ids.tolist(),
        model_a=a,
        model_b=b,
        outcome=rows.outcome,
        count=np.broadcast_to(np.int64(1), rows.outcome.shape),  # one vote a row, without an array of ones
        features=rows.features,
        weights=w,
    )


def cell_arrays(counts: BoardCounts, *, weights: str = "none") -> VoteArrays:
    """A board's cells as index arrays for the rating engine, each with its number of votes; with
    propensity weights a cell is two rows (`weighting.split_cells`)."""
    model_ids = np.union1d(counts.model_a, counts.model_b)
    a, b = np.searchsorted(model_ids, counts.model_a), np.searchsorted(model_ids, counts.model_b)
    outcome, n, w = OUTCOME_OF[counts.winner], counts.n, None
    if weights == "propensity":
        cells = _cell_weights(counts)
        index, n, w = weighting.split_cells(counts.n, cells, weighting.unknown_weight(cells))
        a, b, outcome = a[index], b[index], outcome[index]
    elif weights == "pair-frequency":
        w = rating.pair_frequency_weights(a, b, model_ids.size, count=n)
    return VoteArrays(model_ids=model_ids.tolist(), model_a=a, model_b=b, outcome=outcome, count=n, weights=w)


def _cell_weights(counts: BoardCounts) -> CellWeights:
    if counts.weights is None:
        raise ValueError("propensity weights need counts taken with board_counts(..., propensity=True)")
    return counts.weights


def excluded_counts(left_out: dict[str, int]) -> dict[str, int]:
    """`left_out` with every vote flagged now and the named-mode votes, counted by reason."""
    last = Vote.objects.order_by("-id").values_list("id", flat=True).first() or 0
    return left_out | exclusions(last=last).counts


COUNT_TRIES = 3  # counts taken again while a sweep or a restore keeps changing the flags under them


def counts_and_exclusions(
    filters: Filters, every: list[boards.Board], propensity: bool = False
) -> tuple[dict[str, BoardCounts], Exclusions] | None:
    """Every board's counts, and the flagged votes they were taken without.

    The flags are read before and after the counts (they are separate statements, which PostgreSQL
    does not read from one moment): if a sweep or a restore changed them in between, the counts are
    taken again, so the exclusions a snapshot records are those its counts left out. None if the flags
    never held still; the next recompute tries again. With `propensity`, the counts carry their
    propensity sums.
    """
    before = exclusions(last=filters.last_vote_id)
    for _ in range(COUNT_TRIES):
        counts = board_counts(filters, every, propensity)
        after = exclusions(last=filters.last_vote_id)
        if after.same_votes(before):
            return counts, after
        before = after
    return None


def recompute(*, board: str = "overall") -> Snapshot | None:
    """Recompute every board; return the new snapshot of `board`, or None if it did not change."""
    published = recompute_all()
    return next((s for s in published if s.board == board), None)


def recompute_all() -> list[Snapshot]:
    """Publish a new snapshot of each board whose counted votes changed, then the provider testing
    figures (`testing.record_figures`).

    A lock keeps two recomputes from overlapping (beat and a vote-triggered run); the one that
    finds it taken does nothing. It dies with its holder, so a killed worker blocks nobody after
    it. Pages are invalidated by bumping a generation key. Every board is counted by one SQL
    aggregation (`board_counts`); a language board exists once a counted vote is in that language.
    """
    with locks.held(LOCK) as mine:
        if not mine:
            return []
        filters, provisional = current_filters("overall")
        every = boards.all_boards(set(boards.LANGUAGE_NAMES))
        counted = counts_and_exclusions(filters, every, settings.LEADERBOARD_WEIGHTS == "propensity")
        if counted is None:
            return []
        counts, flagged = counted  # the flags are the same for every board: read once, not per board
        cache.set(CHECKED_KEY, filters.last_vote_id, timeout=None)  # what /readyz counts as on the board
        # Fits run side by side in threads (pure numpy, much of it without the GIL), each as soon as
        # its board is prepared, the longest (style) first; the database work stays in this thread.
        # A fit's bootstrap rounds are shared with the pool's threads that are free (see
        # rating.rate's pool): the style board's long bootstrap takes both cores once the other
        # boards are done, and no more threads than cores compete for them (and for the GIL).
        # BLAS is held to one thread for the whole run (rating's own limits, entered from several
        # threads at once, could otherwise restore each other's).
        threads = settings.LEADERBOARD_FIT_THREADS
        jobs: list[tuple[_Job, Future[tuple[rating.Ratings | None, dict[str, Any]]]]] = []
        with threadpool_limits(1), ThreadPoolExecutor(threads) as pool:
            for board in sorted(every, key=lambda board: not board.style):
                job = _prepare(board, replace(filters, board=board.slug), counts[board.slug], flagged)
                if job is not None:
                    jobs.append((job, pool.submit(_fit, job, pool, threads)))
            # One record of the exclusions for every board published now, and for later recomputes
            # while it does not change.
            recorded = ExcludedVotes.record(flagged.ids) if jobs else None
            published = [_publish(job, *fit.result(), provisional, recorded) for job, fit in jobs]
        for job, fit in jobs:
            if job.board.slug == "overall" and (overall := fit.result()[0]) is not None:
                # The active sampler draws from the new board until the next one (arena.sampling).
                sampling_plan_write(
                    model_ids=job.arrays.model_ids,
                    ratings=overall.rating,
                    widths=overall.ci_upper - overall.ci_lower,
                    model_a=job.arrays.model_a,
                    model_b=job.arrays.model_b,
                    count=job.arrays.count,
                )
        testing.record_figures(filters, counts["overall"])
    if published:
        bump_generation()
    return published


GENERATION_KEY = "leaderboard:generation"


def generation() -> int:
    return cache.get_or_set(GENERATION_KEY, 1, timeout=None)


def bump_generation() -> None:
    try:
        cache.incr(GENERATION_KEY)
    except ValueError:  # not set yet (or evicted): any new value invalidates
        cache.set(GENERATION_KEY, int(time.time()), timeout=None)


@dataclass
class _Job:
    """A board whose votes changed: what its fit needs, and then what publishing it needs."""

    board: boards.Board
    counts: BoardCounts
    digest: str
    excluded: dict[str, int]
    arrays: VoteArrays
    params: dict[str, Any]
    seconds: float  # spent on this board so far (not waiting for a thread)


def _prepare(board: boards.Board, filters: Filters, counts: BoardCounts, flagged: Exclusions) -> _Job | None:
    """The board's job, or None when there is nothing to publish."""
    started = time.perf_counter()
    excluded = counts.left_out | flagged.counts
    latest = latest_snapshot(board.slug)
    if board.category and not counts.votes and latest is None:
        return None  # a category nobody voted in yet: no empty board to show
    digest = counts.digest()
    weights = settings.LEADERBOARD_WEIGHTS
    if latest and latest.votes_digest == digest and latest.excluded == excluded and latest.weights == weights:
        return None
    intervals = settings.LEADERBOARD_INTERVALS
    params = {
        "intervals": intervals,
        "bootstrap": bootstrap_rounds(board) if intervals == "bootstrap" else 0,
        "seed": settings.LEADERBOARD_SEED,
        "scale": 400,
        "base": 10,
        "offset": 1000,
        "anchor": "mean",
        "ties": "half a win each side",
        "weights": weights,
        "min_votes": settings.LEADERBOARD_MIN_VOTES,
        "filters": filters.as_json(),
        # Which integrity rules excluded votes (a keyed digest: the thresholds stay private).
        "integrity_rules": integrity_service.rules_digest(),
        "code_version": CODE_VERSION,
    }
    if weights == "propensity":
        # What a vote without a propensity weighed: its vote export writes the propensity it stands for.
        params["unknown_propensity_weight"] = weighting.unknown_weight(_cell_weights(counts))
    arrays = vote_arrays(counts, filters, style=board.style, excluded=flagged.ids, weights=weights)
    return _Job(board, counts, digest, excluded, arrays, params, time.perf_counter() - started)


def _fit(
    job: _Job, pool: Executor | None = None, workers: int = 1
) -> tuple[rating.Ratings | None, dict[str, Any]]:
    """The rating engine on a job's votes: pure numpy, so jobs can run in threads side by side.

    Its bootstrap rounds take up to `workers` threads, this one and free threads of `pool`."""
    started = time.perf_counter()
    arrays, params, details = job.arrays, job.params, {}
    result = None
    if arrays.model_ids and job.board.style:
        styled = rating.rate_style(
            arrays.model_a,
            arrays.model_b,
            arrays.outcome,
            arrays.features,
            len(arrays.model_ids),
            bootstrap=params["bootstrap"],
            seed=params["seed"],
            workers=workers,
            pool=pool,
            intervals=params["intervals"],
            weights=arrays.weights,
        )
        result = styled.ratings
        details["style"] = {
            name: {
                "coef": float(styled.coef[k]),
                "ci_lower": float(styled.coef_lower[k]),
                "ci_upper": float(styled.coef_upper[k]),
            }
            for k, name in enumerate(rating.STYLE_FEATURES)
        }
    elif arrays.model_ids:
        result = rating.rate(
            arrays.model_a,
            arrays.model_b,
            arrays.outcome,
            len(arrays.model_ids),
            count=arrays.count,
            bootstrap=params["bootstrap"],
            seed=params["seed"],
            workers=workers,
            pool=pool,
            intervals=params["intervals"],
            weights=arrays.weights,
        )
    if result is not None:
        # From the cells, not a style board's rows: the same counts, without a pass over every vote.
        cells = arrays if arrays.features is None else cell_arrays(job.counts)
        details["matrices"] = _matrices(cells, result)
    job.seconds += time.perf_counter() - started
    return result, details


def _publish(
    job: _Job,
    result: rating.Ratings | None,
    details: dict[str, Any],
    provisional: frozenset[int],
    excluded_votes: ExcludedVotes | None,
) -> Snapshot:
    """Write the board's snapshot and its ratings in one transaction."""
    started = time.perf_counter()
    board, arrays = job.board, job.arrays
    rows: list[Rating] = []
    if result is not None:
        for i, pk in enumerate(arrays.model_ids):
            votes_i = int(result.votes[i])
            if board.category and votes_i < settings.LEADERBOARD_MIN_VOTES:
                continue
            rows.append(
                Rating(
                    llm_id=pk,
                    rating=float(result.rating[i]),
                    ci_lower=float(result.ci_lower[i]),
                    ci_upper=float(result.ci_upper[i]),
                    rank=int(result.rank[i]),
                    rank_upper=int(result.rank_upper[i]),
                    votes=votes_i,
                    provisional=pk in provisional or votes_i < settings.LEADERBOARD_MIN_VOTES,
                )
            )
        if board.slug == "overall":
            details["latency"] = latency(arrays.model_ids)
    with transaction.atomic():
        snapshot = Snapshot.objects.create(
            board=board.slug,
            votes=job.counts.votes,
            votes_digest=job.digest,
            method=board.method,
            weights=job.params["weights"],
            params=job.params,
            excluded=job.excluded,
            excluded_votes=excluded_votes,
            details=details,
            duration_ms=(job.seconds + time.perf_counter() - started) * 1000,
        )
        for row in rows:
            row.snapshot = snapshot
        Rating.objects.bulk_create(rows)
    metrics.board_published(board.slug, snapshot.duration_ms / 1000)
    return snapshot


def bootstrap_rounds(board: boards.Board) -> int:
    if board.style:
        return settings.LEADERBOARD_STYLE_BOOTSTRAP
    return settings.LEADERBOARD_CATEGORY_BOOTSTRAP if board.category else settings.LEADERBOARD_BOOTSTRAP


CODE_VERSION = "rating-4"  # bump when a change to the engine can move published numbers
HEATMAP_MODELS = 20  # the heatmaps show the top models; beyond that a person cannot read them


def _matrices(arrays: VoteArrays, result: rating.Ratings) -> dict[str, Any]:
    counts = rating.aggregate(
        arrays.model_a, arrays.model_b, arrays.outcome, len(arrays.model_ids), count=arrays.count
    )
    order = np.argsort(-result.rating)[:HEATMAP_MODELS]
    wins = rating.win_rate_matrix(counts, len(arrays.model_ids))[np.ix_(order, order)]
    battles = rating.battle_count_matrix(counts, len(arrays.model_ids))[np.ix_(order, order)]
    return {
        "models": [arrays.model_ids[i] for i in order],
        "win_rate": [[None if np.isnan(x) else round(float(x), 4) for x in row] for row in wins],
        "battles": [[int(x) for x in row] for row in battles],
    }


def latency(model_ids: list[int]) -> dict[str, dict[str, float]]:
    """Median and p90 time to first token and median decoding speed of each model's answers finished
    in the last LEADERBOARD_LATENCY_DAYS: what a visitor meets now, from a bounded number of rows."""
    since = timezone.now() - timedelta(days=settings.LEADERBOARD_LATENCY_DAYS)
    answers = (
        Answer.objects.filter(status=Answer.Status.DONE, finished__gte=since, ttft_ms__isnull=False)
        .exclude(turn__battle__mode=Battle.Mode.DIRECT)  # a direct chat counts on no board
        .values_list(
            "side",
            "turn__battle__model_a_id",
            "turn__battle__model_b_id",
            "ttft_ms",
            "duration_ms",
            "output_tokens",
        )
    )
    ttft: dict[int, list[float]] = {pk: [] for pk in model_ids}
    speed: dict[int, list[float]] = {pk: [] for pk in model_ids}
    for side, a, b, first, total, tokens in answers.iterator(chunk_size=5000):
        pk = a if side == "a" else b
        if pk not in ttft:
            continue
        ttft[pk].append(first)
        if tokens and tokens > 1 and total and total > first:
            speed[pk].append((tokens - 1) / ((total - first) / 1000))
    figures: dict[str, dict[str, float]] = {}
    for pk, values in ttft.items():
        if values:
            figures[str(pk)] = {
                "ttft_p50_ms": round(float(np.percentile(values, 50)), 1),
                "ttft_p90_ms": round(float(np.percentile(values, 90)), 1),
                "answers": len(values),
            }
            if speed[pk]:
                figures[str(pk)]["tokens_per_s"] = round(float(np.median(speed[pk])), 1)
    return figures


def latest_snapshot(board: str = "overall") -> Snapshot | None:
    return Snapshot.objects.of_board(board).latest_first().first()
