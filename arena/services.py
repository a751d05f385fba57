"""Battle workflows: draw a pair, run a turn against both backends at once, take the vote."""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import re
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, close_old_connections, connection, models, transaction
from django.utils import timezone
from django.utils.crypto import salted_hmac

from arena import categories
from arena.models import Answer, Battle, Side, Turn, Vote
from config.errors import Conflict, DomainError, NotFound, Unavailable
from providers.base import CallSpec, Chunk, Message, UpstreamError
from providers.http import call_spec, client
from providers.models import LLM
from providers.registry import backend_for
from serving.load import saturated_ids

logger = logging.getLogger(__name__)

Event = dict[str, Any]


class BattleError(DomainError):
    pass


def session_hash(session_key: str) -> str:
    """A keyed hash of the visitor's token: stable per visitor, useless to anyone reading the table."""
    return salted_hmac("arena.session", session_key, algorithm="sha256").hexdigest()


def clean_prompt(prompt: object) -> str:
    if not isinstance(prompt, str) or not prompt.strip():
        raise BattleError("The prompt is empty.", code="empty_prompt")
    if len(prompt) > settings.ARENA_PROMPT_MAX_CHARS:
        raise BattleError(
            f"The prompt is {len(prompt)} characters long; the limit is {settings.ARENA_PROMPT_MAX_CHARS}.",
            code="prompt_too_long",
        )
    return prompt


def draw_pair(rng: random.Random | None = None) -> tuple[LLM, LLM]:
    """Two distinct drawable models, each drawn with probability proportional to its weight."""
    rng = rng or random.SystemRandom()
    models = list(LLM.objects.drawable())
    # A local server with requests queued would keep a voter waiting: left out until it catches up.
    busy = saturated_ids(m.pk for m in models)
    models = [m for m in models if m.pk not in busy]
    if len(models) < 2:
        raise Unavailable("Fewer than two models are available right now; please try again later.")
    first = rng.choices(models, weights=[m.weight for m in models])[0]
    rest = [m for m in models if m.pk != first.pk]
    second = rng.choices(rest, weights=[m.weight for m in rest])[0]
    return (first, second) if rng.random() < 0.5 else (second, first)


def _named_pair(model_a: object, model_b: object) -> tuple[LLM, LLM]:
    """The two models a visitor named, read in one query."""
    names = {"model_a": model_a, "model_b": model_b}
    for key, name in names.items():
        if not isinstance(name, str) or not name:
            raise BattleError(f"Named mode needs {key}: the name of a model.", code="missing_model")
    named = LLM.objects.public().active().filter(name__in=names.values()).order_by()  # order: none needed
    found = {llm.name: llm for llm in named}
    for key, name in names.items():
        if name not in found:
            raise BattleError(f"{key}: no available model is named {name!r}.", code="unknown_model")
    return found[model_a], found[model_b]  # type: ignore[index]


# Part of its caller's transaction when there is one (no savepoint: two fewer round trips on the way to
# a battle), its own otherwise.
@transaction.atomic(savepoint=False)
def _open_turn(battle: Battle, index: int, prompt: str) -> Turn:
    turn = Turn.objects.create(battle=battle, index=index, prompt=prompt)
    Answer.objects.bulk_create([Answer(turn=turn, side=Side.A), Answer(turn=turn, side=Side.B)])
    return turn


def battle_start(
    *,
    session: str,
    prompt: object,
    mode: object = Battle.Mode.ANONYMOUS,
    model_a: object = None,
    model_b: object = None,
) -> Battle:
    prompt = clean_prompt(prompt)
    if mode == Battle.Mode.ANONYMOUS:
        if model_a is not None or model_b is not None:
            raise BattleError(
                "Anonymous mode draws the models; do not name them.", code="models_in_anonymous"
            )
        a, b = draw_pair()
    elif mode == Battle.Mode.NAMED:
        a, b = _named_pair(model_a, model_b)
        if a.pk == b.pk:
            raise BattleError("model_a and model_b must be two different models.", code="same_model")
    else:
        raise BattleError('mode must be "anonymous" or "named".', code="unknown_mode")
    with transaction.atomic():
        battle = Battle.objects.create(mode=mode, model_a=a, model_b=b, session_hash=session)
        turn = _open_turn(battle, 0, prompt)
    _hand_over(turn)
    return battle


def battle_of_session(battle_id: object, session: str | None) -> Battle:
    """The battle, if it belongs to this visitor; anyone else is told it does not exist."""
    battle = None
    if session:
        try:
            battle = Battle.objects.select_related("model_a", "model_b").of_session(session).get(pk=battle_id)
        except (Battle.DoesNotExist, ValidationError, ValueError, TypeError):
            battle = None
    if battle is None:
        raise NotFound("No such battle.")
    return battle


def battle_continue(*, battle: Battle, prompt: object) -> Turn:
    prompt = clean_prompt(prompt)
    if battle.state == Battle.State.VOTED:
        raise Conflict("This battle is over: it has a vote. Start a new round.", code="already_voted")
    if battle.state == Battle.State.FAILED:
        raise Conflict("An answer in this battle failed; start a new round.", code="battle_failed")
    if battle.state != Battle.State.READY:
        raise Conflict("Wait for both answers to end before asking a follow-up.", code="answers_pending")
    index = battle.turns.count()
    if index >= settings.ARENA_MAX_TURNS:
        raise Conflict(f"A battle has at most {settings.ARENA_MAX_TURNS} turns.", code="too_many_turns")
    # The conditional update is the claim: two follow-ups sent at once cannot both open a turn.
    with transaction.atomic():
        if not Battle.objects.filter(pk=battle.pk, state=Battle.State.READY).update(
            state=Battle.State.PENDING
        ):
            raise Conflict("Wait for both answers to end before asking a follow-up.", code="answers_pending")
        try:
            turn = _open_turn(battle, index, prompt)
        except IntegrityError as exc:
            raise Conflict("Another follow-up was sent at the same time.", code="answers_pending") from exc
    battle.state = Battle.State.PENDING
    _hand_over(turn)
    return turn


# --- voting ------------------------------------------------------------------------------------


def leaked_identity(texts: Iterable[str], models: Iterable[LLM]) -> bool:
    """Whether an answer names either model, its upstream id or its organisation."""
    terms = sorted({t for m in models for t in m.identity_terms()}, key=len, reverse=True)
    if not terms:
        return False
    pattern = re.compile(
        r"(?<![\w-])(" + "|".join(re.escape(t) for t in terms) + r")(?![\w-])", re.IGNORECASE
    )
    return any(pattern.search(text) for text in texts)


def battle_vote(*, battle: Battle, winner: object) -> Vote:
    if winner not in Vote.Winner.values:
        raise BattleError('winner must be one of "a", "b", "tie", "bothbad".', code="unknown_winner")
    if battle.state == Battle.State.VOTED:
        raise Conflict("This battle already has a vote.", code="already_voted")
    if battle.state == Battle.State.FAILED:
        raise Conflict("An answer in this battle failed, so it cannot be voted on.", code="battle_failed")
    if battle.state != Battle.State.READY:
        raise Conflict("Both answers must end before you vote.", code="answers_pending")
    turns = list(battle.turns.prefetch_related("answers"))
    answers = {side: [a.text for t in turns for a in t.answers.all() if a.side == side] for side in Side}
    leak = leaked_identity(answers[Side.A] + answers[Side.B], [battle.model_a, battle.model_b])
    tags = categories.tags([t.prompt for t in turns])
    try:
        with transaction.atomic():
            # Claim the battle: only one request can move it from ready to voted.
            if not Battle.objects.filter(pk=battle.pk, state=Battle.State.READY).update(
                state=Battle.State.VOTED
            ):
                raise Conflict("This battle already has a vote.", code="already_voted")
            vote = Vote.objects.create(
                battle=battle,
                winner=winner,
                excluded=Vote.Exclusion.IDENTITY_LEAK if leak else "",
                conv_metadata=categories.conv_metadata(answers[Side.A], answers[Side.B]),
                **asdict(tags),
            )
    except IntegrityError as exc:
        raise Conflict("This battle already has a vote.", code="already_voted") from exc
    battle.state = Battle.State.VOTED
    return vote


# --- streaming a turn ---------------------------------------------------------------------------

# Tasks that outlive the request which started them (a visitor closing the tab must not leave a
# half-written battle); held here so the event loop does not garbage-collect them mid-flight.
_running: set[asyncio.Task[None]] = set()


@dataclass
class StreamPlan:
    battle: Battle
    turn: Turn
    live: bool  # False: the turn already ended, replay it from the database
    # Per side, what the call needs (or why it cannot be made), read while the battle is claimed.
    calls: dict[str, tuple[CallSpec, list[Message]] | Exception] = field(default_factory=dict)


def _stale_before() -> Any:
    return timezone.now() - timedelta(seconds=settings.UPSTREAM_TOTAL_TIMEOUT + 60)


def run_in_db(fn: Any) -> Any:
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


# --- the hand-over from a turn's opening to its stream ---------------------------------------------------

# The request that opens a turn (a new battle, a follow-up) leaves the turn here, with its battle and
# both models, for the stream request that follows it: when that one is served by this process, its
# calls start without reading those rows back (`_latest_turn`: a round trip and four instances made,
# 0.14 ms with the CPU warm, more on a stream request's cold thread, on the path to the first token).
# Another process reads them from the database. Bounded and short-lived: an entry a stream request never
# took (served elsewhere, or never made) goes after HAND_OVER_SECONDS or when HAND_OVER_MAX newer
# ones came.
HAND_OVER_SECONDS = 30.0
HAND_OVER_MAX = 1000
_handed: OrderedDict[str, tuple[float, Turn]] = OrderedDict()
_handed_lock = threading.Lock()


def _hand_over(turn: Turn) -> None:
    with _handed_lock:
        _handed[str(turn.battle_id)] = (time.monotonic(), turn)
        _handed.move_to_end(str(turn.battle_id))
        while len(_handed) > HAND_OVER_MAX:
            _handed.popitem(last=False)


def _take_handed(battle_id: object, session: str | None) -> Turn | None:
    """The turn this process opened for the battle, taken (at most once), if it is recent and the
    battle is the visitor's; None otherwise.

    It may no longer be the battle's latest turn (another process opened a newer one since), which
    `_claim` finds out: its answers are then no longer waiting to be streamed."""
    try:
        key = str(uuid.UUID(str(battle_id)))
    except ValueError:
        return None
    with _handed_lock:
        entry = _handed.pop(key, None)
    if entry is None:
        return None
    at, turn = entry
    if time.monotonic() - at > HAND_OVER_SECONDS or not session or turn.battle.session_hash != session:
        return None
    return turn


class _NotLatest(Exception):
    """A handed-over turn was streamed already, or is no longer the latest: plan from the database."""


def plan_stream(*, battle_id: object, session: str | None) -> StreamPlan:
    handed = _take_handed(battle_id, session)
    if handed is not None:
        try:
            return _claim(handed.battle, handed, handed=True)
        except _NotLatest:
            pass  # nothing was claimed
    turn = _latest_turn(battle_id, session)
    return _claim(turn.battle, turn)


def _latest_turn(battle_id: object, session: str | None) -> Turn:
    """The battle's latest turn with the battle and both its models, in one query.

    Like `battle_of_session`: a battle of another visitor does not exist.
    """
    row = None
    if session:
        try:
            params = [_value(Battle, "id", uuid.UUID(str(battle_id))), session]
        except ValueError:
            params = None
        if params is not None:
            with connection.cursor() as cursor:
                cursor.execute(_latest_turn_sql(connection.vendor), params)
                row = cursor.fetchone()
    if row is None:
        raise NotFound("No such battle.")
    values = iter(row)
    turn, battle, model_a, model_b = (_from_row(model, values) for model in (Turn, Battle, LLM, LLM))
    battle.model_a, battle.model_b = model_a, model_b
    turn.battle = battle
    return turn


@functools.cache
def _latest_turn_sql(vendor: str) -> str:
    """Written out like the claim's statements (see there): the ORM spent 1.2 ms of Python building
    this query and its four instances when the CPU was warm, 2.5-3.5 ms on a stream request's
    thread. The columns are each model's concrete fields in order, as `_from_row` takes them."""
    quote = connection.ops.quote_name

    def column(model: type[models.Model], name: str) -> str:
        return quote(model._meta.get_field(name).column)

    def columns(model: type[models.Model], alias: str) -> str:
        return ", ".join(f"{alias}.{quote(f.column)}" for f in model._meta.concrete_fields)

    turns, battles, llms = (quote(model._meta.db_table) for model in (Turn, Battle, LLM))
    return (
        f"SELECT {columns(Turn, 't')}, {columns(Battle, 'b')}, {columns(LLM, 'ma')}, {columns(LLM, 'mb')} "
        f"FROM {turns} t JOIN {battles} b ON b.{column(Battle, 'id')} = t.{column(Turn, 'battle')} "
        f"JOIN {llms} ma ON ma.{column(LLM, 'id')} = b.{column(Battle, 'model_a')} "
        f"JOIN {llms} mb ON mb.{column(LLM, 'id')} = b.{column(Battle, 'model_b')} "
        f"WHERE t.{column(Turn, 'battle')} = %s AND b.{column(Battle, 'session_hash')} = %s "
        f"ORDER BY t.{column(Turn, 'index')} DESC LIMIT 1"
    )


@functools.cache
def _converters(model: type[models.Model], vendor: str) -> list[tuple[Any, list[Any]]]:
    """Per concrete field, its column expression and what turns the database's value into the
    field's, as the ORM's compiler applies them (booleans, datetimes and UUIDs stored as text on
    SQLite, JSON, and so on)."""
    table = model._meta.db_table
    return [
        (col, connection.ops.get_db_converters(col) + field.get_db_converters(connection))
        for field in model._meta.concrete_fields
        for col in [field.get_col(table)]
    ]


def _from_row(model: type[models.Model], values: Iterator[Any]) -> Any:
    """The next instance of `model` from a row's values, in the order of its concrete fields."""
    converted = []
    for col, converters in _converters(model, connection.vendor):
        value = next(values)
        for convert in converters:
            value = convert(value, col, connection)
        converted.append(value)
    return model.from_db(connection.alias, [f.attname for f in model._meta.concrete_fields], converted)


def _claim(battle: Battle, turn: Turn, *, handed: bool = False) -> StreamPlan:
    """Claim the battle for streaming `turn` and write both call records, all or nothing; a plan to
    replay the turn when it was streamed already.

    What the calls need is made first (earlier turns, call specs), so that the claim and the records
    go in one step: one statement on PostgreSQL, one transaction elsewhere. A handed-over turn
    (`_take_handed`) is only claimed while both its answers still wait to be streamed, which only
    the latest turn's do; otherwise nothing is claimed and `_NotLatest` is raised.
    """
    plan = StreamPlan(battle, turn, live=True)
    params: dict[str, dict[str, Any]] = {}
    try:
        earlier = _earlier_turns(turn)
    except Exception as exc:  # reported on both sides' streams, like any failed call
        plan.calls = {Side.A: exc, Side.B: exc}
    else:
        for side in (Side.A, Side.B):
            try:
                spec = call_spec(battle.llm(side))
                plan.calls[side] = (spec, _conversation(turn, side, earlier))
                params[side] = spec.sampling_params()
            except Exception as exc:  # reported on that side's stream, like any failed call
                plan.calls[side] = exc
    if handed and len(params) < 2:
        raise _NotLatest  # the usual path reports the failure
    try:
        claimed = _claim_and_start(battle, turn, params, waiting=handed)
    except Exception as exc:  # nothing claimed, and no call goes out without its record
        if handed:
            raise _NotLatest from exc
        plan.calls.update(dict.fromkeys(params, exc))
        return plan
    if claimed:
        battle.state = Battle.State.STREAMING
        return plan
    if handed:
        raise _NotLatest
    battle.refresh_from_db(fields=["state"])
    if battle.state == Battle.State.STREAMING:
        raise Conflict("This battle is already streaming in another window.", code="already_streaming")
    return StreamPlan(battle, turn, live=False)


def _earlier_turns(turn: Turn) -> list[Turn]:
    """The turns before `turn`, with their answers: read once for both sides' conversations."""
    if turn.index == 0:
        return []  # a first turn, the usual case: no query on the path to the first token
    return list(
        Turn.objects.filter(battle_id=turn.battle_id, index__lt=turn.index).prefetch_related("answers")
    )


def _conversation(turn: Turn, side: str, earlier: list[Turn]) -> list[Message]:
    messages: list[Message] = []
    for past in earlier:
        messages.append({"role": "user", "content": past.prompt})
        answer = next(a for a in past.answers.all() if a.side == side)
        messages.append({"role": "assistant", "content": answer.text})
    messages.append({"role": "user", "content": turn.prompt})
    return messages


# The claim's statements, written out: the ORM spent a millisecond or two of Python building them
# (filters, a Case over JSON values), on every battle's path to the first token. On PostgreSQL both
# updates go in one statement (data-modifying CTEs), in autocommit: one round trip instead of four
# (BEGIN, two updates, COMMIT), about a millisecond less before the calls go out.
_CLAIM = (
    "UPDATE {table} SET {state} = %s, {updated} = %s "
    "WHERE {id} = %s AND ({state} = %s OR ({state} = %s AND {updated} < %s))"
)
_STARTED = "UPDATE {table} SET {status} = %s, {started} = %s, {params} = {value}, {text} = '', {error} = '' "
_BOTH_SIDES = "CASE {side} WHEN %s THEN %s ELSE %s END"
# Only if the turn's answers all wait: a handed-over turn that was streamed or superseded is not claimed.
_ALL_WAITING = " AND NOT EXISTS (SELECT 1 FROM {answers} WHERE {turn} = %s AND {status} <> %s)"


@functools.cache
def _statement(model: type[models.Model], template: str, vendor: str) -> str:
    """`template` with {table} and each {field} as this database spells and quotes them."""
    quote = connection.ops.quote_name
    names = {f.name: quote(f.column) for f in model._meta.concrete_fields}
    return template.format(table=quote(model._meta.db_table), **names)


def _value(model: type[models.Model], field: str, value: Any) -> Any:
    return model._meta.get_field(field).get_db_prep_value(value, connection)


def _claim_and_start(
    battle: Battle, turn: Turn, params: dict[str, dict[str, Any]], *, waiting: bool = False
) -> bool:
    """Move the battle to streaming, if it waits for its answers or a stream left it streaming for
    longer than a call may last (a worker that died mid-stream), and write the call records of the
    sides in `params` (side: its sampling parameters); both or neither. True if it was claimed.

    waiting: only claim it while all the turn's answers wait to be streamed (and then all are
    written, or nothing is)."""
    claim_sql, claim_params = _claim_statement(battle, turn if waiting else None)
    if not params:
        with connection.cursor() as cursor:
            cursor.execute(claim_sql, claim_params)
            return cursor.rowcount == 1
    start_sql, start_params = _start_statement(turn, params)
    if connection.vendor == "postgresql":
        sql = (
            f"WITH claimed AS ({claim_sql} RETURNING 1), "
            f"started AS ({start_sql} AND EXISTS (SELECT 1 FROM claimed) RETURNING 1) "
            "SELECT (SELECT count(*) FROM claimed), (SELECT count(*) FROM started)"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, [*claim_params, *start_params])
            claimed, started = cursor.fetchone()
    else:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(claim_sql, claim_params)
            claimed = cursor.rowcount
            started = 0
            if claimed:
                cursor.execute(start_sql, start_params)
                started = cursor.rowcount
    if claimed and started != len(params):  # a bug, not a race: the claim holds the battle's turn
        raise RuntimeError(f"claimed {battle} but started {started} of {len(params)} answers")
    return claimed == 1


def _claim_statement(battle: Battle, waiting: Turn | None) -> tuple[str, list[Any]]:
    """The battle's update to streaming (see `_claim_and_start`), with its parameters; with
    `waiting`, only while none of that turn's answers has left pending."""
    params = [
        Battle.State.STREAMING,
        _value(Battle, "updated", timezone.now()),
        _value(Battle, "id", battle.pk),
        Battle.State.PENDING,
        Battle.State.STREAMING,
        _value(Battle, "updated", _stale_before()),
    ]
    sql = _statement(Battle, _CLAIM, connection.vendor)
    if waiting is not None:
        sql += _all_waiting(connection.vendor)
        params += [waiting.pk, Answer.Status.PENDING]
    return sql, params


@functools.cache
def _all_waiting(vendor: str) -> str:
    quote = connection.ops.quote_name
    return _ALL_WAITING.format(
        answers=quote(Answer._meta.db_table),
        turn=quote(Answer._meta.get_field("turn").column),
        status=quote(Answer._meta.get_field("status").column),
    )


def _start_statement(turn: Turn, params: dict[str, dict[str, Any]]) -> tuple[str, list[Any]]:
    """The statement writing the call records of the sides in `params`, with its parameters."""
    sides = list(params)
    values = [_value(Answer, "params", params[side]) for side in sides]
    value, value_params = ("%s", values) if len(sides) == 1 else (_BOTH_SIDES, [sides[0], *values])
    where = "WHERE {turn} = %s AND {side} IN (" + ", ".join(["%s"] * len(sides)) + ")"
    template = _STARTED.replace("{value}", value) + where
    return _statement(Answer, template, connection.vendor), [
        Answer.Status.STREAMING,
        _value(Answer, "started", timezone.now()),
        *value_params,
        turn.pk,
        *sides,
    ]


def _answer_ended(turn: Turn, side: str, **fields: Any) -> None:
    Answer.objects.filter(turn=turn, side=side).update(finished=timezone.now(), **fields)


def _battle_ended(battle: Battle, ok: bool) -> str:
    state = Battle.State.READY if ok else Battle.State.FAILED
    Battle.objects.filter(pk=battle.pk, state=Battle.State.STREAMING).update(state=state)
    return state


async def _run_side(plan: StreamPlan, side: str, queue: asyncio.Queue[Event]) -> bool:
    """Stream one side's answer onto the queue and record it; True when it ended well.

    Never raises: a failure anywhere, the database's included, ends this side with an error event,
    so the visitor's stream always reaches its end.
    """
    llm = plan.battle.llm(side)
    started = time.monotonic()
    # Times of the first and the last delta as they arrive from the upstream, and how many
    # deltas: the mean gap between deltas is (last - first) / (deltas - 1), with no list kept.
    first = last = started
    deltas = 0
    parts: list[str] = []
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
                    parts.append(chunk.text)
                    queue.put_nowait({"side": side, "type": "delta", "text": chunk.text})
                elif chunk.kind == "finish":
                    finish = chunk
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
    except Exception as exc:  # every failure, a bug included, ends this side cleanly
        public, detail = _failure(exc)
        if isinstance(exc, UpstreamError) and exc.permanent:
            outage = f"{timezone.now():%Y-%m-%d %H:%M} {detail}"
        outcome = {"status": Answer.Status.ERROR, "error": detail}
        event = {"side": side, "type": "error", "text": public}
    try:
        if outage:
            await run_in_db(llm.mark_outage)(outage)
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
        return exc.public, exc.detail
    if isinstance(exc, TimeoutError):
        return "The answer took too long and was stopped.", "total time-out"
    logger.exception("answer failed", exc_info=exc)
    return "Something went wrong while generating this answer.", f"{type(exc).__name__}: {exc}"


async def _run_turn(plan: StreamPlan, queue: asyncio.Queue[Event]) -> None:
    results = await asyncio.gather(_run_side(plan, Side.A, queue), _run_side(plan, Side.B, queue))
    try:
        state = await run_in_db(_battle_ended)(plan.battle, all(results))
    except Exception:
        # The battle stays "streaming" until the stale-stream reclaim; the visitor must not wait.
        logger.exception("could not close %s", plan.battle)
        state = Battle.State.FAILED
    queue.put_nowait({"side": None, "type": "end", "text": "", "state": state})


def stream_events(plan: StreamPlan) -> AsyncIterator[list[Event]]:
    """Both answers as one stream of events, interleaved as they arrive, a list at a time.

    A live turn's calls start now, not when the stream is first read: the upstream requests go
    out while the response's headers do. Each list holds the events that were waiting when it
    was made (`merged`); a quiet stream's events come one by one, with no wait to batch them.
    """
    if not plan.live:
        return _replayed(plan)
    queue: asyncio.Queue[Event] = asyncio.Queue()
    task = asyncio.create_task(_run_turn(plan, queue))
    _running.add(task)
    task.add_done_callback(_running.discard)
    return _relayed(queue)


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
    for side in (Side.A, Side.B):
        answer = answers[side]
        if answer.text:
            events.append({"side": side, "type": "delta", "text": answer.text})
        if answer.status == Answer.Status.DONE:
            events.append({"side": side, "type": "done", "text": ""})
        else:
            events.append({"side": side, "type": "error", "text": "This answer did not complete."})
    state = Battle.objects.values_list("state", flat=True).get(pk=plan.battle.pk)
    events.append({"side": None, "type": "end", "text": "", "state": state})
    return events
