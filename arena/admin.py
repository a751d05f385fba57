from __future__ import annotations

import json
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.models import CHANGE, DELETION, LogEntry
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse

from arena import visitors
from arena.models import (
    Answer,
    AnswerAttempt,
    Battle,
    Turn,
    Visitor,
    Vote,
    VoterFlag,
    VoterFlagAction,
)
from arena.reasons import VoteReason
from arena.sharing import BattleShare


class RecordAdmin(admin.ModelAdmin):
    """Shown, never added, changed or deleted: what the arena recorded as it happened.

    Battles, their turns, answers and votes are what published snapshots were computed from; an
    edit here would rewrite the history behind them without a trace. What the board counts changes
    only through logged actions (a flag's confirm or restore, below), and a visitor's own deletion.
    """

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class RecordInline:
    """A record shown inside its parent's page, never added, changed or deleted there."""

    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class TurnInline(RecordInline, admin.TabularInline):
    model = Turn
    fields = ["index", "prompt", "created"]
    readonly_fields = fields


@admin.register(Battle)
class BattleAdmin(RecordAdmin):
    list_display = ["id", "mode", "model_a", "model_b", "state", "created"]
    list_filter = ["mode", "state", "created"]
    list_select_related = ["model_a", "model_b"]
    inlines = [TurnInline]


@admin.register(BattleShare)
class BattleShareAdmin(RecordAdmin):
    """The visitors' share links. An operator may take one down (delete: the page is then gone, as
    when its visitor revokes it), never make or change one; the token is left out of the list."""

    list_display = ["battle", "created"]
    readonly_fields = ["battle", "created"]
    exclude = ["token"]

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm("arena.delete_battleshare")


@admin.register(Answer)
class AnswerAdmin(RecordAdmin):
    """Operators read upstream errors here; they may name the model, so they stay out of the API."""

    list_display = ["turn", "side", "status", "ttft_ms", "duration_ms", "output_tokens", "finish_reason"]
    list_filter = ["status", "finish_reason"]
    search_fields = ["error"]


@admin.register(AnswerAttempt)
class AnswerAttemptAdmin(RecordAdmin):
    """Earlier tries, replaced by a retry or a regeneration: which model made each and how it ended."""

    list_display = ["turn", "side", "attempt", "llm", "reason", "status", "finish_reason", "replaced"]
    list_filter = ["reason", "status"]
    list_select_related = ["turn", "llm"]
    search_fields = ["error"]


class VoteReasonInline(RecordInline, admin.StackedInline):
    model = VoteReason
    fields = ["tags", "comment"]
    readonly_fields = fields


@admin.register(Vote)
class VoteAdmin(RecordAdmin):
    """Each vote with the reason the boards leave it out, if any: set by the integrity rules when
    it is cast or by the detector's flags, and changed only by a flag's logged review."""

    list_display = ["battle", "winner", "excluded", "created"]
    list_filter = ["winner", "excluded"]
    inlines = [VoteReasonInline]


@admin.register(Visitor)
class VisitorAdmin(admin.ModelAdmin):
    """Who accepted which terms, and when: a record, so read-only. Two actions answer a visitor's
    request about their data: export it all as JSON, or forget them (arena.visitors.forget_visitor:
    the same deletion as their own button). Both leave a line in the admin's log."""

    list_display = ["visitor_hash", "terms_version", "terms_accepted_at", "created"]
    list_filter = ["terms_version"]
    search_fields = ["visitor_hash"]
    readonly_fields = ["visitor_hash", "terms_version", "terms_accepted_at", "created"]
    actions = ["export_data", "forget"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # a row is their acceptance of the terms

    def has_delete_permission(self, request: HttpRequest, obj: Visitor | None = None) -> bool:
        return False  # deleting the row alone would leave their battles: the forget action instead

    def has_forget_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("arena.delete_visitor")

    @admin.action(description="Export everything stored about them (JSON)", permissions=["view"])
    def export_data(self, request: HttpRequest, queryset: QuerySet[Visitor]) -> HttpResponse:
        hashes = list(queryset.values_list("visitor_hash", flat=True))
        body = [visitors.stored_about(h) for h in hashes]
        LogEntry.objects.log_actions(
            request.user.pk,
            list(queryset),
            CHANGE,
            change_message="Exported everything stored about this visitor (a data request).",
        )
        response = HttpResponse(
            json.dumps(body[0] if len(body) == 1 else body, indent=2, ensure_ascii=False),
            content_type="application/json",
        )
        name = f"visitor-{hashes[0][:12]}" if len(hashes) == 1 else f"visitors-{len(hashes)}"
        response["Content-Disposition"] = f'attachment; filename="{name}.json"'
        response["Cache-Control"] = "no-store"
        return response

    @admin.action(
        description="Forget them: delete unvoted battles, erase prompts and answers, keep votes anonymous",
        permissions=["forget"],
    )
    def forget(self, request: HttpRequest, queryset: QuerySet[Visitor]) -> None:
        rows = list(queryset)
        deleted = anonymised = 0
        for row in rows:
            # Logged first: the row this entry names goes with the deletion.
            LogEntry.objects.log_actions(
                request.user.pk, [row], DELETION, change_message="Forgot this visitor (a data request)."
            )
            done = visitors.forget_visitor(visitor=row.visitor_hash)
            deleted += done.battles_deleted
            anonymised += done.battles_anonymised
        self.message_user(
            request,
            f"{len(rows)} visitor(s) forgotten: {deleted} battle(s) deleted, {anonymised} voted battle(s) "
            "anonymised (prompts and answers erased, their votes kept without a visitor).",
            messages.SUCCESS,
        )


class VoterFlagActionInline(admin.TabularInline):
    model = VoterFlagAction
    extra = 0
    fields = ["created", "action", "user", "votes"]
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(VoterFlagAction)
class VoterFlagActionAdmin(RecordAdmin):
    """Every flag raised and every review, newest first: the exclusions' audit trail."""

    list_display = ["created", "action", "flag", "user", "votes"]
    list_filter = ["action", "created"]
    list_select_related = ["flag", "user"]
    ordering = ["-created"]


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

    def has_delete_permission(self, request: HttpRequest, obj: VoterFlag | None = None) -> bool:
        return False  # its actions are the audit trail of the votes it excluded or restored

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


@admin.register(LogEntry)
class LogEntryAdmin(RecordAdmin):
    """The admin's own log of every change an operator made here (a model's state, visibility or
    weight among them, with the values before and after): one list, newest first."""

    list_display = ["action_time", "user", "content_type", "object_repr", "action_flag", "change_message"]
    list_filter = ["action_flag", "content_type", "action_time"]
    list_select_related = ["user", "content_type"]
    search_fields = ["object_repr", "change_message", "user__username"]
    date_hierarchy = "action_time"
