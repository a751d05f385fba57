"""Battle files to arrays, column by column: `load_battles`.

CSV and JSON lines are parsed by pyarrow, in C++ and in parallel blocks, straight into columns; model
names and winners become dictionary codes there, so no Python object is made per battle. A JSON array
is parsed by orjson and its fields gathered into columns. The columns are then checked whole. A file
that fails a check, or that the columnar parsers refuse, is read again record by record
(`records.load_records`), which names the first bad line or record, or reads the file where only the
columnar parser minded it (a CSV row with extra fields, which the csv module takes).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.csv
import pyarrow.json

from leaderboard.rating.outcomes import WINNERS
from leaderboard.rating.records import STYLE_KEYS, Battles, load_propensity_records, load_records
from leaderboard.rating.style import style_delta

_FIELDS = ("model_a", "model_b", "winner")
_WHITESPACE = b" \t\r\n\f\v"
_BOM = b"\xef\xbb\xbf"


class _Refused(Exception):
    """The columns cannot be used as they are: the records decide (a bad record, or a parser's quirk)."""


def load_battles(path: str | Path, *, style: bool = False) -> Battles:
    """Read battles in the public Chatbot Arena format: a JSON array, JSON lines or a CSV file.

    Each record has model_a, model_b and winner (model_a, model_b, tie or tie (bothbad)). Returns
    (models sorted by name, model_a, model_b, outcome, features): index arrays into models, outcome
    codes, and with style=True the (battles, 4) `style_delta` of STYLE_FEATURES taken from each
    record's conv_metadata (then required on every record), else None. The format is told by the
    first character: "[" a JSON array, "{" JSON lines, anything else CSV with a header row (a
    conv_metadata column holds JSON). Raises BattleFileError naming the line or record at fault.
    """
    try:
        battles = _from_columns(*_columns(Path(path), style))
    except (_Refused, OSError, pa.ArrowException, orjson.JSONDecodeError):
        return load_records(path, style=style)
    # pyarrow's allocator keeps the pages of the parsed file for reuse; nothing here needs them again.
    pa.default_memory_pool().release_unused()
    return battles


def load_propensity(path: str | Path) -> np.ndarray:
    """Each battle's `propensity` field (JSON) or column (CSV), in the order `load_battles` reads them.

    The probability with which the battle's pair was drawn, for `--weights propensity`. Read as a
    column; a file where that fails, or with a value outside (0, 1], is read again record by record
    (`records.load_propensity_records`), which raises BattleFileError naming the first bad record.
    """
    try:
        column = _propensity_column(Path(path))
    except (_Refused, OSError, pa.ArrowException, orjson.JSONDecodeError):
        return load_propensity_records(path)
    if column.null_count:
        return load_propensity_records(path)
    values = np.from_dlpack(column.combine_chunks()) if len(column) else np.zeros(0)
    if not ((values > 0.0) & (values <= 1.0)).all():
        return load_propensity_records(path)
    return values.astype(np.float64)


def _propensity_column(path: Path) -> pa.ChunkedArray:
    with open(path, "rb") as f:
        start = f.read(1 << 16).removeprefix(_BOM).lstrip(_WHITESPACE)[:1]
    if start == b"[":
        records = orjson.loads(path.read_bytes().removeprefix(_BOM))
        try:
            values = [r["propensity"] for r in records]
        except (TypeError, KeyError) as exc:
            raise _Refused(exc) from None
        if any(isinstance(v, bool) or not isinstance(v, int | float) for v in values):
            raise _Refused("a propensity that is not a number")
        return pa.chunked_array([pa.array(values, pa.float64())])
    if start == b"{":
        parse = pyarrow.json.ParseOptions(
            explicit_schema=pa.schema([("propensity", pa.float64())]), unexpected_field_behavior="ignore"
        )
        return pyarrow.json.read_json(path, parse_options=parse).column("propensity")
    if not start:
        raise _Refused("empty")
    table = pyarrow.csv.read_csv(
        path,
        parse_options=pyarrow.csv.ParseOptions(newlines_in_values=True),
        convert_options=pyarrow.csv.ConvertOptions(
            column_types={"propensity": pa.float64()}, include_columns=["propensity"]
        ),
    )
    return table.column("propensity")


def _columns(path: Path, style: bool) -> tuple[list[pa.ChunkedArray], pa.ChunkedArray | None]:
    """model_a, model_b, winner and (with style) conv_metadata as pyarrow columns."""
    with open(path, "rb") as f:
        start = f.read(1 << 16).removeprefix(_BOM).lstrip(_WHITESPACE)[:1]
    if start == b"[":
        return _json_array(path, style)
    if start == b"{":
        parse = pyarrow.json.ParseOptions(
            explicit_schema=pa.schema([(name, pa.string()) for name in _FIELDS]),
            # conv_metadata's type is inferred: a count may be a number or a dict of counts.
            unexpected_field_behavior="infer" if style else "ignore",
        )
        table = pyarrow.json.read_json(path, parse_options=parse)
        if style and "conv_metadata" not in table.column_names:
            raise _Refused("no conv_metadata")
        metadata = table.column("conv_metadata") if style else None
        return [table.column(name) for name in _FIELDS], metadata
    if not start:
        raise _Refused("empty")
    codes = pa.dictionary(pa.int32(), pa.string())
    types = {name: codes for name in _FIELDS} | ({"conv_metadata": pa.string()} if style else {})
    table = pyarrow.csv.read_csv(
        path,
        parse_options=pyarrow.csv.ParseOptions(newlines_in_values=True),
        convert_options=pyarrow.csv.ConvertOptions(column_types=types, include_columns=list(types)),
    )
    metadata = _parse_json_column(table.column("conv_metadata")) if style else None
    return [table.column(name) for name in _FIELDS], metadata


def _json_array(path: Path, style: bool) -> tuple[list[pa.ChunkedArray], pa.ChunkedArray | None]:
    records = orjson.loads(path.read_bytes().removeprefix(_BOM))
    try:
        columns = [pa.chunked_array([pa.array([r[name] for r in records], pa.string())]) for name in _FIELDS]
        metadata = pa.chunked_array([pa.array([r["conv_metadata"] for r in records])]) if style else None
    except (TypeError, KeyError) as exc:  # a record that is not an object, or lacks a field
        raise _Refused(exc) from None
    return columns, metadata


def _parse_json_column(texts: pa.ChunkedArray) -> pa.ChunkedArray:
    """A column of JSON objects as text, parsed by pyarrow's JSON reader as one JSON-lines buffer.

    Every text must give exactly one row: an empty one gives none, and then the counts differ.
    """
    pieces = []
    for chunk in texts.chunks:
        _, offsets, data = chunk.buffers()
        offsets = np.frombuffer(offsets, np.int32)[chunk.offset : chunk.offset + len(chunk) + 1]
        if chunk.null_count or (np.diff(offsets) == 0).any():
            raise _Refused("a record without conv_metadata")
        text = np.frombuffer(data, np.uint8)[offsets[0] : offsets[-1]]
        pieces.append(np.insert(text, offsets[1:] - offsets[0], ord("\n")))  # a newline after each
    if not pieces:
        return pa.chunked_array([], pa.struct([]))
    buffer = pa.BufferReader(pa.py_buffer(np.concatenate(pieces)))
    parsed = pyarrow.json.read_json(buffer, parse_options=pyarrow.json.ParseOptions(newlines_in_values=True))
    if parsed.num_rows != len(texts):
        raise _Refused("a conv_metadata that is not one object")
    return parsed.to_struct_array()


def _from_columns(columns: list[pa.ChunkedArray], metadata: pa.ChunkedArray | None) -> Battles:
    (names_a, codes_a), (names_b, codes_b), (winners, codes_w) = (_encode(c) for c in columns)
    models = sorted(set(names_a) | set(names_b))
    if "" in models:
        raise _Refused("an empty model name")
    index = {name: i for i, name in enumerate(models)}
    model_a = np.array([index[name] for name in names_a], dtype=np.int64)[codes_a]
    model_b = np.array([index[name] for name in names_b], dtype=np.int64)[codes_b]
    if not set(winners) <= WINNERS.keys():
        raise _Refused("an unknown winner")
    outcome = np.array([WINNERS[w] for w in winners], dtype=np.int64)[codes_w]
    if (model_a == model_b).any():
        raise _Refused("a model against itself")
    features = None if metadata is None else _style_features(metadata)
    return models, model_a, model_b, outcome, features


def _encode(column: pa.ChunkedArray) -> tuple[list[str], np.ndarray]:
    """The distinct strings of a column that occur in it, and each row's index into them."""
    if column.null_count:
        raise _Refused("a missing field")
    if not pa.types.is_dictionary(column.type):
        column = column.dictionary_encode()
    column = column.unify_dictionaries()
    if not column.num_chunks:
        return [], np.zeros(0, dtype=np.int64)
    # from_dlpack: zero-copy, and unlike to_numpy it does not load pandas' compatibility layer.
    codes = np.concatenate([np.from_dlpack(chunk.indices) for chunk in column.chunks])
    names = column.chunk(0).dictionary.to_pylist()
    # Keep only the names that occur, so that a model without battles is never listed.
    seen = np.bincount(codes, minlength=len(names)) > 0
    if seen.all():
        return names, codes
    return [name for name, kept in zip(names, seen, strict=True) if kept], (np.cumsum(seen) - 1)[codes]


def _style_features(metadata: pa.ChunkedArray) -> np.ndarray:
    """`style_delta` of each record's style counts, from conv_metadata parsed as structs."""
    if not pa.types.is_struct(metadata.type) or metadata.null_count:
        raise _Refused("a record without conv_metadata")
    structs = metadata.combine_chunks()
    sides = np.zeros((2, len(structs), len(STYLE_KEYS)))
    for feature, keys in enumerate(STYLE_KEYS.values()):
        for side, key in enumerate(keys):
            sides[side, :, feature] = _count(structs, key)
    return style_delta(sides[0], sides[1])


def _count(structs: pa.StructArray, key: str) -> np.ndarray:
    """A count or the sum of a dict of counts, per record; refused unless every record has it."""
    if structs.type.get_field_index(key) < 0:
        raise _Refused(f"no {key}")
    value = structs.field(key)
    parts = (
        [value.field(k) for k in range(value.type.num_fields)] if pa.types.is_struct(value.type) else [value]
    )
    total = np.zeros(len(structs))
    for part in parts:
        # A null is a count left out (or written as null, which the records reject): they decide.
        if part.null_count or not (pa.types.is_integer(part.type) or pa.types.is_floating(part.type)):
            raise _Refused(f"{key} is not a count or a dict of counts")
        numbers = np.from_dlpack(part.cast(pa.float64()))
        if not (numbers >= 0).all():
            raise _Refused(f"a negative {key}")
        total += numbers
    if value.null_count:
        raise _Refused(f"a record without {key}")
    return total
