"""The home in headless Chromium: how the arena works, questions to start from, and the vote's
optional reasons, given by keyboard and stored with the vote."""

from __future__ import annotations

from typing import Any

from arena.models import Battle, Vote
from arena.reasons import VoteReason
from arena.suggestions import SUGGESTIONS
from tests.browser.conftest import BROWSER_TESTS, VOTES_OPEN
from tests.browser.test_battle import OpenPage, Orm, ask, shoot

pytestmark = BROWSER_TESTS

FOCUSED = "() => document.activeElement && (document.activeElement.value || document.activeElement.id)"


def test_a_suggestion_fills_the_prompt_box_without_sending_and_goes_once_a_battle_starts(
    chromium: OpenPage, arena_models: Any, orm: Orm, settings: Any
) -> None:
    settings.ARENA_REQUIRE_CONSENT = True
    visit = chromium()
    visit.goto("/")
    page = visit.page

    how = page.inner_text(".how")
    for step in ("Ask", "anonymous", "Vote", "which models", "leaderboard"):
        assert step in how
    assert page.get_attribute(".how a", "href") == "/leaderboard/"
    groups = page.locator(".suggest__group")
    assert groups.count() == len(SUGGESTIONS) >= 5
    first = str(SUGGESTIONS[2][1][0])  # maths

    # Before the terms are accepted the box stays empty and disabled: the gate is shown once, first.
    assert page.is_visible("#consent")
    page.click(f"[data-suggestion='{first}']")
    assert page.input_value("#prompt") == ""
    page.click("#consent-accept")
    page.wait_for_selector("#consent", state="hidden")

    # By keyboard: focus the suggestion, Enter. The box is filled and focused; nothing is sent.
    page.focus(f"[data-suggestion='{first}']")
    page.keyboard.press("Enter")
    assert page.input_value("#prompt") == first
    assert page.evaluate("document.activeElement.id") == "prompt"
    assert page.inner_text("#prompt-count") != ""  # battle.js counted it, as if typed
    assert orm(lambda: Battle.objects.count()) == 0 and arena_models.upstream.requests == []
    shoot(visit, "home-suggestion.png")

    page.keyboard.press("Control+Enter")
    page.wait_for_function(VOTES_OPEN)
    assert page.is_hidden("#suggest")
    assert orm(lambda: Battle.objects.get().turns.get().prompt) == first
    page.get_by_role("button", name="Tie").click()
    page.click("#new-round")
    assert page.is_visible("#suggest")
    # A reload of the home does not ask for the terms again.
    visit.goto("/")
    assert page.is_hidden("#consent") and page.is_visible("#suggest")


def test_reasons_given_by_keyboard_are_stored_with_the_vote(
    chromium: OpenPage, arena_models: Any, orm: Orm
) -> None:
    visit = chromium()
    visit.goto("/")
    page = visit.page
    ask(visit, "Why is the sky blue?")
    page.wait_for_function(VOTES_OPEN)
    page.wait_for_function("() => document.activeElement.id === 'vote-buttons'")

    # Backwards from the vote bar: the comment box, then the tags, last one first.
    page.keyboard.press("Shift+Tab")
    assert page.evaluate(FOCUSED) == "reason-comment"
    for _ in range(7):
        page.keyboard.press("Shift+Tab")
    assert page.evaluate(FOCUSED) == "accurate"
    page.keyboard.press("Space")
    page.keyboard.press("Tab")
    assert page.evaluate(FOCUSED) == "clear"
    page.keyboard.press("Space")
    for _ in range(6):
        page.keyboard.press("Tab")
    assert page.evaluate(FOCUSED) == "reason-comment"
    page.keyboard.type("Short and to the point. A, B, T and X typed here never vote.")
    assert orm(lambda: Vote.objects.count()) == 0
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.dataset.winner") == "a"
    page.keyboard.press("Enter")
    page.wait_for_selector(".pane[data-side=a] .pane__reveal:not([hidden])")

    reason = orm(lambda: VoteReason.objects.select_related("vote").get())
    assert reason.vote.winner == "a"
    assert reason.tags == ["accurate", "clear"]
    assert reason.comment == "Short and to the point. A, B, T and X typed here never vote."
    # What was sent stays in view, locked; a new round clears it.
    assert (
        page.is_disabled("input[value=accurate]")
        and page.get_attribute("#reason-comment", "readonly") is not None
    )
    shoot(visit, "reasons-voted.png")
    # Reopened from its address, the voted battle shows the reasons it was given, still locked.
    page.reload()
    page.wait_for_selector(".pane[data-side=a] .pane__reveal:not([hidden])")
    page.wait_for_function("() => document.querySelector('#reason-comment').value !== ''")
    assert page.is_checked("input[value=accurate]") and page.is_checked("input[value=clear]")
    assert not page.is_checked("input[value=safe]") and page.is_disabled("input[value=safe]")
    assert page.input_value("#reason-comment").startswith("Short and to the point.")
    page.click("#new-round")
    assert page.is_enabled("input[value=accurate]") and not page.is_checked("input[value=accurate]")
    assert page.input_value("#reason-comment") == ""


def test_a_refused_comment_keeps_the_vote_open_and_a_plain_vote_then_goes_through(
    chromium: OpenPage, arena_models: Any, orm: Orm
) -> None:
    visit = chromium()
    visit.goto("/")
    page = visit.page
    ask(visit, "Why is the sky blue?")
    page.wait_for_function(VOTES_OPEN)
    page.fill("#reason-comment", "https://a.example/x https://b.example/y https://c.example/z")
    page.get_by_role("button", name="B is better").click()
    page.wait_for_function("() => document.querySelector('#vote-note').classList.contains('is-error')")
    assert "moderation" in page.inner_text("#vote-note")
    assert orm(lambda: Vote.objects.count()) == 0

    page.fill("#reason-comment", "")
    page.get_by_role("button", name="B is better").click()
    page.wait_for_selector(".pane[data-side=b] .pane__reveal:not([hidden])")
    assert orm(lambda: Vote.objects.get().winner) == "b"
    assert orm(lambda: VoteReason.objects.count()) == 0
