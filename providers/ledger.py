"""The public testing ledger: every variant each organisation tested, from providers' own rows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.utils import timezone

from providers.models import LLM, LedgerEntry, Organization
from providers.results import PrivateResult


@dataclass(frozen=True)
class LedgerVariant:
    codename: str | None  # shown once the variant is disclosed or published
    name: str | None  # its public name, once published
    status: str
    testing_started_at: datetime | None
    testing_ended_at: datetime | None
    published_at: datetime | None
    retired_at: datetime | None
    votes: int
    disclosed: bool
    result: PrivateResult | None  # the final result, once disclosed


@dataclass(frozen=True)
class LedgerOrganization:
    name: str
    slug: str
    variants_tested: int
    variants_published: int
    votes: int  # anonymous votes on battles with its listed variants while they were private
    battle_share: float  # those votes over all anonymous votes
    variants: list[LedgerVariant]


def testing_ledger(*, now: datetime | None = None) -> list[LedgerOrganization]:
    """Per organisation, every variant it tested: dates, votes, share, and disclosed ratings.

    A variant is listed once its testing ended (published, retired or at its budget), without
    codename or rating until disclosed (LLM.objects.disclosed: the no-retraction rule), so the
    number of variants tried per release is public while nothing is said about tests under way.
    The figures from the votes (its share, the final ratings) are those of the last recompute.
    """
    now = now or timezone.now()
    variants = list(
        LLM.objects.variants()
        .filter(testing_ended_at__lte=now)
        .select_related("owner")
        .order_by("testing_started_at", "pk")
    )
    disclosed = set(LLM.objects.disclosed(now=now).values_list("pk", flat=True))
    by_org: dict[int, list[LLM]] = {}
    for variant in variants:
        by_org.setdefault(variant.owner_id, []).append(variant)
    entries = {entry.organization_id: entry for entry in LedgerEntry.objects.filter(organization__in=by_org)}
    ledger = []
    for org in Organization.objects.filter(pk__in=list(by_org)).order_by("name"):
        rows = [
            LedgerVariant(
                codename=v.codename if v.pk in disclosed or v.published_at else None,
                name=v.name if v.published_at else None,
                status=v.testing_status,
                testing_started_at=v.testing_started_at,
                testing_ended_at=v.testing_ended_at,
                published_at=v.published_at,
                retired_at=v.retired_at,
                votes=v.test_votes,
                disclosed=v.pk in disclosed,
                result=PrivateResult.from_dict(v.final_result) if v.pk in disclosed else None,
            )
            for v in by_org[org.pk]
        ]
        entry = entries.get(org.pk) or LedgerEntry(organization=org)
        ledger.append(
            LedgerOrganization(
                name=org.name,
                slug=org.slug,
                variants_tested=len(rows),
                variants_published=sum(1 for r in rows if r.published_at),
                votes=entry.votes,
                battle_share=entry.battle_share,
                variants=rows,
            )
        )
    return ledger
