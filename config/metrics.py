"""Prometheus metrics: their definitions, the helpers the services call, and the /metrics view.

Under gunicorn each process counts on its own; with PROMETHEUS_MULTIPROC_DIR set (config/gunicorn.py
sets it up) they write to files there and a scrape of any one process reads them all. Labels are
bounded: model names (the operators choose them), states and codes from the code, never anything a
visitor sent.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import ipaddress
import os
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

F = TypeVar("F", bound=Callable[..., Any])

# A configured folder that is not there (a fresh container, a cleaned /tmp) is made rather than
# failing every import: the counters' files are opened as the metrics below are defined.
if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)

BATTLES_STARTED = Counter("arena_battles_started_total", "Battles opened.", ["mode"])
BATTLES_REFUSED = Counter(
    "arena_battles_refused_total", "Battle starts refused, by the refusal's code.", ["reason"]
)
BATTLES_FAILED = Counter("arena_battles_failed_total", "Turns whose battle ended failed (an answer failed).")
VOTES = Counter(
    "arena_votes_total",
    "Votes stored, by outcome and exclusion (counted when none).",
    ["outcome", "excluded"],
)
VOTES_REFUSED = Counter("arena_votes_refused_total", "Votes refused, by the refusal's code.", ["reason"])
TTFT = Histogram(
    "arena_upstream_ttft_seconds",
    "Time from the call to the first token, per model.",
    ["model"],
    buckets=(0.1, 0.25, 0.5, 1, 2, 3, 5, 8, 13, 20, 30, 60),
)
TOKENS_PER_SECOND = Histogram(
    "arena_upstream_tokens_per_second",
    "Output tokens per second after the first, per model.",
    ["model"],
    buckets=(5, 10, 20, 30, 50, 75, 100, 150, 200, 300, 500),
)
ANSWERS = Counter("arena_upstream_answers_total", "Answers ended, per model and status.", ["model", "status"])
UPSTREAM_ERRORS = Counter(
    "arena_upstream_errors_total", "Failed upstream calls, per model and kind of failure.", ["model", "kind"]
)
STREAMS = Gauge(
    "arena_upstream_streams_in_flight", "Upstream answer streams running now.", multiprocess_mode="livesum"
)
RECOMPUTE = Histogram(
    "leaderboard_recompute_seconds",
    "Time to compute and publish one board, per board.",
    ["board"],
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
)


# --- what the services call --------------------------------------------------------------------


def counted_battle_start(start: F) -> F:
    """Around `battle_start`: each battle opened, by mode; each refusal, by its code."""

    @functools.wraps(start)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            battle = start(*args, **kwargs)
        except Exception as exc:
            BATTLES_REFUSED.labels(reason=refusal(exc)).inc()
            raise
        BATTLES_STARTED.labels(mode=battle.mode).inc()
        return battle

    return wrapper  # type: ignore[return-value]


def counted_vote(vote_on: F) -> F:
    """Around `battle_vote`: each vote stored, by outcome and exclusion; each refusal, by its code."""

    @functools.wraps(vote_on)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            vote = vote_on(*args, **kwargs)
        except Exception as exc:
            VOTES_REFUSED.labels(reason=refusal(exc)).inc()
            raise
        VOTES.labels(outcome=vote.winner, excluded=vote.excluded or "counted").inc()
        return vote

    return wrapper  # type: ignore[return-value]


def refusal(exc: BaseException) -> str:
    """A refusal's code (written in the code, so few), or "error" for anything else."""
    code = getattr(exc, "code", None)
    return code if isinstance(code, str) and code.isidentifier() and len(code) <= 40 else "error"


def answer_ended(
    model: str, outcome: dict[str, Any], *, started: float, first: float, last: float, deltas: int
) -> None:
    """One side's answer ended (`outcome` as recorded): its time to first token and its pace, when it
    streamed anything."""
    status, tokens = outcome["status"], outcome.get("output_tokens")
    ANSWERS.labels(model=model, status=status).inc()
    if deltas:
        TTFT.labels(model=model).observe(first - started)
        tokens = tokens or deltas
        if tokens > 1 and last > first:
            TOKENS_PER_SECOND.labels(model=model).observe((tokens - 1) / (last - first))


def upstream_failed(model: str, exc: BaseException) -> None:
    UPSTREAM_ERRORS.labels(model=model, kind=error_kind(exc)).inc()


def error_kind(exc: BaseException) -> str:
    status = getattr(exc, "status", None)
    if status == 429:
        return "rate_limited"
    if isinstance(status, int):
        return f"http_{status // 100}xx"
    if isinstance(exc, TimeoutError):
        return "timeout"
    if type(exc).__name__ == "UpstreamError":
        return "permanent" if getattr(exc, "permanent", False) else "connection"
    return "internal"


def streams_running(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Counts each task as an upstream stream until it is done."""
    for task in tasks:
        STREAMS.inc()
        task.add_done_callback(lambda _: STREAMS.dec())


def board_published(board: str, seconds: float) -> None:
    RECOMPUTE.labels(board=board).observe(seconds)


# --- read at scrape time -----------------------------------------------------------------------


class StateCollector(Collector):
    """What is read from Redis and the database when scraped: the task queue's depth, the board's age."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        depth = GaugeMetricFamily(
            "celery_queue_length", "Tasks waiting in the broker's queue.", labels=["queue"]
        )
        if not settings.CELERY_TASK_ALWAYS_EAGER and settings.CELERY_BROKER_URL.startswith(("redis", "unix")):
            from config.health import broker_client

            try:
                client = broker_client(settings.CELERY_BROKER_URL)
                for queue in settings.METRICS_QUEUES:
                    depth.add_metric([queue], client.llen(queue))
            except Exception:  # the broker down: no sample, and /readyz says why
                pass
        yield depth
        age = GaugeMetricFamily(
            "leaderboard_snapshot_age_seconds", "Age of the newest snapshot, per board.", labels=["board"]
        )
        lag = GaugeMetricFamily(
            "leaderboard_lag_seconds", "How long the oldest vote not yet on the overall board has waited."
        )
        try:
            from django.db.models import Max

            from config.health import board_lag
            from leaderboard.models import Snapshot

            now = time.time()
            for row in Snapshot.objects.values("board").annotate(newest=Max("created")):
                age.add_metric([row["board"]], now - row["newest"].timestamp())
            lag.add_metric([], board_lag())
        except Exception:  # the database down: no sample, and /readyz says why
            pass
        yield age
        yield lag


# --- the view ------------------------------------------------------------------------------------


def metrics(request: HttpRequest) -> HttpResponse:
    """The metrics in Prometheus' text format, for a scraper with the token or from an allowed network.

    Off (404) unless METRICS_TOKEN or METRICS_NETWORKS is set."""
    if not (settings.METRICS_TOKEN or settings.METRICS_NETWORKS):
        raise Http404("No metrics here.")
    if not allowed(request):
        return JsonResponse(
            {"detail": "Metrics are for the operators' scraper.", "code": "forbidden"}, status=403
        )
    return HttpResponse(exposition(), content_type=CONTENT_TYPE_LATEST)


def allowed(request: HttpRequest) -> bool:
    if token := settings.METRICS_TOKEN:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode()):
            return True
    # The socket's peer, never X-Forwarded-For: a scraper reaches the process directly.
    try:
        peer = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    return any(peer in ipaddress.ip_network(network) for network in settings.METRICS_NETWORKS)


def exposition() -> bytes:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    state = CollectorRegistry()
    state.register(StateCollector())
    return generate_latest(registry) + generate_latest(state)
