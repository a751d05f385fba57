"""What every streaming adapter shares: one retry before the first token, the call's time limits,
and transport failures told in words that name nothing.

An adapter builds one request and reads its events through `Exchange.events`; `retry_once` runs
the adapter's attempt again when it failed transiently before anything reached the voter.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, aclosing
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import httpx
import orjson

from providers.base import PUBLIC_ONLY, CallSpec, Chunk, UpstreamError

T = TypeVar("T")

# Texts a voter may read. They name no model, vendor or address: battles are anonymous, and an
# error that said "api.mistral.ai could not be reached" would reveal one side.
UNREACHABLE = "The model's service could not be reached."
SLOW_START = "The model took too long to start answering."
TOO_LONG = "The answer took too long and was stopped."
CUT_OFF = "The answer was cut off before it ended."
UNREADABLE = "The model's service sent an answer that could not be read."
FAILED_MID_ANSWER = "The model's service reported an error while answering."

# One retry before the first token: long enough to ride out a dropped keep-alive connection or a
# brief overload, short enough that the voter is not left staring at an empty pane.
MAX_BACKOFF = 2.0


def status_text(status: int) -> str:
    return f"The model's service answered with an error (HTTP {status})."


async def retry_once(
    spec: CallSpec, attempt: Callable[[float], AsyncIterator[Chunk]]
) -> AsyncIterator[Chunk]:
    """The chunks of `attempt(deadline)`, attempted once more after a transient failure.

    Only before the first chunk: once text reached the voter a retry would show a second,
    different answer. The wait is the upstream's `retry_after` when it gave one, capped.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + spec.total_timeout
    retried = False
    while True:
        answered = False
        try:
            # aclosing: a consumer that stops early closes the upstream response now, not
            # whenever the garbage collector finalises the inner generator.
            async with aclosing(attempt(deadline)) as chunks:
                async for chunk in chunks:
                    answered = True
                    yield chunk
            return
        except UpstreamError as exc:
            if answered or retried or not exc.transient:
                raise
            backoff = exc.retry_after if exc.retry_after is not None else _backoff(spec)
            backoff = min(backoff, MAX_BACKOFF)
            if loop.time() + backoff >= deadline:
                raise
            retried = True
            await asyncio.sleep(backoff)


def _backoff(spec: CallSpec) -> float:
    return float(spec.options.get("retry_backoff", 0.5))


class Deadline:
    """A deadline of the event loop's clock over a stream's waits: one timer, moved as it goes.

    The timer cancels the task only while it waits (`wait`), never while it runs between
    waits: a timeout scope left open across a `yield` would cancel whatever the consumer
    happens to be doing when it fires. A scope per wait (`asyncio.timeout`) would do the same
    at a higher cost per read.
    """

    def __init__(self, when: float) -> None:
        self._loop = asyncio.get_running_loop()
        self._when = when
        self._timer = self._loop.call_at(when, self._expire)
        self._waiting: asyncio.Task[Any] | None = None
        self._expired = False

    @property
    def when(self) -> float:
        return self._when

    def move(self, when: float) -> None:
        if when != self._when:
            self._timer.cancel()
            self._when = when
            self._timer = self._loop.call_at(when, self._expire)

    def close(self) -> None:
        self._timer.cancel()

    def _expire(self) -> None:
        if self._waiting is not None:
            self._expired = True
            self._waiting.cancel()

    async def wait(self, awaitable: Awaitable[T]) -> T:
        """`awaitable`'s result, or TimeoutError once the deadline passed."""
        if self._loop.time() >= self._when:
            if inspect.iscoroutine(awaitable):
                awaitable.close()  # never awaited: say so quietly
            raise TimeoutError
        task = asyncio.current_task()
        assert task is not None
        cancelling = task.cancelling()
        self._waiting = task
        try:
            return await awaitable
        except asyncio.CancelledError:
            if self._expired and task.uncancel() <= cancelling:
                raise TimeoutError from None
            raise
        finally:
            self._waiting = None
            self._expired = False


StatusError = Callable[["Exchange", httpx.Response, bytes], UpstreamError]


@dataclass(slots=True)
class ServerSentEvent:
    event: str = "message"  # the standard's type of an event that names none
    data: str = ""
    id: str = ""
    retry: int | None = None


class EventParser:
    """Server-sent events from the bytes of a body, read as the HTML standard says.

    Fed a piece of the body at a time, it returns the events that piece completed: one list per
    read from the network, so that a busy upstream's events are handled together (the same rules
    as httpx-sse, line by line on bytes, decoded once per event). An event is dispatched by its
    blank line only: one the body ends in the middle of is dropped.

    Not httpx-sse's parser: it hands on one event at a time, so co-arriving events cannot be
    relayed together, and the relay spends more CPU per token with it (bench/transport.py).
    """

    def __init__(self) -> None:
        self._rest = b""  # the unfinished last line
        self._event = ""
        self._data: list[bytes] = []
        self._id = ""
        self._retry: int | None = None

    def feed(self, piece: bytes) -> list[ServerSentEvent]:
        text = self._rest + piece if self._rest else piece
        held = b""
        if b"\r" in text:
            # A last CR may be the first half of a CRLF: wait for the next piece to tell.
            if text.endswith(b"\r"):
                text, held = text[:-1], b"\r"
            text = text.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        lines = text.split(b"\n")
        self._rest = lines.pop() + held
        events: list[ServerSentEvent] = []
        for line in lines:
            self._line(line, events)
        return events

    def close(self) -> list[ServerSentEvent]:
        """The body ended: its last line, if one was left unfinished, ends there."""
        events: list[ServerSentEvent] = []
        if self._rest:
            self._line(self._rest.rstrip(b"\r"), events)
            self._rest = b""
        return events

    def _line(self, line: bytes, events: list[ServerSentEvent]) -> None:
        if not line:
            if self._data or self._event or self._id or self._retry is not None:
                data = b"\n".join(self._data).decode("utf-8", "replace")
                events.append(ServerSentEvent(self._event or "message", data, self._id, self._retry))
                # The standard keeps the last event id across events.
                self._event, self._data, self._retry = "", [], None
            return
        name, _, value = line.partition(b":")
        if value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            self._data.append(value)
        elif name == b"event":
            self._event = value.decode("utf-8", "replace")
        elif name == b"id":
            if b"\0" not in value:
                self._id = value.decode("utf-8", "replace")
        elif name == b"retry":
            try:
                self._retry = int(value)
            except ValueError:
                pass
        # A line that starts with a colon is a comment (a keep-alive); other fields are ignored.


class Exchange:
    """One streamed POST: its server-sent events under the call's time limits.

    Every failure of the transport becomes an `UpstreamError` with a neutral public text and
    the address in the operators' detail. The adapter sets `answered` once it passed text on,
    which decides whether a silence is a slow start or an answer cut off.
    """

    def __init__(self, spec: CallSpec, url: str, deadline: float) -> None:
        self.spec = spec
        self.url = url
        self.deadline = deadline
        # The first token has its own deadline, not only a limit on silence: keep-alive pings (or
        # a thinking model's hidden tokens) would otherwise hold an empty pane for minutes.
        self.first_token_deadline = asyncio.get_running_loop().time() + spec.first_token_timeout
        self.answered = False

    def error(self, public: str, detail: str, **kwargs: Any) -> UpstreamError:
        # The upstream may echo the key back (a 401's message often quotes part of it).
        if self.spec.api_key:
            detail = detail.replace(self.spec.api_key, "[api key]")
        return UpstreamError(public, detail=detail[:2000], **kwargs)

    def parse(self, data: str) -> Any:
        """The JSON of one event's data; anything else is an unreadable answer."""
        try:
            return orjson.loads(data)
        except ValueError:
            raise self.error(UNREADABLE, f"non-JSON data from {self.url}: {data[:300]!r}") from None

    def _limit(self, now: float) -> float:
        """When the wait for the body's next piece ends: at the first token's deadline until text
        came, then after a silence as long, never after the whole answer's deadline."""
        if not self.answered:
            return min(self.deadline, self.first_token_deadline)
        return min(self.deadline, now + self.spec.first_token_timeout)

    async def events(
        self,
        client: httpx.AsyncClient,
        *,
        json: dict[str, Any],
        headers: dict[str, str],
        status_error: StatusError,
    ) -> AsyncIterator[list[ServerSentEvent]]:
        """The events of the response, until its body ends; an HTTP error as `status_error` says.

        One list per read from the network, never empty: the events that arrived together.
        """
        spec = self.spec
        # Every wait for the answer (its head, each piece of its body) is bounded by `Deadline`:
        # the first token's, a silence mid-answer, the whole answer's.
        timeout = httpx.Timeout(
            connect=spec.connect_timeout, read=None, write=spec.connect_timeout, pool=spec.connect_timeout
        )
        headers = {**headers, "Accept": "text/event-stream", "Cache-Control": "no-store"}
        responded = False
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = Deadline(self._limit(started))
        try:
            async with AsyncExitStack() as stack:
                stack.callback(deadline.close)
                response = await deadline.wait(
                    stack.enter_async_context(
                        client.stream(
                            "POST",
                            self.url,
                            json=json,
                            headers=headers,
                            timeout=timeout,
                            extensions={PUBLIC_ONLY: spec.public_only},
                        )
                    )
                )
                responded = True
                if not response.is_success:
                    body = await deadline.wait(response.aread())
                    raise status_error(self, response, body)
                content_type = response.headers.get("content-type", "").partition(";")[0]
                if "text/event-stream" not in content_type:
                    raise self.error(
                        UNREADABLE,
                        f"{self.url}: Expected response header Content-Type to contain "
                        f"'text/event-stream', got {content_type!r}",
                    )
                pieces = await stack.enter_async_context(aclosing(response.aiter_bytes()))
                parser = EventParser()
                while True:
                    deadline.move(self._limit(loop.time()))
                    try:
                        piece = await deadline.wait(anext(pieces))
                    except StopAsyncIteration:
                        break
                    events = parser.feed(piece)
                    if events:
                        yield events
                events = parser.close()
                if events:
                    yield events
        except TimeoutError:
            if deadline.when >= self.deadline:
                raise self.error(
                    TOO_LONG, f"{self.url}: no complete answer within {spec.total_timeout:g} s"
                ) from None
            if self.answered:
                waited = f"{loop.time() - started:.1f} s"
                raise self.error(CUT_OFF, f"{self.url}: the stream stalled mid-answer ({waited})") from None
            raise self.error(
                SLOW_START, f"{self.url}: no answer within {spec.first_token_timeout:g} s"
            ) from None
        except httpx.TimeoutException as exc:  # connecting, or waiting for a pooled connection
            waited = f"{loop.time() - started:.1f} s"
            raise self.error(
                UNREACHABLE, f"{self.url}: {type(exc).__name__} after {waited}", transient=True
            ) from None
        except httpx.TransportError as exc:
            if responded:
                raise self.error(
                    CUT_OFF, f"{self.url}: the stream broke: {type(exc).__name__}: {exc}"
                ) from None
            # Refused, unresolvable, or a pooled keep-alive connection the server had just closed:
            # nothing was sent back, so trying again is safe.
            raise self.error(
                UNREACHABLE, f"{self.url}: {type(exc).__name__}: {exc}", transient=True
            ) from None


async def text_by_read(
    exchange: Exchange,
    batches: AsyncIterator[list[ServerSentEvent]],
    read: Callable[[ServerSentEvent, list[str]], bool],
) -> AsyncIterator[Chunk]:
    """One delta chunk per network read, for the vendor's own `read` of an event.

    `read` takes the events of a read in turn, adds each one's answer text to the list, and returns
    True at the stream's own end mark (the rest of the body is then drained). The text of events
    that arrived together goes on as one chunk; an error `read` raises after some of that text is
    raised once the text is passed on, as it would have been event by event.
    """
    async for batch in batches:
        texts: list[str] = []
        failure: UpstreamError | None = None
        ended = False
        try:
            for event in batch:
                if read(event, texts):
                    ended = True
                    break
        except UpstreamError as exc:
            failure = exc
        if texts:
            exchange.answered = True
            yield Chunk("delta", text="".join(texts), deltas=len(texts))
        if failure is not None:
            raise failure
        if ended:
            await drain(batches)
            return


async def drain(events: AsyncIterator[Any]) -> None:
    """Read the end of the body after the last event so the connection goes back to the pool.

    A server that sent its final event but keeps the body open costs a second at most.
    """
    try:
        async with asyncio.timeout(1.0):
            async for _ in events:
                pass
    except (TimeoutError, UpstreamError):
        pass


def retry_after(headers: httpx.Headers) -> float | None:
    """Seconds from `retry-after-ms` (OpenAI) or `retry-after` (seconds or an HTTP date)."""
    if "retry-after-ms" in headers:
        try:
            return max(0.0, float(headers["retry-after-ms"]) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def worth_waiting(retry_after: float | None) -> bool:
    """Whether a rate limit is worth one retry: not when the wait asked for is longer than we hold a voter."""
    return retry_after is None or retry_after <= MAX_BACKOFF


def count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
