from __future__ import annotations

from django.http import HttpRequest, JsonResponse


def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness: the process serves requests. It asks neither the database nor the cache, so it
    answers at once while they are away (the API says so with its own 503s) and an orchestrator
    does not restart every web process during a database outage."""
    return JsonResponse({"status": "ok"})
