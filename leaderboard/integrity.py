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
`alpha` / STAGES, judged on its first min_votes * 2**k votes (`_stages`: the sweep repeats). All
randomness comes from the generator passed in: same generator state, same result.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.optimize
import scipy.special
import scipy.stats

from leaderboard.rating import A_WINS, B_WINS, BOTH_BAD, TIE, predicted_win_matrix

# Per voter, both tests together, shared over the stages: low enough that honest voters with taste,
# random clicks and shared networks stay well under the 1% allowed (bench/rigging.py measures it).
ALPHA = 0.005
# Fewer votes than this say too little about a voter to risk excluding them.
MIN_VOTES = 10
CHECKPOINTS = 5
# Looks at a voter as its votes double (10, 20, ... 1280 and beyond), alpha shared evenly among them.
STAGES = 8
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
    w = -scipy.special.ndtri(u)
    if taste_sd is None:  # a property of the voters, so estimated from all their votes
        taste_sd = _targeted(v, a, b, w, scored, theta.size, None)[3]
    judged = _stages(votes, scored, min_votes)
    keep = _first(v, judged)
    v, a, b, w, u, q, draws = v[keep], a[keep], b[keep], w[keep], u[keep], q[keep], draws[keep]
    p = np.where(q < 0.5, u, 1.0 - u)
    surprise = _surprise(v, p, draws[:, 2:], judged, scored, min_votes)
    z, target, targeted, tau = _targeted(v, a, b, w, scored, theta.size, taste_sd)
    flagged = scored & (2 * np.fmin(surprise, targeted) <= alpha / STAGES)
    return VoterScores(votes, scored, surprise, z, target, targeted, flagged, tau)


def _stages(count: np.ndarray, scored: np.ndarray, minimum: int) -> np.ndarray:
    """Each voter's count judged: minimum * 2**k <= count at stage k, or all from the last stage.

    A sweep runs again and again while voters keep voting. A voter is judged only at doubling counts
    (its first minimum * 2**k votes) and each of the STAGES looks gets alpha / STAGES, so a voter
    spends at most alpha however often the sweep runs (the board moving between sweeps aside; the
    last stage, which judges everything, is looked at again as votes come). The price: votes cast
    since the last doubling wait for the next one."""
    stage = np.zeros(count.size, dtype=np.int64)
    stage[scored] = np.minimum(STAGES - 1, np.floor(np.log2(count[scored] / minimum)).astype(np.int64))
    judged = np.where(stage < STAGES - 1, minimum * 2**stage, count)
    return np.where(scored, judged, 0)


def _first(v: np.ndarray, judged: np.ndarray) -> np.ndarray:
    """Which rows are among their voter's first judged[voter] rows (rows in the order cast)."""
    order = np.argsort(v, kind="stable")
    start = np.concatenate(([0], np.cumsum(np.bincount(v, minlength=judged.size))[:-1]))
    rank = np.empty(v.size, dtype=np.int64)
    rank[order] = np.arange(v.size) - start[v[order]]
    return rank < judged[v]


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


# --- Selective voting, judged per model and day --------------------------------------------------
# Before the vote nobody knows which models answered, so whether a battle gets a vote cannot depend
# on its models, apart from each model's own lasting pull (one that errors or refuses is voted on
# less, by everyone). A rigger votes where it recognises its target and walks away from the rest:
# on the days it works, battles with the target are voted on far more often than that model's usual
# rate. This is judged on battles, voted or not, pooled over every voter, so it holds however many
# cookies and networks the rigger spreads over; and since it never looks at who won, excluding a
# flagged day's votes on the model freezes its rating there without pushing it either way.

# Battles with the model that day below this say too little to risk a day's votes.
MIN_WINDOW_BATTLES = 20
# A flagged day sets aside the new voters' votes on the model that day, honest ones with the rest,
# so it needs stronger evidence than a voter's flag.
WINDOW_ALPHA = ALPHA / 10


@dataclass(frozen=True)
class WindowScores:
    """One row per window, one column per model."""

    battles: np.ndarray  # int: battles with the model in the window
    voted: np.ndarray  # int: of those, voted on
    expected: np.ndarray  # votes expected at the model's usual rate, given the window's votes
    z: np.ndarray  # over-voting, scaled by the days' dispersion (NaN where no battles)
    p: np.ndarray  # one-sided, Bonferroni-corrected over the models with battles in the window
    flagged: np.ndarray  # bool
    dispersion: float  # variance of honest days relative to the hypergeometric null (>= 1)
    pull: np.ndarray  # per model: its lasting odds of being voted on against the others (psi)


def score_windows(
    window: np.ndarray,
    model_a: np.ndarray,
    model_b: np.ndarray,
    voted: np.ndarray,
    n_windows: int,
    n_models: int,
    *,
    alpha: float = WINDOW_ALPHA,
    min_battles: int = MIN_WINDOW_BATTLES,
) -> WindowScores:
    """Which (window, model) cells had their battles voted on far beyond the model's usual rate.

    Every battle is given, voted or not. In window d, with B battles of which V were voted, the votes
    among the T battles with model m follow Fisher's noncentral hypergeometric law with odds psi_m, the
    model's lasting odds of being voted on against the other models: the median over windows of the
    window's log odds ratio, so a few attacked days cannot raise their own bar. Honest days vary more
    than that law says (outages, prompt mixes); the variance factor is the median z^2 over the cells
    with enough battles, over the chi-squared(1) median, and never below 1.
    """
    w = np.asarray(window, dtype=np.int64)
    a = np.asarray(model_a, dtype=np.int64)
    b = np.asarray(model_b, dtype=np.int64)
    v = np.asarray(voted, dtype=bool)
    if not (w.ndim == 1 and w.shape == a.shape == b.shape == v.shape):
        raise ValueError("window, model_a, model_b and voted must be 1-D arrays of the same length")
    if w.size and (w.min() < 0 or w.max() >= n_windows):
        raise ValueError(f"window indices must lie in [0, {n_windows})")
    if a.size and (min(a.min(), b.min()) < 0 or max(a.max(), b.max()) >= n_models):
        raise ValueError(f"model indices must lie in [0, {n_models})")
    if min_battles < 1 or not 0 < alpha < 1:
        raise ValueError("min_battles must be >= 1 and alpha in (0, 1)")

    cells = n_windows * n_models
    per_window = np.bincount(w, minlength=n_windows)
    votes_window = np.bincount(w, v, minlength=n_windows)
    ka, kb = w * n_models + a, w * n_models + b
    t = (np.bincount(ka, minlength=cells) + np.bincount(kb, minlength=cells)).reshape(n_windows, n_models)
    x = (np.bincount(ka, v, cells) + np.bincount(kb, v, cells)).reshape(n_windows, n_models)
    big_b = np.broadcast_to(per_window[:, None], t.shape)
    big_v = np.broadcast_to(votes_window[:, None], t.shape)

    # Each window's 2x2 table (battles with m or without, voted or not), with half a battle added
    # to each count so an empty one stays finite.
    log_or = np.log((x + 0.5) * (big_b - t - big_v + x + 0.5) / ((t - x + 0.5) * (big_v - x + 0.5)))
    present = t > 0
    psi = np.ones(n_models)
    for m in range(n_models):
        if present[:, m].any():
            psi[m] = np.exp(np.median(log_or[present[:, m], m]))

    testable = present & (big_v > 0) & (big_v < big_b) & (t < big_b)
    expected = np.full(t.shape, np.nan)
    var = np.full(t.shape, np.nan)
    if testable.any():
        odds = np.broadcast_to(psi[None, :], t.shape)
        mean, variance = scipy.stats.nchypergeom_fisher.stats(
            big_b[testable], t[testable], big_v[testable], odds[testable], moments="mv"
        )
        expected[testable], var[testable] = mean, variance
    z = np.full(t.shape, np.nan)
    ok = testable & (var > 0)
    z[ok] = (x[ok] - expected[ok]) / np.sqrt(var[ok])

    wide = ok & (t >= min_battles)
    dispersion = 1.0
    if wide.any():
        dispersion = max(1.0, float(np.median(z[wide] ** 2)) / _CHI2_1_MEDIAN)
    z = z / np.sqrt(dispersion)
    models_present = present.sum(axis=1, keepdims=True)
    p = np.where(ok, np.minimum(1.0, scipy.stats.norm.sf(z) * models_present), np.nan)
    flagged = wide & (p <= alpha)
    return WindowScores(t, x, expected, z, p, flagged, dispersion, psi)


@dataclass(frozen=True)
class SelectiveScores:
    """One entry per voter. Voters with fewer than min_battles battles have NaN p and model -1."""

    battles: np.ndarray  # int: all the voter's battles
    voted: np.ndarray  # int: votes among the battles judged (the first min_battles * 2**k)
    p: np.ndarray  # one-sided, Bonferroni-corrected over the models the voter voted on
    model: np.ndarray  # int: the model whose battles the voter voted on most beyond chance
    flagged: np.ndarray  # bool


def score_selective(
    voter: np.ndarray,
    model_a: np.ndarray,
    model_b: np.ndarray,
    voted: np.ndarray,
    n_voters: int,
    pull: np.ndarray,
    *,
    alpha: float = ALPHA,
    min_battles: int = MIN_VOTES,
) -> SelectiveScores:
    """Which voters vote on the battles of one model far more often than on the others.

    Every battle is given, voted or not. A voter with B battles, V of them voted, T with model m and x
    of those voted: x follows Fisher's noncentral hypergeometric law with odds pull[m] (the model's
    lasting pull, `score_windows`) for a voter who cannot see the models before voting. The p-value
    is exact; the fast central law screens the cells first, since the pull moves it little. Voters are
    judged in stages on their first battles, as `score_voters` judges votes.
    """
    v = np.asarray(voter, dtype=np.int64)
    a = np.asarray(model_a, dtype=np.int64)
    b = np.asarray(model_b, dtype=np.int64)
    d = np.asarray(voted, dtype=bool)
    pull = np.asarray(pull, dtype=np.float64)
    if not (v.ndim == 1 and v.shape == a.shape == b.shape == d.shape):
        raise ValueError("voter, model_a, model_b and voted must be 1-D arrays of the same length")
    if v.size and (v.min() < 0 or v.max() >= n_voters):
        raise ValueError(f"voter indices must lie in [0, {n_voters})")
    n_models = pull.size
    if a.size and (min(a.min(), b.min()) < 0 or max(a.max(), b.max()) >= n_models):
        raise ValueError(f"model indices must lie in [0, {n_models}), one pull each")

    all_battles = np.bincount(v, minlength=n_voters)
    judged = _stages(all_battles, all_battles >= min_battles, min_battles)
    first = _first(v, judged)  # staged like `score_voters`, on battles given in the order started
    v, a, b, d = v[first], a[first], b[first], d[first]
    battles = judged
    votes = np.bincount(v, d, minlength=n_voters).astype(np.int64)
    scored = (battles >= min_battles) & (votes > 0) & (votes < battles)
    keep = scored[v]
    # Cells (voter, model) only for the voters scored, and only where the voter voted on the model.
    key = np.concatenate([v[keep] * n_models + a[keep], v[keep] * n_models + b[keep]])
    was_voted = np.concatenate([d[keep], d[keep]])
    cells, inverse = np.unique(key, return_inverse=True)
    t = np.bincount(inverse, minlength=cells.size)
    x = np.bincount(inverse, was_voted, minlength=cells.size).astype(np.int64)
    who, model = cells // n_models, cells % n_models
    met = np.bincount(who[x > 0], minlength=n_voters)

    big_b, big_v = battles[who], votes[who]
    p = np.ones(cells.size)
    screen = (x > 0) & (scipy.stats.hypergeom.sf(x - 1, big_b, t, big_v) * met[who] <= 100 * alpha)
    p[screen] = scipy.stats.nchypergeom_fisher.sf(
        x[screen] - 1, big_b[screen], t[screen], big_v[screen], pull[model[screen]]
    )
    p = np.minimum(1.0, p * met[who])

    out_p = np.full(n_voters, np.nan)
    out_model = np.full(n_voters, -1, dtype=np.int64)
    order = np.lexsort((p, who))  # each voter's cells, smallest p first
    first = order[np.r_[True, who[order][1:] != who[order][:-1]]] if order.size else order
    out_p[who[first]], out_model[who[first]] = p[first], model[first]
    out_p[~scored] = np.nan
    out_model[~scored] = -1
    flagged = scored & (np.nan_to_num(out_p, nan=1.0) <= alpha / STAGES)
    return SelectiveScores(all_battles, votes, out_p, out_model, flagged)
