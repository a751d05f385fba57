"""Locks that die with their holder, for work that must not overlap (a recompute, a sweep).

On PostgreSQL a session advisory lock on a connection of its own: a killed worker's connection is
closed by its kernel, and the server lets the lock go at once. It never rides on Django's
connection, which a pool would lend to others with the lock still held. On SQLite (one machine) an
flock on a file: the kernel releases it when the holder's process ends, however it ends.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from django.db import connection


def _key(name: str) -> int:
    digest = hashlib.blake2b(f"arena.lock:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


@contextmanager
def held(name: str) -> Iterator[bool]:
    """Yields whether this caller now holds the lock `name` (it does not wait); released on exit."""
    lock = _advisory if connection.vendor == "postgresql" else _flock
    with lock(name) as got:
        yield got


def is_held(name: str) -> bool:
    """Whether someone holds the lock `name` now (on SQLite, by taking it for an instant)."""
    if connection.vendor == "postgresql":
        high, low = divmod(_key(name) & 0xFFFFFFFFFFFFFFFF, 1 << 32)
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
                "AND classid::bigint = %s AND objid::bigint = %s AND objsubid = 1",
                [high, low],
            )
            return cursor.fetchone()[0] > 0
    with _flock(name) as got:
        return not got


@contextmanager
def _advisory(name: str) -> Iterator[bool]:
    params = connection.get_connection_params()  # without Django's pool, which it leaves out
    with psycopg.connect(**params, autocommit=True) as conn:
        got = conn.execute("SELECT pg_try_advisory_lock(%s)", [_key(name)]).fetchone()[0]
        yield bool(got)
        # Closing the connection (leaving the block) releases the lock, taken or not.


def _lock_path(name: str) -> str:
    database = str(connection.settings_dict["NAME"])
    tag = hashlib.blake2b(f"{os.path.abspath(database)}:{name}".encode(), digest_size=8).hexdigest()
    return os.path.join(tempfile.gettempdir(), f"arena-lock-{tag}")


@contextmanager
def _flock(name: str) -> Iterator[bool]:
    fd = os.open(_lock_path(name), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)  # closing the file releases the lock
