from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from leaderboard import integrity_service


class Command(BaseCommand):
    help = "Run the integrity sweep now, in this process: duplicate prompts, anomalous voters, vote surges."

    def handle(self, *args: Any, **options: Any) -> None:
        done = integrity_service.sweep()
        if done is None:
            self.stdout.write("Nothing done: a sweep is running.")
            return
        self.stdout.write(
            f"{done.duplicate_votes} duplicate-prompt votes excluded; {done.flags} voters and model "
            f"days flagged, {done.anomalous_votes} anomalous-voter and {done.surge_votes} vote-surge "
            "votes excluded."
        )
