"""Battle files record by record: the public Chatbot Arena format as Python objects.

Used where each record is wanted whole (`leaderboard.dumps` imports them as votes) and by
`reader.load_battles` to name the first bad line or record of a file its columns fail on. Each record
has model_a, model_b and winner (see `outcomes.WINNERS`); conv_metadata carries the style counts.
The format is told by the first character: "[" a JSON array, "{" JSON lines, anything else CSV with a
header row (a conv_metadata column holds JSON).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from leaderboard.rating.outcomes import WINNERS
from leaderboard.rating.style import STYLE_FEATURES, style_delta

# Per style feature, the conv_metadata keys for answer A and answer B in the published clean_battle
# dumps. A value is a count or a dict of counts (h1..h6, ordered/unordered, **/__), which are summed.
STYLE_KEYS = {
    "length": ("sum_assistant_a_tokens", "sum_assistant_b_tokens"),
    "headers": ("header_count_a", "header_count_b"),
    "lists": ("list_count_a", "list_count_b"),
    "bold": ("bold_count_a", "bold_count_b"),
}


class BattleFileError(ValueError):
    """A battles file that cannot be used; the message names the file and the line or record."""


Battles = tuple[list[str], np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]


def iter_records(path: str | Path) -> Iterable[tuple[str, Any]]:
    """(where, record) pairs of a battles file, `where` naming its line or record for messages.

    The format is told by the first character: "[" a JSON array, "{" JSON lines, anything else
    CSV with a header row (a conv_metadata column holds JSON).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")  # -sig: a spreadsheet's byte-order mark
    except (OSError, UnicodeDecodeError) as exc:
        raise BattleFileError(f"{path}: cannot read: {exc}") from exc
    stripped = text.lstrip()
    if not stripped:
        raise BattleFileError(f"{path}: the file is empty")
    if stripped[0] == "[":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise BattleFileError(f"{path}, line {exc.lineno}: not valid JSON: {exc.msg}") from exc
        return ((f"record {n}", r) for n, r in enumerate(data, 1))
    if stripped[0] == "{":
        return _json_lines(path, text)
    return _csv_rows(path, text)


def load_records(path: str | Path, *, style: bool = False) -> Battles:
    """`reader.load_battles` record by record: the same result, or BattleFileError at the first bad one."""
    path = Path(path)
    records = iter_records(path)

    names_a: list[str] = []
    names_b: list[str] = []
    outcomes: list[int] = []
    counts: list[list[float]] = []
    for where, record in records:
        try:
            a, b, outcome = read_battle(record)
            if style:
                counts.append(_read_style(record))
        except BattleFileError as exc:
            raise BattleFileError(f"{path}, {where}: {exc}") from None
        names_a.append(a)
        names_b.append(b)
        outcomes.append(outcome)
    models = sorted(set(names_a) | set(names_b))
    index = {name: i for i, name in enumerate(models)}
    model_a = np.array([index[name] for name in names_a], dtype=np.int64)
    model_b = np.array([index[name] for name in names_b], dtype=np.int64)
    features = None
    if style:
        both = np.array(counts, dtype=np.float64).reshape(-1, 2, len(STYLE_FEATURES))
        features = style_delta(both[:, 0], both[:, 1])
    return models, model_a, model_b, np.array(outcomes, dtype=np.int64), features


def _json_lines(path: Path, text: str) -> Iterable[tuple[str, Any]]:
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            yield f"line {number}", json.loads(line)
        except json.JSONDecodeError as exc:
            raise BattleFileError(f"{path}, line {number}: not valid JSON: {exc.msg}") from exc


def _csv_rows(path: Path, text: str) -> Iterable[tuple[str, Any]]:
    reader = csv.DictReader(io.StringIO(text))
    missing = [field for field in ("model_a", "model_b", "winner") if field not in (reader.fieldnames or [])]
    if missing:
        raise BattleFileError(f"{path}, line 1: the CSV header lacks {', '.join(missing)}")
    for row in reader:
        where = f"line {reader.line_num}"
        metadata = row.get("conv_metadata")
        if metadata:
            try:
                row["conv_metadata"] = json.loads(metadata)
            except json.JSONDecodeError as exc:
                raise BattleFileError(f"{path}, {where}: conv_metadata is not valid JSON: {exc.msg}") from exc
        yield where, row


def read_battle(record: Any) -> tuple[str, str, int]:
    if not isinstance(record, dict):
        raise BattleFileError(
            f"expected an object with model_a, model_b and winner, got {type(record).__name__}"
        )
    names = []
    for field in ("model_a", "model_b"):
        name = record.get(field)
        if not isinstance(name, str) or not name:
            raise BattleFileError(f"missing or empty field {field!r}")
        names.append(name)
    winner = record.get("winner")
    if winner is None:
        raise BattleFileError("missing field 'winner'")
    if winner not in WINNERS:
        raise BattleFileError(f"unknown winner {winner!r} (expected one of {', '.join(WINNERS)})")
    if names[0] == names[1]:
        raise BattleFileError(f"model_a and model_b are both {names[0]!r}")
    return names[0], names[1], WINNERS[winner]


def load_propensity_records(path: str | Path) -> np.ndarray:
    """Each record's `propensity` (the probability its pair was drawn with), in file order.

    Raises BattleFileError at the first record without one or with one outside (0, 1].
    """
    values = []
    for where, record in iter_records(path):
        try:
            values.append(read_propensity(record))
        except BattleFileError as exc:
            raise BattleFileError(f"{path}, {where}: {exc}") from None
    return np.array(values, dtype=np.float64)


def read_propensity(record: Any) -> float:
    value = record.get("propensity") if isinstance(record, dict) else None
    if value is None or value == "":
        raise BattleFileError("missing field 'propensity' (needed for --weights propensity)")
    number = value
    if isinstance(value, str):  # a CSV cell
        try:
            number = float(value)
        except ValueError:
            number = None
    if isinstance(number, bool) or not isinstance(number, int | float) or not 0.0 < number <= 1.0:
        raise BattleFileError(f"propensity must be a probability in (0, 1], got {value!r}")
    return float(number)


def style_counts(metadata: Any) -> list[list[float]]:
    """[a-side, b-side] counts of STYLE_FEATURES from a conv_metadata dict; missing counts are 0."""
    metadata = metadata if isinstance(metadata, dict) else {}
    sides: list[list[float]] = [[], []]
    for keys in STYLE_KEYS.values():
        for side, key in zip(sides, keys, strict=True):
            value = metadata.get(key)
            parts = value.values() if isinstance(value, dict) else [value]
            side.append(
                float(sum(p for p in parts if isinstance(p, int | float) and not isinstance(p, bool)))
            )
    return sides


def _read_style(record: dict[str, Any]) -> list[float]:
    metadata = record.get("conv_metadata")
    if not isinstance(metadata, dict):
        raise BattleFileError("missing conv_metadata (needed for style control)")
    sides: list[list[float]] = [[], []]
    for keys in STYLE_KEYS.values():
        for side, key in zip(sides, keys, strict=True):
            side.append(_style_count(metadata, key))
    return sides[0] + sides[1]


def _style_count(metadata: dict[str, Any], key: str) -> float:
    value = metadata.get(key)
    parts = value.values() if isinstance(value, dict) else [value]
    total = 0.0
    for part in parts:
        if isinstance(part, bool) or not isinstance(part, int | float) or not part >= 0:
            raise BattleFileError(f"conv_metadata.{key} must be a count or a dict of counts, got {value!r}")
        total += part
    return total
