"""`python -m leaderboard.rating`, run as a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from leaderboard.rating import STYLE_FEATURES
from tests.leaderboard.rating.files import battle_records, write_csv, write_json, write_jsonl

REPO = Path(__file__).resolve().parents[3]


def run_cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "leaderboard.rating", *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_cli_gives_the_same_ratings_from_json_json_lines_and_csv(tmp_path: Path) -> None:
    records = battle_records()
    outputs = []
    for path in (
        write_json(tmp_path / "b.json", records),
        write_jsonl(tmp_path / "b.jsonl", records),
        write_csv(tmp_path / "b.csv", records),
    ):
        done = run_cli(path, "--json", "--style", "--bootstrap", "30", "--seed", "7")
        assert done.returncode == 0, done.stderr
        outputs.append(json.loads(done.stdout))

    assert outputs[0] == outputs[1] == outputs[2]
    result = outputs[0]
    assert result["models"][0]["model"] == "alpha"
    assert set(result["models"][0]) == {
        "model",
        "rating",
        "ci_lower",
        "ci_upper",
        "rank",
        "rank_lower",
        "rank_upper",
        "votes",
    }
    ratings = [row["rating"] for row in result["models"]]
    assert ratings == sorted(ratings, reverse=True)
    assert [c["feature"] for c in result["style"]["coefficients"]] == list(STYLE_FEATURES)
    assert len(result["style"]["models"]) == 4


def test_the_cli_prints_a_readable_table(tmp_path: Path) -> None:
    done = run_cli(write_json(tmp_path / "b.json", battle_records()), "--bootstrap", "20")
    assert done.returncode == 0, done.stderr
    assert "rank" in done.stdout and "alpha" in done.stdout and "95% interval" in done.stdout


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.json", None, "cannot read"),
        ("bad.jsonl", '{"model_a": "x", "model_b": "y", "winner": "tie"}\n{"model_a": "x",\n', "line 2"),
        (
            "bad.json",
            '[{"model_a": "x", "model_b": "y", "winner": "tie"}, {"model_a": "x", "winner": "tie"}]',
            "record 2",
        ),
        ("bad.csv", "model_a,model_b,winner\nx,y,tie\nx,y,draw\n", "line 3: unknown winner 'draw'"),
        (
            "self.jsonl",
            '\n{"model_a": "x", "model_b": "x", "winner": "model_a"}\n',
            "line 2: model_a and model_b",
        ),
        ("nocolumn.csv", "model_a,winner\nx,tie\n", "lacks model_b"),
    ],
)
def test_the_cli_rejects_a_bad_file_naming_the_line(
    tmp_path: Path, name: str, content: str | None, message: str
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_text(content)

    done = run_cli(path)

    assert done.returncode == 2
    assert message in done.stderr and name in done.stderr
    assert done.stdout == ""


def test_the_cli_wants_style_counts_on_every_record_for_style_control(tmp_path: Path) -> None:
    records = battle_records()
    del records[4]["conv_metadata"]
    done = run_cli(write_jsonl(tmp_path / "b.jsonl", records), "--style")
    assert done.returncode == 2 and "line 5: missing conv_metadata" in done.stderr
