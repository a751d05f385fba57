"""The wire of bench/streaming.py: an OpenAI-compatible upstream that streams paced "tokens", and a
raw asyncio HTTP/1.1 client (a pure-Python HTTP parser would be the bottleneck at 50,000 events a
second). Imported by bench/streaming.py, which runs from the repository root."""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections.abc import AsyncIterator
from typing import Any

HOST = "127.0.0.1"

# --- the upstream -------------------------------------------------------------------------------------


class Upstream:
    """An OpenAI-compatible chat-completions server that streams at the pace its model name gives."""

    def __init__(self) -> None:
        self.open = 0
        self.max_open = 0
        self.streams = 0

    async def serve(self, port: int) -> None:
        server = await asyncio.start_server(self.connection, HOST, port, backlog=4096)
        async with server:
            await server.serve_forever()

    async def connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                _, path, _, body = await read_request(reader)
                if path == "/stats":
                    stats = {"max_open": self.max_open, "streams": self.streams, "cpu": time.process_time()}
                    await respond_json(writer, stats)
                elif path == "/reset":
                    self.max_open, self.streams = self.open, 0
                    await respond_json(writer, {})
                else:
                    await self.stream(writer, json.loads(body))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def stream(self, writer: asyncio.StreamWriter, request: dict[str, Any]) -> None:
        # "50x12": 50 tokens 12 ms apart, the first at once; "50x12x100": the first after 100 ms.
        tokens, interval_ms, first_ms = (*(int(n) for n in str(request["model"]).split("x")), 0)[:3]
        self.open += 1
        self.streams += 1
        self.max_open = max(self.max_open, self.open)
        try:
            head = "content-type: text/event-stream\r\ntransfer-encoding: chunked\r\ncache-control: no-cache"
            writer.write(f"HTTP/1.1 200 OK\r\n{head}\r\n\r\n".encode())
            writer.write(openai_chunk({"role": "assistant", "content": ""}))
            loop = asyncio.get_running_loop()
            start = loop.time()
            for n in range(tokens):
                # On a fixed schedule, so a late wake-up does not push every later token back.
                delay = start + (first_ms + n * interval_ms) / 1000 - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                writer.write(token_chunk(n))
                if writer.transport.get_write_buffer_size() > 65536:
                    await writer.drain()
            writer.write(openai_chunk({}, "stop"))
            usage = {"prompt_tokens": 3, "completion_tokens": tokens, "total_tokens": tokens + 3}
            writer.write(event({**CHUNK_BASE, "choices": [], "usage": usage}))
            writer.write(b"e\r\ndata: [DONE]\n\n\r\n0\r\n\r\n")
            await writer.drain()
        finally:
            self.open -= 1


CHUNK_BASE = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 0, "model": "m"}


def openai_chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    return event({**CHUNK_BASE, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})


@functools.cache
def token_chunk(n: int) -> bytes:
    """The chunk of token `n`, the same bytes for every stream: made once, so that the load's own
    CPU time (this process shares the machine with the platform) goes on sending, not encoding."""
    return openai_chunk({"content": f" tok{n}"})


def event(body: dict[str, Any]) -> bytes:
    data = b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(data), data)


async def respond_json(writer: asyncio.StreamWriter, body: dict[str, Any]) -> None:
    data = json.dumps(body).encode()
    writer.write(
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
        % (len(data), data)
    )
    await writer.drain()


# --- a small HTTP/1.1 client ----------------------------------------------------------------------------


async def read_request(reader: asyncio.StreamReader) -> tuple[str, str, dict[str, str], bytes]:
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    method, path, _ = head[0].split(" ", 2)
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in head[1:] if line)}
    return method, path, headers, await reader.readexactly(int(headers.get("content-length", 0)))


async def read_head(reader: asyncio.StreamReader) -> tuple[int, list[tuple[str, str]]]:
    lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    headers = [
        (k.strip().lower(), v.strip()) for k, _, v in (line.partition(":") for line in lines[1:] if line)
    ]
    return int(lines[0].split(" ", 2)[1]), headers


async def call(
    port: int, method: str, path: str, body: dict[str, Any] | None = None, cookie: str = ""
) -> tuple[int, list[tuple[str, str]], bytes]:
    """One request on a connection of its own; the whole response."""
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        writer.write(request_bytes(port, method, path, body, cookie))
        status, headers = await read_head(reader)
        fields = dict(headers)
        if "content-length" in fields:
            data = await reader.readexactly(int(fields["content-length"]))
        else:
            data = b"".join([piece async for piece in chunks(reader)])
        return status, headers, data
    finally:
        writer.close()


def request_bytes(port: int, method: str, path: str, body: dict[str, Any] | None, cookie: str) -> bytes:
    data = json.dumps(body).encode() if body is not None else b""
    lines = [
        f"{method} {path} HTTP/1.1",
        f"host: {HOST}:{port}",
        "connection: close",
        f"content-length: {len(data)}",
    ]
    if body is not None:
        lines.append("content-type: application/json")
    if cookie:
        lines.append(f"cookie: {cookie}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + data


async def chunks(reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
    """The pieces of a chunked body."""
    while True:
        size = int((await reader.readline()).split(b";")[0], 16)
        if size == 0:
            await reader.readline()
            return
        yield await reader.readexactly(size)
        await reader.readexactly(2)


async def sse(
    port: int, method: str, path: str, body: dict[str, Any] | None = None, cookie: str = ""
) -> AsyncIterator[tuple[float, str]]:
    """(arrival time, data) of each server-sent event of one streamed response.

    The body is read in whatever pieces the network gives, each taken apart in one go: the client
    shares the machine's cores with the platform, and a read per HTTP chunk cost it twice the CPU.
    """
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        writer.write(request_bytes(port, method, path, body, cookie))
        status, _ = await read_head(reader)
        if status != 200:
            raise RuntimeError(f"HTTP {status} from {path}")
        chunked = ChunkedBody()
        events = b""
        while not chunked.ended:
            data = await reader.read(65536)
            if not data:
                raise asyncio.IncompleteReadError(b"", None)
            now = time.perf_counter()
            events += chunked.feed(data)
            if b"\n\n" in events:
                *complete, events = events.split(b"\n\n")
                for raw in complete:
                    for line in raw.split(b"\n"):
                        if line.startswith(b"data: "):
                            yield now, line[6:].decode()
    finally:
        writer.close()


class ChunkedBody:
    """The payload of a chunked HTTP body, fed the bytes as they arrive, in pieces of any size."""

    def __init__(self) -> None:
        self.pending = b""
        self.ended = False

    def feed(self, data: bytes) -> bytes:
        self.pending += data
        payload: list[bytes] = []
        while (line_end := self.pending.find(b"\r\n")) >= 0:
            size = int(self.pending[:line_end].split(b";")[0], 16)
            start = line_end + 2
            if len(self.pending) < start + size + 2:
                break  # the rest of this chunk is still on its way
            if size == 0:
                self.ended = True
                break
            payload.append(self.pending[start : start + size])
            self.pending = self.pending[start + size + 2 :]
        return b"".join(payload)
