from __future__ import annotations

from celery import shared_task

from leaderboard import services


@shared_task(name="leaderboard.tasks.recompute")
def recompute() -> list[int]:
    """Publish a fresh snapshot of each board whose counted votes changed; returns their ids."""
    return [snapshot.pk for snapshot in services.recompute_all()]
