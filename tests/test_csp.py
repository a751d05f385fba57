"""The Content-Security-Policy of the pages, and templates that need no inline script to work."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.test import Client

ROOT = Path(__file__).resolve().parent.parent
PAGES = ["/", "/named/", "/leaderboard/", "/testing-ledger/", "/api/v1/docs/", "/api/v1/redoc/"]


def directives(policy: str) -> dict[str, list[str]]:
    return {name: values for name, *values in (part.split() for part in policy.split(";") if part.strip())}


@pytest.mark.parametrize("path", PAGES)
def test_every_page_forbids_inline_and_foreign_script(client: Client, db: None, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200
    policy = directives(response["Content-Security-Policy"])
    assert policy["script-src"] == ["'self'"]
    assert policy["object-src"] == ["'none'"] and policy["base-uri"] == ["'none'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert "'unsafe-inline'" not in policy.get("script-src-attr", [])


def test_only_the_api_docs_allow_inline_styles(client: Client, db: None) -> None:
    assert "'unsafe-inline'" not in directives(client.get("/")["Content-Security-Policy"])["style-src"]
    assert (
        "'unsafe-inline'" in directives(client.get("/api/v1/redoc/")["Content-Security-Policy"])["style-src"]
    )


def test_the_swagger_pages_script_is_a_file_of_its_own(client: Client, db: None) -> None:
    page = client.get("/api/v1/docs/").content.decode()
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", page, re.S)
    assert scripts and all("src=" in attributes and not body.strip() for attributes, body in scripts)
    assert client.get("/api/v1/docs/?script=")["Content-Type"] == "application/javascript"


@pytest.mark.parametrize("template", sorted((ROOT / "templates").rglob("*.html")), ids=lambda p: p.name)
def test_no_template_carries_inline_script_or_event_handlers(template: Path) -> None:
    html = template.read_text()
    for attributes, body in re.findall(r"<script([^>]*)>(.*?)</script>", html, re.S):
        assert "src=" in attributes and not body.strip(), f"inline script in {template}"
    assert not re.search(r"\son[a-z]+\s*=", html), f"inline event handler in {template}"
    assert "javascript:" not in html
