"""The live boards weigh votes as LEADERBOARD_WEIGHTS says: by inverse propensity (the default), by
inverse pair frequency, or not at all; each snapshot says which, and its vote export gives the same
board through the rating command line."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.test import Client

from arena.models import Battle, Vote, VoteMetadata
from leaderboard import rating, services, weighting
from leaderboard.models import Snapshot
from leaderboard.rating.__main__ import main as rating_cli
from leaderboard.votes import OUTCOME, CellWeights
from providers.models import LLM
from tests.test_settings import manage

pytestmark = pytest.mark.django_db

STRENGTH = [0.9, 0.3, 0.0, -0.5, -1.0]  # true log-odds strengths of the five models
# A skewed sampler: the pairs of model 0 drawn far more often than the rest.
PAIR_PROBABILITY = {(0, 1): 0.35, (0, 2): 0.2, (0, 3): 0.12, (0, 4): 0.08}
OTHER_PAIR = 0.25 / 6


@pytest.fixture(autouse=True)
def _quick(settings: Any) -> None:
    settings.LEADERBOARD_RECOMPUTE_ON_VOTE = False
    settings.LEADERBOARD_MIN_VOTES = 5
    settings.LEADERBOARD_INTERVALS = "sandwich"


@pytest.fixture
def models(make_llm: Callable[..., LLM]) -> list[LLM]:
    return [make_llm(name=f"w{i}") for i in range(len(STRENGTH))]


def skewed_votes(models: list[LLM], votes: int = 600, *, seed: int = 7) -> None:
    """Votes drawn by the skewed sampler, each battle keeping its pair's probability (jittered, as
    an active sampler's plan moves), one in ten without one (older, or a model replaced); outcomes
    from the true strengths with ties, and a coding tag and style counts that vary."""
    rng = np.random.default_rng(seed)
    pairs = [(i, j) for i in range(len(models)) for j in range(i + 1, len(models))]
    probability = np.array([PAIR_PROBABILITY.get(pair, OTHER_PAIR) for pair in pairs])
    battles, rows = [], []
    for k in range(votes):
        i, j = pairs[rng.choice(len(pairs), p=probability / probability.sum())]
        if rng.random() < 0.5:
            i, j = j, i
        p = float(probability[pairs.index((min(i, j), max(i, j)))] * rng.uniform(0.8, 1.2))
        win = 1 / (1 + np.exp(STRENGTH[j] - STRENGTH[i]))
        u = rng.random()
        winner = "tie" if u < 0.1 else "bothbad" if u < 0.15 else "a" if rng.random() < win else "b"
        battle = Battle(
            id=uuid.uuid4(),
            model_a=models[i],
            model_b=models[j],
            state=Battle.State.VOTED,
            visitor_hash=f"v{k}",
            propensity=None if k % 10 == 3 else p,
        )
        metadata = {
            "sum_assistant_a_tokens": int(rng.integers(50, 800)),
            "sum_assistant_b_tokens": int(rng.integers(50, 800)),
            "header_count_a": {"h1": int(rng.integers(0, 3))},
            "header_count_b": {"h1": int(rng.integers(0, 3))},
            **{f"list_count_{side}": {"ordered": 0, "unordered": int(rng.integers(0, 2))} for side in "ab"},
            **{f"bold_count_{side}": {"**": 1, "__": 0} for side in "ab"},
        }
        vote = Vote(battle=battle, winner=winner, coding=k % 3 == 0, conv_metadata=metadata)
        vote.set_facts()
        battles.append(battle)
        rows.append(vote)
    Battle.objects.bulk_create(battles)
    Vote.objects.bulk_create(rows)
    VoteMetadata.objects.bulk_create(Vote.metadata_rows(rows))


def latest(board: str) -> Snapshot:
    return Snapshot.objects.of_board(board).latest_first().first()


def board_votes(coding: bool = False) -> dict[str, np.ndarray]:
    """The board's votes one by one, as the test reads them itself (not through the services)."""
    votes = Vote.objects.filter(anonymous=True, excluded="").order_by("id")
    if coding:
        votes = votes.filter(coding=True)
    rows = list(votes.values_list("model_a", "model_b", "winner", "battle__propensity"))
    a, b, winner, propensity = zip(*rows, strict=True)
    ids = np.union1d(a, b)
    known = np.array([p is not None for p in propensity])
    w = np.array([1 / p if p is not None else 0.0 for p in propensity])
    w[~known] = w[known].mean()
    return {
        "ids": ids,
        "a": np.searchsorted(ids, a),
        "b": np.searchsorted(ids, b),
        "outcome": np.array([OUTCOME[x] for x in winner], dtype=np.int8),
        "propensity": w,
        "style": services.style_rows(services.current_filters("style")[0]).features,
    }


def figures(snapshot: Snapshot) -> dict[int, tuple[float, float, float]]:
    return {r.llm_id: (r.rating, r.ci_lower, r.ci_upper) for r in snapshot.ratings.all()}


def expected(votes: dict[str, np.ndarray], result: rating.Ratings) -> dict[int, tuple[float, float, float]]:
    return {
        int(pk): (float(result.rating[k]), float(result.ci_lower[k]), float(result.ci_upper[k]))
        for k, pk in enumerate(votes["ids"])
    }


def assert_close(
    got: dict[Any, tuple[float, ...]], want: dict[Any, tuple[float, ...]], tol: float = 1e-6
) -> None:
    assert got.keys() == want.keys()
    for key in want:
        np.testing.assert_allclose(got[key], want[key], rtol=0, atol=tol, err_msg=str(key))


def test_the_propensity_board_is_the_engines_weighted_fit_of_its_votes_one_by_one(
    models: list[LLM], settings: Any
) -> None:
    skewed_votes(models)
    settings.LEADERBOARD_WEIGHTS = "propensity"
    services.recompute_all()

    for board, coding in (("overall", False), ("coding", True)):
        votes = board_votes(coding)
        args = (votes["a"], votes["b"], votes["outcome"], votes["ids"].size)
        weighted = rating.rate(*args, intervals="sandwich", weights=votes["propensity"])
        snapshot = latest(board)
        assert snapshot.weights == "propensity" and snapshot.params["weights"] == "propensity"
        assert_close(figures(snapshot), expected(votes, weighted))
        # The weights matter: the unweighted fit of the same votes is another board.
        plain = rating.rate(*args, intervals="sandwich")
        assert np.abs(plain.rating - weighted.rating).max() > 1.0

    votes = board_votes()
    styled = rating.rate_style(
        votes["a"], votes["b"], votes["outcome"], votes["style"], votes["ids"].size,
        intervals="sandwich", weights=votes["propensity"],
    )  # fmt: skip
    assert_close(figures(latest("style")), expected(votes, styled.ratings))
    known = Battle.objects.filter(propensity__isnull=False).values_list("propensity", flat=True)
    assert latest("overall").params["unknown_propensity_weight"] == pytest.approx(
        np.mean(1 / np.array(known))
    )


def test_without_weights_the_board_is_todays_unweighted_fit_exactly(models: list[LLM], settings: Any) -> None:
    skewed_votes(models)
    settings.LEADERBOARD_WEIGHTS = "none"
    services.recompute_all()

    votes = board_votes()
    plain = rating.rate(votes["a"], votes["b"], votes["outcome"], votes["ids"].size, intervals="sandwich")
    snapshot = latest("overall")
    assert snapshot.weights == "none" and "unknown_propensity_weight" not in snapshot.params
    assert figures(snapshot) == expected(votes, plain)


def test_inverse_pair_frequency_weighs_each_vote_by_its_pairs_battles(
    models: list[LLM], settings: Any
) -> None:
    skewed_votes(models)
    settings.LEADERBOARD_WEIGHTS = "pair-frequency"
    services.recompute_all()

    votes = board_votes()
    n = votes["ids"].size
    weights = rating.pair_frequency_weights(votes["a"], votes["b"], n)
    weighted = rating.rate(votes["a"], votes["b"], votes["outcome"], n, intervals="sandwich", weights=weights)
    assert latest("overall").weights == "pair-frequency"
    assert_close(figures(latest("overall")), expected(votes, weighted))


def export(client: Client, snapshot: Snapshot, path: Path) -> Path:
    response = client.get(f"/api/v1/leaderboard/snapshots/{snapshot.pk}/votes")
    assert response.status_code == 200
    path.write_bytes(b"".join(response))
    return path


def cli(
    path: Path, weights: str, capsys: pytest.CaptureFixture[str], *, style: bool = False
) -> dict[str, Any]:
    argv = [str(path), "--json", "--min-votes", "0", "--weights", weights, *(["--style"] if style else [])]
    assert rating_cli(argv) == 0
    result = json.loads(capsys.readouterr().out)
    rows = result["style"]["models"] if style else result["models"]
    return {row["model"]: (row["rating"], row["ci_lower"], row["ci_upper"]) for row in rows}


def board(snapshot: Snapshot) -> dict[str, tuple[float, float, float]]:
    return {r.llm.name: (r.rating, r.ci_lower, r.ci_upper) for r in snapshot.ratings.select_related("llm")}


@pytest.mark.parametrize("weights", ["propensity", "pair-frequency", "none"])
def test_a_boards_vote_export_gives_its_ratings_through_the_command_line(
    models: list[LLM],
    settings: Any,
    client: Client,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    weights: str,
) -> None:
    skewed_votes(models)
    settings.LEADERBOARD_WEIGHTS = weights
    services.recompute_all()

    for slug in ("overall", "coding"):
        path = export(client, latest(slug), tmp_path / f"{slug}.jsonl")
        assert_close(board(latest(slug)), cli(path, weights, capsys))
    path = export(client, latest("style"), tmp_path / "style.jsonl")
    assert_close(board(latest("style")), cli(path, weights, capsys, style=True))

    lines = [json.loads(line) for line in path.read_text().splitlines()]
    unknown = [line for line in lines if line.get("propensity_imputed")]
    if weights == "propensity":
        # The propensity a vote without one was weighed as: every line carries a probability.
        assert len(unknown) == Battle.objects.filter(propensity__isnull=True).count() > 0
        assert all(0 < line["propensity"] <= 1 for line in lines)
        assert unknown[0]["propensity"] == pytest.approx(
            1 / latest("style").params["unknown_propensity_weight"]
        )
    else:
        assert not unknown and sum(line["propensity"] is None for line in lines) > 0


def test_a_snapshot_says_how_it_weighed_votes_in_the_api_and_on_the_page(
    models: list[LLM], settings: Any, client: Client
) -> None:
    skewed_votes(models, 60)
    settings.LEADERBOARD_WEIGHTS = "propensity"
    services.recompute_all()

    body = client.get("/api/v1/leaderboard/?board=overall").json()
    assert body["snapshot"]["weights"] == "propensity"
    page = client.get("/leaderboard/?board=overall").content.decode()
    assert "inverse of the probability with which its pair was drawn" in page


def test_changing_the_weighting_republishes_every_board_and_keeping_it_does_not(
    models: list[LLM], settings: Any
) -> None:
    skewed_votes(models, 120)
    settings.LEADERBOARD_WEIGHTS = "none"
    first = {s.board for s in services.recompute_all()}
    assert services.recompute_all() == []
    settings.LEADERBOARD_WEIGHTS = "propensity"
    again = services.recompute_all()
    assert {s.board for s in again} == first
    assert all(s.weights == "propensity" for s in again)
    assert services.recompute_all() == []


def test_a_propensity_that_is_no_probability_weighs_as_an_unknown_one(
    models: list[LLM], settings: Any
) -> None:
    skewed_votes(models, 100)
    Battle.objects.filter(propensity__isnull=True).update(propensity=0.0)  # PostgreSQL: no division by 0
    settings.LEADERBOARD_WEIGHTS = "propensity"
    (snapshot,) = [s for s in services.recompute_all() if s.board == "overall"]
    first = figures(snapshot)
    Battle.objects.filter(propensity=0.0).update(propensity=None)
    Snapshot.objects.all().delete()
    (again,) = [s for s in services.recompute_all() if s.board == "overall"]
    assert_close(first, figures(again), tol=1e-9)


@pytest.mark.parametrize("seed", range(5))
def test_two_rows_carry_a_cells_votes_their_weights_and_their_squares(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = np.array([1, 2, 3, 7, 50, 1000, 4])
    cells = [1 / rng.uniform(0.001, 1, size=k) for k in n]
    cells[-1] = np.full(4, 2.5)  # equal weights
    cells[3][0] = 1e6  # one weight far above the rest
    known = np.array([k - (k > 2) for k in n])  # one vote of most cells without a propensity ...
    known[-1] = n[-1]  # ... but of the cell with equal weights
    weights = CellWeights(
        np.array([c[:m].sum() for c, m in zip(cells, known, strict=True)]),
        np.array([(c[:m] ** 2).sum() for c, m in zip(cells, known, strict=True)]),
        known,
    )
    unknown = weighting.unknown_weight(weights)
    assert unknown == pytest.approx(np.concatenate([c[:m] for c, m in zip(cells, known, strict=True)]).mean())
    index, count, weight = weighting.split_cells(n, weights, unknown)

    assert (count > 0).all() and (weight > 0).all()
    np.testing.assert_array_equal(np.bincount(index, weights=count, minlength=n.size), n)
    filled = [np.where(np.arange(k) < m, c, unknown) for c, m, k in zip(cells, known, n, strict=True)]
    np.testing.assert_allclose(
        np.bincount(index, weights=count * weight), [f.sum() for f in filled], rtol=1e-12
    )
    np.testing.assert_allclose(
        np.bincount(index, weights=count * weight**2), [(f**2).sum() for f in filled], rtol=1e-9
    )
    assert np.unique(weight[index == n.size - 1]).size == 1  # equal weights stay equal


def test_no_known_propensity_weighs_every_vote_one() -> None:
    weights = CellWeights(np.zeros(2), np.zeros(2), np.zeros(2, dtype=np.int64))
    assert weighting.unknown_weight(weights) == 1.0
    index, count, weight = weighting.split_cells(np.array([3, 1]), weights, 1.0)
    assert (weight == 1.0).all() and index.tolist() == [0, 0, 1] and count.tolist() == [2, 1, 1]


def test_an_unknown_weighting_is_refused_at_startup() -> None:
    result = manage("check", LEADERBOARD_WEIGHTS="uniform")
    assert result.returncode != 0
    assert "LEADERBOARD_WEIGHTS must be" in result.stderr and "'uniform'" in result.stderr
