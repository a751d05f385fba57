from __future__ import annotations

import asyncio
import random
import threading
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from django.db import connections
from django.utils import timezone

from arena import services, streaming
from arena.models import Answer, Battle, Turn, Vote
from config.errors import Conflict, DomainError, NotFound, Unavailable
from providers.models import LLM, Organization
from tests.providers.conftest import make_variant

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
        services.battle_start(visitor="v", prompt="Hi")
    assert not Battle.objects.exists()


def test_it_rejects_naming_models_in_anonymous_mode(make_llm: Callable[..., LLM]) -> None:
    a, b = make_llm(), make_llm()
    with pytest.raises(DomainError, match="do not name them"):
        services.battle_start(visitor="v", prompt="Hi", model_a=a.name, model_b=b.name)


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


def test_the_visitor_hash_is_stable_and_does_not_reveal_the_token() -> None:
    assert services.visitor_hash("abc") == services.visitor_hash("abc")
    assert services.visitor_hash("abc") != services.visitor_hash("abd")
    assert "abc" not in services.visitor_hash("abc") and len(services.visitor_hash("abc")) == 64


# --- voting ------------------------------------------------------------------------------------


def _ready(a: LLM, b: LLM, mode: str = Battle.Mode.ANONYMOUS) -> Battle:
    """A battle whose one turn streamed to its end: ready for a vote."""
    battle = Battle.objects.create(
        model_a=a, model_b=b, mode=mode, visitor_hash="v", state=Battle.State.READY
    )
    battle.open_turn(0, "Hi").answers.update(status=Answer.Status.DONE, text="An answer.")
    return Battle.objects.select_related("model_a", "model_b").get(pk=battle.pk)


def test_it_takes_one_vote_per_battle_with_its_tags_and_style_counts(make_llm: Callable[..., LLM]) -> None:
    battle = _ready(make_llm(), make_llm())
    vote = services.battle_vote(battle=battle, winner="tie")
    assert Battle.objects.get(pk=battle.pk).state == Battle.State.VOTED
    stored = Vote.objects.get(battle=battle)
    assert (stored.winner, stored.language, stored.anonymous) == ("tie", "", True)
    assert stored.length_a == stored.length_b == 2.0  # "An answer." is ten characters: 2 tokens each
    with pytest.raises(Conflict, match="already has a vote"):
        services.battle_vote(battle=battle, winner="a")
    with pytest.raises(Conflict, match="already has a vote"):
        services.battle_vote(battle=Battle.objects.get(pk=battle.pk), winner="a")  # as a second window
    assert list(Vote.objects.values_list("pk", flat=True)) == [vote.pk]


def at_once(n: int, work: Callable[[], str]) -> list[str]:
    """What `work` returned in each of n threads that start it at the same moment, sorted."""
    start = threading.Barrier(n)

    def run() -> str:
        try:
            start.wait()
            return work()
        finally:
            connections.close_all()

    with ThreadPoolExecutor(n) as pool:
        return sorted(pool.map(lambda _: run(), range(n)))


@pytest.mark.django_db(transaction=True)
def test_of_votes_sent_at_once_exactly_one_is_taken(make_llm: Callable[..., LLM]) -> None:
    battle = _ready(make_llm(), make_llm())

    def vote() -> str:
        mine = Battle.objects.select_related("model_a", "model_b").get(pk=battle.pk)
        try:
            return services.battle_vote(battle=mine, winner="a").winner
        except Conflict as exc:
            return exc.code

    assert at_once(4, vote) == ["a", "already_voted", "already_voted", "already_voted"]
    assert Vote.objects.filter(battle=battle).count() == 1


def test_an_anonymous_vote_counts_towards_a_private_variants_budget_and_a_named_one_does_not(
    make_llm: Callable[..., LLM],
) -> None:
    variant, public = make_variant(Organization.objects.create(name="Acme AI", slug="acme"), "v1"), make_llm()
    services.battle_vote(battle=_ready(variant, public), winner="a")
    services.battle_vote(battle=_ready(public, variant, mode=Battle.Mode.NAMED), winner="a")
    variant.refresh_from_db()
    public.refresh_from_db()
    assert (variant.test_votes, public.test_votes) == (1, 0)


def test_a_vote_queues_a_recompute_once_it_is_committed_when_the_settings_ask(
    make_llm: Callable[..., LLM],
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
) -> None:
    a, b = make_llm(), make_llm()
    recomputed: list[bool] = []
    monkeypatch.setattr("leaderboard.tasks.recompute.delay", lambda: recomputed.append(True))
    settings.LEADERBOARD_RECOMPUTE_ON_VOTE = True
    with django_capture_on_commit_callbacks(execute=True) as queued:
        services.battle_vote(battle=_ready(a, b), winner="a")
    assert len(queued) == 1 and recomputed == [True]
    settings.LEADERBOARD_RECOMPUTE_ON_VOTE = False
    with django_capture_on_commit_callbacks(execute=True) as queued:
        services.battle_vote(battle=_ready(a, b), winner="b")
    assert queued == [] and recomputed == [True]


# --- streaming a turn ----------------------------------------------------------------------------


def delta(side: str, text: str) -> streaming.Event:
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
    assert streaming.merged(waiting) == [
        delta("a", "The sky is blue."),
        delta("b", "One, two and three."),
        {"side": "a", "type": "done", "text": ""},
        {"side": "b", "type": "error", "text": "The answer was cut off before it ended."},
        {"side": None, "type": "end", "text": "", "state": "failed"},
    ]


def test_a_delta_after_a_sides_end_is_never_merged_before_it() -> None:
    waiting = [delta("a", "x"), {"side": "a", "type": "error", "text": "e"}, delta("a", "y")]
    assert streaming.merged(waiting) == waiting


def test_a_quiet_stream_relays_each_event_as_it_comes_and_a_busy_one_merges_what_waits() -> None:
    async def main() -> tuple[list[streaming.Event], list[streaming.Event], list[streaming.Event]]:
        queue: asyncio.Queue[streaming.Event] = asyncio.Queue()
        relayed = streaming._relayed(queue)
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


# --- claiming a turn for its stream ---------------------------------------------------------------


def test_a_stream_claims_the_battle_and_writes_both_call_records(make_llm: Callable[..., LLM]) -> None:
    make_llm(), make_llm()
    battle = services.battle_start(visitor="v", prompt="Hi")
    plan = streaming.plan_stream(battle_id=str(battle.pk), visitor="v")
    assert plan.live and plan.turn.index == 0 and set(plan.calls) == {"a", "b"}
    assert Battle.objects.get(pk=battle.pk).state == Battle.State.STREAMING
    for answer in Answer.objects.filter(turn=plan.turn):
        llm = plan.battle.llm(answer.side)
        assert answer.status == "streaming" and answer.started is not None
        assert answer.params == {"temperature": llm.temperature, "max_tokens": llm.max_tokens}


def test_a_battle_streams_only_for_its_visitor_whatever_the_spelling_of_its_id(
    make_llm: Callable[..., LLM],
) -> None:
    make_llm(), make_llm()
    battle = services.battle_start(visitor="v", prompt="Hi")
    for wrong in [(str(battle.pk), "someone else"), (str(battle.pk), None), ("not-a-uuid", "v"),
                  (str(uuid.uuid4()), "v"), (None, "v")]:  # fmt: skip
        with pytest.raises(NotFound):
            streaming.plan_stream(battle_id=wrong[0], visitor=wrong[1])
    assert Battle.objects.get(pk=battle.pk).state == Battle.State.PENDING
    assert streaming.plan_stream(battle_id=str(battle.pk).upper(), visitor="v").live
    _streamed(battle)
    assert streaming.plan_stream(battle_id=battle.pk.hex, visitor="v").turn == Turn.objects.get(battle=battle)


def _streamed(battle: Battle) -> None:
    """As if both answers of the battle's latest turn had streamed to their end."""
    Answer.objects.filter(turn__battle=battle).update(status=Answer.Status.DONE, text="An answer.")
    Battle.objects.filter(pk=battle.pk).update(state=Battle.State.READY)
    battle.state = Battle.State.READY


def _second_turn_opened(make_llm: Callable[..., LLM]) -> tuple[Battle, Turn]:
    """A battle whose first turn streamed and whose follow-up was opened; and its first turn."""
    make_llm(), make_llm()
    battle = services.battle_start(visitor="v", prompt="First question")
    first = streaming.plan_stream(battle_id=str(battle.pk), visitor="v").turn
    _streamed(battle)
    services.battle_continue(battle=Battle.objects.get(pk=battle.pk), prompt="Second question")
    return battle, first


def test_a_follow_up_streams_the_latest_turn_with_the_conversation_so_far(
    make_llm: Callable[..., LLM],
) -> None:
    battle, _ = _second_turn_opened(make_llm)
    plan = streaming.plan_stream(battle_id=str(battle.pk), visitor="v")
    assert plan.live and plan.turn.index == 1 and plan.turn.prompt == "Second question"
    assert Answer.objects.get(turn__index=0, turn__battle=battle, side="a").status == "done"
    _, messages = plan.calls["a"]
    assert [m["content"] for m in messages] == ["First question", "An answer.", "Second question"]


def test_a_turn_read_before_a_follow_up_was_opened_is_never_claimed(make_llm: Callable[..., LLM]) -> None:
    battle, first = _second_turn_opened(make_llm)
    # As a stream request that read the first turn just before the follow-up opened the second.
    claimed = Battle.objects.get(pk=battle.pk).claim_stream(first, {"a": {"x": 1}, "b": {"x": 1}})
    assert not claimed
    assert Battle.objects.get(pk=battle.pk).state == Battle.State.PENDING
    assert set(Answer.objects.filter(turn=first).values_list("status", "text")) == {("done", "An answer.")}
    assert streaming.plan_stream(battle_id=str(battle.pk), visitor="v").turn.index == 1


def test_a_turn_streamed_already_is_replayed_from_the_database(make_llm: Callable[..., LLM]) -> None:
    battle, _ = _second_turn_opened(make_llm)
    streaming.plan_stream(battle_id=str(battle.pk), visitor="v")
    _streamed(battle)
    plan = streaming.plan_stream(battle_id=str(battle.pk), visitor="v")
    assert not plan.live and plan.turn.index == 1
    assert Battle.objects.get(pk=battle.pk).state == Battle.State.READY


def test_a_streaming_battle_is_claimed_again_only_once_its_stream_is_stale(
    make_llm: Callable[..., LLM], settings: Any
) -> None:
    make_llm(), make_llm()
    battle = services.battle_start(visitor="v", prompt="Hi")
    assert streaming.plan_stream(battle_id=str(battle.pk), visitor="v").live
    with pytest.raises(Conflict) as taken:
        streaming.plan_stream(battle_id=str(battle.pk), visitor="v")
    assert taken.value.code == "already_streaming"

    # A worker that died mid-stream left it streaming: after the longest a call may last, it is free.
    long_ago = timezone.now() - timedelta(seconds=settings.UPSTREAM_TOTAL_TIMEOUT + 61)
    Battle.objects.filter(pk=battle.pk).update(updated=long_ago)
    plan = streaming.plan_stream(battle_id=str(battle.pk), visitor="v")
    assert plan.live
    reclaimed = Battle.objects.get(pk=battle.pk)
    assert reclaimed.state == Battle.State.STREAMING and reclaimed.updated > long_ago
    started = Answer.objects.filter(turn=plan.turn)
    assert sorted(started.values_list("side", "status")) == [("a", "streaming"), ("b", "streaming")]
    assert all(a.params == {"temperature": a.turn.battle.llm(a.side).temperature,
                            "max_tokens": a.turn.battle.llm(a.side).max_tokens} for a in started)  # fmt: skip


@pytest.mark.django_db(transaction=True)
def test_of_streams_opened_at_once_exactly_one_runs_the_calls(make_llm: Callable[..., LLM]) -> None:
    make_llm(), make_llm()
    battle = services.battle_start(visitor="v", prompt="Hi")

    def open_stream() -> str:
        try:
            return "live" if streaming.plan_stream(battle_id=str(battle.pk), visitor="v").live else "replay"
        except Conflict as exc:
            return exc.code

    assert at_once(4, open_stream) == ["already_streaming"] * 3 + ["live"]


# --- the paced relay ------------------------------------------------------------------------------


async def produce(
    queue: asyncio.Queue[streaming.Event], side: str, words: list[str], delays: list[float]
) -> None:
    for word, delay in zip(words, delays, strict=True):
        await asyncio.sleep(delay)
        queue.put_nowait(delta(side, word))
    queue.put_nowait({"side": side, "type": "done", "text": ""})


def paced_run(
    first: dict[str, float], gap: dict[str, float], words: dict[str, list[str]]
) -> list[list[streaming.Event]]:
    async def main() -> list[list[streaming.Event]]:
        queue: asyncio.Queue[streaming.Event] = asyncio.Queue()
        sides = [
            asyncio.create_task(
                produce(queue, side, words[side], [first[side]] + [gap[side]] * (len(words[side]) - 1))
            )
            for side in ("a", "b")
        ]
        ended = asyncio.gather(*sides)
        ended.add_done_callback(
            lambda _: queue.put_nowait({"side": None, "type": "end", "text": "", "state": "ready"})
        )
        return [batch async for batch in streaming._paced(queue, 0.02)]

    return asyncio.run(asyncio.wait_for(main(), timeout=20))


@pytest.mark.parametrize(
    ("first", "gap", "lengths"),
    [
        ({"a": 0.0, "b": 0.3}, {"a": 0.005, "b": 0.01}, {"a": 30, "b": 20}),
        ({"a": 0.1, "b": 0.0}, {"a": 0.01, "b": 0.002}, {"a": 5, "b": 40}),
        ({"a": 0.0, "b": 0.0}, {"a": 0.0, "b": 0.0}, {"a": 1, "b": 1}),
    ],
)
def test_the_paced_relay_releases_both_sides_in_step_and_keeps_each_whole_and_in_order(
    first: dict[str, float], gap: dict[str, float], lengths: dict[str, int]
) -> None:
    words = {side: [f"{side}{n} " for n in range(count)] for side, count in lengths.items()}
    batches = paced_run(first, gap, words)
    events = [event for batch in batches for event in batch]

    for side in ("a", "b"):
        assert "".join(e["text"] for e in events if e["side"] == side and e["type"] == "delta") == "".join(
            words[side]
        )
        done = events.index({"side": side, "type": "done", "text": ""})
        assert all(e["side"] != side for e in events[done + 1 :])  # nothing of a side after its end
    assert events[-1]["type"] == "end" and all(e["type"] != "end" for e in events[:-1])
    # Both sides start in the same batch and, while both are open, get the same number of characters.
    assert {e["side"] for e in batches[0] if e["type"] == "delta"} == {"a", "b"}
    open_sides = {"a", "b"}
    for batch in batches:
        sizes = {e["side"]: len(e["text"]) for e in batch if e["type"] == "delta"}
        if open_sides == {"a", "b"}:
            assert set(sizes) in ({"a", "b"}, set()) and len(set(sizes.values())) <= 1
        open_sides -= {e["side"] for e in batch if e["type"] == "done"}


def test_a_side_that_fails_before_any_text_does_not_hold_the_other_back() -> None:
    async def main() -> list[list[streaming.Event]]:
        queue: asyncio.Queue[streaming.Event] = asyncio.Queue()
        queue.put_nowait({"side": "a", "type": "error", "text": "The answer was cut off before it ended."})
        queue.put_nowait(delta("b", "Hello"))
        queue.put_nowait({"side": "b", "type": "done", "text": ""})
        queue.put_nowait({"side": None, "type": "end", "text": "", "state": "failed"})
        return [batch async for batch in streaming._paced(queue, 0.02)]

    events = [e for batch in asyncio.run(asyncio.wait_for(main(), timeout=10)) for e in batch]
    assert events == [
        {"side": "a", "type": "error", "text": "The answer was cut off before it ended."},
        delta("b", "Hello"),
        {"side": "b", "type": "done", "text": ""},
        {"side": None, "type": "end", "text": "", "state": "failed"},
    ]


def test_a_voter_sees_only_stop_length_or_error_as_the_finish_reason() -> None:
    assert [
        Answer(status=status, finish_reason=raw).public_finish_reason
        for status, raw in [
            (Answer.Status.DONE, "stop"),
            (Answer.Status.DONE, "length"),
            (Answer.Status.DONE, "content_filter"),
            (Answer.Status.DONE, "refusal"),
            (Answer.Status.DONE, "safety"),
            (Answer.Status.ERROR, ""),
            (Answer.Status.STREAMING, ""),
        ]
    ] == ["stop", "length", "stop", "stop", "stop", "error", ""]
