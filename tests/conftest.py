from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from django.core.cache import cache

from config import asgi, po
from providers.models import LLM

pytest_plugins = ["tests.network", "tests.skips", "tests.upstream", "tests.vendor_upstreams"]


def pytest_sessionstart(session: pytest.Session) -> None:
    # The translations, compiled where a .mo is missing or older than its .po: `make test` does it
    # too, but a single test file run straight from pytest must not see an English-only interface.
    po.compile_all(Path(__file__).resolve().parent.parent / "locale")


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    # Throttle counters and the recompute lock live in the cache (Redis in CI): start each test clean.
    cache.clear()
    yield


@pytest.fixture(autouse=True)
def _ready_without_a_worker(settings: Any) -> None:
    # No worker runs beside the tests' servers unless a test starts one (tests/test_health.py, which
    # requires each check itself): /readyz asks of them what a web pod's probe asks.
    settings.READYZ_REQUIRED = ["database", "cache", "broker"]


@pytest.fixture(autouse=True)
def _consent_not_required(settings: Any) -> None:
    # The consent gate has its own tests (tests/arena/test_visitors.py), which switch it back on;
    # every other test opens battles as a visitor who has accepted.
    settings.ARENA_REQUIRE_CONSENT = False


@pytest.fixture(autouse=True)
def _gate_open(settings: Any) -> None:
    # The suite exercises battles, not the gate in front of them (tests/arena/test_gate.py does):
    # no challenge, caps no test reaches, and any reading speed.
    settings.ARENA_CHALLENGE = "off"
    for cap in (
        "ARENA_VOTES_PER_VISITOR_DAY",
        "ARENA_VOTES_PER_NETWORK_DAY",
        "ARENA_BATTLES_PER_VISITOR_HOUR",
        "ARENA_BATTLES_PER_NETWORK_HOUR",
        "ARENA_OPEN_BATTLES_PER_VISITOR",
        "ARENA_OPEN_BATTLES_PER_NETWORK",
    ):
        setattr(settings, cap, 1_000_000)
    settings.ARENA_READING_CHARS_PER_SECOND = 1e9


@pytest.fixture
def make_llm(db: None) -> Callable[..., LLM]:
    counter = iter(range(1, 10_000))

    def make(**fields: Any) -> LLM:
        n = next(counter)
        values: dict[str, Any] = {
            "name": f"model-{n}",
            "display_name": f"Model {n}",
            "organization": f"Org {n}",
            "backend": LLM.Backend.DEMO,
            "model": "concise",
        }
        values.update(fields)
        return LLM.objects.create(**values)

    return make


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def live_asgi(transactional_db: None) -> Iterator[str]:
    """The project's ASGI application (config/asgi.py) served by a real uvicorn on 127.0.0.1, in a
    thread of this process.

    Same process, so `settings` overrides apply; rows must be committed (transactional_db) for
    the server's threads to see them.
    """
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            asgi.application,
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="off",
            loop="asyncio",  # the loop whose connections tests/network.py keeps on this machine
            proxy_headers=False,  # as `make run` and gunicorn: only Django reads X-Forwarded-For
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)
