"""History cannot be rewritten by accident in the admin: battles, their turns, answers and votes are
shown, never changed or deleted; every operator action that changes what is counted or drawn is a
record shown in the admin."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.test import Client

from arena.models import Answer, Battle, Vote, VoterFlag, VoterFlagAction
from providers.models import LLM
from tests.factories import voted_battle


@pytest.fixture
def voted(make_llm: Callable[..., LLM]) -> Vote:
    """A voted battle with one turn and its two answers."""
    vote = voted_battle(make_llm(), make_llm(), "a")
    vote.battle.open_turn(0, "Why is the sky blue?")
    return vote


def form_data(client: Client, url: str) -> dict[str, Any]:
    """What the change form at `url` would post back unchanged."""
    form = client.get(url).context["adminform"].form
    return {name: value for name, value in form.initial.items() if value is not None and value is not False}


def test_a_voted_battle_is_shown_but_its_change_form_refuses_edits_and_deletes(
    voted: Vote, admin_client: Client, make_llm: Callable[..., LLM]
) -> None:
    battle = voted.battle
    url = f"/admin/arena/battle/{battle.pk}/change/"
    page = admin_client.get(url)
    assert page.status_code == 200
    assert page.context["title"] == "View battle"  # read-only: no form to save
    assert b'name="_save"' not in page.content and b"Delete" not in page.content
    assert b"Why is the sky blue?" in page.content  # its turn, shown inline

    other = make_llm()
    edit = {"mode": "named", "model_a": other.pk, "model_b": battle.model_b_id, "state": "ready"}
    assert admin_client.post(url, edit).status_code == 403
    assert admin_client.get(f"/admin/arena/battle/{battle.pk}/delete/").status_code == 403
    assert admin_client.post(f"/admin/arena/battle/{battle.pk}/delete/", {"post": "yes"}).status_code == 403
    assert admin_client.get("/admin/arena/battle/add/").status_code == 403

    battle.refresh_from_db()
    assert (battle.mode, battle.model_a_id, battle.state) == ("anonymous", voted.model_a_id, "voted")
    assert battle.turns.count() == 1 and Answer.objects.filter(turn__battle=battle).count() == 2


def test_the_battle_list_offers_no_bulk_delete_and_refuses_one(voted: Vote, admin_client: Client) -> None:
    changelist = admin_client.get("/admin/arena/battle/")
    assert changelist.status_code == 200
    assert changelist.context["action_form"] is None  # no action at all: delete_selected is gone
    response = admin_client.post(
        "/admin/arena/battle/",
        {"action": "delete_selected", "_selected_action": [str(voted.battle_id)], "post": "yes"},
    )
    assert response.status_code in (200, 302)
    assert Battle.objects.filter(pk=voted.battle_id).exists()
    assert Vote.objects.filter(pk=voted.pk).exists()


def test_a_vote_cannot_be_changed_excluded_or_deleted_in_the_admin(voted: Vote, admin_client: Client) -> None:
    url = f"/admin/arena/vote/{voted.pk}/change/"
    page = admin_client.get(url)
    assert page.status_code == 200 and page.context["title"] == "View vote"
    assert admin_client.post(url, {"winner": "b", "excluded": "identity_leak"}).status_code == 403
    assert admin_client.post(f"/admin/arena/vote/{voted.pk}/delete/", {"post": "yes"}).status_code == 403
    assert admin_client.get("/admin/arena/vote/add/").status_code == 403
    voted.refresh_from_db()
    assert (voted.winner, voted.excluded) == ("a", "")


def test_answers_cannot_be_changed_or_deleted_in_the_admin(voted: Vote, admin_client: Client) -> None:
    answer = Answer.objects.filter(turn__battle=voted.battle).first()
    assert answer is not None
    url = f"/admin/arena/answer/{answer.pk}/change/"
    assert admin_client.get(url).status_code == 200
    assert admin_client.post(url, {"text": "rewritten", "status": "done"}).status_code == 403
    assert admin_client.post(f"/admin/arena/answer/{answer.pk}/delete/", {"post": "yes"}).status_code == 403
    answer.refresh_from_db()
    assert answer.text == ""


def test_a_flags_review_is_logged_shown_and_the_flag_kept(
    voted: Vote, admin_client: Client, admin_user: Any
) -> None:
    Battle.objects.filter(pk=voted.battle_id).update(visitor_hash="rigger")
    Vote.objects.filter(pk=voted.pk).update(excluded=Vote.Exclusion.ANOMALOUS_VOTER)
    flag = VoterFlag.objects.create(kind=VoterFlag.Kind.VISITOR, voter_hash="rigger", votes=1)

    response = admin_client.post(
        "/admin/arena/voterflag/", {"action": "restore", "_selected_action": [flag.pk]}
    )
    assert response.status_code == 302
    voted.refresh_from_db()
    assert voted.excluded == ""
    restore = VoterFlagAction.objects.get(flag=flag)
    assert (restore.action, restore.user, restore.votes) == ("restore", admin_user, 1)

    # Shown on the flag and in the list of every review; neither can be deleted.
    assert b"restored" in admin_client.get(f"/admin/arena/voterflag/{flag.pk}/change/").content
    reviews = admin_client.get("/admin/arena/voterflagaction/")
    assert reviews.status_code == 200 and list(reviews.context["cl"].result_list) == [restore]
    assert admin_client.post(f"/admin/arena/voterflag/{flag.pk}/delete/", {"post": "yes"}).status_code == 403
    assert (
        admin_client.post(f"/admin/arena/voterflagaction/{restore.pk}/delete/", {"post": "yes"}).status_code
        == 403
    )
    assert VoterFlagAction.objects.filter(flag=flag).count() == 1


def test_an_outage_set_and_lifted_in_the_admin_is_logged_with_its_values(
    make_llm: Callable[..., LLM], admin_client: Client, admin_user: Any
) -> None:
    llm = make_llm()
    url = f"/admin/providers/llm/{llm.pk}/change/"
    data = form_data(admin_client, url)
    data.update(state="outage", state_reason="HTTP 401 from the endpoint")
    assert admin_client.post(url, data).status_code == 302

    response = admin_client.post(
        "/admin/providers/llm/", {"action": "return_to_service", "_selected_action": [llm.pk]}
    )
    assert response.status_code == 302
    llm.refresh_from_db()
    assert (llm.state, llm.state_reason) == ("active", "")

    entries = LogEntry.objects.filter(object_id=str(llm.pk)).order_by("pk")
    assert [(e.user, e.action_flag) for e in entries] == [(admin_user, CHANGE), (admin_user, CHANGE)]
    assert entries[0].get_change_message() == (
        "Changed state: 'active' → 'outage'; state_reason: '' → 'HTTP 401 from the endpoint'."
    )
    assert entries[1].get_change_message() == (
        "Returned to service: state 'outage' → 'active'; reason 'HTTP 401 from the endpoint' cleared."
    )
    # One list of every operator change, shown in the admin, itself read-only.
    log = admin_client.get("/admin/admin/logentry/")
    assert log.status_code == 200 and list(log.context["cl"].result_list) == list(entries.reverse())
    assert b"HTTP 401 from the endpoint" in log.content
    assert (
        admin_client.post(f"/admin/admin/logentry/{entries[0].pk}/delete/", {"post": "yes"}).status_code
        == 403
    )


def test_a_retired_model_is_not_returned_to_service(
    make_llm: Callable[..., LLM], admin_client: Client
) -> None:
    retired = make_llm(state=LLM.State.RETIRED)
    admin_client.post(
        "/admin/providers/llm/", {"action": "return_to_service", "_selected_action": [retired.pk]}
    )
    retired.refresh_from_db()
    assert retired.state == "retired"
    assert not LogEntry.objects.filter(object_id=str(retired.pk)).exists()


def test_earlier_tries_and_vote_reasons_are_shown_but_never_changed(
    voted: Vote, admin_client: Client
) -> None:
    from arena.models import AnswerAttempt
    from arena.reasons import VoteReason

    turn = voted.battle.turns.get()
    attempt = AnswerAttempt.objects.create(
        turn=turn, side="a", attempt=1, reason="retry", status="error", error="upstream said no"
    )
    VoteReason.objects.create(vote=voted, tags=["clear"], comment="Plainly put.")

    listing = admin_client.get("/admin/arena/answerattempt/")
    assert listing.status_code == 200 and listing.context["action_form"] is None
    url = f"/admin/arena/answerattempt/{attempt.pk}/change/"
    page = admin_client.get(url)
    assert page.status_code == 200 and b'name="_save"' not in page.content
    assert admin_client.post(url, {"status": "done", "text": "rewritten"}).status_code == 403
    assert (
        admin_client.post(f"/admin/arena/answerattempt/{attempt.pk}/delete/", {"post": "yes"}).status_code
        == 403
    )
    assert admin_client.get("/admin/arena/answerattempt/add/").status_code == 403
    attempt.refresh_from_db()
    assert (attempt.status, attempt.text) == ("error", "")

    vote_page = admin_client.get(f"/admin/arena/vote/{voted.pk}/change/")
    assert vote_page.status_code == 200 and b"Plainly put." in vote_page.content


def test_an_operator_takes_a_share_link_down_but_cannot_make_or_read_one(
    voted: Vote, admin_client: Client, client: Client
) -> None:
    from arena.sharing import BattleShare, share_create

    share, _ = share_create(battle=voted.battle)
    assert client.get(f"/s/{share.token}/").status_code == 200
    page = admin_client.get(f"/admin/arena/battleshare/{share.pk}/change/")
    assert page.status_code == 200 and page.context["title"] == "View battle share"
    assert share.token.encode() not in page.content  # the link is the visitor's to hand out
    assert share.token.encode() not in admin_client.get("/admin/arena/battleshare/").content
    assert admin_client.get("/admin/arena/battleshare/add/").status_code == 403
    taken_down = admin_client.post(f"/admin/arena/battleshare/{share.pk}/delete/", {"post": "yes"})
    assert taken_down.status_code == 302 and not BattleShare.objects.exists()
    assert client.get(f"/s/{share.token}/").status_code == 404
    assert Vote.objects.filter(pk=voted.pk).exists()  # the battle and its vote stay
