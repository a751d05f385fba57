from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from leaderboard.dumps import import_battles
from leaderboard.rating import BattleFileError


class Command(BaseCommand):
    help = "Load battles in the public Chatbot Arena format (JSON array, JSON lines or CSV) as votes."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            report = import_battles(options["file"])
        except BattleFileError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            f"Imported {report.battles} battles; {len(report.models_created)} new models. "
            "Run recompute_leaderboard to see them on the board."
        )
