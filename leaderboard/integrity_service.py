"""The integrity sweep: votes on repeated prompts, then anomalous voters, excluded with their reasons.

Both read the counted anonymous votes with their battle's visitor, network and prompt hashes as
columns, decide in numpy, and write exclusions as conditional updates (`excluded=""` in the WHERE),
so a second sweep over the same votes changes nothing. The next recompute drops what they excluded.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.utils.crypto import salted_hmac

from arena.models import Vote, VoterFlag, VoterFlagAction
from leaderboard import integrity, rating
from leaderboard.votes import OUTCOME_OF, WINNERS

LOCK_KEY = "leaderboard:integrity:lock"
LOCK_SECONDS = 15 * 60  # longer than any sweep; a crashed worker's lock expires by itself
UPDATE_CHUNK = 5000  # vote ids per UPDATE ... WHERE id IN (...)
ACTIVE = (VoterFlag.State.FLAGGED, VoterFlag.State.CONFIRMED)


@dataclass(frozen=True)
class Sweep:
    duplicate_votes: int  # votes newly excluded as duplicate_prompt
    flags: int  # voters newly flagged (or flagged again on votes cast after a restore)
    anomalous_votes: int  # votes newly excluded as anomalous_voter


def rules() -> dict[str, Any]:
    """The integrity rules in force. Operators' eyes only: they include the detector's thresholds."""
    return {
        "detector_alpha": settings.LEADERBOARD_DETECTOR_ALPHA,
        "detector_min_votes": settings.LEADERBOARD_DETECTOR_MIN_VOTES,
        "detector_checkpoints": settings.LEADERBOARD_DETECTOR_CHECKPOINTS,
        "duplicate_prompt_window_s": settings.ARENA_DUPLICATE_PROMPT_WINDOW,
        "duplicate_prompt_max": settings.ARENA_DUPLICATE_PROMPT_MAX,
    }


def rules_digest() -> str:
    """A keyed digest of `rules()` for public snapshots: an operator holding the settings can check
    which rules a snapshot was computed under; nobody else can read the thresholds off it."""
    return salted_hmac("leaderboard.integrity.rules", json.dumps(rules(), sort_keys=True)).hexdigest()


def sweep() -> Sweep | None:
    """Exclude duplicate-prompt votes, then flag anomalous voters; None if a sweep is running."""
    token = uuid.uuid4().hex
    if not cache.add(LOCK_KEY, token, timeout=LOCK_SECONDS):
        return None
    try:
        duplicates = exclude_duplicates()
        flags, anomalous = flag_anomalous_voters()
    finally:
        if cache.get(LOCK_KEY) == token:
            cache.delete(LOCK_KEY)
    return Sweep(duplicates, flags, anomalous)


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


def flag_anomalous_voters() -> tuple[int, int]:
    """Score every visitor and every network on its votes; returns (new flags, votes excluded).

    Every anonymous vote is read, excluded or not, in the order cast: excluding votes then changes no
    vote's random draws (one row each, in `integrity.score_voters`), and the board (fitted on the
    counted votes) only by what was excluded, so a second sweep reaches the same verdicts. Votes
    not judged (no hash, or cleared by a restore) stay in place under one extra voter, never flagged.
    A restored voter is thus judged only on votes cast after the restore. A voter flagged and not
    restored has every counted vote excluded, those cast after the flag included.
    """
    columns = "model_a", "model_b", "winner", "excluded", "battle__visitor_hash", "battle__network_hash"
    rows = _anonymous(*columns, counted=False)
    if not rows:
        return 0, 0
    ids, a, b, winner, exclusion, visitors, networks = (np.array(c) for c in zip(*rows, strict=True))
    model_ids = np.union1d(a, b)
    a, b = np.searchsorted(model_ids, a), np.searchsorted(model_ids, b)
    outcome = OUTCOME_OF[np.searchsorted(WINNERS, winner)]
    counted = exclusion == Vote.Exclusion.NONE
    # The current board: the counted votes only, so the votes excluded do not pull it their way.
    board = rating.aggregate(a[counted], b[counted], outcome[counted], model_ids.size)
    theta = rating.fit(board, model_ids.size)
    new_flags = excluded = 0
    for kind, hashes in ((VoterFlag.Kind.VISITOR, visitors), (VoterFlag.Kind.NETWORK, networks)):
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
            alpha=settings.LEADERBOARD_DETECTOR_ALPHA,
            min_votes=settings.LEADERBOARD_DETECTOR_MIN_VOTES,
            checkpoints=settings.LEADERBOARD_DETECTOR_CHECKPOINTS,
        )
        for i in np.flatnonzero(scores.flagged[: names.size]):
            flag = flags.get(str(names[i]))
            if flag is not None and flag.state in ACTIVE:
                continue  # already flagged: its new votes are excluded below
            fields = {
                "state": VoterFlag.State.FLAGGED,
                "votes": int(scores.votes[i]),
                "surprise_p": float(scores.surprise_p[i]),
                "targeted_z": float(scores.targeted_z[i]),
                "target_model_id": int(model_ids[scores.target_model[i]]),
            }
            flags[str(names[i])], _ = VoterFlag.objects.update_or_create(
                kind=kind, voter_hash=str(names[i]), defaults=fields
            )
            new_flags += 1
        active = [name for name, flag in flags.items() if flag.state in ACTIVE]
        pending = np.isin(hashes, active) & counted & (ids > cleared)
        for name in np.unique(hashes[pending]):
            flag = flags[str(name)]
            with transaction.atomic():
                n = _exclude(ids[pending & (hashes == name)], Vote.Exclusion.ANOMALOUS_VOTER)
                if n:
                    VoterFlagAction.objects.create(flag=flag, action=VoterFlagAction.Action.FLAG, votes=n)
            excluded += n
    return new_flags, excluded
