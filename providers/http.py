"""The one httpx seam: every vendor call goes through the client made here.

Tests replace nothing in this module; they point a model's base_url at a fake upstream on a real
socket (`tests.upstream`).
"""

from __future__ import annotations

import asyncio
import functools
import ssl
import threading
from weakref import WeakKeyDictionary

import aiohttp
import httpx
from aiohttp.client_proto import ResponseHandler
from aiohttp.http_exceptions import HttpProcessingError
from django.conf import settings
from httpx_aiohttp import AiohttpTransport

from providers.base import CallSpec
from providers.models import LLM

# Each battle holds two streams open for up to UPSTREAM_TOTAL_TIMEOUT, so a busy web worker keeps
# hundreds of connections at once (room here for a thousand streams, twice over); keep-alive spares
# a TLS handshake on every call to a vendor. aiohttp keeps every idle connection for
# `keepalive_expiry` seconds: it has no cap on how many (max_keepalive_connections is not used).
LIMITS = httpx.Limits(max_connections=2048, keepalive_expiry=30)

# An AsyncClient's connections belong to the event loop that opened them: sharing one client
# across loops (tests run several, each `asyncio.run` makes one) fails with "attached to a
# different loop". So one client per running loop, and with it the task that closes it at the
# loop's end (`_close_at_loop_end`); a loop holds its tasks only weakly, so they are held here.
_clients: WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = WeakKeyDictionary()
_closers: WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Task[None]] = WeakKeyDictionary()
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
                _closers.pop(old, None)
            transport = Transport(verify=_ssl_context(), limits=LIMITS)
            shared = httpx.AsyncClient(transport=transport, timeout=None, follow_redirects=False)
            _clients[loop] = shared
            _closers[loop] = loop.create_task(_close_at_loop_end(shared))
        return shared


async def _close_at_loop_end(shared: httpx.AsyncClient) -> None:
    """Close `shared` once cancelled: `asyncio.run` (and so uvicorn and asgiref) cancels every task
    of its loop before closing it.

    aiohttp logs an error for every session that was never closed, and its connections would stay
    open until collected.
    """
    try:
        await asyncio.get_running_loop().create_future()
    finally:
        await shared.aclose()


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    """Loading the CA certificates takes milliseconds: once for every loop's client."""
    return httpx.create_ssl_context()


# aiohttp's errors before the response, as the httpx errors the adapters tell apart: the first of
# an error's classes found here. httpx_aiohttp maps by the httpx class it finds most specific, so
# a refused connection (ClientConnectorError, a ClientConnectionError) comes out as a
# ConnectTimeout; and it lets an answer that is not HTTP through as aiohttp's own error. The
# body's errors it maps right: ReadError for a stream cut short, ReadTimeout for a stalled one.
_ERRORS: dict[type[Exception], type[httpx.TransportError]] = {
    aiohttp.ConnectionTimeoutError: httpx.ConnectTimeout,  # connecting, or waiting for a connection
    aiohttp.SocketTimeoutError: httpx.ReadTimeout,
    aiohttp.ServerTimeoutError: httpx.TimeoutException,
    aiohttp.ClientConnectorError: httpx.ConnectError,  # refused, unresolvable, TLS rejected
    aiohttp.ServerDisconnectedError: httpx.RemoteProtocolError,  # a kept-alive connection closed
    aiohttp.ClientConnectionError: httpx.ReadError,  # reset
    aiohttp.ClientResponseError: httpx.RemoteProtocolError,  # not an HTTP response
    HttpProcessingError: httpx.RemoteProtocolError,
}


class _ResponseHandler(ResponseHandler):
    """aiohttp's connection protocol, also failing the body being read when the response stops
    parsing.

    On bytes that are not HTTP in the middle of a body (a chunk size that is not hexadecimal, say),
    aiohttp 3.14 closes the connection and fails the connection's queue of responses, but not the
    body already handed out, and stops its read time-out: a stream read would wait for the call's
    total time-out. Here it fails with the parser's error at once.
    """

    def set_exception(self, exc: BaseException, *args: BaseException) -> None:
        body = self._payload
        if body is not None and not body.is_eof() and isinstance(exc, HttpProcessingError):
            body.set_exception(aiohttp.ClientPayloadError(f"Response body is not valid HTTP: {exc}"), exc)
        super().set_exception(exc, *args)


class Transport(AiohttpTransport):
    """httpx over aiohttp, its errors mapped as `_ERRORS` says.

    A busy worker reads tens of thousands of events a second, and httpx's own transport (httpcore,
    h11, anyio) spent more CPU time on each than anything else in the process. aiohttp spends a
    third to two thirds as much (bench/transport.py): 500 streams of 100 events a second, which
    httpcore fell behind on two cores, it kept pace with.
    """

    def get_client(self) -> aiohttp.ClientSession:
        session = super().get_client()
        connector = session.connector
        # The connector makes its protocols with this (a private attribute: pinned aiohttp, and
        # tests.providers.test_http checks the behaviour).
        connector._factory = functools.partial(_ResponseHandler, loop=connector._loop)
        return session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return await super().handle_async_request(request)
        except (httpx.TransportError, aiohttp.ClientError, HttpProcessingError) as exc:
            cause = exc.__cause__ if isinstance(exc, httpx.TransportError) else exc
            error = next((_ERRORS[kind] for kind in type(cause).__mro__ if kind in _ERRORS), None)
            if error is None:
                raise
            raise error(str(cause) or type(cause).__name__, request=request) from cause


async def close_client() -> None:
    """Close the running loop's client, if it has one (end of a test, or of a worker's loop)."""
    loop = asyncio.get_running_loop()
    with _lock:
        shared = _clients.pop(loop, None)
        closer = _closers.pop(loop, None)
    if closer is not None:
        closer.cancel()
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
