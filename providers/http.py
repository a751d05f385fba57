"""The one httpx seam: every vendor call goes through the client made here.

Tests replace nothing in this module; they point a model's base_url at a fake upstream on a real
socket (`tests.upstream`).
"""

from __future__ import annotations

import asyncio
import errno
import functools
import ipaddress
import socket
import ssl
import threading
from collections.abc import AsyncIterator, Callable
from weakref import WeakKeyDictionary

import aiohttp
import httpx
from aiohttp import AddrInfoType
from django.conf import settings

from providers.base import PUBLIC_ONLY, CallSpec
from providers.models import LLM

# A client's pooled connections belong to the event loop that opened them, and tests run several
# loops in one process: one client per loop, with the task that closes it when the loop ends.
_clients: WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[httpx.AsyncClient, asyncio.Task[None]]] = (
    WeakKeyDictionary()
)
_lock = threading.Lock()  # the ASGI server's loop and a test's may ask at once


def client() -> httpx.AsyncClient:
    """The running event loop's client, made on first use.

    No default time-out: each call sets its own from its `CallSpec`. Keep-alive spares a TLS
    handshake on each call to a vendor.
    """
    loop = asyncio.get_running_loop()
    with _lock:
        if loop not in _clients:
            shared = httpx.AsyncClient(transport=AiohttpTransport(), timeout=None, follow_redirects=False)
            _clients[loop] = (shared, loop.create_task(_close_at_loop_end(loop, shared)))
        return _clients[loop][0]


async def _close_at_loop_end(loop: asyncio.AbstractEventLoop, shared: httpx.AsyncClient) -> None:
    """Close `shared` once cancelled, as `asyncio.run` (and so uvicorn and asgiref) cancels every
    task of its loop before closing it: its connections do not outlive their loop."""
    try:
        await loop.create_future()
    finally:
        with _lock:
            _clients.pop(loop, None)
        await shared.aclose()


async def close_client() -> None:
    """Close the running loop's client now, if it has one (the end of a test's loop)."""
    made = _clients.get(asyncio.get_running_loop())
    if made is not None:
        closer = made[1]
        closer.cancel()
        await asyncio.wait([closer])


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    """Loading the CA certificates takes milliseconds: once for every loop's client."""
    return httpx.create_ssl_context()


def public_socket(addr_info: AddrInfoType) -> socket.socket:
    """A socket for one connection attempt, refused unless its address is on the public internet.

    aiohttp asks for a socket for every address it is about to connect to, after resolving the
    name: a provider's host that answered a public address when submitted and a private one now
    (DNS rebinding), or an address written in the URL, is refused at this connection, not only at
    submission. Kept-alive connections were checked when they were opened.
    """
    family, kind, proto, _, sockaddr = addr_info
    if not is_public(str(sockaddr[0])):
        raise OSError(errno.EACCES, f"{sockaddr[0]} is not a public address")
    return socket.socket(family, kind, proto)


def is_public(address: str) -> bool:
    """Whether an IP address is on the public internet: not private, loopback, link-local, ..."""
    return ipaddress.ip_address(address.split("%", 1)[0]).is_global  # "%eth0": an IPv6 zone


# aiohttp's errors as the httpx errors the adapters tell apart: the first of an error's classes found here.
_ERRORS: dict[type[Exception], type[httpx.TransportError]] = {
    aiohttp.ConnectionTimeoutError: httpx.ConnectTimeout,  # connecting, or waiting for a connection
    aiohttp.SocketTimeoutError: httpx.ReadTimeout,
    aiohttp.ServerTimeoutError: httpx.TimeoutException,
    aiohttp.ClientConnectorError: httpx.ConnectError,  # refused, unresolvable, TLS rejected
    aiohttp.ServerDisconnectedError: httpx.RemoteProtocolError,  # a kept-alive connection closed
    aiohttp.ClientPayloadError: httpx.ReadError,  # the body cut short, or not valid HTTP
    aiohttp.ClientResponseError: httpx.RemoteProtocolError,  # not an HTTP response
    aiohttp.ClientError: httpx.ReadError,  # reset
}


def _httpx_error(exc: aiohttp.ClientError, request: httpx.Request) -> httpx.TransportError:
    error = next(_ERRORS[kind] for kind in type(exc).__mro__ if kind in _ERRORS)
    return error(str(exc) or type(exc).__name__, request=request)


class AiohttpTransport(httpx.AsyncBaseTransport):
    """httpx's requests sent by aiohttp, through the documented interfaces of both.

    httpx's own transport (pure-Python h11 under httpcore and anyio) spends several times aiohttp's
    CPU per streamed event, and the relay reads tens of thousands a second (bench/transport.py).

    A request with the PUBLIC_ONLY extension goes through a pool of its own whose every connection
    goes to a public address (`public_socket`): calls to providers' variants. The operator's own
    registry may point at private hosts (a vLLM server on the local network) on purpose.
    """

    def __init__(self) -> None:
        self._session = _session(socket_factory=None)
        self._public_session = _session(socket_factory=public_socket)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeout = request.extensions.get("timeout", {})
        session = self._public_session if request.extensions.get(PUBLIC_ONLY) else self._session
        try:
            response = await session.request(
                request.method,
                str(request.url),
                headers=request.headers.multi_items(),
                data=await request.aread() or None,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(
                    connect=timeout.get("pool"),
                    sock_connect=timeout.get("connect"),
                    sock_read=timeout.get("read"),
                ),
            )
        except aiohttp.ClientError as exc:
            raise _httpx_error(exc, request) from exc
        return httpx.Response(
            response.status,
            headers=response.raw_headers,
            stream=_Body(response, request),
            extensions={"http_version": b"HTTP/1.1"},
        )

    async def aclose(self) -> None:
        await self._session.close()
        await self._public_session.close()


def _session(*, socket_factory: Callable[[AddrInfoType], socket.socket] | None) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(
        limit=settings.UPSTREAM_MAX_CONNECTIONS,
        limit_per_host=0,
        keepalive_timeout=settings.UPSTREAM_KEEPALIVE_EXPIRY,
        ssl=_ssl_context(),
        socket_factory=socket_factory,
    )
    # httpx decodes the body by its Content-Encoding: aiohttp passes it on as it came.
    return aiohttp.ClientSession(connector=connector, auto_decompress=False)


class _Body(httpx.AsyncByteStream):
    """A response body as aiohttp reads it: all the bytes that arrived together, in one piece."""

    def __init__(self, response: aiohttp.ClientResponse, request: httpx.Request) -> None:
        self._response = response
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for piece in self._response.content.iter_any():
                yield piece
        except aiohttp.ClientError as exc:
            raise _httpx_error(exc, self._request) from exc

    async def aclose(self) -> None:
        # Back to the pool when the body was read to its end; closed otherwise.
        self._response.release()


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
        public_only=llm.is_variant and not settings.PROVIDER_ALLOW_PRIVATE_URLS,
    )
