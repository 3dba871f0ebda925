"""Satterthwaite's denominator degrees of freedom for linear mixed models.

For a contrast L beta (Kuznetsova, Brockhoff and Christensen 2017, lmerTest, JSS 82(13), sec. 3):

    df = 2 (L C L')^2 / (g' A g),   g_i = L (dC/dphi_i) L'

where C = Var(beta_hat)(phi) is the covariance of the fixed effects as a function of the variance
parameters phi = (theta, sigma), A = 2 H^-1 is their asymptotic covariance, and H is the Hessian
of the (REML or ML) deviance in phi, with beta profiled but sigma not:

    d(theta, sigma) = log|L_Z|^2 + r^2(theta) / sigma^2 + n log(2 pi sigma^2)
                      [+ log|L_X|^2 - p log(2 pi sigma^2) for REML].

H and dC/dphi are taken by Richardson-extrapolated finite differences, as lmerTest does. For a
multi-row contrast the F statistic's denominator df combine the df of the eigen-contrasts
(lmerTest's ``contestMD``).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import scipy.linalg as sla
from scipy import special

from mixedmodels.errors import ConvergenceWarning
from mixedmodels.inference.derivatives import hessian, jacobian

if TYPE_CHECKING:
    from mixedmodels.results import LmerResult

__all__ = ["VarparDerivatives", "f_test", "fstat_ddf", "t_test", "varpar_derivatives"]

_LOG_2PI = math.log(2.0 * math.pi)


@dataclass(frozen=True)
class VarparDerivatives:
    """Derivatives of the deviance and of Var(beta) in the variance parameters (theta, sigma).

    Attributes
    ----------
    varpar
        (theta, sigma) at the optimum.
    hessian
        Hessian of the deviance in varpar.
    vcov_varpar
        2 H^-1 (a pseudo-inverse over the positive eigenvalues when H is singular).
    jacobian
        dVar(beta)/dvarpar, shape (p, p, len(varpar)).
    vcov_beta
        Var(beta) at the optimum.
    notes
        Warnings about the Hessian (negative or near-zero eigenvalues).
    """

    varpar: np.ndarray
    hessian: np.ndarray
    vcov_varpar: np.ndarray
    jacobian: np.ndarray
    vcov_beta: np.ndarray
    notes: tuple[str, ...] = ()


def varpar_derivatives(result: LmerResult, tol: float = 1e-8) -> VarparDerivatives:
    """Compute the Hessian of the deviance and the Jacobian of Var(beta) at the optimum."""
    model = result.model
    ws = model.workspace()
    reml = model.reml
    n, p = model.nobs, model.n_fixef
    slw = model.A.sum_log_weights

    def deviance(vp: np.ndarray) -> float:
        ws.update(vp[:-1])
        s2 = vp[-1] ** 2
        val = ws.logdet_Z() + ws.pwrss() / s2 + n * (_LOG_2PI + math.log(s2)) - slw
        if reml:
            val += ws.logdet_X() - p * (_LOG_2PI + math.log(s2))
        return val

    def covbeta(vp: np.ndarray) -> np.ndarray:
        ws.update(vp[:-1])
        Linv = sla.solve_triangular(ws.Lxyxy[:p, :p], np.eye(p), lower=True, check_finite=False)
        return vp[-1] ** 2 * (Linv.T @ Linv)

    varpar = np.append(result.theta, result.sigma)
    H = hessian(deviance, varpar)
    H = 0.5 * (H + H.T)
    evals, evecs = np.linalg.eigh(H)
    notes = []
    neg = evals < -tol
    zero = np.abs(evals) <= tol
    if neg.any():
        vals = " ".join(f"{v:.1e}" for v in evals[neg])
        notes.append(
            f"Model failed to converge with {int(neg.sum())} negative eigenvalue(s): {vals}"
        )
    if zero.any():
        vals = " ".join(f"{v:.1e}" for v in evals[zero])
        notes.append(
            f"Model may not have converged with {int(zero.sum())} eigenvalue(s) close to zero: "
            f"{vals}"
        )
    pos = evals > tol
    Hinv = (evecs[:, pos] / evals[pos]) @ evecs[:, pos].T
    J = jacobian(covbeta, varpar)
    return VarparDerivatives(
        varpar=varpar,
        hessian=H,
        vcov_varpar=2.0 * Hinv,
        jacobian=J,
        vcov_beta=result.vcov_unscaled * result.sigma**2,
        notes=tuple(notes),
    )


def _warn_notes(info: VarparDerivatives) -> None:
    for note in info.notes:
        warnings.warn(note, ConvergenceWarning, stacklevel=4)


def t_test(
    info: VarparDerivatives, L: np.ndarray, beta: np.ndarray
) -> tuple[float, float, float, float, float]:
    """(estimate, std. error, df, t, p) for the contrast L beta (one row)."""
    L = np.asarray(L, dtype=float).ravel()
    est = float(L @ beta)
    var = float(L @ info.vcov_beta @ L)
    grad = np.einsum("i,ijk,j->k", L, info.jacobian, L)
    denom = float(grad @ info.vcov_varpar @ grad)
    df = 2.0 * var**2 / denom if denom > 0 else math.inf
    se = math.sqrt(var)
    t = est / se
    pval = 2.0 * float(special.stdtr(df, -abs(t)))
    return est, se, df, t, pval


def fstat_ddf(nu: np.ndarray, tol: float = 1e-8) -> float:
    """Combine eigen-contrast df into one F denominator df (lmerTest's ``get_Fstat_ddf``)."""
    nu = np.asarray(nu, dtype=float)
    if nu.size == 1:
        return float(nu[0])
    if np.all(np.abs(np.diff(nu)) < tol):
        return float(nu.mean())
    if np.any(nu <= 2):
        return 2.0
    E = float(np.sum(nu / (nu - 2.0)))
    return 2.0 * E / (E - nu.size)


def f_test(
    info: VarparDerivatives,
    L: np.ndarray,
    beta: np.ndarray,
    eps: float = float(np.sqrt(np.finfo(float).eps)),
) -> tuple[float, int, float, float] | None:
    """(F, numerator df, denominator df, p) for H0: L beta = 0 (lmerTest's ``contestMD``).

    Returns ``None`` when the contrast has rank 0.
    """
    L = np.atleast_2d(np.asarray(L, dtype=float))
    if L.shape[0] == 1:
        _, _, df, t, _ = t_test(info, L[0], beta)
        F = t * t
        return F, 1, df, float(special.fdtrc(1, df, F))
    VL = L @ info.vcov_beta @ L.T
    d, P = np.linalg.eigh(VL)
    order = np.argsort(d)[::-1]
    d, P = d[order], P[:, order]
    tol = max(eps * d[0], 0.0)
    q = int(np.sum(d > tol))
    if q <= 0:
        return None
    PtL = P.T @ L
    if q == 1:
        _, _, df, t, _ = t_test(info, PtL[0], beta)
        F = t * t
        return F, 1, df, float(special.fdtrc(1, df, F))
    PtL = PtL[:q]
    t2 = (PtL @ beta) ** 2 / d[:q]
    F = float(t2.sum() / q)
    nu = np.empty(q)
    for m in range(q):
        grad = np.einsum("i,ijk,j->k", PtL[m], info.jacobian, PtL[m])
        nu[m] = 2.0 * d[m] ** 2 / float(grad @ info.vcov_varpar @ grad)
    ddf = fstat_ddf(nu)
    return F, q, ddf, float(special.fdtrc(q, ddf, F))
