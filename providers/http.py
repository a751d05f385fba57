"""The one httpx seam: every vendor call goes through the client made here.

Tests replace nothing in this module; they point a model's base_url at a fake upstream on a real
socket (`tests.upstream`).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from weakref import WeakKeyDictionary

import httpx
from django.conf import settings

from providers.base import CallSpec
from providers.models import LLM

# Each battle holds two streams open for up to UPSTREAM_TOTAL_TIMEOUT, so a busy web worker keeps
# hundreds of connections at once; keep-alive spares a TLS handshake on every call to a vendor.
# httpcore's pool walks every connection it holds on each request and on each response's end (and
# its idle check is quadratic), so one pool holding a thousand streams spent more time on that
# bookkeeping than on the streams. The loop's client spreads its calls over several small pools:
# POOL_FILL calls in flight per pool, POOLS pools, then the least busy pool takes the overflow.
POOLS = 32
POOL_FILL = 64
LIMITS = httpx.Limits(max_connections=2 * POOL_FILL, max_keepalive_connections=32, keepalive_expiry=30)

# An AsyncClient's connections belong to the event loop that opened them: sharing one client
# across loops (tests run several, each `asyncio.run` makes one) fails with "attached to a
# different loop". So one client per running loop.
_clients: WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = WeakKeyDictionary()
# Loops of several threads (the ASGI server's, a test's) may ask at once.
_lock = threading.Lock()


def client() -> httpx.AsyncClient:
    """The shared client of the running event loop; made on first use.

    No default timeout: each call sets its own from its `CallSpec`.
    """
    loop = asyncio.get_running_loop()
    with _lock:
        shared = _clients.get(loop)
        if shared is None or shared.is_closed:
            # A client's pooled connections refer to their loop, so a dead loop is never collected
            # from the weak mapping on its own; drop the clients of closed loops here.
            for old in [old for old in _clients if old.is_closed()]:
                del _clients[old]
            shared = httpx.AsyncClient(transport=Pools(), timeout=None, follow_redirects=False)
            _clients[loop] = shared
        return shared


class Pools(httpx.AsyncBaseTransport):
    """Connection pools filled one after the other: the first pool with room takes the call.

    Filling rather than rotating keeps a quiet worker's calls on one pool, whose kept-alive
    connections they reuse; rotating would spread them so thin that every call paid a handshake.
    """

    def __init__(self) -> None:
        # Loading the CA certificates takes milliseconds: once for all the pools.
        self._ssl = httpx.create_ssl_context()
        self._pools: list[httpx.AsyncHTTPTransport] = []  # made when first needed
        self._busy: list[int] = []

    def _pick(self) -> int:
        for n, busy in enumerate(self._busy):
            if busy < POOL_FILL:
                return n
        if len(self._pools) < POOLS:
            self._pools.append(httpx.AsyncHTTPTransport(verify=self._ssl, limits=LIMITS))
            self._busy.append(0)
            return len(self._pools) - 1
        return min(range(POOLS), key=self._busy.__getitem__)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        n = self._pick()
        self._busy[n] += 1
        try:
            response = await self._pools[n].handle_async_request(request)
        except BaseException:
            self._busy[n] -= 1
            raise
        response.stream = _Counted(response.stream, self._busy, n)  # type: ignore[arg-type]
        return response

    async def aclose(self) -> None:
        for pool in self._pools:
            await pool.aclose()


class _Counted(httpx.AsyncByteStream):
    """A response body that gives its pool's slot back when it is closed."""

    def __init__(self, stream: httpx.AsyncByteStream, busy: list[int], n: int) -> None:
        self._stream = stream
        self._busy = busy
        self._n = n
        self._open = True

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._stream.__aiter__()  # the body itself: no layer of our own on every read

    async def aclose(self) -> None:
        if self._open:
            self._open = False
            self._busy[self._n] -= 1
        await self._stream.aclose()


async def close_client() -> None:
    """Close the running loop's client, if it has one (end of a test, or of a worker's loop)."""
    with _lock:
        shared = _clients.pop(asyncio.get_running_loop(), None)
    if shared is not None:
        await shared.aclose()


def call_spec(llm: LLM) -> CallSpec:
    """Everything one call to `llm` needs, read now: the key comes from the environment each time."""
    return CallSpec(
        backend=llm.backend,
        base_url=llm.base_url,
        model=llm.model,
        api_key=llm.api_key(),
        temperature=llm.temperature,
        max_tokens=llm.max_tokens,
        connect_timeout=settings.UPSTREAM_CONNECT_TIMEOUT,
        first_token_timeout=settings.UPSTREAM_FIRST_TOKEN_TIMEOUT,
        total_timeout=settings.UPSTREAM_TOTAL_TIMEOUT,
        options={"delay": settings.DEMO_TOKEN_DELAY},
    )
