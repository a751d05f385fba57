"""The anomalous-voter detector: pure numpy, no database, no Django."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit

from leaderboard import integrity, rating
from leaderboard.rating import A_WINS, B_WINS, BOTH_BAD, TIE

MODELS = 40


def honest_votes(
    rng: np.random.Generator, theta: np.ndarray, voters: int, taste_sd: float = 0.3
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Voters with 10 to 200 votes each, every one with a personal taste for each model.

    A quarter of the votes are ties or both-bad, drawn so that counting them as half a win keeps the
    expected score: the rating engine's model.
    """
    per_voter = rng.integers(10, 200, voters)
    voter = rng.permutation(np.repeat(np.arange(voters), per_voter))
    n = voter.size
    a = rng.integers(0, MODELS, n)
    b = (a + rng.integers(1, MODELS, n)) % MODELS
    taste = rng.normal(0.0, taste_sd, (voters, MODELS))
    p = expit(theta[a] + taste[voter, a] - theta[b] - taste[voter, b])
    tie = 0.5 * np.minimum(p, 1 - p)
    u = rng.random(n)
    half = np.where(rng.random(n) < 0.5, TIE, BOTH_BAD)
    outcome = np.where(u < p - tie / 2, A_WINS, np.where(u < 1 - tie, B_WINS, half))
    return voter, a, b, outcome


def with_voter(
    honest: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    voter: int,
    a: np.ndarray,
    b: np.ndarray,
    outcome: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    v, ha, hb, ho = honest
    return (
        np.concatenate([v, np.full(a.size, voter)]),
        np.concatenate([ha, a]),
        np.concatenate([hb, b]),
        np.concatenate([ho, outcome]),
    )


def board(a: np.ndarray, b: np.ndarray, outcome: np.ndarray) -> np.ndarray:
    return rating.fit(rating.aggregate(a, b, outcome, MODELS), MODELS)


def rigger(
    rng: np.random.Generator, theta: np.ndarray, target: int, against: np.ndarray, votes: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A voter who votes for `target` whenever it is in the battle and against `against` otherwise."""
    a, b, outcome = [], [], []
    while len(a) < votes:
        x, y = rng.choice(MODELS, 2, replace=False)
        if target in (x, y):
            a.append(x), b.append(y), outcome.append(A_WINS if x == target else B_WINS)
        elif (x in against) != (y in against):
            a.append(x), b.append(y), outcome.append(B_WINS if x in against else A_WINS)
    return np.array(a), np.array(b), np.array(outcome)


@pytest.fixture
def theta() -> np.ndarray:
    return np.sort(np.random.default_rng(7).normal(0.0, 0.7, MODELS))[::-1].copy()


@pytest.mark.parametrize("seed", range(5))
def test_it_flags_at_most_two_percent_of_honest_voters(theta: np.ndarray, seed: int) -> None:
    rng = np.random.default_rng(seed)
    voter, a, b, outcome = honest_votes(rng, theta, 2000)
    scores = integrity.score_voters(voter, a, b, outcome, board(a, b, outcome), 2000, rng=rng)
    assert scores.scored.all()
    assert scores.flagged.mean() <= 0.02


def test_honest_p_values_are_uniform_under_the_board(theta: np.ndarray) -> None:
    rng = np.random.default_rng(3)
    voter, a, b, outcome = honest_votes(rng, theta, 3000, taste_sd=0.0)
    scores = integrity.score_voters(voter, a, b, outcome, theta, 3000, rng=rng, checkpoints=1)
    # One checkpoint: the surprise p is exactly uniform, so about a tenth fall below 0.1.
    assert 0.08 < (scores.surprise_p < 0.1).mean() < 0.12
    assert 0.08 < (scores.surprise_p > 0.9).mean() < 0.12


@pytest.mark.parametrize("seed", range(3))
def test_it_flags_a_voter_who_always_votes_for_one_mid_table_model(theta: np.ndarray, seed: int) -> None:
    rng = np.random.default_rng(seed)
    honest = honest_votes(rng, theta, 500)
    target = MODELS // 2
    voter, a, b, outcome = with_voter(honest, 500, *rigger(rng, theta, target, np.array([]), 160))
    scores = integrity.score_voters(voter, a, b, outcome, board(a, b, outcome), 501, rng=rng)
    assert scores.flagged[500]
    assert scores.target_model[500] == target
    assert scores.targeted_z[500] > 0


@pytest.mark.parametrize("seed", range(3))
def test_it_flags_an_omnipresent_voter(theta: np.ndarray, seed: int) -> None:
    rng = np.random.default_rng(seed)
    honest = honest_votes(rng, theta, 500)
    target = MODELS // 2
    above = np.arange(target - 3, target)  # theta is sorted strongest first
    voter, a, b, outcome = with_voter(honest, 500, *rigger(rng, theta, target, above, 200))
    scores = integrity.score_voters(voter, a, b, outcome, board(a, b, outcome), 501, rng=rng)
    assert scores.flagged[500]
    assert scores.target_model[500] in [*above, target]


def test_it_does_not_score_voters_with_fewer_than_min_votes(theta: np.ndarray) -> None:
    rng = np.random.default_rng(1)
    honest = honest_votes(rng, theta, 200)
    voter, a, b, outcome = with_voter(honest, 200, *rigger(rng, theta, MODELS // 2, np.array([]), 9))
    scores = integrity.score_voters(voter, a, b, outcome, theta, 202, rng=rng, min_votes=10)
    assert scores.votes[200] == 9
    assert not scores.scored[200] and not scores.flagged[200]
    assert np.isnan(scores.surprise_p[200]) and np.isnan(scores.targeted_p[200])
    assert scores.target_model[200] == -1
    assert scores.votes[201] == 0 and not scores.scored[201]


def test_it_is_deterministic_with_a_seed(theta: np.ndarray) -> None:
    voter, a, b, outcome = honest_votes(np.random.default_rng(0), theta, 300)

    def run(seed: int) -> integrity.VoterScores:
        return integrity.score_voters(voter, a, b, outcome, theta, 300, rng=np.random.default_rng(seed))

    first, again, other = run(5), run(5), run(6)
    for field in ("surprise_p", "targeted_z", "targeted_p", "flagged"):
        np.testing.assert_array_equal(getattr(first, field), getattr(again, field))
    assert not np.array_equal(first.surprise_p, other.surprise_p)


def test_it_rejects_malformed_votes(theta: np.ndarray) -> None:
    rng = np.random.default_rng(0)
    one = np.array([0])
    with pytest.raises(ValueError, match="same length"):
        integrity.score_voters(one, one, np.array([1, 2]), one, theta, 1, rng=rng)
    with pytest.raises(ValueError, match="voter indices"):
        integrity.score_voters(np.array([3]), one, one + 1, one, theta, 2, rng=rng)
    with pytest.raises(ValueError, match="model indices"):
        integrity.score_voters(one, one, np.array([MODELS]), one, theta, 1, rng=rng)
    with pytest.raises(ValueError, match="outcome"):
        integrity.score_voters(one, one, one + 1, np.array([7]), theta, 1, rng=rng)
