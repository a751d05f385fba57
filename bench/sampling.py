"""Honest intervals, by simulation on the real engine: how often each kind of 95% interval holds the truth.
Prints figures, asserts nothing.

    python bench/sampling.py                 # 1,000 arenas a figure (200 for the style bootstrap)
    python bench/sampling.py --arenas 200    # a quicker look

Each arena draws fresh true strengths (normal, SD 0.8 logits, 10 models) and votes under Bradley-Terry
from them, then rates the votes with `leaderboard.rating` and counts, model by model, whether the
interval holds the true rating (mean-centred, display scale; style coefficients against their true
values). A figure is hits / intervals, with its standard error over arenas (the intervals of one
arena are not independent). The arenas:

    plain       5,000 votes between uniformly drawn pairs, 30% of close contests tied (a tie is half
                a win, drawn so that this keeps the expected score); bootstrap (1,000 rounds, as the
                overall board) and sandwich intervals.
    style       5,000 battles whose answers differ in length, headers, lists and bold by per-model
                habits, voters swayed by them through known coefficients (0.3, 0.05, 0.08, 0.12 per
                SD of (a - b)/(a + b + 1)); sandwich intervals, and the bootstrap (100 rounds, as the
                style board) on a fifth of the arenas (it is slow).
    weighted    5,000 votes between pairs drawn with unequal, known probabilities (log-normal, SD 1:
                the most drawn pair about 20 times the rarest), each vote weighed by 1 / its pair's
                probability (`--weights propensity`); sandwich and bootstrap intervals.

Active sampling (bench/active.py's cold start, on its own arenas: --active-seeds arenas of
--active-models models, true ratings sd --active-spread points, plans every --active-snapshot votes)
    votes     until every model's 95% half-width is at most --active-target points, active over uniform
              on the same arenas (the mean over arenas of the ratio)
    error     after as many votes as uniform needed, each model's rating error against the truth
              (points): its mean absolute value over models and arenas, and the bias (each model's
              error averaged over arenas), uniform beside active reweighted by inverse propensity; in
              a Bradley-Terry world and one with pair effects (see bench/active.py)
    coverage  the truth inside the reweighted board's 95% sandwich intervals where active stopped
              (a stop chosen by the intervals themselves), and after uniform's votes (a fixed budget)

The last line reads `active/uniform votes to target: <r>; coverage bootstrap <c1>, sandwich <c2>,
style sandwich <c3>` (the active ratio, then plain bootstrap, plain sandwich, style sandwich).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from scipy.special import expit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import active  # bench/active.py: sets Django up for the arena's sampler

from leaderboard.rating import (
    A_WINS,
    B_WINS,
    SCALE,
    TIE,
    propensity_weights,
    rate,
    rate_style,
    style_delta,
)

MODELS = 10
VOTES = 5000
SPREAD = 0.8
TRUE_STYLE = np.array([0.3, 0.05, 0.08, 0.12])


def outcomes(rng: np.random.Generator, z: np.ndarray, tie_share: float) -> np.ndarray:
    p = expit(z)
    tie = tie_share * 2 * np.minimum(p, 1 - p)
    u = rng.random(z.size)
    return np.where(u < tie, TIE, np.where(u < tie + p - tie / 2, A_WINS, B_WINS))


def uniform_pairs(rng: np.random.Generator, votes: int) -> tuple[np.ndarray, np.ndarray]:
    a = rng.integers(0, MODELS, votes)
    return a, (a + rng.integers(1, MODELS, votes)) % MODELS


def centred_rating(theta: np.ndarray) -> np.ndarray:
    return 1000.0 + SCALE * (theta - theta.mean())


class Tally:
    """Hits per arena, for a coverage figure and its standard error over arenas."""

    def __init__(self) -> None:
        self.shares: list[float] = []
        self.seconds = 0.0

    def add(
        self, lower: np.ndarray, upper: np.ndarray, truth: np.ndarray, started: float | None = None
    ) -> None:
        """One arena's intervals; started, if given, is when its fit began (time.perf_counter)."""
        self.shares.append(float(((lower <= truth) & (truth <= upper)).mean()))
        if started is not None:
            self.seconds += time.perf_counter() - started

    @property
    def coverage(self) -> float:
        return float(np.mean(self.shares))

    def line(self, name: str) -> str:
        error = np.std(self.shares, ddof=1) / np.sqrt(len(self.shares))
        timing = f", {1000 * self.seconds / len(self.shares):.0f} ms each" if self.seconds else ""
        return f"{name:<38} {self.coverage:.3f} ± {error:.3f}   ({len(self.shares)} arenas{timing})"


def plain(rng: np.random.Generator, arenas: int) -> dict[str, Tally]:
    tallies = {"bootstrap": Tally(), "sandwich": Tally()}
    for arena in range(arenas):
        theta = rng.normal(0.0, SPREAD, MODELS)
        a, b = uniform_pairs(rng, VOTES)
        outcome = outcomes(rng, theta[a] - theta[b], 0.3)
        for kind, tally in tallies.items():
            started = time.perf_counter()
            result = rate(a, b, outcome, MODELS, seed=arena, intervals=kind)
            tally.add(result.ci_lower, result.ci_upper, centred_rating(theta), started)
    return tallies


def style(rng: np.random.Generator, arenas: int, bootstrap_every: int) -> dict[str, Tally]:
    tallies = {name: Tally() for name in ("sandwich", "sandwich coef", "bootstrap", "bootstrap coef")}
    for arena in range(arenas):
        theta = rng.normal(0.0, SPREAD, MODELS)
        habits = rng.lognormal(0.0, 0.5, (MODELS, 4)) * np.array([400.0, 1.5, 3.0, 4.0])
        a, b = uniform_pairs(rng, VOTES)
        x = style_delta(rng.poisson(habits[a]), rng.poisson(habits[b]))
        z = theta[a] - theta[b] + ((x - x.mean(axis=0)) / x.std(axis=0)) @ TRUE_STYLE
        outcome = outcomes(rng, z, 0.0)
        kinds = ["sandwich"] + (["bootstrap"] if arena % bootstrap_every == 0 else [])
        for kind in kinds:
            started = time.perf_counter()
            result = rate_style(a, b, outcome, x, MODELS, seed=arena, intervals=kind)
            tallies[kind].add(
                result.ratings.ci_lower, result.ratings.ci_upper, centred_rating(theta), started
            )
            tallies[f"{kind} coef"].add(result.coef_lower, result.coef_upper, TRUE_STYLE)
    return tallies


def weighted(rng: np.random.Generator, arenas: int) -> dict[str, Tally]:
    tallies = {"sandwich": Tally(), "bootstrap": Tally()}
    first, second = np.triu_indices(MODELS, 1)
    for arena in range(arenas):
        theta = rng.normal(0.0, SPREAD, MODELS)
        chance = rng.lognormal(0.0, 1.0, first.size)
        chance /= chance.sum()
        pick = rng.choice(first.size, VOTES, p=chance)
        swap = rng.random(VOTES) < 0.5
        a, b = np.where(swap, second[pick], first[pick]), np.where(swap, first[pick], second[pick])
        outcome = outcomes(rng, theta[a] - theta[b], 0.3)
        weights = propensity_weights(chance[pick])
        for kind, tally in tallies.items():
            started = time.perf_counter()
            result = rate(a, b, outcome, MODELS, seed=arena, intervals=kind, weights=weights)
            tally.add(result.ci_lower, result.ci_upper, centred_rating(theta), started)
    return tallies


def active_sampling(args: argparse.Namespace) -> float:
    """Prints the active sampler's figures (see the module's docstring); returns its votes ratio."""
    options = argparse.Namespace(
        **{
            key.removeprefix("active_"): value
            for key, value in vars(args).items()
            if key.startswith("active_")
        }
    )
    print(f"\nactive sampling, cold start: {active.settings_line(options)}; {options.seeds} arenas")
    cold = active.cold_start(options)
    for sampler, counts in cold.votes.items():
        print(f"  votes to target, {sampler:8s} mean {np.mean(counts):8.0f}")
    ratios = np.array(cold.votes["active"]) / np.array(cold.votes["uniform"])
    error = np.std(ratios, ddof=1) / np.sqrt(ratios.size)
    print(
        f"  active/uniform {cold.ratio:.3f} ± {error:.3f} (arenas {ratios.min():.2f} .. {ratios.max():.2f})"
    )
    shares = [float(hits.mean()) for hits in cold.covered["active"]]
    print(
        f"  truth inside the reweighted board's 95% intervals where active stopped: {np.mean(shares):.3f} "
        f"± {np.std(shares, ddof=1) / np.sqrt(len(shares)):.3f} "
        f"(uniform's {np.mean(cold.covered['uniform']):.3f})"
    )
    for world, effects in (("Bradley-Terry", 0.0), ("pair effects", options.pair_effects)):
        print(f"  error against the truth after uniform's votes to target, {world} world (points):")
        covered: list[float] = []
        for name, e in active.errors(options, cold.votes["uniform"], effects, covered).items():
            if name != "active unweighted":
                print(active.error_line(name, e))
        print(
            f"  {'':18s} truth inside active's reweighted 95% intervals there: {np.mean(covered):.3f} ± "
            f"{np.std(covered, ddof=1) / np.sqrt(len(covered)):.3f}"
        )
    return cold.ratio


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--arenas", type=int, default=1000, help="arenas a figure (default 1000)")
    parser.add_argument("--seed", type=int, default=15)
    active.add_arguments(parser, prefix="active-")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)

    print(
        f"{MODELS} models, {VOTES} votes an arena, true strengths ~ N(0, {SPREAD}^2) logits, seed {args.seed}"
    )
    print("95% interval coverage (share of intervals holding the truth ± its standard error over arenas)\n")
    flat = plain(rng, args.arenas)
    print(flat["bootstrap"].line("plain, bootstrap (1,000 rounds)"))
    print(flat["sandwich"].line("plain, sandwich"))
    styled = style(rng, args.arenas, 5)
    print(styled["sandwich"].line("style ratings, sandwich"))
    print(styled["sandwich coef"].line("style coefficients, sandwich"))
    print(styled["bootstrap"].line("style ratings, bootstrap (100 rounds)"))
    print(styled["bootstrap coef"].line("style coefficients, bootstrap"))
    skewed = weighted(rng, args.arenas)
    print(skewed["sandwich"].line("skewed pairs, propensity, sandwich"))
    print(skewed["bootstrap"].line("skewed pairs, propensity, bootstrap"))
    ratio = active_sampling(args)
    print(
        f"\nactive/uniform votes to target: {ratio:.3f}; "
        f"coverage bootstrap {flat['bootstrap'].coverage:.3f}, sandwich {flat['sandwich'].coverage:.3f}, "
        f"style sandwich {styled['sandwich'].coverage:.3f}"
    )


if __name__ == "__main__":
    main()
