"""Who is asking: the client's address as this site can trust it, and its network, hashed.

`X-Forwarded-For` is read only behind TRUSTED_PROXIES reverse proxies: each appends the address it
saw, so the entry the outermost trusted proxy wrote is the last one nobody else could have forged.
Nothing in front of Django rewrites the address (uvicorn runs with `--no-proxy-headers`, gunicorn
with no `forwarded_allow_ips`), so this is the one place that reads the header.

A network (the /24 of an IPv4 address, the /48 of an IPv6 one) is stored only as `network_hash`:
an HMAC under a key derived from SECRET_KEY and a random salt drawn for each UTC day and kept
in the cache for two days only. Hashes of two days cannot be linked to each other, and once a
day's salt is gone nobody, the operator included, can tell which network a stored hash was.
"""

from __future__ import annotations

import ipaddress
import secrets

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest
from django.utils import timezone
from django.utils.crypto import salted_hmac

IPV4_PREFIX = 24
IPV6_PREFIX = 48
# A day's salt outlives its day by one, so that a request that began before midnight UTC still
# finds it; after that it is gone for good.
SALT_SECONDS = 2 * 24 * 3600

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def client_address(request: HttpRequest) -> str:
    """The address of the client, as the outermost of TRUSTED_PROXIES proxies saw it.

    With no trusted proxy it is the socket's peer (REMOTE_ADDR) and any `X-Forwarded-For` is
    ignored. Behind N proxies it is the Nth entry from the right of `X-Forwarded-For` (the first
    entry when the request passed fewer proxies); a malformed entry there counts as no header.
    """
    peer = request.META.get("REMOTE_ADDR", "")
    hops = settings.TRUSTED_PROXIES
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    if hops <= 0 or not forwarded:
        return peer
    entries = [entry.strip() for entry in forwarded.split(",")]
    address = _parse(entries[-min(hops, len(entries))])
    return str(address) if address is not None else peer


def _parse(entry: str) -> Address | None:
    """An address as proxies write it: bare, or with a port (`1.2.3.4:80`, `[2001:db8::1]:80`)."""
    candidates = [entry]
    if entry.startswith("["):
        candidates.append(entry[1:].partition("]")[0])
    elif entry.count(":") == 1:
        candidates.append(entry.partition(":")[0])
    for candidate in candidates:
        try:
            address = ipaddress.ip_address(candidate)
        except ValueError:
            continue
        # An IPv4 client reaching an IPv6 socket shows as ::ffff:a.b.c.d; its network is the IPv4 one.
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            return address.ipv4_mapped
        return address
    return None


def network_of(address: str) -> str:
    """The network an address belongs to, as a prefix: `203.0.113.0/24`, `2001:db8:1::/48`.

    A string that is no address (a test client's, a Unix socket's peer) is its own network.
    """
    parsed = _parse(address)
    if parsed is None:
        return address
    prefix = IPV4_PREFIX if parsed.version == 4 else IPV6_PREFIX
    return str(ipaddress.ip_network(f"{parsed}/{prefix}", strict=False))


def network_hash(prefix: str) -> str:
    """The stored form of a network: a keyed hash under today's salt (see the module's docstring)."""
    day = timezone.now().date().isoformat()
    salt = cache.get_or_set(f"clients:network-salt:{day}", lambda: secrets.token_hex(32), SALT_SECONDS)
    return salted_hmac(f"arena.network:{day}:{salt}", prefix, algorithm="sha256").hexdigest()
