"""The consent gate in headless Chromium: no prompt until the terms are accepted, then a battle streams."""

from __future__ import annotations

from typing import Any

import pytest

from arena.models import Battle, Visitor
from tests.browser.conftest import BROWSER_TESTS, VOTES_OPEN
from tests.browser.test_battle import OpenPage, Orm, answer_texts, ask, shoot

pytestmark = BROWSER_TESTS


@pytest.fixture(autouse=True)
def _consent_required(settings: Any) -> None:
    settings.ARENA_REQUIRE_CONSENT = True


def test_the_prompt_is_blocked_until_the_terms_are_accepted_then_a_battle_streams(
    chromium: OpenPage, arena_models: Any, orm: Orm
) -> None:
    visit = chromium()
    visit.goto("/")

    assert visit.page.is_visible("#consent")
    assert visit.page.is_disabled("#prompt") and visit.page.is_disabled("#send")
    assert "unreleased models" in visit.page.inner_text("#consent")
    shoot(visit, "consent-before.png")
    # Ctrl+Enter in the disabled box sends nothing.
    visit.page.keyboard.press("Control+Enter")
    assert orm(lambda: Battle.objects.count()) == 0
    assert arena_models.upstream.requests == []

    visit.page.click("#consent-accept")

    visit.page.wait_for_selector("#consent", state="hidden")
    assert visit.page.is_enabled("#prompt")
    assert orm(lambda: Visitor.objects.get().terms_accepted_at) is not None
    ask(visit, "Why is the sky blue?")
    visit.page.wait_for_function(VOTES_OPEN)
    assert sorted(answer_texts(visit).values()) == sorted([arena_models.alpha_text, arena_models.beta_text])
    shoot(visit, "consent-after.png")
    # A reload remembers the acceptance: the cookie names a visitor who accepted.
    visit.goto("/")
    assert visit.page.is_hidden("#consent") and visit.page.is_enabled("#prompt")


def test_a_visitor_asked_again_mid_page_sees_the_terms_again(
    chromium: OpenPage, arena_models: Any, orm: Orm, settings: Any
) -> None:
    visit = chromium()
    visit.goto("/")
    visit.page.click("#consent-accept")
    visit.page.wait_for_selector("#consent", state="hidden")
    settings.ARENA_TERMS_VERSION = "a-newer-version"

    ask(visit, "Why is the sky blue?")

    visit.page.wait_for_selector("#consent", state="visible")
    assert "accept the terms" in visit.page.inner_text("#composer-error").lower()
    assert visit.page.is_disabled("#prompt")
    assert orm(lambda: Battle.objects.count()) == 0


def test_a_visitor_deletes_their_data_from_the_privacy_page(
    chromium: OpenPage, arena_models: Any, orm: Orm
) -> None:
    visit = chromium()
    visit.goto("/")
    visit.page.click("#consent-accept")
    ask(visit, "Why is the sky blue?")
    visit.page.wait_for_function(VOTES_OPEN)
    visit.goto("/privacy/")
    visit.page.on("dialog", lambda dialog: dialog.accept())

    visit.page.click("#delete-data")

    visit.page.wait_for_selector("#delete-note", state="visible")
    assert "1 battle(s) deleted" in visit.page.inner_text("#delete-note")
    assert visit.page.is_hidden("#download-data")
    assert orm(lambda: (Battle.objects.count(), Visitor.objects.count())) == (0, 0)
    shoot(visit, "privacy-deleted.png")
    visit.goto("/")
    assert visit.page.is_visible("#consent") and visit.page.is_disabled("#prompt")
