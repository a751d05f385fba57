from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any

import orjson
from csp.decorators import csp_update
from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from arena import api_schema, battle_images, gate, reasons, rounds, services, streaming, visitors
from arena.models import Battle, Vote
from arena.reasons import VoteReason
from arena.suggestions import SUGGESTIONS
from arena.throttles import TurnCreateThrottle
from config.errors import DomainError, NotFound, error_body
from config.parsers import JSONParser
from config.schema import errors
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
    vision = serializers.BooleanField(
        help_text="Whether the model reads images: only these answer a battle with one."
    )

    class Meta:
        model = LLM
        fields = ["name", "label", "organization", "license", "demo", "vision"]

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
            "vision": False,
        }
    return {
        "name": llm.name,
        "label": llm.label,
        "organization": llm.organization,
        "license": llm.license,
        "demo": llm.is_demo,
        "vision": llm.vision,
    }


def battle_models(battle: Battle) -> dict[str, Any]:
    if not battle.names_visible:
        return {"model_a": None, "model_b": None}
    return {
        "model_a": revealed(battle.model_a),
        "model_b": revealed(battle.model_b) if battle.model_b_id else None,  # none in a direct chat
    }


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
    # JSON, or multipart/form-data when the first prompt carries an image (arena.battle_images).
    parser_classes = [JSONParser, MultiPartParser]

    class InputSerializer(serializers.Serializer):
        prompt = serializers.CharField(trim_whitespace=False, allow_blank=True)
        mode = serializers.ChoiceField(choices=Battle.Mode.choices, default=Battle.Mode.ANONYMOUS)
        model_a = serializers.CharField(required=False)
        model_b = serializers.CharField(required=False)

    @api_schema.battle_create
    def post(self, request: Request) -> Response:
        visitors.require_consent(visitor=visitor(request))
        battle_images.require_small_body(request)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        image = battle_images.uploaded(request)
        token = visitor_token(request) or secrets.token_urlsafe(32)
        voter = gate.voter_of(request, services.visitor_hash(token))
        gate.require_challenge(request, request.data, voter)
        with gate.spending(gate.battle_caps(voter)):
            battle = services.battle_start(
                visitor=voter.visitor, network=voter.network, image=image, **data.validated_data
            )
        body = {"id": str(battle.id), "mode": battle.mode, "state": battle.state, **battle_models(battle)}
        response = Response(body, status=status.HTTP_201_CREATED)
        remember_visitor(response, token)
        return response


def vote_body(vote: Vote) -> dict[str, Any]:
    """The vote as its visitor sees it on reopening the battle: the verdict and any reasons."""
    body: dict[str, Any] = {"winner": vote.winner}
    try:
        body |= {"tags": vote.reason.tags, "comment": vote.reason.comment}
    except VoteReason.DoesNotExist:
        pass
    return body


class BattleDetailApi(APIView):
    @api_schema.battle_detail
    def get(self, request: Request, battle_id: str) -> Response:
        battle = services.battle_of_visitor(battle_id=battle_id, visitor=visitor(request))
        turns = []
        stored = list(battle.turns.prefetch_related("answers"))
        for turn in stored:
            answers = {
                a.side: {"text": a.text, "status": a.status, "finish_reason": a.public_finish_reason}
                for a in turn.answers.all()
            }
            turns.append({"index": turn.index, "prompt": turn.prompt, "answers": answers})
        vote = battle.votes.select_related("reason").first()
        return Response(
            {
                "id": str(battle.id),
                "mode": battle.mode,
                "state": battle.state,
                "turns": turns,
                "image": battle_images.url(battle),
                "vote": vote_body(vote) if vote else None,
                **battle_models(battle),
                "actions": ActionsSerializer(services.battle_actions(battle, stored)).data,
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
        tags = serializers.JSONField(required=False)
        comment = serializers.JSONField(required=False)

    @api_schema.battle_vote
    def post(self, request: Request, battle_id: str) -> Response:
        battle = services.battle_of_visitor(battle_id=battle_id, visitor=visitor(request))
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        with gate.spending(gate.vote_caps(gate.voter_of(request, battle.visitor_hash))):
            vote = services.battle_vote(battle=battle, **data.validated_data)
        return Response({"winner": vote.winner, **battle_models(battle)})


class ActionsSerializer(serializers.Serializer):
    """What the battle's visitor may do next (arena.services.battle_actions), in the battle's detail."""

    vote = serializers.BooleanField(help_text="Whether a vote is taken now.")
    vote_covers = serializers.IntegerField(
        help_text="The turns a vote would cover: all, or those before a latest turn that did not end well."
    )
    retry = serializers.ListField(
        child=serializers.ChoiceField(choices=["a", "b"]),
        help_text="Sides whose latest answer may be retried.",
    )
    regenerate = serializers.BooleanField(
        help_text="Whether the latest turn may be asked again of both sides."
    )
    stop = serializers.BooleanField(help_text="Whether answers are coming that a stop would end.")
    follow_up = serializers.BooleanField(help_text="Whether a follow-up turn may be asked.")


PAID = (
    "Each new try calls a model again, so it is paid like a new battle: a solved challenge "
    '(`GET /api/v1/challenge/`, sent as "challenge" or the X-Arena-Challenge header) and one battle '
    "against the hourly caps (429 with Retry-After beyond them). A side's answer to a turn is tried at "
    f"most {services.MAX_TRIES} times."
)


def new_try_voter(request: Request, battle: Battle) -> gate.Voter:
    """The gate's checks before a retry or a regeneration, as before a new battle."""
    visitors.require_consent(visitor=battle.visitor_hash)
    voter = gate.voter_of(request, battle.visitor_hash)
    gate.require_challenge(request, request.data, voter)
    return voter


class BattleRetryApi(APIView):
    class InputSerializer(serializers.Serializer):
        # Validated by the service, so the message names the accepted values.
        side = serializers.JSONField(
            help_text='"a" or "b": the side whose failed or stopped answer to try again.'
        )
        challenge = serializers.CharField(
            required=False, help_text="A solved challenge (see the description)."
        )

    class OutputSerializer(serializers.Serializer):
        state = serializers.CharField(help_text='"pending": stream the battle to get the new answer.')
        turn = serializers.IntegerField(help_text="The index of the turn asked again.")
        side = serializers.CharField()
        attempt = serializers.IntegerField(help_text="Which try of this side's answer to the turn this is.")
        fresh_model = serializers.BooleanField(
            help_text="A different model, drawn by the server, answers this side from now on (never named "
            "before the vote)."
        )

    @extend_schema(
        operation_id="battle_retry",
        summary="Ask one failed or stopped side again",
        parameters=[api_schema.BATTLE_ID],
        responses={
            201: OpenApiResponse(OutputSerializer, description="The side's new try, waiting to stream."),
            **errors(400, 403, 404, 409, 429),
        },
        description="Ask the latest turn again of one side whose answer failed or was stopped: the same "
        "model, or in an anonymous battle's first turn, after the model failed twice, a fresh one. " + PAID,
    )
    def post(self, request: Request, battle_id: str) -> Response:
        battle = services.battle_of_visitor(battle_id=battle_id, visitor=visitor(request))
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        side = data.validated_data["side"]
        rounds.retry_target(battle=battle, side=side)  # refused before a challenge is spent on it
        voter = new_try_voter(request, battle)
        with gate.spending(gate.battle_caps(voter)):
            retried = rounds.battle_retry(battle=battle, side=side, voter=voter)
        body = {
            "state": battle.state,
            "turn": retried.turn.index,
            "side": retried.answer.side,
            "attempt": retried.answer.attempt,
            "fresh_model": retried.fresh_model,
        }
        return Response(self.OutputSerializer(body).data, status=status.HTTP_201_CREATED)


class BattleRegenerateApi(APIView):
    class InputSerializer(serializers.Serializer):
        challenge = serializers.CharField(
            required=False, help_text="A solved challenge (see the description)."
        )

    class OutputSerializer(serializers.Serializer):
        state = serializers.CharField(help_text='"pending": stream the battle to get the new answers.')
        turn = serializers.IntegerField(help_text="The index of the turn asked again.")

    @extend_schema(
        operation_id="battle_regenerate",
        summary="Ask both sides again",
        parameters=[api_schema.BATTLE_ID],
        responses={
            201: OpenApiResponse(OutputSerializer, description="The turn, asked again, waiting to stream."),
            **errors(400, 403, 404, 409, 429),
        },
        description="Ask the latest turn again of both sides, of the same two models; refused once the "
        "battle has a vote. " + PAID,
    )
    def post(self, request: Request, battle_id: str) -> Response:
        battle = services.battle_of_visitor(battle_id=battle_id, visitor=visitor(request))
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        rounds.regenerate_target(battle=battle)  # refused before a challenge is spent on it
        voter = new_try_voter(request, battle)
        with gate.spending(gate.battle_caps(voter)):
            turn = rounds.battle_regenerate(battle=battle, voter=voter)
        body = {"state": battle.state, "turn": turn.index}
        return Response(self.OutputSerializer(body).data, status=status.HTTP_201_CREATED)


class BattleStopApi(APIView):
    class OutputSerializer(serializers.Serializer):
        state = serializers.CharField(
            help_text='"streaming": the stream ends within a second, its answers stopped; "failed": it had '
            "not begun, and its answers are stopped."
        )

    @extend_schema(
        operation_id="battle_stop",
        summary="Stop the answers",
        parameters=[api_schema.BATTLE_ID],
        request=None,
        responses={
            202: OpenApiResponse(OutputSerializer, description="Stopping: the stream ends shortly."),
            **errors(404, 409),
        },
        description="Stop the answers being generated (closing the stream does the same). Stopped answers "
        "can be retried; a vote covers the turns before.",
    )
    def post(self, request: Request, battle_id: str) -> Response:
        battle = services.battle_of_visitor(battle_id=battle_id, visitor=visitor(request))
        state = rounds.battle_stop(battle=battle)
        return Response(self.OutputSerializer({"state": state}).data, status=status.HTTP_202_ACCEPTED)


class VisitorBattleListApi(APIView):
    """The visitor's own recent battles, by their cookie; models named only where they are revealed."""

    class OutputSerializer(serializers.Serializer):
        id = serializers.UUIDField()
        mode = serializers.CharField()
        state = serializers.CharField()
        created = serializers.DateTimeField()
        prompt = serializers.CharField(source="first_prompt", help_text="The first prompt, cut short.")
        turns = serializers.IntegerField(source="turn_count")
        winner = serializers.SerializerMethodField(help_text="The vote, once there is one.")
        model_a = serializers.SerializerMethodField(
            help_text="Null until the models are revealed: by the vote, or from the start in named mode."
        )
        model_b = serializers.SerializerMethodField(
            help_text="Null until the models are revealed: by the vote, or from the start in named mode."
        )

        def get_winner(self, battle: Battle) -> str | None:
            votes = battle.votes.all()
            return votes[0].winner if votes else None

        def get_model_a(self, battle: Battle) -> dict[str, Any] | None:
            return battle_models(battle)["model_a"]

        def get_model_b(self, battle: Battle) -> dict[str, Any] | None:
            return battle_models(battle)["model_b"]

    @extend_schema(
        operation_id="visitor_battles",
        summary="Your recent battles",
        description="The latest battles opened with this visitor's cookie, newest first; each "
        "battle's models are named only once revealed (by the vote, or at once in named mode).",
        responses={200: OpenApiResponse(OutputSerializer(many=True), description="The battles.")},
    )
    def get(self, request: Request) -> Response:
        battles = services.recent_battles(visitor=visitor(request)).prefetch_related("votes")
        response = Response(self.OutputSerializer(battles, many=True).data)
        response["Cache-Control"] = "no-store"
        return response


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


def with_captcha(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Opens the page's Content-Security-Policy to the configured vendor's widget, and only then."""

    @wraps(view)
    def page(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        widget = captcha_widget()
        return (
            csp_update(widget.csp)(view)(request, *args, **kwargs)
            if widget
            else view(request, *args, **kwargs)
        )

    return page


def battle_context(request: HttpRequest) -> dict[str, Any]:
    """What both battle pages show: the composer's limit, the consent box, the bot check's widget,
    the questions to start from and the reasons a vote may give."""
    return {
        "prompt_max_chars": settings.ARENA_PROMPT_MAX_CHARS,
        "suggestions": SUGGESTIONS,
        "reason_tags": reasons.TAGS.items(),
        "comment_max_chars": reasons.COMMENT_MAX_CHARS,
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


@with_captcha
def chat_page(request: HttpRequest) -> HttpResponse:
    """Direct chat: one model the visitor picks, named, never voted on."""
    return render(
        request, "arena/chat.html", {**battle_context(request), "models": LLM.objects.public().active()}
    )


@with_captcha
def battle_resume_page(request: HttpRequest, battle_id: str) -> HttpResponse:
    """A battle's own address: the page of its mode, which reads the battle back from the API."""
    try:
        battle = services.battle_of_visitor(battle_id=battle_id, visitor=visitor(request))
    except NotFound:
        raise Http404("No such battle.") from None
    context = {**battle_context(request), "battle_id": str(battle.id)}
    if battle.mode != Battle.Mode.ANONYMOUS:
        page = "arena/chat.html" if battle.mode == Battle.Mode.DIRECT else "arena/named.html"
        return render(request, page, {**context, "models": LLM.objects.public().active()})
    return render(request, "arena/battle.html", context)
