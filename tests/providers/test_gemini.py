"""The Gemini adapter against a fake Gemini API on a real socket, in Google's wire format."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from providers import streaming
from providers.base import CallSpec, Chunk, Message, UpstreamError
from providers.gemini import Gemini
from tests.providers import harness
from tests.providers.harness import QUESTION, run, text_of
from tests.upstream import Behaviour
from tests.vendor_upstreams import FakeGemini, VendorBehaviour

KEY = "AIzaSyDq8vR3pL9mN2xT7bW5hJ4cF6gH1jK2lM3"
MODEL = "gemini-2.5-flash"


def spec_for(upstream: FakeGemini, **changes: Any) -> CallSpec:
    return harness.spec(
        **{"backend": "gemini", "base_url": upstream.base_url, "model": MODEL, "api_key": KEY, **changes}
    )


async def collect(spec: CallSpec, messages: list[Message] = QUESTION) -> list[Chunk]:
    return await harness.collect(Gemini(), spec, messages)


async def collect_until_error(spec: CallSpec) -> tuple[list[Chunk], UpstreamError]:
    return await harness.collect_until_error(Gemini(), spec)


# --- answers ---------------------------------------------------------------------------------------


def test_it_streams_the_answer_then_one_finish_with_the_usage(gemini_upstream: FakeGemini) -> None:
    gemini_upstream.behaviours[MODEL] = Behaviour(text="Sunlight scatters off air molecules, blue the most.")
    chunks = run(collect(spec_for(gemini_upstream)))

    assert text_of(chunks) == "Sunlight scatters off air molecules, blue the most."
    assert all(c.kind == "delta" and c.text for c in chunks[:-1])
    # A delta per word, those that arrived together in one chunk.
    assert sum(c.deltas for c in chunks[:-1]) == 8
    assert chunks[-1] == Chunk("finish", finish_reason="stop", input_tokens=5, output_tokens=8)


def test_it_sends_the_key_in_a_header_and_the_documented_request(gemini_upstream: FakeGemini) -> None:
    gemini_upstream.default = Behaviour()
    conversation: list[Message] = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "And now?"},
    ]
    run(collect(spec_for(gemini_upstream, temperature=0.3, max_tokens=77), conversation))

    [request] = gemini_upstream.requests
    assert request["path"] == f"/v1beta/models/{MODEL}:streamGenerateContent?alt=sse"
    assert request["headers"]["x-goog-api-key"] == KEY
    assert KEY not in request["path"]  # never in the URL, which ends up in logs and error details
    assert request["headers"]["content-type"] == "application/json"
    assert request["json"] == {
        "contents": [
            {"role": "user", "parts": [{"text": "Hi"}]},
            {"role": "model", "parts": [{"text": "Hello!"}]},
            {"role": "user", "parts": [{"text": "And now?"}]},
        ],
        "generationConfig": {"temperature": 0.3, "maxOutputTokens": 77},
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
    }


def test_a_model_named_by_its_full_resource_name_is_called_there(gemini_upstream: FakeGemini) -> None:
    gemini_upstream.default = Behaviour(text="tuned")
    chunks = run(collect(spec_for(gemini_upstream, model="tunedModels/sky-expert-7")))
    assert text_of(chunks) == "tuned"
    assert gemini_upstream.requests[0]["path"].startswith("/v1beta/tunedModels/sky-expert-7:")


def test_it_reassembles_events_split_mid_character(gemini_upstream: FakeGemini) -> None:
    text = "☕☕☕☕☕☕☕ naïve café — déjà vu, 東京 and more words"
    gemini_upstream.behaviours[MODEL] = Behaviour(text=text)
    chunks = run(collect(spec_for(gemini_upstream)))
    assert text_of(chunks) == text
    assert chunks[-1].kind == "finish"


def test_thought_parts_are_not_shown(gemini_upstream: FakeGemini) -> None:
    gemini_upstream.default = VendorBehaviour(text="The answer is 42.", thinking="**Adding** six and seven.")
    chunks = run(collect(spec_for(gemini_upstream)))
    assert text_of(chunks) == "The answer is 42."


def test_an_answer_stopped_by_max_tokens_says_length(gemini_upstream: FakeGemini) -> None:
    gemini_upstream.default = Behaviour(text="one two three four five six")
    chunks = run(collect(spec_for(gemini_upstream, max_tokens=3)))
    assert text_of(chunks) == "one two three"
    assert chunks[-1] == Chunk("finish", finish_reason="length", input_tokens=5, output_tokens=3)


def test_a_refused_prompt_finishes_empty_with_the_block_reason(gemini_upstream: FakeGemini) -> None:
    gemini_upstream.default = VendorBehaviour(block_reason="SAFETY")
    chunks = run(collect(spec_for(gemini_upstream)))
    assert chunks == [Chunk("finish", finish_reason="safety", input_tokens=5, output_tokens=None)]


def test_without_usage_the_finish_has_no_token_counts(gemini_upstream: FakeGemini) -> None:
    gemini_upstream.default = Behaviour(text="no usage here", usage=False)
    assert run(collect(spec_for(gemini_upstream)))[-1] == Chunk("finish", finish_reason="stop")


# --- failures ----------------------------------------------------------------------------------------

HTTP = "The model's service answered with an error (HTTP {})."

FAILURES: dict[str, tuple[Behaviour, dict[str, Any], str, bool, int]] = {
    # name: (behaviour, spec changes, public text, transient, requests made)
    "http_500": (Behaviour(status=500), {}, HTTP.format(500), True, 2),
    "http_503": (Behaviour(status=503), {}, HTTP.format(503), True, 2),
    "http_503_as_a_list": (VendorBehaviour(status=503, error_as_list=True), {}, HTTP.format(503), True, 2),
    "http_429_retry_soon": (Behaviour(status=429, retry_after="0"), {}, HTTP.format(429), True, 2),
    "http_429_retry_later": (Behaviour(status=429, retry_after="36"), {}, HTTP.format(429), False, 1),
    "http_400": (
        Behaviour(status=400, error_message=f"Invalid value at 'contents' for {MODEL}"),
        {},
        HTTP.format(400),
        False,
        1,
    ),
    "http_401": (Behaviour(status=401), {}, HTTP.format(401), False, 1),
    "http_403": (Behaviour(status=403), {}, HTTP.format(403), False, 1),
    # An INTERNAL error before any text: worth the one retry, which meets the same error.
    "error_event_first": (Behaviour(error_in_stream_after=0), {}, streaming.FAILED_MID_ANSWER, True, 2),
    "error_event_later": (Behaviour(error_in_stream_after=2), {}, streaming.FAILED_MID_ANSWER, True, 1),
    "cut_mid_answer": (
        Behaviour(text="one two three four five", cut_after=3),
        {},
        streaming.CUT_OFF,
        False,
        1,
    ),
    "body_ended_without_finish_reason": (
        Behaviour(text="one two three", end_after=3),
        {},
        streaming.CUT_OFF,
        False,
        1,
    ),
    "non_json_data": (Behaviour(garbage_after=1), {}, streaming.UNREADABLE, False, 1),
    "slow_first_token": (
        Behaviour(first_token_delay=2),
        {"first_token_timeout": 0.2},
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
    failure: str, gemini_upstream: FakeGemini
) -> None:
    behaviour, changes, public, transient, requests = FAILURES[failure]
    gemini_upstream.behaviours[MODEL] = behaviour
    chunks, error = run(collect_until_error(spec_for(gemini_upstream, **changes)))

    assert error.public == public
    assert error.transient is transient
    assert len(gemini_upstream.requests) == requests
    assert all(chunk.kind == "delta" for chunk in chunks)  # never a finish before an error
    for secret in (MODEL, "gemini", "google", gemini_upstream.base_url, "127.0.0.1", "Invalid value"):
        assert secret.lower() not in error.public.lower()
    for text in (error.detail, str(error), repr(error)):
        assert KEY not in text
    assert gemini_upstream.base_url in error.detail


def test_an_error_body_keeps_the_vendors_status_and_message_for_operators(
    gemini_upstream: FakeGemini,
) -> None:
    gemini_upstream.behaviours[MODEL] = VendorBehaviour(status=503, error_as_list=True)
    _, error = run(collect_until_error(spec_for(gemini_upstream)))
    assert "HTTP 503" in error.detail
    assert "The model is overloaded. Please try again later. (UNAVAILABLE)" in error.detail


def test_a_rejected_key_is_permanent_though_gemini_answers_400(gemini_upstream: FakeGemini) -> None:
    gemini_upstream.key = "AIza-the-right-one"
    gemini_upstream.default = Behaviour()
    _, error = run(collect_until_error(spec_for(gemini_upstream)))
    assert error.status == 400 and error.permanent and not error.transient
    assert (
        "API key not valid. Please pass a valid API key. (INVALID_ARGUMENT, API_KEY_INVALID)" in error.detail
    )
    assert len(gemini_upstream.requests) == 1


def test_a_401_is_permanent_and_never_retried(gemini_upstream: FakeGemini) -> None:
    gemini_upstream.default = Behaviour(status=401, status_times=1)
    _, error = run(collect_until_error(spec_for(gemini_upstream)))
    assert error.status == 401 and error.permanent
    assert "UNAUTHENTICATED" in error.detail and len(gemini_upstream.requests) == 1


def test_an_unknown_model_is_permanent(gemini_upstream: FakeGemini) -> None:
    _, error = run(collect_until_error(spec_for(gemini_upstream, model="gemini-nope")))
    assert error.status == 404 and error.permanent
    assert "models/gemini-nope is not found" in error.detail and "(NOT_FOUND)" in error.detail
    assert "gemini-nope" not in error.public


def test_it_retries_a_429_after_the_retry_delay_it_was_given_then_streams(
    gemini_upstream: FakeGemini,
) -> None:
    gemini_upstream.behaviours[MODEL] = Behaviour(text="ok", status=429, retry_after="0.2", status_times=1)

    async def timed() -> tuple[list[Chunk], float]:
        started = asyncio.get_running_loop().time()
        chunks = await collect(spec_for(gemini_upstream))
        return chunks, asyncio.get_running_loop().time() - started

    chunks, elapsed = run(timed())
    assert text_of(chunks) == "ok" and len(gemini_upstream.requests) == 2
    assert elapsed >= 0.2  # RetryInfo's retryDelay was honoured (a lower bound, never an upper one)


def test_it_gives_up_after_one_retry_of_a_429(gemini_upstream: FakeGemini) -> None:
    gemini_upstream.behaviours[MODEL] = Behaviour(status=429, retry_after="0.1")
    _, error = run(collect_until_error(spec_for(gemini_upstream)))
    assert error.status == 429 and error.retry_after == 0.1
    assert len(gemini_upstream.requests) == 2
    assert "RESOURCE_EXHAUSTED" in error.detail


def test_an_error_event_keeps_its_status_for_operators(gemini_upstream: FakeGemini) -> None:
    gemini_upstream.behaviours[MODEL] = Behaviour(text="one two three", error_in_stream_after=2)
    chunks, error = run(collect_until_error(spec_for(gemini_upstream)))
    assert text_of(chunks) == "one two"
    assert "An internal error has occurred" in error.detail and "(INTERNAL)" in error.detail
