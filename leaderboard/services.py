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
from django.db import transaction
from django.db.models import Count, F, Q, QuerySet
from django.utils import timezone

from arena.models import Battle, Vote
from leaderboard import rating
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
class VoteArrays:
    model_ids: list[int]  # index -> LLM primary key
    model_a: np.ndarray
    model_b: np.ndarray
    outcome: np.ndarray
    digest: str
    # Published variants whose rating still leans on pre-publication votes (fresh-vote rule).
    provisional: frozenset[int] = frozenset()


def counted_votes() -> tuple[VoteArrays, dict[str, int]]:
    """The votes the public board counts, as arrays, with the others counted by reason."""
    votes, left_out, provisional = public_votes()
    rows = votes.order_by("id").values_list("id", "battle__model_a_id", "battle__model_b_id", "winner")
    ids, a_pk, b_pk, winners = zip(*rows, strict=True) if rows else ((), (), (), ())
    model_ids = sorted(set(a_pk) | set(b_pk))
    index = {pk: i for i, pk in enumerate(model_ids)}
    digest = hashlib.sha256()
    for vote_id, a, b, winner in zip(ids, a_pk, b_pk, winners, strict=True):
        digest.update(f"{vote_id},{a},{b},{winner}\n".encode())
    arrays = VoteArrays(
        model_ids=model_ids,
        model_a=np.fromiter((index[pk] for pk in a_pk), dtype=np.int64, count=len(a_pk)),
        model_b=np.fromiter((index[pk] for pk in b_pk), dtype=np.int64, count=len(b_pk)),
        outcome=np.fromiter((OUTCOME[w] for w in winners), dtype=np.int64, count=len(winners)),
        digest=digest.hexdigest(),
        provisional=provisional,
    )
    excluded = left_out | {
        row["excluded"]: row["n"]
        for row in Vote.objects.exclude(excluded="").values("excluded").annotate(n=Count("id"))
    }
    named = Vote.objects.filter(battle__mode=Battle.Mode.NAMED).count()
    if named:
        excluded["named_mode"] = named
    return arrays, excluded


def recompute(*, board: str = "overall") -> Snapshot | None:
    """Publish a new snapshot when the counted votes changed; None when nothing was done.

    A lock in the cache keeps two recomputes from overlapping (beat and a vote-triggered run).
    """
    token = uuid.uuid4().hex
    if not cache.add(LOCK_KEY, token, timeout=LOCK_SECONDS):
        return None
    try:
        return _recompute(board)
    finally:
        if cache.get(LOCK_KEY) == token:
            cache.delete(LOCK_KEY)


def _recompute(board: str) -> Snapshot | None:
    started = time.perf_counter()
    votes, excluded = counted_votes()
    latest = Snapshot.objects.of_board(board).latest_first().first()
    if latest and latest.votes_digest == votes.digest and latest.excluded == excluded:
        return None
    params = {
        "bootstrap": settings.LEADERBOARD_BOOTSTRAP,
        "seed": settings.LEADERBOARD_SEED,
        "scale": 400,
        "base": 10,
        "offset": 1000,
        "anchor": "mean",
        "ties": "half a win each side",
    }
    rows: list[Rating] = []
    if votes.model_ids:
        result = rating.rate(
            votes.model_a,
            votes.model_b,
            votes.outcome,
            len(votes.model_ids),
            bootstrap=settings.LEADERBOARD_BOOTSTRAP,
            seed=settings.LEADERBOARD_SEED,
        )
        for i, pk in enumerate(votes.model_ids):
            rows.append(
                Rating(
                    llm_id=pk,
                    rating=float(result.rating[i]),
                    ci_lower=float(result.ci_lower[i]),
                    ci_upper=float(result.ci_upper[i]),
                    rank=int(result.rank[i]),
                    votes=int(result.votes[i]),
                    provisional=pk in votes.provisional,
                )
            )
    with transaction.atomic():
        snapshot = Snapshot.objects.create(
            board=board,
            votes=len(votes.outcome),
            votes_digest=votes.digest,
            params=params,
            excluded=excluded,
            duration_ms=(time.perf_counter() - started) * 1000,
        )
        for row in rows:
            row.snapshot = snapshot
        Rating.objects.bulk_create(rows)
    return snapshot


def latest_snapshot(board: str = "overall") -> Snapshot | None:
    return Snapshot.objects.of_board(board).latest_first().first()


# --- Provider testing rules: what the public board counts, private results, the ledger -----------


def public_votes() -> tuple[QuerySet[Vote], dict[str, int], frozenset[int]]:
    """The votes the public board may count, those the testing rules leave out, and provisional models.

    Unpublished variants: a vote with a private model on either side is never counted. Fresh
    votes: a published variant's pre-publication votes count only until it has
    PROVIDER_FRESH_VOTES counted votes from after its publication, and are dropped from then on
    (they were collected before a best-of-N choice, so they lean upward); until then its rating is
    provisional.
    """
    votes = Vote.objects.filter(battle__mode=Battle.Mode.ANONYMOUS, excluded="")
    private = Q(battle__model_a__visibility=LLM.Visibility.PRIVATE) | Q(
        battle__model_b__visibility=LLM.Visibility.PRIVATE
    )
    left_out = {"unpublished_variant": votes.filter(private).count()}
    votes = votes.exclude(private)
    fresh: Counter[int] = Counter()
    for side in ("battle__model_a", "battle__model_b"):
        after = votes.filter(
            **{f"{side}__published_at__isnull": False, "created__gte": F(f"{side}__published_at")}
        )
        fresh.update(dict(after.values(side).annotate(n=Count("id")).values_list(side, "n")))
    published = list(LLM.objects.filter(published_at__isnull=False).values_list("pk", flat=True))
    fresh_only = [pk for pk in published if fresh[pk] >= settings.PROVIDER_FRESH_VOTES]
    provisional = frozenset(pk for pk in published if fresh[pk] < settings.PROVIDER_FRESH_VOTES)
    if fresh_only:
        stale = Q(battle__model_a__in=fresh_only, created__lt=F("battle__model_a__published_at")) | Q(
            battle__model_b__in=fresh_only, created__lt=F("battle__model_b__published_at")
        )
        left_out["before_publication"] = votes.filter(stale).count()
        votes = votes.exclude(stale)
    return votes, {reason: n for reason, n in left_out.items() if n}, provisional


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
