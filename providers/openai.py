"""OpenAI's chat-completions streaming protocol, spoken by OpenAI, Together, Mistral, vLLM and others.

Wire format: POST {base_url}/chat/completions with `"stream": true`; the answer comes back as
server-sent events, each `data: {chat.completion.chunk}`, ended by `data: [DONE]`. Errors come as
an HTTP status with `{"error": {"message", "type", "param", "code"}}`, or as an `{"error": ...}`
event inside a stream that had already started.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import httpx

from providers.base import Backend, CallSpec, Chunk, Message, UpstreamError
from providers.streaming import (
    CUT_OFF,
    FAILED_MID_ANSWER,
    MAX_BACKOFF,
    SLOW_START,
    TOO_LONG,
    UNREACHABLE,
    UNREADABLE,
    Exchange,
    ServerSentEvent,
    count,
    retry_after,
    retry_once,
    status_text,
    text_by_read,
    worth_waiting,
)

__all__ = [
    "CUT_OFF",
    "FAILED_MID_ANSWER",
    "MAX_BACKOFF",
    "SLOW_START",
    "TOO_LONG",
    "UNREACHABLE",
    "UNREADABLE",
    "OpenAICompatible",
]

# Endpoints that reject `stream_options` (Mistral answers 422 "extra inputs are not permitted");
# learnt on the first call, so later calls do not pay for the rejected request.
_NO_STREAM_OPTIONS: set[str] = set()


class OpenAICompatible(Backend):
    name = "openai-compatible"

    def stream(
        self, spec: CallSpec, messages: list[Message], client: httpx.AsyncClient
    ) -> AsyncIterator[Chunk]:
        url = spec.base_url.rstrip("/") + "/chat/completions"
        return retry_once(spec, lambda deadline: _attempt(spec, messages, client, url, deadline))


async def _attempt(
    spec: CallSpec, messages: list[Message], client: httpx.AsyncClient, url: str, deadline: float
) -> AsyncIterator[Chunk]:
    """One call; called again at once, without `stream_options`, by an endpoint that rejects them."""
    include_usage = url not in _NO_STREAM_OPTIONS
    try:
        async with aclosing(_call(spec, messages, client, url, deadline, include_usage)) as chunks:
            async for chunk in chunks:
                yield chunk
        return
    except UpstreamError as exc:
        # A rejection comes before any chunk, so nothing was passed on yet.
        if not (include_usage and exc.status in (400, 422) and "stream_options" in exc.detail):
            raise
        _NO_STREAM_OPTIONS.add(url)
    async with aclosing(_call(spec, messages, client, url, deadline, False)) as chunks:
        async for chunk in chunks:
            yield chunk


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
        "messages": [wire_message(m) for m in messages],
        "stream": True,
        "temperature": spec.temperature,
        "max_tokens": spec.max_tokens,
    }
    if include_usage:
        payload["stream_options"] = {"include_usage": True}
    headers = {"Authorization": f"Bearer {spec.api_key}"} if spec.api_key else {}

    exchange = Exchange(spec, url, deadline)
    done = False
    finish_reason = ""
    input_tokens: int | None = None
    output_tokens: int | None = None

    def read(event: ServerSentEvent, texts: list[str]) -> bool:
        """Take one event: its answer text onto `texts`; True at the stream's own end mark."""
        nonlocal done, finish_reason, input_tokens, output_tokens
        data = event.data.strip()
        if data == "[DONE]":
            done = True
            return True
        if not data:
            return False  # an event with no data (a named ping): nothing to read
        obj = exchange.parse(data)
        if not isinstance(obj, dict):
            raise exchange.error(UNREADABLE, f"unexpected data from {url}: {data[:300]!r}")
        if obj.get("error") or event.event == "error":
            raise exchange.error(
                FAILED_MID_ANSWER,
                f"error event in the stream from {url}: {_describe(obj.get('error', obj))}",
            )
        usage = obj.get("usage")
        if isinstance(usage, dict):
            input_tokens = count(usage.get("prompt_tokens"))
            output_tokens = count(usage.get("completion_tokens"))
        choices = obj.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            return False  # the usage chunk, whose choices are empty
        choice = choices[0]
        delta = choice.get("delta")
        text = delta.get("content") if isinstance(delta, dict) else None
        if isinstance(text, str) and text:
            texts.append(text)
        if choice.get("finish_reason"):
            finish_reason = str(choice["finish_reason"])
        return False

    async with aclosing(
        exchange.events(client, json=payload, headers=headers, status_error=_status_error)
    ) as batches:
        async for chunk in text_by_read(exchange, batches, read):
            yield chunk
    if not done and not finish_reason:
        raise exchange.error(CUT_OFF, f"{url}: the stream ended without [DONE] or a finish_reason")
    yield Chunk("finish", finish_reason=finish_reason, input_tokens=input_tokens, output_tokens=output_tokens)


def wire_message(message: Message) -> dict[str, Any]:
    """A message as chat completions takes it: an image as an `image_url` part holding a data URL."""
    image = message.get("image")
    if image is None:
        return {"role": message["role"], "content": message["content"]}
    parts = [
        {"type": "text", "text": message["content"]},
        {"type": "image_url", "image_url": {"url": image.data_url()}},
    ]
    return {"role": message["role"], "content": parts}


def _status_error(exchange: Exchange, response: httpx.Response, body: bytes) -> UpstreamError:
    status = response.status_code
    error = _error_object(body)
    detail = f"HTTP {status} from {exchange.url}: {_describe(error)}"
    if status == 429:
        wait = retry_after(response.headers)
        # A quota that ran out is not cured by waiting.
        quota = isinstance(error, dict) and error.get("code") == "insufficient_quota"
        return exchange.error(
            status_text(status),
            detail,
            status=status,
            transient=not quota and worth_waiting(wait),
            retry_after=wait,
        )
    return exchange.error(status_text(status), detail, status=status, transient=status >= 500)


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
