from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.generics import ListAPIView
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config.schema import errors
from leaderboard.models import Snapshot, SnapshotQuerySet
from leaderboard.services import latest_snapshot


def board_page(request: HttpRequest) -> HttpResponse:
    snapshot = latest_snapshot()
    ratings = list(snapshot.ratings.select_related("llm")) if snapshot else []
    return render(request, "leaderboard/board.html", {"snapshot": snapshot, "ratings": ratings})


class BoardQuerySerializer(serializers.Serializer):
    board = serializers.CharField(max_length=64, required=False, default="overall")


def board_of(request: Request) -> str:
    query = BoardQuerySerializer(data=request.query_params)
    query.is_valid(raise_exception=True)
    return query.validated_data["board"]


class LeaderboardApi(APIView):
    class OutputSerializer(serializers.Serializer):
        """Describes the response for the OpenAPI schema."""

        class SnapshotSerializer(serializers.Serializer):
            id = serializers.IntegerField()
            created = serializers.DateTimeField()
            votes = serializers.IntegerField()
            votes_digest = serializers.CharField()
            method = serializers.CharField()
            params = serializers.DictField()
            excluded = serializers.DictField(child=serializers.IntegerField())

        class RatingSerializer(serializers.Serializer):
            rank = serializers.IntegerField()
            name = serializers.CharField()
            label = serializers.CharField()
            organization = serializers.CharField()
            license = serializers.CharField()
            rating = serializers.FloatField()
            ci_lower = serializers.FloatField()
            ci_upper = serializers.FloatField()
            votes = serializers.IntegerField()
            provisional = serializers.BooleanField(
                help_text="A published variant with too few votes since publication (fresh-vote rule)."
            )

        snapshot = SnapshotSerializer(allow_null=True)
        models = RatingSerializer(many=True)

    @extend_schema(
        operation_id="leaderboard",
        parameters=[BoardQuerySerializer],
        responses={200: OutputSerializer, **errors(400)},
    )
    def get(self, request: Request) -> Response:
        snapshot = latest_snapshot(board_of(request))
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
                        "provisional": r.provisional,
                    }
                    for r in snapshot.ratings.select_related("llm")
                ],
            }
        )


class SnapshotPagination(LimitOffsetPagination):
    default_limit = 50
    max_limit = 500
    max_offset = 10**9  # beyond any table, and within what every database can take as an OFFSET

    def get_offset(self, request: Request) -> int:
        return min(super().get_offset(request), self.max_offset)


class SnapshotListApi(ListAPIView):
    """Every published snapshot, newest first; its digest identifies the votes it counted."""

    class OutputSerializer(serializers.ModelSerializer):
        digest = serializers.CharField(source="votes_digest")

        class Meta:
            model = Snapshot
            fields = ["id", "board", "created", "votes", "digest"]

    serializer_class = OutputSerializer
    pagination_class = SnapshotPagination

    @extend_schema(
        operation_id="leaderboard_snapshots_list",
        parameters=[BoardQuerySerializer],
        responses={200: OutputSerializer(many=True), **errors(400)},
    )
    def get(self, request: Request) -> Response:
        return super().get(request)

    def get_queryset(self) -> SnapshotQuerySet:
        snapshots = Snapshot.objects.latest_first()
        if "board" in self.request.query_params:
            snapshots = snapshots.of_board(board_of(self.request))
        return snapshots
