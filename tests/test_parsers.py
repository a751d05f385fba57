"""Hostile request bodies get a 4xx in the API's JSON error format, never a 500 or an HTML page."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from django.core.exceptions import RequestDataTooBig
from django.test import Client, RequestFactory

from arena.models import Battle
from config.errors import bad_request, exception_handler
from providers.models import LLM


@pytest.fixture
def web(live_asgi: str, make_llm: Callable[..., LLM]) -> Iterator[httpx.Client]:
    make_llm()
    make_llm()
    with httpx.Client(base_url=live_asgi, timeout=30) as client:
        yield client


def post(web: httpx.Client, body: bytes, path: str = "/api/v1/battles/") -> httpx.Response:
    return web.post(path, content=body, headers={"Content-Type": "application/json"})


def assert_json_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["code"] == code and body["detail"]
    return body


def test_ten_thousand_nested_arrays_are_a_400_not_a_recursion_error(web: httpx.Client) -> None:
    deep = b'{"prompt": "hi", "mode": ' + b"[" * 10_000 + b"]" * 10_000 + b"}"
    assert_json_error(post(web, deep), 400, "parse_error")
    assert not Battle.objects.exists()


def test_nesting_beyond_the_limit_is_refused_and_within_it_parsed(web: httpx.Client, settings: Any) -> None:
    settings.API_JSON_MAX_DEPTH = 4
    too_deep = b'{"prompt": "hi", "model_a": [[[{}]]]}'  # five levels
    assert "4 levels" in assert_json_error(post(web, too_deep), 400, "parse_error")["detail"]
    assert post(web, b'{"prompt": "hi", "extra": [[{}]]}').status_code == 201  # four


def test_a_body_over_the_limit_is_a_413_in_json(web: httpx.Client, settings: Any) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 64 * 1024
    huge = b'{"prompt": "' + b"a" * (64 * 1024) + b'"}'
    assert_json_error(post(web, huge), 413, "too_large")
    assert not Battle.objects.exists()


def test_the_default_limit_refuses_ten_megabytes(web: httpx.Client) -> None:
    assert_json_error(post(web, b'{"prompt": "' + b"a" * 10_000_000 + b'"}'), 413, "too_large")


@pytest.mark.parametrize(
    "body",
    [
        b'{"prompt": "\xff\xfe caf\xe9"}',  # not UTF-8
        b'{"prompt": "\\ud800"}',  # a lone surrogate: no database can store it
        b'{"prompt": NaN}',
        b'{"prompt": "hi"',
        b"\xef\xbb\xbf" + b'{"prompt": "hi"}' + b"\x00",
    ],
)
def test_malformed_json_is_a_400(web: httpx.Client, body: bytes) -> None:
    assert_json_error(post(web, body), 400, "parse_error")
    assert not Battle.objects.exists()


def test_valid_unicode_still_passes(web: httpx.Client) -> None:
    response = post(web, '{"prompt": "Pourquoi le ciel est-il bleu ? 空はなぜ青い 🌌"}'.encode())
    assert response.status_code == 201, response.text


def test_too_large_a_body_read_by_django_itself_is_json_under_the_api() -> None:
    request = RequestFactory().post("/api/v1/battles/")
    response = bad_request(request, RequestDataTooBig("too big"))
    assert response.status_code == 413 and response["Content-Type"] == "application/json"
    assert exception_handler(RequestDataTooBig("too big"), {}).status_code == 413  # type: ignore[union-attr]
    assert bad_request(RequestFactory().post("/admin/login/"), RequestDataTooBig()).status_code == 400


def test_a_refused_host_is_a_json_400_under_the_api(client: Client, db: None) -> None:
    response = client.get("/api/v1/models/", headers={"Host": "evil.example"})
    assert response.status_code == 400 and response.json()["code"] == "bad_request"
