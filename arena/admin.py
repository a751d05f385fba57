from __future__ import annotations

from django.contrib import admin

from arena.models import Answer, Battle, Turn, Visitor, Vote


class TurnInline(admin.TabularInline):
    model = Turn
    extra = 0
    fields = ["index", "prompt", "created"]
    readonly_fields = fields


@admin.register(Battle)
class BattleAdmin(admin.ModelAdmin):
    list_display = ["id", "mode", "model_a", "model_b", "state", "created"]
    list_filter = ["mode", "state", "created"]
    list_select_related = ["model_a", "model_b"]
    readonly_fields = ["id", "visitor_hash", "created", "updated"]
    inlines = [TurnInline]


@admin.register(Answer)
class AnswerAdmin(admin.ModelAdmin):
    """Operators read upstream errors here; they may name the model, so they stay out of the API."""

    list_display = ["turn", "side", "status", "ttft_ms", "duration_ms", "output_tokens", "finish_reason"]
    list_filter = ["status", "finish_reason"]
    search_fields = ["error"]
    readonly_fields = ["turn", "side", "params", "started", "finished"]


@admin.register(Vote)
class VoteAdmin(admin.ModelAdmin):
    list_display = ["battle", "winner", "excluded", "created"]
    list_filter = ["winner", "excluded"]
    readonly_fields = ["battle", "created"]


@admin.register(Visitor)
class VisitorAdmin(admin.ModelAdmin):
    """Who accepted which terms, and when: a record, so read-only."""

    list_display = ["visitor_hash", "terms_version", "terms_accepted_at", "created"]
    list_filter = ["terms_version"]
    readonly_fields = ["visitor_hash", "terms_version", "terms_accepted_at", "created"]
