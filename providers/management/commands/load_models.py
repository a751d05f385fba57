from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from providers.services import ModelFileError, load_models, parse_models_file


class Command(BaseCommand):
    help = "Create or update models of the registry from a YAML or JSON file; all entries or none."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path, help="models file (.yaml, .yml or .json)")

    def handle(self, *args: Any, file: Path, **options: Any) -> None:
        try:
            report = load_models(parse_models_file(file))
        except ModelFileError as exc:
            raise CommandError(f"{file}: nothing loaded.\n{exc}") from exc
        self.stdout.write(
            f"{file}: {len(report.created)} created, {len(report.updated)} updated, "
            f"{len(report.unchanged)} unchanged"
        )
