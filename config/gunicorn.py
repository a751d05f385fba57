"""gunicorn's settings for the web service: `gunicorn -c config/gunicorn.py config.asgi:application`."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

bind = "0.0.0.0:8000"
# Django's ASGI handler on uvicorn's event loop, one per process.
worker_class = "uvicorn_worker.UvicornWorker"
# Processes per container (gunicorn's own variable). More processes, or more replicas behind the
# load balancer, are how the web tier grows.
workers = int(os.environ.get("WEB_CONCURRENCY", "4"))
# A worker told to stop (a deploy, a scale-down) lets its answer streams end first: each lasts at
# most UPSTREAM_TOTAL_TIMEOUT.
graceful_timeout = int(float(os.environ.get("UPSTREAM_TOTAL_TIMEOUT", "300"))) + 30
# The client's address is read from X-Forwarded-For by Django alone, behind TRUSTED_PROXIES proxies
# (config/clients.py): the server trusts the header from no one, so REMOTE_ADDR stays the socket's
# peer (its default trusts 127.0.0.1, which would let any local process pass for any address).
forwarded_allow_ips = ""

# Metrics (config.metrics): each process writes its counts to files in PROMETHEUS_MULTIPROC_DIR, so
# that a scrape answered by any one process reports them all. A folder of this server's own unless
# set; emptied at start (counts of an earlier server would add up), a dead process's gauges dropped.
os.environ.setdefault(
    "PROMETHEUS_MULTIPROC_DIR", os.path.join(tempfile.gettempdir(), f"arena-prometheus-{os.getpid()}")
)


def on_starting(server: Any) -> None:
    folder = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.db"):
        stale.unlink()


def child_exit(server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
