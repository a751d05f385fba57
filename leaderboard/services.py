"""Votes in, snapshot out: rows to arrays, arrays through the rating engine, results to rows."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import Count, F, Q, QuerySet
from django.utils import timezone
from threadpoolctl import threadpool_limits

from arena.models import Answer, Battle, Vote
from leaderboard import boards, rating
from leaderboard.models import Rating, Snapshot
from leaderboard.votes import (
    OUTCOME,
    WINNERS,
    BoardCounts,
    Filters,
    VoteGroups,
    VoteTable,
    board_counts,
    filtered_votes,
    group_votes,
    load_table,
    positions,
    style_rows,
)
from providers.models import LLM, Organization

LOCK_KEY = "leaderboard:recompute:lock"
LOCK_SECONDS = 15 * 60  # longer than any recompute; a crashed worker's lock expires by itself


def current_filters(board_slug: str) -> tuple[Filters, frozenset[int]]:
    """The filters the public board applies now, and the published variants still provisional."""
    last = Vote.objects.order_by("-id").values_list("id", flat=True).first() or 0
    private = tuple(
        LLM.objects.filter(visibility=LLM.Visibility.PRIVATE).order_by("pk").values_list("pk", flat=True)
    )
    published = dict(LLM.objects.filter(published_at__isnull=False).values_list("pk", "published_at"))
    votes = Vote.objects.filter(anonymous=True, excluded="")
    fresh: Counter[int] = Counter()
    # Each count scans the votes: none to make while no variant was ever published.
    for side in ("model_a", "model_b") if published else ():
        after = votes.filter(
            **{f"{side}__published_at__isnull": False, "created__gte": F(f"{side}__published_at")}
        )
        fresh.update(dict(after.values(side).annotate(n=Count("id")).values_list(side, "n")))
    fresh_since = {
        pk: at.isoformat()
        for pk, at in sorted(published.items())
        if fresh[pk] >= settings.PROVIDER_FRESH_VOTES
    }
    provisional = frozenset(pk for pk in published if fresh[pk] < settings.PROVIDER_FRESH_VOTES)
    return Filters(board_slug, last, private, fresh_since), provisional


def public_votes() -> tuple[QuerySet[Vote], dict[str, int], frozenset[int]]:
    """The votes the overall public board counts now, those left out by the testing rules, and
    the provisional published variants (fresh-vote rule: PROVIDER_FRESH_VOTES since publication)."""
    filters, provisional = current_filters("overall")
    votes, left_out = filtered_votes(filters)
    return votes, left_out, provisional


@dataclass(frozen=True)
class VoteArrays:
    model_ids: list[int]  # index -> LLM primary key
    model_a: np.ndarray
    model_b: np.ndarray
    outcome: np.ndarray
    count: np.ndarray  # votes per row
    features: np.ndarray | None = None  # style control: (votes, 4) style_delta, one vote per row


def vote_arrays(
    counts: BoardCounts, table: VoteTable, filters: Filters, *, style: bool = False
) -> VoteArrays:
    """A board's votes as index arrays for the rating engine: its cells with their counts, or for
    style control one row per vote with that vote's style counts."""
    if not style:
        return cell_arrays(counts)
    model_ids = np.union1d(counts.model_a, counts.model_b)
    a, b, w, features = style_rows(table, filters)
    position = positions(model_ids)
    return VoteArrays(
        model_ids=model_ids.tolist(),
        model_a=position[a],
        model_b=position[b],
        outcome=_OUTCOME_OF[w],
        count=np.broadcast_to(np.int64(1), w.shape),  # one vote a row, without an array of ones
        features=features,
    )


_OUTCOME_OF = np.array([OUTCOME[w] for w in WINNERS], dtype=np.int8)  # rating's code of each winner


def cell_arrays(counts: BoardCounts) -> VoteArrays:
    """A board's cells as index arrays for the rating engine, each with its number of votes."""
    model_ids = np.union1d(counts.model_a, counts.model_b)
    return VoteArrays(
        model_ids=model_ids.tolist(),
        model_a=np.searchsorted(model_ids, counts.model_a),
        model_b=np.searchsorted(model_ids, counts.model_b),
        outcome=_OUTCOME_OF[counts.winner],
        count=counts.n,
    )


def excluded_counts(left_out: dict[str, int]) -> dict[str, int]:
    excluded = left_out | {
        row["excluded"]: row["n"]
        for row in Vote.objects.exclude(excluded="").values("excluded").annotate(n=Count("id"))
    }
    named = Vote.objects.filter(anonymous=False).count()
    if named:
        excluded["named_mode"] = named
    return excluded


def recompute(*, board: str = "overall") -> Snapshot | None:
    """Recompute every board; return the new snapshot of `board`, or None if it did not change."""
    published = recompute_all()
    return next((s for s in published if s.board == board), None)


def recompute_all() -> list[Snapshot]:
    """Publish a new snapshot of each board whose counted votes changed.

    A lock in the cache keeps two recomputes from overlapping (beat and a vote-triggered run);
    the one that finds it taken does nothing. Pages are invalidated by bumping a generation key.
    Every board is counted from one read of the votes (`load_table`, which reads only the votes
    newer than this process's last recompute); a language board exists once a counted vote is in
    that language.
    """
    token = uuid.uuid4().hex
    if not cache.add(LOCK_KEY, token, timeout=LOCK_SECONDS):
        return []
    try:
        filters, provisional = current_filters("overall")
        every = boards.all_boards(set(boards.LANGUAGE_NAMES))
        table = load_table(filters)
        flagged = excluded_counts({})  # the same for every board: counted once, not per board
        # Fits run side by side in threads (pure numpy, much of it without the GIL), each as soon as
        # its board is prepared, the longest (style) first; the database work stays in this thread.
        # The style board is counted vote by vote, so that its fit starts before the votes are
        # grouped for the other boards (`group_votes`).
        # A fit's bootstrap rounds are shared with the pool's threads that are free (see
        # rating._run_chunks): the style board's long bootstrap takes both cores once the other
        # boards are done, and no more threads than cores compete for them (and for the GIL).
        # BLAS is held to one thread for the whole run (rating's own limits, entered from several
        # threads at once, could otherwise restore each other's).
        threads = settings.LEADERBOARD_FIT_THREADS
        jobs: list[tuple[_Job, Future[tuple[rating.Ratings | None, dict[str, Any]]]]] = []
        groups: VoteGroups | None = None
        with threadpool_limits(1), ThreadPoolExecutor(threads) as pool:
            for board in sorted(every, key=lambda board: not board.style):
                if board.style:
                    counts = board_counts(table, filters, board.slug)
                else:
                    if groups is None:
                        groups = group_votes(table, filters)
                    counts = groups.counts(board.slug)
                job = _prepare(board, replace(filters, board=board.slug), counts, table, flagged)
                if job is not None:
                    jobs.append((job, pool.submit(_fit, job, pool, threads)))
            published = [_publish(job, *fit.result(), provisional) for job, fit in jobs]
    finally:
        if cache.get(LOCK_KEY) == token:
            cache.delete(LOCK_KEY)
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


def _prepare(
    board: boards.Board, filters: Filters, counts: BoardCounts, table: VoteTable, flagged: dict[str, int]
) -> _Job | None:
    """The board's job, or None when there is nothing to publish."""
    started = time.perf_counter()
    excluded = counts.left_out | flagged
    latest = latest_snapshot(board.slug)
    if board.category and not counts.votes and latest is None:
        return None  # a category nobody voted in yet: no empty board to show
    digest = counts.digest(per_vote=board.style)
    if latest and latest.votes_digest == digest and latest.excluded == excluded:
        return None
    params = {
        "bootstrap": bootstrap_rounds(board),
        "seed": settings.LEADERBOARD_SEED,
        "scale": 400,
        "base": 10,
        "offset": 1000,
        "anchor": "mean",
        "ties": "half a win each side",
        "min_votes": settings.LEADERBOARD_MIN_VOTES,
        "filters": filters.as_json(),
        "code_version": CODE_VERSION,
    }
    arrays = vote_arrays(counts, table, filters, style=board.style)
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
        )
    if result is not None:
        # From the cells, not a style board's rows: the same counts, without a pass over every vote.
        cells = arrays if arrays.features is None else cell_arrays(job.counts)
        details["matrices"] = _matrices(cells, result)
    job.seconds += time.perf_counter() - started
    return result, details


def _publish(
    job: _Job, result: rating.Ratings | None, details: dict[str, Any], provisional: frozenset[int]
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
            params=job.params,
            excluded=job.excluded,
            details=details,
            duration_ms=(job.seconds + time.perf_counter() - started) * 1000,
        )
        for row in rows:
            row.snapshot = snapshot
        Rating.objects.bulk_create(rows)
    return snapshot


def bootstrap_rounds(board: boards.Board) -> int:
    if board.style:
        return settings.LEADERBOARD_STYLE_BOOTSTRAP
    return settings.LEADERBOARD_CATEGORY_BOOTSTRAP if board.category else settings.LEADERBOARD_BOOTSTRAP


CODE_VERSION = "rating-2"  # bump when a change to the engine can move published numbers
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
    answers = Answer.objects.filter(
        status=Answer.Status.DONE, finished__gte=since, ttft_ms__isnull=False
    ).values_list(
        "side",
        "turn__battle__model_a_id",
        "turn__battle__model_b_id",
        "ttft_ms",
        "duration_ms",
        "output_tokens",
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


# --- Provider testing rules: what the public board counts, private results, the ledger -----------


@dataclass(frozen=True)
class OpponentRecord:
    name: str
    label: str
    battles: int
    wins: int
    losses: int
    ties: int  # tie and both-bad: half a win each side, as in the ratings
    win_rate: float


@dataclass(frozen=True)
class VariantResult:
    """A variant's rating on the public board's scale, as if it were on it, and its record."""

    rating: float
    ci_lower: float
    ci_upper: float
    rank: int  # the rank it would have on the board
    votes: int
    pool_models: int
    opponents: list[OpponentRecord] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VariantResult | None:
        if not data.get("votes"):
            return None
        return cls(**{**data, "opponents": [OpponentRecord(**o) for o in data.get("opponents", [])]})


def variant_result(llm: LLM) -> VariantResult | None:
    """The private result of a variant; None before it has a vote against a public model.

    Once its testing ended the result is computed once, on the votes up to then, and frozen on the
    row (the testing ledger discloses that one). Before, it is cached until the variant's vote
    count or the public board changes.
    """
    if llm.testing_ended_at is not None:
        if llm.final_result is None:
            computed = compute_variant_result(llm, until=llm.testing_ended_at)
            frozen = computed.as_dict() if computed else {"votes": 0}
            LLM.objects.filter(pk=llm.pk, final_result__isnull=True).update(final_result=frozen)
            llm.final_result = frozen
        return VariantResult.from_dict(llm.final_result)
    latest = latest_snapshot()
    key = f"leaderboard:variant-result:{llm.pk}:{llm.test_votes}:{latest.pk if latest else 0}"
    cached = cache.get(key)
    if cached is None:
        computed = compute_variant_result(llm)
        cached = computed.as_dict() if computed else {"votes": 0}
        cache.set(key, cached, timeout=settings.LEADERBOARD_RECOMPUTE_SECONDS * 2)
    return VariantResult.from_dict(cached)


def compute_variant_result(llm: LLM, *, until: datetime | None = None) -> VariantResult | None:
    """Rate the variant with the same engine as the board: the counted public votes plus its own.

    Its own votes are those against public models only: a vote against another unreleased
    variant would tell this organisation that one exists. Ratings are shifted so that the pool's
    mean is the board's centre, as on the board.
    """
    mine = Q(model_a=llm) | Q(model_b=llm)
    own = Vote.objects.filter(anonymous=True, excluded="").filter(
        Q(model_a=llm, model_b__visibility=LLM.Visibility.PUBLIC)
        | Q(model_b=llm, model_a__visibility=LLM.Visibility.PUBLIC)
    )
    pool = public_votes()[0].exclude(mine)
    if until is not None:
        own, pool = own.filter(created__lte=until), pool.filter(created__lte=until)
    fields = ("model_a_id", "model_b_id", "winner")
    own_rows = list(own.order_by("id").values_list(*fields))
    if not own_rows:
        return None
    # The public votes as (pair, winner) counts: thousands of rows, not millions.
    cells = list(pool.values_list(*fields).annotate(n=Count("id")).order_by()) + [(*r, 1) for r in own_rows]
    model_ids = sorted({c[0] for c in cells} | {c[1] for c in cells})
    index = {pk: i for i, pk in enumerate(model_ids)}
    n = np.array([c[3] for c in cells], dtype=np.int64)
    result = rating.rate(
        np.array([index[c[0]] for c in cells], dtype=np.int64),
        np.array([index[c[1]] for c in cells], dtype=np.int64),
        np.array([OUTCOME[c[2]] for c in cells], dtype=np.int64),
        len(model_ids),
        count=n,
        bootstrap=settings.LEADERBOARD_BOOTSTRAP,
        seed=settings.LEADERBOARD_SEED,
        workers=settings.LEADERBOARD_WORKERS,
    )
    i = index[llm.pk]
    others = np.arange(len(model_ids)) != i
    shift = float(result.rating[others].mean()) - rating.CENTRE
    return VariantResult(
        rating=round(float(result.rating[i]) - shift, 2),
        ci_lower=round(float(result.ci_lower[i]) - shift, 2),
        ci_upper=round(float(result.ci_upper[i]) - shift, 2),
        rank=int(result.rank[i]),
        votes=len(own_rows),
        pool_models=len(model_ids) - 1,
        opponents=_opponent_records(llm, own_rows),
    )


def _opponent_records(llm: LLM, rows: list[tuple[int, int, str]]) -> list[OpponentRecord]:
    tally: dict[int, Counter[str]] = {}
    for a, b, winner in rows:
        mine_is_a = a == llm.pk
        opponent = b if mine_is_a else a
        if winner in (Vote.Winner.TIE, Vote.Winner.BOTH_BAD):
            outcome = "tie"
        else:
            outcome = "win" if (winner == Vote.Winner.A) == mine_is_a else "loss"
        tally.setdefault(opponent, Counter())[outcome] += 1
    names = {m.pk: m for m in LLM.objects.filter(pk__in=list(tally))}
    records = []
    for pk, counts in tally.items():
        n = counts.total()
        records.append(
            OpponentRecord(
                name=names[pk].name,
                label=names[pk].label,
                battles=n,
                wins=counts["win"],
                losses=counts["loss"],
                ties=counts["tie"],
                win_rate=round((counts["win"] + counts["tie"] / 2) / n, 4),
            )
        )
    return sorted(records, key=lambda r: (-r.battles, r.name))


def battle_counts(llm_ids: list[int]) -> dict[int, int]:
    """Anonymous battles each model was drawn into, whatever became of them."""
    counts: Counter[int] = Counter()
    battles = Battle.objects.anonymous()
    for side in ("model_a", "model_b"):
        rows = battles.filter(**{f"{side}__in": llm_ids}).values(side).annotate(n=Count("id"))
        counts.update(dict(rows.values_list(side, "n")))
    return dict(counts)


@dataclass(frozen=True)
class LedgerVariant:
    codename: str | None  # shown once the variant is disclosed or published
    name: str | None  # its public name, once published
    status: str
    testing_started_at: datetime | None
    testing_ended_at: datetime | None
    published_at: datetime | None
    retired_at: datetime | None
    votes: int
    disclosed: bool
    result: VariantResult | None  # the final result, once disclosed


@dataclass(frozen=True)
class LedgerOrganization:
    name: str
    slug: str
    variants_tested: int
    variants_published: int
    votes: int  # anonymous votes on battles with its listed variants while they were private
    battle_share: float  # those votes over all anonymous votes
    variants: list[LedgerVariant]


def testing_ledger(*, now: datetime | None = None) -> list[LedgerOrganization]:
    """Per organisation, every variant it tested: dates, votes, share, and disclosed ratings.

    A variant is listed once its testing ended (published, retired or at its budget), without
    codename or rating until disclosed (LLM.objects.disclosed: the no-retraction rule), so the
    number of variants tried per release is public while nothing is said about tests under way.
    """
    now = now or timezone.now()
    variants = list(
        LLM.objects.variants()
        .filter(testing_ended_at__lte=now)
        .select_related("owner")
        .order_by("testing_started_at", "pk")
    )
    disclosed = set(LLM.objects.disclosed(now=now).values_list("pk", flat=True))
    all_votes = Vote.objects.filter(battle__mode=Battle.Mode.ANONYMOUS).count()
    by_org: dict[int, list[LLM]] = {}
    for variant in variants:
        by_org.setdefault(variant.owner_id, []).append(variant)
    ledger = []
    for org in Organization.objects.filter(pk__in=list(by_org)).order_by("name"):
        rows = [
            LedgerVariant(
                codename=v.codename if v.pk in disclosed or v.published_at else None,
                name=v.name if v.published_at else None,
                status=v.testing_status,
                testing_started_at=v.testing_started_at,
                testing_ended_at=v.testing_ended_at,
                published_at=v.published_at,
                retired_at=v.retired_at,
                votes=v.test_votes,
                disclosed=v.pk in disclosed,
                result=variant_result(v) if v.pk in disclosed else None,
            )
            for v in by_org[org.pk]
        ]
        votes = _votes_under_test(org, now)
        ledger.append(
            LedgerOrganization(
                name=org.name,
                slug=org.slug,
                variants_tested=len(rows),
                variants_published=sum(1 for r in rows if r.published_at),
                votes=votes,
                battle_share=round(votes / all_votes, 4) if all_votes else 0.0,
                variants=rows,
            )
        )
    return ledger


def _votes_under_test(org: Organization, now: datetime) -> int:
    """Anonymous votes on battles with the organisation's variants while private, once ended."""

    def side(s: str) -> Q:
        return Q(**{f"battle__model_{s}__owner": org, f"battle__model_{s}__testing_ended_at__lte": now}) & (
            Q(**{f"battle__model_{s}__published_at__isnull": True})
            | Q(created__lt=F(f"battle__model_{s}__published_at"))
        )

    return Vote.objects.filter(battle__mode=Battle.Mode.ANONYMOUS).filter(side("a") | side("b")).count()
