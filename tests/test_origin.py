"""State-changing requests from another site's page are refused (config/origin.py), over a real socket."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from django.test import Client
from httpx_sse import connect_sse

from arena.models import Battle, Turn, Vote
from providers.models import LLM

EVIL = "https://evil.example"


@pytest.fixture
def web(live_asgi: str, make_llm: Callable[..., LLM], settings: Any) -> Iterator[httpx.Client]:
    settings.DEMO_TOKEN_DELAY = 0
    make_llm()
    make_llm()
    with httpx.Client(base_url=live_asgi, timeout=30) as client:
        yield client


def ready_battle(web: httpx.Client) -> str:
    """A battle of this client's, both answers streamed: open to a vote and a follow-up turn."""
    response = web.post("/api/v1/battles/", json={"prompt": "Why is the sky blue?"}, headers=same(web))
    assert response.status_code == 201, response.text
    battle_id = response.json()["id"]
    with connect_sse(web, "GET", f"/api/v1/battles/{battle_id}/stream") as source:
        list(source.iter_sse())
    return battle_id


def same(web: httpx.Client) -> dict[str, str]:
    return {"Origin": str(web.base_url).rstrip("/")}


def assert_refused(response: httpx.Response) -> None:
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/json"
    assert response.json()["code"] == "cross_site_request"


def test_another_sites_page_cannot_open_a_battle(web: httpx.Client) -> None:
    assert_refused(web.post("/api/v1/battles/", json={"prompt": "hi"}, headers={"Origin": EVIL}))
    assert not Battle.objects.exists()
    assert (
        "set-cookie"
        not in web.post("/api/v1/battles/", json={"prompt": "hi"}, headers={"Origin": EVIL}).headers
    )


def test_another_sites_page_cannot_vote_or_continue_in_a_visitors_battle(web: httpx.Client) -> None:
    battle_id = ready_battle(web)  # the visitor's cookie is in `web`, as a browser would send it
    assert_refused(
        web.post(f"/api/v1/battles/{battle_id}/vote/", json={"winner": "a"}, headers={"Origin": EVIL})
    )
    assert_refused(
        web.post(f"/api/v1/battles/{battle_id}/turns/", json={"prompt": "more"}, headers={"Origin": EVIL})
    )
    assert not Vote.objects.exists() and Turn.objects.count() == 1
    # The same requests from the site's own page go through.
    assert (
        web.post(
            f"/api/v1/battles/{battle_id}/turns/", json={"prompt": "more"}, headers=same(web)
        ).status_code
        == 201
    )


def test_the_sites_own_page_votes(web: httpx.Client) -> None:
    battle_id = ready_battle(web)
    assert (
        web.post(f"/api/v1/battles/{battle_id}/vote/", json={"winner": "a"}, headers=same(web)).status_code
        == 200
    )
    assert Vote.objects.get().winner == "a"


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "null"},  # a sandboxed frame, a file: page
        {"Origin": "http://127.0.0.1.evil.example"},
        {"Origin": "https://127.0.0.1"},  # another scheme is another origin
        {"Referer": f"{EVIL}/page.html"},
        {"Referer": "not a url"},
    ],
)
def test_forged_origins_and_referers_are_refused(web: httpx.Client, headers: dict[str, str]) -> None:
    assert_refused(web.post("/api/v1/battles/", json={"prompt": "hi"}, headers=headers))


def test_a_referer_from_the_sites_own_page_passes_without_origin(web: httpx.Client) -> None:
    referer = f"{same(web)['Origin']}/named/?x=1"
    assert (
        web.post("/api/v1/battles/", json={"prompt": "hi"}, headers={"Referer": referer}).status_code == 201
    )


def test_a_script_that_sends_neither_header_is_served(web: httpx.Client) -> None:
    """Scripted clients (a researcher's, curl) send no Origin; they hold their own cookie only."""
    assert web.post("/api/v1/battles/", json={"prompt": "hi"}).status_code == 201


def test_trusted_origins_pass_and_their_wildcards_cover_subdomains_only(
    web: httpx.Client, settings: Any
) -> None:
    settings.CSRF_TRUSTED_ORIGINS = ["https://arena.example.org", "https://*.mirror.example.net"]
    for origin in ("https://arena.example.org", "https://eu.mirror.example.net"):
        assert (
            web.post("/api/v1/battles/", json={"prompt": "hi"}, headers={"Origin": origin}).status_code == 201
        )
    for origin in (
        "http://arena.example.org",
        "https://mirror.example.net.evil.example",
        "https://example.org",
    ):
        assert_refused(web.post("/api/v1/battles/", json={"prompt": "hi"}, headers={"Origin": origin}))


def test_reads_are_not_checked(web: httpx.Client) -> None:
    assert web.get("/api/v1/models/", headers={"Origin": EVIL}).status_code == 200


def test_the_admins_login_is_checked_too(client: Client, db: None) -> None:
    response = client.post("/admin/login/", {"username": "x"}, headers={"Origin": EVIL})
    assert response.status_code == 403 and response.json()["code"] == "cross_site_request"


def test_the_check_holds_under_wsgi_too(client: Client, db: None) -> None:
    response = client.post(
        "/api/v1/battles/", {"prompt": "hi"}, content_type="application/json", headers={"Origin": EVIL}
    )
    assert response.status_code == 403 and response.json()["code"] == "cross_site_request"
