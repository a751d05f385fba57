"""The one httpx seam: every vendor call goes through the client made here.

Tests replace nothing in this module; they point a model's base_url at a fake upstream on a real
socket (`tests.upstream`).
"""

from __future__ import annotations

import asyncio
import threading
from weakref import WeakKeyDictionary

import httpx
from django.conf import settings

from providers.base import CallSpec
from providers.models import LLM

# Each battle holds two streams open for up to UPSTREAM_TOTAL_TIMEOUT, so a busy web worker keeps
# hundreds of connections at once; keep-alive spares a TLS handshake on every call to a vendor.
LIMITS = httpx.Limits(max_connections=1000, max_keepalive_connections=200, keepalive_expiry=30)

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
            shared = httpx.AsyncClient(limits=LIMITS, timeout=None, follow_redirects=False)
            _clients[loop] = shared
        return shared


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
