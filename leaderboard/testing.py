"""What the votes say about providers' variants, written to providers' own rows after each recompute.

Providers reads no votes: the battles each variant was drawn into, its private result against the
public pool (frozen once its testing ended) and each organisation's votes under test for the public
ledger reach the provider API only through `VariantResult`, `LLM.final_result` and `LedgerEntry`.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import numpy as np
from django.conf import settings
from django.db.models import Count, F, Model, Q, QuerySet
from django.utils import timezone

from arena.models import Battle, Vote
from leaderboard import rating
from leaderboard.votes import OUTCOME, OUTCOME_OF, WINNERS, BoardCounts, Filters, filtered_votes
from providers.models import LLM, LedgerEntry, Organization, VariantResult
from providers.results import OpponentRecord, PrivateResult

_Row = tuple[int, int, str]  # a vote's model_a, model_b and winner


def record_figures(filters: Filters, pool: BoardCounts) -> None:
    """Store every variant's battles and results and the ledger's figures, `pool` being the public
    board's counts under `filters` (the votes a variant under test is rated against)."""
    variants = list(LLM.objects.variants())
    if not variants:
        return
    rows = {row.llm_id: row for row in VariantResult.objects.filter(llm__in=variants)}
    battles = battle_counts([v.pk for v in variants])
    testing = [v for v in variants if v.testing_ended_at is None]
    own = own_votes(testing)
    voters = voters_behind(testing)
    pool_digest = pool.digest()
    for variant in variants:
        row = rows.get(variant.pk)
        fields: dict[str, Any] = {"battles": battles.get(variant.pk, 0)}
        if variant.testing_ended_at is None:
            mine = own.get(variant.pk, [])
            digest = hashlib.sha256(f"{pool_digest}:{mine!r}".encode()).hexdigest()
            if row is None or digest != row.votes_digest:
                result = rate_variant(variant, mine, pool)
                fields |= {"result": result.as_dict() if result else None, "votes_digest": digest}
            fields |= voters.get(variant.pk, Voters()).as_fields()
        _store(VariantResult, row, {"llm": variant}, fields)
        if variant.testing_ended_at is not None and variant.final_result is None:
            _freeze(variant, filters)
    _record_ledger(variants)


def _store(model: type[Model], row: Model | None, key: dict[str, Any], fields: dict[str, Any]) -> None:
    """Write `fields` to the row of `key` (`row`, as read), unless it holds them already."""
    if row is None or any(getattr(row, name) != value for name, value in fields.items()):
        model.objects.update_or_create(**key, defaults=fields)


def battle_counts(llm_ids: list[int]) -> dict[int, int]:
    """Anonymous battles each model was drawn into, whatever became of them."""
    counts: Counter[int] = Counter()
    battles = Battle.objects.anonymous()
    for side in ("model_a", "model_b"):
        rows = battles.filter(**{f"{side}__in": llm_ids}).values(side).annotate(n=Count("id"))
        counts.update(dict(rows.values_list(side, "n")))
    return dict(counts)


def _own(ids: set[int]) -> QuerySet[Vote]:
    """The counted votes of these variants against public models.

    A vote against another unreleased variant is left out: it would tell the organisation that one
    exists."""
    public = LLM.Visibility.PUBLIC
    return Vote.objects.filter(anonymous=True, excluded="").filter(
        Q(model_a__in=ids, model_b__visibility=public) | Q(model_b__in=ids, model_a__visibility=public)
    )


def own_votes(variants: list[LLM], *, until: datetime | None = None) -> dict[int, list[_Row]]:
    """Each variant's counted votes against public models, in id order, from one query."""
    ids = {v.pk for v in variants}
    if not ids:
        return {}
    votes = _own(ids)
    if until is not None:
        votes = votes.filter(created__lte=until)
    mine: dict[int, list[_Row]] = {}
    for a, b, winner in votes.order_by("id").values_list("model_a", "model_b", "winner"):
        mine.setdefault(a if a in ids else b, []).append((a, b, winner))
    return mine


@dataclass(frozen=True)
class Voters:
    """Who cast the votes behind a variant's private result, counted by their keyed hashes."""

    visitors: int = 0
    networks: int = 0
    top_visitor_share: float = 0.0
    top_network_share: float = 0.0

    def as_fields(self) -> dict[str, Any]:
        limit = settings.PROVIDER_VOTER_MAX_SHARE
        return asdict(self) | {
            "concentrated": self.top_visitor_share > limit or self.top_network_share > limit
        }


def voters_behind(variants: list[LLM]) -> dict[int, Voters]:
    """Each variant's distinct visitors and networks behind its counted votes, and the busiest one's
    share of them, from one query. A battle with no network recorded counts towards no network."""
    ids = {v.pk for v in variants}
    if not ids:
        return {}
    visitors: dict[int, Counter[str]] = {}
    networks: dict[int, Counter[str]] = {}
    rows = _own(ids).values_list("model_a", "model_b", "battle__visitor_hash", "battle__network_hash")
    for a, b, visitor, network in rows.iterator():
        pk = a if a in ids else b
        visitors.setdefault(pk, Counter())[visitor] += 1
        if network:
            networks.setdefault(pk, Counter())[network] += 1
    found = {}
    for pk, by_visitor in visitors.items():
        votes = by_visitor.total()
        by_network = networks.get(pk, Counter())
        found[pk] = Voters(
            visitors=len(by_visitor),
            networks=len(by_network),
            top_visitor_share=round(max(by_visitor.values()) / votes, 4),
            top_network_share=round(max(by_network.values(), default=0) / votes, 4),
        )
    return found


def rate_variant(llm: LLM, own: list[_Row], pool: BoardCounts) -> PrivateResult | None:
    """Rate the variant with the same engine as the board: the pool's votes plus its own.

    None before its first counted vote against a public model. Ratings are shifted so that the
    pool's mean is the board's centre, as on the board.
    """
    if not own:
        return None
    own_a, own_b, own_winner = zip(*own, strict=True)
    a = np.concatenate([pool.model_a, own_a]).astype(np.int64)
    b = np.concatenate([pool.model_b, own_b]).astype(np.int64)
    outcome = np.concatenate([OUTCOME_OF[pool.winner], [OUTCOME[w] for w in own_winner]])
    model_ids = np.union1d(a, b)
    result = rating.rate(
        np.searchsorted(model_ids, a),
        np.searchsorted(model_ids, b),
        outcome.astype(np.int64),
        len(model_ids),
        count=np.concatenate([pool.n, np.ones(len(own), dtype=np.int64)]),
        bootstrap=settings.LEADERBOARD_BOOTSTRAP,
        seed=settings.LEADERBOARD_SEED,
        workers=settings.LEADERBOARD_WORKERS,
    )
    i = int(np.searchsorted(model_ids, llm.pk))
    others = np.arange(len(model_ids)) != i
    shift = float(result.rating[others].mean()) - rating.CENTRE
    return PrivateResult(
        rating=round(float(result.rating[i]) - shift, 2),
        ci_lower=round(float(result.ci_lower[i]) - shift, 2),
        ci_upper=round(float(result.ci_upper[i]) - shift, 2),
        rank=int(result.rank[i]),
        votes=len(own),
        pool_models=len(model_ids) - 1,
        opponents=_opponent_records(llm, own),
    )


def _freeze(variant: LLM, filters: Filters) -> None:
    """Store the variant's final result, on the votes up to the end of its testing (the ledger
    discloses that one)."""
    until = variant.testing_ended_at
    mine = Q(model_a=variant) | Q(model_b=variant)
    pool = filtered_votes(filters, count=False)[0].exclude(mine).filter(created__lte=until)
    result = rate_variant(variant, own_votes([variant], until=until).get(variant.pk, []), cells(pool))
    frozen = result.as_dict() if result else {"votes": 0}
    LLM.objects.filter(pk=variant.pk, final_result__isnull=True).update(final_result=frozen)


def cells(votes: QuerySet[Vote]) -> BoardCounts:
    """The votes as (model_a, model_b, winner) cells with their counts."""
    rows = list(votes.values_list("model_a", "model_b", "winner").annotate(n=Count("id")).order_by())
    a, b, winner, n = (list(column) for column in zip(*rows, strict=True)) if rows else ([], [], [], [])
    return BoardCounts(
        np.array(a, dtype=np.int64),
        np.array(b, dtype=np.int64),
        np.array([WINNERS.index(w) for w in winner], dtype=np.int64),
        np.array(n, dtype=np.int64),
        {},
    )


def _opponent_records(llm: LLM, rows: list[_Row]) -> list[OpponentRecord]:
    tally: dict[int, Counter[str]] = {}
    for a, b, winner in rows:
        mine_is_a = a == llm.pk
        opponent = b if mine_is_a else a
        if winner in (Vote.Winner.TIE, Vote.Winner.BOTH_BAD):
            outcome = "tie"
        else:
            outcome = "win" if (winner == Vote.Winner.A) == mine_is_a else "loss"
        tally.setdefault(opponent, Counter())[outcome] += 1
    names = {m.pk: m for m in LLM.objects.filter(pk__in=list(tally))}
    records = []
    for pk, counts in tally.items():
        n = counts.total()
        records.append(
            OpponentRecord(
                name=names[pk].name,
                label=names[pk].label,
                battles=n,
                wins=counts["win"],
                losses=counts["loss"],
                ties=counts["tie"],
                win_rate=round((counts["win"] + counts["tie"] / 2) / n, 4),
            )
        )
    return sorted(records, key=lambda r: (-r.battles, r.name))


def _record_ledger(variants: list[LLM]) -> None:
    """Each organisation's votes under test and their share of all anonymous votes, once one of its
    variants ended its testing."""
    now = timezone.now()
    organizations = {
        v.owner_id for v in variants if v.testing_ended_at is not None and v.testing_ended_at <= now
    }
    if not organizations:
        return
    all_votes = Vote.objects.filter(anonymous=True).count()
    entries = {e.organization_id: e for e in LedgerEntry.objects.filter(organization__in=organizations)}
    for org in Organization.objects.filter(pk__in=organizations):
        votes = _votes_under_test(org, now)
        share = round(votes / all_votes, 4) if all_votes else 0.0
        _store(
            LedgerEntry, entries.get(org.pk), {"organization": org}, {"votes": votes, "battle_share": share}
        )


def _votes_under_test(org: Organization, now: datetime) -> int:
    """Anonymous votes on battles with the organisation's variants while private, once ended."""

    def side(s: str) -> Q:
        return Q(**{f"model_{s}__owner": org, f"model_{s}__testing_ended_at__lte": now}) & (
            Q(**{f"model_{s}__published_at__isnull": True}) | Q(created__lt=F(f"model_{s}__published_at"))
        )

    return Vote.objects.filter(anonymous=True).filter(side("a") | side("b")).count()
