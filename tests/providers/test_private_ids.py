"""A variant under test appears in no public response: neither its id nor its codename."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from arena.sharing import BattleShare, share_create
from leaderboard import services
from leaderboard.models import Snapshot
from providers.models import LLM, Organization
from tests.factories import voted_battle
from tests.providers.conftest import Personas, make_variant

pytestmark = pytest.mark.django_db

# Distinctive enough that finding either in a response can only mean a leak.
PRIVATE_ID = 7_654_321
CODENAME = "zephyrquill"
# Routes for one caller only: the operators' admin, a provider's own API, one visitor's battle.
NOT_PUBLIC = ("admin/", "api/v1/provider/", "<str:battle_id>")


def routes(patterns: list[URLPattern | URLResolver], prefix: str = "") -> Iterator[str]:
    for pattern in patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            yield from routes(pattern.url_patterns, route)
        else:
            yield route


def public_paths() -> list[str]:
    """Every public GET route, the snapshot ones once for each snapshot."""
    paths = []
    for route in routes(get_resolver().url_patterns):
        if any(part in route for part in NOT_PUBLIC):
            continue
        if "<int:snapshot_id>" in route:
            paths += [
                route.replace("<int:snapshot_id>", str(s))
                for s in Snapshot.objects.values_list("pk", flat=True)
            ]
        elif "<str:token>" in route:  # a shared battle's page, once for each share
            tokens = BattleShare.objects.values_list("token", flat=True)
            paths += [route.replace("<str:token>", token) for token in tokens]
        else:
            assert "<" not in route, f"a public route this test cannot fill in: {route}"
            paths.append(route)
    return ["/" + re.sub(r"^\^|\$$", "", path) for path in paths]


def test_a_private_variants_id_and_codename_appear_in_no_public_response(
    personas: Personas, make_llm: Any, client: Client, settings: Any
) -> None:
    settings.LEADERBOARD_BOOTSTRAP = 20
    organization = personas.owner.organization
    assert isinstance(organization, Organization)
    p1, p2 = make_llm(), make_llm()
    variant = make_variant(organization, CODENAME, pk=PRIVATE_ID)
    for n in range(6):
        voted_battle(p1, p2, "ab"[n % 2])
        shared = voted_battle(variant, p1, "ab"[n % 2])
    shared.battle.open_turn(0, "Hello")
    share_create(battle=shared.battle)  # the visitor shared a battle the private variant answered
    services.recompute_all()
    assert Snapshot.objects.exists()
    assert LLM.objects.get(pk=PRIVATE_ID).visibility == LLM.Visibility.PRIVATE

    paths = public_paths()
    assert {"/", "/leaderboard/", "/api/v1/leaderboard/", "/api/v1/models/", "/testing-ledger/"} <= set(paths)
    assert any(path.startswith("/s/") for path in paths)
    assert any(path.endswith("/votes") for path in paths) and any(path.endswith("/csv") for path in paths)
    for path in paths:
        response = client.get(path)
        assert response.status_code < 500, path
        body = b"".join(response).decode() if response.streaming else response.content.decode()
        assert str(PRIVATE_ID) not in body, f"{path} gives the variant's id away"
        assert CODENAME not in body, f"{path} gives the variant's codename away"
