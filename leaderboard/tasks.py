from __future__ import annotations

import logging

from celery import shared_task

from leaderboard import integrity_service, services

logger = logging.getLogger("leaderboard.tasks")


@shared_task(name="leaderboard.tasks.recompute")
def recompute() -> list[int]:
    """Publish a fresh snapshot of each board whose counted votes changed; returns their ids."""
    published = [snapshot.pk for snapshot in services.recompute_all()]
    logger.info("Recompute published %d snapshot(s)", len(published), extra={"snapshots": published})
    return published


def queue_recompute() -> None:
    """Queue a recompute once a vote is committed. The vote stands whatever happens here: a broker
    that cannot take the task is logged, and the periodic recompute counts the vote instead."""
    try:
        recompute.delay()
    except Exception:
        logger.exception("Could not queue a recompute after a vote; the next periodic one counts it")


@shared_task(name="leaderboard.tasks.score_voters")
def score_voters() -> dict[str, int] | None:
    """Exclude duplicate-prompt votes and flag anomalous voters (leaderboard.integrity_service)."""
    done = integrity_service.sweep()
    return None if done is None else vars(done)
