"""How the web process serves requests (config/handlers.py): synchronous views in one call on a
thread of a fixed pool, a few at a time; asynchronous views on the event loop."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.contrib.sessions.middleware import SessionMiddleware
from django.core import signals
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.test import override_settings
from django.urls import path
from django.utils.deprecation import MiddlewareMixin

from config import handlers
from config.handlers import AsyncViews, PooledThreads
from tests.asgi import get_scope

pytestmark = pytest.mark.urls(__name__)

REPO = Path(__file__).resolve().parents[1]

# --- views of this module's URL configuration ------------------------------------------------------

seen: dict[str, Any] = {}  # what the views saw, by request
gates: dict[str, threading.Event] = {}  # a gated request answers once its event is set


def thread_view(request: HttpRequest) -> HttpResponse:
    seen.setdefault("view", []).append(threading.get_ident())
    return HttpResponse(str(threading.get_ident()))


def gated_view(request: HttpRequest, name: str) -> HttpResponse:
    seen.setdefault("inside", []).append(name)
    try:
        assert gates.setdefault(name, threading.Event()).wait(10), f"{name} never let through"
    finally:
        seen["inside"].remove(name)
    return HttpResponse(name)


def download_view(request: HttpRequest) -> StreamingHttpResponse:
    seen["view"] = [threading.get_ident()]

    def lines() -> Iterator[str]:
        try:
            for n in range(10):
                seen.setdefault("lines", []).append((n, threading.get_ident()))
                if n == 5:  # the rest waits until the test lets it through
                    assert gates.setdefault("rest", threading.Event()).wait(10)
                yield f"line {n}\n"
        finally:
            seen["closed_on"] = threading.get_ident()

    return StreamingHttpResponse(lines(), content_type="text/plain")


def small_download_view(request: HttpRequest) -> StreamingHttpResponse:
    seen.setdefault("view", []).append(threading.get_ident())
    return StreamingHttpResponse(iter(["a\n", "b\n"]), content_type="text/plain")


async def async_view(request: HttpRequest) -> HttpResponse:
    return HttpResponse(str(threading.get_ident()))


urlpatterns = [
    path("thread", thread_view),
    path("gated/<str:name>", gated_view),
    path("download", download_view),
    path("small", small_download_view),
    path("async", async_view),
]


@pytest.fixture(autouse=True)
def _clean() -> Iterator[None]:
    seen.clear()
    gates.clear()
    yield
    for gate in gates.values():  # never leave a pool thread waiting
        gate.set()


# --- an ASGI client -------------------------------------------------------------------------------------


class Exchange:
    """One request to an ASGI app: what it sent back, and a way to hang up."""

    def __init__(self, app: Any, route: str, host: bytes = b"testserver") -> None:
        self.messages: list[dict[str, Any]] = []
        self.hung_up = asyncio.Event()
        self._requested = False
        self.task = asyncio.ensure_future(app(get_scope(route, host), self.receive, self.send))

    async def receive(self) -> dict[str, Any]:
        if not self._requested:
            self._requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await self.hung_up.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        self.messages.append(message)

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.messages if m["type"] == "http.response.body")

    @property
    def status(self) -> int | None:
        return next((m["status"] for m in self.messages if m["type"] == "http.response.start"), None)


async def until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, f"never: {what}"
        await asyncio.sleep(0.005)


def app(threads: int) -> handlers.Router:
    return handlers.application(threads=threads)


# --- tests ------------------------------------------------------------------------------------------------


def test_a_synchronous_request_runs_its_signals_and_view_in_one_pooled_thread_reused_by_the_next() -> None:
    def record(name: str) -> Callable[..., None]:
        def receiver(**kwargs: Any) -> None:
            seen.setdefault(name, []).append(threading.get_ident())

        return receiver

    started, finished = record("started"), record("finished")
    signals.request_started.connect(started)
    signals.request_finished.connect(finished)
    try:

        async def scenario() -> None:
            server = app(threads=1)
            for _ in range(3):
                exchange = Exchange(server, "/thread")
                await exchange.task
                assert exchange.status == 200
            seen["loop"] = threading.get_ident()

        asyncio.run(scenario())
    finally:
        signals.request_started.disconnect(started)
        signals.request_finished.disconnect(finished)
    assert len(set(seen["view"])) == 1, "one thread served all three requests"
    assert seen["started"] == seen["finished"] == seen["view"]
    assert seen["view"][0] != seen["loop"]


def test_at_most_pool_size_synchronous_requests_are_worked_on_and_the_rest_wait_in_order() -> None:
    async def scenario() -> None:
        server = app(threads=2)
        exchanges = []
        for n in range(5):
            exchanges.append(Exchange(server, f"/gated/r{n}"))
            await asyncio.sleep(0)  # arrival order
        inside = lambda: sorted(seen.get("inside", []))  # noqa: E731
        await until(lambda: inside() == ["r0", "r1"], "r0 and r1 worked on")
        await asyncio.sleep(0.05)
        assert inside() == ["r0", "r1"], "no third request while two are in progress"

        gates.setdefault("r1", threading.Event()).set()
        await until(lambda: inside() == ["r0", "r2"], "r2 takes r1's place")
        for name in ("r0", "r2", "r3", "r4"):
            gates.setdefault(name, threading.Event()).set()
        await asyncio.gather(*(e.task for e in exchanges))
        assert [e.body for e in exchanges] == [f"r{n}".encode() for n in range(5)]

    asyncio.run(scenario())


def test_a_streamed_body_is_read_on_its_views_thread_a_piece_at_a_time_and_holds_no_place(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(handlers, "PIECE_BYTES", 14)  # two lines a piece

    async def scenario() -> None:
        server = app(threads=1)
        download = Exchange(server, "/download")
        await until(lambda: len(seen.get("lines", [])) == 6, "the download waits after six lines")
        pieces = [m["body"] for m in download.messages if m.get("body")]
        assert pieces == [b"line 0\nline 1\n", b"line 2\nline 3\n"], "sent before the body ends"

        quick = Exchange(server, "/thread")  # the pool's one place is free again
        await asyncio.wait_for(quick.task, 10)
        assert quick.status == 200

        gates["rest"].set()
        await asyncio.wait_for(download.task, 10)
        assert download.body == b"".join(f"line {n}\n".encode() for n in range(10))
        assert download.messages[-1] == {"type": "http.response.body"}

    asyncio.run(scenario())
    view_thread = seen["view"][0]
    assert {thread for _, thread in seen["lines"]} == {view_thread}
    assert seen["closed_on"] == view_thread


def test_a_streamed_body_shorter_than_a_piece_is_read_at_once_and_keeps_its_thread_in_the_pool() -> None:
    async def scenario() -> list[Exchange]:
        server = app(threads=1)
        exchanges = []
        for route in ("/small", "/thread"):
            exchanges.append(Exchange(server, route))
            await asyncio.wait_for(exchanges[-1].task, 10)
        return exchanges

    small, after = asyncio.run(scenario())
    assert after.status == 200
    assert small.body == b"a\nb\n"
    assert seen["view"][0] == seen["view"][1], "the next request is served by the same thread"


def test_a_streamed_body_stops_being_read_when_the_client_goes_away(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(handlers, "PIECE_BYTES", 14)

    async def scenario() -> None:
        download = Exchange(app(threads=1), "/download")
        await until(lambda: len(seen.get("lines", [])) == 6, "six lines read")
        download.hung_up.set()
        await asyncio.wait_for(download.task, 10)
        gates["rest"].set()  # the line being read when the client left ends; no other is read
        await until(lambda: "closed_on" in seen, "the body closed")

    asyncio.run(scenario())
    assert len(seen["lines"]) == 6
    assert seen["closed_on"] == seen["view"][0]


def test_asynchronous_views_and_their_signals_run_on_the_event_loop_behind_the_header_middleware() -> None:
    threads: dict[str, int] = {}

    def started(**kwargs: Any) -> None:
        threads["started"] = threading.get_ident()

    def finished(**kwargs: Any) -> None:
        threads["finished"] = threading.get_ident()

    signals.request_started.connect(started)
    signals.request_finished.connect(finished)
    try:

        async def scenario() -> Exchange:
            exchange = Exchange(app(threads=1), "/async")
            await exchange.task
            threads["loop"] = threading.get_ident()
            return exchange

        exchange = asyncio.run(scenario())
    finally:
        signals.request_started.disconnect(started)
        signals.request_finished.disconnect(finished)
    assert exchange.body == str(threads["loop"]).encode()
    assert threads["started"] == threads["finished"] == threads["loop"]
    headers = dict(exchange.messages[0]["headers"])
    assert headers[b"X-Frame-Options"] == b"DENY"
    assert headers[b"X-Content-Type-Options"] == b"nosniff"
    assert headers[b"Referrer-Policy"] == b"same-origin"


def test_an_asynchronous_view_refuses_a_host_not_allowed() -> None:
    async def scenario() -> Exchange:
        exchange = Exchange(app(threads=1), "/async", host=b"evil.example")
        await exchange.task
        return exchange

    exchange = asyncio.run(scenario())
    assert exchange.status == 400


@override_settings(ASYNC_VIEW_MIDDLEWARE=["django.middleware.csrf.CsrfViewMiddleware"])
def test_middleware_with_view_hooks_cannot_run_inline() -> None:
    with pytest.raises(ImproperlyConfigured, match=r"CsrfViewMiddleware\.process_view"):
        AsyncViews()


def test_the_inline_middleware_are_those_of_the_full_list_in_its_order() -> None:
    full = list(settings.MIDDLEWARE)
    assert [full.index(name) for name in settings.ASYNC_VIEW_MIDDLEWARE] == sorted(
        full.index(name) for name in settings.ASYNC_VIEW_MIDDLEWARE
    )


def test_an_unknown_address_is_answered_by_the_pool() -> None:
    async def scenario() -> int | None:
        exchange = Exchange(app(threads=1), "/nowhere")
        await exchange.task
        return exchange.status

    assert asyncio.run(scenario()) == 404


def test_a_pool_without_threads_is_refused() -> None:
    with pytest.raises(ValueError, match="0 threads"):
        PooledThreads(0)


def test_the_pools_middleware_run_in_sync_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    """No per-middleware thread hops: every MiddlewareMixin of the pool's chain is in sync mode."""
    made: list[MiddlewareMixin] = []
    original = MiddlewareMixin.__init__

    def recording(self: MiddlewareMixin, get_response: Any) -> None:
        original(self, get_response)
        made.append(self)

    monkeypatch.setattr(MiddlewareMixin, "__init__", recording)
    PooledThreads(1)
    assert any(isinstance(m, SessionMiddleware) for m in made)
    assert [type(m).__name__ for m in made if m.async_mode] == []


def test_the_web_process_loads_every_view_module_before_its_first_request() -> None:
    code = "import sys, config.asgi; print('leaderboard.views' in sys.modules, 'scipy' in sys.modules)"
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings", "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "True"]
