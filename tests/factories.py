"""Small factories for volume: battles with votes, straight into the database."""

from __future__ import annotations

from arena.models import Battle, Vote
from providers.models import LLM


def voted_battle(
    a: LLM, b: LLM, winner: str, *, mode: str = Battle.Mode.ANONYMOUS, excluded: str = ""
) -> Vote:
    battle = Battle.objects.create(
        model_a=a, model_b=b, mode=mode, state=Battle.State.VOTED, session_hash="x"
    )
    return Vote.objects.create(battle=battle, winner=winner, excluded=excluded)
