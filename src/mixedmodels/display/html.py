"""HTML renderings for notebooks (``_repr_html_``).

They show the same numbers as the text layouts, as tables: a header, the variance components,
the fixed effects.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from mixedmodels.display.lm import LmSummary
    from mixedmodels.display.lmer import LmerSummary
    from mixedmodels.results import VarCorr

__all__ = ["glmer_summary_html", "lm_summary_html", "lmer_summary_html", "varcorr_html"]

_STYLE = (
    "<style>.mm-summary table{border-collapse:collapse;margin:0.3em 0 0.8em 0}"
    ".mm-summary th,.mm-summary td{padding:0.15em 0.7em;text-align:right}"
    ".mm-summary th:first-child,.mm-summary td:first-child{text-align:left}"
    ".mm-summary caption{text-align:left;font-weight:bold}</style>"
)


def _num(x: float, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return ""
    return f"{x:.{digits}g}" if abs(x) < 1e5 else f"{x:.{digits + 2}g}"


def _cell(v: object, digits: int) -> str:
    if isinstance(v, int | float | np.floating):
        return _num(float(v), digits)
    return html.escape(str(v))


def _table(df: pd.DataFrame, caption: str, digits: int = 4) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in [df.index.name or "", *df.columns])
    rows = []
    for idx, row in df.iterrows():
        cells = [f"<td>{html.escape(str(idx))}</td>"]
        for v in row:
            cells.append(f"<td>{_cell(v, digits)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><caption>{html.escape(caption)}</caption><tr>{head}</tr>{''.join(rows)}</table>"


def _varcorr_frame(vc: VarCorr) -> pd.DataFrame:
    """The variance components, one row per effect: Group (the index, shown on the first
    effect of each term), Name, Variance, Std.Dev. and Corr (the effect's correlations with
    the term's earlier effects, as lme4 prints them: two decimals, comma separated); then the
    residual when the model has a scale."""
    rows = []
    for t in vc.terms:
        corr = t.corr
        for i, name in enumerate(t.names):
            cor = ", ".join(f"{corr[i, j]:.2f}" for j in range(i))
            rows.append(
                (t.group if i == 0 else "", name, t.cov[i, i], float(np.sqrt(t.cov[i, i])), cor)
            )
    if vc.use_scale:
        rows.append(("Residual", "", vc.sigma**2, vc.sigma, ""))
    return pd.DataFrame(rows, columns=["Group", "Name", "Variance", "Std.Dev.", "Corr"]).set_index(
        "Group"
    )


def varcorr_html(vc: VarCorr) -> str:
    """The variance components as an HTML table (group, effect, variance, SD, correlations)."""
    return f'<div class="mm-summary">{_STYLE}{_table(_varcorr_frame(vc), "Random effects")}</div>'


def lmer_summary_html(s: LmerSummary) -> str:
    res = s.result
    d = res.design
    crit = (
        f"REML criterion at convergence: {res.objective_value:.1f}"
        if res.reml
        else f"AIC {res.aic:.1f} &middot; BIC {res.bic:.1f} &middot; logLik {res.loglik:.1f} "
        f"&middot; deviance {res.deviance:.1f} &middot; df.resid {res.df_resid}"
    )
    groups = ", ".join(f"{html.escape(g)}: {n}" for g, n in res.ngroups.items())
    title = "REML" if res.reml else "maximum likelihood"
    parts = [
        f'<div class="mm-summary">{_STYLE}',
        f"<b>Linear mixed model fit by {title}</b><br>",
        f"<code>{html.escape(d.formula.source)}</code>"
        + (f" &nbsp;data: <code>{html.escape(d.data_name)}</code>" if d.data_name else "")
        + "<br>",
        f"{crit}<br>",
        f"Number of obs: {res.nobs} ({groups})"
        + (f"; {res.n_dropped} rows with missing values dropped" if res.n_dropped else "")
        + "<br>",
        _table(_varcorr_frame(res.varcorr), "Random effects"),
        _table(s.coefficients, "Fixed effects"),
    ]
    if res.is_singular:
        parts.append("<i>boundary (singular) fit</i><br>")
    parts.extend(f"<i>{html.escape(w)}</i><br>" for w in res.optinfo.warnings)
    parts.append("</div>")
    return "".join(parts)


def lm_summary_html(s: LmSummary) -> str:
    res = s.result
    d = res.design
    f = res.fstatistic
    parts = [
        f'<div class="mm-summary">{_STYLE}',
        "<b>Linear model fit by least squares</b><br>",
        f"<code>{html.escape(d.formula.source)}</code><br>",
        _table(s.coefficients, "Coefficients"),
        f"Residual standard error: {res.sigma:.4g} on {res.df_resid} degrees of freedom<br>",
        f"Multiple R-squared: {res.r_squared:.4g}, adjusted R-squared: {res.adj_r_squared:.4g}<br>",
    ]
    if f is not None:
        parts.append(
            f"F-statistic: {f[0]:.4g} on {f[1]} and {f[2]} DF, p-value: {res.f_pvalue:.4g}<br>"
        )
    parts.append("</div>")
    return "".join(parts)


def glmer_summary_html(s: object) -> str:
    """HTML summary of a GLMM fit."""
    res = s.result  # type: ignore[attr-defined]
    d = res.design
    fam = res.family
    groups = ", ".join(f"{html.escape(g)}: {n}" for g, n in res.ngroups.items())
    how = "Laplace approximation" if res.nAGQ == 1 else f"adaptive quadrature, nAGQ = {res.nAGQ}"
    parts = [
        f'<div class="mm-summary">{_STYLE}',
        f"<b>Generalized linear mixed model fit by maximum likelihood ({how})</b><br>",
        f"Family: {html.escape(fam.name)} ({html.escape(fam.link.name)})<br>",
        f"<code>{html.escape(d.formula.source)}</code>"
        + (f" &nbsp;data: <code>{html.escape(d.data_name)}</code>" if d.data_name else "")
        + "<br>",
        f"AIC {res.aic:.1f} &middot; BIC {res.bic:.1f} &middot; logLik {res.loglik:.1f} "
        f"&middot; deviance {res.deviance:.1f} &middot; df.resid {res.df_resid}<br>",
        f"Number of obs: {res.nobs} ({groups})<br>",
        _table(_varcorr_frame(res.varcorr), "Random effects"),
        _table(s.coefficients, "Fixed effects"),  # type: ignore[attr-defined]
    ]
    if res.is_singular:
        parts.append("<i>boundary (singular) fit</i><br>")
    parts.extend(f"<i>{html.escape(w)}</i><br>" for w in res.optinfo.warnings)
    parts.append("</div>")
    return "".join(parts)
