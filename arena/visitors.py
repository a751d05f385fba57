"""A visitor's consent to the terms, and their data: what is stored under their visitor hash, and
how it is deleted.

Deletion keeps the board reproducible: a voted battle loses its prompts, its answers' text and its
link to the visitor, and keeps its anonymous vote (the published vote export holds no visitor, and
no text once the vote's comment is erased too; its reason tags stay); a battle without a vote is
deleted whole. The privacy page says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.translation import gettext
from rest_framework import status

from arena.models import Answer, AnswerAttempt, Battle, BattleShare, Turn, Visitor, VoterFlag
from arena.reasons import VoteReason
from config.errors import Conflict, DomainError
from providers.models import FlaggedPrompt


class ConsentRequired(DomainError):
    status_code = status.HTTP_403_FORBIDDEN
    code = "consent_required"


def consent_required(visitor: str | None) -> bool:
    """Whether this visitor (their hash; None without a cookie) must accept the terms first."""
    if not settings.ARENA_REQUIRE_CONSENT:
        return False
    return not (
        visitor and Visitor.objects.filter(pk=visitor, terms_version=settings.ARENA_TERMS_VERSION).exists()
    )


def consent_context(visitor: str | None) -> dict[str, Any]:
    """What the battle pages need to show (or not) the consent box."""
    return {"consent_needed": consent_required(visitor), "terms_version": settings.ARENA_TERMS_VERSION}


def require_consent(*, visitor: str | None) -> None:
    """Refuses a battle to a visitor who has not accepted the terms in force, before any model is called."""
    if consent_required(visitor):
        raise ConsentRequired(
            gettext(
                "Accept the terms before your first prompt: read them at /terms/, then "
                'POST /api/v1/visitor/consent with {"terms_version": "%(version)s"} '
                "(a browser does this with the Accept button on the arena page)."
            )
            % {"version": settings.ARENA_TERMS_VERSION}
        )


def accept_terms(*, visitor: str, terms_version: object) -> Visitor:
    """Stores the visitor's acceptance of the terms in force; the version they read must be it."""
    if terms_version != settings.ARENA_TERMS_VERSION:
        raise Conflict(
            gettext(
                "The terms in force are version %(version)s, not %(sent)s: "
                "read them again at /terms/ and accept that version."
            )
            % {"version": repr(settings.ARENA_TERMS_VERSION), "sent": repr(terms_version)},
            code="terms_changed",
        )
    row, _ = Visitor.objects.update_or_create(
        pk=visitor,
        defaults={"terms_version": settings.ARENA_TERMS_VERSION, "terms_accepted_at": timezone.now()},
    )
    return row


def battles_of(visitor: str) -> QuerySet[Battle]:
    """Everything stored under the visitor's hash, ready to be written out in full."""
    return (
        Battle.objects.of_visitor(visitor)
        .select_related("model_a", "model_b")
        .prefetch_related("turns__answers", "turns__attempts", "votes__reason")
        .order_by("created")
    )


@dataclass(frozen=True)
class Forgotten:
    battles_deleted: int  # without a vote: gone
    battles_anonymised: int  # with a vote: text erased, visitor unlinked, the vote kept


def forget_visitor(*, visitor: str) -> Forgotten:
    """Deletes the visitor's data (see the module's docstring for what a vote keeps)."""
    battles = Battle.objects.of_visitor(visitor)
    with transaction.atomic():
        voted = list(battles.voted().values_list("pk", flat=True))
        # A shared page would go on showing what is erased here: forgetting revokes every share.
        BattleShare.objects.filter(battle_id__in=voted).delete()
        images = list(battles.exclude(image="").values_list("image", flat=True))
        Turn.objects.filter(battle_id__in=voted).update(prompt="")
        # The error may quote the prompt back; the sampling parameters and timings are the models'.
        Answer.objects.filter(turn__battle_id__in=voted).update(text="", error="")
        AnswerAttempt.objects.filter(turn__battle_id__in=voted).update(text="", error="")
        VoteReason.objects.filter(vote__battle_id__in=voted).update(comment="")
        # The prompt's hash goes with the prompt: a short prompt could be confirmed from it.
        anonymised = Battle.objects.filter(pk__in=voted).update(
            visitor_hash="", network_hash="", prompt_hash="", image=""
        )
        unvoted = battles.exclude(pk__in=voted)
        deleted = unvoted.count()
        unvoted.delete()
        FlaggedPrompt.objects.filter(visitor=visitor).delete()  # prompts moderation refused
        Visitor.objects.filter(pk=visitor).delete()
    for name in images:  # the prompts' images go with the prompts (a vote keeps that there was one)
        default_storage.delete(name)
    return Forgotten(battles_deleted=deleted, battles_anonymised=anonymised)


def _answer(answer: Answer | AnswerAttempt) -> dict[str, Any]:
    return {
        "side": answer.side,
        "model": answer.llm.name if answer.llm else None,
        "text": answer.text,
        "status": answer.status,
        "finish_reason": answer.finish_reason,
        "error": answer.error,
    }


def _reasons(vote: Any) -> dict[str, Any] | None:
    try:
        reason = vote.reason
    except VoteReason.DoesNotExist:
        return None
    return {"tags": reason.tags, "comment": reason.comment}


def stored_about(visitor: str) -> dict[str, Any]:
    """Everything stored under a visitor's hash, as an operator exports it for them (a subject access
    request): their acceptance of the terms, battles with both models named, prompts, answers and
    earlier tries, votes with the reason a board leaves one out, the detector's flags on them, and
    the prompts moderation refused."""
    row = Visitor.objects.filter(pk=visitor).first()
    battles = battles_of(visitor).prefetch_related(
        "turns__answers__llm", "turns__attempts__llm", "votes__reason"
    )
    flags = VoterFlag.objects.filter(kind=VoterFlag.Kind.VISITOR, voter_hash=visitor)
    return {
        "visitor": visitor,
        "terms": {
            "version": row.terms_version if row else "",
            "accepted_at": row.terms_accepted_at.isoformat() if row and row.terms_accepted_at else None,
        },
        "battles": [
            {
                "id": str(battle.id),
                "mode": battle.mode,
                "state": battle.state,
                "created": battle.created.isoformat(),
                "model_a": battle.model_a.name,
                "model_b": battle.model_b.name if battle.model_b else None,
                "turns": [
                    {
                        "index": turn.index,
                        "prompt": turn.prompt,
                        "created": turn.created.isoformat(),
                        "answers": [_answer(a) for a in turn.answers.all()],
                        "replaced": [_answer(a) for a in turn.attempts.all()],
                    }
                    for turn in battle.turns.all()
                ],
                "votes": [
                    {
                        "winner": vote.winner,
                        "created": vote.created.isoformat(),
                        "excluded": vote.excluded,
                        "excluded_reason": vote.get_excluded_display() if vote.excluded else "",
                        "language": vote.language,
                        "reasons": _reasons(vote),
                    }
                    for vote in battle.votes.all()
                ],
            }
            for battle in battles
        ],
        "flags": [
            {
                "state": flag.state,
                "votes": flag.votes,
                "created": flag.created.isoformat(),
                "actions": [
                    {"action": action.action, "created": action.created.isoformat()}
                    for action in flag.actions.all()
                ],
            }
            for flag in flags.prefetch_related("actions")
        ],
        "refused_prompts": [
            {"prompt": f.prompt, "categories": f.categories, "created": f.created.isoformat()}
            for f in FlaggedPrompt.objects.filter(visitor=visitor).order_by("created")
        ],
    }
