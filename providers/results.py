"""Private results of variants: computed from the votes by the leaderboard's recompute, which stores
them in providers' own rows (`VariantResult`, `LLM.final_result`); the provider API and the testing
ledger read them here."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from providers.models import LLM, VariantResult


@dataclass(frozen=True)
class OpponentRecord:
    name: str
    label: str
    battles: int
    wins: int
    losses: int
    ties: int  # tie and both-bad: half a win each side, as in the ratings
    win_rate: float


@dataclass(frozen=True)
class PrivateResult:
    """A variant's rating on the public board's scale, as if it were on it, and its record."""

    rating: float
    ci_lower: float
    ci_upper: float
    rank: int  # the rank it would have on the board
    votes: int
    pool_models: int
    opponents: list[OpponentRecord] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> PrivateResult | None:
        if not data or not data.get("votes"):
            return None
        return cls(**{**data, "opponents": [OpponentRecord(**o) for o in data.get("opponents", [])]})


def private_result(variant: LLM, row: VariantResult | None) -> PrivateResult | None:
    """The variant's result as of the last recompute, from its row: its final result once frozen.

    None before a recompute found a counted vote of it against a public model."""
    if variant.final_result is not None:
        return PrivateResult.from_dict(variant.final_result)
    return PrivateResult.from_dict(row.result if row else None)


def results_of(variants: list[LLM]) -> dict[int, VariantResult]:
    """The stored rows of these variants, by primary key (a variant no recompute saw has none)."""
    return {row.llm_id: row for row in VariantResult.objects.filter(llm__in=variants)}
