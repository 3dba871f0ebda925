"""Compiled PIRLS, Laplace and adaptive-quadrature criteria for GLMMs with scalar terms.

Models whose random-effects terms are all scalar (``(1 | g)``, ``(1 | g) + (1 | h)``,
``(0 + x | g)``, ...) are the bulk of GLMMs in practice. For them the penalized weighted
least-squares system has a diagonal first block (the term with the most levels) and a small
remaining part, so one PIRLS iteration is: one pass over the rows to form the weights and the
blocks, a diagonal solve, a dense Schur complement of the remaining random effects (and of the
fixed effects when they are estimated inside PIRLS) and its Cholesky factor. The whole
evaluation of the criterion runs here, without returning to Python between iterations.

The family and link are integer codes; every function reproduces the Python definitions in
:mod:`mixedmodels.families` (R's ``stats::family``) term for term, so both paths give the same
criterion to rounding.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np
from numba import types
from numba.extending import overload

from mixedmodels.linalg import small_fit
from mixedmodels.linalg.lmm_kernels import (
    _cholesky_solve,
    _level_factor_inverse,
    cholesky_inverse,
)

# family codes
BINOMIAL, POISSON, GAMMA, INVERSE_GAUSSIAN, GAUSSIAN = 0, 1, 2, 3, 4
# link codes
LOGIT, PROBIT, CAUCHIT, CLOGLOG, LOG, IDENTITY, INVERSE, SQRT, INVERSE_SQUARE = range(9)

FAMILY_CODES = {
    "binomial": BINOMIAL,
    "poisson": POISSON,
    "Gamma": GAMMA,
    "inverse.gaussian": INVERSE_GAUSSIAN,
    "gaussian": GAUSSIAN,
}
LINK_CODES = {
    "logit": LOGIT,
    "probit": PROBIT,
    "cauchit": CAUCHIT,
    "cloglog": CLOGLOG,
    "log": LOG,
    "identity": IDENTITY,
    "inverse": INVERSE,
    "sqrt": SQRT,
    "1/mu^2": INVERSE_SQUARE,
}

_EPS = float(np.finfo(float).eps)
_THRESH = 30.0
_PROBIT_THRESH = 8.125890664701906  # -qnorm(eps)
_CAUCHIT_THRESH = float(np.tan(np.pi * (0.5 - _EPS)))  # qcauchy(1 - eps)
_SQRT2 = math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)

DRIFT_ITERATIONS = 25

STATUS_OK = 0
STATUS_NOT_FACTORED = 1
STATUS_NONFINITE = 2
STATUS_NO_DECREASE = 3
STATUS_MAXIT = 4


def _jit(func):
    return nb.njit(cache=True, nogil=True)(func)


# Flags passed from one kernel to another are written np.bool_(True) / np.bool_(False): numba
# types a bare True or False argument as a literal and compiles the callee once more for each
# literal it is called with (PIRLS and its linear system were each compiled three times).


# -- links -----------------------------------------------------------------------------------
@_jit
def _expit(x):  # pragma: no cover - compiled
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


@_jit
def linkinv(link, eta):  # pragma: no cover - compiled
    if link == LOGIT:
        if eta < -_THRESH:
            return _EPS
        if eta > _THRESH:
            return 1.0 - _EPS
        return _expit(eta)
    if link == PROBIT:
        x = min(max(eta, -_PROBIT_THRESH), _PROBIT_THRESH)
        return 0.5 * math.erfc(-x / _SQRT2)
    if link == CAUCHIT:
        x = min(max(eta, -_CAUCHIT_THRESH), _CAUCHIT_THRESH)
        return 0.5 + math.atan(x) / math.pi
    if link == CLOGLOG:
        v = -math.expm1(-math.exp(eta))
        return min(max(v, _EPS), 1.0 - _EPS)
    if link == LOG:
        return max(math.exp(eta), _EPS)
    if link == IDENTITY:
        return eta
    if link == INVERSE:
        return 1.0 / eta
    if link == SQRT:
        return eta * eta
    return 1.0 / math.sqrt(eta)


@_jit
def mu_eta(link, eta):  # pragma: no cover - compiled
    if link == LOGIT:
        if abs(eta) > _THRESH:
            return _EPS
        e = math.exp(-abs(eta))
        return e / ((1.0 + e) * (1.0 + e))
    if link == PROBIT:
        return max(_INV_SQRT_2PI * math.exp(-0.5 * eta * eta), _EPS)
    if link == CAUCHIT:
        return max(1.0 / (math.pi * (1.0 + eta * eta)), _EPS)
    if link == CLOGLOG:
        x = min(eta, 700.0)
        return max(math.exp(x) * math.exp(-math.exp(x)), _EPS)
    if link == LOG:
        return max(math.exp(eta), _EPS)
    if link == IDENTITY:
        return 1.0
    if link == INVERSE:
        return -1.0 / (eta * eta)
    if link == SQRT:
        return 2.0 * eta
    return -1.0 / (2.0 * eta**1.5)


@_jit
def mu_eta_at(link, eta, mu):  # pragma: no cover - compiled
    """d mu / d eta given mu = linkinv(eta) too (saves the exponential for logit and log)."""
    if link == LOGIT:
        if abs(eta) > _THRESH:
            return _EPS
        return mu * (1.0 - mu)
    if link == LOG:
        return mu
    return mu_eta(link, eta)


@_jit
def mu_eta2(link, eta):  # pragma: no cover - compiled
    if link == LOGIT:
        m = _expit(eta)
        return m * (1.0 - m) * (1.0 - 2.0 * m)
    if link == PROBIT:
        return -eta * _INV_SQRT_2PI * math.exp(-0.5 * eta * eta)
    if link == CAUCHIT:
        d = 1.0 + eta * eta
        return -2.0 * eta / (math.pi * d * d)
    if link == CLOGLOG:
        e = math.exp(min(eta, 700.0))
        return e * math.exp(-e) * (1.0 - e)
    if link == LOG:
        return math.exp(eta)
    if link == IDENTITY:
        return 0.0
    if link == INVERSE:
        return 2.0 / eta**3
    if link == SQRT:
        return 2.0
    return 0.75 / eta**2.5


@_jit
def _mu_eta2_at(link, eta, mu):  # pragma: no cover - compiled
    """d^2 mu / d eta^2 given mu = linkinv(eta) too (no exponential for the logit and log links
    where the inverse link is not bounded)."""
    if link == LOGIT and abs(eta) <= _THRESH:
        return mu * (1.0 - mu) * (1.0 - 2.0 * mu)
    if link == LOG and mu > _EPS:
        return mu
    return mu_eta2(link, eta)


# -- families --------------------------------------------------------------------------------
@_jit
def variance(fam, mu):  # pragma: no cover - compiled
    if fam == BINOMIAL:
        return mu * (1.0 - mu)
    if fam == POISSON:
        return mu
    if fam == GAMMA:
        return mu * mu
    if fam == INVERSE_GAUSSIAN:
        return mu**3
    return 1.0


@_jit
def variance_deriv(fam, mu):  # pragma: no cover - compiled
    if fam == BINOMIAL:
        return 1.0 - 2.0 * mu
    if fam == POISSON:
        return 1.0
    if fam == GAMMA:
        return 2.0 * mu
    if fam == INVERSE_GAUSSIAN:
        return 3.0 * mu * mu
    return 0.0


@_jit
def _ylogy(y, mu):  # pragma: no cover - compiled
    if y > 0:
        return y * math.log(y / mu)
    return 0.0


@_jit
def dev_resid(fam, y, mu, wt):  # pragma: no cover - compiled
    if fam == BINOMIAL:
        return 2.0 * wt * (_ylogy(y, mu) + _ylogy(1.0 - y, 1.0 - mu))
    if fam == POISSON:
        return 2.0 * wt * (_ylogy(y, mu) - (y - mu))
    if fam == GAMMA:
        ratio = 1.0 if y == 0 else y / mu
        return -2.0 * wt * (math.log(ratio) - (y - mu) / mu)
    if fam == INVERSE_GAUSSIAN:
        return wt * (y - mu) * (y - mu) / (y * mu * mu)
    return wt * (y - mu) * (y - mu)


@_jit
def aic(fam, y, mu, wt, a1, a2, const, dev):  # pragma: no cover - compiled
    """-2 log-likelihood with constants (R's family$aic); a1, a2, const are precomputed
    per family (see :func:`aic_terms`)."""
    n = y.shape[0]
    if fam == BINOMIAL:
        s = const
        for i in range(n):
            if a1[i] != 0.0:
                s += a1[i] * math.log(mu[i])
            if a2[i] != 0.0:
                s += a2[i] * math.log1p(-mu[i])
        return -2.0 * s
    if fam == POISSON:
        s = -const
        for i in range(n):
            s += wt[i] * (-mu[i])
            if y[i] != 0.0:
                s += wt[i] * y[i] * math.log(mu[i])
        return -2.0 * s
    if fam == GAMMA:
        sw = 0.0
        for i in range(n):
            sw += wt[i]
        disp = dev / sw
        shape = 1.0 / disp
        lg = math.lgamma(shape)
        s = 0.0
        for i in range(n):
            sc = mu[i] * disp
            s += wt[i] * ((shape - 1.0) * math.log(y[i]) - y[i] / sc - lg - shape * math.log(sc))
        return -2.0 * s + 2.0
    if fam == INVERSE_GAUSSIAN:
        sw = 0.0
        for i in range(n):
            sw += wt[i]
        return sw * (math.log(dev / sw * 2.0 * math.pi) + 1.0) + const + 2.0
    return n * (math.log(2.0 * math.pi * dev / n) + 1.0) + 2.0 - const


# -- the penalized weighted least-squares system ------------------------------------------------
@_jit
def _solve_system(
    w, s, u, X, refs, zv, lam, off, q1, upd, cptr, ccol, nu, pos, dense, D1, Cv, E, step
):  # pragma: no cover - compiled
    """Form H = [Lambda'Z'WZLambda + I, Lambda'Z'WX; X'WZLambda, X'WX] (X only if ``upd``) and the
    right side Lambda'Z's - u (X's), factor H and write the Newton step into ``step``.

    The first term's block is diagonal (D1). The block C below it is stored by the first term's
    levels (row lv of C' holds columns ``ccol[cptr[lv]:cptr[lv + 1]]``: the other terms' levels
    that share rows with level lv, ``nu[lv]`` of them, then the fixed effects), ``pos[k - 1, i]``
    is where row i of term k lands. With ``dense`` every level lists all columns, so C' is a
    dense q1 x (qr + p) matrix and the Schur complement is one matrix product. The rest, E, is
    dense; on return it holds its Cholesky factor after the Schur complement. Returns
    (ok, log|L_Z|^2).
    """
    n = w.shape[0]
    K = refs.shape[0]
    q = off[K]
    qr = q - q1
    p = X.shape[1] if upd else 0
    m = qr + p
    g1 = np.empty(q1)
    g2 = np.zeros(m)
    for lv in range(q1):
        D1[lv] = 1.0
        g1[lv] = -u[lv]
    for t in range(Cv.shape[0]):
        Cv[t] = 0.0
    for a in range(m):
        for b in range(m):
            E[a, b] = 0.0
    for a in range(qr):
        E[a, a] = 1.0
        g2[a] = -u[q1 + a]
    # one pass over the rows for the random-effects parts; the other terms' levels of row i are
    # computed on the fly (no scratch arrays, which would keep values out of registers)
    ku = K - 1
    for i in range(n):
        wi = w[i]
        si = s[i]
        l0 = refs[0, i]
        v0 = lam[0] * zv[0, i]
        D1[l0] += wi * v0 * v0
        g1[l0] += v0 * si
        wv0 = wi * v0
        for a in range(ku):
            ia = off[a + 1] - q1 + refs[a + 1, i]
            va = lam[a + 1] * zv[a + 1, i]
            Cv[pos[a, i]] += wv0 * va
            g2[ia] += va * si
            wva = wi * va
            for b in range(a):
                ib = off[b + 1] - q1 + refs[b + 1, i]
                E[ia, ib] += wva * lam[b + 1] * zv[b + 1, i]
            E[ia, ia] += wva * va
    if p > 0:
        # the fixed-effects columns: C's block by the first term's levels, E's blocks with the
        # other terms, then X'WX and X's by matrix products
        for i in range(n):
            wi = w[i]
            l0 = refs[0, i]
            wv0 = wi * lam[0] * zv[0, i]
            xbase = cptr[l0] + nu[l0]
            for j in range(p):
                Cv[xbase + j] += wv0 * X[i, j]
            for a in range(ku):
                ia = off[a + 1] - q1 + refs[a + 1, i]
                wva = wi * lam[a + 1] * zv[a + 1, i]
                for j in range(p):
                    E[qr + j, ia] += wva * X[i, j]
        WX = np.empty((n, p))
        for i in range(n):
            for j in range(p):
                WX[i, j] = w[i] * X[i, j]
        XtWX = np.dot(WX.T.copy(), X)
        Xs = np.dot(s, X)
        for j in range(p):
            g2[qr + j] += Xs[j]
            for jj in range(j + 1):
                E[qr + j, qr + jj] += XtWX[j, jj]
    logdet = 0.0
    for lv in range(q1):
        d = D1[lv]
        if not d > 0.0:
            return False, 0.0
        d = math.sqrt(d)
        D1[lv] = d
        logdet += 2.0 * math.log(d)
        g1[lv] /= d
        end = cptr[lv] + nu[lv] + p
        for t in range(cptr[lv], end):
            Cv[t] /= d
    if m == 0:
        for lv in range(q1):
            step[lv] = g1[lv] / D1[lv]
        return True, logdet
    # Schur complement E - C'C and the right side g2 - C' y1
    Cd = np.empty((0, 0))
    if dense:
        stride = X.shape[1] + qr
        Cd = np.empty((q1, m))
        for lv in range(q1):
            for a in range(m):
                Cd[lv, a] = Cv[lv * stride + a]
        Ct = Cd.T.copy()
        for a in range(m):
            for b in range(a + 1, m):
                E[a, b] = E[b, a]
        E -= np.dot(Ct, Cd)
        g2 -= np.dot(Ct, g1)
    else:
        for lv in range(q1):
            start = cptr[lv]
            end = start + nu[lv] + p
            gl = g1[lv]
            for t in range(start, end):
                ct = ccol[t]
                vt = Cv[t]
                g2[ct] -= vt * gl
                for t2 in range(start, t + 1):
                    E[ct, ccol[t2]] -= vt * Cv[t2]
        for a in range(m):
            for b in range(a + 1, m):
                E[a, b] = E[b, a]
    try:
        L = np.linalg.cholesky(E)
    except Exception:  # numba raises LinAlgError for an indefinite matrix
        return False, 0.0
    for a in range(qr):
        logdet += 2.0 * math.log(L[a, a])
    _cholesky_solve(L, g2, m)
    if dense:
        x1 = g1 - np.dot(Cd, g2)
        for lv in range(q1):
            step[lv] = x1[lv] / D1[lv]
    else:
        for lv in range(q1):
            acc = g1[lv]
            for t in range(cptr[lv], cptr[lv] + nu[lv] + p):
                acc -= Cv[t] * g2[ccol[t]]
            step[lv] = acc / D1[lv]
    for a in range(m):
        step[q1 + a] = g2[a]
    for a in range(m):
        for b in range(m):
            E[a, b] = L[a, b]
    return True, logdet


@_jit
def _weights(fam, link, canonical, observed, y, mu, eta, wt, w, s):  # pragma: no cover
    """Working weights (Fisher, or Newton's with ``observed``) and scores d loglik / d eta.
    Returns the largest Fisher weight."""
    n = y.shape[0]
    wmax = 0.0
    for i in range(n):
        d1 = mu_eta_at(link, eta[i], mu[i])
        v = variance(fam, mu[i])
        wf = wt[i] * d1 * d1 / v
        wmax = max(wmax, wf)
        s[i] = wt[i] * (y[i] - mu[i]) * d1 / v
        if observed and not canonical:
            d2 = mu_eta2(link, eta[i])
            w[i] = wf - wt[i] * (y[i] - mu[i]) * (d2 * v - d1 * d1 * variance_deriv(fam, mu[i])) / (
                v * v
            )
        else:
            w[i] = wf
    # floor the weights (see glmm._floor_weights)
    floor = 1e-10 * wmax
    for i in range(n):
        if wt[i] > 0 and w[i] < floor and not observed:
            w[i] = floor
    return wmax


@_jit
def _shifted(fam, link):  # pragma: no cover - compiled
    """Whether the deviance of (fam, link) is computed less its part that depends on y alone
    (:func:`dev_constant`): the binomial family with the logit link and the Poisson family
    with the log link, whose deviance residuals then need one exponential and at most one
    logarithm instead of two logarithms after the inverse link's exponential."""
    return (fam == BINOMIAL and link == LOGIT) or (fam == POISSON and link == LOG)


@_jit
def dev_constant(fam, y, wt):  # pragma: no cover - compiled
    """The part of a binomial or Poisson deviance residual that depends on y alone:
    2 w (y log y + (1 - y) log(1 - y)) and 2 w (y log y - y)."""
    if fam == BINOMIAL:
        return 2.0 * wt * (_xlogx(y) + _xlogx(1.0 - y))
    return 2.0 * wt * (_xlogx(y) - y)


@_jit
def _xlogx(x):  # pragma: no cover - compiled
    return x * math.log(x) if x > 0 else 0.0


@_jit
def deviance_shift(fam, link, y, wt):  # pragma: no cover - compiled
    """The sum of :func:`dev_constant` over the rows for the families whose deviance
    :func:`_trial` computes less it (0 for the others): the criterion's constant c0 grows by
    it, so that log|L_Z|^2 + (penalized deviance less it) + c0 is unchanged."""
    if not _shifted(fam, link):
        return 0.0
    d = 0.0
    for i in range(y.shape[0]):
        d += dev_constant(fam, y[i], wt[i])
    return d


@_jit
def _trial(fam, link, y, wt, offset, X, beta, refs, zv, lam, off, u, eta, mu):  # pragma: no cover
    """Linear predictor, means and penalized deviance at (u, beta), in one pass over the rows.

    For the binomial family with the logit link the deviance residual less its part in y
    alone is 2 w (softplus(eta) - y eta) (log mu = -softplus(-eta), log(1 - mu) =
    -softplus(eta)), for the Poisson family with the log link 2 w (mu - y eta); the deviance
    returned is then less :func:`deviance_shift` (rows where the inverse link is bounded, at
    |eta| > 30 or mu below machine epsilon, take the full residual less its constant).
    """
    n = y.shape[0]
    p = beta.shape[0]
    K = refs.shape[0]
    shifted = _shifted(fam, link)
    d = 0.0
    for i in range(n):
        e = offset[i]
        for j in range(p):
            e += X[i, j] * beta[j]
        for k in range(K):
            e += lam[k] * zv[k, i] * u[off[k] + refs[k, i]]
        eta[i] = e
        m, di = _mean_and_deviance(fam, link, shifted, e, y[i], wt[i])
        mu[i] = m
        d += di
    for j in range(u.shape[0]):
        d += u[j] * u[j]
    return d


@_jit
def _mean_and_deviance(fam, link, shifted, e, y, wt):  # pragma: no cover - compiled
    """The mean at the linear predictor e and the deviance residual, less its part in y alone
    where ``shifted`` (see :func:`_trial`)."""
    if shifted and link == LOGIT and abs(e) <= _THRESH:
        a = math.exp(-abs(e))  # mu as _expit computes it
        m = 1.0 / (1.0 + a) if e >= 0 else a / (1.0 + a)
        return m, 2.0 * wt * (max(e, 0.0) + math.log1p(a) - y * e)
    if shifted and link == LOG:
        m = math.exp(e)
        if m >= _EPS:
            return m, 2.0 * wt * (m - y * e)
    m = linkinv(link, e)
    d = dev_resid(fam, y, m, wt)
    if shifted:
        d -= dev_constant(fam, y, wt)
    return m, d


@_jit
def pirls(
    fam,
    link,
    canonical,
    y,
    wt,
    offset,
    X,
    refs,
    zv,
    lam,
    off,
    q1,
    cptr,
    ccol,
    nu,
    pos,
    dense,
    u,
    beta,
    upd,
    tol,
    tol_step,
    maxit,
    eta,
    mu,
    D1,
    Cv,
    E,
):  # pragma: no cover - compiled
    """Penalized iteratively reweighted least squares; u (and beta when ``upd``) are updated in
    place, eta and mu hold the result and D1, Cv, E the factor at the Fisher weights of the mode.

    Returns (status, log|L_Z|^2, penalized deviance).
    """
    n = y.shape[0]
    q = u.shape[0]
    p = beta.shape[0] if upd else 0
    w = np.empty(n)
    s = np.empty(n)
    step = np.empty(q + p)
    u_new = np.empty(q)
    b_new = beta.copy()
    eta_new = np.empty(n)
    mu_new = np.empty(n)
    pdev_old = _trial(fam, link, y, wt, offset, X, beta, refs, zv, lam, off, u, eta, mu)
    tol_s = tol_step if canonical else tol_step * 1e-4
    converged = False
    for it in range(maxit):
        ok = False
        if not canonical:
            wmax = _weights(fam, link, canonical, np.bool_(True), y, mu, eta, wt, w, s)
            positive = True
            for i in range(n):
                if not w[i] > 1e-8 * wmax:
                    positive = False
                    break
            if positive:
                ok, _ld = _solve_system(
                    w,
                    s,
                    u,
                    X,
                    refs,
                    zv,
                    lam,
                    off,
                    q1,
                    upd,
                    cptr,
                    ccol,
                    nu,
                    pos,
                    dense,
                    D1,
                    Cv,
                    E,
                    step,
                )
        if not ok:
            _weights(fam, link, canonical, np.bool_(False), y, mu, eta, wt, w, s)
            ok, _ld = _solve_system(
                w, s, u, X, refs, zv, lam, off, q1, upd, cptr, ccol, nu, pos, dense, D1, Cv, E, step
            )
            if not ok:
                return STATUS_NOT_FACTORED, 0.0, 0.0
        size = 0.0
        for j in range(q):
            u_new[j] = u[j] + step[j]
            size = max(size, abs(step[j]))
        for j in range(p):
            b_new[j] = beta[j] + step[q + j]
            size = max(size, abs(step[q + j]))
        pdev = _trial(
            fam, link, y, wt, offset, X, b_new, refs, zv, lam, off, u_new, eta_new, mu_new
        )
        small = size <= tol_s and math.isfinite(pdev)
        halvings = 0
        # an increase at the level of rounding is not a reason to halve
        slack = 1e-12 * max(1.0, abs(pdev_old))
        while not small and (not math.isfinite(pdev) or pdev > pdev_old + slack) and halvings < 20:
            for j in range(q):
                u_new[j] = 0.5 * (u_new[j] + u[j])
            for j in range(p):
                b_new[j] = 0.5 * (b_new[j] + beta[j])
            pdev = _trial(
                fam, link, y, wt, offset, X, b_new, refs, zv, lam, off, u_new, eta_new, mu_new
            )
            halvings += 1
        if not math.isfinite(pdev):
            return STATUS_NONFINITE, 0.0, 0.0
        if not small and pdev - pdev_old > tol * max(1.0, abs(pdev)):
            return STATUS_NO_DECREASE, 0.0, 0.0
        settled = abs(pdev_old - pdev) <= tol * max(abs(pdev), 1.0)
        # separation: the estimates drift off with steps that do not shrink (see glmm.py)
        converged = settled and (small or it >= DRIFT_ITERATIONS)
        for j in range(q):
            u[j] = u_new[j]
        for j in range(p):
            beta[j] = b_new[j]
        for i in range(n):
            eta[i] = eta_new[i]
            mu[i] = mu_new[i]
        pdev_old = pdev
        if converged:
            break
    if not converged:
        return STATUS_MAXIT, 0.0, 0.0
    _weights(fam, link, canonical, np.bool_(False), y, mu, eta, wt, w, s)
    ok, logdet = _solve_system(
        w, s, u, X, refs, zv, lam, off, q1, upd, cptr, ccol, nu, pos, dense, D1, Cv, E, step
    )
    if not ok:
        return STATUS_NOT_FACTORED, 0.0, 0.0
    return STATUS_OK, logdet, pdev_old


@_jit
def _lower_inverse_transposed(E, o, RX):  # pragma: no cover - compiled
    """RX = L^-T for the lower-triangular L = E[o:, o:] (p x p, p = RX's size)."""
    p = RX.shape[0]
    Li = np.empty((p, p))
    _level_factor_inverse(np.ascontiguousarray(E[o:, o:]).reshape(1, p, p), 0, Li)
    for a in range(p):
        for b in range(p):
            RX[a, b] = Li[b, a]


@_jit
def laplace(
    fam,
    link,
    canonical,
    y,
    wt,
    offset,
    X,
    refs,
    zv,
    lam,
    off,
    q1,
    cptr,
    ccol,
    nu,
    pos,
    dense,
    u,
    beta,
    upd,
    tol,
    tol_step,
    maxit,
    a1,
    a2,
    const,
    c0,
    RX,
    EM,
):  # pragma: no cover - compiled
    """lme4's Laplace criterion log|L_Z|^2 + ||u||^2 + aic(y, mu) after PIRLS.

    For the binomial and Poisson families aic(y, mu) = deviance(y, mu) + c0 with c0 depending
    on y only, so the criterion is log|L_Z|^2 + penalized deviance + c0. With beta updated in
    PIRLS (``upd``) and a p x p ``RX``, RX receives L_X^-T, L_X the fixed effects' block of
    the factor PIRLS ends with (at the working weights of the modes; R R' is the unscaled
    covariance of beta). With one scalar term and a one-entry ``EM``, EM receives theta after
    one EM step, theta sqrt((||u||^2 + sum_l 1 / D_l) / q) with D_l = 1 + theta^2 sum w z^2:
    the variance of the random effects' modes plus their conditional variances, averaged.
    """
    n = y.shape[0]
    q = u.shape[0]
    m = q - q1 + (X.shape[1] if upd else 0)
    eta = np.empty(n)
    mu = np.empty(n)
    D1 = np.empty(q1)
    Cv = np.empty(ccol.shape[0])
    E = np.empty((m, m))
    status, logdet, pdev = pirls(
        fam,
        link,
        canonical,
        y,
        wt,
        offset,
        X,
        refs,
        zv,
        lam,
        off,
        q1,
        cptr,
        ccol,
        nu,
        pos,
        dense,
        u,
        beta,
        upd,
        tol,
        tol_step,
        maxit,
        eta,
        mu,
        D1,
        Cv,
        E,
    )
    if status != STATUS_OK:
        return status, math.inf
    p = X.shape[1]
    if upd and p > 0 and RX.shape[0] == p:
        _lower_inverse_transposed(E, m - p, RX)
    if EM.shape[0] == 1 and refs.shape[0] == 1 and q1 > 0:
        acc = 0.0
        for j in range(q):
            acc += u[j] * u[j]
        for lv in range(q1):
            acc += 1.0 / (D1[lv] * D1[lv])
        EM[0] = abs(lam[0]) * math.sqrt(acc / q1)
    if fam == BINOMIAL or fam == POISSON:
        return STATUS_OK, logdet + pdev + c0
    uu = 0.0
    for j in range(q):
        uu += u[j] * u[j]
    dev = pdev - uu
    return STATUS_OK, logdet + uu + aic(fam, y, mu, wt, a1, a2, const, dev)


@_jit
def _canonical(fam, link):  # pragma: no cover - compiled
    if fam == BINOMIAL:
        return link == LOGIT
    if fam == POISSON:
        return link == LOG
    if fam == GAMMA:
        return link == INVERSE
    if fam == INVERSE_GAUSSIAN:
        return link == INVERSE_SQUARE
    return link == IDENTITY


@_jit
def agq(
    fam,
    link,
    y,
    wt,
    offset,
    X,
    refs,
    zv,
    lam,
    off,
    cptr,
    ccol,
    nu,
    pos,
    dense,
    u,
    beta,
    tol,
    tol_step,
    maxit,
    nodes,
    weights,
):  # pragma: no cover - compiled
    """Adaptive Gauss-Hermite deviance for one scalar term (lme4's glmerAGQ), beta fixed."""
    n = y.shape[0]
    q = u.shape[0]
    eta = np.empty(n)
    mu = np.empty(n)
    D1 = np.empty(q)
    Cv = np.empty(ccol.shape[0])
    E = np.empty((0, 0))
    status, logdet, _pdev = pirls(
        fam,
        link,
        _canonical(fam, link),
        y,
        wt,
        offset,
        X,
        refs,
        zv,
        lam,
        off,
        q,
        cptr,
        ccol,
        nu,
        pos,
        dense,
        u,
        beta,
        False,
        tol,
        tol_step,
        maxit,
        eta,
        mu,
        D1,
        Cv,
        E,
    )
    if status != STATUS_OK:
        return status, math.inf
    devc0 = np.empty(q)
    for lv in range(q):
        devc0[lv] = u[lv] * u[lv]
    for i in range(n):
        devc0[refs[0, i]] += dev_resid(fam, y[i], mu[i], wt[i])
    base = np.empty(n)
    for i in range(n):
        e = offset[i]
        for j in range(beta.shape[0]):
            e += X[i, j] * beta[j]
        base[i] = e
    mult = np.zeros(q)
    devc = np.empty(q)
    uk = np.empty(q)
    T = lam[0]
    for k in range(nodes.shape[0]):
        zk = nodes[k]
        if zk == 0.0:
            for lv in range(q):
                mult[lv] += weights[k]
            continue
        for lv in range(q):
            uk[lv] = u[lv] + zk / D1[lv]
            devc[lv] = uk[lv] * uk[lv]
        for i in range(n):
            lv = refs[0, i]
            m_i = linkinv(link, base[i] + T * uk[lv] * zv[0, i])
            devc[lv] += dev_resid(fam, y[i], m_i, wt[i])
        for lv in range(q):
            mult[lv] += weights[k] * math.exp(-0.5 * (devc[lv] - devc0[lv]) + 0.5 * zk * zk)
    total = logdet
    for lv in range(q):
        total += devc0[lv] - 2.0 * math.log(mult[lv])
    return STATUS_OK, total


# -- the exact gradient of the Laplace criterion ------------------------------------------------
@_jit
def _factored_solve(q1, D1, Cv, L, cptr, ccol, nu, rhs):  # pragma: no cover - compiled
    """H^{-1} rhs with the factor of H left by ``_solve_system`` (fixed effects not included)."""
    q = rhs.shape[0]
    m = q - q1
    y1 = np.empty(q1)
    for lv in range(q1):
        y1[lv] = rhs[lv] / D1[lv]
    y2 = rhs[q1:].copy()
    for lv in range(q1):
        for t in range(cptr[lv], cptr[lv] + nu[lv]):
            y2[ccol[t]] -= Cv[t] * y1[lv]
    _cholesky_solve(L, y2, m)
    out = np.empty(q)
    for lv in range(q1):
        acc = y1[lv]
        for t in range(cptr[lv], cptr[lv] + nu[lv]):
            acc -= Cv[t] * y2[ccol[t]]
        out[lv] = acc / D1[lv]
    for a in range(m):
        out[q1 + a] = y2[a]
    return out


@_jit
def _mode_derivatives(th, y, X, refs, zv, u, w, s, D1, J):  # pragma: no cover - compiled
    """For one scalar random-effects term, at its modes u (Fisher weights w and scores s there,
    D1^2 the diagonal of H): the derivatives of the modes in (theta, beta), into J (q x (1 + p)).

    The modes solve g_l = sum_(i in l) theta z_i s_i - u_l = 0 (d s_i / d eta_i = -w_i for a
    canonical link), so by the implicit function theorem du_l = dg_l / D_l with
    D_l = 1 + theta^2 sum w_i z_i^2, dg_l/dtheta = sum z_i s_i - theta u_l sum w_i z_i^2 and
    dg_l/dbeta_j = -theta sum w_i z_i x_ij.
    """
    q, m = J.shape
    p = m - 1
    for lv in range(q):
        for k in range(m):
            J[lv, k] = 0.0
    for i in range(y.shape[0]):
        lv = refs[0, i]
        z = zv[0, i]
        wz = w[i] * z
        J[lv, 0] += z * s[i] - th * u[lv] * z * wz
        for j in range(p):
            J[lv, 1 + j] -= th * wz * X[i, j]
    for lv in range(q):
        d2 = D1[lv] * D1[lv]
        for k in range(m):
            J[lv, k] /= d2


@_jit
def laplace_gradient(
    fam, link, y, wt, offset, X, refs, zv, lam, off, q1, cptr, ccol, nu, pos, dense, u, beta,
    tol, tol_step, maxit, c0, order, rptr, grad, J,
):  # pragma: no cover - compiled  # fmt: skip
    """The Laplace criterion and its exact gradient in (theta, beta), for the binomial and
    Poisson families with their canonical links; with one scalar term and a q x (1 + p) ``J``,
    also the derivatives of the modes in (theta, beta) (:func:`_mode_derivatives`).

    With H = I + sum_i w_i v_i v_i' (v_i = Lambda' z_i, w the working weights at the mode u),
    F = log|H| + pdev(u) + c0 and, by the envelope theorem for the mode,

        dF/dphi = tr(H^-1 dH/dphi) + d pdev/d phi (at fixed u),

    where dH/dphi involves dw_i/dphi = w'_i (d eta_i/d phi + v_i' du/d phi). The n directional
    terms collapse into one solve (an adjoint): with t_i = w'_i v_i' H^-1 v_i and
    xi = H^-1 sum_i t_i v_i,

        dF/dbeta_j  = sum_i c_i x_ij,
        dF/dtheta_k = sum_i [c_i z_ki u_k(i) + z_ki s_i xi_k(i) + 2 w_i z_ki (H^-1 v_i)_k(i)],

    with c_i = t_i - 2 s_i - w_i v_i' xi and s_i the score. The entries of H^-1 at each row's
    levels come from the block factor (diagonal first block, dense Schur complement S): per
    level l of the first term, S^-1 c_l. Rows are visited level by level (``order``, ``rptr``).
    """
    n = y.shape[0]
    q = u.shape[0]
    K = refs.shape[0]
    p = X.shape[1]
    m = q - q1
    eta = np.empty(n)
    mu = np.empty(n)
    D1 = np.empty(q1)
    Cv = np.empty(ccol.shape[0])
    E = np.empty((m, m))
    status, logdet, pdev = pirls(
        fam, link, np.bool_(True), y, wt, offset, X, refs, zv, lam, off, q1, cptr, ccol, nu,
        pos, dense, u, beta, np.bool_(False), tol, tol_step, maxit, eta, mu, D1, Cv, E,
    )  # fmt: skip
    if status != STATUS_OK:
        return status, math.inf
    w = np.empty(n)
    s = np.empty(n)
    _weights(fam, link, np.bool_(True), np.bool_(False), y, mu, eta, wt, w, s)
    if K == 1 and J.shape[0] == q and J.shape[1] == 1 + p:
        _mode_derivatives(lam[0], y, X, refs, zv, u, w, s, D1, J)
    # S^-1 from its Cholesky factor (left in E)
    Sinv = np.zeros((m, m))
    if m > 0:
        Linv = np.empty((m, m))
        _level_factor_inverse(E.reshape(1, m, m), 0, Linv)
        Sinv = np.dot(Linv.T.copy(), Linv)
    rho = np.zeros(q)
    t = np.empty(n)
    tl = np.zeros(m)
    for k in range(K + p):
        grad[k] = 0.0
    for lv in range(q1):
        start = cptr[lv]
        end = start + nu[lv]
        for a in range(m):
            tl[a] = 0.0
        for tt in range(start, end):
            col = ccol[tt]
            val = Cv[tt]
            for a in range(m):
                tl[a] += Sinv[a, col] * val
        ct = 0.0
        for tt in range(start, end):
            ct += Cv[tt] * tl[ccol[tt]]
        d = D1[lv]
        hll = (1.0 + ct) / (d * d)
        for r in range(rptr[lv], rptr[lv + 1]):
            i = order[r]
            v0 = lam[0] * zv[0, i]
            g0 = v0 * hll
            h = 0.0
            for k in range(1, K):
                ak = off[k] - q1 + refs[k, i]
                vk = lam[k] * zv[k, i]
                h0k = -tl[ak] / d
                g0 += vk * h0k
                gk = v0 * h0k
                for k2 in range(1, K):
                    gk += lam[k2] * zv[k2, i] * Sinv[ak, off[k2] - q1 + refs[k2, i]]
                grad[k] += 2.0 * w[i] * zv[k, i] * gk
                h += vk * gk
            h += v0 * g0
            grad[0] += 2.0 * w[i] * zv[0, i] * g0
            ti = wt[i] * _mu_eta2_at(link, eta[i], mu[i]) * h
            t[i] = ti
            rho[lv] += ti * v0
            for k in range(1, K):
                rho[off[k] + refs[k, i]] += ti * lam[k] * zv[k, i]
    xi = _factored_solve(q1, D1, Cv, E, cptr, ccol, nu, rho)
    for i in range(n):
        vxi = 0.0
        for k in range(K):
            vxi += lam[k] * zv[k, i] * xi[off[k] + refs[k, i]]
        ci = t[i] - 2.0 * s[i] - w[i] * vxi
        for j in range(p):
            grad[K + j] += ci * X[i, j]
        for k in range(K):
            idx = off[k] + refs[k, i]
            grad[k] += zv[k, i] * (ci * u[idx] + s[i] * xi[idx])
    return STATUS_OK, logdet + pdev + c0


@_jit
def glm_irls(fam, link, y, wt, offset, X, eta, mu, beta, maxit, dev0):  # pragma: no cover
    """IRLS for the fixed effects alone (the GLM without random effects), from eta and
    mu = linkinv(eta) (R's mustart), into ``beta`` (``dev0``: :func:`deviance_shift` of the
    response). Each step solves the weighted normal
    equations of X with unit-norm columns by a Cholesky factor; returns False when they are
    ill-conditioned (a pivot of the equilibrated factor below 1e-6) or singular, for the
    caller to solve the steps by least squares instead. Stops when the deviance changes by
    less than 1e-10 of itself (plus 0.1), or after ``maxit`` steps.
    """
    n, p = X.shape
    z = np.empty(n)
    w = np.empty(n)
    dev_old = math.inf
    # the deviance as PIRLS computes it (:func:`_trial`), with its part in y alone added back
    shifted = _shifted(fam, link)
    for it in range(maxit):
        for i in range(n):
            # (d mu / d eta from mu after the first step, where mu = linkinv(eta))
            d1 = mu_eta(link, eta[i]) if it == 0 else mu_eta_at(link, eta[i], mu[i])
            w[i] = wt[i] * d1 * d1 / variance(fam, mu[i])
            z[i] = eta[i] - offset[i] + (y[i] - mu[i]) / d1
        G = np.zeros((p, p))
        r = np.zeros(p)
        for i in range(n):
            wi = w[i]
            for a in range(p):
                xa = wi * X[i, a]
                r[a] += xa * z[i]
                for b in range(a + 1):
                    G[a, b] += xa * X[i, b]
        d = np.empty(p)
        for a in range(p):
            if not (G[a, a] > 0.0 and math.isfinite(G[a, a])):
                return False
            d[a] = math.sqrt(G[a, a])
        for a in range(p):  # the equilibrated normal equations' factor, in place
            for b in range(a + 1):
                acc = G[a, b] / (d[a] * d[b])
                for c in range(b):
                    acc -= G[a, c] * G[b, c]
                if a == b:
                    if not acc > 1e-12:  # a pivot below 1e-6
                        return False
                    G[a, a] = math.sqrt(acc)
                else:
                    G[a, b] = acc / G[b, b]
        for a in range(p):  # L L' x = r / d; beta = x / d
            beta[a] = r[a] / d[a]
        _cholesky_solve(G, beta, p)
        for a in range(p):
            beta[a] /= d[a]
        dev = dev0
        for i in range(n):
            e = offset[i]
            for a in range(p):
                e += X[i, a] * beta[a]
            eta[i] = e
            mu[i], di = _mean_and_deviance(fam, link, shifted, e, y[i], wt[i])
            dev += di
        if abs(dev - dev_old) < 1e-10 * (abs(dev) + 0.1):
            break
        dev_old = dev
    return True


@_jit
def factor_x(
    fam, link, y, wt, offset, X, refs, zv, lam, off, q1, cptr, ccol, nu, pos, dense, u, beta, LX
):  # pragma: no cover - compiled  # fmt: skip
    """The fixed effects' block L_X of the factor of the penalized weighted least-squares
    system with X, at the (unfloored Fisher) working weights of (u, beta), into ``LX``
    (lower triangular, p x p); L_X^-T L_X^-1 is the unscaled covariance of beta. Returns
    False when the system cannot be factored."""
    n = y.shape[0]
    q = u.shape[0]
    p = X.shape[1]
    qr = q - q1
    eta = np.empty(n)
    mu = np.empty(n)
    _trial(fam, link, y, wt, offset, X, beta, refs, zv, lam, off, u, eta, mu)
    w = np.empty(n)
    s = np.empty(n)
    # Fisher weights without the floor (``observed`` with ``canonical``: no Newton weights)
    _weights(fam, link, np.bool_(True), np.bool_(True), y, mu, eta, wt, w, s)
    D1 = np.empty(q1)
    Cv = np.empty(ccol.shape[0])
    E = np.empty((qr + p, qr + p))
    step = np.empty(q + p)
    ok, _ = _solve_system(
        w, s, u, X, refs, zv, lam, off, q1, np.bool_(True), cptr, ccol, nu, pos, dense, D1, Cv,
        E, step,
    )  # fmt: skip
    if not ok:
        return False
    for a in range(p):
        for b in range(p):
            LX[a, b] = E[qr + a, qr + b] if b <= a else 0.0
    return True


@_jit
def optimum_state(
    fam, link, canonical, y, wt, offset, X, refs, zv, lam, off, q1, cptr, ccol, nu, pos, dense,
    u, beta, tol, tol_step, maxit, a1, a2, const, c0, mu, LX,
):  # pragma: no cover - compiled  # fmt: skip
    """The state at an optimum in one call: the Laplace criterion after PIRLS from ``u`` (the
    modes, updated in place) at fixed ``beta``, the means there (into ``mu``) and the fixed
    effects' block L_X of the factor with X (into ``LX``, see :func:`factor_x`). Returns
    (status, criterion, whether L_X could be formed)."""
    status, dev = laplace(
        fam, link, canonical, y, wt, offset, X, refs, zv, lam, off, q1, cptr, ccol, nu, pos,
        dense, u, beta, np.bool_(False), tol, tol_step, maxit, a1, a2, const, c0,
        np.empty((0, 0)), np.empty(0),
    )  # fmt: skip
    if status != STATUS_OK:
        return status, dev, False
    eta = np.empty(y.shape[0])
    _trial(fam, link, y, wt, offset, X, beta, refs, zv, lam, off, u, eta, mu)
    if X.shape[1] == 0:
        return status, dev, True
    ok = factor_x(
        fam, link, y, wt, offset, X, refs, zv, lam, off, q1, cptr, ccol, nu, pos, dense, u, beta,
        LX,
    )  # fmt: skip
    return status, dev, ok


@_jit
def binomial_constants(y, wt, mtr):  # pragma: no cover - compiled
    """The binomial log-likelihood's parts that depend on the response alone, for counts
    k = m y of m trials with prior weights w (per row, r = w / m, 0 where m = 0):
    (a1 = r k, a2 = r (m - k), sum r log C(m, k))."""
    n = y.shape[0]
    a1 = np.empty(n)
    a2 = np.empty(n)
    const = 0.0
    for i in range(n):
        m = mtr[i]
        ratio = wt[i] / m if m > 0 else 0.0
        k = np.rint(m * y[i])
        size = np.rint(m)
        a1[i] = ratio * k
        a2[i] = ratio * (size - k)
        lchoose = math.lgamma(size + 1.0) - math.lgamma(k + 1.0) - math.lgamma(size - k + 1.0)
        const += ratio * lchoose
    return a1, a2, const


@_jit
def aic_minus_deviance(fam, y, mu, wt, a1, a2, const):  # pragma: no cover - compiled
    """aic(y, mu) - deviance(y, mu) (R's family$aic less the deviance) at the means mu; for
    the binomial and Poisson families it depends on y only (the criterion's constant c0)."""
    dev = 0.0
    for i in range(y.shape[0]):
        dev += dev_resid(fam, y[i], mu[i], wt[i])
    return aic(fam, y, mu, wt, a1, a2, const, dev) - dev


@_jit
def level_order(refs0, q1):  # pragma: no cover - compiled
    """The rows level by level (a stable counting sort of the first term's level codes) and
    where each level's rows start in that order (q1 + 1 pointers)."""
    n = refs0.shape[0]
    rptr = np.zeros(q1 + 1, dtype=np.int64)
    for i in range(n):
        rptr[refs0[i] + 1] += 1
    for lv in range(q1):
        rptr[lv + 1] += rptr[lv]
    fill = rptr[:q1].copy()
    order = np.empty(n, dtype=np.int64)
    for i in range(n):
        lv = refs0[i]
        order[fill[lv]] = i
        fill[lv] += 1
    return order, rptr


@_jit
def response_start(fam, link, y, wt, ntr, offset, X, beta, with_beta):  # pragma: no cover
    """For the binomial and Poisson families, in one call: the criterion's constant c0
    (:func:`aic_minus_deviance` at the family's starting means bounded to [1e-3, 1 - 1e-3],
    plus :func:`deviance_shift`) and, with ``with_beta``, the GLM's fixed effects from those
    means (R's mustart: (m y + 1/2) / (m + 1) with m the trials, or the prior weights when
    no row has more than one trial; y + 0.1) by :func:`glm_irls`, into ``beta``; the link
    must be the canonical one then. Returns (c0, whether IRLS solved its normal equations).
    """
    n = y.shape[0]
    mu = np.empty(n)
    if fam == BINOMIAL:
        many = False
        for i in range(n):
            if ntr[i] > 1:
                many = True
                break
        mtr = ntr if many else wt
        for i in range(n):
            mu[i] = (mtr[i] * y[i] + 0.5) / (mtr[i] + 1.0)
        a1, a2, const = binomial_constants(y, wt, mtr)
    else:
        for i in range(n):
            mu[i] = y[i] + 0.1
        a1 = np.zeros(n)
        a2 = np.zeros(n)
        const = 0.0
        for i in range(n):
            const += wt[i] * math.lgamma(y[i] + 1.0)
    mu0 = np.empty(n)
    for i in range(n):
        m = max(mu[i], 1e-3)
        mu0[i] = min(m, 1.0 - 1e-3) if fam == BINOMIAL else m
    dev0 = deviance_shift(fam, link, y, wt)
    c0 = aic_minus_deviance(fam, y, mu0, wt, a1, a2, const) + dev0
    if not with_beta or X.shape[1] == 0:
        return c0, True
    eta = np.empty(n)
    for i in range(n):
        eta[i] = math.log(mu[i] / (1.0 - mu[i])) if link == LOGIT else math.log(mu[i])
    return c0, glm_irls(fam, link, y, wt, offset, X, eta, mu, beta, 50, dev0)


# -- the joint search over (theta, beta) in one compiled call ---------------------------------

#: the number of entries of the data of :func:`laplace_search_point` (see
#: :meth:`GeneralizedLinearMixedModel._search_data
#: <mixedmodels.glmm.GeneralizedLinearMixedModel._search_data>`)
GLMM_DATA_SIZE = 31
#: where the modes PIRLS starts from (updated at each evaluation) and the fixed effects of the
#: last point evaluated sit in that data
SEARCH_U, SEARCH_BETA = 15, 27
#: where the search's matrix R (beta = beta0 + R z) sits
SEARCH_R = 25
#: the derivatives of those modes in (theta, beta) (q x (nth + p) with one scalar term, 0 x 0
#: otherwise), the theta of the last point evaluated, and whether the derivatives are those of
#: the modes held (1) or not (0)
SEARCH_J, SEARCH_THETA, SEARCH_VALID = 28, 29, 30
assert GLMM_DATA_SIZE != small_fit.LMM_DATA_SIZE  # the search tells the two apart by size


@overload(small_fit.criterion_and_gradient, jit_options={"cache": True, "nogil": True})  # type: ignore[typeddict-unknown-key]
def _glmm_criterion_and_gradient(x, data, grad):  # pragma: no cover - compiled
    if isinstance(data, types.BaseTuple) and len(data) == GLMM_DATA_SIZE:
        return laplace_search_point
    return None


def laplace_search_point(x, data, grad):  # pragma: no cover - compiled (through the overload)
    """The Laplace criterion at the search's point x = (theta, z) with beta = beta0 + R z, and
    its gradient in x (d/dz = R' d/dbeta), for :func:`mixedmodels.linalg.small_fit.minimize`.

    PIRLS starts at the modes of the last point evaluated (``u``, updated in place), moved to
    first order to the new point where their derivatives are known (one scalar term: about two
    PIRLS iterations fewer per evaluation); if PIRLS fails from that start it runs again from
    the modes themselves, and if it fails there too they are put back and the criterion is
    infinite.
    """
    (fam, link, y, wt, offset, X, refs, zv, off, q1, cptr, ccol, nu, pos, dense, u, ubak, tol,
     tol_step, maxit, c0, order, rptr, nth, beta0, R, gfull, beta, J, thlast,
     valid) = data  # fmt: skip
    p = beta0.shape[0]
    q = u.shape[0]
    predict = valid[0] == 1
    dbeta = np.empty(p)
    bbak = np.empty(p)
    for j in range(p):
        acc = beta0[j]
        for k in range(p):
            acc += R[j, k] * x[nth + k]
        bbak[j] = beta[j]
        dbeta[j] = acc - beta[j]
        beta[j] = acc
    for j in range(q):
        ubak[j] = u[j]
    if predict:
        for lv in range(q):
            acc = u[lv]
            for k in range(nth):
                acc += J[lv, k] * (x[k] - thlast[k])
            for j in range(p):
                acc += J[lv, nth + j] * dbeta[j]
            u[lv] = acc
    theta = np.ascontiguousarray(x[:nth])
    valid[0] = 0
    status, dev = laplace_gradient(
        fam, link, y, wt, offset, X, refs, zv, theta, off, q1, cptr, ccol, nu, pos, dense, u,
        beta, tol, tol_step, maxit, c0, order, rptr, gfull, J,
    )  # fmt: skip
    if status != STATUS_OK and predict:
        for j in range(q):
            u[j] = ubak[j]
        status, dev = laplace_gradient(
            fam, link, y, wt, offset, X, refs, zv, theta, off, q1, cptr, ccol, nu, pos, dense, u,
            beta, tol, tol_step, maxit, c0, order, rptr, gfull, J,
        )  # fmt: skip
    if status != STATUS_OK:
        for j in range(q):
            u[j] = ubak[j]
        for j in range(p):
            beta[j] = bbak[j]
        return math.inf
    if J.shape[0] == q and q > 0:
        for k in range(nth):
            thlast[k] = x[k]
        valid[0] = 1
    for j in range(nth):
        grad[j] = gfull[j]
    for k in range(p):
        acc = 0.0
        for j in range(p):
            acc += R[j, k] * gfull[nth + j]
        grad[nth + k] = acc
    return dev


#: :func:`laplace_search_point` as a kernel for other kernels (:func:`laplace_gradients`), not
#: to be called from Python: numba names the cache entry after the function, so it shares the
#: overload's compilation of the same code (made for the search, without a Python wrapper),
#: which saves compiling it a second time (about 2.5 s on a first fit)
_laplace_point = _jit(laplace_search_point)


@_jit
def _copy_point(u, J, beta, theta, u_to, J_to, beta_to, theta_to):  # pragma: no cover
    """Copy a point's modes, their derivatives, beta and theta into the second four arrays."""
    for j in range(u.shape[0]):
        u_to[j] = u[j]
        for k in range(J.shape[1]):
            J_to[j, k] = J[j, k]
    for j in range(beta.shape[0]):
        beta_to[j] = beta[j]
    for k in range(theta.shape[0]):
        theta_to[k] = theta[k]


@_jit
def laplace_gradients(
    points, data, u_start, values, grads, steps, rel_theta, rel_beta, u_opt, mu, LX, cov, H
):  # pragma: no cover - compiled  # fmt: skip
    """:func:`laplace_search_point` at each row of ``points`` (values and gradients into
    ``values`` and the rows of ``grads``; a gradient of NaN where PIRLS fails), PIRLS starting
    each from the modes ``u_start`` (those of the first row): the gradients that give the
    Hessian at the optimum. With one scalar term the rows after the first start from the first
    row's modes moved to first order: for the Hessian's small steps within rounding of the
    modes, and PIRLS stops after one step instead of two or three.

    With ``steps`` of the points' width, the first row is an optimum and the rows after it are
    made here, from its state: its modes go to ``u_opt``, its means to ``mu``, the fixed
    effects' block of the factor with X to ``LX`` (:func:`factor_x`) and cov = (L_X L_X')^-1
    (beta's unscaled covariance); ``steps`` holds theta's typical sizes on entry and the
    forward-difference steps on return, rel_theta max(|theta|, size) and rel_beta times the
    square root of cov's diagonal; row r + 1 is the first row moved by steps[r] in its r-th
    entry; ``H`` (d x d) receives the Hessian by forward differences of the gradients,
    symmetrized (:func:`mixedmodels.optim.hessian_from_forward_gradients`). Returns False when
    the first row fails or L_X cannot be formed (the rows after it are then not evaluated),
    True otherwise.
    """
    u = data[SEARCH_U]
    beta = data[SEARCH_BETA]
    J = data[SEARCH_J]
    thlast = data[SEARCH_THETA]
    valid = data[SEARCH_VALID]
    q = u.shape[0]
    p = beta.shape[0]
    nth = thlast.shape[0]
    d = points.shape[1]
    derive = steps.shape[0] == d and d > 0
    J0 = np.empty(J.shape)
    u0 = np.empty(q)
    b0 = np.empty(p)
    t0 = np.empty(nth)
    ok0 = False
    for i in range(points.shape[0]):
        if ok0:  # the first row's modes, their derivatives and that row's parameters
            _copy_point(u0, J0, b0, t0, u, J, beta, thlast)
            valid[0] = 1
        else:
            for j in range(q):
                u[j] = u_start[j]
            valid[0] = 0
        f = _laplace_point(points[i], data, grads[i])
        values[i] = f
        if not math.isfinite(f):
            for j in range(grads.shape[1]):
                grads[i, j] = math.nan
        elif i == 0 and valid[0] == 1:
            ok0 = True
            _copy_point(u, J, beta, thlast, u0, J0, b0, t0)
        if i == 0 and derive:
            if not math.isfinite(f) or not _optimum_steps(
                points, data, steps, rel_theta, rel_beta, u_opt, mu, LX, cov
            ):
                return False
    if derive:
        for a in range(d):
            for b in range(d):
                ja = (grads[a + 1, b] - grads[0, b]) / steps[a]
                jb = (grads[b + 1, a] - grads[0, a]) / steps[b]
                H[a, b] = 0.5 * (ja + jb)
    return True


@_jit
def _optimum_steps(
    points, data, steps, rel_theta, rel_beta, u_opt, mu, LX, cov
):  # pragma: no cover
    """The state at the first row of ``points`` just evaluated (its modes and beta in
    ``data``) and the Hessian's rows after it (see :func:`laplace_gradients`)."""
    (fam, link, y, wt, offset, X, refs, zv, off, q1, cptr, ccol, nu, pos, dense, u, _ubak, _tol,
     _tol_step, _maxit, _c0, _order, _rptr, nth, _beta0, _R, _gfull, beta, _J, _thlast,
     _valid) = data  # fmt: skip
    p = beta.shape[0]
    d = points.shape[1]
    for j in range(u.shape[0]):
        u_opt[j] = u[j]
    lam = np.ascontiguousarray(points[0, :nth])
    eta = np.empty(y.shape[0])
    _trial(fam, link, y, wt, offset, X, beta, refs, zv, lam, off, u, eta, mu)
    if p > 0:
        if not factor_x(
            fam, link, y, wt, offset, X, refs, zv, lam, off, q1, cptr, ccol, nu, pos, dense, u,
            beta, LX,
        ):  # fmt: skip
            return False
        C = cholesky_inverse(LX, p)
        for a in range(p):
            for b in range(p):
                cov[a, b] = C[a, b]
    for k in range(nth):
        steps[k] = rel_theta * max(abs(points[0, k]), steps[k])
    for j in range(p):
        steps[nth + j] = rel_beta * math.sqrt(cov[j, j])
    for r in range(1, points.shape[0]):
        for k in range(d):
            points[r, k] = points[0, k]
        points[r, r - 1] += steps[r - 1]
    return True
