r"""The profiled criterion and its exact gradient for a model with one random-effects term.

A model with a single term (sleepstudy's ``(Days | Subject)``, the refits of its parametric
bootstrap, every random-intercept model with one grouping factor) has no rest but X and y: each
level's block of the factor is

.. math::

    L_l L_l' = T' A_{11,l} T + I, \qquad c_l = A_{21,l} T L_l^{-T}, \qquad
    L_{22} L_{22}' = A_{22} - \sum_l c_l c_l',

with :math:`A_{21,l}` the level's dense (p + 1) x S coupling to X and y. The general kernels
(:mod:`~mixedmodels.linalg.lmm_kernels`) reach the same numbers through the sparse coupling
layout every model needs, with the template size S known only at run time: for a few effects
per level their loops are mostly overhead. Here S is a constant of the compiled code (one
specialization per S, chosen from the data's layout), so the per-level loops are unrolled, and
the coupling is read as the dense block it is. The gradient is the module docstring's of
:mod:`~mixedmodels.linalg.lmm_kernels`, restricted to this structure.

The compiled search (:mod:`~mixedmodels.linalg.small_fit`) uses this criterion for the data
:func:`one_term_data` lays out; everything else (the estimates at the optimum, the Python
optimizers) uses the general kernels.
"""

from __future__ import annotations

import math
from typing import Any

import numba as nb
import numpy as np
from numba import types
from numba.extending import overload

from mixedmodels.linalg.kernels import rms_nonzero
from mixedmodels.linalg.lmm_kernels import (
    _level_factor_inverse,
    _small_cholesky,
    cholesky_inverse,
    level_moments,
    moment_template,
)
from mixedmodels.linalg.lmm_kernels import criterion as _criterion

#: the number of entries of the data :func:`one_term_data` lays out
ONE_TERM_DATA_SIZE = 8
#: the largest template handled here (larger ones: the general kernels)
MAX_EFFECTS = 8


def one_term_data(
    A11: np.ndarray, xy0: np.ndarray, A22: np.ndarray, reml: bool, n: float, slw: float
) -> tuple[Any, ...]:
    """The data of :func:`small_fit.criterion_and_gradient
    <mixedmodels.linalg.small_fit.criterion_and_gradient>` for a model with one term:
    ``A11`` (levels, S, S) its diagonal blocks, ``xy0`` ((p + 1), levels * S) the coupling of
    its columns to X and y, ``A22`` the cross-products of X and y; ``slw`` the sum of the log
    prior weights. The template size S is carried in the data's type (a tuple of S entries),
    which selects the specialization compiled for it."""
    l1, S = A11.shape[0], A11.shape[1]
    m = A22.shape[0]
    A21 = np.ascontiguousarray(np.asarray(xy0, dtype=float).reshape(m, l1, S).transpose(1, 0, 2))
    effects = (0,) * S
    return (
        effects,
        np.ascontiguousarray(A11, dtype=float),
        A21,
        np.ascontiguousarray(A22, dtype=float),
        bool(reml),
        float(n),
        float(slw),
        0,
    )


def applies(nterms: int, n_effects: int) -> bool:
    """Whether a model with ``nterms`` terms, the first with ``n_effects`` effects per level,
    is evaluated here in the compiled search."""
    return nterms == 1 and 1 <= n_effects <= MAX_EFFECTS


def _jit(func: Any) -> Any:
    return nb.njit(cache=True, nogil=True)(func)


# The template size S is len(effects), a tuple whose length is part of its type: each function
# below is compiled once per S, with S a constant (its loops unrolled).


@_jit
def _factor(effects, x, A11, A21, A22):  # pragma: no cover - compiled
    """The factorization at theta = x: (ok, log|L_Z|^2, T, the levels' factors L_l, their
    couplings c_l, L22 (lower, in place of the Schur complement))."""
    S = len(effects)
    l1 = A11.shape[0]
    m = A22.shape[0]
    T = np.zeros((S, S))
    t = 0
    for c in range(S):
        for r in range(c, S):
            T[r, c] = x[t]
            t += 1
    L = np.empty((l1, S, S))
    C = np.empty((l1, m, S))
    E = A22.copy()
    M = np.empty((S, S))
    AT = np.empty((S, S))
    w = np.empty(S)
    ldz = 0.0
    for lv in range(l1):
        Al = A11[lv]
        # M = T' A11_l T + I (T lower triangular)
        for r in range(S):
            for c in range(S):
                acc = 0.0
                for b in range(c, S):
                    acc += Al[r, b] * T[b, c]
                AT[r, c] = acc
        for r in range(S):
            for c in range(r + 1):
                acc = 0.0
                for a in range(r, S):
                    acc += T[a, r] * AT[a, c]
                M[r, c] = acc
            M[r, r] += 1.0
        # its Cholesky factor, lower (only the lower triangle of M is read)
        Ll = L[lv]
        for j in range(S):
            d = M[j, j]
            for k in range(j):
                d -= Ll[j, k] * Ll[j, k]
            if not d > 0.0:
                return False, ldz, T, L, C, E
            d = math.sqrt(d)
            Ll[j, j] = d
            ldz += 2.0 * math.log(d)
            for i in range(j + 1, S):
                v = M[i, j]
                for k in range(j):
                    v -= Ll[i, k] * Ll[j, k]
                Ll[i, j] = v / d
            for i in range(j):
                Ll[i, j] = 0.0
        # c_l = A21_l T L_l^-T, row by row; E -= c_l c_l' (lower triangle)
        Cl = C[lv]
        Bl = A21[lv]
        for a in range(m):
            for c in range(S):
                acc = 0.0
                for b in range(c, S):
                    acc += Bl[a, b] * T[b, c]
                w[c] = acc
            for c in range(S):
                v = w[c]
                for k in range(c):
                    v -= Cl[a, k] * Ll[c, k]
                Cl[a, c] = v / Ll[c, c]
            for b in range(a + 1):
                acc = 0.0
                for c in range(S):
                    acc += Cl[a, c] * Cl[b, c]
                E[a, b] -= acc
    # the Cholesky factor of the Schur complement, in place (lower)
    return _small_cholesky(E, m), ldz, T, L, C, E


@_jit
def _fixed_effects(E, p):  # pragma: no cover - compiled
    """beta from L22' beta = l_y (the y row of the factor L22 before its last entry)."""
    beta = np.empty(p)
    for a in range(p):
        beta[a] = E[p, a]
    for b in range(p - 1, -1, -1):
        beta[b] /= E[b, b]
        for a in range(b):
            beta[a] -= E[b, a] * beta[b]
    return beta


@_jit
def _level_modes(effects, Ll, Cl, beta, p, w, u):  # pragma: no cover - compiled
    """A level's spherical modes into ``u`` (``w``: scratch): L_l' u = c_l[y] - c_l[X]' beta."""
    S = len(effects)
    for c in range(S):
        acc = Cl[p, c]
        for a in range(p):
            acc -= Cl[a, c] * beta[a]
        w[c] = acc
    for c in range(S - 1, -1, -1):
        acc = w[c]
        for b in range(c + 1, S):
            acc -= Ll[b, c] * u[b]
        u[c] = acc / Ll[c, c]


def _evaluate(x, data, grad):  # pragma: no cover - compiled (through the overload)
    """The criterion at theta = x and its gradient (into ``grad``)."""
    effects, A11, A21, A22, reml, n, slw, _ = data
    S = len(effects)
    l1 = A11.shape[0]
    p = A22.shape[0] - 1
    ma = p if reml else 0
    ok, ldz, T, L, C, E = _factor(effects, x, A11, A21, A22)
    if not ok:
        return math.inf
    w = np.empty(S)
    AT = np.empty((S, S))
    ldx = 0.0
    for a in range(p):
        ldx += 2.0 * math.log(E[a, a])
    r2 = E[p, p] * E[p, p]
    f = _criterion(np.bool_(True), ldz, ldx, r2, reml, n, p, slw)
    if not r2 > 0.0:
        return f
    # -- the gradient ------------------------------------------------------------------
    beta = _fixed_effects(E, p)
    Sig = cholesky_inverse(E, ma)  # the inverse of the active block of L22 L22'
    ntheta = S * (S + 1) // 2
    tr = np.zeros(ntheta)
    dr2 = np.zeros(ntheta)
    u = np.empty(S)
    b1 = np.empty(S)
    rho = np.empty(S)
    Li = np.empty((S, S))
    V = np.empty((ma, S))
    S21 = np.empty((ma, S))
    Mi = np.empty((S, S))
    tmp = np.empty((S, S))
    S11 = np.empty((S, S))
    for lv in range(l1):
        Ll = L[lv]
        Cl = C[lv]
        Bl = A21[lv]
        Al = A11[lv]
        _level_modes(effects, Ll, Cl, beta, p, w, u)  # b = T u
        for r in range(S):
            acc = 0.0
            for c in range(r + 1):
                acc += T[r, c] * u[c]
            b1[r] = acc
        # rho = Z_l'(y - X beta - Z_l b)
        for r in range(S):
            acc = Bl[p, r]
            for c in range(S):
                acc -= Al[r, c] * b1[c]
            for a in range(p):
                acc -= Bl[a, r] * beta[a]
            rho[r] = acc
        _level_factor_inverse(L, lv, Li)  # L_l^-1
        # V = Sigma22 c_l (active rows); Sigma21 = -V L_l^-1; I + c_l' V
        for i in range(ma):
            for c in range(S):
                acc = 0.0
                for j in range(ma):
                    acc += Sig[i, j] * Cl[j, c]
                V[i, c] = acc
            for c in range(S):
                acc = 0.0
                for k in range(c, S):
                    acc -= V[i, k] * Li[k, c]
                S21[i, c] = acc
        for c1 in range(S):
            for c2 in range(S):
                acc = 1.0 if c1 == c2 else 0.0
                for i in range(ma):
                    acc += Cl[i, c1] * V[i, c2]
                Mi[c1, c2] = acc
        # Sigma11_l = L_l^-T (I + c_l' V) L_l^-1
        for c1 in range(S):
            for c2 in range(S):
                acc = 0.0
                for a in range(c2, S):
                    acc += Mi[c1, a] * Li[a, c2]
                tmp[c1, c2] = acc
        for c1 in range(S):
            for c2 in range(S):
                acc = 0.0
                for a in range(c1, S):
                    acc += Li[a, c1] * tmp[a, c2]
                S11[c1, c2] = acc
        # the template entries (rr, cc): (Sigma11 T'A11_l)[cc, rr] + (Sigma21' A21_l)[cc, rr]
        # (AT = T'A11_l here, by the symmetry of A11_l: (A11_l T)' )
        for r in range(S):
            for c in range(S):
                acc = 0.0
                for b in range(c, S):
                    acc += Al[r, b] * T[b, c]
                AT[c, r] = acc
        t = 0
        for cc in range(S):
            for rr in range(cc, S):
                acc = 0.0
                for a in range(S):
                    acc += S11[cc, a] * AT[a, rr]
                for i in range(ma):
                    acc += S21[i, cc] * Bl[i, rr]
                tr[t] += acc
                dr2[t] += rho[rr] * u[cc]
                t += 1
    dof = n - p if reml else n
    for j in range(ntheta):
        grad[j] = 2.0 * tr[j] - 2.0 * dof / r2 * dr2[j]
    return f


@_jit
def solution_at(x, data):  # pragma: no cover - compiled
    """The estimates at theta = x: (ok, r^2, beta, u (levels, S), b = u T' (levels, S), L_X
    (lower), (L_X L_X')^-1, the REML criterion, the ML deviance)."""
    effects, A11, A21, A22 = data[0], data[1], data[2], data[3]
    n, slw = data[5], data[6]
    S = len(effects)
    l1 = A11.shape[0]
    p = A22.shape[0] - 1
    ok, ldz, T, L, C, E = _factor(effects, x, A11, A21, A22)
    beta = np.zeros(p)
    u = np.zeros((l1, S))
    b = np.zeros((l1, S))
    LX = np.zeros((p, p))
    if not ok:
        return False, 0.0, beta, u, b, LX, LX.copy(), math.inf, math.inf
    ldx = 0.0
    for a in range(p):
        ldx += 2.0 * math.log(E[a, a])
        for c in range(a + 1):
            LX[a, c] = E[a, c]
    beta = _fixed_effects(E, p)
    w = np.empty(S)
    for lv in range(l1):
        _level_modes(effects, L[lv], C[lv], beta, p, w, u[lv])
        for a in range(S):  # b_l = T u_l (T lower triangular)
            acc = 0.0
            for c in range(a + 1):
                acc += T[a, c] * u[lv, c]
            b[lv, a] = acc
    r2 = E[p, p] * E[p, p]
    reml = _criterion(True, ldz, ldx, r2, True, n, p, slw)
    ml = _criterion(True, ldz, ldx, r2, False, n, p, slw)
    return True, r2, beta, u, b, LX, cholesky_inverse(LX, p), reml, ml


@_jit
def start_values(A11, g, ryy, n, nobs, z, has_z):  # pragma: no cover - compiled
    """Where the search of a one-term model starts, in one call: (theta0, step, start, scale,
    start_scale).

    The same numbers as :class:`~mixedmodels.lmm.LinearMixedModel`'s general path, operation
    for operation (the dot products through the same BLAS call): theta0 and BOBYQA's steps
    from the column scales (:meth:`~mixedmodels.linalg.cholesky.ThetaLayout.scaled_start`),
    the moment start (:meth:`~mixedmodels.lmm.LinearMixedModel.start_theta`), the gradient
    search's unit (:meth:`~mixedmodels.lmm.LinearMixedModel.search_scale`) and that unit for a
    search from the moment start (narrower for a random intercept, see
    :meth:`~mixedmodels.lmm.LinearMixedModel.fit`).
    ``A11`` (levels, S, S) and ``g`` (levels, S) are the term's cross-products with itself and
    with the residual r of y on X, ``ryy`` = sum w r^2, ``n`` the total weight, ``nobs`` the
    rows, ``z`` the term's columns (S, rows) where ``has_z`` (else an intercept)."""
    nl, S = A11.shape[0], A11.shape[1]
    scales = rms_nonzero(z) if has_z else np.ones(1)
    nt = S * (S + 1) // 2
    theta0 = np.zeros(nt)
    step = np.empty(nt)
    scale = np.empty(nt)
    k = 0
    for c in range(S):  # lme4's order: the lower triangle column by column
        for r in range(c, S):
            inv = 1.0 / scales[r]
            factor = 0.75 if r == c else 1.0
            if r == c:
                theta0[k] = inv
            step[k] = factor * inv
            scale[k] = step[k] / factor
            k += 1
    start = theta0.copy()
    narrow = scale.copy()
    intercept = S == 1 and not has_z
    if not (intercept or S > 1) or nobs < 3:
        return theta0, step, start, scale, narrow
    s2r = ryy / n
    if not s2r > 0:
        return theta0, step, start, scale, narrow
    if intercept:  # sum_l n_l rbar_l^2 over the levels seen, and their number
        seen = 0
        for lv in range(nl):
            if A11[lv, 0, 0] > 0:
                seen += 1
        tot = np.empty(seen)
        mean = np.empty(seen)
        k = 0
        for lv in range(nl):
            if A11[lv, 0, 0] > 0:
                tot[k] = g[lv, 0]
                mean[k] = g[lv, 0] / A11[lv, 0, 0]
                k += 1
        a = np.dot(tot, mean)
        b = float(seen)
        spread = sampling = np.zeros((1, 1))
    else:
        spread, sampling, gram = level_moments(A11, g)
        a = np.dot(spread.ravel(), gram.ravel())
        b = np.dot(sampling.ravel(), gram.ravel())
    s2e = s2r
    used = s2e
    for _ in range(3):
        used = s2e
        s2e = max(s2r - max(a - used * b, 0.0) / n, 0.1 * s2r)
    if intercept:
        start[0] = max(math.sqrt(max(0.0, a - used * b) / n / s2e), 0.05)
        if start[0] != theta0[0]:  # its unit: about its standard error (see LinearMixedModel.fit)
            narrow[0] = min(scale[0], max(start[0], 0.5 * scale[0]) / math.sqrt(float(nl)))
        return theta0, step, start, scale, narrow
    ok, L = moment_template((spread - used * sampling) / s2e)
    if ok:
        k = 0
        for c in range(S):
            for r in range(c, S):
                start[k] = L[r, c]
                k += 1
    return theta0, step, start, scale, narrow


def register(criterion_and_gradient: Any) -> None:
    """Register the one-term criterion as the implementation of ``criterion_and_gradient``
    for data laid out by :func:`one_term_data` (called by :mod:`small_fit` at import)."""

    @overload(criterion_and_gradient, jit_options={"cache": True, "nogil": True})  # type: ignore[typeddict-unknown-key]
    def _one_term(x, data, grad):  # pragma: no cover - compiled
        if not isinstance(data, types.BaseTuple) or len(data) != ONE_TERM_DATA_SIZE:
            return None
        effects: Any = data[0]  # type: ignore[index]  # the template size, in this entry's type
        return _evaluate if isinstance(effects, types.UniTuple) else None
