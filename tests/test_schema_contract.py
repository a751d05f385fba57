"""The OpenAPI schema is the whole public contract: every route of the API is in it, each operation
is described for its callers (not for this code's readers), and what the plain views send (the
event stream, the downloads, the health check) is what the schema says."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from django.test import Client
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from arena.api_schema import STREAM_EVENTS
from config.schema import routes
from leaderboard import services
from providers.models import LLM
from tests.upstream import Behaviour, FakeOpenAI

# Routes that are not API operations, on purpose.
NOT_OPERATIONS = {
    "": "the battle page",
    "named/": "the named-mode page",
    "chat/": "the direct chat page",
    "s/<str:token>/": "a shared battle's public page",
    "b/<str:battle_id>/": "one battle's page",
    "terms/": "the terms page",
    "privacy/": "the privacy page",
    "leaderboard/": "the board page",
    "testing-ledger/": "the testing ledger page",
    "api/v1/schema/": "the schema itself",
    "api/v1/docs/": "the schema's Swagger UI page",
    "api/v1/redoc/": "the schema's Redoc page",
    "metrics": "the operators' Prometheus metrics, refused to the public",
    "i18n/setlang/": "the header's language switcher (Django's set_language form target)",
    "jsi18n/": "the pages' JavaScript translation catalogue",
}
NOT_OPERATIONS_UNDER = ("admin/",)  # the operators' admin

METHODS = {"get", "post", "put", "patch", "delete"}

# What the schema said before, and must never say again: file and module names, setting names,
# docstrings written for this code's readers.
INTERNAL = [
    re.compile(r"\b\w+\.py\b"),
    re.compile(r"\b(?:arena|config|providers|leaderboard|serving)\.[a-z_]+"),
    re.compile(r"\b[A-Z][A-Z0-9]*_[A-Z0-9_]+\b"),
    re.compile(r"docstring|OpenAPI schema|Base of |two actions on one path|styleguide", re.IGNORECASE),
]
SAID_BEFORE = [
    "A proof-of-work challenge to solve before opening a battle (arena/gate.py); 204 when none is asked",
    "GET lists, POST submits: two actions on one path.",
    "Base of the provider API: an organisation's key, throttled per key, scoped to it.",
    "Describes the response for the OpenAPI schema.",
    "Every 4xx body (config.errors.exception_handler).",
    "Whether a battle needs the acceptance (ARENA_REQUIRE_CONSENT).",
]


@pytest.fixture
def schema(client: Client) -> dict[str, Any]:
    response = client.get("/api/v1/schema/?format=json")
    assert response.status_code == 200
    return response.json()


def openapi_path(route: str) -> str:
    """The OpenAPI path of a route: `api/v1/battles/<str:battle_id>/` is `/api/v1/battles/{battle_id}/`."""
    return "/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route)


def operations(schema: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield path, method, operation


def texts(node: Any, where: str = "") -> Iterator[tuple[str, str]]:
    """(where, text) of every description and summary anywhere in the schema."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("description", "summary") and isinstance(value, str):
                yield f"{where}/{key}", value
            else:
                yield from texts(value, f"{where}/{key}")
    elif isinstance(node, list):
        for n, value in enumerate(node):
            yield from texts(value, f"{where}[{n}]")


def test_every_route_is_in_the_schema_or_left_out_on_purpose(schema: dict[str, Any]) -> None:
    served = {route for route, _ in routes() if not route.startswith(NOT_OPERATIONS_UNDER)}
    assert set(NOT_OPERATIONS) <= served, "a deliberate exclusion that is no longer a route"
    expected = {openapi_path(route) for route in served - set(NOT_OPERATIONS)}
    assert set(schema["paths"]) == expected
    # The plain views among them: the stream, both downloads and the health checks.
    assert {
        "/api/v1/battles/{battle_id}/stream",
        "/api/v1/leaderboard/snapshots/{snapshot_id}/csv",
        "/api/v1/leaderboard/snapshots/{snapshot_id}/votes",
        "/healthz",
        "/readyz",
    } <= expected


def test_each_rest_framework_route_documents_exactly_the_methods_it_answers(schema: dict[str, Any]) -> None:
    checked = 0
    for route, view in routes():
        if hasattr(view, "cls") and openapi_path(route) in schema["paths"]:
            answered = {m.lower() for m in view.cls().allowed_methods} & METHODS
            assert set(schema["paths"][openapi_path(route)]) & METHODS == answered, route
            checked += 1
    assert checked >= 15


def test_every_operation_response_and_parameter_is_described(schema: dict[str, Any]) -> None:
    ids = []
    for path, method, operation in operations(schema):
        where = f"{method.upper()} {path}"
        assert operation.get("summary", "").strip(), where
        assert len(operation.get("description", "")) >= 60, where
        for status, response in operation["responses"].items():
            assert response.get("description", "").strip(), f"{where} {status}"
        for parameter in operation.get("parameters", []):
            assert parameter.get("description", "").strip(), f"{where} {parameter['name']}"
        ids.append(operation["operationId"])
    assert len(ids) == len(set(ids)) >= 22


def test_no_description_speaks_of_the_code(schema: dict[str, Any]) -> None:
    # The check catches what the schema said before.
    for text in SAID_BEFORE:
        assert any(pattern.search(text) for pattern in INTERNAL), text
    found = [
        (where, text) for where, text in texts(schema) if any(pattern.search(text) for pattern in INTERNAL)
    ]
    assert found == []


def test_the_stream_and_the_downloads_are_documented_with_their_media_types(schema: dict[str, Any]) -> None:
    paths = schema["paths"]
    stream = paths["/api/v1/battles/{battle_id}/stream"]["get"]
    assert set(stream["responses"]["200"]["content"]) == {"text/event-stream"}
    for kind in STREAM_EVENTS:
        assert f"| `{kind}` |" in stream["description"]
    assert stream["responses"]["404"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Error"
    }
    downloads = paths["/api/v1/leaderboard/snapshots/{snapshot_id}/csv"]["get"]["responses"]
    assert set(downloads["200"]["content"]) == {"text/csv"}
    votes = paths["/api/v1/leaderboard/snapshots/{snapshot_id}/votes"]["get"]["responses"]
    assert set(votes["200"]["content"]) == {"application/x-ndjson"}
    assert set(paths["/healthz"]["get"]["responses"]) == {"200"}
    assert {"200", "503"} <= set(paths["/readyz"]["get"]["responses"])


# --- what the plain views send, against what the schema says ------------------------------------


@pytest.fixture
def live(live_asgi: str, openai_upstream: FakeOpenAI, settings: Any) -> Iterator[tuple[httpx.Client, Any]]:
    """A visitor's client on the live server, two models to draw, and the schema as schemathesis reads it."""
    settings.LEADERBOARD_BOOTSTRAP = 20
    openai_upstream.behaviours["alpha-up"] = Behaviour(text="The first answer, in several words.")
    openai_upstream.behaviours["beta-up"] = Behaviour(text="A second answer that differs.")
    common = {"backend": LLM.Backend.OPENAI_COMPATIBLE, "base_url": openai_upstream.base_url}
    LLM.objects.create(name="alpha-chat", model="alpha-up", **common)
    LLM.objects.create(name="beta-chat", model="beta-up", **common)
    with httpx.Client(base_url=live_asgi, timeout=30) as web:
        yield web, schemathesis.openapi.from_dict(web.get("/api/v1/schema/?format=json").json())


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def conforms(api: Any, path: str, response: httpx.Response, **path_parameters: Any) -> None:
    case = api[path]["GET"].Case(path_parameters=path_parameters)
    case.validate_response(response, checks=CHECKS)


def test_a_real_stream_and_real_downloads_are_what_the_schema_says(live: tuple[httpx.Client, Any]) -> None:
    web, api = live
    stream_path = "/api/v1/battles/{battle_id}/stream"
    battle_id = web.post("/api/v1/battles/", json={"prompt": "Why is the sky blue?"}).json()["id"]
    response = web.get(f"/api/v1/battles/{battle_id}/stream")  # read whole: it ends with "end"
    conforms(api, stream_path, response, battle_id=battle_id)
    # One `data:` line of JSON per event, and no `event:` field: each is a "message".
    blocks = response.text.split("\n\n")
    assert blocks.pop() == ""
    assert all(block.startswith("data: ") and "\n" not in block for block in blocks)
    events = [json.loads(block.removeprefix("data: ")) for block in blocks]
    for event in events:
        sides, extra, _ = STREAM_EVENTS[event["type"]]
        assert event["side"] in sides, event
        assert set(event) == {"side", "type", "text", *extra}, event
    assert [e["type"] for e in events if e["type"] != "delta"][-1] == "end"
    assert events[-1] == {"side": None, "type": "end", "text": "", "state": "ready"}
    # Another visitor's battle: the documented 404, in JSON.
    stranger = httpx.get(f"{web.base_url}/api/v1/battles/{battle_id}/stream")
    assert stranger.status_code == 404
    conforms(api, stream_path, stranger, battle_id=battle_id)

    assert web.post(f"/api/v1/battles/{battle_id}/vote/", json={"winner": "a"}).status_code == 200
    services.recompute()
    snapshot = services.latest_snapshot()
    assert snapshot is not None and snapshot.votes == 1
    ratings = web.get(f"/api/v1/leaderboard/snapshots/{snapshot.pk}/csv")
    conforms(api, "/api/v1/leaderboard/snapshots/{snapshot_id}/csv", ratings, snapshot_id=snapshot.pk)
    rows = list(csv.reader(io.StringIO(ratings.text)))
    assert rows[0][:3] == ["rank", "model", "rating"] and len(rows) == 3
    votes = web.get(f"/api/v1/leaderboard/snapshots/{snapshot.pk}/votes")
    conforms(api, "/api/v1/leaderboard/snapshots/{snapshot_id}/votes", votes, snapshot_id=snapshot.pk)
    assert votes.headers["content-type"] == "application/x-ndjson"
    assert [json.loads(line)["question_id"] for line in votes.text.splitlines()] == [battle_id]
    for download in ("csv", "votes"):
        missing = web.get(f"/api/v1/leaderboard/snapshots/{10**9}/{download}")
        assert missing.status_code == 404
        conforms(
            api,
            f"/api/v1/leaderboard/snapshots/{{snapshot_id}}/{download}",
            missing,
            snapshot_id=10**9,
        )
    conforms(api, "/healthz", web.get("/healthz"))
    conforms(api, "/readyz", web.get("/readyz"))


def test_the_readme_client_finds_the_vote_operation_in_the_schema(live_asgi: str, capsys: Any) -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    example = (
        readme.split("A client can find each operation", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    )
    exec(compile(example.replace("http://127.0.0.1:8000", live_asgi), "README.md", "exec"), {})
    assert capsys.readouterr().out.splitlines() == [
        "POST /api/v1/battles/{battle_id}/vote/ #/components/schemas/VoteInputRequest",
        "['a', 'b', 'tie', 'bothbad']",
    ]
