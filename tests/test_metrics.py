"""/metrics: refused to the public, and what a battle and a vote through the API count there."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from django.test import Client
from httpx_sse import connect_sse
from prometheus_client import multiprocess
from prometheus_client.parser import text_string_to_metric_families

from leaderboard import services
from providers.models import LLM
from tests.test_health import RedisServer, on_redis, own_redis  # noqa: F401 (fixtures)
from tests.upstream import Behaviour, FakeOpenAI

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "scrape-me-" + "x" * 20


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(found: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def test_it_is_off_unless_a_token_or_a_network_is_set(db: None, client: Client, settings: Any) -> None:
    settings.METRICS_TOKEN, settings.METRICS_NETWORKS = "", []
    assert client.get("/metrics").status_code == 404
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 404


def test_it_answers_only_the_bearer_of_the_token(db: None, client: Client, settings: Any) -> None:
    settings.METRICS_TOKEN = TOKEN
    assert client.get("/metrics").status_code == 403
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 403
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Basic {TOKEN}").status_code == 403
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    names = {family.name for family in text_string_to_metric_families(response.content.decode())}
    assert {"arena_votes", "arena_upstream_ttft_seconds", "leaderboard_lag_seconds"} <= names


def test_it_answers_a_scraper_from_an_allowed_network(db: None, client: Client, settings: Any) -> None:
    settings.METRICS_NETWORKS = ["10.0.0.0/8"]
    assert client.get("/metrics").status_code == 403  # the test client is 127.0.0.1
    assert client.get("/metrics", HTTP_X_FORWARDED_FOR="10.1.2.3").status_code == 403
    settings.METRICS_NETWORKS = ["127.0.0.0/8"]
    assert client.get("/metrics").status_code == 200


@pytest.fixture
def web(openai_upstream: FakeOpenAI, live_asgi: str, settings: Any) -> Iterator[httpx.Client]:
    settings.METRICS_TOKEN = TOKEN
    settings.LEADERBOARD_BOOTSTRAP = 10
    openai_upstream.behaviours["alpha-up"] = Behaviour(text="The first answer, in several words.")
    openai_upstream.behaviours["beta-up"] = Behaviour(text="A second answer that differs.")
    common = {"backend": LLM.Backend.OPENAI_COMPATIBLE, "base_url": openai_upstream.base_url}
    LLM.objects.create(name="alpha-chat", model="alpha-up", **common)
    LLM.objects.create(name="beta-chat", model="beta-up", **common)
    with httpx.Client(base_url=live_asgi, timeout=30) as client:
        yield client


def scrape(web: httpx.Client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = web.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    return samples(response.text)


def test_a_battle_and_a_vote_through_the_api_move_the_counters(web: httpx.Client) -> None:
    before = scrape(web)
    assert web.post("/api/v1/battles/", json={"prompt": "   "}).status_code == 400
    response = web.post("/api/v1/battles/", json={"prompt": "Why is the sky blue?"})
    assert response.status_code == 201
    battle_id = response.json()["id"]
    with connect_sse(web, "GET", f"/api/v1/battles/{battle_id}/stream") as source:
        assert [e for e in source.iter_sse()]
    assert web.post(f"/api/v1/battles/{battle_id}/vote/", json={"winner": "a"}).status_code == 200
    assert web.post(f"/api/v1/battles/{battle_id}/vote/", json={"winner": "a"}).status_code == 409
    services.recompute_all()  # as the worker would (or the vote itself, without Redis)
    after = scrape(web)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("arena_battles_started_total", mode="anonymous") == 1
    assert moved("arena_battles_refused_total", reason="empty_prompt") == 1
    assert moved("arena_votes_total", outcome="a", excluded="counted") == 1
    assert moved("arena_votes_refused_total", reason="already_voted") == 1
    for model in ("alpha-chat", "beta-chat"):
        assert moved("arena_upstream_answers_total", model=model, status="done") == 1
        assert moved("arena_upstream_ttft_seconds_count", model=model) == 1
    assert value(after, "arena_upstream_streams_in_flight") == 0
    assert moved("leaderboard_recompute_seconds_count", board="overall") >= 1
    assert value(after, "leaderboard_lag_seconds") == 0
    assert ("leaderboard_snapshot_age_seconds", (("board", "overall"),)) in after


def test_a_failing_model_shows_in_its_error_count(web: httpx.Client, openai_upstream: FakeOpenAI) -> None:
    openai_upstream.behaviours["beta-up"] = Behaviour(status=503)
    before = scrape(web)
    battle_id = web.post("/api/v1/battles/", json={"prompt": "Why is the sky blue?"}).json()["id"]
    with connect_sse(web, "GET", f"/api/v1/battles/{battle_id}/stream") as source:
        assert [e for e in source.iter_sse()]
    after = scrape(web)
    errors = value(after, "arena_upstream_errors_total", model="beta-chat", kind="http_5xx") - value(
        before, "arena_upstream_errors_total", model="beta-chat", kind="http_5xx"
    )
    assert errors == 1
    assert value(after, "arena_battles_failed_total") - value(before, "arena_battles_failed_total") == 1


SETUP = """
import os, sys, django
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup()
"""
WRITER = """
from config import metrics
metrics.VOTES.labels(outcome="tie", excluded="counted").inc({n})
metrics.STREAMS.inc()
"""


def test_processes_sharing_the_multiprocess_folder_are_scraped_as_one(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "config.settings",
    }
    pids = []
    for n in (2, 3):
        writer = subprocess.Popen([sys.executable, "-c", SETUP + WRITER.format(n=n)], cwd=ROOT, env=env)
        assert writer.wait(timeout=60) == 0
        pids.append(writer.pid)

    def scraped() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        code = SETUP + "from config.metrics import exposition\nsys.stdout.write(exposition().decode())"
        run = subprocess.run(
            [sys.executable, "-c", code],
            cwd=ROOT,
            env=env,
            check=True,
            timeout=60,
            capture_output=True,
            text=True,
        )
        return samples(run.stdout)

    found = scraped()
    assert value(found, "arena_votes_total", outcome="tie", excluded="counted") == 5
    assert value(found, "arena_upstream_streams_in_flight") == 2
    # What gunicorn's child_exit does (config/gunicorn.py): a dead process's streams are not running.
    for pid in pids:
        multiprocess.mark_process_dead(pid, str(tmp_path))
    found = scraped()
    assert value(found, "arena_upstream_streams_in_flight") == 0
    assert value(found, "arena_votes_total", outcome="tie", excluded="counted") == 5


def test_the_queue_depth_is_the_length_of_the_brokers_list(
    db: None,
    client: Client,
    on_redis: RedisServer,  # noqa: F811 (the fixture)
    settings: Any,
) -> None:
    url, server = on_redis
    settings.METRICS_TOKEN = TOKEN
    redis.Redis.from_url(url).rpush("celery", "a task", "another", "a third")
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert value(samples(response.content.decode()), "celery_queue_length", queue="celery") == 3
    server.terminate()
    server.wait(timeout=10)
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200  # the broker down leaves the queue unknown, not the scrape failed
    assert ("celery_queue_length", (("queue", "celery"),)) not in samples(response.content.decode())


def test_a_configured_metrics_folder_that_is_missing_is_made(tmp_path: Path) -> None:
    """A fresh container or a cleaned /tmp: importing the metrics must not fail on the folder."""
    folder = tmp_path / "not-yet"
    env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=str(folder), DJANGO_SETTINGS_MODULE="config.settings")
    code = "import django; django.setup(); import config.metrics"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert folder.is_dir()
