from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from leaderboard.services import latest_snapshot


def board_page(request: HttpRequest) -> HttpResponse:
    snapshot = latest_snapshot()
    ratings = list(snapshot.ratings.select_related("llm")) if snapshot else []
    return render(request, "leaderboard/board.html", {"snapshot": snapshot, "ratings": ratings})


class LeaderboardApi(APIView):
    def get(self, request: Request) -> Response:
        snapshot = latest_snapshot()
        if snapshot is None:
            return Response({"snapshot": None, "models": []})
        return Response(
            {
                "snapshot": {
                    "id": snapshot.pk,
                    "created": snapshot.created,
                    "votes": snapshot.votes,
                    "votes_digest": snapshot.votes_digest,
                    "method": snapshot.method,
                    "params": snapshot.params,
                    "excluded": snapshot.excluded,
                },
                "models": [
                    {
                        "rank": r.rank,
                        "name": r.llm.name,
                        "label": r.llm.label,
                        "organization": r.llm.organization,
                        "license": r.llm.license,
                        "rating": round(r.rating, 2),
                        "ci_lower": round(r.ci_lower, 2),
                        "ci_upper": round(r.ci_upper, 2),
                        "votes": r.votes,
                    }
                    for r in snapshot.ratings.select_related("llm")
                ],
            }
        )
