"""How the web process takes requests in: a bounded number at a time, on one thread each."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from django.contrib.sessions.middleware import SessionMiddleware
from django.core.handlers.asgi import ASGIHandler
from django.utils.deprecation import MiddlewareMixin

from config.admission import ProcessingLimit


class Gate:
    """An ASGI app whose requests wait until the test lets each one answer (or fail)."""

    def __init__(self) -> None:
        self.inside: list[str] = []
        self.most = 0
        self.release: dict[str, asyncio.Future[str]] = {}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope["path"]
        self.inside.append(path)
        self.most = max(self.most, len(self.inside))
        how = await self.release.setdefault(path, asyncio.get_running_loop().create_future())
        if how == "fail":
            self.inside.remove(path)
            raise RuntimeError("view failed")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        self.inside.remove(path)  # the body may flow for minutes: the place is given back already
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def request(app: Any, path: str, sent: list[dict[str, Any]]) -> asyncio.Task[None]:
    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    return asyncio.ensure_future(app({"type": "http", "path": path}, receive, send))


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_at_most_limit_requests_are_worked_on_and_the_rest_wait_in_order() -> None:
    async def scenario() -> None:
        gate = Gate()
        app = ProcessingLimit(gate, 2)
        sent: list[dict[str, Any]] = []
        tasks = [request(app, f"/r{n}", sent) for n in range(5)]
        await settle()
        assert gate.inside == ["/r0", "/r1"]

        gate.release["/r0"].set_result("answer")  # its headers go: r2 takes the place
        await settle()
        assert gate.inside == ["/r1", "/r2"]

        gate.release["/r1"].set_result("fail")  # a failed request gives its place back too
        await settle()
        assert gate.inside == ["/r2", "/r3"]

        for path in ("/r2", "/r3"):
            gate.release[path].set_result("answer")
        await settle()
        gate.release["/r4"].set_result("answer")
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert [type(r).__name__ for r in results] == [
            "NoneType",
            "RuntimeError",
            "NoneType",
            "NoneType",
            "NoneType",
        ]
        assert gate.most == 2

    asyncio.run(scenario())


def test_exempt_requests_never_wait() -> None:
    async def scenario() -> None:
        gate = Gate()
        app = ProcessingLimit(gate, 1, exempt=lambda scope: scope["path"].endswith("/stream"))
        sent: list[dict[str, Any]] = []
        tasks = [request(app, "/busy", sent), request(app, "/waits", sent), request(app, "/b/stream", sent)]
        await settle()
        assert gate.inside == ["/busy", "/b/stream"]
        for path in ("/busy", "/waits", "/b/stream"):
            gate.release.setdefault(path, asyncio.get_running_loop().create_future()).set_result("answer")
            await settle()
        await asyncio.gather(*tasks)

    asyncio.run(scenario())


@pytest.mark.parametrize("limit", [0, -1])
def test_a_limit_of_zero_turns_it_off(limit: int) -> None:
    async def scenario() -> None:
        gate = Gate()
        app = ProcessingLimit(gate, limit)
        tasks = [request(app, f"/r{n}", []) for n in range(3)]
        await settle()
        assert len(gate.inside) == 3
        for future in gate.release.values():
            future.set_result("answer")
        await asyncio.gather(*tasks)

    asyncio.run(scenario())


def test_the_middleware_chain_runs_in_sync_mode_under_asgi(monkeypatch: pytest.MonkeyPatch) -> None:
    """No per-middleware thread hops: every MiddlewareMixin of the chain is in sync mode."""
    made: list[MiddlewareMixin] = []
    original = MiddlewareMixin.__init__

    def recording(self: MiddlewareMixin, get_response: Any) -> None:
        original(self, get_response)
        made.append(self)

    monkeypatch.setattr(MiddlewareMixin, "__init__", recording)
    ASGIHandler()  # loads the middleware for async serving, as uvicorn does
    assert any(isinstance(m, SessionMiddleware) for m in made)
    assert [type(m).__name__ for m in made if m.async_mode] == []
