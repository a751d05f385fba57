"""Which votes a board counts, and reading them for a recompute without pulling rows through the ORM.

Two ways to the same votes:
- `filtered_votes` builds the queryset of a board under a snapshot's filters, vote by vote: exports
  (the snapshot's votes download) and the provider results use it;
- a recompute reads every vote a board may count once, as numpy columns (`VoteTable`), and derives
  every board from them (`group_votes`, `board_counts`, `style_rows`). On PostgreSQL the server
  packs each column of a chunk of ids into one binary string (`_chunked_columns`), and a long read
  runs over two connections side by side (`_read_ranges`); in-process the table is kept between
  recomputes and only votes newer than it are read (see `load_table`).

tests/leaderboard/test_board_counts.py holds the two ways to the same votes.
"""

from __future__ import annotations

import hashlib
import itertools
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import numpy as np
from django.conf import settings
from django.db import connection
from django.db.models import (
    BigIntegerField,
    Case,
    ExpressionWrapper,
    F,
    FloatField,
    IntegerField,
    Q,
    QuerySet,
    Value,
    When,
)
from django.db.models.expressions import RawSQL

from arena.models import Vote
from leaderboard import boards, rating
from leaderboard.models import VoteChanges

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
# language + 1 (the rest). The read carries it in the low bits of model_b's column: every column
# read costs the server a conversion per vote.
_STALE_BIT = 2
_FLAGS_SHIFT = 3
_LANGUAGE_SHIFT = _FLAGS_SHIFT + len(FLAGS)
_PACKED_BITS = _LANGUAGE_SHIFT + 5
assert len(LANGUAGES) < 1 << 5, "more languages than the packed bits hold"
# A table kept in memory is read again in full after this long, whatever the change counter says:
# a restore or a TRUNCATE of the votes fires no trigger (see `VoteChanges`).
FULL_READ_SECONDS = 3600
REREAD_IDS = 10_000  # see load_table
# A read of the votes is split over this many connections (LEADERBOARD_READ_CONNECTIONS overrides
# it), in id ranges of at least SPLIT_IDS ids: a recompute's incremental reads stay on one.
READ_CONNECTIONS = 2
SPLIT_IDS = 200_000
# On PostgreSQL a row of the read's result carries the votes of this many consecutive ids, a binary
# string per column (see `_chunked_columns`).
CHUNK_IDS = 16384


def _epoch() -> str:
    """Which state of the stored votes a kept table was read under: changes to them, as the vote
    table's triggers count them (`VoteChanges`), with the counter row's token."""
    row = VoteChanges.objects.filter(pk=1).values_list("token", "changes").first()
    if row is None:  # a database flushed since its migration (tests): the row is made again
        made, _ = VoteChanges.objects.get_or_create(pk=1, defaults={"token": uuid.uuid4().hex})
        row = (made.token, made.changes)
    return f"{row[0]}:{row[1]}"


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
    epoch: str = ""
    read_at: float = 0.0

    @property
    def winner(self) -> np.ndarray:
        return self.packed & 3  # index into WINNERS

    @property
    def stale(self) -> np.ndarray:
        return (self.packed >> _STALE_BIT & 1).astype(bool)

    @classmethod
    def read(cls, filters: Filters, *, after: int = 0) -> VoteTable:
        """The counted votes with ids in (after, filters.last_vote_id].

        A long read is cut into contiguous id ranges (`id_ranges`) read side by side, each over its
        own connection (`_read_ranges`); their blocks of values are converted straight into the
        table's columns.
        """
        ranges = id_ranges(after, filters.last_vote_id, read_connections())
        parts = _read_ranges(filters, ranges)
        blocks = [list(itertools.chain.from_iterable(column)) for column in zip(*parts, strict=True)]
        size = sum(block.size for block in blocks[0])
        # Each column is written once, into the array the table keeps: on some machines fresh
        # memory costs more to touch than the copy itself.
        ids, model_a, model_b = (_joined(column, np.empty(size, dtype=np.int64)) for column in blocks[:3])
        style = np.empty((size, len(blocks) - 3))
        at = 0
        for deltas in zip(*blocks[3:], strict=True):  # a block of rows at a time, in row order
            np.stack(deltas, axis=1, out=style[at : at + deltas[0].size])
            at += deltas[0].size
        # Usually in id order already (ranges and chunks of ids in order); sort if not.
        if not np.all(ids[1:] > ids[:-1]):
            order = np.argsort(ids, kind="stable")
            ids, model_a, model_b, style = ids[order], model_a[order], model_b[order], style[order]
        packed = model_b & ((1 << _PACKED_BITS) - 1)
        model_b >>= _PACKED_BITS
        return cls(
            last_vote_id=filters.last_vote_id,
            fresh_since=dict(filters.fresh_since),
            ids=ids,
            model_a=model_a,
            model_b=model_b,
            packed=packed,
            style=style,
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


_Columns = list[list[np.ndarray]]  # per column, its values in blocks


def read_connections() -> int:
    """How many connections a long read of the votes may use at once (LEADERBOARD_READ_CONNECTIONS)."""
    return max(1, int(getattr(settings, "LEADERBOARD_READ_CONNECTIONS", READ_CONNECTIONS)))


def id_ranges(after: int, last: int, parts: int) -> list[tuple[int, int]]:
    """(after, last] cut into at most `parts` contiguous ranges (lo, hi] of SPLIT_IDS ids or more.

    Ids, not votes: a range with few votes (deleted, flagged or named ones) only reads less."""
    parts = max(1, min(parts, (last - after) // SPLIT_IDS))
    edges = [after + (last - after) * k // parts for k in range(parts + 1)]
    return list(itertools.pairwise(edges))


def _read_ranges(filters: Filters, ranges: list[tuple[int, int]]) -> list[_Columns]:
    """Each id range's columns (see `_read_range`), in the order of the ranges.

    On PostgreSQL the ranges after the first are read in threads, each over a connection of its
    own, while this thread reads the first: the server, whose work a read mostly is, scans and
    encodes each range on a core of its own (psycopg waits on the socket without the GIL). The
    connections read under separate snapshots, which is sound for disjoint ranges: every vote is
    read once, as some committed state of it, and a change committed after the epoch was taken
    makes the next recompute read everything again (`load_table`). Inside a transaction (tests, a
    caller's atomic block) other connections would not see its writes, so the ranges are read one
    after the other on this connection there, as on SQLite.
    """
    if len(ranges) == 1 or connection.vendor != "postgresql" or connection.in_atomic_block:
        return [_read_range(filters, lo, hi) for lo, hi in ranges]
    with ThreadPoolExecutor(len(ranges) - 1) as pool:
        others = [pool.submit(_on_own_connection, _read_range, filters, lo, hi) for lo, hi in ranges[1:]]
        first = _read_range(filters, *ranges[0])
        return [first, *(other.result() for other in others)]


def _on_own_connection(read: Callable[..., _Columns], *args: Any) -> _Columns:
    """read(*args) in a worker thread, whose connection (one of its own) is closed afterwards:
    returned to the pool, where there is one."""
    try:
        return read(*args)
    finally:
        connection.close()


def _read_range(filters: Filters, after: int, last: int) -> _Columns:
    """Columns id, model_a, model_b with the packed bits below it (see _PACKED_BITS), and the style
    deltas of the counted votes with ids in (after, last], in blocks (integers, then floats, in
    either byte order), the votes in no set order."""
    votes = counted_votes(after=after, last=last)
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
        f"delta{k}": ExpressionWrapper((F(a) - F(b)) / (F(a) + F(b) + Value(1.0)), output_field=FloatField())
        for k, (a, b) in enumerate(zip(*Vote.STYLE_COLUMNS, strict=True))
    }
    # A model key of 2**51 or more overflows: PostgreSQL raises "bigint out of range".
    model_b_packed = ExpressionWrapper(
        F("model_b_id") * Value(1 << _PACKED_BITS) + packed, output_field=BigIntegerField()
    )
    columns = ["id", "model_a_id", "model_b_packed", *deltas]
    kinds = "iii" + "f" * len(deltas)
    if connection.vendor == "postgresql":
        # One chunk of ids: the outer query (see _chunked_columns) names the chunk's first id.
        votes = votes.filter(
            id__gt=RawSQL("chunk.start", ()), id__lte=RawSQL("chunk.start + %s", (CHUNK_IDS,))
        )
    rows = votes.annotate(model_b_packed=model_b_packed, **deltas).values_list(*columns).order_by()
    if connection.vendor == "postgresql":
        sql, params = rows.query.sql_with_params()
        return _chunked_columns(sql, params, after, last, kinds)
    table = list(rows)
    return [
        [np.array([row[k] for row in table], dtype=np.int64 if kind == "i" else np.float64)]
        for k, kind in enumerate(kinds)
    ]


_kept: VoteTable | None = None  # this process's table from its last recompute


def load_table(filters: Filters) -> VoteTable:
    """The counted votes up to filters.last_vote_id, reading only what this process has not read.

    A table kept from the previous recompute is extended by the votes after its last id, unless
    the fresh-vote filters changed (they decide the stale bits), a counted vote changed or was
    deleted since (`_epoch`: the vote table's triggers count every change), or it was read in full
    more than an hour ago.
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
        A cell is the line "model_a,model_b,winner,n"; a style board's digest lists each vote as a
        cell of one. numpy writes the lines (`_lines`), DIGEST_LINES or so at a time."""
        digest = hashlib.sha256()
        order = np.lexsort((self.winner, self.model_b, self.model_a))
        a, b, w, n = self.model_a[order], self.model_b[order], self.winner[order], self.n[order]
        lines = np.cumsum(n if per_vote else np.ones_like(n))
        cuts = np.searchsorted(lines, np.arange(DIGEST_LINES, lines[-1] if n.size else 0, DIGEST_LINES))
        for start, end in itertools.pairwise(np.unique(np.concatenate([[0], cuts + 1, [n.size]]))):
            cells = slice(start, end)
            if per_vote:
                digest.update(_lines(a[cells], b[cells], w[cells], np.ones_like(n[cells]), n[cells]))
            else:
                digest.update(_lines(a[cells], b[cells], w[cells], n[cells]))
        return digest.hexdigest()


DIGEST_LINES = 1 << 18  # BoardCounts.digest writes about this many lines at a time
_NAME_BYTES = max(len(name) for name in WINNERS)
_WINNER_TEXT = np.array([list(name.encode().ljust(_NAME_BYTES)) for name in WINNERS], dtype=np.uint8)
_WINNER_SHOWN = np.array([[k < len(name) for k in range(_NAME_BYTES)] for name in WINNERS])


def _lines(
    a: np.ndarray, b: np.ndarray, w: np.ndarray, n: np.ndarray, repeat: np.ndarray | None = None
) -> bytes:
    """The lines f"{a},{b},{WINNERS[w]},{n}\\n" of the cells, each `repeat` times, as Python formats
    them: a row of fixed width per line (digits right-aligned, the winner's name left-aligned) with
    a mask of the bytes it shows, then the shown bytes in row order. A Python loop formatting the
    cells took 0.7 s of a recompute's 18 boards (3M votes), this 0.45 s, holding the GIL less
    while the fits run in other threads."""
    comma = np.full((a.size, 1), ord(","), dtype=np.uint8)
    newline = np.full((a.size, 1), ord("\n"), dtype=np.uint8)
    every = np.ones((a.size, 1), dtype=bool)
    fields = [_digits(a), (comma, every), _digits(b), (comma, every), (_WINNER_TEXT[w], _WINNER_SHOWN[w])]
    fields += [(comma, every), _digits(n), (newline, every)]
    text = np.concatenate([field for field, _ in fields], axis=1)
    shown = np.concatenate([mask for _, mask in fields], axis=1)
    if repeat is not None:
        text, shown = np.repeat(text, repeat, axis=0), np.repeat(shown, repeat, axis=0)
    return text[shown].tobytes()


def _digits(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ASCII decimal digits of non-negative integers, right-aligned in rows of equal width, and the
    mask of those shown (no leading zeros; zero shows one)."""
    width = len(str(int(values.max(initial=0))))
    powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    column = values.astype(np.int64)[:, None]
    return (column // powers % 10 + ord("0")).astype(np.uint8), (column >= powers) | (powers == 1)


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


def board_counts(table: VoteTable, filters: Filters, slug: str) -> BoardCounts:
    """The board's cells, as `filtered_votes` would count them, counted vote by vote.

    For one board this is cheaper than grouping the votes first (`group_votes`, cheaper for many
    boards): a recompute counts its longest fit's board so, and starts that fit sooner."""
    models, lookup = _model_index(table)
    m = models.size
    hidden, stale = _kept_votes(table, filters.private)
    selects = board_selects(slug, table.packed)
    chosen = ~hidden & ~stale if selects is None else ~hidden & ~stale & selects
    cell = lookup[table.model_a[chosen]] * m
    cell += lookup[table.model_b[chosen]]
    cell *= len(WINNERS)
    cell += table.winner[chosen]
    per_cell = np.bincount(cell, minlength=m * m * len(WINNERS))
    (nonzero,) = np.nonzero(per_cell)
    cell_pair, winner = np.divmod(nonzero, len(WINNERS))
    left_out = {
        "unpublished_variant": int(np.count_nonzero(hidden if selects is None else hidden & selects)),
        "before_publication": int(np.count_nonzero(stale if selects is None else stale & selects)),
    }
    return BoardCounts(
        models[cell_pair // m],
        models[cell_pair % m],
        winner,
        per_cell[nonzero],
        {reason: c for reason, c in left_out.items() if c},
    )


@dataclass(frozen=True)
class VoteGroups:
    """The table's votes grouped by (pair, packed bits), to count any board from (`counts`).

    What a board selects and whether a rule leaves a vote out are functions of the pair and the
    packed bits, so a board costs a pass over the groups, not over every vote.
    """

    models: np.ndarray  # sorted LLM primary keys; a pair is (position of a) * models + position of b
    packed: np.ndarray  # per group: its packed bits
    cell: np.ndarray  # per group: pair * len(WINNERS) + winner
    n: np.ndarray  # per group: votes
    hidden: np.ndarray  # per group: votes with an unpublished variant
    stale: np.ndarray  # per group: the rest from before a fresh variant's publication

    def counts(self, slug: str) -> BoardCounts:
        """The board's cells, as `filtered_votes` would count them."""
        m = self.models.size
        selects = board_selects(slug, self.packed)
        chosen = ~self.hidden & ~self.stale if selects is None else ~self.hidden & ~self.stale & selects
        per_cell = np.bincount(self.cell[chosen], weights=self.n[chosen], minlength=m * m * len(WINNERS))
        (nonzero,) = np.nonzero(per_cell)
        cell_pair, winner = np.divmod(nonzero, len(WINNERS))
        left_out = {
            "unpublished_variant": int(
                self.n[self.hidden if selects is None else self.hidden & selects].sum()
            ),
            "before_publication": int(self.n[self.stale if selects is None else self.stale & selects].sum()),
        }
        return BoardCounts(
            self.models[cell_pair // m],
            self.models[cell_pair % m],
            winner,
            per_cell[nonzero].astype(np.int64),
            {reason: c for reason, c in left_out.items() if c},
        )


def group_votes(table: VoteTable, filters: Filters) -> VoteGroups:
    """The table's votes grouped for counting boards under these filters (see VoteGroups)."""
    models, lookup = _model_index(table)
    m = models.size
    bits = 1 << _PACKED_BITS
    # 32-bit keys (up to 1024 models) sort about twice as fast as 64-bit ones.
    key_type = np.uint32 if m * m * bits <= 1 << 32 else np.int64
    index = lookup.astype(key_type)
    keys = index[table.model_a] * key_type(m)
    keys += index[table.model_b]
    keys *= key_type(bits)
    keys += table.packed.astype(key_type)
    groups, n = np.unique(keys, return_counts=True)
    pair, packed = np.divmod(groups.astype(np.int64), bits)
    hidden = np.isin(models[pair // m], filters.private) | np.isin(models[pair % m], filters.private)
    stale = (packed >> _STALE_BIT & 1).astype(bool) & ~hidden
    return VoteGroups(models, packed, pair * len(WINNERS) + (packed & 3), n, hidden, stale)


def style_rows(table: VoteTable, filters: Filters) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """model_a, model_b, winner (index into WINNERS) and (votes, features) style deltas of the
    overall board's counted votes, in id order."""
    hidden, stale = _kept_votes(table, filters.private)
    counted = ~hidden & ~stale
    if counted.all():  # the usual case: no copies of millions of rows
        return table.model_a, table.model_b, table.winner, table.style
    return table.model_a[counted], table.model_b[counted], table.winner[counted], table.style[counted]


# --- PostgreSQL: the votes' columns as binary strings ---------------------------------------------------


def _chunked_columns(sql: str, params: Any, after: int, last: int, kinds: str) -> _Columns:
    """The columns of `sql`, the rows of one chunk of ids (chunk.start, chunk.start + CHUNK_IDS],
    for every chunk of (after, last]: big-endian 8-byte integers for the columns of kind "i",
    floats for "f", a block per chunk.

    The server aggregates each chunk's column into one binary string (string_agg of int8send or
    float8send: 8 big-endian bytes a value, in the same row order in every column), so a result row
    carries thousands of votes. A row per vote, as a plain COPY sends it, costs this process about a
    microsecond each to take from psycopg, and the server a message and a length word per value:
    together more than the scan. The chunks are read by the primary key's index, so the server keeps
    one chunk in memory at a time; the result streams through a binary COPY.
    """
    send = {"i": "int8send(vote.c{k}::int8)", "f": "float8send(vote.c{k}::float8)"}
    names = ", ".join(f"c{k}" for k in range(len(kinds)))
    strings = ", ".join(f"string_agg({send[kind].format(k=k)}, '')" for k, kind in enumerate(kinds))
    query = (
        f"SELECT columns.* FROM generate_series(%s, %s, %s) AS chunk(start) CROSS JOIN LATERAL "
        f"(SELECT {strings} FROM ({sql}) AS vote({names})) AS columns"
    )
    blocks: _Columns = [[] for _ in kinds]
    with connection.cursor() as cursor:
        raw = cursor.cursor  # psycopg's own cursor, for copy()
        statement = f"COPY ({query}) TO STDOUT (FORMAT BINARY)"
        with raw.copy(statement, (after, last - 1, CHUNK_IDS, *params)) as copy:
            copy.set_types(["bytea"] * len(kinds))
            for row in copy.rows():
                if all(value is None for value in row):
                    continue  # a chunk without counted votes
                if None in row or len({len(value) for value in row}) != 1:
                    # string_agg skips a NULL: the columns would no longer line up.
                    raise RuntimeError("a counted vote with a NULL value in the columns read")
                for column, value, kind in zip(blocks, row, kinds, strict=True):
                    column.append(np.frombuffer(value, dtype=f">{kind}8"))
    return blocks


def _joined(blocks: list[np.ndarray], out: np.ndarray) -> np.ndarray:
    """The blocks one after the other, converted into `out` (as long as all of them)."""
    if blocks:
        np.concatenate(blocks, out=out)
    return out
