"""R's ``summary.lm`` layout for :class:`~mixedmodels.lm.LmResult`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from mixedmodels.display import rformat

if TYPE_CHECKING:
    from mixedmodels.lm import LmResult

__all__ = ["LmSummary"]


def _formatc(x: float, digits: int) -> str:
    """R's ``formatC(x, digits = d)`` (C's ``%.*g``)."""
    return f"{x:.{digits}g}"


@dataclass(frozen=True)
class LmSummary:
    """Summary of a linear model fit (what R's ``summary(lm(...))`` prints).

    Attributes
    ----------
    result
        The fit.
    coefficients
        Estimate, Std. Error, t value and Pr(>|t|) (NaN rows for aliased coefficients).
    residual_quantiles
        Min, 1Q, Median, 3Q, Max of the (weighted) residuals.
    """

    result: LmResult
    coefficients: pd.DataFrame
    residual_quantiles: pd.Series
    digits: int = 4

    @classmethod
    def from_result(cls, result: LmResult, digits: int = 4) -> LmSummary:
        r = result.residuals("pearson").to_numpy()
        q = np.quantile(r, [0.0, 0.25, 0.5, 0.75, 1.0])
        return cls(
            result,
            result.coefficients_table(),
            pd.Series(q, index=["Min", "1Q", "Median", "3Q", "Max"]),
            digits,
        )

    def __str__(self) -> str:
        res = self.result
        d = res.design
        digits = self.digits
        data = f", data = {d.data_name}" if d.data_name else ""
        out = f"\nCall:\nlm(formula = {d.formula.source}{data})\n\n"
        weighted = d.weights is not None and np.ptp(d.weights) > 0
        out += ("Weighted " if weighted else "") + "Residuals:\n"
        rdf = res.df_resid
        if rdf > 5:
            zq = rformat.zapsmall(self.residual_quantiles.to_numpy(), digits + 1)
            out += rformat.print_named_numeric(
                zq, list(self.residual_quantiles.index), digits=digits
            )
        elif rdf > 0:
            r = res.residuals("pearson")
            out += rformat.print_named_numeric(
                r.to_numpy(), [str(i + 1) for i in range(len(r))], digits=digits
            )
        else:
            out += f"ALL {res.nobs} residuals are 0: no residual degrees of freedom!\n"
        coefs = self.coefficients
        if len(coefs) == 0:
            out += "\nNo Coefficients\n"
        else:
            nsing = len(coefs) - res.rank
            if nsing:
                out += f"\nCoefficients: ({nsing} not defined because of singularities)\n"
            else:
                out += "\nCoefficients:\n"
            out += rformat.print_coefmat(
                coefs.to_numpy(),
                list(coefs.index),
                list(coefs.columns),
                digits=digits,
                na_print="NA",
            )
        sigma = rformat.format_num([float(rformat.signif(res.sigma, digits))], digits=7)[0].strip()
        out += f"\nResidual standard error: {sigma} on {rdf} degrees of freedom\n"
        if res.design.n_dropped:
            k = res.design.n_dropped
            out += f"  ({k} observation{'s' if k != 1 else ''} deleted due to missingness)\n"
        f = res.fstatistic
        if f is not None:
            pval = rformat.format_pval([res.f_pvalue], digits=digits)[0]
            out += (
                f"Multiple R-squared:  {_formatc(res.r_squared, digits)},\t"
                f"Adjusted R-squared:  {_formatc(res.adj_r_squared, digits)} \n"
                f"F-statistic: {_formatc(f[0], digits)} on {f[1]} and {f[2]} DF,  p-value: {pval}\n"
            )
        out += "\n"
        return out

    def __repr__(self) -> str:
        return self.__str__()

    def _repr_html_(self) -> str:
        from mixedmodels.display.html import lm_summary_html

        return lm_summary_html(self)
