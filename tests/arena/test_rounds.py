"""Never waste a round: retry a side, regenerate a turn, stop a stream, come back to a battle.

Over a real socket, as tests/arena/test_api.py: uvicorn serving the project, upstreams speaking
OpenAI's wire format (tests/upstream.py) or the demo backend.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from django.core.cache import cache
from httpx_sse import connect_sse

from arena import rounds, services
from arena.models import Answer, AnswerAttempt, Battle, Vote
from arena.solve_challenge import solved_payload
from providers.models import LLM
from tests.arena.test_api import assert_anonymous, assert_error, start, stream, text_of
from tests.upstream import Behaviour, FakeOpenAI

ALPHA = "The first answer, in several words."
BETA = "A second answer that differs."
GAMMA = "A third model answers instead."


@pytest.fixture
def trio(openai_upstream: FakeOpenAI, live_asgi: str) -> dict[str, LLM]:
    """Three public models behind the fake upstream, by name: alpha, beta, gamma."""
    common = {"backend": LLM.Backend.OPENAI_COMPATIBLE, "base_url": openai_upstream.base_url}
    made = {}
    for name, org, text in (
        ("alpha", "Alpha Labs", ALPHA),
        ("beta", "Beta Inc", BETA),
        ("gamma", "Gamma", GAMMA),
    ):
        openai_upstream.behaviours[f"{name}-up"] = Behaviour(text=text)
        made[name] = LLM.objects.create(
            name=f"{name}-chat",
            display_name=f"{name.title()} Chat",
            organization=org,
            model=f"{name}-up",
            **common,
        )
    return made


@pytest.fixture
def pair(trio: dict[str, LLM]) -> dict[str, LLM]:
    """Only alpha and beta in the draw."""
    LLM.objects.filter(pk=trio["gamma"].pk).update(weight=0)
    return trio


@pytest.fixture
def web(live_asgi: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_asgi, timeout=30) as client:
        yield client


def side_of(battle_id: str, name: str) -> str:
    battle = Battle.objects.select_related("model_a").get(pk=battle_id)
    return "a" if battle.model_a.name == f"{name}-chat" else "b"


def other(side: str) -> str:
    return "b" if side == "a" else "a"


def retry(web: httpx.Client, battle_id: str, side: str, **extra: Any) -> httpx.Response:
    return web.post(f"/api/v1/battles/{battle_id}/retry/", json={"side": side, **extra})


def regenerate(web: httpx.Client, battle_id: str, **extra: Any) -> httpx.Response:
    return web.post(f"/api/v1/battles/{battle_id}/regenerate/", json=extra)


def vote(web: httpx.Client, battle_id: str, winner: str = "a") -> httpx.Response:
    return web.post(f"/api/v1/battles/{battle_id}/vote/", json={"winner": winner})


# --- retry ---------------------------------------------------------------------------------------


def test_a_failed_side_is_retried_with_the_same_model_and_the_battle_then_takes_a_vote(
    web: httpx.Client, pair: dict[str, LLM], openai_upstream: FakeOpenAI
) -> None:
    openai_upstream.behaviours["alpha-up"] = Behaviour(text=ALPHA, status=400, status_times=1)
    battle_id = start(web)
    events, _ = stream(web, battle_id)
    failed = side_of(battle_id, "alpha")
    assert [e["side"] for e in events if e["type"] == "error"] == [failed]
    assert events[-1]["state"] == "failed"
    assert web.get(f"/api/v1/battles/{battle_id}/").json()["actions"]["retry"] == [failed]

    response = retry(web, battle_id, failed)
    assert response.status_code == 201, response.text
    assert response.json() == {
        "state": "pending",
        "turn": 0,
        "side": failed,
        "attempt": 2,
        "fresh_model": False,
    }
    assert_anonymous(response.text, str(response.headers))

    again, _ = stream(web, battle_id)
    # Only the retried side is asked and streamed; the other keeps its answer.
    assert {e["side"] for e in again if e["side"]} == {failed}
    assert text_of(again, failed) == ALPHA
    assert again[-1] == {"side": None, "type": "end", "text": "", "state": "ready"}
    assert_anonymous(json.dumps(again))
    assert [r["json"]["model"] for r in openai_upstream.requests].count("beta-up") == 1

    assert vote(web, battle_id, failed).status_code == 200
    saved = Vote.objects.get(battle_id=battle_id)
    assert getattr(saved, f"model_{failed}_id") == pair["alpha"].pk
    tried = AnswerAttempt.objects.get(turn__battle_id=battle_id)
    assert (tried.side, tried.llm_id, tried.attempt, tried.status) == (failed, pair["alpha"].pk, 1, "error")
    assert tried.reason == AnswerAttempt.Reason.RETRY and tried.error
    answer = Answer.objects.get(turn__battle_id=battle_id, side=failed)
    assert (answer.llm_id, answer.attempt, answer.status, answer.text) == (pair["alpha"].pk, 2, "done", ALPHA)


def test_after_two_failures_on_the_first_turn_a_fresh_model_answers_that_side_and_takes_the_vote(
    web: httpx.Client, trio: dict[str, LLM], openai_upstream: FakeOpenAI
) -> None:
    openai_upstream.behaviours["alpha-up"] = Behaviour(status=500)
    LLM.objects.filter(pk=trio["gamma"].pk).update(weight=0)  # out of the first draw
    battle_id = start(web)
    LLM.objects.filter(pk=trio["gamma"].pk).update(weight=1)
    failed = side_of(battle_id, "alpha")
    stream(web, battle_id)

    first = retry(web, battle_id, failed)
    assert first.json()["fresh_model"] is False
    assert stream(web, battle_id)[0][-1]["state"] == "failed"
    second = retry(web, battle_id, failed)
    assert second.status_code == 201 and second.json()["fresh_model"] is True
    assert second.json()["attempt"] == 3
    assert_anonymous(second.text)

    battle = Battle.objects.get(pk=battle_id)
    assert battle.llm(failed).pk == trio["gamma"].pk and battle.llm(other(failed)).pk == trio["beta"].pk
    assert battle.propensity is None  # the sampler did not draw this pair: no probability is claimed
    events, _ = stream(web, battle_id)
    assert text_of(events, failed) == GAMMA and events[-1]["state"] == "ready"
    assert_anonymous(json.dumps(events), web.get(f"/api/v1/battles/{battle_id}/").text)

    revealed = vote(web, battle_id, failed).json()
    assert revealed[f"model_{failed}"]["name"] == "gamma-chat"
    saved = Vote.objects.get(battle_id=battle_id)
    assert {saved.model_a_id, saved.model_b_id} == {trio["gamma"].pk, trio["beta"].pk}
    # Which model made which try, on record.
    tries = AnswerAttempt.objects.filter(turn__battle_id=battle_id).order_by("attempt")
    assert [(t.llm_id, t.status) for t in tries] == [(trio["alpha"].pk, "error")] * 2
    assert Answer.objects.get(turn__battle_id=battle_id, side=failed).llm_id == trio["gamma"].pk


def test_on_a_follow_up_a_side_keeps_its_model_and_the_vote_covers_the_turns_that_ended_well(
    web: httpx.Client, trio: dict[str, LLM], openai_upstream: FakeOpenAI
) -> None:
    LLM.objects.filter(pk=trio["gamma"].pk).update(weight=0)  # out of the first draw
    battle_id = start(web, "First question")
    LLM.objects.filter(pk=trio["gamma"].pk).update(weight=1)
    stream(web, battle_id)
    openai_upstream.behaviours["alpha-up"] = Behaviour(status=500)
    assert (
        web.post(f"/api/v1/battles/{battle_id}/turns/", json={"prompt": "And a second?"}).status_code == 201
    )
    failed = side_of(battle_id, "alpha")
    stream(web, battle_id)

    for attempt in (2, 3, 4):
        response = retry(web, battle_id, failed)
        assert response.json()["fresh_model"] is False and response.json()["attempt"] == attempt
        assert stream(web, battle_id)[0][-1]["state"] == "failed"
    assert_error(retry(web, battle_id, failed), 409, "tried 4 times")
    assert not any(r["json"]["model"] == "gamma-up" for r in openai_upstream.requests)

    detail = web.get(f"/api/v1/battles/{battle_id}/").json()
    assert detail["actions"]["vote"] is True and detail["actions"]["vote_covers"] == 1
    assert detail["actions"]["follow_up"] is False
    assert_error(web.post(f"/api/v1/battles/{battle_id}/turns/", json={"prompt": "more"}), 409, "retry")
    assert vote(web, battle_id, "tie").status_code == 200
    saved = Vote.objects.get(battle_id=battle_id)
    assert not saved.multi_turn  # the failed second turn is not part of what was voted on
    assert {saved.model_a_id, saved.model_b_id} == {trio["alpha"].pk, trio["beta"].pk}


def test_a_stopped_answer_never_counts_towards_a_fresh_model(web: httpx.Client, trio: dict[str, LLM]) -> None:
    battle_id = start(web)
    battle = Battle.objects.get(pk=battle_id)
    turn = battle.turns.get()
    for _ in range(2):
        Battle.objects.filter(pk=battle_id).update(state=Battle.State.FAILED)
        Answer.objects.filter(turn=turn).update(status=Answer.Status.STOPPED)
        battle.refresh_from_db()
        assert retry(web, battle_id, "a").json()["fresh_model"] is False
    answer = Answer.objects.get(turn=turn, side="a")
    assert answer.attempt == 3 and answer.llm_id == battle.model_a_id
    # Two failures of the model, and the next try is drawn afresh.
    AnswerAttempt.objects.filter(turn=turn).update(status=Answer.Status.ERROR)
    Answer.objects.filter(turn=turn).update(status=Answer.Status.ERROR)
    answer.refresh_from_db()
    assert rounds.fresh_model(battle=battle, turn=turn, answer=answer) is not None


def test_named_battles_keep_the_models_the_visitor_chose(
    web: httpx.Client, pair: dict[str, LLM], openai_upstream: FakeOpenAI
) -> None:
    openai_upstream.behaviours["alpha-up"] = Behaviour(status=500)
    response = web.post(
        "/api/v1/battles/",
        json={"prompt": "Hi", "mode": "named", "model_a": "alpha-chat", "model_b": "beta-chat"},
    )
    battle_id = response.json()["id"]
    stream(web, battle_id)
    for _ in range(3):
        assert retry(web, battle_id, "a").json()["fresh_model"] is False
        stream(web, battle_id)
    assert Battle.objects.get(pk=battle_id).model_a_id == pair["alpha"].pk


# --- regenerate ----------------------------------------------------------------------------------


def test_regenerating_asks_both_models_again_and_never_changes_them(
    web: httpx.Client, trio: dict[str, LLM], openai_upstream: FakeOpenAI
) -> None:
    battle_id = start(web)
    stream(web, battle_id)
    pair = Battle.objects.values_list("model_a", "model_b").get(pk=battle_id)
    for n in (2, 3, 4):
        openai_upstream.behaviours["alpha-up"] = Behaviour(text=f"Alpha's try number {n}.")
        openai_upstream.behaviours["beta-up"] = Behaviour(text=f"Beta's try number {n}.")
        openai_upstream.behaviours["gamma-up"] = Behaviour(text=f"Gamma's try number {n}.")
        response = regenerate(web, battle_id)
        assert response.status_code == 201, response.text
        assert response.json() == {"state": "pending", "turn": 0}
        events, _ = stream(web, battle_id)
        assert events[-1]["state"] == "ready"
        assert {text_of(events, "a"), text_of(events, "b")} <= {
            f"Alpha's try number {n}.",
            f"Beta's try number {n}.",
            f"Gamma's try number {n}.",
        }
        assert Battle.objects.values_list("model_a", "model_b").get(pk=battle_id) == pair
    assert_error(regenerate(web, battle_id), 409, "tried 4 times")
    tries = AnswerAttempt.objects.filter(turn__battle_id=battle_id)
    assert tries.count() == 6 and set(tries.values_list("reason", flat=True)) == {"regenerate"}
    assert {t.llm_id for t in tries} == set(pair)
    assert vote(web, battle_id).status_code == 200


def test_an_identity_named_in_a_replaced_answer_still_excludes_the_vote(
    web: httpx.Client, pair: dict[str, LLM], openai_upstream: FakeOpenAI
) -> None:
    openai_upstream.behaviours["alpha-up"] = Behaviour(text="I am Alpha Chat, made by Alpha Labs.")
    battle_id = start(web)
    stream(web, battle_id)
    openai_upstream.behaviours["alpha-up"] = Behaviour(text=ALPHA)
    regenerate(web, battle_id)
    stream(web, battle_id)
    assert vote(web, battle_id).status_code == 200
    assert Vote.objects.get(battle_id=battle_id).excluded == Vote.Exclusion.IDENTITY_LEAK


# --- stop ----------------------------------------------------------------------------------------

LONG = " ".join(["word"] * 200)  # 200 chunks 50 ms apart: about ten seconds to the end


def test_a_stop_ends_the_stream_at_once_and_its_answers_can_be_retried(
    web: httpx.Client, pair: dict[str, LLM], openai_upstream: FakeOpenAI, live_asgi: str
) -> None:
    for model in ("alpha-up", "beta-up"):
        openai_upstream.behaviours[model] = Behaviour(text=LONG, chunk_delay=0.05)
    battle_id = start(web)
    events = []
    with connect_sse(web, "GET", f"/api/v1/battles/{battle_id}/stream") as source:
        for sse in source.iter_sse():
            events.append(json.loads(sse.data))
            if len(events) == 1:
                # Another connection of the same visitor, as the page's Stop button is.
                with httpx.Client(base_url=live_asgi, cookies=web.cookies) as button:
                    asked = time.monotonic()
                    response = button.post(f"/api/v1/battles/{battle_id}/stop/")
                assert response.status_code == 202 and response.json() == {"state": "streaming"}
    ended = time.monotonic() - asked
    print(f"stop to the stream's end: {ended * 1000:.0f} ms")

    assert ended < 2, ended  # well before the answers' own end, ten seconds away
    assert events[-1] == {"side": None, "type": "end", "text": "", "state": "failed"}
    assert sorted((e["side"], e["text"]) for e in events if e["type"] == "error") == [
        ("a", "The answer was stopped."),
        ("b", "The answer was stopped."),
    ]
    while openai_upstream.connections and time.monotonic() - asked < 3:
        time.sleep(0.02)  # the fake upstream sees its connections close a moment later
    assert not openai_upstream.connections, "the upstream still streams after the stop"
    for answer in Answer.objects.filter(turn__battle_id=battle_id):
        assert answer.status == Answer.Status.STOPPED and answer.error == "stopped by the visitor"
    detail = web.get(f"/api/v1/battles/{battle_id}/").json()
    assert detail["turns"][0]["answers"]["a"]["finish_reason"] == "stopped"
    assert detail["actions"] == {
        "vote": False,
        "vote_covers": 0,
        "retry": ["a", "b"],
        "regenerate": True,
        "stop": False,
        "follow_up": False,
    }
    assert_error(vote(web, battle_id), 409, "cannot be voted on")

    for model in ("alpha-up", "beta-up"):
        openai_upstream.behaviours[model] = Behaviour(text="Short now.")
    assert retry(web, battle_id, "a").status_code == 201
    assert stream(web, battle_id)[0][-1]["state"] == "failed"  # b is still stopped
    assert retry(web, battle_id, "b").status_code == 201
    assert stream(web, battle_id)[0][-1]["state"] == "ready"
    assert vote(web, battle_id).status_code == 200


def test_a_stop_before_the_stream_begins_ends_the_turn_without_a_call(
    web: httpx.Client, pair: dict[str, LLM], openai_upstream: FakeOpenAI
) -> None:
    battle_id = start(web)
    response = web.post(f"/api/v1/battles/{battle_id}/stop/")
    assert response.status_code == 202 and response.json() == {"state": "failed"}
    events, _ = stream(web, battle_id)
    assert [e["text"] for e in events if e["type"] == "error"] == ["The answer was stopped."] * 2
    assert events[-1]["state"] == "failed"
    assert not openai_upstream.requests
    assert_error(web.post(f"/api/v1/battles/{battle_id}/stop/"), 409, "nothing to stop")


def test_a_stop_asked_of_an_earlier_stream_does_not_stop_the_next(
    web: httpx.Client, pair: dict[str, LLM]
) -> None:
    battle_id = start(web)
    stream(web, battle_id)
    # Left in the cache by a stop that came as the earlier stream ended by itself.
    cache.set(rounds.stop_key(battle_id), True, 60)
    assert regenerate(web, battle_id).status_code == 201
    assert stream(web, battle_id)[0][-1]["state"] == "ready"


# --- bad requests, abuse --------------------------------------------------------------------------


def test_retry_regenerate_and_stop_refuse_what_they_cannot_do_with_a_reason(
    web: httpx.Client, pair: dict[str, LLM], openai_upstream: FakeOpenAI, live_asgi: str
) -> None:
    openai_upstream.behaviours["alpha-up"] = Behaviour(status=500)
    battle_id = start(web)
    # Pending: nothing has ended yet.
    assert_error(retry(web, battle_id, "a"), 409, "still coming")
    assert_error(regenerate(web, battle_id), 409, "still coming")
    stream(web, battle_id)
    failed = side_of(battle_id, "alpha")

    assert_error(retry(web, battle_id, "c"), 400, 'side must be "a" or "b"')
    assert_error(retry(web, battle_id, ["a"]), 400, 'side must be "a" or "b"')
    assert_error(web.post(f"/api/v1/battles/{battle_id}/retry/", json={}), 400, "invalid")
    assert_error(retry(web, battle_id, other(failed)), 409, "ended well")
    assert_error(web.post(f"/api/v1/battles/{battle_id}/stop/"), 409, "nothing to stop")
    # Someone else's battle does not exist for them, whatever they ask.
    with httpx.Client(base_url=live_asgi) as stranger:
        assert_error(retry(stranger, battle_id, failed), 404, "no such battle")
        assert_error(regenerate(stranger, battle_id), 404, "no such battle")
        assert_error(stranger.post(f"/api/v1/battles/{battle_id}/stop/"), 404, "no such battle")
    for path in ("retry", "regenerate", "stop"):
        assert_error(web.post(f"/api/v1/battles/not-a-uuid/{path}/", json={"side": "a"}), 404, "no such")
    assert not AnswerAttempt.objects.exists()
    assert Battle.objects.get(pk=battle_id).state == Battle.State.FAILED

    openai_upstream.behaviours["alpha-up"] = Behaviour(text=ALPHA)
    retry(web, battle_id, failed)
    stream(web, battle_id)
    assert vote(web, battle_id).status_code == 200
    assert_error(regenerate(web, battle_id), 409, "it has a vote")
    assert_error(retry(web, battle_id, failed), 409, "it has a vote")
    assert AnswerAttempt.objects.count() == 1


def test_retries_and_regenerations_count_against_the_hourly_battle_cap(
    web: httpx.Client, pair: dict[str, LLM], openai_upstream: FakeOpenAI, settings: Any
) -> None:
    settings.ARENA_BATTLES_PER_NETWORK_HOUR = 3
    openai_upstream.behaviours["alpha-up"] = Behaviour(status=500)
    battle_id = start(web)
    stream(web, battle_id)
    failed = side_of(battle_id, "alpha")
    assert retry(web, battle_id, failed).status_code == 201
    stream(web, battle_id)
    assert regenerate(web, battle_id).status_code == 201
    stream(web, battle_id)

    response = retry(web, battle_id, failed)
    assert_error(response, 429, "limit of 3 battles this hour")
    assert 0 < int(response.headers["retry-after"]) <= 3600
    assert_error(web.post("/api/v1/battles/", json={"prompt": "another"}), 429, "limit of 3")
    assert Answer.objects.get(turn__battle_id=battle_id, side=failed).attempt == 3
    assert Battle.objects.get(pk=battle_id).state == Battle.State.FAILED


def test_a_retry_pays_the_proof_of_work_like_a_new_battle(
    web: httpx.Client, pair: dict[str, LLM], openai_upstream: FakeOpenAI, settings: Any
) -> None:
    openai_upstream.behaviours["alpha-up"] = Behaviour(status=400, status_times=1)
    battle_id = start(web)
    stream(web, battle_id)
    failed = side_of(battle_id, "alpha")
    settings.ARENA_CHALLENGE = "altcha"
    settings.ARENA_POW_BASE = 2000  # small enough to solve in a test

    assert_error(retry(web, battle_id, failed), 403, "needs a solved challenge")
    assert_error(regenerate(web, battle_id), 403, "needs a solved challenge")
    # A request that would be refused anyway is refused first, its challenge left unspent.
    payload = solved_payload(web)
    assert_error(retry(web, battle_id, other(failed), challenge=payload), 409, "ended well")
    assert retry(web, battle_id, failed, challenge=payload).status_code == 201
    assert stream(web, battle_id)[0][-1]["state"] == "ready"
    assert_error(regenerate(web, battle_id, challenge=payload), 403, "has been used")
    assert regenerate(web, battle_id, challenge=solved_payload(web)).status_code == 201


# --- coming back to a battle ----------------------------------------------------------------------


def test_the_visitor_lists_their_own_recent_battles_and_nobody_elses(
    web: httpx.Client, pair: dict[str, LLM], live_asgi: str
) -> None:
    assert web.get("/api/v1/visitor/battles").json() == []  # no cookie yet: nobody's battles
    first = start(web, "Why is the sky blue?")
    stream(web, first)
    second = start(web, "x" * 500)
    with httpx.Client(base_url=live_asgi) as stranger:
        theirs = start(stranger, "A stranger's question")
        assert [b["id"] for b in stranger.get("/api/v1/visitor/battles").json()] == [theirs]

    listed = web.get("/api/v1/visitor/battles")
    assert listed.headers["cache-control"] == "no-store"
    rows = listed.json()
    assert [b["id"] for b in rows] == [second, first]
    assert rows[0]["prompt"] == "x" * 140 and rows[0]["state"] == "pending"
    assert rows[1]["prompt"] == "Why is the sky blue?" and rows[1]["turns"] == 1
    assert rows[1]["model_a"] is None and rows[1]["winner"] is None
    assert_anonymous(listed.text)

    vote(web, first, "b")
    row = web.get("/api/v1/visitor/battles").json()[1]
    battle = Battle.objects.select_related("model_a").get(pk=first)
    assert row["winner"] == "b" and row["state"] == "voted"
    assert row["model_a"]["name"] == battle.model_a.name


def test_a_battle_has_a_page_of_its_own_for_its_visitor_only(
    web: httpx.Client, pair: dict[str, LLM], live_asgi: str
) -> None:
    battle_id = start(web)
    page = web.get(f"/b/{battle_id}/")
    assert page.status_code == 200
    assert f'data-battle="{battle_id}"' in page.text and 'data-mode="anonymous"' in page.text
    assert_anonymous(page.text)
    named = web.post(
        "/api/v1/battles/",
        json={"prompt": "Hi", "mode": "named", "model_a": "alpha-chat", "model_b": "beta-chat"},
    ).json()["id"]
    assert 'data-mode="named"' in web.get(f"/b/{named}/").text
    with httpx.Client(base_url=live_asgi) as stranger:
        assert stranger.get(f"/b/{battle_id}/").status_code == 404
    assert web.get("/b/not-a-uuid/").status_code == 404


def test_the_schema_documents_the_new_endpoints_and_their_refusals(web: httpx.Client, live_asgi: str) -> None:
    paths = web.get("/api/v1/schema/?format=json").json()["paths"]
    for name in ("retry", "regenerate"):
        operation = paths[f"/api/v1/battles/{{battle_id}}/{name}/"]["post"]
        assert {"201", "400", "403", "404", "409", "429"} <= set(operation["responses"])
        assert "challenge" in operation["description"]
    assert {"202", "404", "409"} <= set(paths["/api/v1/battles/{battle_id}/stop/"]["post"]["responses"])
    assert "get" in paths["/api/v1/visitor/battles"]


# --- the demo backend ----------------------------------------------------------------------------


@pytest.fixture
def demo_models(make_llm: Callable[..., LLM], live_asgi: str, settings: Any) -> list[LLM]:
    settings.DEMO_TOKEN_DELAY = 0
    return [make_llm(model=p) for p in ("concise", "structured", "thoughtful")]


def test_the_demo_error_marker_fails_one_side_and_the_retries_show_a_fresh_model(
    web: httpx.Client, demo_models: list[LLM]
) -> None:
    battle_id = start(web, "Tell me about tea [demo:error]")
    events, _ = stream(web, battle_id)
    failed = [e["side"] for e in events if e["type"] == "error"]
    assert len(failed) == 1 and events[-1]["state"] == "failed"
    (side,) = failed
    first_model = Battle.objects.get(pk=battle_id).llm(side).pk

    assert retry(web, battle_id, side).json()["fresh_model"] is False
    assert stream(web, battle_id)[0][-1]["state"] == "failed"  # the marker fails it once more
    assert retry(web, battle_id, side).json()["fresh_model"] is True
    events, _ = stream(web, battle_id)
    assert events[-1]["state"] == "ready" and text_of(events, side)
    assert Battle.objects.get(pk=battle_id).llm(side).pk != first_model


def test_retried_answers_stream_no_faster_than_the_solo_pace(
    web: httpx.Client, pair: dict[str, LLM], openai_upstream: FakeOpenAI, settings: Any
) -> None:
    settings.ARENA_PACED_TICK = 0.05
    text = "x" * 200  # one chunk: at 400 characters a second, half a second to release
    openai_upstream.behaviours["alpha-up"] = Behaviour(text=text, status=400, status_times=1)
    battle_id = start(web)
    stream(web, battle_id)
    failed = side_of(battle_id, "alpha")
    retry(web, battle_id, failed)
    with connect_sse(web, "GET", f"/api/v1/battles/{battle_id}/stream") as source:
        timed = [(time.monotonic(), json.loads(sse.data)) for sse in source.iter_sse()]
    deltas = [(at, e) for at, e in timed if e["type"] == "delta"]
    assert "".join(e["text"] for _, e in deltas) == text
    assert max(len(e["text"]) for _, e in deltas) <= 20
    assert deltas[-1][0] - deltas[0][0] >= 0.4


def test_two_retries_sent_at_once_open_one_try(
    web: httpx.Client, pair: dict[str, LLM], openai_upstream: FakeOpenAI
) -> None:
    openai_upstream.behaviours["alpha-up"] = Behaviour(status=500)
    battle_id = start(web)
    stream(web, battle_id)
    failed = side_of(battle_id, "alpha")
    statuses: list[int] = []

    def send() -> None:
        statuses.append(retry(web, battle_id, failed).status_code)

    threads = [threading.Thread(target=send) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [201, 409]
    assert AnswerAttempt.objects.count() == 1


# --- the fresh model, drawn server-side ------------------------------------------------------------


def failed_twice(battle: Battle, side: str) -> Answer:
    """The side's first-turn answer after two failures of its model."""
    turn = battle.turns.get()
    answer = turn.answers.get(side=side)
    AnswerAttempt.objects.create(
        turn=turn, side=side, llm_id=answer.llm_id, attempt=1, reason="retry", status=Answer.Status.ERROR
    )
    Answer.objects.filter(pk=answer.pk).update(status=Answer.Status.ERROR, attempt=2)
    answer.refresh_from_db()
    return answer


@pytest.mark.django_db
def test_the_fresh_model_is_drawn_by_weight_never_from_the_other_side_nor_a_model_that_tried(
    make_llm: Callable[..., LLM],
) -> None:
    first, second, heavy, light = make_llm(), make_llm(), make_llm(weight=3), make_llm(weight=1)
    battle = services.battle_start(
        visitor="v", prompt="Hi", mode="named", model_a=first.name, model_b=second.name
    )
    answer = failed_twice(battle, "a")
    assert rounds.fresh_model(battle=battle, turn=battle.turns.get(), answer=answer) is None  # named mode

    Battle.objects.filter(pk=battle.pk).update(mode=Battle.Mode.ANONYMOUS)
    battle.refresh_from_db()
    rng = random.Random(5)
    drawn = [
        rounds.fresh_model(battle=battle, turn=battle.turns.get(), answer=answer, rng=rng) for _ in range(800)
    ]
    assert {m.pk for m in drawn} == {heavy.pk, light.pk}
    assert sum(m.pk == heavy.pk for m in drawn) / 800 == pytest.approx(0.75, abs=0.05)

    # Nothing left to draw: the side's own model tries again.
    LLM.objects.filter(pk__in=[heavy.pk, light.pk]).update(weight=0)
    assert rounds.fresh_model(battle=battle, turn=battle.turns.get(), answer=answer) is None


@pytest.mark.django_db
def test_a_follow_up_never_draws_a_fresh_model(make_llm: Callable[..., LLM]) -> None:
    make_llm(), make_llm(), make_llm()
    battle = services.battle_start(visitor="v", prompt="Hi")
    Battle.objects.filter(pk=battle.pk).update(state=Battle.State.READY)
    battle.refresh_from_db()
    follow_up = services.battle_continue(battle=battle, prompt="And then?")
    answer = follow_up.answers.get(side="a")
    for attempt in (1, 2):
        AnswerAttempt.objects.create(
            turn=follow_up, side="a", llm_id=answer.llm_id, attempt=attempt, reason="retry", status="error"
        )
    Answer.objects.filter(pk=answer.pk).update(status=Answer.Status.ERROR, attempt=3)
    answer.refresh_from_db()
    assert rounds.fresh_model(battle=battle, turn=follow_up, answer=answer) is None
