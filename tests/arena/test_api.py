"""The battle API over a real socket: uvicorn serving the project, upstreams speaking OpenAI's wire format."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest
from django.db import connection
from httpx_sse import connect_sse

from arena.models import Answer, Battle, Turn, Vote
from providers.models import LLM
from tests.upstream import Behaviour, FakeOpenAI

NAMES = (
    "alpha-chat",
    "Alpha Chat",
    "Alpha Labs",
    "alpha-up",
    "beta-chat",
    "Beta Chat",
    "Beta Inc",
    "beta-up",
)


@pytest.fixture
def models(openai_upstream: FakeOpenAI, live_asgi: str) -> tuple[LLM, LLM]:
    openai_upstream.behaviours["alpha-up"] = Behaviour(text="The first answer, in several words.")
    openai_upstream.behaviours["beta-up"] = Behaviour(text="A second answer that differs.")
    common = {"backend": LLM.Backend.OPENAI_COMPATIBLE, "base_url": openai_upstream.base_url}
    return (
        LLM.objects.create(
            name="alpha-chat",
            display_name="Alpha Chat",
            organization="Alpha Labs",
            model="alpha-up",
            **common,
        ),
        LLM.objects.create(
            name="beta-chat", display_name="Beta Chat", organization="Beta Inc", model="beta-up", **common
        ),
    )


@pytest.fixture
def web(live_asgi: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_asgi, timeout=30) as client:
        yield client


def start(web: httpx.Client, prompt: str = "Why is the sky blue?", **extra: Any) -> str:
    response = web.post("/api/v1/battles/", json={"prompt": prompt, **extra})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def stream(web: httpx.Client, battle_id: str) -> tuple[list[dict[str, Any]], httpx.Response]:
    with connect_sse(web, "GET", f"/api/v1/battles/{battle_id}/stream") as source:
        events = [json.loads(sse.data) for sse in source.iter_sse()]
        return events, source.response


def text_of(events: list[dict[str, Any]], side: str) -> str:
    return "".join(e["text"] for e in events if e["side"] == side and e["type"] == "delta")


def assert_anonymous(*texts: str) -> None:
    for text in texts:
        for name in NAMES:
            assert name.lower() not in text.lower(), f"{name!r} leaked"


def test_a_battle_streams_both_answers_then_takes_a_vote(web: httpx.Client, models: tuple[LLM, LLM]) -> None:
    battle_id = start(web)
    events, response = stream(web, battle_id)

    assert response.headers["content-type"].startswith("text/event-stream")
    answers = {text_of(events, "a"), text_of(events, "b")}
    assert answers == {"The first answer, in several words.", "A second answer that differs."}
    assert {(e["side"], e["type"]) for e in events if e["type"] == "done"} == {("a", "done"), ("b", "done")}
    assert events[-1] == {"side": None, "type": "end", "text": "", "state": "ready"}
    assert_anonymous(json.dumps(events), str(response.headers))

    detail = web.get(f"/api/v1/battles/{battle_id}/")
    assert detail.json()["model_a"] is None
    assert_anonymous(detail.text)

    vote = web.post(f"/api/v1/battles/{battle_id}/vote/", json={"winner": "a"})
    assert vote.status_code == 200
    battle = Battle.objects.get(pk=battle_id)
    assert vote.json()["model_a"]["name"] == battle.model_a.name
    assert vote.json()["model_b"]["name"] == battle.model_b.name
    assert Vote.objects.get(battle=battle).winner == "a"
    assert web.get(f"/api/v1/battles/{battle_id}/").json()["model_b"]["label"] == battle.model_b.label


def test_each_call_sends_the_sampling_parameters_and_records_the_answer(
    web: httpx.Client, models: tuple[LLM, LLM], openai_upstream: FakeOpenAI
) -> None:
    LLM.objects.filter(name="alpha-chat").update(temperature=0.3, max_tokens=77)
    battle_id = start(web)
    stream(web, battle_id)

    sent = {r["json"]["model"]: r["json"] for r in openai_upstream.requests}
    assert sent["alpha-up"]["temperature"] == 0.3 and sent["alpha-up"]["max_tokens"] == 77
    assert sent["alpha-up"]["stream"] is True
    answer = (
        Answer.objects.get(turn__battle_id=battle_id, turn__battle__model_a__name="alpha-chat", side="a")
        if Battle.objects.get(pk=battle_id).model_a.name == "alpha-chat"
        else Answer.objects.get(turn__battle_id=battle_id, side="b")
    )
    assert answer.status == Answer.Status.DONE
    assert answer.params == {"temperature": 0.3, "max_tokens": 77}
    battle = Battle.objects.get(pk=battle_id)
    for each in Answer.objects.filter(turn__battle=battle):  # both records, each with its own side's
        llm = battle.llm(each.side)
        assert each.params == {"temperature": llm.temperature, "max_tokens": llm.max_tokens}
    assert answer.ttft_ms is not None and answer.duration_ms >= answer.ttft_ms
    # Gaps between the upstream's deltas, however many of them arrived in one read.
    assert answer.inter_token_ms is not None and 0 <= answer.inter_token_ms <= answer.duration_ms
    assert answer.output_tokens and answer.finish_reason == "stop"


def test_a_follow_up_continues_both_conversations(
    web: httpx.Client, models: tuple[LLM, LLM], openai_upstream: FakeOpenAI
) -> None:
    battle_id = start(web, "First question")
    stream(web, battle_id)
    response = web.post(f"/api/v1/battles/{battle_id}/turns/", json={"prompt": "And a second one?"})
    assert response.status_code == 201
    events, _ = stream(web, battle_id)

    assert events[-1]["state"] == "ready"
    follow_ups = [r["json"]["messages"] for r in openai_upstream.requests[2:]]
    assert len(follow_ups) == 2
    for messages in follow_ups:
        assert [m["role"] for m in messages] == ["user", "assistant", "user"]
        assert messages[0]["content"] == "First question" and messages[2]["content"] == "And a second one?"
    # Each side sees its own earlier answer, never the other side's.
    assert {m[1]["content"] for m in follow_ups} == {
        "The first answer, in several words.",
        "A second answer that differs.",
    }
    assert web.post(f"/api/v1/battles/{battle_id}/vote/", json={"winner": "tie"}).status_code == 200


def test_a_second_stream_of_an_ended_turn_replays_it(web: httpx.Client, models: tuple[LLM, LLM]) -> None:
    battle_id = start(web)
    first, _ = stream(web, battle_id)
    again, _ = stream(web, battle_id)
    assert text_of(again, "a") == text_of(first, "a") and text_of(again, "b") == text_of(first, "b")
    assert again[-1]["state"] == "ready"


def test_named_mode_uses_the_chosen_models(web: httpx.Client, models: tuple[LLM, LLM]) -> None:
    response = web.post(
        "/api/v1/battles/",
        json={"prompt": "Hi", "mode": "named", "model_a": "beta-chat", "model_b": "alpha-chat"},
    )
    assert response.status_code == 201
    assert response.json()["model_a"]["name"] == "beta-chat"
    battle = Battle.objects.get(pk=response.json()["id"])
    assert (battle.model_a.name, battle.model_b.name) == ("beta-chat", "alpha-chat")


def test_an_answer_naming_its_model_keeps_the_vote_but_leaves_the_ratings(
    web: httpx.Client, models: tuple[LLM, LLM], openai_upstream: FakeOpenAI
) -> None:
    openai_upstream.behaviours["alpha-up"] = Behaviour(text="I am Alpha Chat, made by Alpha Labs.")
    battle_id = start(web)
    stream(web, battle_id)
    assert web.post(f"/api/v1/battles/{battle_id}/vote/", json={"winner": "b"}).status_code == 200
    assert Vote.objects.get(battle_id=battle_id).excluded == Vote.Exclusion.IDENTITY_LEAK


# --- bad input: a clear 4xx, nothing changed -----------------------------------------------------


def assert_error(response: httpx.Response, status: int, words: str) -> None:
    assert response.status_code == status, response.text
    assert words.lower() in response.json()["detail"].lower()


def test_bad_prompts_are_rejected_with_a_reason(web: httpx.Client, models: tuple[LLM, LLM], settings) -> None:
    settings.ARENA_PROMPT_MAX_CHARS = 50
    assert_error(web.post("/api/v1/battles/", json={"prompt": "   "}), 400, "empty")
    assert_error(web.post("/api/v1/battles/", json={"prompt": "x" * 51}), 400, "limit is 50")
    assert_error(web.post("/api/v1/battles/", json={"prompt": "Hi", "mode": "sideways"}), 400, "invalid")
    assert_error(
        web.post(
            "/api/v1/battles/",
            json={"prompt": "Hi", "mode": "named", "model_a": "alpha-chat", "model_b": "nope"},
        ),
        400,
        "no available model",
    )
    assert_error(
        web.post(
            "/api/v1/battles/",
            json={"prompt": "Hi", "mode": "named", "model_a": "alpha-chat", "model_b": "alpha-chat"},
        ),
        400,
        "two different",
    )
    assert_error(
        web.post("/api/v1/battles/", content=b"{not json", headers={"content-type": "application/json"}),
        400,
        "JSON parse error",
    )
    assert Battle.objects.count() == 0


def test_unknown_battles_are_not_found(web: httpx.Client, models: tuple[LLM, LLM]) -> None:
    for path in (
        "/api/v1/battles/0b8a53b4-5b9b-4a0a-9e4b-0d6f4c4c4c4c/",
        "/api/v1/battles/not-a-uuid/",
        "/api/v1/battles/not-a-uuid/stream",
    ):
        assert_error(web.get(path), 404, "no such battle")
    assert_error(web.post("/api/v1/battles/not-a-uuid/vote/", json={"winner": "a"}), 404, "no such battle")


def test_another_visitors_battle_is_not_found(
    web: httpx.Client, models: tuple[LLM, LLM], live_asgi: str
) -> None:
    battle_id = start(web)
    stream(web, battle_id)
    with httpx.Client(base_url=live_asgi) as stranger:
        assert_error(
            stranger.post(f"/api/v1/battles/{battle_id}/vote/", json={"winner": "a"}), 404, "no such"
        )
        assert stranger.get(f"/api/v1/battles/{battle_id}/stream").status_code == 404
    assert not Vote.objects.exists()


def test_a_visitor_is_known_by_a_signed_cookie_of_their_own_and_no_session_is_stored(
    web: httpx.Client, models: tuple[LLM, LLM], live_asgi: str
) -> None:
    from django.contrib.sessions.models import Session

    first = web.post("/api/v1/battles/", json={"prompt": "Why is the sky blue?"})
    cookie = first.headers["set-cookie"]
    assert cookie.startswith("arena_visitor=") and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "sessionid" not in first.headers.get("set-cookie", "")
    token = web.cookies["arena_visitor"]
    battle_id = first.json()["id"]
    # The same visitor, on a later battle too: both are theirs, under one stored hash.
    second = start(web)
    assert web.cookies["arena_visitor"].split(":")[0] == token.split(":")[0]
    assert len(set(Battle.objects.values_list("visitor_hash", flat=True))) == 1
    assert not Session.objects.exists()
    assert web.get(f"/api/v1/battles/{second}/").status_code == 200
    # A token this site did not sign is no one's: the battle does not exist for its bearer.
    value, _, signature = token.rpartition(":")
    forged = f"{value}:{'A' * len(signature)}"
    with httpx.Client(base_url=live_asgi, cookies={"arena_visitor": forged}) as forger:
        assert_error(forger.get(f"/api/v1/battles/{battle_id}/"), 404, "no such battle")


def test_bad_votes_are_rejected_and_change_nothing(web: httpx.Client, models: tuple[LLM, LLM]) -> None:
    battle_id = start(web)
    assert_error(web.post(f"/api/v1/battles/{battle_id}/vote/", json={"winner": "a"}), 409, "must end")
    stream(web, battle_id)
    assert_error(web.post(f"/api/v1/battles/{battle_id}/vote/", json={"winner": "c"}), 400, '"a", "b"')
    assert_error(web.post(f"/api/v1/battles/{battle_id}/vote/", json={}), 400, "invalid")
    assert_error(
        web.post(
            f"/api/v1/battles/{battle_id}/vote/",
            content=b"winner=a",
            headers={"content-type": "application/x-www-form-urlencoded"},
        ),
        415,
        "unsupported",
    )
    assert web.post(f"/api/v1/battles/{battle_id}/vote/", json={"winner": "bothbad"}).status_code == 200
    assert_error(web.post(f"/api/v1/battles/{battle_id}/vote/", json={"winner": "a"}), 409, "already")
    assert_error(web.post(f"/api/v1/battles/{battle_id}/turns/", json={"prompt": "more"}), 409, "over")
    assert list(Vote.objects.values_list("winner", flat=True)) == ["bothbad"]
    assert Turn.objects.filter(battle_id=battle_id).count() == 1


def test_battle_creation_is_rate_limited(web: httpx.Client, models: tuple[LLM, LLM], settings) -> None:
    settings.ARENA_BATTLES_PER_NETWORK_HOUR = 3
    for _ in range(3):
        start(web)
    response = web.post("/api/v1/battles/", json={"prompt": "one more"})
    assert_error(response, 429, "limit of 3 battles this hour")
    assert 0 < int(response.headers["retry-after"]) <= 3600
    assert Battle.objects.count() == 3


def test_no_battle_starts_without_two_models(web: httpx.Client, live_asgi: str) -> None:
    assert_error(web.post("/api/v1/battles/", json={"prompt": "Hi"}), 503, "fewer than two")


# --- upstream failures: an error event, a failed battle, no vote ----------------------------------

FAILURES = {
    "http_500": Behaviour(status=500, error_message="The server had an error while processing your request."),
    "http_400": Behaviour(status=400, error_message="Invalid 'messages': model alpha-up rejects this."),
    "cut_mid_answer": Behaviour(text="This answer will be cut off after a few words", cut_after=3),
    "error_in_stream": Behaviour(text="Starts well then fails", error_in_stream_after=2),
}


@pytest.mark.parametrize("failure", sorted(FAILURES))
def test_an_upstream_failure_ends_that_side_with_an_error_and_blocks_the_vote(
    failure: str, web: httpx.Client, models: tuple[LLM, LLM], openai_upstream: FakeOpenAI
) -> None:
    openai_upstream.behaviours["alpha-up"] = FAILURES[failure]
    battle_id = start(web)
    events, response = stream(web, battle_id)

    battle = Battle.objects.get(pk=battle_id)
    failed = "a" if battle.model_a.name == "alpha-chat" else "b"
    errors = [e for e in events if e["type"] == "error"]
    assert [e["side"] for e in errors] == [failed]
    assert errors[0]["text"]
    assert events[-1]["state"] == "failed"
    assert battle.state == Battle.State.FAILED
    assert_anonymous(json.dumps(events), str(response.headers))
    answer = Answer.objects.get(turn__battle=battle, side=failed)
    assert answer.status == Answer.Status.ERROR and answer.error
    assert_error(web.post(f"/api/v1/battles/{battle_id}/vote/", json={"winner": "a"}), 409, "failed")
    assert not Vote.objects.exists()


def test_an_unreachable_upstream_is_an_error_event(
    web: httpx.Client, models: tuple[LLM, LLM], openai_upstream: FakeOpenAI
) -> None:
    LLM.objects.filter(name="alpha-chat").update(base_url=openai_upstream.refuse_port())
    battle_id = start(web)
    events, _ = stream(web, battle_id)
    assert [e["type"] for e in events if e["type"] == "error"] == ["error"]
    assert events[-1]["state"] == "failed"


def test_a_slow_first_token_times_out(
    web: httpx.Client, models: tuple[LLM, LLM], openai_upstream: FakeOpenAI, settings
) -> None:
    # Long enough that the other side's first token makes it on a loaded machine.
    settings.UPSTREAM_FIRST_TOKEN_TIMEOUT = 1.0
    openai_upstream.behaviours["alpha-up"] = Behaviour(text="late", first_token_delay=5)
    battle_id = start(web)
    events, _ = stream(web, battle_id)
    assert [e["type"] for e in events if e["type"] == "error"] == ["error"]
    assert events[-1]["state"] == "failed"


def test_a_rejected_key_puts_the_model_in_outage(
    web: httpx.Client, models: tuple[LLM, LLM], openai_upstream: FakeOpenAI
) -> None:
    openai_upstream.behaviours["alpha-up"] = Behaviour(
        status=401, error_message="Incorrect API key provided."
    )
    battle_id = start(web)
    stream(web, battle_id)
    alpha = LLM.objects.get(name="alpha-chat")
    assert alpha.state == LLM.State.OUTAGE and "401" in alpha.state_reason
    assert_error(web.post("/api/v1/battles/", json={"prompt": "again"}), 503, "fewer than two")


def test_a_failure_before_the_call_still_ends_the_stream(
    web: httpx.Client, models: tuple[LLM, LLM], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(llm: LLM) -> None:
        raise RuntimeError("database went away")

    monkeypatch.setattr("arena.streaming.call_spec", broken)
    battle_id = start(web)
    events, _ = stream(web, battle_id)
    assert sorted(e["side"] for e in events if e["type"] == "error") == ["a", "b"]
    assert events[-1]["state"] == "failed"
    assert all("database" not in e["text"] for e in events)


def test_a_database_failure_while_claiming_ends_the_stream_and_leaves_the_battle_to_retry(
    web: httpx.Client, models: tuple[LLM, LLM], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(turn: Turn, params: dict[str, dict[str, Any]], now: datetime) -> None:
        # A statement the database itself rejects, as a lost connection or a full disk would be:
        # it runs in the claim's transaction, after the battle's update.
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {Answer._meta.db_table} SET no_such_column = 1 WHERE turn_id = %s", [turn.pk]
            )

    monkeypatch.setattr("arena.models.Turn.start_answers", broken)
    battle_id = start(web)
    events, _ = stream(web, battle_id)
    assert sorted(e["side"] for e in events if e["type"] == "error") == ["a", "b"]
    assert events[-1]["type"] == "end"
    assert all("no_such_column" not in e["text"] for e in events)
    # The claim was rolled back with the call records: streaming the battle again is allowed.
    assert Battle.objects.get(pk=battle_id).state == Battle.State.PENDING
    monkeypatch.undo()
    again, _ = stream(web, battle_id)
    assert again[-1]["state"] == "ready"


# --- one schedule for both answers; an abandoned stream -------------------------------------------


def timed_stream(web: httpx.Client, battle_id: str) -> list[tuple[float, dict[str, Any]]]:
    """The stream's events, each with the time it reached the client."""
    with connect_sse(web, "GET", f"/api/v1/battles/{battle_id}/stream") as source:
        return [(time.monotonic(), json.loads(sse.data)) for sse in source.iter_sse()]


def first_deltas(timed: list[tuple[float, dict[str, Any]]]) -> dict[str, float]:
    firsts: dict[str, float] = {}
    for at, event in timed:
        if event["type"] == "delta":
            firsts.setdefault(event["side"], at)
    return firsts


def test_both_first_tokens_reach_the_voter_together_when_one_upstream_is_slower(
    web: httpx.Client, models: tuple[LLM, LLM], openai_upstream: FakeOpenAI, settings
) -> None:
    settings.ARENA_PACED_TICK = 0.05
    openai_upstream.behaviours["alpha-up"] = Behaviour(
        text="The first answer, in several words.", first_token_delay=0.5
    )
    timed = timed_stream(web, start(web))
    events = [event for _, event in timed]

    firsts = first_deltas(timed)
    assert abs(firsts["a"] - firsts["b"]) <= settings.ARENA_PACED_TICK
    answers = {text_of(events, "a"), text_of(events, "b")}
    assert answers == {"The first answer, in several words.", "A second answer that differs."}
    assert events[-1] == {"side": None, "type": "end", "text": "", "state": "ready"}
    # The stored measurements are still the upstream's own: operators and the board keep them.
    battle = Battle.objects.get()
    slow = Answer.objects.get(turn__battle=battle, side="a" if battle.model_a.name == "alpha-chat" else "b")
    fast = Answer.objects.get(turn__battle=battle, side="b" if slow.side == "a" else "a")
    assert slow.ttft_ms >= 500 > fast.ttft_ms


def test_unpaced_the_answers_arrive_each_at_its_own_time(
    web: httpx.Client, models: tuple[LLM, LLM], openai_upstream: FakeOpenAI, settings
) -> None:
    settings.ARENA_PACED_RELAY = False
    openai_upstream.behaviours["alpha-up"] = Behaviour(
        text="The first answer, in several words.", first_token_delay=0.5
    )
    battle_id = start(web)
    firsts = first_deltas(timed_stream(web, battle_id))
    battle = Battle.objects.get(pk=battle_id)
    slow, fast = ("a", "b") if battle.model_a.name == "alpha-chat" else ("b", "a")
    assert firsts[slow] - firsts[fast] >= 0.4


def test_the_battle_detail_shows_a_neutral_finish_reason_before_the_vote(
    web: httpx.Client, models: tuple[LLM, LLM], openai_upstream: FakeOpenAI
) -> None:
    LLM.objects.filter(name="beta-chat").update(max_tokens=2)  # cut short: "length"
    battle_id = start(web)
    stream(web, battle_id)
    battle = Battle.objects.get(pk=battle_id)
    alpha = "a" if battle.model_a.name == "alpha-chat" else "b"
    beta = "b" if alpha == "a" else "a"
    # A vendor's own reason, as Gemini's safety stop or OpenAI's content filter would leave it.
    Answer.objects.filter(turn__battle=battle, side=alpha).update(finish_reason="content_filter")

    answers = web.get(f"/api/v1/battles/{battle_id}/").json()["turns"][0]["answers"]
    assert answers[alpha]["finish_reason"] == "stop" and answers[beta]["finish_reason"] == "length"
    assert Answer.objects.get(turn__battle=battle, side=alpha).finish_reason == "content_filter"


def test_an_abandoned_stream_stops_its_upstream_calls_and_records_them(
    web: httpx.Client, models: tuple[LLM, LLM], openai_upstream: FakeOpenAI
) -> None:
    long = " ".join(["word"] * 200)  # 200 chunks 50 ms apart: about ten seconds to the end
    for model in ("alpha-up", "beta-up"):
        openai_upstream.behaviours[model] = Behaviour(text=long, chunk_delay=0.05)
    battle_id = start(web)
    with connect_sse(web, "GET", f"/api/v1/battles/{battle_id}/stream") as source:
        assert json.loads(next(source.iter_sse()).data)["type"] == "delta"
    left = time.monotonic()

    while openai_upstream.connections and time.monotonic() - left < 5:
        time.sleep(0.02)
    assert not openai_upstream.connections, "the upstream still streams to a visitor who left"
    assert time.monotonic() - left < 3  # well before the answers' own end
    while Battle.objects.get(pk=battle_id).state == Battle.State.STREAMING and time.monotonic() - left < 5:
        time.sleep(0.02)
    assert Battle.objects.get(pk=battle_id).state == Battle.State.FAILED
    for answer in Answer.objects.filter(turn__battle_id=battle_id):
        assert answer.status == Answer.Status.STOPPED and "abandoned" in answer.error
        assert 0 < len(answer.text) < len(long)
