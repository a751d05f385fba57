from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models.signals import post_save

from arena.models import Vote


def queue_recompute(sender: type[Vote], instance: Vote, created: bool, **kwargs: Any) -> None:
    """After a vote commits, queue a recompute (the lock makes extra ones cheap no-ops)."""
    if created and settings.LEADERBOARD_RECOMPUTE_ON_VOTE:
        from leaderboard.tasks import recompute

        transaction.on_commit(recompute.delay)


def connect() -> None:
    post_save.connect(queue_recompute, sender=Vote, dispatch_uid="leaderboard.queue_recompute")
