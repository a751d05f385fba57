"""Active sampling against uniform sampling, on simulated arenas and the real rating engine.
Prints figures, asserts nothing.

    python bench/active.py                    # 20 models, 16 arenas per scenario, a few minutes
    python bench/active.py --seeds 20 --spread 100 --models 30

An arena has models of known strength (Bradley-Terry, true ratings drawn around 1000 with --spread
points of standard deviation; ties likelier between close models, counted as half a win). Votes come
in snapshots of --snapshot votes (250: a recompute every 300 s, as production's default, at 3,000
votes an hour), each snapshot's pairs drawn by one of two samplers, run by the
arena's own code (arena.sampling, and SamplingPlan.restricted for what a draw reads of a plan):
    uniform  the operator-weight sampler with equal weights: every pair alike
    active   the default sampler: from the plan written after the latest snapshot (before the first,
             by the weights), with the default floor, new-model boost and threshold (settings); the
             plan reads the board's ratings, vote counts and interval widths, as
             arena.services.sampling_plan_write does
Every vote keeps the probability its pair had (its propensity). After each snapshot the board is
fitted by leaderboard.rating.fit with inverse-propensity weights (Chiang et al. 2024, eq. 7: a vote
weighs 1/propensity, so the board targets uniform pairs whatever the sampler did), and its 95%
intervals are the sandwich intervals of that weighted likelihood, H^-1 J H^-1 at the fit (H the
weighted information, J the weighted scores' sum of squares). leaderboard.rating has no weighted
intervals of its own yet, so the bench computes them here; under uniform sampling every weight is the
same, and the bench checks those intervals against the engine's bootstrap (rating.rate) on the same
votes.

Scenarios (the same arenas, seeds 0 .. --seeds-1, for both samplers; at the cold start's stop, how
often the truth lies inside the 95% intervals, which should be near 0.95 for both)
    cold start  every model new, no votes yet
    newcomers   the board of --models minus --newcomers models already at the target (votes drawn
                uniformly until it was), then --newcomers new models join; votes counted from then
Each counts the votes until every model's interval half-width is at most --target points; the
ratio is the mean over arenas of active's count over uniform's. Beside the cold start's ratio, the
least that any fixed pair distribution needs on the same arenas in the long run, over uniform's
(`best_ratio`, with and without the floor): a bound no sampler beats by much.

Error
    On cold-start arenas, after as many votes as uniform needed, the ratings' mean absolute error
    against the truth (over models and arenas), the worst model's (averaged over arenas) and their
    bias (each model's error averaged over the arenas, then its absolute value averaged over
    models), for uniform, active reweighted and active unweighted. In the "pair effects" world
    votes do not follow Bradley-Terry exactly: each pair's win rate is shifted by its own random
    logit (sd --pair-effects), and the truth is the Bradley-Terry fit of the true win rates over
    uniform pairs, which a reweighted board estimates whatever the sampler did.

The last line reads `active/uniform votes to target: <r>`, r the cold-start ratio.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django

django.setup()

from django.conf import settings  # noqa: E402

from arena import sampling  # noqa: E402
from arena.models import SamplingPlan  # noqa: E402
from leaderboard import rating  # noqa: E402
from leaderboard.rating import A_WINS, B_WINS, TIE, PairCounts  # noqa: E402

TIES = 0.2  # chance of a tie between two equal models, falling with the gap
# Votes between two plans: production writes one with each overall snapshot, every
# LEADERBOARD_RECOMPUTE_SECONDS (300 s); at 3,000 votes an hour that is 250 votes.
SNAPSHOT = 250


@dataclass
class Arena:
    truth: np.ndarray  # logits
    effects: np.ndarray  # per pair of sampling.pairs(models): logits added to the lower index's odds

    @property
    def models(self) -> int:
        return self.truth.size

    def win_rates(self) -> np.ndarray:
        i, j = sampling.pairs(self.models)
        return 1.0 / (1.0 + np.exp(-(self.truth[i] - self.truth[j] + self.effects)))

    def target(self) -> np.ndarray:
        """What a board of uniform pairs estimates: the Bradley-Terry fit of the true win rates."""
        if not self.effects.any():
            return self.truth - self.truth.mean()
        i, j = sampling.pairs(self.models)
        big = np.full(i.size, 1e6)
        wins = self.win_rates() * big
        return rating.fit(PairCounts(i, j, wins, big - wins, big, np.zeros(i.size)), self.models)

    def votes(self, rng: np.random.Generator, p: np.ndarray, n: int) -> PairCounts:
        """n votes on pairs drawn with probabilities p, aggregated by the engine."""
        i, j = sampling.pairs(self.models)
        drawn = rng.choice(p.size, n, p=p)
        win = self.win_rates()[drawn]
        tie = TIES * 4 * win * (1 - win)
        u = rng.random(n)
        outcome = np.where(u < win - tie / 2, A_WINS, np.where(u < win + tie / 2, TIE, B_WINS))
        return rating.aggregate(i[drawn], j[drawn], outcome, self.models)


class Board:
    """Votes so far per pair of `sampling.pairs(models)`: the sums a fit and its sandwich need, with
    each vote weighted by 1/propensity (weighted) and by 1 (plain). Score y: 1, 1/2 or 0 for the
    lower index."""

    def __init__(self, models: int) -> None:
        self.models = models
        size = models * (models - 1) // 2
        self.sums = {key: np.zeros(size) for key in ("n", "y", "yy", "w", "wy", "ww", "wwy", "wwyy")}

    def add(self, counts: PairCounts, p: np.ndarray) -> None:
        q = _pair_index(counts.i, counts.j, self.models)
        w = 1.0 / p[q]
        yy = counts.wins_i - 0.25 * counts.ties  # wins count 1, ties 1/4
        for key, value in (
            ("n", counts.n),
            ("y", counts.wins_i),
            ("yy", yy),
            ("w", w * counts.n),
            ("wy", w * counts.wins_i),
            ("ww", w * w * counts.n),
            ("wwy", w * w * counts.wins_i),
            ("wwyy", w * w * yy),
        ):
            self.sums[key][q] += value

    def voted(self) -> np.ndarray:
        """The models with at least one vote."""
        i, j = sampling.pairs(self.models)
        seen = self.sums["n"] > 0
        return np.union1d(i[seen], j[seen])

    def fit(self, *, weighted: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Ratings (logits, mean zero over the models with votes; 0 for the others) and their sandwich
        standard errors (inf for a model without votes)."""
        s = self.sums
        n, y, nn, ny, nyy = (
            (s["w"], s["wy"], s["ww"], s["wwy"], s["wwyy"])
            if weighted
            else (s["n"], s["y"], s["n"], s["y"], s["yy"])
        )
        members = self.voted()
        index = np.full(self.models, -1)
        index[members] = np.arange(members.size)
        i, j = sampling.pairs(self.models)
        seen = s["n"] > 0
        a, b = index[i[seen]], index[j[seen]]
        n, y, nn, ny, nyy = n[seen], y[seen], nn[seen], ny[seen], nyy[seen]
        theta = rating.fit(PairCounts(a, b, y, n - y, n, np.zeros(a.size)), members.size)
        p = 1.0 / (1.0 + np.exp(-(theta[a] - theta[b])))
        inverse = np.linalg.pinv(_laplacian(members.size, a, b, n * p * (1 - p)))
        cov = inverse @ _laplacian(members.size, a, b, nyy - 2 * p * ny + p * p * nn) @ inverse
        full_theta, se = np.zeros(self.models), np.full(self.models, np.inf)
        full_theta[members] = theta
        se[members] = np.sqrt(np.maximum(np.diag(cov), 0.0))
        return full_theta, se

    def engine_intervals(self) -> np.ndarray:
        """Half-widths of the engine's own bootstrap intervals on the plain votes."""
        i, j = sampling.pairs(self.models)
        s = self.sums
        ties = 4 * (s["y"] - s["yy"])  # y - yy = ties/4
        wins = s["y"] - ties / 2
        parts = [(A_WINS, wins), (B_WINS, s["n"] - wins - ties), (TIE, ties)]
        outcome = np.concatenate([np.full(i.size, code) for code, _ in parts])
        count = np.rint(np.concatenate([c for _, c in parts])).astype(np.int64)
        result = rating.rate(
            np.tile(i, 3), np.tile(j, 3), outcome, self.models, count=count, bootstrap=1000, seed=1
        )
        return (result.ci_upper - result.ci_lower) / 2


def _pair_index(i: np.ndarray, j: np.ndarray, models: int) -> np.ndarray:
    """Position of the pair (i, j), i < j, in sampling.pairs(models)."""
    return i * models - i * (i + 1) // 2 + (j - i - 1)


def _laplacian(models: int, i: np.ndarray, j: np.ndarray, weight: np.ndarray) -> np.ndarray:
    out = np.zeros((models, models))
    np.add.at(out, (i, j), -weight)
    np.add.at(out, (j, i), -weight)
    out[np.diag_indices(models)] = -out.sum(axis=1)
    return out


def pair_probabilities(
    sampler: str, board: Board, eligible: np.ndarray, plan: SamplingPlan | None
) -> np.ndarray:
    """The probability of every pair of the arena, zero for pairs with a model not eligible: what
    arena.services.draw computes among the eligible models, with equal weights."""
    weights = np.ones(eligible.size)
    if sampler == "uniform" or plan is None:
        p = sampling.weight_pairs(weights)
    else:
        gains, votes = plan.restricted(eligible.tolist())
        p = sampling.active_pairs(
            weights,
            gains,
            votes < settings.ARENA_SAMPLER_NEW_MODEL_VOTES,
            floor=settings.ARENA_SAMPLER_FLOOR,
            boost=settings.ARENA_SAMPLER_BOOST,
        )
    i, j = sampling.pairs(eligible.size)
    full = np.zeros(board.models * (board.models - 1) // 2)
    full[_pair_index(eligible[i], eligible[j], board.models)] = p
    return full


def write_plan(board: Board, theta: np.ndarray, se: np.ndarray) -> SamplingPlan:
    """What arena.services.sampling_plan_write stores, from the board's models (those with votes)."""
    members = board.voted()
    index = np.full(board.models, -1)
    index[members] = np.arange(members.size)
    i, j = sampling.pairs(board.models)
    seen = board.sums["n"] > 0
    a, b, n = index[i[seen]], index[j[seen]], board.sums["n"][seen]
    ratings = rating.CENTRE + rating.SCALE * theta[members]
    focus = np.ones(members.size, dtype=bool)
    widths = 2 * sampling.Z * rating.SCALE * se[members]
    gains = sampling.plan_gains(
        ratings, widths, focus, votes=float(n.sum()), floor=settings.ARENA_SAMPLER_FLOOR
    )
    votes = np.bincount(a, weights=n, minlength=members.size) + np.bincount(
        b, weights=n, minlength=members.size
    )
    return SamplingPlan.of(members.tolist(), votes.tolist(), gains)


def run(
    arena: Arena,
    sampler: str,
    rng: np.random.Generator,
    *,
    board: Board | None = None,
    eligible: np.ndarray | None = None,
    target: float,
    snapshot: int,
    budget: int | None = None,
    limit: int = 2_000_000,
) -> tuple[int, Board]:
    """Votes until every eligible model's half-width is at most target (or until budget votes)."""
    board = board or Board(arena.models)
    eligible = np.arange(arena.models) if eligible is None else eligible
    plan = None
    if board.sums["n"].any() and sampler == "active":
        plan = write_plan(board, *board.fit())
    votes = 0
    while votes < (budget or limit):
        p = pair_probabilities(sampler, board, eligible, plan)
        board.add(arena.votes(rng, p, snapshot), p)
        votes += snapshot
        theta, se = board.fit()
        if budget is None and (1.96 * rating.SCALE * se[eligible]).max() <= target:
            break
        if sampler == "active":
            plan = write_plan(board, theta, se)
    return votes, board


def best_ratio(arena: Arena, floor: float) -> tuple[float, float]:
    """The least votes to target any fixed pair distribution needs on this arena, over uniform's, for a
    reweighted board in the long run: without a floor, and with `floor` mixed in.

    A reweighted board's variance of model k is a sum over pairs of c_pk / P_p (c_pk the share of
    pair p in k's variance under uniform pairs), so the best distribution is P_p ~ sqrt(sum_k
    lambda_k c_pk) for weights lambda on the models with the widest intervals, found by
    multiplicative updates."""
    i, j = sampling.pairs(arena.models)
    p = 1.0 / (1.0 + np.exp(-(arena.truth[i] - arena.truth[j])))
    info = p * (1 - p)
    inverse = np.linalg.pinv(_laplacian(arena.models, i, j, info))
    c = info[:, None] * (inverse[i] - inverse[j]) ** 2
    uniform = (c * i.size).sum(axis=0).max()
    lam = np.full(arena.models, 1.0 / arena.models)
    for _ in range(4000):
        best = np.sqrt(c @ lam)
        best /= best.sum()
        variance = (c / best[:, None]).sum(axis=0)
        lam *= np.exp(2 * (variance / variance.max() - 1))
        lam /= lam.sum()
    floored = floor / i.size + (1 - floor) * best
    return variance.max() / uniform, (c / floored[:, None]).sum(axis=0).max() / uniform


def make_arena(seed: int, models: int, spread: float, effects: float) -> Arena:
    rng = np.random.default_rng(10_000 + seed)
    truth = rng.normal(0.0, spread / rating.SCALE, models)
    pair_effects = (
        rng.normal(0.0, effects, models * (models - 1) // 2)
        if effects
        else np.zeros(models * (models - 1) // 2)
    )
    return Arena(truth, pair_effects)


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_arguments(parser)
    return parser


def add_arguments(parser: argparse.ArgumentParser, prefix: str = "") -> None:
    """The arenas' options (bench/sampling.py takes them with a prefix)."""
    parser.add_argument(f"--{prefix}models", type=int, default=20)
    parser.add_argument(f"--{prefix}newcomers", type=int, default=4)
    parser.add_argument(f"--{prefix}spread", type=float, default=150.0, help="sd of the true ratings, points")
    parser.add_argument(f"--{prefix}seeds", type=int, default=16)
    parser.add_argument(
        f"--{prefix}snapshot",
        type=int,
        default=SNAPSHOT,
        help="votes between two plans (default: a recompute every 300 s at 3,000 votes an hour)",
    )
    parser.add_argument(f"--{prefix}target", type=float, default=10.0, help="largest half-width, points")
    parser.add_argument(
        f"--{prefix}pair-effects", type=float, default=0.3, help="sd of the pair effects, logits"
    )


@dataclass
class ColdStart:
    votes: dict[str, list[int]]  # per sampler, votes to target per arena
    covered: dict[str, list[np.ndarray]]  # per sampler and arena, truth inside each 95% interval
    check: np.ndarray  # the bench's intervals over the engine's bootstrap ones (uniform, arena 0)

    @property
    def ratio(self) -> float:
        return float(np.mean(np.array(self.votes["active"]) / np.array(self.votes["uniform"])))


def cold_start(args: argparse.Namespace) -> ColdStart:
    """Every model new: votes to target for both samplers on the same arenas, and coverage at the stop."""
    votes: dict[str, list[int]] = {"uniform": [], "active": []}
    covered: dict[str, list[np.ndarray]] = {"uniform": [], "active": []}
    check = None
    for seed in range(args.seeds):
        arena = make_arena(seed, args.models, args.spread, 0.0)
        for sampler in votes:
            count, board = run(
                arena, sampler, np.random.default_rng(seed), target=args.target, snapshot=args.snapshot
            )
            votes[sampler].append(count)
            theta, se = board.fit()
            covered[sampler].append(np.abs(theta - arena.target()) <= 1.96 * se)
            if sampler == "uniform" and check is None:
                check = 1.96 * rating.SCALE * se / board.engine_intervals()
    assert check is not None
    return ColdStart(votes, covered, check)


def errors(
    args: argparse.Namespace, budgets: list[int], effects: float, covered: list[float] | None = None
) -> dict[str, np.ndarray]:
    """Ratings' errors against the truth (points, arenas x models) after each arena's budget of votes:
    uniform, active reweighted and active unweighted. covered, if given, gets per arena the share of
    the active reweighted board's 95% intervals that hold the truth."""
    found: dict[str, list[np.ndarray]] = {"uniform": [], "active reweighted": [], "active unweighted": []}
    for seed in range(args.seeds):
        arena = make_arena(seed, args.models, args.spread, effects)
        truth = arena.target()
        for sampler in ("uniform", "active"):
            _, board = run(
                arena,
                sampler,
                np.random.default_rng(seed),
                target=args.target,
                snapshot=args.snapshot,
                budget=budgets[seed],
            )
            if sampler == "uniform":
                found["uniform"].append(board.fit()[0] - truth)
            else:
                theta, se = board.fit()
                found["active reweighted"].append(theta - truth)
                if covered is not None:
                    covered.append(float(np.mean(np.abs(theta - truth) <= 1.96 * se)))
                found["active unweighted"].append(board.fit(weighted=False)[0] - truth)
    return {name: rating.SCALE * np.array(values) for name, values in found.items()}


def error_line(name: str, e: np.ndarray) -> str:
    """Mean |error| over models and arenas, the worst model's (mean over arenas) and the bias."""
    error, worst, bias = np.abs(e).mean(), np.abs(e).max(axis=1).mean(), np.abs(e.mean(axis=0)).mean()
    return (
        f"  {name:18s} mean |error| {error:5.2f}   worst model's {worst:5.2f}   bias {bias:5.2f} "
        f"(noise alone gives about {error / np.sqrt(e.shape[0]):.2f})"
    )


def settings_line(args: argparse.Namespace) -> str:
    return (
        f"{args.models} models, true ratings sd {args.spread:g} points, snapshots of {args.snapshot} votes, "
        f"target half-width {args.target:g}; active: floor {settings.ARENA_SAMPLER_FLOOR:g}, boost "
        f"{settings.ARENA_SAMPLER_BOOST:g} below {settings.ARENA_SAMPLER_NEW_MODEL_VOTES} votes"
    )


def main() -> None:
    args = parser().parse_args()
    started = time.perf_counter()
    print(settings_line(args))

    cold = cold_start(args)
    _report("cold start", cold.votes, cold.ratio)
    bounds = np.array(
        [
            best_ratio(make_arena(seed, args.models, args.spread, 0.0), settings.ARENA_SAMPLER_FLOOR)
            for seed in range(args.seeds)
        ]
    ).mean(axis=0)
    print(
        f"  the best fixed pair distribution, in the long run: {bounds[0]:.3f} of uniform's votes "
        f"({bounds[1]:.3f} with the floor)"
    )
    print(
        "  truth inside the 95% intervals when each stopped: "
        + ", ".join(f"{sampler} {np.mean(hits):.3f}" for sampler, hits in cold.covered.items())
    )
    print(
        f"  the bench's intervals over the engine's bootstrap ones (uniform, arena 0): "
        f"{cold.check.min():.3f} .. {cold.check.max():.3f}, mean {cold.check.mean():.3f}"
    )

    late: dict[str, list[int]] = {"uniform": [], "active": []}
    established = np.arange(args.models - args.newcomers)
    for seed in range(args.seeds):
        arena = make_arena(seed, args.models, args.spread, 0.0)
        rng = np.random.default_rng(seed)
        _, history = run(
            arena, "uniform", rng, eligible=established, target=args.target, snapshot=args.snapshot
        )
        for sampler in late:
            board = Board(arena.models)
            board.sums = {key: value.copy() for key, value in history.sums.items()}
            votes, _ = run(
                arena,
                sampler,
                np.random.default_rng(seed + 1),
                board=board,
                target=args.target,
                snapshot=args.snapshot,
            )
            late[sampler].append(votes)
    late_ratio = float(np.mean(np.array(late["active"]) / np.array(late["uniform"])))
    _report(
        f"newcomers ({args.newcomers} join a board of {args.models - args.newcomers} at the target)",
        late,
        late_ratio,
    )

    for world, effects in (("Bradley-Terry", 0.0), ("pair effects", args.pair_effects)):
        print(f"error against the truth after uniform's votes to target, {world} world (points):")
        for name, e in errors(args, cold.votes["uniform"], effects).items():
            print(error_line(name, e))
    print(f"({time.perf_counter() - started:.0f} s)")
    print(f"active/uniform votes to target: {cold.ratio:.3f}")


def _report(name: str, votes: dict[str, list[int]], ratio: float) -> None:
    print(f"{name}: votes until every half-width <= target")
    for sampler, counts in votes.items():
        print(f"  {sampler:8s} mean {np.mean(counts):9.0f}   per arena {' '.join(str(c) for c in counts)}")
    print(f"  active/uniform {ratio:.3f}")


if __name__ == "__main__":
    main()
