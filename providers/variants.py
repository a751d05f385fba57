"""Private variants: submitted, probed, tested in anonymous battles, then published or retired.

The fair-testing rules (config/settings.py, "Provider testing rules") are enforced here, in
`LLM.objects.drawable()` (weight and battle budget), `LLM.objects.disclosed()` (disclosure) and by
the leaderboard's recompute (fresh votes). Nothing here is ever deleted: a retired variant keeps its
row, votes and result.
"""

from __future__ import annotations

import logging
import re
import socket
import unicodedata
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
from asgiref.sync import async_to_sync
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.translation import gettext

from config.errors import Conflict, DomainError, Unavailable
from providers import crypto
from providers.base import CallSpec, Message, UpstreamError
from providers.http import AiohttpTransport, is_public
from providers.models import LLM, Organization
from providers.registry import backend_for
from providers.streaming import CUT_OFF, SLOW_START, TOO_LONG, UNREACHABLE, UNREADABLE
from providers.text import drawless_characters, name_key

logger = logging.getLogger(__name__)

CODENAME = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,39}\Z")
PRIVATE_NAME_PREFIX = "private/"
PROBE_MESSAGES: list[Message] = [{"role": "user", "content": "Reply with the single word OK."}]
PROBE_MAX_TOKENS = 8
# The longest upstream detail a provider reads back: enough to see the endpoint's own error.
PROBE_DETAIL_CHARS = 300


class ProbeFailed(DomainError):
    code = "probe_failed"


@dataclass(frozen=True)
class Endpoint:
    """What the arena needs to call a variant; the key in clear only on its way to being encrypted."""

    backend: str
    base_url: str
    model: str
    api_key: str
    temperature: float
    max_tokens: int


# --- submitting ----------------------------------------------------------------------------------


def variant_submit(*, organization: Organization, codename: str, endpoint: Endpoint, notes: str = "") -> LLM:
    """Register a private variant once its endpoint answered a probe.

    The rules are checked before the probe, so a refused submission costs no outbound call, and
    again under the organisation's lock after it, since the probe holds no transaction open.
    """
    _check_slots(organization)
    _check_codename_free(organization, codename)
    if endpoint.api_key and not crypto.available():
        raise Unavailable(
            gettext("This arena cannot store API keys yet: its operator has not set FIELD_ENCRYPTION_KEY."),
            code="key_storage_unavailable",
        )
    check_address(endpoint.base_url)
    probe(endpoint)
    now = timezone.now()
    try:
        with transaction.atomic():
            # Serialises submissions of one organisation, so two at once cannot both take the
            # last slot (SQLite's IMMEDIATE transactions serialise all writers anyway).
            Organization.objects.select_for_update().filter(pk=organization.pk).first()
            _check_slots(organization)
            variant = LLM.objects.create(
                name=f"{PRIVATE_NAME_PREFIX}{organization.slug}/{codename}",
                organization=organization.name,
                owner=organization,
                codename=codename,
                notes=notes,
                backend=endpoint.backend,
                base_url=endpoint.base_url,
                model=endpoint.model,
                api_key_encrypted=crypto.encrypt(endpoint.api_key) if endpoint.api_key else "",
                temperature=endpoint.temperature,
                max_tokens=endpoint.max_tokens,
                weight=settings.PROVIDER_VARIANT_WEIGHT,
                visibility=LLM.Visibility.PRIVATE,
                state=LLM.State.ACTIVE,
                testing_started_at=now,
            )
    except IntegrityError as exc:
        raise _codename_taken(codename) from exc
    logger.info(
        "variant submitted: organization=%s id=%s codename=%s", organization.slug, variant.pk, codename
    )
    return variant


def _check_slots(organization: Organization) -> None:
    limit = settings.PROVIDER_MAX_VARIANTS_UNDER_TEST
    if LLM.objects.under_test().of_organization(organization).count() >= limit:
        raise Conflict(
            gettext(
                "Rule: at most %(limit)s private variants under test at once per organisation. "
                "Publish or retire one of yours before submitting another."
            )
            % {"limit": limit},
            code="too_many_variants",
        )


def _check_codename_free(organization: Organization, codename: str) -> None:
    if LLM.objects.of_organization(organization).filter(codename=codename).exists():
        raise _codename_taken(codename)


def _codename_taken(codename: str) -> Conflict:
    return Conflict(
        gettext(
            "The codename %(codename)s is already used by one of your variants (retired ones keep theirs)."
        )
        % {"codename": repr(codename)},
        code="codename_taken",
    )


def check_address(base_url: str) -> None:
    """Refuse addresses inside the arena's own network, unless PROVIDER_ALLOW_PRIVATE_URLS.

    Resolved here, and every connection of a call (the probe's, each battle's) is refused again
    unless its address is public (providers.http.public_socket), so a host that changes its
    answer later (DNS rebinding) is refused then.
    """
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DomainError(
            gettext("base_url must be an http:// or https:// address."), code="invalid_base_url"
        )
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise DomainError(gettext("base_url has an invalid port."), code="invalid_base_url") from None
    if parts.username or parts.password:
        raise DomainError(
            gettext("base_url must not carry credentials: send the key as api_key."), code="invalid_base_url"
        )
    if settings.PROVIDER_ALLOW_PRIVATE_URLS:
        return
    if parts.scheme != "https":
        raise DomainError(
            gettext("base_url must be an https:// address: the key travels with each call."),
            code="insecure_base_url",
        )
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)}
    except (OSError, UnicodeError, ValueError) as exc:
        raise ProbeFailed(f"The host of base_url could not be resolved: {exc}.") from None
    for address in addresses:
        if not is_public(address):
            raise DomainError(
                gettext("base_url resolves to %(address)s, which is not a public address.")
                % {"address": address},
                code="private_base_url",
            )


def probe(endpoint: Endpoint) -> None:
    """Ask the endpoint for a few tokens through its adapter; ProbeFailed says what went wrong."""
    timeout = settings.PROVIDER_PROBE_TIMEOUT
    spec = CallSpec(
        backend=endpoint.backend,
        base_url=endpoint.base_url,
        model=endpoint.model,
        api_key=endpoint.api_key,
        temperature=endpoint.temperature,
        max_tokens=PROBE_MAX_TOKENS,
        connect_timeout=min(5.0, timeout),
        first_token_timeout=timeout,
        total_timeout=timeout,
        options={"retry_backoff": 0.1},
        public_only=not settings.PROVIDER_ALLOW_PRIVATE_URLS,
    )
    try:
        text, finish_reason = async_to_sync(_probe)(spec)
    except UpstreamError as exc:
        raise ProbeFailed(_probe_problem(exc, endpoint)) from None
    except Exception as exc:  # anything else a strange endpoint provokes is still the endpoint's problem
        logger.warning("probe of a submitted endpoint failed unexpectedly", exc_info=exc)
        raise ProbeFailed(f"The endpoint could not be probed ({type(exc).__name__}).") from None
    if not text and finish_reason != "length":
        raise ProbeFailed(
            "The endpoint answered, but not in the expected wire format: its stream carried no text "
            f"(backend {endpoint.backend})."
        )


async def _probe(spec: CallSpec) -> tuple[str, str]:
    # A client of its own: the probe may run on a loop made just for it (a sync view under WSGI),
    # and closing the client with the loop leaves no pooled connection behind. The arena's own
    # transport, so that the probe connects only where a battle's call would.
    transport = AiohttpTransport()
    async with httpx.AsyncClient(transport=transport, timeout=None, follow_redirects=False) as client:
        parts: list[str] = []
        finish_reason = ""
        async for chunk in backend_for(spec.backend).stream(spec, PROBE_MESSAGES, client):
            if chunk.kind == "delta":
                parts.append(chunk.text)
            else:
                finish_reason = chunk.finish_reason
        return "".join(parts), finish_reason


def _probe_problem(exc: UpstreamError, endpoint: Endpoint) -> str:
    detail = exc.detail
    if endpoint.api_key:
        detail = detail.replace(endpoint.api_key, "[api key]")
    detail = detail[:PROBE_DETAIL_CHARS]
    if exc.detail.startswith("no adapter for backend"):
        return f"The backend {endpoint.backend!r} cannot be called by this arena yet."
    if exc.status is not None:
        return f"The endpoint answered the probe with HTTP {exc.status}: {detail}"
    if exc.public == UNREACHABLE:
        return f"The endpoint could not be reached: {_connection_problem(endpoint.base_url)}."
    if exc.public in (SLOW_START, TOO_LONG):
        return f"The endpoint did not answer the probe within {settings.PROVIDER_PROBE_TIMEOUT:g} s: {detail}"
    if exc.public in (UNREADABLE, CUT_OFF):
        return f"The endpoint's answer is not in the expected wire format ({endpoint.backend}): {detail}"
    return f"The endpoint failed the probe: {detail}"


def _connection_problem(base_url: str) -> str:
    """Why a connection to the endpoint fails, in the words of the socket layer (after a failed probe)."""
    parts = urlsplit(base_url)
    host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
    try:
        # Resolved once and connected to as resolved: a second lookup could answer otherwise.
        address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][4][:2]
    except socket.gaierror:
        return f"the host {host} could not be resolved"
    except (OSError, UnicodeError) as exc:
        return f"{host}:{port}: {exc}"
    if not settings.PROVIDER_ALLOW_PRIVATE_URLS and not is_public(address[0]):
        return f"the host {host} resolves to {address[0]}, which is not a public address"
    try:
        with socket.create_connection(address, timeout=min(5.0, settings.PROVIDER_PROBE_TIMEOUT)):
            return f"{host}:{port} accepts connections now, but the probe could not connect"
    except ConnectionRefusedError:
        return f"connection refused by {host}:{port}"
    except TimeoutError:
        return f"no answer from {host}:{port} (connection timed out)"
    except (OSError, UnicodeError) as exc:
        return f"{host}:{port}: {exc}"


# --- publishing and retiring ---------------------------------------------------------------------


def variant_publish(*, variant: LLM, name: str | None = None) -> LLM:
    """Make a variant public under `name` (default: its codename); its testing ends now.

    The name is kept in its NFKC form (fullwidth letters as plain ones), and refused when it hides
    characters or can be mistaken for another model's name or label.
    """
    name = public_name(variant.codename if name is None else name)
    if variant.published_at is not None:
        raise Conflict(gettext("This variant is already published."), code="already_published")
    if variant.retired_at is not None:
        raise Conflict(gettext("A retired variant cannot be published; submit it again."), code="retired")
    others = LLM.objects.exclude(pk=variant.pk)
    if others.filter(name=name).exists():
        raise _name_taken(name)
    lookalike = others.named_like(name, labels=True)
    if lookalike is not None:
        raise _looks_like(name, lookalike)
    now = timezone.now()
    try:
        with transaction.atomic():
            claimed = LLM.objects.filter(
                pk=variant.pk, published_at__isnull=True, retired_at__isnull=True
            ).update(
                name=name,
                visibility=LLM.Visibility.PUBLIC,
                published_at=now,
                testing_ended_at=Coalesce(F("testing_ended_at"), now),
            )
    except IntegrityError as exc:
        raise _name_taken(name) from exc
    if not claimed:
        raise Conflict(gettext("This variant was published or retired meanwhile."), code="already_published")
    variant.refresh_from_db()
    logger.info("variant published: organization_id=%s id=%s name=%s", variant.owner_id, variant.pk, name)
    return variant


def public_name(name: str) -> str:
    """`name` as a model's public name (NFKC), or DomainError saying what is wrong with it."""
    hidden = drawless_characters(name)
    if hidden:
        raise DomainError(
            gettext("name contains characters that draw nothing (%(characters)s); remove them.")
            % {"characters": ", ".join(hidden)},
            code="invalid_name",
        )
    name = unicodedata.normalize("NFKC", name)
    if not name.strip() or name != name.strip():
        raise DomainError(gettext("name must not be empty or start or end with spaces."), code="invalid_name")
    limit = LLM._meta.get_field("name").max_length or 0
    if len(name) > limit:  # NFKC may lengthen a name ("㎒" is "MHz")
        raise DomainError(
            gettext("name is longer than %(limit)s characters.") % {"limit": limit}, code="invalid_name"
        )
    if name_key(name).startswith(name_key(PRIVATE_NAME_PREFIX)):
        raise DomainError(
            gettext("Public names cannot start with %(prefix)s.") % {"prefix": repr(PRIVATE_NAME_PREFIX)},
            code="invalid_name",
        )
    return name


def _looks_like(name: str, other: LLM) -> DomainError:
    # A model that is not public is not named to a provider.
    shown = ""
    if other.visibility == LLM.Visibility.PUBLIC:
        seen = other.name if name_key(other.name) == name_key(name) else other.display_name
        shown = f" ({seen!r})"
    return DomainError(
        gettext(
            "The name %(name)s can be mistaken for the name of another model%(shown)s: choose one that "
            "reads differently, not only in case, separators or lookalike letters."
        )
        % {"name": repr(name), "shown": shown},
        code="confusable_name",
    )


def _name_taken(name: str) -> Conflict:
    return Conflict(
        gettext("The name %(name)s is already used by another model; choose another.") % {"name": repr(name)},
        code="name_taken",
    )


def variant_retire(*, variant: LLM) -> LLM:
    """Take a variant out of the draw for good; its row, votes and results stay."""
    now = timezone.now()
    claimed = LLM.objects.filter(pk=variant.pk, retired_at__isnull=True).update(
        state=LLM.State.RETIRED, retired_at=now, testing_ended_at=Coalesce(F("testing_ended_at"), now)
    )
    if not claimed:
        raise Conflict("This variant is already retired.", code="already_retired")
    variant.refresh_from_db()
    logger.info("variant retired: organization_id=%s id=%s", variant.owner_id, variant.pk)
    return variant


# --- counting votes --------------------------------------------------------------------------------


def record_test_vote(*, llm_ids: list[int]) -> None:
    """Count an anonymous vote towards the budget of the private variants among `llm_ids`.

    Called in the vote's own transaction (arena.services.after_vote), so the count
    never drifts from the votes. At the budget the variant leaves the draw (drawable()) and its
    testing ends.
    """
    private = LLM.objects.filter(pk__in=llm_ids, visibility=LLM.Visibility.PRIVATE, owner__isnull=False)
    if private.update(test_votes=F("test_votes") + 1):
        private.filter(
            test_votes__gte=settings.PROVIDER_VARIANT_BUDGET, testing_ended_at__isnull=True
        ).update(testing_ended_at=timezone.now())
