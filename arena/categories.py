"""Tags and style counts of a battle, computed once when the vote is stored.

The tags decide which category boards count a vote. They come from simple, documented rules
rather than a model judge, so anyone can recompute them from the public votes:

- language: the prompt's writing system first (Han, kana, Hangul, Cyrillic, Arabic, Devanagari,
  Greek, Hebrew, Thai); for Latin script, the language whose common words are most frequent
  among English, French, German, Spanish, Italian, Portuguese and Dutch; "other" if none stands out.
- coding: a code fence or inline code in the prompt, or two or more different programming signals
  (keywords such as `def`, `#include`, `SELECT … FROM`, a traceback, or words like "function",
  "compile", "regex", "stack trace", a language name).
- long_query: the prompts hold at least 500 tokens, counting a token as 4 characters (OpenAI's
  rule of thumb for English text).
- multi_turn: the battle had more than one turn.
- hard: the prompt shows at least three of seven signs of a demanding task: specificity (numbers,
  units, names of things to do), several explicit constraints, a problem to solve ("prove",
  "derive", "optimise", "design", …), a technical domain, a request for reasoning or steps,
  length over 60 words, and a real-world setting. These mirror the criteria behind Chatbot Arena's
  "hard prompts" category, judged by rules instead of a model.

Style counts follow the public Chatbot Arena battle format (`conv_metadata`): tokens of each
side's answers, markdown headers (h1–h6), list items (ordered, unordered) and bold spans, all
counted after code blocks are removed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

LONG_QUERY_TOKENS = 500
CHARS_PER_TOKEN = 4

_SCRIPTS = [
    ("ja", re.compile(r"[\u3040-\u30ff]")),  # kana first: Japanese text also uses Han characters
    ("ko", re.compile(r"[\uac00-\ud7af]")),
    ("zh", re.compile(r"[\u4e00-\u9fff]")),
    ("ru", re.compile(r"[\u0400-\u04ff]")),
    ("ar", re.compile(r"[\u0600-\u06ff]")),
    ("hi", re.compile(r"[\u0900-\u097f]")),
    ("el", re.compile(r"[\u0370-\u03ff]")),
    ("he", re.compile(r"[\u0590-\u05ff]")),
    ("th", re.compile(r"[\u0e00-\u0e7f]")),
]
_STOPWORDS = {
    "en": "the and is are of to in that it you for what how with this can why",
    "fr": "le la les et est des une un du pour que qui dans pas vous je ce",
    "de": "der die das und ist nicht ein eine ich sie mit zu wie was für",
    "es": "el la los las y es de que en un una por para con qué cómo",
    "it": "il lo la gli e è di che un una per non sono come perché cosa",
    "pt": "o a os as e é de que um uma para não com como por você",
    "nl": "de het een en is van dat niet ik je met voor zijn wat hoe",
}
_STOP = {lang: set(words.split()) for lang, words in _STOPWORDS.items()}
_WORD = re.compile(r"[^\W\d_]+", re.UNICODE)

_CODE_MARK = re.compile(r"```|`[^`\n]+`")
_CODE_SIGNALS = [
    re.compile(p, re.IGNORECASE)
    for p in (
        r"\bdef \w+\(",
        r"#include\b",
        r"\bselect\b.+\bfrom\b",
        r"traceback \(most recent call last\)",
        r"\b(function|class|import|return|const|let|var|public static)\b",
        r"[{};]\s*$",
        r"=>|->|::",
        r"\b(python|javascript|typescript|java|rust|golang|c\+\+|sql|bash|regex|html|css|kotlin|swift)\b",
        r"\b(compile|compiler|bug|debug|stack trace|exception|segfault|api|function|algorithm|code)\b",
    )
]

_HARD_SIGNS = {
    "specific": re.compile(r"\d|\b(exactly|precisely|specific|at least|at most|no more than)\b", re.I),
    "constraints": re.compile(r"\b(must|should|without|only|do not|don't|never|ensure|require[sd]?)\b", re.I),
    "problem": re.compile(
        r"\b(prove|derive|optimi[sz]e|design|implement|solve|calculate|debug|analy[sz]e)\b", re.I
    ),
    "domain": re.compile(
        r"\b(theorem|equation|quantum|protein|compiler|kernel|database|statistic\w*|econom\w*|legal|clinical)\b",
        re.I,
    ),
    "reasoning": re.compile(r"\b(step by step|explain why|reason|trade-?offs?|compare|justify)\b", re.I),
    "real_world": re.compile(r"\b(my|our|company|client|production|project|team|customer)\b", re.I),
}

_FENCE = re.compile(r"```.*?(```|$)", re.DOTALL)
_HEADER = re.compile(r"^(#{1,6})\s+\S", re.MULTILINE)
_ORDERED = re.compile(r"^\s*\d+\.\s+\S", re.MULTILINE)
_UNORDERED = re.compile(r"^\s*[-*+]\s+\S", re.MULTILINE)
_BOLD_STARS = re.compile(r"\*\*[^*\n]+\*\*")
_BOLD_UNDERSCORES = re.compile(r"__[^_\n]+__")


@dataclass(frozen=True)
class Tags:
    language: str
    coding: bool
    long_query: bool
    multi_turn: bool
    hard: bool


def language(text: str) -> str:
    for code, script in _SCRIPTS:
        if len(script.findall(text)) >= 2:
            return code
    words = [w.lower() for w in _WORD.findall(text)]
    scores = {lang: sum(w in stop for w in words) for lang, stop in _STOP.items()}
    best = max(scores, key=lambda lang: scores[lang])
    ranked = sorted(scores.values(), reverse=True)
    return best if ranked[0] >= 1 and ranked[0] > ranked[1] else "other"


def is_coding(text: str) -> bool:
    if _CODE_MARK.search(text):
        return True
    found = {m.group(0).lower() for signal in _CODE_SIGNALS for m in signal.finditer(text)}
    return len(found) >= 2


def is_hard(text: str) -> bool:
    signs = sum(1 for pattern in _HARD_SIGNS.values() if pattern.search(text))
    signs += len(text.split()) > 60
    return signs >= 3


def tags(prompts: list[str]) -> Tags:
    joined = "\n\n".join(prompts)
    return Tags(
        language=language(prompts[0]) if prompts else "other",
        coding=is_coding(joined),
        long_query=len(joined) / CHARS_PER_TOKEN >= LONG_QUERY_TOKENS,
        multi_turn=len(prompts) > 1,
        hard=is_hard(joined),
    )


def _style(text: str) -> dict[str, Any]:
    prose = _FENCE.sub("", text)
    headers = _HEADER.findall(prose)
    return {
        "tokens": round(len(text) / CHARS_PER_TOKEN),
        "header_count": {f"h{n}": sum(1 for h in headers if len(h) == n) for n in range(1, 7)},
        "list_count": {"ordered": len(_ORDERED.findall(prose)), "unordered": len(_UNORDERED.findall(prose))},
        "bold_count": {"**": len(_BOLD_STARS.findall(prose)), "__": len(_BOLD_UNDERSCORES.findall(prose))},
    }


def conv_metadata(answers_a: list[str], answers_b: list[str]) -> dict[str, Any]:
    """Style counts of both sides in the public battle format's `conv_metadata` shape."""
    a, b = _style("\n\n".join(answers_a)), _style("\n\n".join(answers_b))
    return {
        "sum_assistant_a_tokens": a["tokens"],
        "sum_assistant_b_tokens": b["tokens"],
        "header_count_a": a["header_count"],
        "header_count_b": b["header_count"],
        "list_count_a": a["list_count"],
        "list_count_b": b["list_count"],
        "bold_count_a": a["bold_count"],
        "bold_count_b": b["bold_count"],
    }
