"""Rate limits of the battle API, per client address (config.clients.client_address)."""

from __future__ import annotations

from django.conf import settings
from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle
from rest_framework.views import APIView

from config.clients import client_address


class TurnCreateThrottle(SimpleRateThrottle):
    """Follow-up turns per client address: each calls both models again, as a new battle does.

    Counted per address, not per visitor: a script can start with a new cookie at every battle.
    """

    scope = "battle_turn"

    def get_rate(self) -> str:
        return settings.ARENA_TURN_RATE  # read per request, so an operator's change applies at once

    def get_cache_key(self, request: Request, view: APIView) -> str:
        return self.cache_format % {"scope": self.scope, "ident": client_address(request)}
