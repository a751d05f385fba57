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
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from arena_data import FLAGS, LANGUAGES, fill, peak_mb

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DATABASE_URL = "postgres://postgres@127.0.0.1:5432/bench_recompute"
TARGET_SECONDS = 10.0


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


# --- Our path ------------------------------------------------------------------------------------------

STAGES = {
    "current_filters": "filters",
    "board_counts": "boards",
    "vote_arrays": "read",
    "exclusions": "excluded",
    "_fit": "fit",
}
SHARED = ("current_filters", "board_counts", "exclusions")  # once per recompute, for every board


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
    for name in ("current_filters", "board_counts", "vote_arrays", "exclusions"):
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
