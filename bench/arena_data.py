"""The synthetic arena of bench/recompute.py: models with Bradley-Terry strengths and style habits,
voted battles at arena-like category rates, written into PostgreSQL with COPY in chunks. Imported by
bench/recompute.py, whose docstring describes the data."""

from __future__ import annotations

import argparse
import resource
import time
from typing import Any

import numpy as np


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


CHUNK = 100_000  # rows generated and copied at a time: bounds the generator's memory

LANGUAGES = {
    "en": 0.60,
    "zh": 0.10,
    "ru": 0.05,
    "de": 0.05,
    "fr": 0.05,
    "es": 0.05,
    "ja": 0.02,
    "it": 0.015,
    "pt": 0.015,
    "ko": 0.01,
    "ar": 0.01,
    "nl": 0.005,
    "": 0.015,  # language not detected
}
FLAGS = {"coding": 0.20, "hard": 0.25, "long_query": 0.05, "multi_turn": 0.10}
TIES = 0.30
# Per-model style habits (mean tokens, headers, list items, bold spans) and how a style difference,
# (a - b)/(a + b + 1), sways the log-odds of A winning.
HABITS = np.array([400.0, 1.5, 3.0, 4.0])
STYLE_SWAY = np.array([1.0, 0.15, 0.25, 0.35])
HEADER_SHARE = np.array([0.05, 0.35, 0.35, 0.15, 0.07, 0.03])  # h1..h6
LIST_SHARE = np.array([0.4, 0.6])  # ordered, unordered
BOLD_SHARE = np.array([0.95, 0.05])  # **, __

METADATA = (
    '{{"sum_user_tokens": {}, "sum_assistant_a_tokens": {}, "sum_assistant_b_tokens": {}, '
    '"context_a_tokens": {}, "context_b_tokens": {}, "turns": {}, '
    '"header_count_a": {{"h1": {}, "h2": {}, "h3": {}, "h4": {}, "h5": {}, "h6": {}}}, '
    '"list_count_a": {{"ordered": {}, "unordered": {}}}, "bold_count_a": {{"**": {}, "__": {}}}, '
    '"header_count_b": {{"h1": {}, "h2": {}, "h3": {}, "h4": {}, "h5": {}, "h6": {}}}, '
    '"list_count_b": {{"ordered": {}, "unordered": {}}}, "bold_count_b": {{"**": {}, "__": {}}}}}'
)
BATTLE_COLUMNS = (
    "id, mode, state, visitor_hash, network_hash, prompt_hash, created, updated, model_a_id, model_b_id"
)
VOTE_COLUMNS = (
    "id, winner, excluded, created, battle_id, coding, hard, long_query, multi_turn, language, "
    "anonymous, model_a_id, model_b_id, length_a, headers_a, lists_a, bold_a, length_b, headers_b, lists_b, "
    "bold_b"
)
METADATA_COLUMNS = "vote_id, conv_metadata"


def marker(args: argparse.Namespace) -> str:
    return f"bench_recompute v2 seed={args.seed} models={args.models} votes={args.votes}"


def fill(args: argparse.Namespace) -> dict[str, Any]:
    from django.core.management import call_command
    from django.db import connection, transaction

    from arena.models import Vote
    from providers.models import LLM

    call_command("migrate", verbosity=0)
    if (
        not args.refill
        and LLM.objects.filter(notes=marker(args)).exists()
        and LLM.objects.count() == args.models
        and Vote.objects.count() == args.votes
    ):
        return {"reused": True, "seconds": 0.0, "peak_mb": peak_mb()}

    started = time.perf_counter()
    with connection.cursor() as cursor:
        # CASCADE empties every table that points at a model or an organisation: battles, votes,
        # snapshots, call logs.
        cursor.execute("TRUNCATE providers_llm, providers_organization RESTART IDENTITY CASCADE")
    rng = np.random.default_rng(args.seed)
    theta = rng.normal(0.0, 1.0, args.models)
    habits = rng.lognormal(0.0, 0.5, (args.models, 4)) * HABITS
    visitors = [h.hex() for h in np.frombuffer(rng.bytes(32 * 50_000), dtype="S32")]
    LLM.objects.bulk_create(
        LLM(
            name=f"bench-model-{i:03d}",
            display_name=f"Bench model {i}",
            organization=f"Org {i % 25}",
            backend=LLM.Backend.IMPORTED,
            notes=marker(args) if i == 0 else "",
        )
        for i in range(args.models)
    )
    llm_ids = np.array(LLM.objects.order_by("pk").values_list("pk", flat=True))
    with transaction.atomic(), connection.cursor() as cursor:
        # The generator writes consistent rows: skip a foreign-key trigger call per row.
        cursor.execute("SET LOCAL session_replication_role = replica")
        for first in range(0, args.votes, CHUNK):
            size = min(CHUNK, args.votes - first)
            battles, votes, metadata = chunk_rows(
                np.random.default_rng([args.seed, first]), first, size, args, theta, habits, visitors, llm_ids
            )
            with cursor.copy(f"COPY arena_battle ({BATTLE_COLUMNS}) FROM STDIN") as copy:
                copy.write(battles)
            with cursor.copy(f"COPY arena_vote ({VOTE_COLUMNS}) FROM STDIN") as copy:
                copy.write(votes)
            with cursor.copy(f"COPY arena_votemetadata ({METADATA_COLUMNS}) FROM STDIN") as copy:
                copy.write(metadata)
            del battles, votes, metadata
        # The votes' ids were given (1, 2, ... as the metadata rows name them): move the sequence on.
        cursor.execute("SELECT setval(pg_get_serial_sequence('arena_vote', 'id'), %s)", [max(args.votes, 1)])
    copied = time.perf_counter()
    with connection.cursor() as cursor:
        # A bulk load leaves hint bits unset and no statistics: the first reader would pay for both.
        cursor.execute("VACUUM (ANALYZE) arena_battle, arena_vote, arena_votemetadata, providers_llm")
    return {
        "reused": False,
        "seconds": time.perf_counter() - started,
        "copy_seconds": copied - started,
        "peak_mb": peak_mb(),
    }


def chunk_rows(
    rng: np.random.Generator,
    first: int,
    n: int,
    args: argparse.Namespace,
    theta: np.ndarray,
    habits: np.ndarray,
    visitors: list[str],
    llm_ids: np.ndarray,
) -> tuple[str, str, str]:
    """COPY text of `n` battles, their votes and the votes' conv_metadata, the first being number
    `first` of the data set (vote id `first` + 1)."""
    m = args.models
    a = rng.integers(0, m, n)
    b = (a + rng.integers(1, m, n)) % m

    tokens = rng.poisson(np.stack([habits[a, 0], habits[b, 0]], axis=1))
    headers = rng.poisson(np.stack([habits[a, 1], habits[b, 1]], axis=1)[..., None] * HEADER_SHARE)
    lists = rng.poisson(np.stack([habits[a, 2], habits[b, 2]], axis=1)[..., None] * LIST_SHARE)
    bold = rng.poisson(np.stack([habits[a, 3], habits[b, 3]], axis=1)[..., None] * BOLD_SHARE)
    totals = np.stack([tokens, headers.sum(axis=2), lists.sum(axis=2), bold.sum(axis=2)], axis=2)
    delta = (totals[:, 0] - totals[:, 1]) / (totals[:, 0] + totals[:, 1] + 1.0)
    p = 1.0 / (1.0 + np.exp(-(theta[a] - theta[b] + delta @ STYLE_SWAY)))
    u = rng.random(n)
    winner = np.where(
        u < TIES,
        np.where(u < TIES * 0.75, "tie", "bothbad"),
        np.where(rng.random(n) < p, "a", "b"),
    )

    flags = {name: np.where(rng.random(n) < rate, "t", "f") for name, rate in FLAGS.items()}
    language = rng.choice(list(LANGUAGES), n, p=np.array(list(LANGUAGES.values())) / sum(LANGUAGES.values()))
    user = np.where(flags["long_query"] == "t", rng.integers(500, 3000, n), rng.integers(5, 500, n))
    turns = np.where(flags["multi_turn"] == "t", rng.integers(2, 5, n), 1)
    metadata_numbers = np.column_stack(
        [
            *(user, tokens[:, 0], tokens[:, 1], user, user, turns),  # sum_user_tokens .. turns
            *(headers[:, 0], lists[:, 0], bold[:, 0]),  # answer A's h1..h6, lists, bold
            *(headers[:, 1], lists[:, 1], bold[:, 1]),  # answer B's
        ]
    ).tolist()

    year_us = 365 * 24 * 3600 * 10**6
    at = np.datetime64("2024-01-01T00:00:00", "us") + (
        (np.arange(first, first + n, dtype=np.int64) * year_us) // max(args.votes, 1)
    ).astype("timedelta64[us]")
    # UUIDv7 layout (creation time in milliseconds, then random bits): ids in creation order append to
    # the primary key and vote indexes instead of landing at random pages, which made the load several
    # times slower. The recompute reads with sequential scans and hash joins, which order does not sway.
    raw = np.frombuffer(rng.bytes(16 * n), dtype=np.uint8).reshape(n, 16).copy()
    ms = at.astype("datetime64[ms]").astype(np.int64).astype(">u8").view(np.uint8).reshape(n, 8)
    raw[:, :6] = ms[:, 2:]
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x70  # version 7
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80  # RFC 4122 variant
    hexes = raw.tobytes().hex()
    ids = [hexes[32 * i : 32 * i + 32] for i in range(n)]
    battle_at = [s + "+00" for s in np.datetime_as_string(at, unit="us")]
    vote_at = [s + "+00" for s in np.datetime_as_string(at + np.timedelta64(45, "s"), unit="us")]
    visitor = rng.integers(0, len(visitors), n).tolist()

    model_a, model_b = llm_ids[a].tolist(), llm_ids[b].tolist()
    battles = "".join(
        # A visitor's network: one of 5,000, as ten visitors share one on average.
        f"{ids[i]}\tanonymous\tvoted\t{visitors[visitor[i]]}\t{visitors[visitor[i] % 5000]}\t\t"
        f"{battle_at[i]}\t{battle_at[i]}\t"
        f"{model_a[i]}\t{model_b[i]}\n"
        for i in range(n)
    )
    coding, hard, long_query, multi_turn = (flags[k].tolist() for k in FLAGS)
    winner_list, language_list = winner.tolist(), language.tolist()
    # The columns a vote copies from its battle and its style counts (arena.models.Vote.set_facts).
    facts = ["\t".join(f"{x:g}" for x in row) for row in totals.reshape(n, 8).tolist()]
    votes = "".join(
        f"{first + i + 1}\t{winner_list[i]}\t\t{vote_at[i]}\t{ids[i]}\t{coding[i]}\t{hard[i]}\t"
        f"{long_query[i]}\t{multi_turn[i]}\t{language_list[i]}\tt\t{model_a[i]}\t{model_b[i]}\t{facts[i]}\n"
        for i in range(n)
    )
    metadata = "".join(f"{first + i + 1}\t{METADATA.format(*metadata_numbers[i])}\n" for i in range(n))
    return battles, votes, metadata
