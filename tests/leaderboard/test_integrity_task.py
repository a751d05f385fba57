"""The integrity sweep on the database: duplicate prompts and anomalous voters, excluded with reasons."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from django.conf import settings as django_settings
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from arena.models import Battle, Vote, VoterFlag, VoterFlagAction, prompt_hash
from arena.services import battle_start
from leaderboard import integrity_service, locks
from leaderboard.integrity_service import Sweep, duplicate_votes
from leaderboard.services import recompute
from leaderboard.tasks import score_voters
from providers.models import LLM
from tests.leaderboard.test_worker import celery_worker

STRENGTH = [1.0, 0.6, 0.2, -0.2, -0.6, -1.0]
HONEST_VOTERS = 80
HONEST_VOTES = 15
RIGGED_VOTES = 40


def cast(rows: list[tuple[LLM, LLM, str, str, str]], *, prompt: str = "", start: Any = None) -> list[Vote]:
    """Voted battles, one a row: (model_a, model_b, winner, visitor_hash, network_hash), a second apart."""
    start = start or timezone.now() - timedelta(hours=1)
    battles = Battle.objects.bulk_create(
        Battle(
            model_a=a,
            model_b=b,
            state=Battle.State.VOTED,
            visitor_hash=visitor,
            network_hash=network,
            prompt_hash=prompt_hash(prompt) if prompt else "",
        )
        for a, b, _, visitor, network in rows
    )
    votes = []
    for k, (battle, (_, _, winner, _, _)) in enumerate(zip(battles, rows, strict=True)):
        vote = Vote(battle=battle, winner=winner, created=start + timedelta(seconds=k))
        vote.set_facts()
        votes.append(vote)
    return Vote.objects.bulk_create(votes)


@pytest.fixture
def crowd(make_llm: Callable[..., LLM]) -> tuple[list[LLM], list[Vote]]:
    """Honest visitors, each on their own network, voting by the models' strengths; then one script
    on one visitor and network voting for the weakest model in every battle it gets."""
    rng = np.random.default_rng(7)
    models = [make_llm() for _ in STRENGTH]
    rows = []
    for v in range(HONEST_VOTERS):
        for _ in range(HONEST_VOTES):
            i, j = rng.choice(len(models), 2, replace=False)
            a_wins = rng.random() < 1 / (1 + np.exp(STRENGTH[j] - STRENGTH[i]))
            rows.append((models[i], models[j], "a" if a_wins else "b", f"visitor-{v}", f"net-{v}"))
    rng.shuffle(rows)
    honest = cast(rows)
    target = models[-1]
    rigged = []
    for k in range(RIGGED_VOTES):
        other = models[k % (len(models) - 1)]
        a, b = (target, other) if k % 2 else (other, target)
        rigged.append((a, b, "a" if a == target else "b", "visitor-rig", "net-rig"))
    cast(rigged, start=timezone.now())
    return models, honest


def swept(**changed: int) -> dict[str, int]:
    """What the sweep task returns: nothing done, but for `changed`."""
    return {"duplicate_votes": 0, "flags": 0, "anomalous_votes": 0, "surge_votes": 0} | changed


def counted() -> int:
    return Vote.objects.filter(excluded="").count()


def test_the_sweep_flags_the_rigger_and_no_honest_voter(crowd: tuple[list[LLM], list[Vote]]) -> None:
    models, _ = crowd
    assert score_voters() == swept(flags=2, anomalous_votes=RIGGED_VOTES)
    flags = {(f.kind, f.voter_hash): f for f in VoterFlag.objects.all()}
    assert set(flags) == {("visitor", "visitor-rig"), ("network", "net-rig")}
    assert all(
        f.state == "flagged" and f.target_model == models[-1] and f.targeted_z > 0 for f in flags.values()
    )
    assert (
        not Vote.objects.filter(excluded="anomalous_voter")
        .exclude(battle__visitor_hash="visitor-rig")
        .exists()
    )
    assert counted() == HONEST_VOTERS * HONEST_VOTES
    # The detector's own action is logged, with the votes it excluded (the network's were already out).
    assert [(a.action, a.user, a.votes) for a in VoterFlagAction.objects.order_by("id")] == [
        ("flag", None, RIGGED_VOTES)
    ]


def test_a_second_sweep_changes_nothing(crowd: tuple[list[LLM], list[Vote]]) -> None:
    score_voters()
    before = list(Vote.objects.order_by("id").values_list("id", "excluded"))
    flags = list(VoterFlag.objects.order_by("id").values())
    assert score_voters() == swept()
    assert list(Vote.objects.order_by("id").values_list("id", "excluded")) == before
    assert list(VoterFlag.objects.order_by("id").values()) == flags


def test_flagged_votes_leave_the_board_and_come_back_when_restored(
    crowd: tuple[list[LLM], list[Vote]], settings: Any
) -> None:
    settings.LEADERBOARD_BOOTSTRAP = 20
    settings.LEADERBOARD_STYLE_BOOTSTRAP = 5
    settings.LEADERBOARD_CATEGORY_BOOTSTRAP = 5
    honest = HONEST_VOTERS * HONEST_VOTES
    first = recompute()
    assert first is not None and first.votes == honest + RIGGED_VOTES
    call_command("score_voters")
    flagged = recompute()
    assert flagged is not None and flagged.votes == honest
    assert flagged.excluded["anomalous_voter"] == RIGGED_VOTES

    operator = User.objects.create_superuser("operator", "op@example.org", "pw")
    client = Client()
    client.force_login(operator)
    ids = [str(pk) for pk in VoterFlag.objects.values_list("pk", flat=True)]
    response = client.post(
        "/admin/arena/voterflag/", {"action": "restore", "_selected_action": ids}, follow=True
    )
    assert response.status_code == 200
    assert counted() == honest + RIGGED_VOTES
    assert set(VoterFlag.objects.values_list("state", flat=True)) == {"restored"}
    restored = recompute()
    assert restored is not None and restored.votes == honest + RIGGED_VOTES
    assert "anomalous_voter" not in restored.excluded
    restores = VoterFlagAction.objects.filter(action="restore")
    # Both restores logged; the votes came back with the first (they were out for either flag).
    assert sorted((a.user, a.votes) for a in restores) == [(operator, 0), (operator, RIGGED_VOTES)]

    # The same votes are never judged again.
    assert score_voters() == swept()


def test_a_restored_voter_is_judged_again_on_new_votes_only(crowd: tuple[list[LLM], list[Vote]]) -> None:
    models, _ = crowd
    score_voters()
    VoterFlag.objects.get(kind="visitor").restore(None)
    # The network's flag still holds: its votes go out again, the restored visitor is not judged.
    assert score_voters() == swept(anomalous_votes=RIGGED_VOTES)
    # The same script from a new network.
    rows = [(models[-1], models[k % 5], "a", "visitor-rig", "net-new") for k in range(RIGGED_VOTES)]
    cast(rows, start=timezone.now())
    # Flagged again, with the new network, on the new votes alone.
    assert score_voters() == swept(flags=2, anomalous_votes=RIGGED_VOTES)
    assert VoterFlag.objects.get(voter_hash="net-new").state == "flagged"
    flag = VoterFlag.objects.get(kind="visitor")
    assert flag.state == "flagged" and flag.votes == RIGGED_VOTES  # judged on the new votes alone
    assert counted() == HONEST_VOTERS * HONEST_VOTES


def test_confirming_a_flag_keeps_the_votes_out_and_is_logged(crowd: tuple[list[LLM], list[Vote]]) -> None:
    score_voters()
    operator = User.objects.create_superuser("operator", "op@example.org", "pw")
    client = Client()
    client.force_login(operator)
    flag = VoterFlag.objects.get(kind="visitor")
    response = client.post("/admin/arena/voterflag/", {"action": "confirm", "_selected_action": [flag.pk]})
    assert response.status_code == 302
    flag.refresh_from_db()
    assert flag.state == "confirmed"
    assert flag.actions.filter(action="confirm", user=operator).count() == 1
    assert (
        Vote.objects.filter(battle__visitor_hash="visitor-rig", excluded="anomalous_voter").count()
        == RIGGED_VOTES
    )
    page = client.get(f"/admin/arena/voterflag/{flag.pk}/change/")
    assert page.status_code == 200 and b"confirm" in page.content


def test_no_public_response_shows_a_flag_or_a_threshold(
    crowd: tuple[list[LLM], list[Vote]], client: Client, settings: Any
) -> None:
    settings.LEADERBOARD_BOOTSTRAP = 20
    settings.LEADERBOARD_STYLE_BOOTSTRAP = 5
    settings.LEADERBOARD_CATEGORY_BOOTSTRAP = 5
    settings.LEADERBOARD_DETECTOR_ALPHA = 0.00417  # a value that appears nowhere else
    settings.LEADERBOARD_DETECTOR_MIN_VOTES = 13
    settings.ARENA_DUPLICATE_PROMPT_MAX = 7919
    score_voters()
    snapshot = recompute()
    assert snapshot is not None
    flag = VoterFlag.objects.get(kind="visitor")
    texts = [
        json.dumps(client.get("/api/v1/leaderboard/").json()),
        client.get("/leaderboard/").content.decode(),
        json.dumps(client.get("/api/v1/leaderboard/snapshots/").json()),
        client.get(f"/api/v1/leaderboard/snapshots/{snapshot.pk}/csv").content.decode(),
    ]
    for text in texts:
        for secret in (
            "0.00417",
            "7919",
            "detector",
            "visitor-rig",
            "net-rig",
            f"{flag.targeted_z:.3}",
            "targeted",
        ):
            # Bounded, so that a hex digest happening to hold the digits does not count.
            assert not re.search(rf"(?<![0-9a-f]){re.escape(secret)}(?![0-9a-f])", text), secret
    # The exclusion itself is public, by reason and count.
    assert f'"anomalous_voter": {RIGGED_VOTES}' in texts[0]
    assert f"{RIGGED_VOTES} anomalous voter" in texts[1]
    # The rules are recorded by a digest that changes with them.
    digest = snapshot.params["integrity_rules"]
    settings.LEADERBOARD_DETECTOR_ALPHA = 0.005
    assert integrity_service.rules_digest() != digest


@pytest.mark.worker
@pytest.mark.skipif(
    not django_settings.REDIS_URL, reason="needs REDIS_URL: a worker consumes tasks from Redis"
)
@pytest.mark.django_db(transaction=True)
def test_a_worker_process_runs_the_detector(crowd: tuple[list[LLM], list[Vote]]) -> None:
    with celery_worker() as worker:
        score_voters.delay()
        deadline = time.monotonic() + 60
        while VoterFlag.objects.count() < 2 and time.monotonic() < deadline and worker.poll() is None:
            time.sleep(0.2)
    assert set(VoterFlag.objects.values_list("voter_hash", flat=True)) == {"visitor-rig", "net-rig"}
    assert Vote.objects.filter(excluded="anomalous_voter").count() == RIGGED_VOTES


def test_a_sweep_already_running_is_not_overlapped(db: None) -> None:
    with locks.held(integrity_service.LOCK) as mine:
        assert mine
        assert integrity_service.sweep() is None
    assert integrity_service.sweep() == Sweep(0, 0, 0, 0)


# --- Duplicate prompts ---------------------------------------------------------------------------


def test_prompts_that_differ_in_case_width_spacing_or_end_punctuation_hash_alike() -> None:
    assert prompt_hash("Write a poem about the sea!") == prompt_hash("  write a  POEM about\tthe sea ")
    assert prompt_hash("ＡＢＣ?") == prompt_hash("abc")
    assert prompt_hash("write a poem") != prompt_hash("write a song")
    assert len(prompt_hash("x")) == 64


def test_a_battle_stores_its_first_prompts_hash(make_llm: Callable[..., LLM]) -> None:
    make_llm(), make_llm()
    battle = battle_start(visitor="v", prompt="Hello, World.")
    assert battle.prompt_hash == prompt_hash("hello, world")


def dup(
    visitors: list[str],
    networks: list[str],
    prompts: list[str],
    seconds: list[float],
    *,
    window: int = 100,
    most: int = 10,
) -> list[bool]:
    n = len(visitors)
    return duplicate_votes(
        np.arange(1, n + 1),
        np.array(seconds, dtype=float),
        np.array(visitors),
        np.array(networks),
        np.array(prompts),
        window=window,
        most=most,
    ).tolist()


def test_a_visitor_repeating_a_prompt_counts_once_per_window() -> None:
    assert dup(["v", "v", "v", "v"], ["", "", "", ""], ["p", "p", "q", "p"], [0, 10, 20, 150]) == [
        False,
        True,
        False,
        False,
    ]


def test_a_network_repeating_a_prompt_under_fresh_cookies_counts_once() -> None:
    assert dup(["v1", "v2", "v3"], ["n", "n", "m"], ["p", "p", "p"], [0, 1, 2]) == [False, True, False]


def test_a_prompt_seen_too_often_keeps_a_fixed_sample() -> None:
    visitors = [f"v{k}" for k in range(30)]
    kept = dup(visitors, visitors, ["p"] * 30, list(range(30)))
    assert kept.count(False) == 10
    assert dup(visitors, visitors, ["p"] * 30, list(range(30))) == kept  # deterministic
    assert kept != [False] * 10 + [True] * 20  # a sample, not the first ones


def test_the_sweep_excludes_duplicate_prompts_once(make_llm: Callable[..., LLM], settings: Any) -> None:
    settings.ARENA_DUPLICATE_PROMPT_MAX = 3
    a, b = make_llm(), make_llm()
    cast([(a, b, "a", "same-visitor", "") for _ in range(4)], prompt="Pick me")
    cast([(a, b, "a", f"visitor-{k}", f"net-{k}") for k in range(6)], prompt="A popular prompt")
    done = integrity_service.sweep()
    assert done is not None and done.duplicate_votes == 3 + 3
    assert Vote.objects.filter(excluded="duplicate_prompt").count() == 6
    assert integrity_service.sweep() == Sweep(0, 0, 0, 0)
