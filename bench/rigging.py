"""What it costs to rig the board: a simulated attacker against the real rating engine and detector.

    python bench/rigging.py                          # three worlds and a sweep: about four minutes
    python bench/rigging.py --quick                  # one smaller world: about 30 s
    python bench/rigging.py --attacker-networks 4 --sweep ""

Prints figures, asserts nothing.

Honest history (one world per seed)
    `--models` models with Bradley-Terry strengths (normal, sd 0.7 logits) and sampling weights (a
    quarter of them drawn twice as often, as new models are). Pairs are drawn as the weights
    sampler (ARENA_SAMPLER=weights, arena.sampling) draws them: two distinct models by weight, sides
    shuffled; the active sampler's floor and boost change how often the target comes up, not what
    an attacker must do to vote for it. About
    `--votes` honest votes from `--visitors` visitors (votes per visitor log-normal: median 4, 3000
    at most) in `--networks` networks: six big shared ones (universities, carrier NATs) with 3% of
    the visitors each, the rest of log-normal size. Every visitor has a personal taste (each
    model's strength shifted by N(0, 0.3^2) logits) and an inattention rate (Beta(1, 19): that share
    of their votes is a random click). Ties and both-bad votes come up 40% of the time between equal
    models (a third of them both-bad), less between unequal ones, drawn so that counting them as
    half a win keeps the expected score. Not every battle gets a vote: 60% do, by a chance that
    depends on the two models' lasting pull (N(0, 0.2^2) logits each: some models error or refuse
    more) and on nothing else, since nobody knows the models before voting; the unvoted battles
    belong to the same visitors, in proportion to their votes. The history runs over days of
    `--votes-per-day` votes.

Attacker
    Wants to lift a mid-table model by 1 and by 5 ranks of the *published* rank, from where the
    honest votes put it: the board's own `rating.rate` with `--rounds` seeded bootstrap rounds, rank
    = 1 + the number of models whose interval lies wholly above the model's
    (`rating.rank_from_intervals`). Swapping two point estimates that sit inside each other's
    intervals moves no published rank, so this takes far more votes than a lift of the point-estimate
    order would. A model whose upper bound sits a hair below another's lower bound would move a rank
    on any vote, honest or not, so the target is the model of the middle third of the board farthest
    from such a boundary. The goal is the same rank defended or not. It recognises each answer's
    model with 95% accuracy (Huang et al., ICML 2025; a wrong guess names another model at random),
    must start a battle for every vote, and sees the target in only about 2/M of them.
    target-only   votes for the target whenever it believes the target is in the battle.
    omnipresent   also votes, in battles without the target, against whichever of the `lift` models
                  counted above the target (nearest lower bound first) is there (Min et al., ICML 2025).
    camouflage    target-only, and in every other battle casts the vote an honest voter would: it
                  never walks away from a battle, so its choice of battles gives nothing away, and
                  it pays with a vote for every battle (the caps on votes bind).
    Undefended (before the gate): one address, a new visitor cookie per battle, 30 battles a minute,
    every vote counted. Defended: the platform's settings (config/settings.py, read without a
    database): every battle pays proof-of-work; caps per visitor and per network; the detector
    (leaderboard.integrity) scores every visitor and every network with enough votes on its votes
    (the outcome tests) and on its battles (selective voting: voting where one model answered and
    walking away from the rest), and every (day, model) on all its battles (a vote surge: the model's
    battles voted on far beyond its usual rate that day, however many cookies and networks cast
    them). Flagged voters' votes are excluded, and on a flagged day the votes on the model of the
    visitors with fewer battles than the detector's minimum; then the board is recomputed. It runs
    at every step of the attack, each voter judged against the board of the previous step (which
    leaves out the votes flagged then), as a periodic task would. The attack ends with the history:
    its battles fall on the last days at the pace below, among that day's honest battles. The
    attacker owns `--attacker-networks` networks (default 1: one machine, one address, as in the
    issue), spreads its battles evenly over them, still takes a new cookie per battle (so the
    per-visitor caps and proof-of-work steps never see it twice), and runs each network as fast as
    its caps allow: ARENA_BATTLES_PER_NETWORK_HOUR battles an hour, fewer where
    ARENA_VOTES_PER_NETWORK_DAY binds first (its votes per battle times its battles a day at most
    the cap).

Proof-of-work
    A battle's challenge has maxNumber = ARENA_POW_BASE * 2**(visitor's battles this hour /
    ARENA_POW_VISITOR_STEP + network's / ARENA_POW_NETWORK_STEP), at most ARENA_POW_MAX (arena.gate);
    an ALTCHA v1 solver hashes maxNumber/2 numbers on average. At a steady r battles an hour on a
    network (a fresh cookie each), every battle pays ARENA_POW_BASE/2 * 2**(r / NETWORK_STEP) hashes.
    CPU-seconds are at `--hashes-per-second` for a native solver (default 2e7 on one core: OpenSSL
    does 6M short SHA-256 a second through its generic EVP interface on this machine, a SHA-NI loop
    more); the bench also measures the Python reference solver (arena/solve_challenge.py) and prints it.

Cost
    Per attack: votes, battles, distinct visitors (one per battle), networks, proof-of-work
    CPU-seconds and hours. The single figure is address-hours: networks x hours the attack holds
    them, plus its CPU-seconds / 3600 (a CPU-hour priced as an address-hour; the proof-of-work is
    a small part of either). Address-hours do not fall as an attacker spreads over more networks
    (the caps are per network), so the ratio is honest for any number of them: it is the defended
    address-hours over the undefended ones (one address at 30 battles a minute) for the same lift
    in the same world. The attack grows by 10% a step until the lift holds; one that has not lifted
    the target within `--budget` battles shows ">budget", and its ratio is a lower bound (">").

Columns
    "caught at" is the number of attacker votes at the step its first network, or its first day on
    a model, was flagged;
    "excluded" the share of its votes excluded where the search stopped (the lift, or the budget);
    "honest flagged" the share of the honest visitors and networks with enough votes to be scored
    that the detector flags there. The sweep (first world) repeats the defended search for attackers
    with more networks: the voter tests judge each network alone, so an attacker with enough
    networks keeps each below them; the day test still sees its battles pooled, unless the attack is
    too small to stand out of a day's honest battles (a few dozen votes can move a published rank
    where two intervals nearly touch). The last
    line takes, per strategy, the weakest ratio over lifts, worlds and the sweep's attackers, the
    smallest excluded share (target-only and omnipresent) and the largest honest share; the line
    above it gives the camouflage attacker's weakest ratio and, with no attack, the largest shares
    of honest votes excluded and of (day, model) cells flagged.
"""

from __future__ import annotations

import argparse
import math
import os
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
UNDEFENDED_BATTLES_PER_MINUTE = 30  # the only limit before the gate, per address
VOTE_RATE = 0.6  # share of honest battles that get a vote
PULL_SD = 0.2  # logits: each model's lasting pull on whether its battles get a vote
STRATEGIES = ("target-only", "omnipresent", "camouflage")
STEP = 1.1  # each attack step has 10% more battles than the last


@dataclass(frozen=True)
class Defences:
    """The platform's defences, each field the setting of the same name in upper case with ARENA_."""

    pow_base: int
    pow_visitor_step: int
    pow_network_step: int
    pow_max: int
    votes_per_visitor_day: int
    votes_per_network_day: int
    battles_per_visitor_hour: int
    battles_per_network_hour: int
    open_battles_per_network: int
    hashes_per_second: float  # the attacker's native solver, one core
    detector: bool = True  # per visitor and per network, flagged voters' votes excluded
    windows: bool = True  # selective voting per model and day, flagged days' votes on the model excluded
    too_fast: bool = False  # off here: the simulated votes carry no reading times

    @classmethod
    def from_settings(cls, hashes_per_second: float) -> Defences:
        """The defaults of config/settings.py (or the environment's overrides); no database needed."""
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
        from django.conf import settings

        return cls(
            **{
                name: getattr(settings, f"ARENA_{name.upper()}")
                for name in (
                    "pow_base",
                    "pow_visitor_step",
                    "pow_network_step",
                    "pow_max",
                    "votes_per_visitor_day",
                    "votes_per_network_day",
                    "battles_per_visitor_hour",
                    "battles_per_network_hour",
                    "open_battles_per_network",
                )
            },
            hashes_per_second=hashes_per_second,
        )

    def pow_hashes(self, visitor_battles: float, network_battles: float) -> float:
        """Expected hashes for a battle after these battles this hour (ALTCHA v1: half of maxNumber)."""
        exponent = visitor_battles / self.pow_visitor_step + network_battles / self.pow_network_step
        return min(self.pow_max, self.pow_base * 2.0**exponent) / 2

    def pace(self, votes_per_battle: float) -> float:
        """Battles an hour on one network, as fast as the network's caps allow."""
        by_votes = self.votes_per_network_day / 24 / max(votes_per_battle, 1e-9)
        return min(float(self.battles_per_network_hour), by_votes)


@dataclass(frozen=True)
class World:
    theta: np.ndarray  # true strengths
    weight: np.ndarray  # sampling weights
    days: int  # the history's length
    a: np.ndarray  # the votes, in the order cast
    b: np.ndarray
    outcome: np.ndarray
    visitor: np.ndarray
    network: np.ndarray
    day: np.ndarray
    n_visitors: int
    n_networks: int
    battle_a: np.ndarray  # every battle, voted or not, in time order
    battle_b: np.ndarray
    battle_voted: np.ndarray
    battle_day: np.ndarray
    battle_visitor: np.ndarray
    battle_network: np.ndarray


@dataclass(frozen=True)
class Attack:
    """The attacker's battles in order (all_a, all_b); the ones it voted in, with their battle number."""

    battles: int
    a: np.ndarray
    b: np.ndarray
    outcome: np.ndarray
    battle: np.ndarray
    all_a: np.ndarray
    all_b: np.ndarray


@dataclass(frozen=True)
class Outcome:
    battles: int
    votes: int
    rank: int  # the target's
    excluded: float  # share of the attacker's votes excluded
    honest_flagged: float  # share of scored honest visitors and networks flagged
    honest_excluded: float  # share of honest votes excluded
    attacker_flagged: bool  # any of the attacker's networks, or any of its votes on a flagged day
    honest_days_flagged: float = 0.0  # share of the (day, model) cells without the attacker flagged


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


def honest_world(
    rng: np.random.Generator, models: int, votes: int, visitors: int, networks: int, votes_per_day: int
) -> World:
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
    # Battles in time order, each voted with a chance set by its models' pull and nothing else:
    # before the vote nobody knows the models. Enough are drawn for n votes; the rest are dropped.
    pull = rng.normal(0.0, PULL_SD, models)
    battle_a, battle_b = draw_pairs(rng, weight, math.ceil(1.3 * n / VOTE_RATE))
    chance = expit(math.log(VOTE_RATE / (1 - VOTE_RATE)) + pull[battle_a] + pull[battle_b])
    battle_voted = rng.random(battle_a.size) < chance
    last = int(np.flatnonzero(battle_voted)[n - 1]) + 1
    battle_a, battle_b, battle_voted = battle_a[:last], battle_b[:last], battle_voted[:last]
    days = max(1, math.ceil(n / votes_per_day))
    battle_day = np.sort(rng.integers(0, days, last))
    a, b, day = battle_a[battle_voted], battle_b[battle_voted], battle_day[battle_voted]
    # Whoever left a battle unvoted is a voter too: in proportion to the votes they cast.
    battle_visitor = visitor[rng.integers(0, n, last)]
    battle_visitor[battle_voted] = visitor

    p = expit(theta[a] + taste[visitor, a] - theta[b] - taste[visitor, b])
    tie = TIE_PEAK * (1.0 - np.abs(2.0 * p - 1.0))
    u = rng.random(n)
    half = np.where(rng.random(n) < 2 / 3, rating.TIE, rating.BOTH_BAD)
    outcome = np.where(u < p - tie / 2, rating.A_WINS, np.where(u < 1 - tie, rating.B_WINS, half))
    click = rng.choice(
        [rating.A_WINS, rating.B_WINS, rating.TIE, rating.BOTH_BAD], n, p=[0.45, 0.45, 0.05, 0.05]
    )
    outcome = np.where(rng.random(n) < inattention[visitor], click, outcome)
    return World(
        theta,
        weight,
        days,
        a,
        b,
        outcome,
        visitor,
        network_of[visitor],
        day,
        visitors,
        networks,
        battle_a,
        battle_b,
        battle_voted,
        battle_day,
        battle_visitor,
        network_of[battle_visitor],
    )


def identify(rng: np.random.Generator, model: np.ndarray, models: int) -> np.ndarray:
    """The attacker's guess of each answer's model: right with probability ACCURACY, else another model."""
    other = (model + rng.integers(1, models, model.size)) % models
    return np.where(rng.random(model.size) < ACCURACY, model, other)


def attack_battles(
    rng: np.random.Generator, world: World, above: np.ndarray, target: int, strategy: str, battles: int
) -> Attack:
    """The attacker's first `battles` battles and its votes in them (see the module docstring)."""
    models = world.weight.size
    a, b = draw_pairs(rng, world.weight, battles)
    seen_a, seen_b = identify(rng, a, models), identify(rng, b, models)
    vote = np.full(battles, -1)
    ta, tb = seen_a == target, seen_b == target
    vote[ta & ~tb] = rating.A_WINS
    vote[tb & ~ta] = rating.B_WINS
    free = vote < 0
    if strategy == "omnipresent":
        na, nb = np.isin(seen_a, above), np.isin(seen_b, above)
        vote[free & na & ~nb] = rating.B_WINS
        vote[free & nb & ~na] = rating.A_WINS
    elif strategy == "camouflage":  # every other battle gets the vote an honest voter would cast
        honest = np.where(
            rng.random(battles) < expit(world.theta[a] - world.theta[b]), rating.A_WINS, rating.B_WINS
        )
        vote[free] = honest[free]
    battle = np.flatnonzero(vote >= 0)
    return Attack(battles, a[battle], b[battle], vote[battle], battle, a, b)


def board(a: np.ndarray, b: np.ndarray, outcome: np.ndarray, models: int) -> np.ndarray:
    """Point estimates: what the detector judges votes against."""
    return rating.fit(rating.aggregate(a, b, outcome, models), models)


def published_rank(
    a: np.ndarray, b: np.ndarray, outcome: np.ndarray, models: int, rounds: int, model: int
) -> int:
    """The model's rank as the public board shows it: from bootstrap intervals, seeded."""
    return int(rating.rate(a, b, outcome, models, bootstrap=rounds, seed=0).rank[model])


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

    def __init__(self, world: World, target: int, seed: int, defences: Defences, rounds: int) -> None:
        self.world = world
        self.rounds = rounds
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
        return Outcome(battles, k, self.rank(a, b, o), 0.0, 0.0, 0.0, False)

    def rank(self, a: np.ndarray, b: np.ndarray, o: np.ndarray) -> int:
        return published_rank(a, b, o, self.models, self.rounds, self.target)

    def attack_days(self, attack: Attack, battles: int, networks: int) -> np.ndarray:
        """The day of each of the first `battles` attack battles: the attack ends with the history,
        its networks running side by side as fast as their caps allow (see `Defences.pace`)."""
        k = int(np.searchsorted(attack.battle, battles))
        rate = networks * self.defences.pace(k / max(battles, 1))
        hours_before_end = (battles - np.arange(battles)) / rate
        return np.maximum(0, self.world.days - 1 - (hours_before_end // 24).astype(np.int64))

    def defended(self, attack: Attack, battles: int, networks: int, previous: Flags) -> tuple[Outcome, Flags]:
        """Outcome and flags after `battles` battles over `networks` networks, a fresh visitor each."""
        w = self.world
        a, b, o, k = self.votes(attack, battles)
        visitor = np.concatenate([w.visitor, w.n_visitors + attack.battle[:k]])
        network = np.concatenate([w.network, w.n_networks + attack.battle[:k] % networks])
        n_visitors, n_networks = w.n_visitors + battles, w.n_networks + networks
        was = _padded(previous.visitor, n_visitors)[visitor] | _padded(previous.network, n_networks)[network]
        flags = Flags(np.zeros(n_visitors, dtype=bool), np.zeros(n_networks, dtype=bool))
        judged = [np.zeros(n_visitors, dtype=bool), np.zeros(n_networks, dtype=bool)]
        if self.defences.detector:
            theta = board(a[~was], b[~was], o[~was], self.models)
            by_visitor, by_network = (
                integrity.score_voters(who, a, b, o, theta, count, rng=np.random.default_rng([self.seed, i]))
                for i, (who, count) in enumerate(((visitor, n_visitors), (network, n_networks)))
            )
            flags = Flags(by_visitor.flagged, by_network.flagged)
            judged = [by_visitor.scored, by_network.scored]
        days_flagged = 0.0
        if self.defences.windows:
            attack_day = self.attack_days(attack, battles, networks)
            attack_voted = np.zeros(battles, dtype=bool)
            attack_voted[attack.battle[:k]] = True
            battle_a = np.concatenate([w.battle_a, attack.all_a[:battles]])
            battle_b = np.concatenate([w.battle_b, attack.all_b[:battles]])
            battle_voted = np.concatenate([w.battle_voted, attack_voted])
            windows = integrity.score_windows(
                np.concatenate([w.battle_day, attack_day]),
                battle_a,
                battle_b,
                battle_voted,
                w.days,
                self.models,
            )
            for i, (who, count, flagged) in enumerate(
                (
                    (np.r_[w.battle_visitor, w.n_visitors + np.arange(battles)], n_visitors, flags.visitor),
                    (
                        np.r_[w.battle_network, w.n_networks + np.arange(battles) % networks],
                        n_networks,
                        flags.network,
                    ),
                )
            ):
                selective = integrity.score_selective(
                    who, battle_a, battle_b, battle_voted, count, windows.pull
                )
                if i == 0:
                    crowd_visitors = selective.battles < integrity.MIN_VOTES
                flagged |= selective.flagged
                judged[i] = judged[i] | (selective.battles >= integrity.MIN_VOTES)
        excluded = flags.visitor[visitor] | flags.network[network]
        if self.defences.windows:
            day = np.concatenate([w.day, attack_day[attack.battle[:k]]])
            crowd = crowd_visitors[visitor]
            excluded |= crowd & (windows.flagged[day, a] | windows.flagged[day, b])
            attacked = np.zeros_like(windows.flagged)
            attacked[attack_day, attack.all_a[:battles]] = True
            attacked[attack_day, attack.all_b[:battles]] = True
            honest_cells = (windows.battles > 0) & ~attacked
            days_flagged = float(windows.flagged[honest_cells].mean()) if honest_cells.any() else 0.0
        rank = self.rank(a[~excluded], b[~excluded], o[~excluded])
        honest = w.a.size
        flagged = flags.visitor[: w.n_visitors].sum() + flags.network[: w.n_networks].sum()
        scored = judged[0][: w.n_visitors].sum() + judged[1][: w.n_networks].sum()
        outcome = Outcome(
            battles,
            k,
            rank,
            float(excluded[honest:].mean()) if k else 0.0,
            float(flagged / max(scored, 1)),
            float(excluded[:honest].mean()),
            bool(flags.network[w.n_networks :].any() or excluded[honest:].any()),
            days_flagged,
        )
        return outcome, flags

    def search(self, attack: Attack, networks: int | None, lift: int) -> Found:
        """The first attack size, growing by STEP, that lifts the target; else the outcome at the budget."""
        battles, flags, caught = 10, self.flags, None
        goal = self.undefended_baseline.rank - lift
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
    return Attack(0, empty, empty, empty, empty, empty, empty)


@dataclass(frozen=True)
class Row:
    strategy: str
    lift: int
    defended: bool
    networks: int
    found: Found
    pow_seconds: float
    hours: float
    cost: float  # address-hours: networks x hours, plus CPU-hours of proof-of-work


def priced(found: Found, strategy: str, lift: int, networks: int | None, defences: Defences) -> Row:
    """Proof-of-work, hours and address-hours of an attack: at 30 battles a minute undefended;
    defended as fast as each network's caps allow, a fresh visitor per battle."""
    battles, votes = found.outcome.battles, found.outcome.votes
    if networks is None:
        hours = battles / (60 * UNDEFENDED_BATTLES_PER_MINUTE)
        return Row(strategy, lift, False, 1, found, 0.0, hours, hours)
    pace = defences.pace(votes / max(battles, 1))
    pow_seconds = battles * defences.pow_hashes(0, pace) / defences.hashes_per_second
    hours = battles / (networks * pace)
    return Row(
        strategy, lift, True, networks, found, pow_seconds, hours, networks * hours + pow_seconds / 3600
    )


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
                f"{100 * o.excluded:>7.1f}% {row.cost:>8.1f} {ratio(row, undefended)[1] if on else '':>7} "
                f"{f'{100 * o.honest_flagged:.2f}%' if on else '':>14}"
            )


def attacks_on(trial: Trial, ahead: np.ndarray, seed: int, budget: int) -> list[tuple[str, int, Attack]]:
    """Each strategy's battle stream for each lift, up to the budget; `ahead` is the models counted
    above the target, nearest first (omnipresent votes against the first `lift` of them)."""
    return [
        (
            strategy,
            lift,
            attack_battles(
                np.random.default_rng([seed, lift, STRATEGIES.index(strategy)]),
                trial.world,
                ahead[:lift],
                trial.target,
                strategy,
                budget,
            ),
        )
        for strategy in STRATEGIES
        for lift in (1, 5)
    ]


def mid_table_target(ratings: rating.Ratings, models: int) -> int:
    """The model of the board's middle third farthest from a published-rank boundary."""
    order = np.argsort(-ratings.rating, kind="stable")
    middle = order[models // 3 : models - models // 3]
    margin = [np.delete(np.abs(ratings.ci_lower - ratings.ci_upper[m]), m).min() for m in middle]
    return int(middle[int(np.argmax(margin))])


def python_solver_rate() -> float:
    """Hashes a second of the reference solver's search (altcha's, in Python), over 0.2 s of work."""
    import hashlib

    import altcha

    salt, number = "bench?expires=0", 100_000
    challenge = hashlib.sha256(f"{salt}{number}".encode()).hexdigest()
    started = time.perf_counter()
    altcha.solve_challenge_v1(challenge, salt, "SHA-256", number)
    return number / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="one smaller world, a smaller budget: about 30 s"
    )
    parser.add_argument("--models", type=int, default=48)
    parser.add_argument("--votes", type=int, default=50_000, help="honest votes")
    parser.add_argument("--visitors", type=int, default=4000, help="honest visitors")
    parser.add_argument("--networks", type=int, default=400, help="honest networks")
    parser.add_argument("--votes-per-day", type=int, default=2000, help="honest votes a day")
    parser.add_argument("--attacker-networks", type=int, default=1)
    parser.add_argument(
        "--sweep", default="3,10,30,100", help="attacker networks for the sweep ('' for none)"
    )
    parser.add_argument("--budget", type=int, default=200_000, help="most battles an attack may take")
    parser.add_argument("--seeds", default="1,2,3", help="one honest world and target per seed")
    parser.add_argument("--rounds", type=int, default=200, help="bootstrap rounds of the published rank")
    parser.add_argument(
        "--hashes-per-second", type=float, default=2e7, help="the attacker's native solver, one core"
    )
    args = parser.parse_args()
    if args.quick:
        args.votes, args.visitors, args.networks = 20_000, 1600, 160
        args.budget, args.sweep, args.seeds, args.rounds = 50_000, "10", "1", 100
    started = time.perf_counter()
    defences = Defences.from_settings(args.hashes_per_second)
    print(
        f"defences: {defences}; detector alpha {integrity.ALPHA}, min_votes {integrity.MIN_VOTES}, "
        f"checkpoints {integrity.CHECKPOINTS}"
    )
    pace = defences.battles_per_network_hour
    print(
        f"proof-of-work: Python reference solver {python_solver_rate() / 1e6:.2f}M hashes/s here; native "
        f"{defences.hashes_per_second / 1e6:.0f}M/s assumed: a battle costs "
        f"{defences.pow_hashes(0, 0) / defences.hashes_per_second:.4f} CPU-s on a quiet network, "
        f"{defences.pow_hashes(0, pace) / defences.hashes_per_second:.3f} at {pace} battles an hour"
    )
    print(
        f"rank: published (bootstrap intervals, {args.rounds} rounds, seeded); cost = address-hours "
        "(networks x hours + PoW CPU-hours); ratio = defended / undefended address-hours"
    )
    print(
        f"attacker: {args.attacker_networks} network(s), a fresh visitor per battle, "
        f"95% model identification, budget {args.budget} battles"
    )

    rows: list[tuple[Row, Row]] = []
    flagged: list[float] = []
    honest_votes: list[float] = []
    honest_days: list[float] = []
    sweep = [int(n) for n in args.sweep.split(",") if n]
    for index, seed in enumerate(int(s) for s in args.seeds.split(",")):
        world = honest_world(
            np.random.default_rng(seed),
            args.models,
            args.votes,
            args.visitors,
            args.networks,
            args.votes_per_day,
        )
        honest = rating.rate(world.a, world.b, world.outcome, args.models, bootstrap=args.rounds, seed=0)
        target = mid_table_target(honest, args.models)
        ahead = np.flatnonzero(honest.ci_lower > honest.ci_upper[target])
        ahead = ahead[np.argsort(honest.ci_lower[ahead])]
        trial = Trial(world, target, seed, defences, args.rounds)
        print()
        print(
            f"world {seed}: {args.models} models, {world.a.size} honest votes from {world.n_visitors} "
            f"visitors in {world.n_networks} networks; target at rank {trial.undefended_baseline.rank} "
            f"({trial.baseline.rank} after the detector's exclusions); with no attack "
            f"{100 * trial.baseline.honest_flagged:.2f}% of the honest visitors and networks scored are "
            f"flagged, {100 * trial.baseline.honest_days_flagged:.2f}% of the (day, model) cells flagged, "
            f"{100 * trial.baseline.honest_excluded:.2f}% of honest votes excluded ({world.days} days)"
        )
        attacks = attacks_on(trial, ahead, seed, args.budget)
        world_rows = []
        for strategy, lift, attack in attacks:
            off = priced(trial.search(attack, None, lift), strategy, lift, None, defences)
            on = trial.search(attack, args.attacker_networks, lift)
            world_rows.append((off, priced(on, strategy, lift, args.attacker_networks, defences)))
        print_rows(world_rows)
        rows += world_rows
        flagged += [trial.baseline.honest_flagged] + [on.found.outcome.honest_flagged for _, on in world_rows]
        honest_votes.append(trial.baseline.honest_excluded)
        honest_days.append(trial.baseline.honest_days_flagged)

        if sweep and index == 0:
            print()
            print(f"world {seed}, defended, by the attacker's networks: ratio, attacker votes excluded")
            print(f"{'strategy':<12} {'lift':>4} " + " ".join(f"{f'{n} networks':>16}" for n in sweep))
            for (strategy, lift, attack), (off, _) in zip(attacks, world_rows, strict=True):
                cells = []
                for n in sweep:
                    on = priced(trial.search(attack, n, lift), strategy, lift, n, defences)
                    rows.append((off, on))
                    flagged.append(on.found.outcome.honest_flagged)
                    cells.append(f"{ratio(on, off)[1]}, {100 * on.found.outcome.excluded:.0f}%")
                print(f"{strategy:<12} {lift:>4} " + " ".join(f"{c:>16}" for c in cells))

    def weakest(strategy: str) -> str:
        return min((ratio(on, off) for off, on in rows if off.strategy == strategy), key=lambda r: r[0])[1]

    excluded = min(on.found.outcome.excluded for off, on in rows if off.strategy != "camouflage")
    print()
    print(
        f"({time.perf_counter() - started:.0f} s; the last line takes the weakest lift, world and attacker)"
    )
    print(
        f"camouflage (a vote in every battle, honest where the target is absent): weakest ratio "
        f"{weakest('camouflage')}; with no attack, honest votes excluded at most "
        f"{100 * max(honest_votes):.2f}%, (day, model) cells flagged at most {100 * max(honest_days):.2f}%"
    )
    print(
        f"rigging cost ratio: target-only {weakest('target-only')}, omnipresent {weakest('omnipresent')}; "
        f"attacker votes excluded {100 * excluded:.1f}%; honest voters flagged {100 * max(flagged):.1f}%"
    )


if __name__ == "__main__":
    main()
