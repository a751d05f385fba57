"""What every adapter shares: the event-stream parser, the deadline over a stream's waits, the connections."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from httpx_sse import EventSource

from providers.openai import OpenAICompatible
from providers.streaming import Deadline, EventParser, ServerSentEvent
from tests.providers import harness
from tests.providers.harness import collect, run
from tests.upstream import Behaviour, FakeOpenAI

# Every line ending the standard allows, comments, named events, ids, retries, multi-line data,
# a field with no space after its colon, an unknown field, and text of several bytes a character.
BODY = (
    ": a keep-alive comment\n\n"
    'data: {"text": "naïve café, 東京 ☕"}\n\n'
    "event: ping\r\ndata: {}\r\n\r\n"
    "id: 7\rdata: first line\rdata:second line\r\r"
    "retry: 1500\nunknown: ignored\ndata: last\n\n"
    "data: [DONE]\r\n\r\n"
).encode()


def parsed_in_pieces(body: bytes, size: int) -> list[ServerSentEvent]:
    parser = EventParser()
    events: list[ServerSentEvent] = []
    for start in range(0, len(body), size):
        events += parser.feed(body[start : start + size])
    return events + parser.close()


def parsed_by_httpx_sse(body: bytes) -> list[ServerSentEvent]:
    response = httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body)
    return [
        ServerSentEvent(sse.event, sse.data, sse.id, sse.retry) for sse in EventSource(response).iter_sse()
    ]


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, len(BODY)])
def test_the_parser_reads_events_as_httpx_sse_does_however_the_body_is_cut(size: int) -> None:
    assert parsed_in_pieces(BODY, size) == parsed_by_httpx_sse(BODY)


def test_the_parser_returns_the_events_of_one_piece_together() -> None:
    parser = EventParser()
    assert parser.feed(b"data: one\n\ndata: two\n\ndata: thr") == [
        ServerSentEvent(data="one"),
        ServerSentEvent(data="two"),
    ]
    assert parser.feed(b"ee\n\n") == [ServerSentEvent(data="three")]


def test_an_event_the_body_ends_in_is_dropped() -> None:
    parser = EventParser()
    assert parser.feed(b"data: whole\n\ndata: half") == [ServerSentEvent(data="whole")]
    assert parser.close() == []


def test_a_wait_past_the_deadline_is_a_timeout_and_leaves_the_task_uncancelled() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        deadline = Deadline(loop.time() + 0.05)
        never: asyncio.Future[None] = loop.create_future()
        with pytest.raises(TimeoutError):
            await deadline.wait(never)
        task = asyncio.current_task()
        assert task is not None and task.cancelling() == 0
        await asyncio.sleep(0)  # the task goes on, not cancelled
        deadline.close()

    asyncio.run(main())


def test_a_deadline_that_passes_between_waits_cancels_nothing_and_stops_the_next_wait() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        deadline = Deadline(loop.time() + 0.01)
        assert await deadline.wait(asyncio.sleep(0, "ready")) == "ready"
        await asyncio.sleep(0.05)  # the consumer's own work, past the deadline: not cancelled
        with pytest.raises(TimeoutError):
            await deadline.wait(asyncio.sleep(0))
        deadline.move(loop.time() + 10)
        assert await deadline.wait(asyncio.sleep(0, "later")) == "later"
        deadline.close()

    asyncio.run(main())


def test_calls_reuse_kept_alive_connections_and_each_stream_at_once_has_its_own(
    openai_upstream: FakeOpenAI,
) -> None:
    openai_upstream.default = Behaviour(text="a few words, slowly streamed", chunk_delay=0.02)
    spec = harness.spec(backend="openai-compatible", base_url=openai_upstream.base_url, model="m", api_key="")

    async def main() -> tuple[int, int]:
        for _ in range(3):
            await collect(OpenAICompatible(), spec)
        one_after_another = len(openai_upstream.connections)  # the fake's open connections
        await asyncio.gather(*(collect(OpenAICompatible(), spec) for _ in range(5)))
        return one_after_another, len(openai_upstream.connections)

    assert run(main()) == (1, 5)
