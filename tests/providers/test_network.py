"""The test run's own guard (tests/network.py): nothing a test provokes resolves or reaches a host
outside this machine, whatever URL a generator or a test writes."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import httpx
import pytest
from django.test import Client

from tests.providers.conftest import Personas, submit
from tests.upstream import FakeOpenAI


def test_only_loopback_names_are_resolved() -> None:
    assert socket.getaddrinfo("localhost", 80, type=socket.SOCK_STREAM)
    assert socket.getaddrinfo("127.0.0.1", 80, type=socket.SOCK_STREAM)
    for host in ("example.com", "api.openai.com", "metadata.google.internal", "vllm"):
        with pytest.raises(socket.gaierror):
            socket.getaddrinfo(host, 443)


def test_no_socket_connects_outside_loopback() -> None:
    with socket.socket() as sock, pytest.raises(OSError, match="loopback only"):
        sock.connect(("192.0.2.1", 443))
    with socket.socket() as sock:
        assert sock.connect_ex(("192.0.2.1", 443)) != 0


def test_an_async_http_call_to_the_world_fails_here() -> None:
    async def call(url: str) -> None:
        async with httpx.AsyncClient() as client:
            await client.get(url)

    for url in (
        "https://api.openai.com/v1/models",
        "https://93.184.216.34/v1/models",
        "http://[2001:db8::1]/",
    ):
        with pytest.raises(httpx.ConnectError):
            asyncio.run(call(url))


@pytest.mark.parametrize(
    ("base_url", "words"),
    [
        ("https://api.vendor-of-the-day.com/v1", "could not be resolved"),
        # A public address passes the address check; its probe's connection is what fails here.
        ("https://93.184.216.34/v1", "could not be reached"),
    ],
)
def test_a_public_endpoint_is_probed_nowhere_but_here(
    personas: Personas, client: Client, openai_upstream: FakeOpenAI, settings: Any, base_url: str, words: str
) -> None:
    settings.PROVIDER_ALLOW_PRIVATE_URLS = False  # the production rule: the address is checked
    response = submit(client, personas.owner, openai_upstream, base_url=base_url)
    assert response.status_code == 400
    assert words in response.json()["detail"]
    assert not openai_upstream.requests
