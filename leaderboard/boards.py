"""The boards the leaderboard publishes: which votes each counts and how it lists models."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db.models import Q
from django.utils.translation import gettext, gettext_noop

# Names in English; the board page shows them in the visitor's language (`shown`).
LANGUAGE_NAMES = {
    "en": gettext_noop("English"),
    "fr": gettext_noop("French"),
    "de": gettext_noop("German"),
    "es": gettext_noop("Spanish"),
    "it": gettext_noop("Italian"),
    "pt": gettext_noop("Portuguese"),
    "nl": gettext_noop("Dutch"),
    "ru": gettext_noop("Russian"),
    "zh": gettext_noop("Chinese"),
    "ja": gettext_noop("Japanese"),
    "ko": gettext_noop("Korean"),
    "ar": gettext_noop("Arabic"),
    "hi": gettext_noop("Hindi"),
    "el": gettext_noop("Greek"),
    "he": gettext_noop("Hebrew"),
    "th": gettext_noop("Thai"),
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
        gettext_noop("Style control"),
        gettext_noop(
            "Every counted anonymous vote, with answer length, headers, lists and bold as covariates: "
            "ratings as if both answers had the same style."
        ),
        style=True,
    ),
    Board(
        "overall",
        gettext_noop("Overall (raw)"),
        gettext_noop("Every counted anonymous vote, without style control."),
    ),
    Board(
        "coding",
        gettext_noop("Coding"),
        gettext_noop("Prompts with code or programming terms."),
        Q(coding=True),
        category=True,
    ),
    Board(
        "hard",
        gettext_noop("Hard prompts"),
        gettext_noop("Specific, constrained, problem-solving prompts."),
        Q(hard=True),
        category=True,
    ),
    Board(
        "long-query",
        gettext_noop("Long queries"),
        gettext_noop("Prompts of 500 tokens or more."),
        Q(long_query=True),
        category=True,
    ),
    Board(
        "multi-turn",
        gettext_noop("Multi-turn"),
        gettext_noop("Battles with follow-up questions."),
        Q(multi_turn=True),
        category=True,
    ),
    Board(
        "vision",
        gettext_noop("Vision"),
        gettext_noop("Battles whose prompt carried an image."),
        Q(vision=True),
        category=True,
    ),
]
_FIXED = {board.slug: board for board in FIXED}


def language_board(code: str) -> Board:
    name = LANGUAGE_NAMES.get(code, code)
    return Board(f"language-{code}", name, f"Prompts written in {name}.", Q(language=code), category=True)


def shown(board: Board) -> dict[str, object]:
    """What the board page shows of a board, in the active language; the API keeps the English."""
    code = board.slug.removeprefix("language-")
    if board.slug.startswith("language-") and code in LANGUAGE_NAMES:
        name = gettext(LANGUAGE_NAMES[code])
        description = gettext("Prompts written in %(language)s.") % {"language": name}
    else:
        name, description = gettext(board.title), gettext(board.description)
    return {"slug": board.slug, "title": name, "description": description, "category": board.category}


def board(slug: str) -> Board | None:
    if slug in _FIXED:
        return _FIXED[slug]
    if slug.startswith("language-") and slug.removeprefix("language-") in LANGUAGE_NAMES:
        return language_board(slug.removeprefix("language-"))
    return None


def all_boards(languages: set[str]) -> list[Board]:
    return FIXED + [language_board(code) for code in sorted(languages) if code in LANGUAGE_NAMES]
