"""Fakes of Anthropic's Messages API and Google's Gemini API on a real socket, in each vendor's wire format.

Like `tests.upstream` (whose server they share), they replace the vendor at the other end of a
TCP connection. The event sequences follow the vendors' documentation and recorded traffic:
Anthropic's named events with `ping`s (json with ", " and ": " separators, as documented),
Gemini's bare `data:` events separated by CRLF pairs, ending with the body and no marker.

Fixtures: `anthropic_upstream`, `gemini_upstream` (function-scoped). Configure `behaviours[model]`
(a `Behaviour`, or a `VendorBehaviour` for the vendor-only knobs) before calling; set `key` to
have requests without that key rejected the way the vendor rejects them.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.upstream import Behaviour, FakeServer, _end_body, _head, _send, _send_split


@dataclass
class VendorBehaviour(Behaviour):
    thinking: str = ""  # a thinking block (Anthropic) or thought parts (Gemini) before the answer
    error_as_list: bool = False  # Gemini: the error body as a one-element JSON array
    block_reason: str = ""  # Gemini: the prompt is refused (promptFeedback.blockReason), no candidate


def _words(text: str) -> list[str]:
    return re.findall(r"\s*\S+", text)


def _prompt_tokens(payload: dict[str, Any]) -> int:
    """A stand-in tokenizer: words of every text sent (Anthropic and Gemini shapes alike)."""
    texts = re.findall(r'"(?:content|text|system)": "((?:[^"\\]|\\.)*)"', json.dumps(payload))
    return sum(len(t.split()) for t in texts)


def _split_in_text(data: bytes, key: bytes) -> int:
    """An odd byte offset inside the first text value of `data`: mid-character for multi-byte text."""
    start = data.find(key) + len(key)
    length = data.find(b'"', start) - start
    if start < len(key) or length < 2:
        return len(data) // 2
    return start + min(length - 1, (length // 2) | 1)


class _Vendor(FakeServer):
    key: str | None = None

    def __init__(self) -> None:
        super().__init__()
        self.behaviours: dict[str, Behaviour] = {}
        self.default: Behaviour | None = None
        self._answered: dict[str, int] = {}

    def behaviour(self, model: str) -> tuple[Behaviour | None, bool]:
        """The model's behaviour, and whether this request gets its error status."""
        behaviour = self.behaviours.get(model, self.default)
        if behaviour is None:
            return None, False
        seen = self._answered[model] = self._answered.get(model, 0) + 1
        fails = behaviour.status is not None and (
            behaviour.status_times is None or seen <= behaviour.status_times
        )
        return behaviour, fails

    async def _open_stream(self, writer: asyncio.StreamWriter, headers: dict[str, str]) -> None:
        writer.write(_head(200, {**headers, "transfer-encoding": "chunked"}))
        await writer.drain()


# --- Anthropic ----------------------------------------------------------------------------------

ANTHROPIC_ERRORS = {
    # status: (type, message) as the Messages API sends them.
    400: ("invalid_request_error", "There was an issue with the format or content of your request."),
    401: ("authentication_error", "invalid x-api-key"),
    403: ("permission_error", "Your API key does not have permission to use the specified resource."),
    404: ("not_found_error", "The requested resource could not be found."),
    429: ("rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit"),
    500: ("api_error", "Internal server error"),
    529: ("overloaded_error", "Overloaded"),
}


class FakeAnthropic(_Vendor):
    name = "fake-anthropic"
    # Seconds between two pings while the "model" has not started its answer.
    ping_every = 0.1

    async def handle(
        self, writer: asyncio.StreamWriter, method: str, target: str, headers: dict[str, str], payload: Any
    ) -> bool:
        if method != "POST" or target != "/v1/messages":
            await self._error(writer, 404, "Not Found")
            return True
        if "anthropic-version" not in headers:
            await self._error(writer, 400, "anthropic-version: header is required")
            return True
        if self.key is not None and headers.get("x-api-key") != self.key:
            await self._error(writer, 401, "invalid x-api-key")
            return True
        if not isinstance(payload, dict):
            await self._error(writer, 400, "There was an issue with the format or content of your request.")
            return True
        model = str(payload.get("model"))
        behaviour, fails = self.behaviour(model)
        if behaviour is None:
            await self._error(writer, 404, f"model: {model}")
            return True
        if fails:
            assert behaviour.status is not None
            await self._error(writer, behaviour.status, behaviour.error_message, behaviour.retry_after)
            return True
        return await self._stream(writer, payload, behaviour)

    async def _error(
        self, writer: asyncio.StreamWriter, status: int, message: str, retry_after: str | None = None
    ) -> None:
        kind, default = ANTHROPIC_ERRORS.get(status, ("api_error", "Internal server error"))
        request_id = self._next_id("req_011")
        body = {
            "type": "error",
            "error": {"type": kind, "message": message or default},
            "request_id": request_id,
        }
        extra = {"request-id": request_id}
        if status in (429, 529) and retry_after is not None:
            extra["retry-after"] = retry_after
        if status >= 500 or status == 429:
            extra["x-should-retry"] = "true"
        await self._respond(
            writer, status, body, extra, encode=lambda b: json.dumps(b, separators=(",", ":"))
        )

    async def _event(self, writer: asyncio.StreamWriter, body: dict[str, Any], split: bool = False) -> None:
        data = f"event: {body['type']}\ndata: {json.dumps(body, ensure_ascii=False)}\n\n".encode()
        if split:
            # Two TCP writes with a pause between, cut inside the text (mid-character if it can).
            await _send_split(writer, data, _split_in_text(data, b'"text": "'), pause=0.005)
        else:
            await _send(writer, data)

    async def _stream_error(self, writer: asyncio.StreamWriter, b: Behaviour) -> None:
        error = {"type": "overloaded_error", "message": b.error_message or "Overloaded"}
        await self._event(writer, {"type": "error", "error": error})

    async def _stream(self, writer: asyncio.StreamWriter, request: dict[str, Any], b: Behaviour) -> bool:
        pieces, stop_reason = _words(b.text), "end_turn"
        max_tokens = request.get("max_tokens")
        if isinstance(max_tokens, int) and len(pieces) > max_tokens:
            pieces, stop_reason = pieces[:max_tokens], "max_tokens"
        message_id = self._next_id("msg_01")
        await self._open_stream(
            writer,
            {
                "content-type": "text/event-stream; charset=utf-8",
                "cache-control": "no-cache",
                "request-id": self._next_id("req_011"),
            },
        )
        usage = {"input_tokens": _prompt_tokens(request), "output_tokens": 1} if b.usage else {}
        message = {
            "id": message_id,
            "type": "message",
            "role": "assistant",
            "content": [],
            "model": request["model"],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage,
        }
        await self._event(writer, {"type": "message_start", "message": message})
        index = 0
        thinking = isinstance(b, VendorBehaviour) and b.thinking
        if thinking:
            assert isinstance(b, VendorBehaviour)
            block = {"type": "thinking", "thinking": "", "signature": ""}
            await self._event(writer, {"type": "content_block_start", "index": 0, "content_block": block})
            for piece in _words(b.thinking):
                delta = {"type": "thinking_delta", "thinking": piece}
                await self._event(writer, {"type": "content_block_delta", "index": 0, "delta": delta})
            delta = {
                "type": "signature_delta",
                "signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds",
            }
            await self._event(writer, {"type": "content_block_delta", "index": 0, "delta": delta})
            await self._event(writer, {"type": "content_block_stop", "index": 0})
            index = 1
        block = {"type": "text", "text": ""}
        await self._event(writer, {"type": "content_block_start", "index": index, "content_block": block})
        await self._event(writer, {"type": "ping"})
        # The API keeps pinging while the model has not started: a read time-out alone never fires.
        waited = 0.0
        while waited < b.first_token_delay:
            step = min(self.ping_every, b.first_token_delay - waited)
            await asyncio.sleep(step)
            waited += step
            await self._event(writer, {"type": "ping"})
        for n, piece in enumerate(pieces):
            if await self._interrupt(writer, b, n):
                return False
            if n and b.chunk_delay:
                await asyncio.sleep(b.chunk_delay)
            delta = {"type": "text_delta", "text": piece}
            await self._event(
                writer, {"type": "content_block_delta", "index": index, "delta": delta}, split=n == 0
            )
        if await self._interrupt(writer, b, len(pieces)):
            return False
        await self._event(writer, {"type": "content_block_stop", "index": index})
        end: dict[str, Any] = {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": None},
        }
        if b.usage:
            end["usage"] = {"output_tokens": len(pieces)}
        await self._event(writer, end)
        await self._event(writer, {"type": "message_stop"})
        await _end_body(writer)
        return True


# --- Gemini ----------------------------------------------------------------------------------------

GEMINI_ERRORS = {
    # status: (status name, message) as the Gemini API sends them.
    400: ("INVALID_ARGUMENT", "Request contains an invalid argument."),
    401: (
        "UNAUTHENTICATED",
        "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie "
        "or other valid authentication credential. "
        "See https://developers.google.com/identity/sign-in/web/devconsole-project.",
    ),
    403: ("PERMISSION_DENIED", "The caller does not have permission"),
    404: ("NOT_FOUND", "Requested entity was not found."),
    429: (
        "RESOURCE_EXHAUSTED",
        "You exceeded your current quota, please check your plan and billing details. For more "
        "information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits.",
    ),
    500: (
        "INTERNAL",
        "An internal error has occurred. Please retry or report in "
        "https://developers.generativeai.google/guide/troubleshooting",
    ),
    503: ("UNAVAILABLE", "The model is overloaded. Please try again later."),
}
QUOTA_METRIC = "generativelanguage.googleapis.com/generate_content_free_tier_requests"
GEMINI_PATH = re.compile(r"/v1beta/((?:models|tunedModels)/[^/:?]+):streamGenerateContent\?alt=sse")


class FakeGemini(_Vendor):
    name = "fake-gemini"
    base_path = "/v1beta"

    async def handle(
        self, writer: asyncio.StreamWriter, method: str, target: str, headers: dict[str, str], payload: Any
    ) -> bool:
        match = GEMINI_PATH.fullmatch(target)
        if method != "POST" or match is None:
            await self._error(writer, 404, f"Invalid path: {target.split('?')[0]}")
            return True
        key = headers.get("x-goog-api-key")
        if self.key is not None and key is None:
            await self._error(
                writer,
                403,
                "Method doesn't allow unregistered callers (callers without established identity). "
                "Please use API Key or other form of API consumer identity to call this API.",
                reason="SERVICE_DISABLED",
            )
            return True
        if self.key is not None and key != self.key:
            await self._error(
                writer, 400, "API key not valid. Please pass a valid API key.", reason="API_KEY_INVALID"
            )
            return True
        if not isinstance(payload, dict) or not payload.get("contents"):
            await self._error(writer, 400, "* GenerateContentRequest.contents: contents is not specified\n")
            return True
        name = match[1]
        behaviour, fails = self.behaviour(name.split("/", 1)[1])
        if behaviour is None:
            await self._error(
                writer,
                404,
                f"{name} is not found for API version v1beta, or is not supported for generateContent. "
                "Call ListModels to see the list of available models and their supported methods.",
            )
            return True
        if fails:
            assert behaviour.status is not None
            await self._error(
                writer,
                behaviour.status,
                behaviour.error_message,
                retry_delay=behaviour.retry_after,
                as_list=isinstance(behaviour, VendorBehaviour) and behaviour.error_as_list,
            )
            return True
        return await self._stream(writer, name.split("/", 1)[1], payload, behaviour)

    @staticmethod
    def error_body(
        status: int, message: str = "", *, reason: str = "", retry_delay: str | None = None
    ) -> dict[str, Any]:
        name, default = GEMINI_ERRORS.get(status, ("UNKNOWN", "Unknown error."))
        error: dict[str, Any] = {"code": status, "message": message or default, "status": name}
        details: list[dict[str, Any]] = []
        if reason:
            details.append(
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": reason,
                    "domain": "googleapis.com",
                    "metadata": {"service": "generativelanguage.googleapis.com"},
                }
            )
        if status == 429:
            details.append(
                {
                    "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                    "violations": [
                        {
                            "quotaMetric": QUOTA_METRIC,
                            "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
                            "quotaDimensions": {"location": "global", "model": "gemini-2.5-flash"},
                            "quotaValue": "10",
                        }
                    ],
                }
            )
            if retry_delay is not None:
                details.append(
                    {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{retry_delay}s"}
                )
        if details:
            error["details"] = details
        return {"error": error}

    async def _error(
        self,
        writer: asyncio.StreamWriter,
        status: int,
        message: str,
        *,
        reason: str = "",
        retry_delay: str | None = None,
        as_list: bool = False,
    ) -> None:
        body: Any = self.error_body(status, message, reason=reason, retry_delay=retry_delay)
        # Google's front end pretty-prints its JSON errors.
        await self._respond(
            writer,
            status,
            [body] if as_list else body,
            {"vary": "Origin, X-Origin, Referer", "server": "scaffolding on HTTPServer2"},
            content_type="application/json; charset=UTF-8",
            encode=lambda b: json.dumps(b, indent=2) + "\n",
        )

    async def _event(self, writer: asyncio.StreamWriter, body: dict[str, Any], split: bool = False) -> None:
        data = b"data: " + json.dumps(body, ensure_ascii=False, separators=(",", ": ")).encode() + b"\r\n\r\n"
        if split:
            await _send_split(writer, data, _split_in_text(data, b'"text": "'), pause=0.005)
        else:
            await _send(writer, data)

    async def _stream_error(self, writer: asyncio.StreamWriter, b: Behaviour) -> None:
        await self._event(writer, self.error_body(500, b.error_message))

    async def _stream(
        self, writer: asyncio.StreamWriter, model: str, request: dict[str, Any], b: Behaviour
    ) -> bool:
        vendor = b if isinstance(b, VendorBehaviour) else VendorBehaviour()
        pieces, finish = _words(b.text), "STOP"
        config = request.get("generationConfig") or {}
        limit = config.get("maxOutputTokens")
        if isinstance(limit, int) and len(pieces) > limit:
            pieces, finish = pieces[:limit], "MAX_TOKENS"
        prompt = _prompt_tokens(
            {"contents": request["contents"], "systemInstruction": request.get("systemInstruction")}
        )
        response_id = self._next_id("WEXbaMnp")
        thoughts = len(_words(vendor.thinking))

        def response(
            parts: list[dict[str, Any]] | None, sent: int, finish_reason: str | None = None
        ) -> dict[str, Any]:
            body: dict[str, Any] = {}
            if parts is not None:
                candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}}
                if finish_reason:
                    candidate["finishReason"] = finish_reason
                candidate["index"] = 0
                body["candidates"] = [candidate]
            if b.usage:
                usage: dict[str, Any] = {"promptTokenCount": prompt}
                if sent:
                    usage["candidatesTokenCount"] = sent
                usage["totalTokenCount"] = prompt + sent + thoughts
                usage["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": prompt}]
                if thoughts:
                    usage["thoughtsTokenCount"] = thoughts
                body["usageMetadata"] = usage
            body["modelVersion"] = model
            body["responseId"] = response_id
            return body

        await self._open_stream(
            writer,
            {
                "content-type": "text/event-stream",
                "content-disposition": "attachment",
                "vary": "Origin, X-Origin, Referer",
                "server": "scaffolding on HTTPServer2",
                "x-content-type-options": "nosniff",
            },
        )
        if vendor.block_reason:
            body = response(None, 0)
            body = {
                "promptFeedback": {
                    "blockReason": vendor.block_reason,
                    "safetyRatings": [
                        {
                            "category": "HARM_CATEGORY_DANGEROUS_CONTENT",
                            "probability": "HIGH",
                            "blocked": True,
                        }
                    ],
                },
                **body,
            }
            await self._event(writer, body)
            await _end_body(writer)
            return True
        broken_at_end = len(pieces) in (b.cut_after, b.end_after, b.error_in_stream_after, b.garbage_after)
        if vendor.thinking:
            await self._event(writer, response([{"text": vendor.thinking, "thought": True}], 0))
        if b.first_token_delay:
            await asyncio.sleep(b.first_token_delay)
        for n, piece in enumerate(pieces):
            if await self._interrupt(writer, b, n):
                return False
            if n and b.chunk_delay:
                await asyncio.sleep(b.chunk_delay)
            # The last piece carries the finishReason and the final usage, as Gemini sends it.
            last = n == len(pieces) - 1 and not broken_at_end
            body = response([{"text": piece}], n + 1, finish if last else None)
            await self._event(writer, body, split=n == 0)
        if await self._interrupt(writer, b, len(pieces)):
            return False
        if not pieces:
            await self._event(writer, response([{"text": ""}], 0, finish))
        await _end_body(writer)
        return True


@pytest.fixture
def anthropic_upstream() -> Iterator[FakeAnthropic]:
    fake = FakeAnthropic()
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def gemini_upstream() -> Iterator[FakeGemini]:
    fake = FakeGemini()
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()
