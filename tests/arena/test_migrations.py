"""The migration that copies each vote's facts onto it fills them from the battle and conv_metadata."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("arena", "0003_vote_categories"), ("providers", "0004_imported_backend")]
AFTER = [("arena", "0005_vote_models_required")]


@pytest.mark.django_db(transaction=True)
def test_existing_votes_get_their_models_mode_and_style_counts() -> None:
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    old = executor.loader.project_state(BEFORE).apps
    llm = old.get_model("providers", "LLM")
    a = llm.objects.create(
        name="a", display_name="A", organization="O", backend="demo", model="m", api_key_encrypted=""
    )
    b = llm.objects.create(
        name="b", display_name="B", organization="O", backend="demo", model="m", api_key_encrypted=""
    )
    battle = old.get_model("arena", "Battle")
    vote = old.get_model("arena", "Vote")
    named = battle.objects.create(model_a=a, model_b=b, mode="named", state="voted", session_hash="x")
    anonymous = battle.objects.create(model_a=b, model_b=a, mode="anonymous", state="voted", session_hash="x")
    vote.objects.create(
        battle=named,
        winner="a",
        conv_metadata={"sum_assistant_b_tokens": 40, "header_count_a": {"h1": 1, "h2": 2}},
    )
    vote.objects.create(battle=anonymous, winner="tie", conv_metadata={})

    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(AFTER)
    new = executor.loader.project_state(AFTER).apps.get_model("arena", "Vote")
    first, second = new.objects.order_by("id")

    assert (first.model_a_id, first.model_b_id, first.anonymous) == (a.pk, b.pk, False)
    assert (first.length_b, first.headers_a, first.length_a) == (40.0, 3.0, 0.0)
    assert (second.model_a_id, second.model_b_id, second.anonymous) == (b.pk, a.pk, True)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())


@pytest.mark.django_db(transaction=True)
def test_conv_metadata_moves_beside_the_votes_and_back_unchanged() -> None:
    before = [("arena", "0006_vote_partial_indexes")]
    after = [("arena", "0007_vote_metadata")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    old = executor.loader.project_state(before).apps
    llm = old.get_model("providers", "LLM")
    a, b = (
        llm.objects.create(name=n, display_name=n, organization="O", backend="demo", model="m") for n in "ab"
    )
    battle, vote = old.get_model("arena", "Battle"), old.get_model("arena", "Vote")
    counts = {"sum_assistant_a_tokens": 40, "header_count_b": {"h1": 1, "h2": 2}, "note": "ü"}
    ids = []
    for metadata in (counts, {}):
        played = battle.objects.create(model_a=a, model_b=b, state="voted", session_hash="x")
        ids.append(
            vote.objects.create(battle=played, winner="a", model_a=a, model_b=b, conv_metadata=metadata).pk
        )

    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(after)
    moved = executor.loader.project_state(after).apps.get_model("arena", "VoteMetadata")
    # Only the vote with counts gets a row, with its JSON as it was.
    assert list(moved.objects.values_list("vote_id", "conv_metadata")) == [(ids[0], counts)]

    executor.loader.build_graph()
    executor.migrate(before)
    back = executor.loader.project_state(before).apps.get_model("arena", "Vote")
    assert list(back.objects.order_by("id").values_list("conv_metadata", flat=True)) == [counts, {}]
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())


@pytest.mark.django_db(transaction=True)
def test_a_battle_keeps_its_visitor_when_the_field_takes_the_visitors_name() -> None:
    before = [("arena", "0007_vote_metadata")]
    after = [("arena", "0008_battle_visitor_hash")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    old = executor.loader.project_state(before).apps
    llm = old.get_model("providers", "LLM")
    a, b = (
        llm.objects.create(name=n, display_name=n, organization="O", backend="demo", model="m") for n in "ab"
    )
    played = old.get_model("arena", "Battle").objects.create(model_a=a, model_b=b, session_hash="h" * 64)

    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(after)
    renamed = executor.loader.project_state(after).apps.get_model("arena", "Battle")
    assert list(renamed.objects.filter(visitor_hash="h" * 64).values_list("pk", flat=True)) == [played.pk]

    executor.loader.build_graph()
    executor.migrate(before)
    back = executor.loader.project_state(before).apps.get_model("arena", "Battle")
    assert back.objects.get(pk=played.pk).session_hash == "h" * 64
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())


@pytest.mark.django_db(transaction=True)
def test_each_stored_answer_records_the_model_of_its_side() -> None:
    before = [("arena", "0012_selective_voting")]
    after = [("arena", "0014_rounds")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    old = executor.loader.project_state(before).apps
    llm = old.get_model("providers", "LLM")
    a, b = (
        llm.objects.create(name=n, display_name=n, organization="O", backend="demo", model="m") for n in "ab"
    )
    played = old.get_model("arena", "Battle").objects.create(model_a=a, model_b=b, visitor_hash="h")
    turn = old.get_model("arena", "Turn").objects.create(battle=played, index=0, prompt="Hi")
    answer = old.get_model("arena", "Answer")
    for side in "ab":
        answer.objects.create(turn=turn, side=side, status="done", text=side)

    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(after)
    filled = executor.loader.project_state(after).apps.get_model("arena", "Answer")
    assert dict(filled.objects.values_list("side", "llm_id")) == {"a": a.pk, "b": b.pk}
    assert set(filled.objects.values_list("attempt", flat=True)) == {1}
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())
