"""A vendor's bot check in place of the proof-of-work: Cloudflare Turnstile, hCaptcha or reCAPTCHA.

The page's widget (the vendor's) hands the visitor a token; the battle carries it as `challenge`
(or `X-Arena-Challenge`), and the server asks the vendor's siteverify API whether it is good, through
the one httpx seam (providers/http.py). The three APIs take the same form fields (`secret`,
`response`, `remoteip`) and answer `{"success": bool, "error-codes": [...]}`; reCAPTCHA v3 adds a
`score`. A vendor that cannot be reached fails closed: no battle opens without a verified token.
"""

from __future__ import annotations

from typing import Any

import httpx
from asgiref.sync import async_to_sync
from django.conf import settings
from django.utils.translation import gettext
from rest_framework import status

from config.errors import DomainError
from providers import http

VERIFY_URLS = {
    "turnstile": "https://challenges.cloudflare.com/turnstile/v0/siteverify",
    "hcaptcha": "https://api.hcaptcha.com/siteverify",
    "recaptcha": "https://www.google.com/recaptcha/api/siteverify",
}
# The vendors' error codes for a token seen before, and for one too old (Turnstile and reCAPTCHA say
# both with one code).
USED = {"already-seen-response", "invalid-or-already-seen-response"}
EXPIRED = {"timeout-or-duplicate", "expired-input-response"}
# reCAPTCHA v3 scores each request from 0 (a bot) to 1; below this the token is refused.
RECAPTCHA_MIN_SCORE = 0.5


class CaptchaRefused(DomainError):
    status_code = status.HTTP_403_FORBIDDEN
    code = "challenge_invalid"


class CaptchaUnavailable(DomainError):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    code = "challenge_unavailable"


async def siteverify(vendor: str, token: str, address: str) -> dict[str, Any]:
    """The vendor's verdict on a token, as its siteverify API returns it."""
    url = settings.ARENA_CHALLENGE_VERIFY_URL or VERIFY_URLS[vendor]
    form = {"secret": settings.ARENA_CHALLENGE_SECRET, "response": token, "remoteip": address}
    try:
        response = await http.client().post(
            url, data=form, timeout=httpx.Timeout(settings.ARENA_CHALLENGE_VERIFY_TIMEOUT)
        )
        await response.aread()
        verdict = response.json() if response.status_code == httpx.codes.OK else None
    except (httpx.HTTPError, ValueError):
        verdict = None
    if not isinstance(verdict, dict):
        raise CaptchaUnavailable(
            gettext("The bot check could not be verified just now; try again in a moment.")
        )
    return verdict


def verify(vendor: str, token: object, address: str) -> None:
    """Refuses (403) a battle whose token the vendor does not confirm."""
    if not isinstance(token, str) or not token:
        raise CaptchaRefused(
            gettext(
                'Opening a battle needs the bot check\'s token, sent as "challenge" (or X-Arena-Challenge).'
            ),
            code="challenge_required",
        )
    verdict = async_to_sync(siteverify)(vendor, token, address)
    score = verdict.get("score")
    if verdict.get("success") is not True or (isinstance(score, int | float) and score < RECAPTCHA_MIN_SCORE):
        codes = set(verdict.get("error-codes") or [])
        if codes & USED:
            raise CaptchaRefused(
                gettext("The bot check's token has been used; check again."), code="challenge_used"
            )
        if codes & EXPIRED:
            raise CaptchaRefused(
                gettext("The bot check's token has expired or been used; check again."),
                code="challenge_expired",
            )
        raise CaptchaRefused(gettext("The bot check did not confirm this request."))
