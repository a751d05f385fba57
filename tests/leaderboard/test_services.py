from __future__ import annotations

from collections.abc import Callable

import pytest

from arena.models import Battle, Vote
from leaderboard import locks, services, tasks
from leaderboard.models import Snapshot
from providers.models import LLM
from tests.factories import voted_battle

pytestmark = pytest.mark.django_db


@pytest.fixture
def trio(make_llm: Callable[..., LLM]) -> tuple[LLM, LLM, LLM]:
    return make_llm(name="strong"), make_llm(name="middle"), make_llm(name="weak")


def vote_many(trio: tuple[LLM, LLM, LLM]) -> None:
    strong, middle, weak = trio
    for _ in range(30):
        voted_battle(strong, middle, "a")
        voted_battle(middle, weak, "a")
        voted_battle(weak, strong, "b")
    for _ in range(10):
        voted_battle(middle, strong, "a")
        voted_battle(strong, weak, "tie")


def test_it_publishes_a_snapshot_ranking_the_models_by_their_votes(
    trio: tuple[LLM, LLM, LLM], settings
) -> None:
    settings.LEADERBOARD_BOOTSTRAP = 200
    vote_many(trio)
    snapshot = services.recompute()

    assert snapshot is not None and snapshot.votes == 110
    ratings = list(snapshot.ratings.select_related("llm").order_by("-rating"))
    assert [r.llm.name for r in ratings] == ["strong", "middle", "weak"]
    assert all(r.ci_lower <= r.rating <= r.ci_upper for r in ratings)
    assert sum(r.rating for r in ratings) / 3 == pytest.approx(1000)
    assert {r.llm.name: r.votes for r in ratings} == {"strong": 80, "middle": 70, "weak": 70}
    assert ratings[0].rank == 1 and ratings[2].rank > 1


def test_it_leaves_out_excluded_and_named_votes_and_counts_them(trio: tuple[LLM, LLM, LLM], settings) -> None:
    settings.LEADERBOARD_BOOTSTRAP = 50
    strong, middle, _ = trio
    voted_battle(strong, middle, "a")
    voted_battle(strong, middle, "b", excluded=Vote.Exclusion.IDENTITY_LEAK)
    voted_battle(strong, middle, "b", mode=Battle.Mode.NAMED)
    snapshot = services.recompute()

    assert snapshot is not None and snapshot.votes == 1
    assert snapshot.excluded == {"identity_leak": 1, "named_mode": 1}


def test_running_the_task_twice_publishes_once(trio: tuple[LLM, LLM, LLM], settings) -> None:
    settings.LEADERBOARD_BOOTSTRAP = 50
    vote_many(trio)
    first = tasks.recompute()
    assert len(first) == Snapshot.objects.count() >= 2  # overall and style at least
    assert tasks.recompute() == []
    assert Snapshot.objects.count() == len(first)


def test_a_new_vote_leads_to_a_new_snapshot(trio: tuple[LLM, LLM, LLM], settings) -> None:
    settings.LEADERBOARD_BOOTSTRAP = 50
    vote_many(trio)
    first = services.recompute()
    voted_battle(trio[2], trio[0], "a")
    second = services.recompute()
    assert first and second and second.votes == first.votes + 1
    assert second.votes_digest != first.votes_digest
    assert services.latest_snapshot() == second


def test_a_new_vote_republishes_only_the_boards_that_count_it(trio: tuple[LLM, LLM, LLM], settings) -> None:
    settings.LEADERBOARD_BOOTSTRAP = 20
    settings.LEADERBOARD_STYLE_BOOTSTRAP = 5
    vote_many(trio)
    for vote in Vote.objects.all()[:40]:
        vote.coding = True
        vote.save()
    tasks.recompute()
    first = set(Snapshot.objects.values_list("board", flat=True))
    assert {"overall", "style", "coding"} <= first

    voted_battle(trio[2], trio[0], "a")  # not a coding prompt
    again = {Snapshot.objects.get(pk=pk).board for pk in tasks.recompute()}

    assert again == {"overall", "style"}


def test_the_published_numbers_do_not_depend_on_how_many_threads_fit_the_boards(
    trio: tuple[LLM, LLM, LLM], settings
) -> None:
    """Fits share their bootstrap rounds with the recompute's free threads: same seed, same numbers."""
    settings.LEADERBOARD_BOOTSTRAP = 60
    settings.LEADERBOARD_STYLE_BOOTSTRAP = 30
    vote_many(trio)

    def published(threads: int) -> dict[str, list[tuple[int, float, float, float]]]:
        settings.LEADERBOARD_FIT_THREADS = threads
        Snapshot.objects.all().delete()
        return {
            snapshot.board: list(
                snapshot.ratings.order_by("llm_id").values_list("llm_id", "rating", "ci_lower", "ci_upper")
            )
            for snapshot in services.recompute_all()
        }

    one = published(1)
    assert {"overall", "style"} <= one.keys()
    assert published(2) == one == published(4)


def test_a_recompute_already_running_is_not_overlapped(trio: tuple[LLM, LLM, LLM]) -> None:
    vote_many(trio)
    with locks.held(services.LOCK) as mine:
        assert mine
        assert services.recompute() is None
    assert not Snapshot.objects.exists()
    assert services.recompute() is not None


def test_the_board_api_and_page_read_the_latest_snapshot(
    trio: tuple[LLM, LLM, LLM], client, settings
) -> None:
    assert client.get("/api/v1/leaderboard/").json() == {"snapshot": None, "models": []}
    settings.LEADERBOARD_BOOTSTRAP = 50
    vote_many(trio)
    services.recompute()
    body = client.get("/api/v1/leaderboard/").json()
    assert body["models"][0]["name"] == "strong"
    assert body["snapshot"]["votes"] == 110
    page = client.get("/leaderboard/")
    assert page.status_code == 200 and "Model 1" in page.content.decode()


def test_the_command_recomputes_in_process(trio: tuple[LLM, LLM, LLM], settings) -> None:
    from io import StringIO

    from django.core.management import call_command

    settings.LEADERBOARD_BOOTSTRAP = 50
    vote_many(trio)
    out = StringIO()
    call_command("recompute_leaderboard", stdout=out)
    assert "overall: snapshot" in out.getvalue() and "110 votes, 3 models" in out.getvalue()
