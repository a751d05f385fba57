"""A provider's endpoint is refused at every connection that would reach a non-public address, not
only when it is submitted: a host that answers a public address to the submission's check and a
private one to the call (DNS rebinding) reaches nothing."""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.test import Client

from providers.base import CallSpec
from providers.http import call_spec, public_socket
from providers.models import LLM, Organization
from providers.openai import OpenAICompatible
from providers.streaming import UNREACHABLE
from providers.variants import check_address
from tests.providers.conftest import Personas, submit
from tests.providers.harness import collect, collect_until_error, run, text_of
from tests.providers.test_api import assert_error
from tests.upstream import Behaviour, FakeOpenAI

PUBLIC = "93.184.216.34"
HOST = "rebind.test"


class Resolver:
    """The test run's name resolution (tests/network.py) with names of our own: each lookup of a
    name gets the next of its addresses, and the last one from then on."""

    def __init__(self, fallback: Callable[..., Any]) -> None:
        self.fallback = fallback
        self.answers: dict[str, list[str]] = {}

    def answer(self, name: str, *addresses: str) -> None:
        self.answers[name] = list(addresses)

    def getaddrinfo(self, host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        if name not in self.answers:
            return self.fallback(host, port, *args, **kwargs)
        addresses = self.answers[name]
        address = addresses.pop(0) if len(addresses) > 1 else addresses[0]
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, int(port or 0)))]


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> Iterator[Resolver]:
    resolver = Resolver(socket.getaddrinfo)
    monkeypatch.setattr(socket, "getaddrinfo", resolver.getaddrinfo)
    yield resolver


@pytest.fixture
def production(settings: Any) -> None:
    settings.PROVIDER_ALLOW_PRIVATE_URLS = False


def quick(spec: CallSpec) -> CallSpec:
    return dataclasses.replace(spec, connect_timeout=2.0, options={"retry_backoff": 0.01})


def model_at(base_url: str, *, variant: bool) -> LLM:
    owner = Organization.objects.create(name="Acme AI", slug="acme") if variant else None
    return LLM.objects.create(
        name="private/acme/falcon" if variant else "local-vllm",
        backend=LLM.Backend.OPENAI_COMPATIBLE,
        base_url=base_url,
        model="up-falcon",
        owner=owner,
        codename="falcon" if variant else "",
        visibility=LLM.Visibility.PRIVATE if variant else LLM.Visibility.PUBLIC,
    )


def test_a_variant_whose_name_rebinds_to_loopback_after_submission_reaches_nothing(
    db: None, dns: Resolver, production: None, openai_upstream: FakeOpenAI
) -> None:
    openai_upstream.behaviours["up-falcon"] = Behaviour(text="Secrets of the internal network.")
    port = openai_upstream.base_url.split(":")[2].split("/")[0]
    dns.answer(HOST, PUBLIC)
    check_address(f"https://{HOST}:{port}/v1")  # what the submission saw: a public address

    dns.answer(HOST, "127.0.0.1")  # and now, at call time, the arena's own machine
    variant = model_at(f"http://{HOST}:{port}/v1", variant=True)
    _, error = run(collect_until_error(OpenAICompatible(), quick(call_spec(variant))))
    assert error.public == UNREACHABLE
    assert "127.0.0.1 is not a public address" in error.detail
    assert not openai_upstream.requests


def test_the_same_host_is_reached_by_the_operators_own_model_and_in_development(
    db: None, dns: Resolver, settings: Any, openai_upstream: FakeOpenAI
) -> None:
    """The control: what stops the variant's call above is the address rule, nothing else."""
    openai_upstream.behaviours["up-falcon"] = Behaviour(text="Hello from a local server.")
    port = openai_upstream.base_url.split(":")[2].split("/")[0]
    dns.answer(HOST, "127.0.0.1")
    settings.PROVIDER_ALLOW_PRIVATE_URLS = False
    operators = model_at(f"http://{HOST}:{port}/v1", variant=False)
    assert (
        text_of(run(collect(OpenAICompatible(), quick(call_spec(operators))))) == "Hello from a local server."
    )

    settings.PROVIDER_ALLOW_PRIVATE_URLS = True
    operators.delete()
    variant = model_at(f"http://{HOST}:{port}/v1", variant=True)
    assert (
        text_of(run(collect(OpenAICompatible(), quick(call_spec(variant))))) == "Hello from a local server."
    )
    assert len(openai_upstream.requests) == 2


def test_an_address_written_in_a_variants_url_is_checked_at_the_call_too(
    db: None, production: None, openai_upstream: FakeOpenAI
) -> None:
    variant = model_at(openai_upstream.base_url, variant=True)  # http://127.0.0.1:<port>/v1
    _, error = run(collect_until_error(OpenAICompatible(), quick(call_spec(variant))))
    assert "not a public address" in error.detail
    assert not openai_upstream.requests


def test_a_submission_whose_name_rebinds_between_check_and_probe_is_refused(
    personas: Personas, client: Client, dns: Resolver, production: None, openai_upstream: FakeOpenAI
) -> None:
    port = openai_upstream.base_url.split(":")[2].split("/")[0]
    dns.answer(HOST, PUBLIC, "127.0.0.1")  # public to the address check, loopback from then on
    response = submit(client, personas.owner, openai_upstream, base_url=f"https://{HOST}:{port}/v1")
    body = assert_error(response, 400, "not a public address")
    assert body["code"] == "probe_failed"
    assert not openai_upstream.requests
    assert not LLM.objects.filter(owner=personas.owner.organization).exists()


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",  # a cloud's metadata service
        "100.64.0.1",  # carrier-grade NAT
        "0.0.0.0",
        "::1",
        "fe80::1%lo",
        "fd00::1",
        "::ffff:127.0.0.1",
    ],
)
def test_no_socket_is_made_for_a_non_public_address(address: str) -> None:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with pytest.raises(OSError, match="not a public address"):
        public_socket((family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, 443)))


def test_a_socket_is_made_for_a_public_address() -> None:
    with public_socket((socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (PUBLIC, 443))) as sock:
        assert sock.family == socket.AF_INET
