"""Faults injected into real parts: a Redis server of the test's own that it stops, a database that
cannot be reached. Whatever fails, every vote acknowledged is a vote stored.

The Celery worker killed mid-recompute is in tests/leaderboard/test_worker_killed.py.
"""

from __future__ import annotations

import logging
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
import redis
from django.db import connection
from django.test import Client
from django.utils import timezone

from arena.models import Answer, Battle, Vote
from arena.solve_challenge import solve
from config import cache as failsoft
from config.celery_app import app as celery_app
from providers.models import LLM

ADDRESS = "203.0.113.9"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """A redis-server process of this test's own, on a free port, that the test can stop."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 10
        while True:
            try:
                self.client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


@pytest.fixture
def own_redis(settings: Any) -> Iterator[RedisServer]:
    """The site's cache on a Redis server of the test's own."""
    server = RedisServer()
    failsoft._down_until.clear()
    failsoft._logged_at.clear()
    settings.CACHES = {"default": {"BACKEND": "config.cache.FailSoftRedisCache", "LOCATION": server.url}}
    try:
        yield server
    finally:
        server.stop()
        failsoft._down_until.clear()


@pytest.fixture
def own_broker(own_redis: RedisServer, transactional_db: None, settings: Any) -> Iterator[RedisServer]:
    """Celery queues to the same server (not in-process), and a vote queues a recompute once it is
    committed (so the test commits: transactional_db)."""
    settings.LEADERBOARD_RECOMPUTE_ON_VOTE = True
    saved = {"task_always_eager": celery_app.conf.task_always_eager, "broker_url": celery_app.conf.broker_url}
    celery_app.conf.update(task_always_eager=False, broker_url=own_redis.url)
    celery_app._pool = None  # connections made for another broker
    celery_app.amqp._producer_pool = None
    yield own_redis
    celery_app.conf.update(saved)
    celery_app._pool = None
    celery_app.amqp._producer_pool = None


def open_battle(web: Client, payload: str | None = None) -> Any:
    body: dict[str, Any] = {"prompt": "Why is the sky blue?"}
    if payload is not None:
        body["challenge"] = payload
    return web.post("/api/v1/battles/", body, content_type="application/json")


def ready_battle(web: Client) -> Battle:
    assert open_battle(web).status_code == 201
    battle = Battle.objects.latest("created")
    Battle.objects.filter(pk=battle.pk).update(state=Battle.State.READY)
    Answer.objects.filter(turn__battle=battle).update(
        status=Answer.Status.DONE, text="An answer.", finished=timezone.now() - timedelta(hours=1)
    )
    return battle


def vote(web: Client, battle: Battle) -> Any:
    return web.post(f"/api/v1/battles/{battle.id}/vote/", {"winner": "a"}, content_type="application/json")


@pytest.fixture
def two_models(make_llm: Callable[..., LLM]) -> None:
    make_llm()
    make_llm()


def test_battles_open_and_caps_still_hold_while_redis_is_stopped(
    own_redis: RedisServer, two_models: None, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    settings.ARENA_BATTLES_PER_NETWORK_HOUR = 4
    web = Client(REMOTE_ADDR=ADDRESS)
    assert [open_battle(web).status_code for _ in range(2)] == [201, 201]
    assert own_redis.client.keys(":1:gate:battles:*"), "the caps counted in Redis while it ran"
    own_redis.stop()
    with caplog.at_level(logging.ERROR, logger="config.cache"):
        statuses = [open_battle(web).status_code for _ in range(5)]
    # Counted again from zero in this process: a looser limit, never none.
    assert statuses == [201, 201, 201, 201, 429]
    assert Battle.objects.count() == 6
    assert any("Redis cache unreachable" in r.message for r in caplog.records)
    assert web.get("/leaderboard/").status_code == 200
    assert web.get("/api/v1/leaderboard/").status_code == 200


def test_a_challenge_is_refused_with_a_503_not_replayed_while_redis_is_stopped(
    own_redis: RedisServer, two_models: None, settings: Any
) -> None:
    settings.ARENA_CHALLENGE = "altcha"
    settings.ARENA_POW_BASE = 2000
    web = Client(REMOTE_ADDR=ADDRESS)

    def solved() -> str:
        challenge = web.get("/api/v1/challenge/").json()
        return solve(challenge)

    used = solved()
    assert open_battle(web, used).status_code == 201
    unused = solved()
    own_redis.stop()
    for payload in (used, unused):
        response = open_battle(web, payload)
        assert response.status_code == 503, response.content
        assert response.json()["code"] == "challenge_unavailable" and response.json()["detail"]
    assert Battle.objects.count() == 1
    assert web.get("/api/v1/challenge/").status_code == 200  # issuing needs no shared record


def test_every_vote_acknowledged_is_stored_and_revealed_while_the_broker_is_stopped(
    own_broker: RedisServer, two_models: None, caplog: pytest.LogCaptureFixture
) -> None:
    web = Client(REMOTE_ADDR=ADDRESS)
    battles = [ready_battle(web) for _ in range(6)]
    acknowledged = 0
    for n, battle in enumerate(battles):
        if n == 3:
            assert own_broker.client.llen("celery") == 3, "votes queued their recompute while it ran"
            own_broker.stop()
        with caplog.at_level(logging.ERROR, logger="leaderboard.tasks"):
            response = vote(web, battle)
        assert response.status_code == 200, response.content
        body = response.json()
        assert body["model_a"] and body["model_b"], "the vote reveals the models"
        acknowledged += 1
        assert vote(web, battle).status_code == 409  # a retry finds the vote, never a second one
    assert acknowledged == Vote.objects.count() == 6
    assert sum("Could not queue a recompute" in r.message for r in caplog.records) == 3


class SilentServer:
    """Accepts TCP connections and never says a word: a database host that hangs."""

    def __init__(self) -> None:
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(64)
        self.port = self.socket.getsockname()[1]


@pytest.fixture
def database_down(transactional_db: None) -> Iterator[None]:
    """The default database pointed at a host that hangs (PostgreSQL) or a file it cannot open (SQLite)."""
    saved = {**connection.settings_dict, "OPTIONS": {**connection.settings_dict.get("OPTIONS", {})}}
    connection.close()
    silent = None
    if connection.vendor == "postgresql":
        silent = SilentServer()
        connection.close_pool() if connection.pool else None
        connection.settings_dict.update(HOST="127.0.0.1", PORT=str(silent.port))
        connection.settings_dict["OPTIONS"]["connect_timeout"] = 2
        if "pool" in connection.settings_dict["OPTIONS"]:
            connection.settings_dict["OPTIONS"]["pool"] = {
                **connection.settings_dict["OPTIONS"]["pool"],
                "min_size": 0,
                "timeout": 3,
            }
    else:
        connection.settings_dict["NAME"] = "/nonexistent-directory/arena.sqlite3"
    try:
        yield
    finally:
        connection.close()
        if connection.vendor == "postgresql" and connection.pool:
            connection.close_pool()
        connection.settings_dict.clear()
        connection.settings_dict.update(saved)
        if silent is not None:
            silent.socket.close()


def test_the_api_answers_json_503s_quickly_and_health_answers_while_the_database_is_unreachable(
    database_down: None,
) -> None:
    web = Client(REMOTE_ADDR=ADDRESS, raise_request_exception=False)
    started = time.monotonic()
    health = web.get("/healthz")
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    assert time.monotonic() - started < 1
    snapshot = "/api/v1/leaderboard/snapshots/1"
    for path in ("/api/v1/leaderboard/", f"{snapshot}/csv", f"{snapshot}/votes", "/api/v1/battles/"):
        started = time.monotonic()
        battle = {"prompt": "Why?"}
        response = web.post(path, battle, "application/json") if "battles" in path else web.get(path)
        assert response.status_code == 503, (path, response.content)
        assert response["Content-Type"] == "application/json"
        assert response.json()["code"] == "database_unavailable", path
        assert int(response["Retry-After"]) > 0
        assert time.monotonic() - started < 10, "a short time-out, not the pool's old 30 s"
