"""The gate in front of a battle (arena/gate.py): the proof-of-work challenge, the caps, too_fast votes.

tests/conftest.py switches the gate off for the rest of the suite; these tests switch it on.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import altcha
import httpx
import pytest
from django.db import connection
from django.http import HttpRequest
from django.test import Client, RequestFactory
from django.utils import timezone

from arena import gate, services
from arena.models import Answer, Battle, Side, Vote
from arena.solve_challenge import solve, solved_payload
from arena.views import VISITOR_COOKIE
from config.errors import TooMany
from leaderboard.services import excluded_counts
from providers.models import LLM, Organization

ADDRESS = "203.0.113.7"


@pytest.fixture
def gated(settings: Any, make_llm: Callable[..., LLM]) -> Any:
    settings.ARENA_CHALLENGE = "altcha"
    settings.ARENA_POW_BASE = 2000  # small enough to solve in a test, as the browser does at 50,000
    settings.ARENA_POW_VISITOR_STEP = 2
    settings.ARENA_POW_NETWORK_STEP = 4
    make_llm()
    make_llm()
    return settings


def client(address: str = ADDRESS) -> Client:
    return Client(REMOTE_ADDR=address)


def fresh(web: Client) -> dict[str, Any]:
    response = web.get("/api/v1/challenge/")
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    return response.json()


def open_battle(web: Client, payload: str | None = None, **extra: Any) -> Any:
    body = {"prompt": "Why is the sky blue?", **extra}
    if payload is not None:
        body["challenge"] = payload
    return web.post("/api/v1/battles/", body, content_type="application/json")


def assert_refused(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.content
    body = response.json()
    assert body["code"] == code and body["detail"]
    return body


def encode(payload: dict[str, Any]) -> str:
    return base64.b64encode(json.dumps(payload).encode()).decode()


def decode(payload: str) -> dict[str, Any]:
    return json.loads(base64.b64decode(payload))


# --- the challenge ------------------------------------------------------------------------------


def test_a_solved_challenge_opens_a_battle_stored_under_a_hashed_network(gated: Any) -> None:
    web = client()
    response = open_battle(web, solve(fresh(web)))
    assert response.status_code == 201, response.content
    battle = Battle.objects.get()
    assert len(battle.network_hash) == 64 and "203.0.113" not in battle.network_hash
    # The same /24 is the same network; another /24 is another.
    assert gate.voter_of(client_request("203.0.113.200"), None).network == battle.network_hash
    assert gate.voter_of(client_request("203.0.114.7"), None).network != battle.network_hash


def client_request(address: str) -> HttpRequest:
    return RequestFactory().get("/", REMOTE_ADDR=address)


def test_the_payload_may_come_as_a_header(gated: Any) -> None:
    web = client()
    payload = solve(fresh(web))
    response = web.post(
        "/api/v1/battles/",
        {"prompt": "Hi"},
        content_type="application/json",
        headers={"X-Arena-Challenge": payload},
    )
    assert response.status_code == 201, response.content


def test_no_battle_opens_without_a_challenge(gated: Any) -> None:
    assert_refused(open_battle(client()), 403, "challenge_required")
    assert_refused(open_battle(client(), "not base64 at all!"), 403, "challenge_invalid")
    assert not Battle.objects.exists()


def test_a_forged_challenge_is_refused(gated: Any) -> None:
    web = client()
    challenge = fresh(web)
    solved = decode(solve(challenge))
    # A wrong number, a signature of another key, and a challenge minted with another key.
    assert_refused(
        open_battle(web, encode(solved | {"number": solved["number"] + 1})), 403, "challenge_invalid"
    )
    assert_refused(open_battle(web, encode(solved | {"signature": "0" * 64})), 403, "challenge_invalid")
    mine = altcha.create_challenge_v1(
        altcha.ChallengeOptionsV1(
            max_number=10,
            hmac_key="not the site's key",
            expires=timezone.now() + timedelta(minutes=5),
            params={"difficulty": "1000000"},
        )
    )
    assert_refused(open_battle(web, solve(mine.to_dict())), 403, "challenge_invalid")
    assert not Battle.objects.exists()


def test_a_challenge_serves_once(gated: Any) -> None:
    web = client()
    payload = solve(fresh(web))
    assert open_battle(web, payload).status_code == 201
    assert_refused(open_battle(web, payload), 403, "challenge_used")
    assert Battle.objects.count() == 1


def test_an_expired_challenge_is_refused(gated: Any) -> None:
    gated.ARENA_CHALLENGE_SECONDS = -1
    web = client()
    body = assert_refused(open_battle(web, solve(fresh(web))), 403, "challenge_expired")
    assert "new one" in body["detail"]


def test_difficulty_rises_with_the_visitors_and_the_networks_volume(gated: Any) -> None:
    web = client()
    assert fresh(web)["maxNumber"] == 2000
    for _ in range(2):  # one visitor (the cookie is kept): two battles double the work
        assert open_battle(web, solve(fresh(web))).status_code == 201
    assert fresh(web)["maxNumber"] == int(2000 * 2 ** (2 / 2 + 2 / 4))
    # A new cookie on the same network still pays for the network's volume; another network does not.
    assert fresh(client("203.0.113.99"))["maxNumber"] == int(2000 * 2 ** (2 / 4))
    assert fresh(client("198.51.100.1"))["maxNumber"] == 2000


def test_a_challenge_too_easy_for_the_present_volume_is_refused(gated: Any) -> None:
    web = client()
    easy = solve(fresh(web))  # issued at no volume, kept while the visitor opens battles
    for _ in range(3):
        assert open_battle(web, solve(fresh(web))).status_code == 201
    assert_refused(open_battle(web, easy), 403, "challenge_too_easy")


def test_the_challenge_endpoint_says_none_is_needed_when_the_gate_is_off(gated: Any) -> None:
    gated.ARENA_CHALLENGE = "off"
    assert client().get("/api/v1/challenge/").status_code == 204
    assert open_battle(client()).status_code == 201


def test_the_reference_solver_opens_a_battle_over_a_real_socket(gated: Any, live_asgi: str) -> None:
    with httpx.Client(base_url=live_asgi, timeout=30) as web:
        payload = solved_payload(web)
        response = web.post("/api/v1/battles/", json={"prompt": "Hi", "challenge": payload})
        assert response.status_code == 201, response.text


# --- caps -------------------------------------------------------------------------------------------


def test_battles_per_visitor_hour_refused_with_when_to_come_back(gated: Any) -> None:
    gated.ARENA_CHALLENGE = "off"
    gated.ARENA_BATTLES_PER_VISITOR_HOUR = 2
    web = client()
    for _ in range(2):
        assert open_battle(web).status_code == 201
    response = open_battle(web)
    body = assert_refused(response, 429, "battles_limit")
    assert "limit of 2 battles this hour" in body["detail"] and "come back in" in body["detail"]
    assert 0 < int(response["Retry-After"]) <= 3600
    assert "throttled" not in body["detail"].lower()
    assert Battle.objects.count() == 2
    # Another visitor on another network is not held back.
    assert open_battle(client("198.51.100.1")).status_code == 201


def test_battles_per_network_hour_hold_across_new_cookies(gated: Any) -> None:
    gated.ARENA_CHALLENGE = "off"
    gated.ARENA_BATTLES_PER_NETWORK_HOUR = 2
    for n in range(2):
        assert open_battle(client(f"203.0.113.{n + 1}")).status_code == 201
    assert_refused(open_battle(client("203.0.113.50")), 429, "battles_limit")


def test_a_refused_or_failed_battle_is_not_counted(gated: Any) -> None:
    gated.ARENA_CHALLENGE = "off"
    gated.ARENA_BATTLES_PER_NETWORK_HOUR = 1
    web = client()
    assert open_battle(web, prompt="   ").status_code == 400
    assert open_battle(web).status_code == 201


def test_open_battles_at_once_are_capped(gated: Any) -> None:
    gated.ARENA_CHALLENGE = "off"
    gated.ARENA_OPEN_BATTLES_PER_VISITOR = 2
    web = client()
    for _ in range(2):
        assert open_battle(web).status_code == 201
    response = open_battle(web)
    assert_refused(response, 429, "open_battles_limit")
    assert response["Retry-After"]
    Battle.objects.update(state=Battle.State.READY)  # their answers ended
    assert open_battle(web).status_code == 201


RACERS = 8


@pytest.mark.parametrize("who", ["visitor", "network"])
def test_battles_sent_at_once_never_open_more_than_may_be_open_at_once(
    gated: Any, transactional_db: None, monkeypatch: pytest.MonkeyPatch, who: str
) -> None:
    gated.ARENA_CHALLENGE = "off"
    setattr(gated, f"ARENA_OPEN_BATTLES_PER_{who.upper()}", 3)
    # Widen the race as far as it goes: every request has its pair drawn before any inserts, and each
    # insert's transaction stays open while the others would count.
    together = threading.Barrier(RACERS, timeout=30)
    draw, open_turn = services.draw_pair, Battle.open_turn

    def draw_together() -> tuple[LLM, LLM]:
        pair = draw()
        together.wait()
        return pair

    def open_turn_slowly(battle: Battle, index: int, prompt: str) -> Any:
        time.sleep(0.2)
        return open_turn(battle, index, prompt)

    monkeypatch.setattr(services, "draw_pair", draw_together)
    monkeypatch.setattr(Battle, "open_turn", open_turn_slowly)
    cookie = (
        client()
        .post(
            "/api/v1/visitor/consent",
            {"terms_version": gated.ARENA_TERMS_VERSION},
            content_type="application/json",
        )
        .cookies[VISITOR_COOKIE]
        .value
    )

    def racer(n: int) -> Any:
        try:
            if who == "visitor":  # one cookie, each request from another network
                web = client(f"198.51.{n}.7")
                web.cookies[VISITOR_COOKIE] = cookie
            else:  # one network, each request a new visitor
                web = client(f"203.0.113.{n + 1}")
            return open_battle(web)
        finally:
            connection.close()

    with ThreadPoolExecutor(RACERS) as pool:
        responses = list(pool.map(racer, range(RACERS)))
    assert sorted(r.status_code for r in responses) == [201] * 3 + [429] * (RACERS - 3)
    for refused in (r for r in responses if r.status_code == 429):
        assert_refused(refused, 429, "open_battles_limit")
    assert Battle.objects.count() == 3


def test_battles_with_a_private_variant_count_against_the_same_caps(
    gated: Any, make_llm: Callable[..., LLM]
) -> None:
    gated.ARENA_CHALLENGE = "off"
    gated.ARENA_BATTLES_PER_VISITOR_HOUR = 1
    LLM.objects.update(weight=0)  # only the variant and one public model can be drawn
    org = Organization.objects.create(name="Org", slug="org")
    make_llm(visibility=LLM.Visibility.PRIVATE, owner=org, codename="trial")
    make_llm()
    web = client()
    assert open_battle(web).status_code == 201
    battle = Battle.objects.get()
    assert LLM.Visibility.PRIVATE in {battle.model_a.visibility, battle.model_b.visibility}
    assert_refused(open_battle(web), 429, "battles_limit")


def ready_battle(web: Client, text: str = "An answer.", finished_ago: float = 3600) -> Battle:
    assert open_battle(web).status_code == 201
    battle = Battle.objects.latest("created")
    Battle.objects.filter(pk=battle.pk).update(state=Battle.State.READY)
    Answer.objects.filter(turn__battle=battle).update(
        status=Answer.Status.DONE, text=text, finished=timezone.now() - timedelta(seconds=finished_ago)
    )
    return battle


def vote(web: Client, battle: Battle) -> Any:
    return web.post(f"/api/v1/battles/{battle.id}/vote/", {"winner": "a"}, content_type="application/json")


def test_votes_per_visitor_day_are_capped(gated: Any) -> None:
    gated.ARENA_CHALLENGE = "off"
    gated.ARENA_VOTES_PER_VISITOR_DAY = 1
    web = client()
    first, second = ready_battle(web), ready_battle(web)
    assert vote(web, first).status_code == 200
    response = vote(web, second)
    body = assert_refused(response, 429, "votes_limit")
    assert "today" in body["detail"] and 0 < int(response["Retry-After"]) <= 86400
    assert Vote.objects.count() == 1


def test_a_vote_faster_than_reading_is_kept_but_excluded(gated: Any) -> None:
    gated.ARENA_CHALLENGE = "off"
    gated.ARENA_READING_CHARS_PER_SECOND = 50
    web = client()
    hasty = ready_battle(web, text="word " * 200, finished_ago=1)  # 2,000 characters: 40 s to read
    patient = ready_battle(web, text="word " * 200, finished_ago=60)
    assert vote(web, hasty).status_code == 200
    assert vote(web, patient).status_code == 200
    assert Vote.objects.get(battle=hasty).excluded == Vote.Exclusion.TOO_FAST
    assert Vote.objects.get(battle=patient).excluded == Vote.Exclusion.NONE
    assert excluded_counts({})["too_fast"] == 1


def test_reading_time_counts_both_answers_of_the_last_turn(gated: Any) -> None:
    gated.ARENA_READING_CHARS_PER_SECOND = 10
    gated.ARENA_CHALLENGE = "off"
    battle = ready_battle(client(), text="x" * 100, finished_ago=15)  # 200 characters: 20 s
    turn = battle.turns.get()
    finished = turn.answers.get(side=Side.A).finished
    assert services.read_too_fast(turn, finished + timedelta(seconds=19))
    assert not services.read_too_fast(turn, finished + timedelta(seconds=21))


CROSS_PROCESS = """
import django, sys
django.setup()
from arena import gate
from config.errors import TooMany
voter = gate.Voter(visitor="v", network="n")
taken = 0
for _ in range(5):
    try:
        with gate.spending(gate.battle_caps(voter)):
            taken += 1
    except TooMany:
        pass
print(taken)
"""


@pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="caps across processes need a shared Redis")
def test_caps_hold_across_processes(settings: Any) -> None:
    settings.ARENA_BATTLES_PER_VISITOR_HOUR = 3
    voter = gate.Voter(visitor="v", network="n")
    with gate.spending(gate.battle_caps(voter)):
        pass
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "ARENA_BATTLES_PER_VISITOR_HOUR": "3",
        "ARENA_BATTLES_PER_NETWORK_HOUR": "1000",
    }
    other = subprocess.run(
        [sys.executable, "-c", CROSS_PROCESS], env=env, capture_output=True, text=True, check=True
    )
    assert other.stdout.strip() == "2"  # the other process saw this one's battle
    with pytest.raises(TooMany), gate.spending(gate.battle_caps(voter)):
        pass
