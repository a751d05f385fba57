from __future__ import annotations

import csv
import itertools
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.cache import cache
from django.db.models import OuterRef, Subquery
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.middleware.csrf import get_token
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.html import escape
from django.utils.translation import get_language, gettext, gettext_lazy
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.generics import ListAPIView
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config.errors import error_body
from config.health import board_lag
from config.schema import errors, plain_view_schema
from leaderboard import boards, dumps
from leaderboard.dumps import export_lines
from leaderboard.models import Snapshot, SnapshotQuerySet
from leaderboard.services import generation, latest_snapshot
from providers.models import LLM


def board_page(request: HttpRequest) -> HttpResponse:
    """The board page, rendered once per board and snapshot generation, then served from the cache."""
    spec = boards.board(request.GET.get("board") or default_board())
    if spec is None:
        raise Http404("No such board.")
    # The newest snapshot's id (an indexed lookup) keys the page; the generation, bumped on every
    # publication, also retires pages whose tabs list other boards.
    latest = Snapshot.objects.of_board(spec.slug).latest_first().values_list("pk", "created").first()
    key = f"leaderboard:page:{spec.slug}:{latest[0] if latest else None}:{generation()}:{get_language()}"
    html = cache.get(key)
    if html is None:
        # Rendered for every visitor: the header's language form gets each one's own CSRF token
        # and address below, never those of the visitor who happened to fill the cache.
        context = {**board_context(spec), "csrf_token": PAGE_CSRF, "here": PAGE_HERE}
        html = render_to_string("leaderboard/board.html", context, request=request)
        cache.set(key, html, timeout=24 * 3600)
    if latest:
        # The age changes by the minute: rendered here, into the cached page.
        age = render_to_string("leaderboard/snapshot_age.html", {"age": snapshot_age(latest[1])}, request)
        html = html.replace(AGE_MARKER, age, 1)
    html = html.replace(PAGE_CSRF, get_token(request)).replace(PAGE_HERE, escape(request.get_full_path()))
    return HttpResponse(html)


AGE_MARKER = "<!-- snapshot-age -->"
LAG_KEY = "leaderboard:lag"
# Seconds the lag, read from the votes, is reused across page views and API calls.
LAG_CACHE_SECONDS = 15


def snapshot_age(created: datetime) -> dict[str, Any]:
    """How old a board's snapshot is, and whether it is stale: a vote has waited longer than
    READYZ_SNAPSHOT_SECONDS for a recompute (/readyz's snapshot check). An old snapshot alone is not
    stale: an arena without new votes has nothing newer to show."""
    bound = settings.READYZ_SNAPSHOT_SECONDS
    lag = cache.get(LAG_KEY)
    if lag is None:
        lag = board_lag()
        cache.set(LAG_KEY, lag, timeout=LAG_CACHE_SECONDS)
    return {
        "created": created,
        "age_seconds": max(0, round((timezone.now() - created).total_seconds())),
        "stale": lag > bound,
        "bound_minutes": max(1, round(bound / 60)),
    }


PAGE_CSRF = "arena-page-csrf-token"
PAGE_HERE = "arena-page-address"


def default_board() -> str:
    """The style-controlled board once it has a snapshot; the raw board before (a board with no
    style counts yet)."""
    return "style" if Snapshot.objects.of_board("style").exists() else "overall"


# How the page names each reason a vote was left out (arena.models.Vote.Exclusion); the API
# and the snapshot keep the codes.
EXCLUDED = {
    "identity_leak": gettext_lazy("identity leak"),
    "too_fast": gettext_lazy("too fast"),
    "anomalous_voter": gettext_lazy("anomalous voter"),
    "duplicate_prompt": gettext_lazy("duplicate prompt"),
    "vote_surge": gettext_lazy("vote surge"),
}


def board_context(spec: boards.Board) -> dict[str, Any]:
    snapshot = latest_snapshot(spec.slug)
    # The two boards of every vote always have a tab; a category board has one while its latest
    # snapshot counts a vote (one emptied by a rule change, votes re-tagged to another language,
    # drops out instead of showing nothing).
    latest = Snapshot.objects.of_board(OuterRef("board")).latest_first().values("pk")[:1]
    published = set(
        Snapshot.objects.filter(pk=Subquery(latest), votes__gt=0).values_list("board", flat=True)
    ) | {"style", "overall"}
    tabs = [
        b for b in boards.all_boards({s.removeprefix("language-") for s in published}) if b.slug in published
    ]
    ratings = list(snapshot.ratings.select_related("llm")) if snapshot else []
    details = snapshot.details if snapshot else {}
    latency = details.get("latency") or (latest_snapshot().details.get("latency", {}) if snapshot else {})
    for r in ratings:
        r.latency = latency.get(str(r.llm_id), {})
    return {
        "board": boards.shown(spec),
        "tabs": [boards.shown(tab) for tab in tabs or [boards.board("overall")]],
        "snapshot": snapshot,
        # Every vote left out, by reason: what the board does not count is never hidden.
        "excluded": [
            (EXCLUDED.get(reason, reason.replace("_", " ")), n)
            for reason, n in (snapshot.excluded if snapshot else {}).items()
        ],
        "ratings": ratings,
        "heatmaps": _heatmaps(details.get("matrices")),
        "style": details.get("style"),
        "min_votes": settings.LEADERBOARD_MIN_VOTES,
    }


def _heatmaps(matrices: dict[str, Any] | None) -> list[dict[str, Any]]:
    if not matrices or not matrices.get("models"):
        return []
    labels = {m.pk: m.label for m in LLM.objects.filter(pk__in=matrices["models"])}
    names = [labels.get(pk, "?") for pk in matrices["models"]]
    most = max((max(row) for row in matrices["battles"]), default=0) or 1
    win_rows, count_rows = [], []
    for name, wins, counts in zip(names, matrices["win_rate"], matrices["battles"], strict=True):
        # Colour strength as a percentage the template puts in a CSS variable.
        win_rows.append((name, [None if w is None else (f"{round(100 * w)}%", round(100 * w)) for w in wins]))
        count_rows.append((name, [(n, round(100 * n / most)) if n else None for n in counts]))
    return [
        {
            "id": "win-rate",
            "title": gettext("Observed win rate"),
            "note": gettext("Row model against column model; ties count half."),
            "columns": names,
            "rows": win_rows,
            "kind": "rate",
        },
        {
            "id": "battles",
            "title": gettext("Battle counts"),
            "note": gettext("Counted battles between each pair of models."),
            "columns": names,
            "rows": count_rows,
            "kind": "count",
        },
    ]


SNAPSHOT_ID = OpenApiParameter(
    "snapshot_id",
    int,
    OpenApiParameter.PATH,
    description="The snapshot's id, from the board or the snapshot list.",
)


@plain_view_schema(
    operation_id="leaderboard_snapshots_votes",
    summary="Download the votes behind a snapshot (JSON lines)",
    description="Exactly the votes the snapshot counted, one JSON object a line, in the public "
    "battle format (`question_id`, `model_a`, `model_b`, `winner`, `tstamp`, `anony`, `language`, "
    "`turn`: the turns the vote covers, `is_code`, `hard`, `long_query`, `conv_metadata`), plus "
    "`propensity` and the voter's optional `reason_tags` and `reason_comment` (empty when none was "
    "given; they never change a rating): its ratings can be recomputed from them, weighing the votes "
    "as its `weights` says, and checked against its `votes_digest`. On a propensity-weighted "
    "snapshot a battle without a propensity carries the one its weight stood for, with "
    "`propensity_imputed: true`. No prompts, no answers, no voters.",
    parameters=[SNAPSHOT_ID],
    responses={
        (200, "application/x-ndjson"): OpenApiResponse(
            OpenApiTypes.STR,
            description="An attachment, `arena-<board>-<id>-votes.jsonl`.",
            examples=[
                OpenApiExample(
                    "One vote",
                    media_type="application/x-ndjson",
                    value='{"question_id": "0b6f…", "model_a": "alpha-chat", "model_b": "beta-chat", '
                    '"winner": "model_a", "tstamp": 1767225600.0, "anony": true, "language": "en", '
                    '"turn": 1, "is_code": false, "hard": false, "long_query": false, '
                    '"conv_metadata": {"sum_assistant_a_tokens": 120}, "propensity": 0.1, '
                    '"reason_tags": ["accurate", "clear"], "reason_comment": "Shorter and right."}\n',
                )
            ],
        ),
        **errors(404),
    },
)
def snapshot_votes(request: HttpRequest, snapshot_id: int) -> HttpResponse:
    """Exactly the votes behind a snapshot, in the public battle format (JSON lines).

    The headers say how many votes the snapshot counted and how many of them are no longer stored
    (deleted since, so not in the file); the body is left as the rating command line reads it."""
    snapshot = Snapshot.objects.select_related("excluded_votes").filter(pk=snapshot_id).first()
    if snapshot is None or "filters" not in snapshot.params:
        return JsonResponse(
            error_body("No such snapshot, or it predates vote export.", "not_found"), status=404
        )
    export = dumps.snapshot_votes(snapshot)
    lines = export_lines(export.votes, skip=export.skip, unknown_propensity=export.unknown_propensity)
    response = StreamingHttpResponse(sent_as_read(lines), content_type="application/x-ndjson")
    response["Content-Disposition"] = (
        f'attachment; filename="arena-{snapshot.board}-{snapshot.pk}-votes.jsonl"'
    )
    response["X-Snapshot-Votes"] = str(export.counted)
    response["X-Snapshot-Votes-Exported"] = str(export.found)
    # Absent for a snapshot from before its exclusions were recorded: what it counted is not known.
    if export.exact:
        response["X-Snapshot-Votes-Missing"] = str(export.missing)
    return response


EXPORT_BATCH = 1000  # lines read per hop to the database thread


async def sent_as_read(lines: Iterator[str]) -> AsyncIterator[str]:
    """The lines, a batch at a time: Django's ASGI handler reads a synchronous iterator whole before
    sending it, which would hold a whole export in memory. Every batch is read on the request's one
    database thread (thread-sensitive), where the export's cursor lives."""
    read_batch = sync_to_async(lambda: list(itertools.islice(lines, EXPORT_BATCH)))
    while batch := await read_batch():
        yield "".join(batch)


@plain_view_schema(
    operation_id="leaderboard_snapshots_csv",
    summary="Download a snapshot's ratings (CSV)",
    description="The snapshot's board as a spreadsheet: a header row, then one row per model in "
    "rank order. Columns: rank, model, rating, ci_lower, ci_upper (its 95% interval), votes, "
    "provisional, organization, license, rank_upper (the worst rank the intervals allow). A text "
    "cell that would start a formula begins with `'`.",
    parameters=[SNAPSHOT_ID],
    responses={
        (200, "text/csv"): OpenApiResponse(
            OpenApiTypes.STR,
            description="An attachment, `arena-<board>-<id>.csv`.",
            examples=[
                OpenApiExample(
                    "Two models",
                    media_type="text/csv",
                    value="rank,model,rating,ci_lower,ci_upper,votes,provisional,organization,license,"
                    "rank_upper\r\n"
                    "1,alpha-chat,1040.00,1021.50,1058.20,812,False,Alpha Labs,Apache-2.0,1\r\n"
                    "2,beta-chat,960.00,941.30,979.90,812,False,Beta Inc,MIT,2\r\n",
                )
            ],
        ),
        **errors(404),
    },
)
def snapshot_csv(request: HttpRequest, snapshot_id: int) -> HttpResponse:
    snapshot = Snapshot.objects.filter(pk=snapshot_id).first()
    if snapshot is None:
        return JsonResponse(error_body("No such snapshot.", "not_found"), status=404)
    response = HttpResponse(content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="arena-{snapshot.board}-{snapshot.pk}.csv"'
    writer = csv.writer(response)
    writer.writerow(
        [
            "rank",
            "model",
            "rating",
            "ci_lower",
            "ci_upper",
            "votes",
            "provisional",
            "organization",
            "license",
            "rank_upper",
        ]
    )
    for r in snapshot.ratings.select_related("llm"):
        writer.writerow(
            [
                r.rank,
                spreadsheet_safe(r.llm.name),
                f"{r.rating:.2f}",
                f"{r.ci_lower:.2f}",
                f"{r.ci_upper:.2f}",
                r.votes,
                r.provisional,
                spreadsheet_safe(r.llm.organization),
                spreadsheet_safe(r.llm.license),
                "" if r.rank_upper is None else r.rank_upper,
            ]
        )
    return response


# A spreadsheet runs a cell that starts with one of these as a formula (OWASP, "CSV Injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(text: str) -> str:
    """A text cell as a spreadsheet shows it but never runs it: a leading quote before a formula.

    For the cells whose text comes from people (names, organisations, licences); figures this view
    formats itself are left as they are.
    """
    return f"'{text}" if text.startswith(FORMULA_STARTS) else text


class BoardQuerySerializer(serializers.Serializer):
    board = serializers.CharField(
        max_length=64,
        required=False,
        help_text="The board: style (the default once it has a snapshot), overall, coding, hard, "
        "long-query, multi-turn, vision, or language-<code> (language-en, language-zh, ...).",
    )


def board_of(request: Request) -> str:
    query = BoardQuerySerializer(data=request.query_params)
    query.is_valid(raise_exception=True)
    return query.validated_data.get("board") or default_board()


class LeaderboardApi(APIView):
    class OutputSerializer(serializers.Serializer):
        class SnapshotSerializer(serializers.Serializer):
            id = serializers.IntegerField()
            created = serializers.DateTimeField()
            votes = serializers.IntegerField()
            votes_digest = serializers.CharField()
            method = serializers.CharField()
            weights = serializers.CharField(
                help_text="How each vote was weighted: propensity (1 / the probability its pair was "
                "drawn), pair-frequency (1 / its pair's battles, at least 50) or none."
            )
            params = serializers.DictField()
            excluded = serializers.DictField(child=serializers.IntegerField())
            age_seconds = serializers.IntegerField(help_text="Seconds since this snapshot was computed.")
            stale = serializers.BooleanField(
                help_text="True when a vote has waited longer than this site's bound for a "
                "recompute (the readiness check's): the board is behind its votes."
            )

        class RatingSerializer(serializers.Serializer):
            rank = serializers.IntegerField(help_text="The best rank the intervals allow.")
            rank_upper = serializers.IntegerField(
                allow_null=True, help_text="The worst rank the intervals allow (null on older snapshots)."
            )
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
        summary="A board: the newest snapshot and its ranked models",
        description="The newest published snapshot of a board (`overall` by default; others by "
        "category, such as `coding` or `language-en`) and each model's rank, rating and 95% "
        "interval. `excluded` counts the votes it left out, by reason. Without a snapshot yet, "
        "`snapshot` is null and `models` empty.",
        parameters=[BoardQuerySerializer],
        responses={200: OpenApiResponse(OutputSerializer, description="The board."), **errors(400)},
    )
    def get(self, request: Request) -> Response:
        snapshot = latest_snapshot(board_of(request))
        if snapshot is None:
            return Response({"snapshot": None, "models": []})
        age = snapshot_age(snapshot.created)
        return Response(
            {
                "snapshot": {
                    "id": snapshot.pk,
                    "created": snapshot.created,
                    "votes": snapshot.votes,
                    "votes_digest": snapshot.votes_digest,
                    "method": snapshot.method,
                    "weights": snapshot.weights,
                    "params": snapshot.public_params,
                    "excluded": snapshot.excluded,
                    "age_seconds": age["age_seconds"],
                    "stale": age["stale"],
                },
                "models": [
                    {
                        "rank": r.rank,
                        "rank_upper": r.rank_upper,
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
        summary="Every published snapshot, newest first",
        description="Every snapshot ever published (one board with `board`), newest first, a page "
        "at a time. Its `digest` identifies the votes it counted; its ratings are at "
        "`/api/v1/leaderboard/snapshots/{snapshot_id}/csv` and its votes at `…/votes`.",
        parameters=[BoardQuerySerializer],
        responses={
            200: OpenApiResponse(OutputSerializer(many=True), description="A page of snapshots."),
            **errors(400),
        },
    )
    def get(self, request: Request) -> Response:
        return super().get(request)

    def get_queryset(self) -> SnapshotQuerySet:
        snapshots = Snapshot.objects.latest_first()
        if "board" in self.request.query_params:
            snapshots = snapshots.of_board(board_of(self.request))
        return snapshots
