"""Battle files to arrays: JSON array, JSON lines and CSV, read column by column."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from leaderboard.rating import (
    A_WINS,
    B_WINS,
    BOTH_BAD,
    STYLE_FEATURES,
    TIE,
    WINNERS,
    BattleFileError,
    reader,
    style_counts,
    style_delta,
)
from leaderboard.rating.reader import load_battles
from leaderboard.rating.records import Battles, load_records
from tests.leaderboard.rating.files import WRITERS, battle_records, write_json, write_jsonl

REPO = Path(__file__).resolve().parents[3]


def test_load_battles_reads_names_outcomes_and_style_counts(tmp_path: Path) -> None:
    records = battle_records()
    models, a, _, outcome, features = load_battles(write_json(tmp_path / "b.json", records), style=True)

    assert models == ["alpha", "beta", "delta", "gamma"]
    assert [models[i] for i in a[:3]] == [r["model_a"] for r in records[:3]]
    assert outcome.tolist()[:3] == [
        {"model_a": A_WINS, "model_b": B_WINS, "tie": TIE, "tie (bothbad)": BOTH_BAD}[r["winner"]]
        for r in records[:3]
    ]
    assert features is not None and features.shape == (len(records), len(STYLE_FEATURES))
    meta = records[0]["conv_metadata"]
    length = (meta["sum_assistant_a_tokens"] - meta["sum_assistant_b_tokens"]) / (
        meta["sum_assistant_a_tokens"] + meta["sum_assistant_b_tokens"] + 1
    )
    assert features[0, 0] == pytest.approx(length)
    assert load_battles(tmp_path / "b.json")[4] is None


def expected_features(records: list[dict[str, Any]]) -> np.ndarray:
    counts = np.array([style_counts(r["conv_metadata"]) for r in records])
    return style_delta(counts[:, 0], counts[:, 1])


def refuse_records(path: str | Path, *, style: bool = False) -> Battles:
    raise AssertionError(f"{path} was read record by record")


@pytest.mark.parametrize("kind", WRITERS)
def test_it_reads_names_outcomes_and_style_in_each_format_as_the_records_say(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    records = battle_records()
    path = WRITERS[kind](tmp_path / f"b.{kind}", records)

    with monkeypatch.context() as patched:
        patched.setattr(reader, "load_records", refuse_records)  # read column by column, every column
        models, a, b, outcome, features = load_battles(path, style=True)

    assert models == sorted({r["model_a"] for r in records} | {r["model_b"] for r in records})
    assert [models[i] for i in a] == [r["model_a"] for r in records]
    assert [models[i] for i in b] == [r["model_b"] for r in records]
    assert outcome.tolist() == [WINNERS[r["winner"]] for r in records]
    assert features is not None
    np.testing.assert_array_equal(features, expected_features(records))
    for mine, theirs in zip(load_battles(path, style=True), load_records(path, style=True), strict=True):
        np.testing.assert_array_equal(mine, theirs)


def test_a_csv_with_other_columns_a_byte_order_mark_and_quoted_newlines_reads_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = battle_records()[:20]
    lines = ["\ufeffquestion_id,model_a,model_b,winner,note,conv_metadata"]
    for n, r in enumerate(records):
        metadata = json.dumps(r["conv_metadata"], indent=1).replace('"', '""')
        lines.append(f'{n},{r["model_a"]},{r["model_b"]},{r["winner"]},"two\nlines, one comma","{metadata}"')
    path = tmp_path / "b.csv"
    path.write_text("\n".join(lines) + "\n")
    monkeypatch.setattr(reader, "load_records", refuse_records)

    models, a, _, outcome, features = load_battles(path, style=True)

    assert [models[i] for i in a] == [r["model_a"] for r in records]
    assert outcome.tolist() == [WINNERS[r["winner"]] for r in records]
    assert features is not None
    np.testing.assert_array_equal(features, expected_features(records))


def test_a_file_with_a_header_only_holds_no_battles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "b.csv"
    path.write_text("model_a,model_b,winner\n")
    monkeypatch.setattr(reader, "load_records", refuse_records)

    models, a, b, outcome, features = load_battles(path)

    assert models == [] and a.size == b.size == outcome.size == 0 and features is None


@pytest.mark.parametrize(
    ("kind", "bad", "message"),
    [
        ("json", {"winner": "model_c"}, "record 7: unknown winner 'model_c'"),
        ("jsonl", {"model_b": ""}, "line 7: missing or empty field 'model_b'"),
        ("csv", {"model_b": "alpha", "model_a": "alpha"}, "line 8: model_a and model_b are both 'alpha'"),
        ("json", {"conv_metadata": {"sum_assistant_a_tokens": "many"}}, "record 7: conv_metadata."),
        ("jsonl", {"conv_metadata": None}, "line 7: missing conv_metadata"),
        (
            "csv",
            {"conv_metadata": {"bold_count_a": {"**": -1}}},
            "line 8: conv_metadata.bold_count_a must be",
        ),
    ],
)
def test_it_names_the_first_bad_record_in_each_format(
    tmp_path: Path, kind: str, bad: dict[str, Any], message: str
) -> None:
    records = battle_records()
    for n in (6, 9):  # the seventh record and a later one; the seventh is named
        metadata = bad.get("conv_metadata", {})
        records[n] = {**records[n], **bad}
        if metadata:
            records[n]["conv_metadata"] = {**battle_records()[n]["conv_metadata"], **metadata}
    path = WRITERS[kind](tmp_path / f"bad.{kind}", records)

    with pytest.raises(BattleFileError, match=re.escape(message)) as raised:
        load_battles(path, style=True)
    assert str(path) in str(raised.value)


def test_it_names_a_line_that_is_not_json(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "b.jsonl", battle_records()[:5])
    path.write_text(path.read_text() + '{"model_a": "x", "model_b": \n')
    with pytest.raises(BattleFileError, match="line 6: not valid JSON"):
        load_battles(path)


def test_a_csv_row_the_columnar_parser_refuses_is_still_read_as_the_csv_module_reads_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "b.csv"
    path.write_text("model_a,model_b,winner\nx,y,tie\ny,x,model_a,an extra field\n")

    models, a, b, outcome, _ = load_battles(path)

    assert models == ["x", "y"] and a.tolist() == [0, 1] and b.tolist() == [1, 0]
    assert outcome.tolist() == [TIE, A_WINS]


def test_a_dict_of_counts_may_leave_a_count_out(tmp_path: Path) -> None:
    records = battle_records()[:10]
    del records[3]["conv_metadata"]["header_count_a"]["h2"]
    path = write_jsonl(tmp_path / "b.jsonl", records)

    _, _, _, _, features = load_battles(path, style=True)

    assert features is not None
    np.testing.assert_array_equal(features, expected_features(records))


def test_importing_the_engine_leaves_the_file_reader_unloaded() -> None:
    """Web and worker processes import the engine; only the command line needs pyarrow."""
    code = "import sys, leaderboard.rating; print('pyarrow' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("b.jsonl", '{"model_a": "x", "model_b": "y", "winner": "tie"}\n'),
        ("b.csv", "model_a,model_b,winner\nx,y,tie\n"),
        ("b.json", '[{"model_a": "x", "model_b": "y", "winner": "tie"}]'),
    ],
)
def test_style_control_wants_conv_metadata_from_a_file_without_any(
    tmp_path: Path, name: str, content: str
) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(BattleFileError, match="missing conv_metadata"):
        load_battles(path, style=True)
    assert load_battles(path)[0] == ["x", "y"]
