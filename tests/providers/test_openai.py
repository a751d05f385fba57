"""The OpenAI-compatible adapter against a fake upstream on a real socket, in OpenAI's wire format."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from providers import openai
from providers.base import CallSpec, Chunk, Message, UpstreamError
from providers.http import call_spec, client
from providers.models import LLM
from providers.openai import OpenAICompatible
from providers.registry import BACKENDS, backend_for
from tests.providers import harness
from tests.providers.harness import QUESTION, run, text_of
from tests.upstream import Behaviour, FakeOpenAI, FakeServer, _head

KEY = "sk-test-Zq8vR3pL9mN2xT7bW5hJ4cF6"
MODEL = "gpt-4o-mini-2024-07-18"


def spec_for(upstream: FakeServer, **changes: Any) -> CallSpec:
    return harness.spec(
        **{
            "backend": "openai-compatible",
            "base_url": upstream.base_url,
            "model": MODEL,
            "api_key": KEY,
            **changes,
        }
    )


async def collect(spec: CallSpec, messages: list[Message] = QUESTION) -> list[Chunk]:
    return await harness.collect(OpenAICompatible(), spec, messages)


async def collect_until_error(spec: CallSpec) -> tuple[list[Chunk], UpstreamError]:
    return await harness.collect_until_error(OpenAICompatible(), spec)


# --- answers ---------------------------------------------------------------------------------------


def test_it_streams_the_answer_then_one_finish_with_the_usage(openai_upstream: FakeOpenAI) -> None:
    openai_upstream.behaviours[MODEL] = Behaviour(text="Sunlight scatters off air molecules, blue the most.")
    chunks = run(collect(spec_for(openai_upstream)))

    assert text_of(chunks) == "Sunlight scatters off air molecules, blue the most."
    assert all(c.kind == "delta" and c.text for c in chunks[:-1])
    # A delta per word: the role-only and empty deltas are not passed on.
    assert sum(c.deltas for c in chunks[:-1]) == 8
    assert chunks[-1] == Chunk("finish", finish_reason="stop", input_tokens=5, output_tokens=8)


def test_it_reassembles_split_events_and_skips_keep_alive_comments(openai_upstream: FakeOpenAI) -> None:
    # Each first content event arrives in two writes, cut mid-way, here through a multi-byte character.
    text = (
        "☕☕☕☕☕☕☕☕☕☕☕☕☕☕☕☕☕☕☕☕ naïve café — déjà vu, 東京 and more words after the comment"
    )
    openai_upstream.behaviours[MODEL] = Behaviour(text=text)
    chunks = run(collect(spec_for(openai_upstream)))
    assert text_of(chunks) == text
    assert chunks[-1].kind == "finish"


class BurstingUpstream(FakeServer):
    """An OpenAI-compatible server that sends a whole answer in one write, as a buffering proxy does."""

    words = [f" w{n}" for n in range(40)]

    async def handle(
        self, writer: asyncio.StreamWriter, method: str, target: str, headers: dict[str, str], payload: Any
    ) -> bool:
        def event(delta: dict[str, Any], finish: str | None = None) -> bytes:
            choice = {"index": 0, "delta": delta, "finish_reason": finish}
            return b"data: " + json.dumps({"object": "chat.completion.chunk", "choices": [choice]}).encode()

        events = [event({"role": "assistant", "content": ""})]
        events += [event({"content": word}) for word in self.words]
        events += [event({}, "stop"), b"data: [DONE]"]
        body = b"\r\n\r\n".join(events) + b"\r\n\r\n"
        head = {"content-type": "text/event-stream", "content-length": str(len(body))}
        writer.write(_head(200, head) + body)
        await writer.drain()
        return True


def test_deltas_that_arrive_together_go_on_as_one_chunk_that_counts_them() -> None:
    upstream = BurstingUpstream()
    upstream.start()
    try:
        chunks = run(collect(spec_for(upstream)))
    finally:
        upstream.stop()
    deltas = [c for c in chunks if c.kind == "delta"]
    assert "".join(c.text for c in deltas) == "".join(BurstingUpstream.words)
    assert sum(c.deltas for c in deltas) == len(BurstingUpstream.words)
    assert len(deltas) < len(BurstingUpstream.words)
    assert chunks[-1] == Chunk("finish", finish_reason="stop")


def test_it_sends_the_model_the_messages_and_the_sampling_parameters(openai_upstream: FakeOpenAI) -> None:
    openai_upstream.default = Behaviour()
    conversation: list[Message] = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "And now?"},
    ]
    run(collect(spec_for(openai_upstream, temperature=0.3, max_tokens=77), conversation))

    [request] = openai_upstream.requests
    assert request["path"] == "/v1/chat/completions"
    assert request["json"] == {
        "model": MODEL,
        "messages": conversation,
        "stream": True,
        "stream_options": {"include_usage": True},
        "temperature": 0.3,
        "max_tokens": 77,
    }
    assert request["headers"]["authorization"] == f"Bearer {KEY}"
    assert request["headers"]["accept"] == "text/event-stream"


def test_it_sends_no_authorization_header_without_a_key(openai_upstream: FakeOpenAI) -> None:
    openai_upstream.default = Behaviour()
    run(collect(spec_for(openai_upstream, api_key="")))
    assert "authorization" not in openai_upstream.requests[0]["headers"]


def test_a_trailing_slash_on_the_base_url_is_ignored(openai_upstream: FakeOpenAI) -> None:
    openai_upstream.default = Behaviour(text="fine")
    chunks = run(collect(spec_for(openai_upstream, base_url=openai_upstream.base_url + "/")))
    assert text_of(chunks) == "fine"
    assert openai_upstream.requests[0]["path"] == "/v1/chat/completions"


def test_an_answer_stopped_by_max_tokens_says_so(openai_upstream: FakeOpenAI) -> None:
    openai_upstream.default = Behaviour(text="one two three four five six")
    chunks = run(collect(spec_for(openai_upstream, max_tokens=3)))
    assert text_of(chunks) == "one two three"
    assert chunks[-1] == Chunk("finish", finish_reason="length", input_tokens=5, output_tokens=3)


def test_without_usage_the_finish_has_no_token_counts(openai_upstream: FakeOpenAI) -> None:
    openai_upstream.default = Behaviour(text="no usage here", usage=False)
    chunks = run(collect(spec_for(openai_upstream)))
    assert chunks[-1] == Chunk("finish", finish_reason="stop")


def test_many_streams_run_at_once(openai_upstream: FakeOpenAI) -> None:
    openai_upstream.default = Behaviour(text="a few words, slowly streamed", chunk_delay=0.02)

    async def many() -> list[list[Chunk]]:
        spec = spec_for(openai_upstream)
        return await asyncio.gather(*(collect(spec) for _ in range(100)))

    answers = run(many())
    assert {text_of(chunks) for chunks in answers} == {"a few words, slowly streamed"}
    assert len(openai_upstream.requests) == 100


def test_a_consumer_that_stops_early_closes_the_stream(openai_upstream: FakeOpenAI) -> None:
    openai_upstream.default = Behaviour(text="one two three four five", chunk_delay=0.05)

    async def first_two() -> list[Chunk]:
        taken: list[Chunk] = []
        stream = OpenAICompatible().stream(spec_for(openai_upstream), QUESTION, client())
        async for chunk in stream:
            taken.append(chunk)
            if len(taken) == 2:
                break
        await stream.aclose()  # type: ignore[attr-defined]
        # The connection is not reused mid-body: the next call still gets a whole answer.
        return taken + await collect(spec_for(openai_upstream))

    chunks = run(first_two())
    assert text_of(chunks[:2]) == "one two"
    assert text_of(chunks[2:]) == "one two three four five"


# --- failures ----------------------------------------------------------------------------------------

HTTP = "The model's service answered with an error (HTTP {})."

FAILURES: dict[str, tuple[Behaviour, dict[str, Any], str, bool, int]] = {
    # name: (behaviour, spec changes, public text, transient, requests made)
    "http_500": (Behaviour(status=500), {}, HTTP.format(500), True, 2),
    "http_503": (Behaviour(status=503), {}, HTTP.format(503), True, 2),
    "http_429_retry_soon": (Behaviour(status=429, retry_after="0"), {}, HTTP.format(429), True, 2),
    "http_429_retry_later": (Behaviour(status=429, retry_after="30"), {}, HTTP.format(429), False, 1),
    "http_400": (
        Behaviour(status=400, error_message=f"Invalid 'messages' for {MODEL}."),
        {},
        HTTP.format(400),
        False,
        1,
    ),
    "http_401": (Behaviour(status=401), {}, HTTP.format(401), False, 1),
    "http_403": (Behaviour(status=403), {}, HTTP.format(403), False, 1),
    "http_422": (Behaviour(status=422), {}, HTTP.format(422), False, 1),
    "error_in_stream_first": (Behaviour(error_in_stream_after=0), {}, openai.FAILED_MID_ANSWER, False, 1),
    "error_in_stream_later": (Behaviour(error_in_stream_after=2), {}, openai.FAILED_MID_ANSWER, False, 1),
    "cut_mid_answer": (Behaviour(text="one two three four five", cut_after=3), {}, openai.CUT_OFF, False, 1),
    "ended_without_done": (Behaviour(text="one two three", end_after=2), {}, openai.CUT_OFF, False, 1),
    "non_json_data": (Behaviour(garbage_after=1), {}, openai.UNREADABLE, False, 1),
    "slow_first_token": (
        Behaviour(first_token_delay=2),
        {"first_token_timeout": 0.2},
        openai.SLOW_START,
        False,
        1,
    ),
    "stalled_mid_answer": (
        # The first token comes at once and then nothing; the idle limit is long enough that a
        # loaded machine does not turn this into a slow start.
        Behaviour(text="one two three", chunk_delay=6),
        {"first_token_timeout": 1.5},
        openai.CUT_OFF,
        False,
        1,
    ),
    "total_time_exceeded": (
        Behaviour(text=" ".join(["word"] * 50), chunk_delay=0.05),
        {"total_timeout": 0.5},
        openai.TOO_LONG,
        False,
        1,
    ),
}


@pytest.mark.parametrize("failure", sorted(FAILURES))
def test_a_failure_raises_an_upstream_error_that_names_nothing(
    failure: str, openai_upstream: FakeOpenAI
) -> None:
    behaviour, changes, public, transient, requests = FAILURES[failure]
    openai_upstream.behaviours[MODEL] = behaviour
    chunks, error = run(collect_until_error(spec_for(openai_upstream, **changes)))

    assert error.public == public
    assert error.transient is transient
    assert len(openai_upstream.requests) == requests
    assert all(chunk.kind == "delta" for chunk in chunks)  # never a finish before an error
    for secret in (MODEL, "gpt", "openai", openai_upstream.base_url, "127.0.0.1", "Invalid 'messages'"):
        assert secret.lower() not in error.public.lower()
    for text in (error.detail, str(error), repr(error)):
        assert KEY not in text
    assert openai_upstream.base_url in error.detail  # operators do learn where it failed


def test_an_http_error_keeps_the_status_and_the_vendors_message_for_operators(
    openai_upstream: FakeOpenAI,
) -> None:
    openai_upstream.behaviours[MODEL] = Behaviour(status=400, error_message="'temperature' is too high.")
    _, error = run(collect_until_error(spec_for(openai_upstream)))
    assert error.status == 400 and not error.permanent
    assert "HTTP 400" in error.detail
    assert "'temperature' is too high." in error.detail and "invalid_request_error" in error.detail


@pytest.mark.parametrize("status", [401, 403, 404])
def test_a_rejected_key_or_a_missing_model_is_permanent(status: int, openai_upstream: FakeOpenAI) -> None:
    openai_upstream.behaviours[MODEL] = Behaviour(status=status)
    _, error = run(collect_until_error(spec_for(openai_upstream)))
    assert error.status == status and error.permanent and not error.transient


def test_an_unknown_model_is_the_vendors_model_not_found(openai_upstream: FakeOpenAI) -> None:
    _, error = run(collect_until_error(spec_for(openai_upstream, model="no-such-model")))
    assert error.status == 404 and error.permanent
    assert "model_not_found" in error.detail and "no-such-model" in error.detail
    assert "no-such-model" not in error.public


def test_the_key_never_reaches_the_detail_even_when_the_upstream_echoes_it(
    openai_upstream: FakeOpenAI,
) -> None:
    openai_upstream.behaviours[MODEL] = Behaviour(
        status=401, error_message=f"Incorrect API key provided: {KEY}."
    )
    _, error = run(collect_until_error(spec_for(openai_upstream)))
    assert KEY not in error.detail and KEY not in str(error)
    assert "Incorrect API key provided: [api key]." in error.detail


def test_a_refused_connection_is_transient_and_tried_twice(openai_upstream: FakeOpenAI) -> None:
    _, error = run(collect_until_error(spec_for(openai_upstream, base_url=openai_upstream.refuse_port())))
    assert error.public == openai.UNREACHABLE
    assert error.transient and error.status is None and not error.permanent
    assert "ConnectError" in error.detail


def test_bytes_that_are_not_http_mid_answer_cut_the_answer_off_at_the_limit_on_silence(
    openai_upstream: FakeOpenAI,
) -> None:
    # The upstream then keeps the connection open and silent: the answer is cut off as a stalled
    # one, long before the whole answer's limit.
    openai_upstream.behaviours[MODEL] = Behaviour(text="one two three", broken_chunk_after=2)
    chunks, error = run(
        collect_until_error(spec_for(openai_upstream, first_token_timeout=1.5, total_timeout=60))
    )
    assert text_of(chunks) == "one two"
    assert error.public == openai.CUT_OFF
    assert "the stream stalled mid-answer" in error.detail


def test_a_429_keeps_how_long_the_upstream_asked_to_wait(openai_upstream: FakeOpenAI) -> None:
    openai_upstream.behaviours[MODEL] = Behaviour(status=429, retry_after="30")
    _, error = run(collect_until_error(spec_for(openai_upstream)))
    assert error.status == 429 and error.retry_after == 30.0
    assert "rate_limit_exceeded" in error.detail


def test_it_retries_once_on_503_then_streams(openai_upstream: FakeOpenAI) -> None:
    openai_upstream.behaviours[MODEL] = Behaviour(text="second time lucky", status=503, status_times=1)
    chunks = run(collect(spec_for(openai_upstream)))
    assert text_of(chunks) == "second time lucky"
    assert len(openai_upstream.requests) == 2


def test_it_retries_a_429_after_the_wait_it_was_given(openai_upstream: FakeOpenAI) -> None:
    openai_upstream.behaviours[MODEL] = Behaviour(text="ok", status=429, retry_after="0.2", status_times=1)
    chunks = run(collect(spec_for(openai_upstream)))
    assert text_of(chunks) == "ok" and len(openai_upstream.requests) == 2


def test_it_does_not_retry_a_rejected_key(openai_upstream: FakeOpenAI) -> None:
    openai_upstream.behaviours[MODEL] = Behaviour(text="never", status=401, status_times=1)
    _, error = run(collect_until_error(spec_for(openai_upstream)))
    assert error.status == 401
    assert len(openai_upstream.requests) == 1


def test_an_endpoint_that_rejects_stream_options_is_called_without_them(
    openai_upstream: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(openai, "_NO_STREAM_OPTIONS", set())
    openai_upstream.behaviours[MODEL] = Behaviour(text="bonjour", reject_stream_options=True)

    async def twice() -> tuple[list[Chunk], list[Chunk]]:
        return await collect(spec_for(openai_upstream)), await collect(spec_for(openai_upstream))

    first, second = run(twice())
    assert text_of(first) == text_of(second) == "bonjour"
    sent = [r["json"] for r in openai_upstream.requests]
    # Learnt once: the second answer costs one request, not two.
    assert ["stream_options" in body for body in sent] == [True, False, False]


# --- the seam ----------------------------------------------------------------------------------------


def test_each_event_loop_has_its_own_shared_client() -> None:
    async def clients() -> tuple[Any, Any]:
        return client(), client()

    first, again = asyncio.run(clients())
    other, _ = asyncio.run(clients())
    assert first is again
    assert other is not first


def test_a_call_spec_reads_the_row_the_settings_and_the_key_at_call_time(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.UPSTREAM_CONNECT_TIMEOUT = 3.0
    settings.UPSTREAM_FIRST_TOKEN_TIMEOUT = 20.0
    settings.UPSTREAM_TOTAL_TIMEOUT = 90.0
    settings.DEMO_TOKEN_DELAY = 0.0
    llm = LLM(
        name="m",
        backend=LLM.Backend.OPENAI_COMPATIBLE,
        base_url="https://api.example.com/v1",
        model="up-1",
        api_key_env="ARENA_TEST_KEY",
        temperature=0.2,
        max_tokens=99,
    )
    monkeypatch.setenv("ARENA_TEST_KEY", "first")
    assert call_spec(llm).api_key == "first"
    monkeypatch.setenv("ARENA_TEST_KEY", "rotated")
    spec = call_spec(llm)

    assert spec == CallSpec(
        backend="openai-compatible",
        base_url="https://api.example.com/v1",
        model="up-1",
        api_key="rotated",
        temperature=0.2,
        max_tokens=99,
        connect_timeout=3.0,
        first_token_timeout=20.0,
        total_timeout=90.0,
        options={"delay": 0.0},
    )
    assert "rotated" not in repr(spec)


def test_every_backend_has_an_adapter() -> None:
    # Imported models are shown on the board but never called: they alone have no adapter.
    assert set(BACKENDS) == set(LLM.Backend.values) - {LLM.Backend.IMPORTED}
    for name in BACKENDS:
        assert backend_for(name).name == name


def test_an_unknown_backend_is_an_upstream_error_that_names_nothing() -> None:
    with pytest.raises(UpstreamError) as caught:
        backend_for("carrier-pigeon")
    assert "carrier-pigeon" not in caught.value.public
    assert "carrier-pigeon" in caught.value.detail
