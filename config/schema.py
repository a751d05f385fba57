"""OpenAPI schema generation (drf-spectacular), wired in settings.REST_FRAMEWORK and
SPECTACULAR_SETTINGS."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from django.urls import URLPattern, URLResolver, get_resolver
from drf_spectacular.generators import EndpointEnumerator
from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.views import APIView

V = TypeVar("V", bound=Callable[..., Any])


class AutoSchema(SpectacularAutoSchema):
    """Reads the styleguide's API classes: nested `InputSerializer`/`OutputSerializer`.

    A plain APIView without `extend_schema` is described by its nested serializers, and by a
    free-form JSON object where it has no `OutputSerializer` (instead of a warning that fails
    `check --deploy`). Nested serializers are named after the classes around them, so that they
    do not collide: `VariantCreateApi.InputSerializer` becomes the component `VariantCreateInput`.
    """

    def get_request_serializer(self) -> Any:
        if self._declares_serializer():
            return super().get_request_serializer()
        serializer = getattr(self.view, "InputSerializer", None)
        return serializer() if serializer is not None else None

    def get_response_serializers(self) -> Any:
        if self._declares_serializer():
            return super().get_response_serializers()
        serializer = getattr(self.view, "OutputSerializer", None)
        return serializer() if serializer is not None else OpenApiTypes.OBJECT

    def _declares_serializer(self) -> bool:
        return callable(getattr(self.view, "get_serializer", None)) or hasattr(self.view, "serializer_class")

    def get_serializer_name(self, serializer: serializers.Serializer, direction: str) -> str:
        *outer, name = type(serializer).__qualname__.split(".")
        return "".join(part.removesuffix("Api").removesuffix("Serializer") for part in outer) + name


# The body config.errors writes for every refusal. Docstrings never reach the schema
# (DISABLE_DOCSTRING_DESCRIPTIONS): what a caller reads is written for them in extend_schema.
class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField(help_text="The reason, for people.")
    code = serializers.CharField(help_text="The reason, for programs.")
    errors = serializers.DictField(required=False, help_text="Per field, for invalid input.")


ERRORS = {
    400: "Invalid input: `detail` says why, and `errors` names each field at fault.",
    401: "No API key, or one that is unknown, revoked or expired.",
    403: "Refused: `code` says why (a rule of the site, or an action this caller may not take).",
    404: "Not found, or not yours: both are answered alike.",
    409: "A rule or the current state forbids it now: `detail` names it.",
    413: "The request body is too large.",
    429: "Too many requests: the `Retry-After` header says in how many seconds to come back.",
    503: "A service this needs is unavailable just now; try again later.",
}


def errors(*statuses: int) -> dict[int, OpenApiResponse]:
    """Error responses for `extend_schema(responses=...)`, each with the one error body."""
    return {status: OpenApiResponse(ErrorSerializer, description=ERRORS[status]) for status in statuses}


# --- plain Django views ------------------------------------------------------------------------
# drf-spectacular reads only DRF views. The event stream, the downloads and the health check are
# plain Django views (an async stream, file responses); each carries a stand-in APIView that holds
# its schema, and `plain_views` puts those in the schema at the view's own route.


def plain_view_schema(*, methods: tuple[str, ...] = ("get",), **schema: Any) -> Callable[[V], V]:
    """Describes a plain Django view in the OpenAPI schema; `schema` as `extend_schema` takes it."""

    def decorate(view: V) -> V:
        def operation(self: APIView, request: Any, *args: Any, **kwargs: Any) -> Any:
            raise AssertionError("schema only: the route serves the plain view")

        body = {method: extend_schema(**schema)(operation) for method in methods}
        view.openapi_view = type(f"{view.__name__}_schema", (APIView,), body)  # type: ignore[attr-defined]
        return view

    return decorate


def plain_views(endpoints: list[tuple[str, str, str, Any]]) -> list[tuple[str, str, str, Any]]:
    """PREPROCESSING_HOOKS: DRF's endpoints, and every plain view that `plain_view_schema` described."""
    paths = EndpointEnumerator(patterns=[])
    described = []
    for path_regex, callback in routes():
        view = getattr(callback, "openapi_view", None)
        if view is not None:
            stand_in = view.as_view()
            path = paths.get_path_from_regex(path_regex)
            described += [
                (path, path_regex, method, stand_in) for method in paths.get_allowed_methods(stand_in)
            ]
    return endpoints + described


def routes(patterns: list[Any] | None = None, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(route, view) of every URL pattern, resolvers walked into: routes as Django writes them."""
    for pattern in get_resolver().url_patterns if patterns is None else patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLPattern):
            yield route, pattern.callback
        elif isinstance(pattern, URLResolver):
            yield from routes(pattern.url_patterns, route)
