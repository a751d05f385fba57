"""Errors to Sentry (config/sentry.py): nothing a visitor typed, no answer, no key, no address."""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from config.sentry import FILTERED, scrub, scrub_breadcrumb

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "My neighbour Alice Example at 12 Rose Lane keeps parking in my spot, draft a letter"
ANSWER = "Dear Alice, I hope this letter finds you well"
KEY = "sk-live-4f9c2b7e1a8d6f3c5b0e9a7d2c4f6b8a"
IP = "203.0.113.77"
FORWARDED = "198.51.100.23"
SECRETS = [PROMPT, "Alice Example", ANSWER, "Dear Alice", KEY, "4f9c2b7e1a8d", IP, FORWARDED]

needs_sentry = pytest.mark.skipif(
    importlib.util.find_spec("sentry_sdk") is None,
    reason="sentry-sdk is not installed (it is in requirements.txt): the events actually sent are untested",
)


def realistic_event() -> dict[str, Any]:
    """An event shaped as sentry-sdk's Django, logging and stack integrations make one."""
    return {
        "level": "error",
        "server_name": "web-7c9f",
        "user": {"ip_address": IP, "id": "visitor-hash-1234"},
        "request": {
            "url": "https://arena.example/api/v1/battles/",
            "method": "POST",
            "query_string": f"prompt={PROMPT}",
            "data": {"prompt": PROMPT, "mode": "anonymous"},
            "cookies": {"arena_visitor": "tok-abcdefghijklmnopqrstuvwxyz012345", "sessionid": "s3ss10n"},
            "headers": {
                "Authorization": f"Api-Key {KEY}",
                "X-Api-Key": KEY,
                "Cookie": "arena_visitor=tok",
                "X-Forwarded-For": f"{FORWARDED}, 10.0.0.1",
                "User-Agent": "Mozilla/5.0",
                "Content-Type": "application/json",
            },
            "env": {"REMOTE_ADDR": IP, "SERVER_NAME": "web"},
        },
        "logentry": {
            "message": "Upstream failed for prompt %s",
            "params": [PROMPT],
            "formatted": f"Upstream failed for prompt {PROMPT}",
        },
        "extra": {"prompt": PROMPT, "answer_text": ANSWER, "battle": "0b6f", "api_key": KEY, "attempt": 2},
        "exception": {
            "values": [
                {
                    "type": "RuntimeError",
                    "value": f"upstream 400 for key {KEY} from {IP}: 'Your prompt \"{PROMPT}\" was refused'",
                    "stacktrace": {
                        "frames": [
                            {
                                "function": "battle_start",
                                "module": "arena.services",
                                "lineno": 120,
                                "context_line": "    raise RuntimeError(message)",
                                "vars": {"prompt": PROMPT, "visitor": "abc", "answer": ANSWER},
                            }
                        ]
                    },
                }
            ]
        },
        "breadcrumbs": {
            "values": [
                {"category": "arena", "message": f"client {IP} sent key {KEY}", "data": {"prompt": PROMPT}},
            ]
        },
    }


def test_before_send_removes_prompts_answers_keys_and_addresses() -> None:
    event = scrub(realistic_event())
    sent = json.dumps(event)
    for secret in SECRETS:
        assert secret not in sent, secret
    # What an operator needs to find the bug stays.
    assert event["exception"]["values"][0]["type"] == "RuntimeError"
    assert event["exception"]["values"][0]["stacktrace"]["frames"][0]["function"] == "battle_start"
    assert event["request"]["url"] == "https://arena.example/api/v1/battles/"
    assert event["request"]["headers"] == {"User-Agent": "Mozilla/5.0", "Content-Type": "application/json"}
    assert event["logentry"]["formatted"] == "Upstream failed for prompt %s"
    assert event["extra"] == {
        "prompt": FILTERED,
        "answer_text": FILTERED,
        "battle": "0b6f",
        "api_key": FILTERED,
        "attempt": 2,
    }
    assert "user" not in event and "data" not in event["request"] and "cookies" not in event["request"]
    assert event["exception"]["values"][0]["value"].startswith(
        "upstream 400 for key [Filtered] from [Filtered]"
    )


def test_a_breadcrumb_keeps_a_log_lines_template_not_its_arguments() -> None:
    import logging

    record = logging.LogRecord("arena", logging.INFO, __file__, 1, "stream for %s ended", (PROMPT,), None)
    crumb = scrub_breadcrumb({"message": record.getMessage(), "data": {"x": 1}}, {"log_record": record})
    assert crumb == {"message": "stream for %s ended", "data": FILTERED}


class Recorder(BaseHTTPRequestHandler):
    received: list[bytes] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        assert self.headers.get("Content-Encoding") in (None, "gzip", "identity"), self.headers
        self.received.append(body)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def fake_sentry() -> Iterator[tuple[str, list[bytes]]]:
    """A Sentry endpoint on 127.0.0.1 that records every envelope sent to it."""
    Recorder.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://public@127.0.0.1:{server.server_port}/1", Recorder.received
    server.shutdown()
    server.server_close()


# Runs in a process of its own (sentry_sdk.init is process-wide): a visitor's battle request whose
# view logs the prompt and fails with an upstream's error quoting it and the key.
SCRIPT = f"""
import json, logging
import django
django.setup()
from unittest import mock
import sentry_sdk
from django.test import Client

PROMPT, ANSWER, KEY, IP = {PROMPT!r}, {ANSWER!r}, {KEY!r}, {IP!r}

def failing_post(self, request):
    prompt = request.data["prompt"]
    answer = ANSWER
    logging.getLogger("arena.services").warning("upstream refused prompt %s", prompt)
    quoted = f"'Your prompt \\"{{prompt}}\\" was refused'"
    raise RuntimeError(f"upstream 401 for key {{KEY}} from {{IP}}: {{quoted}}")

with mock.patch("arena.views.BattleCreateApi.post", failing_post):
    response = Client(raise_request_exception=False).post(
        "/api/v1/battles/",
        data=json.dumps({{"prompt": PROMPT}}),
        content_type="application/json",
        REMOTE_ADDR=IP,
        SERVER_NAME="localhost",
        HTTP_ORIGIN="http://localhost",
        HTTP_AUTHORIZATION="Api-Key " + KEY,
        HTTP_X_API_KEY=KEY,
        HTTP_X_FORWARDED_FOR={FORWARDED!r},
        HTTP_COOKIE="arena_visitor=tok-abcdefghijklmnopqrstuvwxyz012345",
    )
assert response.status_code == 500, response.status_code
sentry_sdk.flush(timeout=10)
print("sent")
"""


@needs_sentry
def test_the_events_sent_to_a_sentry_endpoint_hold_no_prompt_key_or_address(
    fake_sentry: tuple[str, list[bytes]],
) -> None:
    dsn, received = fake_sentry
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "SENTRY_DSN": dsn,
        "TRUSTED_PROXIES": "1",
        "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
    }
    env.pop("DATABASE_URL", None)  # the request fails before any query
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0 and "sent" in result.stdout, result.stderr
    assert received, "no envelope reached the fake Sentry"
    sent = b"\n".join(received).decode()
    assert "RuntimeError" in sent and "upstream 401 for key" in sent, sent[:2000]
    for secret in SECRETS:
        assert secret not in sent, (secret, sent[:4000])
    assert "tok-abcdefghij" not in sent


def test_without_a_dsn_sentry_is_not_even_imported() -> None:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings"}
    env.pop("SENTRY_DSN", None)
    code = "import sys, django; django.setup(); print('sentry_sdk' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.stdout.strip() == "False", result.stderr
