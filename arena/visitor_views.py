"""The visitor's own pages and endpoints: the terms, the privacy page, consent, their data."""

from __future__ import annotations

import secrets
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.translation import gettext
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from arena import battle_images, services, visitors
from arena.models import Answer, AnswerAttempt, Battle, Visitor, Vote
from arena.reasons import VoteReason
from arena.views import (
    VISITOR_COOKIE,
    battle_models,
    captcha_widget,
    remember_visitor,
    visitor,
    visitor_token,
)
from config.errors import NotFound
from config.schema import errors


def terms_page(request: HttpRequest) -> HttpResponse:
    return render(request, "arena/terms.html", {"terms_version": settings.ARENA_TERMS_VERSION})


def privacy_page(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "arena/privacy.html",
        {
            "terms_version": settings.ARENA_TERMS_VERSION,
            "cookie_days": settings.SESSION_COOKIE_AGE // 86400,
            "has_cookie": visitor(request) is not None,
            "captcha": captcha_widget(),
            "moderation_vendor": settings.ARENA_MODERATION == "openai",
        },
    )


class ConsentOutputSerializer(serializers.Serializer):
    accepted = serializers.BooleanField(help_text="Whether this visitor accepted the terms in force.")
    required = serializers.BooleanField(
        help_text="Whether this site asks for the acceptance before a battle."
    )
    terms_version = serializers.CharField(help_text="The version of the terms in force.")
    accepted_version = serializers.CharField(
        allow_blank=True, help_text="The version this visitor accepted, if any."
    )
    accepted_at = serializers.DateTimeField(allow_null=True)
    terms_url = serializers.CharField()
    privacy_url = serializers.CharField()


def consent_state(visitor_hash: str | None) -> dict[str, Any]:
    row = Visitor.objects.filter(pk=visitor_hash).first() if visitor_hash else None
    return {
        "accepted": bool(row and row.has_accepted),
        "required": settings.ARENA_REQUIRE_CONSENT,
        "terms_version": settings.ARENA_TERMS_VERSION,
        "accepted_version": row.terms_version if row else "",
        "accepted_at": row.terms_accepted_at if row else None,
        "terms_url": "/terms/",
        "privacy_url": "/privacy/",
    }


class VisitorConsentApi(APIView):
    """The terms a visitor must accept before their first battle, and their acceptance."""

    class InputSerializer(serializers.Serializer):
        terms_version = serializers.CharField(help_text="The version of the terms read and accepted.")

    @extend_schema(
        operation_id="visitor_consent_read",
        summary="The terms in force, and this visitor's acceptance",
        description="The version of the terms a visitor must accept before their first battle "
        "(where the site asks for it), and whether this visitor (their `arena_visitor` cookie) did.",
        responses=OpenApiResponse(ConsentOutputSerializer, description="The terms and the acceptance."),
    )
    def get(self, request: Request) -> Response:
        return Response(ConsentOutputSerializer(consent_state(visitor(request))).data)

    @extend_schema(
        operation_id="visitor_consent_accept",
        request=InputSerializer,
        summary="Accept the terms in force",
        description="Records this visitor's acceptance of the version read; sets the `arena_visitor` "
        "cookie if absent. A version other than the one in force is a 409: read the terms again.",
        responses={
            200: OpenApiResponse(ConsentOutputSerializer, description="The acceptance, recorded."),
            **errors(400, 409, 413),
        },
    )
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        token = visitor_token(request) or secrets.token_urlsafe(32)
        visitor_hash = services.visitor_hash(token)
        visitors.accept_terms(visitor=visitor_hash, **data.validated_data)
        response = Response(ConsentOutputSerializer(consent_state(visitor_hash)).data)
        remember_visitor(response, token)
        return response


def answer_record(answer: Answer | AnswerAttempt) -> dict[str, Any]:
    return {"text": answer.text, "status": answer.status, "finish_reason": answer.public_finish_reason}


def battle_record(battle: Battle) -> dict[str, Any]:
    """One battle as the visitor may see it: the models only where they are revealed to them."""
    vote = next(iter(battle.votes.all()), None)
    return {
        "id": str(battle.id),
        "mode": battle.mode,
        "state": battle.state,
        "created": battle.created.isoformat(),
        **battle_models(battle),
        "image": battle_images.url(battle),  # the first prompt's image, downloaded from there
        "turns": [
            {
                "index": turn.index,
                "prompt": turn.prompt,
                "created": turn.created.isoformat(),
                "answers": {a.side: answer_record(a) for a in turn.answers.all()},
                # Earlier tries, replaced by a retry or a regeneration.
                "replaced": [{"side": a.side, **answer_record(a)} for a in turn.attempts.all()],
            }
            for turn in battle.turns.all()
        ],
        "vote": vote_record(vote) if vote else None,
    }


def vote_record(vote: Vote) -> dict[str, Any]:
    try:
        reason: VoteReason | None = vote.reason
    except VoteReason.DoesNotExist:
        reason = None
    return {
        "winner": vote.winner,
        "created": vote.created.isoformat(),
        "reason_tags": reason.tags if reason else [],
        "reason_comment": reason.comment if reason else "",
    }


class VisitorDataApi(APIView):
    """Everything stored under this visitor's cookie: download it, or delete it."""

    @extend_schema(
        operation_id="visitor_data_download",
        summary="Download everything stored under this visitor's cookie",
        description="The acceptance of the terms and every battle of this visitor (the "
        "`arena_visitor` cookie), as a JSON attachment: prompts, answers, votes, and the models where "
        "they were shown.",
        responses={
            200: OpenApiResponse(OpenApiTypes.OBJECT, description="The visitor's data, as a JSON file."),
            **errors(404),
        },
    )
    def get(self, request: Request) -> Response:
        visitor_hash = self._visitor(request)
        body = {
            "consent": consent_state(visitor_hash),
            "battles": [battle_record(b) for b in visitors.battles_of(visitor_hash)],
        }
        response = Response(body)
        response["Content-Disposition"] = 'attachment; filename="arena-my-data.json"'
        return response

    class DeletedSerializer(serializers.Serializer):
        battles_deleted = serializers.IntegerField(help_text="Battles without a vote, deleted whole.")
        battles_anonymised = serializers.IntegerField(
            help_text="Voted battles: prompts and answers erased, unlinked from you, the vote kept."
        )

    @extend_schema(
        operation_id="visitor_data_delete",
        summary="Delete everything stored under this visitor's cookie",
        description="Battles without a vote are deleted whole; a voted battle keeps its anonymous "
        "vote (boards were computed from it) with its prompts and answers erased and its link to "
        "this visitor removed. The cookie is cleared.",
        responses={200: OpenApiResponse(DeletedSerializer, description="What was deleted."), **errors(404)},
    )
    def delete(self, request: Request) -> Response:
        forgotten = visitors.forget_visitor(visitor=self._visitor(request))
        response = Response(self.DeletedSerializer(forgotten).data)
        response.delete_cookie(VISITOR_COOKIE, samesite=settings.SESSION_COOKIE_SAMESITE)
        return response

    @staticmethod
    def _visitor(request: Request) -> str:
        visitor_hash = visitor(request)
        if visitor_hash is None:
            raise NotFound(
                gettext("This browser holds no visitor cookie, so nothing is stored for it."),
                code="no_visitor",
            )
        return visitor_hash
