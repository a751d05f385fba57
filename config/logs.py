"""Log lines, one JSON object each (LOG_FORMAT=json) or plain text, all carrying a request id.

The id comes from a request's X-Request-ID header when it is a plain token (anything else is
replaced: a header is the client's text, and a log line must not be theirs to shape), or is made
here; it is sent back on the response, and a Celery task queued while handling the request
carries it in its message headers, so the worker's lines for that task carry it too.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Callable
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction

if TYPE_CHECKING:  # settings import this module: nothing of Django's loads with it
    from django.http import HttpRequest, HttpResponse

REQUEST_ID_HEADER = "X-Request-ID"
# A client's id is kept only if it is a plain token: letters, digits, "-" and "_", 8 to 64 of them.
REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{8,64}")
# The Celery message header that carries the id from the publisher to the worker.
TASK_HEADER = "arena_request_id"

request_id: ContextVar[str] = ContextVar("request_id", default="")
access_log = logging.getLogger("config.requests")


def new_request_id() -> str:
    return uuid.uuid4().hex


def accepted_request_id(header: str | None) -> str:
    """The client's id when it is a plain token, else a fresh one."""
    if header and REQUEST_ID_PATTERN.fullmatch(header):
        return header
    return new_request_id()


class RequestIdFilter(logging.Filter):
    """Adds the current request id (or "" outside any request or task) to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


# A record's own attributes; anything else on it came from `extra=` and goes into the JSON object.
_RECORD_FIELDS = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id, the `extra=` fields, and
    the traceback as one string (json escapes its newlines, so a line is always one record)."""

    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", ""),
        }
        for key, value in vars(record).items():
            if key not in _RECORD_FIELDS and key not in body:
                body[key] = value
        if record.exc_info:
            body["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            body["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(body, default=str, ensure_ascii=False)


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"


def logging_config(*, log_format: str, level: str) -> dict[str, Any]:
    """Django's LOGGING for the format chosen (settings.LOG_FORMAT)."""
    formatter: dict[str, Any] = (
        {"()": "config.logs.JsonFormatter"} if log_format == "json" else {"format": TEXT_FORMAT}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": "config.logs.RequestIdFilter"}},
        "formatters": {"default": formatter},
        "handlers": {
            "console": {"class": "logging.StreamHandler", "formatter": "default", "filters": ["request_id"]}
        },
        "root": {"handlers": ["console"], "level": level},
        # httpx logs every request line at INFO; upstream URLs are operator data, keep them out of logs.
        # runserver's own line per request repeats config.requests' line.
        "loggers": {
            "httpx": {"level": "WARNING"},
            "httpcore": {"level": "WARNING"},
            "django.server": {"level": "WARNING"},
        },
    }


class RequestIdMiddleware:
    """Sets the request id for the request's log lines, logs one line per request (method, path
    without its query, status, duration), and sends the id back in X-Request-ID."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self.__acall__(request)
        token = request_id.set(accepted_request_id(request.headers.get(REQUEST_ID_HEADER)))
        started = time.perf_counter()
        try:
            response = self.get_response(request)
            return self._done(request, response, started)
        finally:
            request_id.reset(token)

    async def __acall__(self, request: HttpRequest) -> HttpResponse:
        # Each ASGI request runs in its own task, whose context ends with it: no reset, so that the
        # lines of a streamed body, written after this returns, still carry the id.
        request_id.set(accepted_request_id(request.headers.get(REQUEST_ID_HEADER)))
        started = time.perf_counter()
        response = await self.get_response(request)
        return self._done(request, response, started)

    @staticmethod
    def _done(request: HttpRequest, response: HttpResponse, started: float) -> HttpResponse:
        response[REQUEST_ID_HEADER] = request_id.get()
        duration = round(1000 * (time.perf_counter() - started), 1)
        access_log.info(
            "%s %s %s",
            request.method,
            request.path,
            response.status_code,
            extra={
                "method": request.method,
                "path": request.path,
                "status": response.status_code,
                "duration_ms": duration,
            },
        )
        return response


# --- Celery: the id travels in the task's message headers ----------------------------------------


def task_published(headers: dict[str, Any] | None = None, **kwargs: Any) -> None:
    """before_task_publish: a task queued during a request (or a task) carries its id."""
    current = request_id.get()
    if current and headers is not None:
        headers[TASK_HEADER] = current


def task_started(task: Any = None, **kwargs: Any) -> None:
    """task_prerun: the task's lines carry the id it was queued with; a task run in-process (eager)
    keeps its caller's; one queued by no request (beat) gets an id of its own."""
    if task is None or task.request.is_eager:
        return
    carried = task.request.get(TASK_HEADER)
    plain = isinstance(carried, str) and REQUEST_ID_PATTERN.fullmatch(carried)
    request_id.set(carried if plain else new_request_id())


def task_finished(task: Any = None, **kwargs: Any) -> None:
    """task_postrun: the worker's next lines belong to no task (an eager task's caller keeps its id)."""
    if task is not None and not task.request.is_eager:
        request_id.set("")
