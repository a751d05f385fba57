"""A snapshot's vote export reproduces that snapshot, whatever the integrity rules did to the votes
since: each snapshot keeps the exclusions it applied (leaderboard.models.ExcludedVotes)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.contrib.auth.models import User
from django.db import transaction
from django.test import Client

from arena.models import Battle, Vote, VoterFlag
from arena.services import after_vote
from arena.visitors import forget_visitor
from leaderboard import services
from leaderboard.models import ExcludedVotes, Snapshot, pack_ids, unpack_ids
from leaderboard.rating.__main__ import main as rating_cli
from leaderboard.votes import exclusions
from providers.models import LLM

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _quick(settings: Any) -> None:
    settings.LEADERBOARD_BOOTSTRAP = 20
    settings.LEADERBOARD_STYLE_BOOTSTRAP = 10
    settings.LEADERBOARD_MIN_VOTES = 10


@pytest.fixture
def models(make_llm: Callable[..., LLM]) -> list[LLM]:
    return [make_llm(name=f"m{i}") for i in range(4)]


def battles(models: list[LLM], n: int, *, voter: str, upset: bool = False) -> list[Vote]:
    """Model i beats model j (i < j) three times in four (`upset`: j beats i), all by one visitor;
    the answer on side a longer every other vote, for the style board."""
    votes = []
    for k in range(n):
        metadata = {
            "sum_assistant_a_tokens": 400 if k % 2 else 100,
            "sum_assistant_b_tokens": 100,
            **{f"header_count_{side}": {"h1": k % 3} for side in "ab"},
            **{f"list_count_{side}": {"ordered": 0, "unordered": k % 2} for side in "ab"},
            **{f"bold_count_{side}": {"**": 1, "__": 0} for side in "ab"},
        }
        for i in range(len(models)):
            for j in range(i + 1, len(models)):
                winner = ("b" if upset else "a") if k % 4 else "b"
                with transaction.atomic():
                    battle = Battle.objects.create(
                        model_a=models[i], model_b=models[j], state=Battle.State.VOTED, visitor_hash=voter
                    )
                    vote = Vote.objects.create(battle=battle, winner=winner, conv_metadata=metadata)
                    after_vote(vote=vote)
                votes.append(vote)
    return votes


def export(client: Client, snapshot: Snapshot, path: Path) -> tuple[Path, dict[str, str]]:
    """The snapshot's vote export written to `path`, and the headers that describe it."""
    response = client.get(f"/api/v1/leaderboard/snapshots/{snapshot.pk}/votes")
    assert response.status_code == 200
    path.write_bytes(b"".join(response))  # read as a WSGI server would read the streamed body
    headers = {k: v for k, v in response.headers.items() if k.startswith("X-Snapshot")}
    return path, headers


def cli_ratings(path: Path, capsys: pytest.CaptureFixture[str], *, style: bool = False) -> dict[str, float]:
    assert rating_cli([str(path), "--json", "--bootstrap", "0", *(["--style"] if style else [])]) == 0
    result = json.loads(capsys.readouterr().out)
    rows = result["style"]["models"] if style else result["models"]
    return {row["model"]: row["rating"] for row in rows}


def snapshot_ratings(snapshot: Snapshot) -> dict[str, float]:
    return {r.llm.name: r.rating for r in snapshot.ratings.select_related("llm")}


def latest(board: str) -> Snapshot:
    return Snapshot.objects.of_board(board).latest_first().first()


def flag(voter: str) -> VoterFlag:
    """The voter flagged, their votes excluded, as the integrity sweep does it."""
    flagged, _ = VoterFlag.objects.get_or_create(kind=VoterFlag.Kind.VISITOR, voter_hash=voter)
    flagged.votes_of_voter().filter(excluded="").update(excluded=Vote.Exclusion.ANOMALOUS_VOTER)
    return flagged


def test_an_old_snapshots_export_still_reproduces_it_after_a_sweep_and_a_restore(
    models: list[LLM], client: Client, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    honest = battles(models, 24, voter="honest")
    battles(models, 8, voter="rigger", upset=True)
    rigger = flag("rigger")
    services.recompute_all()
    overall, style = latest("overall"), latest("style")
    assert overall.excluded == {"anomalous_voter": 48}  # shown on the board, by reason
    before, headers = export(client, overall, tmp_path / "before.jsonl")
    assert headers == {
        "X-Snapshot-Votes": str(overall.votes),
        "X-Snapshot-Votes-Exported": str(overall.votes),
        "X-Snapshot-Votes-Missing": "0",
    }
    assert cli_ratings(before, capsys) == pytest.approx(snapshot_ratings(overall), abs=0.01)

    # Since then: a sweep excludes a quarter of the honest votes, an operator restores the rigger.
    later = [v.pk for v in honest[::4]]
    Vote.objects.filter(pk__in=later).update(excluded=Vote.Exclusion.DUPLICATE_PROMPT)
    assert rigger.restore(User.objects.create(username="operator")) == 48

    after, headers = export(client, overall, tmp_path / "after.jsonl")
    assert after.read_text() == before.read_text()
    assert headers["X-Snapshot-Votes-Missing"] == "0"
    assert cli_ratings(after, capsys) == pytest.approx(snapshot_ratings(overall), abs=0.01)
    style_file, _ = export(client, style, tmp_path / "style.jsonl")
    assert cli_ratings(style_file, capsys, style=True) == pytest.approx(snapshot_ratings(style), abs=0.01)

    # The next snapshot counts the votes as they stand now, and its export those.
    services.recompute_all()
    now = latest("overall")
    assert now.votes == overall.votes - len(later) + 48 and now.excluded == {"duplicate_prompt": len(later)}
    assert snapshot_ratings(now) != pytest.approx(snapshot_ratings(overall), abs=1)  # the rigger moved it
    current, _ = export(client, now, tmp_path / "now.jsonl")
    assert len(current.read_text().splitlines()) == now.votes
    assert cli_ratings(current, capsys) == pytest.approx(snapshot_ratings(now), abs=0.01)


def test_a_sweep_during_the_count_makes_the_recompute_count_again(
    models: list[LLM], monkeypatch: pytest.MonkeyPatch, client: Client, tmp_path: Path
) -> None:
    votes = battles(models, 8, voter="honest")
    count = services.board_counts
    calls = []

    def swept_meanwhile(*args: Any) -> Any:
        counts = count(*args)
        if not calls:  # the sweep lands after the first count, before its flags are read again
            Vote.objects.filter(pk=votes[0].pk).update(excluded=Vote.Exclusion.DUPLICATE_PROMPT)
        calls.append(1)
        return counts

    monkeypatch.setattr(services, "board_counts", swept_meanwhile)
    services.recompute_all()

    overall = latest("overall")
    assert len(calls) == 2 and overall.votes == len(votes) - 1
    assert overall.excluded_votes.ids().tolist() == [votes[0].pk]
    path, headers = export(client, overall, tmp_path / "votes.jsonl")
    assert len(path.read_text().splitlines()) == overall.votes and headers["X-Snapshot-Votes-Missing"] == "0"


def test_a_visitors_data_deletion_leaves_the_export_whole_and_a_deleted_vote_is_reported_missing(
    models: list[LLM], client: Client, tmp_path: Path
) -> None:
    battles(models, 8, voter="stays")
    leaving = battles(models, 4, voter="leaves")
    services.recompute_all()
    overall = latest("overall")
    before, _ = export(client, overall, tmp_path / "before.jsonl")

    forget_visitor(visitor="leaves")  # a voted battle loses its text and its visitor, keeps its vote
    after, headers = export(client, overall, tmp_path / "after.jsonl")
    assert after.read_text() == before.read_text() and headers["X-Snapshot-Votes-Missing"] == "0"

    Battle.objects.filter(pk__in=[v.battle_id for v in leaving[:3]]).delete()  # as in the admin
    gone, headers = export(client, overall, tmp_path / "gone.jsonl")
    assert headers == {
        "X-Snapshot-Votes": str(overall.votes),
        "X-Snapshot-Votes-Exported": str(overall.votes - 3),
        "X-Snapshot-Votes-Missing": "3",
    }
    assert len(gone.read_text().splitlines()) == overall.votes - 3


def test_a_snapshot_from_before_exclusions_were_recorded_exports_todays_flags_and_says_so(
    models: list[LLM], client: Client, tmp_path: Path
) -> None:
    votes = battles(models, 4, voter="honest")
    services.recompute_all()
    overall = latest("overall")
    Snapshot.objects.filter(pk=overall.pk).update(excluded_votes=None)
    Vote.objects.filter(pk=votes[0].pk).update(excluded=Vote.Exclusion.TOO_FAST)

    path, headers = export(client, overall, tmp_path / "votes.jsonl")
    assert headers == {
        "X-Snapshot-Votes": str(overall.votes),
        "X-Snapshot-Votes-Exported": str(overall.votes - 1),
    }
    assert len(path.read_text().splitlines()) == overall.votes - 1


def test_snapshots_share_one_record_while_the_exclusions_do_not_change(models: list[LLM]) -> None:
    battles(models, 4, voter="honest")
    battles(models, 2, voter="rigger")
    flag("rigger")
    services.recompute_all()
    battles(models, 2, voter="honest")  # new votes, no new exclusions
    services.recompute_all()
    battles(models, 2, voter="rigger")
    flag("rigger")
    services.recompute_all()

    records = list(ExcludedVotes.objects.order_by("pk"))
    assert [r.count for r in records] == [12, 24]
    assert Snapshot.objects.filter(excluded_votes=records[0]).values("board").distinct().count() > 1
    assert Snapshot.objects.filter(excluded_votes=records[0], board="overall").count() == 2
    last = Vote.objects.order_by("-id").first().pk
    assert np.array_equal(records[1].ids(), exclusions(last=last).ids)


def test_the_stored_ids_read_back_exactly_and_3m_votes_with_2_percent_excluded_take_under_100_kb() -> None:
    rng = np.random.default_rng(0)
    ids = np.flatnonzero(rng.random(3_000_000) < 0.02) + 1
    packed = pack_ids(ids)
    print(f"\n{ids.size} excluded ids of 3,000,000 votes stored in {len(packed):,} bytes")
    assert np.array_equal(unpack_ids(packed), ids) and len(packed) < 100_000
    assert unpack_ids(pack_ids(np.array([], dtype=np.int64))).size == 0
    assert np.array_equal(unpack_ids(pack_ids(np.array([7, 2**40]))), [7, 2**40])
    with pytest.raises(ValueError, match="sorted and distinct"):
        pack_ids(np.array([3, 3]))
