"""Log lines: one JSON object each, every line of a request and of the tasks it queued carrying
the request's id (config/logs.py), a client's id kept only when it is a plain token."""

from __future__ import annotations

import contextvars
import io
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.test import Client
from django.urls import path

from config import logs
from config.celery_app import app as celery_app
from config.logs import TASK_HEADER, JsonFormatter, RequestIdFilter, logging_config, request_id
from leaderboard.models import Snapshot
from leaderboard.tasks import recompute
from tests.leaderboard.test_worker import ROOT, test_database_url

view_log = logging.getLogger("tests.view")


def queue_a_task(request: HttpRequest) -> JsonResponse:
    """A view that logs a line and queues the recompute, as a vote does."""
    view_log.info("queueing the recompute")
    recompute.delay()
    return JsonResponse({"queued": True})


urlpatterns = [path("queue/", queue_a_task)]


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """What the root logger writes, as the JSON format writes it."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield stream
    root.removeHandler(handler)
    root.setLevel(level)


def records(stream: io.StringIO) -> list[dict[str, Any]]:
    # Every line must be one JSON object: json.loads fails on anything else.
    return [json.loads(line) for line in stream.getvalue().splitlines()]


@pytest.fixture
def eager() -> Iterator[None]:
    saved = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = saved


def test_a_request_and_the_task_it_queued_log_the_same_id(
    db: None, settings: Any, json_lines: io.StringIO, eager: None
) -> None:
    settings.ROOT_URLCONF = "tests.test_logs"
    response = Client().get("/queue/", HTTP_X_REQUEST_ID="trace-0123456789abcdef")
    assert response.status_code == 200
    assert response["X-Request-ID"] == "trace-0123456789abcdef"
    lines = records(json_lines)
    by_logger = {line["logger"]: line for line in lines}
    assert by_logger["tests.view"]["request_id"] == "trace-0123456789abcdef"
    assert by_logger["leaderboard.tasks"]["request_id"] == "trace-0123456789abcdef"
    assert by_logger["leaderboard.tasks"]["message"].startswith("Recompute published")
    access = by_logger["config.requests"]
    assert (access["method"], access["path"], access["status"]) == ("GET", "/queue/", 200)
    assert access["request_id"] == "trace-0123456789abcdef"
    assert request_id.get() == "", "the id outlived its request"


@pytest.mark.parametrize(
    "header",
    [
        "abc\r\nX-Injected: 1",
        "a" * 10_000,
        '", "level": "CRITICAL", "message": "forged',
        "short",
        "id with spaces 1234",
        "ünïcode-1234567",
    ],
)
def test_a_malicious_request_id_is_replaced(db: None, json_lines: io.StringIO, header: str) -> None:
    response = Client().get("/healthz", HTTP_X_REQUEST_ID=header)
    sent = response["X-Request-ID"]
    assert sent != header and len(sent) == 32 and int(sent, 16) >= 0  # a fresh uuid4, in hex
    (line,) = [r for r in records(json_lines) if r["logger"] == "config.requests"]
    assert line["request_id"] == sent and line["level"] == "INFO"
    assert "forged" not in json_lines.getvalue() and "X-Injected" not in json_lines.getvalue()


class FakeRequest(dict):
    is_eager = False


@pytest.mark.parametrize("carried", ["from-the-edge-42", "evil\nline-12345", {"id": 1}, None])
def test_a_task_carries_its_header_only_when_it_is_a_plain_token(carried: object) -> None:
    task = SimpleNamespace(request=FakeRequest({TASK_HEADER: carried}))
    context = contextvars.copy_context()
    context.run(logs.task_started, task=task)
    value = context[request_id]
    if carried == "from-the-edge-42":
        assert value == carried
    else:
        assert len(value) == 32 and int(value, 16) >= 0
    context.run(logs.task_finished, task=task)
    assert context[request_id] == ""


def test_under_asgi_the_id_is_sent_back_and_logged(live_asgi: str, json_lines: io.StringIO) -> None:
    with httpx.Client(base_url=live_asgi) as web:  # one connection for both requests
        first = web.get("/healthz", headers={"X-Request-ID": "asgi-request-0001"})
        second = web.get("/healthz", headers={"X-Request-ID": "bad id"})
    assert first.headers["X-Request-ID"] == "asgi-request-0001"
    assert second.headers["X-Request-ID"] not in ("asgi-request-0001", "bad id")
    ids = [r["request_id"] for r in records(json_lines) if r["logger"] == "config.requests"]
    assert ids == ["asgi-request-0001", second.headers["X-Request-ID"]]


def test_without_a_header_each_request_gets_its_own_id(db: None) -> None:
    first, second = (Client().get("/healthz")["X-Request-ID"] for _ in range(2))
    assert first != second and len(first) == len(second) == 32


def test_a_json_line_stays_one_line_whatever_the_message(json_lines: io.StringIO) -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("tests").exception('two\nlines and a "quote"', extra={"battle": 7})
    (line,) = records(json_lines)
    assert line["message"] == 'two\nlines and a "quote"' and line["battle"] == 7
    assert "ValueError: boom" in line["exc_info"]


def test_the_format_follows_the_setting() -> None:
    json_config = logging_config(log_format="json", level="INFO")
    assert json_config["formatters"]["default"] == {"()": "config.logs.JsonFormatter"}
    text_config = logging_config(log_format="text", level="INFO")
    assert "%(request_id)s" in text_config["formatters"]["default"]["format"]
    assert settings.LOG_FORMAT == os.environ.get("LOG_FORMAT", "text")


def test_an_unknown_log_format_stops_the_start() -> None:
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings", "LOG_FORMAT": "xml"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0 and "LOG_FORMAT must be text or json" in result.stderr


@pytest.mark.worker
@pytest.mark.skipif(not settings.REDIS_URL, reason="needs REDIS_URL: a worker consumes tasks from Redis")
def test_a_worker_process_logs_the_task_with_the_id_of_the_request_that_queued_it(
    transactional_db: None, settings: Any
) -> None:
    settings.ROOT_URLCONF = "tests.test_logs"
    environ = {**os.environ, "DATABASE_URL": test_database_url(), "LOG_FORMAT": "json", "LOG_LEVEL": "INFO"}
    command = [sys.executable, "-m", "celery", "-A", "config", "worker", "--pool=solo"]
    command += ["--without-heartbeat", "--without-gossip", "--without-mingle"]
    worker = subprocess.Popen(
        command, cwd=ROOT, env=environ, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        sent = Client().get("/queue/", HTTP_X_REQUEST_ID="from-the-edge-42")["X-Request-ID"]
        assert sent == "from-the-edge-42"
        deadline = time.monotonic() + 60
        while not Snapshot.objects.exists() and time.monotonic() < deadline and worker.poll() is None:
            time.sleep(0.2)
        assert Snapshot.objects.exists(), "the worker ran no recompute"
        time.sleep(1)  # its last lines, written after the snapshot
    finally:
        worker.terminate()
        output, _ = worker.communicate(timeout=30)
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    task_lines = [line for line in lines if line["logger"] == "leaderboard.tasks"]
    assert task_lines, output
    assert task_lines[0]["request_id"] == "from-the-edge-42", task_lines
    # Celery's own lines about the task (received, succeeded) carry it too.
    celery_lines = [line for line in lines if line["logger"].startswith("celery.")]
    assert any(line["request_id"] == "from-the-edge-42" for line in celery_lines), celery_lines
    assert "Traceback" not in output, output
