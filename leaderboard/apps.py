from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.db import transaction


class LeaderboardConfig(AppConfig):
    name = "leaderboard"

    def ready(self) -> None:
        # The leaderboard reads the arena, never the other way: the arena announces each vote.
        from arena.signals import vote_recorded

        vote_recorded.connect(recompute_after_vote, dispatch_uid="leaderboard.recompute_after_vote")


def recompute_after_vote(sender: Any, **kwargs: Any) -> None:
    """Once the vote is committed, queue a recompute (its lock makes extra ones cheap no-ops)."""
    if settings.LEADERBOARD_RECOMPUTE_ON_VOTE:
        from leaderboard.tasks import queue_recompute

        transaction.on_commit(queue_recompute)
