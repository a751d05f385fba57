"""Newton's method for many bootstrap rounds at once, safeguarded by a backtracking line search.

Each round is a column: the rounds share one problem (its data per round selected by `cols`) and
drop out of the batch as they converge. Newton stops when a step is smaller than `tol` logits in
every coordinate; convergence is quadratic there, so the error left after taking that last step is
of the order of its square.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

# Newton stops when every coordinate of a step is below this (logits).
_STEP_TOL = 1e-6
_MAX_ITER = 200
_MAX_HALVINGS = 50
# A trial point must lower the objective by the Armijo fraction of the predicted decrease; the
# relative slack absorbs rounding in sums of millions of terms near the optimum.
_ARMIJO = 1e-4
_ROUNDOFF = 1e-12


class _Problem(Protocol):
    """A penalised negative log-likelihood over d parameters for r bootstrap rounds at once.

    `cols` selects the rounds (columns of the problem's per-round data) that `params` (d, len(cols))
    belong to, so converged rounds drop out of the batch.
    """

    def loss_grad(self, params: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray, Any]: ...

    def hessian(self, curvature: Any, cols: np.ndarray) -> np.ndarray: ...


def _newton(
    problem: _Problem,
    start: np.ndarray,
    tol: float = _STEP_TOL,
    first: tuple[np.ndarray, np.ndarray, Any] | None = None,
) -> np.ndarray:
    """Minimise `problem` for every round (column of start) by line-searched Newton; returns (d, r).

    first, if given, is problem.loss_grad at start, computed more cheaply by the caller.
    """
    x = np.array(start, dtype=np.float64, copy=True)
    live = np.arange(x.shape[1])
    loss, grad, curv = problem.loss_grad(x, live) if first is None else first
    for _ in range(_MAX_ITER):
        step = -np.linalg.solve(problem.hessian(curv, live), grad.T[:, :, None])[:, :, 0].T
        # Near the optimum Newton converges quadratically: a step this small leaves an error of the
        # order of its square, so take it and stop without paying for another evaluation.
        done = np.abs(step).max(axis=0, initial=0.0) <= tol
        x[:, live[done]] += step[:, done]
        if done.all():
            break
        if done.any():
            going = ~done
            live, loss, grad, step, curv = live[going], loss[going], grad[:, going], step[:, going], None
        loss, grad, curv, moved = _line_search(problem, x, live, loss, grad, step)
        live = live[moved]
        if not live.size:
            break
    return x


def _line_search(
    problem: _Problem, x: np.ndarray, live: np.ndarray, loss: np.ndarray, grad: np.ndarray, step: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Halve each round's step until the Armijo condition holds; moves x[:, live] in place.

    Returns loss, gradient and curvature at the new points, and a mask of the rounds that moved: a
    round that cannot lower its objective at all sits at the optimum to within rounding.
    """
    slope = np.einsum("dr,dr->r", grad, step)
    t = np.ones(live.size)
    pending = np.arange(live.size)
    new_loss = np.empty(live.size)
    new_grad = np.empty_like(grad)
    new_curv: np.ndarray | None = None
    for _ in range(_MAX_HALVINGS):
        cols = live[pending]
        trial = x[:, cols] + t[pending] * step[:, pending]
        l_try, g_try, c_try = problem.loss_grad(trial, cols)
        bound = loss[pending] + _ARMIJO * t[pending] * slope[pending] + _ROUNDOFF * np.abs(loss[pending])
        ok = l_try <= bound
        if ok.all() and pending.size == live.size:  # the usual case: full steps everywhere
            x[:, live] = trial
            return l_try, g_try, c_try, np.ones(live.size, dtype=bool)
        took = pending[ok]
        x[:, live[took]] = trial[:, ok]
        new_loss[took] = l_try[ok]
        new_grad[:, took] = g_try[:, ok]
        if new_curv is None:
            new_curv = np.empty((c_try.shape[0], live.size))
        new_curv[:, took] = c_try[:, ok]
        pending = pending[~ok]
        if not pending.size:
            break
        t[pending] *= 0.5
    assert new_curv is not None
    moved = np.ones(live.size, dtype=bool)
    moved[pending] = False
    return new_loss[moved], new_grad[:, moved], new_curv[:, moved], moved
