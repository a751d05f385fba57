"""Votes in, snapshot out: rows to arrays, arrays through the rating engine, results to rows."""

from __future__ import annotations

import hashlib
import time
import uuid
from dataclasses import dataclass

import numpy as np
from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import Count

from arena.models import Battle, Vote
from leaderboard import rating
from leaderboard.models import Rating, Snapshot

LOCK_KEY = "leaderboard:recompute:lock"
LOCK_SECONDS = 15 * 60  # longer than any recompute; a crashed worker's lock expires by itself

OUTCOME = {
    Vote.Winner.A: rating.A_WINS,
    Vote.Winner.B: rating.B_WINS,
    Vote.Winner.TIE: rating.TIE,
    Vote.Winner.BOTH_BAD: rating.BOTH_BAD,
}


@dataclass(frozen=True)
class VoteArrays:
    model_ids: list[int]  # index -> LLM primary key
    model_a: np.ndarray
    model_b: np.ndarray
    outcome: np.ndarray
    digest: str


def counted_votes() -> tuple[VoteArrays, dict[str, int]]:
    """The votes the public board counts, as arrays, with the others counted by reason."""
    votes = Vote.objects.filter(battle__mode=Battle.Mode.ANONYMOUS, excluded="")
    rows = votes.order_by("id").values_list("id", "battle__model_a_id", "battle__model_b_id", "winner")
    ids, a_pk, b_pk, winners = zip(*rows, strict=True) if rows else ((), (), (), ())
    model_ids = sorted(set(a_pk) | set(b_pk))
    index = {pk: i for i, pk in enumerate(model_ids)}
    digest = hashlib.sha256()
    for vote_id, a, b, winner in zip(ids, a_pk, b_pk, winners, strict=True):
        digest.update(f"{vote_id},{a},{b},{winner}\n".encode())
    arrays = VoteArrays(
        model_ids=model_ids,
        model_a=np.fromiter((index[pk] for pk in a_pk), dtype=np.int64, count=len(a_pk)),
        model_b=np.fromiter((index[pk] for pk in b_pk), dtype=np.int64, count=len(b_pk)),
        outcome=np.fromiter((OUTCOME[w] for w in winners), dtype=np.int64, count=len(winners)),
        digest=digest.hexdigest(),
    )
    excluded = {
        row["excluded"]: row["n"]
        for row in Vote.objects.exclude(excluded="").values("excluded").annotate(n=Count("id"))
    }
    named = Vote.objects.filter(battle__mode=Battle.Mode.NAMED).count()
    if named:
        excluded["named_mode"] = named
    return arrays, excluded


def recompute(*, board: str = "overall") -> Snapshot | None:
    """Publish a new snapshot when the counted votes changed; None when nothing was done.

    A lock in the cache keeps two recomputes from overlapping (beat and a vote-triggered run).
    """
    token = uuid.uuid4().hex
    if not cache.add(LOCK_KEY, token, timeout=LOCK_SECONDS):
        return None
    try:
        return _recompute(board)
    finally:
        if cache.get(LOCK_KEY) == token:
            cache.delete(LOCK_KEY)


def _recompute(board: str) -> Snapshot | None:
    started = time.perf_counter()
    votes, excluded = counted_votes()
    latest = Snapshot.objects.of_board(board).latest_first().first()
    if latest and latest.votes_digest == votes.digest and latest.excluded == excluded:
        return None
    params = {
        "bootstrap": settings.LEADERBOARD_BOOTSTRAP,
        "seed": settings.LEADERBOARD_SEED,
        "scale": 400,
        "base": 10,
        "offset": 1000,
        "anchor": "mean",
        "ties": "half a win each side",
    }
    rows: list[Rating] = []
    if votes.model_ids:
        result = rating.rate(
            votes.model_a,
            votes.model_b,
            votes.outcome,
            len(votes.model_ids),
            bootstrap=settings.LEADERBOARD_BOOTSTRAP,
            seed=settings.LEADERBOARD_SEED,
        )
        for i, pk in enumerate(votes.model_ids):
            rows.append(
                Rating(
                    llm_id=pk,
                    rating=float(result.rating[i]),
                    ci_lower=float(result.ci_lower[i]),
                    ci_upper=float(result.ci_upper[i]),
                    rank=int(result.rank[i]),
                    votes=int(result.votes[i]),
                )
            )
    with transaction.atomic():
        snapshot = Snapshot.objects.create(
            board=board,
            votes=len(votes.outcome),
            votes_digest=votes.digest,
            params=params,
            excluded=excluded,
            duration_ms=(time.perf_counter() - started) * 1000,
        )
        for row in rows:
            row.snapshot = snapshot
        Rating.objects.bulk_create(rows)
    return snapshot


def latest_snapshot(board: str = "overall") -> Snapshot | None:
    return Snapshot.objects.of_board(board).latest_first().first()
