"""A real `celery worker` process consumes the recompute task from Redis and publishes a snapshot."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from leaderboard.models import Snapshot
from leaderboard.tasks import recompute
from providers.models import LLM
from tests.factories import voted_battle

pytestmark = [
    pytest.mark.worker,
    pytest.mark.skipif(not settings.REDIS_URL, reason="needs REDIS_URL: a worker consumes tasks from Redis"),
]

ROOT = Path(__file__).resolve().parents[2]


def test_database_url() -> str:
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or 'localhost'}:{db['PORT'] or 5432}/{db['NAME']}"


test_database_url.__test__ = False  # type: ignore[attr-defined]


@contextmanager
def celery_worker(**env: str) -> Iterator[subprocess.Popen[str]]:
    """A real worker process on the test database, consuming from Redis; its output must hold no
    traceback."""
    environ = {**os.environ, "DATABASE_URL": test_database_url(), **env}
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "--pool=solo",
            "--loglevel=WARNING",
            "--without-heartbeat",
            "--without-gossip",
            "--without-mingle",
        ],
        cwd=ROOT,
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield worker
    finally:
        worker.terminate()
        output, _ = worker.communicate(timeout=30)
    assert "Traceback" not in output, output


def test_a_worker_process_consumes_the_recompute_task(
    transactional_db: None, make_llm: Callable[..., LLM]
) -> None:
    a, b = make_llm(), make_llm()
    for winner in "aab":
        voted_battle(a, b, winner)
    with celery_worker(LEADERBOARD_INTERVALS="bootstrap", LEADERBOARD_BOOTSTRAP="100") as worker:
        recompute.delay()
        deadline = time.monotonic() + 60
        while not Snapshot.objects.exists() and time.monotonic() < deadline and worker.poll() is None:
            time.sleep(0.2)
        snapshot = Snapshot.objects.first()
        assert snapshot is not None, "the worker published no snapshot"
        assert snapshot.votes == 3 and snapshot.params["bootstrap"] == 100
        assert snapshot.ratings.count() == 2
