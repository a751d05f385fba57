"""Every page works in headless Chromium under the Content-Security-Policy, with no violation reported."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from leaderboard.models import Rating, Snapshot
from tests.browser.conftest import BROWSER_TESTS, VOTES_OPEN

pytestmark = BROWSER_TESTS


def watched(visit: Any) -> tuple[list[str], list[str]]:
    """The page's CSP violations (Chromium reports each on the console) and its uncaught errors."""
    violations: list[str] = []
    errors: list[str] = []
    visit.page.on(
        "console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None
    )
    visit.page.on("pageerror", lambda e: errors.append(str(e)))
    return violations, errors


def test_the_arena_pages_run_under_the_policy(
    chromium: Callable[..., Any], arena_models: Any, orm: Any
) -> None:
    def publish() -> None:  # a board with rows: its intervals are drawn from style attributes
        snapshot = Snapshot.objects.create(votes=12, votes_digest="ab" * 32, params={"bootstrap": 100})
        for rank, llm in enumerate((arena_models.alpha, arena_models.beta), start=1):
            Rating.objects.create(
                snapshot=snapshot,
                llm=llm,
                rating=1040 - 40 * rank,
                ci_lower=980,
                ci_upper=1060,
                rank=rank,
                votes=12,
            )

    orm(publish)
    visit = chromium()
    violations, errors = watched(visit)
    for path in ("/named/", "/leaderboard/", "/testing-ledger/", "/"):
        response = visit.page.goto(visit.base_url + path)
        assert "script-src 'self'" in response.headers["content-security-policy"], path
    # A whole battle: the page's script, its fetches and the event stream all run under the policy.
    visit.page.fill("#prompt", "Why is the sky blue?")
    visit.page.keyboard.press("Control+Enter")
    visit.page.wait_for_function(VOTES_OPEN)
    visit.page.click("[data-winner=a]")
    visit.page.wait_for_selector(".is-revealed .reveal__label")
    assert violations == [] and errors == []

    # The control: an inline script is refused, and reported where this test listens.
    ran = visit.page.evaluate(
        "() => { const s = document.createElement('script'); s.textContent = 'window.__ran = 1';"
        " document.body.append(s); return window.__ran === 1; }"
    )
    assert ran is False
    visit.page.wait_for_timeout(200)
    assert any("inline script" in v for v in violations)


def test_the_api_docs_render_under_their_policy(chromium: Callable[..., Any]) -> None:
    visit = chromium()
    violations, errors = watched(visit)
    visit.goto("/api/v1/docs/")
    visit.page.wait_for_selector(".swagger-ui .opblock-tag", timeout=20_000)
    visit.goto("/api/v1/redoc/")
    visit.page.wait_for_selector("redoc h1", timeout=20_000)
    assert "Open LLM Arena API" in visit.page.inner_text("redoc h1")
    # Redoc's sidebar shows its vendor's logo from a CDN: blocked (no page loads from a CDN), and
    # Redoc then leaves it out. Nothing else is refused.
    assert all("https://cdn.redoc.ly/" in v for v in violations), violations
    assert errors == []
