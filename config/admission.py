"""How many requests one server process works on at once.

Django runs each request's synchronous part (DRF views, the ORM) on a thread of its own. A burst of
250 battles opened at once made 250 threads, all runnable, sharing one interpreter lock with the
event loop that relays every open stream: each request then took as long as the whole burst
(processor sharing), the loop starved, and SQLite writers slept in their busy handler
(bench/streaming.py, Gradio load: battle creation p50 3.4 s). Admitting a few at a time serves the
burst in arrival order: the first battles stream at once, the loop keeps its share, and the total
work is the same.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any
from weakref import WeakKeyDictionary

Scope = dict[str, Any]


class ProcessingLimit:
    """ASGI middleware: at most `limit` HTTP requests in progress; the rest wait their turn.

    A request holds its place until its response starts, not until it ends: a streamed response,
    whose body flows for minutes without a thread, gives its place back as soon as its headers go.
    Requests for which `exempt(scope)` is true never wait.
    """

    def __init__(self, app: Any, limit: int, exempt: Callable[[Scope], bool] = lambda scope: False) -> None:
        self.app = app
        self.limit = limit
        self.exempt = exempt
        # One semaphore per event loop: a semaphore belongs to the loop that first waits on it, and
        # tests run servers on several loops in one process.
        self._places: WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = WeakKeyDictionary()

    def _semaphore(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        places = self._places.get(loop)
        if places is None:
            places = self._places[loop] = asyncio.Semaphore(self.limit)
        return places

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or self.limit <= 0 or self.exempt(scope):
            await self.app(scope, receive, send)
            return
        places = self._semaphore()
        await places.acquire()
        held = True

        async def send_releasing(message: dict[str, Any]) -> None:
            nonlocal held
            if held and message["type"] == "http.response.start":
                held = False
                places.release()
            await send(message)

        try:
            await self.app(scope, receive, send_releasing)
        finally:
            if held:
                places.release()
