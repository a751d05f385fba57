"""The one-scan counts of a recompute agree with the vote-by-vote queries that exports use."""

from __future__ import annotations

import hashlib
import random
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from django.db import connection

from arena.models import Battle, Vote, VoteMetadata
from leaderboard import boards, rating, services, votes
from leaderboard.models import VoteChanges
from providers.models import LLM

pytestmark = pytest.mark.django_db

START = datetime(2026, 1, 1, tzinfo=UTC)
LANGUAGES = ["en", "en", "fr", "zh", "", "xx"]


def random_votes(models: list[LLM], n: int, rng: random.Random) -> None:
    battles, votes = [], []
    for k in range(n):
        a, b = rng.sample(models, 2)
        battle = Battle(
            model_a=a,
            model_b=b,
            mode=Battle.Mode.NAMED if rng.random() < 0.1 else Battle.Mode.ANONYMOUS,
            state=Battle.State.VOTED,
            session_hash="x",
        )
        metadata = {
            "sum_assistant_a_tokens": rng.randint(0, 900),
            "sum_assistant_b_tokens": rng.randint(0, 900),
            "header_count_a": {"h1": rng.randint(0, 3), "h2": rng.randint(0, 2)},
            "header_count_b": {"h1": 0, "h3": rng.randint(0, 4)},
            "list_count_a": {"ordered": rng.randint(0, 5), "unordered": rng.randint(0, 5)},
            "bold_count_b": {"**": rng.randint(0, 7), "__": 0},
        }
        vote = Vote(
            battle=battle,
            winner=rng.choice(list(Vote.Winner.values)),
            excluded=Vote.Exclusion.IDENTITY_LEAK if rng.random() < 0.05 else "",
            created=START + timedelta(hours=k),
            language=rng.choice(LANGUAGES),
            coding=rng.random() < 0.3,
            hard=rng.random() < 0.3,
            long_query=rng.random() < 0.1,
            multi_turn=rng.random() < 0.2,
            conv_metadata=metadata if rng.random() < 0.9 else {},
        )
        vote.set_facts()
        battles.append(battle)
        votes.append(vote)
    Battle.objects.bulk_create(battles)
    Vote.objects.bulk_create(votes)
    VoteMetadata.objects.bulk_create(Vote.metadata_rows(votes))


@pytest.fixture
def arena(make_llm: Callable[..., LLM]) -> tuple[list[LLM], services.Filters]:
    models = [make_llm() for _ in range(7)]
    random_votes(models, 600, random.Random(7))
    last = Vote.objects.order_by("-id").values_list("id", flat=True).first()
    # One private variant; two published ones whose votes count only from a moment on.
    fresh = {models[1].pk: (START + timedelta(hours=200)).isoformat()}
    fresh[models[2].pk] = (START + timedelta(hours=450)).isoformat()
    return models, services.Filters("overall", last, (models[0].pk,), fresh)


def by_queries(filters: services.Filters) -> tuple[Counter[tuple[int, int, str]], dict[str, int]]:
    votes, left_out = services.filtered_votes(filters)
    cells = Counter(votes.values_list("model_a_id", "model_b_id", "winner"))
    return cells, left_out


def test_one_scan_counts_every_board_as_its_own_queries_do(arena: tuple[list[LLM], services.Filters]) -> None:
    """From the grouped votes (every board but the first of a recompute) and vote by vote (the first)."""
    _, filters = arena
    slugs = [b.slug for b in boards.all_boards(set(boards.LANGUAGE_NAMES))]
    table = votes.VoteTable.read(filters)
    groups = votes.group_votes(table, filters)

    checked = 0
    for slug in slugs:
        expected, left_out = by_queries(replace(filters, board=slug))
        got = groups.counts(slug)
        cells: Counter[tuple[int, int, str]] = Counter()
        for a, b, w, n in zip(got.model_a, got.model_b, got.winner, got.n, strict=True):
            cells[(int(a), int(b), services.WINNERS[w])] += int(n)
        assert cells == expected, slug
        assert got.left_out == left_out, slug
        one_by_one = votes.board_counts(table, filters, slug)
        for column in ("model_a", "model_b", "winner", "n"):
            assert np.array_equal(getattr(one_by_one, column), getattr(got, column)), (slug, column)
        assert one_by_one.left_out == left_out, slug
        checked += bool(expected)
    assert checked >= 8  # overall, style, four categories, and languages with votes
    assert groups.counts("overall").left_out.keys() == {"unpublished_variant", "before_publication"}


def test_the_digest_does_not_depend_on_the_order_of_the_cells(
    arena: tuple[list[LLM], services.Filters],
) -> None:
    _, filters = arena
    counts = votes.group_votes(votes.VoteTable.read(filters), filters).counts("overall")
    flipped = np.arange(counts.n.size)[::-1]
    shuffled = votes.BoardCounts(
        counts.model_a[flipped], counts.model_b[flipped], counts.winner[flipped], counts.n[flipped], {}
    )
    assert shuffled.digest() == counts.digest()
    assert counts.digest(per_vote=True) != counts.digest()
    one_less = counts.n.copy()
    one_less[0] -= 1
    fewer = votes.BoardCounts(counts.model_a, counts.model_b, counts.winner, one_less, {})
    assert fewer.digest() != counts.digest()


@pytest.mark.parametrize("chunk", [votes.CHUNK_IDS, 7])
def test_style_rows_are_the_counted_votes_with_their_style_counts_in_id_order(
    arena: tuple[list[LLM], services.Filters], chunk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On PostgreSQL a chunk of ids a result row (tiny chunks too, some without counted votes)."""
    monkeypatch.setattr(votes, "CHUNK_IDS", chunk)
    _, filters = arena
    counted, _ = services.filtered_votes(filters)
    expected = list(
        counted.order_by("id").values_list("model_a_id", "model_b_id", "winner", "metadata__conv_metadata")
    )

    a, b, w, features = votes.style_rows(votes.VoteTable.read(filters), filters)

    assert len(expected) > 150
    assert a.tolist() == [row[0] for row in expected]
    assert b.tolist() == [row[1] for row in expected]
    assert [services.WINNERS[k] for k in w] == [row[2] for row in expected]
    counts = np.array([rating.style_counts(row[3] or {}) for row in expected])
    assert np.array_equal(features, rating.style_delta(counts[:, 0], counts[:, 1]))  # to the last bit


def test_style_rows_of_no_votes_are_empty(make_llm: Callable[..., LLM]) -> None:
    a, b, w, features = votes.style_rows(
        votes.VoteTable.read(services.Filters("overall", 0)), services.Filters("overall", 0)
    )
    assert a.size == b.size == w.size == 0 and features.shape == (0, len(rating.STYLE_FEATURES))


def test_a_vote_copies_its_battles_models_mode_and_style_counts(make_llm: Callable[..., LLM]) -> None:
    a, b = make_llm(), make_llm()
    battle = Battle.objects.create(
        model_a=a, model_b=b, mode=Battle.Mode.NAMED, state=Battle.State.VOTED, session_hash="x"
    )
    vote = Vote.objects.create(
        battle=battle,
        winner="a",
        conv_metadata={"sum_assistant_a_tokens": 12, "list_count_b": {"ordered": 2, "unordered": 3}},
    )
    vote.refresh_from_db()
    assert (vote.model_a_id, vote.model_b_id, vote.anonymous) == (a.pk, b.pk, False)
    assert (vote.length_a, vote.lists_b, vote.bold_a) == (12.0, 5.0, 0.0)


def test_a_kept_table_reads_only_newer_votes_and_matches_a_full_read(
    arena: tuple[list[LLM], services.Filters], django_assert_max_num_queries: Any
) -> None:
    models, filters = arena
    votes.load_table(filters)
    random_votes(models, 50, random.Random(8))
    newer = replace(filters, last_vote_id=Vote.objects.order_by("-id").values_list("id", flat=True)[0])

    extended = votes.load_table(newer)
    full = votes.VoteTable.read(newer)

    assert len(extended) == len(full) > len(votes.VoteTable.read(filters))
    for column in ("ids", "model_a", "model_b", "packed", "style"):
        assert np.array_equal(getattr(extended, column), getattr(full, column)), column


def counted_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """From now on, the `after` of every VoteTable.read, in order (0: a read in full)."""
    reads: list[int] = []
    read = votes.VoteTable.read.__func__  # type: ignore[attr-defined]

    def counting(cls: type[votes.VoteTable], f: services.Filters, *, after: int = 0) -> votes.VoteTable:
        reads.append(after)
        return read(cls, f, after=after)

    monkeypatch.setattr(votes.VoteTable, "read", classmethod(counting))
    return reads


def test_a_changed_vote_or_new_filters_make_the_next_load_read_everything_again(
    arena: tuple[list[LLM], services.Filters],
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
) -> None:
    _, filters = arena
    reads = counted_reads(monkeypatch)
    monkeypatch.setattr(votes, "REREAD_IDS", 5)
    votes.load_table(filters)
    votes.load_table(filters)
    assert reads == [0, filters.last_vote_id - 5]  # the second asks only for the newest votes

    with django_capture_on_commit_callbacks(execute=True):
        vote = Vote.objects.filter(excluded="").first()
        vote.excluded = Vote.Exclusion.IDENTITY_LEAK
        vote.save()
    table = votes.load_table(filters)
    assert reads[-1] == 0  # read in full: the flagged vote is gone from the table
    assert len(table) == votes.counted_votes(last=filters.last_vote_id).count()

    votes.load_table(replace(filters, fresh_since={}))
    assert reads[-1] == 0


def _vote_with_id(models: list[LLM], vote_id: int) -> int:
    battle = Battle.objects.create(
        model_a=models[3],
        model_b=models[4],
        mode=Battle.Mode.ANONYMOUS,
        state=Battle.State.VOTED,
        session_hash="x",
    )
    return Vote.objects.create(id=vote_id, battle=battle, winner="a").pk


@pytest.mark.parametrize("reread", [10, 0])
def test_a_vote_committed_after_a_newer_one_is_read_the_next_time(
    arena: tuple[list[LLM], services.Filters], monkeypatch: pytest.MonkeyPatch, reread: int
) -> None:
    """Ids are taken at insert: a vote whose transaction commits late can land below the last id read."""
    models, filters = arena
    monkeypatch.setattr(votes, "REREAD_IDS", reread)
    newer = replace(filters, last_vote_id=filters.last_vote_id + 4)
    _vote_with_id(models, newer.last_vote_id)
    votes.load_table(newer)
    # Their ids were taken before the vote above, their transactions commit only now.
    late = [_vote_with_id(models, filters.last_vote_id + k) for k in (1, 2, 3)]

    table = votes.load_table(newer)

    read = set(late) & set(table.ids.tolist())
    assert read == (set(late) if reread else set())  # with no ids read again, they would be lost
    assert (len(table) == votes.counted_votes(last=newer.last_vote_id).count()) is bool(reread)


def test_any_change_to_a_stored_vote_makes_the_next_load_read_everything_again(
    arena: tuple[list[LLM], services.Filters], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A queryset's update() and SQL by hand send no signal: the vote table's triggers count them."""
    _, filters = arena
    reads = counted_reads(monkeypatch)
    monkeypatch.setattr(votes, "REREAD_IDS", 5)  # a load that reads only the newest asks from last - 5
    votes.load_table(filters)
    counted = votes.counted_votes(last=filters.last_vote_id)
    flipped = counted.filter(winner="a").order_by("id").values_list("id", flat=True)[:5]

    counted.filter(id__in=list(flipped)).update(winner="b")
    table = votes.load_table(filters)
    assert reads[-1] == 0
    assert np.count_nonzero(table.winner == 0) == counted.filter(winner="a").count()

    gone = counted.order_by("id").values_list("id", flat=True)[0]
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {VoteMetadata._meta.db_table} WHERE vote_id = %s", [gone])
        cursor.execute(f"DELETE FROM {Vote._meta.db_table} WHERE id = %s", [gone])
    table = votes.load_table(filters)
    assert reads[-1] == 0 and gone not in table.ids

    # A column no board reads leaves the kept table as it was.
    VoteMetadata.objects.filter(vote__in=list(flipped)).update(conv_metadata={"note": "edited"})
    votes.load_table(filters)
    assert reads[-1] == filters.last_vote_id - 5

    # A flushed database makes its counter row again, under a new token: nothing kept matches.
    VoteChanges.objects.all().delete()
    votes.load_table(filters)
    assert reads[-1] == 0 and VoteChanges.objects.get().changes == 0


# --- Reading the table: id ranges over connections, chunks of ids, the digest -------------------------


def test_id_ranges_cut_the_ids_into_contiguous_ranges_of_a_least_split_ids(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(votes, "SPLIT_IDS", 3)
    assert votes.id_ranges(0, 12, 2) == [(0, 6), (6, 12)]
    assert votes.id_ranges(0, 12, 5) == [(0, 3), (3, 6), (6, 9), (9, 12)]  # no range under 3 ids
    assert votes.id_ranges(10, 17, 3) == [(10, 13), (13, 17)]
    assert votes.id_ranges(10, 12, 4) == [(10, 12)]  # too few ids to split
    assert votes.id_ranges(10, 10, 4) == [(10, 10)]  # none: one empty range
    assert votes.id_ranges(10, 7, 4) == [(10, 7)]
    monkeypatch.setattr(votes, "SPLIT_IDS", 200_000)
    assert votes.id_ranges(0, 1_000_000, 2) == [(0, 500_000), (500_000, 1_000_000)]
    assert votes.id_ranges(990_000, 1_000_000, 2) == [(990_000, 1_000_000)]  # a recompute's new votes


def same_table(got: votes.VoteTable, expected: votes.VoteTable) -> None:
    for column in ("ids", "model_a", "model_b", "packed", "style"):
        assert getattr(got, column).dtype == getattr(expected, column).dtype, column
        assert np.array_equal(getattr(got, column), getattr(expected, column)), column


@pytest.mark.parametrize("connections", [2, 3, 50])
def test_a_read_cut_into_id_ranges_gives_the_same_table(
    arena: tuple[list[LLM], services.Filters],
    monkeypatch: pytest.MonkeyPatch,
    settings: Any,
    connections: int,
) -> None:
    """Ranges of a few ids, some without a counted vote, read in tiny chunks (one after the other on
    this connection: the test runs in a transaction, which other connections would not see)."""
    _, filters = arena
    whole = votes.VoteTable.read(filters)
    settings.LEADERBOARD_READ_CONNECTIONS = connections
    monkeypatch.setattr(votes, "SPLIT_IDS", 5)
    monkeypatch.setattr(votes, "CHUNK_IDS", 3)

    same_table(votes.VoteTable.read(filters), whole)
    newer = votes.VoteTable.read(filters, after=filters.last_vote_id - 40)
    assert np.array_equal(newer.ids, whole.ids[whole.ids > filters.last_vote_id - 40])


@pytest.mark.django_db(transaction=True)
def test_on_postgresql_the_id_ranges_are_read_side_by_side_over_connections_of_their_own(
    arena: tuple[list[LLM], services.Filters], monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("reads over several connections on PostgreSQL only")
    _, filters = arena
    settings.LEADERBOARD_READ_CONNECTIONS = 1
    whole = votes.VoteTable.read(filters)
    settings.LEADERBOARD_READ_CONNECTIONS = 3
    monkeypatch.setattr(votes, "SPLIT_IDS", 50)
    threads: set[str] = set()
    read_range = votes._read_range
    # Each read waits until all three have started: only reads running side by side get past it (a
    # pool thread that had finished one range could otherwise take the next, one after the other).
    all_started = threading.Barrier(3, timeout=10)

    def recording(*args: Any) -> Any:
        threads.add(threading.current_thread().name)
        all_started.wait()
        return read_range(*args)

    monkeypatch.setattr(votes, "_read_range", recording)

    same_table(votes.VoteTable.read(filters), whole)
    assert len(threads) == 3


@pytest.mark.parametrize("chunk", [votes.CHUNK_IDS, 1])
def test_a_counted_vote_with_a_value_the_read_cannot_encode_stops_it(
    arena: tuple[list[LLM], services.Filters], monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    """A winner outside WINNERS has no packed code: the read fails rather than misalign the columns
    (in a chunk with other votes, or alone in its chunk)."""
    if connection.vendor != "postgresql":
        pytest.skip("the aggregated read is PostgreSQL's")
    monkeypatch.setattr(votes, "CHUNK_IDS", chunk)
    _, filters = arena
    Vote.objects.filter(pk=votes.counted_votes(last=filters.last_vote_id).first().pk).update(winner="?")
    with pytest.raises(RuntimeError, match="NULL"):
        votes.VoteTable.read(filters)


def lines_digest(counts: votes.BoardCounts, *, per_vote: bool = False) -> str:
    """The digest as first written: a formatted line per cell (per vote for a style board)."""
    digest = hashlib.sha256()
    order = np.lexsort((counts.winner, counts.model_b, counts.model_a))
    for a, b, w, n in zip(
        counts.model_a[order].tolist(),
        counts.model_b[order].tolist(),
        counts.winner[order].tolist(),
        counts.n[order].tolist(),
        strict=True,
    ):
        line = f"{a},{b},{votes.WINNERS[w]},{1 if per_vote else n}\n".encode()
        digest.update(line * n if per_vote else line)
    return digest.hexdigest()


@pytest.mark.parametrize("lines", [votes.DIGEST_LINES, 3, 1])
def test_the_digest_is_that_of_the_cells_formatted_line_by_line(
    arena: tuple[list[LLM], services.Filters], monkeypatch: pytest.MonkeyPatch, lines: int
) -> None:
    monkeypatch.setattr(votes, "DIGEST_LINES", lines)
    _, filters = arena
    board = votes.group_votes(votes.VoteTable.read(filters), filters).counts("overall")
    rng = np.random.default_rng(3)
    odd = votes.BoardCounts(
        np.array([0, 9, 10, 99, 100, 123_456_789_012, 7]),
        np.array([1, 10, 1000, 5, 0, 2**40, 7]),
        np.array([0, 1, 2, 3, 3, 2, 1]),
        np.array([1, 10, 9, 100, 12_345, 2, 1]),
        {},
    )
    many = votes.BoardCounts(*(rng.integers(0, top, 5000) for top in (300, 300, 4, 40)), {})
    empty = votes.BoardCounts(*(np.zeros(0, dtype=np.int64) for _ in range(4)), {})
    for counts in (board, odd, many, empty):
        for per_vote in (False, True):
            assert counts.digest(per_vote=per_vote) == lines_digest(counts, per_vote=per_vote)
