from __future__ import annotations

from collections.abc import Callable
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from arena.models import Battle, Turn, Vote
from providers.models import LLM

pytestmark = pytest.mark.django_db


def _vote(a: LLM, b: LLM, prompts: list[str], **tags: object) -> Vote:
    """A stored vote on a battle with these prompts, tagged as an older rule tagged it."""
    battle = Battle.objects.create(model_a=a, model_b=b, state=Battle.State.VOTED, visitor_hash="x")
    for index, prompt in enumerate(prompts):
        Turn.objects.create(battle=battle, index=index, prompt=prompt)
    return Vote.objects.create(battle=battle, winner="a", **tags)


def _retag(*args: str) -> str:
    out = StringIO()
    call_command("retag_votes", *args, stdout=out)
    return out.getvalue()


def test_it_retags_stored_votes_with_the_current_rules_and_counts_each_field(
    make_llm: Callable[..., LLM],
) -> None:
    a, b = make_llm(), make_llm()
    haiku = _vote(a, b, ["Write a haiku about autumn"], language="pt")
    code = _vote(a, b, ["Comment inverser une liste en Python ?"], language="other")
    chinese = _vote(a, b, ["为什么天空是蓝色的？" * 60], language="zh")
    turns = _vote(a, b, ["Tell me a joke about cats", "One about dogs"], language="en", coding=True)
    right = _vote(a, b, ["Warum ist der Himmel blau und wie entsteht das Abendrot?"], language="de")

    out = _retag("--batch-size", "2")

    assert "Re-tagged 4 of 5 votes (language 2, coding 2, long_query 1, multi_turn 1, hard 0)" in out
    assert Vote.objects.get(pk=haiku.pk).language == "en"
    assert (Vote.objects.get(pk=code.pk).language, Vote.objects.get(pk=code.pk).coding) == ("fr", True)
    assert Vote.objects.get(pk=chinese.pk).long_query is True
    assert (Vote.objects.get(pk=turns.pk).coding, Vote.objects.get(pk=turns.pk).multi_turn) == (False, True)
    assert Vote.objects.get(pk=right.pk).language == "de"


def test_a_second_run_changes_nothing(make_llm: Callable[..., LLM]) -> None:
    a, b = make_llm(), make_llm()
    _vote(a, b, ["Write a haiku about autumn"], language="pt")
    _retag()
    before = list(Vote.objects.order_by("pk").values())

    out = _retag()

    assert "Re-tagged 0 of 1 votes (language 0, coding 0, long_query 0, multi_turn 0, hard 0)" in out
    assert list(Vote.objects.order_by("pk").values()) == before


def test_a_dry_run_counts_without_writing(make_llm: Callable[..., LLM]) -> None:
    vote = _vote(make_llm(), make_llm(), ["Write a haiku about autumn"], language="pt")

    out = _retag("--dry-run")

    assert "Would re-tag 1 of 1 votes (language 1," in out
    assert Vote.objects.get(pk=vote.pk).language == "pt"


def test_votes_without_their_prompts_keep_their_tags(make_llm: Callable[..., LLM]) -> None:
    a, b = make_llm(), make_llm()
    imported = _vote(a, b, [], language="ja", hard=True)  # a battle loaded from a public dump has no turns
    erased = _vote(a, b, ["", ""], language="fr", multi_turn=True)  # its text erased at the voter's request

    out = _retag()

    assert "Re-tagged 0 of 2 votes" in out and "2 without their prompts kept their tags" in out
    imported.refresh_from_db()
    erased.refresh_from_db()
    assert (imported.language, imported.hard, erased.language, erased.multi_turn) == ("ja", True, "fr", True)


def test_it_refuses_a_batch_size_below_one() -> None:
    with pytest.raises(CommandError, match="at least 1"):
        _retag("--batch-size", "0")
