"""Text as a person sees it: invisible characters removed, lookalike letters read as one.

Pure functions, no Django. `visible` cleans answers before they are shown and before the
identity-leak check (`names_itself`); `fold` prepares text for matching words and rules; `name_key`
tells whether two public model names can be mistaken for each other (Unicode TR39 skeletons).

A script reads code points, not glyphs, so no cleaning removes every mark a model could hide in its
text; this removes the ones that no honest answer needs: characters that draw nothing.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable
from pathlib import Path

# Unicode's confusables.txt (UTS #39), mapping columns only: source ; prototype.
CONFUSABLES_FILE = Path(__file__).with_name("confusables.txt")

ZWJ = "\u200d"
# Text and emoji presentation selectors: they change how a symbol is drawn, so they stay after one.
PRESENTATION = frozenset("\ufe0e\ufe0f")
KEYCAP = "\u20e3"  # combining enclosing keycap: "1️⃣" is a digit, U+FE0F, then this
KEYCAP_BASES = frozenset("0123456789#*")
# Default-ignorable code points (DerivedCoreProperties.txt) outside category Cf: they draw nothing.
# Tag characters (U+E0000–E007F) are among them; so the rare emoji flags built from tags (England,
# Scotland, Wales) show as a plain black flag.
IGNORABLE = (
    (0x034F, 0x034F),  # combining grapheme joiner
    (0x115F, 0x1160),  # Hangul choseong and jungseong fillers
    (0x17B4, 0x17B5),  # Khmer inherent vowels
    (0x180B, 0x180F),  # Mongolian free variation selectors and vowel separator
    (0x2065, 0x2065),  # reserved among the invisible operators
    (0x3164, 0x3164),  # Hangul filler
    (0xFE00, 0xFE0F),  # variation selectors
    (0xFFA0, 0xFFA0),  # halfwidth Hangul filler
    (0xFFF0, 0xFFF8),  # reserved
    (0x1BCA0, 0x1BCA3),  # shorthand format controls
    (0xE0000, 0xE0FFF),  # tags, variation selectors supplement, reserved
)
# Format characters that do draw something: the prepended concatenation marks (Arabic number signs).
DRAWN_FORMAT = frozenset(
    "\u0600\u0601\u0602\u0603\u0604\u0605\u06dd\u070f\u0890\u0891\u08e2\U000110bd\U000110cd"
)
# C0 and C1 controls other than tab, line feed and carriage return.
_ASCII_HIDDEN = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
SEPARATORS = re.compile(r"[\s\-_.]+")
# Letters of the scripts that put spaces between words: a name inside a run of them is part of another
# word, while Chinese, Japanese, Korean and Thai write a name right against their own letters
# ("我是Qwen", "Claude입니다").
LETTERS = (
    r"[^\W\d_\u0e00-\u0e7f\u1100-\u11ff\u3040-\u30ff\u3130-\u318f\u3400-\u4dbf\u4e00-\u9fff"
    r"\uac00-\ud7af\uf900-\ufaff]"
)


def _drawless(ch: str) -> bool:
    """Whether `ch` draws nothing by itself: a format or control character, or a default ignorable."""
    category = unicodedata.category(ch)
    if category == "Cf":
        return ch not in DRAWN_FORMAT
    if category == "Cc":
        return ch not in "\t\n\r"
    code = ord(ch)
    return any(low <= code <= high for low, high in IGNORABLE)


def _symbol(ch: str) -> bool:
    """An emoji-like symbol: what a zero-width joiner or presentation selector may follow."""
    return bool(ch) and unicodedata.category(ch) in ("So", "Sk")


def _kept(before: str, ch: str, after: str) -> bool:
    """Whether drawless `ch`, between `before` and `after` (either may be ""), changes what is drawn.

    A joiner between two symbols makes one emoji of them (👩‍💻); a presentation selector after a
    symbol, or a digit of a keycap, picks how it is drawn (❤️, 1️⃣). Anywhere else they are marks.
    """
    if ch == ZWJ:
        return (_symbol(before) or before in PRESENTATION) and _symbol(after)
    if ch in PRESENTATION:
        return _symbol(before) or (before in KEYCAP_BASES and after == KEYCAP)
    return False


def _shown(text: str, before: str, *, final: bool) -> tuple[str, int]:
    """What a person sees of `text`, which follows the character `before`, and how much of `text`
    that covers: without `final`, a trailing joiner or selector waits for the character after it."""
    shown: list[str] = []
    previous = before
    for i, ch in enumerate(text):
        if _drawless(ch):
            if ch == ZWJ or ch in PRESENTATION:
                if i + 1 == len(text) and not final:
                    return "".join(shown), i
                after = text[i + 1] if i + 1 < len(text) else ""
                if _kept(previous, ch, after):
                    shown.append(ch)
                    previous = ch
            continue
        shown.append(ch)
        previous = ch
    return "".join(shown), len(text)


def visible(text: str) -> str:
    """`text` without the characters that draw nothing: zero-width spaces and joiners, bidirectional
    controls, invisible operators (U+2061–2064), tags, variation selectors, fillers and controls.

    Kept: tab and line breaks, and the joiners and selectors that build an emoji (see `_kept`).
    """
    if text.isascii():
        return _ASCII_HIDDEN.sub("", text)
    return _shown(text, "", final=True)[0]


class VisibleStream:
    """`visible` over a text that arrives in pieces (an answer's deltas): what to show of each.

    A joiner or selector at the end of a piece is held until the next piece says what follows it.
    """

    def __init__(self) -> None:
        self._held = ""
        self._last = ""  # the last character shown: the context of what comes next

    def feed(self, piece: str) -> str:
        if not self._held and piece.isascii():  # most deltas: no joiner can be waiting on them
            shown = _ASCII_HIDDEN.sub("", piece)
            if shown:
                self._last = shown[-1]
            return shown
        text = self._held + piece
        shown, used = _shown(text, self._last, final=False)
        self._held = text[used:]
        if shown:
            self._last = shown[-1]
        return shown

    def end(self) -> str:
        shown, _ = _shown(self._held, self._last, final=True)
        self._held = ""
        return shown


def drawless_characters(text: str) -> list[str]:
    """The code points (as "U+200B") in `text` that draw nothing by themselves, in order, once each."""
    found = dict.fromkeys(ch for ch in text if _drawless(ch))
    return [f"U+{ord(ch):04X}" for ch in found]


# --- lookalikes ------------------------------------------------------------------------------------


@functools.cache  # a read-only table from a file shipped with the code: read once per process
def _prototypes() -> dict[str, str]:
    table: dict[str, str] = {}
    for line in CONFUSABLES_FILE.read_text(encoding="utf-8-sig").splitlines():
        fields = line.split("#", 1)[0].split(";")
        if len(fields) < 2:
            continue
        source, prototype = fields[0].strip(), fields[1].split()
        table[chr(int(source, 16))] = "".join(chr(int(code, 16)) for code in prototype)
    return table


def skeleton(text: str) -> str:
    """The UTS #39 skeleton of `text`: two strings with one skeleton can be mistaken for each other."""
    table = _prototypes()
    decomposed = unicodedata.normalize("NFD", text)
    return unicodedata.normalize("NFD", "".join(table.get(ch, ch) for ch in decomposed))


def fold(text: str) -> str:
    """`text` for matching words and rules in it: visible characters, NFKC, lookalikes from other
    scripts read as the letters they imitate (Cyrillic "с" as "c"), case-folded.

    ASCII stays itself ("m" is not read as "rn"), so words and rules written in plain English match.
    """
    table = _prototypes()
    text = unicodedata.normalize("NFKC", visible(text))
    return "".join(ch if ch.isascii() else table.get(ch, ch) for ch in text).casefold()


def name_key(name: str) -> str:
    """What a model name looks like, for telling whether two names can be mistaken for each other.

    Its TR39 skeleton after NFKC, case-folded (a voter does not read "GPT-4o" and "gpt-4o" as two
    models) and with any run of spaces, "-", "_" or "." read as one "-" ("gpt_4o" is "gpt-4o").
    """
    key = skeleton(skeleton(unicodedata.normalize("NFKC", name)).casefold())
    return SEPARATORS.sub("-", key)


# --- naming a model ----------------------------------------------------------------------------------


def _edge(ch: str, *, before: bool) -> str:
    """A lookaround that keeps a word from matching inside a longer run of letters or digits:
    "claude" is not in "claudette", "gpt" is in "gpt4", "model-1" is not in "model-10"."""
    if ch.isalpha():
        run = LETTERS
    elif ch.isdigit():
        run = r"\d"
    else:
        return ""
    return f"(?<!{run})" if before else f"(?!{run})"


def _word_pattern(word: str) -> str:
    parts = [re.escape(part) for part in SEPARATORS.split(word)]
    # "Chat GPT", "chat-gpt" and "ChatGPT" all name it.
    return _edge(word[0], before=True) + r"[\s\-_.]*".join(parts) + _edge(word[-1], before=False)


@functools.lru_cache(maxsize=1024)  # a battle's pair of models asks for the same words at each vote
def _pattern(words: tuple[str, ...]) -> re.Pattern[str] | None:
    folded = sorted({fold(w).strip() for w in words} - {""}, key=len, reverse=True)
    folded = [w for w in folded if SEPARATORS.sub("", w)]
    if not folded:
        return None
    return re.compile("|".join(_word_pattern(w) for w in folded))


def names_itself(text: str, words: Iterable[str]) -> bool:
    """Whether `text` says one of `words` (a model's names, its vendor's, its family's), read as a
    person reads it: hidden characters ignored, fullwidth and lookalike letters as the letters they
    show, any case, on word boundaries ("I am Claude", "As ChatGPT,", "C\u200blaude", "Ｃｌａｕｄｅ")."""
    pattern = _pattern(tuple(sorted(set(words))))
    return pattern is not None and pattern.search(fold(text)) is not None
