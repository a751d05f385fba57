"""A board says how old its snapshot is, and warns when votes have waited too long for it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from leaderboard import services
from leaderboard.models import Snapshot
from providers.models import LLM
from tests.factories import voted_battle

pytestmark = pytest.mark.django_db


@pytest.fixture
def old_board(make_llm: Callable[..., LLM], settings) -> Snapshot:
    """The overall board computed 3 hours ago."""
    settings.LEADERBOARD_RECOMPUTE_ON_VOTE = False
    settings.READYZ_SNAPSHOT_SECONDS = 900
    a, b = make_llm(), make_llm()
    for winner in "aab":
        vote = voted_battle(a, b, winner)
        vote.__class__.objects.filter(pk=vote.pk).update(created=timezone.now() - timedelta(hours=4))
    snapshot = services.recompute()
    assert snapshot is not None
    Snapshot.objects.all().update(created=timezone.now() - timedelta(hours=3))
    return snapshot


def board_api(client: Client) -> dict:
    return client.get("/api/v1/leaderboard/?board=overall").json()["snapshot"]


def test_an_old_board_without_waiting_votes_shows_its_age_and_no_warning(
    old_board: Snapshot, client: Client
) -> None:
    page = client.get("/leaderboard/?board=overall").content.decode()
    assert "Updated <strong>3\xa0hours ago</strong>" in page
    assert "Out of date" not in page and "board-stale" not in page
    body = board_api(client)
    assert 3 * 3600 - 5 <= body["age_seconds"] <= 3 * 3600 + 60 and body["stale"] is False


def test_a_board_behind_its_votes_says_so(old_board: Snapshot, client: Client, make_llm) -> None:
    llms = list(LLM.objects.all())
    vote = voted_battle(llms[0], llms[1], "a")  # not counted: no recompute runs
    vote.__class__.objects.filter(pk=vote.pk).update(created=timezone.now() - timedelta(hours=2))
    page = client.get("/leaderboard/?board=overall").content.decode()
    assert "Updated <strong>3\xa0hours ago</strong>" in page
    assert "Out of date: votes have waited more than 15 minutes" in page
    assert board_api(client)["stale"] is True


def test_the_age_moves_while_the_page_stays_cached(old_board: Snapshot, client: Client, time_machine) -> None:
    assert "3\xa0hours ago" in client.get("/leaderboard/?board=overall").content.decode()
    time_machine.move_to(timezone.now() + timedelta(hours=2), tick=False)
    page = client.get("/leaderboard/?board=overall").content.decode()
    assert "5\xa0hours ago" in page and "<!-- snapshot-age -->" not in page
