"""Battle workflows: draw a pair and open a battle, ask a follow-up, try a turn's answers again,
stop them, take the vote.

Streaming a turn's answers is `arena.streaming`.

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
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import datetime

import numpy as np
from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Count, OuterRef, QuerySet, Subquery
from django.db.models.functions import Substr
from django.utils import timezone
from django.utils.crypto import salted_hmac

from arena import categories, gate, sampling
from arena.models import Answer, AnswerAttempt, Battle, SamplingPlan, Side, Turn, Vote, prompt_hash
from arena.signals import vote_recorded
from config import metrics
from config.errors import Conflict, DomainError, NotFound, Unavailable
from providers import moderation
from providers.models import LLM
from providers.text import names_itself
from providers.variants import record_test_vote
from serving.load import saturated_ids


class BattleError(DomainError):
    pass


# A side's answer to a turn is tried at most this many times: the first try, retries and regenerations.
MAX_TRIES = 4
# Failures of a side's model on the first turn before a retry of it draws a fresh model (anonymous).
FAILURES_BEFORE_FRESH_MODEL = 2
# Answers that did not end well, and may be tried again.
RETRYABLE = (Answer.Status.ERROR, Answer.Status.STOPPED)


def visitor_hash(token: str) -> str:
    """A keyed hash of the visitor's token: stable per visitor, useless to anyone reading the table."""
    # The salt is part of every stored hash: a new one would orphan every visitor's battles.
    return salted_hmac("arena.session", token, algorithm="sha256").hexdigest()


def clean_prompt(prompt: object) -> str:
    if not isinstance(prompt, str) or not prompt.strip():
        raise BattleError("The prompt is empty.", code="empty_prompt")
    if len(prompt) > settings.ARENA_PROMPT_MAX_CHARS:
        raise BattleError(
            f"The prompt is {len(prompt)} characters long; the limit is {settings.ARENA_PROMPT_MAX_CHARS}.",
            code="prompt_too_long",
        )
    return prompt


@dataclass(frozen=True)
class Draw:
    model_a: LLM
    model_b: LLM
    propensity: float  # the probability the unordered pair had at that moment
    sampler: str  # "active", or "weights" (chosen, or without a plan yet)


def draw(rng: random.Random | None = None) -> Draw:
    """Two distinct drawable models, by the sampler in force (ARENA_SAMPLER, see arena.sampling),
    sides shuffled.

    Reads the drawable models and at most the latest sampling plan, never the votes: a draw costs
    the same however many votes the board holds.
    """
    rng = rng or random.SystemRandom()
    models = list(LLM.objects.drawable())
    # A local server with requests queued would keep a voter waiting: left out until it catches up.
    busy = saturated_ids(m.pk for m in models)
    models = [m for m in models if m.pk not in busy]
    if len(models) < 2:
        raise Unavailable("Fewer than two models are available right now; please try again later.")
    weights = np.array([m.weight for m in models])
    plan = SamplingPlan.objects.latest_first().first() if settings.ARENA_SAMPLER == "active" else None
    if plan is None:
        sampler, p = "weights", sampling.weight_pairs(weights)
    else:
        gains, votes = plan.restricted([m.pk for m in models])
        new = votes < settings.ARENA_SAMPLER_NEW_MODEL_VOTES
        floor, boost = settings.ARENA_SAMPLER_FLOOR, settings.ARENA_SAMPLER_BOOST
        sampler, p = "active", sampling.active_pairs(weights, gains, new, floor=floor, boost=boost)
    k = sampling.choose(p, rng.random())
    i, j = sampling.pairs(len(models))
    first, second = models[i[k]], models[j[k]]
    if rng.random() < 0.5:
        first, second = second, first
    return Draw(first, second, float(p[k]), sampler)


def draw_pair(rng: random.Random | None = None) -> tuple[LLM, LLM]:
    """The two models of a `draw`, as side A and side B."""
    drawn = draw(rng)
    return drawn.model_a, drawn.model_b


def sampling_plan_write(
    *,
    model_ids: list[int],
    ratings: np.ndarray,
    widths: np.ndarray,
    model_a: np.ndarray,
    model_b: np.ndarray,
    count: np.ndarray,
) -> SamplingPlan:
    """The active sampler's plan from a new overall board, replacing the previous one.

    model_ids are the board's models, ratings their display ratings and widths their intervals'
    widths; model_a, model_b and count its votes, as indices into model_ids with the number of votes
    of each row.
    """
    size = len(model_ids)
    a, b, n = np.asarray(model_a), np.asarray(model_b), np.asarray(count, dtype=np.float64)
    votes = np.bincount(a, weights=n, minlength=size) + np.bincount(b, weights=n, minlength=size)
    drawable = set(LLM.objects.drawable().filter(pk__in=model_ids).values_list("pk", flat=True))
    focus = np.array([pk in drawable for pk in model_ids], dtype=bool)
    gains = sampling.plan_gains(
        np.asarray(ratings),
        np.asarray(widths),
        focus,
        votes=float(n.sum()),
        floor=settings.ARENA_SAMPLER_FLOOR,
    )
    plan = SamplingPlan.of(list(model_ids), [int(v) for v in votes], gains)
    with transaction.atomic():
        plan.save()
        SamplingPlan.objects.exclude(pk=plan.pk).delete()
    return plan


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


@metrics.counted_battle_start
def battle_start(
    *,
    visitor: str,
    prompt: object,
    network: str = "",
    mode: object = Battle.Mode.ANONYMOUS,
    model_a: object = None,
    model_b: object = None,
) -> Battle:
    """A new battle of the visitor (their `visitor_hash`) from a network (its `network_hash`), its
    first turn waiting to be streamed; refused (429) while they have as many open as they may."""
    prompt = clean_prompt(prompt)
    moderation.screen_sync(prompt, visitor=visitor)  # before any model is drawn or called
    if mode == Battle.Mode.ANONYMOUS:
        if model_a is not None or model_b is not None:
            raise BattleError(
                "Anonymous mode draws the models; do not name them.", code="models_in_anonymous"
            )
        drawn = draw()
        a, b = drawn.model_a, drawn.model_b
        propensity: float | None = drawn.propensity
    elif mode == Battle.Mode.NAMED:
        a, b = _named_pair(model_a, model_b)
        propensity = None
        if a.pk == b.pk:
            raise BattleError("model_a and model_b must be two different models.", code="same_model")
    else:
        raise BattleError('mode must be "anonymous" or "named".', code="unknown_mode")
    with transaction.atomic():
        gate.check_open_battles(gate.Voter(visitor=visitor, network=network))
        battle = Battle.objects.create(
            mode=mode,
            model_a=a,
            model_b=b,
            visitor_hash=visitor,
            network_hash=network,
            prompt_hash=prompt_hash(prompt),
            propensity=propensity,
        )
        battle.open_turn(0, prompt)
    return battle


def battle_of_visitor(*, battle_id: object, visitor: str | None) -> Battle:
    """The battle, if it belongs to this visitor; anyone else is told it does not exist."""
    battle = None
    if visitor:
        try:
            battle = Battle.objects.select_related("model_a", "model_b").of_visitor(visitor).get(pk=battle_id)
        except (Battle.DoesNotExist, ValidationError, ValueError, TypeError):
            battle = None
    if battle is None:
        raise NotFound("No such battle.")
    return battle


def battle_continue(*, battle: Battle, prompt: object) -> Turn:
    prompt = clean_prompt(prompt)
    moderation.screen_sync(prompt, visitor=battle.visitor_hash)
    if battle.state == Battle.State.VOTED:
        raise Conflict("This battle is over: it has a vote. Start a new round.", code="already_voted")
    if battle.state == Battle.State.FAILED:
        raise Conflict(
            "An answer to the latest turn did not end well: retry it or ask both again before a follow-up.",
            code="battle_failed",
        )
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
            turn = battle.open_turn(index, prompt)
        except IntegrityError as exc:
            raise Conflict("Another follow-up was sent at the same time.", code="answers_pending") from exc
    battle.state = Battle.State.PENDING
    return turn


# --- trying again, stopping ---------------------------------------------------------------------


@dataclass(frozen=True)
class Retried:
    turn: Turn
    answer: Answer
    fresh_model: bool  # a different model answers this side from now on


def _require_ended(battle: Battle) -> None:
    if battle.state == Battle.State.VOTED:
        raise Conflict("This battle is over: it has a vote. Start a new round.", code="already_voted")
    if battle.state != Battle.State.READY and battle.state != Battle.State.FAILED:
        raise Conflict("The answers are still coming: wait for them, or stop them.", code="answers_pending")


def retry_target(*, battle: Battle, side: object) -> tuple[Turn, Answer]:
    """The latest turn and its answer on `side`, if that answer may be tried again; else why not."""
    if side not in Side.values:
        raise BattleError('side must be "a" or "b".', code="unknown_side")
    _require_ended(battle)
    turn = battle.turns.latest("index")
    answer = turn.answers.get(side=side)
    if answer.status not in RETRYABLE:
        raise Conflict(
            f"Model {str(side).upper()}\u2019s answer ended well, so there is nothing to retry "
            "(regenerate asks both models again).",
            code="side_did_not_fail",
        )
    _require_tries_left(answer)
    return turn, answer


def _require_tries_left(answer: Answer) -> None:
    if answer.attempt >= MAX_TRIES:
        raise Conflict(
            f"Model {answer.side.upper()}\u2019s answer to this turn was tried {answer.attempt} times, "
            "the most a turn allows. Vote on the turns before it, or start a new round.",
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
    models = [m for m in LLM.objects.drawable() if m.pk not in tried]
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
            "The battle changed meanwhile (in another window?); reload it.", code="answers_pending"
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
        "Nothing is being answered in this battle, so there is nothing to stop.", code="not_streaming"
    )


@dataclass(frozen=True)
class Actions:
    """What the battle's visitor may do next: the page shows these controls, and the API allows these."""

    vote: bool
    vote_covers: int  # turns a vote would cover
    retry: list[str]  # sides
    regenerate: bool
    stop: bool
    follow_up: bool


def battle_actions(battle: Battle, turns: list[Turn]) -> Actions:
    """`turns`: the battle's turns in order, answers prefetched."""
    ended = battle.state in (Battle.State.READY, Battle.State.FAILED)
    latest = list(turns[-1].answers.all()) if turns else []
    tries_left = all(a.attempt < MAX_TRIES for a in latest)
    covers = len(voted_turns(battle, turns))
    return Actions(
        vote=covers > 0,
        vote_covers=covers,
        retry=sorted(
            a.side
            for a in latest
            if battle.state == Battle.State.FAILED and a.status in RETRYABLE and a.attempt < MAX_TRIES
        ),
        regenerate=ended and bool(latest) and tries_left,
        stop=battle.state in (Battle.State.PENDING, Battle.State.STREAMING),
        follow_up=battle.state == Battle.State.READY and len(turns) < settings.ARENA_MAX_TURNS,
    )


def recent_battles(*, visitor: str | None, limit: int = 20) -> QuerySet[Battle]:
    """The visitor's latest battles, newest first, each with its first prompt (cut short) and its
    number of turns. Nobody else's: without a cookie, none."""
    if not visitor:
        return Battle.objects.none()
    first_prompt = Turn.objects.filter(battle=OuterRef("pk"), index=0).values("prompt")[:1]
    return (
        Battle.objects.of_visitor(visitor)
        .select_related("model_a", "model_b")
        .annotate(first_prompt=Substr(Subquery(first_prompt), 1, 140), turn_count=Count("turns"))
        .order_by("-created")[:limit]
    )


# --- voting ------------------------------------------------------------------------------------


def leaked_identity(texts: Iterable[str], models: Iterable[LLM]) -> bool:
    """Whether an answer names either model, its upstream id, its organisation or its family
    ("I am Claude", "As ChatGPT"), hidden characters and lookalike letters seen through."""
    terms = {t for m in models for t in m.identity_terms()}
    return bool(terms) and any(names_itself(text, terms) for text in texts)


def read_too_fast(turn: Turn, now: datetime) -> bool:
    """Whether a vote at `now` came sooner after the turn's answers finished than a person could
    read them both at ARENA_READING_CHARS_PER_SECOND."""
    answers = list(turn.answers.all())
    finished = [a.finished for a in answers if a.finished is not None]
    if not finished:
        return False
    reading = sum(len(a.text) for a in answers) / settings.ARENA_READING_CHARS_PER_SECOND
    return (now - max(finished)).total_seconds() < reading


def voted_turns(battle: Battle, turns: list[Turn]) -> list[Turn]:
    """The turns a vote covers: all of them when the latest ended well on both sides; when it did
    not, the ones before it (a follow-up is asked only after a turn that ended well)."""
    if battle.state == Battle.State.READY:
        return turns
    if battle.state == Battle.State.FAILED:
        return turns[:-1]
    return []


@metrics.counted_vote
def battle_vote(*, battle: Battle, winner: object) -> Vote:
    if winner not in Vote.Winner.values:
        raise BattleError('winner must be one of "a", "b", "tie", "bothbad".', code="unknown_winner")
    if battle.state == Battle.State.VOTED:
        raise Conflict("This battle already has a vote.", code="already_voted")
    if battle.state != Battle.State.READY and battle.state != Battle.State.FAILED:
        raise Conflict("Both answers must end before you vote.", code="answers_pending")
    turns = list(battle.turns.prefetch_related("answers", "attempts"))
    covered = voted_turns(battle, turns)
    if not covered:
        raise Conflict(
            "An answer in this battle failed, so it cannot be voted on yet: retry it, or ask both again.",
            code="battle_failed",
        )
    answers = {side: [a.text for t in covered for a in t.answers.all() if a.side == side] for side in Side}
    # Everything the voter saw, replaced tries and the left-out turn included, against every model
    # that wrote any of it.
    seen = [a.text for t in turns for a in [*t.answers.all(), *t.attempts.all()]]
    others = {a.llm_id for t in turns for a in t.attempts.all()} - {
        battle.model_a_id,
        battle.model_b_id,
        None,
    }
    models = [battle.model_a, battle.model_b, *LLM.objects.filter(pk__in=others)]
    leak = leaked_identity(seen, models)
    tags = categories.tags([t.prompt for t in covered])
    if leak:
        excluded = Vote.Exclusion.IDENTITY_LEAK
    elif read_too_fast(covered[-1], timezone.now()):
        excluded = Vote.Exclusion.TOO_FAST
    else:
        excluded = Vote.Exclusion.NONE
    try:
        with transaction.atomic():
            # Claim the battle: only one request can move it from the state read above to voted.
            if not Battle.objects.filter(pk=battle.pk, state=battle.state).update(state=Battle.State.VOTED):
                raise Conflict("This battle already has a vote.", code="already_voted")
            vote = Vote.objects.create(
                battle=battle,
                winner=winner,
                excluded=excluded,
                conv_metadata=categories.conv_metadata(answers[Side.A], answers[Side.B]),
                **asdict(tags),
            )
            after_vote(vote=vote)
    except IntegrityError as exc:
        raise Conflict("This battle already has a vote.", code="already_voted") from exc
    battle.state = Battle.State.VOTED
    return vote


def after_vote(*, vote: Vote) -> None:
    """What a new vote changes beyond its battle; called in the vote's transaction.

    An anonymous vote counts towards the test budget of a private variant in the battle, in the
    same transaction so that the count never drifts from the votes. The apps that read the arena
    hear of the vote by `vote_recorded` (the leaderboard recomputes once it is committed).
    """
    if vote.anonymous:
        record_test_vote(llm_ids=[vote.model_a_id, vote.model_b_id])
    vote_recorded.send(sender=Vote, vote=vote)
