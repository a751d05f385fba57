"""Backup and restore as README.md ("Backup and restore") says: `pg_dump -Fc` of a database with
battles, votes and published snapshots, `pg_restore` into a fresh database; the restored snapshots
are the published ones, and a recompute there from the restored votes gives the same boards, byte
for byte, with the same votes digests and the same vote exports."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import subprocess
import sys
from collections.abc import Callable, Iterator
from itertools import combinations
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from leaderboard import dumps, services
from leaderboard.models import Snapshot
from providers.models import LLM
from tests.factories import voted_battle

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="needs PostgreSQL (DATABASE_URL=postgres://...): pg_dump and pg_restore back up that database",
)


def boards() -> str:
    """Every board's newest snapshot as published: what it counted, its digest, its ratings, and the
    SHA-256 of its vote export. Ids and times are left out: a recompute makes new ones."""
    described: dict[str, Any] = {}
    for board in sorted(set(Snapshot.objects.values_list("board", flat=True))):
        snapshot = services.latest_snapshot(board)
        export = dumps.snapshot_votes(snapshot)
        lines = "".join(dumps.export_lines(export.votes, skip=export.skip))
        described[board] = {
            "votes": snapshot.votes,
            "votes_digest": snapshot.votes_digest,
            "method": snapshot.method,
            "params": snapshot.params,
            "excluded": snapshot.excluded,
            "export_sha256": hashlib.sha256(lines.encode()).hexdigest(),
            "ratings": [
                [r.llm.name, r.rating, r.ci_lower, r.ci_upper, r.rank, r.rank_upper, r.votes, r.provisional]
                for r in snapshot.ratings.select_related("llm").order_by("llm__name")
            ],
        }
    return json.dumps(described, sort_keys=True)


# Run against the restored database, in a process of its own (its DATABASE_URL), with no Redis:
# what a restored site starts from is the database alone.
SCRIPT = """
import sys
import django
django.setup()
from leaderboard import services
from leaderboard.models import Snapshot
from tests.test_backup import boards
print(boards())
Snapshot.objects.all().delete()  # recomputed from the restored votes alone
assert services.recompute_all(), "the recompute published nothing"
print(boards())
"""


def pg(*args: str) -> subprocess.CompletedProcess[str]:
    db = connection.settings_dict
    env = {**os.environ, "PGHOST": db["HOST"] or "127.0.0.1", "PGPORT": str(db["PORT"] or 5432)}
    env |= {"PGUSER": db["USER"], "PGPASSWORD": db["PASSWORD"] or ""}
    result = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result


def url(name: str) -> str:
    db = connection.settings_dict
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{name}"


@pytest.fixture
def restored_db() -> Iterator[str]:
    """A fresh database's name (beside the project's own: `<name>_restore_<random>`), dropped at the end."""
    project = connection.settings_dict["NAME"].removeprefix("test_")
    name = f"{project}_restore_{secrets.token_hex(4)}"
    pg("createdb", name)
    yield name
    pg("dropdb", "--if-exists", "--force", name)


def test_a_dump_restored_into_a_fresh_database_gives_byte_identical_boards(
    transactional_db: None, make_llm: Callable[..., LLM], settings, restored_db: str, tmp_path: Path
) -> None:
    settings.LEADERBOARD_RECOMPUTE_ON_VOTE = False
    pairs = list(combinations([make_llm(organization="Org") for _ in range(4)], 2))
    for n in range(90):
        a, b = pairs[n % len(pairs)]
        voted_battle(a, b, "ab"[n % 3 == 0] if n % 7 else "tie", excluded="too_fast" if n % 11 == 0 else "")
    assert services.recompute_all()
    published = boards()
    assert json.loads(published)["overall"]["votes"] > 0

    dump = tmp_path / "arena.dump"
    pg("pg_dump", "-Fc", "--no-owner", "-f", str(dump), connection.settings_dict["NAME"])
    pg("pg_restore", "--no-owner", "--exit-on-error", "-d", restored_db, str(dump))

    env = {**os.environ, "DATABASE_URL": url(restored_db), "DJANGO_SETTINGS_MODULE": "config.settings"}
    env.pop("REDIS_URL", None)
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    restored, recomputed = result.stdout.splitlines()[-2:]
    assert restored == published, "the restored snapshots differ from the published ones"
    assert recomputed == published, "a recompute from the restored votes gives another board"
