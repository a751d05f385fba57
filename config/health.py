"""Health of the process (/healthz) and of what it needs to serve (/readyz).

/healthz asks nothing of anyone: a liveness probe that restarted pods because the database was
down would turn an outage into a restart loop. /readyz asks each part the site needs and says which
one fails; READYZ_REQUIRED says which of them make it answer 503 (a web pod need not leave its
Service because the board is late, an external monitor may want to hear of it).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import redis
from django.conf import settings
from django.core.cache import cache
from django.db import connections
from django.http import HttpRequest, JsonResponse
from kombu import Connection

NOT_USED = "not used"
WORKER_HEARTBEAT_KEY = "arena:worker:heartbeat"
# A worker's heartbeat fires every 2 s; one write in this many seconds is plenty for READYZ_WORKER_SECONDS.
HEARTBEAT_WRITE_SECONDS = 10.0
# Seconds to wait for the broker: a probe that hangs is as bad as one that fails.
BROKER_TIMEOUT = 2.0


def healthz(request: HttpRequest) -> JsonResponse:
    """The process answers. No database, no cache: see /readyz for those."""
    return JsonResponse({"status": "ok"})


def readyz(request: HttpRequest) -> JsonResponse:
    """Each check's state, and 503 when a required one is not ok."""
    checks = readiness()
    ready = all(check["state"] in ("ok", NOT_USED) for check in checks.values() if check["required"])
    body = {"status": "ok" if ready else "unready", "checks": checks}
    return JsonResponse(body, status=200 if ready else 503)


def readiness() -> dict[str, dict[str, Any]]:
    required = set(settings.READYZ_REQUIRED)
    checks: dict[str, dict[str, Any]] = {}
    for name, check in CHECKS.items():
        try:
            found = check()
        except Exception as exc:  # any failure is this check's state; the reason goes to the operator
            found = {"state": type(exc).__name__}
        checks[name] = {**found, "required": name in required}
    return checks


def check_database() -> dict[str, Any]:
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT 1")
    return {"state": "ok"}


def check_cache() -> dict[str, Any]:
    cache.set("readyz", "ok", timeout=5)
    return {"state": "ok" if cache.get("readyz") == "ok" else "stale"}


def tasks_in_process() -> bool:
    return bool(settings.CELERY_TASK_ALWAYS_EAGER)


def check_broker() -> dict[str, Any]:
    if tasks_in_process():
        return {"state": NOT_USED}
    url = settings.CELERY_BROKER_URL
    if url.startswith(("redis://", "rediss://", "unix://")):
        broker_client(url).ping()
    else:
        with Connection(url, connect_timeout=BROKER_TIMEOUT) as connection:
            connection.ensure_connection(max_retries=1)
    return {"state": "ok"}


def broker_client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_connect_timeout=BROKER_TIMEOUT, socket_timeout=BROKER_TIMEOUT)


def check_worker() -> dict[str, Any]:
    if tasks_in_process():
        return {"state": NOT_USED}
    beat = cache.get(WORKER_HEARTBEAT_KEY)
    if beat is None:
        return {"state": "no heartbeat"}
    age = max(0.0, time.time() - float(beat))
    state = "ok" if age <= settings.READYZ_WORKER_SECONDS else "stale"
    return {"state": state, "age_seconds": round(age, 1)}


def check_snapshot() -> dict[str, Any]:
    """How long the oldest vote the overall board has not counted yet has waited."""
    lag = board_lag()
    state = "ok" if lag <= settings.READYZ_SNAPSHOT_SECONDS else "stale"
    return {"state": state, "lag_seconds": round(lag, 1)}


def board_lag() -> float:
    """Seconds since the oldest vote that no recompute has looked at yet; 0 when there is none."""
    from arena.models import Vote  # the wiring reads the apps, never the other way
    from leaderboard.models import Snapshot
    from leaderboard.services import CHECKED_KEY

    snapshot = Snapshot.objects.of_board("overall").latest_first().only("params").first()
    covered = (snapshot.params.get("filters") or {}).get("last_vote_id", 0) if snapshot else 0
    # A recompute that found nothing new to publish (votes on private variants, say) still counted
    # up to CHECKED_KEY: those votes are not waiting.
    try:
        covered = max(covered, int(cache.get(CHECKED_KEY) or 0))
    except Exception:  # the cache down: the snapshot alone says what is covered
        pass
    waiting = Vote.objects.filter(pk__gt=covered).order_by("pk").values_list("created", flat=True).first()
    return 0.0 if waiting is None else max(0.0, time.time() - waiting.timestamp())


CHECKS: dict[str, Callable[[], dict[str, Any]]] = {
    "database": check_database,
    "cache": check_cache,
    "broker": check_broker,
    "worker": check_worker,
    "snapshot": check_snapshot,
}

_last_heartbeat = 0.0


def worker_heartbeat(**kwargs: Any) -> None:
    """Celery's `heartbeat_sent`: the worker's consumer loop is alive; written where /readyz reads it."""
    global _last_heartbeat
    now = time.time()
    if now - _last_heartbeat < min(HEARTBEAT_WRITE_SECONDS, settings.READYZ_WORKER_SECONDS / 3):
        return
    try:
        cache.set(WORKER_HEARTBEAT_KEY, now, timeout=max(60, 3 * settings.READYZ_WORKER_SECONDS))
        _last_heartbeat = now
    except Exception:  # the cache down: /readyz says so on its own, the worker carries on
        pass
