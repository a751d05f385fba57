"""Selective voting, pure: a voter, or a crowd on one day, voting on one model's battles and walking
away from the rest (leaderboard.integrity.score_windows and score_selective)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit

from leaderboard import integrity

MODELS = 30
DAYS = 20


def honest_battles(
    rng: np.random.Generator, n: int, *, pull: np.ndarray, days: int = DAYS, day_sd: float = 0.1
) -> tuple[np.ndarray, ...]:
    """Battles with a day, two models and whether they got a vote: by the models' lasting pull, a
    little day-to-day drift, and nothing else (nobody knows the models before voting)."""
    day = np.sort(rng.integers(0, days, n))
    a = rng.integers(0, MODELS, n)
    b = (a + rng.integers(1, MODELS, n)) % MODELS
    drift = rng.normal(0.0, day_sd, (days, MODELS))
    voted = rng.random(n) < expit(0.4 + pull[a] + pull[b] + drift[day, a] + drift[day, b])
    return day, a, b, voted


def selective_battles(rng: np.random.Generator, n: int, target: int, day: int) -> tuple[np.ndarray, ...]:
    """A script's battles on one day: it votes where the target answered and nowhere else."""
    a = rng.integers(0, MODELS, n)
    b = (a + rng.integers(1, MODELS, n)) % MODELS
    return np.full(n, day), a, b, (a == target) | (b == target)


def joined(*parts: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
    return tuple(np.concatenate(columns) for columns in zip(*parts, strict=True))


@pytest.mark.parametrize("seed", range(5))
def test_it_flags_no_honest_day_even_with_models_voted_on_unequally(seed: int) -> None:
    rng = np.random.default_rng(seed)
    pull = rng.normal(0.0, 0.4, MODELS)  # some models error or refuse, and are voted on less
    day, a, b, voted = honest_battles(rng, 60_000, pull=pull)
    scores = integrity.score_windows(day, a, b, voted, DAYS, MODELS)
    assert not scores.flagged.any()
    # The pull is learnt: a model voted on less everywhere is expected to be, every day.
    assert np.corrcoef(np.log(scores.pull), pull)[0, 1] > 0.9


def test_it_flags_the_target_and_only_the_target_on_the_day_a_script_voted_selectively() -> None:
    rng = np.random.default_rng(1)
    pull = rng.normal(0.0, 0.3, MODELS)
    day, a, b, voted = joined(
        honest_battles(rng, 60_000, pull=pull), selective_battles(rng, 1500, target=7, day=DAYS - 1)
    )
    scores = integrity.score_windows(day, a, b, voted, DAYS, MODELS)
    assert [tuple(cell) for cell in np.argwhere(scores.flagged)] == [(DAYS - 1, 7)]
    assert scores.z[DAYS - 1, 7] > 5


def test_a_day_with_a_model_voted_on_less_is_not_flagged() -> None:
    """An outage: the model's battles fail and go unvoted that day. The test is one-sided."""
    rng = np.random.default_rng(2)
    day, a, b, voted = honest_battles(rng, 60_000, pull=np.zeros(MODELS))
    outage = (day == 3) & ((a == 5) | (b == 5))
    voted = voted & ~outage
    scores = integrity.score_windows(day, a, b, voted, DAYS, MODELS)
    assert not scores.flagged.any()
    assert scores.z[3, 5] < -5


def test_too_few_battles_are_never_flagged() -> None:
    rng = np.random.default_rng(3)
    day, a, b, voted = joined(
        honest_battles(rng, 60_000, pull=np.zeros(MODELS)), selective_battles(rng, 1500, target=7, day=0)
    )
    scores = integrity.score_windows(day, a, b, voted, DAYS, MODELS, min_battles=100_000)
    assert not scores.flagged.any()


@pytest.mark.parametrize("seed", range(5))
def test_it_flags_no_honest_voter_however_many_battles(seed: int) -> None:
    rng = np.random.default_rng(seed)
    pull = rng.normal(0.0, 0.4, MODELS)
    day, a, b, voted = honest_battles(rng, 60_000, pull=pull)
    # Voters from one battle to thousands (a heavy voter; a big shared network).
    voter = np.minimum(rng.zipf(1.6, day.size), 2000) - 1
    windows = integrity.score_windows(day, a, b, voted, DAYS, MODELS)
    scores = integrity.score_selective(voter, a, b, voted, 2000, windows.pull)
    assert scores.flagged.sum() <= 0.01 * np.isfinite(scores.p).sum()
    assert np.isfinite(scores.p).sum() > 50


def test_it_flags_a_voter_who_votes_only_where_the_target_answered() -> None:
    rng = np.random.default_rng(4)
    pull = rng.normal(0.0, 0.3, MODELS)
    honest = honest_battles(rng, 30_000, pull=pull)
    voter = rng.integers(0, 500, honest[0].size)
    script = selective_battles(rng, 150, target=11, day=DAYS - 1)  # about ten votes
    day, a, b, voted = joined(honest, script)
    who = np.concatenate([voter, np.full(150, 500)])
    windows = integrity.score_windows(day, a, b, voted, DAYS, MODELS)
    scores = integrity.score_selective(who, a, b, voted, 501, windows.pull)
    assert scores.flagged[500] and scores.model[500] == 11
    assert scores.flagged[:500].sum() <= 5


def test_a_voter_who_votes_on_every_battle_or_none_is_not_scored() -> None:
    rng = np.random.default_rng(5)
    day, a, b, _ = honest_battles(rng, 1000, pull=np.zeros(MODELS))
    voter = np.arange(day.size) % 2
    voted = voter == 0
    scores = integrity.score_selective(voter, a, b, voted, 2, np.ones(MODELS))
    assert np.isnan(scores.p).all() and not scores.flagged.any()


def test_it_rejects_malformed_battles() -> None:
    with pytest.raises(ValueError, match="same length"):
        integrity.score_windows(np.zeros(3), np.zeros(2), np.zeros(3), np.zeros(3), 1, 2)
    with pytest.raises(ValueError, match="window indices"):
        integrity.score_windows(np.array([5]), np.array([0]), np.array([1]), np.array([True]), 1, 2)
    with pytest.raises(ValueError, match="model indices"):
        integrity.score_selective(
            np.array([0]), np.array([0]), np.array([9]), np.array([True]), 1, np.ones(2)
        )
