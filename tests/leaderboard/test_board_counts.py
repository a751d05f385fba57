"""The one-scan counts of a recompute agree with the vote-by-vote queries that exports use."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from arena.models import Battle, Vote
from leaderboard import boards, rating, services, votes
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
    _, filters = arena
    slugs = [b.slug for b in boards.all_boards(set(boards.LANGUAGE_NAMES))]
    counts = votes.board_counts(votes.VoteTable.read(filters), filters, slugs)

    checked = 0
    for slug in slugs:
        expected, left_out = by_queries(replace(filters, board=slug))
        got = counts[slug]
        cells: Counter[tuple[int, int, str]] = Counter()
        for a, b, w, n in zip(got.model_a, got.model_b, got.winner, got.n, strict=True):
            cells[(int(a), int(b), services.WINNERS[w])] += int(n)
        assert cells == expected, slug
        assert got.left_out == left_out, slug
        checked += bool(expected)
    assert checked >= 8  # overall, style, four categories, and languages with votes
    assert counts["overall"].left_out.keys() == {"unpublished_variant", "before_publication"}


def test_the_digest_does_not_depend_on_the_order_of_the_cells(
    arena: tuple[list[LLM], services.Filters],
) -> None:
    _, filters = arena
    counts = votes.board_counts(votes.VoteTable.read(filters), filters, ["overall"])["overall"]
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


@pytest.mark.parametrize("block", [votes.COPY_BLOCK_BYTES, 333])
def test_style_rows_are_the_counted_votes_with_their_style_counts_in_id_order(
    arena: tuple[list[LLM], services.Filters], block: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On PostgreSQL through a binary COPY, decoded a block of rows at a time (tiny blocks too)."""
    monkeypatch.setattr(votes, "COPY_BLOCK_BYTES", block)
    _, filters = arena
    counted, _ = services.filtered_votes(filters)
    expected = list(counted.order_by("id").values_list("model_a_id", "model_b_id", "winner", "conv_metadata"))

    a, b, w, features = votes.style_rows(votes.VoteTable.read(filters), filters)

    assert len(expected) > 150
    assert a.tolist() == [row[0] for row in expected]
    assert b.tolist() == [row[1] for row in expected]
    assert [services.WINNERS[k] for k in w] == [row[2] for row in expected]
    counts = np.array([rating.style_counts(row[3]) for row in expected])
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


def test_a_changed_vote_or_new_filters_make_the_next_load_read_everything_again(
    arena: tuple[list[LLM], services.Filters],
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
) -> None:
    _, filters = arena
    reads: list[int] = []
    read = votes.VoteTable.read.__func__  # type: ignore[attr-defined]

    def counting(cls: type[votes.VoteTable], f: services.Filters, *, after: int = 0) -> votes.VoteTable:
        reads.append(after)
        return read(cls, f, after=after)

    monkeypatch.setattr(votes.VoteTable, "read", classmethod(counting))
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


def test_a_vote_committed_after_a_newer_one_is_read_the_next_time(
    arena: tuple[list[LLM], services.Filters], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ids are taken at insert: a vote whose transaction commits late can land below the last id read."""
    _, filters = arena
    monkeypatch.setattr(votes, "REREAD_IDS", 10)  # with 0, the late votes below are never read
    late = list(Vote.objects.filter(excluded="").order_by("-id").values_list("id", flat=True)[:3])
    Vote.objects.filter(id__in=late).update(excluded="identity_leak")  # as if not committed yet
    votes.load_table(filters)
    Vote.objects.filter(id__in=late).update(excluded="")  # committed now (update() sends no signal)

    table = votes.load_table(filters)

    assert set(late) <= set(table.ids.tolist())
    assert len(table) == votes.counted_votes(last=filters.last_vote_id).count()
