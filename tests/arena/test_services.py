from __future__ import annotations

import asyncio
import random
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from arena import services
from arena.models import Answer, Battle, Turn
from config.errors import Conflict, DomainError, NotFound, Unavailable
from providers.models import LLM

pytestmark = pytest.mark.django_db


def test_it_draws_two_distinct_models_in_proportion_to_their_weights(make_llm: Callable[..., LLM]) -> None:
    heavy, light, other = make_llm(weight=6), make_llm(weight=1), make_llm(weight=1)
    rng = random.Random(7)
    seen: Counter[str] = Counter()
    for _ in range(4000):
        a, b = services.draw_pair(rng)
        assert a.pk != b.pk
        seen[a.name] += 1
        seen[b.name] += 1
    # Weights 6:1:1: heavy is drawn first 3/4 of the time, else second with chance 6/7.
    assert seen[heavy.name] / 4000 == pytest.approx(0.75 + 0.25 * 6 / 7, abs=0.02)
    assert seen[light.name] / 4000 == pytest.approx(seen[other.name] / 4000, abs=0.05)


def test_it_puts_each_model_on_either_side(make_llm: Callable[..., LLM]) -> None:
    first, _ = make_llm(), make_llm()
    rng = random.Random(1)
    sides = Counter(services.draw_pair(rng)[0].pk == first.pk for _ in range(1000))
    assert 400 < sides[True] < 600


def test_it_never_draws_private_retired_outage_or_weightless_models(make_llm: Callable[..., LLM]) -> None:
    a, b = make_llm(), make_llm()
    make_llm(visibility=LLM.Visibility.PRIVATE)
    make_llm(state=LLM.State.RETIRED)
    make_llm(state=LLM.State.OUTAGE)
    make_llm(weight=0)
    rng = random.Random(3)
    assert {m.pk for _ in range(200) for m in services.draw_pair(rng)} == {a.pk, b.pk}


def test_it_refuses_a_battle_with_fewer_than_two_models(make_llm: Callable[..., LLM]) -> None:
    make_llm()
    with pytest.raises(Unavailable):
        services.battle_start(session="s", prompt="Hi")
    assert not Battle.objects.exists()


def test_it_rejects_naming_models_in_anonymous_mode(make_llm: Callable[..., LLM]) -> None:
    a, b = make_llm(), make_llm()
    with pytest.raises(DomainError, match="do not name them"):
        services.battle_start(session="s", prompt="Hi", model_a=a.name, model_b=b.name)


@pytest.mark.parametrize(
    ("answer", "leaks"),
    [
        ("I am Alpha Chat, a helpful assistant.", True),
        ("I was trained by alpha labs.", True),
        ("Running as alpha-7b-instruct here.", True),
        ("The alphabet has 26 letters.", False),
        ("Alpha channels store transparency.", False),
    ],
)
def test_it_spots_an_answer_that_names_its_model(
    make_llm: Callable[..., LLM], answer: str, leaks: bool
) -> None:
    alpha = make_llm(
        name="alpha-chat", display_name="Alpha Chat", organization="Alpha Labs", model="org/alpha-7b-instruct"
    )
    beta = make_llm(name="beta", display_name="Beta", organization="Beta Inc")
    assert services.leaked_identity([answer], [alpha, beta]) is leaks


def test_the_session_hash_is_stable_and_does_not_reveal_the_key() -> None:
    assert services.session_hash("abc") == services.session_hash("abc")
    assert services.session_hash("abc") != services.session_hash("abd")
    assert "abc" not in services.session_hash("abc") and len(services.session_hash("abc")) == 64


# --- streaming a turn ----------------------------------------------------------------------------


def delta(side: str, text: str) -> services.Event:
    return {"side": side, "type": "delta", "text": text}


def test_merging_keeps_each_sides_text_whole_and_in_order() -> None:
    waiting = [
        delta("a", "The "),
        delta("b", "One"),
        delta("a", "sky "),
        delta("b", ", two"),
        delta("a", "is blue."),
        {"side": "a", "type": "done", "text": ""},
        delta("b", " and three."),
        {"side": "b", "type": "error", "text": "The answer was cut off before it ended."},
        {"side": None, "type": "end", "text": "", "state": "failed"},
    ]
    assert services.merged(waiting) == [
        delta("a", "The sky is blue."),
        delta("b", "One, two and three."),
        {"side": "a", "type": "done", "text": ""},
        {"side": "b", "type": "error", "text": "The answer was cut off before it ended."},
        {"side": None, "type": "end", "text": "", "state": "failed"},
    ]


def test_a_delta_after_a_sides_end_is_never_merged_before_it() -> None:
    waiting = [delta("a", "x"), {"side": "a", "type": "error", "text": "e"}, delta("a", "y")]
    assert services.merged(waiting) == waiting


def test_a_quiet_stream_relays_each_event_as_it_comes_and_a_busy_one_merges_what_waits() -> None:
    async def main() -> tuple[list[services.Event], list[services.Event], list[services.Event]]:
        queue: asyncio.Queue[services.Event] = asyncio.Queue()
        relayed = services._relayed(queue)
        queue.put_nowait(delta("a", "Hello"))
        # Nothing else comes: the event goes on alone, without waiting for company. The time-out
        # only keeps a broken relay from hanging the test.
        alone = await asyncio.wait_for(anext(relayed), timeout=10)
        for text in (",", " world", "!"):
            queue.put_nowait(delta("a", text))
        queue.put_nowait({"side": "a", "type": "done", "text": ""})
        together = await asyncio.wait_for(anext(relayed), timeout=10)
        queue.put_nowait({"side": None, "type": "end", "text": "", "state": "ready"})
        last = await asyncio.wait_for(anext(relayed), timeout=10)
        assert await anext(relayed, None) is None
        return alone, together, last

    alone, together, last = asyncio.run(main())
    assert alone == [delta("a", "Hello")]
    assert together == [delta("a", ", world!"), {"side": "a", "type": "done", "text": ""}]
    assert last == [{"side": None, "type": "end", "text": "", "state": "ready"}]


# --- the hand-over from a turn's opening to its stream ---------------------------------------------


def _turn_reads(queries: list[dict[str, str]]) -> int:
    return sum(1 for q in queries if q["sql"].startswith("SELECT") and "arena_turn" in q["sql"])


def test_a_turn_opened_here_streams_without_being_read_back(make_llm: Callable[..., LLM]) -> None:
    make_llm(), make_llm()
    battle = services.battle_start(session="s", prompt="Hi")
    with CaptureQueriesContext(connection) as handed:
        plan = services.plan_stream(battle_id=str(battle.pk), session="s")
    assert plan.live and plan.turn.index == 0 and set(plan.calls) == {"a", "b"}
    assert _turn_reads(handed.captured_queries) == 0
    assert set(Answer.objects.filter(turn=plan.turn).values_list("status", flat=True)) == {"streaming"}
    assert Battle.objects.get(pk=battle.pk).state == Battle.State.STREAMING

    # Taken once: another battle opened elsewhere (nothing handed over) is read from the database.
    other = services.battle_start(session="s", prompt="Hi")
    services._handed.clear()
    with CaptureQueriesContext(connection) as read:
        services.plan_stream(battle_id=str(other.pk), session="s")
    assert _turn_reads(read.captured_queries) == 1


def test_on_postgresql_the_claim_and_both_call_records_are_one_statement(
    make_llm: Callable[..., LLM],
) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("data-modifying WITH is PostgreSQL's; elsewhere the two statements share a transaction")
    make_llm(), make_llm()
    battle = services.battle_start(session="s", prompt="Hi")
    with CaptureQueriesContext(connection) as claim:
        plan = services.plan_stream(battle_id=str(battle.pk), session="s")
    assert plan.live and len(claim.captured_queries) == 1
    assert Battle.objects.get(pk=battle.pk).state == Battle.State.STREAMING
    assert all(a.params and a.status == "streaming" for a in Answer.objects.filter(turn=plan.turn))


def test_a_handed_over_turn_with_an_answer_no_longer_waiting_is_not_claimed_at_all(
    make_llm: Callable[..., LLM],
) -> None:
    make_llm(), make_llm()
    battle = services.battle_start(session="s", prompt="Hi")
    turn = services._handed[str(battle.pk)][1]
    Answer.objects.filter(turn=turn, side="b").update(status=Answer.Status.ERROR)
    with pytest.raises(services._NotLatest):
        services._claim(turn.battle, turn, handed=True)
    assert Battle.objects.get(pk=battle.pk).state == Battle.State.PENDING
    assert [a.params for a in Answer.objects.filter(turn=turn).order_by("side")] == [{}, {}]


def _streamed(battle: Battle) -> None:
    """As if both answers of the battle's latest turn had streamed to their end."""
    Answer.objects.filter(turn__battle=battle).update(status=Answer.Status.DONE, text="An answer.")
    Battle.objects.filter(pk=battle.pk).update(state=Battle.State.READY)
    battle.state = Battle.State.READY


def _second_turn_opened(make_llm: Callable[..., LLM]) -> tuple[Battle, Turn]:
    """A battle whose first turn streamed and whose follow-up was opened; and its first turn as it
    was handed over."""
    make_llm(), make_llm()
    battle = services.battle_start(session="s", prompt="First question")
    first = services._handed[str(battle.pk)][1]
    services.plan_stream(battle_id=str(battle.pk), session="s")
    _streamed(battle)
    services.battle_continue(battle=Battle.objects.get(pk=battle.pk), prompt="Second question")
    return battle, first


def test_a_handed_over_turn_that_is_no_longer_the_latest_is_not_streamed(
    make_llm: Callable[..., LLM],
) -> None:
    battle, first = _second_turn_opened(make_llm)
    # This process still holds the first turn, as if the follow-up had been opened by another one.
    services._hand_over(first)
    plan = services.plan_stream(battle_id=str(battle.pk), session="s")
    assert plan.live and plan.turn.index == 1 and plan.turn.prompt == "Second question"
    assert Answer.objects.get(turn__index=0, turn__battle=battle, side="a").status == "done"
    _, messages = plan.calls["a"]
    assert [m["content"] for m in messages] == ["First question", "An answer.", "Second question"]


def test_a_handed_over_turn_streamed_already_is_replayed_from_the_database(
    make_llm: Callable[..., LLM],
) -> None:
    battle, first = _second_turn_opened(make_llm)
    services.plan_stream(battle_id=str(battle.pk), session="s")
    _streamed(battle)
    services._hand_over(first)  # still pending in memory; both turns are done in the database
    plan = services.plan_stream(battle_id=str(battle.pk), session="s")
    assert not plan.live and plan.turn.index == 1
    assert Battle.objects.get(pk=battle.pk).state == Battle.State.READY


def test_a_handed_over_turn_is_only_the_visitors_and_only_for_a_while(
    make_llm: Callable[..., LLM], monkeypatch: pytest.MonkeyPatch
) -> None:
    make_llm(), make_llm()
    battle = services.battle_start(session="s", prompt="Hi")
    with pytest.raises(NotFound):
        services.plan_stream(battle_id=str(battle.pk), session="someone else")
    assert str(battle.pk) not in services._handed  # and it is gone

    services._hand_over(Turn.objects.select_related("battle").get(battle=battle))
    monkeypatch.setattr(services, "HAND_OVER_SECONDS", -1.0)
    with CaptureQueriesContext(connection) as read:
        assert services.plan_stream(battle_id=str(battle.pk), session="s").live
    assert _turn_reads(read.captured_queries) == 1


def test_the_hand_over_keeps_only_the_latest_turns(
    make_llm: Callable[..., LLM], monkeypatch: pytest.MonkeyPatch
) -> None:
    make_llm(), make_llm()
    monkeypatch.setattr(services, "HAND_OVER_MAX", 3)
    services._handed.clear()
    battles = [services.battle_start(session="s", prompt="Hi") for _ in range(5)]
    assert list(services._handed) == [str(b.pk) for b in battles[2:]]


def test_a_streaming_battle_is_claimed_again_only_once_its_stream_is_stale(
    make_llm: Callable[..., LLM], settings: Any
) -> None:
    make_llm(), make_llm()
    battle = services.battle_start(session="s", prompt="Hi")
    assert services.plan_stream(battle_id=str(battle.pk), session="s").live
    with pytest.raises(Conflict) as taken:
        services.plan_stream(battle_id=str(battle.pk), session="s")
    assert taken.value.code == "already_streaming"

    # A worker that died mid-stream left it streaming: after the longest a call may last, it is free.
    long_ago = timezone.now() - timedelta(seconds=settings.UPSTREAM_TOTAL_TIMEOUT + 61)
    Battle.objects.filter(pk=battle.pk).update(updated=long_ago)
    plan = services.plan_stream(battle_id=str(battle.pk), session="s")
    assert plan.live
    reclaimed = Battle.objects.get(pk=battle.pk)
    assert reclaimed.state == Battle.State.STREAMING and reclaimed.updated > long_ago
    started = Answer.objects.filter(turn=plan.turn)
    assert sorted(started.values_list("side", "status")) == [("a", "streaming"), ("b", "streaming")]
    assert all(a.params == {"temperature": a.turn.battle.llm(a.side).temperature,
                            "max_tokens": a.turn.battle.llm(a.side).max_tokens} for a in started)  # fmt: skip


def test_the_latest_turn_read_gives_what_the_orm_gives(make_llm: Callable[..., LLM]) -> None:
    a = make_llm(temperature=0.3, max_tokens=77, published_at=timezone.now(), api_key_env="KEY_A")
    b = make_llm(state_reason="no longer in outage", notes="a note", weight=3)
    battle = services.battle_start(session="s", prompt="First", mode="named", model_a=a.name, model_b=b.name)
    _streamed(battle)
    services.battle_continue(battle=Battle.objects.get(pk=battle.pk), prompt="Second")

    turn = services._latest_turn(str(battle.pk).upper(), "s")
    orm = Turn.objects.select_related("battle__model_a", "battle__model_b").get(battle=battle, index=1)
    for mine, theirs in [
        (turn, orm),
        (turn.battle, orm.battle),
        (turn.battle.model_a, orm.battle.model_a),
        (turn.battle.model_b, orm.battle.model_b),
    ]:
        for f in type(theirs)._meta.concrete_fields:
            assert getattr(mine, f.attname) == getattr(theirs, f.attname), f"{type(theirs).__name__}.{f.name}"
            assert type(getattr(mine, f.attname)) is type(getattr(theirs, f.attname)), f.name
        assert not mine._state.adding
    assert services._latest_turn(battle.pk.hex, "s").pk == orm.pk
    for wrong in [(str(battle.pk), "someone else"), ("not-a-uuid", "s"), (str(uuid.uuid4()), "s")]:
        with pytest.raises(NotFound):
            services._latest_turn(*wrong)
