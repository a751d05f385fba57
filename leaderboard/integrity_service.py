"""The integrity sweep: votes on repeated prompts, then anomalous voters and vote surges, excluded
with their reasons.

Both read the counted anonymous votes with their battle's visitor, network and prompt hashes as
columns, decide in numpy, and write exclusions as conditional updates (`excluded=""` in the WHERE),
so a second sweep over the same votes changes nothing. The next recompute drops what they excluded.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.conf import settings
from django.db import transaction
from django.utils.crypto import salted_hmac

from arena.models import Battle, Vote, VoterFlag, VoterFlagAction
from leaderboard import integrity, locks, rating
from leaderboard.votes import OUTCOME_OF, WINNERS

LOCK = "leaderboard.integrity"  # leaderboard.locks: it dies with a killed worker
UPDATE_CHUNK = 5000  # vote ids per UPDATE ... WHERE id IN (...)
ACTIVE = (VoterFlag.State.FLAGGED, VoterFlag.State.CONFIRMED)


@dataclass(frozen=True)
class Sweep:
    duplicate_votes: int  # votes newly excluded as duplicate_prompt
    flags: int  # voters and model days newly flagged (voters again on votes cast after a restore)
    anomalous_votes: int  # votes newly excluded as anomalous_voter
    surge_votes: int  # votes newly excluded as vote_surge


def rules() -> dict[str, Any]:
    """The integrity rules in force. Operators' eyes only: they include the detector's thresholds."""
    return {
        "detector_alpha": settings.LEADERBOARD_DETECTOR_ALPHA,
        "detector_min_votes": settings.LEADERBOARD_DETECTOR_MIN_VOTES,
        "detector_checkpoints": settings.LEADERBOARD_DETECTOR_CHECKPOINTS,
        "surge_alpha_ratio": integrity.WINDOW_ALPHA / integrity.ALPHA,
        "surge_min_battles": integrity.MIN_WINDOW_BATTLES,
        "duplicate_prompt_window_s": settings.ARENA_DUPLICATE_PROMPT_WINDOW,
        "duplicate_prompt_max": settings.ARENA_DUPLICATE_PROMPT_MAX,
    }


def rules_digest() -> str:
    """A keyed digest of `rules()` for public snapshots: an operator holding the settings can check
    which rules a snapshot was computed under; nobody else can read the thresholds off it."""
    return salted_hmac("leaderboard.integrity.rules", json.dumps(rules(), sort_keys=True)).hexdigest()


def sweep() -> Sweep | None:
    """Exclude duplicate-prompt votes, then flag anomalous voters; None if a sweep is running."""
    with locks.held(LOCK) as mine:
        if not mine:
            return None
        duplicates = exclude_duplicates()
        flags, anomalous, surges = flag_anomalous_voters()
    return Sweep(duplicates, flags, anomalous, surges)


def _anonymous(*columns: str, counted: bool) -> list[tuple[Any, ...]]:
    """The anonymous votes (`counted`: only those counted) in the order cast, as rows of `columns`."""
    votes = Vote.objects.filter(anonymous=True).order_by("id")
    if counted:
        votes = votes.filter(excluded=Vote.Exclusion.NONE)
    return list(votes.values_list("id", *columns))


def _exclude(ids: np.ndarray | list[int], reason: str, **extra: Any) -> int:
    """Exclude these votes with `reason` where they are still counted; returns how many changed."""
    ids = [int(i) for i in ids]
    changed = 0
    with transaction.atomic():
        for start in range(0, len(ids), UPDATE_CHUNK):
            chunk = ids[start : start + UPDATE_CHUNK]
            changed += Vote.objects.filter(id__in=chunk, excluded=Vote.Exclusion.NONE, **extra).update(
                excluded=reason
            )
    return changed


def duplicate_votes(
    ids: np.ndarray,
    seconds: np.ndarray,
    visitors: np.ndarray,
    networks: np.ndarray,
    prompts: np.ndarray,
    *,
    window: int,
    most: int,
) -> np.ndarray:
    """Which votes (given in id order) a repeated prompt leaves out, as a boolean mask.

    A visitor or a network counts a prompt once per window (fixed windows of `window` seconds: the
    first vote in each counts); then a prompt counted more than `most` times keeps `most` of its votes,
    a sample fixed by a hash of each vote's id and prompt (FastChat's deduplication rule).
    """
    drop = np.zeros(ids.size, dtype=bool)
    if not ids.size:
        return drop
    prompt = np.unique(prompts, return_inverse=True)[1]
    bucket = (seconds // window).astype(np.int64)
    for hashes in (visitors, networks):
        known = np.flatnonzero(hashes != "")
        voter = np.unique(hashes[known], return_inverse=True)[1]
        key = np.stack([voter, prompt[known], bucket[known]], axis=1)
        first = np.unique(key, axis=0, return_index=True)[1]  # the earliest vote of each key
        repeat = np.ones(known.size, dtype=bool)
        repeat[first] = False
        drop[known[repeat]] = True
    left = np.flatnonzero(~drop)
    seen = np.bincount(prompt[left], minlength=prompt.max() + 1)
    for p in np.flatnonzero(seen > most):
        mine = left[prompt[left] == p]
        rank = [hashlib.sha256(f"{prompts[i]}:{ids[i]}".encode()).digest() for i in mine]
        drop[mine[np.argsort(rank)[most:]]] = True
    return drop


def exclude_duplicates() -> int:
    rows = [
        row
        for row in _anonymous(
            "created", "battle__visitor_hash", "battle__network_hash", "battle__prompt_hash", counted=True
        )
        if row[4]
    ]
    if not rows:
        return 0
    ids, created, visitors, networks, prompts = zip(*rows, strict=True)
    drop = duplicate_votes(
        np.array(ids, dtype=np.int64),
        np.array([at.timestamp() for at in created]),
        np.array(visitors),
        np.array(networks),
        np.array(prompts),
        window=settings.ARENA_DUPLICATE_PROMPT_WINDOW,
        most=settings.ARENA_DUPLICATE_PROMPT_MAX,
    )
    return _exclude(np.array(ids)[drop], Vote.Exclusion.DUPLICATE_PROMPT)


def _seed() -> int:
    """The detector's randomness, fixed per deployment and secret: a voter cannot compute which
    stretch of their votes is judged, and the same votes get the same verdict."""
    return int.from_bytes(
        salted_hmac("leaderboard.integrity.seed", str(settings.LEADERBOARD_SEED)).digest()[:8]
    )


def _battles() -> tuple[np.ndarray, ...]:
    """Every anonymous battle in the order started: day index, models, voted, visitor and network
    hashes and start time (seconds), and the days' dates."""
    rows = list(
        Battle.objects.anonymous()
        .order_by("created", "id")
        .values_list("created", "model_a", "model_b", "state", "visitor_hash", "network_hash")
    )
    if not rows:
        empty = np.zeros(0)
        return (empty,) * 8
    created, a, b, state, visitors, networks = (np.array(c) for c in zip(*rows, strict=True))
    days, window = np.unique([at.date() for at in created], return_inverse=True)
    seconds = np.array([at.timestamp() for at in created])
    voted = state == Battle.State.VOTED
    return window, a, b, voted, visitors, networks, seconds, days


def flag_anomalous_voters() -> tuple[int, int, int]:
    """Score every visitor and network on its votes and battles, and every model's day on its battles;
    returns (new flags, votes excluded as anomalous_voter, votes excluded as vote_surge).

    Every anonymous vote is read, excluded or not, in the order cast: excluding votes then changes no
    vote's random draws (one row each, in `integrity.score_voters`), and the board (fitted on the
    counted votes) only by what was excluded, so a second sweep reaches the same verdicts. Votes
    not judged (no hash, or cleared by a restore) stay in place under one extra voter, never flagged.
    A restored voter is thus judged only on votes cast, and battles started, after the restore. A
    voter flagged and not restored has every counted vote excluded, those cast after the flag
    included. Selective voting (`integrity.score_windows`, `integrity.score_selective`) is judged on
    every anonymous battle, voted or not; on a flagged model's day, the votes of visitors with fewer
    battles than the detector's minimum (too new to judge one by one) are excluded.
    """
    columns = "model_a", "model_b", "winner", "excluded", "battle__visitor_hash", "battle__network_hash"
    rows = _anonymous(*columns, counted=False)
    if not rows:
        return 0, 0, 0
    ids, a, b, winner, exclusion, visitors, networks = (np.array(c) for c in zip(*rows, strict=True))
    window, battle_a, battle_b, voted, battle_visitors, battle_networks, started, days = _battles()
    model_ids = np.union1d(np.union1d(a, b), np.union1d(battle_a, battle_b)).astype(np.int64)
    a, b = np.searchsorted(model_ids, a), np.searchsorted(model_ids, b)
    battle_a, battle_b = np.searchsorted(model_ids, battle_a), np.searchsorted(model_ids, battle_b)
    outcome = OUTCOME_OF[np.searchsorted(WINNERS, winner)]
    counted = exclusion == Vote.Exclusion.NONE
    # The current board: the counted votes only, so the votes excluded do not pull it their way.
    board = rating.aggregate(a[counted], b[counted], outcome[counted], model_ids.size)
    theta = rating.fit(board, model_ids.size)
    alpha, min_votes = settings.LEADERBOARD_DETECTOR_ALPHA, settings.LEADERBOARD_DETECTOR_MIN_VOTES
    windows = integrity.score_windows(
        window,
        battle_a,
        battle_b,
        voted,
        days.size,
        model_ids.size,
        alpha=alpha * integrity.WINDOW_ALPHA / integrity.ALPHA,
    )
    new_flags = excluded = 0
    battles_of_visitor: dict[str, int] = {}
    for kind, hashes, battle_hashes in (
        (VoterFlag.Kind.VISITOR, visitors, battle_visitors),
        (VoterFlag.Kind.NETWORK, networks, battle_networks),
    ):
        flags = {f.voter_hash: f for f in VoterFlag.objects.filter(kind=kind)}
        cleared = np.array([flags[h].cleared_through if h in flags else 0 for h in hashes], dtype=np.int64)
        judged = (hashes != "") & (ids > cleared)
        names, inverse = np.unique(hashes[judged], return_inverse=True)
        voter = np.full(ids.size, names.size)
        voter[judged] = inverse
        scores = integrity.score_voters(
            voter,
            a,
            b,
            outcome,
            theta,
            names.size + 1,
            rng=np.random.default_rng(_seed()),
            alpha=alpha,
            min_votes=min_votes,
            checkpoints=settings.LEADERBOARD_DETECTOR_CHECKPOINTS,
        )
        since = np.array(
            [_timestamp(flags[h].cleared_at) if h in flags else 0.0 for h in battle_hashes], dtype=np.float64
        )
        battle_judged = (battle_hashes != "") & (started > since) & np.isin(battle_hashes, names)
        battle_voter = np.full(started.size, names.size)
        battle_voter[battle_judged] = np.searchsorted(names, battle_hashes[battle_judged])
        selective = integrity.score_selective(
            battle_voter,
            battle_a,
            battle_b,
            voted,
            names.size + 1,
            windows.pull,
            alpha=alpha,
            min_battles=min_votes,
        )
        if kind == VoterFlag.Kind.VISITOR:
            known = np.unique(battle_hashes, return_counts=True)
            battles_of_visitor = dict(zip(known[0].tolist(), known[1].tolist(), strict=True))
        flagged = scores.flagged[: names.size] | selective.flagged[: names.size]
        for i in np.flatnonzero(flagged):
            flag = flags.get(str(names[i]))
            if flag is not None and flag.state in ACTIVE:
                continue  # already flagged: its new votes are excluded below
            target = scores.target_model[i] if scores.flagged[i] else selective.model[i]
            fields = {
                "state": VoterFlag.State.FLAGGED,
                "votes": int(scores.votes[i]),
                "surprise_p": _finite(scores.surprise_p[i]),
                "targeted_z": _finite(scores.targeted_z[i]),
                "selective_p": _finite(selective.p[i]),
                "target_model_id": int(model_ids[target]) if target >= 0 else None,
            }
            flags[str(names[i])], _ = VoterFlag.objects.update_or_create(
                kind=kind, voter_hash=str(names[i]), defaults=fields
            )
            new_flags += 1
        active = [name for name, flag in flags.items() if flag.state in ACTIVE]
        pending = np.isin(hashes, active) & counted & (ids > cleared)
        for name in np.unique(hashes[pending]):
            excluded += _exclude_flagged(
                flags[str(name)], ids[pending & (hashes == name)], Vote.Exclusion.ANOMALOUS_VOTER
            )
    surges, surge_votes = _flag_surges(windows, days, model_ids, battles_of_visitor)
    return new_flags + surges, excluded, surge_votes


def _flag_surges(
    windows: integrity.WindowScores,
    days: np.ndarray,
    model_ids: np.ndarray,
    battles_of_visitor: dict[str, int],
) -> tuple[int, int]:
    """Flag the model days voted on far beyond the usual rate; exclude their new voters' votes."""
    flags = {f.voter_hash: f for f in VoterFlag.objects.filter(kind=VoterFlag.Kind.SURGE)}
    new = 0
    for d, m in np.argwhere(windows.flagged):
        key = f"{int(model_ids[m])}@{days[d].isoformat()}"
        if key in flags:
            continue  # flagged already, or restored by an operator: a restored day is never judged again
        flags[key] = VoterFlag.objects.create(
            kind=VoterFlag.Kind.SURGE,
            voter_hash=key,
            votes=int(windows.voted[d, m]),
            targeted_z=float(windows.z[d, m]),
            selective_p=float(windows.p[d, m]),
            target_model_id=int(model_ids[m]),
        )
        new += 1
    min_battles = settings.LEADERBOARD_DETECTOR_MIN_VOTES
    excluded = 0
    for flag in flags.values():
        if flag.state not in ACTIVE:
            continue
        votes = flag.votes_of_voter().filter(excluded=Vote.Exclusion.NONE, anonymous=True)
        new_voters = [
            vote_id
            for vote_id, visitor in votes.values_list("id", "battle__visitor_hash")
            if battles_of_visitor.get(visitor, 0) < min_battles
        ]
        excluded += _exclude_flagged(flag, new_voters, Vote.Exclusion.VOTE_SURGE)
    return new, excluded


def _exclude_flagged(flag: VoterFlag, ids: np.ndarray | list[int], reason: str) -> int:
    with transaction.atomic():
        n = _exclude(ids, reason)
        if n:
            VoterFlagAction.objects.create(flag=flag, action=VoterFlagAction.Action.FLAG, votes=n)
    return n


def _timestamp(at: Any) -> float:
    return at.timestamp() if at is not None else 0.0


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None
