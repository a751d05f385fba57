"""The OpenAPI schema, its docs page, and a schemathesis run against the app through WSGI."""

from __future__ import annotations

import re
from typing import Any

import pytest
import schemathesis
from django.contrib.staticfiles import finders
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.test import Client
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from config.wsgi import application
from leaderboard import services
from providers.models import LLM
from tests.factories import voted_battle
from tests.providers.conftest import Personas, make_variant
from tests.upstream import FakeOpenAI

PATHS = [
    "/api/v1/leaderboard/",
    "/api/v1/leaderboard/snapshots/",
    "/api/v1/models/",
    "/api/v1/testing-ledger/",
    "/api/v1/provider/variants/",
    "/api/v1/provider/variants/{variant_id}/",
    "/api/v1/provider/variants/{variant_id}/publish/",
    "/api/v1/provider/variants/{variant_id}/retire/",
    "/api/v1/visitor/consent",
    "/api/v1/visitor/data",
]


def test_the_schema_describes_the_public_and_provider_endpoints(client: Client) -> None:
    response = client.get("/api/v1/schema/?format=json")
    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    assert set(PATHS) <= set(schema["paths"])
    assert schema["components"]["securitySchemes"]["ApiKey"] == {
        "type": "apiKey",
        "in": "header",
        "name": "Authorization",
        "description": schema["components"]["securitySchemes"]["ApiKey"]["description"],
    }
    create = schema["paths"]["/api/v1/provider/variants/"]["post"]
    assert create["security"] == [{"ApiKey": []}]
    assert {"201", "400", "401", "409", "429"} <= set(create["responses"])
    model_out = schema["components"]["schemas"]["ModelListOutput"]["properties"]
    assert {"organization", "license", "backend", "temperature", "max_tokens"} <= set(model_out)
    assert not {"base_url", "api_key_env", "visibility", "weight"} & set(model_out)
    for secret in ("api_key_env", "api_key_encrypted"):
        assert secret not in str(schema)
    # The key is accepted on submission and never described in any response.
    variant_out = schema["components"]["schemas"]["VariantOutput"]["properties"]
    assert "api_key" not in variant_out and "has_api_key" in variant_out
    assert "api_key" in schema["components"]["schemas"]["VariantCreateInputRequest"]["properties"]
    # Each nested serializer is its own component (no "Output"/"Input" collisions).
    assert not {"Output", "InputRequest"} & set(schema["components"]["schemas"])


def test_the_docs_pages_load_their_assets_from_this_server_not_a_cdn(client: Client) -> None:
    for path in ("/api/v1/docs/", "/api/v1/redoc/"):
        page = client.get(path)
        assert page.status_code == 200
        html = page.content.decode()
        assert not re.search(r"cdn|jsdelivr|unpkg|cdnjs", html, re.IGNORECASE), path
        assets = re.findall(r'src="/static/([^"]+)"', html)
        assert assets, path
        for asset in assets:
            # Found by the static files finders: served in development, collected for production.
            assert finders.find(asset), asset


# --- schemathesis ---------------------------------------------------------------------------------


def app(environ: dict[str, Any], start_response: Any) -> Any:
    """The project's WSGI app, keeping the test's database connection open as Django's test
    client does (a request's end would otherwise close it, transaction and all)."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        return application(environ, start_response)
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


# The whole schema: the battle API, its event stream, the downloads and the health check included.
SCHEMA = schemathesis.openapi.from_wsgi("/api/v1/schema/?format=json", app)


@pytest.fixture
def arena(personas: Personas, openai_upstream: FakeOpenAI, settings: Any, make_llm: Any) -> Personas:
    """Something to read: a public pool with a board, a variant of A with votes, one retired."""
    settings.LEADERBOARD_BOOTSTRAP = 20
    settings.PROVIDER_PROBE_TIMEOUT = 0.5
    settings.PROVIDER_API_RATE = settings.PROVIDER_SUBMIT_RATE = "100000/hour"  # reach the views
    # Generated base_urls must not reach anything of this machine's; nor, through the test run's
    # resolver and loopback-only sockets (tests/network.py), anything outside it.
    settings.PROVIDER_ALLOW_PRIVATE_URLS = False
    assert personas.owner.organization is not None
    p1, p2 = make_llm(vision=True), make_llm(vision=True)  # a generated image battle draws them too
    variant = make_variant(personas.owner.organization, "fuzzed")
    for n in range(6):
        voted_battle(p1, p2, "ab"[n % 2])
        voted_battle(variant, p1, "a")
    retired = make_variant(personas.owner.organization, "retired")
    voted_battle(retired, p2, "b")
    LLM.objects.filter(pk=retired.pk).update(state=LLM.State.RETIRED)
    services.recompute()
    return personas


@SCHEMA.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@pytest.mark.django_db
def test_no_generated_request_gets_a_server_error_or_breaks_the_schema(case: Any, arena: Personas) -> None:
    case.call_and_validate(
        headers=arena.owner.headers(),
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ],
    )
