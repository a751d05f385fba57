"""The boards the leaderboard publishes: which votes each counts and how it lists models."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db.models import Q

LANGUAGE_NAMES = {
    "en": "English",
    "fr": "French",
    "de": "German",
    "es": "Spanish",
    "it": "Italian",
    "pt": "Portuguese",
    "nl": "Dutch",
    "ru": "Russian",
    "zh": "Chinese",
    "ja": "Japanese",
    "ko": "Korean",
    "ar": "Arabic",
    "hi": "Hindi",
    "el": "Greek",
    "he": "Hebrew",
    "th": "Thai",
}


@dataclass(frozen=True)
class Board:
    slug: str
    title: str
    description: str
    votes: Q = field(default_factory=Q)  # filter on arena.Vote
    style: bool = False  # style control: ratings adjusted for length and markdown
    category: bool = False  # lists only models at or above the listing threshold

    @property
    def method(self) -> str:
        return "bradley-terry-style-control" if self.style else "bradley-terry"


FIXED = [
    # Style control first, as the default view: a model should not climb by writing longer.
    Board(
        "style",
        "Style control",
        "Every counted anonymous vote, with answer length, headers, lists and bold as covariates: "
        "ratings as if both answers had the same style.",
        style=True,
    ),
    Board("overall", "Overall (raw)", "Every counted anonymous vote, without style control."),
    Board("coding", "Coding", "Prompts with code or programming terms.", Q(coding=True), category=True),
    Board(
        "hard", "Hard prompts", "Specific, constrained, problem-solving prompts.", Q(hard=True), category=True
    ),
    Board("long-query", "Long queries", "Prompts of 500 tokens or more.", Q(long_query=True), category=True),
    Board("multi-turn", "Multi-turn", "Battles with follow-up questions.", Q(multi_turn=True), category=True),
    Board("vision", "Vision", "Battles whose prompt carried an image.", Q(vision=True), category=True),
]
_FIXED = {board.slug: board for board in FIXED}


def language_board(code: str) -> Board:
    name = LANGUAGE_NAMES.get(code, code)
    return Board(f"language-{code}", name, f"Prompts written in {name}.", Q(language=code), category=True)


def board(slug: str) -> Board | None:
    if slug in _FIXED:
        return _FIXED[slug]
    if slug.startswith("language-") and slug.removeprefix("language-") in LANGUAGE_NAMES:
        return language_board(slug.removeprefix("language-"))
    return None


def all_boards(languages: set[str]) -> list[Board]:
    return FIXED + [language_board(code) for code in sorted(languages) if code in LANGUAGE_NAMES]
