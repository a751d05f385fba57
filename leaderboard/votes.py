"""Which votes a board counts, and reading them for a recompute without pulling rows through the ORM.

Two ways to the same votes:
- `filtered_votes` builds the queryset of a board under a snapshot's filters, vote by vote: exports
  (the snapshot's votes download) and the provider results use it;
- a recompute reads every vote a board may count once, as numpy columns (`VoteTable`), and derives
  every board from them (`board_counts`, `style_rows`). On PostgreSQL the rows come through a binary
  COPY decoded a block at a time with a numpy structured dtype; in-process the table is kept between
  recomputes and only votes newer than it are read (see `load_table`).

tests/leaderboard/test_board_counts.py holds the two ways to the same votes.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import numpy as np
from django.core.cache import cache
from django.db import connection
from django.db.models import Case, ExpressionWrapper, F, FloatField, IntegerField, Q, QuerySet, Value, When

from arena.models import Vote
from leaderboard import boards, rating

OUTCOME = {
    Vote.Winner.A: rating.A_WINS,
    Vote.Winner.B: rating.B_WINS,
    Vote.Winner.TIE: rating.TIE,
    Vote.Winner.BOTH_BAD: rating.BOTH_BAD,
}
WINNERS = sorted(OUTCOME)  # winner codes in the order their names sort, as the digest lists them


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


def _private(filters: Filters) -> Q:
    return Q(model_a__in=filters.private) | Q(model_b__in=filters.private)


def _stale(filters: Filters) -> Q:
    """Votes with a published variant from before the moment its fresh votes count from."""
    stale = Q()
    for pk, since in filters.fresh_since.items():
        stale |= (Q(model_a=pk) | Q(model_b=pk)) & Q(created__lt=datetime.fromisoformat(since))
    return stale


def counted_votes(*, after: int = 0, last: int) -> QuerySet[Vote]:
    """Votes any board may count: anonymous, not flagged, with ids in (after, last]."""
    return Vote.objects.filter(anonymous=True, excluded="", id__gt=after, id__lte=last)


def filtered_votes(filters: Filters) -> tuple[QuerySet[Vote], dict[str, int]]:
    """The votes a board counts under these filters, and those the testing rules left out, by reason."""
    spec = boards.board(filters.board)
    votes = counted_votes(last=filters.last_vote_id)
    if spec is not None:
        votes = votes.filter(spec.votes)
    left_out: dict[str, int] = {}
    if filters.private:
        left_out["unpublished_variant"] = votes.filter(_private(filters)).count()
        votes = votes.exclude(_private(filters))
    if filters.fresh_since:
        left_out["before_publication"] = votes.filter(_stale(filters)).count()
        votes = votes.exclude(_stale(filters))
    return votes, {reason: n for reason, n in left_out.items() if n}


# --- Every countable vote as numpy columns ------------------------------------------------------------

FLAGS = ("coding", "hard", "long_query", "multi_turn")  # bit k of VoteTable.flags
LANGUAGES = tuple(boards.LANGUAGE_NAMES)  # VoteTable.language indexes this; -1: none of them
# One integer per vote packs what the boards select on: winner (2 bits), stale (1), flags (4),
# language + 1 (the rest). Fewer columns make the COPY stream much shorter.
_STALE_BIT = 2
_FLAGS_SHIFT = 3
_LANGUAGE_SHIFT = _FLAGS_SHIFT + len(FLAGS)
_PACKED_BITS = _LANGUAGE_SHIFT + 5
assert len(LANGUAGES) < 1 << 5, "more languages than the packed bits hold"
# A table kept in memory is read again in full after this long, whatever the epoch says: votes
# changed with a bulk update() send no signal (see `bump_epoch`).
FULL_READ_SECONDS = 3600
EPOCH_KEY = "leaderboard:votes-epoch"
REREAD_IDS = 10_000  # see load_table


def bump_epoch() -> None:
    """A counted vote changed or went away: tables kept in memory must be read again in full."""
    try:
        cache.incr(EPOCH_KEY)
    except ValueError:
        cache.set(EPOCH_KEY, int(time.time() * 1000), timeout=None)


def _epoch() -> int:
    # Not a fixed first value: a cache that was flushed (or a new one) must not match a kept table.
    return cache.get_or_set(EPOCH_KEY, time.time_ns, timeout=None)


@dataclass
class VoteTable:
    """Every vote some board may count, one row each in id order, as numpy columns."""

    last_vote_id: int
    fresh_since: dict[int, str]  # the stale bits were computed under these
    ids: np.ndarray
    model_a: np.ndarray  # LLM primary keys
    model_b: np.ndarray
    packed: np.ndarray  # winner, stale, flags and language bits
    style: np.ndarray  # (votes, features) rating.style_delta of the two answers' style counts
    epoch: int = 0
    read_at: float = 0.0

    @property
    def winner(self) -> np.ndarray:
        return self.packed & 3  # index into WINNERS

    @property
    def stale(self) -> np.ndarray:
        return (self.packed >> _STALE_BIT & 1).astype(bool)

    @classmethod
    def read(cls, filters: Filters, *, after: int = 0) -> VoteTable:
        """The counted votes with ids in (after, filters.last_vote_id]."""
        votes = counted_votes(after=after, last=filters.last_vote_id)
        number = IntegerField()
        stale = (
            Case(When(_stale(filters), then=Value(1)), default=Value(0), output_field=number)
            if filters.fresh_since
            else Value(0)
        )
        packed = (
            Case(*[When(winner=w, then=Value(k)) for k, w in enumerate(WINNERS)], output_field=number)
            + stale * (1 << _STALE_BIT)
            + sum(
                (
                    Case(
                        When(**{name: True}, then=Value(1 << (_FLAGS_SHIFT + k))),
                        default=Value(0),
                        output_field=number,
                    )
                    for k, name in enumerate(FLAGS)
                ),
                Value(0),
            )
            + Case(
                *[
                    When(language=code, then=Value((k + 1) << _LANGUAGE_SHIFT))
                    for k, code in enumerate(LANGUAGES)
                ],
                default=Value(0),
                output_field=number,
            )
        )
        # The style features as rating.style_delta computes them, (a - b) / (a + b + 1) in float8:
        # the same IEEE operations, so the same numbers, and half the columns of the counts.
        deltas = {
            f"delta{k}": ExpressionWrapper(
                (F(a) - F(b)) / (F(a) + F(b) + Value(1.0)), output_field=FloatField()
            )
            for k, (a, b) in enumerate(zip(*Vote.STYLE_COLUMNS, strict=True))
        }
        columns = ["id", "model_a_id", "model_b_id", "packed", *deltas]
        rows = votes.annotate(packed=packed, **deltas).values_list(*columns).order_by()
        kinds = "iiii" + "f" * len(deltas)
        if connection.vendor == "postgresql":
            sql, params = rows.query.sql_with_params()
            values = _copy_binary(sql, params, kinds)
        else:
            table = list(rows)
            values = [
                np.array([row[k] for row in table], dtype=np.int64 if kind == "i" else np.float64)
                for k, kind in enumerate(kinds)
            ]
        ids = values[0]
        # Usually in id order already (a sequential scan of an append-only table); sort if not.
        order = None if np.all(ids[1:] > ids[:-1]) else np.argsort(ids, kind="stable")
        values = [v if order is None else v[order] for v in values]
        return cls(
            last_vote_id=filters.last_vote_id,
            fresh_since=dict(filters.fresh_since),
            ids=values[0],
            model_a=values[1],
            model_b=values[2],
            packed=values[3],
            style=np.column_stack(values[4:]) if len(ids) else np.zeros((0, len(deltas))),
        )

    def extend(self, newer: VoteTable, after: int) -> VoteTable:
        """This table's votes up to id `after`, then `newer` (read from there on)."""
        keep = int(np.searchsorted(self.ids, after, side="right"))
        return replace(
            newer,
            **{
                column: np.concatenate([getattr(self, column)[:keep], getattr(newer, column)])
                for column in ("ids", "model_a", "model_b", "packed", "style")
            },
        )

    def __len__(self) -> int:
        return len(self.packed)


_kept: VoteTable | None = None  # this process's table from its last recompute


def load_table(filters: Filters) -> VoteTable:
    """The counted votes up to filters.last_vote_id, reading only what this process has not read.

    A table kept from the previous recompute is extended by the votes after its last id, unless
    the fresh-vote filters changed (they decide the stale bits), a counted vote changed or was
    deleted since (the epoch, bumped by signals), or it was read in full more than an hour ago.
    Its last REREAD_IDS ids are read again: a vote's id is taken when it is inserted, so a vote
    whose transaction committed after a later one's was not there to be read the last time.
    """
    global _kept
    epoch = _epoch()
    kept = _kept
    if (
        kept is not None
        and kept.fresh_since == filters.fresh_since
        and kept.epoch == epoch
        and kept.last_vote_id <= filters.last_vote_id
        and time.monotonic() - kept.read_at < FULL_READ_SECONDS
    ):
        after = max(kept.last_vote_id - REREAD_IDS, 0)
        table = kept.extend(VoteTable.read(filters, after=after), after)
        table.read_at = kept.read_at
    else:
        table = VoteTable.read(filters)
        table.read_at = time.monotonic()
    table.epoch = epoch
    _kept = table
    return table


def forget() -> None:
    """Drop this process's kept table (tests, and `recompute_leaderboard --full`)."""
    global _kept
    _kept = None


# --- Boards from the table ----------------------------------------------------------------------------


@dataclass(frozen=True)
class BoardCounts:
    """A board's counted votes as (model_a, model_b, winner) cells with their number of votes."""

    model_a: np.ndarray  # LLM primary keys
    model_b: np.ndarray
    winner: np.ndarray  # index into WINNERS
    n: np.ndarray
    left_out: dict[str, int]

    @property
    def votes(self) -> int:
        return int(self.n.sum())

    def digest(self, *, per_vote: bool = False) -> str:
        """SHA-256 over the cells in sorted order: the same votes give the same digest in any order,
        whatever votes came after them (a board whose votes did not change is not published again).
        A style board's digest lists each vote as a cell of one."""
        digest = hashlib.sha256()
        order = np.lexsort((self.winner, self.model_b, self.model_a))
        for a, b, w, n in zip(
            self.model_a[order].tolist(),
            self.model_b[order].tolist(),
            self.winner[order].tolist(),
            self.n[order].tolist(),
            strict=True,
        ):
            line = f"{a},{b},{WINNERS[w]},{1 if per_vote else n}\n".encode()
            digest.update(line * n if per_vote else line)
        return digest.hexdigest()


def board_selects(slug: str, packed: np.ndarray) -> np.ndarray | None:
    """Which packed values (winner, stale, flags, language bits) the board selects; None: all.

    The board's Q is evaluated on the bits: every board selects on one column."""
    spec = boards.board(slug)
    if spec is None or not spec.votes:
        return None
    [(name, value)] = spec.votes.children
    if name in FLAGS and value is True:
        return (packed >> (_FLAGS_SHIFT + FLAGS.index(name)) & 1).astype(bool)
    if name == "language" and value in LANGUAGES:
        return (packed >> _LANGUAGE_SHIFT) - 1 == LANGUAGES.index(value)
    raise ValueError(f"board {slug} selects on {name}={value!r}, which the vote table does not hold")


def _kept_votes(table: VoteTable, private: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(private, stale) masks: votes with an unpublished variant, and the stale ones among the rest."""
    hidden = np.isin(table.model_a, private) | np.isin(table.model_b, private)
    return hidden, table.stale & ~hidden


def _model_index(table: VoteTable) -> tuple[np.ndarray, np.ndarray]:
    """The models in the table (sorted primary keys) and a lookup from primary key to position:
    a pass over the votes instead of sorting them."""
    top = int(max(table.model_a.max(initial=0), table.model_b.max(initial=0))) + 1
    present = np.zeros(top, dtype=bool)
    present[table.model_a] = True
    present[table.model_b] = True
    models = np.flatnonzero(present)
    return models, positions(models)


def positions(models: np.ndarray) -> np.ndarray:
    """A lookup from primary key to position in `models` (sorted keys): one pass over millions of
    votes instead of a search per vote. Keys not in `models` map to -1."""
    lookup = np.full(int(models.max(initial=0)) + 1, -1, dtype=np.int64)
    lookup[models] = np.arange(models.size)
    return lookup


def board_counts(table: VoteTable, filters: Filters, slugs: list[str]) -> dict[str, BoardCounts]:
    """Every listed board's cells, as `filtered_votes` would count them, from the table.

    The votes are first grouped by (pair, packed bits): what a board selects and whether a rule
    leaves a vote out are functions of those, so each board then costs a pass over the groups, not
    over every vote.
    """
    models, lookup = _model_index(table)
    m = models.size
    pair = lookup[table.model_a] * m + lookup[table.model_b]
    bits = 1 << _PACKED_BITS
    groups, n = np.unique(pair * bits + table.packed, return_counts=True)
    pair, packed = np.divmod(groups, bits)
    a, b = models[pair // m], models[pair % m]
    hidden = np.isin(a, filters.private) | np.isin(b, filters.private)
    stale = (packed >> _STALE_BIT & 1).astype(bool) & ~hidden
    counted = ~hidden & ~stale
    cell = pair * len(WINNERS) + (packed & 3)
    result = {}
    for slug in slugs:
        selects = board_selects(slug, packed)
        chosen = counted if selects is None else counted & selects
        per_cell = np.bincount(cell[chosen], weights=n[chosen], minlength=m * m * len(WINNERS))
        (nonzero,) = np.nonzero(per_cell)
        cell_pair, winner = np.divmod(nonzero, len(WINNERS))
        left_out = {
            "unpublished_variant": int(n[hidden if selects is None else hidden & selects].sum()),
            "before_publication": int(n[stale if selects is None else stale & selects].sum()),
        }
        result[slug] = BoardCounts(
            models[cell_pair // m],
            models[cell_pair % m],
            winner,
            per_cell[nonzero].astype(np.int64),
            {reason: c for reason, c in left_out.items() if c},
        )
    return result


def style_rows(table: VoteTable, filters: Filters) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """model_a, model_b, winner (index into WINNERS) and (votes, features) style deltas of the
    overall board's counted votes, in id order."""
    hidden, stale = _kept_votes(table, filters.private)
    counted = ~hidden & ~stale
    if counted.all():  # the usual case: no copies of millions of rows
        return table.model_a, table.model_b, table.winner, table.style
    return table.model_a[counted], table.model_b[counted], table.winner[counted], table.style[counted]


# --- PostgreSQL binary COPY into numpy --------------------------------------------------------------

COPY_BLOCK_BYTES = 8 << 20  # rows decoded a block at a time: bounds the buffer, not the result
_COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"


def _copy_binary(sql: str, params: Any, kinds: str) -> list[np.ndarray]:
    """The columns of a query whose values are all non-NULL numbers, via COPY BINARY: int64 arrays
    for the columns of kind "i" (integers, booleans), float64 for those of kind "f".

    Every row of such a query has the same layout (a field count, then a length and a big-endian
    value per field), read off the first row; blocks of rows are then read with a numpy structured
    dtype instead of being decoded one by one.
    """
    parts: list[np.ndarray] = []
    buffer = bytearray()
    dtype: np.dtype[Any] | None = None
    with connection.cursor() as cursor:
        raw = cursor.cursor  # psycopg's own cursor, for copy()
        with raw.copy(f"COPY ({sql}) TO STDOUT (FORMAT BINARY)", params) as copy:
            header: int | None = None
            for block in copy:
                buffer += block
                if header is None:
                    if len(buffer) < 19:
                        continue
                    if bytes(buffer[:11]) != _COPY_SIGNATURE:
                        raise RuntimeError("not a PostgreSQL binary COPY stream")
                    header = 19 + int.from_bytes(buffer[15:19], "big")
                if dtype is None:
                    dtype = _row_dtype(buffer, header, kinds)
                    if dtype is None:
                        continue  # the first row is not complete yet
                    del buffer[:header]
                whole = (len(buffer) // dtype.itemsize) * dtype.itemsize
                if whole >= COPY_BLOCK_BYTES:
                    parts.append(_rows(buffer[:whole], dtype, len(kinds)))
                    del buffer[:whole]
    if dtype is not None and dtype.itemsize > 2:
        whole = (len(buffer) // dtype.itemsize) * dtype.itemsize
        parts.append(_rows(buffer[:whole], dtype, len(kinds)))
        del buffer[:whole]
    if bytes(buffer) != b"\xff\xff":
        raise RuntimeError("a binary COPY that did not end where a row ends")
    return [
        np.concatenate([part[f"v{k}"] for part in parts] or [np.zeros(0)]).astype(
            np.int64 if kind == "i" else np.float64
        )
        for k, kind in enumerate(kinds)
    ]


def _row_dtype(buffer: bytearray, at: int, kinds: str) -> np.dtype[Any] | None:
    """The layout of the first row (at `at`), from its field lengths; None while it is incomplete.

    Without rows the stream holds only its end mark, and the layout is the mark itself."""
    if len(buffer) < at + 2:
        return None
    if buffer[at : at + 2] == b"\xff\xff":
        return np.dtype([("end", ">i2")])
    layout: list[tuple[str, str]] = [("fields", ">i2")]
    at += 2
    for k, kind in enumerate(kinds):
        if len(buffer) < at + 4:
            return None
        size = int.from_bytes(buffer[at : at + 4], "big", signed=True)
        if size not in ((1, 2, 4, 8) if kind == "i" else (4, 8)):
            raise RuntimeError(f"column {k} is {size} bytes wide: numbers only, no NULLs")
        layout += [(f"size{k}", ">i4"), (f"v{k}", f">{kind}{size}")]
        at += 4 + size
    return np.dtype(layout) if len(buffer) >= at else None


def _rows(data: bytearray, dtype: np.dtype[Any], fields: int) -> np.ndarray:
    rows = np.frombuffer(bytes(data), dtype=dtype)
    if (rows["fields"] != fields).any():
        raise RuntimeError("binary COPY rows of an unexpected shape")
    return rows
