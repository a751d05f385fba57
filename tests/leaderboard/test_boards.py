from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from arena.models import Vote, VoteMetadata
from config.asgi import application
from leaderboard import services, views
from leaderboard.models import Snapshot
from providers.models import LLM
from tests.asgi import get_scope
from tests.factories import voted_battle

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _quick(settings) -> None:
    settings.LEADERBOARD_BOOTSTRAP = 50
    settings.LEADERBOARD_STYLE_BOOTSTRAP = 20
    settings.LEADERBOARD_MIN_VOTES = 30


@pytest.fixture
def models(make_llm: Callable[..., LLM]) -> list[LLM]:
    return [make_llm(name=f"m{i}") for i in range(4)]


def battles(models: list[LLM], n: int = 40, **tags) -> None:
    """Model i beats model j (i < j) three times in four; long answers win a little more."""
    long = {"sum_assistant_a_tokens": 400, "sum_assistant_b_tokens": 100}
    for k in range(n):
        for i in range(len(models)):
            for j in range(i + 1, len(models)):
                vote = voted_battle(models[i], models[j], "a" if k % 4 else "b")
                Vote.objects.filter(pk=vote.pk).update(**tags)
                if k % 2:
                    VoteMetadata.objects.create(vote=vote, conv_metadata=long)


def test_a_snapshots_votes_reproduce_its_ratings_through_the_command_line(
    models: list[LLM], client: Client, tmp_path: Path
) -> None:
    battles(models)
    services.recompute_all()
    battles(models, n=4)  # later votes must not leak into the older snapshot's download
    snapshot = Snapshot.objects.of_board("overall").latest_first().first()

    response = client.get(f"/api/v1/leaderboard/snapshots/{snapshot.pk}/votes")
    assert response.status_code == 200
    path = tmp_path / "votes.jsonl"
    path.write_bytes(b"".join(response))  # read as a WSGI server would read the streamed body
    assert len(path.read_text().splitlines()) == snapshot.votes

    result = subprocess.run(
        [sys.executable, "-m", "leaderboard.rating", str(path), "--json", "--bootstrap", "10"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    cli = {m["model"]: m["rating"] for m in json.loads(result.stdout)["models"]}
    for r in snapshot.ratings.select_related("llm"):
        assert cli[r.llm.name] == pytest.approx(r.rating, abs=0.01)


def test_category_boards_list_only_models_above_the_threshold(models: list[LLM]) -> None:
    battles(models[:2], n=40, coding=True)
    battles(models, n=5, coding=True)  # the others get 15 coding votes each: under 30
    services.recompute_all()

    coding = Snapshot.objects.of_board("coding").latest_first().first()
    assert {r.llm.name for r in coding.ratings.select_related("llm")} == {"m0", "m1"}
    overall = Snapshot.objects.of_board("overall").latest_first().first()
    assert overall.ratings.count() == 4
    assert {r.llm.name for r in overall.ratings.filter(provisional=True).select_related("llm")} == {
        "m2",
        "m3",
    }
    assert not Snapshot.objects.of_board("hard").exists()  # nobody voted there: no empty board


def test_language_boards_appear_for_the_languages_voted_in(models: list[LLM]) -> None:
    battles(models, n=10, language="fr")
    services.recompute_all()
    assert Snapshot.objects.of_board("language-fr").exists()
    assert not Snapshot.objects.of_board("language-de").exists()


def test_the_style_board_reports_coefficients_with_intervals(models: list[LLM]) -> None:
    battles(models)
    services.recompute_all()
    style = Snapshot.objects.of_board("style").latest_first().first()
    assert style.method == "bradley-terry-style-control"
    assert set(style.details["style"]) == {"length", "headers", "lists", "bold"}
    length = style.details["style"]["length"]
    assert length["ci_lower"] <= length["coef"] <= length["ci_upper"]
    assert style.ratings.count() == 4


def test_the_page_shows_tabs_heatmaps_and_downloads(models: list[LLM], client: Client) -> None:
    battles(models, coding=True)
    services.recompute_all()
    page = client.get("/leaderboard/?board=coding").content.decode()
    assert "Observed win rate" in page and "Battle counts" in page
    assert '?board=style"' in page and '?board=coding" aria-current="page"' in page
    snapshot = Snapshot.objects.of_board("coding").latest_first().first()
    assert f"/api/v1/leaderboard/snapshots/{snapshot.pk}/csv" in page


def test_a_new_snapshot_replaces_the_cached_page(models: list[LLM], client: Client) -> None:
    battles(models[:2], n=10)
    services.recompute_all()
    assert "m2" not in client.get("/leaderboard/").content.decode()
    battles(models, n=10)
    services.recompute_all()
    assert "Model" in client.get("/leaderboard/").content.decode()
    assert Snapshot.objects.of_board("overall").latest_first().first().ratings.count() == 4


def test_the_csv_download_lists_the_board(models: list[LLM], client: Client) -> None:
    battles(models)
    services.recompute_all()
    snapshot = Snapshot.objects.of_board("overall").latest_first().first()
    lines = client.get(f"/api/v1/leaderboard/snapshots/{snapshot.pk}/csv").content.decode().splitlines()
    assert lines[0].startswith("rank,model,rating,ci_lower,ci_upper,votes")
    assert len(lines) == 5 and lines[1].split(",")[1] == "m0"


def test_unknown_boards_and_snapshots_are_not_found(client: Client) -> None:
    assert client.get("/leaderboard/?board=nope").status_code == 404
    assert client.get("/api/v1/leaderboard/snapshots/999/votes").status_code == 404
    assert client.get("/api/v1/leaderboard/snapshots/999/csv").json()["code"] == "not_found"


@pytest.mark.django_db(transaction=True)  # the ASGI handler reads in threads of its own
def test_under_asgi_a_download_starts_before_its_last_vote_is_read(
    models: list[LLM], monkeypatch: pytest.MonkeyPatch
) -> None:
    battles(models, n=3)  # 18 votes
    services.recompute_all()
    snapshot = Snapshot.objects.of_board("overall").latest_first().first()
    read: list[str] = []
    export = views.export_lines

    def counted(votes: Any, **kwargs: Any) -> Iterator[str]:
        for line in export(votes, **kwargs):
            read.append(line)
            yield line

    monkeypatch.setattr(views, "export_lines", counted)
    monkeypatch.setattr(views, "EXPORT_BATCH", 5)
    sent: list[tuple[bytes, int]] = []  # each piece of the body, and how many votes were read by then

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            assert message["status"] == 200
        elif message.get("body"):
            sent.append((message["body"], len(read)))

    async def download() -> None:
        requests: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        requests.put_nowait({"type": "http.request", "body": b"", "more_body": False})
        path = f"/api/v1/leaderboard/snapshots/{snapshot.pk}/votes"
        await application(get_scope(path), requests.get, send)

    asyncio.run(download())
    lines = b"".join(body for body, _ in sent).decode().splitlines()
    assert len(lines) == snapshot.votes == 18
    assert [json.loads(line)["model_a"] for line in lines] == [json.loads(line)["model_a"] for line in read]
    assert sent[0][1] < snapshot.votes  # sent while most votes were still unread


def test_a_board_emptied_by_retagging_loses_its_tab(models: list[LLM], client: Client) -> None:
    """Votes filed under the wrong language and re-tagged: that board's newest snapshot counts none."""
    battles(models, language="pt")
    services.recompute_all()
    assert '?board=language-pt"' in client.get("/leaderboard/").content.decode()
    Vote.objects.update(language="en")
    services.recompute_all()
    page = client.get("/leaderboard/").content.decode()
    assert '?board=language-pt"' not in page and '?board=language-en"' in page


def test_the_board_has_sandwich_intervals_and_rank_ranges_that_its_export_reproduces(
    models: list[LLM], client: Client, tmp_path: Path
) -> None:
    battles(models, n=12)
    services.recompute_all()
    snapshot = Snapshot.objects.of_board("overall").latest_first().first()
    assert snapshot.params["intervals"] == "sandwich" and snapshot.params["bootstrap"] == 0
    ratings = list(snapshot.ratings.select_related("llm"))
    assert all(r.rank <= r.rank_upper for r in ratings)
    assert any(r.rank < r.rank_upper for r in ratings)  # 12 rounds leave neighbours overlapping
    api = client.get("/api/v1/leaderboard/").json()["models"]
    assert {m["name"]: (m["rank"], m["rank_upper"]) for m in api} == {
        r.llm.name: (r.rank, r.rank_upper) for r in ratings
    }
    page = client.get("/leaderboard/?board=overall").content.decode()
    assert "sandwich (robust)" in page and next(r.rank_range for r in ratings if "–" in r.rank_range) in page

    path = tmp_path / "votes.jsonl"
    path.write_bytes(b"".join(client.get(f"/api/v1/leaderboard/snapshots/{snapshot.pk}/votes")))
    result = subprocess.run(
        [sys.executable, "-m", "leaderboard.rating", str(path), "--json", "--min-votes", "0"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    cli = {m["model"]: m for m in json.loads(result.stdout)["models"]}
    for r in ratings:
        assert cli[r.llm.name]["ci_lower"] == pytest.approx(r.ci_lower, abs=0.01)
        assert cli[r.llm.name]["ci_upper"] == pytest.approx(r.ci_upper, abs=0.01)
        assert (cli[r.llm.name]["rank_lower"], cli[r.llm.name]["rank_upper"]) == (r.rank, r.rank_upper)


def test_an_operator_can_keep_bootstrap_intervals(models: list[LLM], settings: Any) -> None:
    settings.LEADERBOARD_INTERVALS = "bootstrap"
    battles(models, n=12)
    services.recompute_all()
    snapshot = Snapshot.objects.of_board("overall").latest_first().first()
    assert snapshot.params["intervals"] == "bootstrap" and snapshot.params["bootstrap"] == 50


def test_the_default_board_has_its_tab_even_before_a_vote_counts(models: list[LLM], client: Client) -> None:
    """A first vote left out (too fast): the style board, shown by default, still has its tab."""
    battles(models[:2], n=1)
    Vote.objects.update(excluded="too_fast")
    services.recompute_all()
    page = client.get("/leaderboard/").content.decode()
    assert '?board=style" aria-current="page"' in page and '?board=overall"' in page
    # An empty style or overall board says that no vote counts yet, not a category board's threshold.
    assert "No vote is counted on this board yet." in page and "votes on this board yet" not in page
