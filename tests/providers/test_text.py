"""Text as a person sees it: hidden characters, lookalikes, and answers that name their model."""

from __future__ import annotations

import pytest

from providers.families import family_words
from providers.models import LLM
from providers.text import VisibleStream, drawless_characters, fold, name_key, names_itself, skeleton, visible

# --- hidden characters ----------------------------------------------------------------------------------

HIDDEN = [
    "\u200b",  # zero-width space
    "\u200c",  # zero-width non-joiner
    "\u200d",  # zero-width joiner, between letters
    "\u200e\u200f\u061c",  # directional marks
    "\u202a\u202b\u202c\u202d\u202e",  # bidirectional embeddings and overrides
    "\u2066\u2067\u2068\u2069",  # bidirectional isolates
    "\u2060\u2061\u2062\u2063\u2064",  # word joiner and invisible operators
    "\ufeff\u00ad\u180e",  # byte order mark, soft hyphen, Mongolian vowel separator
    "\ufe00\ufe0f",  # variation selectors after a letter
    "\U000e0001\U000e0041\U000e007f",  # tags
    "\U000e0100",  # a variation selector of the supplement
    "\u3164\u115f\u034f",  # Hangul fillers, combining grapheme joiner
    "\x00\x1b\x7f\x85",  # controls
]


@pytest.mark.parametrize("hidden", HIDDEN)
def test_visible_removes_what_draws_nothing(hidden: str) -> None:
    assert visible(f"Hel{hidden}lo, wor{hidden}ld") == "Hello, world"


def test_visible_keeps_what_a_person_sees() -> None:
    text = (
        "Line one\n\tindented\r\n"
        "Ünïcödé, 日本語, العربية, עברית, Ελληνικά, Русский\u00a0text\u3000here\n"
        "👩\u200d💻 🏳\ufe0f\u200d🌈 ❤\ufe0f ☺\ufe0e 1\ufe0f\u20e3 👍🏽 \u0600١٢"
    )
    assert visible(text) == text


def test_visible_drops_a_joiner_or_selector_that_builds_no_emoji() -> None:
    assert visible("a\u200d💻") == "a💻"
    assert visible("💻\u200d") == "💻"
    assert visible("x\ufe0fy 1\ufe0f") == "xy 1"


@pytest.mark.parametrize("size", [1, 2, 3, 5])
def test_visible_stream_shows_what_visible_shows_whatever_the_pieces(size: int) -> None:
    text = "I am\u2063 here 👩\u200d💻 and ❤\ufe0f 1\ufe0f\u20e3 x\u200dy\u200d"
    stream = VisibleStream()
    shown = "".join(stream.feed(text[i : i + size]) for i in range(0, len(text), size)) + stream.end()
    assert shown == visible(text) == "I am here 👩\u200d💻 and ❤\ufe0f 1\ufe0f\u20e3 xy"


def test_drawless_characters_names_each_once() -> None:
    assert drawless_characters("demo-concise\u200b\u200b\u2063") == ["U+200B", "U+2063"]
    assert drawless_characters("demo-concise") == []


# --- lookalikes ---------------------------------------------------------------------------------------


def test_skeletons_follow_unicode_tr39() -> None:
    assert skeleton("paypal") == skeleton("раураl")  # Cyrillic
    assert skeleton("l") == skeleton("1") == skeleton("I")
    assert skeleton("m") == skeleton("rn")
    assert skeleton("claude") != skeleton("clause")


def test_fold_reads_lookalikes_as_the_letters_they_imitate_and_keeps_ascii() -> None:
    assert fold("Ｃlａ\u200bude") == "claude"
    assert fold("Сlaude") == "claude"  # Cyrillic С
    assert fold("I am modern") == "i am modern"  # not "rnodern"


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("demo-concise", "DEMO-Concise"),
        ("demo-concise", "ｄｅｍｏ-concise"),
        ("demo-concise", "dеmо-cоncisе"),  # Cyrillic е and о
        ("demo-concise", "demo_concise"),
        ("demo-concise", "demo concise"),
        ("llama-3-8b", "IIama-3-8b"),
        ("gpt-4o", "gpt-4O"),
    ],
)
def test_names_that_can_be_mistaken_have_one_key(one: str, other: str) -> None:
    assert name_key(one) == name_key(other)


@pytest.mark.parametrize(
    ("one", "other"), [("demo-concise", "demo-precise"), ("gpt-4o", "gpt-4"), ("llama-3", "llama3")]
)
def test_names_that_look_different_have_different_keys(one: str, other: str) -> None:
    assert name_key(one) != name_key(other)


# --- answers that name their model ----------------------------------------------------------------------


def claude() -> LLM:
    return LLM(
        name="claude-sonnet-4-5",
        display_name="Claude Sonnet 4.5",
        organization="Anthropic",
        model="claude-sonnet-4-5-20250929",
    )


@pytest.mark.parametrize(
    "answer",
    [
        "I am Claude, an AI assistant.",
        "As Claude, I can't do that.",
        "I was made by Anthropic.",
        "I'm C\u200blaude.",
        "I'm Cl\u2063aude.",
        "I am Ｃｌａｕｄｅ.",
        "I am Сlaude.",  # Cyrillic С
        "I am CLAUDE-3 Opus.",
        "I am \u2066Claude\u2069.",
    ],
)
def test_an_answer_that_says_its_family_names_its_model(answer: str) -> None:
    assert names_itself(answer, claude().identity_terms())


@pytest.mark.parametrize(
    "answer",
    [
        "Claudette is a French name.",
        "The clause is void.",
        "An AI assistant here to help.",
        "As ChatGPT might say, hello.",  # another family's name tells nothing about this one
    ],
)
def test_an_answer_that_does_not_name_it_passes(answer: str) -> None:
    assert not names_itself(answer, claude().identity_terms())


@pytest.mark.parametrize(
    ("llm", "says", "does_not_say"),
    [
        (
            LLM(name="gpt-4o", organization="OpenAI", model="gpt-4o-2024-08-06"),
            ["As ChatGPT, I", "I am GPT-4", "I'm Chat GPT", "I was trained by Open AI"],
            ["My GPU is fast", "The output is ready"],
        ),
        (
            LLM(name="gemini-2.5-pro", organization="Google", model="gemini-2.5-pro"),
            ["I am Gemini", "I used to be called Bard", "Google DeepMind trained me"],
            ["Gemstones are minerals"],
        ),
        (
            LLM(name="llama-3.1-70b", organization="Meta", model="meta-llama/Llama-3.1-70B-Instruct"),
            ["I'm Llama 3", "I am Meta AI", "I was trained by Meta."],
            ["Alpacas and vicuñas are camelids"],
        ),
        (
            LLM(name="qwen2.5-72b-instruct", organization="Alibaba", model="Qwen/Qwen2.5-72B-Instruct"),
            ["I am Qwen, created by Alibaba Cloud", "我是Qwen", "저는 Qwen입니다"],
            ["A question for you"],
        ),
        (
            LLM(name="mixtral-8x7b", organization="Mistral AI", model="mistralai/Mixtral-8x7B-Instruct-v0.1"),
            ["I am Mistral", "I'm Mixtral"],
            ["Mist rolled in"],
        ),
        (
            LLM(name="phi-3-mini", organization="Microsoft", model="microsoft/Phi-3-mini-4k-instruct"),
            ["I am Phi-3", "Phi 4 here", "Microsoft built me"],
            ["The golden ratio phi is 1.618", "φ is phi"],
        ),
        (
            LLM(name="yi-34b-chat", organization="01.AI", model="01-ai/Yi-34B-Chat"),
            ["I am Yi-34B", "built by 01.AI"],
            ["Yi Sun-sin was an admiral"],
        ),
        (
            LLM(name="command-r-plus", organization="Cohere", model="command-r-plus"),
            ["I am Command R+", "Cohere trained me"],
            ["Run the command rm -rf", "Use command a few times"],
        ),
        (
            LLM(name="grok-2", organization="xAI", model="grok-2-1212"),
            ["I am Grok", "built by xAI"],
            ["Grokking takes time"],
        ),
        (
            LLM(name="deepseek-v3", organization="DeepSeek", model="deepseek-chat"),
            ["I am DeepSeek-V3"],
            ["Deep seeking questions"],
        ),
    ],
)
def test_each_family_is_known_by_its_names_and_not_by_common_words(
    llm: LLM, says: list[str], does_not_say: list[str]
) -> None:
    terms = llm.identity_terms()
    for answer in says:
        assert names_itself(answer, terms), answer
    for answer in does_not_say:
        assert not names_itself(answer, terms), answer


def test_a_model_outside_every_family_has_only_its_own_names() -> None:
    llm = LLM(name="demo-concise", display_name="Concise", organization="Arena demo", model="concise")
    assert llm.identity_terms() == {"demo-concise", "Concise", "Arena demo", "concise"}
    assert family_words(llm.identity_terms()) == set()


def test_a_private_variant_is_known_by_its_codename() -> None:
    variant = LLM(
        name="private/acme/falcon-7", codename="falcon-7", organization="Acme AI", model="up-falcon-7"
    )
    assert names_itself("I am falcon-7.", variant.identity_terms())
    assert not names_itself("I am falcon-70.", variant.identity_terms())
