"""Battle workflows: draw a pair and open a battle, ask a follow-up, take the vote. Trying a
turn's answers again and stopping them is `arena.rounds`.

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
from django.db.models import Count, OuterRef, QuerySet, Subquery
from django.db.models.functions import Substr
from django.utils import timezone
from django.utils.crypto import salted_hmac
from django.utils.translation import gettext

from arena import battle_images, categories, gate, sampling
from arena.models import Answer, Battle, SamplingPlan, Side, Turn, Vote, prompt_hash
from arena.reasons import VoteReason, clean_reasons
from arena.signals import vote_recorded
from config import metrics
from config.errors import Conflict, DomainError, NotFound, Unavailable
from providers import images, moderation
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
        raise BattleError(gettext("The prompt is empty."), code="empty_prompt")
    if len(prompt) > settings.ARENA_PROMPT_MAX_CHARS:
        raise BattleError(
            gettext("The prompt is %(length)s characters long; the limit is %(limit)s.")
            % {"length": len(prompt), "limit": settings.ARENA_PROMPT_MAX_CHARS},
            code="prompt_too_long",
        )
    return prompt


@dataclass(frozen=True)
class Draw:
    model_a: LLM
    model_b: LLM
    propensity: float  # the probability the unordered pair had at that moment
    sampler: str  # "active", or "weights" (chosen, or without a plan yet)


def draw(rng: random.Random | None = None, *, vision: bool = False) -> Draw:
    """Two distinct drawable models, by the sampler in force (ARENA_SAMPLER, see arena.sampling),
    sides shuffled; with `vision`, among the models that read images only.

    Reads the drawable models and at most the latest sampling plan, never the votes: a draw costs
    the same however many votes the board holds.
    """
    rng = rng or random.SystemRandom()
    models = list(LLM.objects.drawable().filter(**({"vision": True} if vision else {})))
    # A local server with requests queued would keep a voter waiting: left out until it catches up.
    busy = saturated_ids(m.pk for m in models)
    models = [m for m in models if m.pk not in busy]
    if len(models) < 2:
        if vision:
            raise Unavailable(
                gettext(
                    "Fewer than two models that read images are available right now; please try again later."
                )
            )
        raise Unavailable(gettext("Fewer than two models are available right now; please try again later."))
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


def _named_models(**names: object) -> list[LLM]:
    """The public models a visitor named (key: name), in the order given, read in one query."""
    for key, name in names.items():
        if not isinstance(name, str) or not name:
            raise BattleError(
                gettext("This mode needs %(field)s: the name of a model.") % {"field": key},
                code="missing_model",
            )
    named = LLM.objects.public().active().filter(name__in=names.values()).order_by()  # order: none needed
    found = {llm.name: llm for llm in named}
    for key, name in names.items():
        if name not in found:
            raise BattleError(
                gettext("%(field)s: no available model is named %(name)s.")
                % {"field": key, "name": repr(name)},
                code="unknown_model",
            )
    return [found[name] for name in names.values()]  # type: ignore[index]


@metrics.counted_battle_start
def battle_start(
    *,
    visitor: str,
    prompt: object,
    network: str = "",
    mode: object = Battle.Mode.ANONYMOUS,
    model_a: object = None,
    model_b: object = None,
    image: images.CheckedImage | None = None,
) -> Battle:
    """A new battle of the visitor (their `visitor_hash`) from a network (its `network_hash`), its
    first turn waiting to be streamed; refused (429) while they have as many open as they may.
    With an `image` (checked already), only models that read images answer it."""
    prompt = clean_prompt(prompt)
    moderation.screen_sync(prompt, visitor=visitor)  # before any model is drawn or called
    if mode == Battle.Mode.ANONYMOUS:
        if model_a is not None or model_b is not None:
            raise BattleError(
                gettext("Anonymous mode draws the models; do not name them."), code="models_in_anonymous"
            )
        drawn = draw(vision=image is not None)
        a, b = drawn.model_a, drawn.model_b
        propensity: float | None = drawn.propensity
    elif mode == Battle.Mode.NAMED:
        a, b = _named_models(model_a=model_a, model_b=model_b)
        propensity = None
        if a.pk == b.pk:
            raise BattleError(gettext("model_a and model_b must be two different models."), code="same_model")
    elif mode == Battle.Mode.DIRECT:
        if model_b is not None:
            raise BattleError(
                gettext("A direct chat has one model: name it as model_a only."), code="model_b_in_direct"
            )
        (a,), b, propensity = _named_models(model_a=model_a), None, None
    else:
        raise BattleError(gettext('mode must be "anonymous", "named" or "direct".'), code="unknown_mode")
    if image is not None:
        battle_images.require_vision(a, b)
    with transaction.atomic():
        gate.check_open_battles(gate.Voter(visitor=visitor, network=network))
        battle = Battle(
            mode=mode,
            model_a=a,
            model_b=b,
            visitor_hash=visitor,
            network_hash=network,
            prompt_hash=prompt_hash(prompt),
            propensity=propensity,
        )
        if image is not None:
            battle_images.store(battle, image)
        try:
            battle.save(force_insert=True)
            battle.open_turn(0, prompt)
        except BaseException:
            if battle.image:
                battle.image.delete(save=False)  # nothing stored for a battle that was not opened
            raise
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
        raise NotFound(gettext("No such battle."))
    return battle


def battle_continue(*, battle: Battle, prompt: object) -> Turn:
    prompt = clean_prompt(prompt)
    moderation.screen_sync(prompt, visitor=battle.visitor_hash)
    if battle.state == Battle.State.VOTED:
        raise Conflict(
            gettext("This battle is over: it has a vote. Start a new round."), code="already_voted"
        )
    if battle.state == Battle.State.FAILED:
        raise Conflict(
            gettext(
                "An answer to the latest turn did not end well: "
                "retry it or ask both again before a follow-up."
            ),
            code="battle_failed",
        )
    if battle.state != Battle.State.READY:
        raise Conflict(
            gettext("Wait for both answers to end before asking a follow-up."), code="answers_pending"
        )
    index = battle.turns.count()
    if index >= settings.ARENA_MAX_TURNS:
        raise Conflict(
            gettext("A battle has at most %(n)s turns.") % {"n": settings.ARENA_MAX_TURNS},
            code="too_many_turns",
        )
    # The conditional update is the claim: two follow-ups sent at once cannot both open a turn.
    with transaction.atomic():
        if not Battle.objects.filter(pk=battle.pk, state=Battle.State.READY).update(
            state=Battle.State.PENDING
        ):
            raise Conflict(
                gettext("Wait for both answers to end before asking a follow-up."), code="answers_pending"
            )
        try:
            turn = battle.open_turn(index, prompt)
        except IntegrityError as exc:
            raise Conflict(
                gettext("Another follow-up was sent at the same time."), code="answers_pending"
            ) from exc
    battle.state = Battle.State.PENDING
    return turn


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
    # A direct chat takes no vote: it counts on no board.
    covers = 0 if battle.mode == Battle.Mode.DIRECT else len(voted_turns(battle, turns))
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
def battle_vote(*, battle: Battle, winner: object, tags: object = None, comment: object = None) -> Vote:
    """The battle's vote, with the visitor's reasons if any (arena.reasons): bad reasons refuse the
    vote (400) rather than store it without them."""
    if battle.mode == Battle.Mode.DIRECT:
        raise Conflict(
            gettext("A direct chat with one model takes no vote: it counts on no board."), code="direct_chat"
        )
    if winner not in Vote.Winner.values:
        raise BattleError(gettext('winner must be one of "a", "b", "tie", "bothbad".'), code="unknown_winner")
    tags, comment = clean_reasons(tags, comment)
    if battle.state == Battle.State.VOTED:
        raise Conflict(gettext("This battle already has a vote."), code="already_voted")
    if battle.state != Battle.State.READY and battle.state != Battle.State.FAILED:
        raise Conflict(gettext("Both answers must end before you vote."), code="answers_pending")
    turns = list(battle.turns.prefetch_related("answers", "attempts"))
    covered = voted_turns(battle, turns)
    if not covered:
        raise Conflict(
            gettext(
                "An answer in this battle failed, so it cannot be voted on yet: retry it, or ask both again."
            ),
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
    category_tags = categories.tags([t.prompt for t in covered])
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
                raise Conflict(gettext("This battle already has a vote."), code="already_voted")
            vote = Vote.objects.create(
                battle=battle,
                winner=winner,
                excluded=excluded,
                conv_metadata=categories.conv_metadata(answers[Side.A], answers[Side.B]),
                **asdict(category_tags),
            )
            if tags or comment:
                VoteReason.objects.create(vote=vote, tags=tags, comment=comment)
            after_vote(vote=vote)
    except IntegrityError as exc:
        raise Conflict(gettext("This battle already has a vote."), code="already_voted") from exc
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
