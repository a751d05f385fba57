"""Share links: a read-only public page of one voted battle, made only when its visitor asks.

Until the visitor shares a battle no public address of it exists; a share is a random token of 256
bits (not derived from the battle's id, so it cannot be guessed or enumerated), and revoking deletes
it, so the page is gone (404) and sharing again makes a new token. The page shows the prompts, the
answers, the two models and the vote, and nothing of the visitor: no hashes, no other battle, no time
finer than the day.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

from django.db import IntegrityError, models, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from config.errors import Conflict, NotFound

if TYPE_CHECKING:
    from arena.models import Battle

# token_urlsafe(32): 32 random bytes, 43 URL-safe characters.
TOKEN_BYTES = 32
TOKEN_PATTERN = re.compile(r"[A-Za-z0-9_-]{43}")


class BattleShare(models.Model):
    """The share link of a battle, while it exists."""

    battle = models.OneToOneField("arena.Battle", on_delete=models.CASCADE, related_name="share")
    token = models.CharField(max_length=64, unique=True)
    created = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"share of battle {self.battle_id}"


def share_create(*, battle: Battle) -> tuple[BattleShare, bool]:
    """The battle's share (made now, or the one it has) and whether it was made now; only a battle
    with a vote can be shared, so nothing of it is public before its names are."""
    from arena.models import Battle

    if battle.state != Battle.State.VOTED:
        raise Conflict(
            _("Only a battle with a vote can be shared: vote first, then share."), code="not_voted"
        )
    existing = BattleShare.objects.filter(battle=battle).first()
    if existing:
        return existing, False
    try:
        with transaction.atomic():
            return BattleShare.objects.create(battle=battle, token=secrets.token_urlsafe(TOKEN_BYTES)), True
    except IntegrityError:  # shared at the same moment from another window
        return BattleShare.objects.get(battle=battle), False


def share_revoke(*, battle: Battle) -> None:
    """Delete the battle's share: its page is gone at once."""
    deleted, _count = BattleShare.objects.filter(battle=battle).delete()
    if not deleted:
        raise NotFound(_("This battle has no share link."), code="not_shared")


@dataclass(frozen=True)
class SharedTurn:
    prompt: str
    answers: list[tuple[str, str]]  # (side, text)


@dataclass(frozen=True)
class SharedBattle:
    mode: str
    day: date
    models: dict[str, dict[str, Any]]  # side: what a visitor learns of it once revealed
    winner: str
    turns: list[SharedTurn]


def shared_battle(token: object) -> SharedBattle:
    """What the public page of a share shows; NotFound for a token that is malformed, revoked or
    never made (all alike, so a probe learns nothing)."""
    from arena.models import Battle
    from arena.views import revealed

    if not isinstance(token, str) or not TOKEN_PATTERN.fullmatch(token):
        raise NotFound(_("No such shared battle."), code="not_shared")
    share = (
        BattleShare.objects.select_related("battle__model_a", "battle__model_b")
        .filter(token=token, battle__state=Battle.State.VOTED)
        .first()
    )
    if share is None:
        raise NotFound(_("No such shared battle."), code="not_shared")
    battle = share.battle
    vote = battle.votes.first()
    turns = [
        SharedTurn(prompt=t.prompt, answers=[(a.side, a.text) for a in t.answers.all()])
        for t in battle.turns.prefetch_related("answers")
    ]
    return SharedBattle(
        mode=battle.mode,
        day=battle.created.date(),
        models={side: revealed(battle.llm(side)) for side in battle.sides},
        winner=vote.winner if vote else "",
        turns=turns,
    )
