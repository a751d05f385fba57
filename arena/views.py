from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any

import orjson
from csp.decorators import csp_update
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from arena import api_schema, gate, services, streaming, visitors
from arena.models import Battle
from arena.throttles import TurnCreateThrottle
from config.errors import DomainError, error_body
from providers.models import LLM

# A visitor is known by a signed cookie of their own holding a random token, not by a Django session,
# which would cost a database write on every new visitor's first battle. Sessions serve the admin's logins.
VISITOR_COOKIE = "arena_visitor"
_VISITOR_SALT = "arena.visitor"


def visitor_token(request: HttpRequest) -> str | None:
    """The token of the visitor's cookie, if it is one this site signed and it has not expired."""
    return request.get_signed_cookie(
        VISITOR_COOKIE, default=None, salt=_VISITOR_SALT, max_age=settings.SESSION_COOKIE_AGE
    )


def visitor(request: HttpRequest) -> str | None:
    """The visitor's hash (what battles are stored under), or None for one without a cookie."""
    token = visitor_token(request)
    return services.visitor_hash(token) if token else None


def remember_visitor(response: HttpResponse, token: str) -> None:
    """(Re)sets the visitor's cookie: each battle opened keeps it for another SESSION_COOKIE_AGE."""
    response.set_signed_cookie(
        VISITOR_COOKIE,
        token,
        salt=_VISITOR_SALT,
        max_age=settings.SESSION_COOKIE_AGE,
        secure=settings.SESSION_COOKIE_SECURE,
        httponly=True,
        samesite=settings.SESSION_COOKIE_SAMESITE,
    )


class ModelOutputSerializer(serializers.ModelSerializer):
    label = serializers.CharField()
    demo = serializers.BooleanField(source="is_demo")

    class Meta:
        model = LLM
        fields = ["name", "label", "organization", "license", "demo"]

    def to_representation(self, instance: LLM) -> dict[str, Any]:
        if instance.visibility == LLM.Visibility.PRIVATE:
            return revealed(instance)
        return super().to_representation(instance)


def revealed(llm: LLM) -> dict[str, Any]:
    """What a visitor learns of a model once names are shown: ModelOutputSerializer's fields, built
    directly on the battle paths rather than by the serializer, which is slow to set up per model."""
    if llm.visibility == LLM.Visibility.PRIVATE:
        # A provider's unreleased variant stays anonymous even after the vote: it is seen only by
        # its organisation until published (provider testing rules).
        return {
            "name": "",
            "label": "An unreleased model under test",
            "organization": "",
            "license": "",
            "demo": False,
        }
    return {
        "name": llm.name,
        "label": llm.label,
        "organization": llm.organization,
        "license": llm.license,
        "demo": llm.is_demo,
    }


def battle_models(battle: Battle) -> dict[str, Any]:
    if not battle.names_visible:
        return {"model_a": None, "model_b": None}
    return {"model_a": revealed(battle.model_a), "model_b": revealed(battle.model_b)}


class ChallengeApi(APIView):
    """A proof-of-work challenge to solve before opening a battle (arena/gate.py); 204 when none is
    asked; the vendor and its widget's site key when a vendor's bot check is (arena/captcha.py)."""

    @api_schema.challenge
    def get(self, request: Request) -> Response:
        if settings.ARENA_CHALLENGE == "off":
            return Response(status=status.HTTP_204_NO_CONTENT)
        if settings.ARENA_CHALLENGE != "altcha":
            return Response(
                {"vendor": settings.ARENA_CHALLENGE, "site_key": settings.ARENA_CHALLENGE_SITE_KEY}
            )
        response = Response(gate.issue(gate.voter_of(request, visitor(request))))
        response["Cache-Control"] = "no-store"
        return response


class BattleCreateApi(APIView):
    class InputSerializer(serializers.Serializer):
        prompt = serializers.CharField(trim_whitespace=False, allow_blank=True)
        mode = serializers.ChoiceField(choices=Battle.Mode.choices, default=Battle.Mode.ANONYMOUS)
        model_a = serializers.CharField(required=False)
        model_b = serializers.CharField(required=False)

    @api_schema.battle_create
    def post(self, request: Request) -> Response:
        visitors.require_consent(visitor=visitor(request))
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        token = visitor_token(request) or secrets.token_urlsafe(32)
        voter = gate.voter_of(request, services.visitor_hash(token))
        gate.require_challenge(request, request.data, voter)
        with gate.spending(gate.battle_caps(voter)):
            battle = services.battle_start(
                visitor=voter.visitor, network=voter.network, **data.validated_data
            )
        body = {"id": str(battle.id), "mode": battle.mode, "state": battle.state, **battle_models(battle)}
        response = Response(body, status=status.HTTP_201_CREATED)
        remember_visitor(response, token)
        return response


class BattleDetailApi(APIView):
    @api_schema.battle_detail
    def get(self, request: Request, battle_id: str) -> Response:
        battle = services.battle_of_visitor(battle_id=battle_id, visitor=visitor(request))
        turns = []
        for turn in battle.turns.prefetch_related("answers"):
            answers = {
                a.side: {"text": a.text, "status": a.status, "finish_reason": a.public_finish_reason}
                for a in turn.answers.all()
            }
            turns.append({"index": turn.index, "prompt": turn.prompt, "answers": answers})
        vote = battle.votes.first()
        return Response(
            {
                "id": str(battle.id),
                "mode": battle.mode,
                "state": battle.state,
                "turns": turns,
                "vote": {"winner": vote.winner} if vote else None,
                **battle_models(battle),
            }
        )


class BattleTurnCreateApi(APIView):
    throttle_classes = [TurnCreateThrottle]

    class InputSerializer(serializers.Serializer):
        prompt = serializers.CharField(trim_whitespace=False, allow_blank=True)

    @api_schema.battle_turn
    def post(self, request: Request, battle_id: str) -> Response:
        battle = services.battle_of_visitor(battle_id=battle_id, visitor=visitor(request))
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        turn = services.battle_continue(battle=battle, **data.validated_data)
        return Response({"index": turn.index, "state": battle.state}, status=status.HTTP_201_CREATED)


class BattleVoteApi(APIView):
    class InputSerializer(serializers.Serializer):
        # Validated by the service, so the message names the accepted values.
        winner = serializers.JSONField()

    @api_schema.battle_vote
    def post(self, request: Request, battle_id: str) -> Response:
        battle = services.battle_of_visitor(battle_id=battle_id, visitor=visitor(request))
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        with gate.spending(gate.vote_caps(gate.voter_of(request, battle.visitor_hash))):
            vote = services.battle_vote(battle=battle, **data.validated_data)
        return Response({"winner": vote.winner, **battle_models(battle)})


class ModelListApi(APIView):
    """Models a visitor may pick in named mode: public ones only, never an address or a key."""

    class OutputSerializer(ModelOutputSerializer):
        class Meta(ModelOutputSerializer.Meta):
            fields = [*ModelOutputSerializer.Meta.fields, "backend", "temperature", "max_tokens"]

    @extend_schema(
        operation_id="models_list",
        summary="The models a visitor may pick",
        description="Models a visitor may pick in named mode: public ones in service, never an "
        "address or a key.",
        responses=OpenApiResponse(OutputSerializer(many=True), description="The models."),
    )
    def get(self, request: Request) -> Response:
        return Response(self.OutputSerializer(LLM.objects.public().active(), many=True).data)


def _sse(event: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(event) + b"\n\n"


@api_schema.battle_stream
@require_GET
async def battle_stream(request: HttpRequest, battle_id: str) -> HttpResponse:
    """Both answers of the latest turn as one server-sent event stream."""
    try:
        # In a pool thread that gives its connection back at once: the response streams for
        # minutes, and must not hold a database connection all that time.
        plan = await streaming.run_in_db(streaming.plan_stream)(battle_id=battle_id, visitor=visitor(request))
    except DomainError as exc:
        return JsonResponse(error_body(exc.message, exc.code), status=exc.status_code)

    batches = streaming.stream_events(plan)  # the upstream calls start here, before the headers go

    async def events() -> AsyncIterator[bytes]:
        # One write per batch of events, not per event: a busy worker writes fewer, larger pieces.
        async for batch in batches:
            yield b"".join(_sse(event) for event in batch)

    response = StreamingHttpResponse(events(), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # nginx must pass each event on as it comes
    return response


@dataclass(frozen=True)
class CaptchaWidget:
    """A vendor's bot check on the battle pages (arena/captcha.py verifies its token): the script
    that renders it (the vendor's documented URL), the class that script looks for, and the origins
    the vendor's documentation asks the Content-Security-Policy to allow."""

    name: str
    script: str
    css_class: str
    csp: dict[str, list[str]]


_HCAPTCHA = ["https://hcaptcha.com", "https://*.hcaptcha.com"]
CAPTCHA_WIDGETS = {
    "turnstile": CaptchaWidget(
        name="Cloudflare Turnstile",
        script="https://challenges.cloudflare.com/turnstile/v0/api.js",
        css_class="cf-turnstile",
        csp={
            "script-src": ["https://challenges.cloudflare.com"],
            "frame-src": ["https://challenges.cloudflare.com"],
        },
    ),
    "hcaptcha": CaptchaWidget(
        name="hCaptcha",
        script="https://js.hcaptcha.com/1/api.js",
        css_class="h-captcha",
        csp={
            "script-src": _HCAPTCHA,
            "frame-src": _HCAPTCHA,
            "style-src": _HCAPTCHA,
            "connect-src": _HCAPTCHA,
        },
    ),
    "recaptcha": CaptchaWidget(
        name="Google reCAPTCHA",
        script="https://www.google.com/recaptcha/api.js",
        css_class="g-recaptcha",
        csp={
            "script-src": ["https://www.google.com/recaptcha/", "https://www.gstatic.com/recaptcha/"],
            "frame-src": ["https://www.google.com/recaptcha/", "https://recaptcha.google.com/recaptcha/"],
        },
    ),
}


def captcha_widget() -> CaptchaWidget | None:
    """The widget of the vendor ARENA_CHALLENGE names; None for the proof-of-work or no check."""
    return CAPTCHA_WIDGETS.get(settings.ARENA_CHALLENGE)


def with_captcha(view: Callable[[HttpRequest], HttpResponse]) -> Callable[[HttpRequest], HttpResponse]:
    """Opens the page's Content-Security-Policy to the configured vendor's widget, and only then."""

    @wraps(view)
    def page(request: HttpRequest) -> HttpResponse:
        widget = captcha_widget()
        return csp_update(widget.csp)(view)(request) if widget else view(request)

    return page


def battle_context(request: HttpRequest) -> dict[str, Any]:
    """What both battle pages show: the composer's limit, the consent box, the bot check's widget."""
    return {
        "prompt_max_chars": settings.ARENA_PROMPT_MAX_CHARS,
        "captcha": captcha_widget(),
        "captcha_vendor": settings.ARENA_CHALLENGE,
        "captcha_site_key": settings.ARENA_CHALLENGE_SITE_KEY,
        **visitors.consent_context(visitor(request)),
    }


@with_captcha
def battle_page(request: HttpRequest) -> HttpResponse:
    return render(request, "arena/battle.html", battle_context(request))


@with_captcha
def named_page(request: HttpRequest) -> HttpResponse:
    return render(
        request, "arena/named.html", {**battle_context(request), "models": LLM.objects.public().active()}
    )
