"""Anomalous voters: who votes far beyond what the board predicts. Pure numpy/scipy, arrays in and out.

A voter is whatever the caller groups votes by: a visitor, or a network (a client address prefix).
Each voter with at least `min_votes` votes gets two tests against the board's strengths theta (the
rating engine's natural log-odds, as `rating.fit` returns them), both built on one randomised
probability integral transform per vote. With q the board's probability that A beats B, a vote gets
u ~ U(0, q) when A won and u ~ U(q, 1) when B won: for an honest vote (one drawn from the board's
model) u is exactly uniform, and small when A did better than predicted.

Ties and both-bad votes
    The rating engine counts them as half a win for each side; here each is resolved to a win for A or
    for B by a fair coin. Under the engine's model A then wins with probability exactly q, whatever
    the tie rate, so both tests stay exact for honest voters and no tie rate needs estimating.

Surprise (Chiang et al. 2024, arXiv 2403.04132, section 5.2)
    The vote's p-value is u when A was the underdog (q < 1/2), else 1 - u: small for an upset.
    Fisher's statistic -2 sum log p over the voter's first j votes is chi-squared with 2j degrees of
    freedom; it is tested at `checkpoints` random j per voter (Bonferroni over them), so a voter
    cannot know which stretch of their history is judged.

Targeted (Min et al. 2025, arXiv 2501.17858)
    Each vote gives model A the normal score w = -Phi^-1(u) and model B -w: exactly N(0, 1) for an
    honest vote, positive when the model did better than predicted. Per (voter, model), the sum W of
    the scores of the voter's n battles with that model is N(0, n). Honest voters differ in taste (a
    personal shift of a model's mean score, standard deviation tau per battle), which adds tau^2 n^2
    to W's variance, so z = W / sqrt(n + tau^2 n^2). A voter is tested on its largest |z| (Bonferroni
    over the models it met): that catches votes pushing one model far beyond prediction, for it
    (target-only rigging) or against it (omnipresent rigging against the target's neighbours). tau is
    estimated from the voters themselves by a median, so a minority of riggers cannot inflate it: it
    is the tau at which the median z^2 of the (voter, model) cells with at least `_TASTE_CELL_BATTLES`
    battles is the median of chi-squared with one degree of freedom. Normal scores rather than the
    plain excess of wins keep the tail exact where q is near 0 or 1 and a cell has few battles.

A voter is flagged when either test's p-value, doubled (Bonferroni over the two tests), is at most
`alpha`. All randomness comes from the generator passed in: same generator state, same result.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.optimize
import scipy.special
import scipy.stats

from leaderboard.rating import A_WINS, B_WINS, BOTH_BAD, TIE, predicted_win_matrix

# Per voter, both tests together. The bench's honest visitors and networks (personal taste, random
# clicks, shared networks) are flagged at about 0.3%: a margin under the 1% allowed for real voters.
ALPHA = 0.005
# Fewer votes than this say too little about a voter to risk excluding them.
MIN_VOTES = 10
CHECKPOINTS = 5
# Cells with this many battles or more carry the taste dispersion; fewer are mostly sampling noise.
_TASTE_CELL_BATTLES = 8
_CHI2_1_MEDIAN = float(scipy.stats.chi2.median(1))


@dataclass(frozen=True)
class VoterScores:
    """One entry per voter index. Voters with fewer than min_votes votes have NaN p-values and z,
    target_model -1, and are never flagged."""

    votes: np.ndarray  # int
    scored: np.ndarray  # bool: votes >= min_votes
    surprise_p: np.ndarray  # Fisher's method at random checkpoints, Bonferroni-corrected over them
    targeted_z: np.ndarray  # signed z of the model with the largest |z| (positive: voted for it)
    target_model: np.ndarray  # int: that model
    targeted_p: np.ndarray  # two-sided p of that z, Bonferroni-corrected over the models met
    flagged: np.ndarray  # bool
    taste_sd: float  # tau used


def score_voters(
    voter: np.ndarray,
    model_a: np.ndarray,
    model_b: np.ndarray,
    outcome: np.ndarray,
    theta: np.ndarray,
    n_voters: int,
    *,
    rng: np.random.Generator,
    alpha: float = ALPHA,
    min_votes: int = MIN_VOTES,
    checkpoints: int = CHECKPOINTS,
    taste_sd: float | None = None,
) -> VoterScores:
    """Score every voter with at least min_votes votes; votes are given in the order they were cast.

    theta holds the board's strengths in natural log-odds (`rating.fit`). taste_sd, if given, replaces
    the estimate of tau (see the module docstring).
    """
    v = np.asarray(voter, dtype=np.int64)
    a = np.asarray(model_a, dtype=np.int64)
    b = np.asarray(model_b, dtype=np.int64)
    o = np.asarray(outcome)
    if not (v.ndim == 1 and v.shape == a.shape == b.shape == o.shape):
        raise ValueError("voter, model_a, model_b and outcome must be 1-D arrays of the same length")
    if v.size and (v.min() < 0 or v.max() >= n_voters):
        raise ValueError(f"voter indices must lie in [0, {n_voters})")
    theta = np.asarray(theta, dtype=np.float64)
    if a.size and (min(a.min(), b.min()) < 0 or max(a.max(), b.max()) >= theta.size):
        raise ValueError(f"model indices must lie in [0, {theta.size}), one strength each in theta")
    if not np.isin(o, (A_WINS, B_WINS, TIE, BOTH_BAD)).all():
        raise ValueError("outcome must hold A_WINS, B_WINS, TIE or BOTH_BAD")
    if min_votes < 1 or checkpoints < 1 or not 0 < alpha < 1:
        raise ValueError("min_votes and checkpoints must be >= 1 and alpha in (0, 1)")

    q = predicted_win_matrix(theta)[a, b]
    # Every draw belongs to one vote (a voter's checkpoints to its first vote's row), so appending
    # votes leaves the draws of the earlier ones as they were.
    draws = rng.random((v.size, 2 + checkpoints))
    x = 1.0 - draws[:, 0]  # in (0, 1]: u stays inside (0, 1), so its logs and quantiles are finite
    a_won = (o == A_WINS) | ((o >= TIE) & (draws[:, 1] < 0.5))
    u = np.where(a_won, q * x, 1.0 - (1.0 - q) * x)

    votes = np.bincount(v, minlength=n_voters)
    scored = votes >= min_votes
    p = np.where(q < 0.5, u, 1.0 - u)
    surprise = _surprise(v, p, draws[:, 2:], votes, scored, min_votes)
    z, target, targeted, tau = _targeted(v, a, b, -scipy.special.ndtri(u), scored, theta.size, taste_sd)
    flagged = scored & (2 * np.fmin(surprise, targeted) <= alpha)
    return VoterScores(votes, scored, surprise, z, target, targeted, flagged, tau)


def _surprise(
    v: np.ndarray, p: np.ndarray, draws: np.ndarray, votes: np.ndarray, scored: np.ndarray, min_votes: int
) -> np.ndarray:
    """Per voter: Fisher's combination of per-vote p-values at random checkpoints, Bonferroni over them."""
    order = np.argsort(v, kind="stable")  # each voter's votes, in the order cast
    running = np.concatenate(([0.0], np.cumsum(-2.0 * np.log(p[order]))))
    start = np.concatenate(([0], np.cumsum(votes)[:-1]))

    who = np.flatnonzero(scored)
    first = start[who]
    span = votes[who] - min_votes + 1
    j = min_votes + (draws[order[first]] * span[:, None]).astype(np.int64)
    stat = running[first[:, None] + j] - running[first[:, None]]
    out = np.full(votes.size, np.nan)
    out[who] = np.minimum(1.0, draws.shape[1] * scipy.stats.chi2.sf(stat, 2 * j).min(axis=1))
    return out


def _targeted(
    v: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    w: np.ndarray,
    scored: np.ndarray,
    n_models: int,
    taste_sd: float | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Per voter: the (voter, model) cell with the largest taste-adjusted |z|, and its corrected p."""
    keep = scored[v]
    # Cells only for scored voters, indexed compactly: a fresh visitor per battle would otherwise
    # make the table as long as the votes times the models.
    row = (np.cumsum(scored) - 1)[v[keep]] * n_models
    cells = int(scored.sum()) * n_models
    ka, kb, wk = row + a[keep], row + b[keep], w[keep]
    total = np.bincount(ka, wk, cells) - np.bincount(kb, wk, cells)
    n = np.bincount(ka, minlength=cells) + np.bincount(kb, minlength=cells)

    tau = _taste_sd(total, n) if taste_sd is None else float(taste_sd)
    met = n > 0
    z = np.zeros(cells)
    z[met] = total[met] / np.sqrt(n[met] * (1.0 + tau**2 * n[met]))
    z = z.reshape(-1, n_models)
    best = np.abs(z).argmax(axis=1)
    best_z = z[np.arange(best.size), best]
    models_met = met.reshape(-1, n_models).sum(axis=1)

    out_z = np.full(scored.size, np.nan)
    out_model = np.full(scored.size, -1, dtype=np.int64)
    out_p = np.full(scored.size, np.nan)
    out_z[scored] = best_z
    out_model[scored] = best
    out_p[scored] = np.minimum(1.0, 2.0 * scipy.stats.norm.sf(np.abs(best_z)) * models_met)
    return out_z, out_model, out_p, tau


def _taste_sd(total: np.ndarray, n: np.ndarray) -> float:
    """tau at which the median z^2 of the well-filled cells is the chi-squared(1) median; 0 if below."""
    big = n >= _TASTE_CELL_BATTLES
    if not big.any():
        return 0.0
    ratio, m = total[big] ** 2 / n[big], n[big].astype(np.float64)

    def excess_median(tau2: float) -> float:
        return float(np.median(ratio / (1.0 + tau2 * m))) - _CHI2_1_MEDIAN

    if excess_median(0.0) <= 0:
        return 0.0
    high = 1.0
    while excess_median(high) > 0:
        high *= 4.0
    return float(np.sqrt(scipy.optimize.brentq(excess_median, 0.0, high, xtol=1e-8)))
