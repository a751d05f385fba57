"""The interface in French and Chinese in a real browser: the header's switcher (a plain form),
the battle page's own strings and those its script writes, the board, and an API error in the
language the browser asks for."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.browser.conftest import BROWSER_TESTS, VOTES_OPEN
from tests.browser.test_csp import watched

pytestmark = BROWSER_TESTS


def test_switching_to_french_then_chinese_translates_the_pages_and_their_scripts(
    chromium: Callable[..., Any], arena_models: Any
) -> None:
    visit = chromium()
    violations, errors = watched(visit)
    page = visit.page
    visit.goto("/")
    assert page.inner_text("h1") == "Which answer is better?"

    page.click(".lang-switch button[value=fr]")  # a form post, no script involved
    page.wait_for_selector("html[lang=fr]")
    assert page.inner_text("h1") == "Quelle réponse est la meilleure\u00a0?"
    assert page.get_attribute("#prompt", "placeholder") == "Posez n’importe quelle question aux deux modèles…"
    assert page.inner_text(".lang-switch [aria-current]") == "Français"
    # Strings written by the page's script come from the catalogue too.
    page.fill("#prompt", "Pourquoi le ciel est-il bleu ?")
    page.keyboard.press("Control+Enter")
    page.wait_for_function(VOTES_OPEN)
    assert page.inner_text("#vote-note") == "Les deux réponses sont là. Laquelle est la meilleure\u00a0?"
    assert page.inner_text("[data-side=a] [data-role=status]") == "Terminé"
    page.click("[data-winner=a]")
    page.wait_for_selector(".is-revealed .reveal__label")
    assert page.inner_text("#vote-note").startswith("Vous avez voté «\u00a0A est meilleur\u00a0».")
    assert page.inner_text("[data-side=a] .reveal__badge") == "Votre choix"

    visit.goto("/leaderboard/")
    assert page.inner_text("h1") == "Classement"
    page.click(".lang-switch button[value=zh-hans]")  # back to the same page, in Chinese
    page.wait_for_selector("html[lang=zh-hans]")
    assert page.url.endswith("/leaderboard/") and page.inner_text("h1") == "排行榜"
    assert "投票是匿名的" in page.inner_text("footer")
    visit.goto("/")
    assert page.inner_text("h1") == "哪个回答更好？"
    assert page.inner_text("#send") == "发送"
    assert violations == [] and errors == []


def test_a_french_browser_gets_french_pages_and_french_api_errors(chromium: Callable[..., Any]) -> None:
    visit = chromium()
    visit.page.context.set_extra_http_headers({"Accept-Language": "fr-FR,fr;q=0.9,en;q=0.5"})
    visit.goto("/leaderboard/")
    assert visit.page.inner_text("h1") == "Classement"
    body = visit.page.evaluate("fetch('/api/v1/visitor/data').then((r) => r.json())")
    assert body == {
        "detail": "Ce navigateur n’a pas de cookie de visiteur\u00a0: rien n’est enregistré à son nom.",
        "code": "no_visitor",
    }
