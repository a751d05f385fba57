from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models.signals import post_save

from arena.models import Battle, Vote
from providers.variants import record_test_vote


def queue_recompute(sender: type[Vote], instance: Vote, created: bool, **kwargs: Any) -> None:
    """After a vote commits, queue a recompute (the lock makes extra ones cheap no-ops)."""
    if created and settings.LEADERBOARD_RECOMPUTE_ON_VOTE:
        from leaderboard.tasks import recompute

        transaction.on_commit(recompute.delay)


def count_test_vote(sender: type[Vote], instance: Vote, created: bool, **kwargs: Any) -> None:
    """Count an anonymous vote towards the battle budget of a private variant in the battle.

    Runs in the vote's transaction, so the count on the LLM row never drifts from the votes.
    """
    if created and instance.battle.mode == Battle.Mode.ANONYMOUS:
        record_test_vote(llm_ids=[instance.battle.model_a_id, instance.battle.model_b_id])


def connect() -> None:
    post_save.connect(queue_recompute, sender=Vote, dispatch_uid="leaderboard.queue_recompute")
    post_save.connect(count_test_vote, sender=Vote, dispatch_uid="leaderboard.count_test_vote")
