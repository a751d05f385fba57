from __future__ import annotations

import pytest

from arena import categories


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("Why is the sky blue and what makes sunsets red?", "en"),
        ("Pourquoi le ciel est-il bleu et que se passe-t-il le soir ?", "fr"),
        ("Warum ist der Himmel blau und wie entsteht das Abendrot?", "de"),
        ("¿Por qué el cielo es azul y cómo se forma el atardecer?", "es"),
        ("Почему небо голубое?", "ru"),
        ("为什么天空是蓝色的？", "zh"),
        ("なぜ空は青いのですか？", "ja"),
        ("하늘은 왜 파란가요?", "ko"),
        ("Write a haiku about autumn", "en"),
        ("Tell me a joke about cats", "en"),
        ("Fix this:\n```python\nprint(1\n```", "en"),
        ("Explique ce code :\n```python\nfor i in range(3):\n    print(i)\n```", "fr"),
        ("Напиши короткий вірш про осінь у Києві", "uk"),
        ("12345 !!!", ""),
        ("hi", ""),
        ("```python\nprint(1)\n```", ""),
    ],
)
def test_it_tells_the_language_of_a_prompt(prompt: str, expected: str) -> None:
    assert categories.language(prompt) == expected


@pytest.mark.parametrize(
    ("prompt", "coding"),
    [
        ("Fix this:\n```python\nprint(1\n```", True),
        ("Why does my Python function raise an exception when the list is empty?", True),
        ("Write a regex that matches an email address in JavaScript", True),
        ("What is the best way to cook rice?", False),
        ("Write a poem about the sea", False),
    ],
)
def test_it_spots_coding_prompts(prompt: str, coding: bool) -> None:
    assert categories.is_coding(prompt) is coding


def test_it_calls_a_query_long_from_500_tokens() -> None:
    assert categories.tags(["x" * 1999]).long_query is False
    assert categories.tags(["x" * 2000]).long_query is True
    assert categories.tags(["x" * 1000, "y" * 1000]).long_query is True


def test_it_counts_a_chinese_japanese_or_korean_character_as_a_token() -> None:
    assert categories.tags(["字" * 499]).long_query is False
    assert categories.tags(["字" * 250 + "かな" * 100 + "한국" * 25]).long_query is True


def test_it_marks_battles_of_several_turns() -> None:
    assert categories.tags(["one"]).multi_turn is False
    assert categories.tags(["one", "two"]).multi_turn is True


def test_it_tells_hard_prompts_from_easy_ones() -> None:
    hard = (
        "Design a database schema for our company's billing system that must handle at least 3 currencies, "
        "never loses a payment, and explain the trade-offs step by step."
    )
    assert categories.is_hard(hard) is True
    assert categories.is_hard("hello there") is False
    assert categories.is_hard("Tell me a joke about cats") is False


def test_style_counts_follow_the_public_battle_format_and_skip_code() -> None:
    a = (
        "# Title\n## Part\n- one\n- two\n1. first\n**bold** and __also__\n"
        "```\n# not a header\n- not a list\n```"
    )
    meta = categories.conv_metadata([a], ["plain answer"])

    assert meta["header_count_a"] == {"h1": 1, "h2": 1, "h3": 0, "h4": 0, "h5": 0, "h6": 0}
    assert meta["list_count_a"] == {"ordered": 1, "unordered": 2}
    assert meta["bold_count_a"] == {"**": 1, "__": 1}
    assert meta["header_count_b"]["h1"] == 0 and meta["list_count_b"] == {"ordered": 0, "unordered": 0}
    assert meta["sum_assistant_a_tokens"] == round(len(a) / 4)
    assert meta["sum_assistant_b_tokens"] == 3
