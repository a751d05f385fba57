"""The battle pages in headless Chromium, against uvicorn and a fake OpenAI upstream on real sockets."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from arena.models import Battle, Vote
from leaderboard.models import Rating, Snapshot
from tests.browser.conftest import BROWSER_TESTS, VOTES_OPEN
from tests.upstream import Behaviour

pytestmark = BROWSER_TESTS

SHOTS = Path("/tmp/arena-shots")
ROUND_FAILED = "() => document.querySelector('#vote-note').classList.contains('is-error')"

# Everything that would tell a voter which model answered.
IDENTITIES = (
    "alpha-chat",
    "Alpha Chat",
    "Alpha Labs",
    "alpha-up",
    "beta-chat",
    "Beta Chat",
    "Beta Inc",
    "beta-up",
)

MINUS = "\N{MINUS SIGN}"

OpenPage = Callable[..., Any]  # tests/browser/conftest.py `chromium`: opens a page, returns a Browser
Orm = Callable[[Callable[[], Any]], Any]


def answer_texts(visit: Any) -> dict[str, str]:
    return {side: visit.page.inner_text(f".pane[data-side={side}] .answer__body") for side in "ab"}


def ask(visit: Any, prompt: str) -> None:
    visit.page.fill("#prompt", prompt)
    visit.page.keyboard.press("Control+Enter")


def assert_no_identity(text: str, where: str) -> None:
    for name in IDENTITIES:
        assert name.lower() not in text.lower(), f"{name!r} reached the browser in {where}"


def shoot(visit: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    visit.page.wait_for_timeout(300)  # let colour transitions settle
    visit.page.screenshot(path=str(SHOTS / name), full_page=True)


def test_an_anonymous_battle_streams_both_answers_then_reveals_the_models_after_the_vote(
    chromium: OpenPage, arena_models: Any, orm: Orm
) -> None:
    visit = chromium()
    visit.goto("/")
    ask(visit, "Why is the sky blue?")

    # Streaming is visible: a pane shows part of its answer while votes are still closed.
    visit.page.wait_for_selector(".pane__status[data-state=streaming]")
    assert visit.page.is_disabled("[data-winner=a]")

    visit.page.wait_for_function(VOTES_OPEN)
    assert sorted(answer_texts(visit).values()) == sorted([arena_models.alpha_text, arena_models.beta_text])
    assert all(visit.page.is_enabled(f"[data-winner={w}]") for w in ("a", "b", "tie", "bothbad"))

    assert_no_identity(visit.page.content(), "the page")
    bodies = visit.bodies()
    for url, body in bodies:
        assert_no_identity(body, url)
    # The page and the battle's JSON were read, not skipped as unreadable.
    read = {url.removeprefix(visit.base_url) for url, body in bodies if body.split("\n\n", 1)[1]}
    assert {"/", "/api/v1/battles/"} <= read, read
    events = visit.events()
    for data in events:
        assert_no_identity(data, "the event stream")
    assert json.loads(events[-1]) == {"side": None, "type": "end", "text": "", "state": "ready"}

    visit.page.get_by_role("button", name="A is better").click()
    visit.page.wait_for_selector(".pane[data-side=a] .pane__reveal:not([hidden])")

    battle = orm(lambda: Battle.objects.select_related("model_a", "model_b").get())
    assert visit.page.inner_text(".pane[data-side=a] .reveal__label") == battle.model_a.label
    assert visit.page.inner_text(".pane[data-side=b] .reveal__label") == battle.model_b.label
    assert {battle.model_a.label, battle.model_b.label} == {"Alpha Chat", "Beta Chat"}
    assert "is-winner" in (visit.page.get_attribute(".pane[data-side=a]", "class") or "")
    assert orm(lambda: Vote.objects.get(battle=battle).winner) == "a"
    assert visit.page.is_hidden("#composer")
    shoot(visit, "reveal-desktop.png")

    visit.page.get_by_role("button", name="New round").click()
    assert visit.page.locator(".turn").count() == 0
    assert visit.page.is_visible(".pane[data-side=a] .pane__empty")
    assert visit.page.is_hidden(".pane__reveal")
    assert visit.page.is_hidden("#vote")
    assert visit.page.is_enabled("#prompt")


def test_a_follow_up_appends_a_second_turn_to_both_panes(
    chromium: OpenPage, arena_models: Any, orm: Orm
) -> None:
    visit = chromium()
    visit.goto("/")
    ask(visit, "Why is the sky blue?")
    visit.page.wait_for_function(VOTES_OPEN)
    assert visit.page.inner_text("[data-role=prompt-label]").startswith("Ask a follow-up")

    ask(visit, "And why are sunsets red?")
    visit.page.wait_for_function(
        "() => document.querySelectorAll('.pane[data-side=b] .turn').length === 2"
        " && !document.querySelector('[data-winner=a]').disabled"
    )

    for side in "ab":
        pane = visit.page.locator(f".pane[data-side={side}]")
        assert pane.locator(".turn__prompt-text").all_inner_texts() == [
            "Why is the sky blue?",
            "And why are sunsets red?",
        ]
        first, second = pane.locator(".answer__body").all_inner_texts()
        assert first == second and first in (arena_models.alpha_text, arena_models.beta_text)
    assert_no_identity(visit.page.content(), "the page")

    visit.page.get_by_role("button", name="Tie").click()
    visit.page.wait_for_selector(".pane__reveal:not([hidden])")
    assert orm(lambda: Vote.objects.get().winner) == "tie"
    assert orm(lambda: Battle.objects.get().turns.count()) == 2


def test_a_failed_answer_is_shown_in_its_pane_and_keeps_the_votes_closed(
    chromium: OpenPage, arena_models: Any, orm: Orm
) -> None:
    arena_models.upstream.behaviours["beta-up"] = Behaviour(status=500)
    visit = chromium()
    visit.goto("/")
    ask(visit, "Why is the sky blue?")
    visit.page.wait_for_function(ROUND_FAILED)

    battle = orm(lambda: Battle.objects.select_related("model_a").get())
    failed = "b" if battle.model_a.name == "alpha-chat" else "a"
    error = visit.page.inner_text(f".pane[data-side={failed}] .answer__error")
    assert error.startswith("This answer failed.")
    assert visit.page.get_attribute(f".pane[data-side={failed}] .pane__status", "data-state") == "error"
    assert visit.page.locator(".answer__error").count() == 1
    assert (
        f"Model {failed.upper()}\N{RIGHT SINGLE QUOTATION MARK}s latest answer did not complete"
        in visit.page.inner_text("#vote-note")
    )
    assert all(visit.page.is_disabled(f"[data-winner={w}]") for w in ("a", "b", "tie", "bothbad"))
    assert visit.page.is_hidden("#composer")
    assert visit.page.is_visible("#new-round")

    assert_no_identity(visit.page.content(), "the page")
    assert_no_identity(error, "the error")
    assert orm(lambda: Battle.objects.get().state) == Battle.State.FAILED
    assert not orm(lambda: Vote.objects.exists())


def test_at_phone_width_the_panes_stack_and_nothing_scrolls_sideways(
    chromium: OpenPage, arena_models: Any, orm: Orm
) -> None:
    visit = chromium(width=375, height=740)
    visit.goto("/")
    assert visit.page.evaluate("document.documentElement.scrollWidth") <= 375

    ask(visit, "Why is the sky blue?")
    visit.page.wait_for_function(VOTES_OPEN)
    visit.page.get_by_role("button", name="B is better").click()
    visit.page.wait_for_selector(".pane__reveal:not([hidden])")

    a = visit.page.locator(".pane[data-side=a]").bounding_box()
    b = visit.page.locator(".pane[data-side=b]").bounding_box()
    assert a is not None and b is not None
    assert b["y"] >= a["y"] + a["height"]
    assert a["x"] == b["x"] and a["width"] == b["width"]
    assert visit.page.evaluate("document.documentElement.scrollWidth") <= 375
    shoot(visit, "reveal-phone.png")


def test_in_named_mode_the_chosen_models_are_named_from_the_start(
    chromium: OpenPage, arena_models: Any, orm: Orm
) -> None:
    visit = chromium()
    visit.goto("/named/")
    visit.page.select_option("#model-a", "beta-chat")
    visit.page.select_option("#model-b", "alpha-chat")
    ask(visit, "Why is the sky blue?")

    visit.page.wait_for_function(VOTES_OPEN)
    assert visit.page.inner_text("#pane-a-title").endswith("Beta Chat")
    assert visit.page.inner_text("#pane-b-title").endswith("Alpha Chat")
    assert answer_texts(visit) == {"a": arena_models.beta_text, "b": arena_models.alpha_text}
    assert visit.page.is_disabled("#model-a")

    visit.page.get_by_role("button", name="Both are bad").click()
    visit.page.wait_for_selector(".pane__reveal:not([hidden])")
    assert orm(lambda: Vote.objects.get().winner) == "bothbad"


def test_the_leaderboard_shows_each_model_with_its_interval(
    chromium: OpenPage, arena_models: Any, orm: Orm
) -> None:
    visit = chromium(width=375, height=740)
    visit.goto("/leaderboard/")
    assert "No votes counted yet" in visit.page.inner_text("main")

    def publish() -> None:
        snapshot = Snapshot.objects.create(votes=12, votes_digest="ab" * 32, params={"bootstrap": 100})
        Rating.objects.create(
            snapshot=snapshot,
            llm=arena_models.alpha,
            rating=1031.6,
            ci_lower=1010.2,
            ci_upper=1060.4,
            rank=1,
            votes=12,
        )
        Rating.objects.create(
            snapshot=snapshot,
            llm=arena_models.beta,
            rating=968.4,
            ci_lower=939.6,
            ci_upper=989.8,
            rank=2,
            votes=12,
        )

    orm(publish)
    visit.goto("/leaderboard/")
    rows = visit.page.locator(".board-table tbody tr").all_inner_texts()
    assert "Alpha Chat" in rows[0] and "1032" in rows[0] and f"+28 / {MINUS}22" in rows[0]
    assert "Beta Chat" in rows[1] and "968" in rows[1] and f"+22 / {MINUS}28" in rows[1]
    assert visit.page.locator(".plot__row").count() == 2
    assert "abababababab" in visit.page.inner_text(".board-meta")
    assert visit.page.evaluate("document.documentElement.scrollWidth") <= 375
    shoot(visit, "board-phone.png")
