"""An operator answers a visitor's data request from the admin: everything stored about them as
JSON, or forgetting them; each leaves a line in the admin's log, and only staff may do either."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from django.contrib.admin.models import CHANGE, DELETION, LogEntry
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from arena.models import Answer, AnswerAttempt, Battle, Turn, Visitor, Vote, VoterFlag
from arena.reasons import VoteReason
from leaderboard import services
from providers.models import LLM, FlaggedPrompt

pytestmark = pytest.mark.django_db

HASH = "v" * 64
OTHER = "w" * 64
CHANGELIST = "/admin/arena/visitor/"


@pytest.fixture
def visitor_data(make_llm: Callable[..., LLM]) -> dict:
    """A visitor with a voted battle (one vote left out as too fast), an unvoted one, an earlier
    try, a flag and a refused prompt; and another visitor's battle."""
    a, b = make_llm(), make_llm()
    Visitor.objects.create(pk=HASH, terms_version="1", terms_accepted_at=timezone.now())
    Visitor.objects.create(pk=OTHER, terms_version="1", terms_accepted_at=timezone.now())
    voted = Battle.objects.create(
        model_a=a, model_b=b, visitor_hash=HASH, network_hash="n1", prompt_hash="p1"
    )
    turn = voted.open_turn(0, "My secret plan for the garden")
    Answer.objects.filter(turn=turn, side="a").update(text="Plant tomatoes", error="")
    AnswerAttempt.objects.create(
        turn=turn, side="b", attempt=1, llm=b, text="An earlier try", status="failed"
    )
    Battle.objects.filter(pk=voted.pk).update(state=Battle.State.VOTED)
    voted.refresh_from_db()
    vote = Vote.objects.create(battle=voted, winner="a", excluded=Vote.Exclusion.TOO_FAST)
    VoteReason.objects.create(vote=vote, tags=["accurate"], comment="Tomatoes, of course")
    chat = Battle.objects.create(model_a=a, model_b=None, mode=Battle.Mode.DIRECT, visitor_hash=HASH)
    chat.open_turn(0, "A direct question")
    open_battle = Battle.objects.create(model_a=a, model_b=b, visitor_hash=HASH)
    open_battle.open_turn(0, "An unanswered question")
    VoterFlag.objects.create(kind=VoterFlag.Kind.VISITOR, voter_hash=HASH, votes=1)
    FlaggedPrompt.objects.create(
        prompt="a refused prompt", categories=["violence"], backend="local", visitor=HASH
    )
    theirs = Battle.objects.create(model_a=a, model_b=b, visitor_hash=OTHER, state=Battle.State.VOTED)
    theirs.open_turn(0, "Someone else's prompt")
    Vote.objects.create(battle=theirs, winner="b")
    return {"voted": voted, "open": open_battle, "chat": chat, "theirs": theirs}


def act(client: Client, action: str, *hashes: str):
    return client.post(CHANGELIST, {"action": action, "_selected_action": list(hashes)})


def test_an_operator_exports_everything_stored_about_a_visitor(
    visitor_data: dict, admin_client: Client
) -> None:
    response = act(admin_client, "export_data", HASH)
    assert response.status_code == 200
    assert response["Content-Disposition"] == f'attachment; filename="visitor-{HASH[:12]}.json"'
    body = json.loads(response.content)
    assert body["visitor"] == HASH and body["terms"]["version"] == "1"
    battles = {b["id"]: b for b in body["battles"]}
    assert set(battles) == {str(visitor_data[k].pk) for k in ("voted", "open", "chat")}
    assert battles[str(visitor_data["chat"].pk)]["model_b"] is None
    voted = battles[str(visitor_data["voted"].pk)]
    assert voted["turns"][0]["prompt"] == "My secret plan for the garden"
    assert {a["side"]: a["text"] for a in voted["turns"][0]["answers"]}["a"] == "Plant tomatoes"
    assert voted["turns"][0]["replaced"][0]["text"] == "An earlier try"
    (vote,) = voted["votes"]
    assert vote["winner"] == "a" and vote["excluded"] == "too_fast" and vote["excluded_reason"]
    assert vote["reasons"] == {"tags": ["accurate"], "comment": "Tomatoes, of course"}
    assert body["flags"][0]["votes"] == 1
    assert body["refused_prompts"][0]["prompt"] == "a refused prompt"
    assert "Someone else's prompt" not in response.content.decode()
    entry = LogEntry.objects.get()
    assert (entry.action_flag, entry.object_id, entry.user.username) == (CHANGE, HASH, "admin")
    assert "Exported" in entry.change_message


def test_an_operator_forgets_a_visitor_and_the_board_keeps_their_vote_anonymous(
    visitor_data: dict, admin_client: Client, settings
) -> None:
    settings.LEADERBOARD_RECOMPUTE_ON_VOTE = False
    before = services.recompute()
    assert before is not None and before.votes == 1  # the other visitor's; theirs is excluded
    response = act(admin_client, "forget", HASH)
    assert response.status_code == 302
    assert not Visitor.objects.filter(pk=HASH).exists()
    assert not Battle.objects.filter(pk=visitor_data["open"].pk).exists()
    voted = Battle.objects.get(pk=visitor_data["voted"].pk)
    assert (voted.visitor_hash, voted.network_hash, voted.prompt_hash) == ("", "", "")
    assert list(Turn.objects.filter(battle=voted).values_list("prompt", flat=True)) == [""]
    assert set(Answer.objects.filter(turn__battle=voted).values_list("text", flat=True)) == {""}
    assert set(AnswerAttempt.objects.filter(turn__battle=voted).values_list("text", flat=True)) == {""}
    assert Vote.objects.filter(battle=voted, winner="a", excluded="too_fast").exists()
    assert not FlaggedPrompt.objects.filter(visitor=HASH).exists()
    # The other visitor is untouched, and a recompute counts what it counted before.
    assert Turn.objects.get(battle=visitor_data["theirs"]).prompt == "Someone else's prompt"
    assert Visitor.objects.filter(pk=OTHER).exists()
    assert services.recompute() is None, "forgetting changed what the board counts"
    entry = LogEntry.objects.get()
    assert (entry.action_flag, entry.object_id, entry.user.username) == (DELETION, HASH, "admin")
    assert not any("garden" in str(v) for v in LogEntry.objects.values_list("object_repr", "change_message"))


@pytest.mark.parametrize("action", ["export_data", "forget"])
def test_a_user_who_is_not_staff_can_neither_export_nor_forget(
    visitor_data: dict, client: Client, action: str
) -> None:
    user = User.objects.create_user("visitor-user", password="pw")
    client.force_login(user)
    response = act(client, action, HASH)
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    assert b"garden" not in response.content
    assert Visitor.objects.filter(pk=HASH).exists() and Battle.objects.filter(visitor_hash=HASH).count() == 3
    assert not LogEntry.objects.exists()


def test_staff_without_the_delete_permission_may_not_forget(visitor_data: dict, client: Client) -> None:
    from django.contrib.auth.models import Permission

    user = User.objects.create_user("reader", password="pw", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_visitor"))
    client.force_login(user)
    response = act(client, "forget", HASH)
    assert (response.status_code, response["Location"]) == (302, CHANGELIST)  # not an action of theirs
    assert Visitor.objects.filter(pk=HASH).exists() and Battle.objects.filter(visitor_hash=HASH).count() == 3
    assert not LogEntry.objects.exists()
