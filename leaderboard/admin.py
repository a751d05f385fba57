from __future__ import annotations

from django.contrib import admin

from leaderboard.models import Rating, Snapshot


class RatingInline(admin.TabularInline):
    model = Rating
    extra = 0
    readonly_fields = ["llm", "rating", "ci_lower", "ci_upper", "rank", "votes"]
    can_delete = False


@admin.register(Snapshot)
class SnapshotAdmin(admin.ModelAdmin):
    list_display = ["id", "board", "created", "votes", "weights", "duration_ms"]
    list_filter = ["board", "weights"]
    readonly_fields = [
        "board",
        "created",
        "votes",
        "votes_digest",
        "method",
        "weights",
        "params",
        "excluded",
        "excluded_votes",
        "duration_ms",
    ]
    inlines = [RatingInline]

    def has_delete_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        return False  # a published snapshot is history: its downloads must keep answering
