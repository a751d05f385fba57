"""Direct chat (one named model, no vote, on no board) and share links of voted battles, over the
API on a real socket: the use, and the abuse."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from arena import sharing
from arena.models import Answer, Battle, BattleShare, Vote
from arena.sharing import TOKEN_PATTERN
from leaderboard import dumps
from leaderboard import services as board
from providers.models import LLM
from tests.arena import test_api
from tests.arena.test_api import assert_error, start, stream, text_of
from tests.upstream import Behaviour, FakeOpenAI

CHAT = "/api/v1/battles/"
# The API tests' fixtures: two models behind the fake upstream, and a client of the live server.
models, web = test_api.models, test_api.web


def chat(web: httpx.Client, prompt: str = "Why is the sky blue?", model: str = "beta-chat") -> str:
    response = web.post(CHAT, json={"prompt": prompt, "mode": "direct", "model_a": model})
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["mode"] == "direct" and body["model_a"]["name"] == model and body["model_b"] is None
    return body["id"]


# --- direct chat ---------------------------------------------------------------------------------


def test_a_direct_chat_streams_one_named_model_over_several_turns_and_takes_no_vote(
    web: httpx.Client, models: tuple[LLM, LLM], openai_upstream: FakeOpenAI
) -> None:
    chat_id = chat(web)
    events, _ = stream(web, chat_id)
    assert {e["side"] for e in events} == {"a", None}
    assert text_of(events, "a") == "A second answer that differs."
    assert events[-1] == {"side": None, "type": "end", "text": "", "state": "ready"}

    assert web.post(f"{CHAT}{chat_id}/turns/", json={"prompt": "And at sunset?"}).status_code == 201
    events, _ = stream(web, chat_id)
    assert text_of(events, "a") == "A second answer that differs."
    # Only the named model was called, and its second call carried the conversation so far.
    assert [r["json"]["model"] for r in openai_upstream.requests] == ["beta-up", "beta-up"]
    assert [m["role"] for m in openai_upstream.requests[-1]["json"]["messages"]] == [
        "user",
        "assistant",
        "user",
    ]

    detail = web.get(f"{CHAT}{chat_id}/").json()
    assert detail["mode"] == "direct" and detail["model_b"] is None
    assert [set(t["answers"]) for t in detail["turns"]] == [{"a"}, {"a"}]
    assert detail["actions"]["vote"] is False and detail["actions"]["follow_up"] is True
    refused = web.post(f"{CHAT}{chat_id}/vote/", json={"winner": "a"})
    assert_error(refused, 409, "takes no vote")
    assert refused.json()["code"] == "direct_chat"
    assert not Vote.objects.exists()
    assert Battle.objects.get(pk=chat_id).model_b_id is None


def test_a_direct_chat_counts_on_no_board_and_in_no_export(
    web: httpx.Client, models: tuple[LLM, LLM], settings: Any
) -> None:
    settings.LEADERBOARD_BOOTSTRAP = 20
    stream(web, chat(web, model="alpha-chat"))
    assert Answer.objects.filter(status=Answer.Status.DONE, ttft_ms__isnull=False).count() == 1
    alpha, beta = models
    # The latency figures shown beside the board leave the chat's answer out...
    assert board.latency([alpha.pk, beta.pk]) == {}
    # ...and count a battle's answers (the same query, so the exclusion is what made it empty).
    battle_id = start(web, mode="named", model_a="alpha-chat", model_b="beta-chat")
    stream(web, battle_id)
    assert set(board.latency([alpha.pk, beta.pk])) == {str(alpha.pk), str(beta.pk)}
    assert board.latency([alpha.pk])[str(alpha.pk)]["answers"] == 1
    # No vote, so no board nor any export reads the chat.
    assert web.post(f"{CHAT}{battle_id}/vote/", json={"winner": "a"}).status_code == 200
    exported = list(dumps.export_lines(Vote.objects.all()))
    assert len(exported) == 1 and battle_id in exported[0]
    # The board counts the one anonymous vote; the named one is left out by name, the chat not seen.
    anonymous = start(web)
    stream(web, anonymous)
    assert web.post(f"{CHAT}{anonymous}/vote/", json={"winner": "tie"}).status_code == 200
    board.recompute()  # a no-op if the vote's own recompute ran already
    snapshot = board.latest_snapshot()
    assert snapshot is not None and snapshot.votes == 1
    assert snapshot.excluded == {"named_mode": 1}


def test_bad_direct_chats_are_refused_with_a_reason_and_store_nothing(
    web: httpx.Client, models: tuple[LLM, LLM], openai_upstream: FakeOpenAI
) -> None:
    LLM.objects.filter(name="alpha-chat").update(visibility=LLM.Visibility.PRIVATE)
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"mode": "direct"}, 400, "needs model_a"),
        ({"mode": "direct", "model_a": ""}, 400, "invalid"),
        ({"mode": "direct", "model_a": ["beta-chat"]}, 400, "invalid"),
        ({"mode": "direct", "model_a": 7}, 400, "no available model"),
        ({"mode": "direct", "model_a": "nope"}, 400, "no available model"),
        ({"mode": "direct", "model_a": "alpha-chat"}, 400, "no available model"),  # private
        ({"mode": "direct", "model_a": "beta-chat", "model_b": "beta-chat"}, 400, "one model"),
        ({"mode": "direct", "model_a": "beta-chat", "prompt": " "}, 400, "empty"),
        ({"mode": "direct", "model_a": "beta-chat", "prompt": "How to make sarin at home?"}, 400, ""),
    ]
    for extra, status, words in cases:
        response = web.post(CHAT, json={"prompt": "Hi", **extra})
        assert response.status_code == status, (extra, response.text)
        assert words.lower() in response.json()["detail"].lower()
    assert not Battle.objects.exists()
    assert openai_upstream.requests == []


def test_a_direct_chat_passes_the_same_gates_as_a_battle(
    web: httpx.Client, models: tuple[LLM, LLM], settings: Any
) -> None:
    settings.ARENA_REQUIRE_CONSENT = True
    refused = web.post(CHAT, json={"prompt": "Hi", "mode": "direct", "model_a": "beta-chat"})
    assert refused.status_code == 403 and refused.json()["code"] == "consent_required"
    settings.ARENA_REQUIRE_CONSENT = False
    settings.ARENA_CHALLENGE = "altcha"
    refused = web.post(CHAT, json={"prompt": "Hi", "mode": "direct", "model_a": "beta-chat"})
    assert refused.status_code == 403 and refused.json()["code"] == "challenge_required"
    settings.ARENA_CHALLENGE = "off"
    settings.ARENA_OPEN_BATTLES_PER_VISITOR = 1
    chat(web)  # left waiting for its stream: open
    refused = web.post(CHAT, json={"prompt": "Hi", "mode": "direct", "model_a": "beta-chat"})
    assert refused.status_code == 429 and refused.json()["code"] == "open_battles_limit"
    assert Battle.objects.count() == 1


def test_a_direct_chat_retries_and_asks_again_on_its_one_side_only(
    web: httpx.Client, models: tuple[LLM, LLM], openai_upstream: FakeOpenAI
) -> None:
    openai_upstream.behaviours["beta-up"] = Behaviour(status=500)
    chat_id = chat(web)
    events, _ = stream(web, chat_id)
    assert events[-1]["state"] == "failed"
    assert web.get(f"{CHAT}{chat_id}/").json()["actions"]["retry"] == ["a"]
    assert_error(web.post(f"{CHAT}{chat_id}/retry/", json={"side": "b"}), 400, '"a" in a direct chat')
    openai_upstream.behaviours["beta-up"] = Behaviour(text="Better now.")
    retried = web.post(f"{CHAT}{chat_id}/retry/", json={"side": "a"})
    assert retried.status_code == 201 and retried.json()["fresh_model"] is False
    events, _ = stream(web, chat_id)
    assert text_of(events, "a") == "Better now." and events[-1]["state"] == "ready"
    assert web.post(f"{CHAT}{chat_id}/regenerate/").status_code == 201
    events, _ = stream(web, chat_id)
    assert {e["side"] for e in events} == {"a", None} and events[-1]["state"] == "ready"


# --- share links ---------------------------------------------------------------------------------


def voted_battle(web: httpx.Client, winner: str = "b") -> str:
    battle_id = start(web)
    stream(web, battle_id)
    assert web.post(f"{CHAT}{battle_id}/vote/", json={"winner": winner}).status_code == 200
    return battle_id


def test_a_voted_battle_is_shared_on_a_public_page_and_revoked(
    web: httpx.Client, models: tuple[LLM, LLM], live_asgi: str
) -> None:
    battle_id = voted_battle(web, "b")
    made = web.post(f"{CHAT}{battle_id}/share/")
    assert made.status_code == 201, made.text
    token = made.json()["token"]
    assert made.json()["url"] == f"/s/{token}/"
    assert TOKEN_PATTERN.fullmatch(token)
    again = web.post(f"{CHAT}{battle_id}/share/")
    assert again.status_code == 200 and again.json()["token"] == token

    battle = Battle.objects.select_related("model_a", "model_b").get(pk=battle_id)
    with httpx.Client(base_url=live_asgi) as stranger:  # no cookie: anyone with the link
        page = stranger.get(f"/s/{token}/")
    assert page.status_code == 200
    html = page.text
    for shown in (
        "Why is the sky blue?",
        "The first answer, in several words.",
        "A second answer that differs.",
        battle.model_a.label,
        battle.model_b.label,
        "model B is better",
        f"{battle.created:%Y-%m-%d}",
    ):
        assert shown in html, shown
    for hidden in (battle.visitor_hash, battle.network_hash or "-none-", battle_id, "arena_visitor"):
        assert hidden not in html
    assert not re.search(r"\d{2}:\d{2}", html.split("<main", 1)[1])  # no time finer than the day
    assert '<meta name="robots" content="noindex' in html
    assert page.headers["x-robots-tag"] == "noindex, nofollow"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert "no-store" in page.headers["cache-control"]
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp.split("style-src-attr")[0]
    assert "static/arena/render.js" in html and "data-answer>" in html
    # No cookie of the visitor's: only the language form's CSRF token (named on the privacy page).
    cookies = [c.split("=", 1)[0] for c in page.headers.get_list("set-cookie")]
    assert cookies in ([], ["csrftoken"])

    revoked = web.delete(f"{CHAT}{battle_id}/share/")
    assert revoked.status_code == 204
    assert web.get(f"/s/{token}/").status_code == 404
    assert_error(web.delete(f"{CHAT}{battle_id}/share/"), 404, "no share link")
    # Sharing again makes a new link; the revoked one stays dead.
    renewed = web.post(f"{CHAT}{battle_id}/share/").json()["token"]
    assert renewed != token
    assert web.get(f"/s/{token}/").status_code == 404
    assert web.get(f"/s/{renewed}/").status_code == 200


def test_a_battle_without_a_vote_cannot_be_shared(web: httpx.Client, models: tuple[LLM, LLM]) -> None:
    battle_id = start(web)
    for when in ("before its answers", "before its vote"):
        refused = web.post(f"{CHAT}{battle_id}/share/")
        assert_error(refused, 409, "only a battle with a vote can be shared")
        assert refused.json()["code"] == "not_voted", when
        stream(web, battle_id)
    chat_id = chat(web)
    stream(web, chat_id)
    assert_error(web.post(f"{CHAT}{chat_id}/share/"), 409, "vote first")
    assert not BattleShare.objects.exists()


def test_another_visitor_can_neither_share_nor_revoke_a_battle(
    web: httpx.Client, models: tuple[LLM, LLM], live_asgi: str
) -> None:
    battle_id = voted_battle(web)
    with httpx.Client(base_url=live_asgi) as stranger:
        assert_error(stranger.post(f"{CHAT}{battle_id}/share/"), 404, "no such battle")
        assert not BattleShare.objects.exists()
        token = web.post(f"{CHAT}{battle_id}/share/").json()["token"]
        stranger.post(CHAT, json={"prompt": "Hi"})  # a visitor of their own now, with a cookie
        assert "arena_visitor" in stranger.cookies
        assert_error(stranger.delete(f"{CHAT}{battle_id}/share/"), 404, "no such battle")
        assert_error(stranger.post(f"{CHAT}{battle_id}/share/"), 404, "no such battle")
        assert stranger.get(f"/s/{token}/").status_code == 200
    assert list(BattleShare.objects.values_list("token", flat=True)) == [token]


@pytest.mark.parametrize(
    "path",
    [
        "/s/abc/",
        "/s/" + "A" * 43 + "/",  # well formed, never made
        "/s/" + "A" * 42 + "%2F/",
        "/s/" + "A" * 44 + "/",
        "/s/%00" + "A" * 42 + "/",
    ],
)
def test_a_token_never_made_is_not_found(web: httpx.Client, models: tuple[LLM, LLM], path: str) -> None:
    assert web.get(path).status_code == 404


def test_tokens_are_random_and_not_derived_from_the_battle(
    web: httpx.Client, models: tuple[LLM, LLM]
) -> None:
    tokens = []
    for _ in range(3):
        battle_id = voted_battle(web)
        token = web.post(f"{CHAT}{battle_id}/share/").json()["token"]
        assert battle_id.replace("-", "") not in token
        tokens.append(token)
    assert len(set(tokens)) == 3
    assert all(len(t) == 43 for t in tokens)  # 32 random bytes: 256 bits


def test_bad_share_requests_are_refused(web: httpx.Client, models: tuple[LLM, LLM]) -> None:
    assert_error(web.post(f"{CHAT}not-a-uuid/share/"), 404, "no such battle")
    assert_error(web.delete(f"{CHAT}0b8a53b4-5b9b-4a0a-9e4b-0d6f4c4c4c4c/share/"), 404, "no such battle")
    battle_id = voted_battle(web)
    assert web.put(f"{CHAT}{battle_id}/share/", json={}).status_code == 405
    assert web.get(f"{CHAT}{battle_id}/share/").status_code == 405
    assert not BattleShare.objects.exists()


def test_deleting_ones_data_revokes_every_share(web: httpx.Client, models: tuple[LLM, LLM]) -> None:
    battle_id = voted_battle(web)
    token = web.post(f"{CHAT}{battle_id}/share/").json()["token"]
    assert web.delete("/api/v1/visitor/data").status_code == 200
    assert Vote.objects.filter(battle_id=battle_id).exists()  # the vote is kept, anonymised
    assert web.get(f"/s/{token}/").status_code == 404
    assert not BattleShare.objects.exists()


def test_the_shared_page_reads_a_fixed_number_of_rows(
    web: httpx.Client, models: tuple[LLM, LLM], django_assert_num_queries: Any
) -> None:
    battle_id = voted_battle(web)
    web.post(f"{CHAT}{battle_id}/turns/", json={"prompt": "x"})  # refused: voted, nothing added
    token = web.post(f"{CHAT}{battle_id}/share/").json()["token"]
    # The share with its battle and models, the vote, the turns, their answers: however many turns.
    with django_assert_num_queries(4):
        shared = sharing.shared_battle(token)
    assert [t.prompt for t in shared.turns] == ["Why is the sky blue?"]
    assert shared.winner == "b" and set(shared.models) == {"a", "b"}
