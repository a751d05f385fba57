"""Speed and memory of the rating engine next to a FastChat-style baseline. Prints figures, asserts nothing.

    python bench/rating.py           # small scenarios, well under two minutes on two cores
    python bench/rating.py --full    # 3M votes / 200 models + 1000 rounds; style 1M / 50 and 3M / 200 + 100
    python bench/rating.py --scenario bt --votes 500000 --models 100 --bootstrap 1000 --baseline-rounds 20
    python bench/rating.py --scenario cli --base /tmp/rating-base   # the command line on a 2M-battle CSV
    python bench/rating.py --scenario sandwich   # sandwich beside the bootstrap on the --full scenarios

Data come from a seeded synthetic generator: Bradley-Terry strengths, ties (drawn so that a tie as half
a win keeps the expected score), and for style scenarios per-model answer length and markdown habits
that sway votes through known coefficients. The parent writes the data to a temporary file; each
engine then runs in its own subprocess, which times the engine call with time.perf_counter and
reports its peak resident memory (VmHWM of the whole process: interpreter, numpy, the data and the
engine; "base MB" is the same process just before the engine runs).

Engines
    ours-2t     leaderboard.rating with workers=2 (it holds BLAS to one thread itself: no
                OPENBLAS_NUM_THREADS needed)
    ours-1t     the same with workers=1: one core
    sandwich    leaderboard.rating with intervals="sandwich": closed-form robust intervals, no rounds
                (one core; --scenario sandwich runs it beside ours-2t's bootstrap, with no baseline)
    fastchat    FastChat's published method (fastchat/serve/monitor/elo_analysis.py and
                rating_systems.py): compute_mle_elo builds win pivot tables (ties one win each way,
                wins counted twice), a dense design matrix with two rows per ordered pair of models
                and an unpenalised logistic regression (tol 1e-6); the bootstrap refits from scratch
                on battles resampled with replacement. Style control follows construct_style_matrices
                and fit_mle_elo: every battle twice (a tie is one win each way), features
                (a - b)/(a + b + 1) standardised, L2-penalised (C = 1) logistic regression, refits
                from scratch on resampled battles. scikit-learn's lbfgs solver is replaced by scipy's
                L-BFGS-B on the same objective with the same tolerances and 100 iterations; BLAS
                threads are left at their default, which suits its dense products.

The baseline runs fewer bootstrap rounds than ours (it is slow); "equiv s" extrapolates its time to
our number of rounds (point fit + per-round time x rounds) and "ratio" is that over our time
(ours-2t's). The style scenario at 3M votes / 200 models runs without the baseline: its dense design
matrix alone would take 10 GB.
"max |diff|" is the largest difference between its point ratings and ours, in display points.

The cli scenario (--scenario cli, default 2M votes / 100 models) times whole processes instead, from
start to exit, on a CSV battle file (model_a, model_b, winner) written to a temporary folder:
    ours        python -m leaderboard.rating FILE (--bootstrap rounds, default 1000) from this checkout
    base        the same from the checkout given by --base (another commit), when given
    fastchat    FastChat's pipeline: pandas read_csv of the same file, then the baseline above
                (compute_mle_elo with --baseline-rounds bootstrap rounds, default 100)
"peak MB" is each process's VmHWM, read just before it exits; ours and base alternate --repeat times
and the fastest run of each is shown. "output" says whether base printed exactly what ours printed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from leaderboard.rating import (  # noqa: E402
    A_WINS,
    B_WINS,
    INTERVAL,
    TIE,
    WINNER_NAMES,
    WINNERS,
    rank_from_intervals,
    rate,
    rate_style,
    style_delta,
)

TRUE_STYLE = np.array([0.3, 0.05, 0.08, 0.12])  # log-odds per SD: length, headers, lists, bold


@dataclass(frozen=True)
class Scenario:
    name: str
    kind: str  # "bt" or "style"
    votes: int
    models: int
    bootstrap: int
    baseline_rounds: int


SMALL = [
    Scenario("bt 300k votes / 100 models", "bt", 300_000, 100, 1000, 100),
    Scenario("style 100k votes / 20 models", "style", 100_000, 20, 100, 20),
]
FULL = [
    Scenario("bt 3M votes / 200 models", "bt", 3_000_000, 200, 1000, 10),
    Scenario("style 1M votes / 50 models", "style", 1_000_000, 50, 100, 3),
    Scenario("style 3M votes / 200 models", "style", 3_000_000, 200, 100, 0),  # 0: no baseline
]


# --- Synthetic data ------------------------------------------------------------------------------------


def generate(scenario: Scenario, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    m, n = scenario.models, scenario.votes
    theta = rng.normal(0.0, 1.0, m)
    a = rng.integers(0, m, n, dtype=np.int32)
    b = ((a + rng.integers(1, m, n, dtype=np.int32)) % m).astype(np.int32)
    z = theta[a] - theta[b]
    data: dict[str, np.ndarray] = {"model_a": a, "model_b": b, "n_models": np.array(m)}
    if scenario.kind == "style":
        # Each model has its own verbosity and markdown habits.
        habits = rng.lognormal(0.0, 0.5, (m, 4)) * np.array([400.0, 1.5, 3.0, 4.0])
        counts_a = rng.poisson(habits[a])
        counts_b = rng.poisson(habits[b])
        features = style_delta(counts_a, counts_b)
        z += ((features - features.mean(axis=0)) / features.std(axis=0)) @ TRUE_STYLE
        data["features"] = features
    p = expit(z)
    tie = 0.3 * 2 * np.minimum(p, 1 - p)
    u = rng.random(n)
    data["outcome"] = np.where(u < tie, TIE, np.where(u < tie + p - tie / 2, A_WINS, B_WINS)).astype(np.int8)
    return data


# --- The FastChat-style baseline -----------------------------------------------------------------------


def lbfgs_logistic(
    x: np.ndarray, y: np.ndarray, weight: np.ndarray | None, l2: float, tol: float
) -> np.ndarray:
    """scikit-learn's LogisticRegression(fit_intercept=False, solver="lbfgs") objective and stopping rule."""
    total = float(weight.sum()) if weight is not None else float(x.shape[0])
    w = weight if weight is not None else np.ones(x.shape[0])

    def objective(coef: np.ndarray) -> tuple[float, np.ndarray]:
        z = x @ coef
        loss = float(w @ (np.logaddexp(0.0, z) - y * z)) / total + 0.5 * l2 / total * float(coef @ coef)
        grad = x.T @ (w * (expit(z) - y)) / total + l2 / total * coef
        return loss, grad

    options = {"maxiter": 100, "maxls": 50, "gtol": tol, "ftol": 64 * np.finfo(float).eps}
    return minimize(objective, np.zeros(x.shape[1]), jac=True, method="L-BFGS-B", options=options).x


def fastchat_mle(a: np.ndarray, b: np.ndarray, outcome: np.ndarray, m: int) -> np.ndarray:
    """compute_mle_elo: pivot tables, two rows per ordered pair, unpenalised logistic regression."""
    key = a.astype(np.int64) * m + b
    a_win = np.bincount(key[outcome == A_WINS], minlength=m * m).reshape(m, m)
    b_win = np.bincount(key[outcome == B_WINS], minlength=m * m).reshape(m, m)
    tie = np.bincount(key[outcome >= TIE], minlength=m * m).reshape(m, m)
    win = 2.0 * a_win + 2.0 * b_win.T + tie + tie.T
    first, second = np.nonzero(~np.eye(m, dtype=bool))
    rows = first.size
    x = np.zeros((2 * rows, m))
    x[np.arange(0, 2 * rows, 2), first] = math.log(10)
    x[np.arange(0, 2 * rows, 2), second] = -math.log(10)
    x[1::2] = x[::2]
    y = np.tile([1.0, 0.0], rows)
    weight = np.stack([win[first, second], win[second, first]], axis=1).reshape(-1)
    return 1000.0 + 400.0 * lbfgs_logistic(x, y, weight, l2=0.0, tol=1e-6)


def fastchat_style_matrices(
    a: np.ndarray, b: np.ndarray, outcome: np.ndarray, features: np.ndarray, m: int
) -> tuple[np.ndarray, np.ndarray]:
    """construct_style_matrices: every battle twice, a tie is one win each way."""
    n = a.size
    k = features.shape[1]
    x = np.zeros((2 * n, m + k))
    rows = np.arange(2 * n)
    x[rows, np.concatenate([a, a])] = math.log(10)
    x[rows, np.concatenate([b, b])] = -math.log(10)
    standard = (features - features.mean(axis=0)) / features.std(axis=0)
    x[:n, m:] = standard
    x[n:, m:] = standard
    y = np.zeros(2 * n)
    y[:n] = outcome == A_WINS
    y[n:] = outcome == A_WINS
    y[:n][outcome >= TIE] = 1.0
    return x, y


def fastchat_style_fit(x: np.ndarray, y: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    coef = lbfgs_logistic(x, y, None, l2=1.0, tol=1e-4)
    return 1000.0 + 400.0 * coef[:m], coef[m:]


def run_fastchat(data: dict[str, np.ndarray], scenario: Scenario) -> dict[str, Any]:
    a, b, outcome = data["model_a"], data["model_b"], data["outcome"]
    m, n = int(data["n_models"]), a.size
    rng = np.random.default_rng(0)
    started = time.perf_counter()
    if scenario.kind == "bt":
        point = fastchat_mle(a, b, outcome, m)
        fitted = time.perf_counter()
        rounds = []
        for _ in range(scenario.baseline_rounds):
            index = rng.integers(0, n, n)
            rounds.append(fastchat_mle(a[index], b[index], outcome[index], m))
    else:
        x, y = fastchat_style_matrices(a, b, outcome, data["features"], m)
        point, _ = fastchat_style_fit(x, y, m)
        fitted = time.perf_counter()
        rounds = []
        for _ in range(scenario.baseline_rounds):
            index = rng.integers(0, n, n)
            both = np.concatenate([index, index + n])
            rounds.append(fastchat_style_fit(x[both], y[both], m)[0])
    lower, upper = np.percentile(np.array(rounds), INTERVAL, axis=0)
    rank_from_intervals(lower, upper)
    finished = time.perf_counter()
    return {
        "seconds": finished - started,
        "fit_seconds": fitted - started,
        "rounds": scenario.baseline_rounds,
        "rating": point.tolist(),
    }


# --- Our engine ----------------------------------------------------------------------------------------


def run_ours(
    data: dict[str, np.ndarray], scenario: Scenario, workers: int, intervals: str = "bootstrap"
) -> dict[str, Any]:
    a, b, outcome = data["model_a"], data["model_b"], data["outcome"]
    m = int(data["n_models"])
    options: dict[str, Any] = {"bootstrap": scenario.bootstrap, "workers": workers, "intervals": intervals}
    started = time.perf_counter()
    if scenario.kind == "bt":
        result = rate(a, b, outcome, m, **options)
    else:
        result = rate_style(a, b, outcome, data["features"], m, **options).ratings
    return {
        "seconds": time.perf_counter() - started,
        "fit_seconds": None,
        "rounds": result.bootstrap,
        "rating": result.rating.tolist(),
    }


def worker(args: argparse.Namespace) -> None:
    scenario = Scenario(**json.loads(args.scenario_json))
    if args.worker == "fastchat-csv":
        report = run_fastchat_csv(Path(args.data), scenario)
        report["peak_mb"] = peak_mb()
        print(json.dumps(report))
        return
    data = {path.stem: np.load(path) for path in Path(args.data).glob("*.npy")}
    base = peak_mb()
    if args.worker == "fastchat":
        report = run_fastchat(data, scenario)
    elif args.worker == "sandwich":
        report = run_ours(data, scenario, workers=1, intervals="sandwich")
    else:
        report = run_ours(data, scenario, workers=1 if args.worker == "ours-1t" else 2)
    report["base_mb"] = base
    report["peak_mb"] = peak_mb()
    print(json.dumps(report))


def run_fastchat_csv(path: Path, scenario: Scenario) -> dict[str, Any]:
    """FastChat's pipeline on a battle file: pandas reads it, then compute_mle_elo and its bootstrap."""
    import pandas as pd  # here, so that no other worker carries pandas in its memory

    battles = pd.read_csv(path)
    codes, models = pd.factorize(pd.concat([battles["model_a"], battles["model_b"]]))
    n = len(battles)
    data = {
        "model_a": codes[:n],
        "model_b": codes[n:],
        "outcome": battles["winner"].map(WINNERS).to_numpy(),
        "n_models": np.array(len(models)),
    }
    report = run_fastchat(data, scenario)
    report["models"] = [str(name) for name in models]
    return report


def peak_mb() -> float:
    """Peak resident memory of this process so far, in MiB.

    VmHWM rather than ru_maxrss: Linux carries ru_maxrss across exec, so a worker started by a parent
    holding the generated data would report the parent's size.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cores() -> int:
    return max(1, min(4, len(os.sched_getaffinity(0))))


# --- Driver --------------------------------------------------------------------------------------------


def measure(engine: str, scenario: Scenario, data_path: Path) -> dict[str, Any]:
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        engine,
        "--data",
        str(data_path),
        "--scenario-json",
        json.dumps(scenario.__dict__),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{engine} failed on {scenario.name}:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def write_battle_csv(path: Path, scenario: Scenario, seed: int) -> None:
    """The scenario's battles as a CSV file in the public dumps' format, written by pyarrow."""
    import pyarrow as pa
    import pyarrow.csv

    data = generate(scenario, seed)
    names = pa.array([f"vendor{i % 7}-model-{i:03d}-2024-{1 + i % 12:02d}" for i in range(scenario.models)])
    winners = pa.array([WINNER_NAMES[code] for code in sorted(WINNER_NAMES)])
    table = pa.table(
        {
            "model_a": names.take(pa.array(data["model_a"])),
            "model_b": names.take(pa.array(data["model_b"])),
            "winner": winners.take(pa.array(data["outcome"])),
        }
    )
    pyarrow.csv.write_csv(table, path, pyarrow.csv.WriteOptions(quoting_style="needed"))


# Runs the command line as `python -m` does and reports the process's peak memory as it exits.
CLI = """
import runpy, sys
try:
    runpy.run_module("leaderboard.rating", run_name="__main__", alter_sys=True)
finally:
    status = open("/proc/self/status").read().split("VmHWM:")[1].split()[0]
    print("VmHWM", status, file=sys.stderr)
"""


def run_cli(checkout: Path, csv: Path, rounds: int) -> dict[str, Any]:
    command = [sys.executable, "-c", CLI, str(csv), "--bootstrap", str(rounds)]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=checkout, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"the command line in {checkout} failed:\n{done.stderr}")
    peak = int(done.stderr.split("VmHWM")[-1].split()[0]) / 1024
    # Table rows: rank, model, rating, interval, votes.
    rows = [line.split() for line in done.stdout.splitlines()[3:] if line.strip()]
    return {
        "seconds": seconds,
        "peak_mb": peak,
        "stdout": done.stdout,
        "rating": {row[1]: float(row[2]) for row in rows},
    }


def cli_scenario(args: argparse.Namespace) -> None:
    votes = args.votes or 2_000_000
    scenario = Scenario(
        f"cli {votes} votes / {args.models} models", "bt", votes, args.models, args.bootstrap or 1000, 0
    )
    baseline = Scenario(**{**scenario.__dict__, "baseline_rounds": args.baseline_rounds or 100})
    print(f"python {sys.version.split()[0]}, numpy {np.__version__}, {cores()} usable cores")
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "battles.csv"
        write_battle_csv(csv, scenario, args.seed)
        print(f"{scenario.name}: {csv.stat().st_size / 2**20:.0f} MB of CSV\n")
        checkouts = {"ours": REPO} | ({"base": Path(args.base).resolve()} if args.base else {})
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in checkouts}
        for _ in range(args.repeat):  # alternating, so that both meet the same moments of a busy machine
            for name, checkout in checkouts.items():
                runs[name].append(run_cli(checkout, csv, scenario.bootstrap))
        reports = {name: min(done, key=lambda report: report["seconds"]) for name, done in runs.items()}
        if "fastchat" in (args.engines or "fastchat").split(",") and baseline.baseline_rounds:
            command = [sys.executable, str(Path(__file__).resolve()), "--worker", "fastchat-csv"]
            command += ["--data", str(csv), "--scenario-json", json.dumps(baseline.__dict__)]
            started = time.perf_counter()
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise SystemExit(f"fastchat failed:\n{done.stderr}")
            report = json.loads(done.stdout.strip().splitlines()[-1])
            report["engine_seconds"], report["seconds"] = report["seconds"], time.perf_counter() - started
            report["rating"] = dict(zip(report["models"], report["rating"], strict=True))
            reports["fastchat"] = report

    ours = reports["ours"]
    header = (
        f"{'engine':<9} {'rounds':>6} {'seconds':>8} {'equiv s':>8} {'peak MB':>8} {'ratio':>6} "
        f"{'max |diff|':>10}  output"
    )
    print(header)
    print("-" * len(header))
    for name, report in reports.items():
        rounds, equivalent = scenario.bootstrap, report["seconds"]
        if name == "fastchat":
            rounds = baseline.baseline_rounds
            per_round = (report["engine_seconds"] - report["fit_seconds"]) / rounds
            equivalent = report["seconds"] + per_round * (scenario.bootstrap - rounds)
        mine = np.array([ours["rating"][model] for model in sorted(ours["rating"])])
        theirs = np.array([report["rating"][model] for model in sorted(ours["rating"])])
        diff = np.max(np.abs((mine - mine.mean()) - (theirs - theirs.mean())))
        output = (
            "" if name != "base" else ("same as ours" if report["stdout"] == ours["stdout"] else "DIFFERS")
        )
        ratio = f"{equivalent / ours['seconds']:.1f}x"
        print(
            f"{name:<9} {rounds:>6} {report['seconds']:>8.2f} {equivalent:>8.2f} {report['peak_mb']:>8.0f} "
            f"{ratio:>6} {diff:>10.2f}  {output}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--full", action="store_true", help="the full-size scenarios")
    parser.add_argument(
        "--scenario",
        choices=["bt", "style", "cli", "sandwich"],
        help="one custom scenario of this kind (cli, sandwich: see above)",
    )
    parser.add_argument("--votes", type=int, default=None, help="default 300000; cli 2000000")
    parser.add_argument("--models", type=int, default=100)
    parser.add_argument("--bootstrap", type=int, default=None, help="our rounds (default 1000 bt, 100 style)")
    parser.add_argument("--baseline-rounds", type=int, default=None, help="the baseline's rounds")
    parser.add_argument(
        "--engines",
        default=None,
        help="comma-separated engines to run (default ours-2t,ours-1t,fastchat; ours-2t,sandwich for "
        "--scenario sandwich)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="runs of each of our engines; the fastest is shown (a busy machine)",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--base", help="cli: a checkout of another commit whose command line runs beside ours"
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--scenario-json", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    if args.scenario == "cli":
        cli_scenario(args)
        return

    if args.scenario == "sandwich":
        scenarios = list(FULL)
        args.engines = args.engines or "ours-2t,sandwich"
    elif args.scenario:
        bootstrap = args.bootstrap or (1000 if args.scenario == "bt" else 100)
        votes = args.votes or 300_000
        name = f"{args.scenario} {votes} votes / {args.models} models"
        scenarios = [Scenario(name, args.scenario, votes, args.models, bootstrap, args.baseline_rounds or 10)]
    else:
        scenarios = FULL if args.full else SMALL
        if args.baseline_rounds is not None:
            scenarios = [
                Scenario(**{**s.__dict__, "baseline_rounds": args.baseline_rounds}) for s in scenarios
            ]
    engines = (args.engines or "ours-2t,ours-1t,fastchat").split(",")

    print(f"python {sys.version.split()[0]}, numpy {np.__version__}, {cores()} usable cores")
    header = (
        f"{'scenario':<30} {'engine':<9} {'rounds':>6} {'seconds':>8} {'equiv s':>8} "
        f"{'base MB':>8} {'peak MB':>8} {'ratio':>6} {'max |diff|':>10}"
    )
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory() as tmp:
        for number, scenario in enumerate(scenarios):
            data_path = Path(tmp) / f"{number}-{scenario.kind}"
            data_path.mkdir()
            for key, values in generate(scenario, args.seed).items():
                np.save(data_path / f"{key}.npy", values)
            reports = {
                engine: min(
                    (
                        measure(engine, scenario, data_path)
                        for _ in range(1 if engine == "fastchat" else args.repeat)
                    ),
                    key=lambda report: report["seconds"],
                )
                for engine in engines
                if engine != "fastchat" or scenario.baseline_rounds
            }
            ours = reports.get("ours-2t") or reports.get("ours-1t")
            for engine, report in reports.items():
                equivalent = report["seconds"]
                if report["fit_seconds"] is not None and report["rounds"]:
                    per_round = (report["seconds"] - report["fit_seconds"]) / report["rounds"]
                    equivalent = report["fit_seconds"] + per_round * scenario.bootstrap
                ratio = f"{equivalent / ours['seconds']:.1f}x" if ours else ""
                diff = ""
                if ours:
                    mine, theirs = np.array(ours["rating"]), np.array(report["rating"])
                    diff = f"{np.max(np.abs((mine - mine.mean()) - (theirs - theirs.mean()))):.3f}"
                memory = f"{report['base_mb']:>8.0f} {report['peak_mb']:>8.0f}"
                print(
                    f"{scenario.name:<30} {engine:<9} {report['rounds']:>6} {report['seconds']:>8.2f} "
                    f"{equivalent:>8.2f} {memory} {ratio:>6} {diff:>10}"
                )


if __name__ == "__main__":
    main()
