"""The client's address behind 0, 1 or 2 trusted proxies, against the headers a client forges."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import time_machine
from django.core.cache import cache
from django.test import RequestFactory
from gunicorn.config import Config

from config.clients import client_address, network_hash, network_of

ROOT = Path(__file__).resolve().parent.parent
CLIENT = "198.51.100.7"
SPOOF = "203.0.113.66"


def request(peer: str, forwarded: str | None = None) -> Any:
    headers = {"X-Forwarded-For": forwarded} if forwarded is not None else {}
    return RequestFactory().get("/", REMOTE_ADDR=peer, headers=headers)


def test_without_trusted_proxies_the_socket_peer_is_the_client_whatever_the_header_says(
    settings: Any,
) -> None:
    settings.TRUSTED_PROXIES = 0
    assert client_address(request(CLIENT)) == CLIENT
    assert client_address(request(CLIENT, SPOOF)) == CLIENT
    assert client_address(request(CLIENT, f"{SPOOF}, 10.0.0.1")) == CLIENT


def test_behind_one_proxy_the_entry_it_appended_counts_not_what_the_client_sent(settings: Any) -> None:
    settings.TRUSTED_PROXIES = 1
    proxy = "10.0.0.2"
    assert client_address(request(proxy, CLIENT)) == CLIENT
    # The client sent its own X-Forwarded-For; the proxy appended the address it really saw.
    assert client_address(request(proxy, f"{SPOOF}, {CLIENT}")) == CLIENT
    assert client_address(request(proxy, f"1.1.1.1,{SPOOF} ,  {CLIENT}")) == CLIENT


def test_behind_two_proxies_the_outer_ones_entry_counts(settings: Any) -> None:
    settings.TRUSTED_PROXIES = 2
    inner = "10.0.0.3"
    outer = "10.0.0.4"
    assert client_address(request(inner, f"{CLIENT}, {outer}")) == CLIENT
    assert client_address(request(inner, f"{SPOOF}, {CLIENT}, {outer}")) == CLIENT
    # A request that passed the inner proxy only: every entry was written by a trusted proxy.
    assert client_address(request(inner, CLIENT)) == CLIENT


def test_no_header_or_a_malformed_entry_falls_back_to_the_peer(settings: Any) -> None:
    settings.TRUSTED_PROXIES = 1
    assert client_address(request(CLIENT)) == CLIENT
    assert client_address(request(CLIENT, "")) == CLIENT
    assert client_address(request(CLIENT, f"{SPOOF}, not-an-address")) == CLIENT
    assert client_address(request(CLIENT, f"{SPOOF}, unknown")) == CLIENT


def test_addresses_with_ports_and_mapped_ipv4_are_read_as_addresses(settings: Any) -> None:
    settings.TRUSTED_PROXIES = 1
    assert client_address(request("10.0.0.2", f"{CLIENT}:51234")) == CLIENT
    assert client_address(request("10.0.0.2", "[2001:db8::7]:443")) == "2001:db8::7"
    assert client_address(request("10.0.0.2", f"::ffff:{CLIENT}")) == CLIENT


def test_a_network_is_the_slash_24_or_the_slash_48() -> None:
    assert network_of("198.51.100.7") == "198.51.100.0/24"
    assert network_of("198.51.100.250") == "198.51.100.0/24"
    assert network_of("2001:db8:1:2:3::9") == "2001:db8:1::/48"
    assert network_of("::ffff:198.51.100.7") == "198.51.100.0/24"


def test_a_network_hash_is_stable_within_a_day_unlinkable_across_days_and_never_the_address() -> None:
    prefix = network_of(CLIENT)
    with time_machine.travel("2026-03-01 09:00Z", tick=False):
        monday = network_hash(prefix)
        assert network_hash(prefix) == monday
        assert network_hash(network_of("198.51.101.7")) != monday
    with time_machine.travel("2026-03-01 23:59Z", tick=False):
        assert network_hash(prefix) == monday
    with time_machine.travel("2026-03-02 00:01Z", tick=False):
        tuesday = network_hash(prefix)
    assert tuesday != monday
    assert "198.51.100" not in monday and len(monday) == 64


def test_a_days_salt_is_random_and_lives_in_the_cache_only() -> None:
    """Not derived from SECRET_KEY alone: once the cache forgets it, nobody can recompute a hash."""
    with time_machine.travel("2026-03-01 09:00Z", tick=False):
        before = network_hash("198.51.100.0/24")
        cache.clear()
        assert network_hash("198.51.100.0/24") != before


def test_gunicorn_rewrites_the_address_from_no_ones_header() -> None:
    config = Config()
    settings: dict[str, Any] = {}
    exec((ROOT / "config" / "gunicorn.py").read_text(), settings)  # as gunicorn reads its -c file
    config.set("forwarded_allow_ips", settings["forwarded_allow_ips"])
    assert config.forwarded_allow_ips == []


def test_make_run_starts_uvicorn_without_proxy_headers() -> None:
    """uvicorn otherwise trusts X-Forwarded-For from 127.0.0.1: any local script could pick its address."""
    dry = subprocess.run(["make", "-n", "run"], cwd=ROOT, capture_output=True, text=True)
    [serve] = [line for line in dry.stdout.splitlines() if "uvicorn " in line]
    assert "--no-proxy-headers" in serve.split()
