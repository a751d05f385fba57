"""Tests reach only this machine: a test resolver and a loopback-only connect, for the whole run.

Any name the code under test looks up (the provider probe's address check, an httpx call, a
socket opened by hand) is answered here: loopback names resolve as usual, every other name fails
as an unknown host would, and no socket connects to an address outside 127.0.0.0/8 and ::1.
Generated inputs (schemathesis) therefore cannot make the platform reach the world. This covers
Python's sockets and asyncio's default loop, which is the loop every server of the tests runs.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from typing import Any

import pytest

LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})

_real_getaddrinfo = socket.getaddrinfo
_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return None


def is_loopback(host: str) -> bool:
    address = _address(host)
    if address is None:
        return host.rstrip(".").lower() in LOOPBACK_NAMES
    return address.is_loopback


def loopback_getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
    name = host.decode() if isinstance(host, bytes) else host
    # None asks for this machine's own wildcard or loopback address (a server binding a port), and
    # an address written as such is returned without a lookup (connecting to it is guarded below).
    if name is not None and _address(name) is None and not is_loopback(name):
        raise socket.gaierror(socket.EAI_NONAME, f"{name}: tests resolve loopback names only")
    return _real_getaddrinfo(host, port, *args, **kwargs)


def _outside(sock: socket.socket, address: Any) -> bool:
    return sock.family in (socket.AF_INET, socket.AF_INET6) and not is_loopback(str(address[0]))


def _connect(self: socket.socket, address: Any) -> None:
    if _outside(self, address):
        raise OSError(errno.ENETUNREACH, f"tests connect to loopback only, not {address[0]}")
    _real_connect(self, address)


def _connect_ex(self: socket.socket, address: Any) -> int:
    if _outside(self, address):
        return errno.ENETUNREACH
    return _real_connect_ex(self, address)


def pytest_configure(config: pytest.Config) -> None:
    socket.getaddrinfo = loopback_getaddrinfo
    socket.socket.connect = _connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _connect_ex  # type: ignore[method-assign]


def pytest_unconfigure(config: pytest.Config) -> None:
    socket.getaddrinfo = _real_getaddrinfo
    socket.socket.connect = _real_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _real_connect_ex  # type: ignore[method-assign]
