from __future__ import annotations

from celery import shared_task

from leaderboard import integrity_service, services


@shared_task(name="leaderboard.tasks.recompute")
def recompute() -> list[int]:
    """Publish a fresh snapshot of each board whose counted votes changed; returns their ids."""
    return [snapshot.pk for snapshot in services.recompute_all()]


@shared_task(name="leaderboard.tasks.score_voters")
def score_voters() -> dict[str, int] | None:
    """Exclude duplicate-prompt votes and flag anomalous voters (leaderboard.integrity_service)."""
    done = integrity_service.sweep()
    return None if done is None else vars(done)
