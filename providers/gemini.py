"""Google's Gemini API (`streamGenerateContent`), streamed as server-sent events.

Wire format: POST {base_url}/models/{model}:streamGenerateContent?alt=sse with the key in the
`x-goog-api-key` header (never in the URL: URLs end up in logs and in error details), body
`{"contents": [{"role": "user"|"model", "parts": [{"text"}]}], "generationConfig",
"systemInstruction"}`. Each event's data is a GenerateContentResponse: text in
`candidates[0].content.parts[*].text` (parts marked `thought` are the model's thinking, not
shown), `candidates[0].finishReason` on the last one, `usageMetadata` throughout. There is no end
marker: the answer ends with the body, so a body that ends before a finishReason was cut off.
Errors: `{"error": {"code", "message", "status", "details"}}`, sometimes wrapped in a list.
"""

from __future__ import annotations

import json
import re
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

FINISH_REASONS = {"STOP": "stop", "MAX_TOKENS": "length"}
# Error statuses worth one more try when they arrive in the stream before any text.
TRANSIENT_STATUSES = frozenset({"UNAVAILABLE", "INTERNAL", "RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED"})
# Gemini rejects a bad key with 400 INVALID_ARGUMENT; the reason tells it from a bad request.
BAD_KEY_REASONS = frozenset({"API_KEY_INVALID", "API_KEY_SERVICE_BLOCKED", "API_KEY_HTTP_REFERRER_BLOCKED"})
ROLES = {"user": "user", "assistant": "model"}


class Gemini(Backend):
    name = "gemini"

    def stream(
        self, spec: CallSpec, messages: list[Message], client: httpx.AsyncClient
    ) -> AsyncIterator[Chunk]:
        # "gemini-2.5-flash" is served at models/gemini-2.5-flash; a tuned model is named in full.
        path = spec.model if "/" in spec.model else f"models/{spec.model}"
        url = f"{spec.base_url.rstrip('/')}/{path}:streamGenerateContent?alt=sse"
        return retry_once(spec, lambda deadline: _call(spec, messages, client, url, deadline))


def request_body(spec: CallSpec, messages: list[Message]) -> dict[str, Any]:
    body: dict[str, Any] = {
        "contents": [
            {"role": ROLES[m["role"]], "parts": _parts(m)} for m in messages if m["role"] != "system"
        ],
        "generationConfig": {"temperature": spec.temperature, "maxOutputTokens": spec.max_tokens},
    }
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    if system:
        body["systemInstruction"] = {"parts": [{"text": system}]}
    return body


def _parts(message: Message) -> list[dict[str, Any]]:
    """An image is an `inline_data` part (mime_type and base64 data) before the text."""
    image = message.get("image")
    text = {"text": message["content"]}
    if image is None:
        return [text]
    return [{"inline_data": {"mime_type": image.mime_type, "data": image.base64()}}, text]


async def _call(
    spec: CallSpec, messages: list[Message], client: httpx.AsyncClient, url: str, deadline: float
) -> AsyncIterator[Chunk]:
    headers = {"x-goog-api-key": spec.api_key} if spec.api_key else {}
    exchange = Exchange(spec, url, deadline)
    finish_reason = ""
    input_tokens: int | None = None
    output_tokens: int | None = None

    def read(event: ServerSentEvent, texts: list[str]) -> bool:
        """Take one event: its answer text onto `texts`; True at the stream's own end mark."""
        nonlocal finish_reason, input_tokens, output_tokens
        if not event.data.strip():
            return False
        obj = _unwrap(exchange.parse(event.data))
        if not isinstance(obj, dict):
            raise exchange.error(UNREADABLE, f"unexpected data from {url}: {event.data[:300]!r}")
        if "error" in obj:
            error = obj["error"]
            status = error.get("status") if isinstance(error, dict) else None
            raise exchange.error(
                FAILED_MID_ANSWER,
                f"error event in the stream from {url}: {_describe(error)}",
                transient=status in TRANSIENT_STATUSES,
            )
        usage = obj.get("usageMetadata")
        if isinstance(usage, dict):
            input_tokens = count(usage.get("promptTokenCount"))
            output_tokens = count(usage.get("candidatesTokenCount"))
        feedback = obj.get("promptFeedback")
        if isinstance(feedback, dict) and feedback.get("blockReason"):
            # The prompt itself was refused: no candidate, an empty answer that says why.
            finish_reason = str(feedback["blockReason"]).lower()
        candidates = obj.get("candidates")
        if not isinstance(candidates, list) or not candidates or not isinstance(candidates[0], dict):
            return False
        candidate = candidates[0]
        content = candidate.get("content")
        parts = content.get("parts") if isinstance(content, dict) else None
        for part in parts if isinstance(parts, list) else []:
            text = part.get("text") if isinstance(part, dict) else None
            if isinstance(text, str) and text and not part.get("thought"):
                texts.append(text)
        if candidate.get("finishReason"):
            reason = str(candidate["finishReason"])
            finish_reason = FINISH_REASONS.get(reason, reason.lower())
        return False

    async with aclosing(
        exchange.events(
            client, json=request_body(spec, messages), headers=headers, status_error=_status_error
        )
    ) as batches:
        async for chunk in text_by_read(exchange, batches, read):
            yield chunk
    if not finish_reason:
        raise exchange.error(CUT_OFF, f"{url}: the stream ended without a finishReason")
    yield Chunk("finish", finish_reason=finish_reason, input_tokens=input_tokens, output_tokens=output_tokens)


def _unwrap(data: Any) -> Any:
    """Google sometimes sends a one-element JSON array where an object was due."""
    return data[0] if isinstance(data, list) and len(data) == 1 else data


def _status_error(exchange: Exchange, response: httpx.Response, body: bytes) -> UpstreamError:
    status = response.status_code
    try:
        data = _unwrap(json.loads(body))
    except ValueError:
        data = body.decode("utf-8", "replace").strip()[:500]
    error = data.get("error", data) if isinstance(data, dict) else data
    detail = f"HTTP {status} from {exchange.url}: {_describe(error)}"
    wait = retry_after(response.headers)
    if wait is None:
        wait = _retry_delay(error)
    transient = worth_waiting(wait) if status == 429 else status >= 500
    permanent = True if _reason(error) in BAD_KEY_REASONS else None
    return exchange.error(
        status_text(status), detail, status=status, transient=transient, retry_after=wait, permanent=permanent
    )


def _details(error: Any) -> list[dict[str, Any]]:
    details = error.get("details") if isinstance(error, dict) else None
    return [d for d in details if isinstance(d, dict)] if isinstance(details, list) else []


def _reason(error: Any) -> str:
    """The ErrorInfo reason ("API_KEY_INVALID", ...), when the error carries one."""
    for detail in _details(error):
        if str(detail.get("@type", "")).endswith("google.rpc.ErrorInfo"):
            return str(detail.get("reason", ""))
    return ""


def _retry_delay(error: Any) -> float | None:
    """Seconds from a google.rpc.RetryInfo detail (`"retryDelay": "36s"`): Google's Retry-After."""
    for detail in _details(error):
        if str(detail.get("@type", "")).endswith("google.rpc.RetryInfo"):
            match = re.fullmatch(r"(\d+(?:\.\d+)?)s", str(detail.get("retryDelay", "")))
            if match:
                return float(match[1])
    return None


def _describe(error: Any) -> str:
    if not isinstance(error, dict):
        return str(error)
    labels = ", ".join(label for label in (str(error.get("status") or ""), _reason(error)) if label)
    message = error.get("message") or json.dumps(error)
    return f"{message} ({labels})" if labels else str(message)
