"""The provider REST API (private variants, `Authorization: Api-Key <key>`) and the public testing ledger.

Every query of the provider API is scoped to the key's organisation: another organisation's
variant is answered as if it did not exist. Views are thin; the rules live in providers.variants,
and what the votes say (results, battles, the ledger's shares) is read from the rows each
leaderboard recompute writes (providers.results, providers.ledger).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.core.validators import URLValidator
from django.utils.translation import gettext
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import exceptions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config.errors import NotFound
from config.schema import errors
from providers.auth import (
    APIKeyAuthentication,
    IsProvider,
    Provider,
    ProviderKeyThrottle,
    ProviderSubmitThrottle,
)
from providers.ledger import testing_ledger
from providers.models import LLM
from providers.registry import REMOTE_BACKENDS
from providers.results import private_result, results_of
from providers.variants import CODENAME, Endpoint, variant_publish, variant_retire, variant_submit

BACKENDS = list(REMOTE_BACKENDS)
MAX_TOKENS_LIMIT = 65536
# A database id: larger numbers are not ids, and SQLite cannot even compare with them.
MAX_ID = 2**63 - 1


class StrictSerializer(serializers.Serializer):
    """Refuses fields it does not know: a misspelt field, or one a provider may not set (a weight),
    is an error with a reason rather than silently ignored."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, Mapping):
            unknown = sorted(str(key) for key in data if key not in self.fields)
            if unknown:
                raise serializers.ValidationError({key: [gettext("Unknown field.")] for key in unknown})
        return super().to_internal_value(data)


class OpponentSerializer(serializers.Serializer):
    name = serializers.CharField()
    label = serializers.CharField()
    battles = serializers.IntegerField()
    wins = serializers.IntegerField()
    losses = serializers.IntegerField()
    ties = serializers.IntegerField(help_text="Ties and both-bad votes.")
    win_rate = serializers.FloatField(help_text="(wins + ties / 2) / battles")


class ResultSerializer(serializers.Serializer):
    rating = serializers.FloatField(help_text="On the public board's scale.")
    ci_lower = serializers.FloatField(help_text="95% bootstrap interval.")
    ci_upper = serializers.FloatField()
    rank = serializers.IntegerField(help_text="The rank it would have on the public board.")
    votes = serializers.IntegerField(help_text="Its counted votes against public models.")
    pool_models = serializers.IntegerField()
    opponents = OpponentSerializer(many=True)


class VotersSerializer(serializers.Serializer):
    visitors = serializers.IntegerField(help_text="Distinct visitors behind its counted votes.")
    networks = serializers.IntegerField(help_text="Distinct networks behind its counted votes.")
    top_visitor_share = serializers.FloatField(help_text="Share of its votes from its busiest visitor.")
    top_network_share = serializers.FloatField(help_text="Share of its votes from its busiest network.")
    concentrated = serializers.BooleanField(
        help_text="Its result is driven by few voters: one visitor or network cast too large a share."
    )


class VariantOutputSerializer(serializers.ModelSerializer):
    name = serializers.SerializerMethodField(help_text="Its public name, once published.")
    status = serializers.CharField(
        source="testing_status", help_text="testing, budget_reached, outage, published or retired."
    )
    state_reason = serializers.CharField(help_text="Why it is out of the draw, when in outage.")
    has_api_key = serializers.SerializerMethodField()
    votes = serializers.IntegerField(
        source="test_votes", help_text="Anonymous votes collected while private."
    )
    budget = serializers.SerializerMethodField(help_text="Votes it may collect while private.")
    battles = serializers.SerializerMethodField(help_text="Anonymous battles it was drawn into.")
    result = serializers.SerializerMethodField(help_text="Private result; null before its first vote.")
    voters = serializers.SerializerMethodField(help_text="Who cast the votes behind its private result.")

    class Meta:
        model = LLM
        fields = [
            "id",
            "codename",
            "name",
            "status",
            "state",
            "state_reason",
            "backend",
            "base_url",
            "model",
            "has_api_key",
            "temperature",
            "max_tokens",
            "notes",
            "weight",
            "votes",
            "budget",
            "battles",
            "created",
            "testing_started_at",
            "testing_ended_at",
            "published_at",
            "retired_at",
            "result",
            "voters",
        ]

    def get_name(self, variant: LLM) -> str | None:
        return variant.name if variant.published_at else None

    def get_has_api_key(self, variant: LLM) -> bool:
        return bool(variant.api_key_encrypted)

    def get_budget(self, variant: LLM) -> int:
        return settings.PROVIDER_VARIANT_BUDGET

    def get_battles(self, variant: LLM) -> int:
        return self.context.get("battles", {}).get(variant.pk, 0)

    @extend_schema_field(VotersSerializer(allow_null=True))
    def get_voters(self, variant: LLM) -> dict[str, Any] | None:
        row = self.context.get("rows", {}).get(variant.pk)
        return VotersSerializer(row).data if row is not None and "results" in self.context else None

    @extend_schema_field(ResultSerializer(allow_null=True))
    def get_result(self, variant: LLM) -> dict[str, Any] | None:
        result = self.context.get("results", {}).get(variant.pk)
        return ResultSerializer(result).data if result is not None else None


def variant_output(variants: list[LLM], *, with_results: bool = True) -> Any:
    """The output of several variants, with their battle counts and private results."""
    rows = results_of(variants)
    context: dict[str, Any] = {"battles": {pk: row.battles for pk, row in rows.items()}, "rows": rows}
    if with_results:
        context["results"] = {v.pk: private_result(v, rows.get(v.pk)) for v in variants}
    return VariantOutputSerializer(variants, many=True, context=context).data


class ProviderApi(APIView):
    """Base of the provider API: an organisation's key, throttled per key, scoped to it."""

    authentication_classes = [APIKeyAuthentication]
    permission_classes = [IsProvider]
    throttle_classes = [ProviderKeyThrottle]

    def permission_denied(
        self, request: Request, message: str | None = None, code: str | None = None
    ) -> None:
        if request.authenticators and not request.successful_authenticator:
            raise exceptions.NotAuthenticated(IsProvider.message)
        super().permission_denied(request, message=message, code=code)

    @property
    def provider(self) -> Provider:
        assert isinstance(self.request.user, Provider)
        return self.request.user

    def variant(self, variant_id: str) -> LLM:
        """One of the caller's variants; any other id, another organisation's included, is a 404."""
        pk = int(variant_id) if variant_id.isascii() and variant_id.isdigit() else 0
        variant = None
        if 0 < pk <= MAX_ID:
            variant = LLM.objects.variants().of_organization(self.provider.organization).filter(pk=pk).first()
        if variant is None:
            raise NotFound(gettext("No such variant."), code="no_such_variant")
        return variant

    def check_may_release(self) -> None:
        if not self.provider.may_release:
            raise exceptions.PermissionDenied(
                gettext(
                    "Only an owner's key may publish or retire a variant; this key was issued to a member."
                )
            )


VARIANT_ID = OpenApiParameter("variant_id", int, OpenApiParameter.PATH, description="The variant's id.")
KEYED = (
    " Authenticated by an organisation's key (`Authorization: Api-Key <key>`), throttled per key; "
    "the key sees its own organisation's variants only."
)


class VariantListApi(ProviderApi):
    @extend_schema(
        operation_id="provider_variants_list",
        summary="Your organisation's variants",
        description="Every variant your organisation submitted, newest first, each with its "
        "status, votes, battles and private result." + KEYED,
        responses={
            200: OpenApiResponse(VariantOutputSerializer(many=True), description="The variants."),
            **errors(401, 429),
        },
    )
    def get(self, request: Request) -> Response:
        variants = list(
            LLM.objects.variants().of_organization(self.provider.organization).order_by("-created")
        )
        return Response(variant_output(variants))


class VariantCreateApi(ProviderApi):
    throttle_classes = [ProviderKeyThrottle, ProviderSubmitThrottle]

    class InputSerializer(StrictSerializer):
        codename = serializers.RegexField(
            CODENAME,
            max_length=40,
            help_text="Your name for it: letters, digits, '.', '_' and '-', up to 40.",
            error_messages={
                "invalid": "Use letters, digits, '.', '_' and '-' (starting with a letter or digit)."
            },
        )
        backend = serializers.ChoiceField(choices=BACKENDS)
        base_url = serializers.URLField(
            max_length=500,
            validators=[
                URLValidator(schemes=["http", "https"], message="Enter an http:// or https:// address.")
            ],
            help_text="The API root, e.g. https://api.example.com/v1",
        )
        model = serializers.CharField(max_length=200, help_text="The model id sent upstream.")
        api_key = serializers.RegexField(
            r"\A[\x21-\x7e]*\Z",
            max_length=1000,
            required=False,
            allow_blank=True,
            write_only=True,
            help_text="Sent as the endpoint's bearer key. Stored encrypted; never returned or logged.",
            error_messages={"invalid": "The key must be printable ASCII without spaces."},
        )
        temperature = serializers.FloatField(min_value=0, max_value=2, default=0.7)
        max_tokens = serializers.IntegerField(min_value=1, max_value=MAX_TOKENS_LIMIT, default=1024)
        notes = serializers.CharField(max_length=2000, required=False, allow_blank=True, default="")

    @extend_schema(
        operation_id="provider_variants_create",
        summary="Submit a private variant (its endpoint is probed first)",
        description="A new variant under test: it joins the anonymous draw under its codename, "
        "seen by your organisation only, until it is published or retired or its vote budget is "
        "spent. Its endpoint is probed at once with a tiny request; one that cannot be reached or "
        "does not answer in the backend's wire format is refused with the reason. Unknown fields "
        "are refused, not ignored." + KEYED,
        request=InputSerializer,
        responses={
            201: OpenApiResponse(VariantOutputSerializer, description="The variant, in testing."),
            **errors(400, 401, 409, 413, 429),
        },
    )
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        variant = variant_submit(
            organization=self.provider.organization,
            codename=values["codename"],
            notes=values["notes"],
            endpoint=Endpoint(
                backend=values["backend"],
                base_url=values["base_url"],
                model=values["model"],
                api_key=values.get("api_key", ""),
                temperature=values["temperature"],
                max_tokens=values["max_tokens"],
            ),
        )
        return Response(variant_output([variant], with_results=False)[0], status=status.HTTP_201_CREATED)


class VariantsApi(VariantListApi, VariantCreateApi):
    """GET lists, POST submits: two actions on one path."""


class VariantDetailApi(ProviderApi):
    @extend_schema(
        operation_id="provider_variants_retrieve",
        summary="One of your variants, with its private result",
        description="The variant and, once it has votes, its private result: rating and 95% "
        "interval on the public board's scale, the rank it would have, its record against each "
        "public opponent, and how concentrated its voters are." + KEYED,
        parameters=[VARIANT_ID],
        responses={
            200: OpenApiResponse(VariantOutputSerializer, description="The variant."),
            **errors(401, 404, 429),
        },
    )
    def get(self, request: Request, variant_id: str) -> Response:
        return Response(variant_output([self.variant(variant_id)])[0])


class VariantPublishApi(ProviderApi):
    class InputSerializer(StrictSerializer):
        name = serializers.CharField(
            max_length=100,
            required=False,
            trim_whitespace=False,
            help_text="Its public name; its codename if left out.",
        )

    @extend_schema(
        operation_id="provider_variants_publish",
        summary="Publish a variant under a public name (owners only)",
        description="The variant goes public under `name` (its codename if left out). On the "
        "public board it counts only votes cast after publication, and is provisional until it has "
        "enough of them. Only an owner's key may publish; a name taken, or too like another model's, "
        "is a 409." + KEYED,
        parameters=[VARIANT_ID],
        request=InputSerializer,
        responses={
            200: OpenApiResponse(VariantOutputSerializer, description="The variant, published."),
            **errors(400, 401, 403, 404, 409, 413, 429),
        },
    )
    def post(self, request: Request, variant_id: str) -> Response:
        variant = self.variant(variant_id)
        self.check_may_release()
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        variant = variant_publish(variant=variant, name=data.validated_data.get("name"))
        return Response(variant_output([variant])[0])


class VariantRetireApi(ProviderApi):
    class InputSerializer(StrictSerializer):
        pass

    @extend_schema(
        operation_id="provider_variants_retire",
        summary="Retire a variant: it leaves the draw for good, its record stays (owners only)",
        description="The variant is drawn into no more battles; its votes and the testing "
        "ledger's record of it stay. Only an owner's key may retire; it cannot be undone." + KEYED,
        parameters=[VARIANT_ID],
        request=InputSerializer,
        responses={
            200: OpenApiResponse(VariantOutputSerializer, description="The variant, retired."),
            **errors(400, 401, 403, 404, 409, 413, 429),
        },
    )
    def post(self, request: Request, variant_id: str) -> Response:
        variant = self.variant(variant_id)
        self.check_may_release()
        self.InputSerializer(data=request.data).is_valid(raise_exception=True)
        variant = variant_retire(variant=variant)
        return Response(variant_output([variant])[0])


# --- the public testing ledger --------------------------------------------------------------------


class LedgerResultSerializer(serializers.Serializer):
    rating = serializers.FloatField()
    ci_lower = serializers.FloatField()
    ci_upper = serializers.FloatField()
    votes = serializers.IntegerField()


class LedgerVariantSerializer(serializers.Serializer):
    codename = serializers.CharField(allow_null=True, help_text="Shown once disclosed or published.")
    name = serializers.CharField(allow_null=True, help_text="Its public name, once published.")
    status = serializers.CharField()
    testing_started_at = serializers.DateTimeField(allow_null=True)
    testing_ended_at = serializers.DateTimeField(allow_null=True)
    published_at = serializers.DateTimeField(allow_null=True)
    retired_at = serializers.DateTimeField(allow_null=True)
    votes = serializers.IntegerField()
    disclosed = serializers.BooleanField()
    result = LedgerResultSerializer(allow_null=True, help_text="Its final rating, once disclosed.")


class LedgerOrganizationSerializer(serializers.Serializer):
    name = serializers.CharField()
    slug = serializers.CharField()
    variants_tested = serializers.IntegerField()
    variants_published = serializers.IntegerField()
    votes = serializers.IntegerField(help_text="Votes on battles with its variants while private.")
    battle_share = serializers.FloatField(help_text="Those votes over all anonymous votes.")
    variants = LedgerVariantSerializer(many=True)


class LedgerRulesSerializer(serializers.Serializer):
    disclosure_min_votes = serializers.IntegerField()
    disclosure_delay_days = serializers.IntegerField()
    variant_budget = serializers.IntegerField()
    max_variants_under_test = serializers.IntegerField()
    fresh_votes = serializers.IntegerField()


class TestingLedgerApi(APIView):
    class OutputSerializer(serializers.Serializer):
        rules = LedgerRulesSerializer()
        organizations = LedgerOrganizationSerializer(many=True)

    @extend_schema(
        operation_id="testing_ledger",
        summary="Every organisation's tested variants",
        description="The public record of provider testing: the rules in force, and for each "
        "organisation the variants whose testing ended, their votes and share of all anonymous votes, and "
        "once disclosed each variant's codename and final result (with enough votes: once its "
        "organisation publishes a later variant, or after the disclosure delay). No key needed.",
        responses=OpenApiResponse(OutputSerializer, description="The ledger."),
    )
    def get(self, request: Request) -> Response:
        body = {"rules": ledger_rules(), "organizations": testing_ledger()}
        return Response(self.OutputSerializer(body).data)


def ledger_rules() -> dict[str, int]:
    return {
        "disclosure_min_votes": settings.PROVIDER_DISCLOSURE_MIN_VOTES,
        "disclosure_delay_days": settings.PROVIDER_DISCLOSURE_DELAY_DAYS,
        "variant_budget": settings.PROVIDER_VARIANT_BUDGET,
        "max_variants_under_test": settings.PROVIDER_MAX_VARIANTS_UNDER_TEST,
        "fresh_votes": settings.PROVIDER_FRESH_VOTES,
    }
