"""Bradley-Terry ratings for the arena: point estimates, bootstrap intervals, ranks and style control.

Pure numpy/scipy: arrays in, arrays out, nothing from Django, no printing except in the command
line (`python -m leaderboard.rating FILE`, see `__main__`).

    outcomes       the four vote outcomes: codes and the public dumps' winner strings
    bradley_terry  votes to pair counts, the maximum-likelihood fit, display matrices
    newton         batched, line-searched Newton shared by the fits
    poisson        the table sampler of the bootstrap's Poisson draws
    bootstrap      `rate`: ratings with bootstrap intervals and ranks
    style          `rate_style`: style-controlled ratings and coefficients
    records        battle files record by record (imports, and naming a bad line)
    reader         battle files to arrays, column by column (`load_battles`; needs pyarrow, so it is
                   imported only by the command line, not here)
"""

from __future__ import annotations

from leaderboard.rating.bootstrap import INTERVAL, Ratings, rank_from_intervals, rate
from leaderboard.rating.bradley_terry import (
    CENTRE,
    RIDGE,
    SCALE,
    PairCounts,
    aggregate,
    battle_count_matrix,
    fit,
    predicted_win_matrix,
    win_rate_matrix,
)
from leaderboard.rating.outcomes import A_WINS, B_WINS, BOTH_BAD, TIE, WINNER_NAMES, WINNERS
from leaderboard.rating.records import STYLE_KEYS, BattleFileError, iter_records, read_battle, style_counts
from leaderboard.rating.style import STYLE_FEATURES, StyleRatings, rate_style, style_delta

__all__ = [
    "A_WINS",
    "BOTH_BAD",
    "B_WINS",
    "CENTRE",
    "INTERVAL",
    "RIDGE",
    "SCALE",
    "STYLE_FEATURES",
    "STYLE_KEYS",
    "TIE",
    "WINNERS",
    "WINNER_NAMES",
    "BattleFileError",
    "PairCounts",
    "Ratings",
    "StyleRatings",
    "aggregate",
    "battle_count_matrix",
    "fit",
    "iter_records",
    "predicted_win_matrix",
    "rank_from_intervals",
    "rate",
    "rate_style",
    "read_battle",
    "style_counts",
    "style_delta",
    "win_rate_matrix",
]
