"""State-changing requests from other sites are refused, whatever the view.

The battle API is anonymous and known by a cookie: DRF exempts its views from Django's CSRF
check, so without this a page elsewhere could open battles and cast votes in a visitor's name.
Browsers send `Origin` with every cross-origin POST (and `fetch` with same-origin ones too); it
must be this site, as Django's CSRF check judges it: the request's own scheme and host, or one of
CSRF_TRUSTED_ORIGINS (`https://*.example.org` allows subdomains). Without `Origin`, a `Referer`
is judged the same way. A request with neither comes from no browser page (a script, `curl`):
it passes, as a script holds its own cookie and forges no one else's.

The provider API is exempt: it is called server to server with an API key in a header, which
no other site's page can make a browser send.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from asgiref.sync import iscoroutinefunction
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.decorators import sync_and_async_middleware
from django.utils.http import is_same_domain

from config.errors import error_body

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
EXEMPT_PREFIXES = ("/api/v1/provider/",)


def same_site(request: HttpRequest, origin: str) -> bool:
    """Whether `origin` (scheme://host[:port]) is this site or a trusted one (CSRF_TRUSTED_ORIGINS)."""
    if origin == f"{request.scheme}://{request.get_host()}" or origin in settings.CSRF_TRUSTED_ORIGINS:
        return True
    parts = urlsplit(origin)
    for trusted in settings.CSRF_TRUSTED_ORIGINS:
        if "*" in trusted:
            pattern = urlsplit(trusted)
            if pattern.scheme == parts.scheme and is_same_domain(parts.netloc, pattern.netloc.lstrip("*")):
                return True
    return False


def refusal(request: HttpRequest) -> str | None:
    """Why the request is refused as cross-site, or None when it may go on."""
    if request.method in SAFE_METHODS or request.path_info.startswith(EXEMPT_PREFIXES):
        return None
    origin = request.headers.get("Origin")
    if origin is not None:
        # "null" is what a sandboxed frame, a file: page or a cross-site redirect sends.
        return None if same_site(request, origin) else f"Origin {origin} is not this site."
    referer = request.headers.get("Referer")
    if referer is not None:
        parts = urlsplit(referer)
        if parts.scheme and parts.netloc and same_site(request, f"{parts.scheme}://{parts.netloc}"):
            return None
        return "The Referer is not a page of this site."
    return None


@sync_and_async_middleware
def origin_check(get_response: Callable[[HttpRequest], Any]) -> Callable[[HttpRequest], Any]:
    """A 403 in the API's JSON error format for a state-changing request sent from another site.

    Sync and async alike (Django's documented pattern), so an ASGI request takes no thread hop here.
    """
    if iscoroutinefunction(get_response):

        async def check_async(request: HttpRequest) -> HttpResponse:
            reason = refusal(request)
            return forbidden(reason) if reason else await get_response(request)

        return check_async

    def check(request: HttpRequest) -> HttpResponse:
        reason = refusal(request)
        return forbidden(reason) if reason else get_response(request)

    return check


def forbidden(reason: str) -> JsonResponse:
    return JsonResponse(error_body(f"Cross-site request refused: {reason}", "cross_site_request"), status=403)
