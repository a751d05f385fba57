"""Which models a board can rate yet: enough votes, and a strength that the votes pin down.

On a young board a model may have won (or lost) every battle it took part in. Its maximum-likelihood
strength is then infinite: the ridge keeps it finite, but only at some thousands of points, with an
interval that means nothing (the bootstrap's swings with the ridge, the sandwich's is falsely
narrow). More generally the votes identify the strengths exactly within the largest strongly
connected part of the who-scored-against-whom graph (Zermelo 1929; Ford 1957): an arrow from i to j
when i won or tied at least one battle against j. A model outside it is unbeaten against, or winless
against, the rest. `rate(..., min_votes=N)` reports such models, and models with fewer than N
battles, as not yet rated: NaN rating and bounds, rank 0. They stay in the fit (their votes inform
the others); the published ratings are centred on the rated models only.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse
import scipy.sparse.csgraph

# The command line's default for --min-votes: below this a normal approximation to a model's
# strength (the sandwich interval) is poor, and a bootstrap interval is no better.
MIN_VOTES = 20


def rated_models(
    i: np.ndarray,
    j: np.ndarray,
    wins_i: np.ndarray,
    wins_j: np.ndarray,
    votes: np.ndarray,
    n_models: int,
    min_votes: int,
) -> np.ndarray:
    """(n_models,) bool: at least min_votes battles and inside the identified core (see above).

    i, j, wins_i, wins_j are per-pair rows as in PairCounts (a tie is half a win each side, so it
    draws both arrows).
    """
    if min_votes < 0:
        raise ValueError("min_votes must be >= 0")
    if not i.size:  # no votes: nobody is rated
        return np.zeros(n_models, dtype=bool)
    forward = wins_i > 0
    backward = wins_j > 0
    rows = np.concatenate([i[forward], j[backward]])
    cols = np.concatenate([j[forward], i[backward]])
    graph = scipy.sparse.csr_matrix((np.ones(rows.size), (rows, cols)), shape=(n_models, n_models))
    _, label = scipy.sparse.csgraph.connected_components(graph, directed=True, connection="strong")
    votes = np.asarray(votes)
    played = votes > 0
    core = np.bincount(label[played]).argmax()
    identified: np.ndarray = (votes >= min_votes) & played & (label == core)
    return identified
