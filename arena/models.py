from __future__ import annotations

import hashlib
import unicodedata
import uuid
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from django.conf import settings
from django.db import models, transaction
from django.db.models import F, Q
from django.utils import timezone

from arena.style import style_counts
from providers.models import LLM


class Side(models.TextChoices):
    A = "a"
    B = "b"


class BattleQuerySet(models.QuerySet["Battle"]):
    def anonymous(self) -> BattleQuerySet:
        return self.filter(mode=Battle.Mode.ANONYMOUS)

    def voted(self) -> BattleQuerySet:
        return self.filter(state=Battle.State.VOTED)

    def of_visitor(self, visitor_hash: str) -> BattleQuerySet:
        return self.filter(visitor_hash=visitor_hash)


class Battle(models.Model):
    class Mode(models.TextChoices):
        ANONYMOUS = "anonymous"
        NAMED = "named"
        DIRECT = "direct", "one named model, side A only; takes no vote, counts on no board"

    class State(models.TextChoices):
        PENDING = "pending", "a turn waits to be streamed"
        STREAMING = "streaming", "answers are being generated"
        READY = "ready", "every answer ended well; a vote is possible"
        FAILED = (
            "failed",
            "an answer of the latest turn failed or was stopped; a vote covers the turns before",
        )
        VOTED = "voted"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    mode = models.CharField(max_length=16, choices=Mode.choices, default=Mode.ANONYMOUS)
    model_a = models.ForeignKey(LLM, on_delete=models.PROTECT, related_name="+")
    model_b = models.ForeignKey(LLM, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    # A keyed hash of the visitor's cookie token (arena.services.visitor_hash): ties a battle to its
    # visitor without storing who they are.
    visitor_hash = models.CharField(max_length=64, db_index=True)
    # A keyed hash of the client's network under a daily salt (config.clients.network_hash): caps
    # and open battles are counted per network; the address itself is never stored.
    network_hash = models.CharField(max_length=64, blank=True, default="", db_index=True)
    # The first prompt, normalised and hashed (prompt_hash): repeated prompts count once (duplicate_prompt).
    prompt_hash = models.CharField(max_length=64, blank=True, default="")
    # The probability with which the sampler drew this unordered pair, given the weights, the
    # models out or saturated and the sampler in force then (arena.sampling): what inverse-propensity
    # weights divide by. None for a named battle and for battles imported or older than the field.
    propensity = models.FloatField(null=True, blank=True)
    # The image the first prompt carries (arena.images: checked, metadata stripped), through the
    # storage API so a deployment may keep it in an object store; only vision models see it.
    image = models.FileField(upload_to="battle-images/%Y/%m/", blank=True, default="", db_default="")
    created = models.DateTimeField(default=timezone.now)
    updated = models.DateTimeField(auto_now=True)

    objects = BattleQuerySet.as_manager()

    class Meta:
        constraints = [
            models.CheckConstraint(condition=~Q(model_a=F("model_b")), name="battle_two_distinct_models"),
        ]

    def __str__(self) -> str:
        return f"battle {self.id}"

    def llm(self, side: str) -> LLM:
        return self.model_a if side == Side.A else self.model_b

    def replace_model(self, side: str, llm: LLM) -> None:
        """A fresh model for `side` (arena.rounds.battle_retry says when): the battle's record of its
        pair, which the vote copies, names the model that answers from now on. The new pair was not
        drawn by the sampler, so no probability is claimed for it: its propensity is unknown."""
        setattr(self, f"model_{side}", llm)
        self.propensity = None
        self.save(update_fields=[f"model_{side}", "propensity", "updated"])

    @property
    def names_visible(self) -> bool:
        """Names are shown in named and direct mode, and in anonymous mode only once the vote is in."""
        return self.mode != self.Mode.ANONYMOUS or self.state == self.State.VOTED

    @property
    def sides(self) -> list[str]:
        """The sides that answer: a direct chat has side A only (and no model_b)."""
        return [Side.A] if self.mode == self.Mode.DIRECT else [Side.A, Side.B]

    # A failure here fails the caller's whole step, so no savepoint is needed inside its transaction.
    @transaction.atomic(savepoint=False)
    def open_turn(self, index: int, prompt: str) -> Turn:
        """A new turn with both its answers waiting to be streamed."""
        turn = Turn.objects.create(battle=self, index=index, prompt=prompt)
        Answer.objects.bulk_create(
            [Answer(turn=turn, side=side, llm_id=getattr(self, f"model_{side}_id")) for side in self.sides]
        )
        return turn

    def claim_stream(self, turn: Turn, params: dict[str, dict[str, Any]]) -> bool:
        """Move the battle to streaming `turn` and start the answers of the sides in `params` (side:
        its sampling parameters), all or nothing; True if this call claimed it.

        A battle waiting for its answers is claimed, and so is one a stream left streaming for
        longer than a call may last (a worker that died mid-stream). A turn that is no longer the
        battle's latest has ended, and is never claimed.
        """
        now = timezone.now()
        stale = now - timedelta(seconds=settings.UPSTREAM_TOTAL_TIMEOUT + 60)
        with transaction.atomic():
            claimed = (
                Battle.objects.filter(pk=self.pk)
                .filter(Q(state=self.State.PENDING) | Q(state=self.State.STREAMING, updated__lt=stale))
                .exclude(turns__index__gt=turn.index)
                .update(state=self.State.STREAMING, updated=now)
            )
            if claimed:
                turn.start_answers(params, now)
        if claimed:
            self.state = self.State.STREAMING
        return bool(claimed)

    def end_stream(self, *, ok: bool) -> str:
        """Ready for a vote or a follow-up when every answer ended well, failed otherwise."""
        state = self.State.READY if ok else self.State.FAILED
        Battle.objects.filter(pk=self.pk, state=self.State.STREAMING).update(
            state=state, updated=timezone.now()
        )
        self.state = state
        return state


def prompt_hash(prompt: str) -> str:
    """SHA-256 of the prompt as FastChat's deduplication compares prompts: NFKC, casefolded,
    whitespace collapsed, punctuation stripped at both ends."""
    text = " ".join(unicodedata.normalize("NFKC", prompt).casefold().split())
    start, end = 0, len(text)
    while start < end and unicodedata.category(text[start]).startswith("P"):
        start += 1
    while end > start and unicodedata.category(text[end - 1]).startswith("P"):
        end -= 1
    return hashlib.sha256(text[start:end].strip().encode()).hexdigest()


class Turn(models.Model):
    battle = models.ForeignKey(Battle, on_delete=models.CASCADE, related_name="turns")
    index = models.PositiveSmallIntegerField()
    prompt = models.TextField()
    created = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["index"]
        constraints = [models.UniqueConstraint(fields=["battle", "index"], name="one_turn_per_index")]

    def __str__(self) -> str:
        return f"turn {self.index} of battle {self.battle_id}"

    def start_answers(self, params: dict[str, dict[str, Any]], now: datetime) -> None:
        """Write the call records of the sides in `params` before their calls go out."""
        for side, sampling in params.items():
            Answer.objects.filter(turn=self, side=side).update(
                status=Answer.Status.STREAMING, started=now, params=sampling, text="", error=""
            )


class Answer(models.Model):
    """One side's answer to one turn, and the measurements of the call that produced it.

    The row is written before the call goes out and completed when it ends, so a crash mid-call
    leaves a visible trace instead of nothing.
    """

    class Status(models.TextChoices):
        PENDING = "pending"
        STREAMING = "streaming"
        DONE = "done"
        ERROR = "error", "the call failed"
        # Not the model's failure: a stopped answer never counts towards drawing a fresh model.
        STOPPED = "stopped", "stopped by the visitor, or their stream closed"

    # The measurements of one call: what an earlier try keeps when it is replaced (AnswerAttempt).
    CALL_FIELDS = (
        "status",
        "text",
        "finish_reason",
        "error",
        "params",
        "ttft_ms",
        "duration_ms",
        "inter_token_ms",
        "input_tokens",
        "output_tokens",
        "started",
        "finished",
    )

    turn = models.ForeignKey(Turn, on_delete=models.CASCADE, related_name="answers")
    side = models.CharField(max_length=1, choices=Side.choices)
    # The model that answers: the battle's model for this side when the try began (null only on rows
    # stored before it was recorded, which the migration filled from their battle).
    llm = models.ForeignKey(LLM, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    attempt = models.PositiveSmallIntegerField(
        default=1,
        help_text="Which try of this side's answer to the turn this is: 1, then one more per retry.",
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    text = models.TextField(blank=True)
    finish_reason = models.CharField(max_length=32, blank=True)
    # Full upstream error for operators; may name the model, so it is never sent to a browser.
    error = models.TextField(blank=True)
    # Sampling parameters actually sent, stored with the call so both sides can be audited as equal.
    params = models.JSONField(default=dict)
    ttft_ms = models.FloatField(null=True, blank=True, help_text="Time to first token.")
    duration_ms = models.FloatField(null=True, blank=True)
    inter_token_ms = models.FloatField(null=True, blank=True, help_text="Mean gap between two text chunks.")
    input_tokens = models.PositiveIntegerField(null=True, blank=True)
    output_tokens = models.PositiveIntegerField(null=True, blank=True)
    started = models.DateTimeField(null=True, blank=True)
    finished = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["turn__index", "side"]
        # Latency figures per model read finished answers of one model: leaderboard.services.latency.
        indexes = [models.Index(fields=["status", "finished"], name="answer_finished")]
        constraints = [models.UniqueConstraint(fields=["turn", "side"], name="one_answer_per_side")]

    def __str__(self) -> str:
        return f"answer {self.side} to {self.turn}"

    @property
    def public_finish_reason(self) -> str:
        """Why the answer ended, as a voter may see it: stop, length, stopped or error (or "" while it
        runs).

        A vendor's own reason (`refusal`, `safety`, `content_filter`) would name the vendor before
        the vote; the raw value stays in `finish_reason` for operators.
        """
        if self.status == Answer.Status.ERROR:
            return "error"
        if self.status == Answer.Status.STOPPED:
            return "stopped"
        if self.status != Answer.Status.DONE:
            return ""
        return "length" if self.finish_reason == "length" else "stop"

    @property
    def output_tokens_per_s(self) -> float | None:
        """Decoding speed: tokens after the first, over the time after the first."""
        if not self.output_tokens or self.ttft_ms is None or self.duration_ms is None:
            return None
        decoding = (self.duration_ms - self.ttft_ms) / 1000
        return (self.output_tokens - 1) / decoding if decoding > 0 and self.output_tokens > 1 else None

    def replace(self, *, reason: str, llm: LLM) -> None:
        """Keep this try as an AnswerAttempt, and leave the row waiting for the next, by `llm`.

        Call it in the transaction that claims the battle for the new try.
        """
        AnswerAttempt.objects.create(
            turn_id=self.turn_id,
            side=self.side,
            llm_id=self.llm_id,
            attempt=self.attempt,
            reason=reason,
            **{name: getattr(self, name) for name in self.CALL_FIELDS},
        )
        fresh = Answer(turn_id=self.turn_id, side=self.side)
        for name in self.CALL_FIELDS:
            setattr(self, name, getattr(fresh, name))
        self.llm = llm
        self.attempt += 1
        self.save(update_fields=[*self.CALL_FIELDS, "llm", "attempt"])


class AnswerAttempt(models.Model):
    """An earlier try of one side's answer to a turn, replaced by a retry or a regeneration.

    Kept whole: it is the record of a call (which model, how it ended, the upstream's error for
    operators), and the voter saw its text, so the vote's identity-leak check reads it too.
    """

    class Reason(models.TextChoices):
        RETRY = "retry", "the side was tried again"
        REGENERATE = "regenerate", "both sides of the turn were asked again"

    turn = models.ForeignKey(Turn, on_delete=models.CASCADE, related_name="attempts")
    side = models.CharField(max_length=1, choices=Side.choices)
    llm = models.ForeignKey(LLM, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    attempt = models.PositiveSmallIntegerField()
    reason = models.CharField(max_length=16, choices=Reason.choices)
    status = models.CharField(max_length=16, choices=Answer.Status.choices)
    text = models.TextField(blank=True)
    finish_reason = models.CharField(max_length=32, blank=True)
    error = models.TextField(blank=True)  # may name the model: operators only, like Answer.error
    params = models.JSONField(default=dict)
    ttft_ms = models.FloatField(null=True, blank=True)
    duration_ms = models.FloatField(null=True, blank=True)
    inter_token_ms = models.FloatField(null=True, blank=True)
    input_tokens = models.PositiveIntegerField(null=True, blank=True)
    output_tokens = models.PositiveIntegerField(null=True, blank=True)
    started = models.DateTimeField(null=True, blank=True)
    finished = models.DateTimeField(null=True, blank=True)
    replaced = models.DateTimeField(default=timezone.now)

    public_finish_reason = Answer.public_finish_reason

    class Meta:
        ordering = ["turn__index", "side", "attempt"]
        constraints = [
            models.UniqueConstraint(fields=["turn", "side", "attempt"], name="one_attempt_per_try"),
        ]

    def __str__(self) -> str:
        return f"try {self.attempt} of answer {self.side} to {self.turn}"


class Vote(models.Model):
    class Winner(models.TextChoices):
        A = "a", "model A is better"
        B = "b", "model B is better"
        TIE = "tie", "tie"
        BOTH_BAD = "bothbad", "both are bad"

    class Exclusion(models.TextChoices):
        NONE = "", "counted"
        IDENTITY_LEAK = "identity_leak", "an answer named a model or vendor"
        TOO_FAST = "too_fast", "cast faster than a person could read both answers"
        ANOMALOUS_VOTER = "anomalous_voter", "the voter's votes lie far beyond what the board predicts"
        DUPLICATE_PROMPT = "duplicate_prompt", "a prompt repeated by its voter, or seen too often"
        VOTE_SURGE = (
            "vote_surge",
            "cast by a new voter on a model and day whose battles were voted on far beyond the usual rate",
        )

    battle = models.ForeignKey(Battle, on_delete=models.CASCADE, related_name="votes")
    winner = models.CharField(max_length=8, choices=Winner.choices)
    excluded = models.CharField(max_length=32, choices=Exclusion.choices, blank=True, default="")
    created = models.DateTimeField(default=timezone.now)
    # Category tags and style counts, fixed at vote time by arena.categories (rules documented there).
    language = models.CharField(max_length=8, blank=True)
    coding = models.BooleanField(default=False)
    long_query = models.BooleanField(default=False)
    multi_turn = models.BooleanField(default=False)
    hard = models.BooleanField(default=False)
    vision = models.BooleanField(default=False, db_default=False)  # the battle carried an image (set_facts)
    # What the ratings read, copied from the battle and from conv_metadata when the vote is stored
    # (set_facts), so that a recompute scans this one table: no join, no JSON (leaderboard.services).
    # conv_metadata itself lives beside it (VoteMetadata), out of the rows every recompute scans.
    anonymous = models.BooleanField(default=True)
    model_a = models.ForeignKey(LLM, on_delete=models.PROTECT, related_name="+", db_index=False)
    model_b = models.ForeignKey(LLM, on_delete=models.PROTECT, related_name="+", db_index=False)
    length_a = models.FloatField(default=0)
    headers_a = models.FloatField(default=0)
    lists_a = models.FloatField(default=0)
    bold_a = models.FloatField(default=0)
    length_b = models.FloatField(default=0)
    headers_b = models.FloatField(default=0)
    lists_b = models.FloatField(default=0)
    bold_b = models.FloatField(default=0)

    STYLE_COLUMNS = (
        ("length_a", "headers_a", "lists_a", "bold_a"),
        ("length_b", "headers_b", "lists_b", "bold_b"),
    )  # per side, in the order of arena.style.FEATURES

    class Meta:
        constraints = [models.UniqueConstraint(fields=["battle"], name="one_vote_per_battle")]
        # The few votes no board counts, counted on every recompute (leaderboard.services.excluded_counts)
        # without scanning the many that every board counts.
        indexes = [
            models.Index(fields=["excluded"], condition=~Q(excluded=""), name="vote_flagged"),
            models.Index(fields=["anonymous"], condition=Q(anonymous=False), name="vote_named"),
        ]

    def __str__(self) -> str:
        return f"vote {self.winner} on battle {self.battle_id}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        adding = self._state.adding
        if adding:
            self.set_facts()
        with transaction.atomic(using=kwargs.get("using"), savepoint=False):
            super().save(*args, **kwargs)
            if adding and self.conv_metadata:
                VoteMetadata.objects.create(vote=self, conv_metadata=self.conv_metadata)

    @classmethod
    def metadata_rows(cls, votes: list[Vote]) -> list[VoteMetadata]:
        """The side rows of saved votes' conv_metadata, for bulk_create callers."""
        return [VoteMetadata(vote=v, conv_metadata=v.conv_metadata) for v in votes if v.conv_metadata]

    def set_facts(self) -> None:
        """Copy the battle's mode and models and the style counts onto the vote (bulk_create callers
        call this themselves). None of them can change after the vote."""
        self.anonymous = self.battle.mode == Battle.Mode.ANONYMOUS
        self.vision = bool(self.battle.image)
        self.model_a_id = self.battle.model_a_id
        self.model_b_id = self.battle.model_b_id
        for columns, counts in zip(self.STYLE_COLUMNS, style_counts(self.conv_metadata), strict=True):
            for column, count in zip(columns, counts, strict=True):
                setattr(self, column, count)

    @property
    def conv_metadata(self) -> dict[str, Any]:
        """The style counts in the public battle format's `conv_metadata` shape, as stored with the
        vote or imported with it ({} if none); fixed at vote time, like the facts copied from it."""
        if "_conv_metadata" not in self.__dict__:
            try:
                self.__dict__["_conv_metadata"] = self.metadata.conv_metadata
            except VoteMetadata.DoesNotExist:
                self.__dict__["_conv_metadata"] = {}
        return self.__dict__["_conv_metadata"]

    @conv_metadata.setter
    def conv_metadata(self, value: dict[str, Any]) -> None:
        self.__dict__["_conv_metadata"] = value


class VoteMetadata(models.Model):
    """A vote's conv_metadata (`Vote.conv_metadata`), kept out of the vote table: it is most of a
    vote row's bytes (about 730 of 870 in the public format), and every recompute scans the votes
    for the columns copied from it. The export reads it back (leaderboard.dumps). Only votes with
    counts have one."""

    vote = models.OneToOneField(Vote, on_delete=models.CASCADE, primary_key=True, related_name="metadata")
    conv_metadata = models.JSONField(default=dict)

    def __str__(self) -> str:
        return f"conv_metadata of {self.vote_id}"


class SamplingPlanQuerySet(models.QuerySet["SamplingPlan"]):
    def latest_first(self) -> SamplingPlanQuerySet:
        return self.order_by("-created", "-id")


class SamplingPlan(models.Model):
    """What the active sampler draws from until the next snapshot: a gain per pair of the models on
    the latest overall board (arena.sampling.plan_gains), written with each new snapshot
    (arena.services.sampling_plan_write) so that a draw reads this one row, never the votes."""

    # LLM ids, in the order the pairs of `gains` index them (arena.sampling.pairs).
    llm_ids = models.JSONField(default=list)
    votes = models.JSONField(default=list)  # each model's votes on the board
    # One float64 per pair, little-endian: a draw decodes 200 models' 19,900 pairs at once, where
    # parsing them from JSON would take milliseconds.
    gains = models.BinaryField(default=bytes)
    created = models.DateTimeField(default=timezone.now)

    objects = SamplingPlanQuerySet.as_manager()

    def __str__(self) -> str:
        return f"sampling plan of {len(self.llm_ids)} models ({self.created:%Y-%m-%d %H:%M})"

    @classmethod
    def of(cls, llm_ids: list[int], votes: list[int], gains: np.ndarray) -> SamplingPlan:
        return cls(llm_ids=llm_ids, votes=votes, gains=np.asarray(gains, dtype="<f8").tobytes())

    def restricted(self, ids: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """The gains of the pairs among `ids` (NaN where the plan lacks either model), and each of
        the models' votes (0 where it lacks the model)."""
        index = {pk: k for k, pk in enumerate(self.llm_ids)}
        known = np.array([index.get(pk, -1) for pk in ids], dtype=np.int64)
        size = len(self.llm_ids)
        full = np.full((size + 1, size + 1), np.nan)  # the extra row and column: unknown models
        full[np.triu_indices(size, 1)] = np.frombuffer(bytes(self.gains), dtype="<f8")
        full[:size, :size] = np.fmin(full[:size, :size], full[:size, :size].T)
        i, j = np.triu_indices(len(ids), 1)
        votes = np.append(np.asarray(self.votes, dtype=np.int64), 0)
        return full[known[i], known[j]], votes[known]


class Visitor(models.Model):
    """A visitor's acceptance of the terms, keyed by their `visitor_hash`; the row is created when
    they first accept, so a visitor who only reads the pages costs no write."""

    visitor_hash = models.CharField(max_length=64, primary_key=True)
    terms_version = models.CharField(max_length=32, blank=True)
    terms_accepted_at = models.DateTimeField(null=True, blank=True)
    created = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"visitor {self.visitor_hash[:12]}"

    @property
    def has_accepted(self) -> bool:
        """Whether they accepted the terms in force: a new version asks everyone again."""
        return self.terms_accepted_at is not None and self.terms_version == settings.ARENA_TERMS_VERSION


# Kept in their own modules, as this one is near its size limit; imported so the app loads them.
from arena.flags import VoterFlag, VoterFlagAction  # noqa: E402,F401
from arena.reasons import VoteReason  # noqa: E402,F401
from arena.sharing import BattleShare  # noqa: E402,F401
