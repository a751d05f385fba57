"""Bradley-Terry ratings for the arena: point estimates, bootstrap intervals, ranks and style control.

Pure numpy/scipy: arrays in, arrays out, nothing from Django, no printing except in the command
line (`python -m leaderboard.rating FILE`, see `__main__`).

    outcomes       the four vote outcomes: codes and the public dumps' winner strings
    bradley_terry  votes to pair counts, the maximum-likelihood fit, display matrices
    newton         batched, line-searched Newton shared by the fits
    poisson        the table sampler of the bootstrap's Poisson draws
    bootstrap      `rate`: ratings with bootstrap or sandwich intervals, ranks and rank ranges
    sandwich       closed-form robust (sandwich) covariance of the (weighted) fit
    weights        per-battle weights: inverse propensity, inverse pair frequency
    rated          which models a young board can rate yet (`min_votes`)
    style          `rate_style`: style-controlled ratings and coefficients
    records        battle files record by record (imports, and naming a bad line)
    reader         battle files to arrays, column by column (`load_battles`; needs pyarrow, so it is
                   imported only by the command line, not here)
"""

from __future__ import annotations

from leaderboard.rating.bootstrap import INTERVAL, INTERVALS, Ratings, rate
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
from leaderboard.rating.ranks import rank_from_intervals, rank_range
from leaderboard.rating.rated import MIN_VOTES, rated_models
from leaderboard.rating.records import STYLE_KEYS, BattleFileError, iter_records, read_battle, style_counts
from leaderboard.rating.sandwich import centred_variance, sandwich_covariance
from leaderboard.rating.style import STYLE_FEATURES, STYLE_RIDGE, StyleRatings, rate_style, style_delta
from leaderboard.rating.weights import (
    PAIR_FREQUENCY_FLOOR,
    WEIGHTINGS,
    pair_frequency_weights,
    propensity_weights,
)

__all__ = [
    "A_WINS",
    "BOTH_BAD",
    "B_WINS",
    "CENTRE",
    "INTERVAL",
    "INTERVALS",
    "MIN_VOTES",
    "PAIR_FREQUENCY_FLOOR",
    "RIDGE",
    "SCALE",
    "STYLE_FEATURES",
    "STYLE_KEYS",
    "STYLE_RIDGE",
    "TIE",
    "WEIGHTINGS",
    "WINNERS",
    "WINNER_NAMES",
    "BattleFileError",
    "PairCounts",
    "Ratings",
    "StyleRatings",
    "aggregate",
    "battle_count_matrix",
    "centred_variance",
    "fit",
    "iter_records",
    "pair_frequency_weights",
    "predicted_win_matrix",
    "propensity_weights",
    "rank_from_intervals",
    "rank_range",
    "rate",
    "rate_style",
    "rated_models",
    "read_battle",
    "sandwich_covariance",
    "style_counts",
    "style_delta",
    "win_rate_matrix",
]
