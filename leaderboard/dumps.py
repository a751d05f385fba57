"""Votes to and from the public Chatbot Arena battle format.

One record per battle: `model_a`, `model_b`, `winner` (`model_a` | `model_b` | `tie` |
`tie (bothbad)`), plus `question_id`, `tstamp`, `anony`, `language`, `turn` and `conv_metadata`
(style counts) as in the published `clean_battle_*.json` dumps. Exported files are JSON lines, so
`python -m leaderboard.rating FILE` reads them as they are. This arena adds `propensity` and the
voter's optional reasons, `reason_tags` and `reason_comment` (arena.reasons); an import ignores them.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from django.db import transaction
from django.db.models import Count, OuterRef, QuerySet, Subquery

from arena.models import Answer, Battle, Turn, Vote, VoteMetadata, VoteReason
from leaderboard.models import Snapshot
from leaderboard.rating import WINNER_NAMES, BattleFileError, iter_records, read_battle
from leaderboard.votes import OUTCOME, Filters, filtered_votes
from providers.models import LLM

WINNER_OUT = {winner: WINNER_NAMES[code] for winner, code in OUTCOME.items()}
WINNER_IN = {name: code for code, name in WINNER_OUT.items()}
BATCH = 5000
UNFINISHED = [s for s in Answer.Status.values if s != Answer.Status.DONE]
# Language names as the public dumps write them, to the codes arena.categories uses.
LANGUAGES = {
    "english": "en",
    "french": "fr",
    "german": "de",
    "spanish": "es",
    "italian": "it",
    "portuguese": "pt",
    "dutch": "nl",
    "russian": "ru",
    "chinese": "zh",
    "japanese": "ja",
    "korean": "ko",
    "arabic": "ar",
    "hindi": "hi",
    "greek": "el",
    "hebrew": "he",
    "thai": "th",
}


@dataclass
class ImportReport:
    battles: int = 0
    models_created: list[str] = field(default_factory=list)


def export_record(vote: Vote, *, unknown_propensity: float | None = None) -> dict[str, Any]:
    """The vote in the public battle format. With `unknown_propensity`, a battle without a usable
    propensity gets that one, marked `propensity_imputed`: the one its board's weight stands for."""
    battle = vote.battle
    propensity, imputed = battle.propensity, {}
    if unknown_propensity is not None and not (propensity is not None and 0.0 < propensity <= 1.0):
        propensity, imputed = unknown_propensity, {"propensity_imputed": True}
    try:
        reason: VoteReason | None = vote.reason
    except VoteReason.DoesNotExist:
        reason = None
    return {
        "question_id": str(battle.id),
        "model_a": battle.model_a.name,
        "model_b": battle.model_b.name,
        "winner": WINNER_OUT[vote.winner],
        "tstamp": vote.created.timestamp(),
        "anony": battle.mode == Battle.Mode.ANONYMOUS,
        "language": vote.language,
        # The turns the vote covers (a failed latest turn is left out). Imported battles keep no
        # turns; their multi-turn flag still says "more than one".
        "turn": max(getattr(vote, "turn_count", None) or 0, 2 if vote.multi_turn else 1),
        "is_code": vote.coding,
        "hard": vote.hard,
        "long_query": vote.long_query,
        "has_image": vote.vision,  # whether the prompt carried an image; the image is never exported
        "conv_metadata": vote.conv_metadata,
        "propensity": propensity,  # the probability its pair was drawn with (null if unknown)
        **imputed,
        "reason_tags": reason.tags if reason else [],
        "reason_comment": reason.comment if reason else "",
    }


def export_lines(
    votes: QuerySet[Vote], *, skip: frozenset[int] = frozenset(), unknown_propensity: float | None = None
) -> Iterator[str]:
    """JSON lines of the votes, in id order, less those with an id in `skip`, streamed from the
    database in chunks (`unknown_propensity`: see `export_record`)."""
    # A vote covers the turns that ended well on both sides: a battle voted after its latest turn
    # failed or was stopped leaves that turn out (arena.services.voted_turns).
    ended_well = (
        Turn.objects.filter(battle=OuterRef("battle"))
        .exclude(answers__status__in=UNFINISHED)
        .order_by()
        .values("battle")
        .annotate(n=Count("pk"))
        .values("n")
    )
    rows = (
        votes.select_related("battle__model_a", "battle__model_b", "metadata", "reason")
        .annotate(turn_count=Subquery(ended_well))
        .order_by("id")
    )
    for vote in rows.iterator(chunk_size=2000):
        if vote.pk not in skip:
            yield (
                json.dumps(export_record(vote, unknown_propensity=unknown_propensity), ensure_ascii=False)
                + "\n"
            )


@dataclass(frozen=True)
class SnapshotVotes:
    """The votes a snapshot counted, as far as they are still stored: `export_lines(votes, skip=skip)`.

    `votes` is every vote the snapshot's filters select; `skip`, those of them its recorded exclusions
    left out. A vote deleted since (with its battle, in the admin) cannot be exported: `missing` says
    how many. A snapshot from before exclusions were recorded (`exact` false) is exported with the
    flags as they stand now, so its votes may differ from those it counted. `unknown_propensity`:
    on a propensity-weighted snapshot, the propensity its votes without one were weighed as.
    """

    votes: QuerySet[Vote]
    skip: frozenset[int]
    counted: int  # the snapshot's votes
    found: int  # the votes exported
    exact: bool
    unknown_propensity: float | None = None

    @property
    def missing(self) -> int:
        return self.counted - self.found if self.exact else 0


def snapshot_votes(snapshot: Snapshot) -> SnapshotVotes:
    """The snapshot's votes for export (its params must hold its filters)."""
    filters = Filters.from_json(snapshot.params["filters"])
    unknown = snapshot.params.get("unknown_propensity_weight")
    # A weight is at least 1, so its inverse is a probability the command line accepts.
    unknown_propensity = 1.0 / unknown if unknown else None
    if snapshot.excluded_votes is None:
        votes = filtered_votes(filters, count=False)[0]
        return SnapshotVotes(votes, frozenset(), snapshot.votes, votes.count(), False, unknown_propensity)
    votes = filtered_votes(filters, count=False, flagged=True)[0]
    # The ids alone, as one array, so the count of what is still there is known before the first
    # line is sent; the recorded exclusions are far too many for an SQL `IN`.
    with transaction.atomic():  # PostgreSQL streams a server-side cursor only in a transaction
        ids = np.fromiter(votes.values_list("id", flat=True).iterator(chunk_size=20_000), dtype=np.int64)
    skip = ids[np.isin(ids, snapshot.excluded_votes.ids(), assume_unique=True)]
    found = ids.size - skip.size
    return SnapshotVotes(votes, frozenset(skip.tolist()), snapshot.votes, found, True, unknown_propensity)


def import_battles(path: str | Path) -> ImportReport:
    """Load a public battle dump: models are created as needed (imported, never drawn into battles).

    The whole file is checked before anything is written, and written in one transaction: a bad
    record leaves the database as it was.
    """
    records = []
    for where, record in iter_records(path):
        try:
            read_battle(record)
        except BattleFileError as exc:
            raise BattleFileError(f"{path}, {where}: {exc}") from None
        records.append(record)

    report = ImportReport()
    names = {r["model_a"] for r in records} | {r["model_b"] for r in records}
    with transaction.atomic():
        models = {m.name: m for m in LLM.objects.filter(name__in=names)}
        for name in sorted(names - models.keys()):
            models[name] = LLM.objects.create(
                name=name, display_name=name, backend=LLM.Backend.IMPORTED, state=LLM.State.RETIRED
            )
            report.models_created.append(name)
        for start in range(0, len(records), BATCH):
            battles, votes = [], []
            for record in records[start : start + BATCH]:
                battle, vote = _rows(record, models)
                battles.append(battle)
                votes.append(vote)
            Battle.objects.bulk_create(battles)
            Vote.objects.bulk_create(votes)
            VoteMetadata.objects.bulk_create(Vote.metadata_rows(votes))
        report.battles = len(records)
    return report


def _rows(record: dict[str, Any], models: dict[str, LLM]) -> tuple[Battle, Vote]:
    created = _timestamp(record.get("tstamp"))
    anonymous = record.get("anony", True) is not False
    battle = Battle(
        id=uuid.uuid4(),
        mode=Battle.Mode.ANONYMOUS if anonymous else Battle.Mode.NAMED,
        model_a=models[record["model_a"]],
        model_b=models[record["model_b"]],
        state=Battle.State.VOTED,
        visitor_hash="imported",
        created=created,
    )
    metadata = record.get("conv_metadata")
    language = str(record.get("language") or "")
    vote = Vote(
        battle=battle,
        winner=WINNER_IN[record["winner"]],
        created=created,
        language=LANGUAGES.get(language.lower(), language[:8].lower()),
        multi_turn=_int(record.get("turn"), 1) > 1,
        coding=bool(record.get("is_code", False)),
        hard=bool(record.get("hard", False)),
        long_query=bool(record.get("long_query", False)),
        conv_metadata=metadata if isinstance(metadata, dict) else {},
    )
    vote.set_facts()  # bulk_create does not call save()
    vote.vision = record.get("has_image") is True  # the image itself is never in a dump
    return battle, vote


def _timestamp(value: Any) -> datetime:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, tz=UTC)
    return datetime.now(tz=UTC)


def _int(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default
