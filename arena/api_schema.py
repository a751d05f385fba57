"""What the OpenAPI schema says of the battle API: the shapes its views build by hand, and the
event stream. Read by the views' `extend_schema` decorators only; nothing here runs on a request.
"""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    PolymorphicProxySerializer,
    extend_schema,
)
from rest_framework import serializers

from arena import reasons
from arena.models import Answer, Battle, Vote
from config.schema import errors, plain_view_schema

BATTLE_ID = OpenApiParameter(
    "battle_id",
    OpenApiTypes.UUID,
    OpenApiParameter.PATH,
    description="The battle's id, as `POST /api/v1/battles/` returned it. Another visitor's battle is a 404.",
)

VISITOR_COOKIE = (
    "The battle belongs to the visitor who opened it: send the `arena_visitor` cookie that "
    "`POST /api/v1/battles/` (or `POST /api/v1/visitor/consent`) set."
)


class RevealedModelSerializer(serializers.Serializer):
    name = serializers.CharField(help_text="Its public name; empty for an unreleased model under test.")
    label = serializers.CharField(help_text="The name shown to people.")
    organization = serializers.CharField(allow_blank=True)
    license = serializers.CharField(allow_blank=True)
    demo = serializers.BooleanField(help_text="A scripted demo model, not a real one.")


class BattleModelsSerializer(serializers.Serializer):
    model_a = RevealedModelSerializer(
        allow_null=True, help_text="Null until names are shown: after the vote, or at once in named mode."
    )
    model_b = RevealedModelSerializer(allow_null=True, help_text="As model_a; always null in a direct chat.")


class BattleCreateInputSerializer(serializers.Serializer):
    prompt = serializers.CharField(help_text="The first prompt, sent to both models.")
    mode = serializers.ChoiceField(
        choices=Battle.Mode.choices,
        default=Battle.Mode.ANONYMOUS,
        help_text="anonymous: two models drawn at random, names shown after the vote. named: the "
        "two you pick, names shown at once; named votes count on no board. direct: a chat with the "
        "one model named as model_a, answered on side A only; it takes no vote.",
    )
    model_a = serializers.CharField(
        required=False, help_text="Named and direct mode: a name from `GET /api/v1/models/`."
    )
    model_b = serializers.CharField(required=False, help_text="Named mode: another name from that list.")
    challenge = serializers.CharField(
        required=False,
        help_text="The solved challenge of `GET /api/v1/challenge/` (base64 JSON), or a bot check's "
        "token, when the site asks for one. It may come in the `X-Arena-Challenge` header instead.",
    )


class BattleCreateFormSerializer(BattleCreateInputSerializer):
    image = serializers.FileField(
        required=False,
        help_text="An image the first prompt carries: PNG, JPEG, WebP (still) or GIF (its first "
        "frame), at most 5 MB, 4096 pixels a side and 16 million pixels by default. "
        "Metadata such as EXIF is removed before it is stored or sent. Only models that read "
        "images are drawn (or may be named); it is never sent to another.",
    )


class BattleCreatedSerializer(BattleModelsSerializer):
    id = serializers.UUIDField()
    mode = serializers.ChoiceField(choices=Battle.Mode.choices)
    state = serializers.ChoiceField(choices=Battle.State.choices)


class AnswerSerializer(serializers.Serializer):
    text = serializers.CharField(allow_blank=True)
    status = serializers.ChoiceField(choices=Answer.Status.choices)
    finish_reason = serializers.CharField(
        allow_blank=True, help_text="stop, length or error; the vendor's own reason only after the vote."
    )


class TurnAnswersSerializer(serializers.Serializer):
    a = AnswerSerializer()
    b = AnswerSerializer(required=False, help_text="Absent in a direct chat, which has side A only.")


class TurnSerializer(serializers.Serializer):
    index = serializers.IntegerField(help_text="0 for the first prompt, then one per follow-up.")
    prompt = serializers.CharField()
    answers = TurnAnswersSerializer()


class VoteWinnerSerializer(serializers.Serializer):
    winner = serializers.ChoiceField(choices=Vote.Winner.choices)
    tags = serializers.ListField(
        child=serializers.CharField(), required=False, help_text="The reason tags sent with the vote, if any."
    )
    comment = serializers.CharField(required=False, help_text="The comment sent with the vote, if any.")


class BattleDetailSerializer(BattleCreatedSerializer):
    turns = TurnSerializer(many=True)
    image = serializers.CharField(
        allow_null=True, help_text="The address of the image the first prompt carried, or null."
    )
    vote = VoteWinnerSerializer(allow_null=True)


class TurnCreateInputSerializer(serializers.Serializer):
    prompt = serializers.CharField(help_text="The follow-up, sent to both models.")


class TurnCreatedSerializer(serializers.Serializer):
    index = serializers.IntegerField(help_text="The new turn's index.")
    state = serializers.ChoiceField(choices=Battle.State.choices)


class VoteInputSerializer(serializers.Serializer):
    winner = serializers.ChoiceField(
        choices=Vote.Winner.choices, help_text="a or b: that answer was better; tie; bothbad."
    )
    tags = serializers.ListField(
        child=serializers.ChoiceField(choices=list(reasons.TAGS)),
        required=False,
        help_text="Optional reasons, each at most once: accurate, clear, complete, creative and safe "
        "describe the answer preferred (both, for a tie); wrong and unsafe the other (both, for "
        "bothbad).",
    )
    comment = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=reasons.COMMENT_MAX_CHARS,
        help_text=f"An optional short comment, at most {reasons.COMMENT_MAX_CHARS} characters once "
        "invisible characters are removed; moderated like a prompt. Published with the vote.",
    )


class VoteResultSerializer(BattleModelsSerializer, VoteWinnerSerializer):
    pass


class AltchaChallengeSerializer(serializers.Serializer):
    algorithm = serializers.CharField(help_text="SHA-256.")
    challenge = serializers.CharField(help_text="The hash to find: SHA-256 of the salt and a number.")
    maxNumber = serializers.IntegerField(help_text="The number lies between 0 and this.")
    salt = serializers.CharField(help_text="Carries the challenge's expiry and difficulty.")
    signature = serializers.CharField()


class BotCheckSerializer(serializers.Serializer):
    vendor = serializers.ChoiceField(
        choices=["turnstile", "hcaptcha", "recaptcha"], help_text="The vendor whose widget to show."
    )
    site_key = serializers.CharField(help_text="The widget's site key.")


CHALLENGE = PolymorphicProxySerializer(
    component_name="Challenge",
    serializers=[AltchaChallengeSerializer, BotCheckSerializer],
    resource_type_field_name=None,
)


# --- the event stream ------------------------------------------------------------------------------

# Each event's JSON by type: its sides, the fields beyond side/type/text, and what it means.
# arena.streaming writes them; tests/test_schema_contract.py holds a real stream to this table.
STREAM_EVENTS: dict[str, tuple[tuple[str | None, ...], tuple[str, ...], str]] = {
    "delta": (("a", "b"), (), "More of that side's answer, to append to what came before."),
    "done": (("a", "b"), (), "That side's answer ended well (`text` is empty)."),
    "error": (("a", "b"), (), "That side's answer failed; `text` says so, for people."),
    "end": (
        (None,),
        ("state",),
        "Both sides ended (`text` is empty). `state` is the battle's: `ready` (a vote is possible) "
        "or `failed` (or `voted`, replayed after the vote). The stream closes after it.",
    ),
}

STREAM_DESCRIPTION = (
    "Both answers of the battle's latest turn, as one stream of "
    "[server-sent events](https://html.spec.whatwg.org/multipage/server-sent-events.html). "
    "The models are called when the stream is opened; closing it early stops both calls. "
    "Opening it again once the turn has ended replays it whole.\n\n"
    'Every event is one `data:` line holding a JSON object `{"side", "type", "text"}` '
    "(no `event:` field: an `EventSource` receives each as a `message`):\n\n"
    "| type | side | more fields | meaning |\n|---|---|---|---|\n"
    + "".join(
        f"| `{kind}` | {' or '.join(f'`{side}`' if side else '`null`' for side in sides)} "
        f"| {', '.join(f'`{field}`' for field in extra) or '—'} | {meaning} |\n"
        for kind, (sides, extra, meaning) in STREAM_EVENTS.items()
    )
    + "\nThe two sides' events interleave; each side ends with one `done` or `error`, and `end` "
    "comes last. Until the vote, finish reasons and vendor errors are not told apart, and (as the "
    "site is set up by default) both sides are released on one schedule: neither the pace nor the "
    "errors tell the models apart.\n\n" + VISITOR_COOKIE
)

STREAM_EXAMPLE = (
    'data: {"side": "a", "type": "delta", "text": "Sunlight scatters"}\n\n'
    'data: {"side": "b", "type": "delta", "text": "Rayleigh scattering:"}\n\n'
    'data: {"side": "a", "type": "delta", "text": " off the air."}\n\n'
    'data: {"side": "a", "type": "done", "text": ""}\n\n'
    'data: {"side": "b", "type": "delta", "text": " short waves scatter more."}\n\n'
    'data: {"side": "b", "type": "done", "text": ""}\n\n'
    'data: {"side": null, "type": "end", "text": "", "state": "ready"}\n\n'
)

# One event, as OpenAPI 3.2 and schemathesis read a `text/event-stream` schema: its `data` and the
# SSE event name an EventSource dispatches it under.
STREAM_EVENT = {
    "type": "object",
    "description": "One server-sent event; its `data` is one JSON object, as the table above says.",
    "properties": {
        "event": {"type": "string", "enum": ["message"], "description": "No `event:` field is sent."},
        "data": {
            "type": "string",
            "description": 'JSON: `{"side", "type", "text"}`, and `state` at the end.',
        },
    },
    "required": ["data"],
}

STREAM_RESPONSE = OpenApiResponse(
    STREAM_EVENT,
    description="The event stream (`Cache-Control: no-cache`), open until the `end` event.",
    examples=[OpenApiExample("A turn", value=STREAM_EXAMPLE, media_type="text/event-stream")],
)


# --- the operations ------------------------------------------------------------------------------

challenge = extend_schema(
    operation_id="challenge_create",
    summary="A challenge to solve before opening a battle",
    description="What `POST /api/v1/battles/` asks for as `challenge`, where the site asks for "
    "anything: an [ALTCHA](https://altcha.org) proof-of-work (find the number whose SHA-256 with "
    "the salt is `challenge`; one use, minutes to live; harder as this visitor's and this "
    "network's battles this hour grow), or the vendor and site key of a bot-check widget, whose "
    "token is then sent instead. 204 where no challenge is asked.",
    responses={
        200: OpenApiResponse(CHALLENGE, description="The challenge, or the bot check to pass."),
        204: OpenApiResponse(description="No challenge is asked: open battles without one."),
    },
)

battle_create = extend_schema(
    operation_id="battles_create",
    summary="Open a battle: one prompt, two models",
    description="Draws two distinct models (anonymous mode), or takes the two named ones (named "
    "mode) or the one named (direct mode: a chat on side A that takes no vote), and opens the "
    "first turn; the answers come from `GET /api/v1/battles/{battle_id}/stream`. "
    "Needs the terms accepted (`POST /api/v1/visitor/consent`) and, where the site asks, a solved "
    "challenge. Sets the `arena_visitor` cookie that owns the battle. The prompt is moderated "
    "before any model is called. Caps per visitor and per network: battles an hour, battles "
    "answering at once. To send an image with the prompt, post multipart/form-data with the same "
    "fields and an `image` file; a bad image is a 400 (413 when too large) with the reason, and "
    "nothing is stored.",
    request={
        "application/json": BattleCreateInputSerializer,
        "multipart/form-data": BattleCreateFormSerializer,
    },
    responses={
        201: OpenApiResponse(BattleCreatedSerializer, description="The battle, its turn waiting to stream."),
        **errors(400, 403, 413, 429, 503),
    },
)

battle_image = extend_schema(
    operation_id="battles_image_retrieve",
    summary="The image of a battle's first prompt",
    description="The image as stored (metadata removed), with its type; 404 when the battle has "
    "none. " + VISITOR_COOKIE,
    parameters=[BATTLE_ID],
    responses={
        (200, "image/*"): OpenApiResponse(OpenApiTypes.BINARY, description="The image."),
        **errors(404),
    },
)

battle_detail = extend_schema(
    operation_id="battles_retrieve",
    summary="A battle: its turns, answers and vote",
    description="The conversation so far. The models' names only once shown: after the vote, or "
    "at once in named mode. " + VISITOR_COOKIE,
    parameters=[BATTLE_ID],
    responses={200: OpenApiResponse(BattleDetailSerializer, description="The battle."), **errors(404)},
)

battle_turn = extend_schema(
    operation_id="battles_turns_create",
    summary="Ask both models a follow-up",
    description="A new turn, once both answers of the last one ended well and before the vote; "
    "each model sees its own earlier answers. Stream it like the first. Moderated like the first "
    "prompt, and rate-limited per client. " + VISITOR_COOKIE,
    parameters=[BATTLE_ID],
    request=TurnCreateInputSerializer,
    responses={
        201: OpenApiResponse(TurnCreatedSerializer, description="The turn, waiting to stream."),
        **errors(400, 404, 409, 413, 429, 503),
    },
)

battle_vote = extend_schema(
    operation_id="battles_vote_create",
    summary="Vote, and see which models answered",
    description="One vote per battle, once both answers ended well. The answer reveals both "
    "models. A vote is always kept; the board may leave it out (cast faster than both answers can "
    "be read, an answer that named its model, ...), and every snapshot counts those by reason. "
    "Optional reasons (tags, a comment) are stored with the vote and published in the vote export; "
    "they never change a rating. A bad tag or comment refuses the whole vote (400), so nothing is "
    "stored. Caps per visitor and per network: votes a day. " + VISITOR_COOKIE,
    parameters=[BATTLE_ID],
    request=VoteInputSerializer,
    responses={
        200: OpenApiResponse(VoteResultSerializer, description="The vote, with both models revealed."),
        **errors(400, 404, 409, 413, 429),
    },
)

battle_stream = plain_view_schema(
    operation_id="battles_stream",
    summary="Stream both answers (server-sent events)",
    description=STREAM_DESCRIPTION,
    parameters=[BATTLE_ID],
    responses={
        (200, "text/event-stream"): STREAM_RESPONSE,
        **errors(404, 409),
    },
)
