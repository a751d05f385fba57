"""Who is calling the provider API: an organisation, identified by `Authorization: Api-Key <key>`.

The key is checked by djangorestframework-api-key (hashed at rest). The caller becomes a
`Provider` on `request.user`; every query of the provider API is scoped to its organisation.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext, gettext_lazy
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle
from rest_framework.views import APIView

from providers.models import Membership, Organization, OrganizationAPIKey

KEYWORD = "Api-Key"
# Writing last_used on every request would make each call a write; a minute's precision will do.
LAST_USED_PRECISION = timedelta(minutes=1)
MAX_KEY_LENGTH = 200


@dataclass(frozen=True)
class Provider:
    """The authenticated caller: `request.user` in the provider API."""

    organization: Organization
    key: OrganizationAPIKey
    role: str  # a Membership.Role

    is_authenticated = True
    is_anonymous = False

    @property
    def may_release(self) -> bool:
        """Publishing and retiring are an owner's decisions."""
        return self.role == Membership.Role.OWNER


class APIKeyAuthentication(BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[Provider, OrganizationAPIKey] | None:
        keyword, _, secret = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
        if keyword.lower() != KEYWORD.lower():
            return None  # no key: the permission check answers 401 with the reason
        secret = secret.strip()
        # Refused before any query: a NUL or an endless string is not a key, and PostgreSQL would
        # reject a NUL in a query parameter with an error instead of "no such key".
        if not secret or len(secret) > MAX_KEY_LENGTH or not secret.isascii() or not secret.isprintable():
            raise exceptions.AuthenticationFailed(
                gettext("Malformed API key: send `Authorization: Api-Key <key>`.")
            )
        try:
            api_key = OrganizationAPIKey.objects.get_from_key(secret)
        except OrganizationAPIKey.DoesNotExist:
            raise exceptions.AuthenticationFailed(gettext("Unknown or revoked API key.")) from None
        if api_key.has_expired:
            raise exceptions.AuthenticationFailed(gettext("This API key has expired."))
        role = Membership.Role.OWNER
        if api_key.user_id is not None:
            membership = (
                Membership.objects.filter(organization_id=api_key.organization_id, user_id=api_key.user_id)
                .select_related("user")
                .first()
            )
            if membership is None or not membership.user.is_active:
                raise exceptions.AuthenticationFailed(
                    gettext("The member this API key was issued to no longer belongs to the organisation.")
                )
            role = membership.role
        now = timezone.now()
        OrganizationAPIKey.objects.filter(
            Q(last_used__isnull=True) | Q(last_used__lt=now - LAST_USED_PRECISION), pk=api_key.pk
        ).update(last_used=now)
        return Provider(organization=api_key.organization, key=api_key, role=role), api_key

    def authenticate_header(self, request: Request) -> str:
        # Makes DRF answer 401 (not 403) to a request without a key.
        return KEYWORD


class IsProvider(BasePermission):
    message = gettext_lazy(
        "This endpoint needs an organisation API key: send `Authorization: Api-Key <key>`."
    )

    def has_permission(self, request: Request, view: APIView) -> bool:
        return isinstance(request.user, Provider)


class ProviderKeyThrottle(SimpleRateThrottle):
    """Requests per API key, whichever address they come from (Redis-backed when Redis is the cache)."""

    scope = "provider_key"

    def get_rate(self) -> str:
        return settings.PROVIDER_API_RATE  # read per request, so an operator's change applies at once

    def get_cache_key(self, request: Request, view: APIView) -> str | None:
        if not isinstance(request.auth, OrganizationAPIKey):
            return None
        return self.cache_format % {"scope": self.scope, "ident": request.auth.prefix}


class ProviderSubmitThrottle(ProviderKeyThrottle):
    """Submissions per API key: each one makes the arena call the submitted endpoint."""

    scope = "provider_submit"

    def get_rate(self) -> str:
        return settings.PROVIDER_SUBMIT_RATE

    def allow_request(self, request: Request, view: APIView) -> bool:
        if request.method != "POST":
            return True
        return super().allow_request(request, view)


class APIKeyScheme(OpenApiAuthenticationExtension):
    """How the OpenAPI schema describes the key."""

    target_class = APIKeyAuthentication
    name = "ApiKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Api-Key <key>`: an organisation's key, issued by the arena's operators.",
        }
