"""Image battles over a real socket: the image checked, stored, drawn for and sent only to vision
models, in each vendor's exact wire format; bad images refused with nothing stored."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from arena.models import AnswerAttempt, Battle, Turn, Vote
from leaderboard.boards import board
from leaderboard.dumps import export_lines
from providers.models import LLM
from tests import images
from tests.arena.test_api import stream, text_of
from tests.upstream import Behaviour, FakeOpenAI
from tests.vendor_upstreams import FakeAnthropic, FakeGemini

EXIF = b"MM\x00*GPS 48.8584 N 2.2945 E"
PROMPT = "What is in this picture?"


@pytest.fixture(autouse=True)
def media(settings: Any, tmp_path: Path) -> Path:
    settings.MEDIA_ROOT = str(tmp_path / "media")
    return tmp_path / "media"


@pytest.fixture
def web(live_asgi: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_asgi, timeout=30) as client:
        yield client


@pytest.fixture
def openai_pair(openai_upstream: FakeOpenAI, live_asgi: str) -> tuple[LLM, LLM]:
    openai_upstream.behaviours["eye-up"] = Behaviour(text="A small red square.")
    openai_upstream.behaviours["lens-up"] = Behaviour(text="Red pixels on nothing else.")
    common = {"backend": LLM.Backend.OPENAI_COMPATIBLE, "base_url": openai_upstream.base_url, "vision": True}
    return (
        LLM.objects.create(name="eye-chat", model="eye-up", max_tokens=100, temperature=0.5, **common),
        LLM.objects.create(name="lens-chat", model="lens-up", max_tokens=100, temperature=0.5, **common),
    )


def files(media: Path) -> list[Path]:
    return [p for p in media.rglob("*") if p.is_file()] if media.exists() else []


def create(web: httpx.Client, image: bytes | None, name: str = "photo.png", **fields: str) -> httpx.Response:
    form = {"prompt": PROMPT, **fields}
    upload = {"image": (name, image, "image/png")} if image is not None else None
    return web.post("/api/v1/battles/", data=form, files=upload)


def started(web: httpx.Client, image: bytes, **fields: str) -> tuple[Battle, list[dict[str, Any]]]:
    response = create(web, image, **fields)
    assert response.status_code == 201, response.text
    events, _ = stream(web, response.json()["id"])
    return Battle.objects.select_related("model_a", "model_b").get(pk=response.json()["id"]), events


def data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


# --- the wire formats ----------------------------------------------------------------------------


def test_openai_compatible_models_get_an_image_url_part_with_a_data_url_and_no_exif(
    web: httpx.Client, openai_pair: tuple[LLM, LLM], openai_upstream: FakeOpenAI, media: Path
) -> None:
    played, events = started(web, images.png(exif=EXIF))
    clean = images.png()  # the same file without its eXIf and tEXt chunks
    sent = [r["json"] for r in openai_upstream.requests if r["path"] == "/v1/chat/completions"]
    assert len(sent) == 2
    for payload in sent:
        assert payload["messages"] == [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": PROMPT},
                    {"type": "image_url", "image_url": {"url": data_url(clean)}},
                ],
            }
        ]
    assert text_of(events, "a") and text_of(events, "b")
    [stored] = files(media)
    assert stored.read_bytes() == clean and b"GPS" not in stored.read_bytes()
    assert played.image.name.endswith(".png")


def test_a_follow_up_sends_the_image_with_the_first_prompt_only(
    web: httpx.Client, openai_pair: tuple[LLM, LLM], openai_upstream: FakeOpenAI
) -> None:
    played, _ = started(web, images.jpeg(exif=EXIF))
    reply = web.post(f"/api/v1/battles/{played.pk}/turns/", json={"prompt": "And its colour?"})
    assert reply.status_code == 201, reply.text
    stream(web, str(played.pk))
    last = openai_upstream.requests[-1]["json"]["messages"]
    assert last[0]["content"][1] == {
        "type": "image_url",
        "image_url": {"url": data_url(images.jpeg(), "image/jpeg")},
    }
    assert [m["content"] for m in last[1:] if m["role"] == "user"] == ["And its colour?"]


def test_anthropic_gets_an_image_block_and_gemini_an_inline_data_part(
    web: httpx.Client,
    anthropic_upstream: FakeAnthropic,
    gemini_upstream: FakeGemini,
    live_asgi: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TEST_ANTHROPIC_KEY", "sk-ant-test-key")
    monkeypatch.setenv("TEST_GEMINI_KEY", "AIza-test-key")
    anthropic_upstream.behaviours["claude-sonnet-4-5"] = Behaviour(text="A white and black GIF.")
    gemini_upstream.behaviours["gemini-2.5-flash"] = Behaviour(text="Two colours, four pixels.")
    for backend, upstream, model, key in (
        (LLM.Backend.ANTHROPIC, anthropic_upstream, "claude-sonnet-4-5", "TEST_ANTHROPIC_KEY"),
        (LLM.Backend.GEMINI, gemini_upstream, "gemini-2.5-flash", "TEST_GEMINI_KEY"),
    ):
        LLM.objects.create(
            name=f"{backend}-eye",
            backend=backend,
            base_url=upstream.base_url,
            model=model,
            api_key_env=key,
            temperature=0.3,
            max_tokens=50,
            vision=True,
        )
    started(web, images.gif(frames=3, comment=b"taken at home"))
    first_frame = base64.b64encode(images.gif(frames=1)).decode()
    [claude] = [r["json"] for r in anthropic_upstream.requests]
    assert claude == {
        "model": "claude-sonnet-4-5",
        "max_tokens": 50,
        "temperature": 0.3,
        "messages": [
            {
                "role": "user",
                "content": [
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/gif", "data": first_frame},
                    },
                    {"type": "text", "text": PROMPT},
                ],
            }
        ],
        "stream": True,
    }
    [gemini] = [r["json"] for r in gemini_upstream.requests]
    assert gemini["contents"] == [
        {
            "role": "user",
            "parts": [{"inline_data": {"mime_type": "image/gif", "data": first_frame}}, {"text": PROMPT}],
        }
    ]


# --- only vision models see it ---------------------------------------------------------------------


def test_only_vision_models_are_drawn_for_an_image_and_the_others_for_text(
    web: httpx.Client, openai_pair: tuple[LLM, LLM], openai_upstream: FakeOpenAI
) -> None:
    openai_upstream.default = Behaviour(text="Text only here.")
    blind = {
        LLM.objects.create(
            name=f"blind-{n}",
            backend=LLM.Backend.OPENAI_COMPATIBLE,
            base_url=openai_upstream.base_url,
            model=f"blind-up-{n}",
            weight=50,
        ).pk
        for n in range(3)
    }
    for _ in range(6):
        response = create(web, images.webp(exif=EXIF))
        assert response.status_code == 201, response.text
        played = Battle.objects.get(pk=response.json()["id"])
        assert {played.model_a_id, played.model_b_id} == {m.pk for m in openai_pair}
        Battle.objects.filter(pk=played.pk).update(state=Battle.State.VOTED)  # out of the open cap
    assert not any(r["json"]["model"].startswith("blind") for r in openai_upstream.requests)
    assert blind  # text battles still draw them: their weight makes them all but certain
    response = web.post("/api/v1/battles/", json={"prompt": "No image here."})
    played = Battle.objects.get(pk=response.json()["id"])
    assert {played.model_a_id, played.model_b_id} & blind


def test_a_named_battle_with_an_image_refuses_a_model_that_cannot_read_it(
    web: httpx.Client, openai_pair: tuple[LLM, LLM], media: Path
) -> None:
    blind = LLM.objects.create(name="blind", backend=LLM.Backend.DEMO, model="concise")
    response = create(web, images.png(), mode="named", model_a="eye-chat", model_b="blind")
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "model_not_vision" and "blind" in response.json()["detail"]
    assert not Battle.objects.exists() and not files(media)
    assert blind.pk


def test_no_image_battle_without_two_vision_models(web: httpx.Client, live_asgi: str, media: Path) -> None:
    LLM.objects.create(name="blind-1", backend=LLM.Backend.DEMO, model="concise")
    LLM.objects.create(name="blind-2", backend=LLM.Backend.DEMO, model="structured")
    LLM.objects.create(name="eye-1", backend=LLM.Backend.DEMO, model="concise", vision=True)
    response = create(web, images.png())
    assert response.status_code == 503
    assert "read images" in response.json()["detail"]
    assert not Battle.objects.exists() and not files(media)


def test_a_model_no_longer_marked_vision_fails_its_side_and_never_gets_the_image(
    web: httpx.Client, openai_pair: tuple[LLM, LLM], openai_upstream: FakeOpenAI
) -> None:
    response = create(web, images.png())
    assert response.status_code == 201
    played = Battle.objects.get(pk=response.json()["id"])
    LLM.objects.filter(pk=played.model_a_id).update(vision=False)
    events, _ = stream(web, str(played.pk))
    [error] = [e for e in events if e["type"] == "error" and e["side"] == "a"]
    assert error["text"] == "This model does not read images."  # the side's model stays unnamed
    sent = [r["json"]["model"] for r in openai_upstream.requests]
    assert sent == [played.model_b.model]


# --- bad images: a 4xx with the reason, nothing stored --------------------------------------------


@pytest.mark.parametrize(
    ("image", "name", "status", "code"),
    [
        (b"Just some text, no picture.\n", "notes.png", 400, "image_type"),
        (b"%PDF-1.7 a document", "scan.jpg", 400, "image_type"),
        (images.png()[:-20], "cut.png", 400, "bad_image"),
        (images.jpeg()[:-2], "cut.jpg", 400, "bad_image"),
        (images.webp()[:-4], "cut.webp", 400, "bad_image"),
        (images.gif()[:-3], "cut.gif", 400, "bad_image"),
        (images.png()[:30] + b"\x00" + images.png()[31:], "checksum.png", 400, "bad_image"),
        (images.webp(animated=True), "moving.webp", 400, "bad_image"),
        (images.png(5000, 10, rows=False), "wide.png", 413, "image_too_many_pixels"),
        (images.png(4096, 4096, rows=False), "bomb.png", 413, "image_too_many_pixels"),
        (images.jpeg(65535, 65535), "bomb.jpg", 413, "image_too_many_pixels"),
        (b"", "empty.png", 400, "bad_image"),
    ],
)
def test_a_bad_image_is_refused_with_its_reason_and_nothing_is_stored(
    web: httpx.Client,
    openai_pair: tuple[LLM, LLM],
    openai_upstream: FakeOpenAI,
    media: Path,
    image: bytes,
    name: str,
    status: int,
    code: str,
) -> None:
    response = create(web, image, name)
    assert response.status_code == status, response.text
    assert response.json()["code"] == code and response.json()["detail"]
    assert not Battle.objects.exists() and not Turn.objects.exists() and not files(media)
    assert not openai_upstream.requests


def test_an_image_over_the_byte_limit_is_a_413_and_a_huge_body_is_not_read(
    web: httpx.Client, openai_pair: tuple[LLM, LLM], media: Path, settings: Any
) -> None:
    settings.ARENA_IMAGE_MAX_BYTES = 1000
    big = images.png(exif=b"x" * 1000)
    assert len(images.png()) < 1000 < len(big)  # within the limit once its metadata is gone
    response = create(web, big)
    assert response.status_code == 413 and response.json()["code"] == "image_too_large", response.text
    huge = create(web, b"\x89PNG" + b"\x00" * 200_000)
    assert huge.status_code == 413 and "request body" in huge.json()["detail"]
    assert not Battle.objects.exists() and not files(media)


def test_an_image_in_a_json_body_or_twice_is_refused(
    web: httpx.Client, openai_pair: tuple[LLM, LLM], media: Path
) -> None:
    as_json = web.post("/api/v1/battles/", json={"prompt": PROMPT, "image": data_url(images.png())})
    assert as_json.status_code == 400 and as_json.json()["code"] == "image_not_a_file"
    twice = web.post(
        "/api/v1/battles/",
        data={"prompt": PROMPT},
        files=[
            ("image", ("a.png", images.png(), "image/png")),
            ("image", ("b.png", images.png(), "image/png")),
        ],
    )
    assert twice.status_code == 400 and twice.json()["code"] == "too_many_images"
    assert not Battle.objects.exists() and not files(media)


# --- after the battle: shown back, voted, exported, forgotten -------------------------------------


def test_the_image_is_shown_to_its_visitor_only(
    web: httpx.Client, openai_pair: tuple[LLM, LLM], live_asgi: str
) -> None:
    played, _ = started(web, images.png(exif=EXIF))
    detail = web.get(f"/api/v1/battles/{played.pk}/").json()
    assert detail["image"] == f"/api/v1/battles/{played.pk}/image"
    shown = web.get(detail["image"])
    assert shown.status_code == 200 and shown.headers["content-type"] == "image/png"
    assert shown.content == images.png()
    with httpx.Client(base_url=live_asgi, timeout=30) as stranger:
        assert stranger.get(detail["image"]).status_code == 404
    text_only = web.post("/api/v1/battles/", json={"prompt": "hello"}).json()["id"]
    assert web.get(f"/api/v1/battles/{text_only}/").json()["image"] is None
    assert web.get(f"/api/v1/battles/{text_only}/image").status_code == 404
    download = web.get("/api/v1/visitor/data").json()
    assert sorted(str(b["image"]) for b in download["battles"]) == sorted([detail["image"], "None"])


def test_a_vote_on_an_image_battle_counts_on_the_vision_board_and_the_export_says_so(
    web: httpx.Client, openai_pair: tuple[LLM, LLM], media: Path, settings: Any
) -> None:
    played, _ = started(web, images.png(exif=EXIF))
    assert web.post(f"/api/v1/battles/{played.pk}/vote/", json={"winner": "a"}).status_code == 200
    text_only, _ = started_text(web)
    assert web.post(f"/api/v1/battles/{text_only}/vote/", json={"winner": "b"}).status_code == 200
    vision = board("vision")
    assert vision is not None and vision.category
    assert list(Vote.objects.filter(vision.votes).values_list("battle_id", flat=True)) == [played.pk]
    records = [json.loads(line) for line in export_lines(Vote.objects.all())]
    assert [r["has_image"] for r in records] == [True, False]
    dumped = "".join(export_lines(Vote.objects.all()))
    assert base64.b64encode(images.png()).decode()[:40] not in dumped and ".png" not in dumped
    # Forgetting the visitor deletes the file; the vote keeps that there was an image.
    assert web.delete("/api/v1/visitor/data").status_code == 200
    assert not files(media)
    assert Vote.objects.get(battle=played).vision


def started_text(web: httpx.Client) -> tuple[str, list[dict[str, Any]]]:
    response = web.post("/api/v1/battles/", json={"prompt": "No picture this time."})
    assert response.status_code == 201, response.text
    events, _ = stream(web, response.json()["id"])
    return response.json()["id"], events


def test_the_demo_vision_models_answer_with_the_image_type_and_pixels(
    web: httpx.Client, live_asgi: str
) -> None:
    for style in ("concise", "structured"):
        LLM.objects.create(name=f"demo-{style}", backend=LLM.Backend.DEMO, model=style, vision=True)
    _, events = started(web, images.png(4, 3))
    assert text_of(events, "a").startswith("You sent a PNG image of 4×3 pixels")
    assert text_of(events, "b").startswith("You sent a PNG image of 4×3 pixels")


# --- the registry flag, and the check on its own ----------------------------------------------------


def test_load_models_sets_vision_and_refuses_anything_but_a_boolean(db: None) -> None:
    from django.conf import settings as django_settings

    from providers.services import ModelFileError, load_models, parse_models_file

    entry = {"name": "eye", "backend": "demo", "model": "concise", "vision": True}
    load_models([entry])
    assert LLM.objects.get(name="eye").vision
    with pytest.raises(ModelFileError, match='"vision" must be true or false'):
        load_models([{**entry, "vision": "yes"}])
    assert LLM.objects.get(name="eye").vision
    load_models([{**entry, "vision": False}])
    assert not LLM.objects.get(name="eye").vision
    demo = parse_models_file(Path(django_settings.BASE_DIR) / "providers" / "demo_models.yaml")
    assert sum(1 for e in demo if e.get("vision") is True) >= 2


@pytest.mark.parametrize(
    ("made", "plain", "mime"),
    [
        (images.png(exif=EXIF), images.png(), "image/png"),
        (images.jpeg(exif=EXIF), images.jpeg(), "image/jpeg"),
        (images.webp(exif=EXIF), images.webp(), "image/webp"),
        (images.gif(frames=4, comment=EXIF), images.gif(frames=1), "image/gif"),
    ],
)
def test_the_check_keeps_the_picture_and_leaves_the_metadata_out(
    made: bytes, plain: bytes, mime: str
) -> None:
    from providers.images import check

    checked = check(made)
    assert checked.mime_type == mime and checked.data == plain and b"GPS" not in checked.data
    assert check(checked.data).data == plain  # what is stored checks again, unchanged


def test_a_fresh_model_for_an_image_battle_is_drawn_among_vision_models_only(
    make_llm: Any, media: Path
) -> None:
    from arena import rounds, services
    from arena.models import Answer
    from providers.images import check

    eyes = [make_llm(model="concise", vision=True) for _ in range(3)]
    blind = [make_llm(model="concise", weight=100) for _ in range(3)]
    played = services.battle_start(visitor="v", prompt="What is this?", image=check(images.png()))
    assert {played.model_a_id, played.model_b_id} < {m.pk for m in eyes}
    turn = played.turns.get()
    answer = turn.answers.get(side="a")
    Answer.objects.filter(pk=answer.pk).update(status=Answer.Status.ERROR)
    answer.refresh_from_db()
    AnswerAttempt.objects.create(
        turn=turn,
        side="a",
        llm_id=answer.llm_id,
        attempt=1,
        status=Answer.Status.ERROR,
        reason=AnswerAttempt.Reason.RETRY,
    )
    drawn = {rounds.fresh_model(battle=played, turn=turn, answer=answer).pk for _ in range(20)}
    spare = {m.pk for m in eyes} - {played.model_a_id, played.model_b_id}
    assert drawn == spare and not drawn & {m.pk for m in blind}


def test_the_model_list_and_the_pickers_say_which_models_read_images(make_llm: Any, client: Any) -> None:
    seeing, blind = make_llm(vision=True, display_name="Seeing"), make_llm(vision=False, display_name="Blind")
    listed = {m["name"]: m["vision"] for m in client.get("/api/v1/models/").json()}
    assert listed[seeing.name] is True and listed[blind.name] is False
    for page in ("/named/", "/chat/"):
        html = client.get(page).content.decode()
        assert f"{seeing.label} · reads images</option>" in html and f"{blind.label}</option>" in html
