"""Reasons given with a vote (arena.reasons): stored beside it, refused whole when bad, exported,
erased with the visitor's data, and never read by a board."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.core import signing
from django.test import Client
from django.utils import timezone

from arena import services
from arena.models import Answer, AnswerAttempt, Battle, Vote
from arena.reasons import COMMENT_MAX_CHARS, TAGS, VoteReason
from arena.views import _VISITOR_SALT, VISITOR_COOKIE
from arena.visitors import forget_visitor
from leaderboard import services as board_services
from leaderboard.dumps import export_lines
from leaderboard.models import Snapshot
from providers.models import LLM
from tests.factories import voted_battle

pytestmark = pytest.mark.django_db


def visitor_client() -> tuple[Client, str]:
    """A client with a visitor cookie, and that visitor's hash."""
    token = secrets.token_urlsafe(16)
    client = Client()
    client.cookies[VISITOR_COOKIE] = signing.get_cookie_signer(salt=VISITOR_COOKIE + _VISITOR_SALT).sign(
        token
    )
    return client, services.visitor_hash(token)


def answered(a: LLM, b: LLM, visitor: str, *, turns: int = 1, failed_last: bool = False) -> Battle:
    """A battle of `turns` turns, both answers done long ago; the last one failed if asked."""
    battle = Battle.objects.create(model_a=a, model_b=b, visitor_hash=visitor)
    long_ago = timezone.now() - timedelta(hours=1)
    for index in range(turns):
        turn = battle.open_turn(index, f"Question {index}?")
        turn.answers.update(status=Answer.Status.DONE, text="An answer.", finished=long_ago)
    if failed_last:
        turn.answers.filter(side="b").update(status=Answer.Status.ERROR, text="")
    battle.state = Battle.State.FAILED if failed_last else Battle.State.READY
    battle.save(update_fields=["state"])
    return battle


def vote(client: Client, battle: Battle, **body: Any) -> Any:
    return client.post(f"/api/v1/battles/{battle.id}/vote/", body, content_type="application/json")


def test_a_vote_stores_its_tags_in_a_fixed_order_and_its_comment_cleaned(
    make_llm: Callable[..., LLM],
) -> None:
    client, visitor = visitor_client()
    battle = answered(make_llm(), make_llm(), visitor)

    response = vote(
        client, battle, winner="a", tags=["clear", "accurate"], comment="  Short\u200b and right.  "
    )

    assert response.status_code == 200, response.content
    reason = VoteReason.objects.get(vote__battle=battle)
    assert reason.tags == ["accurate", "clear"]
    assert reason.comment == "Short and right."
    # Reopening the battle gives its visitor the reasons back; a vote without any gives the verdict alone.
    detail = client.get(f"/api/v1/battles/{battle.id}/").json()
    assert detail["vote"] == {"winner": "a", "tags": ["accurate", "clear"], "comment": "Short and right."}


def test_a_vote_without_reasons_stores_none(make_llm: Callable[..., LLM]) -> None:
    client, visitor = visitor_client()
    battle = answered(make_llm(), make_llm(), visitor)
    assert vote(client, battle, winner="tie", tags=[], comment="   ").status_code == 200
    assert Vote.objects.filter(battle=battle).exists() and not VoteReason.objects.exists()
    assert client.get(f"/api/v1/battles/{battle.id}/").json()["vote"] == {"winner": "tie"}


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"tags": ["accurate", "brilliant"]}, "unknown_tag"),
        ({"tags": "accurate"}, "bad_tags"),
        ({"tags": [1]}, "bad_tags"),
        ({"tags": {"accurate": True}}, "bad_tags"),
        ({"tags": ["clear", "clear"]}, "duplicate_tag"),
        ({"comment": "x" * (COMMENT_MAX_CHARS + 1)}, "comment_too_long"),
        ({"comment": ["a list"]}, "bad_comment"),
        ({"comment": 42}, "bad_comment"),
        # Local moderation's spam rule: nothing but links.
        ({"comment": "https://a.example/x https://b.example/y https://c.example/z"}, "comment_refused"),
    ],
)
def test_bad_reasons_refuse_the_whole_vote_and_store_nothing(
    make_llm: Callable[..., LLM], body: dict[str, Any], code: str
) -> None:
    client, visitor = visitor_client()
    battle = answered(make_llm(), make_llm(), visitor)

    response = vote(client, battle, winner="a", **body)

    assert response.status_code == 400
    assert response.json()["code"] == code and response.json()["detail"]
    assert not Vote.objects.exists() and not VoteReason.objects.exists()
    battle.refresh_from_db()
    assert battle.state == Battle.State.READY  # the visitor may vote again, without the bad reason
    assert vote(client, battle, winner="a").status_code == 200


def test_a_long_comment_of_invisible_characters_counts_only_what_shows(make_llm: Callable[..., LLM]) -> None:
    client, visitor = visitor_client()
    battle = answered(make_llm(), make_llm(), visitor)
    comment = "y" * COMMENT_MAX_CHARS + "\u200b" * 50
    assert vote(client, battle, winner="b", comment=comment).status_code == 200
    assert VoteReason.objects.get().comment == "y" * COMMENT_MAX_CHARS


def test_the_export_carries_the_reasons_and_counts_only_the_turns_the_vote_covers(
    make_llm: Callable[..., LLM],
) -> None:
    client, visitor = visitor_client()
    a, b = make_llm(), make_llm()
    covered = answered(a, b, visitor, turns=3, failed_last=True)  # votes on the two turns before
    whole = answered(a, b, visitor, turns=2)
    assert vote(client, covered, winner="a", tags=["safe", "complete"], comment="Fine.").status_code == 200
    assert vote(client, whole, winner="b").status_code == 200

    records = {r["question_id"]: r for r in map(json.loads, export_lines(Vote.objects.all()))}

    assert records[str(covered.id)]["turn"] == 2
    assert records[str(covered.id)]["reason_tags"] == ["complete", "safe"]
    assert records[str(covered.id)]["reason_comment"] == "Fine."
    assert records[str(whole.id)]["turn"] == 2
    assert records[str(whole.id)]["reason_tags"] == [] and records[str(whole.id)]["reason_comment"] == ""


def test_a_failed_retry_replaced_by_a_good_one_still_counts_its_turn(make_llm: Callable[..., LLM]) -> None:
    client, visitor = visitor_client()
    battle = answered(make_llm(), make_llm(), visitor, turns=2)
    turn = battle.turns.get(index=1)
    AnswerAttempt.objects.create(turn=turn, side="a", attempt=1, reason="retry", status=Answer.Status.ERROR)
    assert vote(client, battle, winner="a").status_code == 200
    (record,) = map(json.loads, export_lines(Vote.objects.all()))
    assert record["turn"] == 2


def test_forgetting_the_visitor_erases_the_comment_and_keeps_the_tags(make_llm: Callable[..., LLM]) -> None:
    client, visitor = visitor_client()
    battle = answered(make_llm(), make_llm(), visitor)
    assert vote(client, battle, winner="a", tags=["creative"], comment="My name is Ann.").status_code == 200
    download = client.get("/api/v1/visitor/data").json()
    assert json.dumps(download).count("My name is Ann.") == 1

    forget_visitor(visitor=visitor)

    reason = VoteReason.objects.get()
    assert reason.comment == "" and reason.tags == ["creative"]


def test_reasons_never_change_the_board(make_llm: Callable[..., LLM], settings: Any) -> None:
    settings.LEADERBOARD_BOOTSTRAP = 20
    strong, middle, weak = make_llm(name="strong"), make_llm(name="middle"), make_llm(name="weak")
    votes = []
    for _ in range(8):
        votes += [voted_battle(strong, middle, "a"), voted_battle(middle, weak, "a")]
        votes += [voted_battle(weak, strong, "b"), voted_battle(middle, strong, "a")]
    votes.append(voted_battle(strong, weak, "tie"))

    def board() -> tuple[Any, ...]:
        snapshot = board_services.recompute()
        assert snapshot is not None
        ratings = snapshot.ratings.order_by("llm_id").values_list("llm_id", "rating", "votes", "rank")
        return snapshot.votes, snapshot.votes_digest, [(i, round(r, 9), v, k) for i, r, v, k in ratings]

    without = board()
    Snapshot.objects.all().delete()  # so that the same votes are fitted and published again
    for k, v in enumerate(votes):
        VoteReason.objects.create(vote=v, tags=list(TAGS)[k % len(TAGS) :], comment="why " * (k % 5))
    with_reasons = board()

    assert with_reasons == without


def test_the_schema_documents_the_reasons_a_vote_takes(client: Client) -> None:
    schema = client.get("/api/v1/schema/?format=json").json()
    body = schema["paths"]["/api/v1/battles/{battle_id}/vote/"]["post"]["requestBody"]
    ref = body["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    vote_input = schema["components"]["schemas"][ref]
    items = vote_input["properties"]["tags"]["items"]
    if "$ref" in items:  # the enum is a component of its own
        items = schema["components"]["schemas"][items["$ref"].rsplit("/", 1)[-1]]
    assert items["enum"] == list(TAGS)
    assert vote_input["properties"]["comment"]["maxLength"] == COMMENT_MAX_CHARS
    assert vote_input["required"] == ["winner"]
