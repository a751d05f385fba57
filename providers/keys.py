"""Provider API keys: issued and revoked here only, so that every change leaves an audit row.

The key itself exists in clear only in the return value of `api_key_create`, to be shown once;
the database keeps a hash (djangorestframework-api-key) and logs name the key by its prefix.
"""

from __future__ import annotations

import logging
from datetime import datetime

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from config.errors import DomainError
from providers.models import APIKeyEvent, Membership, Organization, OrganizationAPIKey

logger = logging.getLogger(__name__)


def api_key_create(
    *,
    organization: Organization,
    name: str,
    actor: str,
    user: AbstractBaseUser | None = None,
    expiry_date: datetime | None = None,
) -> tuple[OrganizationAPIKey, str]:
    """A new key and its clear text, which nobody can read again afterwards."""
    if user is not None and not Membership.objects.filter(organization=organization, user=user).exists():
        raise DomainError(f"{user} is not a member of {organization}.", code="not_a_member")
    with transaction.atomic():
        api_key, secret = OrganizationAPIKey.objects.create_key(
            organization=organization, user=user, name=name[:50] or "API key", expiry_date=expiry_date
        )
        APIKeyEvent.objects.create(
            key=api_key, organization=organization, action=APIKeyEvent.Action.CREATED, actor=actor
        )
    logger.info(
        "api key created: organization=%s prefix=%s user=%s by=%s",
        organization.slug,
        api_key.prefix,
        user or "-",
        actor,
    )
    return api_key, secret


def api_key_revoke(*, api_key: OrganizationAPIKey, actor: str) -> bool:
    """Revoke the key for good; False if it already was (then nothing is logged twice)."""
    with transaction.atomic():
        # The conditional update is the claim: two revocations at once log one event.
        if not OrganizationAPIKey.objects.filter(pk=api_key.pk, revoked=False).update(revoked=True):
            return False
        APIKeyEvent.objects.create(
            key=api_key,
            organization_id=api_key.organization_id,
            action=APIKeyEvent.Action.REVOKED,
            actor=actor,
        )
    api_key.revoked = True
    logger.info(
        "api key revoked: organization_id=%s prefix=%s by=%s", api_key.organization_id, api_key.prefix, actor
    )
    return True
