"""One place that turns errors into 4xx JSON bodies: `{"detail": reason, "code": name}`, and the
database's absence into a 503 in that format for the API."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler


class DomainError(Exception):
    """A request that breaks a rule of the product; the message is safe to show to the caller."""

    status_code = status.HTTP_400_BAD_REQUEST
    code = "invalid"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code


class NotFound(DomainError):
    status_code = status.HTTP_404_NOT_FOUND
    code = "not_found"


class Conflict(DomainError):
    status_code = status.HTTP_409_CONFLICT
    code = "conflict"


class Unavailable(DomainError):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    code = "unavailable"


TOO_LARGE = ("The request body is too large.", "too_large")

# The database cannot be reached or dropped the connection: a passing state, not a bug of ours.
DATABASE_DOWN = (OperationalError, InterfaceError)
DATABASE_RETRY_SECONDS = 30

logger = logging.getLogger("config.errors")


def database_down(exc: BaseException) -> dict[str, Any]:
    """The 503 body for a request the database could not serve; logged, since operators alert on it."""
    logger.error("Database unavailable, answering 503 (%s: %s)", type(exc).__name__, exc)
    return error_body(
        "The service is unavailable for a moment (its database cannot be reached); try again shortly.",
        "database_unavailable",
    )


def database_unavailable(exc: BaseException) -> JsonResponse:
    response = JsonResponse(database_down(exc), status=status.HTTP_503_SERVICE_UNAVAILABLE)
    response["Retry-After"] = str(DATABASE_RETRY_SECONDS)
    return response


class TooMany(DomainError):
    """A cap reached: the response says in `Retry-After` (seconds) when to come back."""

    status_code = status.HTTP_429_TOO_MANY_REQUESTS
    code = "too_many"

    def __init__(self, message: str, *, retry_after: int, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after


def error_body(message: str, code: str, **extra: Any) -> dict[str, Any]:
    return {"detail": message, "code": code, **extra}


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, DomainError):
        response = Response(error_body(exc.message, exc.code), status=exc.status_code)
        if isinstance(exc, TooMany):
            response["Retry-After"] = str(exc.retry_after)
        return response
    if isinstance(exc, DATABASE_DOWN):
        retry = {"Retry-After": str(DATABASE_RETRY_SECONDS)}
        return Response(database_down(exc), status=status.HTTP_503_SERVICE_UNAVAILABLE, headers=retry)
    if isinstance(exc, RequestDataTooBig):
        return Response(error_body(*TOO_LARGE), status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
    if isinstance(exc, DjangoValidationError):
        return Response(error_body("; ".join(exc.messages), "invalid"), status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, exceptions.ValidationError):
        return Response(
            error_body("Invalid input.", "invalid", errors=exc.detail), status=status.HTTP_400_BAD_REQUEST
        )
    response = drf_exception_handler(exc, context)
    if response is not None and isinstance(exc, exceptions.APIException):
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        response.data = error_body(detail, exc.get_codes() if isinstance(exc.get_codes(), str) else "error")
    return response


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    """Django's 400 (handler400): JSON for the API, whose callers read JSON; the HTML page elsewhere.

    It answers what fails before a view's parser runs: a body over DATA_UPLOAD_MAX_MEMORY_SIZE
    read by Django itself, a host not in ALLOWED_HOSTS, a malformed request.
    """
    if not request.path_info.startswith("/api/"):
        return defaults.bad_request(request, exception)
    if isinstance(exception, RequestDataTooBig):
        return JsonResponse(error_body(*TOO_LARGE), status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
    return JsonResponse(error_body("Bad request.", "bad_request"), status=status.HTTP_400_BAD_REQUEST)


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """Django's 404 (handler404): JSON under /api/, where a path matched no route (an id that is
    not a number, say); the HTML page elsewhere."""
    if not request.path_info.startswith("/api/"):
        return defaults.page_not_found(request, exception)
    return JsonResponse(error_body("No such resource.", "not_found"), status=status.HTTP_404_NOT_FOUND)


def server_error(request: HttpRequest) -> HttpResponse:
    """Django's 500 (handler500): under /api/, JSON, and a 503 when the database is what failed
    (in a middleware, say, before a view ran); the HTML page elsewhere."""
    exc = sys.exc_info()[1]
    if not request.path_info.startswith("/api/"):
        return defaults.server_error(request)
    if isinstance(exc, DATABASE_DOWN):
        return database_unavailable(exc)
    return JsonResponse(
        error_body("Server error.", "server_error"), status=status.HTTP_500_INTERNAL_SERVER_ERROR
    )


class DatabaseUnavailableMiddleware:
    """Answers a view that failed for want of the database with a JSON 503 under /api/ (the
    exception handler does it for DRF views; this covers the plain ones, such as the answer stream)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if request.path_info.startswith("/api/") and isinstance(exception, DATABASE_DOWN):
            return database_unavailable(exception)
        return None
