"""A scripted voter against the running arena, defences off and on: votes accepted and counted. Prints
figures, asserts nothing.

    python bench/voter.py                  # 60 s per mode, 8 voters at once
    python bench/voter.py --seconds 20 --voters 4

The platform is uvicorn serving config.asgi on 127.0.0.1 with its own SQLite file and the demo models
answering at once (DEMO_TOKEN_DELAY=0), once per mode:
    off   today's platform without the gate: no consent, no challenge, no caps, no reading-time rule
    on    the embedded defaults (consent, proof-of-work, caps per visitor and network, too_fast)
The voter is the cheapest script that follows every rule it can see: a new cookie for each battle
(so no visitor cap ever binds), the terms accepted, the challenge solved with the reference solver
(arena/solve_challenge.py), both answers streamed, and, defences on, a wait of the answers' reading
time before voting (ARENA_READING_CHARS_PER_SECOND) so that no vote is set aside as too fast. All its
battles come from one network (127.0.0.1), as a script on one machine does. "Counted" reads the
platform's own vote table afterwards: accepted votes that no rule excluded.
"""

from __future__ import annotations

import argparse
import base64
import collections
import json
import os
import secrets
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from streaming import OPEN_GATE as OFF  # noqa: E402  (the gate switched off, as the streaming bench runs it)

from arena.solve_challenge import solved_payload  # noqa: E402  (the repository root, put on the path above)

HOST = "127.0.0.1"
PROMPTS = ["Why is the sky blue?", "How do tides work?", "What is a prime number?", "Explain recursion."]
READING_CHARS_PER_SECOND = 50.0  # the default of ARENA_READING_CHARS_PER_SECOND


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def serve(folder: Path, defences: bool) -> tuple[subprocess.Popen[bytes], str, Path]:
    database = folder / f"voter-{'on' if defences else 'off'}.sqlite3"
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{database}",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "FIELD_ENCRYPTION_KEY": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
        "DEMO_TOKEN_DELAY": "0",
        "LEADERBOARD_RECOMPUTE_ON_VOTE": "false",  # the bench counts votes, not boards
        "LOG_LEVEL": "WARNING",
        **({} if defences else OFF),
    }
    env.pop("REDIS_URL", None)
    for command in (["migrate", "--noinput"], ["load_models", "providers/demo_models.yaml"]):
        subprocess.run(
            [sys.executable, "manage.py", *command], cwd=REPO, env=env, check=True, capture_output=True
        )
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "config.asgi:application", "--host", HOST, "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://{HOST}:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{base}/healthz", timeout=1)
            return process, base, database
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("the platform did not start")


def one_vote(base: str, defences: bool, n: int, tally: collections.Counter[str]) -> None:
    with httpx.Client(base_url=base, timeout=60) as arena:  # a new cookie: a new visitor each time
        body: dict[str, Any] = {"prompt": PROMPTS[n % len(PROMPTS)]}
        if defences:
            terms = arena.get("/api/v1/visitor/consent").json()["terms_version"]
            arena.post("/api/v1/visitor/consent", json={"terms_version": terms})
            started = time.process_time()
            body["challenge"] = solved_payload(arena)
            tally["solve_cpu_ms"] += round((time.process_time() - started) * 1000)
        created = arena.post("/api/v1/battles/", json=body)
        if created.status_code != 201:
            tally[f"battle refused: {created.json().get('code')}"] += 1
            if created.status_code == 429:
                time.sleep(min(float(created.headers.get("Retry-After", "1")), 1.0))
            return
        battle = created.json()["id"]
        text = 0
        with arena.stream("GET", f"/api/v1/battles/{battle}/stream") as events:
            for line in events.iter_lines():
                if line.startswith("data:"):
                    event = json.loads(line[5:])
                    text += len(event.get("text") or "") if event.get("type") == "delta" else 0
        if defences:
            time.sleep(text / READING_CHARS_PER_SECOND + 0.3)  # the rule reads both answers in full
        vote = arena.post(f"/api/v1/battles/{battle}/vote/", json={"winner": "a"})
        tally[
            "votes accepted" if vote.status_code == 200 else f"vote refused: {vote.json().get('code')}"
        ] += 1


def run(defences: bool, seconds: float, voters: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        process, base, database = serve(Path(folder), defences)
        tally: collections.Counter[str] = collections.Counter()
        lock = threading.Lock()
        stop = time.monotonic() + seconds
        counter = iter(range(10**9))

        def voter() -> None:
            while time.monotonic() < stop:
                mine: collections.Counter[str] = collections.Counter()
                with lock:
                    n = next(counter)
                try:
                    one_vote(base, defences, n, mine)
                except httpx.HTTPError as exc:
                    mine[f"error: {type(exc).__name__}"] += 1
                with lock:
                    tally.update(mine)

        started = time.monotonic()
        threads = [threading.Thread(target=voter) for _ in range(voters)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - started
        process.terminate()
        process.wait(timeout=30)
        with sqlite3.connect(database) as db:
            excluded = dict(
                db.execute("SELECT excluded, COUNT(*) FROM arena_vote GROUP BY excluded").fetchall()
            )
    return {"elapsed": elapsed, "tally": tally, "excluded": excluded}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each mode's run")
    parser.add_argument("--voters", type=int, default=8, help="scripted voters at once, one network")
    args = parser.parse_args()
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} cores; "
        f"{args.voters} voters, {args.seconds:g} s a mode"
    )
    rows = []
    for defences in (False, True):
        result = run(defences, args.seconds, args.voters)
        tally, excluded = result["tally"], result["excluded"]
        hours = result["elapsed"] / 3600
        accepted = tally["votes accepted"]
        counted = excluded.get("", 0)
        rows.append((defences, accepted / hours, counted / hours))
        print(f"\ndefences {'on' if defences else 'off'} ({result['elapsed']:.0f} s):")
        for key, value in sorted(tally.items()):
            print(f"  {key:<40} {value}")
        print(f"  {'votes stored, by exclusion':<40} {excluded}")
    print("\nvotes an hour from one machine (accepted / counted):")
    for defences, accepted, counted in rows:
        print(f"  defences {'on ' if defences else 'off'}  {accepted:10.0f} / {counted:10.0f}")
    print(
        "  (one network's caps also bound the defended script: ARENA_VOTES_PER_NETWORK_DAY votes a day, "
        "ARENA_BATTLES_PER_NETWORK_HOUR battles an hour)"
    )


if __name__ == "__main__":
    main()
