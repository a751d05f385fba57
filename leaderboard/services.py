"""Votes in, snapshot out: rows to arrays, arrays through the rating engine, results to rows."""

from __future__ import annotations

import hashlib
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import Count, F, FloatField, Func, Q, QuerySet
from django.utils import timezone

from arena.models import Answer, Battle, Vote
from leaderboard import boards, rating
from leaderboard.models import Rating, Snapshot
from providers.models import LLM, Organization

LOCK_KEY = "leaderboard:recompute:lock"
LOCK_SECONDS = 15 * 60  # longer than any recompute; a crashed worker's lock expires by itself

OUTCOME = {
    Vote.Winner.A: rating.A_WINS,
    Vote.Winner.B: rating.B_WINS,
    Vote.Winner.TIE: rating.TIE,
    Vote.Winner.BOTH_BAD: rating.BOTH_BAD,
}


@dataclass(frozen=True)
class Filters:
    """Exactly which votes a snapshot counted, stored with it so its votes can be exported again."""

    board: str
    last_vote_id: int
    private: tuple[int, ...] = ()  # unpublished variants: a vote with one of them never counts
    # Published variants with enough fresh votes: only their votes from this moment on count.
    fresh_since: dict[int, str] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "board": self.board,
            "last_vote_id": self.last_vote_id,
            "private": list(self.private),
            "fresh_since": {str(k): v for k, v in self.fresh_since.items()},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Filters:
        return cls(
            data["board"],
            data["last_vote_id"],
            tuple(data.get("private", ())),
            {int(k): v for k, v in data.get("fresh_since", {}).items()},
        )


def current_filters(board_slug: str) -> tuple[Filters, frozenset[int]]:
    """The filters the public board applies now, and the published variants still provisional."""
    last = Vote.objects.order_by("-id").values_list("id", flat=True).first() or 0
    private = tuple(
        LLM.objects.filter(visibility=LLM.Visibility.PRIVATE).order_by("pk").values_list("pk", flat=True)
    )
    votes = Vote.objects.filter(battle__mode=Battle.Mode.ANONYMOUS, excluded="")
    fresh: Counter[int] = Counter()
    for side in ("battle__model_a", "battle__model_b"):
        after = votes.filter(
            **{f"{side}__published_at__isnull": False, "created__gte": F(f"{side}__published_at")}
        )
        fresh.update(dict(after.values(side).annotate(n=Count("id")).values_list(side, "n")))
    published = dict(LLM.objects.filter(published_at__isnull=False).values_list("pk", "published_at"))
    fresh_since = {
        pk: at.isoformat()
        for pk, at in sorted(published.items())
        if fresh[pk] >= settings.PROVIDER_FRESH_VOTES
    }
    provisional = frozenset(pk for pk in published if fresh[pk] < settings.PROVIDER_FRESH_VOTES)
    return Filters(board_slug, last, private, fresh_since), provisional


def filtered_votes(filters: Filters) -> tuple[QuerySet[Vote], dict[str, int]]:
    """The votes a board counts under these filters, and those the testing rules left out, by reason."""
    spec = boards.board(filters.board)
    votes = Vote.objects.filter(battle__mode=Battle.Mode.ANONYMOUS, excluded="", id__lte=filters.last_vote_id)
    if spec is not None:
        votes = votes.filter(spec.votes)
    left_out: dict[str, int] = {}
    if filters.private:
        private = Q(battle__model_a__in=filters.private) | Q(battle__model_b__in=filters.private)
        left_out["unpublished_variant"] = votes.filter(private).count()
        votes = votes.exclude(private)
    if filters.fresh_since:
        stale = Q()
        for pk, since in filters.fresh_since.items():
            at = datetime.fromisoformat(since)
            stale |= (Q(battle__model_a=pk) | Q(battle__model_b=pk)) & Q(created__lt=at)
        left_out["before_publication"] = votes.filter(stale).count()
        votes = votes.exclude(stale)
    return votes, {reason: n for reason, n in left_out.items() if n}


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
    digest: str
    features: np.ndarray | None = None  # style control: (votes, 4) style_delta


def vote_arrays(votes: QuerySet[Vote], *, last_vote_id: int, style: bool = False) -> VoteArrays:
    """Votes as index arrays for the rating engine.

    Without style the database aggregates them to (model_a, model_b, winner) counts, so a board of
    millions of votes moves a few thousand rows, not millions; the arrays are rebuilt with
    np.repeat. The digest covers those counts and the last vote id: the same votes give the same
    digest in any order. Style control needs each vote's style counts, so it reads vote by vote.
    """
    digest = hashlib.sha256(f"last_vote_id={last_vote_id}\n".encode())
    if style:
        rows = list(
            votes.order_by("id").values_list("battle__model_a_id", "battle__model_b_id", "winner", "id")
        )
        counts = [(a, b, w, 1) for a, b, w, _ in rows]
    else:
        grouped = votes.values_list("battle__model_a_id", "battle__model_b_id", "winner").annotate(
            n=Count("id")
        )
        counts = sorted(grouped.order_by())
        rows = []
    # A style board's rows are single votes: each distinct row hashed once per vote gives the bytes of
    # the sorted rows without sorting millions of tuples.
    for (a, b, w, n), repeat in sorted(Counter(counts).items()) if style else ((c, 1) for c in counts):
        digest.update(f"{a},{b},{w},{n}\n".encode() * repeat)
    model_ids = sorted({a for a, _, _, _ in counts} | {b for _, b, _, _ in counts})
    index = {pk: i for i, pk in enumerate(model_ids)}
    n = np.array([c[3] for c in counts], dtype=np.int64)
    features = None
    if style:
        sides = _style_sides(np.array([row[3] for row in rows], dtype=np.int64), last_vote_id)
        features = rating.style_delta(sides[:, 0], sides[:, 1]) if len(rows) else np.zeros((0, 4))
    return VoteArrays(
        model_ids=model_ids,
        model_a=np.repeat(np.array([index[c[0]] for c in counts], dtype=np.int64), n),
        model_b=np.repeat(np.array([index[c[1]] for c in counts], dtype=np.int64), n),
        outcome=np.repeat(np.array([OUTCOME[c[2]] for c in counts], dtype=np.int64), n),
        digest=digest.hexdigest(),
        features=features,
    )


# The parts of the dict-valued style counts in the public clean_battle format, in jsonb's key order
# (shorter keys first), which is the order Python reads them in.
STYLE_PARTS = {
    "length": (),
    "headers": ("h1", "h2", "h3", "h4", "h5", "h6"),
    "lists": ("ordered", "unordered"),
    "bold": ("**", "__"),
}


def _style_count(key: str, parts: tuple[str, ...]) -> Func:
    """rating.style_counts's count of one conv_metadata key, computed by PostgreSQL.

    A number is taken as it is; a dict holding only `parts` is summed, anything in it other than a
    number counting 0; anything else but a dict counts 0. A dict with other keys, or a dict where a
    plain count belongs, gives NULL: `_style_sides` reads that vote's counts in Python instead. Sums
    start at 0 and run in Python's order, so they are the same floats (integer counts up to 2**53).
    """
    value = f"(%(expressions)s -> '{key}')"
    in_dict = "NULL"
    if parts:
        summed = "".join(
            f" + CASE WHEN jsonb_typeof({value} -> '{p}') = 'number' "
            f"THEN ({value} ->> '{p}')::float8 ELSE 0 END"
            for p in parts
        )
        names = ", ".join(f"'{p}'" for p in parts)
        in_dict = f"CASE WHEN {value} - ARRAY[{names}] = '{{}}' THEN 0{summed} END"
    template = (
        f"CASE jsonb_typeof({value}) WHEN 'number' THEN (%(expressions)s ->> '{key}')::float8 "
        f"WHEN 'object' THEN {in_dict} ELSE 0 END"
    )
    return Func(F("conv_metadata"), template=template, output_field=FloatField())


def _style_sides(ids: np.ndarray, last_vote_id: int) -> np.ndarray:
    """(votes, 2, features) style counts of the votes with these ids (ascending), A side then B side.

    Read from arena_vote alone, every vote up to last_vote_id, then picked by id: with the battles
    joined in, PostgreSQL hashed whole conv_metadata documents and spilled them to disk. There the
    database computes the counts (`_style_count`) and the rows come straight from the cursor: decoding
    millions of documents in Python took most of a style recompute and gigabytes, and Django's
    per-value float converters alone took seconds.
    """
    every = Vote.objects.filter(id__lte=last_vote_id).order_by("id")
    if connection.vendor == "postgresql":
        counts = [
            _style_count(keys[side], STYLE_PARTS[feature])
            for side in (0, 1)
            for feature, keys in rating.STYLE_KEYS.items()
        ]
        sql, params = every.values_list("id", *counts).query.sql_with_params()
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            # A slice at a time: millions of rows as Python tuples at once took gigabytes.
            parts = [np.array(rows, dtype=np.float64) for rows in iter(lambda: cursor.fetchmany(100_000), [])]
    else:
        rows = every.values_list("id", "conv_metadata")
        parts = [np.array([(pk, *np.ravel(rating.style_counts(meta))) for pk, meta in rows])]
    # id, then A side's counts and B side's; NULL (None) is NaN
    values = np.concatenate([part.reshape(-1, 9) for part in parts] + [np.zeros((0, 9))])
    at = np.searchsorted(values[:, 0], ids)
    if at.size and (at[-1] >= len(values) or not np.array_equal(values[at, 0], ids)):
        raise RuntimeError("votes were deleted during a style recompute; the next one will count them")
    values = values[at]
    odd = np.flatnonzero(np.isnan(values).any(axis=1))
    for start in range(0, odd.size, 10_000):  # a bounded IN list per query
        batch = odd[start : start + 10_000]
        pks = ids[batch].tolist()
        metadata = dict(Vote.objects.filter(id__in=pks).values_list("id", "conv_metadata"))
        values[batch, 1:] = [np.ravel(rating.style_counts(metadata[pk])) for pk in pks]
    return values[:, 1:].reshape(-1, 2, len(rating.STYLE_FEATURES))


def excluded_counts(left_out: dict[str, int]) -> dict[str, int]:
    excluded = left_out | {
        row["excluded"]: row["n"]
        for row in Vote.objects.exclude(excluded="").values("excluded").annotate(n=Count("id"))
    }
    named = Vote.objects.filter(battle__mode=Battle.Mode.NAMED).count()
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
    """
    token = uuid.uuid4().hex
    if not cache.add(LOCK_KEY, token, timeout=LOCK_SECONDS):
        return []
    try:
        languages = set(Vote.objects.exclude(language="").values_list("language", flat=True).distinct())
        # The same for every board: counted once, not per board (two full-table counts each).
        flagged = excluded_counts({})
        published = [s for b in boards.all_boards(languages) if (s := _recompute(b, flagged)) is not None]
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


def _recompute(board: boards.Board, flagged: dict[str, int]) -> Snapshot | None:
    started = time.perf_counter()
    filters, provisional = current_filters(board.slug)
    votes, left_out = filtered_votes(filters)
    arrays = vote_arrays(votes, last_vote_id=filters.last_vote_id, style=board.style)
    excluded = left_out | flagged
    latest = latest_snapshot(board.slug)
    if latest and latest.votes_digest == arrays.digest and latest.excluded == excluded:
        return None
    if board.category and not arrays.model_ids and latest is None:
        return None  # a category nobody voted in yet: no empty board to show
    params = {
        "bootstrap": settings.LEADERBOARD_BOOTSTRAP
        if not board.style
        else settings.LEADERBOARD_STYLE_BOOTSTRAP,
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
    rows: list[Rating] = []
    details: dict[str, Any] = {}
    if arrays.model_ids:
        n = len(arrays.model_ids)
        if board.style:
            styled = rating.rate_style(
                arrays.model_a,
                arrays.model_b,
                arrays.outcome,
                arrays.features,
                n,
                bootstrap=params["bootstrap"],
                seed=params["seed"],
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
        else:
            result = rating.rate(
                arrays.model_a,
                arrays.model_b,
                arrays.outcome,
                n,
                bootstrap=params["bootstrap"],
                seed=params["seed"],
            )
        details["matrices"] = _matrices(arrays, result)
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
            votes=len(arrays.outcome),
            votes_digest=arrays.digest,
            method=board.method,
            params=params,
            excluded=excluded,
            details=details,
            duration_ms=(time.perf_counter() - started) * 1000,
        )
        for row in rows:
            row.snapshot = snapshot
        Rating.objects.bulk_create(rows)
    return snapshot


CODE_VERSION = "rating-1"  # bump when a change to the engine can move published numbers
HEATMAP_MODELS = 20  # the heatmaps show the top models; beyond that a person cannot read them


def _matrices(arrays: VoteArrays, result: rating.Ratings) -> dict[str, Any]:
    counts = rating.aggregate(arrays.model_a, arrays.model_b, arrays.outcome, len(arrays.model_ids))
    order = np.argsort(-result.rating)[:HEATMAP_MODELS]
    wins = rating.win_rate_matrix(counts, len(arrays.model_ids))[np.ix_(order, order)]
    battles = rating.battle_count_matrix(counts, len(arrays.model_ids))[np.ix_(order, order)]
    return {
        "models": [arrays.model_ids[i] for i in order],
        "win_rate": [[None if np.isnan(x) else round(float(x), 4) for x in row] for row in wins],
        "battles": [[int(x) for x in row] for row in battles],
    }


def latency(model_ids: list[int]) -> dict[str, dict[str, float]]:
    """Median and p90 time to first token and median decoding speed of each model's finished answers."""
    answers = Answer.objects.filter(status=Answer.Status.DONE, ttft_ms__isnull=False).values_list(
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
    mine = Q(battle__model_a=llm) | Q(battle__model_b=llm)
    own = Vote.objects.filter(battle__mode=Battle.Mode.ANONYMOUS, excluded="").filter(
        Q(battle__model_a=llm, battle__model_b__visibility=LLM.Visibility.PUBLIC)
        | Q(battle__model_b=llm, battle__model_a__visibility=LLM.Visibility.PUBLIC)
    )
    pool = public_votes()[0].exclude(mine)
    if until is not None:
        own, pool = own.filter(created__lte=until), pool.filter(created__lte=until)
    fields = ("battle__model_a_id", "battle__model_b_id", "winner")
    own_rows = list(own.order_by("id").values_list(*fields))
    if not own_rows:
        return None
    rows = list(pool.order_by("id").values_list(*fields)) + own_rows
    model_ids = sorted({a for a, _, _ in rows} | {b for _, b, _ in rows})
    index = {pk: i for i, pk in enumerate(model_ids)}
    result = rating.rate(
        np.array([index[a] for a, _, _ in rows], dtype=np.int64),
        np.array([index[b] for _, b, _ in rows], dtype=np.int64),
        np.array([OUTCOME[w] for _, _, w in rows], dtype=np.int64),
        len(model_ids),
        bootstrap=settings.LEADERBOARD_BOOTSTRAP,
        seed=settings.LEADERBOARD_SEED,
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
