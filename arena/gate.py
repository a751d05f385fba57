"""The gate in front of a battle: who is asking, what opening a battle costs them, how many they get.

A voter is a visitor (the signed cookie's hash, empty before their first battle) seen from a
network (config/clients.py: the /24 or /48, stored only as a keyed hash).

Cost: an ALTCHA proof-of-work challenge (v1 format: find the number n <= maxNumber with
SHA-256(salt + n) == challenge), issued by `GET /api/v1/challenge/` and verified when a battle
opens. Its difficulty doubles for every ARENA_POW_VISITOR_STEP battles the visitor, and every
ARENA_POW_NETWORK_STEP battles the network, opened this hour; the difficulty is signed into the salt,
so a solved challenge that is too easy for the voter's present volume is refused. Each challenge
serves once: its signature is added to the cache until it expires. While the shared cache (Redis) is
unreachable (config/cache.py) that record would hold in one process only, so a solved challenge
could open a battle once in every process: challenges are refused then with a 503, rather than
made replayable.

Caps: battles per hour, votes per day and battles open at once, per visitor and per network. The
hourly and daily counters are cache keys per fixed window (Redis when REDIS_URL is set), raised with
`incr`, so they hold across processes; a refused or failed request gives its count back. While Redis
is unreachable they count in each process (config/cache.py): looser, never absent. Battles
open at once are counted in the database, in the transaction that opens one, under a lock.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import altcha
import orjson
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.http import HttpRequest
from django.utils import timezone
from django.utils.translation import gettext, ngettext
from rest_framework import status

from arena import captcha
from arena.models import Battle
from config.clients import client_address, network_hash, network_of
from config.errors import DomainError, TooMany, Unavailable

HOUR = 3600
DAY = 24 * HOUR
# Battles whose answers have not ended after this long are taken as abandoned, not open.
OPEN_SECONDS = 15 * 60


@dataclass(frozen=True)
class Voter:
    visitor: str  # arena.services.visitor_hash of the cookie; "" before the first battle
    network: str  # config.clients.network_hash of the client's network


def voter_of(request: HttpRequest, visitor: str | None) -> Voter:
    return Voter(visitor=visitor or "", network=network_hash(network_of(client_address(request))))


# --- counters ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cap:
    what: str  # "battles", "votes"
    who: str  # "visitor", "network"
    ident: str
    limit: int
    seconds: int  # the window: HOUR or DAY, aligned on UTC

    def key(self, now: float) -> str:
        start = int(now) - int(now) % self.seconds
        return f"gate:{self.what}:{self.who}:{self.ident}:{start}"

    def refusal(self, now: float) -> TooMany:
        left = self.seconds - int(now) % self.seconds
        back = timezone.now() + timedelta(seconds=left)
        return TooMany(
            _limit_message(self.what, self.seconds, self.who)
            % {"limit": self.limit, "wait": _duration(left), "time": f"{back:%H:%M}"},
            retry_after=left,
            code=f"{self.what}_limit",
        )


def _limit_message(what: str, seconds: int, who: str) -> str:
    # Whole sentences, one per cap, so that each language can word them its own way.
    you = who == "visitor"
    if what == "votes":
        if you:
            return gettext(
                "You have reached the limit of %(limit)s votes today for you; "
                "come back in %(wait)s (at %(time)s UTC)."
            )
        return gettext(
            "You have reached the limit of %(limit)s votes today for your network; "
            "come back in %(wait)s (at %(time)s UTC)."
        )
    if seconds == HOUR:
        if you:
            return gettext(
                "You have reached the limit of %(limit)s battles this hour for you; "
                "come back in %(wait)s (at %(time)s UTC)."
            )
        return gettext(
            "You have reached the limit of %(limit)s battles this hour for your network; "
            "come back in %(wait)s (at %(time)s UTC)."
        )
    if you:
        return gettext(
            "You have reached the limit of %(limit)s battles today for you; "
            "come back in %(wait)s (at %(time)s UTC)."
        )
    return gettext(
        "You have reached the limit of %(limit)s battles today for your network; "
        "come back in %(wait)s (at %(time)s UTC)."
    )


def _duration(seconds: int) -> str:
    if seconds < 90:
        return ngettext("%(n)s second", "%(n)s seconds", seconds) % {"n": seconds}
    if seconds < 90 * 60:
        minutes = round(seconds / 60)
        return ngettext("%(n)s minute", "%(n)s minutes", minutes) % {"n": minutes}
    hours = round(seconds / 3600)
    return ngettext("%(n)s hour", "%(n)s hours", hours) % {"n": hours}


def _count(cap: Cap, now: float) -> int:
    return cache.get(cap.key(now), 0)


@contextmanager
def spending(caps: list[Cap]) -> Iterator[None]:
    """Counts one against each cap for the block; refuses (429) if one is over, and gives the
    counts back if the block fails, so only what succeeded is counted."""
    now = time.time()
    taken: list[str] = []
    try:
        for cap in caps:
            key = cap.key(now)
            cache.add(key, 0, cap.seconds + 60)
            taken.append(key)
            if cache.incr(key) > cap.limit:
                raise cap.refusal(now)
        yield
    except BaseException:
        for key in taken:
            try:
                cache.decr(key)
            except ValueError:  # expired meanwhile: nothing to give back
                pass
        raise


def battle_caps(voter: Voter) -> list[Cap]:
    network = Cap("battles", "network", voter.network, settings.ARENA_BATTLES_PER_NETWORK_HOUR, HOUR)
    if not voter.visitor:
        return [network]
    return [Cap("battles", "visitor", voter.visitor, settings.ARENA_BATTLES_PER_VISITOR_HOUR, HOUR), network]


def vote_caps(voter: Voter) -> list[Cap]:
    return [
        Cap("votes", "visitor", voter.visitor, settings.ARENA_VOTES_PER_VISITOR_DAY, DAY),
        Cap("votes", "network", voter.network, settings.ARENA_VOTES_PER_NETWORK_DAY, DAY),
    ]


def check_open_battles(voter: Voter) -> None:
    """Refuses a battle while the voter already has as many streaming as they may have at once.

    Call it in the transaction that creates the battle: the count and the insert are one step, so
    requests sent at once cannot all pass a count that none of them has raised yet.
    """
    _lock_open_battles(voter)
    since = timezone.now() - timedelta(seconds=OPEN_SECONDS)
    answering = [Battle.State.PENDING, Battle.State.STREAMING]
    open_ = Battle.objects.filter(state__in=answering, created__gte=since)
    limits = [("network", {"network_hash": voter.network}, settings.ARENA_OPEN_BATTLES_PER_NETWORK)]
    if voter.visitor:
        mine = {"visitor_hash": voter.visitor}
        limits.insert(0, ("visitor", mine, settings.ARENA_OPEN_BATTLES_PER_VISITOR))
    for who, match, limit in limits:
        if open_.filter(**match).count() >= limit:
            if who == "visitor":
                message = gettext(
                    "You have %(limit)s battles still answering, the most at once; "
                    "come back when one has finished (a few seconds)."
                )
            else:
                message = gettext(
                    "Your network has %(limit)s battles still answering, the most at once; "
                    "come back when one has finished (a few seconds)."
                )
            raise TooMany(
                message % {"limit": limit},
                retry_after=5,
                code="open_battles_limit",
            )


def _lock_open_battles(voter: Voter) -> None:
    """Holds the visitor's and the network's lock until the transaction ends, taken in that order so
    that two requests never wait on each other."""
    # In the database, not the cache: it holds wherever the database is shared, with or without Redis.
    if connection.vendor != "postgresql":
        return  # SQLite's IMMEDIATE transactions (config/settings.py) already hold its one write lock
    with connection.cursor() as cursor:
        for who, ident in (("visitor", voter.visitor), ("network", voter.network)):
            if ident:
                digest = hashlib.blake2b(f"arena.open-battles:{who}:{ident}".encode(), digest_size=8)
                key = int.from_bytes(digest.digest(), "big", signed=True)
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [key])


# --- proof of work -------------------------------------------------------------------------------


class ChallengeError(DomainError):
    status_code = status.HTTP_403_FORBIDDEN
    code = "challenge_invalid"


class ChallengeUnavailable(Unavailable):
    code = "challenge_unavailable"


def difficulty(voter: Voter) -> int:
    """The challenge's maxNumber for this voter now: ARENA_POW_BASE, doubled with their volume."""
    now = time.time()
    caps = battle_caps(voter)
    volume = {cap.who: _count(cap, now) for cap in caps}
    exponent = volume.get("visitor", 0) / settings.ARENA_POW_VISITOR_STEP + (
        volume["network"] / settings.ARENA_POW_NETWORK_STEP
    )
    return int(min(settings.ARENA_POW_MAX, settings.ARENA_POW_BASE * 2**exponent))


def issue(voter: Voter) -> dict[str, Any]:
    """A new challenge in ALTCHA's format (algorithm, challenge, maxNumber, salt, signature)."""
    level = difficulty(voter)
    challenge = altcha.create_challenge_v1(
        altcha.ChallengeOptionsV1(
            max_number=level,
            hmac_key=settings.ARENA_CHALLENGE_HMAC_KEY,
            expires=timezone.now() + timedelta(seconds=settings.ARENA_CHALLENGE_SECONDS),
            params={"difficulty": str(level)},
        )
    )
    return challenge.to_dict()


def _payload(encoded: object) -> dict[str, Any]:
    if not isinstance(encoded, str) or not encoded:
        raise ChallengeError(
            gettext(
                "Opening a battle needs a solved challenge: GET /api/v1/challenge/, solve it, and send the "
                'payload as "challenge" (or the X-Arena-Challenge header).'
            ),
            code="challenge_required",
        )
    try:
        payload = orjson.loads(base64.b64decode(encoded, validate=True))
    except (binascii.Error, ValueError):
        payload = None
    fields = ("algorithm", "challenge", "number", "salt", "signature")
    if (
        not isinstance(payload, dict)
        or not all(isinstance(payload.get(f), str) for f in fields if f != "number")
        or not isinstance(payload.get("number"), int)
    ):
        raise ChallengeError(gettext("The challenge payload is not a solved challenge of this site."))
    return payload


def verify(encoded: object, voter: Voter) -> None:
    """Accepts a solved challenge of this site, once, before it expires, as hard as the voter's
    volume asks (within one doubling: others on the network may have opened battles meanwhile)."""
    payload = _payload(encoded)
    valid, _ = altcha.verify_solution_v1(payload, settings.ARENA_CHALLENGE_HMAC_KEY, check_expires=False)
    params = altcha.extract_params_v1(payload)
    if not valid or payload["algorithm"] != "SHA-256":
        raise ChallengeError(gettext("The challenge payload is not a solved challenge of this site."))
    try:
        expires = int(params["expires"][0])
        level = int(params["difficulty"][0])
    except (KeyError, ValueError):
        raise ChallengeError(
            gettext("The challenge payload is not a solved challenge of this site.")
        ) from None
    left = expires - int(time.time())
    if left <= 0:
        raise ChallengeError(gettext("The challenge has expired; get a new one."), code="challenge_expired")
    if level * 2 < difficulty(voter):
        raise ChallengeError(
            gettext("The challenge is easier than your recent activity asks; get a new one."),
            code="challenge_too_easy",
        )
    fresh = cache.add(f"gate:challenge-used:{payload['signature']}", 1, left + 1)
    if getattr(cache, "degraded", False):  # recorded in this process only: it could serve again elsewhere
        raise ChallengeUnavailable(
            gettext(
                "Battles cannot open for a moment: the service that checks challenges is unavailable. "
                "Try again in a minute."
            )
        )
    if not fresh:
        raise ChallengeError(gettext("This challenge has been used; get a new one."), code="challenge_used")


def require_challenge(request: HttpRequest, data: dict[str, Any], voter: Voter) -> None:
    """The gate's check before a battle opens, as ARENA_CHALLENGE says."""
    token = data.get("challenge") or request.headers.get("X-Arena-Challenge")
    if settings.ARENA_CHALLENGE == "altcha":
        verify(token, voter)
    elif settings.ARENA_CHALLENGE in captcha.VERIFY_URLS:
        captcha.verify(settings.ARENA_CHALLENGE, token, client_address(request))
