"""A Celery worker killed with SIGKILL mid-recompute leaves no lock behind: the next recompute runs
and counts every vote stored."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from itertools import combinations

import pytest

from leaderboard import locks, services
from leaderboard.models import Snapshot
from leaderboard.tasks import recompute
from providers.models import LLM
from tests.factories import voted_battle
from tests.leaderboard.test_worker import ROOT, test_database_url
from tests.test_failsoft import RedisServer, own_broker, own_redis  # noqa: F401 (fixtures)

pytestmark = pytest.mark.worker


@pytest.fixture
def slow_worker(own_broker: RedisServer) -> Iterator[subprocess.Popen[bytes]]:  # noqa: F811
    """A worker on the test's own Redis whose recompute takes seconds (a long bootstrap)."""
    env = {
        **os.environ,
        "DATABASE_URL": test_database_url(),
        "REDIS_URL": own_broker.url,
        "LEADERBOARD_INTERVALS": "bootstrap",
        "LEADERBOARD_BOOTSTRAP": "20000",
    }
    command = [sys.executable, "-m", "celery", "-A", "config", "worker", "--pool=solo", "--loglevel=WARNING"]
    command += ["--without-heartbeat", "--without-gossip", "--without-mingle"]
    worker = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        yield worker
    finally:
        if worker.poll() is None:
            worker.kill()
        worker.wait(timeout=30)


def test_a_worker_killed_mid_recompute_leaves_no_lock_and_the_next_recompute_counts_every_vote(
    transactional_db: None, make_llm: Callable[..., LLM], slow_worker: subprocess.Popen[bytes], settings
) -> None:
    pairs = list(combinations([make_llm() for _ in range(4)], 2))
    for n in range(120):
        voted_battle(*pairs[n % len(pairs)], "ab"[n % 3 == 0])
    stored = 120
    recompute.delay()
    deadline = time.monotonic() + 60
    while not locks.is_held(services.LOCK):
        assert slow_worker.poll() is None and time.monotonic() < deadline, "the worker never took the lock"
        time.sleep(0.02)
    slow_worker.send_signal(signal.SIGKILL)
    slow_worker.wait(timeout=10)
    assert not Snapshot.objects.exists(), "killed before it published"

    deadline = time.monotonic() + 5
    while locks.is_held(services.LOCK):
        assert time.monotonic() < deadline, "the killed worker's lock outlived it"
        time.sleep(0.05)
    settings.LEADERBOARD_BOOTSTRAP = 20
    published = services.recompute_all()
    assert published, "the next recompute ran"
    overall = Snapshot.objects.get(board="overall")
    assert overall.votes == stored
