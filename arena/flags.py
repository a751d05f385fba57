"""The detector's flags on voters (leaderboard.integrity) and the operators' actions on them.

Kept beside arena.models, which imports them so that the app loads them.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models, transaction
from django.db.models import Q
from django.utils import timezone

from arena.models import Vote
from providers.models import LLM


class VoterFlag(models.Model):
    """A voter the detector found anomalous (leaderboard.integrity): a visitor, a network, or the
    crowd of new voters on one model on one day (a surge: `voter_hash` is "<model id>@<date>").

    Its votes are excluded (ANOMALOUS_VOTER, or VOTE_SURGE for a surge) until an operator restores
    it. The statistics are for operators only: no public response carries them, so the detector's
    thresholds cannot be read off its flags.
    """

    class Kind(models.TextChoices):
        VISITOR = "visitor"
        NETWORK = "network"
        SURGE = "surge"

    class State(models.TextChoices):
        FLAGGED = "flagged", "flagged: votes excluded, waiting for review"
        CONFIRMED = "confirmed", "confirmed by an operator: votes stay excluded"
        RESTORED = "restored", "restored by an operator: votes counted again"

    kind = models.CharField(max_length=8, choices=Kind.choices)
    voter_hash = models.CharField(max_length=64)
    state = models.CharField(max_length=16, choices=State.choices, default=State.FLAGGED)
    votes = models.PositiveIntegerField(default=0, help_text="Votes scored when last flagged.")
    surprise_p = models.FloatField(null=True, blank=True)
    targeted_z = models.FloatField(null=True, blank=True)
    # Voted only on the battles of target_model, far beyond chance; for a surge, its day's p-value.
    selective_p = models.FloatField(null=True, blank=True)
    target_model = models.ForeignKey(LLM, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    # Votes up to this id, and battles up to this time, were cleared by an operator's restore: they
    # are never judged again.
    cleared_through = models.BigIntegerField(default=0)
    cleared_at = models.DateTimeField(null=True, blank=True)
    created = models.DateTimeField(default=timezone.now)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["kind", "voter_hash"], name="one_flag_per_voter")]

    def __str__(self) -> str:
        return f"{self.kind} {self.voter_hash[:12]} ({self.state})"

    def votes_of_voter(self) -> models.QuerySet[Vote]:
        if self.kind == self.Kind.SURGE:
            model, day = self.voter_hash.split("@")
            on_model = Q(battle__model_a_id=model) | Q(battle__model_b_id=model)
            return Vote.objects.filter(on_model, battle__created__date=day)
        return Vote.objects.filter(**{f"battle__{self.kind}_hash": self.voter_hash})

    @transaction.atomic
    def confirm(self, user: Any) -> None:
        VoterFlag.objects.filter(pk=self.pk).update(state=self.State.CONFIRMED, updated=timezone.now())
        self.state = self.State.CONFIRMED
        VoterFlagAction.objects.create(flag=self, action=VoterFlagAction.Action.CONFIRM, user=user)

    @transaction.atomic
    def restore(self, user: Any) -> int:
        """Count the voter's votes again (only those excluded as anomalous); returns how many."""
        last = Vote.objects.order_by("-id").values_list("id", flat=True).first() or 0
        now = timezone.now()
        VoterFlag.objects.filter(pk=self.pk).update(
            state=self.State.RESTORED, cleared_through=last, cleared_at=now, updated=now
        )
        self.state, self.cleared_through, self.cleared_at = self.State.RESTORED, last, now
        reason = Vote.Exclusion.VOTE_SURGE if self.kind == self.Kind.SURGE else Vote.Exclusion.ANOMALOUS_VOTER
        restored = self.votes_of_voter().filter(excluded=reason).update(excluded=Vote.Exclusion.NONE)
        VoterFlagAction.objects.create(
            flag=self, action=VoterFlagAction.Action.RESTORE, user=user, votes=restored
        )
        return restored


class VoterFlagAction(models.Model):
    """Who did what to a flag, and when: the detector's flags (no user) and operators' reviews."""

    class Action(models.TextChoices):
        FLAG = "flag", "flagged by the detector"
        CONFIRM = "confirm", "confirmed"
        RESTORE = "restore", "restored"

    flag = models.ForeignKey(VoterFlag, on_delete=models.CASCADE, related_name="actions")
    action = models.CharField(max_length=8, choices=Action.choices)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True)
    votes = models.PositiveIntegerField(default=0, help_text="Votes excluded or restored by the action.")
    created = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created", "-id"]

    def __str__(self) -> str:
        return f"{self.action} {self.flag}"
