"""Diagnostic and presentation plots of fitted mixed models (matplotlib, extra ``plot``).

Every function returns the matplotlib Figure it drew on and accepts ``ax=`` to draw on an
existing Axes instead (for functions that draw several panels, ``ax`` may be an array of Axes
with one per panel, or a single Axes where the plot then draws one panel).

The plots: :func:`caterpillar` (conditional modes with intervals), :func:`group_panels` (data and
fitted lines per group), :func:`residuals_vs_fitted`, :func:`qq`, :func:`bootstrap_densities`
(bootstrap replicates per parameter) and :func:`profile_zeta` (profile zeta per parameter).

The same plots are available as methods of the results: ``fit.plot_ranef()``,
``fit.plot_groups(x)``, ``fit.plot_residuals()``, ``fit.plot_qq()``, ``profile.plot()`` and
``boot.plot()``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy import stats

from mixedmodels.errors import ModelSpecError

if TYPE_CHECKING:  # pragma: no cover
    from typing import TypeAlias

    from mixedmodels.inference.bootstrap import BootstrapResult
    from mixedmodels.inference.profile import ProfileResult
    from mixedmodels.results import LmerResult
    from mixedmodels.results_glmm import GlmerResult

    Fit: TypeAlias = LmerResult | GlmerResult

__all__ = [
    "bayes_predictive_bands",
    "bootstrap_densities",
    "caterpillar",
    "group_panels",
    "profile_zeta",
    "qq",
    "residuals_vs_fitted",
]


def _pyplot() -> Any:
    try:
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError("plotting needs matplotlib: pip install 'mixedmodels[plot]'") from None
    return plt


def _panels(n: int, ax: Any, *, ncols: int | None = None, size=(3.4, 3.0)) -> tuple[Any, list]:
    """A figure with ``n`` panels, or the Axes given (one per panel, or one for all)."""
    plt = _pyplot()
    if ax is not None:
        axes = list(np.atleast_1d(ax).ravel())
        if len(axes) not in (1, n):
            raise ModelSpecError(f"ax has {len(axes)} Axes; this plot draws {n} panel(s)")
        return axes[0].figure, axes
    ncols = ncols or min(n, 4)
    nrows = math.ceil(n / ncols)
    fig, grid = plt.subplots(
        nrows, ncols, figsize=(size[0] * ncols, size[1] * nrows), squeeze=False
    )
    axes = list(grid.ravel())
    for a in axes[n:]:
        a.set_visible(False)
    return fig, axes[:n]


# -- random effects -----------------------------------------------------------------------------
def caterpillar(
    result: Fit,
    group: str | None = None,
    term: str | None = None,
    *,
    level: float = 0.95,
    sort: bool = True,
    ax: Any = None,
) -> Any:
    """Caterpillar plot: the conditional modes of each level with ``level`` intervals
    (mode +/- z * conditional SD), one panel per grouping factor and effect (lme4's
    ``dotplot(ranef(fit, condVar = TRUE))``).

    Parameters
    ----------
    result
        A fitted linear or generalized linear mixed model.
    group, term
        Restrict to one grouping factor and/or one effect (e.g. ``"(Intercept)"``).
    level
        Coverage of the intervals.
    sort
        Order the levels by their mode (in the first panel of each grouping factor).
    ax
        Axes to draw on: one per panel.
    """
    if not 0 < level < 1:
        raise ModelSpecError("level must be between 0 and 1")
    frame = result.ranef().to_frame(condsd=True)
    if group is not None:
        if group not in set(frame["grpvar"]):
            raise ModelSpecError(
                f"no grouping factor {group!r}; available: {sorted(set(frame['grpvar']))}"
            )
        frame = frame[frame["grpvar"] == group]
    if term is not None:
        if term not in set(frame["term"]):
            raise ModelSpecError(
                f"no random effect {term!r}; available: {sorted(set(frame['term']))}"
            )
        frame = frame[frame["term"] == term]
    keys = list(dict.fromkeys(zip(frame["grpvar"], frame["term"], strict=True)))
    if ax is not None and len(np.atleast_1d(ax).ravel()) == 1 and len(keys) > 1:
        raise ModelSpecError(
            f"this fit has {len(keys)} panels ({', '.join(f'{g}: {t}' for g, t in keys)}); "
            f"choose one with group= and term=, or pass one Axes per panel"
        )
    fig, axes = _panels(len(keys), ax, size=(3.6, 0.5 + 0.16 * frame["grp"].nunique()))
    z = float(stats.norm.ppf(0.5 + level / 2))
    order: dict[str, np.ndarray] = {}
    for a, (g, t) in zip(axes, keys, strict=True):
        sub = frame[(frame["grpvar"] == g) & (frame["term"] == t)]
        if g not in order:
            order[g] = (
                np.argsort(sub["condval"].to_numpy(), kind="stable")
                if sort
                else np.arange(len(sub))
            )
        sub = sub.iloc[order[g]]
        pos = np.arange(len(sub))
        half = z * sub["condsd"].to_numpy()
        a.errorbar(
            sub["condval"].to_numpy(dtype=float),
            pos,
            xerr=half,
            fmt="o",
            ms=3,
            color="C0",
            ecolor="0.55",
            lw=1,
        )
        a.axvline(0.0, color="0.3", lw=0.8, ls="--")
        a.set_title(f"{g}: {t}")
        a.set_xlabel("conditional mode")
        if len(sub) <= 60:
            a.set_yticks(pos, sub["grp"].tolist(), fontsize=7)
        else:
            a.set_yticks([])
        a.set_ylim(-1, len(sub))
    fig.tight_layout()
    return fig


# -- data and fitted lines by group ---------------------------------------------------------------
def group_panels(
    result: Fit,
    x: str,
    group: str | None = None,
    *,
    population: bool = True,
    ncols: int | None = None,
    max_groups: int | None = 48,
    ax: Any = None,
) -> Any:
    """The data of each group against ``x`` with the group's fitted line (conditional on its
    random effects) and, with ``population=True``, the population line (fixed effects only):
    the classic per-subject panel figure.

    Parameters
    ----------
    x
        A numeric column of the fitted data for the horizontal axis.
    group
        The grouping factor (default: the first one of the model).
    population
        Also draw the fixed-effects-only line in each panel.
    ncols
        Panels per row.
    max_groups
        Draw at most this many groups (the first ones in level order); None for all.
    ax
        One Axes draws every group on it (a "spaghetti" plot, one line per group); otherwise
        one Axes per panel.
    """
    design = result.model.design
    frame = design.frame
    if frame is None or x not in frame.columns:
        cols = [] if frame is None else [str(c) for c in frame.columns]
        raise ModelSpecError(f"x={x!r} is not a column of the fitted data (columns: {cols})")
    xs = frame[x]
    if not pd.api.types.is_numeric_dtype(xs.dtype) or pd.api.types.is_bool_dtype(xs.dtype):
        raise ModelSpecError(f"x={x!r} must be a numeric column, not {xs.dtype}")
    groups = [t.group_name for t in design.terms]
    group = group or groups[0]
    if group not in groups:
        raise ModelSpecError(f"no grouping factor {group!r}; available: {groups}")
    term = design.terms[groups.index(group)]
    xv = xs.to_numpy(dtype=float)
    y = np.asarray(design.y, dtype=float)
    fitted = np.asarray(result.fitted(), dtype=float)
    pop = None
    if population:
        from mixedmodels.results_glmm import GlmerResult

        if isinstance(result, GlmerResult):  # on the response scale, as fitted()
            pop = np.asarray(result.predict(re_form="~0", type="response"), dtype=float)
        else:
            pop = np.asarray(result.predict(re_form="~0"), dtype=float)
    levels = list(range(term.nlevels))
    if max_groups is not None:
        levels = levels[:max_groups]
    single = ax is not None and len(np.atleast_1d(ax).ravel()) == 1
    fig, axes = _panels(1 if single else len(levels), ax, ncols=ncols, size=(2.4, 2.2))
    for i, lv in enumerate(levels):
        a = axes[0] if single else axes[i]
        rows = np.flatnonzero(term.refs == lv)
        o = rows[np.argsort(xv[rows], kind="stable")]
        color = f"C{i % 10}" if single else "C0"
        a.plot(xv[o], y[o], "o", ms=3, color=color, alpha=0.7)
        a.plot(xv[o], fitted[o], "-", color=color if single else "C1", lw=1.2)
        if pop is not None and not single:
            a.plot(xv[o], pop[o], "--", color="0.4", lw=0.9)
        if not single:
            a.set_title(str(term.levels[lv]), fontsize=8)
            a.tick_params(labelsize=7)
    if single and pop is not None:
        o = np.argsort(xv, kind="stable")
        axes[0].plot(xv[o], pop[o], "--", color="k", lw=1.5)
    if single:
        axes[0].set_xlabel(x)
        axes[0].set_ylabel(design.response_name)
    else:
        fig.supxlabel(x)
        fig.supylabel(design.response_name)
    fig.tight_layout()
    return fig


# -- residuals ------------------------------------------------------------------------------------
def _residuals(result: Fit) -> np.ndarray:
    """Pearson residuals scaled by sigma for linear models, Pearson residuals otherwise."""
    from mixedmodels.results_glmm import GlmerResult

    if isinstance(result, GlmerResult):
        return np.asarray(result.residuals(type="pearson"), dtype=float)
    return np.asarray(result.residuals(type="pearson", scaled=True), dtype=float)


def residuals_vs_fitted(result: Fit, *, ax: Any = None) -> Any:
    """Residuals (standardized Pearson) against fitted values, with a smooth trend line."""
    fig, (a,) = _panels(1, ax, size=(4.5, 3.6))
    fitted = np.asarray(result.fitted(), dtype=float)
    r = _residuals(result)
    a.scatter(fitted, r, s=8, alpha=0.6, color="C0")
    a.axhline(0.0, color="0.3", lw=0.8, ls="--")
    trend = _running_mean(fitted, r)
    if trend is not None:
        a.plot(*trend, color="C3", lw=1.2)
    a.set_xlabel("fitted values")
    a.set_ylabel("standardized residuals")
    fig.tight_layout()
    return fig


def _running_mean(x: np.ndarray, y: np.ndarray, bins: int = 20) -> tuple | None:
    """Means of y in quantile bins of x (a simple smoother for the trend of residuals)."""
    if x.size < 2 * bins:
        return None
    edges = np.unique(np.quantile(x, np.linspace(0, 1, bins + 1)))
    if edges.size < 3:
        return None
    idx = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, edges.size - 2)
    cnt = np.bincount(idx, minlength=edges.size - 1)
    ok = cnt > 0
    mx = np.bincount(idx, weights=x, minlength=edges.size - 1)[ok] / cnt[ok]
    my = np.bincount(idx, weights=y, minlength=edges.size - 1)[ok] / cnt[ok]
    return mx, my


def qq(result: Fit, *, ax: Any = None) -> Any:
    """Normal quantile-quantile plot of the standardized residuals, with the identity line."""
    fig, (a,) = _panels(1, ax, size=(4.0, 4.0))
    r = np.sort(_residuals(result))
    n = r.size
    theo = stats.norm.ppf((np.arange(1, n + 1) - 0.5) / n)
    a.plot(theo, r, "o", ms=3, alpha=0.7, color="C0")
    lim = [float(min(theo[0], r[0])), float(max(theo[-1], r[-1]))]
    a.plot(lim, lim, color="0.3", lw=0.8, ls="--")
    a.set_xlabel("normal quantiles")
    a.set_ylabel("standardized residuals")
    fig.tight_layout()
    return fig


# -- bootstrap ----------------------------------------------------------------------------------
def bootstrap_densities(
    boot: BootstrapResult,
    params: Sequence[str] | str | None = None,
    *,
    level: float = 0.95,
    ncols: int | None = None,
    ax: Any = None,
) -> Any:
    """Density of each parameter over the bootstrap replicates (histogram and kernel density),
    with the original estimate and the percentile interval marked."""
    reps = boot.replicates
    names = [params] if isinstance(params, str) else list(params or reps.columns)
    missing = [p for p in names if p not in reps.columns]
    if missing:
        raise ModelSpecError(f"no parameter {missing[0]!r}; available: {list(reps.columns)}")
    fig, axes = _panels(len(names), ax, ncols=ncols or min(len(names), 3))
    if len(axes) == 1 and len(names) > 1:
        raise ModelSpecError(f"{len(names)} parameters: pass params= or one Axes per parameter")
    ci = boot.confint(level=level)
    for a, name in zip(axes, names, strict=True):
        t = reps[name].to_numpy(dtype=float)
        t = t[np.isfinite(t)]
        a.hist(t, bins=30, density=True, color="C0", alpha=0.35)
        if t.size > 2 and np.ptp(t) > 0:
            grid = np.linspace(t.min(), t.max(), 200)
            a.plot(grid, stats.gaussian_kde(t)(grid), color="C0", lw=1.2)
        a.axvline(float(boot.estimates[name]), color="C3", lw=1.2)
        lo, hi = ci.loc[name]
        if np.isfinite(lo) and np.isfinite(hi):
            a.axvspan(lo, hi, color="0.85", zorder=0)
        a.set_title(name, fontsize=9)
        a.tick_params(labelsize=7)
    fig.tight_layout()
    return fig


# -- profiles -----------------------------------------------------------------------------------
def profile_zeta(
    prof: ProfileResult,
    params: Sequence[str] | str | None = None,
    *,
    absolute: bool = False,
    ncols: int | None = None,
    ax: Any = None,
) -> Any:
    """Profile zeta (the signed square root of the deviance increase) against each parameter,
    one panel per parameter (lme4's ``xyplot`` of a profile): a straight line where the
    likelihood is quadratic, and the interval at level 1 - alpha where |zeta| stays below the
    normal quantile z_(1 - alpha/2).

    Parameters
    ----------
    prof
        A :class:`~mixedmodels.inference.profile.ProfileResult` (``fit.profile()``).
    params
        The profiled parameters to draw (default: all of them, in the profile's order).
    absolute
        Draw |zeta| instead of zeta.
    ncols
        Panels per row (default: up to 3).
    ax
        Axes to draw on: one per parameter drawn (a single Axes when one parameter is drawn).

    Returns
    -------
    matplotlib.figure.Figure
        The figure drawn on (that of ``ax`` when given).

    Raises
    ------
    ModelSpecError
        If a parameter was not profiled, or ``ax`` does not hold one Axes per parameter.
    """
    profiled = list(dict.fromkeys(prof.table["parameter"]))
    names = [params] if isinstance(params, str) else list(params or profiled)
    missing = [p for p in names if p not in profiled]
    if missing:
        raise ModelSpecError(f"parameter {missing[0]!r} was not profiled; profiled: {profiled}")
    if not names:
        raise ModelSpecError("nothing to draw: params= is empty")
    if ax is not None:
        given = len(np.atleast_1d(ax).ravel())
        if given != len(names):
            raise ModelSpecError(
                f"ax has {given} Axes, but this profile plot draws {len(names)} panels, one per "
                f"parameter ({', '.join(names)}): pass {len(names)} Axes, or choose the "
                f"parameters with params="
            )
    fig, axes = _panels(len(names), ax, ncols=ncols or min(len(names), 3), size=(3.2, 2.8))
    for a, name in zip(axes, names, strict=True):
        g = prof.table[prof.table["parameter"] == name].sort_values("value")
        zeta = g["zeta"].abs() if absolute else g["zeta"]
        a.plot(g["value"].to_numpy(dtype=float), zeta.to_numpy(dtype=float), "-o", ms=2)
        a.axhline(0.0, color="grey", lw=0.5)
        a.set_xlabel(name)
        a.set_ylabel("|zeta|" if absolute else "zeta")
    fig.tight_layout()
    return fig


# -- Bayesian fits ------------------------------------------------------------------------------
def bayes_predictive_bands(
    result: Any,
    x: str,
    *,
    group: str | None = None,
    kind: str = "response",
    hdi_prob: float = 0.94,
    ncols: int | None = None,
    max_groups: int | None = 48,
    seed: int | None = 0,
    ax: Any = None,
) -> Any:
    """Posterior predictive bands of a Bayesian fit against a covariate.

    With ``group`` (a grouping factor of the model): one panel per level with the level's data,
    the posterior mean of its predictions and a central ``hdi_prob`` band (the per-subject
    figure of the sleep-deprivation study). Without: one panel with all the data and the
    population-level prediction (fixed effects only).

    Parameters
    ----------
    result
        A :class:`~mixedmodels.bayesian.result.BayesResult`.
    x
        A numeric column of the data for the horizontal axis.
    group
        A grouping factor of the model, or None for the population level.
    kind
        ``"response"`` (default): bands of new observations (posterior predictive);
        ``"mean"``: bands of the mean response.
    hdi_prob
        Probability of the central band (quantiles (1 - p) / 2 and (1 + p) / 2).
    ncols, max_groups
        Panels per row; at most this many groups (the first ones), None for all.
    seed
        Seed of the predictive draws.
    ax
        An Axes (one for all: the population plot, or all groups overlaid), or one per panel.
    """
    design = result.model.design
    frame = design.frame
    if frame is None or x not in frame.columns:
        cols = [] if frame is None else [str(c) for c in frame.columns]
        raise ModelSpecError(f"x={x!r} is not a column of the fitted data (columns: {cols})")
    xs = frame[x]
    if not pd.api.types.is_numeric_dtype(xs.dtype) or pd.api.types.is_bool_dtype(xs.dtype):
        raise ModelSpecError(f"x={x!r} must be a numeric column, not {xs.dtype}")
    if not 0 < hdi_prob < 1:
        raise ModelSpecError("hdi_prob must be between 0 and 1")
    xv = xs.to_numpy(dtype=float)
    y = np.asarray(result.model.data.y, dtype=float)
    if result.model.family == "binomial" and result.model.data.trials is not None:
        y = y / result.model.data.trials  # proportions, as the mean is
        if kind == "response":
            kind = "mean"
    groups = [t.group_name for t in design.terms]
    if group is not None and group not in groups:
        raise ModelSpecError(f"no grouping factor {group!r}; available: {groups}")
    draws = result.predict(kind=kind, re_form=None if group else "~0", seed=seed)
    flat = np.asarray(draws).reshape(-1, draws.shape[-1])
    lo_q, hi_q = (1 - hdi_prob) / 2, (1 + hdi_prob) / 2
    mean = flat.mean(axis=0)
    lo = np.quantile(flat, lo_q, axis=0)
    hi = np.quantile(flat, hi_q, axis=0)

    def draw(a: Any, rows: np.ndarray, color: str) -> None:
        o = rows[np.argsort(xv[rows], kind="stable")]
        a.fill_between(xv[o], lo[o], hi[o], color=color, alpha=0.25, lw=0)
        a.plot(xv[o], mean[o], "-", color=color, lw=1.2)
        a.plot(xv[o], y[o], "o", ms=3, color=color, alpha=0.8)

    if group is None:
        fig, axes = _panels(1, ax)
        # one band over the distinct x values (population level: same prediction per x)
        draw(axes[0], np.arange(len(y)), "C0")
        axes[0].set_xlabel(x)
        axes[0].set_ylabel(design.response_name)
        fig.tight_layout()
        return fig
    term = design.terms[groups.index(group)]
    levels = list(range(term.nlevels))
    if max_groups is not None:
        levels = levels[:max_groups]
    single = ax is not None and len(np.atleast_1d(ax).ravel()) == 1
    fig, axes = _panels(1 if single else len(levels), ax, ncols=ncols, size=(2.4, 2.2))
    for i, lv in enumerate(levels):
        a = axes[0] if single else axes[i]
        rows = np.flatnonzero(term.refs == lv)
        draw(a, rows, f"C{i % 10}" if single else "C0")
        if not single:
            a.set_title(str(term.levels[lv]), fontsize=8)
            a.tick_params(labelsize=7)
    if single:
        axes[0].set_xlabel(x)
        axes[0].set_ylabel(design.response_name)
    else:
        fig.supxlabel(x)
        fig.supylabel(design.response_name)
    fig.tight_layout()
    return fig
