"""Which votes a board counts, and reading them for a recompute.

`filtered_votes` is the queryset of a board's votes under a snapshot's filters (exports and the
style board read it); `board_counts` counts every board in one SQL aggregation, and `style_rows`
reads the style board's per-vote features as columns. `exclusions` reads the votes flagged with a
reason, which a recompute records with its snapshots (leaderboard.models.ExcludedVotes).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any

import numpy as np
from django.conf import settings
from django.db import transaction
from django.db.models import BooleanField, Case, Count, F, FloatField, Q, QuerySet, Sum, Value, When
from django.db.models.functions import Coalesce

from arena.models import Vote
from leaderboard import boards, rating
from providers.models import LLM

OUTCOME = {
    Vote.Winner.A: rating.A_WINS,
    Vote.Winner.B: rating.B_WINS,
    Vote.Winner.TIE: rating.TIE,
    Vote.Winner.BOTH_BAD: rating.BOTH_BAD,
}
WINNERS = sorted(OUTCOME)  # BoardCounts.winner indexes this
OUTCOME_OF = np.array([OUTCOME[w] for w in WINNERS], dtype=np.int8)  # rating's code of each winner


@dataclass(frozen=True)
class Filters:
    """Exactly which votes a snapshot counted, stored with it so its votes can be exported again."""

    board: str
    last_vote_id: int
    private: tuple[int, ...] = ()  # unpublished variants: a vote with one of them never counts
    # Published variants: only their votes from this moment on count, so a vote cast while private
    # (by the provider's own voters, or a lucky streak) never reaches the public board.
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
    published = dict(LLM.objects.filter(published_at__isnull=False).values_list("pk", "published_at"))
    votes = Vote.objects.filter(anonymous=True, excluded="")
    fresh: Counter[int] = Counter()
    # Each count scans the votes: none to make while no variant was ever published.
    for side in ("model_a", "model_b") if published else ():
        after = votes.filter(
            **{f"{side}__published_at__isnull": False, "created__gte": F(f"{side}__published_at")}
        )
        fresh.update(dict(after.values(side).annotate(n=Count("id")).values_list(side, "n")))
    fresh_since = {pk: at.isoformat() for pk, at in sorted(published.items())}
    provisional = frozenset(pk for pk in published if fresh[pk] < settings.PROVIDER_FRESH_VOTES)
    return Filters(board_slug, last, private, fresh_since), provisional


def _private(filters: Filters) -> Q:
    return Q(model_a__in=filters.private) | Q(model_b__in=filters.private)


def _stale(filters: Filters) -> Q:
    """Votes with a published variant from before the moment its fresh votes count from."""
    stale = Q()
    for pk, since in filters.fresh_since.items():
        stale |= (Q(model_a=pk) | Q(model_b=pk)) & Q(created__lt=datetime.fromisoformat(since))
    return stale


def counted_votes(*, last: int, flagged: bool = False) -> QuerySet[Vote]:
    """Votes any board may count: anonymous, not flagged (unless `flagged`), with ids up to `last`."""
    votes = Vote.objects.filter(anonymous=True, id__lte=last)
    return votes if flagged else votes.filter(excluded="")


@dataclass(frozen=True)
class Exclusions:
    """The votes up to a last id that no board counts for a reason of their own (`Vote.excluded`: the
    vote gate's and the integrity sweep's), read in one query: their ids in order with their
    reasons; and the number of named-mode votes, which no board counts either."""

    ids: np.ndarray
    reasons: np.ndarray
    named: int

    @cached_property  # read by every board of a recompute
    def counts(self) -> dict[str, int]:
        reasons, n = np.unique(self.reasons, return_counts=True)
        counts = {str(reason): int(k) for reason, k in zip(reasons, n, strict=True)}
        return counts | ({"named_mode": self.named} if self.named else {})

    def same_votes(self, other: Exclusions) -> bool:
        return np.array_equal(self.ids, other.ids) and np.array_equal(self.reasons, other.reasons)


def exclusions(*, last: int) -> Exclusions:
    """The flagged votes up to `last` (the partial index `vote_flagged` finds them; sorted here)."""
    rows = list(Vote.objects.filter(id__lte=last).exclude(excluded="").values_list("id", "excluded"))
    ids, reasons = zip(*rows, strict=True) if rows else ((), ())
    ids, reasons = np.array(ids, dtype=np.int64), np.array(reasons, dtype=str)
    order = np.argsort(ids)
    return Exclusions(ids[order], reasons[order], Vote.objects.filter(anonymous=False, id__lte=last).count())


def filtered_votes(
    filters: Filters, *, count: bool = True, flagged: bool = False
) -> tuple[QuerySet[Vote], dict[str, int]]:
    """The votes a board counts under these filters, and (`count`) those the testing rules left out,
    by reason. With `flagged`, the votes flagged now are kept in, for a caller that leaves out a
    snapshot's own record of its exclusions (`ExcludedVotes`) instead."""
    spec = boards.board(filters.board)
    votes = counted_votes(last=filters.last_vote_id, flagged=flagged)
    if spec is not None:
        votes = votes.filter(spec.votes)
    left_out: dict[str, int] = {}
    for reason, rule in (
        ("unpublished_variant", filters.private and _private(filters)),
        ("before_publication", filters.fresh_since and _stale(filters)),
    ):
        if rule:
            if count:
                left_out[reason] = votes.filter(rule).count()
            votes = votes.exclude(rule)
    return votes, {reason: n for reason, n in left_out.items() if n}


# A battle's propensity that is a probability: the others (and none) count as unknown, never divided
# by (PostgreSQL would fail on 0).
KNOWN_PROPENSITY = Q(battle__propensity__gt=0.0, battle__propensity__lte=1.0)
_ONE = Value(1.0, output_field=FloatField())
# A vote's inverse-propensity weight (Chiang et al. 2024, eq. 7), with KNOWN_PROPENSITY, and its square.
WEIGHT = _ONE / F("battle__propensity")
WEIGHT_SQUARED = _ONE / (F("battle__propensity") * F("battle__propensity"))
# The same per vote, NULL where unknown (style_rows).
PROPENSITY_WEIGHT = Case(When(KNOWN_PROPENSITY, then=WEIGHT), default=None, output_field=FloatField())


@dataclass(frozen=True)
class CellWeights:
    """Per cell, over its votes with a known propensity: the sum of their inverse-propensity weights,
    of their squares, and how many they are (`leaderboard.weighting` fills in the others)."""

    total: np.ndarray  # float64
    squares: np.ndarray  # float64
    known: np.ndarray  # int64


@dataclass(frozen=True)
class BoardCounts:
    """A board's counted votes as (model_a, model_b, winner) cells with their number of votes."""

    model_a: np.ndarray  # LLM primary keys
    model_b: np.ndarray
    winner: np.ndarray  # index into WINNERS
    n: np.ndarray
    left_out: dict[str, int]
    weights: CellWeights | None = None  # with board_counts(..., propensity=True)

    @property
    def votes(self) -> int:
        return int(self.n.sum())

    def digest(self) -> str:
        """SHA-256 of the cells in sorted order: the same votes give the same digest whatever votes
        came after them, so a board whose votes did not change is not published again."""
        order = np.lexsort((self.winner, self.model_b, self.model_a))
        cells = np.stack([self.model_a, self.model_b, self.winner, self.n]).astype("<i8")
        return hashlib.sha256(np.ascontiguousarray(cells[:, order]).tobytes()).hexdigest()


def board_counts(
    filters: Filters, every: list[boards.Board], propensity: bool = False
) -> dict[str, BoardCounts]:
    """Every board's cells, as `filtered_votes` would count them, from one scan of the votes.

    The counted votes are grouped by pair and outcome (and, while a fresh-vote rule applies, by
    whether it leaves the vote out), with one count per board of the votes it selects. With
    `propensity`, each board's cells also get their sums of inverse-propensity weights and of their
    squares (`CellWeights`), read through a join to the battles.
    """
    keys = ["model_a", "model_b", "winner"]
    votes = counted_votes(last=filters.last_vote_id)
    if filters.fresh_since:
        stale = Case(
            When(_stale(filters), then=Value(True)), default=Value(False), output_field=BooleanField()
        )
        votes = votes.annotate(stale=stale)
        keys.append("stale")
    selections = list(dict.fromkeys(board.votes for board in every))  # boards alike share a count
    counts = {f"n{k}": Count("id", filter=q or None) for k, q in enumerate(selections)}
    sums = {}
    if propensity:
        # Filtered aggregates, not a CASE inside each sum: the condition is tested once per aggregate.
        for k, q in enumerate(selections):
            known = q & KNOWN_PROPENSITY
            sums[f"w{k}"] = Sum(WEIGHT, filter=known)
            sums[f"s{k}"] = Sum(WEIGHT_SQUARED, filter=known)
            sums[f"k{k}"] = Count("id", filter=known)
    aggregates = counts | sums
    rows = list(votes.values(*keys).annotate(**aggregates).values_list(*keys, *aggregates).order_by())
    columns = list(zip(*rows, strict=True)) or [()] * (len(keys) + len(aggregates))
    per_selection = dict(zip(selections, columns[len(keys) : len(keys) + len(counts)], strict=True))
    # A sum over no known propensity is NULL in SQL: 0 here.
    weighed = (
        {
            selection: [
                np.array([v or 0 for v in columns[len(keys) + len(counts) + 3 * k + m]]) for m in range(3)
            ]
            for k, selection in enumerate(selections)
        }
        if propensity
        else {}
    )
    a, b = (np.array(column, dtype=np.int64) for column in columns[:2])
    winner = np.array([WINNERS.index(w) for w in columns[2]], dtype=np.int64)
    hidden = np.isin(a, filters.private) | np.isin(b, filters.private)
    stale = np.array(columns[3], dtype=bool) & ~hidden if filters.fresh_since else np.zeros_like(hidden)
    counted = ~hidden & ~stale
    result = {}
    for board in every:
        n = np.array(per_selection[board.votes], dtype=np.int64)
        chosen = counted & (n > 0)
        left_out = {"unpublished_variant": int(n[hidden].sum()), "before_publication": int(n[stale].sum())}
        weights = None
        if propensity:
            total, squares, known = weighed[board.votes]
            weights = CellWeights(
                total.astype(np.float64)[chosen],
                squares.astype(np.float64)[chosen],
                known.astype(np.int64)[chosen],
            )
        result[board.slug] = BoardCounts(
            a[chosen],
            b[chosen],
            winner[chosen],
            n[chosen],
            {k: v for k, v in left_out.items() if v},
            weights,
        )
    return result


@dataclass(frozen=True)
class StyleRows:
    """The style board's votes in id order, one row each."""

    model_a: np.ndarray  # LLM primary keys
    model_b: np.ndarray
    outcome: np.ndarray  # rating's outcome codes
    features: np.ndarray  # (votes, features) rating.style_delta of the two answers' style counts
    weight: np.ndarray | None = None  # with `propensity`: each vote's inverse propensity, 0 if unknown


def style_rows(
    filters: Filters, excluded: np.ndarray | None = None, *, propensity: bool = False
) -> StyleRows:
    """The board's votes with their style features, read as columns in one query.

    With `excluded` (sorted vote ids), those votes are left out instead of the votes flagged now: the
    rows are then the votes a recompute's counts were taken over, whatever a sweep did since. With
    `propensity`, also each vote's inverse-propensity weight (through a join to the battles)."""
    sides = Vote.STYLE_COLUMNS
    columns = ["id", "model_a", "model_b", "winner", *sides[0], *sides[1]]
    votes = filtered_votes(filters, count=False, flagged=excluded is not None)[0]
    if propensity:
        votes = votes.annotate(weight=Coalesce(PROPENSITY_WEIGHT, Value(0.0, output_field=FloatField())))
        columns.append("weight")
    rows = votes.order_by("id").values_list(*columns)
    dtype = [("id", np.int64), ("model_a", np.int64), ("model_b", np.int64)]
    dtype += [("winner", f"U{max(map(len, WINNERS))}")]
    dtype += [(column, np.float64) for column in columns[4:]]
    # Streamed into one array as they arrive: millions of rows are never held as Python tuples. In a
    # transaction PostgreSQL streams a server-side cursor; outside one it copies the result aside first.
    with transaction.atomic():
        table = np.fromiter(rows.iterator(chunk_size=STYLE_CHUNK), dtype=dtype)
    # Each column is masked as it is used, never the whole table copied.
    keep = slice(None) if excluded is None else ~np.isin(table["id"], excluded, assume_unique=True)
    winners = table["winner"][keep]
    winner = np.searchsorted(WINNERS, winners)
    if winners.size and not np.array_equal(np.take(WINNERS, winner, mode="clip"), winners):
        raise ValueError("a counted vote has a winner outside Vote.Winner")
    counts = [np.stack([table[column][keep] for column in side], axis=1) for side in sides]
    return StyleRows(
        table["model_a"][keep],
        table["model_b"][keep],
        OUTCOME_OF[winner],
        rating.style_delta(*counts),
        table["weight"][keep] if propensity else None,
    )


STYLE_CHUNK = 20_000  # rows fetched at a time by style_rows
