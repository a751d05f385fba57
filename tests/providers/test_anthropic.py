"""The Anthropic adapter against a fake Messages API on a real socket, in Anthropic's wire format."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from providers import streaming
from providers.anthropic import Anthropic
from providers.base import CallSpec, Chunk, Message, UpstreamError
from providers.http import client
from tests.providers import harness
from tests.providers.harness import QUESTION, run, text_of
from tests.upstream import Behaviour
from tests.vendor_upstreams import FakeAnthropic, VendorBehaviour

KEY = "sk-ant-api03-Zq8vR3pL9mN2xT7bW5hJ4cF6-AAAA"
MODEL = "claude-sonnet-4-5-20250929"


def spec_for(upstream: FakeAnthropic, **changes: Any) -> CallSpec:
    return harness.spec(
        **{"backend": "anthropic", "base_url": upstream.base_url, "model": MODEL, "api_key": KEY, **changes}
    )


async def collect(spec: CallSpec, messages: list[Message] = QUESTION) -> list[Chunk]:
    return await harness.collect(Anthropic(), spec, messages)


async def collect_until_error(spec: CallSpec) -> tuple[list[Chunk], UpstreamError]:
    return await harness.collect_until_error(Anthropic(), spec)


# --- answers ---------------------------------------------------------------------------------------


def test_it_streams_the_answer_then_one_finish_with_the_usage(anthropic_upstream: FakeAnthropic) -> None:
    anthropic_upstream.behaviours[MODEL] = Behaviour(
        text="Sunlight scatters off air molecules, blue the most."
    )
    chunks = run(collect(spec_for(anthropic_upstream)))

    assert text_of(chunks) == "Sunlight scatters off air molecules, blue the most."
    assert all(c.kind == "delta" and c.text for c in chunks[:-1])
    # A delta per word, those that arrived together in one chunk.
    assert sum(c.deltas for c in chunks[:-1]) == 8
    assert chunks[-1] == Chunk("finish", finish_reason="stop", input_tokens=5, output_tokens=8)


def test_it_sends_the_documented_request_with_the_system_prompt_at_the_top(
    anthropic_upstream: FakeAnthropic,
) -> None:
    anthropic_upstream.default = Behaviour()
    conversation: list[Message] = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "And now?"},
    ]
    run(collect(spec_for(anthropic_upstream, temperature=0.3, max_tokens=77), conversation))

    [request] = anthropic_upstream.requests
    assert request["path"] == "/v1/messages"
    assert request["json"] == {
        "model": MODEL,
        "max_tokens": 77,
        "temperature": 0.3,
        "messages": conversation[1:],
        "stream": True,
        "system": "Be brief.",
    }
    headers = request["headers"]
    assert headers["x-api-key"] == KEY and headers["anthropic-version"] == "2023-06-01"
    assert headers["content-type"] == "application/json"
    assert headers["accept"] == "text/event-stream"
    assert "authorization" not in headers


def test_it_reassembles_split_events_and_skips_pings(anthropic_upstream: FakeAnthropic) -> None:
    # The first delta arrives in two writes cut mid-character, after pings sent while "thinking".
    text = "☕☕☕☕☕☕☕ naïve café — déjà vu, 東京 and more words"
    anthropic_upstream.behaviours[MODEL] = Behaviour(text=text, first_token_delay=0.3)
    chunks = run(collect(spec_for(anthropic_upstream)))
    assert text_of(chunks) == text
    assert chunks[-1].kind == "finish"


def test_a_thinking_block_is_not_shown(anthropic_upstream: FakeAnthropic) -> None:
    anthropic_upstream.default = VendorBehaviour(
        text="The answer is 42.", thinking="Let me add six and seven."
    )
    chunks = run(collect(spec_for(anthropic_upstream)))
    assert text_of(chunks) == "The answer is 42."


def test_an_answer_stopped_by_max_tokens_says_length(anthropic_upstream: FakeAnthropic) -> None:
    anthropic_upstream.default = Behaviour(text="one two three four five six")
    chunks = run(collect(spec_for(anthropic_upstream, max_tokens=3)))
    assert text_of(chunks) == "one two three"
    assert chunks[-1] == Chunk("finish", finish_reason="length", input_tokens=5, output_tokens=3)


def test_without_usage_the_finish_has_no_token_counts(anthropic_upstream: FakeAnthropic) -> None:
    anthropic_upstream.default = Behaviour(text="no usage here", usage=False)
    assert run(collect(spec_for(anthropic_upstream)))[-1] == Chunk("finish", finish_reason="stop")


def test_a_consumer_that_stops_early_closes_the_stream(anthropic_upstream: FakeAnthropic) -> None:
    anthropic_upstream.default = Behaviour(text="one two three four five", chunk_delay=0.05)

    async def first_two() -> list[Chunk]:
        taken: list[Chunk] = []
        stream = Anthropic().stream(spec_for(anthropic_upstream), QUESTION, client())
        async for chunk in stream:
            taken.append(chunk)
            if len(taken) == 2:
                break
        await stream.aclose()  # type: ignore[attr-defined]
        return taken + await collect(spec_for(anthropic_upstream))

    chunks = run(first_two())
    assert text_of(chunks[:2]) == "one two"
    assert text_of(chunks[2:]) == "one two three four five"


# --- failures ----------------------------------------------------------------------------------------

HTTP = "The model's service answered with an error (HTTP {})."

FAILURES: dict[str, tuple[Behaviour, dict[str, Any], str, bool, int]] = {
    # name: (behaviour, spec changes, public text, transient, requests made)
    "http_500": (Behaviour(status=500), {}, HTTP.format(500), True, 2),
    "http_529_overloaded": (Behaviour(status=529), {}, HTTP.format(529), True, 2),
    "http_429_retry_soon": (Behaviour(status=429, retry_after="0"), {}, HTTP.format(429), True, 2),
    "http_429_retry_later": (Behaviour(status=429, retry_after="30"), {}, HTTP.format(429), False, 1),
    "http_400": (
        Behaviour(status=400, error_message=f"max_tokens: 100000 > 64000 for {MODEL}"),
        {},
        HTTP.format(400),
        False,
        1,
    ),
    "http_401": (Behaviour(status=401), {}, HTTP.format(401), False, 1),
    "http_403": (Behaviour(status=403), {}, HTTP.format(403), False, 1),
    # Overloaded before any text: worth the one retry, which meets the same error.
    "error_event_first": (Behaviour(error_in_stream_after=0), {}, streaming.FAILED_MID_ANSWER, True, 2),
    "error_event_later": (Behaviour(error_in_stream_after=2), {}, streaming.FAILED_MID_ANSWER, True, 1),
    "cut_mid_answer": (
        Behaviour(text="one two three four five", cut_after=3),
        {},
        streaming.CUT_OFF,
        False,
        1,
    ),
    "ended_without_message_stop": (
        Behaviour(text="one two three", end_after=3),
        {},
        streaming.CUT_OFF,
        False,
        1,
    ),
    "non_json_data": (Behaviour(garbage_after=1), {}, streaming.UNREADABLE, False, 1),
    # Pings keep arriving while nothing is said: the first-token deadline still ends the wait.
    "slow_first_token": (
        Behaviour(first_token_delay=2),
        {"first_token_timeout": 0.3},
        streaming.SLOW_START,
        False,
        1,
    ),
    "stalled_mid_answer": (
        # The first token comes at once and then nothing; the idle limit is long enough that a
        # loaded machine does not turn this into a slow start.
        Behaviour(text="one two three", chunk_delay=6),
        {"first_token_timeout": 1.5},
        streaming.CUT_OFF,
        False,
        1,
    ),
    "total_time_exceeded": (
        Behaviour(text=" ".join(["word"] * 50), chunk_delay=0.05),
        {"total_timeout": 0.5},
        streaming.TOO_LONG,
        False,
        1,
    ),
}


@pytest.mark.parametrize("failure", sorted(FAILURES))
def test_a_failure_raises_an_upstream_error_that_names_nothing(
    failure: str, anthropic_upstream: FakeAnthropic
) -> None:
    behaviour, changes, public, transient, requests = FAILURES[failure]
    anthropic_upstream.behaviours[MODEL] = behaviour
    chunks, error = run(collect_until_error(spec_for(anthropic_upstream, **changes)))

    assert error.public == public
    assert error.transient is transient
    assert len(anthropic_upstream.requests) == requests
    assert all(chunk.kind == "delta" for chunk in chunks)  # never a finish before an error
    for secret in (MODEL, "claude", "anthropic", anthropic_upstream.base_url, "127.0.0.1", "max_tokens"):
        assert secret.lower() not in error.public.lower()
    for text in (error.detail, str(error), repr(error)):
        assert KEY not in text
    assert anthropic_upstream.base_url in error.detail


def test_an_http_error_keeps_the_vendors_type_and_message_for_operators(
    anthropic_upstream: FakeAnthropic,
) -> None:
    anthropic_upstream.behaviours[MODEL] = Behaviour(status=400, error_message="temperature: range: 0..1")
    _, error = run(collect_until_error(spec_for(anthropic_upstream)))
    assert error.status == 400 and not error.permanent
    assert "HTTP 400" in error.detail and "temperature: range: 0..1 (invalid_request_error)" in error.detail


def test_an_error_event_keeps_its_type_for_operators(anthropic_upstream: FakeAnthropic) -> None:
    anthropic_upstream.behaviours[MODEL] = Behaviour(text="one two three", error_in_stream_after=2)
    chunks, error = run(collect_until_error(spec_for(anthropic_upstream)))
    assert text_of(chunks) == "one two"
    assert "Overloaded (overloaded_error)" in error.detail


def test_a_rejected_key_is_permanent_and_never_retried(anthropic_upstream: FakeAnthropic) -> None:
    anthropic_upstream.key = "sk-ant-the-right-one"
    anthropic_upstream.default = Behaviour()
    _, error = run(collect_until_error(spec_for(anthropic_upstream)))
    assert error.status == 401 and error.permanent and not error.transient
    assert "invalid x-api-key (authentication_error)" in error.detail
    assert len(anthropic_upstream.requests) == 1


def test_an_unknown_model_is_permanent(anthropic_upstream: FakeAnthropic) -> None:
    _, error = run(collect_until_error(spec_for(anthropic_upstream, model="claude-nope")))
    assert error.status == 404 and error.permanent
    assert "model: claude-nope (not_found_error)" in error.detail
    assert "claude-nope" not in error.public


def test_it_retries_a_429_after_the_wait_it_was_given_then_streams(anthropic_upstream: FakeAnthropic) -> None:
    anthropic_upstream.behaviours[MODEL] = Behaviour(text="ok", status=429, retry_after="0.2", status_times=1)

    async def timed() -> tuple[list[Chunk], float]:
        started = asyncio.get_running_loop().time()
        chunks = await collect(spec_for(anthropic_upstream))
        return chunks, asyncio.get_running_loop().time() - started

    chunks, elapsed = run(timed())
    assert text_of(chunks) == "ok" and len(anthropic_upstream.requests) == 2
    assert elapsed >= 0.2  # it waited as asked (a lower bound, never an upper one)


def test_it_gives_up_after_one_retry_of_a_429(anthropic_upstream: FakeAnthropic) -> None:
    anthropic_upstream.behaviours[MODEL] = Behaviour(status=429, retry_after="0.1")
    _, error = run(collect_until_error(spec_for(anthropic_upstream)))
    assert error.status == 429 and error.retry_after == 0.1
    assert len(anthropic_upstream.requests) == 2
    assert "rate_limit_error" in error.detail


def test_a_refused_connection_is_transient_and_tried_twice(anthropic_upstream: FakeAnthropic) -> None:
    _, error = run(
        collect_until_error(spec_for(anthropic_upstream, base_url=anthropic_upstream.refuse_port()))
    )
    assert error.public == streaming.UNREACHABLE and error.transient
