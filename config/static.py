"""WhiteNoise's static files in front of a middleware chain that stays asynchronous under ASGI."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from asgiref.sync import async_to_sync, iscoroutinefunction, sync_to_async
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils.decorators import sync_and_async_middleware
from whitenoise.middleware import WhiteNoiseMiddleware


@sync_and_async_middleware
def static_files(get_response: Callable[[HttpRequest], Any]) -> Callable[[HttpRequest], Any]:
    """WhiteNoiseMiddleware, which is synchronous only: placed in the chain itself it would run every
    ASGI request's whole chain in a thread. Here only requests under STATIC_URL (and every request
    when WHITENOISE_ROOT serves files at the root) go through it; the rest pass straight on."""
    if not iscoroutinefunction(get_response):
        return WhiteNoiseMiddleware(get_response)
    serve = sync_to_async(WhiteNoiseMiddleware(async_to_sync(get_response)))
    everything = bool(getattr(settings, "WHITENOISE_ROOT", None))

    async def middleware(request: HttpRequest) -> HttpResponse:
        if everything or request.path.startswith(settings.STATIC_URL):
            return await serve(request)
        return await get_response(request)

    return middleware


