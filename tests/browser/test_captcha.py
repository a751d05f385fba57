"""A vendor's bot check in the real page: static/arena/captcha.js hands the widget's token to the
battle, and the widget is reset for the next one.

The vendor's own script lives on its servers, so a stand-in answers the page's request for it: it
renders as the vendor's implicit rendering does, into the element with the vendor's class, and calls
the function that element's data-callback names with a token; its reset() issues the next token.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest

from arena import views
from tests.arena import test_captcha
from tests.arena.test_captcha import FakeSiteverify
from tests.browser.conftest import BROWSER_TESTS, VOTES_OPEN

pytestmark = BROWSER_TESTS
siteverify_of_each_vendor = test_captcha.siteverify  # the fixture, here under this name

# Never contacted: the test answers the page's requests to it.
STAND_IN = "http://127.0.0.1:9"
GLOBALS = {"turnstile": "turnstile", "hcaptcha": "hcaptcha", "recaptcha": "grecaptcha"}
SCRIPT = """
(() => {
  const box = document.querySelector(".%(css_class)s");
  let issued = 0;
  const solve = () => setTimeout(() => window[box.dataset.callback]("token-" + ++issued), 50);
  window.%(api)s = { reset: solve };
  solve();
})();
"""


def test_the_widgets_token_opens_the_battle_and_a_new_one_the_next(
    siteverify_of_each_vendor: FakeSiteverify, chromium: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = siteverify_of_each_vendor  # set up first: its models are made before Playwright runs
    widget = views.CAPTCHA_WIDGETS[fake.vendor]
    stand_in = dataclasses.replace(widget, script=f"{STAND_IN}/api.js", csp={"script-src": [STAND_IN]})
    monkeypatch.setitem(views.CAPTCHA_WIDGETS, fake.vendor, stand_in)
    fake.good |= {"token-1", "token-2"}
    script = SCRIPT % {"css_class": widget.css_class, "api": GLOBALS[fake.vendor]}

    visit = chromium()
    violations: list[str] = []
    visit.page.on("console", lambda m: violations.append(m.text) if "Content Security" in m.text else None)
    visit.page.route(
        f"{STAND_IN}/**", lambda route: route.fulfill(body=script, content_type="application/javascript")
    )
    visit.goto("/")
    for prompt in ("Why is the sky blue?", "And at sunset?"):
        if prompt != "Why is the sky blue?":
            visit.page.click("#new-round")
        visit.page.fill("#prompt", prompt)
        visit.page.keyboard.press("Control+Enter")
        visit.page.wait_for_function(VOTES_OPEN)

    posts = [r for r in visit.responses if r.url.endswith("/api/v1/battles/") and r.request.method == "POST"]
    assert [r.status for r in posts] == [201, 201]
    assert [r.request.post_data_json["challenge"] for r in posts] == ["token-1", "token-2"]
    assert [form["response"] for form in fake.requests] == [["token-1"], ["token-2"]]
    assert violations == []
