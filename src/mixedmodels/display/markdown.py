"""A fitted model as a Markdown report: model, fixed effects, random effects, fit statistics."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

__all__ = ["markdown_table", "to_markdown"]


def _cell(value: Any, digits: int) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.{digits}g}"
    return str(value).replace("|", "\\|")


def markdown_table(frame: pd.DataFrame, *, index: bool = True, digits: int = 5) -> str:
    """A DataFrame as a GitHub-flavoured Markdown table (numbers to ``digits`` significant
    digits, missing values blank)."""
    cols: Sequence[Any] = list(frame.columns)
    header = ([frame.index.name or ""] if index else []) + [str(c) for c in cols]
    lines = ["| " + " | ".join(h.replace("|", "\\|") for h in header) + " |"]
    align = (["---"] if index else []) + [
        "---:" if pd.api.types.is_numeric_dtype(frame[c].dtype) else "---" for c in cols
    ]
    lines.append("| " + " | ".join(align) + " |")
    for key, row in frame.iterrows():
        cells = ([_cell(key, digits)] if index else []) + [_cell(row[c], digits) for c in cols]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def to_markdown(fit: Any, *, ddf: str = "satterthwaite", data_name: str | None = None) -> str:
    """The report ``mixedmodels fit --format markdown`` writes.

    Parameters
    ----------
    fit
        A fitted linear or generalized linear mixed model.
    ddf
        Denominator df of the fixed-effect tests of a linear mixed model.
    data_name
        The data, as named in the report.
    """
    from mixedmodels.results_glmm import GlmerResult

    glmm = isinstance(fit, GlmerResult)
    if glmm:
        kind = f"Generalized linear mixed model ({fit.family.name}, {fit.family.link.name} link)"
        table = fit.coef_table()
    else:
        kind = "Linear mixed model fit by " + ("REML" if fit.reml else "maximum likelihood")
        table = fit.coef_table(ddf)
    lines = [f"## {kind}", "", f"`{fit.formula}`", ""]
    facts = [f"observations: {fit.nobs}"]
    if data_name:
        facts.insert(0, f"data: {data_name}")
    facts += [f"{g}: {n} levels" for g, n in fit.ngroups.items()]
    if fit.n_dropped:
        facts.append(f"rows dropped for missing values: {fit.n_dropped}")
    lines += ["- " + f for f in facts] + ["", "### Fixed effects", ""]
    table = table.copy()
    table.index.name = "term"
    lines += [markdown_table(table), "", "### Random effects", ""]
    vc = fit.varcorr.to_frame()
    vc = vc.rename(columns={"grp": "group", "vcov": "variance/covariance", "sdcor": "sd/cor"})
    lines += [markdown_table(vc, index=False), "", "### Fit", ""]
    stats = pd.DataFrame(
        {"value": [fit.loglik, fit.aic, fit.bic, fit.deviance]},
        index=pd.Index(["log-likelihood", "AIC", "BIC", "deviance"], name="statistic"),
    )
    if not glmm and fit.reml_criterion is not None:
        stats.loc["REML criterion"] = fit.reml_criterion
    lines.append(markdown_table(stats, digits=8))
    notes = list(fit.design.messages)
    if fit.is_singular:
        notes.append(
            "boundary (singular) fit: a variance is estimated as zero or a correlation as +/-1"
        )
    if notes:
        lines += ["", "### Notes", ""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"
