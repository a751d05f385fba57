"""The proof-of-work in the real page: Chromium solves the challenge (static/arena/pow.js) while the
person types, and the battle it opens streams."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from arena.models import Battle
from tests.browser.conftest import BROWSER_TESTS, VOTES_OPEN

pytestmark = BROWSER_TESTS


def test_the_page_solves_the_challenge_and_the_battle_streams(
    chromium: Callable[..., Any], arena_models: Any, orm: Callable[..., Any], settings: Any
) -> None:
    settings.ARENA_CHALLENGE = "altcha"  # at the default difficulty (ARENA_POW_BASE)
    visit = chromium()
    visit.goto("/")
    visit.page.fill("#prompt", "Why is the sky blue?")
    visit.page.keyboard.press("Control+Enter")
    visit.page.wait_for_function(VOTES_OPEN, timeout=60_000)

    posts = [r for r in visit.responses if r.url.endswith("/api/v1/battles/") and r.request.method == "POST"]
    assert [r.status for r in posts] == [201]
    assert "challenge" in (posts[0].request.post_data_json or {})
    battle = orm(lambda: Battle.objects.get())
    assert battle.network_hash
    print(f"proof-of-work solved in {visit.page.evaluate('window.arenaPow.lastSolveMs'):.0f} ms")

    # A second round pays again, with a new challenge: the first one is spent.
    visit.page.click("#new-round")
    visit.page.fill("#prompt", "And at sunset?")
    visit.page.keyboard.press("Control+Enter")
    visit.page.wait_for_function(VOTES_OPEN, timeout=60_000)
    posts = [r for r in visit.responses if r.url.endswith("/api/v1/battles/") and r.request.method == "POST"]
    assert [r.status for r in posts] == [201, 201]
    payloads = {r.request.post_data_json["challenge"] for r in posts}
    assert len(payloads) == 2
