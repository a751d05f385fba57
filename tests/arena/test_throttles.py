"""Rate limits per client address hold against the tricks a script would try: a new cookie for
every battle, a forged X-Forwarded-For on every request."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from httpx_sse import connect_sse

from arena.models import Turn
from providers.models import LLM

addresses = (f"198.{18 + i // 256}.{i % 256}.1" for i in itertools.count(1))  # a network each


@pytest.fixture
def web(live_asgi: str, make_llm: Callable[..., LLM], settings: Any) -> Iterator[httpx.Client]:
    settings.DEMO_TOKEN_DELAY = 0
    settings.TRUSTED_PROXIES = 0
    make_llm()
    make_llm()
    with httpx.Client(base_url=live_asgi, timeout=30) as client:
        yield client


def streamed(web: httpx.Client, battle_id: str) -> None:
    with connect_sse(web, "GET", f"/api/v1/battles/{battle_id}/stream") as source:
        list(source.iter_sse())


def forged() -> dict[str, str]:
    return {"X-Forwarded-For": next(addresses)}


def test_follow_up_turns_are_limited_per_address(web: httpx.Client, settings: Any) -> None:
    settings.ARENA_TURN_RATE = "2/minute"
    battle_id = web.post("/api/v1/battles/", json={"prompt": "Why is the sky blue?"}).json()["id"]
    streamed(web, battle_id)
    for _ in range(2):
        response = web.post(f"/api/v1/battles/{battle_id}/turns/", json={"prompt": "And?"}, headers=forged())
        assert response.status_code == 201, response.text
        streamed(web, battle_id)

    refused = web.post(f"/api/v1/battles/{battle_id}/turns/", json={"prompt": "And?"}, headers=forged())
    assert refused.status_code == 429
    assert refused.json()["code"] == "throttled" and "Retry-After" in refused.headers
    assert Turn.objects.filter(battle_id=battle_id).count() == 3


def test_a_new_cookie_and_a_forged_forwarded_for_open_no_more_battles(
    web: httpx.Client, settings: Any
) -> None:
    settings.ARENA_BATTLES_PER_NETWORK_HOUR = 3  # the network's cap: cookies and the header are the client's
    statuses = []
    for _ in range(4):
        web.cookies.clear()  # a new visitor every time
        statuses.append(web.post("/api/v1/battles/", json={"prompt": "hi"}, headers=forged()).status_code)
    assert statuses == [201, 201, 201, 429]


def test_behind_a_trusted_proxy_each_client_has_its_own_count(web: httpx.Client, settings: Any) -> None:
    settings.ARENA_TURN_RATE = "1/minute"
    settings.TRUSTED_PROXIES = 1

    def via_proxy(client: str) -> dict[str, str]:
        return {"X-Forwarded-For": f"{next(addresses)}, {client}"}  # the client's own entry, then the proxy's

    def turn(client: str) -> int:
        battle_id = web.post("/api/v1/battles/", json={"prompt": "hi"}, headers=via_proxy(client)).json()[
            "id"
        ]
        streamed(web, battle_id)
        return web.post(
            f"/api/v1/battles/{battle_id}/turns/", json={"prompt": "And?"}, headers=via_proxy(client)
        ).status_code

    first, second = next(addresses), next(addresses)
    assert [turn(first), turn(second), turn(first)] == [201, 201, 429]


def test_the_turn_limit_keys_on_the_networks_hash_never_the_address(rf: Any, settings: Any) -> None:
    """The privacy page says raw addresses are never stored: the limiter's cache key holds neither
    the address nor its prefix, and two addresses of one /24 share a count."""
    from rest_framework.request import Request

    from arena.throttles import TurnCreateThrottle

    def key(address: str) -> str:
        return TurnCreateThrottle().get_cache_key(Request(rf.post("/", REMOTE_ADDR=address)), None)

    assert "203.0.113" not in key("203.0.113.9")
    assert key("203.0.113.9") == key("203.0.113.200") != key("203.0.114.9")
