"""A compiled minimizer of the profiled criterion of a small linear mixed model.

For a model whose rest is small (:attr:`FastObjective.small
<mixedmodels.linalg.fast_lmm.FastObjective>`: sleepstudy, the refits of a parametric
bootstrap), one evaluation of the criterion and its exact gradient costs some ten
microseconds, less than an optimizer's Python loop spends around it. Here the whole search runs
in one compiled call: a quasi-Newton method (BFGS on the inverse Hessian) with lower bounds by
projection, in coordinates scaled by each parameter's natural size, with the same stopping rules
as :func:`mixedmodels.optim.minimize_with_gradient` (projected gradient below ``gtol``, or a
predicted remaining decrease below 1e-12 of the criterion) and the same care at the bounds (a
variance parameter at zero is tried a little inside, and parameters that end next to their
bound are set to it if that is no worse).

The criterion is :func:`criterion_and_gradient` of the ``data`` the search is given, chosen when
the search is compiled for that data's layout: here the profiled criterion of a linear mixed
model; :mod:`mixedmodels._glmm_kernels` adds the Laplace criterion of a generalized linear
mixed model over (theta, beta). The same search, compiled once per layout (and cached), serves
both. Given a Python function as its criterion, :func:`search` runs the same steps uncompiled:
for a larger linear model whose evaluations cost milliseconds (LAPACK's factorizations), with a
first inverse Hessian from the information (see :mod:`mixedmodels.lmm`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numba as nb
import numpy as np
from numba import types
from numba.extending import overload

from mixedmodels.linalg import one_term
from mixedmodels.linalg.lmm_kernels import (
    _small_cholesky,
    build,
    cholesky_inverse,
    gradient,
    objective_parts,
)
from mixedmodels.linalg.lmm_kernels import criterion as _criterion
from mixedmodels.optim import PREDICTED_DECREASE_MESSAGE, OptSummary

#: how :func:`minimize` ended
CONVERGED_GRADIENT = 1
CONVERGED_DECREASE = 2
CONVERGED_STEP = 3
MAXEVAL = -1
FAILED = -2

MESSAGES = {
    CONVERGED_GRADIENT: "CONVERGENCE: NORM OF PROJECTED GRADIENT <= PGTOL",
    CONVERGED_DECREASE: PREDICTED_DECREASE_MESSAGE,
    CONVERGED_STEP: "CONVERGENCE: NO FURTHER DECREASE POSSIBLE",
    MAXEVAL: "STOP: TOTAL NO. OF F,G EVALUATIONS EXCEEDS LIMIT",
    FAILED: "ABNORMAL: THE CRITERION COULD NOT BE EVALUATED AT THE START",
}


def _jit(func):
    return nb.njit(cache=True, nogil=True)(func)


#: the number of entries of a linear mixed model's data (as
#: :meth:`FastObjective.minimize <mixedmodels.linalg.fast_lmm.FastObjective.minimize>` lays it out)
LMM_DATA_SIZE = 22


def criterion_and_gradient(x, data, grad):
    """The criterion at x and its gradient (into ``grad``) for the model described by
    ``data``; compiled code gets the implementation registered for the data's layout (with
    numba's ``overload``). Called from Python (:func:`search` with a Python criterion, which
    runs :func:`minimize` uncompiled), ``data`` is that criterion: ``data(x, grad)``."""
    return data(x, grad)


@overload(criterion_and_gradient, jit_options={"cache": True, "nogil": True})  # type: ignore[typeddict-unknown-key]
def _lmm_criterion_and_gradient(x, data, grad):  # pragma: no cover - compiled
    if isinstance(data, types.BaseTuple) and len(data) == LMM_DATA_SIZE:
        return _lmm_evaluate
    return None


one_term.register(criterion_and_gradient)


def _lmm_evaluate(x, data, grad):  # pragma: no cover - compiled (through the overload)
    """The profiled criterion of a linear mixed model at theta = x and its gradient (the
    kernels' pieces called from here directly: each level of calls in between would have the
    pieces below it compiled once more, see :func:`minimize`)."""
    (sizes, toff, A11, cval, cptr, crow, rowterm, rowgrp, A22, rterm, rlev, roff, rsize, m_u,
     p, heavy, plev, pbeg, pend, reml, n, slw) = data  # fmt: skip
    ok, L11, C, L22, _ = build(
        x, sizes, toff, A11, cval, cptr, crow, rowterm, rowgrp, A22, rterm, rlev, roff, rsize,
        m_u, heavy, plev, pbeg, pend,
    )  # fmt: skip
    if ok:
        ok = _small_cholesky(L22, L22.shape[0])
    if not ok:
        return math.inf
    ldz, ldx, r2 = objective_parts(L11, L22, m_u, p)
    if r2 > 0.0:
        Sig = cholesky_inverse(L22, m_u + p if reml else m_u)
        gradient(
            x, sizes, toff, A11, cval, cptr, crow, rowterm, rowgrp, A22, rterm, rlev, roff,
            rsize, m_u, p, reml, n, L11, C, L22, Sig, heavy, plev, pbeg, pend, grad,
            np.zeros((0, A11.shape[1], A11.shape[1])), np.bool_(True),
        )  # fmt: skip
    return _criterion(np.bool_(True), ldz, ldx, r2, reml, n, p, slw)


@_jit
def criterion_at(x, data):  # pragma: no cover - compiled
    """(criterion, gradient) at x for the model described by ``data``, as the search sees
    them (for checks of a layout's criterion against another's)."""
    grad = np.zeros(x.shape[0])
    f = criterion_and_gradient(x, data, grad)
    return f, grad


@_jit
def _cleared(grad):  # pragma: no cover - compiled
    """grad set to zero (the criterion adds its gradient into it)."""
    for j in range(grad.shape[0]):
        grad[j] = 0.0
    return grad


@_jit
def _recorded(f, x, grad, path, values, count):  # pragma: no cover - compiled
    """The criterion f at x (infinite, with a zero gradient, where it is not finite), recorded
    in the path."""
    if not math.isfinite(f):
        f = math.inf
        for j in range(grad.shape[0]):
            grad[j] = 0.0
    k = count[0]
    if k < values.shape[0]:
        for j in range(x.shape[0]):
            path[k, j] = x[j]
        values[k] = f
    count[0] = k + 1
    return f


@_jit
def _reset_inverse_hessian(H, H0, given):  # pragma: no cover - compiled
    """H set to H0 where ``given``, to the identity otherwise."""
    d = H.shape[0]
    for i in range(d):
        for j in range(d):
            H[i, j] = H0[i, j] if given else (1.0 if i == j else 0.0)


# Each data layout compiles its own `minimize`, and numba optimizes and emits again, in a
# caller's module, every function the caller links to: each level of calls between the search
# and the criterion would cost the criterion's compilation once more. So the search is written
# out in `minimize` itself, and each evaluation calls the criterion directly (between the two
# small helpers above, which link to nothing).


@_jit
def minimize(x0, lower, scale, H0, exact, data, gtol, dec_abs, dec_rel, maxeval, boundary_tol,
             path, values):  # pragma: no cover - compiled  # fmt: skip
    """Minimize the criterion of ``data`` over x from x0, with H0 the first inverse Hessian in the
    scaled coordinates (``exact``: a true one, used as it is; otherwise the identity, scaled
    after the first step). Returns (status, x, f, gradient at x, number of evaluations);
    ``path`` and ``values`` receive each theta evaluated and its criterion (as many as they
    hold).

    The search: BFGS with projection on the bounds, in the scaled coordinates
    z = (x - x0) / scale. A variance parameter at zero is a stationary point whatever the data
    (the criterion is even in it), and next to zero its gradient is next to zero: after each
    search, a little inside is tried, and the search starts again from there if that is better
    (three times at most)."""
    d = x0.shape[0]
    count = np.zeros(1, dtype=np.int64)
    z = np.zeros(d)
    g = np.empty(d)
    x = np.empty(d)
    for i in range(d):
        x[i] = max(x0[i], lower[i])
    f = _recorded(criterion_and_gradient(x, data, _cleared(g)), x, g, path, values, count)
    if not math.isfinite(f):
        return FAILED, x, f, g, count[0]
    gz = np.empty(d)
    for i in range(d):
        gz[i] = g[i] * scale[i]
    H = np.empty((d, d))
    xt = np.empty(d)
    zt = np.empty(d)
    gt = np.empty(d)
    gzt = np.empty(d)
    dirn = np.empty(d)
    Hy = np.empty(d)
    free = np.empty(d, dtype=np.bool_)
    zl = np.empty(d)
    prev_z = np.empty(d)
    prev_g = np.empty(d)
    for i in range(d):
        zl[i] = (lower[i] - x0[i]) / scale[i] if math.isfinite(lower[i]) else -math.inf
    status = FAILED
    for rnd in range(4):
        # -- the search from z (f, g at it; gz the scaled gradient); z, g, gz end at the best.
        # A restart begins a little inside a bound, where the criterion curves down in the
        # freed parameter (it is even in it) and its gradient there is next to zero: no given
        # inverse Hessian applies, and its first step has unit length (as L-BFGS-B's)
        given = exact and rnd == 0
        _reset_inverse_hessian(H, H0, given)
        first = True
        prev_ok = False
        while True:
            # the free variables and the projected gradient
            pg = 0.0
            for i in range(d):
                free[i] = not (z[i] <= zl[i] and gz[i] > 0.0)
                if free[i]:
                    pg = max(pg, abs(gz[i]))
            if pg <= gtol:
                status = CONVERGED_GRADIENT
                break
            # predicted remaining decrease |g|^2 / (2c), c the curvature along the last step
            if prev_ok:
                dz = dg = gg = 0.0
                small = True
                for i in range(d):
                    gi = gz[i] if free[i] else 0.0
                    step = z[i] - prev_z[i]
                    dz += step * step
                    dg += step * (gi - prev_g[i])
                    gg += gi * gi
                    if abs(gi) > 1e-3:
                        small = False
                curv = dg / max(dz, 1e-300)
                if curv > 0.0 and small and gg / (2.0 * curv) < max(dec_abs, dec_rel * abs(f)):
                    status = CONVERGED_DECREASE
                    break
            for i in range(d):
                prev_z[i] = z[i]
                prev_g[i] = gz[i] if free[i] else 0.0
            prev_ok = True
            # the quasi-Newton direction on the free variables
            slope = 0.0
            for i in range(d):
                acc = 0.0
                if free[i]:
                    for j in range(d):
                        if free[j]:
                            acc -= H[i, j] * gz[j]
                dirn[i] = acc
                slope += acc * gz[i]
            if not slope < 0.0:  # not a descent direction: steepest descent, H afresh
                slope = 0.0
                for i in range(d):
                    dirn[i] = -gz[i] if free[i] else 0.0
                    slope -= dirn[i] * dirn[i]
                _reset_inverse_hessian(H, H0, given)
            step_len = 1.0
            if first and not given:  # as L-BFGS-B: a first step of at most unit length
                norm = 0.0
                for i in range(d):
                    norm += dirn[i] * dirn[i]
                norm = math.sqrt(norm)
                if norm > 1.0 or (rnd > 0 and norm > 0.0):  # (of unit length on a restart)
                    step_len = 1.0 / norm
            # backtracking (Armijo) along the projected path
            accepted = False
            out_of_evaluations = False
            ft = f
            for _ in range(40):
                if count[0] >= maxeval:
                    out_of_evaluations = True
                    break
                for i in range(d):
                    zt[i] = max(z[i] + step_len * dirn[i], zl[i])
                    xt[i] = max(x0[i] + scale[i] * zt[i], lower[i])
                ft = _recorded(
                    criterion_and_gradient(xt, data, _cleared(gt)), xt, gt, path, values, count
                )
                decrease = 0.0
                for i in range(d):
                    gzt[i] = gt[i] * scale[i]
                    decrease += gz[i] * (zt[i] - z[i])
                if ft <= f + 1e-4 * decrease:
                    accepted = True
                    break
                # a quadratic through f, the slope and ft, kept within [0.1, 0.5] of the step
                denom = 2.0 * (ft - f - slope * step_len)
                trial = -slope * step_len * step_len / denom if denom > 0.0 else 0.5 * step_len
                step_len = min(0.5 * step_len, max(0.1 * step_len, trial))
                if step_len < 1e-12:
                    break
            if out_of_evaluations:
                status = MAXEVAL
                break
            if not accepted:
                status = CONVERGED_STEP
                break
            # BFGS update of the inverse Hessian with s = zt - z, y = gzt - gz
            sy = 0.0
            ss = 0.0
            yy = 0.0
            for i in range(d):
                s_i = zt[i] - z[i]
                y_i = gzt[i] - gz[i]
                sy += s_i * y_i
                ss += s_i * s_i
                yy += y_i * y_i
            if sy > 1e-10 * math.sqrt(ss * yy):
                if first and not given:  # the identity scaled to the curvature seen (Nocedal
                    gamma = sy / yy  # & Wright 6.20)
                    for i in range(d):
                        for j in range(d):
                            H[i, j] = gamma if i == j else 0.0
                for i in range(d):
                    acc = 0.0
                    for j in range(d):
                        acc += H[i, j] * (gzt[j] - gz[j])
                    Hy[i] = acc
                yHy = 0.0
                for i in range(d):
                    yHy += (gzt[i] - gz[i]) * Hy[i]
                c1 = (sy + yHy) / (sy * sy)
                for i in range(d):
                    s_i = zt[i] - z[i]
                    for j in range(d):
                        s_j = zt[j] - z[j]
                        H[i, j] += c1 * s_i * s_j - (Hy[i] * s_j + s_i * Hy[j]) / sy
            first = False
            change = abs(f - ft)
            for i in range(d):
                z[i] = zt[i]
                g[i] = gt[i]
                gz[i] = gzt[i]
            f = ft
            if change <= 1e-15 * max(abs(f), 1.0):
                status = CONVERGED_STEP
                break
        # -- end of the search
        for i in range(d):
            x[i] = max(x0[i] + scale[i] * z[i], lower[i])
        if rnd == 3:
            break
        moved = False
        trial_x = x.copy()
        for i in range(d):
            if math.isfinite(lower[i]) and x[i] <= lower[i] + boundary_tol * scale[i]:
                for frac in (1e-3, 1e-2):
                    for j in range(d):
                        xt[j] = x[j]
                    xt[i] = lower[i] + frac * scale[i]
                    ft = _recorded(
                        criterion_and_gradient(xt, data, _cleared(gt)), xt, gt, path, values,
                        count,
                    )  # fmt: skip
                    if ft < f - 1e-10 * max(1.0, abs(f)):
                        trial_x[i] = xt[i]
                        moved = True
                        break
        if not moved or count[0] >= maxeval:
            break
        last = True  # the new start is the trial evaluated last (one parameter moved)
        for i in range(d):
            z[i] = (trial_x[i] - x0[i]) / scale[i]
            if trial_x[i] != xt[i]:
                last = False
        if last:
            f = ft
            for i in range(d):
                g[i] = gt[i]
        else:
            f = _recorded(
                criterion_and_gradient(trial_x, data, _cleared(g)), trial_x, g, path, values,
                count,
            )  # fmt: skip
        for i in range(d):
            gz[i] = g[i] * scale[i]
    # parameters next to their bound go to it if that is no worse
    for i in range(d):
        if math.isfinite(lower[i]) and lower[i] < x[i] < lower[i] + boundary_tol * scale[i]:
            for j in range(d):
                xt[j] = x[j]
            xt[i] = lower[i]
            ft = _recorded(
                criterion_and_gradient(xt, data, _cleared(gt)), xt, gt, path, values, count
            )
            if ft <= f + 1e-10 * max(1.0, abs(f)):
                x[i] = lower[i]
                f = ft
                for j in range(d):
                    g[j] = gt[j]
    return status, x, f, g, count[0]


_IDENTITIES: dict[int, np.ndarray] = {}


def _identity(d: int) -> np.ndarray:
    """The d x d identity (one per size, shared: :func:`minimize` only reads its H0)."""
    eye = _IDENTITIES.get(d)
    if eye is None:
        eye = _IDENTITIES[d] = np.eye(d)
    return eye


def search_python(
    fg: Callable[[np.ndarray], tuple[float, np.ndarray]],
    x0: np.ndarray,
    lower: np.ndarray,
    scale: np.ndarray,
    *,
    inverse_hessian: np.ndarray | None = None,
    start: tuple[float, np.ndarray] | None = None,
) -> OptSummary:
    """:func:`search` run in Python around ``fg`` (x -> (criterion, gradient)), for a model
    whose evaluations cost milliseconds, with the stopping rules of
    :func:`~mixedmodels.optim.minimize_with_gradient` (scaled projected gradient below 1e-5, or a
    predicted decrease below 1e-10 or 1e-12 of the criterion) and trials a little inside for a
    parameter that stops within 1e-3 of a unit from its bound (a variance's gradient vanishes
    with it, so a search can stop next to zero rather than on it). ``start``: the criterion and
    gradient at x0 where already computed."""
    known = {} if start is None else {np.asarray(x0, dtype=float).tobytes(): start}

    def criterion(x: np.ndarray, grad: np.ndarray) -> float:
        hit = known.pop(x.tobytes(), None) if known else None
        f, g = hit if hit is not None else fg(x)
        grad[:] = g
        return float(f)

    return search(
        criterion, x0, lower, scale, inverse_hessian=inverse_hessian, gtol=1e-5,
        decrease=(1e-10, 1e-12), maxeval=1000, boundary_tol=1e-3,
    )  # fmt: skip


def search(
    data: tuple | Callable[[np.ndarray, np.ndarray], float],
    x0: np.ndarray,
    lower: np.ndarray,
    scale: np.ndarray,
    *,
    inverse_hessian: np.ndarray | None = None,
    gtol: float,
    decrease: tuple[float, float],
    maxeval: int,
    boundary_tol: float = 1e-5,
) -> OptSummary:
    """Minimize the criterion of ``data`` (a layout with a :func:`criterion_and_gradient`)
    from x0 by :func:`minimize`, in coordinates scaled by ``scale``; ``inverse_hessian`` (in
    the scaled coordinates), when known, gives the first steps their length and direction.
    It stops when the scaled projected gradient is below ``gtol`` or the decrease still to be
    had is below ``decrease`` (absolute, relative). Returns an
    :class:`~mixedmodels.optim.OptSummary` with the path evaluated.

    ``data`` may also be a Python function ``(x, grad) -> criterion`` that writes the gradient
    into ``grad``: the same search then runs uncompiled (for a criterion whose evaluations cost
    milliseconds, LAPACK's calls among them, the search's own steps cost nothing)."""
    x0 = np.asarray(x0, dtype=float)
    lower = np.asarray(lower, dtype=float)
    scale = np.asarray(scale, dtype=float)
    d = x0.size
    exact = inverse_hessian is not None
    H0 = _identity(d) if inverse_hessian is None else np.asarray(inverse_hessian, dtype=float)
    # room for the search (maxeval) and the boundary checks after it (at most three rounds of
    # two trials per parameter, then one per parameter)
    path = np.empty((maxeval + 7 * d + 8, d))
    values = np.empty(path.shape[0])
    t0 = time.perf_counter()
    run = minimize.py_func if callable(data) else minimize
    status, x, f, g, count = run(
        x0, lower, scale, H0, exact, data, gtol, decrease[0], decrease[1], maxeval,
        boundary_tol, path, values,
    )  # fmt: skip
    elapsed = time.perf_counter() - t0
    count = min(int(count), path.shape[0])
    return OptSummary(
        optimizer="BFGS-B",
        initial=x0,
        final=np.array(x),
        fmin=float(f),
        feval=count,
        return_code=int(status),
        message=MESSAGES[int(status)],
        elapsed=elapsed,
        lower=lower,
        settings={
            "gtol": gtol,
            "decrease_abs": decrease[0],
            "decrease_rel": decrease[1],
            "maxeval": float(maxeval),
        },
        theta_path=path[:count].copy(),
        objective_path=values[:count].copy(),
        gradient=np.array(g),
    )
