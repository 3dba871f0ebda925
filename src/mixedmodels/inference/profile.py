"""Profile likelihood and profile confidence intervals (lme4's ``profile`` and ``confint``).

As in lme4 (Bates et al. 2015, sec. 5.1), the profile is taken of the ML deviance, on the scale
of standard deviations and correlations: for REML fits the model is refitted with ML first. For
a parameter x the signed square root of the deviance increase,

    zeta(x) = sign(x - x_hat) sqrt(d(x) - d(x_hat)),

where d(x) is the deviance minimized over all other parameters with x held fixed, is approximately
standard normal; the confidence interval at level 1 - alpha is where |zeta| <= z_(1 - alpha/2).

* Random-effects SDs, correlations and sigma: d is the ML deviance as a function of the SDs,
  correlations (converted to theta by a Cholesky factorization that allows zero variances) and
  sigma, with beta profiled out; the other parameters are re-optimized with BOBYQA.
* Fixed effects: holding beta_j = b, the model is y - b x_j on the other columns of X. The blocks
  of A for it are a linear transformation of the stored ones (no pass over the data); theta is
  re-optimized and sigma profiled out.

lme4 interpolates each limit with a spline through a grid of profile points; here each limit is
found by bracketing and Brent's method on zeta(x) = -+z, to a relative tolerance of 1e-8.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy import optimize, stats

from mixedmodels._progress import Progress
from mixedmodels.errors import ConvergenceWarning, ModelSpecError, user_stacklevel
from mixedmodels.linalg.assemble import transform_xy
from mixedmodels.linalg.cholesky import BlockedCholesky

if TYPE_CHECKING:
    from mixedmodels.results import LmerResult, _MixedResult

__all__ = ["ProfileResult", "confint_profile", "parameter_names", "profile", "sdcor"]

_LOG_2PI = math.log(2.0 * math.pi)


class ProfileWarning(UserWarning):
    """A profile could not be completed as requested (a limit not reached, a non-monotone
    profile); the message names the parameter and the reason."""


# ---------------------------------------------------------------------------------------------
# parameterization


def parameter_names(result: _MixedResult) -> list[str]:
    """lme4's names (``oldNames = FALSE``): ``sd_(Intercept)|Subject``,
    ``cor_Days.(Intercept)|Subject``, ..., ``sigma``, then the fixed effects."""
    names = []
    for t in result.design.terms:
        s = t.n_effects
        for b in range(s):
            for a in range(b, s):
                if a == b:
                    names.append(f"sd_{t.effect_names[a]}|{t.group_name}")
                else:
                    names.append(f"cor_{t.effect_names[a]}.{t.effect_names[b]}|{t.group_name}")
    return [*names, "sigma", *result.design.fixef_names]


def sdcor(layout: Any, theta: np.ndarray, sigma: float) -> np.ndarray:
    """(SDs and correlations in theta's order, then sigma) from theta and sigma."""
    out = []
    for T in layout.templates(theta):
        cov = sigma**2 * (T @ T.T)
        sd = np.sqrt(np.diag(cov))
        s = T.shape[0]
        for b in range(s):
            for a in range(b, s):
                if a == b:
                    out.append(sd[a])
                else:
                    denom = sd[a] * sd[b]
                    out.append(cov[a, b] / denom if denom > 0 else 0.0)
    out.append(sigma)
    return np.array(out)


def _semidefinite_cholesky(M: np.ndarray, tol: float = 1e-12) -> np.ndarray | None:
    """Lower Cholesky factor of a positive semi-definite matrix (zero columns where a pivot
    vanishes); ``None`` if M is not positive semi-definite."""
    s = M.shape[0]
    L = np.zeros_like(M)
    scale = max(float(np.max(np.abs(np.diag(M)))), 1e-300)
    for j in range(s):
        d = M[j, j] - L[j, :j] @ L[j, :j]
        if d < -tol * scale:
            return None
        if d <= tol * scale:
            rest = M[j + 1 :, j] - L[j + 1 :, :j] @ L[j, :j]
            if np.any(np.abs(rest) > 1e-8 * scale):
                return None
            continue
        L[j, j] = math.sqrt(d)
        L[j + 1 :, j] = (M[j + 1 :, j] - L[j + 1 :, :j] @ L[j, :j]) / L[j, j]
    return L


def theta_from_sdcor(layout: Any, v: np.ndarray) -> np.ndarray | None:
    """theta from (SDs, correlations, sigma); ``None`` if the correlations are not valid."""
    sigma = v[-1]
    if sigma <= 0:
        return None
    out = []
    k = 0
    for s in layout.sizes:
        sd = np.zeros(s)
        corr = np.eye(s)
        for b in range(s):
            for a in range(b, s):
                if a == b:
                    sd[a] = v[k]
                else:
                    corr[a, b] = corr[b, a] = v[k]
                k += 1
        if np.any(sd < 0):
            return None
        cov = corr * np.outer(sd, sd) / sigma**2
        T = _semidefinite_cholesky(cov)
        if T is None:
            return None
        r, c = layout.tril_indices(s)
        out.append(T[r, c])
    return np.concatenate(out) if out else np.zeros(0)


# ---------------------------------------------------------------------------------------------


def _bobyqa(
    f: Callable[[np.ndarray], float],
    x0: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    typical: np.ndarray | None = None,
) -> tuple[np.ndarray, float]:
    """Minimize f with BOBYQA within bounds; 0-dimensional problems just evaluate.

    ``typical`` gives each parameter's scale for BOBYQA's initial steps (default: from x0).
    """
    if x0.size == 0:
        return x0, float(f(x0))
    import nlopt

    if x0.size == 1:
        # BOBYQA needs a little room; a bounded scalar search is simpler and exact
        lo = lower[0] if np.isfinite(lower[0]) else x0[0] - 10 * (abs(x0[0]) + 1)
        hi = upper[0] if np.isfinite(upper[0]) else x0[0] + 10 * (abs(x0[0]) + 1)
        res = optimize.minimize_scalar(
            lambda t: f(np.array([t])),
            bounds=(lo, hi),
            method="bounded",
            options={"xatol": 1e-10 * (abs(x0[0]) + 1)},
        )
        cand = np.array([res.x])
        fx0 = f(x0)
        return (cand, float(res.fun)) if res.fun <= fx0 else (x0, float(fx0))
    opt = nlopt.opt(nlopt.LN_BOBYQA, x0.size)
    opt.set_lower_bounds(lower.tolist())
    opt.set_upper_bounds(upper.tolist())
    best_val = [math.inf]
    best_x = [x0.copy()]

    def obj(x: np.ndarray, grad: Any) -> float:
        val = float(f(np.asarray(x)))
        if not math.isfinite(val):
            val = 1e100
        if val < best_val[0]:
            best_val[0], best_x[0] = val, np.array(x)
        return val

    opt.set_min_objective(obj)
    opt.set_ftol_rel(1e-12)
    opt.set_ftol_abs(1e-11)
    ref = np.abs(x0) if typical is None else np.maximum(np.abs(typical), np.abs(x0))
    step = np.maximum(0.05 * ref, 0.02)
    room = np.minimum(upper - x0, x0 - lower)
    step = np.where(room > 0, np.minimum(step, np.maximum(room, 1e-4)), step)
    opt.set_initial_step(step.tolist())
    opt.set_xtol_abs((1e-10 * np.maximum(1.0, np.abs(x0))).tolist())
    opt.set_maxeval(20000)
    start = np.clip(x0, lower, upper)
    try:
        opt.optimize(start.tolist())
    except (nlopt.RoundoffLimited, RuntimeError, ValueError):
        pass
    return best_x[0], best_val[0]


@dataclass
class _Profiler:
    """Deviance functions of the ML fit for profiling."""

    fit: LmerResult  # the ML fit
    names: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        model = self.fit.model
        self.layout = model.layout
        self.ws = model.workspace()
        self.n = model.nobs
        self.slw = model.A.sum_log_weights
        self.nvar = model.ntheta + 1
        self.p = model.n_fixef
        self.opt = np.concatenate(
            [sdcor(self.layout, self.fit.theta, self.fit.sigma), self.fit.beta]
        )
        self.base = -2.0 * self.fit.loglik
        lo, hi = [], []
        for s in self.layout.sizes:
            for b in range(s):
                for a in range(b, s):
                    lo.append(0.0 if a == b else -1.0)
                    hi.append(math.inf if a == b else 1.0)
        self.var_lower = np.array([*lo, 0.0])
        self.var_upper = np.array([*hi, math.inf])
        self.names = parameter_names(self.fit)
        # The profiled deviance can have several local minima in the other parameters (with
        # correlations especially). A limit found with warm starts is verified with random
        # restarts (seeded, so reproducible), and searched again with them if that finds a
        # lower deviance; ``restarts`` is the number of extra random starts per evaluation.
        self.is_cor = np.array([*[h == 1.0 for h in hi], False])
        self.restarts = 0
        self.rng = np.random.default_rng(20261122)

    # -- random-effects parameters and sigma ---------------------------------------------------
    def deviance_var(self, v: np.ndarray) -> float:
        theta = theta_from_sdcor(self.layout, v)
        if theta is None:
            return math.inf
        if not self.ws.update(theta):
            return math.inf
        s2 = v[-1] ** 2
        return (
            self.ws.logdet_Z()
            + self.ws.pwrss() / s2
            + self.n * (_LOG_2PI + math.log(s2))
            - self.slw
        )

    def profile_var(
        self, w: int, x: float, starts: Sequence[np.ndarray]
    ) -> tuple[float, np.ndarray]:
        """(deviance, full parameter vector) with variance parameter w fixed at x, the others
        optimized from each of ``starts`` (the best result is kept)."""
        others = [i for i in range(self.nvar) if i != w]
        lo = self.var_lower[others].copy()
        hi = self.var_upper[others].copy()
        # keep correlations strictly inside (-1, 1) so their Cholesky factor exists
        lo = np.where(lo == -1.0, -1.0 + 1e-9, lo)
        hi = np.where(hi == 1.0, 1.0 - 1e-9, hi)
        lo = np.where(self.var_lower[others] == 0.0, 0.0, lo)
        sigma_pos = others.index(self.nvar - 1) if (self.nvar - 1) in others else None
        if sigma_pos is not None:
            lo[sigma_pos] = 1e-10 * self.fit.sigma

        def f(z: np.ndarray) -> float:
            v = np.empty(self.nvar)
            v[w] = x
            v[others] = z
            return self.deviance_var(v)

        typical = self.opt[others]
        best_dev, best_z = math.inf, None
        starts = list(starts)
        for _ in range(self.restarts):
            r = self.opt[: self.nvar] * self.rng.uniform(0.5, 1.5, self.nvar)
            r[self.is_cor] = self.rng.uniform(-0.9, 0.9, int(self.is_cor.sum()))
            starts.append(r)
        for start in starts:
            z, dev = _bobyqa(f, np.clip(start[others], lo, hi), lo, hi, typical)
            if dev < best_dev:
                best_dev, best_z = dev, z
        v = np.empty(self.nvar)
        v[w] = x
        v[others] = best_z if best_z is not None else self.opt[others]
        return best_dev, v

    # -- fixed effects ---------------------------------------------------------------------------
    def fixed_workspace(self, j: int) -> tuple[BlockedCholesky, Callable[[float], Any]]:
        model = self.fit.model
        A = model.A
        p = self.p
        keep = [i for i in range(p) if i != j]
        gamma_j = float(model.beta_shift[j]) if model.beta_shift.size else 0.0

        def blocks(b: float) -> Any:
            T = np.zeros((p, p + 1))
            for r, c in enumerate(keep):
                T[r, c] = 1.0
            T[p - 1, p] = 1.0  # y_res - (b - gamma_j) x_j
            T[p - 1, j] = -(b - gamma_j)
            return transform_xy(A, T)

        ws = BlockedCholesky(blocks(self.fit.beta[j]))
        return ws, blocks

    def profile_fixed(
        self,
        ws: BlockedCholesky,
        blocks: Callable[[float], Any],
        b: float,
        starts: Sequence[np.ndarray],
    ) -> tuple[float, np.ndarray, float]:
        ws.A = blocks(b)
        lower = self.fit.model.lower_bounds
        upper = np.full_like(lower, math.inf)

        def f(theta: np.ndarray) -> float:
            if not ws.update(theta):
                return math.inf
            return ws.objective(False)

        best_dev, theta = math.inf, self.fit.theta
        starts = list(starts)
        diag = self.fit.model.layout.is_diagonal()
        for _ in range(self.restarts):
            r = self.fit.theta * self.rng.uniform(0.5, 1.5, self.fit.theta.size)
            r[~diag] = self.rng.normal(0.0, 0.5, int((~diag).sum())) * np.max(
                np.abs(self.fit.theta), initial=1.0
            )
            starts.append(np.maximum(r, lower))
        for start in starts:
            t, dev = _bobyqa(f, start, lower, upper, self.fit.theta)
            if dev < best_dev:
                best_dev, theta = dev, t
        dev = best_dev
        ws.update(theta)
        sigma = math.sqrt(ws.pwrss() / self.n)
        return dev, theta, sigma

    # -- zeta --------------------------------------------------------------------------------------
    def zeta(self, i: int) -> Callable[[float], tuple[float, np.ndarray]]:
        """zeta(x) for parameter i (in the order of :func:`parameter_names`), and the values of
        all parameters at the profile point."""
        xhat = self.opt[i]
        # warm starts: the optimum of the other parameters at the nearest point profiled so far
        seen: list[tuple[float, np.ndarray]] = []

        def nearest(x: float) -> np.ndarray | None:
            if not seen:
                return None
            return min(seen, key=lambda s: abs(s[0] - x))[1]

        if i < self.nvar:
            var_start = self.opt[: self.nvar].copy()

            def fn(x: float) -> tuple[float, np.ndarray]:
                near = nearest(x)
                starts = [var_start] if near is None else [near, var_start]
                dev, v = self.profile_var(i, x, starts)
                seen.append((x, v))
                params = np.concatenate([v, self._beta_at(v)])
                return self._signed(dev, x, xhat, i), params

            return fn
        j = i - self.nvar
        ws, blocks = self.fixed_workspace(j)
        theta0 = self.fit.theta.copy()

        def fn_fixed(b: float) -> tuple[float, np.ndarray]:
            near = nearest(b)
            starts = [theta0] if near is None else [near, theta0]
            dev, theta, sigma = self.profile_fixed(ws, blocks, b, starts)
            seen.append((b, theta))
            beta_rest = (
                ws.beta() + np.delete(self.fit.model.beta_shift, j) if self.p > 1 else np.zeros(0)
            )
            beta = np.insert(beta_rest, j, b) if self.p > 1 else np.array([b])
            params = np.concatenate([sdcor(self.layout, theta, sigma), beta])
            return self._signed(dev, b, xhat, i), params

        return fn_fixed

    def _beta_at(self, v: np.ndarray) -> np.ndarray:
        theta = theta_from_sdcor(self.layout, v)
        if theta is None:
            return np.full(self.p, np.nan)
        self.ws.update(theta)
        return self.ws.beta() + self.fit.model.beta_shift

    def _signed(self, dev: float, x: float, xhat: float, i: int) -> float:
        diff = dev - self.base
        if diff < -1e-6 * max(1.0, abs(self.base)):
            warnings.warn(
                f"profiling {self.names[i]} found a deviance {-diff:.3g} below the fit's: the fit "
                f"had not converged to the optimum",
                ConvergenceWarning,
                stacklevel=user_stacklevel(),
            )
        return math.copysign(math.sqrt(max(diff, 0.0)), x - xhat)

    def bounds(self, i: int) -> tuple[float, float]:
        if i < self.nvar:
            return float(self.var_lower[i]), float(self.var_upper[i])
        return -math.inf, math.inf

    def scale(self, i: int) -> float:
        """A rough standard error of parameter i, to size the first step."""
        if i >= self.nvar:
            return float(self.fit.std_errors.iloc[i - self.nvar])
        x = self.opt[i]
        _, hi = self.bounds(i)
        if hi == 1.0:  # correlation
            return 0.2
        return max(abs(x) * 0.2, 1e-3 * max(self.fit.sigma, 1e-12))


def _find_limit(
    zeta: Callable[[float], tuple[float, np.ndarray]],
    xhat: float,
    target: float,
    bound: float,
    scale: float,
    name: str,
    points: list[tuple[float, float, np.ndarray]],
    rtol: float = 1e-8,
) -> float:
    """The x on the side of ``target``'s sign where zeta(x) = target (or the bound if zeta does
    not reach the target before it)."""
    direction = 1.0 if target > 0 else -1.0
    prev_x, prev_z = xhat, 0.0
    step = scale * abs(target)
    for _ in range(60):
        x = prev_x + direction * step
        at_bound = False
        if (direction > 0 and x >= bound) or (direction < 0 and x <= bound):
            x, at_bound = bound, True
        z, params = zeta(x)
        points.append((x, z, params))
        if (z - target) * direction >= 0:  # bracketed between prev_x and x
            if x == prev_x:
                return x
            return float(
                optimize.brentq(
                    lambda t: _record(zeta, t, points) - target,
                    min(prev_x, x),
                    max(prev_x, x),
                    xtol=rtol * max(1e-12, abs(x) + abs(prev_x)),
                    rtol=1e-10,
                )
            )
        if at_bound:
            return bound  # the likelihood never drops enough before the boundary
        if (z - prev_z) * direction < -1e-6:
            warnings.warn(
                f"non-monotone profile for {name}: zeta went from {prev_z:.4g} to {z:.4g}; "
                f"its interval may be unreliable",
                ProfileWarning,
                stacklevel=user_stacklevel(),
            )
        # grow the step, predicting where zeta reaches the target from the local slope
        slope = (z - prev_z) / (x - prev_x) if x != prev_x else 0.0
        if slope * direction > 1e-12:
            predicted = (target - z) / slope
            step = min(max(abs(predicted) * 1.2, step * 0.5), step * 8.0)
        else:
            step *= 4.0
        prev_x, prev_z = x, z
    warnings.warn(
        f"the profile for {name} does not reach zeta = {target:+.3g}: the likelihood stays flat "
        f"(the parameter is not determined by the data in that direction); the limit is "
        f"reported as "
        f"{'inf' if direction > 0 else '-inf'}",
        ProfileWarning,
        stacklevel=user_stacklevel(),
    )
    return math.inf * direction


def _verified_limit(prof: Any, i: int, target: float, bound: float) -> float:
    """The limit where zeta = target, checked by re-evaluating zeta there with random restarts
    of the other parameters; if they find a lower deviance the search is repeated with them."""
    name = prof.names[i]
    limit = _find_limit(prof.zeta(i), prof.opt[i], target, bound, prof.scale(i), name, [])
    if not math.isfinite(limit) or (limit == bound and bound in (0.0, -1.0, 1.0)):
        return limit
    prof.restarts = 6
    try:
        check, _ = prof.zeta(i)(limit)
        if abs(check - target) <= 1e-4 * max(1.0, abs(target)):
            return limit
        return _find_limit(prof.zeta(i), prof.opt[i], target, bound, prof.scale(i), name, [])
    finally:
        prof.restarts = 0


def _record(zeta: Callable[[float], tuple[float, np.ndarray]], x: float, points: list) -> float:
    z, params = zeta(x)
    points.append((x, z, params))
    return z


def _ml_fit(result: LmerResult) -> LmerResult:
    if result.reml:
        return result.model.with_reml(False).fit(start=result.theta, warn=False)
    return result


def _which(names: list[str], which: Sequence[str] | str | None) -> list[int]:
    if which is None:
        return list(range(len(names)))
    if isinstance(which, str):
        if which == "theta_":
            return [i for i, n in enumerate(names) if n.startswith(("sd_", "cor_")) or n == "sigma"]
        if which == "beta_":
            return [
                i
                for i, n in enumerate(names)
                if not (n.startswith(("sd_", "cor_")) or n == "sigma")
            ]
        which = [which]
    out = []
    for w in which:
        if w not in names:
            raise ModelSpecError(f"unknown parameter {w!r}; parameters: {', '.join(names)}")
        out.append(names.index(w))
    return out


def confint_profile(
    result: LmerResult,
    level: float = 0.95,
    which: Sequence[str] | str | None = None,
    *,
    progress: bool = True,
) -> pd.DataFrame:
    """Profile-likelihood confidence intervals for every parameter (lme4's ``confint``).

    ``progress`` shows a progress bar over the parameters (where a terminal or a notebook can
    show it).
    """
    if not 0 < level < 1:
        raise ModelSpecError("level must be between 0 and 1")
    return profile_intervals(_Profiler(_ml_fit(result)), level, which, progress=progress)


def profile_intervals(
    prof: Any, level: float, which: Sequence[str] | str | None, *, progress: bool = False
) -> pd.DataFrame:
    """The limits where the signed square root of the likelihood-ratio statistic reaches the
    normal quantiles, for the parameters of a profiler (linear or generalized); ``progress``
    shows a bar advancing by one per parameter."""
    z = float(stats.norm.ppf(0.5 + level / 2))
    idx = _which(prof.names, which)
    rows = []
    with Progress(len(idx), "profile confint", progress) as bar:
        for i in idx:
            lo_b, hi_b = prof.bounds(i)
            rows.append(
                tuple(
                    _verified_limit(prof, i, target, bound)
                    for target, bound in ((-z, lo_b), (z, hi_b))
                )
            )
            bar.update()
    a = (1 - level) / 2
    cols = [_pct(a), _pct(1 - a)]
    return pd.DataFrame(rows, index=[prof.names[i] for i in idx], columns=cols)


def _pct(a: float) -> str:
    """R's ``format.perc``: "2.5 %", "97.5 %"."""
    return f"{100 * a:.3g} %"


@dataclass(frozen=True)
class ProfileResult:
    """Profile traces: zeta and every parameter's value along each parameter's profile.

    Attributes
    ----------
    table
        One row per profile point: ``parameter`` (the one profiled), ``value``, ``zeta``, then
        the value of every parameter at that point.
    estimates
        The ML estimates (the point where zeta = 0).
    """

    table: pd.DataFrame
    estimates: pd.Series

    def confint(self, level: float = 0.95) -> pd.DataFrame:
        """Intervals from the traces: each parameter as an interpolating cubic spline of zeta
        (lme4's ``confint`` of a profile), evaluated at the level's normal quantiles; NaN
        where a trace does not reach them. ``fit.confint()`` finds the limits exactly."""
        from scipy.interpolate import CubicSpline

        z = float(stats.norm.ppf(0.5 + level / 2))
        rows = {}
        for name, grp in self.table.groupby("parameter", sort=False):
            g = grp.sort_values("zeta").drop_duplicates("zeta")
            zeta, value = g["zeta"].to_numpy(float), g["value"].to_numpy(float)
            ok = np.isfinite(zeta) & np.isfinite(value)
            zeta, value = zeta[ok], value[ok]
            limits = []
            for target in (-z, z):
                if zeta.size < 2 or not zeta[0] <= target <= zeta[-1]:
                    limits.append(math.nan)
                elif zeta.size < 4:
                    limits.append(float(np.interp(target, zeta, value)))
                else:
                    limits.append(float(CubicSpline(zeta, value)(target)))
            rows[name] = tuple(limits)
        a = (1 - level) / 2
        return pd.DataFrame.from_dict(rows, orient="index", columns=[_pct(a), _pct(1 - a)])

    def plot(
        self,
        ax: Any = None,
        absolute: bool = False,
        *,
        params: Sequence[str] | str | None = None,
        ncols: int | None = None,
    ) -> Any:
        """zeta (or |zeta|) against each parameter, one panel per parameter (needs matplotlib);
        see :func:`mixedmodels.plots.profile_zeta`."""
        from mixedmodels.plots import profile_zeta

        return profile_zeta(self, params, absolute=absolute, ncols=ncols, ax=ax)


def profile(
    result: LmerResult,
    which: Sequence[str] | str | None = None,
    level: float | None = None,
    npoints: int = 8,
    *,
    progress: bool = True,
) -> ProfileResult:
    """Profile traces of the ML deviance (lme4's ``profile``).

    Each parameter is profiled from its estimate out to where |zeta| reaches lme4's cutoff,
    sqrt(qchisq(0.99, k)) for k parameters (4.1 for sleepstudy's six), or the normal quantile
    of a given ``level``, with ``npoints`` points on each side.

    Parameters
    ----------
    result
        A fitted linear mixed model (REML fits are refitted with ML).
    which
        Parameter names (or ``"theta_"`` / ``"beta_"``); default all.
    level
        How far each profile goes: to |zeta| = the normal quantile of ``(1 + level) / 2``;
        default lme4's cutoff (``alphamax = 0.01`` over all the parameters).
    npoints
        Profile points on each side of the estimate.
    progress
        Show a progress bar over the parameters (only where a terminal or a notebook can show
        it).

    Returns
    -------
    ProfileResult
        The traces; ``.plot()`` draws them, ``.confint()`` interpolates intervals.
    """
    prof = _Profiler(_ml_fit(result))
    return profile_traces(prof, which, level, npoints, progress=progress)


def profile_traces(
    prof: Any,
    which: Sequence[str] | str | None,
    level: float | None,
    npoints: int,
    *,
    progress: bool = False,
) -> ProfileResult:
    """The traces of a profiler (linear or generalized): ``npoints`` points on each side of
    each parameter's estimate, out to where |zeta| reaches the level's normal quantile, or
    with ``level=None`` lme4's cutoff sqrt(qchisq(0.99, number of parameters)) (or the
    farthest point reached); ``progress`` shows a bar advancing by one per parameter."""
    if level is None:
        z = math.sqrt(float(stats.chi2.ppf(0.99, len(prof.names))))
    else:
        z = float(stats.norm.ppf(0.5 + level / 2))
    idx = _which(prof.names, which)
    rows = []
    with Progress(len(idx), "profile", progress) as bar:
        for i in idx:
            lo_b, hi_b = prof.bounds(i)
            for target, bound in ((-z, lo_b), (z, hi_b)):
                pts: list = []
                limit = _find_limit(
                    prof.zeta(i), prof.opt[i], target, bound, prof.scale(i), prof.names[i], pts
                )
                if not math.isfinite(limit):
                    limit = max(pts, key=lambda p: abs(p[1]))[0]
                fn = prof.zeta(i)
                for x in np.linspace(prof.opt[i], limit, npoints + 1)[1:]:
                    zz, params = fn(float(x))
                    rows.append((prof.names[i], float(x), zz, *params))
            rows.append((prof.names[i], float(prof.opt[i]), 0.0, *prof.opt))
            bar.update()
    table = pd.DataFrame(rows, columns=["parameter", "value", "zeta", *prof.names])
    # parameters in lme4's order (standard deviations, correlations, sigma, fixed effects)
    order = pd.Categorical(table["parameter"], categories=list(prof.names), ordered=True)
    table = (
        table.assign(_order=order)
        .sort_values(["_order", "value"], kind="stable")
        .drop(columns="_order")
        .reset_index(drop=True)
    )
    return ProfileResult(table=table, estimates=pd.Series(prof.opt, index=prof.names))
