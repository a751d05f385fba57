"""The API's JSON parser: bounded in size and depth, strict about its text, errors as 4xx JSON.

DRF's JSONParser reads any body whole and lets Python's `json` recurse into it: thousands of
nested brackets raise RecursionError (a 500), and a lone surrogate (`"\\ud800"`) parses into a
string that PostgreSQL then refuses to store. This one reads at most
DATA_UPLOAD_MAX_MEMORY_SIZE bytes (413 beyond), parses with orjson, which takes UTF-8 only and
refuses lone surrogates and NaN, and refuses documents nested deeper than API_JSON_MAX_DEPTH.
"""

from __future__ import annotations

from typing import IO, Any

import orjson
from django.conf import settings
from rest_framework import status
from rest_framework.exceptions import APIException, ParseError
from rest_framework.parsers import BaseParser


class TooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "Request body too large."
    default_code = "too_large"


def too_large() -> TooLarge:
    return TooLarge(f"The request body is larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes.")


class JSONParser(BaseParser):
    media_type = "application/json"

    def parse(self, stream: IO[bytes], media_type: str | None = None, parser_context: Any = None) -> Any:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        body = stream.read(limit + 1) if limit is not None else stream.read()
        if limit is not None and len(body) > limit:
            raise too_large()
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise ParseError(f"JSON parse error: {exc}") from None
        if deeper_than(data, settings.API_JSON_MAX_DEPTH):
            raise ParseError(f"JSON nested deeper than {settings.API_JSON_MAX_DEPTH} levels.")
        return data


def deeper_than(data: Any, limit: int) -> bool:
    """Whether objects and arrays nest more than `limit` levels (`[]` is one level, `[[]]` two)."""
    containers = [data] if isinstance(data, dict | list) else []
    for _ in range(limit):
        containers = [
            child
            for container in containers
            for child in (container.values() if isinstance(container, dict) else container)
            if isinstance(child, dict | list)
        ]
    return bool(containers)
