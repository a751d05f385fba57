"""Share links of voted battles (arena/sharing.py): the visitor's API to make and revoke one, and
the public read-only page at /s/<token>/."""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from arena import api_schema, services, sharing
from arena.views import visitor
from config.errors import NotFound
from config.schema import errors


class ShareOutputSerializer(serializers.Serializer):
    token = serializers.CharField(help_text="The link's random token (256 bits); it cannot be guessed.")
    url = serializers.CharField(help_text="The public page's path, `/s/{token}/`.")


class BattleShareApi(APIView):
    @extend_schema(
        operation_id="battle_share_create",
        summary="Share a voted battle",
        parameters=[api_schema.BATTLE_ID],
        request=None,
        responses={
            201: OpenApiResponse(ShareOutputSerializer, description="A new share link."),
            200: OpenApiResponse(ShareOutputSerializer, description="The link the battle already has."),
            **errors(404, 409),
        },
        description="Make a read-only public page of the battle: its prompts, both answers, the two "
        "models and the vote, nothing about you. Only a battle with a vote can be shared (409 "
        "`not_voted` before). Asked again, it returns the same link. " + api_schema.VISITOR_COOKIE,
    )
    def post(self, request: Request, battle_id: str) -> Response:
        battle = services.battle_of_visitor(battle_id=battle_id, visitor=visitor(request))
        share, made = sharing.share_create(battle=battle)
        body = {"token": share.token, "url": reverse("shared-battle", args=[share.token])}
        return Response(
            ShareOutputSerializer(body).data, status=status.HTTP_201_CREATED if made else status.HTTP_200_OK
        )

    @extend_schema(
        operation_id="battle_share_destroy",
        summary="Revoke a battle's share link",
        parameters=[api_schema.BATTLE_ID],
        request=None,
        responses={204: OpenApiResponse(description="Revoked: the page is gone."), **errors(404)},
        description="Delete the battle's share link: its public page answers 404 from now on. "
        "Sharing again makes a new link. 404 `not_shared` when the battle has none. "
        + api_schema.VISITOR_COOKIE,
    )
    def delete(self, request: Request, battle_id: str) -> Response:
        battle = services.battle_of_visitor(battle_id=battle_id, visitor=visitor(request))
        sharing.share_revoke(battle=battle)
        return Response(status=status.HTTP_204_NO_CONTENT)


def shared_page(request: HttpRequest, token: str) -> HttpResponse:
    """The public page of a shared battle: read-only, not indexed, nothing of the visitor."""
    try:
        shared = sharing.shared_battle(token)
    except NotFound:
        raise Http404("No such shared battle.") from None
    response = render(request, "arena/shared.html", {"shared": shared})
    response["X-Robots-Tag"] = "noindex, nofollow"
    # The token is the page's only key: never sent on to a site an answer links to, never cached.
    response["Referrer-Policy"] = "no-referrer"
    response["Cache-Control"] = "no-store"
    return response
