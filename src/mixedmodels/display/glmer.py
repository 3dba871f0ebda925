"""Text and HTML presentation of generalized linear mixed-model fits in lme4's layout."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from . import rformat
from .lmer import (
    COR_MAX,
    _aic_table,
    _fit_messages,
    _fixef_correlation,
    _groups_line,
    _warnings_block,
    _wrap_title,
)

if TYPE_CHECKING:
    from ..results_glmm import GlmerResult

__all__ = ["GlmerSummary", "format_print"]


def _method_title(result: GlmerResult) -> str:
    """lme4's ``methTitle`` for a GLMM."""
    nagq = result.nAGQ
    how = (
        "(Laplace Approximation)"
        if nagq == 1
        else f"(Adaptive Gauss-Hermite Quadrature, nAGQ = {nagq})"
    )
    return f"Generalized linear mixed model fit by maximum likelihood {how}"


def _header(result: GlmerResult) -> list[str]:
    d = result.design
    fam = result.family
    lines = [_wrap_title(_method_title(result), "glmerMod")]
    lines.append(rformat.cat_fill([" Family:", fam.name, f" ( {fam.link.name} )"]).rstrip("\n"))
    lines.append(f"Formula: {d.formula.source}")
    if d.data_name:
        lines.append(f"   Data: {d.data_name}")
    if d.weights_name:
        lines.append(f"Weights: {d.weights_name}")
    if d.offset_name:
        lines.append(f" Offset: {d.offset_name}")
    return lines


@dataclass(frozen=True)
class GlmerSummary:
    """Summary of a GLMM fit (lme4's ``summary``); ``str`` is lme4's layout.

    Attributes
    ----------
    result
        The fit.
    coefficients
        Estimate, Std. Error, z value, Pr(>|z|) of each fixed effect.
    residual_quantiles
        Quantiles of the scaled Pearson residuals.
    """

    result: GlmerResult
    coefficients: pd.DataFrame
    residual_quantiles: pd.Series
    digits: int = 4
    correlation: bool | None = None

    @classmethod
    def from_result(
        cls, result: GlmerResult, digits: int = 4, correlation: bool | None = None
    ) -> GlmerSummary:
        r = result.residuals("pearson", scaled=True).to_numpy()
        q = np.quantile(r, [0.0, 0.25, 0.5, 0.75, 1.0])
        rq = pd.Series(q, index=["Min", "1Q", "Median", "3Q", "Max"])
        return cls(result, result.coef_table(), rq, digits, correlation)

    def __str__(self) -> str:
        res = self.result
        digits = self.digits
        out = "\n".join(_header(res)) + "\n\n"
        out += _aic_table(res, 1) + "\n"
        out += "Scaled residuals: \n"
        zq = rformat.zapsmall(self.residual_quantiles.to_numpy(), digits + 1)
        out += (
            rformat.print_named_numeric(zq, list(self.residual_quantiles.index), digits=digits)
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
                self.coefficients.to_numpy(),
                list(self.coefficients.index),
                list(self.coefficients.columns),
                digits=digits,
            )
            show = self.correlation if self.correlation is not None else p <= COR_MAX
            if show:
                out += _fixef_correlation(res)
            elif self.correlation is None:
                out += (
                    f"\nCorrelation matrix not shown by default, as p = {p} > {COR_MAX}.\n"
                    "Use fit.summary(correlation=True) or fit.vcov if you need it\n\n"
                )
        out += _fit_messages(res)
        out += _warnings_block(res, summary=False)
        return out

    def __repr__(self) -> str:
        return self.__str__()

    def _repr_html_(self) -> str:
        from .html import glmer_summary_html

        return glmer_summary_html(self)


def format_print(result: GlmerResult, digits: int = 4) -> str:
    """lme4's ``print(fit)`` for a GLMM."""
    out = "\n".join(_header(result)) + "\n"
    out += _aic_table(result, 4)
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
