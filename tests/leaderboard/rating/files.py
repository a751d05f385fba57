"""Battle files in the public Chatbot Arena formats, for the reader and command-line tests."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np

from leaderboard.rating import BOTH_BAD, TIE, WINNER_NAMES
from tests.leaderboard.rating.simulate import simulate


def battle_records() -> list[dict[str, Any]]:
    rng = np.random.default_rng(21)
    names = ["alpha", "beta", "gamma", "delta"]
    a, b, outcome = simulate(rng, np.array([1.0, 0.4, 0.0, -0.6]), 300, tie_share=0.3)
    outcome[::9] = np.where(outcome[::9] == TIE, BOTH_BAD, outcome[::9])
    records = []
    for i, j, o in zip(a, b, outcome, strict=True):
        tokens = rng.integers(20, 900, 2)
        records.append(
            {
                "model_a": names[i],
                "model_b": names[j],
                "winner": WINNER_NAMES[int(o)],
                "conv_metadata": {
                    "sum_assistant_a_tokens": int(tokens[0]),
                    "sum_assistant_b_tokens": int(tokens[1]),
                    "header_count_a": {f"h{k}": int(rng.integers(0, 2)) for k in range(1, 7)},
                    "header_count_b": {f"h{k}": int(rng.integers(0, 2)) for k in range(1, 7)},
                    "list_count_a": {
                        "ordered": int(rng.integers(0, 4)),
                        "unordered": int(rng.integers(0, 4)),
                    },
                    "list_count_b": {
                        "ordered": int(rng.integers(0, 4)),
                        "unordered": int(rng.integers(0, 4)),
                    },
                    "bold_count_a": {"**": int(rng.integers(0, 5)), "__": 0},
                    "bold_count_b": {"**": int(rng.integers(0, 5)), "__": 0},
                },
            }
        )
    return records


def write_json(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text(json.dumps(records, indent=1))
    return path


def write_jsonl(path: Path, records: list[Any]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def write_csv(path: Path, records: list[dict[str, Any]]) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["model_a", "model_b", "winner", "conv_metadata"])
        writer.writeheader()
        for r in records:
            writer.writerow({**r, "conv_metadata": json.dumps(r["conv_metadata"])})
    return path


WRITERS = {"json": write_json, "jsonl": write_jsonl, "csv": write_csv}
