"""A direct chat, and a battle shared, opened elsewhere and revoked, in headless Chromium."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from arena.models import Battle, BattleShare, Vote
from tests.browser.conftest import BROWSER_TESTS, VOTES_OPEN
from tests.browser.test_battle import answer_texts, ask, shoot

pytestmark = BROWSER_TESTS

OpenPage = Callable[..., Any]
Orm = Callable[[Callable[[], Any]], Any]

ANSWER_DONE = "() => document.querySelectorAll('.pane__status[data-state=done]').length === {n}"


def test_a_direct_chat_talks_with_the_named_model_over_two_turns_without_a_vote(
    chromium: OpenPage, arena_models: Any, orm: Orm
) -> None:
    visit = chromium()
    visit.goto("/")
    visit.page.get_by_role("link", name="Chat").click()
    visit.page.wait_for_url("**/chat/")
    assert visit.page.get_attribute(".site-nav a[href='/chat/']", "aria-current") == "page"
    assert visit.page.locator(".pane").count() == 1
    visit.page.select_option("#model-a", "beta-chat")
    ask(visit, "Why is the sky blue?")

    visit.page.wait_for_function(ANSWER_DONE.format(n=1))
    assert visit.page.inner_text("#pane-a-title").endswith("Beta Chat")
    assert visit.page.inner_text(".pane[data-side=a] .answer__body") == arena_models.beta_text
    assert visit.page.is_hidden("#vote-buttons")
    assert visit.page.is_hidden("#share")
    # The composer turns to a follow-up once the page has the battle's new state, just after the answer.
    visit.page.wait_for_function("() => /follow-up/i.test(document.querySelector('#composer').innerText)")
    assert visit.page.is_hidden("#reasons")  # no vote, so no reasons for one
    assert "/b/" in visit.page.url

    ask(visit, "And at sunset?")
    visit.page.wait_for_function(
        "() => document.querySelectorAll('.pane[data-side=a] .answer__body').length === 2"
        " && document.querySelector('.pane__status').dataset.state === 'done'"
    )
    assert visit.page.locator(".turn").count() == 2
    shoot(visit, "chat.png")
    # A reload reads the chat back onto the chat page, still with no vote.
    visit.page.reload()
    visit.page.wait_for_function("() => document.querySelectorAll('.turn').length === 2")
    assert visit.page.is_hidden("#vote-buttons")

    battle = orm(lambda: Battle.objects.get())
    assert (battle.mode, battle.model_b_id, battle.state) == ("direct", None, "ready")
    assert orm(lambda: Vote.objects.count()) == 0


def test_a_battle_shared_after_its_vote_opens_elsewhere_until_revoked(
    chromium: OpenPage, arena_models: Any, orm: Orm
) -> None:
    visit = chromium()
    visit.goto("/")
    ask(visit, "Why is the sky blue?")
    visit.page.wait_for_function(VOTES_OPEN)
    assert visit.page.is_hidden("#share")  # no share before the vote
    answers = answer_texts(visit)
    visit.page.get_by_role("button", name="A is better").click()
    visit.page.wait_for_selector("#share:not([hidden])")
    assert orm(lambda: BattleShare.objects.count()) == 0  # nothing public until asked

    visit.page.get_by_role("button", name="Share", exact=True).click()
    visit.page.wait_for_selector("#share-url:not([hidden])")
    link = visit.page.input_value("#share-url")
    assert "/s/" in link
    battle = orm(lambda: Battle.objects.select_related("model_a").get())
    assert str(battle.id) not in link

    reader = chromium()  # a fresh context: no cookie of the visitor
    response = reader.page.goto(link)
    assert response.status == 200
    assert response.headers["x-robots-tag"] == "noindex, nofollow"
    # The answers went through render.js (Markdown drawn, the plain-text fallback class removed).
    reader.page.wait_for_function("() => !document.querySelector('[data-answer].is-plain')")
    shown = reader.page.inner_text("#shared")
    assert answers["a"] in shown and answers["b"] in shown
    assert "Why is the sky blue?" in shown and battle.model_a.label in shown
    assert "model A is better" in shown
    assert battle.visitor_hash not in reader.page.content()
    shoot(reader, "shared.png")
    shoot(visit, "share-box.png")

    visit.page.get_by_role("button", name="Revoke link").click()
    visit.page.wait_for_selector("#share-create:not([hidden])")
    assert visit.page.is_hidden("#share-url") and visit.page.is_hidden("#share-revoke")
    assert orm(lambda: BattleShare.objects.count()) == 0
    assert reader.page.goto(link).status == 404
    assert chromium().page.goto(link).status == 404
