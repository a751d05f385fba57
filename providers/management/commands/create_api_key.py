from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import Q
from django.utils.text import slugify

from config.errors import DomainError
from providers.keys import api_key_create
from providers.models import Organization


class Command(BaseCommand):
    help = (
        "Issue a provider API key for an organisation and print it: the only time it can be read. "
        "Only a hash is stored; revoke keys in the admin."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("organization", help="the organisation's slug or name")
        parser.add_argument("--name", default="", help="what the key is for (default: issued by command)")
        parser.add_argument(
            "--user", default="", help="issue it to this member (username): it carries their role"
        )
        parser.add_argument(
            "--create", action="store_true", help="create the organisation if it does not exist"
        )

    def handle(
        self, *args: Any, organization: str, name: str, user: str, create: bool, **options: Any
    ) -> None:
        org = Organization.objects.filter(Q(slug=organization) | Q(name=organization)).first()
        if org is None:
            if not create or not slugify(organization):
                raise CommandError(f"No organisation {organization!r}; pass --create to create it.")
            org = Organization.objects.create(name=organization, slug=slugify(organization)[:40])
            self.stderr.write(f"Created organisation {org.name} (slug {org.slug}).")
        member = None
        if user:
            member = get_user_model().objects.filter(username=user).first()
            if member is None:
                raise CommandError(f"No user {user!r}.")
        try:
            api_key, secret = api_key_create(
                organization=org, name=name or "issued by command", user=member, actor="command"
            )
        except DomainError as exc:
            raise CommandError(exc.message) from exc
        # The key alone on stdout, so that scripts can capture it; the rest goes to stderr.
        self.stdout.write(secret)
        self.stderr.write(
            f"Key {api_key.prefix}… issued to {org.name}{f' for {member}' if member else ''}. "
            "Store it now: it cannot be shown again."
        )
