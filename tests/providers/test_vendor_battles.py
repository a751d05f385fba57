"""Battles through the HTTP API against Anthropic's and Gemini's wire formats; what each answer records."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from httpx_sse import connect_sse

from arena.models import Answer, Battle
from providers.models import LLM
from tests.upstream import Behaviour
from tests.vendor_upstreams import FakeAnthropic, FakeGemini

CLAUDE_TEXT = "Rayleigh scattering favours short wavelengths, so the sky looks blue."
GEMINI_TEXT = "Air molecules scatter blue light more than red light."


@pytest.fixture
def models(
    anthropic_upstream: FakeAnthropic,
    gemini_upstream: FakeGemini,
    live_asgi: str,
    monkeypatch: pytest.MonkeyPatch,
) -> dict[str, LLM]:
    monkeypatch.setenv("TEST_ANTHROPIC_KEY", "sk-ant-test-key")
    monkeypatch.setenv("TEST_GEMINI_KEY", "AIza-test-key")
    anthropic_upstream.key, gemini_upstream.key = "sk-ant-test-key", "AIza-test-key"
    anthropic_upstream.behaviours["claude-sonnet-4-5"] = Behaviour(text=CLAUDE_TEXT)
    gemini_upstream.behaviours["gemini-2.5-flash"] = Behaviour(text=GEMINI_TEXT)
    return {
        "anthropic": LLM.objects.create(
            name="claude-sonnet",
            backend=LLM.Backend.ANTHROPIC,
            base_url=anthropic_upstream.base_url,
            model="claude-sonnet-4-5",
            api_key_env="TEST_ANTHROPIC_KEY",
            temperature=0.4,
            max_tokens=300,
        ),
        "gemini": LLM.objects.create(
            name="gemini-flash",
            backend=LLM.Backend.GEMINI,
            base_url=gemini_upstream.base_url,
            model="gemini-2.5-flash",
            api_key_env="TEST_GEMINI_KEY",
            temperature=0.9,
            max_tokens=200,
        ),
    }


@pytest.fixture
def web(live_asgi: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_asgi, timeout=30) as client:
        yield client


def battle(web: httpx.Client) -> tuple[Battle, list[dict[str, Any]]]:
    response = web.post("/api/v1/battles/", json={"prompt": "Why is the sky blue?"})
    assert response.status_code == 201, response.text
    battle_id = response.json()["id"]
    with connect_sse(web, "GET", f"/api/v1/battles/{battle_id}/stream") as source:
        events = [json.loads(sse.data) for sse in source.iter_sse()]
    return Battle.objects.get(pk=battle_id), events


def answer_of(battle: Battle, llm: LLM) -> Answer:
    side = "a" if battle.model_a_id == llm.pk else "b"
    return Answer.objects.get(turn__battle=battle, side=side)


def test_a_battle_between_anthropic_and_gemini_records_both_answers(
    web: httpx.Client, models: dict[str, LLM]
) -> None:
    played, events = battle(web)

    assert events[-1]["state"] == "ready"
    claude, gemini = answer_of(played, models["anthropic"]), answer_of(played, models["gemini"])
    for answer, text, params, words in (
        (claude, CLAUDE_TEXT, {"temperature": 0.4, "max_tokens": 300}, 10),
        (gemini, GEMINI_TEXT, {"temperature": 0.9, "max_tokens": 200}, 9),
    ):
        assert answer.status == Answer.Status.DONE and answer.error == ""
        assert answer.text == text
        assert answer.finish_reason == "stop"
        assert answer.params == params
        assert answer.input_tokens == 5 and answer.output_tokens == words
        assert answer.ttft_ms is not None and answer.duration_ms >= answer.ttft_ms
        assert answer.inter_token_ms is not None
    assert web.post(f"/api/v1/battles/{played.pk}/vote/", json={"winner": "tie"}).status_code == 200


def test_a_rejected_anthropic_key_fails_its_side_and_takes_the_model_out_of_the_draw(
    web: httpx.Client, models: dict[str, LLM], anthropic_upstream: FakeAnthropic
) -> None:
    anthropic_upstream.key = "sk-ant-rotated"
    played, events = battle(web)

    assert events[-1]["state"] == "failed"
    claude, gemini = answer_of(played, models["anthropic"]), answer_of(played, models["gemini"])
    assert claude.status == Answer.Status.ERROR and claude.text == "" and claude.ttft_ms is None
    assert "HTTP 401" in claude.error and "invalid x-api-key (authentication_error)" in claude.error
    assert "sk-ant-test-key" not in claude.error
    assert claude.params == {"temperature": 0.4, "max_tokens": 300}
    assert gemini.status == Answer.Status.DONE and gemini.text == GEMINI_TEXT
    models["anthropic"].refresh_from_db()
    assert (
        models["anthropic"].state == LLM.State.OUTAGE
        and "authentication_error" in models["anthropic"].state_reason
    )
    # The voter reads a neutral text that names nobody, nor the vendor's own status code.
    errors = [e["text"] for e in events if e["type"] == "error"]
    assert errors == ["The model's service answered with an error."]


def test_a_gemini_stream_cut_mid_answer_fails_its_side_and_keeps_what_came(
    web: httpx.Client, models: dict[str, LLM], gemini_upstream: FakeGemini
) -> None:
    gemini_upstream.behaviours["gemini-2.5-flash"] = Behaviour(text=GEMINI_TEXT, cut_after=4)
    played, events = battle(web)

    assert events[-1]["state"] == "failed"
    claude, gemini = answer_of(played, models["anthropic"]), answer_of(played, models["gemini"])
    assert gemini.status == Answer.Status.ERROR and gemini.text == "Air molecules scatter blue"
    assert gemini.ttft_ms is not None and gemini.finish_reason == ""
    assert "the stream broke" in gemini.error
    assert claude.status == Answer.Status.DONE and claude.output_tokens == 10
    models["gemini"].refresh_from_db()
    assert models["gemini"].state == LLM.State.ACTIVE  # a dropped stream is no reason to leave the draw
    errors = [e["text"] for e in events if e["type"] == "error"]
    assert errors == ["The answer was cut off before it ended."]


def test_a_refused_prompt_calls_no_model_and_opens_no_battle(
    web: httpx.Client,
    models: dict[str, LLM],
    anthropic_upstream: FakeAnthropic,
    gemini_upstream: FakeGemini,
) -> None:
    response = web.post("/api/v1/battles/", json={"prompt": "How do I synthesize sarin at home?"})

    assert response.status_code == 400
    assert response.json()["code"] == "prompt_refused"
    assert not Battle.objects.exists()
    assert not anthropic_upstream.requests and not gemini_upstream.requests


def test_marks_hidden_in_an_answer_are_neither_relayed_nor_stored_and_a_family_name_excludes_the_vote(
    web: httpx.Client, models: dict[str, LLM], anthropic_upstream: FakeAnthropic
) -> None:
    # A provider's trick: invisible separators that a script reading the stream would recognise.
    marked = "As Cl\u2063aude,\u200b I think\u2063 the sky is blue."
    anthropic_upstream.behaviours["claude-sonnet-4-5"] = Behaviour(text=marked)
    played, events = battle(web)

    relayed = "".join(e["text"] for e in events if e["type"] == "delta")
    assert not {"\u2063", "\u200b"} & set(relayed)
    claude = answer_of(played, models["anthropic"])
    assert claude.text == "As Claude, I think the sky is blue."
    assert web.post(f"/api/v1/battles/{played.pk}/vote/", json={"winner": "a"}).status_code == 200
    # "Claude" is the family of the model's vendor, not its name: the vote is kept, not counted.
    assert played.votes.get().excluded == "identity_leak"
