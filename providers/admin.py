from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from providers.models import LLM


@admin.register(LLM)
class LLMAdmin(admin.ModelAdmin):
    list_display = ("name", "label", "organization", "backend", "state", "visibility", "weight", "updated")
    list_filter = ("state", "visibility", "backend", "organization")
    search_fields = ("name", "display_name", "organization", "model")
    readonly_fields = ("created", "updated")
    actions = ("return_to_service",)
    fieldsets = (
        (None, {"fields": ("name", "display_name", "organization", "license")}),
        # api_key_env is only the name of a variable; the key itself never reaches the database.
        (
            "Calling it",
            {"fields": ("backend", "base_url", "model", "api_key_env", "temperature", "max_tokens")},
        ),
        ("In the arena", {"fields": ("weight", "visibility", "state", "state_reason")}),
        (None, {"fields": ("created", "updated")}),
    )

    @admin.action(description="Return to service (state active, reason cleared)")
    def return_to_service(self, request: HttpRequest, queryset: QuerySet[LLM]) -> None:
        count = queryset.update(state=LLM.State.ACTIVE, state_reason="")
        self.message_user(request, f"{count} model(s) back in service.")
