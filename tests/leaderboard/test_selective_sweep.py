"""Selective voting on the database: a script that votes only where its target answered, spread over
fresh cookies and networks (a vote surge), or from one visitor and network (a selective voter)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from arena.models import Battle, Vote, VoterFlag
from leaderboard import integrity_service
from leaderboard.services import recompute
from providers.models import LLM

MODELS = 6
DAYS = 6
HONEST_VISITORS = 40


def battles(rows: list[tuple[LLM, LLM, bool, str, str, Any]], rng: np.random.Generator) -> None:
    """Battles, one a row: (model_a, model_b, voted, visitor_hash, network_hash, started); the voted
    ones get a vote for whichever side a coin picks."""
    made = Battle.objects.bulk_create(
        Battle(
            model_a=a,
            model_b=b,
            state=Battle.State.VOTED if voted else Battle.State.READY,
            visitor_hash=visitor,
            network_hash=network,
            created=started,
        )
        for a, b, voted, visitor, network, started in rows
    )
    votes = []
    for battle, (_, _, voted, _, _, started) in zip(made, rows, strict=True):
        if voted:
            vote = Vote(battle=battle, winner=rng.choice(["a", "b"]), created=started + timedelta(minutes=2))
            vote.set_facts()
            votes.append(vote)
    Vote.objects.bulk_create(votes)


def pair(models: list[LLM], rng: np.random.Generator) -> tuple[LLM, LLM]:
    i, j = rng.choice(len(models), 2, replace=False)
    return models[i], models[j]


@pytest.fixture
def arena(make_llm: Callable[..., LLM]) -> tuple[list[LLM], Any]:
    """Six days of honest battles, 60% of them voted, from established visitors (dozens of battles
    each) on their own networks; returns the models and the last day's start."""
    rng = np.random.default_rng(11)
    models = [make_llm() for _ in range(MODELS)]
    first = (timezone.now() - timedelta(days=DAYS)).replace(hour=0, minute=0, second=0, microsecond=0)
    rows = []
    for day in range(DAYS):
        for k in range(240):
            v = int(rng.integers(HONEST_VISITORS))
            started = first + timedelta(days=day, minutes=5 * k)
            rows.append((*pair(models, rng), bool(rng.random() < 0.6), f"visitor-{v}", f"net-{v}", started))
    battles(rows, rng)
    return models, first + timedelta(days=DAYS - 1)


def honest_votes_counted() -> int:
    return Vote.objects.filter(excluded="", battle__visitor_hash__startswith="visitor-").count()


def test_a_surge_spread_over_fresh_cookies_and_networks_is_set_aside(arena: tuple[list[LLM], Any]) -> None:
    models, last_day = arena
    target = models[2]
    rng = np.random.default_rng(12)
    rows = []
    for k in range(360):  # each battle from a new visitor on a new network; votes where the target is
        a, b = pair(models, rng)
        rows.append((a, b, target in (a, b), f"rig-{k}", f"rig-net-{k}", last_day + timedelta(minutes=k)))
    battles(rows, rng)
    rigged = Vote.objects.filter(battle__visitor_hash__startswith="rig-").count()
    honest = honest_votes_counted()

    done = integrity_service.sweep()

    assert done is not None and done.surge_votes == rigged and done.anomalous_votes == 0
    flag = VoterFlag.objects.get(kind=VoterFlag.Kind.SURGE)
    assert flag.voter_hash == f"{target.pk}@{last_day.date().isoformat()}"
    assert flag.target_model == target and flag.targeted_z > 4
    assert set(Vote.objects.filter(excluded="vote_surge").values_list("battle__visitor_hash", flat=True)) == {
        f"rig-{k}" for k in range(360) if Vote.objects.filter(battle__visitor_hash=f"rig-{k}").exists()
    }
    # The established visitors' votes on the target that day still count: they are judged one by one.
    assert honest_votes_counted() == honest
    assert integrity_service.sweep() == integrity_service.Sweep(0, 0, 0, 0)


def test_a_restored_surge_counts_again_and_is_not_flagged_again(arena: tuple[list[LLM], Any]) -> None:
    models, last_day = arena
    rng = np.random.default_rng(13)
    rows = []
    for k in range(360):
        a, b = pair(models, rng)
        rows.append((a, b, models[4] in (a, b), f"rig-{k}", f"rig-net-{k}", last_day + timedelta(minutes=k)))
    battles(rows, rng)
    integrity_service.sweep()
    flag = VoterFlag.objects.get(kind=VoterFlag.Kind.SURGE)
    excluded = Vote.objects.filter(excluded="vote_surge").count()
    assert excluded > 0

    assert flag.restore(User.objects.create(username="operator")) == excluded
    assert not Vote.objects.filter(excluded="vote_surge").exists()
    assert integrity_service.sweep() == integrity_service.Sweep(0, 0, 0, 0)
    assert [a.action for a in flag.actions.order_by("id")] == ["flag", "restore"]


def test_one_script_voting_only_where_its_target_answered_is_flagged_by_its_selectivity(
    arena: tuple[list[LLM], Any], settings: Any
) -> None:
    """Its votes look honest (a coin picks the winner), so only its choice of battles gives it away."""
    settings.LEADERBOARD_BOOTSTRAP = 10
    models, last_day = arena
    target = models[3]
    rng = np.random.default_rng(14)
    rows = []
    for k in range(200):  # spread over the days, so no day surges
        a, b = pair(models, rng)
        started = last_day - timedelta(days=int(k % DAYS), minutes=k)
        rows.append((a, b, target in (a, b), "visitor-rig", "net-rig", started))
    battles(rows, rng)
    rigged = Vote.objects.filter(battle__visitor_hash="visitor-rig").count()

    done = integrity_service.sweep()

    assert done is not None and done.anomalous_votes == rigged
    flags = {f.kind: f for f in VoterFlag.objects.exclude(kind=VoterFlag.Kind.SURGE)}
    assert set(flags) == {"visitor", "network"}
    assert flags["visitor"].voter_hash == "visitor-rig" and flags["visitor"].target_model == target
    assert flags["visitor"].selective_p < 1e-6
    assert not VoterFlag.objects.filter(voter_hash__startswith="visitor-").exclude(voter_hash="visitor-rig")
    snapshot = recompute()
    assert snapshot is not None
    assert snapshot.votes == Vote.objects.filter(excluded="").count()
