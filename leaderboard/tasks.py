from __future__ import annotations

from celery import shared_task

from leaderboard import services


@shared_task(name="leaderboard.tasks.recompute")
def recompute() -> int | None:
    """Publish a fresh snapshot if the counted votes changed; returns its id."""
    snapshot = services.recompute()
    return snapshot.pk if snapshot else None
