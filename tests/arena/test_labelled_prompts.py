"""The category rules against a labelled set of arena prompts (tests/data/prompts_labelled.jsonl).

Each line holds a prompt, its language ("" where a reader could not tell it: "hi", "12345 !!!", a
bare code block) and whether it is a coding, hard and long prompt, labelled by hand: coding when it
asks about code, software or a system design naming its technologies; hard when it is a specific,
constrained problem that needs expertise (a proof, a design under stated limits, a legal or
quantitative analysis); long when it holds clearly more than 500 tokens. The thresholds below sit
a little under the rules' figures on the set, so a change that loses accuracy fails here.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import py3langid
import pytest

from arena import categories

LABELLED = Path(__file__).parents[1] / "data" / "prompts_labelled.jsonl"
PROMPTS: list[dict[str, Any]] = [
    json.loads(line) for line in LABELLED.read_text(encoding="utf-8").splitlines()
]


def _agreement(rule: Any, label: str) -> tuple[float, float, float]:
    """Accuracy, precision and recall of a yes/no rule against the set's labels."""
    said = [(bool(rule(p["prompt"])), p[label]) for p in PROMPTS]
    hits = sum(s and truth for s, truth in said)
    accuracy = sum(s == truth for s, truth in said) / len(said)
    return accuracy, hits / sum(s for s, _ in said), hits / sum(truth for _, truth in said)


def test_the_labelled_set_holds_200_prompts_in_10_languages_and_each_category() -> None:
    languages = Counter(p["language"] for p in PROMPTS if p["language"])
    assert len(PROMPTS) >= 200
    assert len([code for code, n in languages.items() if n >= 4]) >= 10
    assert all(sum(p[label] for p in PROMPTS) >= 10 for label in ("coding", "hard", "long"))


def test_it_tells_the_language_of_95_percent_of_the_labelled_prompts() -> None:
    right = sum(categories.language(p["prompt"]) == p["language"] for p in PROMPTS)
    assert right / len(PROMPTS) >= 0.95


def test_it_files_no_english_prompt_under_another_language() -> None:
    english = [p["prompt"] for p in PROMPTS if p["language"] == "en"]
    misfiled = {prompt: categories.language(prompt) for prompt in english}
    assert {prompt: code for prompt, code in misfiled.items() if code not in ("en", "")} == {}


def test_it_rather_says_unknown_than_names_a_wrong_language() -> None:
    wrong = [p for p in PROMPTS if categories.language(p["prompt"]) not in (p["language"], "")]
    assert len(wrong) / len(PROMPTS) <= 0.01
    assert all(categories.language(p["prompt"]) == "" for p in PROMPTS if p["language"] == "")


def test_the_coding_rule_agrees_with_the_labels() -> None:
    accuracy, precision, recall = _agreement(categories.is_coding, "coding")
    assert accuracy >= 0.95
    assert precision >= 0.9
    assert recall >= 0.9


def test_the_hard_rule_agrees_with_the_labels() -> None:
    accuracy, precision, recall = _agreement(categories.is_hard, "hard")
    assert accuracy >= 0.95
    assert precision >= 0.8
    assert recall >= 0.9


def test_the_long_rule_agrees_with_the_labels() -> None:
    accuracy, precision, recall = _agreement(lambda prompt: categories.tags([prompt]).long_query, "long")
    assert (accuracy, precision, recall) == (1.0, 1.0, 1.0)


@pytest.mark.parametrize("language", sorted({p["language"] for p in PROMPTS if p["language"]}))
def test_every_language_of_the_set_is_one_the_detector_may_name(language: str) -> None:
    assert language in categories.LANGUAGES


def test_the_detector_reads_its_model_from_the_installed_package() -> None:
    model = Path(py3langid.__file__).parent / "data" / "model.npz.xz"
    assert model.is_file()
    assert (
        categories.language("Write a haiku about autumn") == "en"
    )  # with the network closed (tests/network.py)
