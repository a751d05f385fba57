"""Headless Chromium driving the battle pages against a real uvicorn (`live_asgi`, tests/conftest.py).

The server must be ASGI: Django's WSGI live server buffers the event stream until it ends.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest
from django.db import connection

from providers.models import LLM
from tests.upstream import Behaviour, FakeOpenAI

CHROMIUM = "/usr/bin/chromium"  # Debian's; tests never download a browser
# Every browser test module's `pytestmark`: marked, and skipped where that Chromium is missing.
BROWSER_TESTS = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is missing (apt-get install chromium)"
    ),
]
# The page has both answers and takes a vote.
VOTES_OPEN = "() => !document.querySelector('[data-winner=a]').disabled"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]

T = TypeVar("T")


@pytest.fixture(autouse=True)
def _static_from_finders(settings: Any) -> None:
    # pytest-django runs tests with DEBUG off, and WhiteNoise then serves only collected files
    # (STATIC_ROOT); serve the app's own from the finders, as `make run` does, without a collectstatic.
    settings.WHITENOISE_USE_FINDERS = True


@dataclass
class ArenaModels:
    alpha: LLM
    beta: LLM
    upstream: FakeOpenAI
    # Distinct answers, streamed in many small chunks slowly enough that streaming is observable.
    alpha_text: str = "Sunlight scatters off the small molecules of the air; short blue waves scatter most."
    beta_text: str = "Rayleigh scattering: the shorter the wavelength, the more it is scattered about."


@pytest.fixture
def arena_models(openai_upstream: FakeOpenAI, transactional_db: None) -> ArenaModels:
    """Two public models behind the fake OpenAI upstream; the only two the sampler can draw."""
    common = {"backend": LLM.Backend.OPENAI_COMPATIBLE, "base_url": openai_upstream.base_url}
    alpha = LLM.objects.create(
        name="alpha-chat", display_name="Alpha Chat", organization="Alpha Labs", model="alpha-up", **common
    )
    beta = LLM.objects.create(
        name="beta-chat", display_name="Beta Chat", organization="Beta Inc", model="beta-up", **common
    )
    models = ArenaModels(alpha=alpha, beta=beta, upstream=openai_upstream)
    openai_upstream.behaviours["alpha-up"] = Behaviour(text=models.alpha_text, chunk_delay=0.02)
    openai_upstream.behaviours["beta-up"] = Behaviour(text=models.beta_text, chunk_delay=0.02)
    return models


def in_thread(fn: Callable[[], T]) -> T:
    """Run ORM code beside Playwright.

    Playwright's sync API keeps an event loop running in this thread, so Django refuses ORM calls
    here (SynchronousOnlyOperation). A short-lived thread has no loop; its connection is closed so
    the database can be flushed after the test.
    """

    def run() -> T:
        try:
            return fn()
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(run).result()


# Chromium may drop an event stream's body once the page closes it, so the page records each event.
RECORD_EVENTS = """
window.__events = [];
window.EventSource = class extends window.EventSource {
  constructor(...args) {
    super(...args);
    this.addEventListener("message", (event) => window.__events.push(event.data));
  }
};
"""


@pytest.fixture
def orm() -> Callable[[Callable[[], T]], T]:
    """`in_thread`, for tests: `orm(lambda: Vote.objects.get())`."""
    return in_thread


@dataclass
class Browser:
    """One page of headless Chromium, with every response it received recorded."""

    page: Any
    base_url: str
    responses: list[Any] = field(default_factory=list)

    def goto(self, path: str) -> None:
        self.page.goto(self.base_url + path)

    def events(self) -> list[str]:
        """The data of every server-sent event the page's EventSources received."""
        return self.page.evaluate("window.__events")

    def bodies(self) -> list[tuple[str, str]]:
        """(url, headers + body) of each response so far; bodies Chromium no longer holds are skipped."""
        seen = []
        for response in self.responses:
            headers = "\n".join(f"{k}: {v}" for k, v in response.all_headers().items())
            try:
                body = response.body().decode("utf-8", "replace")
            except Exception:  # event streams and evicted bodies: Chromium keeps no copy
                body = ""
            seen.append((response.url, headers + "\n\n" + body))
        return seen


@pytest.fixture
def chromium(live_asgi: str, arena_models: ArenaModels) -> Iterator[Callable[..., Browser]]:
    """A factory of pages on the live server.

    Started after the server and the models and stopped before the database is flushed: while
    Playwright runs, this thread cannot touch the ORM (see `in_thread`).
    """
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        contexts = []

        def open_page(width: int = 1280, height: int = 900) -> Browser:
            context = browser.new_context(viewport={"width": width, "height": height})
            # A bound on waiting for a state, not a timing assertion: on a loaded 2-core machine the
            # page's proof-of-work and the paced stream can take well over 15 s.
            context.set_default_timeout(60_000)
            context.add_init_script(RECORD_EVENTS)
            contexts.append(context)
            page = context.new_page()
            visit = Browser(page=page, base_url=live_asgi)
            page.on("response", lambda response: visit.responses.append(response))
            return visit

        try:
            yield open_page
        finally:
            for context in contexts:
                context.close()
            browser.close()
