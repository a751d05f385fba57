"""How a board weighs its votes (`LEADERBOARD_WEIGHTS`): the weights the rating engine fits with.

    none            every vote alike: the counts as they are.
    propensity      w = 1 / the probability with which the battle's pair was drawn (Chiang et al.
                    2024, eq. 7): the board estimates what uniform pairs would have given, whatever
                    the sampler did. A vote whose battle has no propensity (older than the field,
                    imported, or a model replaced mid-battle) weighs the average weight of the
                    board's votes that have one, or 1 if none has.
    pair-frequency  w = 1 / max(battles of its pair, 50), as lmarena/arena-rank
                    (`rating.pair_frequency_weights`).

A plain board's cell (pair, outcome) holds votes of different weights. The point estimate needs
their sum S1 = Σw, the sandwich also S2 = Σw² (`rating.sandwich`), and the engine the number of
votes n (votes per model, and the rescaling of the weights to mean 1 per vote). A single row of
count c and weight x gives cx and cx²: it cannot match all three unless the weights are equal, and
the engine's counts are whole numbers. Two rows can: n − 1 votes of weight u and one of weight v with

    (n − 1) u + v = S1,   (n − 1) u² + v² = S2,
    D = sqrt((n − 1)(n S2 − S1²)),   v = (S1 + D) / n,   u = (S1² − S2) / ((n − 1) S1 + D),

both positive (n S2 ≥ S1² by Cauchy–Schwarz; S1² > S2 for positive weights and n ≥ 2; u is written
without the cancellation of S1/n − D/(n(n − 1))). The fit and its sandwich intervals are then exactly
those of the votes one by one, as the command line computes them from the vote export. A bootstrap
(`LEADERBOARD_INTERVALS=bootstrap`) of these rows resamples each cell's weighted count with the
votes' mean and variance, not their exact distribution.
"""

from __future__ import annotations

import numpy as np

from leaderboard import rating
from leaderboard.votes import CellWeights

WEIGHTINGS = rating.WEIGHTINGS  # none, propensity, pair-frequency


def unknown_weight(weights: CellWeights) -> float:
    """The weight of a vote without a propensity: the mean of the board's known weights, else 1."""
    known = int(weights.known.sum())
    return float(weights.total.sum()) / known if known else 1.0


def split_cells(
    n: np.ndarray, weights: CellWeights, unknown: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each cell as at most two rows of whole counts with its votes' Σw and Σw² (see above).

    Returns, per row, the index of its cell, its count and its weight: the cells' first rows (n − 1
    votes of weight u) in cell order, then their second rows (one vote of weight v); rows that would
    count no vote are left out.
    """
    n = np.asarray(n, dtype=np.int64)
    missing = n - weights.known
    s1 = weights.total + missing * unknown
    s2 = weights.squares + missing * unknown * unknown
    nf = n.astype(np.float64)
    spread = np.sqrt(np.maximum((nf - 1.0) * (nf * s2 - s1 * s1), 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        u = (s1 * s1 - s2) / ((nf - 1.0) * s1 + spread)
        v = (s1 + spread) / nf
        mean = s1 / nf
    # Equal weights (or rounding that leaves no room between them): every vote of the cell weighs S1/n.
    alike = ~((u > 0.0) & (v > 0.0) & np.isfinite(u) & np.isfinite(v)) | (spread == 0.0)
    u, v = np.where(alike, mean, u), np.where(alike, mean, v)
    cells = np.arange(n.size)
    first = n > 1
    index = np.concatenate([cells[first], cells[n > 0]])
    count = np.concatenate([n[first] - 1, np.ones(int(np.count_nonzero(n > 0)), dtype=np.int64)])
    weight = np.concatenate([u[first], v[n > 0]])
    return index, count, weight


def vote_weights(weight: np.ndarray, unknown: float) -> np.ndarray:
    """Per vote, its inverse propensity (0 where unknown, as `style_rows` reads it) or `unknown`."""
    w = np.asarray(weight, dtype=np.float64)
    filled: np.ndarray = np.where(w > 0.0, w, unknown)
    return filled
