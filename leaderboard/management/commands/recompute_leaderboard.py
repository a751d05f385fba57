from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from leaderboard import services


class Command(BaseCommand):
    help = "Recompute every board now, in this process, publishing those whose votes changed."

    def handle(self, *args: Any, **options: Any) -> None:
        published = services.recompute_all()
        if not published:
            self.stdout.write("Nothing to do: the votes have not changed, or a recompute is running.")
        for snapshot in published:
            self.stdout.write(
                f"{snapshot.board}: snapshot {snapshot.pk}, {snapshot.votes} votes, "
                f"{snapshot.ratings.count()} models ({snapshot.duration_ms:.0f} ms)."
            )
