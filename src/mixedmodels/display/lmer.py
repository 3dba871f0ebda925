"""Text and HTML presentation of linear mixed-model fits in lme4's layout.

Presentation only formats what the fit already computed (DESIGN principle 3). The text
reproduces ``print(summary(fit))`` and ``print(fit)`` of lme4 1.1: the same sections, in the same
order, with R's rounding and column formatting (see :mod:`mixedmodels.display.rformat`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mixedmodels.display import rformat

if TYPE_CHECKING:
    from mixedmodels.results import LmerResult, VarCorr
    from mixedmodels.results_glmm import GlmerResult

__all__ = ["LmerSummary", "format_print"]

#: lme4 shows the correlation of fixed effects only up to this many coefficients
#: (``getOption("lme4.summary.cor.max")``).
COR_MAX = 12

SINGULAR_MESSAGE = "boundary (singular) fit: see help(mixedmodels.LmerResult.is_singular)"


def _method_title(reml: bool) -> str:
    # lme4's methTitle() leaves a trailing space after "maximum likelihood"
    return "Linear mixed model fit by " + ("REML" if reml else "maximum likelihood ")


_DDF_TITLE = {"satterthwaite": "Satterthwaite's", "kenward-roger": "Kenward-Roger's"}


def _title(result: LmerResult, ddf: str) -> str:
    """lme4's ``.prt.methTit``: the method title and the class, wrapped as R wraps them."""
    title = _method_title(result.reml)
    cls = "lmerMod"
    if ddf != "none":
        title = f"{title}. t-tests use {_DDF_TITLE[ddf]} method"
        cls = "lmerModLmerTest"
    return _wrap_title(title, cls)


def _wrap_title(title: str, cls: str) -> str:
    """``.prt.methTit``: ``title ['cls']``, or wrapped as
    ``cat(strwrap(title), " [", cls, "]")``."""
    if len(title) + 5 + len(cls) > 80:
        lines = rformat.strwrap(title, 78, prefix="  ", initial="")
        return rformat.cat_fill([lines, " [", cls, "]"], sep="").rstrip("\n")
    return f"{title} ['{cls}']"


def _header(result: LmerResult, ddf: str = "none") -> list[str]:
    d = result.design
    lines = [_title(result, ddf)]
    lines.append(f"Formula: {d.formula.source}")
    if d.data_name:
        lines.append(f"   Data: {d.data_name}")
    if d.weights_name:
        lines.append(f"Weights: {d.weights_name}")
    if d.offset_name:
        lines.append(f" Offset: {d.offset_name}")
    return lines


def _r_cat_number(x: float) -> str:
    """How R's ``cat`` writes a number (up to 7 significant digits)."""
    return rformat.format_num([x], digits=7)[0].strip()


def _aic_table(result: LmerResult | GlmerResult, digits: int) -> str:
    """lme4's ``.prt.aictab``: the REML criterion line, or the AIC/BIC/logLik table for ML."""
    if result.reml:
        value = rformat.r_round(result.objective_value, digits)
        return f"REML criterion at convergence: {_r_cat_number(float(value))}\n"
    vals = [result.aic, result.bic, result.loglik, result.deviance]
    rounded = [float(rformat.r_round(v, digits)) for v in vals]
    cells = rformat.format_num([*rounded, float(result.df_resid)], digits=7)[:4]
    cells.append(rformat.format_num([float(result.df_resid)], digits=7)[0])
    return rformat.print_named(cells, ["AIC", "BIC", "logLik", "deviance", "df.resid"])


def _groups_line(result: Any) -> str:
    parts = [
        f"Number of obs: {result.nobs}, groups: ",
        "; ".join(f"{g}, {n}" for g, n in result.ngroups.items()),
    ]
    return rformat.cat_fill(parts)


def _fixef_correlation(result: Any) -> str:
    p = len(result.beta)
    if p <= 1:
        return ""
    V = result.vcov.to_numpy()
    sd = np.sqrt(np.diag(V))
    corr = V / np.outer(sd, sd)
    names = list(result.design.fixef_names)
    rns = rformat.abbreviate(names, minlength=11)
    cns = rformat.abbreviate(names, minlength=6)
    rounded = rformat.r_round(corr.ravel(), 3)
    cells = np.array(rformat.format_num(rounded, nsmall=3), dtype=object).reshape(p, p)
    cells[~np.tril(np.ones((p, p), dtype=bool), k=-1)] = ""
    return "\nCorrelation of Fixed Effects:\n" + rformat.print_matrix(
        cells[1:, :-1], rns[1:], cns[:-1]
    )


def _warnings_block(result: Any, summary: bool) -> str:
    """lme4's ``.prt.warn``: optimizer code and lme4's messages, when there is something to say."""
    messages = []
    if result.is_singular:
        messages.append(SINGULAR_MESSAGE)
    # the optimizer's own complaints, and the checks made after it (gradient, Hessian), which
    # lme4 counts as its own messages
    warnings = [w for w in result.optinfo.warnings if w.startswith("optimizer")]
    messages += [w for w in result.optinfo.warnings if not w.startswith("optimizer")]
    code = 0 if result.optinfo.return_code > 0 else result.optinfo.return_code
    if code == 0 and not messages and not warnings:
        return ""
    status = "(OK)" if code == 0 else f"({result.optinfo.message})"
    conv = f"optimizer (LN_BOBYQA) convergence code: {code} {status}"
    if summary:
        return f"{conv} ; {len(warnings)} optimizer warnings; {len(messages)} lme4 warnings \n"
    return "\n".join([conv, *messages, *warnings]) + "\n\n"


def _fit_messages(result: Any) -> str:
    msgs = []
    for m in result.design.messages:
        if "rank deficient" in m:
            k = len(result.design.dropped_fixef)
            msgs.append(
                f"fixed-effect model matrix is rank deficient so dropping {k} column"
                f"{'s' if k != 1 else ''} / coefficient{'s' if k != 1 else ''}"
            )
    if not msgs:
        return ""
    return "fit warnings:\n" + "\n".join(msgs) + "\n"


@dataclass(frozen=True)
class LmerSummary:
    """Summary of a linear mixed-model fit (what lme4's ``summary()`` prints).

    ``str(summary)`` is lme4's text layout; in a notebook it renders as HTML.

    Attributes
    ----------
    result
        The fit summarized.
    coefficients
        Estimate, Std. Error and t value of each fixed effect.
    residual_quantiles
        Min, 1Q, Median, 3Q and Max of the scaled Pearson residuals.
    digits
        Significant digits used by the text layout (lme4's default 4).
    correlation
        Show the correlation of the fixed effects (default: when there are at most 12).
    """

    result: LmerResult
    coefficients: pd.DataFrame
    residual_quantiles: pd.Series
    digits: int = 4
    correlation: bool | None = None
    ddf: str = "satterthwaite"

    @classmethod
    def from_result(
        cls,
        result: LmerResult,
        ddf: str | None = "satterthwaite",
        digits: int = 4,
        correlation: bool | None = None,
    ) -> LmerSummary:
        if ddf is None or str(ddf).lower() in ("none", "lme4"):
            method = "none"
        else:
            from mixedmodels.inference.anova import _ddf_name

            method = _ddf_name(ddf)
        coefs = result.coef_table(method)
        r = result.residuals("pearson", scaled=True).to_numpy()
        q = np.quantile(r, [0.0, 0.25, 0.5, 0.75, 1.0])
        rq = pd.Series(q, index=["Min", "1Q", "Median", "3Q", "Max"])
        return cls(result, coefs, rq, digits, correlation, method)

    @property
    def varcorr(self) -> VarCorr:
        return self.result.varcorr

    def __str__(self) -> str:
        return "\n".join(_header(self.result, self.ddf)) + "\n\n" + summary_body(self)

    def __repr__(self) -> str:
        return self.__str__()

    def _repr_html_(self) -> str:
        from mixedmodels.display.html import lmer_summary_html

        return lmer_summary_html(self)


def format_print(result: LmerResult, digits: int = 4) -> str:
    """lme4's ``print(fit)``: the short form, with the fixed effects as a named vector."""
    return "\n".join(_header(result)) + "\n" + print_body(result, digits)


def print_body(result: Any, digits: int = 4) -> str:
    """lme4's ``print(fit)`` after the title lines (shared by LMMs and GLMMs)."""
    out = _aic_table(result, 4)
    out += "Random effects:\n"
    out += result.varcorr.format(digits=digits, comp=("Std.Dev.",))
    out += _groups_line(result)
    if len(result.beta):
        out += "Fixed Effects:\n"
        cells = rformat.format_num(result.beta, digits=digits)
        out += rformat.print_named(cells, list(result.design.fixef_names), gap=2)
    else:
        out += "No fixed effect coefficients\n"
    out += _fit_messages(result)
    out += _warnings_block(result, summary=True)
    return out


def summary_body(summary: Any) -> str:
    """Everything of lme4's summary after the title lines (shared by LMMs and GLMMs):
    criterion, scaled residuals, random effects, fixed effects, correlations, messages."""
    res = summary.result
    digits = summary.digits
    out = _aic_table(res, 1) + "\n"
    out += "Scaled residuals: \n"
    zq = rformat.zapsmall(summary.residual_quantiles.to_numpy(), digits + 1)
    out += (
        rformat.print_named_numeric(zq, list(summary.residual_quantiles.index), digits=digits)
        + "\n"
    )
    out += "Random effects:\n"
    out += res.varcorr.format(digits=digits, comp=("Variance", "Std.Dev."))
    out += _groups_line(res)
    if res.n_dropped:
        k = res.n_dropped
        out += f"  ({k} observation{'s' if k != 1 else ''} deleted due to missingness)\n"
    p = len(res.beta)
    if p > 0:
        out += "\nFixed effects:\n"
        out += rformat.print_coefmat(
            summary.coefficients.to_numpy(),
            list(summary.coefficients.index),
            list(summary.coefficients.columns),
            digits=digits,
        )
        show = summary.correlation if summary.correlation is not None else p <= COR_MAX
        if show:
            out += _fixef_correlation(res)
        elif summary.correlation is None:
            out += (
                f"\nCorrelation matrix not shown by default, as p = {p} > {COR_MAX}.\n"
                "Use fit.summary(correlation=True) or fit.vcov if you need it\n\n"
            )
    out += _fit_messages(res)
    out += _warnings_block(res, summary=False)
    return out
