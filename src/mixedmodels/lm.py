"""Ordinary (weighted) least squares with R's ``lm`` results, for side-by-side comparison with
mixed models fitted to the same data."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import scipy.linalg as sla
from scipy import special

from mixedmodels.errors import FormulaError, ModelSpecError
from mixedmodels.formula.design import ArrayLike, Design, build_design, new_data_arrays

__all__ = ["LmResult", "fit_lm", "lm"]


@dataclass(frozen=True, eq=False)
class LmResult:
    """A fitted linear model (returned by :func:`lm`).

    Attributes
    ----------
    design
        The evaluated formula.
    beta
        Estimates of the estimable coefficients (columns of X kept).
    vcov_unscaled
        inv(X' W X) for those coefficients.
    sigma
        Residual standard error.
    """

    design: Design
    beta: np.ndarray
    vcov_unscaled: np.ndarray = field(repr=False)
    sigma: float
    rss: float

    @property
    def nobs(self) -> int:
        return self.design.nobs

    @property
    def rank(self) -> int:
        return len(self.beta)

    @property
    def df_resid(self) -> int:
        return self.nobs - self.rank

    @property
    def has_intercept(self) -> bool:
        return "(Intercept)" in self.design.fixef_names

    @property
    def coef(self) -> pd.Series:
        """Coefficients, NaN for those not estimable (aliased), as R's ``coef(lm)``."""
        full = pd.Series(np.nan, index=list(self.design.all_fixef_names), name="Estimate")
        full.loc[list(self.design.fixef_names)] = self.beta
        return full

    fixef = coef

    @property
    def vcov(self) -> pd.DataFrame:
        names = list(self.design.fixef_names)
        return pd.DataFrame(self.sigma**2 * self.vcov_unscaled, index=names, columns=names)

    @property
    def std_errors(self) -> pd.Series:
        return pd.Series(
            self.sigma * np.sqrt(np.diag(self.vcov_unscaled)), index=list(self.design.fixef_names)
        )

    def coefficients_table(self) -> pd.DataFrame:
        """Estimate, Std. Error, t value and Pr(>|t|) of every coefficient (NaN if aliased)."""
        se = self.std_errors.to_numpy()
        t = self.beta / se
        p = (
            2.0 * special.stdtr(self.df_resid, -np.abs(t))
            if self.df_resid > 0
            else np.full_like(t, np.nan)
        )
        table = pd.DataFrame(
            {"Estimate": self.beta, "Std. Error": se, "t value": t, "Pr(>|t|)": p},
            index=list(self.design.fixef_names),
        )
        return table.reindex(list(self.design.all_fixef_names))

    def fitted(self) -> pd.Series:
        d = self.design
        eta = d.X @ self.beta if d.X.shape[1] else np.zeros(d.nobs)
        if d.offset is not None:
            eta = eta + d.offset
        return pd.Series(eta, index=d.row_index, name="fitted")

    def residuals(self, type: str = "response") -> pd.Series:
        r = self.design.y - self.fitted().to_numpy()
        if type == "pearson" and self.design.weights is not None:
            r = r * np.sqrt(self.design.weights)
        elif type not in ("response", "pearson", "working"):
            raise ModelSpecError(f"unknown residual type {type!r}")
        return pd.Series(r, index=self.design.row_index, name="residuals")

    def predict(self, newdata: pd.DataFrame | None = None) -> pd.Series:
        if newdata is None:
            return self.fitted().rename("predicted")
        X, offset, _, complete = new_data_arrays(self.design, newdata, [], True)
        eta = X @ self.beta
        if offset is not None:
            eta = eta + offset
        out = np.full(len(newdata), np.nan)
        out[complete] = eta
        return pd.Series(out, index=newdata.index, name="predicted")

    # -- goodness of fit -------------------------------------------------------------------------
    def _weights(self) -> np.ndarray:
        w = self.design.weights
        return np.ones(self.nobs) if w is None else w

    @property
    def r_squared(self) -> float:
        y = self.design.y
        if self.design.offset is not None:
            y = y - self.design.offset
        w = self._weights()
        fitted = self.fitted().to_numpy() - (
            0 if self.design.offset is None else self.design.offset
        )
        if self.has_intercept:
            m = np.sum(w * fitted) / np.sum(w)
            mss = float(np.sum(w * (fitted - m) ** 2))
        else:
            mss = float(np.sum(w * fitted**2))
        return mss / (mss + self.rss)

    @property
    def adj_r_squared(self) -> float:
        df_int = 1 if self.has_intercept else 0
        return 1.0 - (1.0 - self.r_squared) * ((self.nobs - df_int) / self.df_resid)

    @property
    def fstatistic(self) -> tuple[float, int, int] | None:
        """(value, numerator df, denominator df), or ``None`` for an intercept-only model."""
        df_int = 1 if self.has_intercept else 0
        numdf = self.rank - df_int
        if numdf <= 0 or self.df_resid <= 0:
            return None
        r2 = self.r_squared
        value = (r2 / numdf) / ((1.0 - r2) / self.df_resid)
        return float(value), int(numdf), int(self.df_resid)

    @property
    def f_pvalue(self) -> float | None:
        f = self.fstatistic
        return None if f is None else float(special.fdtrc(f[1], f[2], f[0]))

    @property
    def loglik(self) -> float:
        """Log-likelihood (R's ``logLik.lm``)."""
        n = self.nobs
        w = self._weights()
        return 0.5 * (
            float(np.sum(np.log(w)))
            - n * (math.log(2 * math.pi) + 1 - math.log(n) + math.log(self.rss))
        )

    @property
    def loglik_reml(self) -> float:
        """REML log-likelihood (R's ``logLik(fit, REML = TRUE)``), for comparisons with REML
        fits of mixed models."""
        n = self.nobs - self.rank
        w = self._weights()
        val = 0.5 * (
            float(np.sum(np.log(w)))
            - n * (math.log(2 * math.pi) + 1 - math.log(n) + math.log(self.rss))
        )
        X = self.design.X * np.sqrt(w)[:, None]
        return val - 0.5 * float(np.linalg.slogdet(X.T @ X)[1])

    @property
    def npar(self) -> int:
        return self.rank + 1

    @property
    def aic(self) -> float:
        return -2 * self.loglik + 2 * self.npar

    @property
    def bic(self) -> float:
        return -2 * self.loglik + math.log(self.nobs) * self.npar

    def summary(self) -> Any:
        """R's ``summary(lm(...))``: residual quantiles, coefficients, R-squared, F-test."""
        from mixedmodels.display.lm import LmSummary

        return LmSummary.from_result(self)

    def __str__(self) -> str:
        return str(self.summary())

    def __repr__(self) -> str:
        return self.__str__()

    def _repr_html_(self) -> str:
        return self.summary()._repr_html_()


def lm(
    formula: str,
    data: Any,
    *,
    weights: str | ArrayLike | None = None,
    offset: str | ArrayLike | None = None,
) -> LmResult:
    """Fit a linear model by (weighted) least squares, as R's ``lm``.

    Parameters
    ----------
    formula
        E.g. ``"Distance ~ Bow + Archer"``; the same fixed-effects syntax as :func:`lmer`.
    data
        A pandas DataFrame.
    weights, offset
        Column names or arrays aligned with ``data``.

    Returns
    -------
    LmResult
    """
    design = build_design(formula, data, weights=weights, offset=offset, require_random=False)
    if design.terms:
        raise FormulaError(
            "lm fits fixed effects only; the formula has random-effects terms — "
            "use mixedmodels.lmer",
            design.formula.source,
        )
    return fit_lm(design)


def fit_lm(design: Design) -> LmResult:
    """Least-squares fit of an evaluated design without random effects."""
    X = design.X
    y = design.y if design.offset is None else design.y - design.offset
    w = design.weights
    sw = np.ones(len(y)) if w is None else np.sqrt(w)
    Xw = X * sw[:, None]
    yw = y * sw
    if X.shape[1]:
        Q, R = np.linalg.qr(Xw)
        beta = sla.solve_triangular(R, Q.T @ yw, check_finite=False)
        Rinv = sla.solve_triangular(R, np.eye(R.shape[0]), check_finite=False)
        unscaled = Rinv @ Rinv.T
        resid = yw - Xw @ beta
    else:
        beta = np.zeros(0)
        unscaled = np.zeros((0, 0))
        resid = yw
    rss = float(resid @ resid)
    rdf = len(y) - X.shape[1]
    sigma = math.sqrt(rss / rdf) if rdf > 0 else float("nan")
    return LmResult(design=design, beta=beta, vcov_unscaled=unscaled, sigma=sigma, rss=rss)
