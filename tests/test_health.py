"""/healthz and /readyz, with each part they ask about taken away: a Redis server of the test's own
that it stops, a Celery worker process that it kills, a database that cannot be reached, a board
that no recompute has caught up with."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from django.db.utils import ConnectionHandler
from django.test import Client
from django.utils import timezone

from arena.models import Vote
from config import health
from leaderboard import services
from providers.models import LLM
from tests.factories import voted_battle

ROOT = Path(__file__).resolve().parents[1]
ALL = ["database", "cache", "broker", "worker", "snapshot"]  # READYZ_REQUIRED's default
RedisServer = tuple[str, subprocess.Popen[bytes]]  # its URL, its process


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ready(client: Client) -> tuple[int, dict[str, Any]]:
    response = client.get("/readyz")
    return response.status_code, response.json()


def states(body: dict[str, Any]) -> dict[str, str]:
    return {name: check["state"] for name, check in body["checks"].items()}


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis server for this test alone, on a port of its own; the test may stop it."""
    port = free_port()
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    while True:
        try:
            redis.Redis.from_url(url).ping()
            break
        except redis.ConnectionError:
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
    yield url, server
    server.kill()
    server.wait(timeout=10)


@pytest.fixture
def on_redis(own_redis: RedisServer, settings: Any) -> RedisServer:
    """The settings of a deployment with Redis: the cache, the broker and real workers."""
    url, _ = own_redis
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": url}}
    settings.CELERY_BROKER_URL = url
    settings.CELERY_TASK_ALWAYS_EAGER = False
    settings.LEADERBOARD_RECOMPUTE_ON_VOTE = False
    return own_redis


def test_healthz_answers_without_asking_the_database(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("/healthz asked the database")

    monkeypatch.setattr("django.db.backends.utils.CursorWrapper.execute", refuse)
    response = client.get("/healthz")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


def test_in_the_embedded_default_the_broker_and_the_worker_are_not_used(
    db: None, client: Client, settings: Any
) -> None:
    settings.CELERY_TASK_ALWAYS_EAGER = True  # as without REDIS_URL
    settings.READYZ_REQUIRED = ALL
    status, body = ready(client)
    assert status == 200 and body["status"] == "ok"
    assert states(body) == {
        "database": "ok",
        "cache": "ok",
        "broker": "not used",
        "worker": "not used",
        "snapshot": "ok",
    }
    assert all(check["required"] for check in body["checks"].values())


def test_an_unreachable_database_fails_readiness_quickly(
    db: None, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed = free_port()  # nothing listens there
    unreachable = ConnectionHandler(
        {
            "default": {
                "ENGINE": "django.db.backends.postgresql",
                "HOST": "127.0.0.1",
                "PORT": closed,
                "NAME": "arena",
                "USER": "arena",
                "OPTIONS": {"connect_timeout": 2},
            }
        }
    )
    monkeypatch.setattr(health, "connections", unreachable)
    started = time.monotonic()
    status, body = ready(client)
    assert time.monotonic() - started < 5
    assert status == 503 and body["status"] == "unready"
    assert body["checks"]["database"] == {"state": "OperationalError", "required": True}
    assert client.get("/healthz").status_code == 200


def test_a_board_no_recompute_caught_up_with_is_stale(
    db: None, client: Client, settings: Any, make_llm: Callable[..., LLM]
) -> None:
    settings.LEADERBOARD_RECOMPUTE_ON_VOTE = False
    settings.LEADERBOARD_BOOTSTRAP = 10
    settings.READYZ_SNAPSHOT_SECONDS = 600
    settings.READYZ_REQUIRED = ALL
    settings.CELERY_TASK_ALWAYS_EAGER = True  # no worker here: the board alone decides
    a, b = make_llm(), make_llm()
    vote = voted_battle(a, b, "a")
    assert ready(client)[0] == 200  # the vote is new: not late yet
    Vote.objects.filter(pk=vote.pk).update(created=timezone.now() - timedelta(minutes=11))
    status, body = ready(client)
    assert status == 503 and body["checks"]["snapshot"]["state"] == "stale"
    assert body["checks"]["snapshot"]["lag_seconds"] >= 660
    services.recompute_all()
    status, body = ready(client)
    assert status == 200 and body["checks"]["snapshot"] == {"state": "ok", "lag_seconds": 0, "required": True}


def test_a_late_board_that_is_not_required_is_reported_and_not_refused(
    db: None, client: Client, settings: Any, make_llm: Callable[..., LLM]
) -> None:
    settings.LEADERBOARD_RECOMPUTE_ON_VOTE = False
    settings.READYZ_REQUIRED = ["database", "cache", "broker"]
    vote = voted_battle(make_llm(), make_llm(), "b")
    Vote.objects.filter(pk=vote.pk).update(created=timezone.now() - timedelta(days=1))
    status, body = ready(client)
    assert status == 200
    assert body["checks"]["snapshot"]["state"] == "stale" and not body["checks"]["snapshot"]["required"]


def test_with_redis_stopped_the_cache_and_the_broker_fail(
    db: None, client: Client, on_redis: RedisServer, settings: Any
) -> None:
    _, server = on_redis
    settings.READYZ_REQUIRED = ["database", "cache", "broker"]
    status, body = ready(client)
    assert status == 200, body
    assert states(body)["cache"] == states(body)["broker"] == "ok"
    server.terminate()
    server.wait(timeout=10)
    started = time.monotonic()
    status, body = ready(client)
    assert time.monotonic() - started < 5
    assert status == 503
    assert states(body)["cache"] == "ConnectionError"
    assert states(body)["broker"] == "ConnectionError"
    assert states(body)["database"] == "ok"
    assert client.get("/healthz").status_code == 200


def test_a_live_worker_is_ready_and_a_killed_one_goes_stale(
    db: None, client: Client, on_redis: RedisServer, settings: Any, tmp_path: Path
) -> None:
    url, _ = on_redis
    settings.READYZ_WORKER_SECONDS = 3
    settings.READYZ_REQUIRED = ALL
    status, body = ready(client)
    assert status == 503 and states(body)["worker"] == "no heartbeat"
    environ = {
        **os.environ,
        "REDIS_URL": url,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'worker.sqlite3'}",
        "READYZ_WORKER_SECONDS": "3",
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "worker", "--pool=solo", "--loglevel=WARNING"],
        cwd=ROOT,
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while states(ready(client)[1])["worker"] != "ok":
            assert worker.poll() is None and time.monotonic() < deadline, "no heartbeat from the worker"
            time.sleep(0.2)
        assert ready(client)[0] == 200
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
        time.sleep(3.5)
        status, body = ready(client)
        assert status == 503
        assert body["checks"]["worker"]["state"] == "stale" and body["checks"]["worker"]["age_seconds"] > 3
    finally:
        if worker.poll() is None:
            worker.kill()
        output, _ = worker.communicate(timeout=10)
    assert "Traceback" not in output, output
