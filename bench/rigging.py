"""What it costs to rig the board: a simulated attacker against the real rating engine and detector.

    python bench/rigging.py                          # three worlds and a sweep: about two minutes
    python bench/rigging.py --quick                  # one smaller world: about 10 s
    python bench/rigging.py --attacker-networks 4 --sweep ""

Prints figures, asserts nothing.

Honest history (one world per seed)
    `--models` models with Bradley-Terry strengths (normal, sd 0.7 logits) and sampling weights (a
    quarter of them drawn twice as often, as new models are). Pairs are drawn as
    arena.services.draw_pair draws them: two distinct models by weight, sides shuffled. About
    `--votes` honest votes from `--visitors` visitors (votes per visitor log-normal: median 4, 3000
    at most) in `--networks` networks: six big shared ones (universities, carrier NATs) with 3% of
    the visitors each, the rest of log-normal size. Every visitor has a personal taste (each
    model's strength shifted by N(0, 0.3^2) logits) and an inattention rate (Beta(1, 19): that share
    of their votes is a random click). Ties and both-bad votes come up 40% of the time between equal
    models (a third of them both-bad), less between unequal ones, drawn so that counting them as
    half a win keeps the expected score.

Attacker
    Wants to lift the model in the middle of the board by 1 and by 5 ranks (ranks of the point
    estimates of `rating.fit`, no bootstrap). It recognises each answer's model with 95% accuracy
    (Huang et al., ICML 2025; a wrong guess names another model at random), must start a battle for
    every vote, and sees the target in only about 2/M of them.
    target-only   votes for the target whenever it believes the target is in the battle.
    omnipresent   also votes, in battles without the target, against whichever of the `lift` models
                  ranked just above the target is there (Min et al., ICML 2025).
    Undefended (today): one address, a new visitor cookie per battle, 30 battles a minute, every
    vote counted. Defended: every battle pays proof-of-work; caps per visitor and per network; the
    detector (leaderboard.integrity) scores every visitor and every network with enough votes, and
    flagged voters' votes are excluded before the board is recomputed. It runs at every step of the
    attack, each voter judged against the board of the previous step (which leaves out the votes
    flagged then), as a periodic task would. The attacker owns `--attacker-networks` networks
    (default 1: one machine, one address, as in the issue), spreads its battles evenly over them,
    still takes a new cookie per battle (so the per-visitor caps and tests never see it twice), and
    paces each network just under the first proof-of-work step (`pow_step` battles an hour): the
    cheapest pace, paying `pow_seconds_base` per battle. "hours" is how long that pace takes within
    the per-network vote cap; an attacker in a hurry pays up to 2**pow_doublings_max times more.

Cost
    cost = sum over the battles the attacker completes of (1 + their proof-of-work CPU-seconds): a
    unit per battle (a prompt, two answers to wait for) and one per CPU-second. The ratio is the
    defended cost over the undefended cost of the same lift in the same world. The attack grows by
    10% a step until the lift holds; one that has not lifted the target within `--budget` battles
    shows ">budget", and its ratio is a lower bound (">") from the budget's cost.

Columns
    "caught at" is the number of attacker votes at the step its first network was flagged;
    "excluded" the share of its votes excluded where the search stopped (the lift, or the budget);
    "honest flagged" the share of the honest visitors and networks with enough votes to be scored
    that the detector flags there. The sweep (first world) repeats the defended search for attackers
    with more networks: the detector judges each network alone, so an attacker with enough networks
    to keep each below detection pays only the proof-of-work. The last line takes, per strategy, the
    weakest ratio over lifts and worlds, the smallest excluded share and the largest honest share.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.special import expit

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from leaderboard import integrity, rating  # noqa: E402

ACCURACY = 0.95  # the attacker's model identification (Huang et al.)
TASTE_SD = 0.3  # logits: each honest visitor's personal shift of each model's strength
INATTENTION = (1.0, 19.0)  # Beta parameters of the share of a visitor's votes that are random clicks
TIE_PEAK = 0.4  # tie or both-bad share between two equal models
UNDEFENDED_BATTLES_PER_MINUTE = 30  # today's only limit, per address
STEP = 1.1  # each attack step has 10% more battles than the last


@dataclass(frozen=True)
class Defences:
    """The defences as the platform's settings will set them (names match the settings)."""

    votes_per_visitor_day: int = 50
    votes_per_network_day: int = 200
    battles_per_visitor_hour: int = 60
    pow_seconds_base: float = 0.5
    # Proof-of-work doubles per this many battles from the visitor or the network in the last hour.
    pow_step: int = 20
    pow_doublings_max: int = 6
    detector: bool = True  # per visitor and per network, flagged voters' votes excluded
    too_fast: bool = False  # off here: the simulated votes carry no reading times

    def pow_seconds(self, recent_battles: int) -> float:
        """CPU-seconds of proof-of-work for a battle after `recent_battles` in the last hour."""
        return self.pow_seconds_base * 2.0 ** min(recent_battles // self.pow_step, self.pow_doublings_max)


@dataclass(frozen=True)
class World:
    weight: np.ndarray  # sampling weights
    a: np.ndarray
    b: np.ndarray
    outcome: np.ndarray
    visitor: np.ndarray
    network: np.ndarray
    n_visitors: int
    n_networks: int


@dataclass(frozen=True)
class Attack:
    """The attacker's battles in order; the ones it voted in, with their battle number."""

    battles: int
    a: np.ndarray
    b: np.ndarray
    outcome: np.ndarray
    battle: np.ndarray


@dataclass(frozen=True)
class Outcome:
    battles: int
    votes: int
    rank: int  # the target's
    excluded: float  # share of the attacker's votes excluded
    honest_flagged: float  # share of scored honest visitors and networks flagged
    honest_excluded: float  # share of honest votes excluded
    attacker_flagged: bool  # any of the attacker's networks


@dataclass(frozen=True)
class Found:
    """Where a search stopped: the lift (or the budget), and the attacker's votes when first flagged."""

    outcome: Outcome
    lifted: bool
    caught_at: int | None


def draw_pairs(rng: np.random.Generator, weight: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Two distinct models by weight, sides shuffled (arena.services.draw_pair, vectorised)."""
    p = weight / weight.sum()
    first = rng.choice(weight.size, n, p=p)
    second = rng.choice(weight.size, n, p=p)
    same = second == first
    while same.any():  # redrawing until distinct is drawing by weight among the rest
        second[same] = rng.choice(weight.size, int(same.sum()), p=p)
        same = second == first
    swap = rng.random(n) < 0.5
    return np.where(swap, second, first), np.where(swap, first, second)


def honest_world(rng: np.random.Generator, models: int, votes: int, visitors: int, networks: int) -> World:
    theta = np.sort(rng.normal(0.0, 0.7, models))
    weight = np.where(rng.random(models) < 0.25, 2.0, 1.0)
    per_visitor = rng.lognormal(math.log(4.0), 1.5, visitors)
    per_visitor = np.clip(np.ceil(per_visitor * votes / per_visitor.sum()), 1, 3000).astype(np.int64)
    big = 6
    rest = rng.lognormal(0.0, 1.0, networks - big)
    share = np.concatenate([np.full(big, 0.03), (1 - 0.03 * big) * rest / rest.sum()])
    network_of = rng.choice(networks, visitors, p=share)
    taste = rng.normal(0.0, TASTE_SD, (visitors, models))
    inattention = rng.beta(*INATTENTION, visitors)

    visitor = rng.permutation(np.repeat(np.arange(visitors), per_visitor))  # votes in time order
    n = visitor.size
    a, b = draw_pairs(rng, weight, n)
    p = expit(theta[a] + taste[visitor, a] - theta[b] - taste[visitor, b])
    tie = TIE_PEAK * (1.0 - np.abs(2.0 * p - 1.0))
    u = rng.random(n)
    half = np.where(rng.random(n) < 2 / 3, rating.TIE, rating.BOTH_BAD)
    outcome = np.where(u < p - tie / 2, rating.A_WINS, np.where(u < 1 - tie, rating.B_WINS, half))
    click = rng.choice(
        [rating.A_WINS, rating.B_WINS, rating.TIE, rating.BOTH_BAD], n, p=[0.45, 0.45, 0.05, 0.05]
    )
    outcome = np.where(rng.random(n) < inattention[visitor], click, outcome)
    return World(weight, a, b, outcome, visitor, network_of[visitor], visitors, networks)


def identify(rng: np.random.Generator, model: np.ndarray, models: int) -> np.ndarray:
    """The attacker's guess of each answer's model: right with probability ACCURACY, else another model."""
    other = (model + rng.integers(1, models, model.size)) % models
    return np.where(rng.random(model.size) < ACCURACY, model, other)


def attack_battles(
    rng: np.random.Generator, world: World, above: np.ndarray, target: int, omnipresent: bool, battles: int
) -> Attack:
    """The attacker's first `battles` battles and its votes in them (see the module docstring)."""
    models = world.weight.size
    a, b = draw_pairs(rng, world.weight, battles)
    seen_a, seen_b = identify(rng, a, models), identify(rng, b, models)
    vote = np.full(battles, -1)
    ta, tb = seen_a == target, seen_b == target
    vote[ta & ~tb] = rating.A_WINS
    vote[tb & ~ta] = rating.B_WINS
    if omnipresent:
        free = ~ta & ~tb
        na, nb = np.isin(seen_a, above), np.isin(seen_b, above)
        vote[free & na & ~nb] = rating.B_WINS
        vote[free & nb & ~na] = rating.A_WINS
    battle = np.flatnonzero(vote >= 0)
    return Attack(battles, a[battle], b[battle], vote[battle], battle)


def rank_of(theta: np.ndarray, model: int) -> int:
    return 1 + int((theta > theta[model]).sum())


def board(a: np.ndarray, b: np.ndarray, outcome: np.ndarray, models: int) -> np.ndarray:
    return rating.fit(rating.aggregate(a, b, outcome, models), models)


@dataclass(frozen=True)
class Flags:
    """The voters the detector flagged at the last recompute."""

    visitor: np.ndarray  # bool per visitor index
    network: np.ndarray  # bool per network index


class Trial:
    """One world, one target: boards with the first n battles of an attack, defended or not.

    Defended, the attack grows step by step and the detector runs at every step, as the platform's
    periodic task would: it judges every voter against the board of the previous step, which leaves
    out the votes flagged then, so a voter is judged against a board it has not already moved.
    """

    def __init__(self, world: World, target: int, seed: int, defences: Defences) -> None:
        self.world = world
        self.target = target
        self.seed = seed
        self.defences = defences
        self.models = world.weight.size
        self.undefended_baseline = self.undefended(_empty_attack(), 0)
        none = Flags(np.zeros(world.n_visitors, dtype=bool), np.zeros(world.n_networks, dtype=bool))
        self.baseline, self.flags = self.defended(_empty_attack(), 0, 1, none)
        self.baseline, self.flags = self.defended(_empty_attack(), 0, 1, self.flags)

    def votes(self, attack: Attack, battles: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        w = self.world
        k = int(np.searchsorted(attack.battle, battles))
        return (
            np.concatenate([w.a, attack.a[:k]]),
            np.concatenate([w.b, attack.b[:k]]),
            np.concatenate([w.outcome, attack.outcome[:k]]),
            k,
        )

    def undefended(self, attack: Attack, battles: int) -> Outcome:
        a, b, o, k = self.votes(attack, battles)
        return Outcome(battles, k, rank_of(board(a, b, o, self.models), self.target), 0.0, 0.0, 0.0, False)

    def defended(self, attack: Attack, battles: int, networks: int, previous: Flags) -> tuple[Outcome, Flags]:
        """Outcome and flags after `battles` battles over `networks` networks, a fresh visitor each."""
        w = self.world
        a, b, o, k = self.votes(attack, battles)
        visitor = np.concatenate([w.visitor, w.n_visitors + attack.battle[:k]])
        network = np.concatenate([w.network, w.n_networks + attack.battle[:k] % networks])
        n_visitors, n_networks = w.n_visitors + battles, w.n_networks + networks
        was = _padded(previous.visitor, n_visitors)[visitor] | _padded(previous.network, n_networks)[network]
        flags = Flags(np.zeros(n_visitors, dtype=bool), np.zeros(n_networks, dtype=bool))
        scored = 0
        if self.defences.detector:
            theta = board(a[~was], b[~was], o[~was], self.models)
            by_visitor, by_network = (
                integrity.score_voters(who, a, b, o, theta, count, rng=np.random.default_rng([self.seed, i]))
                for i, (who, count) in enumerate(((visitor, n_visitors), (network, n_networks)))
            )
            flags = Flags(by_visitor.flagged, by_network.flagged)
            scored = by_visitor.scored[: w.n_visitors].sum() + by_network.scored[: w.n_networks].sum()
        excluded = flags.visitor[visitor] | flags.network[network]
        rank = rank_of(board(a[~excluded], b[~excluded], o[~excluded], self.models), self.target)
        honest = w.a.size
        flagged = flags.visitor[: w.n_visitors].sum() + flags.network[: w.n_networks].sum()
        outcome = Outcome(
            battles,
            k,
            rank,
            float(excluded[honest:].mean()) if k else 0.0,
            float(flagged / max(scored, 1)),
            float(excluded[:honest].mean()),
            bool(flags.network[w.n_networks :].any()),
        )
        return outcome, flags

    def search(self, attack: Attack, networks: int | None, lift: int) -> Found:
        """The first attack size, growing by STEP, that lifts the target; else the outcome at the budget."""
        battles, flags, caught = 10, self.flags, None
        goal = (self.undefended_baseline if networks is None else self.baseline).rank - lift
        while True:
            battles = min(battles, attack.battles)
            if networks is None:
                outcome = self.undefended(attack, battles)
            else:
                outcome, flags = self.defended(attack, battles, networks, flags)
                if caught is None and outcome.attacker_flagged:
                    caught = outcome.votes
            if outcome.rank <= goal or battles == attack.battles:
                return Found(outcome, outcome.rank <= goal, caught)
            battles = math.ceil(battles * STEP)


def _padded(flags: np.ndarray, size: int) -> np.ndarray:
    return np.concatenate([flags, np.zeros(size - flags.size, dtype=bool)])


def _empty_attack() -> Attack:
    empty = np.zeros(0, dtype=np.int64)
    return Attack(0, empty, empty, empty, empty)


@dataclass(frozen=True)
class Row:
    strategy: str
    lift: int
    defended: bool
    networks: int
    found: Found
    pow_seconds: float
    hours: float
    cost: float


def priced(found: Found, strategy: str, lift: int, networks: int | None, defences: Defences) -> Row:
    """Proof-of-work, hours and cost of an attack: at 30 battles a minute undefended; defended at the
    cheapest pace, just under the first proof-of-work step on each network, within the vote cap."""
    battles, votes = found.outcome.battles, found.outcome.votes
    if networks is None:
        hours = battles / (60 * UNDEFENDED_BATTLES_PER_MINUTE)
        return Row(strategy, lift, False, 1, found, 0.0, hours, battles)
    pow_seconds = battles * defences.pow_seconds(defences.pow_step - 1)
    hours = max(
        battles / (networks * defences.pow_step), 24 * votes / (networks * defences.votes_per_network_day)
    )
    return Row(strategy, lift, True, networks, found, pow_seconds, hours, battles + pow_seconds)


def ratio(defended: Row, undefended: Row) -> tuple[float, str]:
    """Defended over undefended cost; a lower bound (">") when the defended attack ran out of budget."""
    value = defended.cost / undefended.cost
    return value, (f"{value:.1f}x" if defended.found.lifted else f">{math.floor(value)}x")


def print_rows(rows: list[tuple[Row, Row]]) -> None:
    head = (
        f"{'strategy':<12} {'lift':>4} {'defences':<8} {'votes':>7} {'battles':>8} {'visitors':>8} "
        f"{'networks':>8} {'PoW CPU-s':>10} {'hours':>8} {'caught at':>9} {'excluded':>8} {'cost':>8} "
        f"{'ratio':>7} {'honest flagged':>14}"
    )
    print(head)
    print("-" * len(head))
    for undefended, defended in rows:
        for row in (undefended, defended):
            o, on = row.found.outcome, row.defended
            caught = row.found.caught_at
            print(
                f"{row.strategy:<12} {row.lift:>4} {'on' if on else 'off':<8} {o.votes:>7} "
                f"{o.battles if row.found.lifted else '>budget':>8} {o.battles:>8} {row.networks:>8} "
                f"{row.pow_seconds:>10.0f} {row.hours:>8.1f} {'-' if caught is None else caught:>9} "
                f"{100 * o.excluded:>7.1f}% {row.cost:>8.0f} {ratio(row, undefended)[1] if on else '':>7} "
                f"{f'{100 * o.honest_flagged:.2f}%' if on else '':>14}"
            )


def attacks_on(trial: Trial, order: np.ndarray, seed: int, budget: int) -> list[tuple[str, int, Attack]]:
    """Each strategy's battle stream for each lift, up to the budget."""
    middle = int(np.flatnonzero(order == trial.target)[0])
    return [
        (
            strategy,
            lift,
            attack_battles(
                np.random.default_rng([seed, lift, strategy == "omnipresent"]),
                trial.world,
                order[middle - lift : middle],
                trial.target,
                strategy == "omnipresent",
                budget,
            ),
        )
        for strategy in ("target-only", "omnipresent")
        for lift in (1, 5)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="one smaller world, a smaller budget: about 10 s"
    )
    parser.add_argument("--models", type=int, default=48)
    parser.add_argument("--votes", type=int, default=50_000, help="honest votes")
    parser.add_argument("--visitors", type=int, default=4000, help="honest visitors")
    parser.add_argument("--networks", type=int, default=400, help="honest networks")
    parser.add_argument("--attacker-networks", type=int, default=1)
    parser.add_argument(
        "--sweep", default="3,10,30,100", help="attacker networks for the sweep ('' for none)"
    )
    parser.add_argument("--budget", type=int, default=200_000, help="most battles an attack may take")
    parser.add_argument("--seeds", default="1,2,3", help="one honest world and target per seed")
    args = parser.parse_args()
    if args.quick:
        args.votes, args.visitors, args.networks = 20_000, 1600, 160
        args.budget, args.sweep, args.seeds = 50_000, "10", "1"
    started = time.perf_counter()
    defences = Defences()
    print(
        f"defences: {defences}; detector alpha {integrity.ALPHA}, min_votes {integrity.MIN_VOTES}, "
        f"checkpoints {integrity.CHECKPOINTS}"
    )
    print("cost = battles x (1 + proof-of-work CPU-seconds per battle); ratio = defended / undefended cost")
    print(
        f"attacker: {args.attacker_networks} network(s), a fresh visitor per battle, "
        f"95% model identification, budget {args.budget} battles"
    )

    rows: list[tuple[Row, Row]] = []
    flagged: list[float] = []
    sweep = [int(n) for n in args.sweep.split(",") if n]
    for index, seed in enumerate(int(s) for s in args.seeds.split(",")):
        world = honest_world(
            np.random.default_rng(seed), args.models, args.votes, args.visitors, args.networks
        )
        order = np.argsort(-board(world.a, world.b, world.outcome, args.models), kind="stable")
        trial = Trial(world, int(order[args.models // 2]), seed, defences)
        print()
        print(
            f"world {seed}: {args.models} models, {world.a.size} honest votes from {world.n_visitors} "
            f"visitors in {world.n_networks} networks; target at rank {trial.undefended_baseline.rank} "
            f"({trial.baseline.rank} after the detector's exclusions); with no attack "
            f"{100 * trial.baseline.honest_flagged:.2f}% of the honest visitors and networks scored are "
            f"flagged, {100 * trial.baseline.honest_excluded:.2f}% of honest votes excluded"
        )
        attacks = attacks_on(trial, order, seed, args.budget)
        world_rows = []
        for strategy, lift, attack in attacks:
            off = priced(trial.search(attack, None, lift), strategy, lift, None, defences)
            on = trial.search(attack, args.attacker_networks, lift)
            world_rows.append((off, priced(on, strategy, lift, args.attacker_networks, defences)))
        print_rows(world_rows)
        rows += world_rows
        flagged += [trial.baseline.honest_flagged] + [on.found.outcome.honest_flagged for _, on in world_rows]

        if sweep and index == 0:
            print()
            print(f"world {seed}, defended, by the attacker's networks: ratio, attacker votes excluded")
            print(f"{'strategy':<12} {'lift':>4} " + " ".join(f"{f'{n} networks':>16}" for n in sweep))
            for (strategy, lift, attack), (off, _) in zip(attacks, world_rows, strict=True):
                cells = []
                for n in sweep:
                    on = priced(trial.search(attack, n, lift), strategy, lift, n, defences)
                    cells.append(f"{ratio(on, off)[1]}, {100 * on.found.outcome.excluded:.0f}%")
                print(f"{strategy:<12} {lift:>4} " + " ".join(f"{c:>16}" for c in cells))

    def weakest(strategy: str) -> str:
        return min((ratio(on, off) for off, on in rows if off.strategy == strategy), key=lambda r: r[0])[1]

    excluded = min(on.found.outcome.excluded for _, on in rows)
    print()
    print(f"({time.perf_counter() - started:.0f} s; the last line takes the weakest lift and world)")
    print(
        f"rigging cost ratio: target-only {weakest('target-only')}, omnipresent {weakest('omnipresent')}; "
        f"attacker votes excluded {100 * excluded:.1f}%; honest voters flagged {100 * max(flagged):.1f}%"
    )


if __name__ == "__main__":
    main()
