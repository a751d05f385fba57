"""What the web process's ASGI application (config/asgi.py, Django's own handler) does for a client."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.http import HttpRequest, StreamingHttpResponse
from django.urls import path
from httpx_sse import connect_sse

from config.asgi import application
from providers.models import LLM
from tests.asgi import get_scope

REPO = Path(__file__).resolve().parents[1]

# --- a download, for the tests that serve this module's URL configuration ------------------------

lines_made: list[int] = []
closed: list[bool] = []
let_through = asyncio.Event()


async def download_view(request: HttpRequest) -> StreamingHttpResponse:
    async def lines() -> AsyncIterator[str]:
        try:
            for n in range(10):
                lines_made.append(n)
                if n == 5:  # the rest waits until the test lets it through
                    await let_through.wait()
                yield f"line {n}\n"
        finally:
            closed.append(True)

    return StreamingHttpResponse(lines(), content_type="text/plain")


urlpatterns = [path("download", download_view)]


# --- an ASGI client ---------------------------------------------------------------------------------


class Exchange:
    """One request to the application: what it sent back, and a way to hang up."""

    def __init__(self, route: str, host: bytes = b"testserver") -> None:
        self.messages: list[dict[str, Any]] = []
        self.hung_up = asyncio.Event()
        self._requested = False
        self.task = asyncio.ensure_future(application(get_scope(route, host), self.receive, self.send))

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


def answered(route: str, host: bytes = b"testserver") -> Exchange:
    async def scenario() -> Exchange:
        exchange = Exchange(route, host)
        await asyncio.wait_for(exchange.task, 10)
        return exchange

    return asyncio.run(scenario())


async def until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, f"never: {what}"
        await asyncio.sleep(0.005)


# --- tests ------------------------------------------------------------------------------------------


def test_an_answer_stream_is_sent_with_the_security_headers(
    live_asgi: str, make_llm: Callable[..., LLM], settings: Any
) -> None:
    settings.DEMO_TOKEN_DELAY = 0
    make_llm(), make_llm()
    with httpx.Client(base_url=live_asgi, timeout=30) as web:
        created = web.post("/api/v1/battles/", json={"prompt": "Why is the sky blue?"})
        assert created.status_code == 201, created.text
        with connect_sse(web, "GET", f"/api/v1/battles/{created.json()['id']}/stream") as source:
            events = [sse.data for sse in source.iter_sse()]
            headers = source.response.headers
    assert headers["content-type"].startswith("text/event-stream")
    assert '"type":"end"' in events[-1]
    assert headers["x-frame-options"] == "DENY"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "same-origin"


@pytest.mark.django_db
def test_a_host_not_allowed_is_refused() -> None:
    assert answered("/api/v1/battles/abc/stream", host=b"evil.example").status == 400


@pytest.mark.django_db
def test_an_unknown_address_is_a_404() -> None:
    assert answered("/nowhere").status == 404


@pytest.mark.urls(__name__)
def test_a_streamed_body_is_sent_as_it_is_made_and_stops_when_the_client_goes_away() -> None:
    lines_made.clear()
    closed.clear()

    async def scenario() -> Exchange:
        let_through.clear()
        download = Exchange("/download")
        await until(lambda: len(lines_made) == 6, "the download waits after six lines")
        await until(lambda: download.body == b"".join(f"line {n}\n".encode() for n in range(5)), "sent")
        download.hung_up.set()
        await asyncio.wait_for(download.task, 10)
        let_through.set()
        await asyncio.sleep(0.05)
        return download

    download = asyncio.run(scenario())
    assert download.status == 200
    assert lines_made == [0, 1, 2, 3, 4, 5], "no line is made after the client left"
    assert closed == [True]


def test_the_web_process_loads_every_view_module_before_its_first_request() -> None:
    code = "import sys, config.asgi; print('leaderboard.views' in sys.modules, 'scipy' in sys.modules)"
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings", "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "True"]
