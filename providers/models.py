from __future__ import annotations

import os

from django.db import models
from django.db.models import Q


class LLMQuerySet(models.QuerySet["LLM"]):
    def public(self) -> LLMQuerySet:
        return self.filter(visibility=LLM.Visibility.PUBLIC)

    def active(self) -> LLMQuerySet:
        return self.filter(state=LLM.State.ACTIVE)

    def drawable(self) -> LLMQuerySet:
        """Models the anonymous sampler may draw: public, active, with a positive weight."""
        return self.public().active().filter(weight__gt=0)


class LLM(models.Model):
    """One model in the registry: how to call it, how often to draw it, and whether it is shown."""

    class Backend(models.TextChoices):
        OPENAI_COMPATIBLE = "openai-compatible"
        ANTHROPIC = "anthropic"
        GEMINI = "gemini"
        DEMO = "demo"

    class Visibility(models.TextChoices):
        PUBLIC = "public"
        PRIVATE = "private"

    class State(models.TextChoices):
        ACTIVE = "active"
        OUTAGE = "outage"
        RETIRED = "retired"

    # Backends that call out over HTTP and so need an address and an upstream model id.
    REMOTE_BACKENDS = frozenset({Backend.OPENAI_COMPATIBLE, Backend.ANTHROPIC, Backend.GEMINI})

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
                condition=~Q(backend__in=["openai-compatible", "anthropic", "gemini"])
                | (~Q(base_url="") & ~Q(model="")),
                name="llm_remote_backend_has_address",
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
        """The key is read from the environment at call time; it is never stored in the database."""
        return os.environ.get(self.api_key_env, "") if self.api_key_env else ""

    def identity_terms(self) -> set[str]:
        """Words that would reveal this model if an answer said them (identity-leak check)."""
        terms = {self.name, self.display_name, self.organization, self.model, self.model.rsplit("/", 1)[-1]}
        return {t.strip() for t in terms if len(t.strip()) >= 3}

    def mark_outage(self, reason: str) -> None:
        LLM.objects.filter(pk=self.pk).update(state=self.State.OUTAGE, state_reason=reason)
        self.state, self.state_reason = self.State.OUTAGE, reason
