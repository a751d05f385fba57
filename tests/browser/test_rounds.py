"""Never waste a round, in headless Chromium: retry a side, stop, ask both again, come back after a
reload, vote from the keyboard, and vote on a phone with the bar in reach."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Any

import pytest

from arena.models import AnswerAttempt, Battle, Vote
from providers.models import LLM
from tests.browser.conftest import BROWSER_TESTS, VOTES_OPEN
from tests.browser.test_battle import SHOTS, answer_texts, ask, assert_no_identity, shoot
from tests.upstream import Behaviour

pytestmark = BROWSER_TESTS

OpenPage = Callable[..., Any]
Orm = Callable[[Callable[[], Any]], Any]


def wait_until(condition: Callable[[], bool], seconds: float = 3) -> bool:
    """Whether `condition` holds within `seconds`: the fake upstream sees a closed connection late."""
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)
    return condition()


RETRY_SHOWN = "() => document.querySelector('[data-retry]:not([hidden])') !== null"
BOTH_STOPPED = "() => document.querySelectorAll('.pane__status[data-state=stopped]').length === 2"


@pytest.fixture
def demo_models(arena_models: Any, orm: Orm, settings: Any) -> list[LLM]:
    """Three demo models, the only ones drawn (the fake upstream's two are left out)."""
    settings.DEMO_TOKEN_DELAY = 0.005

    def make() -> list[LLM]:
        LLM.objects.update(weight=0)
        return [
            LLM.objects.create(
                name=f"demo-{p}", display_name=p.title(), organization="Arena demo", backend="demo", model=p
            )
            for p in ("concise", "structured", "thoughtful")
        ]

    return orm(make)


def test_a_demo_failure_is_retried_from_its_pane_until_a_fresh_model_answers_and_takes_the_vote(
    chromium: OpenPage, demo_models: list[LLM], orm: Orm
) -> None:
    visit = chromium()
    visit.goto("/")
    ask(visit, "Tell me about green tea [demo:error]")
    visit.page.wait_for_function(RETRY_SHOWN)
    failed = visit.page.get_attribute("[data-retry]:not([hidden])", "data-retry")
    assert visit.page.locator(".answer__error").count() == 1  # one side, as the README says
    assert visit.page.is_disabled("[data-winner=a]")
    first = orm(lambda: Battle.objects.get().llm(failed).pk)
    shoot(visit, "retry-desktop.png")

    # The same model again: the marker fails it once more.
    visit.page.get_by_role("button", name=f"Retry model {failed.upper()}").click()
    visit.page.wait_for_function(RETRY_SHOWN)
    assert orm(lambda: Battle.objects.get().llm(failed).pk) == first

    # After two failures a different model, drawn by the server, answers that side.
    visit.page.get_by_role("button", name=f"Retry model {failed.upper()}").click()
    visit.page.wait_for_function(VOTES_OPEN)
    retries = [r.json() for r in visit.responses if r.url.endswith("/retry/")]
    assert [r["fresh_model"] for r in retries] == [False, True]
    assert visit.page.locator(".answer__error").count() == 0
    assert answer_texts(visit)[failed]
    fresh = orm(lambda: Battle.objects.select_related("model_a", "model_b").get().llm(failed))
    assert fresh.pk != first
    assert fresh.label not in visit.page.content()

    visit.page.get_by_role("button", name=f"{failed.upper()} is better").click()
    visit.page.wait_for_selector(".pane__reveal:not([hidden])")
    assert visit.page.inner_text(f".pane[data-side={failed}] .reveal__label") == fresh.label
    vote = orm(lambda: Vote.objects.get())
    assert getattr(vote, f"model_{failed}_id") == fresh.pk and vote.winner == failed
    assert orm(lambda: AnswerAttempt.objects.count()) == 2

    # The prompt survives a new round.
    visit.page.get_by_role("button", name="New round").click()
    assert visit.page.input_value("#prompt") == "Tell me about green tea [demo:error]"
    assert visit.page.url.endswith("/")


def test_stop_ends_both_answers_and_asking_again_gives_a_round_to_vote_on(
    chromium: OpenPage, arena_models: Any, orm: Orm
) -> None:
    long = " ".join(["word"] * 300)  # 300 chunks 50 ms apart: fifteen seconds to the end
    for model in ("alpha-up", "beta-up"):
        arena_models.upstream.behaviours[model] = Behaviour(text=long, chunk_delay=0.05)
    visit = chromium()
    visit.goto("/")
    ask(visit, "Count for me")
    visit.page.wait_for_selector(".pane__status[data-state=streaming]")
    assert visit.page.is_visible("#stop")
    visit.page.get_by_role("button", name="Stop").click()
    visit.page.wait_for_function(BOTH_STOPPED, timeout=5_000)
    shoot(visit, "stopped-desktop.png")

    assert all(0 < len(text) < len(long) for text in answer_texts(visit).values())
    assert visit.page.is_hidden("#stop") and visit.page.is_disabled("[data-winner=a]")
    assert "can’t be voted on yet" in visit.page.inner_text("#vote-note")
    assert orm(lambda: Battle.objects.get().state) == Battle.State.FAILED
    assert wait_until(lambda: not arena_models.upstream.connections)

    arena_models.upstream.behaviours["alpha-up"] = Behaviour(text=arena_models.alpha_text)
    arena_models.upstream.behaviours["beta-up"] = Behaviour(text=arena_models.beta_text)
    visit.page.get_by_role("button", name="Ask both again").click()
    visit.page.wait_for_function(VOTES_OPEN)
    assert sorted(answer_texts(visit).values()) == sorted([arena_models.alpha_text, arena_models.beta_text])
    assert visit.page.locator(".answer__error").count() == 0
    visit.page.get_by_role("button", name="Tie").click()
    visit.page.wait_for_selector(".pane__reveal:not([hidden])")
    assert orm(lambda: Vote.objects.get().winner) == "tie"
    assert orm(lambda: AnswerAttempt.objects.filter(reason="regenerate").count()) == 2


def test_a_battle_comes_back_after_a_reload_back_and_in_a_second_tab_and_still_takes_the_vote(
    chromium: OpenPage, arena_models: Any, orm: Orm
) -> None:
    visit = chromium()
    visit.goto("/")
    ask(visit, "Why is the sky blue?")
    visit.page.wait_for_function(VOTES_OPEN)
    battle_id = orm(lambda: str(Battle.objects.get().pk))
    assert visit.page.url.endswith(f"/b/{battle_id}/")
    before = answer_texts(visit)

    visit.page.reload()
    visit.page.wait_for_function(VOTES_OPEN)
    assert answer_texts(visit) == before
    assert visit.page.locator(".turn__prompt-text").all_inner_texts() == ["Why is the sky blue?"] * 2
    assert visit.page.is_visible("#vote") and "Which one is better?" in visit.page.inner_text("#vote-note")
    assert_no_identity(visit.page.content(), "the page read back")
    visit.page.get_by_text("Your recent battles").click()
    assert visit.page.is_visible(f"#history a[href='/b/{battle_id}/'][aria-current=page]")

    # Back leaves the battle for an empty page; Forward brings it back.
    visit.page.go_back()
    visit.page.wait_for_function("() => document.querySelectorAll('.turn').length === 0")
    assert visit.page.url.endswith("/") and visit.page.is_hidden("#vote")
    visit.page.go_forward()
    visit.page.wait_for_function(VOTES_OPEN)
    assert answer_texts(visit) == before

    # A second tab of the same visitor sees the same battle.
    second = visit.page.context.new_page()
    second.goto(visit.page.url)
    second.wait_for_function(VOTES_OPEN)
    assert {side: second.inner_text(f".pane[data-side={side}] .answer__body") for side in "ab"} == before
    second.close()

    visit.page.get_by_role("button", name="B is better").click()
    visit.page.wait_for_selector(".pane__reveal:not([hidden])")
    assert orm(lambda: Vote.objects.get().winner) == "b"
    visit.page.reload()
    visit.page.wait_for_selector(".pane__reveal:not([hidden])")
    battle = orm(lambda: Battle.objects.select_related("model_b").get())
    assert visit.page.inner_text(".pane[data-side=b] .reveal__label") == battle.model_b.label
    assert visit.page.is_disabled("[data-winner=a]")

    # Nobody else's browser can open it.
    stranger = chromium()
    assert stranger.page.goto(f"{stranger.base_url}/b/{battle_id}/").status == 404


def test_a_reload_mid_stream_stops_the_answers_and_the_round_is_asked_again_and_voted(
    chromium: OpenPage, arena_models: Any, orm: Orm
) -> None:
    long = " ".join(["word"] * 300)
    for model in ("alpha-up", "beta-up"):
        arena_models.upstream.behaviours[model] = Behaviour(text=long, chunk_delay=0.05)
    visit = chromium()
    visit.goto("/")
    ask(visit, "Count for me")
    visit.page.wait_for_selector(".pane__status[data-state=streaming]")
    visit.page.reload()  # the closed stream cancels both calls; the battle comes back stopped
    visit.page.wait_for_function(BOTH_STOPPED)
    assert visit.page.is_visible("[data-retry=a]") and visit.page.is_visible("#regenerate")
    assert wait_until(lambda: not arena_models.upstream.connections)

    arena_models.upstream.behaviours["alpha-up"] = Behaviour(text=arena_models.alpha_text)
    arena_models.upstream.behaviours["beta-up"] = Behaviour(text=arena_models.beta_text)
    visit.page.get_by_role("button", name="Ask both again").click()
    visit.page.wait_for_function(VOTES_OPEN)
    visit.page.get_by_role("button", name="A is better").click()
    visit.page.wait_for_selector(".pane__reveal:not([hidden])")
    assert orm(lambda: Vote.objects.get().winner) == "a"


def test_the_vote_takes_keyboard_only_and_letters_typed_in_the_prompt_do_not_vote(
    chromium: OpenPage, arena_models: Any, orm: Orm
) -> None:
    visit = chromium()
    visit.goto("/")
    visit.page.focus("#prompt")
    visit.page.keyboard.type("Why is the sky blue?")
    visit.page.keyboard.press("Control+Enter")
    visit.page.wait_for_function(VOTES_OPEN)
    keys = visit.page.inner_text("#vote-keys")
    assert re.search(r"A\s+A is better, B\s+B is better, T\s+tie, X\s+both are bad", keys), keys

    # When the answers end, focus is on the vote bar, and the next Tab reaches its first button.
    visit.page.wait_for_function("() => document.activeElement.id === 'vote-buttons'")
    visit.page.keyboard.press("Tab")
    assert visit.page.evaluate("document.activeElement.dataset.winner") == "a"

    visit.page.locator("#prompt").focus()
    visit.page.keyboard.type("a bat")
    assert visit.page.input_value("#prompt") == "a bat"
    assert visit.page.is_enabled("[data-winner=a]") and not orm(lambda: Vote.objects.exists())

    visit.page.keyboard.press("Shift+Tab")  # out of the prompt box, onto the vote bar's tools
    visit.page.keyboard.press("x")
    visit.page.wait_for_selector(".pane__reveal:not([hidden])")
    assert orm(lambda: Vote.objects.get().winner) == "bothbad"
    assert visit.page.get_attribute("[data-winner=bothbad]", "aria-pressed") == "true"


def test_at_phone_width_the_vote_bar_sticks_in_reach_below_the_stacked_answers(
    chromium: OpenPage, arena_models: Any, orm: Orm
) -> None:
    paragraph = "The light of the sun is scattered by the air, the blue most of all. "
    arena_models.upstream.behaviours["alpha-up"] = Behaviour(text=paragraph * 12)
    arena_models.upstream.behaviours["beta-up"] = Behaviour(text=paragraph * 10)
    visit = chromium(width=375, height=740)
    visit.goto("/")
    ask(visit, "Why is the sky blue?")
    visit.page.wait_for_function(VOTES_OPEN)

    assert visit.page.evaluate("document.documentElement.scrollHeight") > 1500  # the answers are long
    assert visit.page.evaluate("getComputedStyle(document.getElementById('vote')).position") == "sticky"
    for scroll in (0, 400):
        visit.page.evaluate(f"window.scrollTo(0, {scroll})")
        visit.page.wait_for_timeout(100)
        bar = visit.page.evaluate("JSON.stringify(document.getElementById('vote').getBoundingClientRect())")
        box = json.loads(bar)
        assert 0 <= box["top"] and box["bottom"] <= 740, (scroll, box)
    # Stacked panes: no arrow points sideways at them.
    assert not visit.page.locator(".vote__arrow").first.is_visible()
    assert visit.page.inner_text("[data-winner=a]").strip() == "A is better"
    assert visit.page.evaluate("document.documentElement.scrollWidth") <= 375
    visit.page.evaluate("window.scrollTo(0, 0)")
    shoot(visit, "vote-bar-phone.png")
    visit.page.screenshot(path=str(SHOTS / "vote-bar-phone-screen.png"))  # what the phone shows

    visit.page.get_by_role("button", name="B is better").click()
    visit.page.wait_for_selector(".pane__reveal:not([hidden])")
    assert orm(lambda: Vote.objects.get().winner) == "b"
    assert visit.page.evaluate("getComputedStyle(document.getElementById('vote')).position") == "static"
