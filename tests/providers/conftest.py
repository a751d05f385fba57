"""Personas of the provider API and helpers to submit variants against the fake OpenAI upstream."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from providers.keys import api_key_create
from providers.models import LLM, Membership, Organization
from tests.upstream import Behaviour, FakeOpenAI


@dataclass(frozen=True)
class Persona:
    name: str
    key: str | None  # None: an anonymous visitor
    organization: Organization | None

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Api-Key {self.key}"} if self.key else {}


@dataclass(frozen=True)
class Personas:
    owner: Persona  # owner of organisation A, with their own key
    teammate: Persona  # member of organisation A, with their own key
    outsider: Persona  # owner of organisation B: the strongest role, in the wrong organisation
    anonymous: Persona

    def all(self) -> list[Persona]:
        return [self.owner, self.teammate, self.outsider, self.anonymous]


def _member(org: Organization, username: str, role: str) -> Any:
    user = get_user_model().objects.create_user(username=username)  # no password: no slow hashing
    Membership.objects.create(organization=org, user=user, role=role)
    return user


@pytest.fixture
def personas(db: None) -> Personas:
    org_a = Organization.objects.create(name="Acme AI", slug="acme")
    org_b = Organization.objects.create(name="Borealis Labs", slug="borealis")
    alice = _member(org_a, "alice", Membership.Role.OWNER)
    bob = _member(org_a, "bob", Membership.Role.MEMBER)
    carol = _member(org_b, "carol", Membership.Role.OWNER)
    keys = {
        user.username: api_key_create(
            organization=org, name=f"{user.username}'s key", user=user, actor="test"
        )[1]
        for org, user in ((org_a, alice), (org_a, bob), (org_b, carol))
    }
    return Personas(
        owner=Persona("owner", keys["alice"], org_a),
        teammate=Persona("teammate", keys["bob"], org_a),
        outsider=Persona("outsider", keys["carol"], org_b),
        anonymous=Persona("anonymous", None, None),
    )


def variant_body(upstream: FakeOpenAI, codename: str = "falcon-7", **overrides: Any) -> dict[str, Any]:
    """A submission whose endpoint answers the probe; the upstream model id is the codename."""
    model = overrides.pop("model", f"up-{codename}")
    upstream.behaviours.setdefault(model, Behaviour(text="OK, here I am."))
    return {
        "codename": codename,
        "backend": "openai-compatible",
        "base_url": upstream.base_url,
        "model": model,
        "api_key": f"sk-secret-{codename}-0123456789",
        "temperature": 0.5,
        "max_tokens": 512,
        "notes": "checkpoint 1200",
        **overrides,
    }


def submit(
    client: Client, persona: Persona, upstream: FakeOpenAI, codename: str = "falcon-7", **overrides: Any
):
    return client.post(
        "/api/v1/provider/variants/",
        variant_body(upstream, codename, **overrides),
        content_type="application/json",
        headers=persona.headers(),
    )


def post(client: Client, persona: Persona, path: str, body: Any = None):
    return client.post(
        path, body if body is not None else {}, content_type="application/json", headers=persona.headers()
    )


def get(client: Client, persona: Persona, path: str):
    return client.get(path, headers=persona.headers())


def make_variant(organization: Organization, codename: str, **fields: Any) -> LLM:
    """A variant row as a submission leaves it, without the probe (rules tests need volume)."""
    values: dict[str, Any] = {
        "name": f"private/{organization.slug}/{codename}",
        "organization": organization.name,
        "owner": organization,
        "codename": codename,
        "backend": LLM.Backend.DEMO,
        "model": "concise",
        "visibility": LLM.Visibility.PRIVATE,
        "testing_started_at": timezone.now(),
    }
    values.update(fields)
    return LLM.objects.create(**values)
