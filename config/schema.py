"""OpenAPI schema generation (drf-spectacular), wired in settings.REST_FRAMEWORK."""

from __future__ import annotations

from typing import Any

from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers


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


class ErrorSerializer(serializers.Serializer):
    """Every 4xx body (config.errors.exception_handler)."""

    detail = serializers.CharField(help_text="The reason, for people.")
    code = serializers.CharField(help_text="The reason, for programs.")
    errors = serializers.DictField(required=False, help_text="Per field, for invalid input.")


def errors(*statuses: int) -> dict[int, OpenApiResponse]:
    """Error responses for `extend_schema(responses=...)`, each with the one error body."""
    return {status: OpenApiResponse(ErrorSerializer) for status in statuses}
