r"""Kenward-Roger adjusted covariance of the fixed effects and denominator degrees of freedom.

Kenward and Roger (1997), Biometrics 53(3); in the form of pbkrtest (Halekoh and Højsgaard 2014,
JSS 59(9)). The marginal covariance is linear in the variance components gamma,

    Sigma = sum_r gamma_r G_r,   G_r = Z E_r Z' (one per entry of each term's covariance matrix),
    G_res = I (the residual variance),

and the adjustment needs P_r = -X' Sigma^-1 G_r Sigma^-1 X, Q_rs = X' Sigma^-1 G_r Sigma^-1 G_s
Sigma^-1 X and tr(Sigma^-1 G_r Sigma^-1 G_s). pbkrtest forms n x n matrices for these; here they
are formed in the space of the random effects. With K = Z Lambda and M = K'K + I = L_Z L_Z',

    Sigma^-1 = sigma^-2 R,   R = I - K M^-1 K',
    R^2 = I - K (M^-1 + M^-2) K',   R^3 = I - K (M^-1 + M^-2 + M^-3) K'

(because K' R = M^-1 K'), so every product U' R^k V with U, V in {Z, X} is a q x q, q x p or
p x p matrix made from the cross-products Z'Z, Z'X, X'X that the fit already holds, and
tr(R^2) = n - q + tr(M^-2). Memory and time grow with q^2, not n^2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import scipy.linalg as sla
from scipy import special

from mixedmodels.errors import ModelSpecError

if TYPE_CHECKING:
    from mixedmodels.results import LmerResult

__all__ = ["KenwardRoger", "kenward_roger"]

#: Kenward-Roger forms dense q x q matrices; beyond this many random effects it refuses.
MAX_RANDOM_EFFECTS = 8000


@dataclass(frozen=True)
class KenwardRoger:
    """The Kenward-Roger adjusted covariance and what its degrees of freedom need.

    Attributes
    ----------
    vcov_adj
        Adjusted covariance of beta (pbkrtest's ``vcovAdj``).
    vcov
        Unadjusted covariance of beta.
    P
        The matrices P_r, one per variance component (p x p).
    W
        2 times the inverse of the expected information of the variance components.
    """

    vcov_adj: np.ndarray
    vcov: np.ndarray
    P: tuple[np.ndarray, ...]
    W: np.ndarray

    def ddf(self, L: np.ndarray) -> float:
        """Denominator df for H0: L beta = 0 (pbkrtest's ``Lb_ddf``)."""
        L = np.atleast_2d(np.asarray(L, dtype=float))
        V0 = self.vcov
        Theta = L.T @ np.linalg.solve(L @ V0 @ L.T, L)
        ThetaV0 = Theta @ V0
        A1 = A2 = 0.0
        k = len(self.P)
        us = [ThetaV0 @ P @ V0 for P in self.P]
        for i in range(k):
            for j in range(i, k):
                e = 1.0 if i == j else 2.0
                A1 += e * self.W[i, j] * float(np.trace(us[i])) * float(np.trace(us[j]))
                A2 += e * self.W[i, j] * float(np.sum(us[i] * us[j].T))
        q = L.shape[0]
        B = (A1 + 6.0 * A2) / (2.0 * q)
        g = ((q + 1) * A1 - (q + 4) * A2) / ((q + 2) * A2)
        c1 = g / (3 * q + 2 * (1 - g))
        c2 = (q - g) / (3 * q + 2 * (1 - g))
        c3 = (q + 2 - g) / (3 * q + 2 * (1 - g))
        V0_ = 1 + c1 * B
        V1 = 1 - c2 * B
        V2 = 1 - c3 * B
        if abs(V0_) < 1e-10:
            V0_ = 0.0
        num = 1 - A2 / q
        ratio = 1.0 if (abs(num) < 1e-14 and abs(V1) < 1e-14) else num / V1
        rho = ratio**2 * V0_ / V2 / q
        return 4.0 + (q + 2) / (q * rho - 1)

    def f_scaling(self, L: np.ndarray, ddf: float) -> float:
        L = np.atleast_2d(np.asarray(L, dtype=float))
        q = L.shape[0]
        A2 = self._a2(L)
        if abs(ddf - 2) < 1e-2:
            return 1.0
        return ddf * (1 - A2 / q) / (ddf - 2)

    def _a2(self, L: np.ndarray) -> float:
        V0 = self.vcov
        Theta = L.T @ np.linalg.solve(L @ V0 @ L.T, L)
        us = [Theta @ V0 @ P @ V0 for P in self.P]
        A2 = 0.0
        for i in range(len(us)):
            for j in range(i, len(us)):
                e = 1.0 if i == j else 2.0
                A2 += e * self.W[i, j] * float(np.sum(us[i] * us[j].T))
        return A2

    def t_test(self, L: np.ndarray, beta: np.ndarray) -> tuple[float, float, float, float, float]:
        """(estimate, std. error (adjusted), df, t, p) for one contrast, as lmerTest."""
        L = np.asarray(L, dtype=float).ravel()
        est = float(L @ beta)
        se = math.sqrt(float(L @ self.vcov_adj @ L))
        df = self.ddf(L)
        t = est / se
        return est, se, df, t, 2.0 * float(special.stdtr(df, -abs(t)))

    def f_test(self, L: np.ndarray, beta: np.ndarray) -> tuple[float, float, int, float, float]:
        """(F unscaled, F scaled, numerator df, denominator df, p) for H0: L beta = 0
        (pbkrtest's ``KRmodcomp``; lmerTest reports the scaled F and the unscaled mean square)."""
        L = np.atleast_2d(np.asarray(L, dtype=float))
        q = int(np.linalg.matrix_rank(L))
        Lb = L @ beta
        wald = float(Lb @ np.linalg.solve(L @ self.vcov_adj @ L.T, Lb))
        F_u = wald / q
        ddf = self.ddf(L)
        scale = self.f_scaling(L, ddf)
        F = scale * F_u
        return F_u, F, q, ddf, float(special.fdtrc(q, ddf, F))


def _dense_blocks(result: LmerResult) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Z'Z (q x q), Z'X (q x p), X'X (p x p) and Lambda (q x q), dense."""
    model = result.model
    A = model.A
    p = A.p
    sizes = [lv * s for lv, s in A.sizes]
    offs = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
    q = int(offs[-1])
    ZtZ = np.zeros((q, q))
    for j, blk in enumerate(A.diag):
        lv, s, _ = blk.shape
        sub = ZtZ[offs[j] : offs[j + 1], offs[j] : offs[j + 1]].reshape(lv, s, lv, s)
        idx = np.arange(lv)
        sub[idx, :, idx, :] = blk
    for (k, j), bs in A.off.items():
        dense = bs.to_dense()
        ZtZ[offs[k] : offs[k + 1], offs[j] : offs[j + 1]] = dense
        ZtZ[offs[j] : offs[j + 1], offs[k] : offs[k + 1]] = dense.T
    ZtX = np.vstack([xy[:p].T for xy in A.xy]) if A.xy else np.zeros((0, p))
    XtX = A.xyxy[:p, :p].copy()
    Ts = model.layout.templates(result.theta)
    Lam = np.zeros((q, q))
    for j, (lv, _) in enumerate(A.sizes):
        Lam[offs[j] : offs[j + 1], offs[j] : offs[j + 1]] = np.kron(np.eye(lv), Ts[j])
    return ZtZ, ZtX, XtX, Lam


def kenward_roger(result: LmerResult) -> KenwardRoger:
    """Kenward-Roger adjusted covariance of the fixed effects of a REML fit."""
    model = result.model
    if not model.reml:
        raise ModelSpecError(
            "Kenward-Roger's method is only available for REML fits; refit with reml=True"
        )
    if model.design.weights is not None:
        raise ModelSpecError(
            "Kenward-Roger's method is not available for models with prior weights; "
            "use ddf='satterthwaite'"
        )
    A = model.A
    q = sum(lv * s for lv, s in A.sizes)
    if q > MAX_RANDOM_EFFECTS:
        raise ModelSpecError(
            f"Kenward-Roger's method needs dense {q} x {q} matrices for this model "
            f"(q = {q} random effects > {MAX_RANDOM_EFFECTS}); use ddf='satterthwaite'"
        )
    n, p = A.n, A.p
    s2 = result.sigma**2
    ZtZ, ZtX, XtX, Lam = _dense_blocks(result)
    ZtK = ZtZ @ Lam
    XtK = ZtX.T @ Lam
    M = Lam.T @ ZtK + np.eye(q)
    cf = sla.cho_factor(M, lower=True, check_finite=False)
    S1 = sla.cho_solve(cf, np.eye(q), check_finite=False)
    S1sq = S1 @ S1
    S2 = S1 + S1sq
    S3 = S2 + S1sq @ S1

    def form(
        UtV: np.ndarray, UtK: np.ndarray, VtK: np.ndarray, S: np.ndarray, power: int
    ) -> np.ndarray:
        return (UtV - UtK @ S @ VtK.T) / s2**power

    B1 = form(ZtZ, ZtK, ZtK, S1, 1)
    C1 = form(ZtX, ZtK, XtK, S1, 1)
    B2 = form(ZtZ, ZtK, ZtK, S2, 2)
    C2 = form(ZtX, ZtK, XtK, S2, 2)
    D2 = form(XtX, XtK, XtK, S2, 2)
    D3 = form(XtX, XtK, XtK, S3, 3)
    trace_R2 = n - q + float(np.sum(S1 * S1))  # tr(M^-2), M symmetric
    # variance components: the lower triangle of each term's covariance, then the residual
    offs = np.concatenate([[0], np.cumsum([lv * s for lv, s in A.sizes])]).astype(int)
    comps: list[tuple[int, int, int]] = []
    for j, (_, s) in enumerate(A.sizes):
        for b in range(s):
            for a in range(b, s):
                comps.append((j, a, b))

    def apply_E(comp: tuple[int, int, int], Mat: np.ndarray) -> np.ndarray:
        """E_r Mat restricted to the rows of term j, (q_j, cols)."""
        j, a, b = comp
        lv, s = A.sizes[j]
        rows = Mat[offs[j] : offs[j + 1]].reshape(lv, s, -1)
        out = np.zeros_like(rows)
        out[:, a, :] = rows[:, b, :]
        if a != b:
            out[:, b, :] = rows[:, a, :]
        return out.reshape(lv * s, -1)

    U = [apply_E(c, C1) for c in comps]  # E_r C1, rows of term j
    EB1 = [apply_E(c, B1) for c in comps]  # E_r B1, rows of term j
    k = len(comps) + 1
    P: list[np.ndarray] = []
    for r, c in enumerate(comps):
        j = c[0]
        P.append(-C1[offs[j] : offs[j + 1]].T @ U[r])
    P.append(-D2)
    Q: dict[tuple[int, int], np.ndarray] = {}
    K = np.empty((k, k))
    for r, cr in enumerate(comps):
        jr = cr[0]
        sl_r = slice(offs[jr], offs[jr + 1])
        for s_, cs in enumerate(comps[r:], start=r):
            js = cs[0]
            sl_s = slice(offs[js], offs[js + 1])
            Q[(r, s_)] = U[r].T @ B1[sl_r, sl_s] @ U[s_]
            # tr(E_r B1 E_s B1) = sum((E_r B1)[j rows, k cols] * (E_s B1)[k rows, j cols]')
            K[r, s_] = K[s_, r] = float(np.sum(EB1[r][:, sl_s] * EB1[s_][:, sl_r].T))
        Q[(r, k - 1)] = U[r].T @ C2[sl_r]
        blocks = apply_E(cr, B2)[:, sl_r]
        K[r, k - 1] = K[k - 1, r] = float(np.trace(blocks))
    Q[(k - 1, k - 1)] = D3
    K[k - 1, k - 1] = trace_R2 / s2**2
    Phi = result.sigma**2 * result.vcov_unscaled
    IE2 = np.empty((k, k))
    for i in range(k):
        PhiPi = Phi @ P[i]
        for j in range(i, k):
            IE2[i, j] = IE2[j, i] = (
                K[i, j] - 2.0 * float(np.sum(Phi * Q[(i, j)])) + float(np.sum(PhiPi * (P[j] @ Phi)))
            )
    condi = float(np.min(np.abs(np.linalg.eigvalsh(IE2))))
    W = 2.0 * (np.linalg.inv(IE2) if condi > 1e-10 else np.linalg.pinv(IE2))
    W = 0.5 * (W + W.T)
    UU = np.zeros((p, p))
    for i in range(k - 1):
        for j in range(i + 1, k):
            UU += W[i, j] * (Q[(i, j)] - P[i] @ Phi @ P[j])
    UU = UU + UU.T
    for i in range(k):
        UU += W[i, i] * (Q[(i, i)] - P[i] @ Phi @ P[i])
    PhiA = Phi + 2.0 * Phi @ UU @ Phi
    return KenwardRoger(vcov_adj=PhiA, vcov=Phi, P=tuple(P), W=W)
