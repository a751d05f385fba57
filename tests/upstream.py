"""A fake of OpenAI's chat-completions API on a real socket, speaking the vendor's exact wire format.

The arena's only outbound seam is HTTP, so tests replace the vendor at the other end of a TCP
connection rather than patching the client: the adapter, httpx's pool, chunked transfer and the
event-stream parser all run for real. The server is an asyncio loop in its own thread, so it
serves many streams at once and keeps serving while a test runs an event loop of its own.

Fixture: `openai_upstream` (function-scoped). Configure `behaviours[model]` before calling.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

ERROR_KINDS = {
    # status: (type, code, message) as OpenAI sends them when the behaviour gives no message.
    400: ("invalid_request_error", None, "Invalid request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: ("invalid_request_error", "unsupported_country_region_territory", "Country not supported."),
    404: ("invalid_request_error", "model_not_found", "The model does not exist."),
    422: ("invalid_request_error", None, "Unprocessable entity."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests."),
    500: ("server_error", None, "The server had an error while processing your request. Sorry about that!"),
    502: ("server_error", None, "Bad gateway."),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
}
REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    529: "Overloaded",  # Anthropic's own status
}


@dataclass
class Behaviour:
    """How the fake answers one model."""

    text: str = "Hello from the upstream."  # streamed split into word-ish chunks
    first_token_delay: float = 0.0
    chunk_delay: float = 0.0
    status: int | None = None  # answer this HTTP status with the vendor's JSON error body instead
    error_message: str = ""  # goes in the error body's message
    retry_after: str | None = None  # header on 429
    cut_after: int | None = None  # close the connection abruptly after N content chunks (no [DONE])
    error_in_stream_after: int | None = None  # send a `data: {"error": {...}}` event after N chunks
    usage: bool = True  # send the usage chunk when stream_options.include_usage is set
    # Additions:
    status_times: int | None = None  # answer `status` to the first N requests only, then stream
    end_after: int | None = None  # end the body cleanly after N content chunks: no finish, no [DONE]
    garbage_after: int | None = None  # send a data line that is not JSON after N content chunks
    # after N content chunks, bytes that are not an HTTP chunk (a size that is not hexadecimal), the
    # connection then left open
    broken_chunk_after: int | None = None
    reject_stream_options: bool = False  # answer 422 to `stream_options`, as Mistral's API does


# The categories of OpenAI's omni-moderation models, and the inputs each one scores.
MODERATION_CATEGORIES = {
    "harassment": ["text"],
    "harassment/threatening": ["text"],
    "hate": ["text"],
    "hate/threatening": ["text"],
    "illicit": ["text"],
    "illicit/violent": ["text"],
    "self-harm": ["text"],
    "self-harm/intent": ["text"],
    "self-harm/instructions": ["text"],
    "sexual": ["text"],
    "sexual/minors": ["text"],
    "violence": ["text"],
    "violence/graphic": ["text"],
}
MODERATION_MODELS = frozenset(
    {"omni-moderation-latest", "omni-moderation-2024-09-26", "text-moderation-latest"}
)


@dataclass
class ModerationBehaviour:
    """How the fake answers POST /v1/moderations."""

    # An input that contains one of these words (any case) is flagged in its category.
    flags: dict[str, str] = field(default_factory=lambda: {"flagme": "violence"})
    status: int | None = None  # answer this HTTP status with OpenAI's JSON error body instead
    error_message: str = ""
    delay: float = 0.0  # seconds before answering
    body: bytes | None = None  # a 200 answer with this body instead (one that cannot be read)
    key: str | None = None  # when set, requests without `Bearer <key>` get OpenAI's 401


class FakeServer:
    """An HTTP/1.1 server on 127.0.0.1, in its own thread and event loop; a vendor fake subclasses it.

    It parses each request (kept in `requests`, in order) and hands it to `handle`, which writes
    the whole response in the vendor's format.
    """

    base_url: str
    name = "fake-upstream"
    base_path = "/v1"  # the path of `base_url`

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=self.name, daemon=True)
        self._server: asyncio.Server | None = None
        self.connections: set[asyncio.Task[None]] = set()  # one task per open connection
        self._parked: list[socket.socket] = []
        self._ids = 0

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()
        started = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._connection, "127.0.0.1", 0), self._loop
        )
        self._server = started.result(timeout=10)
        port = self._server.sockets[0].getsockname()[1]
        self.base_url = f"http://127.0.0.1:{port}{self.base_path}"

    def stop(self) -> None:
        async def shutdown() -> None:
            assert self._server is not None
            self._server.close()
            # Streams still sleeping (a slow first token the client gave up on) end now.
            for task in list(self.connections):
                task.cancel()
            await asyncio.gather(*self.connections, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()
        for sock in self._parked:
            sock.close()

    def refuse_port(self) -> str:
        """A base_url where nothing listens: connecting is refused at once.

        The port stays bound (but not listening) until the fake stops, so nothing else takes it.
        """
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self._parked.append(sock)
        return f"http://127.0.0.1:{sock.getsockname()[1]}{self.base_path}"

    # --- HTTP/1.1 ---------------------------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.connections.add(task)
        try:
            # Keep-alive: httpx reuses pooled connections, so serve requests until the client leaves.
            while await self._exchange(reader, writer):
                pass
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.connections.discard(task)
            writer.close()

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Serve one request; whether the connection stays open for the next."""
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        request_line, *header_lines = head.split("\r\n")
        method, target, _ = request_line.split(" ", 2)
        headers = {}
        for line in header_lines:
            if line:
                key, _, value = line.partition(":")
                headers[key.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        try:
            payload = json.loads(body) if body else None
        except ValueError:
            payload = None
        self.requests.append({"path": target, "headers": headers, "json": payload})
        return await self.handle(writer, method, target, headers, payload)

    async def handle(
        self, writer: asyncio.StreamWriter, method: str, target: str, headers: dict[str, str], payload: Any
    ) -> bool:
        """Write the response to one request; whether the connection stays open for the next."""
        raise NotImplementedError

    async def _respond(
        self,
        writer: asyncio.StreamWriter,
        status: int,
        body: Any,
        extra: dict[str, str],
        *,
        content_type: str = "application/json",
        encode: Callable[[Any], str] = json.dumps,
    ) -> None:
        data = encode(body).encode()
        headers = {"content-type": content_type, "content-length": str(len(data)), **extra}
        writer.write(_head(status, headers) + data)
        await writer.drain()

    async def _interrupt(self, writer: asyncio.StreamWriter, b: Behaviour, n: int) -> bool:
        """Break the stream before content event `n` if the behaviour says so; whether it did."""
        if b.cut_after == n:
            await writer.drain()
            writer.close()  # no terminating chunk: a dropped connection
            return True
        if b.error_in_stream_after == n:
            await self._stream_error(writer, b)
            await _end_body(writer)
            return True
        if b.garbage_after == n:
            await _send(writer, b"data: <html>upstream proxy error</html>\n\n")
            await _end_body(writer)
            return True
        if b.end_after == n:
            await _end_body(writer)
            return True
        if b.broken_chunk_after == n:
            writer.write(b"zz\r\nnot a chunk\r\n")
            await writer.drain()
            await asyncio.sleep(60)  # cancelled when the fake stops
            return True
        return False

    async def _stream_error(self, writer: asyncio.StreamWriter, b: Behaviour) -> None:
        """The vendor's error event in the middle of a stream."""
        raise NotImplementedError

    def _next_id(self, prefix: str) -> str:
        self._ids += 1
        return f"{prefix}fake{self._ids:08d}"


class FakeOpenAI(FakeServer):
    name = "fake-openai"

    def __init__(self) -> None:
        super().__init__()
        self.behaviours: dict[str, Behaviour] = {}
        self.default: Behaviour | None = None
        self._answered: dict[str, int] = {}  # requests seen per model, for `status_times`
        self.moderation = ModerationBehaviour()

    async def handle(
        self, writer: asyncio.StreamWriter, method: str, target: str, headers: dict[str, str], payload: Any
    ) -> bool:
        if method == "POST" and target == "/v1/moderations":
            await self._moderate(writer, headers, payload, self.moderation)
            return True
        if method != "POST" or target != "/v1/chat/completions":
            await self._error(writer, 404, f"Invalid URL ({method} {target})", code=None)
            return True
        if not isinstance(payload, dict):
            await self._error(writer, 400, "We could not parse the JSON body of your request.", code=None)
            return True
        model = str(payload.get("model"))
        behaviour = self.behaviours.get(model, self.default)
        if behaviour is None:
            await self._error(
                writer, 404, f"The model `{model}` does not exist or you do not have access to it."
            )
            return True
        if behaviour.reject_stream_options and "stream_options" in payload:
            await self._mistral_rejects_stream_options(writer)
            return True
        seen = self._answered[model] = self._answered.get(model, 0) + 1
        if behaviour.status is not None and (
            behaviour.status_times is None or seen <= behaviour.status_times
        ):
            await self._error(
                writer, behaviour.status, behaviour.error_message or None, retry_after=behaviour.retry_after
            )
            return True
        return await self._stream(writer, payload, behaviour)

    async def _error(
        self,
        writer: asyncio.StreamWriter,
        status: int,
        message: str | None,
        *,
        code: str | None = "",
        retry_after: str | None = None,
    ) -> None:
        kind, default_code, default_message = ERROR_KINDS.get(status, ("server_error", None, "Error."))
        error = {
            "message": message or default_message,
            "type": kind,
            "param": None,
            "code": default_code if code == "" else code,
        }
        extra = {"x-request-id": self._next_id("req_")}
        if status == 429 and retry_after is not None:
            extra["retry-after"] = retry_after
        await self._respond(writer, status, {"error": error}, extra)

    async def _moderate(
        self, writer: asyncio.StreamWriter, headers: dict[str, str], payload: Any, b: ModerationBehaviour
    ) -> None:
        """OpenAI's moderation endpoint: one result per input, every category scored."""
        if b.delay:
            await asyncio.sleep(b.delay)
        if b.key is not None and headers.get("authorization") != f"Bearer {b.key}":
            sent = headers.get("authorization", "").removeprefix("Bearer ")
            message = (
                f"Incorrect API key provided: {sent[:3]}***{sent[-4:]}. You can find your API key at "
                "https://platform.openai.com/account/api-keys."
                if sent
                else "You didn't provide an API key."
            )
            await self._error(writer, 401, message, code="invalid_api_key" if sent else None)
            return
        if b.status is not None:
            await self._error(writer, b.status, b.error_message or None)
            return
        if not isinstance(payload, dict):
            await self._error(writer, 400, "We could not parse the JSON body of your request.", code=None)
            return
        if "input" not in payload:
            await self._error(writer, 400, "'input' is a required property", code=None)
            return
        model = payload.get("model", "omni-moderation-latest")
        if model not in MODERATION_MODELS:
            await self._error(
                writer, 404, f"The model `{model}` does not exist or you do not have access to it."
            )
            return
        if b.body is not None:
            data = b.body
            writer.write(
                _head(200, {"content-type": "application/json", "content-length": str(len(data))}) + data
            )
            await writer.drain()
            return
        inputs = payload["input"] if isinstance(payload["input"], list) else [payload["input"]]
        results = []
        for text in inputs:
            hit = {category for word, category in b.flags.items() if word.lower() in str(text).lower()}
            results.append(
                {
                    "flagged": bool(hit),
                    "categories": {name: name in hit for name in MODERATION_CATEGORIES},
                    "category_scores": {
                        name: 0.91 if name in hit else 0.000012 for name in MODERATION_CATEGORIES
                    },
                    "category_applied_input_types": MODERATION_CATEGORIES,
                }
            )
        body = {"id": self._next_id("modr-"), "model": "omni-moderation-2024-09-26", "results": results}
        await self._respond(writer, 200, body, {"x-request-id": self._next_id("req_")})

    async def _mistral_rejects_stream_options(self, writer: asyncio.StreamWriter) -> None:
        detail = [
            {
                "type": "extra_forbidden",
                "loc": ["body", "stream_options", "include_usage"],
                "msg": "Extra inputs are not permitted",
                "input": True,
            }
        ]
        body = {
            "object": "error",
            "message": {"detail": detail},
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
        await self._respond(writer, 422, body, {"x-request-id": self._next_id("req_")})

    # --- the event stream ---------------------------------------------------------------------------

    async def _stream(self, writer: asyncio.StreamWriter, request: dict[str, Any], b: Behaviour) -> bool:
        include_usage = bool((request.get("stream_options") or {}).get("include_usage"))
        pieces = re.findall(r"\s*\S+", b.text)
        finish_reason = "stop"
        max_tokens = request.get("max_tokens")
        if isinstance(max_tokens, int) and len(pieces) > max_tokens:
            pieces, finish_reason = pieces[:max_tokens], "length"
        ident, created = self._next_id("chatcmpl-"), int(time.time())
        model = str(request["model"])

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            body: dict[str, Any] = {
                "id": ident,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "system_fingerprint": "fp_fake0001",
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
            }
            if include_usage:
                body["usage"] = None
            return body

        writer.write(
            _head(
                200,
                {
                    "content-type": "text/event-stream; charset=utf-8",
                    "transfer-encoding": "chunked",
                    "cache-control": "no-cache",
                    "x-request-id": self._next_id("req_"),
                },
            )
        )
        # OpenRouter-style comment while the model "thinks": parsers must skip it.
        await _send(writer, b": keep-alive\n\n")
        await _send_event(writer, chunk({"role": "assistant", "content": "", "refusal": None}))
        if b.first_token_delay:
            await asyncio.sleep(b.first_token_delay)
        for n, piece in enumerate(pieces):
            if await self._interrupt(writer, b, n):
                return False
            if n and b.chunk_delay:
                await asyncio.sleep(b.chunk_delay)
            if n == 2:
                await _send(writer, b": keep-alive\n\n")
            # The first content event goes out in two TCP writes with a pause between, so the
            # client reads half an event (possibly half a UTF-8 character) before the rest.
            await _send_event(writer, chunk({"content": piece}), split=True, pause=0.005 if n == 0 else 0)
        if await self._interrupt(writer, b, len(pieces)):
            return False
        await _send_event(writer, chunk({}, finish_reason))
        if include_usage and b.usage:
            prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in request.get("messages", []))
            usage_chunk = chunk({})
            usage_chunk["choices"] = []
            usage_chunk["usage"] = {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": len(pieces),
                "total_tokens": prompt_tokens + len(pieces),
                "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                "completion_tokens_details": {
                    "reasoning_tokens": 0,
                    "audio_tokens": 0,
                    "accepted_prediction_tokens": 0,
                    "rejected_prediction_tokens": 0,
                },
            }
            await _send_event(writer, usage_chunk)
        await _send(writer, b"data: [DONE]\n\n")
        await _end_body(writer)
        return True

    async def _stream_error(self, writer: asyncio.StreamWriter, b: Behaviour) -> None:
        error = {
            "message": b.error_message or "The server had an error while processing your request.",
            "type": "server_error",
            "param": None,
            "code": None,
        }
        await _send_event(writer, {"error": error})


def _head(status: int, headers: dict[str, str]) -> bytes:
    lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def _send(writer: asyncio.StreamWriter, data: bytes) -> None:
    """One HTTP chunk of the chunked body, written at once."""
    writer.write(b"%x\r\n%s\r\n" % (len(data), data))
    await writer.drain()


async def _send_event(
    writer: asyncio.StreamWriter, body: dict[str, Any], *, split: bool = False, pause: float = 0
) -> None:
    data = b"data: " + json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"
    if not split:
        await _send(writer, data)
        return
    middle = len(data) // 2
    start = data.find(b'"content":"') + len(b'"content":"')
    length = data.find(b'"', start) - start
    if start >= len(b'"content":"') and length > 1:
        # Inside the text at an odd byte offset: mid-character for any multi-byte UTF-8 text, so
        # the client's decoder has to carry half a character over to the next read.
        middle = start + min(length - 1, (length // 2) | 1)
    await _send_split(writer, data, middle, pause)


async def _send_split(writer: asyncio.StreamWriter, data: bytes, middle: int, pause: float = 0) -> None:
    """`data` in two HTTP chunks, hence two TCP writes, cut at `middle`."""
    await _send(writer, data[:middle])
    await asyncio.sleep(pause)
    await _send(writer, data[middle:])


async def _end_body(writer: asyncio.StreamWriter) -> None:
    writer.write(b"0\r\n\r\n")
    await writer.drain()


@pytest.fixture
def openai_upstream() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI()
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()
