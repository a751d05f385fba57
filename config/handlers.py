"""How one web process serves Django under ASGI: no request passes between threads more than once.

Django's own ASGI handler starts a thread for every request (asgiref's ThreadSensitiveContext) and
passes between it and the event loop once for each step: the request_started signal, the
middleware chain with the view, the response's close. Each pass waits for a turn of a loop that may
be relaying hundreds of streams, and each new thread waits to get the interpreter lock from it.
With the chain in sync mode, an asynchronous view made one more pass back to the loop. Here:

- `PooledThreads` serves synchronous views: a request's whole synchronous part runs in one call on
  a thread of a fixed pool, and only reading the body and sending the response run on the loop.
- `AsyncViews` serves asynchronous views (a battle's answer stream) on the loop with no thread at
  all: the few middleware it runs only check the request and set headers, inline.

Under Gradio's load (bench/streaming.py: 250 battles opened at once, their 500 streams relayed by
the same process), creating a battle took p50 9.0 s and p99 19.5 s under Django's handler, and
3.5 s and 10.2 s here; the process spent a third less CPU time on the whole load (15.5 s against
22.4 s). One battle at a time, the answer stream's view began 2.4 ms after its request reached the
application, and here 0.5 ms after.

The pool's size is how many synchronous requests are worked on at once; the rest wait in arrival
order. A burst of 250 battles made 250 threads under Django's handler, all runnable, sharing one
interpreter lock with the loop: each request then took as long as the whole burst and the loop
starved. A few at a time serve the burst in order, with the same total work.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from tempfile import SpooledTemporaryFile
from typing import Any
from weakref import WeakKeyDictionary

import django
from asgiref.sync import iscoroutinefunction
from django.conf import settings
from django.core import signals
from django.core.exceptions import ImproperlyConfigured, RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.core.handlers.base import BaseHandler
from django.core.handlers.exception import convert_exception_to_response
from django.http import FileResponse, HttpRequest, HttpResponseBase
from django.urls import Resolver404, get_resolver, set_script_prefix
from django.utils.module_loading import import_string

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

# A streamed body (a vote download, a static file) is read on its thread this many bytes at a
# time: one pass between the thread and the loop per piece, not per line.
PIECE_BYTES = 64 * 1024


def application(threads: int) -> Router:
    """The project's ASGI application: synchronous requests on `threads` pooled threads."""
    django.setup(set_prefix=False)
    return Router(PooledThreads(threads), AsyncViews())


class Router:
    """Each HTTP request to the handler its view needs.

    Anything else (the lifespan protocol) goes to `AsyncViews`, which refuses it as Django does.
    """

    def __init__(self, pooled: PooledThreads, asynchronous: AsyncViews) -> None:
        self.pooled = pooled
        self.asynchronous = asynchronous

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not _async_view(scope):
            await self.pooled(scope, receive, send)
        else:
            await self.asynchronous(scope, receive, send)


def _async_view(scope: Scope) -> bool:
    path, root = scope["path"], scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    try:
        match = get_resolver().resolve(path)
    except Resolver404:
        return False  # the synchronous side answers with the 404
    return iscoroutinefunction(match.func)


class PooledThreads(ASGIHandler):
    """Synchronous requests, each in one call on one of `size` threads; the others wait their turn.

    A request holds its thread until its response is ready, not while the response is sent. A
    streamed body longer than a piece is read on the thread that ran its view (a database cursor
    belongs to its thread), so that thread leaves the pool for as long as the body flows and a new
    one takes its place: a download lasting minutes holds no place that quick requests wait for.
    """

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"a pool of {size} threads serves nothing")
        BaseHandler.__init__(self)
        self.load_middleware(is_async=False)
        self.size = size
        # Free threads, one queue per event loop: a queue belongs to the loop that first waits on
        # it, and tests run servers on several loops in one process.
        self._free: WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Queue[ThreadPoolExecutor]] = (
            WeakKeyDictionary()
        )

    def _queue(self) -> asyncio.Queue[ThreadPoolExecutor]:
        loop = asyncio.get_running_loop()
        free = self._free.get(loop)
        if free is None:
            free = self._free[loop] = asyncio.Queue()
            for _ in range(self.size):
                free.put_nowait(_thread())
        return free

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            body = await self.read_body(receive)
        except RequestAborted:
            return
        try:
            await self._serve(scope, body, receive, send)
        finally:
            body.close()

    async def _serve(
        self, scope: Scope, body: SpooledTemporaryFile[bytes], receive: Receive, send: Send
    ) -> None:
        loop = asyncio.get_running_loop()
        free = self._queue()
        thread = await free.get()
        try:
            context = contextvars.copy_context()
            response, rest = await loop.run_in_executor(thread, context.run, self._respond, scope, body)
        except BaseException:
            free.put_nowait(thread)
            raise
        if rest is None:  # the whole response is in hand, and closed
            free.put_nowait(thread)
            await self.send_response(response, send)
            return
        free.put_nowait(_thread())  # this one stays with the body until it ends
        try:
            if not response.is_async:
                response.streaming_content = _pieces(loop, thread, *rest)
            await _until_disconnect(self.send_response(response, send), self.listen_for_disconnect(receive))
        finally:
            thread.submit(context.run, response.close)
            thread.shutdown(wait=False)

    def _respond(
        self, scope: Scope, body: SpooledTemporaryFile[bytes]
    ) -> tuple[HttpResponseBase, tuple[bytes, Iterator[bytes]] | None]:
        """The response to a request, on its thread, and what is left of its body to read there.

        A response whose body is all in hand (not streamed, or streamed in less than one piece, as
        a small static file) is closed here, and nothing is left. Otherwise the body's first piece
        and the iterator of the rest are.
        """
        set_script_prefix(get_script_prefix(scope))
        signals.request_started.send(sender=self.__class__, scope=scope)
        request, response = self.create_request(scope, body)
        if request is not None:
            response = self.get_response(request)
        if isinstance(response, FileResponse):
            response.block_size = self.chunk_size
        if not response.streaming:
            response.close()  # request_finished: the thread's database connection is released now
            return response, None
        if response.is_async:
            return response, (b"", iter(()))
        parts = response.streaming_content
        first = _next_piece(parts)
        if len(first) >= PIECE_BYTES:
            return response, (first, parts)
        response.close()
        response.streaming_content = _once(first)
        return response, None


class AsyncViews(ASGIHandler):
    """Asynchronous views, on the event loop: the middleware of settings.ASYNC_VIEW_MIDDLEWARE
    inline, the signals inline, no thread.

    Those middleware only check the request (its host, a redirect to HTTPS) and set response
    headers: nothing in them waits. Sessions, CSRF and authentication are not among them: an
    asynchronous view here is an answer stream, known by its signed cookie. The signals'
    receivers (Django's close_old_connections and reset_queries) look only at the database
    connections of the thread they run on, and the loop's thread opens none: an asynchronous
    view's database work runs on pool threads (`arena.services.run_in_db`).
    """

    def load_middleware(self, is_async: bool = True) -> None:
        self._view_middleware = []
        self._template_response_middleware = []
        self._exception_middleware = []
        chain = convert_exception_to_response(self._get_response_async)
        for name in reversed(settings.ASYNC_VIEW_MIDDLEWARE):
            chain = convert_exception_to_response(_inline(import_string(name)(chain), chain))
        self._middleware_chain = chain

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        try:
            body = await self.read_body(receive)
        except RequestAborted:
            return
        try:
            set_script_prefix(get_script_prefix(scope))
            signals.request_started.send(sender=self.__class__, scope=scope)
            request, response = self.create_request(scope, body)
            if request is not None:
                response = await self.run_get_response(request)
            try:
                sending = self.send_response(response, send)
                await _until_disconnect(sending, self.listen_for_disconnect(receive))
            finally:
                response.close()  # request_finished
        finally:
            body.close()


def _inline(middleware: Any, inner: Callable[[HttpRequest], Awaitable[HttpResponseBase]]) -> Any:
    """`middleware`'s request and response hooks, called on the loop around `inner`."""
    for hook in ("process_view", "process_exception", "process_template_response"):
        if hasattr(middleware, hook):
            raise ImproperlyConfigured(f"{type(middleware).__name__}.{hook} cannot run inline")

    async def inline(request: HttpRequest) -> HttpResponseBase:
        response = middleware.process_request(request) if hasattr(middleware, "process_request") else None
        response = response or await inner(request)
        if hasattr(middleware, "process_response"):
            response = middleware.process_response(request, response)
        return response

    return inline


def _thread() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="web")


async def _pieces(
    loop: asyncio.AbstractEventLoop, thread: ThreadPoolExecutor, first: bytes, parts: Iterator[bytes]
) -> AsyncIterator[bytes]:
    """A synchronous body, its `first` piece read already, the rest read on `thread` a piece at a time."""
    piece = first
    while piece:
        yield piece
        piece = await loop.run_in_executor(thread, _next_piece, parts)


async def _once(piece: bytes) -> AsyncIterator[bytes]:
    yield piece


def _next_piece(parts: Iterator[bytes]) -> bytes:
    """The next PIECE_BYTES or more of `parts`; fewer only at its end."""
    gathered: list[bytes] = []
    size = 0
    for part in parts:
        gathered.append(part)
        size += len(part)
        if size >= PIECE_BYTES:
            break
    return b"".join(gathered)


async def _until_disconnect(sending: Awaitable[None], listening: Awaitable[None]) -> None:
    """Send a streamed body to its end, or stop sending when the client goes away."""
    send_task, listen_task = asyncio.ensure_future(sending), asyncio.ensure_future(listening)
    try:
        await asyncio.wait([send_task, listen_task], return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (send_task, listen_task):
            if not task.done():
                task.cancel()
                with suppress(asyncio.CancelledError):
                    await task
    for task in (send_task, listen_task):
        if not task.cancelled():
            with suppress(RequestAborted):  # the client went away: nothing more to send
                task.result()
