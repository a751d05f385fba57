from __future__ import annotations

from typing import Any

from django.db import models

from providers.models import LLM


class SnapshotQuerySet(models.QuerySet["Snapshot"]):
    def of_board(self, board: str) -> SnapshotQuerySet:
        return self.filter(board=board)

    def latest_first(self) -> SnapshotQuerySet:
        return self.order_by("-created", "-id")


class Snapshot(models.Model):
    """One computed board. Written with its ratings in one transaction, so readers see all or none."""

    board = models.CharField(max_length=64, default="overall")
    created = models.DateTimeField(auto_now_add=True)
    votes = models.PositiveIntegerField()
    votes_digest = models.CharField(max_length=64, help_text="SHA-256 of the votes used, in order.")
    method = models.CharField(max_length=64, default="bradley-terry")
    params = models.JSONField(default=dict)
    excluded = models.JSONField(default=dict, help_text="Votes left out, counted by reason.")
    duration_ms = models.FloatField(default=0)
    # Plots and side figures: heatmap matrices, style coefficients, per-model latency.
    details = models.JSONField(default=dict, blank=True)

    objects = SnapshotQuerySet.as_manager()

    class Meta:
        # Readers ask for the newest snapshot of one board.
        indexes = [models.Index(fields=["board", "-created"], name="snapshot_board_latest")]

    def __str__(self) -> str:
        return f"{self.board} board of {self.created:%Y-%m-%d %H:%M}"

    @property
    def public_params(self) -> dict[str, Any]:
        """The parameters as the public sees them: the filters say how many variants under test were
        left out, never which (their ids stay with the snapshot, for its vote export)."""
        filters = self.params.get("filters")
        if not filters or "private" not in filters:
            return self.params
        return self.params | {"filters": filters | {"private": len(filters["private"])}}


class Rating(models.Model):
    snapshot = models.ForeignKey(Snapshot, on_delete=models.CASCADE, related_name="ratings")
    llm = models.ForeignKey(LLM, on_delete=models.PROTECT, related_name="+")
    rating = models.FloatField()
    ci_lower = models.FloatField()
    ci_upper = models.FloatField()
    rank = models.PositiveIntegerField()
    votes = models.PositiveIntegerField()
    # A published variant with fewer fresh votes (collected after publication) than the rule asks
    # for: its rating rests on few votes (leaderboard.votes, fresh-vote rule).
    provisional = models.BooleanField(default=False)

    class Meta:
        ordering = ["rank", "-rating"]
        constraints = [models.UniqueConstraint(fields=["snapshot", "llm"], name="one_rating_per_model")]

    def __str__(self) -> str:
        return f"{self.llm} at {self.rating:.0f}"

    @property
    def shown(self) -> dict[str, int]:
        """Rounded figures for display; each bound is rounded first, so rating + plus = upper bound."""
        rating, lower, upper = round(self.rating), round(self.ci_lower), round(self.ci_upper)
        return {"rating": rating, "plus": upper - rating, "minus": rating - lower}
