"""Small factories for volume: battles with votes, straight into the database."""

from __future__ import annotations

from django.db import transaction

from arena.models import Battle, Vote
from arena.services import after_vote
from providers.models import LLM


def voted_battle(
    a: LLM, b: LLM, winner: str, *, mode: str = Battle.Mode.ANONYMOUS, excluded: str = ""
) -> Vote:
    """A voted battle, with what its vote changes elsewhere, as the vote service records one."""
    with transaction.atomic():
        battle = Battle.objects.create(
            model_a=a, model_b=b, mode=mode, state=Battle.State.VOTED, visitor_hash="x"
        )
        vote = Vote.objects.create(battle=battle, winner=winner, excluded=excluded)
        after_vote(vote=vote)
    return vote
