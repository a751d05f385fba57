"""A vendor's bot check in place of the proof-of-work (arena/captcha.py), verified against a local
upstream speaking each vendor's siteverify API: a form POST of secret, response and remoteip,
answered `{"success": ..., "error-codes": [...]}` with the vendor's own fields and codes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from django.test import Client

from arena.models import Battle
from providers.models import LLM

ROOT = Path(__file__).resolve().parents[2]
# The answers' renderer (static/arena/render.js) and its libraries, served from this site.
CATALOGUE = "/jsi18n/?lang=en"  # the pages' translated strings, before their scripts
PAGE = [
    "/static/arena/home.js",
    "/static/arena/attach.js",
    "/static/arena/battle.js",
    "/static/arena/share.js",
]
RENDERER = [
    "/static/vendor/markdown-it/markdown-it.min.js",
    "/static/vendor/katex/katex.min.js",
    "/static/vendor/markdown-it-texmath/texmath.js",
    "/static/vendor/highlight.js/highlight.min.js",
    "/static/vendor/dompurify/purify.min.js",
    "/static/arena/render.js",
]
SECRET = "0x-the-operators-secret"
PATHS = {
    "turnstile": "/turnstile/v0/siteverify",
    "hcaptcha": "/siteverify",
    "recaptcha": "/recaptcha/api/siteverify",
}
# What each vendor says of a token it has verified before, and of one too old.
USED = {
    "turnstile": "timeout-or-duplicate",
    "hcaptcha": "already-seen-response",
    "recaptcha": "timeout-or-duplicate",
}
EXPIRED = {
    "turnstile": "timeout-or-duplicate",
    "hcaptcha": "expired-input-response",
    "recaptcha": "timeout-or-duplicate",
}


@dataclass
class FakeSiteverify:
    vendor: str
    url: str = ""
    good: set[str] = field(default_factory=set)  # tokens a person earned, valid once
    expired: set[str] = field(default_factory=set)
    scores: dict[str, float] = field(default_factory=dict)  # reCAPTCHA v3
    seen: set[str] = field(default_factory=set)
    requests: list[dict[str, list[str]]] = field(default_factory=list)

    def verdict(self, form: dict[str, list[str]]) -> dict[str, Any]:
        secret, token = form.get("secret", [""])[0], form.get("response", [""])[0]
        if not secret:
            return self.failure("missing-input-secret")
        if secret != SECRET:
            return self.failure("invalid-input-secret")
        if not token:
            return self.failure("missing-input-response")
        if token in self.expired:
            return self.failure(EXPIRED[self.vendor])
        if token in self.seen:
            return self.failure(USED[self.vendor])
        if token not in self.good:
            return self.failure("invalid-input-response")
        self.seen.add(token)
        body: dict[str, Any] = {
            "success": True,
            "challenge_ts": "2026-12-07T21:50:00Z",
            "hostname": "arena.example",
            "error-codes": [],
        }
        if self.vendor == "turnstile":
            body |= {"action": "", "cdata": "", "metadata": {"interactive": False}}
        elif self.vendor == "hcaptcha":
            body |= {"credit": False}
        elif token in self.scores:
            body |= {"score": self.scores[token], "action": "battle"}
        return body

    @staticmethod
    def failure(code: str) -> dict[str, Any]:
        return {"success": False, "error-codes": [code]}


def serve(fake: FakeSiteverify) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            raw = self.rfile.read(length).decode()
            if self.path != PATHS[fake.vendor] or not self.headers.get("Content-Type", "").startswith(
                "application/x-www-form-urlencoded"
            ):
                body, status = {"success": False, "error-codes": ["bad-request"]}, 400
            else:
                form = parse_qs(raw, keep_blank_values=True)
                fake.requests.append(form)
                body, status = fake.verdict(form), 200
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    return ThreadingHTTPServer(("127.0.0.1", 0), Handler)


@pytest.fixture(params=sorted(PATHS))
def siteverify(
    request: pytest.FixtureRequest, settings: Any, make_llm: Callable[..., LLM]
) -> Iterator[FakeSiteverify]:
    fake = FakeSiteverify(vendor=request.param)
    server = serve(fake)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    fake.url = f"http://127.0.0.1:{server.server_address[1]}{PATHS[fake.vendor]}"
    settings.ARENA_CHALLENGE = fake.vendor
    settings.ARENA_CHALLENGE_SECRET = SECRET
    settings.ARENA_CHALLENGE_SITE_KEY = "the-site-key"
    settings.ARENA_CHALLENGE_VERIFY_URL = fake.url
    make_llm()
    make_llm()
    yield fake
    server.shutdown()
    server.server_close()


def open_battle(token: str | None) -> Any:
    body = {"prompt": "Hi"} | ({"challenge": token} if token is not None else {})
    return Client(REMOTE_ADDR="203.0.113.7").post("/api/v1/battles/", body, content_type="application/json")


def assert_refused(response: Any, code: str) -> None:
    assert response.status_code == 403, response.content
    assert response.json()["code"] == code and response.json()["detail"]


def test_a_confirmed_token_opens_a_battle_once(siteverify: FakeSiteverify) -> None:
    siteverify.good.add("token-1")
    assert open_battle("token-1").status_code == 201
    assert siteverify.requests == [{"secret": [SECRET], "response": ["token-1"], "remoteip": ["203.0.113.7"]}]
    assert_refused(
        open_battle("token-1"), "challenge_used" if siteverify.vendor == "hcaptcha" else "challenge_expired"
    )
    assert Battle.objects.count() == 1


def test_a_forged_missing_or_expired_token_is_refused(siteverify: FakeSiteverify) -> None:
    siteverify.expired.add("old")
    assert_refused(open_battle("made-up"), "challenge_invalid")
    assert_refused(open_battle(None), "challenge_required")
    assert_refused(open_battle("old"), "challenge_expired")
    assert not Battle.objects.exists()
    assert len(siteverify.requests) == 2  # no token, no call


def test_a_wrong_secret_refuses_every_battle(siteverify: FakeSiteverify, settings: Any) -> None:
    settings.ARENA_CHALLENGE_SECRET = "not it"
    siteverify.good.add("token-1")
    assert_refused(open_battle("token-1"), "challenge_invalid")


def test_an_unreachable_vendor_fails_closed(siteverify: FakeSiteverify, settings: Any) -> None:
    settings.ARENA_CHALLENGE_VERIFY_URL = "http://127.0.0.1:9/siteverify"
    response = open_battle("token-1")
    assert response.status_code == 503 and response.json()["code"] == "challenge_unavailable"
    assert not Battle.objects.exists()


@pytest.mark.parametrize("siteverify", ["recaptcha"], indirect=True)  # only reCAPTCHA v3 scores
def test_a_low_recaptcha_score_is_refused(siteverify: FakeSiteverify) -> None:
    siteverify.good |= {"bot", "person"}
    siteverify.scores |= {"bot": 0.1, "person": 0.9}
    assert_refused(open_battle("bot"), "challenge_invalid")
    assert open_battle("person").status_code == 201


def test_the_challenge_endpoint_names_the_vendor(siteverify: FakeSiteverify) -> None:
    response = Client().get("/api/v1/challenge/")
    assert response.json() == {"vendor": siteverify.vendor, "site_key": "the-site-key"}


def test_verification_runs_inside_the_asgi_server(siteverify: FakeSiteverify, live_asgi: str) -> None:
    siteverify.good.add("token-1")
    with httpx.Client(base_url=live_asgi, timeout=30) as web:
        response = web.post("/api/v1/battles/", json={"prompt": "Hi", "challenge": "token-1"})
    assert response.status_code == 201, response.text


# --- the widget on the page -----------------------------------------------------------------------

# Each vendor's widget as its documentation gives it: the class its script renders into, the script's
# URL, and what its Content-Security-Policy page asks to allow.
WIDGETS: dict[str, dict[str, Any]] = {
    "turnstile": {
        "class": "cf-turnstile",
        "script": "https://challenges.cloudflare.com/turnstile/v0/api.js",
        "csp": {
            "script-src": ["https://challenges.cloudflare.com"],
            "frame-src": ["https://challenges.cloudflare.com"],
        },
    },
    "hcaptcha": {
        "class": "h-captcha",
        "script": "https://js.hcaptcha.com/1/api.js",
        "csp": {
            name: ["https://hcaptcha.com", "https://*.hcaptcha.com"]
            for name in ("script-src", "frame-src", "style-src", "connect-src")
        },
    },
    "recaptcha": {
        "class": "g-recaptcha",
        "script": "https://www.google.com/recaptcha/api.js",
        "csp": {
            "script-src": ["https://www.google.com/recaptcha/", "https://www.gstatic.com/recaptcha/"],
            "frame-src": ["https://www.google.com/recaptcha/", "https://recaptcha.google.com/recaptcha/"],
        },
    },
}
VENDOR_HOSTS = ("cloudflare.com", "hcaptcha.com", "google.com", "gstatic.com")
# The site's own policy for each directive a vendor adds to (frame-src is default-src's 'self' otherwise).
OWN = {"script-src": ["'self'"], "style-src": ["'self'"], "connect-src": ["'self'"], "frame-src": []}


def directives(policy: str) -> dict[str, list[str]]:
    return {name: values for name, *values in (part.split() for part in policy.split(";") if part.strip())}


@pytest.mark.parametrize("path", ["/", "/named/"])
def test_the_battle_pages_show_the_vendors_widget_and_allow_only_its_origins(
    siteverify: FakeSiteverify, path: str
) -> None:
    widget = WIDGETS[siteverify.vendor]
    response = Client().get(path)
    assert response.status_code == 200
    page = response.content.decode()
    box = re.search(r'<div class="composer__captcha ([^"]+)" id="captcha"([^>]*)>', page)
    assert box and box.group(1) == widget["class"]
    assert 'data-sitekey="the-site-key"' in box.group(2)
    assert 'data-callback="arenaCaptchaSolved"' in box.group(2)
    scripts = re.findall(r'<script src="([^"]+)" defer></script>', page)
    # Ours first (after the translations), so that the callbacks exist when the vendor's script
    # calls them; no proof-of-work.
    assert scripts == [
        CATALOGUE,
        "/static/arena/captcha.js",
        widget["script"],
        *RENDERER,
        *PAGE,
    ]

    policy = directives(response["Content-Security-Policy"])
    for name, origins in widget["csp"].items():
        assert policy[name] == OWN[name] + origins
    others = {name: values for name, values in policy.items() if name not in widget["csp"]}
    assert not any(host in value for values in others.values() for value in values for host in VENDOR_HOSTS)
    assert policy["object-src"] == ["'none'"] and "'unsafe-inline'" not in policy["script-src"]


def test_only_the_battle_pages_allow_the_vendor(siteverify: FakeSiteverify) -> None:
    for path in ("/leaderboard/", "/privacy/", "/terms/"):
        policy = Client().get(path)["Content-Security-Policy"]
        assert not any(host in policy for host in VENDOR_HOSTS), path


@pytest.mark.parametrize("challenge", ["altcha", "off"])
def test_without_a_vendor_the_page_solves_the_proof_of_work_and_allows_no_vendor(
    settings: Any, db: None, challenge: str
) -> None:
    settings.ARENA_CHALLENGE = challenge
    settings.ARENA_CHALLENGE_SITE_KEY = "the-site-key"
    response = Client().get("/")
    page = response.content.decode()
    assert 'id="captcha"' not in page and "the-site-key" not in page
    scripts = re.findall(r'<script src="([^"]+)"', page)
    assert scripts == [CATALOGUE, "/static/arena/pow.js", *RENDERER, *PAGE]
    policy = response["Content-Security-Policy"]
    assert not any(host in policy for host in VENDOR_HOSTS)
    assert directives(policy)["script-src"] == ["'self'"] and "frame-src" not in directives(policy)


def test_the_privacy_page_names_the_vendor_only_when_one_is_configured(
    siteverify: FakeSiteverify, settings: Any
) -> None:
    name = {"turnstile": "Cloudflare Turnstile", "hcaptcha": "hCaptcha", "recaptcha": "Google reCAPTCHA"}
    page = " ".join(Client().get("/privacy/").content.decode().split())
    assert f"one third-party script: {name[siteverify.vendor]}’s bot check" in page
    assert "no third-party scripts" not in page
    settings.ARENA_CHALLENGE = "altcha"
    page = " ".join(Client().get("/privacy/").content.decode().split())
    assert "no third-party scripts" in page and name[siteverify.vendor] not in page


def test_a_vendor_without_a_site_key_refuses_to_start() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARENA_CHALLENGE")}
    env |= {"ARENA_CHALLENGE": "turnstile", "ARENA_CHALLENGE_SECRET": SECRET}
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0
    assert "ARENA_CHALLENGE=turnstile needs ARENA_CHALLENGE_SITE_KEY" in result.stderr
