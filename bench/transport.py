"""CPU time of reading an upstream's server-sent events: per relayed event and per call.

Prints figures, asserts nothing.

    .venv/bin/python bench/transport.py                             # this tree's ways, a few minutes
    .venv/bin/python bench/transport.py --baseline ../start --rounds 2  # and another checkout's seam
    .venv/bin/python bench/transport.py --streams 500 --interval 10  # the load of a busy worker

Processes, on 127.0.0.1:
    upstream   bench/streaming.py in `upstream` mode: an asyncio (uvloop) server streaming
               OpenAI-style chat-completion chunks, one event per HTTP chunk, one every --interval ms
    way        this script in `way` mode, one process per way and round, on uvloop as the ASGI
               server runs; after a few calls to open connections and load code:
                 paced      --streams streams at once, --events events each, at the upstream's pace:
                            about one event a read, as on a quiet worker
                 saturated  the same as fast as they can be read: several events a read, as on a
                            busy worker
                 call       --streams calls at once of one event each, --calls in all: the CPU time
                            a call costs besides its events (request, response head, pool, adapter)
               Paced and saturated are measured twice: `bytes`, the layer under the adapters (the
               client's stream and the event parser), and `adapter`, the whole OpenAI adapter
               (time limits, JSON, chunks) over it.
    main       this process: starts the others and prints their figures side by side

Ways
    seam       `providers.http.client()` and `providers.streaming.EventParser`, as the platform
               reads a vendor (also of --baseline, a checkout of another commit, in its own process)
    httpx      httpx's own transport (httpcore, h11, anyio), one pool of up to 2048 connections, 64
               kept alive; the same parser
    httpx-sse  the seam's client, its events parsed by httpx-sse's `EventSource` (bytes only)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
WAYS = ["seam", "httpx", "httpx-sse"]


# --- a way ------------------------------------------------------------------------------------------


def make_client(way: str) -> Any:
    import httpx

    if way == "httpx":
        # As a seam on httpx alone would have it: idle connections beyond the keep-alive cap are closed.
        limits = httpx.Limits(max_connections=2048, max_keepalive_connections=64, keepalive_expiry=30)
        return httpx.AsyncClient(timeout=None, limits=limits)
    from providers.http import client

    return client()


async def measure(args: argparse.Namespace) -> dict[str, float]:
    """The figures of one way: CPU µs per event (paced and saturated, bytes and adapter) and per call."""
    from providers.base import CallSpec
    from providers.openai import OpenAICompatible
    from providers.streaming import EventParser

    client = make_client(args.way)
    base_url = f"http://{HOST}:{args.port}/v1"

    async def as_bytes(events: int, interval: int) -> int:
        """The layer under the adapters: the body's pieces, cut into events."""
        read = 0
        model = {"model": f"{events}x{interval}"}
        async with client.stream("POST", base_url + "/chat/completions", json=model) as response:
            if args.way == "httpx-sse":
                from httpx_sse import EventSource

                async for _ in EventSource(response).aiter_sse():
                    read += 1
            else:
                parser = EventParser()
                async for piece in response.aiter_bytes():
                    read += len(parser.feed(piece))
        return read - 4  # the role, finish and usage events, and [DONE]

    async def through_adapter(events: int, interval: int) -> int:
        spec = CallSpec(
            backend="openai-compatible",
            base_url=base_url,
            model=f"{events}x{interval}",
            api_key="",
            temperature=0.0,
            max_tokens=events,
            first_token_timeout=60.0,
            total_timeout=600.0,
        )
        chunks = OpenAICompatible().stream(spec, [{"role": "user", "content": "Hi"}], client)
        return sum([chunk.deltas async for chunk in chunks if chunk.kind == "delta"])

    async def cpu_us(calls: list[Callable[[], Awaitable[int]]], at_once: int, per: str) -> float:
        """CPU µs of the process per event read (per="event") or per call made (per="call")."""
        cpu = time.process_time()
        read = 0
        for start in range(0, len(calls), at_once):
            read += sum(await asyncio.gather(*(call() for call in calls[start : start + at_once])))
        used = time.process_time() - cpu
        return used / (read if per == "event" else len(calls)) * 1e6

    await asyncio.gather(*(as_bytes(20, 0) for _ in range(20)))  # connections opened, code loaded
    figures: dict[str, float] = {}
    layers = (
        {"bytes": as_bytes} if args.way == "httpx-sse" else {"bytes": as_bytes, "adapter": through_adapter}
    )
    for pace, interval in (("paced", args.interval), ("saturated", 0)):
        for layer, read in layers.items():
            streams = [lambda read=read, interval=interval: read(args.events, interval)] * args.streams
            figures[f"{pace} {layer}"] = await cpu_us(streams, args.streams, "event")
    if args.way != "httpx-sse":
        calls = [lambda: through_adapter(1, 0)] * args.calls
        figures["call"] = await cpu_us(calls, args.streams, "call")
    await client.aclose()
    return figures


def run_way(args: argparse.Namespace) -> None:
    sys.path.insert(0, args.tree)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django
    import uvloop

    django.setup()
    print(json.dumps(uvloop.run(measure(args))))


# --- main ---------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=200, help="streams (and calls) at once")
    parser.add_argument("--events", type=int, default=250, help="events a stream")
    parser.add_argument("--interval", type=int, default=40, help="ms between a paced stream's events")
    parser.add_argument("--calls", type=int, default=2000, help="calls of one event, for the cost of a call")
    parser.add_argument("--ways", default=",".join(WAYS), help=f"comma-separated, of {WAYS}")
    parser.add_argument("--baseline", help="a checkout of another commit: its seam is measured too")
    parser.add_argument("--rounds", type=int, default=1, help="times each way is measured, alternating")
    parser.add_argument("--way", help=argparse.SUPPRESS)  # internal: measure this way
    parser.add_argument("--tree", default=str(REPO), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.way:
        run_way(args)
        return

    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port = probe.getsockname()[1]
    # bench/streaming.py's upstream: the same OpenAI-style stream at the pace the model name gives.
    upstream = subprocess.Popen(
        [sys.executable, str(REPO / "bench" / "streaming.py"), "--upstream", str(port)]
    )
    runs = [(way, str(REPO)) for way in args.ways.split(",")]
    if args.baseline:
        runs.insert(0, ("seam", str(Path(args.baseline).resolve())))
    try:
        while not listening(port):
            time.sleep(0.05)
        print(f"{args.streams} streams at once x {args.events} events, paced one every {args.interval} ms or "
              f"saturated; {args.calls} calls of one event; uvloop; {os.cpu_count()} CPU cores")  # fmt: skip
        columns = ["paced bytes", "paced adapter", "saturated bytes", "saturated adapter", "call"]
        print(f"{'CPU µs per event, per call':<32}" + "".join(f"{c:>18}" for c in columns))
        for _ in range(args.rounds):
            for way, tree in runs:
                command = [sys.executable, __file__, "--way", way, "--tree", tree, "--port", str(port)]
                command += ["--streams", str(args.streams), "--events", str(args.events)]
                command += ["--interval", str(args.interval), "--calls", str(args.calls)]
                out = subprocess.run(command, check=True, stdout=subprocess.PIPE, cwd=tree).stdout
                figures = json.loads(out.splitlines()[-1])
                label = f"{way} ({commit(tree)})"
                print(f"{label:<32}" + "".join(f"{figures.get(c, float('nan')):>18.1f}" for c in columns))
    finally:
        upstream.terminate()
        upstream.wait()


def commit(tree: str) -> str:
    """The checkout's commit, marked + when its files differ from it."""
    head = subprocess.run(["git", "-C", tree, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(
        ["git", "-C", tree, "status", "--porcelain", "--untracked-files=no"], capture_output=True
    )
    return head.stdout.strip() + ("+" if dirty.stdout else "")


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex((HOST, port)) == 0


if __name__ == "__main__":
    main()
