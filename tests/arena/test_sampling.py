"""The pair sampler: every battle keeps the probability its pair was drawn with, and draws follow it."""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from scipy.stats import chisquare

from arena import sampling, services
from arena.models import Battle, SamplingPlan, Vote
from leaderboard import dumps
from leaderboard import services as board_services
from leaderboard.models import Rating
from providers.models import LLM
from serving import load
from tests.factories import voted_battle
from tests.test_settings import manage

pytestmark = pytest.mark.django_db


def draw_many(n: int, seed: int) -> tuple[Counter[frozenset[int]], dict[frozenset[int], float], set[str]]:
    """How often each unordered pair came up in n draws, the propensity each pair was given, and the
    samplers that drew them."""
    rng = random.Random(seed)
    seen: Counter[frozenset[int]] = Counter()
    given: dict[frozenset[int], float] = {}
    samplers = set()
    for _ in range(n):
        drawn = services.draw(rng)
        pair = frozenset((drawn.model_a.pk, drawn.model_b.pk))
        seen[pair] += 1
        assert given.setdefault(pair, drawn.propensity) == drawn.propensity
        samplers.add(drawn.sampler)
    return seen, given, samplers


def weights_formula(weights: dict[int, float], i: int, j: int) -> float:
    total = sum(weights.values())
    wi, wj = weights[i], weights[j]
    return wi / total * wj / (total - wi) + wj / total * wi / (total - wj)


def plan_over(models: list[LLM], gains: list[float], votes: list[int] | None = None) -> SamplingPlan:
    plan = SamplingPlan.of([m.pk for m in models], votes or [1000] * len(models), np.array(gains))
    plan.save()
    return plan


def assert_follows(seen: Counter[frozenset[int]], given: dict[frozenset[int], float]) -> None:
    """The pairs came up as often as their propensities say (chi-square, at the 0.1% level)."""
    n = sum(seen.values())
    pairs = sorted(given, key=sorted)
    assert sum(given.values()) == pytest.approx(1.0)
    observed = [seen[p] for p in pairs]
    expected = [given[p] * n for p in pairs]
    assert chisquare(observed, expected).pvalue > 0.001


def test_the_weights_sampler_draws_each_pair_as_often_as_its_propensity_says(
    make_llm: Callable[..., LLM], settings: Any
) -> None:
    settings.ARENA_SAMPLER = "weights"
    models = [make_llm(weight=w) for w in (4, 2, 1, 1)]
    weights = {m.pk: m.weight for m in models}
    seen, given, samplers = draw_many(3000, seed=11)
    assert samplers == {"weights"}
    assert len(given) == 6  # every pair came up
    for pair, p in given.items():
        assert p == pytest.approx(weights_formula(weights, *pair), rel=1e-12)
    assert_follows(seen, given)


def test_the_active_sampler_draws_each_pair_as_often_as_its_propensity_says(
    make_llm: Callable[..., LLM], settings: Any
) -> None:
    settings.ARENA_SAMPLER_FLOOR, settings.ARENA_SAMPLER_BOOST = 0.2, 0.2
    models = [make_llm(weight=w) for w in (2, 1, 1, 1)]
    plan_over(models, [0.5, 0.1, 0.02, 0.3, 0.01, 0.05])
    seen, given, samplers = draw_many(3000, seed=5)
    assert samplers == {"active"}
    # The pair (0, 1) has the largest gain and model 0 twice the weight: drawn most.
    assert max(given, key=given.__getitem__) == frozenset((models[0].pk, models[1].pk))
    assert_follows(seen, given)


def test_without_a_plan_the_active_sampler_draws_by_weight_and_says_so(make_llm: Callable[..., LLM]) -> None:
    models = [make_llm(weight=w) for w in (3, 1, 1)]
    weights = {m.pk: m.weight for m in models}
    drawn = services.draw(random.Random(2))
    assert drawn.sampler == "weights"
    assert drawn.propensity == pytest.approx(weights_formula(weights, drawn.model_a.pk, drawn.model_b.pk))


def test_the_weights_setting_ignores_a_plan(make_llm: Callable[..., LLM], settings: Any) -> None:
    models = [make_llm() for _ in range(3)]
    plan_over(models, [1.0, 0.0, 0.0])
    settings.ARENA_SAMPLER = "weights"
    drawn = services.draw(random.Random(2))
    assert drawn.sampler == "weights" and drawn.propensity == pytest.approx(1 / 3)


@pytest.mark.parametrize("sampler", ["weights", "active"])
def test_models_saturated_or_in_outage_are_left_out_and_the_rest_renormalised(
    make_llm: Callable[..., LLM], settings: Any, sampler: str
) -> None:
    settings.ARENA_SAMPLER = sampler
    models = [make_llm(weight=w) for w in (1, 2, 3, 1, 1)]
    plan_over(models, [0.1 * (k + 1) for k in range(10)])
    load.mark(models[3].pk, True, timeout=60)
    LLM.objects.filter(pk=models[4].pk).update(state=LLM.State.OUTAGE)
    seen, given, _ = draw_many(2000, seed=3)
    left = {m.pk for m in models[:3]}
    assert set().union(*given) == left
    assert len(given) == 3 and sum(given.values()) == pytest.approx(1.0)
    if sampler == "weights":
        weights = {m.pk: m.weight for m in models[:3]}
        for pair, p in given.items():
            assert p == pytest.approx(weights_formula(weights, *pair))
    assert_follows(seen, given)


def test_every_eligible_pair_keeps_the_floor_however_the_plan_leans(
    make_llm: Callable[..., LLM], settings: Any
) -> None:
    settings.ARENA_SAMPLER_FLOOR, settings.ARENA_SAMPLER_BOOST = 0.1, 0.0
    models = [make_llm(weight=w) for w in (1, 5, 1, 1, 1)]
    plan_over(models, [1.0] + [0.0] * 9)  # every gain on one pair
    _, given, _ = draw_many(1500, seed=9)
    assert len(given) == 10
    assert min(given.values()) == pytest.approx(0.1 / 10)
    assert given[frozenset((models[0].pk, models[1].pk))] == pytest.approx(0.9 + 0.1 / 10)
    # And so whatever the gains and weights: the pure function on random ones.
    rng = np.random.default_rng(0)
    for _ in range(50):
        k = int(rng.integers(2, 12))
        gains = rng.exponential(size=k * (k - 1) // 2) ** 4
        p = sampling.active_pairs(rng.uniform(0.01, 5, k), gains, rng.random(k) < 0.3, floor=0.15, boost=0.25)
        assert p.sum() == pytest.approx(1.0)
        assert p.min() >= 0.15 / p.size * (1 - 1e-12)


def test_a_model_the_plan_does_not_know_is_boosted_as_new(
    make_llm: Callable[..., LLM], settings: Any
) -> None:
    settings.ARENA_SAMPLER_FLOOR, settings.ARENA_SAMPLER_BOOST = 0.2, 0.3
    known = [make_llm() for _ in range(3)]
    plan_over(known, [1.0, 1.0, 1.0], votes=[5000, 5000, 5000])
    newcomer = make_llm()
    _, given, _ = draw_many(2000, seed=4)
    with_newcomer = sum(p for pair, p in given.items() if newcomer.pk in pair)
    # Its three pairs: the boost, their floor, and their share of the rest as average pairs.
    assert with_newcomer == pytest.approx(0.3 + 0.2 * 3 / 6 + 0.5 * 3 / 6)


def test_a_model_with_few_votes_on_the_board_is_boosted(make_llm: Callable[..., LLM], settings: Any) -> None:
    settings.ARENA_SAMPLER_FLOOR, settings.ARENA_SAMPLER_BOOST = 0.2, 0.3
    settings.ARENA_SAMPLER_NEW_MODEL_VOTES = 300
    models = [make_llm() for _ in range(3)]
    plan_over(models, [1.0, 1.0, 1.0], votes=[5000, 5000, 299])
    _, given, _ = draw_many(1000, seed=4)
    old_pair = frozenset((models[0].pk, models[1].pk))
    assert given[old_pair] == pytest.approx(0.2 / 3 + 0.5 / 3)
    assert 1 - given[old_pair] == pytest.approx(0.3 + 2 * (0.2 / 3 + 0.5 / 3))


def test_a_draw_reads_the_models_and_the_plan_but_never_the_votes(
    make_llm: Callable[..., LLM], settings: Any
) -> None:
    settings.LEADERBOARD_BOOTSTRAP = 20
    models = [make_llm() for _ in range(4)]
    for k in range(40):
        voted_battle(models[k % 4], models[(k + 1) % 4], "a" if k % 3 else "b")
    board_services.recompute()
    assert SamplingPlan.objects.count() == 1
    with CaptureQueriesContext(connection) as queries:
        drawn = services.draw(random.Random(1))
    assert drawn.sampler == "active"
    assert len(queries) <= 2
    assert not any(Vote._meta.db_table in q["sql"] or "arena_battle" in q["sql"] for q in queries)


def test_each_snapshot_writes_a_plan_of_its_board_and_keeps_only_the_latest(
    make_llm: Callable[..., LLM], settings: Any
) -> None:
    settings.LEADERBOARD_BOOTSTRAP = 50
    strong, middle, weak, idle = (make_llm() for _ in range(4))
    retired = make_llm(state=LLM.State.RETIRED)
    for k in range(30):
        voted_battle(strong, weak, "a" if k % 3 else "b")
        voted_battle(middle, weak, "a" if k % 3 else "b")
    for _ in range(3):
        voted_battle(strong, retired, "b")  # a few votes: the widest interval, but not drawable
        voted_battle(strong, middle, "tie")
    board_services.recompute()
    first = SamplingPlan.objects.get()
    assert set(first.llm_ids) == {strong.pk, middle.pk, weak.pk, retired.pk}
    votes = dict(zip(first.llm_ids, first.votes, strict=True))
    assert votes == {strong.pk: 36, middle.pk: 33, weak.pk: 60, retired.pk: 3}
    gains, _ = first.restricted([strong.pk, middle.pk, weak.pk, idle.pk])
    # Pairs with the idle model, absent from the board, have no gain.
    assert np.isnan(gains[[2, 4, 5]]).all() and not np.isnan(gains[[0, 1, 3]]).any()
    # The gains are the board's: its ratings and interval widths, the retired model out of focus.
    rows = {r.llm_id: r for r in Rating.objects.filter(snapshot__board="overall")}
    ratings = np.array([rows[pk].rating for pk in first.llm_ids])
    widths = np.array([rows[pk].ci_upper - rows[pk].ci_lower for pk in first.llm_ids])
    focus = np.array([pk != retired.pk for pk in first.llm_ids])
    stored = np.frombuffer(bytes(first.gains), dtype="<f8")
    kept = sampling.plan_gains(ratings, widths, focus, votes=66, floor=settings.ARENA_SAMPLER_FLOOR)
    np.testing.assert_allclose(stored, kept, rtol=1e-9)
    everyone = sampling.plan_gains(
        ratings, widths, focus | True, votes=66, floor=settings.ARENA_SAMPLER_FLOOR
    )
    assert np.abs(everyone / everyone.sum() - stored / stored.sum()).max() > 0.01

    voted_battle(middle, weak, "b")
    board_services.recompute()
    assert SamplingPlan.objects.get().pk != first.pk


def shares(ratings: np.ndarray) -> np.ndarray:
    """c_pk: pair p's part in model k's variance under inverse-propensity weights, by brute force."""
    k = ratings.size
    logits = ratings * sampling.LOGITS_PER_POINT
    curvature, directions = [], []
    for a, b in zip(*sampling.pairs(k), strict=True):
        p = 1 / (1 + np.exp(-(logits[a] - logits[b])))
        u = np.zeros(k)
        u[a], u[b] = 1.0, -1.0
        curvature.append(p * (1 - p))
        directions.append(u)
    inverse = np.linalg.pinv(sum(q * np.outer(u, u) for q, u in zip(curvature, directions, strict=True)))
    return np.array([q * (inverse @ u) ** 2 for q, u in zip(curvature, directions, strict=True)])


def test_the_gains_draw_the_pairs_that_make_the_widest_interval_narrowest() -> None:
    rng = np.random.default_rng(3)
    k = 6
    ratings = rng.normal(1000, 200, k)
    # A fresh board: no interval yet, so only the votes to come count.
    gains = sampling.plan_gains(ratings, np.full(k, np.nan), np.ones(k, dtype=bool), votes=0)
    c = shares(ratings)
    worst = (c / (gains / gains.sum())[:, None]).sum(axis=0).max()
    uniform = (c * c.shape[0]).sum(axis=0).max()
    assert worst < 0.95 * uniform
    # No pair distribution does better than about the gains' (a minimax): none of many random ones,
    # nor any small step away from them.
    for _ in range(2000):
        other = rng.dirichlet(np.full(c.shape[0], 0.5))
        assert (c / other[:, None]).sum(axis=0).max() >= worst * (1 - 1e-3)
    for p in range(c.shape[0]):
        for step in (0.02, -0.02):
            moved = gains / gains.sum() + step * (np.arange(c.shape[0]) == p)
            if moved.min() > 0:
                moved /= moved.sum()
                assert (c / moved[:, None]).sum(axis=0).max() >= worst * (1 - 1e-3)


def test_a_model_left_wide_by_the_votes_so_far_is_caught_up() -> None:
    k = 5
    ratings = np.array([1100.0, 1050.0, 1000.0, 950.0, 900.0])
    i, j = sampling.pairs(k)
    even = sampling.plan_gains(ratings, np.full(k, 20.0), np.ones(k, dtype=bool), votes=5000, floor=0.1)
    wide = np.array([20.0, 20.0, 40.0, 20.0, 20.0])  # model 2's interval twice the others'
    caught = sampling.plan_gains(ratings, wide, np.ones(k, dtype=bool), votes=5000, floor=0.1)
    touching = (i == 2) | (j == 2)
    assert caught[touching].sum() / caught.sum() > 1.5 * even[touching].sum() / even.sum()
    assert set(np.argsort(-caught)[:4]) == set(np.flatnonzero(touching))


def test_models_out_of_focus_weigh_nothing_in_the_gains() -> None:
    k = 5
    ratings = np.linspace(900.0, 1100.0, k)
    i, _ = sampling.pairs(k)
    only = np.zeros(k, dtype=bool)
    only[0] = True
    gains = sampling.plan_gains(ratings, np.full(k, 30.0), only, votes=1000)
    # Every vote spent on model 0's variance: its pairs first, and a board without any focus counts
    # every model alike, as one that focuses on all of them.
    assert set(np.argsort(-gains)[:4]) == set(np.flatnonzero(i == 0))
    alike = sampling.plan_gains(ratings, np.full(k, 30.0), np.zeros(k, dtype=bool), votes=1000)
    every = sampling.plan_gains(ratings, np.full(k, 30.0), np.ones(k, dtype=bool), votes=1000)
    np.testing.assert_allclose(alike, every)
    assert sampling.plan_gains(ratings[:1], np.ones(1), np.ones(1, dtype=bool), votes=10).size == 0


def test_an_anonymous_battle_keeps_its_propensity_and_a_named_one_none(
    make_llm: Callable[..., LLM], settings: Any
) -> None:
    settings.ARENA_SAMPLER = "weights"
    a, b, c = make_llm(weight=2), make_llm(), make_llm()
    battle = services.battle_start(visitor="v", prompt="Hi")
    weights = {m.pk: m.weight for m in (a, b, c)}
    assert battle.propensity == pytest.approx(weights_formula(weights, battle.model_a_id, battle.model_b_id))
    battle.refresh_from_db()
    assert battle.propensity is not None
    named = services.battle_start(visitor="v", prompt="Hi", mode="named", model_a=a.name, model_b=b.name)
    named.refresh_from_db()
    assert named.propensity is None


def test_the_vote_export_carries_the_propensity(make_llm: Callable[..., LLM]) -> None:
    a, b = make_llm(), make_llm()
    vote = voted_battle(a, b, "a")
    Battle.objects.filter(pk=vote.battle_id).update(propensity=0.25)
    older = voted_battle(b, a, "b")
    records = [json.loads(line) for line in dumps.export_lines(Vote.objects.all())]
    by_id = {r["question_id"]: r for r in records}
    assert by_id[str(vote.battle_id)]["propensity"] == 0.25
    assert by_id[str(older.battle_id)]["propensity"] is None


def test_an_unknown_sampler_or_a_floor_out_of_range_stops_the_start() -> None:
    result = manage("check", ARENA_SAMPLER="thompson")
    assert result.returncode != 0 and "ARENA_SAMPLER" in result.stderr
    result = manage("check", ARENA_SAMPLER_FLOOR="0")
    assert result.returncode != 0 and "ARENA_SAMPLER_FLOOR" in result.stderr
    result = manage("check", ARENA_SAMPLER_FLOOR="0.5", ARENA_SAMPLER_BOOST="0.6")
    assert result.returncode != 0 and "ARENA_SAMPLER_BOOST" in result.stderr


def test_a_pair_the_plan_does_not_know_counts_as_an_average_one() -> None:
    p = sampling.active_pairs(
        np.ones(3), np.array([0.2, 0.4, np.nan]), np.zeros(3, dtype=bool), floor=0.1, boost=0.3
    )
    # No new model: the boost goes to the rest, where the unknown pair has the mean gain, 0.3.
    assert p == pytest.approx(0.1 / 3 + 0.9 * np.array([0.2, 0.4, 0.3]) / 0.9)
