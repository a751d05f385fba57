from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from leaderboard import services


class Command(BaseCommand):
    help = "Recompute the leaderboard now, in this process, and publish a snapshot if votes changed."

    def handle(self, *args: Any, **options: Any) -> None:
        snapshot = services.recompute()
        if snapshot is None:
            self.stdout.write("Nothing to do: the votes have not changed, or a recompute is running.")
            return
        self.stdout.write(
            f"Snapshot {snapshot.pk}: {snapshot.votes} votes, {snapshot.ratings.count()} models "
            f"({snapshot.duration_ms:.0f} ms)."
        )
