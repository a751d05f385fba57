"""The command line: ratings with bootstrap intervals from a file of arena battles.

python -m leaderboard.rating BATTLES [--bootstrap N] [--seed S] [--style] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from leaderboard.rating.bootstrap import Ratings, rate
from leaderboard.rating.reader import load_battles
from leaderboard.rating.records import BattleFileError
from leaderboard.rating.style import STYLE_FEATURES, rate_style


def _rows(models: Sequence[str], ratings: Ratings) -> list[dict[str, Any]]:
    order = sorted(range(len(models)), key=lambda i: (-ratings.rating[i], models[i]))
    return [
        {
            "model": models[i],
            "rating": float(ratings.rating[i]),
            "ci_lower": float(ratings.ci_lower[i]),
            "ci_upper": float(ratings.ci_upper[i]),
            "rank": int(ratings.rank[i]),
            "votes": int(ratings.votes[i]),
        }
        for i in order
    ]


def _table(rows: list[dict[str, Any]]) -> str:
    width = max([len("model"), *(len(row["model"]) for row in rows)])
    lines = [f"{'rank':>4}  {'model':<{width}}  {'rating':>8}  {'95% interval':>17}  {'votes':>7}"]
    for row in rows:
        interval = f"{row['ci_lower']:.1f} .. {row['ci_upper']:.1f}"
        model = f"{row['model']:<{width}}"
        lines.append(f"{row['rank']:>4}  {model}  {row['rating']:>8.1f}  {interval:>17}  {row['votes']:>7}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m leaderboard.rating",
        description="Bradley-Terry ratings with bootstrap intervals from a file of arena battles.",
    )
    parser.add_argument("battles", metavar="BATTLES", help="JSON array, JSON lines or CSV file of battles")
    parser.add_argument(
        "--bootstrap",
        type=int,
        default=None,
        metavar="N",
        help="bootstrap rounds (default 1000; 100 for --style)",
    )
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (default 0)")
    parser.add_argument("--style", action="store_true", help="also fit style control from conv_metadata")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    args = parser.parse_args(argv)
    if args.bootstrap is not None and args.bootstrap < 0:
        parser.error("--bootstrap must be >= 0")

    try:
        models, model_a, model_b, outcome, features = load_battles(args.battles, style=args.style)
    except BattleFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    n = len(models)
    # The rounds are the same for any number of worker threads; each holds one chunk of them in memory.
    workers = min(len(os.sched_getaffinity(0)), 4)
    plain = rate(
        model_a, model_b, outcome, n, bootstrap=_or(args.bootstrap, 1000), seed=args.seed, workers=workers
    )
    result: dict[str, Any] = {"models": _rows(models, plain)}
    if features is not None:
        rounds = _or(args.bootstrap, 100)
        styled = rate_style(
            model_a, model_b, outcome, features, n, bootstrap=rounds, seed=args.seed, workers=workers
        )
        result["style"] = {
            "coefficients": [
                {"feature": name, "coef": float(c), "ci_lower": float(lo), "ci_upper": float(hi)}
                for name, c, lo, hi in zip(
                    STYLE_FEATURES, styled.coef, styled.coef_lower, styled.coef_upper, strict=True
                )
            ],
            "models": _rows(models, styled.ratings),
        }

    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{len(outcome)} battles, {n} models, {plain.bootstrap} bootstrap rounds, seed {args.seed}\n")
    print(_table(result["models"]))
    if "style" in result:
        print("\nStyle control: log-odds per standard deviation of (a - b)/(a + b + 1)\n")
        for row in result["style"]["coefficients"]:
            interval = f"{row['ci_lower']:+.3f} .. {row['ci_upper']:+.3f}"
            print(f"  {row['feature']:<8} {row['coef']:+.3f}  ({interval})")
        print("\nStyle-controlled ratings\n")
        print(_table(result["style"]["models"]))
    return 0


def _or(value: int | None, default: int) -> int:
    return default if value is None else value


if __name__ == "__main__":
    sys.exit(main())
