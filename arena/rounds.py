"""Trying a turn's answers again (retry one side, regenerate both) and stopping them.

A round is never wasted. A failed or stopped side can be retried, and the latest turn asked again
of both sides (regenerated); each new try calls a model, so it pays what a new battle pays
(arena/views.py: the challenge and the battle caps), and a side's answer to a turn is tried at most
MAX_TRIES times. A regeneration keeps both models, so no number of them shows a different one.

A fresh model, and what the vote then means. In an anonymous battle, a retry after the side's
model failed FAILURES_BEFORE_FRESH_MODEL times on the first turn draws a different model for that
side, server-side, by weight, among the models that have not tried that side. Only on the first
turn: there the fresh model answers every turn of the battle, so the vote compares the battle's
final two models on the same conversation, and is copied onto the vote as such. On a follow-up a
side keeps its model: the turns before already compare the two, and a vote covers the turns that
ended well (the failed latest one is left out), each answered by the battle's two models. So a vote
is always attributed to two models that answered every turn it covers. Every try stays on record
with the model that made it (Answer.llm, AnswerAttempt), and the vote's identity-leak check reads
every answer the voter saw, replaced tries included.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext

from arena import gate
from arena.models import Answer, AnswerAttempt, Battle, Side, Turn
from arena.services import FAILURES_BEFORE_FRESH_MODEL, MAX_TRIES, RETRYABLE, BattleError
from config.errors import Conflict
from providers.models import LLM
from serving.load import saturated_ids


@dataclass(frozen=True)
class Retried:
    turn: Turn
    answer: Answer
    fresh_model: bool  # a different model answers this side from now on


def _require_ended(battle: Battle) -> None:
    if battle.state == Battle.State.VOTED:
        raise Conflict(
            gettext("This battle is over: it has a vote. Start a new round."), code="already_voted"
        )
    if battle.state != Battle.State.READY and battle.state != Battle.State.FAILED:
        raise Conflict(
            gettext("The answers are still coming: wait for them, or stop them."), code="answers_pending"
        )


def retry_target(*, battle: Battle, side: object) -> tuple[Turn, Answer]:
    """The latest turn and its answer on `side`, if that answer may be tried again; else why not."""
    if side not in battle.sides:
        raise BattleError(gettext('side must be "a" or "b" ("a" in a direct chat).'), code="unknown_side")
    _require_ended(battle)
    turn = battle.turns.latest("index")
    answer = turn.answers.get(side=side)
    if answer.status not in RETRYABLE:
        raise Conflict(
            gettext(
                "Model %(side)s’s answer ended well, so there is nothing to retry "
                "(regenerate asks both models again)."
            )
            % {"side": str(side).upper()},
            code="side_did_not_fail",
        )
    _require_tries_left(answer)
    return turn, answer


def _require_tries_left(answer: Answer) -> None:
    if answer.attempt >= MAX_TRIES:
        raise Conflict(
            gettext(
                "Model %(side)s’s answer to this turn was tried %(n)s times, "
                "the most a turn allows. Vote on the turns before it, or start a new round."
            )
            % {"side": answer.side.upper(), "n": answer.attempt},
            code="too_many_tries",
        )


def battle_retry(*, battle: Battle, side: object, voter: gate.Voter) -> Retried:
    """Ask the latest turn again of one side whose answer failed or was stopped (see the module's
    docstring for when a fresh model answers instead)."""
    turn, answer = retry_target(battle=battle, side=side)
    llm = fresh_model(battle=battle, turn=turn, answer=answer) or battle.llm(answer.side)
    with transaction.atomic():
        _claim_for_new_try(battle, voter)
        fresh = llm.pk != battle.llm(answer.side).pk
        if fresh:
            battle.replace_model(answer.side, llm)
        answer.replace(reason=AnswerAttempt.Reason.RETRY, llm=llm)
    return Retried(turn=turn, answer=answer, fresh_model=fresh)


def fresh_model(
    *, battle: Battle, turn: Turn, answer: Answer, rng: random.Random | None = None
) -> LLM | None:
    """The model a retry of `answer` draws instead of its own, or None when it keeps its own: in an
    anonymous battle's first turn, once the side's model failed FAILURES_BEFORE_FRESH_MODEL times.

    Drawn by weight among the drawable models other than the opposite side's and every model that
    has tried this side; None if there is none, and the side's model tries again.
    """
    if battle.mode != Battle.Mode.ANONYMOUS or turn.index != 0:
        return None
    tries = list(AnswerAttempt.objects.filter(turn=turn, side=answer.side).values_list("llm", "status"))
    tries.append((answer.llm_id, answer.status))
    failures = sum(1 for llm, status in tries if llm == answer.llm_id and status == Answer.Status.ERROR)
    if failures < FAILURES_BEFORE_FRESH_MODEL:
        return None
    other = battle.llm(Side.B if answer.side == Side.A else Side.A)
    tried = {llm for llm, _ in tries} | {other.pk}
    drawable = LLM.objects.drawable().filter(**({"vision": True} if battle.image else {}))
    models = [m for m in drawable if m.pk not in tried]
    busy = saturated_ids(m.pk for m in models)
    models = [m for m in models if m.pk not in busy]
    if not models:
        return None
    rng = rng or random.SystemRandom()
    return rng.choices(models, weights=[m.weight for m in models])[0]


def regenerate_target(*, battle: Battle) -> tuple[Turn, list[Answer]]:
    """The latest turn and both its answers, if the turn may be asked again; else why not."""
    _require_ended(battle)
    turn = battle.turns.latest("index")
    answers = list(turn.answers.all())
    for answer in answers:
        _require_tries_left(answer)
    return turn, answers


def battle_regenerate(*, battle: Battle, voter: gate.Voter) -> Turn:
    """Ask the latest turn again of both sides, of the same two models."""
    turn, answers = regenerate_target(battle=battle)
    with transaction.atomic():
        _claim_for_new_try(battle, voter)
        for answer in answers:
            answer.replace(reason=AnswerAttempt.Reason.REGENERATE, llm=battle.llm(answer.side))
    return turn


def _claim_for_new_try(battle: Battle, voter: gate.Voter) -> None:
    """Move the ended battle back to waiting for answers, counted as open like a new battle.

    The conditional update is the claim: a vote, a follow-up or another try sent at the same time
    cannot also pass.
    """
    gate.check_open_battles(voter)
    if not Battle.objects.filter(pk=battle.pk, state=battle.state).update(
        state=Battle.State.PENDING, updated=timezone.now()
    ):
        raise Conflict(
            gettext("The battle changed meanwhile (in another window?); reload it."), code="answers_pending"
        )
    battle.state = Battle.State.PENDING


def stop_key(battle_id: object) -> str:
    """The cache key by which a stop reaches the process streaming the battle (arena.streaming)."""
    return f"arena:stop:{battle_id}"


def battle_stop(*, battle: Battle) -> str:
    """Stop the answers being generated; returns the battle's state.

    A battle whose stream has not begun ends at once, its waiting answers stopped. A streaming one
    may be streamed by another process: the stop is left in the cache, where that stream looks for
    it, and the stream ends as if the visitor had closed it.
    """
    if battle.state == Battle.State.PENDING:
        now = timezone.now()
        with transaction.atomic():
            if Battle.objects.filter(pk=battle.pk, state=Battle.State.PENDING).update(
                state=Battle.State.FAILED, updated=now
            ):
                Answer.objects.filter(turn=battle.turns.latest("index"), status=Answer.Status.PENDING).update(
                    status=Answer.Status.STOPPED, error="stopped by the visitor before the call", finished=now
                )
                battle.state = Battle.State.FAILED
                return battle.state
        battle.refresh_from_db(fields=["state"])  # the stream claimed it meanwhile
    if battle.state == Battle.State.STREAMING:
        cache.set(stop_key(battle.pk), True, settings.UPSTREAM_TOTAL_TIMEOUT + 60)
        return battle.state
    raise Conflict(
        gettext("Nothing is being answered in this battle, so there is nothing to stop."),
        code="not_streaming",
    )
