"""What the platform adds to a streamed answer, and how many battles it holds at once.

Prints figures, asserts nothing.

    python bench/streaming.py                                   # all scenarios, a few minutes on two cores
    python bench/streaming.py --scenario gradio --gradio 100    # one scenario, another size
    python bench/streaming.py --database-url postgres://postgres@127.0.0.1:5432/bench_streaming
    python bench/streaming.py --workers 2 --redis-url redis://127.0.0.1:6379/9     # workers sharing a cache

Three processes, all on 127.0.0.1:
    upstream   this script in `upstream` mode: an OpenAI-compatible server (asyncio, uvloop) that
               streams "tokens" at a fixed pace; the model name says how many and how fast
               ("500x10": 500 tokens, one every 10 ms, the first at once)
    platform   uvicorn serving config.asgi, against SQLite in a temporary file (or --database-url),
               with pairs of models pointing at the upstream; battles go through the public API
               (POST /api/v1/battles/ in named mode, then GET .../stream)
    client     this process: raw asyncio HTTP/1.1 (a pure-Python HTTP parser would be the
               bottleneck at 50,000 events a second), timing every token with perf_counter

Scenarios
    latency      battles one at a time; time to first token and the gaps between tokens, straight
                 from the upstream and through the platform: the difference is what the platform adds;
                 then battles against a side 100 ms slower to its first token and 2 ms a token: each
                 side's times beside the slower side's own (ARENA_PACED_RELAY=false to compare)
    concurrency  N battles at once (2N upstream streams), each stream long enough that all overlap;
                 errors counted, and the most streams the upstream saw open at the same moment
    gradio       Gradio's streaming benchmark load: 250 battles at once, each side 500 tokens at 100
                 tokens/s (ideal 5.0 s a stream); completion time of each stream, direct and through
                 the platform, twice: as voters do (each battle's stream opened as soon as it is
                 created), then with every battle created first and all streams opened at one moment

"From POST" counts from the battle's creation request, as a voter waits; "from GET" from the
stream request, which is what starts the upstream calls. Battles opened as voters do start their
streams over the seconds their creation takes, which spreads the relaying: the second pass shows
what the relay alone holds when every stream runs at once. CPU time is printed for each process
(the platform, the upstream, this client): all three share the machine's cores.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import math
import os
import re
import resource
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import orjson
from wire import HOST, Upstream, call, sse

REPO = Path(__file__).resolve().parents[1]
T = TypeVar("T")
# Seconds a battle may take beyond its streams' own length before it counts as an error.
GRACE = 120.0
# This bench measures streaming, not the gate in front of it (arena/gate.py): one client address opens
# every battle, having accepted the terms, with no challenge to solve and caps it never reaches.
OPEN_GATE = {
    "ARENA_REQUIRE_CONSENT": "false",
    "ARENA_CHALLENGE": "off",
    "ARENA_READING_CHARS_PER_SECOND": "1000000000",  # django-environ reads "1e9" as 19
    **{
        cap: "1000000000"
        for cap in (
            "ARENA_BATTLES_PER_VISITOR_HOUR",
            "ARENA_BATTLES_PER_NETWORK_HOUR",
            "ARENA_VOTES_PER_VISITOR_DAY",
            "ARENA_VOTES_PER_NETWORK_DAY",
            "ARENA_OPEN_BATTLES_PER_VISITOR",
            "ARENA_OPEN_BATTLES_PER_NETWORK",
        )
    },
}

# --- measurements ---------------------------------------------------------------------------------------


@dataclass
class Stream:
    """One answer's timeline, in perf_counter seconds."""

    start: float  # the request that caused it (POST for the platform, the upstream call when direct)
    created: float = 0.0  # the battle's creation answered (platform only)
    stream_start: float = 0.0  # the GET of the battle's stream (= start when direct)
    tokens: list[float] = field(default_factory=list)
    done: float | None = None
    error: str = ""

    @property
    def ttft(self) -> float | None:
        return self.tokens[0] - self.start if self.tokens else None

    @property
    def last(self) -> float | None:
        return self.tokens[-1] - self.start if self.tokens else None

    @property
    def ttft_from_get(self) -> float | None:
        return self.tokens[0] - self.stream_start if self.tokens else None

    @property
    def gaps(self) -> list[float]:
        return [b - a for a, b in zip(self.tokens, self.tokens[1:], strict=False)]


async def direct_stream(port: int, model: str, limit: float) -> Stream:
    stream = Stream(start=time.perf_counter())
    stream.stream_start = stream.start
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": True}
    try:
        async with asyncio.timeout(limit):
            async for at, data in sse(port, "POST", "/v1/chat/completions", body):
                if data == "[DONE]":
                    stream.done = at
                    break
                choices = orjson.loads(data)["choices"]
                if choices and choices[0]["delta"].get("content"):
                    stream.tokens.append(at)
    except TimeoutError:
        stream.error = f"no end within {limit:g} s"
    except (OSError, RuntimeError, ValueError, asyncio.IncompleteReadError) as exc:
        stream.error = f"{type(exc).__name__}: {exc}"
    return stream


async def battle(
    port: int, pair: tuple[str, str], limit: float, together: Barrier | None = None
) -> tuple[Stream, Stream, str]:
    """One battle through the public API: (side a, side b, the battle's final state or an error).

    With `together`, the battle's stream is opened only once every battle of the barrier was created.
    """
    start = time.perf_counter()
    a, b = Stream(start=start), Stream(start=start)
    try:
        async with asyncio.timeout(limit):
            return await _battle(port, pair, a, b, together)
    except TimeoutError:
        return a, b, f"no end within {limit:g} s"
    except (OSError, RuntimeError, ValueError, StopIteration, asyncio.IncompleteReadError) as exc:
        return a, b, f"{type(exc).__name__}: {exc}"
    finally:
        if together is not None and not a.created:
            together.drop_out()


async def _battle(
    port: int, pair: tuple[str, str], a: Stream, b: Stream, together: Barrier | None
) -> tuple[Stream, Stream, str]:
    body = {"prompt": "hi", "mode": "named", "model_a": pair[0], "model_b": pair[1]}
    status, headers, data = await call(port, "POST", "/api/v1/battles/", body)
    if status != 201:
        raise RuntimeError(f"POST /battles/ answered {status}: {data[:200]!r}")
    cookie = next(v.split(";")[0] for k, v in headers if k == "set-cookie" and v.startswith("arena_visitor="))
    battle_id = json.loads(data)["id"]
    a.created = b.created = time.perf_counter()
    if together is not None:
        await together.wait()
    a.stream_start = b.stream_start = time.perf_counter()
    sides = {"a": a, "b": b}
    state = "no end event"
    async for at, raw in sse(port, "GET", f"/api/v1/battles/{battle_id}/stream", cookie=cookie):
        item = orjson.loads(raw)
        if item["type"] == "delta":
            sides[item["side"]].tokens.append(at)
        elif item["type"] == "done":
            sides[item["side"]].done = at
        elif item["type"] == "error":
            sides[item["side"]].error = item["text"]
        elif item["type"] == "end":
            state = item["state"]
    return a, b, state


class Barrier:
    """Releases its waiters once each of `parties` waits or drops out (a battle that failed first)."""

    def __init__(self, parties: int) -> None:
        self.parties = parties
        self.released = asyncio.Event()

    def drop_out(self) -> None:
        self.parties -= 1
        if self.parties <= 0:
            self.released.set()

    async def wait(self) -> None:
        self.drop_out()
        await self.released.wait()


def ms(values: list[float], q: float) -> float:
    """The q-quantile of seconds, in milliseconds (nearest rank)."""
    ordered = sorted(values)
    return (
        1000 * ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]
        if ordered
        else float("nan")
    )


# --- the platform ---------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class Platform:
    """uvicorn serving the project in a subprocess, with its own database and models."""

    def __init__(
        self, folder: Path, database_url: str | None, upstream_port: int, workers: int, redis_url: str | None
    ) -> None:
        self.port = free_port()
        self.log = folder / "uvicorn.log"
        self.env = {
            **os.environ,
            "DATABASE_URL": database_url or f"sqlite:///{folder / 'bench.sqlite3'}",
            "DEBUG": "false",  # no query log kept in memory, as in production
            "SECRET_KEY": secrets.token_urlsafe(50),
            "FIELD_ENCRYPTION_KEY": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
            "ALLOWED_HOSTS": HOST,
            "SECURE_SSL_REDIRECT": "false",
            **OPEN_GATE,
            "LOG_LEVEL": "WARNING",
        }
        self.env.pop("REDIS_URL", None)
        if redis_url:  # the cache the workers share (the throttle's counters, the recompute lock)
            self.env["REDIS_URL"] = redis_url
        self.upstream_port = upstream_port
        self.workers = workers
        self.folder = folder
        self.process: subprocess.Popen[bytes] | None = None

    def manage(self, *args: str) -> None:
        subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=REPO,
            env=self.env,
            check=True,
            stdout=subprocess.DEVNULL,
        )

    def models(self, paces: list[str]) -> None:
        entries = [
            {
                "name": f"bench-{side}-{pace}",
                "backend": "openai-compatible",
                "base_url": f"http://{HOST}:{self.upstream_port}/v1",
                "model": pace,
                "max_tokens": 100000,
            }
            for pace in paces
            for side in "ab"
        ]
        path = self.folder / "models.json"
        path.write_text(json.dumps({"models": entries}))
        self.manage("load_models", str(path))

    def start(self) -> None:
        argv = [
            sys.executable,
            "-m",
            "uvicorn",
            "config.asgi:application",
            "--host",
            HOST,
            "--port",
            str(self.port),
        ]
        argv += [
            "--log-level",
            "warning",
            "--no-access-log",
            "--workers",
            str(self.workers),
            "--backlog",
            "4096",
        ]
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                argv, cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        wait_until_listening(self.port, self.process, self.log)

    def stop(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()


def wait_until_listening(port: int, process: subprocess.Popen[bytes], log: Path | None = None) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"exited with {process.returncode}:\n{log.read_text()[-3000:] if log else ''}")
        try:
            socket.create_connection((HOST, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on port {port} after 60 s")


# --- scenarios ------------------------------------------------------------------------------------------


async def at_once(n: int, make: Callable[[], Awaitable[Any]]) -> list[Any]:
    return await asyncio.gather(*(make() for _ in range(n)))


def cpu_seconds(pid: int) -> float:
    """CPU time (user and system) of process `pid` and its children (uvicorn's workers) so far; Linux only."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if stat.parent.name == str(pid) or fields[1] == str(pid):
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


async def upstream_stats(port: int, path: str) -> dict[str, Any]:
    return json.loads((await call(port, "GET", path))[2])


def flat(battles: list[tuple[Stream, Stream, str]]) -> list[Stream]:
    return [s for a, b, _ in battles for s in (a, b)]


def failures(battles: list[tuple[Stream, Stream, str]]) -> list[str]:
    found = [state for a, b, state in battles if state != "ready"]
    found += [s.error for s in flat(battles) if s.error]
    return found


async def latency(platform: Platform, upstream_port: int, count: int, tokens: int, interval: int) -> None:
    pace = f"{tokens}x{interval}"
    limit = tokens * interval / 1000 + GRACE
    # Not counted: the first request of a fresh process imports modules and opens connections.
    await direct_stream(upstream_port, pace, limit)
    await battle(platform.port, (f"bench-a-{pace}", f"bench-b-{pace}"), limit)
    direct = [await direct_stream(upstream_port, pace, limit) for _ in range(2 * count)]
    battles = [
        await battle(platform.port, (f"bench-a-{pace}", f"bench-b-{pace}"), limit) for _ in range(count)
    ]
    through = flat(battles)
    print(
        f"\nlatency: {count} battles one at a time (after one to warm up), each side {tokens} tokens, "
        f"one every {interval} ms"
    )
    rows = [
        ("time to first token p50", [s.ttft for s in direct], [s.ttft for s in through], 0.5),
        ("time to first token p99", [s.ttft for s in direct], [s.ttft for s in through], 0.99),
        ("  (platform from GET) p50", [s.ttft for s in direct], [s.ttft_from_get for s in through], 0.5),
        ("  (platform from GET) p99", [s.ttft for s in direct], [s.ttft_from_get for s in through], 0.99),
        ("time to last token p50", [s.last for s in direct], [s.last for s in through], 0.5),
        ("time to last token p99", [s.last for s in direct], [s.last for s in through], 0.99),
        (
            "inter-token delay p50",
            [g for s in direct for g in s.gaps],
            [g for s in through for g in s.gaps],
            0.5,
        ),
        (
            "inter-token delay p99",
            [g for s in direct for g in s.gaps],
            [g for s in through for g in s.gaps],
            0.99,
        ),
    ]
    print(f"  {'ms':<28}{'direct':>10}{'platform':>10}{'added':>10}")
    for label, ours, theirs, q in rows:
        d, p = ms([v for v in ours if v is not None], q), ms([v for v in theirs if v is not None], q)
        print(f"  {label:<28}{d:>10.2f}{p:>10.2f}{p - d:>10.2f}")
    mean_gap = [statistics.fmean(s.gaps) for s in through if s.gaps]
    direct_gap = [statistics.fmean(s.gaps) for s in direct if s.gaps]
    print(f"  mean gap per stream (ms): direct {1000 * statistics.fmean(direct_gap):.3f}, "
          f"platform {1000 * statistics.fmean(mean_gap):.3f}")  # fmt: skip
    print(f"  errors: {len(failures(battles)) + sum(1 for s in direct if s.error)}")
    await uneven(platform, upstream_port, count, tokens, interval)


async def uneven(platform: Platform, upstream_port: int, count: int, tokens: int, interval: int) -> None:
    """Battles between a side and one slower by 100 ms to the first token and 2 ms a token: with the
    relay paced, what each side's voter-facing times cost beside the slower side's own."""
    fast, slow = f"{tokens}x{interval}", f"{tokens}x{interval + 2}x100"
    limit = tokens * (interval + 2) / 1000 + GRACE
    direct = {
        pace: [await direct_stream(upstream_port, pace, limit) for _ in range(count)] for pace in (fast, slow)
    }
    battles = [
        await battle(platform.port, (f"bench-a-{fast}", f"bench-b-{slow}"), limit) for _ in range(count)
    ]
    print(f"\nuneven: {count} battles one at a time, side a {fast}, side b {slow} (tokens x ms [x first ms])")
    print(f"  {'ms, p50':<28}{'a direct':>10}{'b direct':>10}{'a relayed':>10}{'b relayed':>10}")
    for label, of in (("time to first token", "ttft"), ("time to last token", "last")):
        figures = [[getattr(s, of) for s in streams] for streams in (direct[fast], direct[slow])]
        figures += [[getattr(played[n], of) for played in battles] for n in (0, 1)]
        row = "".join(f"{ms([v for v in f if v is not None], 0.5):>10.2f}" for f in figures)
        print(f"  {label:<28}{row}")
    print(f"  errors: {len(failures(battles))}")


async def concurrency(
    platform: Platform, upstream_port: int, levels: list[int], tokens: int, interval: int
) -> None:
    pace = f"{tokens}x{interval}"
    print(f"\nconcurrency: N battles started at once, each side {tokens} tokens, one every {interval} ms "
          f"({tokens * interval / 1000:g} s a stream)")  # fmt: skip
    print(f"  {'battles':>8}{'streams':>9}{'held at once':>14}{'errors':>8}"
          f"{'TTFT p50/p99 from POST (ms)':>30}{'from GET (ms)':>20}{'wall (s)':>10}")  # fmt: skip
    limit = tokens * interval / 1000 + GRACE
    for n in levels:
        await upstream_stats(upstream_port, "/reset")
        started = time.perf_counter()
        battles = await at_once(
            n, lambda: battle(platform.port, (f"bench-a-{pace}", f"bench-b-{pace}"), limit)
        )
        wall = time.perf_counter() - started
        stats = await upstream_stats(upstream_port, "/stats")
        streams = flat(battles)
        ttft = [s.ttft for s in streams if s.ttft is not None]
        from_get = [s.ttft_from_get for s in streams if s.ttft_from_get is not None]
        errors = failures(battles)
        print(f"  {n:>8}{stats['streams']:>9}{stats['max_open']:>14}{len(errors):>8}"
              f"{f'{ms(ttft, 0.5):.1f} / {ms(ttft, 0.99):.1f}':>30}"
              f"{f'{ms(from_get, 0.5):.1f} / {ms(from_get, 0.99):.1f}':>20}{wall:>10.1f}")  # fmt: skip
        for error in sorted(set(errors))[:5]:
            print(f"           e.g. {errors.count(error)} x {error[:150]}")


async def gradio(platform: Platform, upstream_port: int, n: int, tokens: int, interval: int) -> None:
    pace = f"{tokens}x{interval}"
    ideal = tokens * interval / 1000
    print(f"\ngradio load: {n} battles at once, each side {tokens} tokens at {1000 / interval:g} tokens/s "
          f"(ideal {ideal:.1f} s a stream)")  # fmt: skip
    limit = ideal + GRACE
    pair = (f"bench-a-{pace}", f"bench-b-{pace}")
    # The load itself costs CPU time on the same two cores: the upstream's and this client's, measured here.
    upstream_cpu = (await upstream_stats(upstream_port, "/stats"))["cpu"]
    client_cpu, direct_wall = time.process_time(), time.perf_counter()
    direct = await at_once(2 * n, lambda: direct_stream(upstream_port, pace, limit))
    upstream_cpu = (await upstream_stats(upstream_port, "/stats"))["cpu"] - upstream_cpu
    client_cpu, direct_wall = time.process_time() - client_cpu, time.perf_counter() - direct_wall
    # As voters: each battle opens its stream as soon as it is created.
    as_created, cpu, wall = await measured(
        platform, lambda: at_once(n, lambda: battle(platform.port, pair, limit))
    )
    # The streams alone: every battle created first, then all streams opened at the same moment.
    together = Barrier(n)
    at_one_moment, cpu_together, wall_together = await measured(
        platform, lambda: at_once(n, lambda: battle(platform.port, pair, limit, together))
    )
    within_label = f"within {ideal * 1.2:g} s"
    print(f"  {'stream completion (s)':<42}{'p50':>8}{'p99':>8}{'max':>8}{within_label:>14}{'errors':>8}")
    for label, streams, origin in (
        ("direct (2N streams)", direct, "start"),
        ("platform, from POST", flat(as_created), "start"),
        ("platform, from GET", flat(as_created), "stream_start"),
        ("platform, all streams opened at once, GET", flat(at_one_moment), "stream_start"),
    ):
        done = [s.done - getattr(s, origin) for s in streams if s.done is not None and not s.error]
        within = sum(1 for d in done if d <= ideal * 1.2)
        errors = sum(1 for s in streams if s.error or s.done is None)
        print(f"  {label:<42}{ms(done, 0.5) / 1000:>8.2f}{ms(done, 0.99) / 1000:>8.2f}"
              f"{max(done, default=math.nan):>8.2f}{f'{within}/{len(streams)}':>14}{errors:>8}")  # fmt: skip
    # Where a slow stream lost its time: getting started (the request path) or relaying tokens.
    for label, battles, used, took in (
        ("as created", as_created, cpu, wall),
        ("all at once", at_one_moment, cpu_together, wall_together),
    ):
        streams = flat(battles)
        created = [s.created - s.start for s in streams if s.created]
        started = [s.ttft_from_get for s in streams if s.ttft_from_get is not None]
        relayed = [s.done - s.tokens[0] for s in streams if s.done is not None and s.tokens and not s.error]
        print(f"  {label}: battle created (POST answered) p50/p99 {seconds(created)} s, "
              f"first token from GET {seconds(started)} s, first token to done {seconds(relayed)} s; "
              f"platform CPU {used:.1f} s over {took:.1f} s, "
              f"{1e6 * used / (2 * n * tokens):.1f} us a token, creation included")  # fmt: skip
    print(f"  direct: the upstream's CPU {upstream_cpu:.1f} s and this client's {client_cpu:.1f} s "
          f"over {direct_wall:.1f} s (all {2 * n * tokens:,} tokens)")  # fmt: skip


async def measured(platform: Platform, run: Callable[[], Awaitable[T]]) -> tuple[T, float, float]:
    """What `run` returned, the platform's CPU seconds meanwhile, and the wall seconds it took."""
    assert platform.process is not None
    cpu, wall = cpu_seconds(platform.process.pid), time.perf_counter()
    result = await run()
    return result, cpu_seconds(platform.process.pid) - cpu, time.perf_counter() - wall


def seconds(values: list[float]) -> str:
    return f"{ms(values, 0.5) / 1000:.2f}/{ms(values, 0.99) / 1000:.2f}"


# --- main -----------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", choices=["all", "latency", "concurrency", "gradio"], default="all")
    parser.add_argument("--latency", type=int, default=50, help="battles of the latency scenario")
    parser.add_argument("--battles", default="100,250,500", help="battles at once, per concurrency level")
    parser.add_argument("--gradio", type=int, default=250, help="battles of the Gradio load")
    parser.add_argument("--database-url", help="default: SQLite in a temporary file")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    parser.add_argument("--redis-url", help="the platform's cache; default: local memory, one per worker")
    parser.add_argument("--upstream", type=int, help=argparse.SUPPRESS)  # internal: serve the upstream here
    args = parser.parse_args()
    use_uvloop()
    # `timeout` or Ctrl-C: unwind, so the finally below stops the upstream and the platform.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    # A thousand streams are two thousand sockets between the three processes, which inherit this.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    if args.upstream:
        asyncio.run(Upstream().serve(args.upstream))
        return

    # Concurrency streams last 60 s, longer than opening 500 battles takes on two cores (~15 s), so
    # that every level's streams overlap: the figure is how many are held, not how fast they open.
    latency_pace, concurrency_pace, gradio_pace = (50, 10), (600, 100), (500, 10)
    with tempfile.TemporaryDirectory(prefix="bench-streaming-") as tmp:
        upstream_port = free_port()
        upstream = subprocess.Popen([sys.executable, __file__, "--upstream", str(upstream_port)])
        platform = Platform(Path(tmp), args.database_url, upstream_port, args.workers, args.redis_url)
        try:
            wait_until_listening(upstream_port, upstream)
            platform.manage("migrate", "--noinput")
            paces = [f"{t}x{i}" for t, i in (latency_pace, concurrency_pace, gradio_pace)]
            platform.models([*paces, f"{latency_pace[0]}x{latency_pace[1] + 2}x100"])
            platform.start()
            database = (
                "SQLite (temporary file)" if not args.database_url else args.database_url.split("@")[-1]
            )
            print("Streaming through the platform vs straight from the upstream: loopback, "
                  f"{os.cpu_count()} CPU cores, {args.workers} uvicorn worker(s), "
                  f"database {database}, cache {'Redis' if args.redis_url else 'local memory'}")  # fmt: skip
            if args.scenario in ("all", "latency"):
                asyncio.run(latency(platform, upstream_port, args.latency, *latency_pace))
            if args.scenario in ("all", "concurrency"):
                levels = [int(n) for n in re.split(r"[, ]+", args.battles) if n]
                asyncio.run(concurrency(platform, upstream_port, levels, *concurrency_pace))
            if args.scenario in ("all", "gradio"):
                asyncio.run(gradio(platform, upstream_port, args.gradio, *gradio_pace))
        finally:
            platform.stop()
            upstream.terminate()
            upstream.wait()
            logged = platform.log.read_text(errors="replace") if platform.log.exists() else ""
            if "Traceback" in logged or "ERROR" in logged:
                print("\nthe platform logged errors; the last lines:", *logged.splitlines()[-15:], sep="\n  ")


def use_uvloop() -> None:
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


if __name__ == "__main__":
    main()
