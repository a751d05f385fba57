"""Demo models: deterministic, distinct, related to the prompt, and never naming themselves."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import httpx
import pytest

from providers.base import CallSpec, Chunk, Message, UpstreamError
from providers.demo import ECHO_MARKER, PERSONALITIES, WORDS_BEFORE_ERROR, Demo, answer
from providers.models import LLM
from providers.services import parse_models_file

DEMO_FILE = Path(__file__).resolve().parents[2] / "providers" / "demo_models.yaml"
PROMPTS = [
    "Why is the sky blue?",
    "How do I reverse a linked list in Python?",
    "hi",
    "",
    "Write a haiku about autumn leaves and the first frost",
    "Give me a concise, structured and thoughtful demo answer, restating the question.",
    "Compare OpenAI, Anthropic and Mistral for coding help [demo:error]",
]
VENDORS = ("openai", "anthropic", "google", "gemini", "mistral", "meta", "llama", "claude", "gpt", "qwen")


def ask(prompt: str) -> list[Message]:
    return [{"role": "user", "content": prompt}]


def spec(model: str) -> CallSpec:
    return CallSpec(
        backend="demo",
        base_url="",
        model=model,
        api_key="",
        temperature=0.7,
        max_tokens=512,
        options={"delay": 0},
    )


def stream(model: str, messages: list[Message]) -> list[Chunk]:
    async def collect() -> list[Chunk]:
        async with httpx.AsyncClient() as client:
            return [chunk async for chunk in Demo().stream(spec(model), messages, client)]

    return asyncio.run(collect())


def test_the_demo_file_uses_every_personality() -> None:
    assert sorted(entry["model"] for entry in parse_models_file(DEMO_FILE)) == sorted(PERSONALITIES)


def test_an_answer_streams_word_by_word_then_finishes() -> None:
    chunks = stream("structured", ask("Why is the sky blue?"))
    deltas, finish = chunks[:-1], chunks[-1]
    assert "".join(c.text for c in deltas) == answer("structured", ask("Why is the sky blue?"))
    assert all(c.kind == "delta" and len(c.text.split()) == 1 for c in deltas)
    assert finish == Chunk("finish", finish_reason="stop", input_tokens=5, output_tokens=len(deltas))


def test_the_same_conversation_always_gets_the_same_answer() -> None:
    conversation = ask("How do I reverse a linked list in Python?")
    assert stream("thoughtful", conversation) == stream("thoughtful", conversation)


def test_each_personality_answers_differently_and_about_the_prompt() -> None:
    answers = {
        model: answer(model, ask("How does photosynthesis work in desert plants?")) for model in PERSONALITIES
    }
    assert len(set(answers.values())) == len(PERSONALITIES)
    for text in answers.values():
        assert "photosynthesis" in text
    assert re.search(r"^- \*\*", answers["structured"], re.MULTILINE)  # a markdown list
    assert "For example" in answers["thoughtful"]
    assert "How does photosynthesis work in desert plants?" in answers["restating"]
    assert len(answers["concise"]) < min(len(t) for m, t in answers.items() if m != "concise")


def test_a_follow_up_gets_a_new_answer_about_the_new_question() -> None:
    first = ask("How do I sort a list in Python?")
    follow_up: list[Message] = [
        *first,
        {"role": "assistant", "content": answer("concise", first)},
        {"role": "user", "content": "And how about dictionaries?"},
    ]
    again = answer("concise", follow_up)
    assert again != answer("concise", first)
    assert "dictionaries" in again


def test_an_unknown_id_answers_in_the_default_way() -> None:
    assert answer("no-such-personality", ask("Why?")) == answer("concise", ask("Why?"))
    assert answer("", ask("Why?"))


@pytest.mark.parametrize("model", [*PERSONALITIES, "unknown"])
@pytest.mark.parametrize("prompt", PROMPTS)
def test_an_answer_never_names_a_demo_model_or_a_vendor(model: str, prompt: str) -> None:
    text = answer(model, ask(prompt))
    rows = [LLM(**entry) for entry in parse_models_file(DEMO_FILE)]
    terms = {term for row in rows for term in row.identity_terms()} | {"demo"}
    for term in terms:
        assert not re.search(rf"(?<![\w-]){re.escape(term)}(?![\w-])", text, re.IGNORECASE), term
    prompt_words = prompt.lower()
    for vendor in VENDORS:
        if vendor not in prompt_words:  # the voter's own words may be quoted back
            assert not re.search(rf"\b{vendor}\b", text, re.IGNORECASE), vendor


def test_the_error_marker_fails_the_answer_after_a_few_words() -> None:
    chunks: list[Chunk] = []

    async def collect() -> None:
        async with httpx.AsyncClient() as client:
            async for chunk in Demo().stream(spec("concise"), ask("Tell me a joke [demo:error]"), client):
                chunks.append(chunk)

    with pytest.raises(UpstreamError) as caught:
        asyncio.run(collect())
    assert len(chunks) == WORDS_BEFORE_ERROR and all(c.kind == "delta" for c in chunks)
    assert caught.value.public == "The model's service answered with an error (HTTP 500)."
    assert caught.value.status == 500 and not caught.value.transient and not caught.value.permanent


def test_the_marker_in_an_earlier_turn_does_not_fail_a_follow_up() -> None:
    conversation: list[Message] = [
        {"role": "user", "content": "Break [demo:error]"},
        {"role": "assistant", "content": "partial"},
        {"role": "user", "content": "Try again"},
    ]
    assert stream("concise", conversation)[-1].kind == "finish"


def test_the_echo_marker_answers_with_the_prompt_as_written() -> None:
    markdown = "| a | b |\n|---|---|\n| 1 | 2 |\n\n```python\ndef f():\n    return 1\n```\n\n$x^2$"
    for model in PERSONALITIES:
        chunks = stream(model, ask(f"{ECHO_MARKER}\n{markdown}"))
        assert "".join(c.text for c in chunks if c.kind == "delta") == markdown
        assert chunks[-1].kind == "finish"
    # Still never a demo model's name, and never empty.
    assert answer("concise", ask(f"{ECHO_MARKER} a concise demo reply")).split() == ["a", "reply"]
    assert answer("concise", ask(ECHO_MARKER)) == "There is nothing to repeat."
