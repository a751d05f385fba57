"""ASGI messages for tests that call the application directly, with no server."""

from __future__ import annotations

from typing import Any


def get_scope(path: str, host: bytes = b"testserver") -> dict[str, Any]:
    """The scope of a GET of `path`, as uvicorn would pass it."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", host)],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
