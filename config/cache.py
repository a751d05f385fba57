"""The shared cache (Redis) as an optional part of the running site.

When Redis cannot be reached, each cache call runs on a local-memory cache of this process instead,
and the failure is logged at ERROR. So the counters behind caps and throttles become per-process
limits (still limits, only looser by the number of processes), pages render and are kept in the
process, and nothing answers 500 because Redis is away. After a failure Redis is left alone for
RETRY_SECONDS, so that requests do not each wait for a connection time-out; then the next call
tries again.

What must not degrade asks `degraded` (the ALTCHA challenge's one-use record: arena/gate.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from django.core.cache.backends.locmem import LocMemCache
from django.core.cache.backends.redis import RedisCache
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

logger = logging.getLogger("config.cache")

# Redis unreachable, refusing, loading or too slow; any other error (a wrong type, say) is a bug.
UNREACHABLE = (RedisConnectionError, RedisTimeoutError, OSError)
RETRY_SECONDS = 5.0
LOG_EVERY_SECONDS = 10.0
# Short enough that a request never waits long on an absent Redis; cache calls are single keys.
DEFAULT_OPTIONS = {"socket_connect_timeout": 0.5, "socket_timeout": 1.0}

# Per server, for the whole process: Django gives each thread its own backend object.
_down_until: dict[str, float] = {}
_logged_at: dict[str, float] = {}
_state = threading.Lock()

METHODS = (
    "add",
    "get",
    "set",
    "touch",
    "delete",
    "get_many",
    "has_key",
    "incr",
    "set_many",
    "delete_many",
    "clear",
)


class FailSoftRedisCache(RedisCache):
    def __init__(self, server: str, params: dict[str, Any]) -> None:
        params = {**params, "OPTIONS": {**DEFAULT_OPTIONS, **params.get("OPTIONS", {})}}
        super().__init__(server, params)
        self._server = server
        # One local cache per process and server (LocMemCache shares its store by name).
        self.local = LocMemCache(f"failsoft:{server}", {"TIMEOUT": params.get("TIMEOUT", 300)})

    @property
    def degraded(self) -> bool:
        """Whether calls now go to this process's local cache instead of Redis."""
        return time.monotonic() < _down_until.get(self._server, 0.0)

    def _fail_soft(self, name: str, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if not self.degraded:
            try:
                return call(*args, **kwargs)
            except UNREACHABLE as exc:
                self._went_down(exc)
        return getattr(self.local, name)(*args, **kwargs)

    def _went_down(self, exc: BaseException) -> None:
        now = time.monotonic()
        with _state:
            _down_until[self._server] = now + RETRY_SECONDS
            loud = now - _logged_at.get(self._server, -LOG_EVERY_SECONDS) >= LOG_EVERY_SECONDS
            if loud:
                _logged_at[self._server] = now
        if loud:
            logger.error(
                "Redis cache unreachable (%s: %s): caps, throttles and pages use this process's "
                "local cache; ALTCHA challenges are refused until it is back.",
                type(exc).__name__,
                exc,
            )


def _wrap(name: str) -> Callable[..., Any]:
    shared = getattr(RedisCache, name)

    def method(self: FailSoftRedisCache, *args: Any, **kwargs: Any) -> Any:
        return self._fail_soft(name, lambda *a, **k: shared(self, *a, **k), *args, **kwargs)

    method.__name__ = name
    method.__doc__ = shared.__doc__
    return method


for _name in METHODS:
    setattr(FailSoftRedisCache, _name, _wrap(_name))
