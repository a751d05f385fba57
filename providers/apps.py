from __future__ import annotations

from django.apps import AppConfig
from django.core import checks


class ProvidersConfig(AppConfig):
    name = "providers"
    verbose_name = "Providers and model registry"

    def ready(self) -> None:
        from providers import moderation  # its models must be loaded first

        checks.register(moderation.check_rules)
