"""The timing channel: can a voter tell which model is which from when each side's text arrives?

Prints figures, asserts nothing.

    python bench/timing.py                      # 400 battles paced, 400 unpaced
    python bench/timing.py --battles 1000 --tick 0.05

Two models whose published figures differ by 30 ms in time to first token and 2 ms per token
meet in simulated battles, each on a side drawn at random. Each side is a fake upstream that puts
its deltas on the relay's queue as `arena.streaming._run_side` does, with the jitter of a real
network; the real relay code (`_paced`, or `_relayed` when unpaced) sends them on. The attacker
knows each model's published latency and sees only what a voter sees: when each side's deltas
arrive, and how many tokens (words) each side's text holds. For each battle it takes the more
likely of the two assignments (a Gaussian likelihood of each side's first-delta time and mean
gap per token) and is scored against the truth. Chance is 50%.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


@dataclass(frozen=True)
class Model:
    ttft: float  # seconds, median time to first token as the board publishes it
    gap: float  # seconds between two tokens


FAST = Model(ttft=0.300, gap=0.020)
SLOW = Model(ttft=0.330, gap=0.022)
TTFT_JITTER = 0.015  # standard deviation of one call's time to first token (network, queueing)
GAP_JITTER = 0.006  # of one gap between tokens


@dataclass
class Seen:
    """One side as the voter sees it: first and last delta times, and the tokens of its text."""

    first: float | None = None
    last: float = 0.0
    text: str = ""


async def side(queue: asyncio.Queue[dict], name: str, model: Model, tokens: int, rng: random.Random) -> None:
    await asyncio.sleep(max(0.0, rng.gauss(model.ttft, TTFT_JITTER)))
    for n in range(tokens):
        if n:
            await asyncio.sleep(max(0.0, rng.gauss(model.gap, GAP_JITTER)))
        queue.put_nowait({"side": name, "type": "delta", "text": "w" * rng.randint(1, 7) + " "})
    queue.put_nowait({"side": name, "type": "done", "text": ""})


async def battle(paced: bool, tick: float, rng: random.Random) -> bool:
    """One battle through the relay; whether the attacker named the sides right."""
    from arena import streaming

    fast_on_a = rng.random() < 0.5
    models = {"a": FAST if fast_on_a else SLOW, "b": SLOW if fast_on_a else FAST}
    queue: asyncio.Queue[dict] = asyncio.Queue()
    sides = [asyncio.create_task(side(queue, s, models[s], rng.randint(40, 120), rng)) for s in "ab"]
    ended = asyncio.gather(*sides)
    ended.add_done_callback(
        lambda _: queue.put_nowait({"side": None, "type": "end", "text": "", "state": "ready"})
    )
    relay = streaming._paced(queue, tick) if paced else streaming._relayed(queue)
    start = time.perf_counter()
    seen = {"a": Seen(), "b": Seen()}
    async for batch in relay:
        now = time.perf_counter() - start
        for event in batch:
            if event["type"] == "delta":
                s = seen[event["side"]]
                s.first = now if s.first is None else s.first
                s.last = now
                s.text += event["text"]
    return guess_fast_on_a(seen) == fast_on_a


def log_likelihood(seen: Seen, model: Model) -> float:
    tokens = len(seen.text.split())
    assert seen.first is not None
    score = -(((seen.first - model.ttft) / TTFT_JITTER) ** 2) / 2
    if tokens > 1:
        gap = (seen.last - seen.first) / (tokens - 1)
        spread = GAP_JITTER / math.sqrt(tokens - 1)
        score -= ((gap - model.gap) / spread) ** 2 / 2
    return score


def guess_fast_on_a(seen: dict[str, Seen]) -> bool:
    as_drawn = log_likelihood(seen["a"], FAST) + log_likelihood(seen["b"], SLOW)
    swapped = log_likelihood(seen["a"], SLOW) + log_likelihood(seen["b"], FAST)
    return as_drawn >= swapped


async def accuracy(*, paced: bool, battles: int, at_once: int, tick: float, seed: int) -> tuple[int, float]:
    rng = random.Random(seed)
    right = 0
    started = time.perf_counter()
    for first in range(0, battles, at_once):
        results = await asyncio.gather(
            *(battle(paced, tick, rng) for _ in range(min(at_once, battles - first)))
        )
        right += sum(results)
    return right, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--battles", type=int, default=400)
    parser.add_argument("--at-once", type=int, default=40, help="battles run concurrently")
    parser.add_argument("--tick", type=float, default=0.05, help="seconds between two paced releases")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    print(
        f"models: TTFT {FAST.ttft * 1000:.0f} vs {SLOW.ttft * 1000:.0f} ms, per token "
        f"{FAST.gap * 1000:.0f} vs {SLOW.gap * 1000:.0f} ms; jitter {TTFT_JITTER * 1000:.0f} ms first, "
        f"{GAP_JITTER * 1000:.0f} ms a gap; 40-120 tokens a side; tick {args.tick * 1000:.0f} ms"
    )
    figures = {}
    for paced in (False, True):
        right, took = asyncio.run(
            accuracy(paced=paced, battles=args.battles, at_once=args.at_once, tick=args.tick, seed=args.seed)
        )
        figures[paced] = right / args.battles
        label = "paced  " if paced else "unpaced"
        share = f"{right}/{args.battles} battles guessed right ({figures[paced]:.1%})"
        print(f"{label} relay: {share}, {took:.1f} s")
    print(f"timing channel: unpaced {figures[False]:.1%}, paced {figures[True]:.1%} (chance 50%)")


if __name__ == "__main__":
    main()
