"""The whole provider flow over a real socket: key, submission probed against a fake upstream,
anonymous battles through the battle API, the private result, publication, the public board and
the testing ledger, then a retired variant disclosed after the delay."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
import time_machine
from httpx_sse import connect_sse

from leaderboard import services
from providers.models import LLM
from tests.factories import voted_battle
from tests.providers.conftest import Personas, variant_body
from tests.upstream import FakeOpenAI

# Words that would give the variant away before it is published.
SECRETS = ("falcon-7", "up-falcon-7", "Acme", "acme", "private/")


@pytest.fixture
def web(live_asgi: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_asgi, timeout=30) as client:
        yield client


@pytest.fixture
def provider(live_asgi: str, personas: Personas) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Api-Key {personas.owner.key}"}
    with httpx.Client(base_url=live_asgi, timeout=30, headers=headers) as client:
        yield client


def battle(web: httpx.Client) -> list[str]:
    """One anonymous battle through the real battle API; every text the visitor received."""
    created = web.post("/api/v1/battles/", json={"prompt": "Tell me about rivers."})
    assert created.status_code == 201, created.text
    battle_id = created.json()["id"]
    with connect_sse(web, "GET", f"/api/v1/battles/{battle_id}/stream") as source:
        events = [json.loads(sse.data) for sse in source.iter_sse()]
    assert events[-1]["state"] == "ready", events
    voted = web.post(f"/api/v1/battles/{battle_id}/vote/", json={"winner": "a"})
    assert voted.status_code == 200
    names = {voted.json()["model_a"]["label"], voted.json()["model_b"]["label"]}
    assert names == {"Open Demo (demo)", "An unreleased model under test"}
    return [created.text, json.dumps(events), voted.text]


def assert_nothing_gives_it_away(*texts: str) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text, f"{secret!r} leaked"


def test_a_variant_goes_from_key_to_public_board_and_ledger(
    personas: Personas,
    openai_upstream: FakeOpenAI,
    web: httpx.Client,
    provider: httpx.Client,
    settings: Any,
) -> None:
    settings.DEMO_TOKEN_DELAY = 0
    settings.LEADERBOARD_BOOTSTRAP = 50
    settings.LEADERBOARD_RECOMPUTE_ON_VOTE = False
    settings.PROVIDER_DISCLOSURE_MIN_VOTES = 20
    settings.PROVIDER_FRESH_VOTES = 20
    public = LLM.objects.create(name="open-demo", display_name="Open Demo", backend="demo", model="concise")
    pool = LLM.objects.create(name="open-demo-2", backend="demo", model="structured", weight=0)
    for n in range(20):
        voted_battle(public, pool, "ab"[n % 2])

    # Submit: the endpoint is probed through the live server's event loop.
    submitted = provider.post("/api/v1/provider/variants/", json=variant_body(openai_upstream, "falcon-7"))
    assert submitted.status_code == 201, submitted.text
    variant_id = submitted.json()["id"]

    # Anonymous battles: the only two drawable models are the demo and the variant.
    seen = [text for _ in range(3) for text in battle(web)]
    variant = LLM.objects.get(pk=variant_id)
    assert variant.test_votes == 3

    # Volume, then the private result, seen by its organisation only.
    for n in range(30):
        voted_battle(variant, public, "aab"[n % 3])
    services.recompute()  # stores the result the provider API reads
    detail = provider.get(f"/api/v1/provider/variants/{variant_id}/").json()
    assert detail["votes"] == 33 and detail["battles"] == 33
    assert detail["result"]["votes"] == 33 and detail["result"]["opponents"][0]["name"] == "open-demo"
    assert detail["result"]["rating"] > 1000  # it wins two of three

    # Before publication: nowhere in public.
    public_texts = [web.get(path).text for path in ("/api/v1/leaderboard/", "/leaderboard/", "/named/", "/")]
    public_texts += [
        web.get(path).text for path in ("/api/v1/models/", "/api/v1/testing-ledger/", "/testing-ledger/")
    ]
    assert_nothing_gives_it_away(*seen, *public_texts)

    # Publish: on the board with its public votes only (provisional: few of them) and on the ledger
    # with its codename.
    published = provider.post(
        f"/api/v1/provider/variants/{variant_id}/publish/", json={"name": "Acme Falcon"}
    )
    assert published.status_code == 200, published.text
    for n in range(4):
        voted_battle(variant, public, "ab"[n % 2])
    services.recompute()
    board = web.get("/api/v1/leaderboard/").json()["models"]
    row = next(m for m in board if m["name"] == "Acme Falcon")
    assert row["provisional"] is True and row["votes"] == 4  # its 33 votes while private never count
    assert "Acme Falcon" in web.get("/leaderboard/").text
    ledger = web.get("/api/v1/testing-ledger/").json()["organizations"]
    assert [(o["name"], o["variants_tested"], o["variants_published"]) for o in ledger] == [("Acme AI", 1, 1)]
    falcon = ledger[0]["variants"][0]
    assert (falcon["codename"], falcon["name"], falcon["disclosed"]) == ("falcon-7", "Acme Falcon", True)
    assert falcon["result"]["votes"] == 33
    assert ledger[0]["battle_share"] == pytest.approx(33 / 57, abs=1e-3)

    # A second variant, tested and retired: disclosed only 90 days after it stopped.
    second = provider.post("/api/v1/provider/variants/", json=variant_body(openai_upstream, "heron-2"))
    assert second.status_code == 201, second.text
    heron = LLM.objects.get(pk=second.json()["id"])
    for n in range(25):
        voted_battle(public, heron, "ab"[n % 2])
    retired = provider.post(f"/api/v1/provider/variants/{heron.pk}/retire/")
    assert retired.status_code == 200 and retired.json()["status"] == "retired"
    services.recompute()  # freezes its final result, which the ledger discloses later
    assert "heron-2" not in web.get("/api/v1/testing-ledger/").text
    heron.refresh_from_db()
    assert heron.testing_ended_at is not None
    with time_machine.travel(heron.testing_ended_at + timedelta(days=90, minutes=1), tick=False):
        rows = web.get("/api/v1/testing-ledger/").json()["organizations"][0]["variants"]
        page = web.get("/testing-ledger/").text
    heron_row = next(r for r in rows if r["codename"] == "heron-2")
    assert heron_row["disclosed"] and heron_row["status"] == "retired" and heron_row["result"]["votes"] == 25
    assert "heron-2" in page
