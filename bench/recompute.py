"""Every board recomputed end to end from PostgreSQL, next to a vote-by-vote baseline. Prints figures,
asserts nothing.

    python bench/recompute.py                   # 3M votes / 200 models; the first run fills for ~1.5 min
    python bench/recompute.py --votes 300000    # quick mode
    python bench/recompute.py --baseline overall --profile
    python bench/recompute.py --votes 1000000 --style-baseline    # the style board's old read too
    python bench/recompute.py --refill          # throw the data away and generate it again

Issue target: from PostgreSQL holding 3M votes, all boards recomputed end to end in 10 s or less.

Data
    A seeded synthetic arena in its own database (--database-url, default bench_recompute on
    127.0.0.1, created if missing), migrated with `migrate` and filled with PostgreSQL COPY in chunks
    of CHUNK rows:
    --models public models with Bradley-Terry strengths, --votes anonymous voted battles with one
    counted vote each, about 30% ties (three in four "tie", one "bothbad"), category flags at
    arena-like rates (coding 20%, hard 25%, long query 5%, multi-turn 10%; language en 60%, zh 10%,
    ru, de, fr, es 5% each, the rest spread over other languages or unknown) and conv_metadata style
    counts in the public clean_battle format (sum_assistant_a_tokens, header_count_a h1..h6,
    list_count_a ordered/unordered, bold_count_a ** and __, the same for b), drawn from per-model
    habits that sway votes. Foreign-key triggers are off during the load (session_replication_role)
    since the generator writes consistent rows; the tables are vacuumed and analysed after it. A
    database already holding the same seed, models and votes is reused.

Phases, each in its own process so that its peak RSS (getrusage ru_maxrss) is its own
    fill        migrate, then generate and COPY unless reused
    ours        leaderboard.services.recompute_all() with no snapshot yet, so every board is rated;
                LEADERBOARD_BOOTSTRAP and LEADERBOARD_STYLE_BOOTSTRAP set from --bootstrap and
                --style-bootstrap. Timers around the service's steps: once for all boards, filters
                (current_filters), boards (board_counts: one SQL aggregation of the counted votes by
                pair and outcome, with a count per board), excluded (counts of flagged votes) and
                testing (provider testing figures); per board (each Snapshot's duration_ms, the
                board's own time: fits run side by side in the recompute's threads, which also share
                a fit's bootstrap rounds), read (vote_arrays: cells to index arrays; for the style
                board its votes read as columns by style_rows), fit (the rating engine and matrices)
                and rest (digest, latency, snapshot write). Then a second recompute after
                --new-votes more votes are stored (through the ORM, as votes arrive; spread over
                every category and language, so that every board is rated again): every recompute
                reads all the votes again, so it differs from the first only by the data in the
                caches; the new votes are deleted afterwards so the data set stays as filled
    baseline    the path a first version took: each board's counted votes pulled through the ORM
                vote by vote, joined to their battles (values_list of model_a, model_b, winner ordered
                by id), rated by the same engine. Non-style boards (--baseline overall: the overall
                board only; none: no baseline). With --style-baseline the style board too, its votes'
                conv_metadata decoded and counted in Python: about 5 GB of memory per million votes,
                so not at 3M on a 24 GB machine shared with others.

"max |diff|" is the largest difference between the two paths' ratings and interval bounds on a board,
in display points: the engine sees the same votes, so it should be 0.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import resource
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DATABASE_URL = "postgres://postgres@127.0.0.1:5432/bench_recompute"
CHUNK = 100_000  # rows generated and copied at a time: bounds the generator's memory
TARGET_SECONDS = 10.0

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
BATTLE_COLUMNS = "id, mode, state, visitor_hash, created, updated, model_a_id, model_b_id"
VOTE_COLUMNS = (
    "id, winner, excluded, created, battle_id, coding, hard, long_query, multi_turn, language, "
    "anonymous, model_a_id, model_b_id, length_a, headers_a, lists_a, bold_a, length_b, headers_b, lists_b, "
    "bold_b"
)
METADATA_COLUMNS = "vote_id, conv_metadata"


def setup_django(database_url: str) -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
    os.environ["DATABASE_URL"] = database_url
    os.environ.pop("REDIS_URL", None)  # local-memory cache: the lock is all recompute_all asks of it
    import django

    django.setup()


def ensure_database(database_url: str) -> None:
    """Create the bench database if the server lacks it (a new or reset machine): the fill phase
    fills it, but Django cannot connect to a database that does not exist."""
    from urllib.parse import urlsplit

    import psycopg
    from psycopg import sql

    url = urlsplit(database_url)
    name = url.path.lstrip("/")
    with psycopg.connect(url._replace(path="/postgres").geturl(), autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- Fill ----------------------------------------------------------------------------------------------


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
        f"{ids[i]}\tanonymous\tvoted\t{visitors[visitor[i]]}\t{battle_at[i]}\t{battle_at[i]}\t"
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


# --- Our path ------------------------------------------------------------------------------------------

STAGES = {
    "current_filters": "filters",
    "board_counts": "boards",
    "vote_arrays": "read",
    "excluded_counts": "excluded",
    "_fit": "fit",
}
SHARED = ("current_filters", "board_counts", "excluded_counts")  # once per recompute, for every board


def clear_snapshots() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE leaderboard_rating, leaderboard_snapshot RESTART IDENTITY")


def time_stages() -> dict[str, dict[str, float]]:
    """Wrap the service's steps in timers; returns seconds per board and stage, filled as they run."""
    from leaderboard import services

    spent: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    current = ["(shared)"]

    def timed(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                spent["(shared)" if name in SHARED else current[0]][STAGES[name]] += (
                    time.perf_counter() - started
                )

        return wrapper

    prepare = services._prepare

    def prepare_wrapper(board: Any, *args: Any) -> Any:
        current[0] = board.slug  # the database steps of a board run in the calling thread
        return prepare(board, *args)

    services._prepare = prepare_wrapper
    for name in ("current_filters", "board_counts", "vote_arrays", "excluded_counts"):
        setattr(services, name, timed(name, getattr(services, name)))
    record = services.testing.record_figures

    def record_wrapper(*args: Any) -> Any:
        started = time.perf_counter()
        try:
            return record(*args)
        finally:
            spent["(shared)"]["testing"] += time.perf_counter() - started

    services.testing.record_figures = record_wrapper
    fit = services._fit

    def fit_wrapper(job: Any, *args: Any) -> Any:  # fits run in threads: the board comes with the job
        started = time.perf_counter()
        try:
            return fit(job, *args)
        finally:
            spent[job.board.slug]["fit"] += time.perf_counter() - started

    services._fit = fit_wrapper
    return spent


def board_ratings(snapshot: Any) -> dict[str, list[float]]:
    return {
        str(r.llm_id): [r.rating, r.ci_lower, r.ci_upper]
        for r in snapshot.ratings.all().only("llm_id", "rating", "ci_lower", "ci_upper")
    }


def ours(args: argparse.Namespace) -> dict[str, Any]:
    from django.conf import settings

    from leaderboard import services

    settings.LEADERBOARD_BOOTSTRAP = args.bootstrap
    settings.LEADERBOARD_STYLE_BOOTSTRAP = args.style_bootstrap
    settings.LEADERBOARD_CATEGORY_BOOTSTRAP = args.category_bootstrap or args.bootstrap
    clear_snapshots()
    spent = time_stages()
    profile = cProfile.Profile() if args.profile else None
    started = time.perf_counter()
    if profile:
        profile.enable()
    published = services.recompute_all()
    if profile:
        profile.disable()
    wall = time.perf_counter() - started
    if profile:
        out = io.StringIO()
        pstats.Stats(profile, stream=out).sort_stats("cumulative").print_stats(30)
        print(out.getvalue())
    report = {
        "wall": wall,
        "peak_mb": peak_mb(),
        "shared": dict(spent["(shared)"]),
        "boards": {
            s.board: {
                "votes": s.votes,
                "seconds": s.duration_ms / 1000,
                "stages": dict(spent[s.board]),
                "ratings": board_ratings(s),
            }
            for s in published
        },
    }
    spent.clear()
    report["warm"] = warm_recompute(args)
    report["warm"]["shared"] = dict(spent["(shared)"])
    return report


def warm_recompute(args: argparse.Namespace) -> dict[str, float]:
    """Store --new-votes votes, recompute every board again in this process, then delete them."""
    from arena.models import Battle, Vote
    from leaderboard import services
    from providers.models import LLM

    rng = np.random.default_rng([args.seed, 99])
    llms = list(LLM.objects.order_by("pk")[:20])
    battles, votes = [], []
    for _ in range(args.new_votes):
        a, b = rng.choice(len(llms), 2, replace=False)
        battle = Battle(model_a=llms[a], model_b=llms[b], state=Battle.State.VOTED, visitor_hash="bench")
        # Spread over every category and language, so that every board has new votes to count.
        vote = Vote(
            battle=battle,
            winner=str(rng.choice(["a", "b", "tie"])),
            language=str(rng.choice([code for code in LANGUAGES if code])),
            **{flag: bool(rng.random() < 0.5) for flag in FLAGS},
        )
        vote.set_facts()
        battles.append(battle)
        votes.append(vote)
    Battle.objects.bulk_create(battles)
    Vote.objects.bulk_create(votes)
    try:
        started = time.perf_counter()
        published = services.recompute_all()
        seconds = time.perf_counter() - started
    finally:
        Battle.objects.filter(visitor_hash="bench").delete()
    return {"seconds": seconds, "boards": len(published), "votes": args.new_votes}


# --- Baseline ------------------------------------------------------------------------------------------


def naive_board(filters: Any, style: bool, bootstrap: int, seed: int) -> dict[str, list[float]]:
    """A board as a first version rated it: its counted votes through the ORM one by one, joined to
    their battles, style counts decoded from each vote's conv_metadata in Python; same engine."""
    from leaderboard import rating
    from leaderboard import votes as board_votes

    votes, _ = board_votes.filtered_votes(filters)
    fields = ["battle__model_a_id", "battle__model_b_id", "winner"]
    rows = list(votes.order_by("id").values_list(*fields, *(["metadata__conv_metadata"] if style else [])))
    model_ids = sorted({row[0] for row in rows} | {row[1] for row in rows})
    index = {pk: i for i, pk in enumerate(model_ids)}
    a = np.array([index[row[0]] for row in rows], dtype=np.int64)
    b = np.array([index[row[1]] for row in rows], dtype=np.int64)
    outcome = np.array([board_votes.OUTCOME[row[2]] for row in rows], dtype=np.int64)
    if style:
        sides = np.array([rating.style_counts(row[3] or {}) for row in rows], dtype=np.float64)
        features = rating.style_delta(sides[:, 0], sides[:, 1])
        result = rating.rate_style(
            a, b, outcome, features, len(model_ids), bootstrap=bootstrap, seed=seed
        ).ratings
    else:
        result = rating.rate(a, b, outcome, len(model_ids), bootstrap=bootstrap, seed=seed)
    return {
        str(pk): [float(result.rating[i]), float(result.ci_lower[i]), float(result.ci_upper[i])]
        for i, pk in enumerate(model_ids)
    }


def baseline(args: argparse.Namespace) -> dict[str, Any]:
    from dataclasses import replace

    from django.conf import settings

    from arena.models import Vote
    from leaderboard import boards, votes

    filters, _ = votes.current_filters("overall")
    languages = set(Vote.objects.exclude(language="").values_list("language", flat=True).distinct())
    chosen = [
        board
        for board in boards.all_boards(languages)
        if (args.style_baseline if board.style else args.baseline == "all" or board.slug == "overall")
    ]
    report: dict[str, Any] = {"boards": {}}
    for board in chosen:
        started = time.perf_counter()
        bootstrap = args.style_bootstrap if board.style else args.bootstrap
        if board.category and args.category_bootstrap:
            bootstrap = args.category_bootstrap
        ratings = naive_board(
            replace(filters, board=board.slug), board.style, bootstrap, settings.LEADERBOARD_SEED
        )
        if board.category:  # as the service lists them: models at or above the threshold
            ratings = {pk: r for pk, r in ratings.items() if pk in listed(board.slug)}
        report["boards"][board.slug] = {"seconds": time.perf_counter() - started, "ratings": ratings}
    report["peak_mb"] = peak_mb()
    return report


def listed(slug: str) -> set[str]:
    """The models the cold recompute listed on the board: its snapshot is the board's first (the
    second recompute's, with the votes it added, may list more)."""
    from leaderboard.models import Snapshot

    snapshot = Snapshot.objects.filter(board=slug).order_by("id").first()
    return {str(pk) for pk in snapshot.ratings.values_list("llm_id", flat=True)} if snapshot else set()


# --- Driver --------------------------------------------------------------------------------------------

PHASES: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
    "fill": fill,
    "ours": ours,
    "baseline": baseline,
}


def run_phase(phase: str, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile(suffix=".json") as report:
        command = [sys.executable, str(Path(__file__).resolve()), "--phase", phase, "--report", report.name]
        command += sys.argv[1:]
        subprocess.run(command, check=True)
        return json.loads(Path(report.name).read_text())


def max_diff(mine: dict[str, list[float]], theirs: dict[str, list[float]]) -> str:
    if mine.keys() != theirs.keys():
        return "models differ"
    if not mine:
        return ""
    return f"{max(abs(x - y) for k in mine for x, y in zip(mine[k], theirs[k], strict=True)):.3g}"


def print_table(our: dict[str, Any], base: dict[str, Any] | None) -> None:
    stage_names = ["read", "fit"]
    shared = our["shared"]
    print(
        "once for every board: "
        + ", ".join(
            f"{name} {shared.get(name, 0.0):.2f} s" for name in ("filters", "boards", "excluded", "testing")
        )
    )
    header = (
        f"{'board':<14} {'votes':>9} {'ours s':>7} {'base s':>7} {'ratio':>6} {'max |diff|':>10}   "
        + " ".join(f"{s:>8}" for s in stage_names)
        + f" {'rest':>6}"
    )
    print(header)
    print("-" * len(header))
    both_ours = both_base = 0.0
    for slug, mine in our["boards"].items():
        theirs = (base or {"boards": {}})["boards"].get(slug)
        stages = [mine["stages"].get(s, 0.0) for s in stage_names]
        rest = mine["seconds"] - sum(stages)
        line = f"{slug:<14} {mine['votes']:>9} {mine['seconds']:>7.2f} "
        if theirs:
            both_ours += mine["seconds"]
            both_base += theirs["seconds"]
            ratio = theirs["seconds"] / mine["seconds"]
            diff = max_diff(mine["ratings"], theirs["ratings"])
            line += f"{theirs['seconds']:>7.2f} {ratio:>5.1f}x {diff:>10}   "
        else:
            line += f"{'-':>7} {'':>6} {'':>10}   "
        print(line + " ".join(f"{s:>8.2f}" for s in stages) + f" {rest:>6.2f}")
    print("-" * len(header))
    if both_base:
        print(
            f"{'boards in both':<14} {'':>9} {both_ours:>7.2f} {both_base:>7.2f} "
            f"{both_base / both_ours:>5.1f}x"
        )
    warm = our["warm"]
    print(
        f"second recompute after {warm['votes']} new votes: "
        f"{warm['seconds']:.2f} s, {warm['boards']} boards republished; "
        + ", ".join(f"{name} {warm['shared'].get(name, 0.0):.2f} s" for name in ("filters", "boards"))
    )
    verdict = "met" if our["wall"] <= TARGET_SECONDS else "missed"
    print(
        f"recompute_all end to end, cold: {our['wall']:.2f} s for {len(our['boards'])} boards "
        f"(target <= {TARGET_SECONDS:.0f} s: {verdict}); peak RSS {our['peak_mb']:.0f} MB"
    )
    if base:
        print(f"baseline peak RSS {base['peak_mb']:.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--votes", type=int, default=3_000_000)
    parser.add_argument("--models", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--bootstrap", type=int, default=1000, help="LEADERBOARD_BOOTSTRAP")
    parser.add_argument("--style-bootstrap", type=int, default=100, help="LEADERBOARD_STYLE_BOOTSTRAP")
    parser.add_argument("--category-bootstrap", type=int, default=250, help="LEADERBOARD_CATEGORY_BOOTSTRAP")
    parser.add_argument("--baseline", choices=["all", "overall", "none"], default="all")
    parser.add_argument(
        "--style-baseline",
        action="store_true",
        help="the style board in the baseline too (needs about 5 GB of memory per million votes)",
    )
    parser.add_argument("--new-votes", type=int, default=1000, help="votes added before the second recompute")
    parser.add_argument("--refill", action="store_true", help="generate the data again even if present")
    parser.add_argument("--profile", action="store_true", help="cProfile our recompute_all, top 30")
    parser.add_argument("--database-url", default=DATABASE_URL)
    parser.add_argument("--phase", choices=list(PHASES), help=argparse.SUPPRESS)
    parser.add_argument("--report", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        setup_django(args.database_url)
        Path(args.report).write_text(json.dumps(PHASES[args.phase](args)))
        return

    print(
        f"python {sys.version.split()[0]}, numpy {np.__version__}, {len(os.sched_getaffinity(0))} cores; "
        f"{args.votes} votes, {args.models} models, bootstrap {args.bootstrap} "
        f"(style {args.style_bootstrap}, categories {args.category_bootstrap or args.bootstrap})"
    )
    ensure_database(args.database_url)
    filled = run_phase("fill", args)
    if filled["reused"]:
        print("data: reused the filled database")
    else:
        print(
            f"data: filled in {filled['seconds']:.1f} s (COPY {filled['copy_seconds']:.1f} s, "
            f"then VACUUM ANALYZE); peak RSS {filled['peak_mb']:.0f} MB"
        )
    our = run_phase("ours", args)
    base = run_phase("baseline", args) if args.baseline != "none" or args.style_baseline else None
    print_table(our, base)


if __name__ == "__main__":
    main()
