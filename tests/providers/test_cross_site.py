"""The provider API is called server to server with a key, so the Origin check (config/origin.py)
leaves it alone."""

from __future__ import annotations

from typing import Any

from django.test import Client

from tests.providers.conftest import Personas, variant_body


def test_the_provider_api_is_server_to_server_and_exempt(
    personas: Personas, client: Client, openai_upstream: Any
) -> None:
    response = client.post(
        "/api/v1/provider/variants/",
        variant_body(openai_upstream),
        content_type="application/json",
        headers={**personas.owner.headers(), "Origin": "https://evil.example"},
    )
    assert response.status_code == 201, response.content
