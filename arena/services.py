"""Battle workflows: draw a pair and open a battle, ask a follow-up, take the vote.

Streaming a turn's answers is `arena.streaming`.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import datetime

import numpy as np
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.crypto import salted_hmac

from arena import categories, gate, sampling
from arena.models import Battle, SamplingPlan, Side, Turn, Vote, prompt_hash
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
    gains = sampling.plan_gains(size, a, b, n, np.asarray(ratings), np.asarray(widths), focus)
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
            turn = battle.open_turn(index, prompt)
        except IntegrityError as exc:
            raise Conflict("Another follow-up was sent at the same time.", code="answers_pending") from exc
    battle.state = Battle.State.PENDING
    return turn


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


@metrics.counted_vote
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
    if leak:
        excluded = Vote.Exclusion.IDENTITY_LEAK
    elif read_too_fast(turns[-1], timezone.now()):
        excluded = Vote.Exclusion.TOO_FAST
    else:
        excluded = Vote.Exclusion.NONE
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
