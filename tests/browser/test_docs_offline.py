"""The API docs pages (Swagger UI and Redoc) request nothing from another host, as a browser sees them.

Served under a name that is not localhost: Swagger UI and Redoc both leave some requests out on
localhost and 127.0.0.1, which a deployment never is. Chromium resolves that name to this machine.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.browser.conftest import BROWSER_TESTS, CHROMIUM, CHROMIUM_ARGS

pytestmark = BROWSER_TESTS

HOST = "arena.test"  # a reserved name (RFC 2606): only Chromium's mapping below resolves it


class Page:
    def __init__(self, page: Any, base_url: str) -> None:
        self.page = page
        self.base_url = base_url
        self.requested: list[str] = []  # every request the page started, blocked ones included
        page.on("request", lambda request: self.requested.append(request.url))

    def elsewhere(self) -> list[str]:
        """Requests for anything not on this server: another host, whatever its fate."""
        return [
            url
            for url in self.requested
            if urlsplit(url).scheme not in ("data", "blob") and urlsplit(url).hostname != HOST
        ]


@pytest.fixture
def docs_page(live_asgi: str, settings: Any) -> Iterator[Page]:
    from playwright.sync_api import sync_playwright

    settings.ALLOWED_HOSTS = [HOST]
    port = urlsplit(live_asgi).port
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[*CHROMIUM_ARGS, f"--host-resolver-rules=MAP {HOST} 127.0.0.1"],
        )
        context = browser.new_context()
        context.set_default_timeout(20_000)
        try:
            yield Page(context.new_page(), f"http://{HOST}:{port}")
        finally:
            context.close()
            browser.close()


def test_swagger_ui_requests_nothing_from_another_host(docs_page: Page) -> None:
    docs_page.page.goto(docs_page.base_url + "/api/v1/docs/")
    docs_page.page.wait_for_selector(".swagger-ui .opblock-tag")
    docs_page.page.click(".opblock-summary-path[data-path='/api/v1/battles/{battle_id}/stream']")
    docs_page.page.wait_for_selector("option[value='text/event-stream']", state="attached")
    docs_page.page.wait_for_load_state("networkidle")
    assert f"{docs_page.base_url}/api/v1/schema/" in docs_page.requested
    assert docs_page.elsewhere() == []


def test_redoc_requests_nothing_from_another_host(docs_page: Page) -> None:
    docs_page.page.goto(docs_page.base_url + "/api/v1/redoc/")
    docs_page.page.wait_for_selector("redoc h1")
    docs_page.page.wait_for_selector("h2:has-text('Stream both answers (server-sent events)')")
    docs_page.page.wait_for_load_state("networkidle")
    assert f"{docs_page.base_url}/api/v1/schema/" in docs_page.requested
    # Its side menu is drawn, vendor's link and all; only the vendor's logo is left out.
    assert docs_page.page.locator("a[href='https://redocly.com/redoc/']").count() == 1
    assert docs_page.page.locator("img[alt='redocly logo']").count() == 0
    assert docs_page.elsewhere() == []

    # The control: a request for another host, started by the page, is seen and counted.
    docs_page.page.evaluate(
        """() => document.body.insertAdjacentHTML("beforeend", '<img src="https://cdn.example/pixel.png">')"""
    )
    docs_page.page.wait_for_timeout(300)
    assert docs_page.elsewhere() == ["https://cdn.example/pixel.png"]
