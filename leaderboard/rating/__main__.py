"""The command line: ratings with 95% intervals from a file of arena battles.

python -m leaderboard.rating BATTLES [--intervals sandwich|bootstrap] [--bootstrap N] [--seed S]
    [--weights none|propensity|pair-frequency] [--min-votes N] [--style] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Sequence
from typing import Any

from leaderboard.rating.bootstrap import INTERVALS, Ratings, rate
from leaderboard.rating.rated import MIN_VOTES
from leaderboard.rating.reader import load_battles, load_propensity
from leaderboard.rating.records import BattleFileError
from leaderboard.rating.style import STYLE_FEATURES, rate_style
from leaderboard.rating.weights import WEIGHTINGS, pair_frequency_weights, propensity_weights


def _number(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def _rows(models: Sequence[str], ratings: Ratings) -> list[dict[str, Any]]:
    # Rated models by rating, then those not yet rated (rating null) by name.
    order = sorted(
        range(len(models)),
        key=lambda i: (not ratings.rated[i], -ratings.rating[i] if ratings.rated[i] else 0.0, models[i]),
    )
    rows = []
    for i in order:
        rated = bool(ratings.rated[i])
        rows.append(
            {
                "model": models[i],
                "rating": _number(ratings.rating[i]),
                "ci_lower": _number(ratings.ci_lower[i]),
                "ci_upper": _number(ratings.ci_upper[i]),
                "rank": int(ratings.rank[i]) if rated else None,
                "rank_lower": int(ratings.rank_lower[i]) if rated else None,
                "rank_upper": int(ratings.rank_upper[i]) if rated else None,
                "votes": int(ratings.votes[i]),
            }
        )
    return rows


def _table(rows: list[dict[str, Any]]) -> str:
    width = max([len("model"), *(len(row["model"]) for row in rows)])
    lines = [
        f"{'rank':>4}  {'model':<{width}}  {'rating':>8}  {'95% interval':>17}  {'votes':>7}  {'ranks':>7}"
    ]
    for row in rows:
        model = f"{row['model']:<{width}}"
        if row["rating"] is None:
            lines.append(f"{'-':>4}  {model}  {'not yet rated':>27}  {row['votes']:>7}")
            continue
        interval = f"{row['ci_lower']:.1f} .. {row['ci_upper']:.1f}"
        ranks = f"{row['rank_lower']}-{row['rank_upper']}"
        lines.append(
            f"{row['rank']:>4}  {model}  {row['rating']:>8.1f}  {interval:>17}  {row['votes']:>7}  {ranks:>7}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m leaderboard.rating",
        description="Bradley-Terry ratings with 95% intervals and rank ranges from a file of arena battles.",
    )
    parser.add_argument("battles", metavar="BATTLES", help="JSON array, JSON lines or CSV file of battles")
    parser.add_argument(
        "--intervals",
        choices=INTERVALS,
        default=None,
        help="sandwich (closed-form robust intervals; the default) or bootstrap (the default when "
        "--bootstrap is given)",
    )
    parser.add_argument(
        "--bootstrap",
        type=int,
        default=None,
        metavar="N",
        help="bootstrap rounds, with --intervals bootstrap (default 1000; 100 for --style)",
    )
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (default 0)")
    parser.add_argument(
        "--weights",
        choices=WEIGHTINGS,
        default="none",
        help="per-battle weights: none (default), propensity (1 / each battle's 'propensity' field or "
        "column) or pair-frequency (1 / max(battles of its pair, 50))",
    )
    parser.add_argument(
        "--min-votes",
        type=int,
        default=MIN_VOTES,
        metavar="N",
        help=f"report models with fewer battles, or whose strength the votes do not identify, as not "
        f"yet rated (default {MIN_VOTES}; 0 rates every model, as the live board does)",
    )
    parser.add_argument("--style", action="store_true", help="also fit style control from conv_metadata")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    args = parser.parse_args(argv)
    if args.bootstrap is not None and args.bootstrap < 0:
        parser.error("--bootstrap must be >= 0")
    if args.min_votes < 0:
        parser.error("--min-votes must be >= 0")
    intervals = args.intervals or ("sandwich" if args.bootstrap is None else "bootstrap")
    if intervals == "sandwich" and args.bootstrap is not None:
        parser.error("--bootstrap goes with --intervals bootstrap")

    try:
        models, model_a, model_b, outcome, features = load_battles(args.battles, style=args.style)
        weights = None
        if args.weights == "propensity":
            weights = propensity_weights(load_propensity(args.battles))
    except BattleFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    n = len(models)
    if args.weights == "pair-frequency":
        weights = pair_frequency_weights(model_a, model_b, n)
    options: dict[str, Any] = {
        "seed": args.seed,
        "intervals": intervals,
        "weights": weights,
        "min_votes": args.min_votes or None,
        # The rounds are the same for any number of worker threads; each holds one chunk of them in memory.
        "workers": min(len(os.sched_getaffinity(0)), 4),
    }
    plain = rate(model_a, model_b, outcome, n, bootstrap=_or(args.bootstrap, 1000), **options)
    result: dict[str, Any] = {
        "intervals": intervals,
        "weights": args.weights,
        "min_votes": args.min_votes,
        "models": _rows(models, plain),
    }
    if intervals == "bootstrap":
        result["bootstrap"] = plain.bootstrap
        result["seed"] = args.seed
    if features is not None:
        styled = rate_style(
            model_a, model_b, outcome, features, n, bootstrap=_or(args.bootstrap, 100), **options
        )
        result["style"] = {
            "coefficients": [
                {"feature": name, "coef": _number(c), "ci_lower": _number(lo), "ci_upper": _number(hi)}
                for name, c, lo, hi in zip(
                    STYLE_FEATURES, styled.coef, styled.coef_lower, styled.coef_upper, strict=True
                )
            ],
            "models": _rows(models, styled.ratings),
        }

    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    how = "sandwich intervals"
    if intervals == "bootstrap":
        how = f"bootstrap intervals ({plain.bootstrap} rounds, seed {args.seed})"
    print(f"{len(outcome)} battles, {n} models, {how}, weights {args.weights}\n")
    print(_table(result["models"]))
    if "style" in result:
        print("\nStyle control: log-odds per standard deviation of (a - b)/(a + b + 1)\n")
        for row in result["style"]["coefficients"]:
            if row["coef"] is None:
                print(f"  {row['feature']:<8} not identified (no variation)")
                continue
            interval = f"{row['ci_lower']:+.3f} .. {row['ci_upper']:+.3f}"
            print(f"  {row['feature']:<8} {row['coef']:+.3f}  ({interval})")
        print("\nStyle-controlled ratings\n")
        print(_table(result["style"]["models"]))
    return 0


def _or(value: int | None, default: int) -> int:
    return default if value is None else value


if __name__ == "__main__":
    sys.exit(main())
