"""Text and HTML presentation of generalized linear mixed-model fits in lme4's layout."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from mixedmodels.display import rformat
from mixedmodels.display.lmer import _wrap_title, print_body, summary_body

if TYPE_CHECKING:
    from mixedmodels.results_glmm import GlmerResult

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
        return "\n".join(_header(self.result)) + "\n\n" + summary_body(self)

    def __repr__(self) -> str:
        return self.__str__()

    def _repr_html_(self) -> str:
        from mixedmodels.display.html import glmer_summary_html

        return glmer_summary_html(self)


def format_print(result: GlmerResult, digits: int = 4) -> str:
    """lme4's ``print(fit)`` for a GLMM."""
    return "\n".join(_header(result)) + "\n" + print_body(result, digits)
