"""Consent before the first prompt, and a visitor's own data: download and deletion, over a real socket."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from django.test import Client

from arena.models import Answer, AnswerAttempt, Battle, Turn, Visitor, Vote, VoterFlag
from leaderboard.dumps import export_lines
from providers.models import LLM, FlaggedPrompt
from tests.arena.test_api import assert_error, stream, text_of
from tests.upstream import Behaviour, FakeOpenAI

ALPHA = "The first answer, in several words."
BETA = "A second answer that differs."


@pytest.fixture(autouse=True)
def _consent_required(settings: Any) -> None:
    settings.ARENA_REQUIRE_CONSENT = True
    settings.ARENA_TERMS_VERSION = "v1"


@pytest.fixture
def models(openai_upstream: FakeOpenAI, live_asgi: str) -> tuple[LLM, LLM]:
    openai_upstream.behaviours["alpha-up"] = Behaviour(text=ALPHA)
    openai_upstream.behaviours["beta-up"] = Behaviour(text=BETA)
    common = {"backend": LLM.Backend.OPENAI_COMPATIBLE, "base_url": openai_upstream.base_url}
    return (
        LLM.objects.create(name="alpha-chat", display_name="Alpha Chat", model="alpha-up", **common),
        LLM.objects.create(name="beta-chat", display_name="Beta Chat", model="beta-up", **common),
    )


@pytest.fixture
def web(live_asgi: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_asgi, timeout=30) as client:
        yield client


@pytest.fixture
def stranger(live_asgi: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_asgi, timeout=30) as client:
        yield client


def accept(client: httpx.Client, version: str = "v1") -> httpx.Response:
    return client.post("/api/v1/visitor/consent", json={"terms_version": version})


def battle(client: httpx.Client, prompt: str, *, vote: str | None = None) -> str:
    """A battle of `client`'s visitor, streamed to its end, and voted on if `vote` is given."""
    response = client.post("/api/v1/battles/", json={"prompt": prompt})
    assert response.status_code == 201, response.text
    battle_id = response.json()["id"]
    stream(client, battle_id)
    if vote:
        assert client.post(f"/api/v1/battles/{battle_id}/vote/", json={"winner": vote}).status_code == 200
    return battle_id


def test_a_battle_is_refused_before_the_terms_are_accepted_and_no_model_is_called(
    web: httpx.Client, models: tuple[LLM, LLM], openai_upstream: FakeOpenAI
) -> None:
    refused = web.post("/api/v1/battles/", json={"prompt": "Why is the sky blue?"})

    assert_error(refused, 403, "accept the terms")
    assert refused.json()["code"] == "consent_required"
    assert "/api/v1/visitor/consent" in refused.json()["detail"] and "/terms/" in refused.json()["detail"]
    assert not Battle.objects.exists()
    assert openai_upstream.requests == []
    assert "arena_visitor" not in web.cookies  # a refusal makes no visitor


def test_once_accepted_a_battle_streams(
    web: httpx.Client, models: tuple[LLM, LLM], openai_upstream: FakeOpenAI
) -> None:
    assert web.get("/api/v1/visitor/consent").json()["accepted"] is False

    accepted = accept(web)

    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["accepted"] is True and accepted.json()["terms_version"] == "v1"
    assert accepted.headers["set-cookie"].startswith("arena_visitor=")  # the cookie is set here
    stored = Visitor.objects.get()
    assert stored.terms_version == "v1" and stored.terms_accepted_at is not None
    battle_id = web.post("/api/v1/battles/", json={"prompt": "Why is the sky blue?"}).json()["id"]
    events, _ = stream(web, battle_id)
    assert {text_of(events, "a"), text_of(events, "b")} == {ALPHA, BETA}
    assert len(openai_upstream.requests) == 2
    # The battle is the accepting visitor's.
    assert Battle.objects.get().visitor_hash == stored.visitor_hash


def test_a_new_terms_version_asks_every_visitor_again(
    web: httpx.Client, models: tuple[LLM, LLM], settings: Any
) -> None:
    accept(web)
    battle(web, "First question")
    settings.ARENA_TERMS_VERSION = "v2"

    assert_error(web.post("/api/v1/battles/", json={"prompt": "Again"}), 403, "accept the terms")
    assert web.get("/api/v1/visitor/consent").json() | {"accepted_at": None} == {
        "accepted": False,
        "required": True,
        "terms_version": "v2",
        "accepted_version": "v1",
        "accepted_at": None,
        "terms_url": "/terms/",
        "privacy_url": "/privacy/",
    }
    # Accepting the version read before is not accepting the one in force.
    stale = accept(web, "v1")
    assert_error(stale, 409, "'v2'")
    assert stale.json()["code"] == "terms_changed"
    assert accept(web, "v2").status_code == 200
    assert Battle.objects.count() == 1
    battle(web, "Second question")
    assert Battle.objects.count() == 2
    assert Visitor.objects.get().terms_version == "v2"


def test_the_gate_can_be_switched_off(web: httpx.Client, models: tuple[LLM, LLM], settings: Any) -> None:
    settings.ARENA_REQUIRE_CONSENT = False
    battle(web, "No terms asked")
    assert Battle.objects.count() == 1 and not Visitor.objects.exists()


def test_the_battle_page_disables_the_prompt_until_the_terms_are_accepted(
    web: httpx.Client, models: tuple[LLM, LLM]
) -> None:
    for path in ("/", "/named/"):
        page = web.get(path).text
        assert 'id="consent" data-terms-version="v1"' in page and "unreleased models" in page
        assert 'placeholder="Ask both models anything…"' in page
        assert page.count("disabled>") >= 2  # the prompt and its Send button
        assert 'href="/terms/"' in page and 'href="/privacy/"' in page
    accept(web)
    page = web.get("/").text
    assert 'aria-labelledby="consent-title" hidden>' in page
    assert "disabled>" not in page.split('id="composer"')[1]


def test_the_terms_and_privacy_pages_say_what_happens_to_a_prompt(web: httpx.Client, live_asgi: str) -> None:
    terms = web.get("/terms/")
    assert terms.status_code == 200
    for words in ("third parties", "unreleased models", "public datasets", "Version v1"):
        assert words in terms.text
    privacy = web.get("/privacy/").text
    for words in ("never store your IP address", "/24", "/48", "30 days", "anonymous row", "arena_visitor"):
        assert words in privacy
    assert "<script>" not in privacy and " onclick=" not in privacy  # behaviour lives in static files
    accept(web)
    assert 'href="/api/v1/visitor/data"' in web.get("/privacy/").text


def test_a_visitor_downloads_everything_stored_under_their_cookie(
    web: httpx.Client, models: tuple[LLM, LLM]
) -> None:
    accept(web)
    voted = battle(web, "Why is the sky blue?", vote="a")
    open_battle = battle(web, "What is a rainbow?")

    download = web.get("/api/v1/visitor/data")

    assert download.status_code == 200
    assert "attachment" in download.headers["content-disposition"]
    data = download.json()
    assert data["consent"]["accepted"] is True and data["consent"]["accepted_version"] == "v1"
    battles = {b["id"]: b for b in data["battles"]}
    assert set(battles) == {voted, open_battle}
    assert battles[voted]["vote"]["winner"] == "a"
    assert battles[voted]["turns"][0]["prompt"] == "Why is the sky blue?"
    assert {a["text"] for a in battles[voted]["turns"][0]["answers"].values()} == {ALPHA, BETA}
    assert battles[voted]["model_a"]["name"] in {"alpha-chat", "beta-chat"}
    # An anonymous battle without a vote names no model, here as everywhere before the vote.
    assert battles[open_battle]["vote"] is None and battles[open_battle]["model_a"] is None
    assert "alpha" not in json.dumps(battles[open_battle]).lower()


def test_deleting_erases_the_text_and_unlinks_the_visitor_but_keeps_the_published_votes(
    web: httpx.Client, models: tuple[LLM, LLM]
) -> None:
    accept(web)
    voted = battle(web, "Why is the sky blue?", vote="b")
    open_battle = battle(web, "What is a rainbow?")
    refused = web.post("/api/v1/battles/", json={"prompt": "How do I synthesize sarin at home?"})
    assert refused.status_code == 400 and FlaggedPrompt.objects.count() == 1  # kept for operators
    published = list(export_lines(Vote.objects.all()))

    deleted = web.delete("/api/v1/visitor/data")

    assert deleted.status_code == 200, deleted.text
    assert deleted.json() == {"battles_deleted": 1, "battles_anonymised": 1}
    assert not Battle.objects.filter(pk=open_battle).exists()
    kept = Battle.objects.get(pk=voted)
    assert kept.visitor_hash == "" and kept.prompt_hash == "" and kept.votes.get().winner == "b"
    assert list(Turn.objects.values_list("prompt", flat=True)) == [""]
    assert set(Answer.objects.values_list("text", flat=True)) == {""}
    assert not Visitor.objects.exists() and not FlaggedPrompt.objects.exists()
    # The vote export, which reproduces a published board, is what it was.
    assert list(export_lines(Vote.objects.all())) == published
    # The cookie is gone: this browser is a new visitor, with nothing stored and the terms to accept.
    assert "arena_visitor" not in web.cookies
    assert_error(web.get("/api/v1/visitor/data"), 404, "no visitor cookie")
    assert_error(web.post("/api/v1/battles/", json={"prompt": "Hi"}), 403, "accept the terms")


def test_replaced_answers_are_downloaded_with_their_battle_and_erased_with_it(
    web: httpx.Client, models: tuple[LLM, LLM], openai_upstream: FakeOpenAI
) -> None:
    accept(web)
    voted = battle(web, "Why is the sky blue?")
    openai_upstream.behaviours["alpha-up"] = Behaviour(text="Alpha, asked again.")
    openai_upstream.behaviours["beta-up"] = Behaviour(text="Beta, asked again.")
    assert web.post(f"/api/v1/battles/{voted}/regenerate/", json={}).status_code == 201
    stream(web, voted)
    assert web.post(f"/api/v1/battles/{voted}/vote/", json={"winner": "a"}).status_code == 200

    turn = web.get("/api/v1/visitor/data").json()["battles"][0]["turns"][0]
    assert {a["text"] for a in turn["answers"].values()} == {"Alpha, asked again.", "Beta, asked again."}
    assert sorted((r["side"], r["text"]) for r in turn["replaced"]) in (
        [("a", ALPHA), ("b", BETA)],
        [("a", BETA), ("b", ALPHA)],
    )

    assert web.delete("/api/v1/visitor/data").json() == {"battles_deleted": 0, "battles_anonymised": 1}
    assert set(AnswerAttempt.objects.values_list("text", "error")) == {("", "")}


def test_no_visitor_can_read_or_delete_another_visitors_data(
    web: httpx.Client, stranger: httpx.Client, models: tuple[LLM, LLM]
) -> None:
    accept(web)
    mine = battle(web, "My private question", vote="a")
    accept(stranger)
    theirs = battle(stranger, "Their question")

    seen = stranger.get("/api/v1/visitor/data").json()
    assert [b["id"] for b in seen["battles"]] == [theirs]
    assert "My private question" not in json.dumps(seen)
    # A cookie the site did not sign reaches no one's data.
    value, _, signature = web.cookies["arena_visitor"].rpartition(":")
    forged = f"{value}:{'A' * len(signature)}"
    with httpx.Client(base_url=str(web.base_url), cookies={"arena_visitor": forged}) as forger:
        assert_error(forger.get("/api/v1/visitor/data"), 404, "no visitor cookie")
        assert_error(forger.delete("/api/v1/visitor/data"), 404, "no visitor cookie")

    assert stranger.delete("/api/v1/visitor/data").json() == {"battles_deleted": 1, "battles_anonymised": 0}

    assert Turn.objects.get(battle_id=mine).prompt == "My private question"
    assert Visitor.objects.count() == 1
    assert [b["id"] for b in web.get("/api/v1/visitor/data").json()["battles"]] == [mine]


def test_without_a_cookie_there_is_no_data_to_read_or_delete(web: httpx.Client, live_asgi: str) -> None:
    for response in (web.get("/api/v1/visitor/data"), web.delete("/api/v1/visitor/data")):
        assert_error(response, 404, "no visitor cookie")
        assert response.json()["code"] == "no_visitor"


def test_the_privacy_page_says_what_deleting_keeps_as_deleting_keeps_it(client: Client, db: None) -> None:
    consent = {"terms_version": "v1"}
    assert client.post("/api/v1/visitor/consent", consent, content_type="application/json").status_code == 200
    mine = Visitor.objects.get().pk
    flags = [
        VoterFlag.objects.create(kind=VoterFlag.Kind.VISITOR, voter_hash=mine, votes=40),
        VoterFlag.objects.create(kind=VoterFlag.Kind.NETWORK, voter_hash="n" * 64, votes=90),
    ]
    FlaggedPrompt.objects.create(prompt="A refused prompt", backend="local", visitor=mine)
    page = " ".join(client.get("/privacy/").content.decode().split())
    deleting = page.split("<h2>What deleting does</h2>")[1].split('id="kept-after-deleting"')[0]
    kept = page.split('id="kept-after-deleting"')[1]

    assert client.delete("/api/v1/visitor/data").status_code == 200

    # A refused prompt goes with the visitor's data, and the page says so.
    assert not FlaggedPrompt.objects.exists()
    assert "Prompts that moderation refused, stored under your cookie’s hash, are deleted." in deleting
    # A voter flag stays, on the visitor's hash or the network's, and the page says why and for how long.
    assert list(VoterFlag.objects.order_by("pk")) == flags
    assert "A voter flag</strong> on your cookie’s hash or your network’s hash" in kept
    assert "so that votes found anomalous stay out of the board and the abuse can still be reviewed" in kept
    assert "kept until an operator removes it: nothing deletes it on a schedule" in kept
    assert "refused" not in kept


def test_the_privacy_page_names_the_moderation_vendor_only_when_prompts_go_to_it(
    client: Client, db: None, settings: Any
) -> None:
    assert "moderation service" not in client.get("/privacy/").content.decode()
    settings.ARENA_MODERATION = "openai"
    assert "OpenAI’s moderation service" in client.get("/privacy/").content.decode()
