"""The reference solver for scripts: fetch the arena's proof-of-work challenge and solve it.

A scripted client pays what a browser pays (the same search, in Python):

    from arena.solve_challenge import solved_payload
    payload = solved_payload(client)  # an httpx.Client on the arena's base URL, cookies kept
    client.post("/api/v1/battles/", json={"prompt": "...", "challenge": payload})

or, from a shell, `python -m arena.solve_challenge http://127.0.0.1:8000` prints one payload
(keep the client's cookie and network the same as the battle's, since difficulty follows them).
Nothing here needs Django.
"""

from __future__ import annotations

import base64
import json
import sys
from typing import Any

import altcha
import httpx

CHALLENGE_PATH = "/api/v1/challenge/"


def solve(challenge: dict[str, Any]) -> str:
    """The payload that answers a challenge of ALTCHA's v1 format, base64 JSON as the API takes it."""
    solution = altcha.solve_challenge_v1(
        challenge["challenge"], challenge["salt"], challenge["algorithm"], challenge["maxNumber"]
    )
    if solution is None:
        raise ValueError("the challenge has no solution within its maxNumber")
    payload = {
        "algorithm": challenge["algorithm"],
        "challenge": challenge["challenge"],
        "number": solution.number,
        "salt": challenge["salt"],
        "signature": challenge["signature"],
    }
    return base64.b64encode(json.dumps(payload).encode()).decode()


def solved_payload(client: httpx.Client) -> str | None:
    """A fresh challenge from the arena, solved; None when the arena asks for none."""
    response = client.get(CHALLENGE_PATH)
    response.raise_for_status()
    if response.status_code == httpx.codes.NO_CONTENT:
        return None
    return solve(response.json())


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m arena.solve_challenge BASE_URL", file=sys.stderr)
        return 2
    with httpx.Client(base_url=argv[0], timeout=30) as client:
        print(solved_payload(client) or "")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
