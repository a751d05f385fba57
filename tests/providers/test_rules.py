"""The fair-testing rules, each against the code that enforces it."""

from __future__ import annotations

import random
from collections import Counter
from datetime import timedelta
from typing import Any

import numpy as np
import pytest
import time_machine
from django.db.models import ProtectedError
from django.test import Client
from django.utils import timezone

from arena.models import Battle, Vote
from arena.services import draw_pair
from leaderboard import rating, services, tasks
from providers import ledger
from providers.models import LLM, Organization, VariantResult
from providers.results import PrivateResult, private_result, results_of
from providers.variants import variant_publish, variant_retire
from tests.factories import voted_battle
from tests.providers.conftest import Personas, make_variant, post, submit
from tests.upstream import FakeOpenAI

pytestmark = pytest.mark.django_db

VARIANTS = "/api/v1/provider/variants/"


@pytest.fixture(autouse=True)
def _small_bootstrap(settings: Any) -> None:
    settings.LEADERBOARD_BOOTSTRAP = 50


@pytest.fixture
def orgs(personas: Personas) -> tuple[Organization, Organization]:
    assert personas.owner.organization and personas.outsider.organization
    return personas.owner.organization, personas.outsider.organization


def vote(a: LLM, b: LLM, n: int, winners: str = "a") -> None:
    """n anonymous votes, cycling through `winners` (one letter per vote: a, b, t for tie)."""
    names = {"a": "a", "b": "b", "t": "tie"}
    for i in range(n):
        voted_battle(a, b, names[winners[i % len(winners)]])


def test_the_rules_have_their_documented_defaults(settings: Any) -> None:
    assert settings.PROVIDER_MAX_VARIANTS_UNDER_TEST == 3
    assert settings.PROVIDER_VARIANT_BUDGET == 5000
    assert settings.PROVIDER_DISCLOSURE_MIN_VOTES == 1000
    assert settings.PROVIDER_DISCLOSURE_DELAY_DAYS == 90
    assert settings.PROVIDER_FRESH_VOTES == 2000
    assert settings.PROVIDER_VARIANT_WEIGHT == 1.0


# --- at most 3 under test at once ---------------------------------------------------------------------


def test_a_fourth_variant_under_test_is_refused_naming_the_rule(
    personas: Personas, client: Client, openai_upstream: FakeOpenAI
) -> None:
    ids = [
        submit(client, persona, openai_upstream, codename=f"v{n}").json()["id"]
        for n, persona in enumerate((personas.owner, personas.teammate, personas.owner))
    ]
    calls = len(openai_upstream.requests)
    response = submit(client, personas.teammate, openai_upstream, codename="v4")
    assert response.status_code == 409
    assert response.json()["code"] == "too_many_variants"
    assert "at most 3 private variants under test" in response.json()["detail"]
    assert len(openai_upstream.requests) == calls  # refused before probing
    # Another organisation has its own three slots.
    assert submit(client, personas.outsider, openai_upstream, codename="v4").status_code == 201
    # Retiring or publishing frees a slot; the retired one keeps its row.
    assert post(client, personas.owner, f"{VARIANTS}{ids[0]}/retire/").status_code == 200
    assert submit(client, personas.owner, openai_upstream, codename="v4").status_code == 201
    assert post(client, personas.owner, f"{VARIANTS}{ids[1]}/publish/").status_code == 200
    assert submit(client, personas.owner, openai_upstream, codename="v5").status_code == 201
    assert LLM.objects.of_organization(personas.owner.organization).count() == 5


def test_a_variant_at_its_budget_still_holds_its_slot(
    orgs: tuple[Organization, Organization], settings: Any, make_llm: Any
) -> None:
    settings.PROVIDER_VARIANT_BUDGET = 2
    org, _ = orgs
    variants = [make_variant(org, f"v{n}") for n in range(3)]
    vote(variants[0], make_llm(), 2)
    assert variants[0] not in LLM.objects.drawable()
    assert LLM.objects.under_test().of_organization(org).count() == 3


# --- the same weight and the same budget for everyone ----------------------------------------------------


def test_every_variant_gets_the_same_weight_whoever_submits_it(
    personas: Personas, client: Client, openai_upstream: FakeOpenAI, make_llm: Any, settings: Any
) -> None:
    settings.PROVIDER_VARIANT_WEIGHT = 0.5
    a = LLM.objects.get(pk=submit(client, personas.owner, openai_upstream, codename="a1").json()["id"])
    b = LLM.objects.get(pk=submit(client, personas.outsider, openai_upstream, codename="b1").json()["id"])
    assert a.weight == b.weight == 0.5
    # A provider cannot ask for more.
    response = submit(client, personas.owner, openai_upstream, codename="a2", weight=10)
    assert response.status_code == 400 and "weight" in response.json()["errors"]
    # And the sampler draws both organisations' variants equally often.
    make_llm(weight=0.5), make_llm(weight=0.5)
    rng = random.Random(7)
    drawn = Counter(pk for _ in range(2000) for pk in (m.pk for m in draw_pair(rng)))
    assert abs(drawn[a.pk] - drawn[b.pk]) < 120  # each is in about half of 2000 battles


def test_the_admin_cannot_change_a_variants_weight(personas: Personas, admin_client: Client) -> None:
    assert personas.owner.organization is not None
    variant = make_variant(personas.owner.organization, "v1")
    page = admin_client.get(f"/admin/providers/llm/{variant.pk}/change/")
    assert page.status_code == 200
    assert 'name="weight"' not in page.content.decode()
    assert admin_client.get(f"/admin/providers/llm/{variant.pk}/delete/").status_code == 403


def test_a_variant_at_its_budget_stops_being_drawn_until_published(
    orgs: tuple[Organization, Organization], settings: Any, make_llm: Any
) -> None:
    settings.PROVIDER_VARIANT_BUDGET = 5
    org_a, org_b = orgs
    public = make_llm()
    full, other = make_variant(org_a, "full"), make_variant(org_b, "other")
    vote(full, public, 4, "ab")
    assert full in LLM.objects.drawable()
    vote(public, full, 1)
    full.refresh_from_db()
    assert full.test_votes == 5 and full.testing_status == "budget_reached"
    assert full.testing_ended_at is not None
    assert set(LLM.objects.drawable()) == {public, other}
    rng = random.Random(1)
    assert all(full not in draw_pair(rng) for _ in range(200))
    variant_publish(variant=full, name="full-release")
    assert full in LLM.objects.drawable()  # public now: no budget


def test_the_default_budget_is_five_thousand_votes(
    orgs: tuple[Organization, Organization], make_llm: Any
) -> None:
    variant = make_variant(orgs[0], "v1")
    LLM.objects.filter(pk=variant.pk).update(test_votes=4999)
    assert variant in LLM.objects.drawable()
    vote(variant, make_llm(), 1)
    assert variant not in LLM.objects.drawable()


def test_only_anonymous_votes_of_private_variants_are_counted(
    orgs: tuple[Organization, Organization], make_llm: Any
) -> None:
    p1, p2 = make_llm(), make_llm()
    v1, v2 = make_variant(orgs[0], "v1"), make_variant(orgs[1], "v2")
    vote(p1, p2, 3)
    vote(v1, v2, 2)
    vote(v1, p1, 1)
    voted_battle(v1, p1, "a", mode=Battle.Mode.NAMED)
    counts = dict(LLM.objects.values_list("pk", "test_votes"))
    assert (counts[v1.pk], counts[v2.pk], counts[p1.pk], counts[p2.pk]) == (3, 2, 0, 0)


# --- no retraction --------------------------------------------------------------------------------------


def variant_result(variant: LLM) -> PrivateResult | None:
    """The variant's private result as the provider API reads it, once a recompute stored it."""
    tasks.recompute()
    variant.refresh_from_db()
    return private_result(variant, results_of([variant]).get(variant.pk))


def ledger_row(variant: LLM) -> dict[str, Any] | None:
    """The variant's row on the ledger after a recompute (found by its start time: the codename
    may be hidden)."""
    tasks.recompute()
    for org in ledger.testing_ledger():
        for row in org.variants:
            if row.testing_started_at == variant.testing_started_at:
                return {"codename": row.codename, "disclosed": row.disclosed, "result": row.result}
    return None


def test_a_retired_variant_with_enough_votes_is_disclosed_ninety_days_after_it_stopped(
    orgs: tuple[Organization, Organization], settings: Any, make_llm: Any
) -> None:
    settings.PROVIDER_DISCLOSURE_MIN_VOTES = 30
    variant = make_variant(orgs[0], "quiet-one")
    vote(variant, make_llm(), 30, "aab")
    variant_retire(variant=variant)
    assert ledger_row(variant) == {"codename": None, "disclosed": False, "result": None}
    stopped = variant.testing_ended_at
    assert stopped is not None
    with time_machine.travel(stopped + timedelta(days=89), tick=False):
        assert ledger_row(variant)["disclosed"] is False
    with time_machine.travel(stopped + timedelta(days=90, seconds=1), tick=False):
        row = ledger_row(variant)
    assert row["codename"] == "quiet-one" and row["disclosed"] is True
    assert (
        row["result"].votes == 30 and row["result"].ci_lower < row["result"].rating < row["result"].ci_upper
    )
    assert LLM.objects.filter(pk=variant.pk).exists()  # retiring deleted nothing


def test_publishing_any_variant_discloses_the_organisations_stopped_ones_at_once(
    orgs: tuple[Organization, Organization], settings: Any, make_llm: Any
) -> None:
    settings.PROVIDER_DISCLOSURE_MIN_VOTES = 30
    org_a, org_b = orgs
    public = make_llm()
    tried, running, released = (make_variant(org_a, name) for name in ("tried", "running", "released"))
    theirs = make_variant(org_b, "theirs")
    for variant in (tried, running, theirs):
        vote(variant, public, 30, "ab")
    variant_retire(variant=tried)
    variant_retire(variant=theirs)
    variant_publish(variant=released, name="Released 1.0")

    assert ledger_row(tried) == {"codename": "tried", "disclosed": True, "result": variant_result(tried)}
    assert ledger_row(running) is None  # still testing: not listed, no final rating yet...
    assert ledger_row(theirs) == {"codename": None, "disclosed": False, "result": None}  # not their release
    variant_retire(variant=running)
    assert ledger_row(running)["codename"] == "running"  # ...until it stops
    assert ledger_row(released)["codename"] == "released"


def test_a_variant_below_the_threshold_is_listed_but_never_disclosed(
    orgs: tuple[Organization, Organization], settings: Any, make_llm: Any
) -> None:
    settings.PROVIDER_DISCLOSURE_MIN_VOTES = 30
    variant = make_variant(orgs[0], "brief")
    vote(variant, make_llm(), 29)
    variant_retire(variant=variant)
    with time_machine.travel(timezone.now() + timedelta(days=400), tick=False):
        assert ledger_row(variant) == {"codename": None, "disclosed": False, "result": None}


def test_the_disclosed_rating_is_the_final_one_frozen_when_testing_ended(
    orgs: tuple[Organization, Organization], settings: Any, make_llm: Any
) -> None:
    settings.PROVIDER_DISCLOSURE_MIN_VOTES = 10
    p1, p2 = make_llm(), make_llm()
    variant = make_variant(orgs[0], "frozen")
    vote(variant, p1, 10, "aab")
    vote(p1, p2, 10, "ab")
    variant_retire(variant=variant)
    variant.refresh_from_db()
    before = variant_result(variant)
    vote(p2, p1, 50)  # the pool moves on
    variant.refresh_from_db()
    assert variant.final_result is not None and variant_result(variant) == before


def test_nothing_is_ever_deleted(orgs: tuple[Organization, Organization], make_llm: Any) -> None:
    variant = make_variant(orgs[0], "kept")
    vote(variant, make_llm(), 1)
    with pytest.raises(ProtectedError):
        variant.delete()
    with pytest.raises(ProtectedError):
        orgs[0].delete()


# --- fresh votes ----------------------------------------------------------------------------------------


def test_an_unpublished_variants_votes_never_reach_the_public_board(
    orgs: tuple[Organization, Organization], make_llm: Any
) -> None:
    p1, p2 = make_llm(), make_llm()
    variant = make_variant(orgs[0], "hidden")
    vote(p1, p2, 10, "ab")
    vote(variant, p1, 7)
    snapshot = services.recompute()
    assert snapshot is not None and snapshot.votes == 10
    assert set(snapshot.ratings.values_list("llm_id", flat=True)) == {p1.pk, p2.pk}
    assert snapshot.excluded == {"unpublished_variant": 7}


def test_a_published_variant_counts_only_fresh_votes_and_is_provisional_until_it_has_enough(
    orgs: tuple[Organization, Organization], settings: Any, make_llm: Any, client: Client
) -> None:
    settings.PROVIDER_FRESH_VOTES = 20
    settings.LEADERBOARD_MIN_VOTES = 1  # this test is about the fresh-vote rule, not the listing threshold
    p1, p2 = make_llm(), make_llm()
    vote(p1, p2, 20, "ab")
    variant = make_variant(orgs[0], "lucky")
    vote(variant, p1, 30)  # a lucky streak while private: 30 wins of 30
    variant_publish(variant=variant, name="lucky-1")

    vote(variant, p1, 10, "ab")  # fresh votes come in at an even rate
    snapshot = services.recompute()
    assert snapshot is not None
    row = snapshot.ratings.get(llm=variant)
    assert row.provisional and row.votes == 10  # the streak cast while private never counts
    assert snapshot.excluded == {"before_publication": 30}
    assert abs(row.rating - snapshot.ratings.get(llm=p1).rating) < 1e-6  # 5-5: level with p1
    board = client.get("/api/v1/leaderboard/").json()["models"]
    assert next(m for m in board if m["name"] == "lucky-1")["provisional"] is True

    vote(variant, p1, 10, "ab")
    snapshot = services.recompute()
    assert snapshot is not None
    row = snapshot.ratings.get(llm=variant)
    assert not row.provisional and row.votes == 20  # fresh votes only
    assert snapshot.excluded == {"before_publication": 30}
    assert abs(row.rating - snapshot.ratings.get(llm=p1).rating) < 1e-6  # 10-10: level with p1
    assert not snapshot.ratings.get(llm=p1).provisional


# --- the private result ----------------------------------------------------------------------------------


def test_the_private_result_rates_the_variant_against_the_public_pool_with_the_boards_engine(
    orgs: tuple[Organization, Organization], make_llm: Any
) -> None:
    p1, p2, p3 = make_llm(name="p1"), make_llm(name="p2"), make_llm(name="p3")
    vote(p1, p2, 12, "aab")
    vote(p2, p3, 12, "aab")
    variant = make_variant(orgs[0], "mine")
    rival = make_variant(orgs[1], "rival")
    vote(variant, p1, 8, "aaab")
    vote(p2, variant, 6, "abt")
    vote(variant, rival, 9)  # against another unreleased variant: left out, and never named

    result = variant_result(variant)
    assert result is not None and result.votes == 14 and result.pool_models == 3
    assert {o.name: (o.battles, o.wins, o.losses, o.ties) for o in result.opponents} == {
        "p1": (8, 6, 2, 0),
        "p2": (6, 2, 2, 2),
    }
    assert next(o for o in result.opponents if o.name == "p1").win_rate == 0.75
    assert "rival" not in str(result)

    # The same numbers as the engine itself gives on the public votes plus the variant's own.
    ids = [p1.pk, p2.pk, p3.pk, variant.pk]
    rows = (
        Vote.objects.exclude(battle__model_a=rival)
        .exclude(battle__model_b=rival)
        .order_by("id")
        .values_list("battle__model_a_id", "battle__model_b_id", "winner")
    )
    outcome = {"a": rating.A_WINS, "b": rating.B_WINS, "tie": rating.TIE, "bothbad": rating.BOTH_BAD}
    direct = rating.rate(
        np.array([ids.index(a) for a, _, _ in rows]),
        np.array([ids.index(b) for _, b, _ in rows]),
        np.array([outcome[w] for _, _, w in rows]),
        4,
        bootstrap=50,
        seed=42,
    )
    shift = direct.rating[:3].mean() - 1000
    assert result.rating == pytest.approx(direct.rating[3] - shift, abs=0.01)
    assert result.ci_lower == pytest.approx(direct.ci_lower[3] - shift, abs=0.01)
    assert result.rank == direct.rank[3]


def test_the_private_result_appears_in_the_api_for_its_organisation_only(
    personas: Personas, client: Client, make_llm: Any
) -> None:
    assert personas.owner.organization is not None
    variant = make_variant(personas.owner.organization, "mine")
    vote(variant, make_llm(name="pool-model"), 5, "ab")
    tasks.recompute()  # stores the result and battle count the API reads
    body = client.get(f"{VARIANTS}{variant.pk}/", headers=personas.owner.headers()).json()
    assert body["votes"] == 5 and body["battles"] == 5
    assert body["result"]["votes"] == 5 and body["result"]["opponents"][0]["name"] == "pool-model"
    assert client.get(f"{VARIANTS}{variant.pk}/", headers=personas.outsider.headers()).status_code == 404


def voters_cast(a: LLM, b: LLM, voters: list[tuple[str, str]]) -> None:
    """One anonymous vote for `a` per (visitor hash, network hash)."""
    for visitor, network in voters:
        cast = voted_battle(a, b, "a")
        Battle.objects.filter(pk=cast.battle_id).update(visitor_hash=visitor, network_hash=network)


def test_a_private_result_driven_by_few_voters_is_flagged_to_its_organisation_and_operators_only(
    personas: Personas, client: Client, make_llm: Any, settings: Any
) -> None:
    settings.PROVIDER_VOTER_MAX_SHARE = 0.2
    assert personas.owner.organization is not None
    pool = make_llm(name="pool-model")
    spread = make_variant(personas.owner.organization, "spread")
    pushed = make_variant(personas.owner.organization, "pushed")
    voters_cast(spread, pool, [(f"v{i}", f"n{i % 6}") for i in range(12)])  # busiest network: 2 of 12
    # Twelve visitors, but a third of the votes from one network (the organisation's own office).
    voters_cast(pushed, pool, [(f"w{i}", "office" if i < 4 else f"m{i}") for i in range(12)])
    voters_cast(pushed, make_llm(), [("w0", "")])  # no network recorded: counts towards none
    tasks.recompute()

    row = VariantResult.objects.get(llm=spread)
    assert (row.visitors, row.networks, row.top_visitor_share, row.concentrated) == (
        12,
        6,
        round(1 / 12, 4),
        False,
    )
    assert row.top_network_share == round(2 / 12, 4)
    row = VariantResult.objects.get(llm=pushed)
    assert (row.visitors, row.networks, row.concentrated) == (12, 9, True)
    assert (row.top_visitor_share, row.top_network_share) == (round(2 / 13, 4), round(4 / 13, 4))

    body = client.get(f"{VARIANTS}{pushed.pk}/", headers=personas.owner.headers()).json()
    assert body["voters"] == {
        "visitors": 12,
        "networks": 9,
        "top_visitor_share": round(2 / 13, 4),
        "top_network_share": round(4 / 13, 4),
        "concentrated": True,
    }
    assert (
        client.get(f"{VARIANTS}{spread.pk}/", headers=personas.owner.headers()).json()["voters"][
            "concentrated"
        ]
        is False
    )
    for path in ("/api/v1/leaderboard/", "/leaderboard/", "/api/v1/testing-ledger/", "/testing-ledger/"):
        text = client.get(path).content.decode()
        assert "concentrated" not in text and "top_network_share" not in text, path


def test_each_recompute_brings_the_private_result_up_to_date(
    orgs: tuple[Organization, Organization], make_llm: Any
) -> None:
    variant = make_variant(orgs[0], "mine")
    public = make_llm(name="pool-model")
    vote(variant, public, 4, "ab")
    assert variant_result(variant).votes == 4
    vote(variant, public, 3)
    assert private_result(variant, results_of([variant]).get(variant.pk)).votes == 4  # as last stored
    assert variant_result(variant).votes == 7
