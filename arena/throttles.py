"""Rate limits of the battle API, per client network (config.clients: a keyed hash of its prefix)."""

from __future__ import annotations

from django.conf import settings
from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle
from rest_framework.views import APIView

from config.clients import client_address, network_hash, network_of


class TurnCreateThrottle(SimpleRateThrottle):
    """Follow-up turns per client network: each calls both models again, as a new battle does.

    Counted per network, not per visitor: a script can start with a new cookie at every battle. The
    cache key holds the network's keyed hash, never the address, as the privacy page promises.
    """

    scope = "battle_turn"

    def get_rate(self) -> str:
        return settings.ARENA_TURN_RATE  # read per request, so an operator's change applies at once

    def get_cache_key(self, request: Request, view: APIView) -> str:
        network = network_hash(network_of(client_address(request)))
        return self.cache_format % {"scope": self.scope, "ident": network}
