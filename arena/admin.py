from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from arena.models import Answer, Battle, Turn, Visitor, Vote, VoterFlag, VoterFlagAction


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


class VoterFlagActionInline(admin.TabularInline):
    model = VoterFlagAction
    extra = 0
    fields = ["created", "action", "user", "votes"]
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(VoterFlag)
class VoterFlagAdmin(admin.ModelAdmin):
    """Operators review the detector's flags: confirm keeps the votes out, restore counts them again.
    Every action is logged on the flag (its actions below it)."""

    list_display = [
        "voter_hash",
        "kind",
        "state",
        "votes",
        "surprise_p",
        "targeted_z",
        "selective_p",
        "target_model",
        "updated",
    ]
    list_filter = ["kind", "state", "created"]
    search_fields = ["voter_hash"]
    readonly_fields = [
        "kind",
        "voter_hash",
        "state",
        "votes",
        "surprise_p",
        "targeted_z",
        "selective_p",
        "target_model",
        "cleared_through",
        "cleared_at",
        "created",
        "updated",
    ]
    inlines = [VoterFlagActionInline]
    actions = ["confirm", "restore"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # flags come from the detector

    @admin.action(description="Confirm: keep their votes excluded")
    def confirm(self, request: HttpRequest, queryset: QuerySet[VoterFlag]) -> None:
        flags = list(queryset.exclude(state=VoterFlag.State.CONFIRMED))
        for flag in flags:
            flag.confirm(request.user)
        self.message_user(request, f"{len(flags)} flag(s) confirmed.", messages.SUCCESS)

    @admin.action(description="Restore: count their votes again")
    def restore(self, request: HttpRequest, queryset: QuerySet[VoterFlag]) -> None:
        flags = list(queryset.exclude(state=VoterFlag.State.RESTORED))
        votes = sum(flag.restore(request.user) for flag in flags)
        self.message_user(
            request, f"{len(flags)} flag(s) restored, {votes} vote(s) counted again.", messages.SUCCESS
        )
