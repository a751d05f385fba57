"""An image battle in headless Chromium: attach, see the thumbnail, send, the image beside the
prompt, the fake OpenAI upstream given it as a data URL; a bad file refused with its reason."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from arena.models import Battle
from providers.models import LLM
from tests import images
from tests.browser.conftest import BROWSER_TESTS, VOTES_OPEN
from tests.browser.test_battle import OpenPage, Orm, ask

pytestmark = BROWSER_TESTS

EXIF = b"MM\x00*GPS 48.8584 N 2.2945 E"


@pytest.fixture(autouse=True)
def media(settings: Any, tmp_path: Path) -> Path:
    settings.MEDIA_ROOT = str(tmp_path / "media")
    return tmp_path / "media"


def attach(visit: Any, data: bytes, name: str = "photo.png", mime: str = "image/png") -> None:
    visit.page.set_input_files("#image", files=[{"name": name, "mimeType": mime, "buffer": data}])


def test_an_image_battle_shows_the_image_and_sends_it_to_both_vision_models(
    chromium: OpenPage, arena_models: Any, orm: Orm
) -> None:
    orm(lambda: LLM.objects.update(vision=True))
    visit = chromium()
    visit.goto("/")
    attach(visit, images.png(12, 8, exif=EXIF))
    visit.page.wait_for_selector("#image-preview:not([hidden])")
    assert visit.page.get_attribute("#image-preview img", "src").startswith("data:image/png;base64,")
    ask(visit, "What colour is this?")
    visit.page.wait_for_function(VOTES_OPEN)

    for side in "ab":
        src = visit.page.get_attribute(f".pane[data-side={side}] .turn__prompt .turn__image", "src")
        assert src.startswith("data:image/png;base64,")
    assert visit.page.is_hidden("#attach")  # an image goes with the first prompt only
    clean = "data:image/png;base64," + base64.b64encode(images.png(12, 8)).decode()
    sent = [r["json"] for r in arena_models.upstream.requests if r["path"] == "/v1/chat/completions"]
    assert len(sent) == 2
    for payload in sent:
        assert payload["messages"][0]["content"][1] == {"type": "image_url", "image_url": {"url": clean}}

    # Read back from the API: the stored image, drawn by the browser at its size.
    battle_id = orm(lambda: str(Battle.objects.get().pk))
    visit.goto(f"/b/{battle_id}/")
    visit.page.wait_for_function(VOTES_OPEN)
    image = ".pane[data-side=a] .turn__image"
    visit.page.wait_for_function(f"() => document.querySelector('{image}').naturalWidth === 12")
    assert visit.page.get_attribute(image, "src") == f"/api/v1/battles/{battle_id}/image"

    # A new round offers the control again, empty.
    visit.page.click("#new-round")
    assert visit.page.is_visible("#attach") and visit.page.is_hidden("#image-preview")


def test_a_text_file_named_png_is_refused_with_the_servers_reason(
    chromium: OpenPage, arena_models: Any, orm: Orm, media: Path
) -> None:
    orm(lambda: LLM.objects.update(vision=True))
    visit = chromium()
    visit.goto("/")
    attach(visit, b"not a picture at all\n", "notes.png")
    visit.page.wait_for_selector("#image-preview:not([hidden])")
    ask(visit, "What is this?")
    visit.page.wait_for_selector("#composer-error:not([hidden])")
    assert "not a PNG, JPEG, WebP or GIF" in visit.page.inner_text("#composer-error")
    assert orm(lambda: Battle.objects.count()) == 0
    assert not arena_models.upstream.requests and not media.exists()

    attach(visit, b"GIF89a", "clip.mp4", "video/mp4")  # refused in the page, before any request
    assert "PNG, JPEG, WebP or GIF" in visit.page.inner_text("#composer-error")
    assert visit.page.is_hidden("#image-preview")
