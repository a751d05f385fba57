"""Ranks from intervals: a model's place is what its interval allows, not its point estimate."""

from __future__ import annotations

import numpy as np


def rank_from_intervals(lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """1 + the number of models whose lower bound is above this model's upper bound."""
    above = lower.size - np.searchsorted(np.sort(lower), upper, side="right")
    return (1 + above).astype(np.int64)


def rank_range(
    lower: np.ndarray, upper: np.ndarray, rated: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Best and worst plausible rank of each model from its interval, among the rated models.

    Best: 1 + the models surely above (lower bound above this upper bound), `rank_from_intervals`.
    Worst: the rated models not surely below (upper bound at or above this lower bound), itself
    included. A model whose interval overlaps no other's has best == worst. Unrated models: 0, 0.
    """
    lower, upper = np.asarray(lower, dtype=np.float64), np.asarray(upper, dtype=np.float64)
    if rated is None:
        rated = np.ones(lower.size, dtype=bool)
    best = np.zeros(lower.size, dtype=np.int64)
    worst = np.zeros(lower.size, dtype=np.int64)
    lo, hi = lower[rated], upper[rated]
    best[rated] = rank_from_intervals(lo, hi)
    below = np.searchsorted(np.sort(hi), lo, side="left")  # rated models whose upper < this lower
    worst[rated] = lo.size - below
    return best, worst
