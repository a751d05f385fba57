from __future__ import annotations

from django.apps import AppConfig


class LeaderboardConfig(AppConfig):
    name = "leaderboard"

    def ready(self) -> None:
        # leaderboard reads arena, never the other way: it listens for votes instead of being called.
        from leaderboard import signals

        signals.connect()
