"""The migration that adds the battles' propensity and the sampling plan keeps every battle, both ways."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("arena", "0012_selective_voting")]
AFTER = [("arena", "0013_sampling")]


@pytest.mark.django_db(transaction=True)
def test_battles_from_before_have_no_propensity_and_keep_everything_else() -> None:
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    old = executor.loader.project_state(BEFORE).apps
    llm = old.get_model("providers", "LLM")
    a, b = (
        llm.objects.create(name=n, display_name=n, organization="O", backend="demo", model="m") for n in "ab"
    )
    played = old.get_model("arena", "Battle").objects.create(
        model_a=a, model_b=b, visitor_hash="v" * 64, prompt_hash="p" * 64
    )

    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(AFTER)
    new = executor.loader.project_state(AFTER).apps
    battle = new.get_model("arena", "Battle").objects.get(pk=played.pk)
    assert battle.propensity is None
    assert (battle.visitor_hash, battle.prompt_hash) == ("v" * 64, "p" * 64)
    plan = new.get_model("arena", "SamplingPlan").objects.create(llm_ids=[a.pk, b.pk], votes=[3, 3])
    assert bytes(plan.gains) == b""

    executor.loader.build_graph()
    executor.migrate(BEFORE)
    back = executor.loader.project_state(BEFORE).apps.get_model("arena", "Battle")
    assert back.objects.get(pk=played.pk).visitor_hash == "v" * 64
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())
