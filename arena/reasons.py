"""Why a visitor voted as they did: a few fixed tags and a short comment, sent with the vote.

The positive tags describe the answer the visitor preferred (both, for a tie); "wrong" and "unsafe"
the one they did not (both, for "both are bad"). Reasons are stored beside the vote (VoteReason),
only when given, and no board reads them: a vote counts the same with or without them. The public
export carries them (leaderboard.dumps).
"""

from __future__ import annotations

from asgiref.sync import async_to_sync
from django.db import models
from django.utils.translation import gettext_lazy as _

from config.errors import DomainError
from providers import moderation
from providers.text import visible

# The tags, in the order the vote bar shows them; a stored tag is one of these keys.
TAGS = {
    "accurate": _("Accurate"),
    "clear": _("Clear"),
    "complete": _("Complete"),
    "creative": _("Creative"),
    "safe": _("Safe"),
    "wrong": _("Wrong"),
    "unsafe": _("Unsafe"),
}
COMMENT_MAX_CHARS = 500


class ReasonError(DomainError):
    pass


class VoteReason(models.Model):
    """The reasons given with one vote, out of the vote table that every recompute scans."""

    vote = models.OneToOneField(
        "arena.Vote", on_delete=models.CASCADE, primary_key=True, related_name="reason"
    )
    tags = models.JSONField(default=list, blank=True, help_text="Keys of arena.reasons.TAGS, in that order.")
    comment = models.TextField(blank=True)

    class Meta:
        app_label = "arena"

    def __str__(self) -> str:
        return f"reasons of {self.vote_id}"


def clean_reasons(tags: object, comment: object) -> tuple[list[str], str]:
    """The tags (known, distinct, in TAGS order) and the comment (invisible characters removed,
    trimmed, moderated), or ReasonError (400) naming what is wrong. None stands for "not given"."""
    if tags is None:
        tags = []
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise ReasonError("tags must be a list of strings.", code="bad_tags")
    unknown = [t for t in tags if t not in TAGS]
    if unknown:
        raise ReasonError(
            f"Unknown tag {unknown[0][:40]!r}: tags are among {', '.join(TAGS)}.", code="unknown_tag"
        )
    if len(set(tags)) != len(tags):
        raise ReasonError("A tag is given twice.", code="duplicate_tag")
    if comment is None:
        comment = ""
    if not isinstance(comment, str):
        raise ReasonError("comment must be a string.", code="bad_comment")
    comment = visible(comment).strip()
    if len(comment) > COMMENT_MAX_CHARS:
        raise ReasonError(
            f"The comment is {len(comment)} characters long; the limit is {COMMENT_MAX_CHARS}.",
            code="comment_too_long",
        )
    if comment:
        # Checked, not logged as a flagged prompt: no model reads a comment, and a refused one is
        # simply not stored (the visitor may vote without it).
        verdict = async_to_sync(moderation.check)(comment)
        if verdict.flagged:
            raise ReasonError(
                f"The comment was refused by the arena's moderation ({verdict.reason}); "
                "vote without it or write another.",
                code="comment_refused",
            )
    return [t for t in TAGS if t in tags], comment
