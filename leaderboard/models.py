from __future__ import annotations

import hashlib
import zlib
from typing import Any

import numpy as np
from django.db import models

from providers.models import LLM


class SnapshotQuerySet(models.QuerySet["Snapshot"]):
    def of_board(self, board: str) -> SnapshotQuerySet:
        return self.filter(board=board)

    def latest_first(self) -> SnapshotQuerySet:
        return self.order_by("-created", "-id")


class ExcludedVotes(models.Model):
    """The votes a recompute left out for a reason of their own (`Vote.excluded`), by id, as they
    stood when it counted.

    The snapshots of that recompute (and of later ones, while the set is the same) point here, so a
    snapshot's vote export leaves out exactly these votes whatever a later sweep or restore did.
    Stored as the ids' gaps (sorted, little-endian uint64), zlib-compressed: most gaps fit in one
    byte, so 60,000 ids take about 80 kB.
    """

    digest = models.CharField(max_length=64, unique=True, help_text="SHA-256 of the stored bytes.")
    count = models.PositiveIntegerField()
    packed = models.BinaryField()
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "excluded votes"

    def __str__(self) -> str:
        return f"{self.count} votes excluded ({self.digest[:12]})"

    @classmethod
    def record(cls, ids: np.ndarray) -> ExcludedVotes:
        """The stored set of these ids (sorted, distinct), created unless an equal one is stored."""
        packed = pack_ids(ids)
        digest = hashlib.sha256(packed).hexdigest()
        row, _ = cls.objects.get_or_create(digest=digest, defaults={"count": len(ids), "packed": packed})
        return row

    def ids(self) -> np.ndarray:
        return unpack_ids(self.packed)


def pack_ids(ids: np.ndarray) -> bytes:
    """Sorted, distinct ids as compressed gaps (`unpack_ids` reads them back)."""
    gaps = np.diff(np.asarray(ids, dtype=np.int64), prepend=0)
    if gaps.size and gaps.min() <= 0:
        raise ValueError("ids must be positive, sorted and distinct")
    return zlib.compress(gaps.astype("<u8").tobytes(), 9)


def unpack_ids(packed: bytes) -> np.ndarray:
    return np.cumsum(np.frombuffer(zlib.decompress(packed), dtype="<u8").astype(np.int64))


class Snapshot(models.Model):
    """One computed board. Written with its ratings in one transaction, so readers see all or none."""

    board = models.CharField(max_length=64, default="overall")
    created = models.DateTimeField(auto_now_add=True)
    votes = models.PositiveIntegerField()
    votes_digest = models.CharField(max_length=64, help_text="SHA-256 of the votes used, in order.")
    method = models.CharField(max_length=64, default="bradley-terry")
    # How its votes were weighted (leaderboard.weighting); "none" on snapshots from before weights.
    weights = models.CharField(
        max_length=16,
        choices=[(w, w) for w in ("none", "propensity", "pair-frequency")],
        default="none",
        help_text="Per-vote weights of the fit: none, propensity (inverse) or pair-frequency (inverse).",
    )
    params = models.JSONField(default=dict)
    excluded = models.JSONField(default=dict, help_text="Votes left out, counted by reason.")
    # The flagged votes it left out, by id (null on snapshots published before they were kept: their
    # export leaves out the votes flagged at download time).
    excluded_votes = models.ForeignKey(
        ExcludedVotes, on_delete=models.PROTECT, null=True, blank=True, related_name="snapshots"
    )
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
    rank = models.PositiveIntegerField()  # the best rank its interval allows
    rank_upper = models.PositiveIntegerField(null=True, blank=True)  # the worst; null on older snapshots
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
    def rank_range(self) -> str:
        """ "3" when the intervals pin the rank, "3–7" when they allow a range (Compar:IA shows it so)."""
        if self.rank_upper is None or self.rank_upper == self.rank:
            return str(self.rank)
        return f"{self.rank}–{self.rank_upper}"

    @property
    def shown(self) -> dict[str, int]:
        """Rounded figures for display; each bound is rounded first, so rating + plus = upper bound."""
        rating, lower, upper = round(self.rating), round(self.ci_lower), round(self.ci_upper)
        return {"rating": rating, "plus": upper - rating, "minus": rating - lower}
