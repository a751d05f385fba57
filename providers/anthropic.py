"""Anthropic's Messages API, streamed.

Wire format: POST {base_url}/messages with headers `x-api-key` and `anthropic-version`, body
`{"model", "max_tokens", "temperature", "messages", "stream": true}` and the system prompt, if
any, at the top level (`system`), never as a message. The answer comes as named server-sent
events: `message_start` (input usage), then per content block `content_block_start`,
`content_block_delta`s and `content_block_stop`, then `message_delta` (stop reason, output usage)
and `message_stop`; `ping`s anywhere. Only `text_delta`s are answer text: a thinking block's
deltas are not shown. Errors come as an HTTP status with
`{"type": "error", "error": {"type", "message"}}`, or as an `error` event mid-stream.
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

API_VERSION = "2023-06-01"
FINISH_REASONS = {"end_turn": "stop", "max_tokens": "length"}
# Error types worth one more try when they arrive as a stream's first event, before any text.
TRANSIENT_ERRORS = frozenset({"overloaded_error", "api_error", "rate_limit_error", "timeout_error"})


class Anthropic(Backend):
    name = "anthropic"

    def stream(
        self, spec: CallSpec, messages: list[Message], client: httpx.AsyncClient
    ) -> AsyncIterator[Chunk]:
        url = spec.base_url.rstrip("/") + "/messages"
        return retry_once(spec, lambda deadline: _call(spec, messages, client, url, deadline))


def request_body(spec: CallSpec, messages: list[Message]) -> dict[str, Any]:
    """The Messages API has no system role: system messages go to the top-level `system`."""
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    body: dict[str, Any] = {
        "model": spec.model,
        "max_tokens": spec.max_tokens,
        "temperature": spec.temperature,
        "messages": [_message(m) for m in messages if m["role"] != "system"],
        "stream": True,
    }
    if system:
        body["system"] = system
    return body


def _message(message: Message) -> dict[str, Any]:
    """An image goes first (Anthropic's advice), as an `image` block with a base64 source."""
    image = message.get("image")
    if image is None:
        return {"role": message["role"], "content": message["content"]}
    source = {"type": "base64", "media_type": image.mime_type, "data": image.base64()}
    blocks = [{"type": "image", "source": source}, {"type": "text", "text": message["content"]}]
    return {"role": message["role"], "content": blocks}


async def _call(
    spec: CallSpec, messages: list[Message], client: httpx.AsyncClient, url: str, deadline: float
) -> AsyncIterator[Chunk]:
    headers = {"anthropic-version": API_VERSION}
    if spec.api_key:
        headers["x-api-key"] = spec.api_key
    exchange = Exchange(spec, url, deadline)
    stopped = False
    stop_reason = ""
    input_tokens: int | None = None
    output_tokens: int | None = None

    def read(event: ServerSentEvent, texts: list[str]) -> bool:
        """Take one event: its answer text onto `texts`; True at the stream's own end mark."""
        nonlocal stopped, stop_reason, input_tokens, output_tokens
        if not event.data.strip():
            return False
        obj = exchange.parse(event.data)
        if not isinstance(obj, dict):
            raise exchange.error(UNREADABLE, f"unexpected data from {url}: {event.data[:300]!r}")
        kind = obj.get("type") or event.event
        if kind == "content_block_delta":
            delta = obj.get("delta")
            if isinstance(delta, dict) and delta.get("type") == "text_delta":
                text = delta.get("text")
                if isinstance(text, str) and text:
                    texts.append(text)
        elif kind == "message_start":
            message = obj.get("message")
            usage = message.get("usage") if isinstance(message, dict) else None
            if isinstance(usage, dict):
                input_tokens = _input_tokens(usage)
                output_tokens = count(usage.get("output_tokens"))
        elif kind == "message_delta":
            delta = obj.get("delta")
            if isinstance(delta, dict) and delta.get("stop_reason"):
                stop_reason = str(delta["stop_reason"])
            usage = obj.get("usage")
            if isinstance(usage, dict):
                # Counts in message_delta are cumulative: the last one is the total.
                total, prompt = count(usage.get("output_tokens")), _input_tokens(usage)
                output_tokens = output_tokens if total is None else total
                input_tokens = input_tokens if prompt is None else prompt
        elif kind == "message_stop":
            stopped = True
            return True
        elif kind == "error":
            error = obj.get("error")
            kind_of_error = error.get("type") if isinstance(error, dict) else None
            raise exchange.error(
                FAILED_MID_ANSWER,
                f"error event in the stream from {url}: {_describe(error)}",
                transient=kind_of_error in TRANSIENT_ERRORS,
            )
        # `ping`, `content_block_start`, `content_block_stop` and event types added later
        # carry no answer text; the documentation asks clients to let unknown types pass.
        return False

    async with aclosing(
        exchange.events(
            client, json=request_body(spec, messages), headers=headers, status_error=_status_error
        )
    ) as batches:
        async for chunk in text_by_read(exchange, batches, read):
            yield chunk
    if not stopped:
        raise exchange.error(CUT_OFF, f"{url}: the stream ended without message_stop")
    yield Chunk(
        "finish",
        finish_reason=FINISH_REASONS.get(stop_reason, stop_reason),
        input_tokens=input_tokens,
        output_tokens=output_tokens,
    )


def _input_tokens(usage: dict[str, Any]) -> int | None:
    """The whole prompt: tokens read from or written to the prompt cache are counted apart."""
    parts = [
        count(usage.get(key))
        for key in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
    ]
    return None if parts[0] is None else sum(p or 0 for p in parts)


def _status_error(exchange: Exchange, response: httpx.Response, body: bytes) -> UpstreamError:
    status = response.status_code
    try:
        data = json.loads(body)
    except ValueError:
        data = body.decode("utf-8", "replace").strip()[:500]
    error = data.get("error", data) if isinstance(data, dict) else data
    detail = f"HTTP {status} from {exchange.url}: {_describe(error)}"
    wait = retry_after(response.headers)
    # 529 is Anthropic's "overloaded": like any 5xx, worth one more try.
    transient = worth_waiting(wait) if status == 429 else status >= 500
    return exchange.error(status_text(status), detail, status=status, transient=transient, retry_after=wait)


def _describe(error: Any) -> str:
    if not isinstance(error, dict):
        return str(error)
    message = error.get("message") or json.dumps(error)
    return f"{message} ({error['type']})" if error.get("type") else str(message)
