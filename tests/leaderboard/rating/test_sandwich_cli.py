"""`python -m leaderboard.rating` with --intervals, --weights and --min-votes, run as a subprocess."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from leaderboard.rating import propensity_weights, rate
from leaderboard.rating.reader import load_battles, load_propensity
from leaderboard.rating.records import load_propensity_records
from tests.leaderboard.rating.files import battle_records, write_json, write_jsonl
from tests.leaderboard.rating.test_main import run_cli


def with_propensity(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**r, "propensity": round(0.05 + 0.9 * ((n * 37) % 100) / 100, 3)} for n, r in enumerate(records)]


def write_csv_with_propensity(path: Path, records: list[dict[str, Any]]) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["model_a", "model_b", "winner", "propensity"])
        writer.writeheader()
        for r in records:
            writer.writerow({key: r[key] for key in ("model_a", "model_b", "winner", "propensity")})
    return path


def test_the_cli_gives_sandwich_intervals_and_rank_ranges_by_default(tmp_path: Path) -> None:
    done = run_cli(write_json(tmp_path / "b.json", battle_records()), "--json", "--style")

    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["intervals"] == "sandwich" and result["weights"] == "none" and "bootstrap" not in result
    for board in (result["models"], result["style"]["models"]):
        for row in board:
            assert row["ci_lower"] < row["rating"] < row["ci_upper"]
            assert 1 <= row["rank_lower"] == row["rank"] <= row["rank_upper"] <= 4
    models, a, b, outcome, _ = load_battles(tmp_path / "b.json")
    expected = rate(a, b, outcome, len(models), intervals="sandwich", min_votes=20)
    alpha = models.index("alpha")
    assert result["models"][0]["ci_upper"] == pytest.approx(expected.ci_upper[alpha], abs=1e-9)


def test_bootstrap_rounds_ask_for_bootstrap_intervals(tmp_path: Path) -> None:
    path = write_json(tmp_path / "b.json", battle_records())

    done = run_cli(path, "--json", "--bootstrap", "40", "--seed", "3")
    explicit = run_cli(path, "--json", "--intervals", "bootstrap", "--bootstrap", "40", "--seed", "3")

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == json.loads(explicit.stdout)
    assert json.loads(done.stdout)["intervals"] == "bootstrap" and json.loads(done.stdout)["bootstrap"] == 40
    refused = run_cli(path, "--intervals", "sandwich", "--bootstrap", "40")
    assert refused.returncode == 2 and "--bootstrap goes with --intervals bootstrap" in refused.stderr


@pytest.mark.parametrize("kind", ["json", "jsonl", "csv"])
def test_propensity_weights_come_from_each_battles_propensity(tmp_path: Path, kind: str) -> None:
    records = with_propensity(battle_records())
    writers = {"json": write_json, "jsonl": write_jsonl, "csv": write_csv_with_propensity}
    path = writers[kind](tmp_path / f"b.{kind}", records)

    done = run_cli(path, "--json", "--weights", "propensity")

    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["weights"] == "propensity"
    propensity = load_propensity(path)
    np.testing.assert_array_equal(propensity, [r["propensity"] for r in records])
    np.testing.assert_array_equal(load_propensity_records(path), propensity)
    models, a, b, outcome, _ = load_battles(path)
    weights = propensity_weights(propensity)
    expected = rate(a, b, outcome, len(models), intervals="sandwich", weights=weights, min_votes=20)
    unweighted = json.loads(run_cli(path, "--json").stdout)
    top = models.index(result["models"][0]["model"])
    assert result["models"][0]["rating"] == pytest.approx(expected.rating[top], abs=1e-9)
    assert result["models"][0]["rating"] != pytest.approx(unweighted["models"][0]["rating"], abs=0.01)


@pytest.mark.parametrize(
    ("kind", "change", "message"),
    [
        (
            "jsonl",
            {"propensity": None},
            "line 8: missing field 'propensity' (needed for --weights propensity)",
        ),
        ("json", {"propensity": 0}, "record 8: propensity must be a probability in (0, 1], got 0"),
        ("csv", {"propensity": "often"}, "line 9: propensity must be a probability in (0, 1], got 'often'"),
    ],
)
def test_propensity_weights_want_a_probability_on_every_battle(
    tmp_path: Path, kind: str, change: dict[str, Any], message: str
) -> None:
    records = with_propensity(battle_records())
    records[7] = {**records[7], **change}
    if change["propensity"] is None:
        del records[7]["propensity"]
    writers = {"json": write_json, "jsonl": write_jsonl, "csv": write_csv_with_propensity}
    path = writers[kind](tmp_path / f"b.{kind}", records)

    done = run_cli(path, "--weights", "propensity")

    assert done.returncode == 2
    assert message in done.stderr and str(path) in done.stderr
    assert run_cli(path).returncode == 0  # without --weights propensity the field is not read


def test_a_file_without_propensities_says_so(tmp_path: Path) -> None:
    done = run_cli(write_jsonl(tmp_path / "b.jsonl", battle_records()), "--weights", "propensity")
    assert done.returncode == 2
    assert "line 1: missing field 'propensity' (needed for --weights propensity)" in done.stderr


def test_pair_frequency_weights_and_min_votes_on_the_command_line(tmp_path: Path) -> None:
    records = battle_records()
    records += [{"model_a": "omega", "model_b": "alpha", "winner": "model_a", "conv_metadata": {}}] * 3
    path = write_jsonl(tmp_path / "b.jsonl", records)

    done = run_cli(path, "--json", "--weights", "pair-frequency")
    every = run_cli(path, "--json", "--min-votes", "0")
    table = run_cli(path)

    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["weights"] == "pair-frequency" and result["min_votes"] == 20
    last = result["models"][-1]
    assert last["model"] == "omega" and last["rating"] is None and last["rank_upper"] is None
    assert last["votes"] == 3
    assert all(row["rating"] is not None for row in json.loads(every.stdout)["models"])
    assert "not yet rated" in table.stdout and "sandwich intervals" in table.stdout
