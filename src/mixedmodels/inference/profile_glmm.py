"""Profile likelihood for generalized linear mixed models.

As lme4's ``profile`` of a ``glmer`` fit: the criterion (Laplace or quadrature deviance) as a
function of the random-effects SDs and correlations (there is no residual scale for the binomial
and Poisson families) and the fixed effects; each parameter is held at a value while all the
others are re-optimized (with PIRLS for the modes at every evaluation). The search for each
interval limit, its verification with random restarts and the traces are those of
:mod:`mixedmodels.inference.profile`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mixedmodels.errors import ModelSpecError
from mixedmodels.glmm import PirlsError
from mixedmodels.inference.profile import (
    ProfileResult,
    _bobyqa,
    profile_intervals,
    profile_traces,
    sdcor,
    theta_from_sdcor,
)

if TYPE_CHECKING:
    from mixedmodels.results_glmm import GlmerResult

__all__ = ["confint_profile_glmm", "parameter_names_glmm", "profile_glmm"]


def parameter_names_glmm(result: GlmerResult) -> list[str]:
    """``sd_...``, ``cor_...`` (lme4's order and names), then the fixed effects."""
    from mixedmodels.inference.profile import parameter_names

    names = parameter_names(result)  # ends with "sigma" and the fixed effects
    i = names.index("sigma")
    return names[:i] + names[i + 1 :]


def _sdcor(layout: Any, theta: np.ndarray) -> np.ndarray:
    """SDs and correlations from theta (no residual scale in a GLMM)."""
    return sdcor(layout, theta, 1.0)[:-1]


def _theta(layout: Any, v: np.ndarray) -> np.ndarray | None:
    """theta from SDs and correlations; ``None`` if the correlations are not valid."""
    return theta_from_sdcor(layout, np.append(v, 1.0))


class _GlmmProfiler:
    """Deviance of a GLMM in (SDs/correlations, beta), and zeta for each parameter."""

    def __init__(self, fit: GlmerResult):
        if fit.family.has_scale:
            raise ModelSpecError(
                f"profiling a {fit.family.name} GLMM (a family with a scale parameter) is not "
                f"available; use method='wald' or 'boot'"
            )
        self.fit = fit
        model = fit.model
        self.model = model
        self.layout = model.layout
        self.nth = model.ntheta
        self.p = model.n_fixef
        self.names = parameter_names_glmm(fit)
        self.opt = np.concatenate([_sdcor(self.layout, fit.theta), fit.beta])
        self.base = fit.objective_value
        lo, hi = [], []
        for s in self.layout.sizes:
            for b in range(s):
                for a in range(b, s):
                    lo.append(0.0 if a == b else -1.0)
                    hi.append(math.inf if a == b else 1.0)
        self.lower = np.array([*lo, *([-math.inf] * self.p)])
        self.upper = np.array([*hi, *([math.inf] * self.p)])
        self.is_cor = np.array([h == 1.0 for h in hi] + [False] * self.p)
        self.nvar = self.nth  # variance parameters come first
        self.restarts = 0
        self.rng = np.random.default_rng(20261122)
        self.state = model.initial_state()
        se = fit.std_errors.to_numpy()
        self.typical = np.concatenate(
            [np.maximum(np.abs(self.opt[: self.nth]), 0.1), np.maximum(se, 1e-3)]
        )

    def deviance(self, v: np.ndarray) -> float:
        theta = _theta(self.layout, v[: self.nth])
        if theta is None:
            return math.inf
        try:
            dev, st = self.model.criterion(theta, v[self.nth :], self.state)
        except PirlsError:
            return math.inf
        self.state = st
        return dev

    def profile(self, i: int, x: float, starts: Sequence[np.ndarray]) -> tuple[float, np.ndarray]:
        k = self.opt.size
        others = [j for j in range(k) if j != i]
        lo = self.lower[others].copy()
        hi = self.upper[others].copy()
        lo = np.where(lo == -1.0, -1.0 + 1e-9, lo)
        hi = np.where(hi == 1.0, 1.0 - 1e-9, hi)

        def f(z: np.ndarray) -> float:
            v = np.empty(k)
            v[i] = x
            v[others] = z
            return self.deviance(v)

        starts = list(starts)
        for _ in range(self.restarts):
            r = self.opt.copy()
            r[: self.nth] *= self.rng.uniform(0.5, 1.5, self.nth)
            r[self.is_cor] = self.rng.uniform(-0.9, 0.9, int(self.is_cor.sum()))
            r[self.nth :] += self.rng.normal(0, 1, self.p) * self.typical[self.nth :]
            starts.append(r)
        best_dev, best = math.inf, None
        for s in starts:
            z, dev = _bobyqa(f, np.clip(s[others], lo, hi), lo, hi, self.typical[others])
            if dev < best_dev:
                best_dev, best = dev, z
        v = np.empty(k)
        v[i] = x
        v[others] = best if best is not None else self.opt[others]
        return best_dev, v

    def zeta(self, i: int) -> Callable[[float], tuple[float, np.ndarray]]:
        xhat = self.opt[i]
        seen: list[tuple[float, np.ndarray]] = []

        def fn(x: float) -> tuple[float, np.ndarray]:
            near = min(seen, key=lambda s: abs(s[0] - x))[1] if seen else None
            starts = [self.opt] if near is None else [near, self.opt]
            dev, v = self.profile(i, x, starts)
            seen.append((x, v))
            diff = max(dev - self.base, 0.0)
            return math.copysign(math.sqrt(diff), x - xhat), v

        return fn

    def bounds(self, i: int) -> tuple[float, float]:
        return float(self.lower[i]), float(self.upper[i])

    def scale(self, i: int) -> float:
        if i >= self.nth:
            return float(self.fit.std_errors.iloc[i - self.nth])
        if self.is_cor[i]:
            return 0.2
        return max(abs(self.opt[i]) * 0.2, 1e-3)


def confint_profile_glmm(
    result: GlmerResult,
    level: float = 0.95,
    which: Sequence[str] | str | None = None,
    *,
    progress: bool = True,
) -> pd.DataFrame:
    """Profile-likelihood confidence intervals of a GLMM (lme4's ``confint``); ``progress``
    shows a progress bar over the parameters (where a terminal or a notebook can show it)."""
    if not 0 < level < 1:
        raise ModelSpecError("level must be between 0 and 1")
    return profile_intervals(_GlmmProfiler(result), level, which, progress=progress)


def profile_glmm(
    result: GlmerResult,
    which: Sequence[str] | str | None = None,
    level: float | None = None,
    npoints: int = 8,
    *,
    progress: bool = True,
) -> ProfileResult:
    """Profile traces of a GLMM's criterion.

    Parameters
    ----------
    result
        A fitted GLMM of a family without a scale parameter (binomial, Poisson).
    which
        Parameter names (or ``"theta_"`` / ``"beta_"``); default all.
    level
        How far each profile goes: to |zeta| = the normal quantile of ``(1 + level) / 2``;
        default lme4's cutoff, sqrt(qchisq(0.99, number of parameters)).
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
    return profile_traces(_GlmmProfiler(result), which, level, npoints, progress=progress)
