"""CPU time per streamed event of the ways httpx can read an upstream's server-sent events.

Prints figures, asserts nothing.

    .venv/bin/python bench/transport.py                             # about two minutes on two cores
    .venv/bin/python bench/transport.py --streams 500 --interval 10  # the load of a busy worker
    .venv/bin/python bench/transport.py --variants httpcore,aiohttp --interval 0

Three kinds of process, on 127.0.0.1:
    upstream   bench/streaming.py in `upstream` mode: an asyncio (uvloop) server streaming
               OpenAI-style chat-completion chunks, one event per HTTP chunk, one every --interval ms
    variant    this script in `variant` mode, one process per variant, on uvloop as the ASGI server
               runs: after a few streams to open connections and load code, two rounds of --streams
               streams at once, each reporting its process CPU time / events and its wall time
                 bytes    the layer under the adapters: `client.stream`, `aiter_bytes`, EventParser
                 adapter  the whole OpenAI adapter (time limits, JSON, chunks) over the same
    main       this process: starts the others and prints their figures side by side

The default pace leaves the reader a core to spare, so that each read carries one event, as on a
quiet worker: a saturated reader finds several events a read and seems cheaper per event.

Variants
    httpcore          httpx's own transport (httpcore, h11, anyio) in pools of 64 streams, as the seam
                      had them, with sniffio not installed: every `import sniffio` of httpcore
                      searches sys.path again, as a missing module does
    httpcore+sniffio  the same with sniffio installed
    aiohttp           httpx over httpx_aiohttp.AiohttpTransport (aiohttp's connector and parser)
    providers.http    the seam's own client, `providers.http.client()`, as the platform uses it
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
VARIANTS = ["httpcore", "httpcore+sniffio", "aiohttp", "providers.http"]
POOL = 64  # streams a pool of the httpcore variants


# --- a variant ---------------------------------------------------------------------------------------


class NoSniffio(importlib.abc.MetaPathFinder):
    """`import sniffio` fails as it does where sniffio is not installed: after a search of sys.path."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name == "sniffio":
            importlib.machinery.PathFinder.find_spec("sniffio_not_installed")
            raise ModuleNotFoundError("No module named 'sniffio'", name=name)
        return None


def make_clients(variant: str, streams: int) -> list[Any]:
    """The clients the streams share: stream n takes the (n // POOL)th of the list, cycling."""
    import httpx

    if variant == "providers.http":
        from providers.http import client

        return [client()]
    if variant == "aiohttp":
        from httpx_aiohttp import AiohttpTransport

        # Room for every stream at once (aiohttp reads no limit as its default of 100).
        transport = AiohttpTransport(limits=httpx.Limits(max_connections=10_000))
        return [httpx.AsyncClient(transport=transport, timeout=None)]
    # httpcore's pool walks every connection it holds on each request and each response's end: one
    # pool of hundreds of streams costs more than reading them. Small pools, as the seam had.
    return [httpx.AsyncClient(timeout=None) for _ in range(-(-streams // POOL))]


async def measure(variant: str, port: int, streams: int, events: int, interval_ms: int) -> dict[str, float]:
    """Both rounds of a variant: its streams read as bytes, then through the adapter."""
    from providers.base import CallSpec
    from providers.openai import OpenAICompatible
    from providers.streaming import EventParser

    clients = make_clients(variant, streams)
    base_url = f"http://{HOST}:{port}/v1"

    async def as_bytes(client: Any, events: int) -> int:
        """The layer under the adapters: the body's pieces, cut into events."""
        parser = EventParser()
        read = 0
        model = {"model": f"{events}x{interval_ms}"}
        async with client.stream("POST", base_url + "/chat/completions", json=model) as response:
            async for piece in response.aiter_bytes():
                read += len(parser.feed(piece))
        return read - 4  # the role, finish and usage events, and [DONE]

    async def through_adapter(client: Any, events: int) -> int:
        spec = CallSpec(
            backend="openai-compatible",
            base_url=base_url,
            model=f"{events}x{interval_ms}",
            api_key="",
            temperature=0.0,
            max_tokens=events,
            first_token_timeout=60.0,
            total_timeout=600.0,
        )
        chunks = OpenAICompatible().stream(spec, [{"role": "user", "content": "Hi"}], client)
        return sum([chunk.deltas async for chunk in chunks if chunk.kind == "delta"])

    def share(streams: int) -> list[Any]:
        return [clients[n // POOL % len(clients)] for n in range(streams)]

    await asyncio.gather(*(as_bytes(client, 20) for client in share(min(streams, 20))))  # code loaded
    figures: dict[str, float] = {}
    for name, read in (("bytes", as_bytes), ("adapter", through_adapter)):
        cpu, wall = time.process_time(), time.perf_counter()
        total = sum(await asyncio.gather(*(read(client, events) for client in share(streams))))
        figures[f"{name}_cpu_us"] = (time.process_time() - cpu) / total * 1e6
        figures[f"{name}_wall_s"] = time.perf_counter() - wall
        if total != streams * events:
            raise SystemExit(f"{variant}: read {total} of {streams * events} events")
    for client in clients:
        await client.aclose()
    return figures


def run_variant(args: argparse.Namespace) -> None:
    if args.variant == "httpcore":
        sys.meta_path.insert(0, NoSniffio())
    sys.path.insert(0, str(REPO))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    figures = asyncio.run(measure(args.variant, args.port, args.streams, args.events, args.interval))
    print(json.dumps(figures))


# --- main --------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=200, help="streams at once")
    parser.add_argument("--events", type=int, default=250, help="events a stream")
    parser.add_argument("--interval", type=int, default=40, help="ms between a stream's events (0: no wait)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of {VARIANTS}")
    parser.add_argument("--variant", help=argparse.SUPPRESS)  # internal: measure this variant
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    import uvloop

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    if args.variant:
        run_variant(args)
        return

    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port = probe.getsockname()[1]
    # bench/streaming.py's upstream: the same OpenAI-style stream at the pace the model name gives.
    upstream = subprocess.Popen(
        [sys.executable, str(REPO / "bench" / "streaming.py"), "--upstream", str(port)]
    )
    try:
        while not listening(port):
            time.sleep(0.05)
        pace = f"one every {args.interval} ms" if args.interval else "as fast as read"
        print(f"{args.streams} streams x {args.events} events, {pace}; uvloop; {os.cpu_count()} CPU cores")
        print(f"{'':<18} {'bytes':<21} {'adapter':<21}")
        print(f"{'variant':<18} {'CPU µs/event  wall s':<21} {'CPU µs/event  wall s':<21}")
        for variant in args.variants.split(","):
            if variant == "httpcore+sniffio" and importlib.util.find_spec("sniffio") is None:
                print(f"{variant:<18} skipped: sniffio is not installed (pip install sniffio)")
                continue
            command = [sys.executable, __file__, "--variant", variant, "--port", str(port)]
            command += ["--streams", str(args.streams), "--events", str(args.events)]
            command += ["--interval", str(args.interval)]
            figures = json.loads(subprocess.run(command, check=True, stdout=subprocess.PIPE).stdout)
            row = [
                f"{figures[f'{r}_cpu_us']:>12.1f} {figures[f'{r}_wall_s']:>7.2f}"
                for r in ("bytes", "adapter")
            ]
            print(f"{variant:<18} {row[0]:<21} {row[1]:<21}")
    finally:
        upstream.terminate()
        upstream.wait()


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex((HOST, port)) == 0


if __name__ == "__main__":
    main()
