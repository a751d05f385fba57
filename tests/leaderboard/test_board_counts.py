"""The counts of a recompute (one SQL aggregation) agree with the vote-by-vote queries that exports
use, and a recompute sees the votes as they are stored, whatever changed them."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from django.db import connection

from arena.models import Battle, Vote, VoteMetadata, VoterFlag
from leaderboard import boards, rating, services, votes
from leaderboard.models import Snapshot
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
            visitor_hash="x",
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
def arena(make_llm: Callable[..., LLM]) -> tuple[list[LLM], votes.Filters]:
    models = [make_llm() for _ in range(7)]
    random_votes(models, 600, random.Random(7))
    last = Vote.objects.order_by("-id").values_list("id", flat=True).first()
    # One private variant; two published ones whose votes count only from a moment on.
    fresh = {models[1].pk: (START + timedelta(hours=200)).isoformat()}
    fresh[models[2].pk] = (START + timedelta(hours=450)).isoformat()
    return models, votes.Filters("overall", last, (models[0].pk,), fresh)


def by_queries(filters: votes.Filters) -> tuple[Counter[tuple[int, int, str]], dict[str, int]]:
    counted, left_out = votes.filtered_votes(filters)
    cells = Counter(counted.values_list("model_a_id", "model_b_id", "winner"))
    return cells, left_out


def as_cells(counts: votes.BoardCounts) -> Counter[tuple[int, int, str]]:
    cells: Counter[tuple[int, int, str]] = Counter()
    for a, b, w, n in zip(counts.model_a, counts.model_b, counts.winner, counts.n, strict=True):
        cells[(int(a), int(b), votes.WINNERS[w])] += int(n)
    return cells


def test_one_aggregation_counts_every_board_as_its_own_queries_do(
    arena: tuple[list[LLM], votes.Filters],
) -> None:
    _, filters = arena
    every = boards.all_boards(set(boards.LANGUAGE_NAMES))
    counts = votes.board_counts(filters, every)

    checked = 0
    for board in every:
        expected, left_out = by_queries(replace(filters, board=board.slug))
        assert as_cells(counts[board.slug]) == expected, board.slug
        assert counts[board.slug].left_out == left_out, board.slug
        checked += bool(expected)
    assert checked >= 8  # overall, style, four categories, and languages with votes
    assert counts["overall"].left_out.keys() == {"unpublished_variant", "before_publication"}


def test_boards_without_testing_rules_count_every_counted_vote(
    arena: tuple[list[LLM], votes.Filters],
) -> None:
    _, filters = arena
    plain = votes.Filters("overall", filters.last_vote_id)
    counts = votes.board_counts(plain, boards.FIXED)
    assert counts["overall"].votes == votes.counted_votes(last=filters.last_vote_id).count()
    assert counts["overall"].left_out == {}
    assert as_cells(counts["coding"]) == by_queries(replace(plain, board="coding"))[0]


def test_the_digest_does_not_depend_on_the_order_of_the_cells(
    arena: tuple[list[LLM], votes.Filters],
) -> None:
    _, filters = arena
    counts = votes.board_counts(filters, boards.FIXED)["overall"]
    flipped = np.arange(counts.n.size)[::-1]
    shuffled = votes.BoardCounts(
        counts.model_a[flipped], counts.model_b[flipped], counts.winner[flipped], counts.n[flipped], {}
    )
    assert shuffled.digest() == counts.digest()
    one_less = counts.n.copy()
    one_less[0] -= 1
    fewer = votes.BoardCounts(counts.model_a, counts.model_b, counts.winner, one_less, {})
    assert fewer.digest() != counts.digest()


@pytest.mark.parametrize("chunk", [votes.STYLE_CHUNK, 7])
def test_style_rows_are_the_counted_votes_with_their_style_counts_in_id_order(
    arena: tuple[list[LLM], votes.Filters], chunk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Read a few rows at a time too."""
    monkeypatch.setattr(votes, "STYLE_CHUNK", chunk)
    _, filters = arena
    counted, _ = votes.filtered_votes(filters)
    expected = list(
        counted.order_by("id").values_list("model_a_id", "model_b_id", "winner", "metadata__conv_metadata")
    )

    rows = votes.style_rows(filters)

    assert len(expected) > 150
    assert rows.model_a.tolist() == [row[0] for row in expected]
    assert rows.model_b.tolist() == [row[1] for row in expected]
    assert rows.outcome.tolist() == [votes.OUTCOME[row[2]] for row in expected]
    counts = np.array([rating.style_counts(row[3] or {}) for row in expected])
    assert np.array_equal(rows.features, rating.style_delta(counts[:, 0], counts[:, 1]))  # to the last bit


def test_style_rows_of_no_votes_are_empty(make_llm: Callable[..., LLM]) -> None:
    rows = votes.style_rows(votes.Filters("overall", 0))
    assert rows.model_a.size == rows.model_b.size == rows.outcome.size == 0
    assert rows.features.shape == (0, len(rating.STYLE_FEATURES))


def test_a_vote_copies_its_battles_models_mode_and_style_counts(make_llm: Callable[..., LLM]) -> None:
    a, b = make_llm(), make_llm()
    battle = Battle.objects.create(
        model_a=a, model_b=b, mode=Battle.Mode.NAMED, state=Battle.State.VOTED, visitor_hash="x"
    )
    vote = Vote.objects.create(
        battle=battle,
        winner="a",
        conv_metadata={"sum_assistant_a_tokens": 12, "list_count_b": {"ordered": 2, "unordered": 3}},
    )
    vote.refresh_from_db()
    assert (vote.model_a_id, vote.model_b_id, vote.anonymous) == (a.pk, b.pk, False)
    assert (vote.length_a, vote.lists_b, vote.bold_a) == (12.0, 5.0, 0.0)


# --- A recompute reads the votes as stored, whatever changed them ----------------------------------------


@pytest.fixture
def voted(make_llm: Callable[..., LLM], settings: Any) -> list[LLM]:
    settings.LEADERBOARD_BOOTSTRAP = 10
    settings.LEADERBOARD_STYLE_BOOTSTRAP = 5
    models = [make_llm() for _ in range(4)]
    random_votes(models, 200, random.Random(11))
    return models


def board_now() -> Snapshot:
    published = services.recompute()
    assert published is not None
    return published


def test_a_vote_flagged_by_a_queryset_update_leaves_the_next_board(voted: list[LLM]) -> None:
    before = board_now()
    flagged = list(
        Vote.objects.filter(anonymous=True, excluded="").order_by("id").values_list("id", flat=True)[:5]
    )

    Vote.objects.filter(pk__in=flagged).update(excluded=Vote.Exclusion.IDENTITY_LEAK)
    after = board_now()

    assert after.votes == before.votes - 5
    assert after.excluded["identity_leak"] == before.excluded["identity_leak"] + 5
    assert after.votes_digest != before.votes_digest
    filters = votes.Filters.from_json(after.params["filters"])
    assert not votes.filtered_votes(filters)[0].filter(pk__in=flagged).exists()


def test_votes_restored_in_the_admin_are_seen_by_the_next_recompute(
    voted: list[LLM], admin_client: Any
) -> None:
    # Votes are read-only in the admin: what it changes in the count goes through a flag's review.
    rigged = list(
        Vote.objects.filter(anonymous=True, excluded="").order_by("id").values_list("id", flat=True)[:5]
    )
    Battle.objects.filter(votes__in=rigged).update(visitor_hash="rigger")
    Vote.objects.filter(pk__in=rigged).update(excluded=Vote.Exclusion.ANOMALOUS_VOTER)
    flag = VoterFlag.objects.create(kind=VoterFlag.Kind.VISITOR, voter_hash="rigger", votes=5)
    before = board_now()

    response = admin_client.post(
        "/admin/arena/voterflag/", {"action": "restore", "_selected_action": [flag.pk]}
    )
    assert response.status_code == 302
    after = board_now()

    assert after.votes == before.votes + 5
    assert after.excluded.get("anomalous_voter", 0) == before.excluded["anomalous_voter"] - 5


def test_votes_changed_or_deleted_by_hand_in_sql_are_seen_by_the_next_recompute(voted: list[LLM]) -> None:
    before = board_now()
    counted = Vote.objects.filter(anonymous=True, excluded="").order_by("id")
    flipped = list(counted.filter(winner="a").values_list("id", flat=True)[:5])
    gone = counted.exclude(pk__in=flipped).values_list("id", flat=True).first()
    with connection.cursor() as cursor:
        for pk in flipped:
            cursor.execute(f"UPDATE {Vote._meta.db_table} SET winner = 'b' WHERE id = %s", [pk])
        cursor.execute(f"DELETE FROM {VoteMetadata._meta.db_table} WHERE vote_id = %s", [gone])
        cursor.execute(f"DELETE FROM {Vote._meta.db_table} WHERE id = %s", [gone])

    after = board_now()

    assert after.votes == before.votes - 1
    expected, _ = by_queries(votes.Filters.from_json(after.params["filters"]))
    a, b, w = zip(*expected, strict=True)
    stored = votes.BoardCounts(
        np.array(a),
        np.array(b),
        np.array([votes.WINNERS.index(x) for x in w]),
        np.array(list(expected.values())),
        {},
    )
    assert after.votes_digest == stored.digest() != before.votes_digest
