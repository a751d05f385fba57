"""Streaming a turn: both backends called at once, their answers relayed as one event stream.

`plan_stream` claims the battle's latest turn and writes both call records (a short transaction,
before any call goes out); `stream_events` then runs both calls and relays what they send. After a
retry only the retried side waits, and only it is called and streamed.

A stream ends early when the visitor closes it or asks for a stop (`arena.rounds.battle_stop`,
seen here in the cache within STOP_POLL seconds, whichever process streams): the calls still
running are cancelled and their answers recorded as stopped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.cache import cache
from django.db import close_old_connections
from django.utils import timezone
from django.utils.translation import gettext

from arena import battle_images
from arena.models import Answer, Battle, Side, Turn
from arena.rounds import stop_key
from arena.services import battle_of_visitor
from config import metrics
from config.errors import Conflict
from providers.base import CallSpec, Chunk, Image, Message, UpstreamError
from providers.http import call_spec, client
from providers.registry import backend_for
from providers.text import VisibleStream

logger = logging.getLogger(__name__)

Event = dict[str, Any]

PUBLIC_HTTP_ERROR = "The model's service answered with an error."
# The side left alone goes on a little slower than the pace both kept: at the full pace the slower
# model's own jitter would sometimes hold it back, and the faster one's lead never would, which
# tells them apart (bench/timing.py).
TAIL_PACE = 0.8
# A side streamed alone (a retry) has no other side to share a schedule with: it is released at no
# more than this many characters a second, so that a model faster than this does not show its pace.
SOLO_PACE = 400
# Seconds between two looks for a stop asked of the battle being streamed: each look is a cache read,
# so a stream looks a few times less often than it releases text, soon enough for a person.
STOP_POLL = 0.5
STOPPED = "The answer was stopped."

# Tasks that outlive the request which started them (a visitor who closes the tab still leaves
# their answers recorded, as abandoned, and the battle closed); held here so the event loop does not
# garbage-collect them mid-flight.
_running: set[asyncio.Task[None]] = set()


@dataclass
class StreamPlan:
    battle: Battle
    turn: Turn
    live: bool  # False: the turn already ended, replay it from the database
    # Per side to call, what the call needs (or why it cannot be made), read before the battle is
    # claimed: both sides, or the one a retry asks again.
    calls: dict[str, tuple[CallSpec, list[Message]] | Exception] = field(default_factory=dict)
    others_ok: bool = True  # the sides not called ended well
    stopped: bool = False  # the visitor asked for a stop (rather than closing the stream)
    # False when claiming failed: no answer was started, so none is recorded as ended, and the
    # battle still waits for its stream.
    claimed: bool = True


def run_in_db(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Run ORM work off the event loop, in a pool thread that closes its connection afterwards.

    Side tasks may outlive their request, so they cannot use the request's thread-sensitive
    executor; each call here is a short, self-contained transaction.
    """

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        finally:
            close_old_connections()

    return sync_to_async(wrapped, thread_sensitive=False)


# --- the plan: which turn, which calls, claimed -------------------------------------------------


def plan_stream(*, battle_id: object, visitor: str | None) -> StreamPlan:
    """Claim the battle's latest turn for streaming, with both call records written; or a plan to
    replay the turn when it was streamed already.

    What the calls need is read first (earlier turns, call specs), so that the claim and the
    records are one short transaction, and no call goes out without its record.
    """
    battle = battle_of_visitor(battle_id=battle_id, visitor=visitor)
    turn = battle.turns.latest("index")
    answers = {a.side: a for a in turn.answers.all()}
    # Waiting, or left streaming by a worker that died (claim_stream reclaims those only when stale).
    waiting = (Answer.Status.PENDING, Answer.Status.STREAMING)
    sides = [s for s in battle.sides if answers[s].status in waiting]
    if not sides:
        return StreamPlan(battle, turn, live=False)
    others_ok = all(answers[s].status == Answer.Status.DONE for s in battle.sides if s not in sides)
    plan = StreamPlan(battle, turn, live=True, others_ok=others_ok)
    try:
        earlier = _earlier_turns(turn)
        image = battle_images.message_image(battle)
    except Exception as exc:  # reported on the streamed sides, like any failed call
        plan.calls = dict.fromkeys(sides, exc)
    else:
        for side in sides:
            try:
                if image is not None and not battle.llm(side).vision:  # never sent to one that is not
                    raise UpstreamError(
                        "This model does not read images.",
                        detail=f"{battle.llm(side).name} is not marked vision: the image was not sent",
                    )
                spec = call_spec(battle.llm(side))
                plan.calls[side] = (spec, _conversation(turn, side, earlier, image))
            except Exception as exc:  # reported on that side's stream, like any failed call
                plan.calls[side] = exc
    params = {
        side: call[0].sampling_params()
        for side, call in plan.calls.items()
        if not isinstance(call, Exception)
    }
    try:
        claimed = battle.claim_stream(turn, params)
    except Exception as exc:  # nothing claimed, and no call goes out without its record
        plan.calls.update(dict.fromkeys(params, exc))
        plan.claimed = False
        return plan
    if claimed:
        cache.delete(stop_key(battle.pk))  # a stop asked of an earlier stream is not for this one
        return plan
    battle.refresh_from_db(fields=["state"])
    if battle.state == Battle.State.STREAMING:
        raise Conflict(
            gettext("This battle is already streaming in another window."), code="already_streaming"
        )
    return StreamPlan(battle, turn, live=False)


def _earlier_turns(turn: Turn) -> list[Turn]:
    """The turns before `turn`, with their answers: read once for both sides' conversations."""
    if turn.index == 0:
        return []  # a first turn, the usual case: no query on the path to the first token
    return list(
        Turn.objects.filter(battle_id=turn.battle_id, index__lt=turn.index).prefetch_related("answers")
    )


def _conversation(turn: Turn, side: str, earlier: list[Turn], image: Image | None = None) -> list[Message]:
    """Every turn's prompt and this side's answers; the battle's image goes with the first prompt."""
    messages: list[Message] = []
    for past in earlier:
        messages.append({"role": "user", "content": past.prompt})
        answer = next(a for a in past.answers.all() if a.side == side)
        messages.append({"role": "assistant", "content": answer.text})
    messages.append({"role": "user", "content": turn.prompt})
    if image is not None:
        messages[0]["image"] = image
    return messages


# --- running the calls --------------------------------------------------------------------------


def _answer_ended(turn: Turn, side: str, **fields: Any) -> None:
    Answer.objects.filter(turn=turn, side=side).update(finished=timezone.now(), **fields)


async def _run_side(plan: StreamPlan, side: str, queue: asyncio.Queue[Event]) -> bool:
    """Stream one side's answer onto the queue and record it; True when it ended well.

    Never raises: a failure anywhere, the database's included, ends this side with an error event,
    so the visitor's stream always reaches its end. Cancelled during its call (the visitor left), it
    records the answer as abandoned; cancelled while recording, it raises CancelledError.
    """
    llm = plan.battle.llm(side)
    started = time.monotonic()
    # Times of the first and the last delta as they arrive from the upstream, and how many
    # deltas: the mean gap between deltas is (last - first) / (deltas - 1), with no list kept.
    first = last = started
    deltas = 0
    parts: list[str] = []
    # Characters that draw nothing (zero-width, bidirectional, tags) could mark a side's answers for
    # a voter who knows the mark: neither shown nor stored.
    shown = VisibleStream()
    outage = ""
    try:
        prepared = plan.calls[side]
        if isinstance(prepared, Exception):
            raise prepared
        spec, messages = prepared
        finish: Chunk | None = None
        async with asyncio.timeout(spec.total_timeout):
            async for chunk in backend_for(llm.backend).stream(spec, messages, client()):
                if chunk.kind == "delta" and chunk.text:
                    last = time.monotonic()
                    if not deltas:
                        first = last
                    deltas += chunk.deltas
                    if text := shown.feed(chunk.text):
                        parts.append(text)
                        queue.put_nowait({"side": side, "type": "delta", "text": text})
                elif chunk.kind == "finish":
                    finish = chunk
                    if text := shown.end():
                        parts.append(text)
                        queue.put_nowait({"side": side, "type": "delta", "text": text})
        if finish is None:
            raise UpstreamError(
                "The answer was cut off before it ended.", detail="stream ended without finish"
            )
        outcome: dict[str, Any] = {
            "status": Answer.Status.DONE,
            "finish_reason": finish.finish_reason,
            "inter_token_ms": 1000 * (last - first) / (deltas - 1) if deltas > 1 else None,
            "input_tokens": finish.input_tokens,
            "output_tokens": finish.output_tokens,
        }
        event = {"side": side, "type": "done", "text": ""}
    except asyncio.CancelledError:
        # The visitor stopped it or left (the relay was closed): the upstream call stops here, and
        # the answer is recorded as stopped rather than left streaming.
        if (task := asyncio.current_task()) is not None:
            task.uncancel()  # cancellation handled: what follows must still run
        why = "stopped by the visitor" if plan.stopped else "abandoned: the visitor's stream was closed"
        outcome = {"status": Answer.Status.STOPPED, "error": why}
        event = {"side": side, "type": "error", "text": STOPPED}
    except Exception as exc:  # every failure, a bug included, ends this side cleanly
        public, detail = _failure(exc)
        metrics.upstream_failed(llm.name, exc)
        if isinstance(exc, UpstreamError) and exc.permanent:
            outage = f"{timezone.now():%Y-%m-%d %H:%M} {detail}"
        outcome = {"status": Answer.Status.ERROR, "error": detail}
        event = {"side": side, "type": "error", "text": public}
    metrics.answer_ended(llm.name, outcome, started=started, first=first, last=last, deltas=deltas)
    try:
        if outage:
            await run_in_db(llm.mark_outage)(outage)
        if plan.claimed:
            await run_in_db(_answer_ended)(
                plan.turn,
                side,
                text="".join(parts),
                ttft_ms=(first - started) * 1000 if deltas else None,
                duration_ms=(time.monotonic() - started) * 1000,
                **outcome,
            )
    except Exception:
        logger.exception("could not record answer %s of %s", side, plan.turn)
        if event["type"] == "done":
            event = {"side": side, "type": "error", "text": "The answer could not be saved."}
    queue.put_nowait(event)
    return event["type"] == "done"


def _failure(exc: BaseException) -> tuple[str, str]:
    """(text for the voter, text for operators). The first never names a model or vendor."""
    if isinstance(exc, UpstreamError):
        # A vendor's own status (Gemini's 400 for a bad key, Anthropic's 529) would tell vendors apart.
        return (PUBLIC_HTTP_ERROR if exc.status is not None else exc.public), exc.detail
    if isinstance(exc, TimeoutError):
        return "The answer took too long and was stopped.", "total time-out"
    logger.exception("answer failed", exc_info=exc)
    return "Something went wrong while generating this answer.", f"{type(exc).__name__}: {exc}"


async def _run_turn(plan: StreamPlan, sides: list[asyncio.Task[bool]], queue: asyncio.Queue[Event]) -> None:
    watch = asyncio.create_task(_stop_when_asked(plan, sides))
    try:
        # A side cancelled while recording its answer raises CancelledError here: it did not end well.
        results = await asyncio.gather(*sides, return_exceptions=True)
    finally:
        watch.cancel()
    try:
        ok = plan.others_ok and all(r is True for r in results)
        state = await run_in_db(plan.battle.end_stream)(ok=ok)
    except Exception:
        # The battle stays "streaming" until the stale-stream reclaim; the visitor must not wait.
        logger.exception("could not close %s", plan.battle)
        state = Battle.State.FAILED
    metrics.BATTLES_FAILED.inc(state == Battle.State.FAILED)
    queue.put_nowait({"side": None, "type": "end", "text": "", "state": state})


async def _stop_when_asked(plan: StreamPlan, sides: list[asyncio.Task[bool]]) -> None:
    """Cancel the side tasks once a stop is asked (arena.rounds.battle_stop); until then, look."""
    key = stop_key(plan.battle.pk)
    # Not the request's thread-sensitive executor: this task may outlive the request's handler.
    asked = sync_to_async(cache.get, thread_sensitive=False)
    while not await asked(key):
        await asyncio.sleep(STOP_POLL)
    plan.stopped = True
    for side in sides:
        side.cancel()


# --- relaying -----------------------------------------------------------------------------------


def stream_events(plan: StreamPlan) -> AsyncIterator[list[Event]]:
    """Both answers as one stream of events, a list at a time.

    A live turn's calls start now, not when the stream is first read: the upstream requests go
    out while the response's headers do. Paced (ARENA_PACED_RELAY), the two sides are released on
    one schedule (`_paced`); unpaced, interleaved as they arrive (`_relayed`). Closing the stream
    before its end (the visitor left) cancels the calls still running.
    """
    if not plan.live:
        return _replayed(plan)
    queue: asyncio.Queue[Event] = asyncio.Queue()
    streamed = list(plan.calls)
    sides = [asyncio.create_task(_run_side(plan, side, queue)) for side in streamed]
    metrics.streams_running(sides)
    task = asyncio.create_task(_run_turn(plan, sides, queue))
    _running.add(task)
    task.add_done_callback(_running.discard)
    if settings.ARENA_PACED_RELAY:
        events = _paced(queue, settings.ARENA_PACED_TICK, streamed)
    else:
        events = _relayed(queue)
    return _cancelling(events, sides)


async def _cancelling(
    events: AsyncIterator[list[Event]], sides: list[asyncio.Task[bool]]
) -> AsyncIterator[list[Event]]:
    """`events`; the side tasks cancelled if the stream is closed before their end."""
    try:
        async for batch in events:
            yield batch
    finally:
        for side in sides:
            side.cancel()  # nothing for a side that ended


async def _relayed(queue: asyncio.Queue[Event]) -> AsyncIterator[list[Event]]:
    while True:
        waiting = [await queue.get()]
        # Whatever else is already there goes with it: a busy worker sends a battle's tokens in
        # one write instead of one write per token.
        while not queue.empty():
            waiting.append(queue.get_nowait())
        events = merged(waiting)
        yield events
        if events[-1]["type"] == "end":
            return


@dataclass
class _Held:
    """One side's events held back by the paced relay: text not yet released, its end if it came."""

    text: str = ""
    end: Event | None = None
    ended: bool = False  # its end was released


async def _paced(
    queue: asyncio.Queue[Event], tick: float, sides: list[str] | None = None
) -> AsyncIterator[list[Event]]:
    """Both sides released on one schedule, so that neither time to first token nor pace tells
    the two models apart.

    Nothing goes out until both sides have text (or ended); then, every `tick`, each side gets
    the same number of characters, what the side with less waiting has. Once one side is wholly
    released, the other goes on a little slower than the pace both kept (`TAIL_PACE`), or at its
    own if slower still: a side with a lead never shows it. A side's end follows its last text;
    its text stopping shows that it ended anyway, so holding its done event back would hide nothing.
    One side streamed alone (`sides`, a retry) goes at SOLO_PACE, or at its own if slower.
    """
    held = {side: _Held() for side in sides or (Side.A, Side.B)}
    solo = max(1, round(SOLO_PACE * tick)) if len(held) == 1 else 0
    last: Event | None = None

    def take(event: Event) -> None:
        nonlocal last
        if event["side"] is None:
            last = event
        elif event["type"] == "delta":
            held[event["side"]].text += event["text"]
        else:
            held[event["side"]].end = event

    while not all(h.text or h.end for h in held.values()):
        take(await queue.get())
    shared = ticks = 0  # characters each side got while both were open, and in how many ticks
    while True:
        while not queue.empty():
            take(queue.get_nowait())
        open_sides = [h for h in held.values() if not h.ended]
        if len(open_sides) == 2:
            step = min(len(h.text) for h in open_sides)
            shared, ticks = shared + step, ticks + 1
        elif open_sides and solo:
            step = solo
        elif open_sides:
            # No pace was kept when a side ended before any text: that battle fails, takes no vote.
            step = max(1, round(TAIL_PACE * shared / ticks)) if shared else len(open_sides[0].text)
        else:
            step = 0
        out: list[Event] = []
        for side, h in held.items():
            if h.ended:
                continue
            text, h.text = h.text[:step], h.text[step:]
            if text:
                out.append({"side": side, "type": "delta", "text": text})
            if h.end is not None and not h.text:
                out.append(h.end)
                h.ended = True
        if last is not None and all(h.ended for h in held.values()):
            yield [*out, last]
            return
        if out:
            yield out
        await asyncio.sleep(tick)


def merged(events: list[Event]) -> list[Event]:
    """`events` with each side's consecutive deltas joined into one.

    A side's deltas are joined across the other side's events between them: each side's text
    stays whole and in order, and its done or error event still follows its last delta.
    """
    out: list[Event] = []
    open_deltas: dict[str, Event] = {}  # per side, its delta that later ones join
    for event in events:
        side = event["side"]
        if event["type"] != "delta":
            open_deltas.pop(side, None)
        elif side in open_deltas:
            open_deltas[side]["text"] += event["text"]
            continue
        else:
            open_deltas[side] = event
        out.append(event)
    return out


async def _replayed(plan: StreamPlan) -> AsyncIterator[list[Event]]:
    yield await run_in_db(_replay)(plan)


def _replay(plan: StreamPlan) -> list[Event]:
    events: list[Event] = []
    answers = {a.side: a for a in plan.turn.answers.all()}
    for side in plan.battle.sides:
        answer = answers[side]
        if answer.text:
            events.append({"side": side, "type": "delta", "text": answer.text})
        if answer.status == Answer.Status.DONE:
            events.append({"side": side, "type": "done", "text": ""})
        elif answer.status == Answer.Status.STOPPED:
            events.append({"side": side, "type": "error", "text": STOPPED})
        else:
            events.append({"side": side, "type": "error", "text": "This answer did not complete."})
    state = Battle.objects.values_list("state", flat=True).get(pk=plan.battle.pk)
    events.append({"side": None, "type": "end", "text": "", "state": state})
    return events
