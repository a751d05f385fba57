from __future__ import annotations

import logging
import os
from datetime import datetime, timedelta

from cryptography.fernet import InvalidToken
from django.conf import settings
from django.db import models
from django.db.models import Exists, OuterRef, Q
from rest_framework_api_key.models import AbstractAPIKey

from providers import crypto
from providers.families import family_words
from providers.registry import BACKENDS, REMOTE_BACKENDS
from providers.text import name_key

logger = logging.getLogger(__name__)


class LLMQuerySet(models.QuerySet["LLM"]):
    def public(self) -> LLMQuerySet:
        return self.filter(visibility=LLM.Visibility.PUBLIC)

    def active(self) -> LLMQuerySet:
        return self.filter(state=LLM.State.ACTIVE)

    def drawable(self) -> LLMQuerySet:
        """Models the anonymous sampler may draw: active, with a positive weight, and public or a
        provider's private variant still within its battle budget (provider testing rules)."""
        within_budget = Q(
            visibility=LLM.Visibility.PRIVATE,
            owner__isnull=False,
            test_votes__lt=settings.PROVIDER_VARIANT_BUDGET,
        )
        return self.active().filter(weight__gt=0).filter(Q(visibility=LLM.Visibility.PUBLIC) | within_budget)

    def variants(self) -> LLMQuerySet:
        """Models submitted by an organisation through the provider API, published or not."""
        return self.filter(owner__isnull=False)

    def of_organization(self, organization: Organization) -> LLMQuerySet:
        return self.filter(owner=organization)

    def named_like(self, name: str, *, labels: bool = False) -> LLM | None:
        """One of these models whose name (and with `labels`, display name) can be mistaken for
        `name` (`providers.text.name_key`), or None.

        Compared in Python: a lookalike skeleton is not something SQL computes, and the registry
        holds hundreds of models, not millions.
        """
        key = name_key(name)
        for llm in self.only("pk", "name", "display_name", "visibility").order_by("pk"):
            if name_key(llm.name) == key or (
                labels and llm.display_name and name_key(llm.display_name) == key
            ):
                return llm
        return None

    def under_test(self) -> LLMQuerySet:
        """Variants that hold one of their organisation's testing slots: private and not retired.

        A variant at its battle budget still holds its slot until it is published or retired.
        """
        return self.variants().filter(visibility=LLM.Visibility.PRIVATE, retired_at__isnull=True)

    def disclosed(self, *, now: datetime) -> LLMQuerySet:
        """Variants whose final rating the testing ledger shows (no-retraction rule).

        Those that stopped with enough votes, once their organisation published any variant after
        this one started testing, or once the disclosure delay after stopping has passed.
        """
        published_since = LLM.objects.filter(
            owner=OuterRef("owner"),
            published_at__gte=OuterRef("testing_started_at"),
            published_at__lte=now,
        )
        delay = timedelta(days=settings.PROVIDER_DISCLOSURE_DELAY_DAYS)
        return (
            self.variants()
            .filter(test_votes__gte=settings.PROVIDER_DISCLOSURE_MIN_VOTES, testing_ended_at__lte=now)
            .filter(Q(testing_ended_at__lte=now - delay) | Exists(published_since))
        )


class LLM(models.Model):
    """One model in the registry: how to call it, how often to draw it, and whether it is shown."""

    # One member per adapter in providers.registry (OPENAI_COMPATIBLE, ANTHROPIC, GEMINI, DEMO), and
    # IMPORTED for models whose votes came from a public dump (import_battles): shown, never called.
    Backend = models.TextChoices(
        "Backend", [(name.upper().replace("-", "_"), name) for name in [*BACKENDS, "imported"]]
    )

    class Visibility(models.TextChoices):
        PUBLIC = "public"
        PRIVATE = "private"

    class State(models.TextChoices):
        ACTIVE = "active"
        OUTAGE = "outage"
        RETIRED = "retired"

    REMOTE_BACKENDS = REMOTE_BACKENDS

    name = models.CharField(max_length=100, unique=True, help_text="Public name, stable across releases.")
    display_name = models.CharField(max_length=200, blank=True)
    organization = models.CharField(max_length=100, blank=True)
    license = models.CharField(max_length=100, blank=True)
    backend = models.CharField(max_length=32, choices=Backend.choices)
    base_url = models.URLField(max_length=500, blank=True)
    model = models.CharField(max_length=200, blank=True, help_text="Model id sent upstream.")
    api_key_env = models.CharField(
        max_length=100, blank=True, help_text="Name of the environment variable that holds the API key."
    )
    temperature = models.FloatField(default=0.7)
    max_tokens = models.PositiveIntegerField(default=1024)
    weight = models.FloatField(default=1.0, help_text="Relative chance of being drawn into a battle.")
    visibility = models.CharField(max_length=16, choices=Visibility.choices, default=Visibility.PUBLIC)
    state = models.CharField(max_length=16, choices=State.choices, default=State.ACTIVE)
    state_reason = models.TextField(blank=True, help_text="Why the model is in outage; for operators.")
    vision = models.BooleanField(
        default=False,
        db_default=False,  # rows written by code that predates the field read as not vision
        help_text="Reads images: only such models are drawn for a battle with an image.",
    )
    # --- Private variants submitted through the provider API (providers/api.py) ---
    owner = models.ForeignKey(
        "Organization",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="variants",
        help_text="The organisation that submitted this variant through the provider API.",
    )
    codename = models.CharField(max_length=40, blank=True, help_text="The provider's name for the variant.")
    notes = models.TextField(blank=True)
    # A Fernet token (providers/crypto.py), never the key itself; read through api_key().
    api_key_encrypted = models.TextField(blank=True, editable=False)
    # Anonymous votes collected while private: the battle budget and the disclosure threshold read
    # it. Kept here, counted when a vote is stored, because providers may not read arena's tables.
    test_votes = models.PositiveIntegerField(default=0, editable=False)
    testing_started_at = models.DateTimeField(null=True, blank=True, editable=False)
    # When it stopped collecting votes as a private variant: published, retired or at its budget.
    testing_ended_at = models.DateTimeField(null=True, blank=True, editable=False)
    published_at = models.DateTimeField(null=True, blank=True, editable=False)
    retired_at = models.DateTimeField(null=True, blank=True, editable=False)
    # The private result (providers.results.PrivateResult) on the votes up to the end of its
    # testing, frozen by the first leaderboard recompute after it.
    final_result = models.JSONField(null=True, blank=True, editable=False)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    objects = LLMQuerySet.as_manager()

    class Meta:
        verbose_name = "LLM"
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=Q(weight__gte=0), name="llm_weight_not_negative"),
            models.CheckConstraint(
                condition=Q(temperature__gte=0) & Q(temperature__lte=2), name="llm_temperature_in_range"
            ),
            models.CheckConstraint(condition=Q(max_tokens__gte=1), name="llm_max_tokens_positive"),
            models.CheckConstraint(
                condition=~Q(backend__in=REMOTE_BACKENDS) | (~Q(base_url="") & ~Q(model="")),
                name="llm_remote_backend_has_address",
            ),
            models.CheckConstraint(
                condition=Q(owner__isnull=True) | ~Q(codename=""), name="llm_variant_has_codename"
            ),
            models.UniqueConstraint(
                fields=["owner", "codename"],
                condition=Q(owner__isnull=False),
                name="llm_one_codename_per_organization",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_demo(self) -> bool:
        return self.backend == self.Backend.DEMO

    @property
    def label(self) -> str:
        """The name shown to people: demo models say so wherever a name is shown."""
        label = self.display_name or self.name
        return f"{label} (demo)" if self.is_demo else label

    def api_key(self) -> str:
        """A variant's key is stored encrypted and decrypted at call time; a registry model's is read
        from the environment variable it names, at call time, and never stored."""
        if self.api_key_encrypted:
            try:
                return crypto.decrypt(self.api_key_encrypted)
            except (InvalidToken, ValueError):
                # FIELD_ENCRYPTION_KEY changed (or went) without the old key: the call goes out without
                # a key, the upstream refuses it and the model leaves the draw with the reason.
                logger.error("cannot decrypt the stored API key of model %s (id %s)", self.name, self.pk)
                return ""
        return os.environ.get(self.api_key_env, "") if self.api_key_env else ""

    def identity_terms(self) -> set[str]:
        """Words that would reveal this model if an answer said them (identity-leak check): its own
        names, and those of its family and vendor ("Claude", "Anthropic" for claude-sonnet-4-5)."""
        terms = {
            self.name,
            self.display_name,
            self.organization,
            self.model,
            self.model.rsplit("/", 1)[-1],
            self.codename,  # a private variant's name hides it: "private/<org>/<codename>"
        }
        own = {t.strip() for t in terms if len(t.strip()) >= 3}
        return own | family_words(own)

    def mark_outage(self, reason: str) -> None:
        LLM.objects.filter(pk=self.pk).update(state=self.State.OUTAGE, state_reason=reason)
        self.state, self.state_reason = self.State.OUTAGE, reason

    @property
    def is_variant(self) -> bool:
        return self.owner_id is not None

    @property
    def testing_status(self) -> str:
        """Where a variant stands: testing, budget_reached, outage, published or retired."""
        if self.retired_at:
            return "retired"
        if self.published_at:
            return "published"
        if self.state == self.State.OUTAGE:
            return "outage"
        if self.test_votes >= settings.PROVIDER_VARIANT_BUDGET:
            return "budget_reached"
        return "testing"


class VariantResult(models.Model):
    """What the votes say about a variant, as the last leaderboard recompute found it: providers
    reads no votes, the recompute writes them here."""

    llm = models.OneToOneField(LLM, on_delete=models.CASCADE, primary_key=True, related_name="variant_result")
    battles = models.PositiveIntegerField(default=0, help_text="Anonymous battles it was drawn into.")
    # Its private result (providers.results.PrivateResult) while under test; null before its first
    # counted vote against a public model.
    result = models.JSONField(null=True, blank=True)
    # SHA-256 of the votes `result` was computed from: a recompute rates it again only when they change.
    votes_digest = models.CharField(max_length=64, blank=True)
    # Who cast the votes behind `result` (keyed hashes, counted, never shown): seen by its
    # organisation and operators only, never by the public.
    visitors = models.PositiveIntegerField(default=0, help_text="Distinct visitors behind its votes.")
    networks = models.PositiveIntegerField(default=0, help_text="Distinct known networks behind its votes.")
    top_visitor_share = models.FloatField(default=0, help_text="Share of its votes from its busiest visitor.")
    top_network_share = models.FloatField(default=0, help_text="Share of its votes from its busiest network.")
    concentrated = models.BooleanField(
        default=False,
        help_text="One visitor or network cast more than PROVIDER_VOTER_MAX_SHARE of its votes.",
    )
    updated = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"result of {self.llm_id}"


class FlaggedPrompt(models.Model):
    """A prompt that moderation refused (providers.moderation), kept for operators to review; no
    model was asked."""

    prompt = models.TextField()
    categories = models.JSONField(default=list, help_text="What the moderation backend flagged.")
    backend = models.CharField(max_length=16, help_text="The backend that refused it: local or openai.")
    visitor = models.CharField(
        max_length=64, blank=True, help_text="The keyed hash that stands for the visitor in the arena."
    )
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created"]
        # The admin's list, newest first.
        indexes = [models.Index(fields=["-created"], name="flaggedprompt_created")]

    def __str__(self) -> str:
        return f"prompt flagged {', '.join(self.categories) or 'by ' + self.backend}"


class Organization(models.Model):
    """A model provider: owns API keys and the private variants submitted with them."""

    name = models.CharField(max_length=100, unique=True)
    slug = models.SlugField(max_length=40, unique=True, help_text="Short name, used by create_api_key.")
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class LedgerEntry(models.Model):
    """An organisation's figures on the testing ledger that only the votes tell, as the last
    leaderboard recompute counted them (providers reads no votes)."""

    organization = models.OneToOneField(
        Organization, on_delete=models.CASCADE, primary_key=True, related_name="ledger_entry"
    )
    votes = models.PositiveIntegerField(
        default=0,
        help_text="Anonymous votes on battles with its variants while private, once their testing ended.",
    )
    battle_share = models.FloatField(default=0, help_text="Those votes over all anonymous votes.")
    updated = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"ledger entry of {self.organization_id}"


class Membership(models.Model):
    """A person's place in an organisation. Owners may publish and retire; members test."""

    class Role(models.TextChoices):
        OWNER = "owner"
        MEMBER = "member"

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MEMBER)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organization", "user"], name="one_membership_per_user")
        ]

    def __str__(self) -> str:
        return f"{self.user} ({self.role}) in {self.organization}"


class OrganizationAPIKey(AbstractAPIKey):
    """A provider API key: only a hash is stored (djangorestframework-api-key); shown once.

    Issued to the organisation, and optionally to one member: such a key carries that member's role
    and stops working when they leave. A key without a member (from `create_api_key` without
    --user) acts as an owner's.
    """

    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="api_keys")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text="The member the key was issued to; empty for an organisation key.",
    )
    last_used = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta(AbstractAPIKey.Meta):
        verbose_name = "organisation API key"
        verbose_name_plural = "organisation API keys"


class APIKeyEvent(models.Model):
    """Audit trail of API keys: one row per creation and per revocation, never the key itself."""

    class Action(models.TextChoices):
        CREATED = "created"
        REVOKED = "revoked"

    key = models.ForeignKey(OrganizationAPIKey, on_delete=models.PROTECT, related_name="events")
    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="+")
    action = models.CharField(max_length=16, choices=Action.choices)
    actor = models.CharField(max_length=200, help_text='Who did it: "admin:<username>", "command", ...')
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created", "-id"]
        verbose_name = "API key event"

    def __str__(self) -> str:
        return f"key {self.key_id.partition('.')[0]} {self.action} by {self.actor}"
