"""OpenAI's chat-completions streaming protocol, spoken by OpenAI, Together, Mistral, vLLM and others.

Wire format: POST {base_url}/chat/completions with `"stream": true`; the answer comes back as
server-sent events, each `data: {chat.completion.chunk}`, ended by `data: [DONE]`. Errors come as
an HTTP status with `{"error": {"message", "type", "param", "code"}}`, or as an `{"error": ...}`
event inside a stream that had already started.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, aclosing
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import httpx
from httpx_sse import SSEError, aconnect_sse

from providers.base import Backend, CallSpec, Chunk, Message, UpstreamError

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

# Endpoints that reject `stream_options` (Mistral answers 422 "extra inputs are not permitted");
# learnt on the first call, so later calls do not pay for the rejected request.
_NO_STREAM_OPTIONS: set[str] = set()


def _status_text(status: int) -> str:
    return f"The model's service answered with an error (HTTP {status})."


class OpenAICompatible(Backend):
    name = "openai-compatible"

    async def stream(
        self, spec: CallSpec, messages: list[Message], client: httpx.AsyncClient
    ) -> AsyncIterator[Chunk]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + spec.total_timeout
        url = spec.base_url.rstrip("/") + "/chat/completions"
        retried = False
        while True:
            include_usage = url not in _NO_STREAM_OPTIONS
            answered = False
            try:
                # aclosing: a consumer that stops early closes the upstream response now, not
                # whenever the garbage collector finalises the inner generator.
                async with aclosing(_call(spec, messages, client, url, deadline, include_usage)) as chunks:
                    async for chunk in chunks:
                        answered = True
                        yield chunk
                return
            except UpstreamError as exc:
                # Once text reached the voter a retry would show a second, different answer.
                if answered:
                    raise
                if include_usage and exc.status in (400, 422) and "stream_options" in exc.detail:
                    _NO_STREAM_OPTIONS.add(url)
                    continue
                if retried or not exc.transient:
                    raise
                backoff = exc.retry_after if exc.retry_after is not None else _backoff(spec)
                backoff = min(backoff, MAX_BACKOFF)
                if loop.time() + backoff >= deadline:
                    raise
                retried = True
                await asyncio.sleep(backoff)


def _backoff(spec: CallSpec) -> float:
    return float(spec.options.get("retry_backoff", 0.5))


async def _within(deadline: float, awaitable: Awaitable[T]) -> T:
    """Await one step under the call's total deadline.

    The deadline wraps each await, never a `yield`: a timeout scope left open across a yield
    would cancel whatever the consumer happens to be doing when it fires.
    """
    async with asyncio.timeout_at(deadline):
        return await awaitable


async def _call(
    spec: CallSpec,
    messages: list[Message],
    client: httpx.AsyncClient,
    url: str,
    deadline: float,
    include_usage: bool,
) -> AsyncIterator[Chunk]:
    payload: dict[str, Any] = {
        "model": spec.model,
        "messages": messages,
        "stream": True,
        "temperature": spec.temperature,
        "max_tokens": spec.max_tokens,
    }
    if include_usage:
        payload["stream_options"] = {"include_usage": True}
    headers = {"Authorization": f"Bearer {spec.api_key}"} if spec.api_key else {}
    # The read time-out bounds the wait for each piece of the answer, the first one included;
    # the total is enforced separately (`_within`).
    timeout = httpx.Timeout(
        connect=spec.connect_timeout,
        read=spec.first_token_timeout,
        write=spec.connect_timeout,
        pool=spec.connect_timeout,
    )

    def error(public: str, detail: str, **kwargs: Any) -> UpstreamError:
        # The upstream may echo the key back (a 401's message often quotes part of it).
        if spec.api_key:
            detail = detail.replace(spec.api_key, "[api key]")
        return UpstreamError(public, detail=detail[:2000], **kwargs)

    responded = answered = done = False
    finish_reason = ""
    input_tokens: int | None = None
    output_tokens: int | None = None
    started = time.monotonic()
    try:
        async with AsyncExitStack() as stack:
            source = await _within(
                deadline,
                stack.enter_async_context(
                    aconnect_sse(client, "POST", url, json=payload, headers=headers, timeout=timeout)
                ),
            )
            response = source.response
            responded = True
            if not response.is_success:
                body = await _within(deadline, response.aread())
                raise _status_error(error, url, response, body)
            events = await stack.enter_async_context(aclosing(source.aiter_sse()))
            while True:
                try:
                    event = await _within(deadline, anext(events))
                except StopAsyncIteration:
                    break
                data = event.data.strip()
                if data == "[DONE]":
                    done = True
                    break
                if not data:
                    continue  # an event with no data (a named ping): nothing to read
                try:
                    obj = json.loads(data)
                except ValueError:
                    raise error(UNREADABLE, f"non-JSON data from {url}: {data[:300]!r}") from None
                if not isinstance(obj, dict):
                    raise error(UNREADABLE, f"unexpected data from {url}: {data[:300]!r}")
                if obj.get("error") or event.event == "error":
                    raise error(
                        FAILED_MID_ANSWER,
                        f"error event in the stream from {url}: {_describe(obj.get('error', obj))}",
                    )
                usage = obj.get("usage")
                if isinstance(usage, dict):
                    input_tokens = _count(usage.get("prompt_tokens"))
                    output_tokens = _count(usage.get("completion_tokens"))
                choices = obj.get("choices")
                if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
                    continue  # the usage chunk, whose choices are empty
                choice = choices[0]
                delta = choice.get("delta")
                text = delta.get("content") if isinstance(delta, dict) else None
                if isinstance(text, str) and text:
                    answered = True
                    yield Chunk("delta", text=text)
                if choice.get("finish_reason"):
                    finish_reason = str(choice["finish_reason"])
            if done:
                await _drain(events)
    except TimeoutError:
        raise error(TOO_LONG, f"{url}: no complete answer within {spec.total_timeout:g} s") from None
    except httpx.TimeoutException as exc:
        waited = f"{time.monotonic() - started:.1f} s"
        if isinstance(exc, httpx.ReadTimeout) and answered:
            raise error(CUT_OFF, f"{url}: the stream stalled mid-answer ({waited})") from None
        if isinstance(exc, httpx.ReadTimeout):
            raise error(SLOW_START, f"{url}: no answer within {spec.first_token_timeout:g} s") from None
        raise error(UNREACHABLE, f"{url}: {type(exc).__name__} after {waited}", transient=True) from None
    except httpx.TransportError as exc:
        if responded:
            raise error(CUT_OFF, f"{url}: the stream broke: {type(exc).__name__}: {exc}") from None
        # Refused, unresolvable, or a pooled keep-alive connection the server had just closed:
        # nothing was sent back, so trying again is safe.
        raise error(UNREACHABLE, f"{url}: {type(exc).__name__}: {exc}", transient=True) from None
    except SSEError as exc:
        raise error(UNREADABLE, f"{url}: {exc}") from None
    if not done and not finish_reason:
        raise error(CUT_OFF, f"{url}: the stream ended without [DONE] or a finish_reason")
    yield Chunk("finish", finish_reason=finish_reason, input_tokens=input_tokens, output_tokens=output_tokens)


async def _drain(events: AsyncIterator[Any]) -> None:
    """Read the end of the body after [DONE] so the connection goes back to the pool for reuse.

    A server that sent [DONE] but keeps the body open costs a second at most.
    """
    try:
        async with asyncio.timeout(1.0):
            async for _ in events:
                pass
    except (TimeoutError, httpx.TransportError):
        pass


def _status_error(
    make: Callable[..., UpstreamError], url: str, response: httpx.Response, body: bytes
) -> UpstreamError:
    status = response.status_code
    error = _error_object(body)
    detail = f"HTTP {status} from {url}: {_describe(error)}"
    if status == 429:
        retry_after = _retry_after(response.headers)
        # A quota that ran out is not cured by waiting; a wait longer than we would retry within
        # is not worth holding the voter for.
        quota = isinstance(error, dict) and error.get("code") == "insufficient_quota"
        transient = not quota and (retry_after is None or retry_after <= MAX_BACKOFF)
        return make(_status_text(status), detail, status=status, transient=transient, retry_after=retry_after)
    return make(_status_text(status), detail, status=status, transient=status >= 500)


def _error_object(body: bytes) -> Any:
    """The error of a vendor's error body: `{"error": {...}}` (OpenAI) or the body itself (vLLM)."""
    try:
        data = json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace").strip()[:500]
    if isinstance(data, dict) and "error" in data:
        return data["error"]
    return data


def _describe(error: Any) -> str:
    if not isinstance(error, dict):
        return str(error)
    message = error.get("message", "")
    if not isinstance(message, str):  # Mistral nests validation details here
        message = json.dumps(message)
    labels = ", ".join(f"{key}={error[key]}" for key in ("type", "code", "param") if error.get(key))
    return f"{message} ({labels})" if labels else message or json.dumps(error)


def _retry_after(headers: httpx.Headers) -> float | None:
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


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
