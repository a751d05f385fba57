"""Drives an adapter against a fake upstream on a real socket: the harness the vendor tests share."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest

from providers.base import Backend, CallSpec, Chunk, Message, UpstreamError
from providers.http import client, close_client

T = TypeVar("T")

QUESTION: list[Message] = [{"role": "user", "content": "Why is the sky blue?"}]


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run one test's coroutine in a fresh loop, closing that loop's shared client afterwards."""

    async def main() -> T:
        try:
            return await coroutine
        finally:
            await close_client()

    return asyncio.run(main())


def spec(**values: Any) -> CallSpec:
    """A call with short time-outs and a near-instant retry, so failure tests stay fast.

    `values` names backend, base_url, model and api_key, and may change any default below.
    """
    values = {
        "temperature": 0.7,
        "max_tokens": 256,
        "connect_timeout": 2.0,
        "first_token_timeout": 2.0,
        "total_timeout": 10.0,
        "options": {"retry_backoff": 0.01},
        **values,
    }
    return CallSpec(**values)


async def collect(adapter: Backend, spec: CallSpec, messages: list[Message] = QUESTION) -> list[Chunk]:
    return [chunk async for chunk in adapter.stream(spec, messages, client())]


async def collect_until_error(adapter: Backend, spec: CallSpec) -> tuple[list[Chunk], UpstreamError]:
    chunks: list[Chunk] = []
    with pytest.raises(UpstreamError) as caught:
        async for chunk in adapter.stream(spec, QUESTION, client()):
            chunks.append(chunk)
    return chunks, caught.value


def text_of(chunks: list[Chunk]) -> str:
    return "".join(c.text for c in chunks if c.kind == "delta")
