"""Optimizer back ends and the record of an optimization run.

The covariance parameters theta are found by minimizing the profiled deviance with a
derivative-free, bound-constrained trust-region method: Powell's BOBYQA as implemented in NLopt,
the optimizer lme4 (``nloptwrap``) and MixedModels.jl use by default. Every run is recorded in an
:class:`OptSummary`: the optimizer and its settings, every evaluated theta and objective value,
the number of evaluations, the return code and the time taken.

Where the exact gradient of a criterion is available (the Laplace criterion of binomial and
Poisson GLMMs with scalar random-effects terms) :func:`minimize_with_gradient` uses it, with
L-BFGS-B.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from mixedmodels.errors import ModelSpecError

__all__ = [
    "OptSummary",
    "finite_difference_derivatives",
    "fixed_theta_summary",
    "gradient_message",
    "hessian_from_gradient",
    "hessian_messages",
    "hessian_parts",
    "lbfgsb",
    "minimize_theta",
    "minimize_with_gradient",
]

_NLOPT_CODES = {
    1: "NLOPT_SUCCESS",
    2: "NLOPT_STOPVAL_REACHED",
    3: "NLOPT_FTOL_REACHED",
    4: "NLOPT_XTOL_REACHED",
    5: "NLOPT_MAXEVAL_REACHED",
    6: "NLOPT_MAXTIME_REACHED",
    -1: "NLOPT_FAILURE",
    -2: "NLOPT_INVALID_ARGS",
    -3: "NLOPT_OUT_OF_MEMORY",
    -4: "NLOPT_ROUNDOFF_LIMITED",
    -5: "NLOPT_FORCED_STOP",
}


@dataclass(frozen=True)
class OptSummary:
    """What the optimizer did.

    Attributes
    ----------
    optimizer
        Name of the algorithm: ``"LN_BOBYQA"`` (NLopt), ``"L-BFGS-B"`` (scipy's, with the exact
        gradient) or ``"BFGS-B"`` (the compiled search of a small linear mixed model, see
        :mod:`mixedmodels.linalg.small_fit`).
    initial
        Starting theta.
    final
        Theta at the optimum.
    fmin
        Objective at the optimum (REML criterion or deviance).
    feval
        Number of objective evaluations (including boundary checks).
    return_code
        Positive is success: NLopt's code for BOBYQA (4: the x tolerance was reached), 1 to 3
        for the gradient searches (``message`` says which rule stopped them); negative is
        failure (e.g. the evaluation limit).
    message
        What the code means, e.g. ``"NLOPT_XTOL_REACHED"``.
    elapsed
        Wall time of the optimization in seconds.
    lower
        Lower bounds of theta.
    settings
        Tolerances and limits used.
    theta_path
        Every evaluated theta, (feval, ntheta).
    objective_path
        The objective at each evaluated theta, (feval,).
    gradient
        Finite-difference gradient of the objective at the optimum (``None`` when not computed).
    warnings
        Convergence warnings raised after the fit, if any.
    """

    optimizer: str
    initial: np.ndarray
    final: np.ndarray
    fmin: float
    feval: int
    return_code: int
    message: str
    elapsed: float
    lower: np.ndarray
    settings: dict[str, float]
    theta_path: np.ndarray = field(repr=False)
    objective_path: np.ndarray = field(repr=False)
    gradient: np.ndarray | None = None
    warnings: tuple[str, ...] = ()

    @property
    def converged(self) -> bool:
        return self.return_code > 0 and not self.warnings

    def updated(self, **changes: Any) -> OptSummary:
        """A copy with ``changes`` (``dataclasses.replace`` without its per-field machinery,
        which costs several times more than a small fit's bookkeeping; nothing here is
        validated on construction)."""
        new = object.__new__(OptSummary)
        new.__dict__.update(self.__dict__)
        for name in changes:
            if name not in new.__dict__:
                raise TypeError(f"OptSummary has no field {name!r}")
        new.__dict__.update(changes)
        return new

    def __str__(self) -> str:
        lines = [
            f"Optimizer:       {self.optimizer}",
            f"Evaluations:     {self.feval}",
            f"Return code:     {self.return_code} ({self.message})",
            f"Objective:       {self.fmin:.10g}",
            f"Initial theta:   {np.array2string(self.initial, precision=6)}",
            f"Final theta:     {np.array2string(self.final, precision=6)}",
            f"Time:            {self.elapsed:.4f} s",
        ]
        if self.gradient is not None:
            lines.append(f"max|gradient|:   {np.max(np.abs(self.gradient), initial=0.0):.3g}")
        lines.extend(f"Warning: {w}" for w in self.warnings)
        return "\n".join(lines)


class _Recorder:
    """Wraps the objective: records every evaluation and shields the optimizer from NaN."""

    def __init__(self, f: Callable[[np.ndarray], float]):
        self.f = f
        self.thetas: list[np.ndarray] = []
        self.values: list[float] = []

    def __call__(self, x: np.ndarray) -> float:
        x = np.array(x, dtype=float)
        val = float(self.f(x))
        if math.isnan(val):
            val = math.inf
        self.thetas.append(x)
        self.values.append(val)
        return val


def _bobyqa(
    rec: _Recorder,
    x0: np.ndarray,
    lower: np.ndarray,
    settings: dict[str, float],
    step: np.ndarray,
) -> tuple[np.ndarray, float, int]:
    import nlopt

    n = len(x0)
    opt = nlopt.opt(nlopt.LN_BOBYQA, n)
    opt.set_lower_bounds(lower.tolist())
    opt.set_min_objective(lambda x, grad: rec(x))
    opt.set_ftol_rel(settings["ftol_rel"])
    opt.set_ftol_abs(settings["ftol_abs"])
    opt.set_xtol_rel(settings["xtol_rel"])
    scale = step / np.where(np.isfinite(lower), 0.75, 1.0)
    opt.set_xtol_abs((settings["xtol_abs"] * scale).tolist())
    opt.set_maxeval(int(settings["maxeval"]))
    # NLopt's BOBYQA rescales each variable by its initial step, so steps proportional to the
    # natural scale of each parameter make the search invariant to rescaling the data
    opt.set_initial_step(step.tolist())
    try:
        x = opt.optimize(x0.tolist())
        code = opt.last_optimize_result()
    except nlopt.RoundoffLimited:
        code = -4
        x = rec.thetas[int(np.argmin(rec.values))]
    except RuntimeError:
        code = -1
        x = rec.thetas[int(np.argmin(rec.values))] if rec.thetas else x0
    x = np.maximum(np.asarray(x, dtype=float), lower)
    return x, float(rec(x)), code


def minimize_theta(
    f: Callable[[np.ndarray], float],
    x0: np.ndarray,
    lower: np.ndarray,
    *,
    ftol_rel: float = 1e-12,
    ftol_abs: float = 1e-10,
    xtol_rel: float = 0.0,
    xtol_abs: float = 1e-10,
    maxeval: int | None = None,
    boundary_tol: float = 1e-5,
    initial_step: np.ndarray | None = None,
) -> OptSummary:
    """Minimize a profiled objective over theta with BOBYQA, then check the boundary.

    After convergence, components bounded below by zero whose estimate is within
    ``boundary_tol`` of zero are set to zero if that does not increase the objective
    (MixedModels.jl does the same), and components sitting on the boundary are tested with a
    one-sided step: if moving into the interior lowers the objective the optimizer is restarted
    from there (lme4's ``restart_edge``).

    Parameters
    ----------
    f
        The objective, a function of theta.
    x0, lower
        Starting value and lower bounds (0 or -inf).
    ftol_rel, ftol_abs, xtol_rel, xtol_abs, maxeval
        NLopt stopping criteria; the defaults are tighter than lme4's so that the optimum is at
        least as good as lme4's.
    initial_step
        Initial trust-region step of each parameter (default 0.75 for bounded parameters and 1
        for the others, MixedModels.jl's choice). ``boundary_tol`` and ``xtol_abs`` are scaled
        by it relative to those defaults.

    Returns
    -------
    OptSummary
    """
    x0 = np.asarray(x0, dtype=float)
    lower = np.asarray(lower, dtype=float)
    if x0.shape != lower.shape:
        raise ModelSpecError(
            f"start has {x0.size} values but the model has {lower.size} parameters"
        )
    if np.any(x0 < lower):
        raise ModelSpecError("start is below the lower bounds (diagonal entries must be >= 0)")
    n = len(x0)
    settings = {
        "ftol_rel": ftol_rel,
        "ftol_abs": ftol_abs,
        "xtol_rel": xtol_rel,
        "xtol_abs": xtol_abs,
        "maxeval": float(maxeval if maxeval is not None else max(1000, 1000 * n * n)),
    }
    default_step = np.where(np.isfinite(lower), 0.75, 1.0)
    step = default_step if initial_step is None else np.asarray(initial_step, dtype=float)
    scale = step / default_step
    rec = _Recorder(f)
    t0 = time.perf_counter()
    x, fx, code = _bobyqa(rec, x0, lower, settings, step)

    for _ in range(3):  # a restart rarely helps twice; bound the work
        bounded = np.isfinite(lower)
        # snap near-zero components to the boundary when that is no worse
        changed = False
        for i in np.flatnonzero(bounded & (x > lower) & (x < lower + boundary_tol * scale)):
            trial = x.copy()
            trial[i] = lower[i]
            ft = rec(trial)
            if ft <= fx + 1e-10 * max(1.0, abs(fx)):
                x, fx, changed = trial, min(ft, fx), True
        # restart from the interior if the objective decreases away from the boundary
        restart = False
        for i in np.flatnonzero(bounded & (x == lower)):
            trial = x.copy()
            trial[i] = lower[i] + 1e-4 * scale[i]
            if rec(trial) < fx - 1e-8:
                restart = True
        if not restart:
            break
        start = np.where(bounded & (x == lower), lower + 1e-4 * scale, x)
        x1, f1, code1 = _bobyqa(rec, start, lower, settings, step)
        if f1 < fx:
            x, fx, code = x1, f1, code1
        if not changed and f1 >= fx:
            break
    elapsed = time.perf_counter() - t0
    return OptSummary(
        optimizer="LN_BOBYQA",
        initial=x0,
        final=x,
        fmin=fx,
        feval=len(rec.values),
        return_code=code,
        message=_NLOPT_CODES.get(code, str(code)),
        elapsed=elapsed,
        lower=lower,
        settings=settings,
        theta_path=np.array(rec.thetas),
        objective_path=np.array(rec.values),
    )


#: how :func:`minimize_with_gradient` reports a stop on the predicted-decrease rule
PREDICTED_DECREASE_MESSAGE = "CONVERGENCE: PREDICTED DECREASE BELOW TOLERANCE"


def minimize_with_gradient(
    fg: Callable[[np.ndarray], tuple[float, np.ndarray]],
    x0: np.ndarray,
    lower: np.ndarray,
    scale: np.ndarray,
    *,
    gtol: float = 1e-5,
    ftol: float = 1e-14,
    maxiter: int = 1000,
    boundary_tol: float = 1e-5,
) -> OptSummary:
    """Minimize with an exact gradient: L-BFGS-B, in coordinates scaled by ``scale`` (the
    natural size of each parameter, e.g. its standard error), with lower bounds.

    Stops when the projected gradient in the scaled coordinates is below ``gtol`` (the
    objective is then within about gtol^2 / curvature of the minimum, far below 1e-8 for a
    deviance), when the decrease still to be had, estimated from the gradient and the
    curvature along the last step, is below 1e-10 or 1e-12 of the objective (the relative
    tolerance MixedModels.jl's optimizer stops at; a deviance of 2e5 is then within 2e-7 of
    its minimum, far below what any printed figure shows), or when the
    relative decrease of the objective is below ``ftol``. A line search that can make no more
    progress at a point where the gradient is already small counts as converged. If the
    optimizer ends at a point worse than one it evaluated on the way, it restarts there.
    Bounded components within ``boundary_tol`` (scaled) of their bound are then set to it if
    that is no worse, as in :func:`minimize_theta`.
    """
    x0 = np.asarray(x0, dtype=float)
    lower = np.asarray(lower, dtype=float)
    scale = np.asarray(scale, dtype=float)
    path: list[np.ndarray] = []
    values: list[float] = []
    best: dict[str, Any] = {"f": math.inf, "x": x0, "g": None}  # with the exact gradient
    # the gradient in the optimizer's coordinates z at each z it asked for (x is a function of
    # z, so this is the exact gradient, scaled)
    zgrads: dict[bytes, np.ndarray] = {}

    def fun(z: np.ndarray) -> tuple[float, np.ndarray]:
        x = x0 + scale * z
        np.maximum(x, lower, out=x)
        f, g = fg(x)
        f = float(f)
        if not math.isfinite(f):
            f = math.inf
            g = np.zeros_like(x0)
        g = np.asarray(g, dtype=float)
        path.append(x)
        values.append(f)
        if f < best["f"]:
            best["f"], best["x"], best["g"] = f, x, g
        gz = g * scale
        zgrads[z.tobytes()] = gz
        return f, gz

    zlower = np.where(np.isfinite(lower), (lower - x0) / scale, -np.inf)
    zlow = zlower.tolist()
    stopped = {"flag": False}
    previous: dict[str, Any] = {}

    def on_iteration(z: np.ndarray, fz: float) -> bool:
        # Stop once the decrease still to be had, |g|^2 / (2 c) with c the curvature along the
        # last step (secant), is below 1e-10 or 1e-12 of the objective. For large data the
        # gradient of a deviance cannot be driven below gtol (its curvature grows with n) while
        # the deviance is already within 1e-12 of its minimum. (A handful of numbers: plain
        # Python floats cost less than numpy's calls.)
        gs = zgrads.get(z.tobytes())
        if gs is None:
            return False
        zv = z.tolist()
        # the projected gradient: zero where a bound is active and the gradient points out
        gz = [
            0.0 if (a <= lo and g > 0) else g
            for a, lo, g in zip(zv, zlow, gs.tolist(), strict=True)
        ]
        if previous:
            dz = dg = gg = 0.0
            for a, b, g, h in zip(zv, previous["z"], gz, previous["g"], strict=True):
                step = a - b
                dz += step * step
                dg += step * (g - h)
                gg += g * g
            curv = dg / max(dz, 1e-300)
            floor = max(1e-10, 1e-12 * abs(float(fz)))
            if curv > 0 and all(abs(g) <= 1e-3 for g in gz) and gg / (2 * curv) < floor:
                stopped["flag"] = True
                return True
        previous["z"] = zv
        previous["g"] = gz
        return False

    def run(z0: np.ndarray) -> _LbfgsbResult:
        previous.clear()
        stopped["flag"] = False
        return lbfgsb(
            fun, z0, zlower, maxcor=20, ftol=ftol, gtol=gtol, maxiter=maxiter,
            on_iteration=on_iteration,
        )  # fmt: skip

    t0 = time.perf_counter()
    res = run(np.zeros_like(x0))
    # The line search may settle for a point worse than one it tried on the way (it asks for
    # curvature as well as decrease); restart from the best point seen if so.
    for _ in range(3):
        if not best["f"] < float(res.fun) - 1e-9 * max(1.0, abs(best["f"])):
            break
        res = run((best["x"] - x0) / scale)
    bounded = np.isfinite(lower)
    # A variance parameter at zero is always a stationary point (the criterion is even in it),
    # so the gradient cannot tell a minimum there from a saddle: step into the interior and
    # restart if the criterion decreases (lme4's restart_edge).
    for _ in range(3):
        x, fx = best["x"], best["f"]
        trial_start = None
        for i in np.flatnonzero(bounded & (x <= lower)):
            for frac in (1e-3, 1e-2):
                trial = x.copy()
                trial[i] = lower[i] + frac * scale[i]
                ft, _ = fg(trial)
                path.append(trial)
                values.append(float(ft))
                if ft < fx - 1e-10 * max(1.0, abs(fx)):
                    trial_start = trial if trial_start is None else trial_start
                    trial_start[i] = trial[i]
                    break
        if trial_start is None:
            break
        res = run((trial_start - x0) / scale)
    x, fx, gradient = best["x"], best["f"], best["g"]
    for i in np.flatnonzero(bounded & (x > lower) & (x < lower + boundary_tol * scale)):
        trial = x.copy()
        trial[i] = lower[i]
        ft, gt = fg(trial)
        path.append(trial)
        values.append(float(ft))
        if ft <= fx + 1e-10 * max(1.0, abs(fx)):
            x, fx, gradient = trial, float(ft), np.asarray(gt, dtype=float)
    elapsed = time.perf_counter() - t0
    code = 1 if (res.success or stopped["flag"]) else -1
    if not res.success and best["g"] is not None and math.isfinite(fx):
        # an abnormal line-search end at the noise floor of the objective is convergence
        g = np.asarray(best["g"]) * scale
        g = np.where(np.isfinite(lower) & (best["x"] <= lower) & (g > 0), 0.0, g)
        if np.max(np.abs(g), initial=0.0) <= 100 * gtol:
            code = 2
    return OptSummary(
        optimizer="L-BFGS-B",
        initial=x0,
        final=x,
        fmin=fx,
        feval=len(values),
        return_code=code,
        message=(PREDICTED_DECREASE_MESSAGE if stopped["flag"] else str(res.message)),
        elapsed=elapsed,
        lower=lower,
        settings={"gtol": gtol, "ftol": ftol, "maxiter": float(maxiter)},
        theta_path=np.array(path),
        objective_path=np.array(values),
        gradient=gradient,
    )


@dataclass(frozen=True)
class _LbfgsbResult:
    """What :func:`lbfgsb` reports (the fields of scipy's result that are used here)."""

    x: np.ndarray
    fun: float
    success: bool
    message: str
    nfev: int
    nit: int


#: the signature of scipy's L-BFGS-B routine (its C translation, scipy >= 1.15) that
#: :func:`lbfgsb` drives directly
_SETULB_SIGNATURE = (
    "setulb(m,x,l,u,nbd,f,g,factr,pgtol,wa,iwa,task,lsave,isave,dsave,maxls,ln_task)"
)
_SETULB: list[Any] = []


def _setulb() -> Any:
    """(setulb, status messages, task messages) of scipy's L-BFGS-B, or None where its
    interface is not the one :func:`lbfgsb` knows (looked up once)."""
    if not _SETULB:
        api = None
        try:
            from scipy.optimize import _lbfgsb, _lbfgsb_py

            doc = (_lbfgsb.setulb.__doc__ or "").strip().splitlines()
            if doc and doc[0].replace(" ", "") == _SETULB_SIGNATURE:
                api = (_lbfgsb.setulb, _lbfgsb_py.status_messages, _lbfgsb_py.task_messages)
        except Exception:  # pragma: no cover - another scipy
            api = None
        _SETULB.append(api)
    return _SETULB[0]


def lbfgsb(
    fun: Callable[[np.ndarray], tuple[float, np.ndarray]],
    x0: np.ndarray,
    lower: np.ndarray,
    *,
    maxcor: int = 10,
    ftol: float = 2.2204460492503131e-09,
    gtol: float = 1e-5,
    maxiter: int = 15000,
    maxfun: int = 15000,
    maxls: int = 20,
    on_iteration: Callable[[np.ndarray, float], bool] | None = None,
    use_scipy: bool = False,
) -> _LbfgsbResult:
    """``scipy.optimize.minimize(fun, x0, jac=True, method="L-BFGS-B", ...)`` with lower bounds
    (``-inf`` for none), the same iterates and the same result, without the front end.

    scipy's wrapper costs about 0.3 ms per call and 40 us per evaluation, more than the whole
    objective of a small model; here scipy's L-BFGS-B routine is driven as its own
    ``_minimize_lbfgsb`` drives it (one evaluation at the start, every other evaluation where
    the routine asks for one at a new point, the same stopping rules and messages).
    ``on_iteration(x, f)`` is called at each new iterate (``x`` is the optimizer's own array:
    copy it to keep it) and stops the run by returning True, as a callback raising
    StopIteration does. Where scipy's routine has another interface (scipy < 1.15), or with
    ``use_scipy``, scipy's ``minimize`` runs instead.
    """
    api = None if use_scipy else _setulb()
    if api is None:
        return _lbfgsb_scipy(
            fun, x0, lower, maxcor, ftol, gtol, maxiter, maxfun, maxls, on_iteration
        )
    setulb, status_messages, task_messages = api
    lower = np.asarray(lower, dtype=np.float64)
    x = np.maximum(np.asarray(x0, dtype=np.float64).ravel(), lower)  # x0 clipped to the bounds
    n = x.size
    bounded = np.isfinite(lower)
    nbd = bounded.astype(np.int32)
    low = np.where(bounded, lower, 0.0)
    upp = np.zeros(n)
    factr = ftol / np.finfo(float).eps
    m = maxcor
    wa = np.zeros(2 * m * n + 5 * n + 11 * m * m + 8 * m)
    iwa = np.zeros(3 * n, dtype=np.int32)
    task = np.zeros(2, dtype=np.int32)
    ln_task = np.zeros(2, dtype=np.int32)
    lsave = np.zeros(4, dtype=np.int32)
    isave = np.zeros(44, dtype=np.int32)
    dsave = np.zeros(29)
    # scipy's scalar function evaluates at the start and then at each point that differs from
    # the last one evaluated
    at = x.copy()
    fx, gx = fun(at.copy())
    fx, gx = float(fx), np.asarray(gx, dtype=np.float64)
    nfev, nit = 1, 0
    halted = False
    f: Any = np.array(0.0)
    g = np.zeros(n)
    while True:
        setulb(m, x, low, upp, nbd, f, g, factr, gtol, wa, iwa, task, lsave, isave, dsave,
               maxls, ln_task)  # fmt: skip
        if task[0] == 3:  # f and g at x
            if not (x == at).all():
                at = x.copy()
                fx, gx = fun(at.copy())
                fx, gx = float(fx), np.asarray(gx, dtype=np.float64)
                nfev += 1
            f, g = fx, gx.copy()  # a copy, as scipy passes: the one kept is not changed
        elif task[0] == 1:  # a new iterate
            nit += 1
            if on_iteration is not None and on_iteration(x, f):
                task[0], task[1] = 5, 505
                halted = True
            if nit >= maxiter:
                task[0], task[1] = 5, 504
            elif nfev > maxfun:
                task[0], task[1] = 5, 502
        else:
            break
    if task[0] == 4:
        warnflag = 0
    elif nfev > maxfun or nit >= maxiter:
        warnflag = 1
    else:
        warnflag = 2
    message = status_messages[int(task[0])] + ": " + task_messages[int(task[1])]
    if halted:  # what scipy's minimize reports when the callback stops the run
        warnflag, message = 99, "`callback` raised `StopIteration`."
    return _LbfgsbResult(
        x=x, fun=float(f), success=warnflag == 0, message=message, nfev=nfev, nit=nit
    )


def _lbfgsb_scipy(
    fun: Callable[[np.ndarray], tuple[float, np.ndarray]],
    x0: np.ndarray,
    lower: np.ndarray,
    maxcor: int,
    ftol: float,
    gtol: float,
    maxiter: int,
    maxfun: int,
    maxls: int,
    on_iteration: Callable[[np.ndarray, float], bool] | None,
) -> _LbfgsbResult:
    from scipy.optimize import minimize

    def callback(intermediate_result: Any) -> None:
        assert on_iteration is not None
        if on_iteration(intermediate_result.x, intermediate_result.fun):
            raise StopIteration

    bounds = [(lo if np.isfinite(lo) else None, None) for lo in np.asarray(lower, dtype=float)]
    options = {"maxcor": maxcor, "ftol": ftol, "gtol": gtol, "maxiter": maxiter,
               "maxfun": maxfun, "maxls": maxls}  # fmt: skip
    res = minimize(
        fun, x0, jac=True, method="L-BFGS-B", bounds=bounds, options=options,
        callback=callback if on_iteration is not None else None,
    )  # fmt: skip
    return _LbfgsbResult(
        x=np.asarray(res.x), fun=float(res.fun), success=bool(res.success),
        message=str(res.message), nfev=int(res.nfev), nit=int(res.nit),
    )  # fmt: skip


def hessian_from_gradient(
    fg: Callable[[np.ndarray], tuple[float, np.ndarray]],
    x: np.ndarray,
    lower: np.ndarray,
    step: np.ndarray,
    *,
    central: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Gradient at x and the Hessian by central differences of an exact gradient
    (2 n gradient evaluations; forward differences for components within a step of their lower
    bound), symmetrized. With ``central=False``, forward differences throughout (n evaluations;
    first-order accurate, for steps small enough that the error, about step / 2 times the third
    derivative, is negligible: with steps of 1e-5 of each parameter's unit the standard errors
    of glmer's fixed effects agree with central differences to about 1e-6 relative)."""
    x = np.asarray(x, dtype=float)
    n = x.size
    if not central:
        points = forward_difference_points(x, step)
        return hessian_from_forward_gradients(
            np.array([np.asarray(fg(z)[1], dtype=float) for z in points]), step
        )
    _, g0 = fg(x)
    g0 = np.asarray(g0, dtype=float)
    J = np.empty((n, n))
    for i in range(n):
        e = np.zeros(n)
        e[i] = step[i]
        _, gp = fg(x + e)
        if x[i] - step[i] < lower[i]:
            J[i] = (np.asarray(gp) - g0) / step[i]
        else:
            _, gm = fg(x - e)
            J[i] = (np.asarray(gp) - np.asarray(gm)) / (2 * step[i])
    return g0, 0.5 * (J + J.T)


def forward_difference_points(x: np.ndarray, step: np.ndarray) -> np.ndarray:
    """The points whose gradients give the Hessian by forward differences: x, then x with
    its i-th component moved up by ``step[i]``, one row each."""
    x = np.asarray(x, dtype=float)
    d = x.size
    points = np.tile(x, (d + 1, 1))
    points.ravel()[d :: d + 1] += np.asarray(step, dtype=float)  # entry (i + 1, i)
    return points


def hessian_from_forward_gradients(
    gradients: np.ndarray, step: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(gradient at x, Hessian) from the gradients at :func:`forward_difference_points`
    (one row each): forward differences, symmetrized."""
    g0 = gradients[0]
    J = (gradients[1:] - g0) / np.asarray(step, dtype=float)[:, None]
    return g0, 0.5 * (J + J.T)


def finite_difference_derivatives(
    f: Callable[[np.ndarray], float],
    x: np.ndarray,
    lower: np.ndarray,
    *,
    hessian: bool = True,
    step: float | np.ndarray = 1e-4,
) -> tuple[np.ndarray, np.ndarray | None]:
    r"""Gradient (and Hessian) of f at x by finite differences that respect the lower bounds.

    Central differences in the interior; one-sided (forward) differences for components whose
    lower bound is within a step (as lme4's ``deriv12`` does at the boundary). The mixed
    second derivatives of two interior components use

    .. math:: H_{ij} \approx \frac{f(x + h_i + h_j) + f(x - h_i - h_j) - f(x \pm h_i)
              - f(x \pm h_j) + 2 f(x)}{2 h_i h_j},

    second-order accurate like the four-point formula but with two new evaluations per pair
    (the single-axis values are reused); pairs with a one-sided component use the first-order
    forward formula.

    Parameters
    ----------
    step
        A relative step (the step of component i is ``step * max(1, |x_i|)``) or an array of
        absolute steps.
    """
    x = np.asarray(x, dtype=float)
    n = len(x)
    f0 = f(x)
    if np.ndim(step) == 0:
        h = float(step) * np.maximum(1.0, np.abs(x))
    else:
        h = np.asarray(step, dtype=float)
    forward = x - h < lower
    grad = np.empty(n)
    fp = np.empty(n)
    fm = np.empty(n)
    for i in range(n):
        e = np.zeros(n)
        e[i] = h[i]
        fp[i] = f(x + e)
        if forward[i]:
            f2 = f(x + 2 * e)
            grad[i] = (-3 * f0 + 4 * fp[i] - f2) / (2 * h[i])
            fm[i] = f2  # used below for the second derivative
        else:
            fm[i] = f(x - e)
            grad[i] = (fp[i] - fm[i]) / (2 * h[i])
    if not hessian:
        return grad, None
    H = np.empty((n, n))
    for i in range(n):
        if forward[i]:
            H[i, i] = (fm[i] - 2 * fp[i] + f0) / (h[i] ** 2)
        else:
            H[i, i] = (fp[i] - 2 * f0 + fm[i]) / (h[i] ** 2)
        for j in range(i):
            e = np.zeros(n)
            e[i] = h[i]
            e[j] = h[j]
            fpp = f(x + e)
            if forward[i] or forward[j]:
                H[i, j] = (fpp - fp[i] - fp[j] + f0) / (h[i] * h[j])
            else:
                fmm = f(x - e)
                num = fpp + fmm - fp[i] - fm[i] - fp[j] - fm[j] + 2 * f0
                H[i, j] = num / (2 * h[i] * h[j])
            H[j, i] = H[i, j]
    return grad, H


def gradient_message(grad: np.ndarray, H: np.ndarray | None, tol: float = 2e-3) -> str | None:
    """lme4's ``check.conv.grad``: the gradient scaled by the Hessian's Cholesky factor R
    (H = R'R, scaled = R^-1 g), elementwise no larger than the raw gradient, must not exceed
    ``tol``. None if it does not; the message otherwise."""
    if all(abs(v) <= tol for v in grad.tolist()):  # (a NaN entry is not: it is checked below)
        return None
    if H is None:
        worst = np.abs(grad)
    else:
        try:
            L = np.linalg.cholesky(H)
            scaled = np.linalg.solve(L.T, grad)
        except np.linalg.LinAlgError:
            return "unable to evaluate scaled gradient"
        if not np.all(np.isfinite(scaled)):
            return "unable to evaluate scaled gradient"
        worst = np.minimum(np.abs(scaled), np.abs(grad))
    k = int(np.argmax(worst))
    if worst[k] <= tol:
        return None
    return (
        f"Model failed to converge with max|grad| = {worst[k]:.6g} "
        f"(tol = {tol:g}, component {k + 1})"
    )


class HessianParts(NamedTuple):
    """What the checks of a finite-difference Hessian at an optimum need (see
    :func:`hessian_parts`)."""

    finite: bool
    eigenvalues: np.ndarray
    cholesky_ok: bool
    inverted: bool
    covariance: np.ndarray
    covariance_pd: bool


def hessian_parts(H: np.ndarray, nth: int = 0) -> HessianParts:
    """H's finiteness, the eigenvalues of its symmetric part, whether it has a Cholesky factor,
    and the covariance of the parameters after the first ``nth`` from it ((H^-1 + H^-T)
    restricted to them, with whether H could be inverted and whether that block is positive
    definite), in one compiled call (numpy's wrappers cost more than these small matrices'
    arithmetic)."""
    from mixedmodels.linalg.kernels import hessian_parts as kernel

    out = kernel(np.ascontiguousarray(H, dtype=float), int(nth))
    return HessianParts(bool(out[0]), out[1], bool(out[2]), bool(out[3]), out[4], bool(out[5]))


def hessian_messages(
    H: np.ndarray, kind: str = "", tol: float = 1e-6, parts: HessianParts | None = None
) -> list[str]:
    """lme4's ``checkHess``: negative or zero eigenvalues of the Hessian at the optimum, or an
    ill-conditioned one (very large eigenvalue, large eigenvalue ratio). ``parts``: H's
    :func:`hessian_parts`, if already computed."""
    label = f"{kind} Hessian" if kind else "Hessian"
    if parts is None:
        parts = hessian_parts(H)
    if not parts.finite:
        return ["Problem with Hessian check (infinite or missing values?)"]
    ev = parts.eigenvalues.tolist()  # (a few values: Python's arithmetic is the faster here)
    negative = sum(1 for v in ev if v < -tol)
    if negative:
        return [
            f"Model failed to converge: degenerate {label} with {negative} negative eigenvalues"
        ]
    if any(abs(v) < tol for v in ev) or not parts.cholesky_ok:
        return [f"{label} is numerically singular: parameters are not uniquely determined".strip()]
    out = []
    top, low = max(ev), min(ev)
    if top * tol > 1:
        out.append("Model is nearly unidentifiable: very large eigenvalue\n - Rescale variables?")
    if low / top < tol:
        out.append("Model is nearly unidentifiable: large eigenvalue ratio\n - Rescale variables?")
    return out


def fixed_theta_summary(theta: np.ndarray, value: float, lower: np.ndarray) -> OptSummary:
    """The record of a "fit" at a given theta, without optimization."""
    theta = np.asarray(theta, dtype=float)
    return OptSummary(
        optimizer="none (theta fixed)",
        initial=theta,
        final=theta,
        fmin=float(value),
        feval=1,
        return_code=1,
        message="theta fixed by the caller",
        elapsed=0.0,
        lower=np.asarray(lower, dtype=float),
        settings={},
        theta_path=theta[None, :],
        objective_path=np.array([value]),
    )
