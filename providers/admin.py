from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db import models
from django.db.models import QuerySet
from django.http import HttpRequest
from rest_framework_api_key.admin import APIKeyModelAdmin
from rest_framework_api_key.models import APIKey

from providers.keys import api_key_create, api_key_revoke
from providers.models import (
    LLM,
    APIKeyEvent,
    FlaggedPrompt,
    Membership,
    Organization,
    OrganizationAPIKey,
    VariantResult,
)


@admin.register(LLM)
class LLMAdmin(admin.ModelAdmin):
    # A base URL typed without a scheme means https, as Django 6 will assume (no deprecation warning).
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    list_display = ("name", "label", "organization", "backend", "state", "visibility", "weight", "updated")
    list_filter = ("state", "visibility", "backend", "organization", "owner")
    search_fields = ("name", "display_name", "organization", "model", "codename")
    readonly_fields = (
        "created",
        "updated",
        "owner",
        "codename",
        "test_votes",
        "testing_started_at",
        "testing_ended_at",
        "published_at",
        "retired_at",
    )
    actions = ("return_to_service",)
    fieldsets = (
        (None, {"fields": ("name", "display_name", "organization", "license")}),
        # api_key_env is only the name of a variable; the key itself never reaches the database.
        (
            "Calling it",
            {"fields": ("backend", "base_url", "model", "api_key_env", "temperature", "max_tokens")},
        ),
        ("In the arena", {"fields": ("weight", "vision", "visibility", "state", "state_reason")}),
        (
            "Provider variant",
            {
                "fields": (
                    "owner",
                    "codename",
                    "notes",
                    "test_votes",
                    "testing_started_at",
                    "testing_ended_at",
                    "published_at",
                    "retired_at",
                )
            },
        ),
        (None, {"fields": ("created", "updated")}),
    )

    def get_readonly_fields(self, request: HttpRequest, obj: LLM | None = None) -> tuple[str, ...]:
        fields = tuple(super().get_readonly_fields(request, obj))
        if obj is not None and obj.is_variant:
            # Fair testing: every variant has the same weight, and publishing goes through the API.
            fields += ("weight", "visibility")
        return fields

    def has_delete_permission(self, request: HttpRequest, obj: LLM | None = None) -> bool:
        # No silent retraction: a variant is retired, never deleted.
        if obj is not None and obj.is_variant:
            return False
        return super().has_delete_permission(request, obj)

    def construct_change_message(
        self, request: HttpRequest, form: Any, formsets: Any, add: bool = False
    ) -> Any:
        """The admin's log line, with each changed field's value before and after: a model's
        state, visibility or weight decides what is drawn and what the board counts."""
        if add or not form.changed_data:
            return super().construct_change_message(request, form, formsets, add)
        changes = [
            f"{name}: {form.initial.get(name)!r} → {form.cleaned_data.get(name)!r}"
            for name in form.changed_data
        ]
        return "Changed " + "; ".join(changes) + "."

    @admin.action(description="Return to service (state active, reason cleared)")
    def return_to_service(self, request: HttpRequest, queryset: QuerySet[LLM]) -> None:
        # Models in outage only: a retired one left the draw for good.
        outages = list(queryset.filter(state=LLM.State.OUTAGE))
        for llm in outages:
            LLM.objects.filter(pk=llm.pk).update(state=LLM.State.ACTIVE, state_reason="")
            self.log_change(
                request,
                llm,
                f"Returned to service: state 'outage' → 'active'; reason {llm.state_reason!r} cleared.",
            )
        self.message_user(request, f"{len(outages)} model(s) back in service.")


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 1
    autocomplete_fields = ("user",)


@admin.register(VariantResult)
class VariantResultAdmin(admin.ModelAdmin):
    """What the last recompute found for each variant; a concentrated one rests on few voters."""

    list_display = (
        "llm",
        "battles",
        "visitors",
        "networks",
        "top_visitor_share",
        "top_network_share",
        "concentrated",
        "updated",
    )
    list_filter = ("concentrated",)
    fields = readonly_fields = (
        "llm",
        "battles",
        "visitors",
        "networks",
        "top_visitor_share",
        "top_network_share",
        "concentrated",
        "result",
        "updated",
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "created")
    search_fields = ("name", "slug")
    prepopulated_fields = {"slug": ("name",)}
    inlines = (MembershipInline,)


# The library registers its own concrete APIKey model; this project's keys are OrganizationAPIKey.
if admin.site.is_registered(APIKey):
    admin.site.unregister(APIKey)


class OrganizationAPIKeyForm(forms.ModelForm):
    class Meta:
        model = OrganizationAPIKey
        fields = ("name", "organization", "user", "expiry_date", "revoked")

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        org, user = data.get("organization"), data.get("user")
        if org and user and not Membership.objects.filter(organization=org, user=user).exists():
            raise forms.ValidationError({"user": f"{user} is not a member of {org}."})
        return data


@admin.register(OrganizationAPIKey)
class OrganizationAPIKeyAdmin(APIKeyModelAdmin):
    """Keys are created and revoked through providers.keys, so both leave an audit row."""

    form = OrganizationAPIKeyForm

    list_display = ("prefix", "name", "organization", "user", "created", "last_used", "revoked")
    list_filter = ("organization", "revoked", "created")
    search_fields = ("name", "prefix", "organization__name")
    actions = ("revoke",)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        if obj is None:
            return ("prefix",)
        # Revoking is the "revoke" action or the checkbox; who owns a key never changes.
        fields: tuple[str, ...] = ("prefix", "organization", "user", "last_used")
        return (*fields, "name", "revoked", "expiry_date") if obj.revoked else fields

    def save_model(self, request: HttpRequest, obj: OrganizationAPIKey, form: Any, change: bool) -> None:
        actor = f"admin:{request.user.get_username()}"
        if not change:
            api_key, secret = api_key_create(
                organization=obj.organization,
                name=obj.name,
                user=obj.user,
                expiry_date=obj.expiry_date,
                actor=actor,
            )
            # The admin goes on with the form's instance (change log, redirect): make it the key.
            obj.pk, obj.prefix, obj.hashed_key, obj.created = (
                api_key.pk,
                api_key.prefix,
                api_key.hashed_key,
                api_key.created,
            )
            messages.warning(
                request,
                f"The API key for {obj.organization} is: {secret} — store it somewhere safe now: "
                "it is not stored and cannot be shown again.",
            )
            return
        revoking = obj.revoked and not OrganizationAPIKey.objects.filter(pk=obj.pk, revoked=True).exists()
        if revoking:
            obj.revoked = False  # the service flips it, with its audit row
        obj.save()
        if revoking:
            api_key_revoke(api_key=obj, actor=actor)

    @admin.action(description="Revoke selected keys (cannot be undone)")
    def revoke(self, request: HttpRequest, queryset: QuerySet[OrganizationAPIKey]) -> None:
        actor = f"admin:{request.user.get_username()}"
        count = sum(api_key_revoke(api_key=key, actor=actor) for key in queryset)
        self.message_user(request, f"{count} key(s) revoked.")

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # revoked, never deleted: the audit trail points at it


@admin.register(APIKeyEvent)
class APIKeyEventAdmin(admin.ModelAdmin):
    list_display = ("created", "organization", "key", "action", "actor")
    list_filter = ("action", "organization")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(FlaggedPrompt)
class FlaggedPromptAdmin(admin.ModelAdmin):
    """Prompts that moderation refused, for review; kept as they were, so they are read, not edited."""

    list_display = ("created", "categories", "backend", "excerpt", "visitor")
    list_filter = ("backend",)
    search_fields = ("prompt", "visitor")
    date_hierarchy = "created"

    @admin.display(description="prompt")
    def excerpt(self, flagged: FlaggedPrompt) -> str:
        return flagged.prompt if len(flagged.prompt) <= 120 else flagged.prompt[:119] + "…"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: FlaggedPrompt | None = None) -> bool:
        return False
