"""Compiled loops for the sparse block products of the blocked Cholesky factorization.

A block-sparse matrix here is stored by block columns (CSC at the level of S_r x S_c blocks):
``colptr`` (ncol + 1), ``rowidx`` (nnzb, sorted within each column) and ``data``
(nnzb, S_r, S_c). Every kernel below subtracts a product from its target in place; they are the
rank updates ``L[k, j] -= L[k, i] @ L[j, i].T`` of the left-looking block factorization
(Bates et al. 2015, section 3.2; MixedModels.jl's ``rankUpdate!``).

It also holds the compiled passes over the rows (a term's cross-products, the rank check of
the fixed effects, the column scales, binomial counts) and the small dense helpers of the
Hessian checks. The module is imported lazily, so that ``import mixedmodels`` does not import
numba.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from mixedmodels.linalg.lmm_kernels import _small_cholesky, symmetric_eigen, wls_residual


def _jit(func):
    """Compile with numba in nopython mode, caching the machine code on disk."""
    return nb.njit(cache=True, nogil=True)(func)


@_jit
def bs_syrk_dense(target, colptr, rowidx, data):  # pragma: no cover - compiled
    """target (dense, lower triangle used) -= B @ B.T for block-sparse B (rows = target)."""
    ncol = colptr.shape[0] - 1
    sr = data.shape[1]
    sc = data.shape[2]
    if sr == 1 and sc == 1:
        # scalar blocks (crossed intercept terms): a plain sparse syrk
        d = data[:, 0, 0]
        for c in range(ncol):
            for ia in range(colptr[c], colptr[c + 1]):
                ra = rowidx[ia]
                va = d[ia]
                row = target[ra]
                for ib in range(colptr[c], ia + 1):
                    row[rowidx[ib]] -= va * d[ib]
        return
    for c in range(ncol):
        for ia in range(colptr[c], colptr[c + 1]):
            ra = rowidx[ia] * sr
            for ib in range(colptr[c], ia + 1):
                rb = rowidx[ib] * sr
                for a in range(sr):
                    for b in range(sr):
                        acc = 0.0
                        for t in range(sc):
                            acc += data[ia, a, t] * data[ib, b, t]
                        target[ra + a, rb + b] -= acc


@_jit
def bs_bs_t_dense(
    target, colptr_a, rowidx_a, data_a, colptr_b, rowidx_b, data_b
):  # pragma: no cover
    """target (dense) -= A @ B.T, A and B block-sparse with the same block columns."""
    ncol = colptr_a.shape[0] - 1
    sa = data_a.shape[1]
    sb = data_b.shape[1]
    sc = data_a.shape[2]
    for c in range(ncol):
        for ia in range(colptr_a[c], colptr_a[c + 1]):
            ra = rowidx_a[ia] * sa
            for ib in range(colptr_b[c], colptr_b[c + 1]):
                rb = rowidx_b[ib] * sb
                for a in range(sa):
                    for b in range(sb):
                        acc = 0.0
                        for t in range(sc):
                            acc += data_a[ia, a, t] * data_b[ib, b, t]
                        target[ra + a, rb + b] -= acc


@_jit
def dense_bs_t(target, A, colptr_b, rowidx_b, data_b):  # pragma: no cover
    """target (dense, m x q_j) -= A @ B.T with A dense (m x q_i) and B block-sparse (q_j x q_i)."""
    ncol = colptr_b.shape[0] - 1
    sb = data_b.shape[1]
    sc = data_b.shape[2]
    m = A.shape[0]
    if sb == 1 and sc == 1:
        # scalar blocks: accumulate target.T row by row (contiguous), then subtract
        AT = np.ascontiguousarray(A.T)
        acc_t = np.zeros((target.shape[1], m))
        for c in range(ncol):
            src = AT[c]
            for ib in range(colptr_b[c], colptr_b[c + 1]):
                dst = acc_t[rowidx_b[ib]]
                v = data_b[ib, 0, 0]
                for r in range(m):
                    dst[r] += v * src[r]
        target -= acc_t.T
        return
    for c in range(ncol):
        cc = c * sc
        for ib in range(colptr_b[c], colptr_b[c + 1]):
            rb = rowidx_b[ib] * sb
            for r in range(m):
                for b in range(sb):
                    acc = 0.0
                    for t in range(sc):
                        acc += A[r, cc + t] * data_b[ib, b, t]
                    target[r, rb + b] -= acc


@_jit
def bs_dense_t(target, colptr_a, rowidx_a, data_a, B):  # pragma: no cover
    """target (dense, q_k x q_j) -= A @ B.T with A block-sparse (q_k x q_i), B dense (q_j x q_i)."""
    ncol = colptr_a.shape[0] - 1
    sa = data_a.shape[1]
    sc = data_a.shape[2]
    m = B.shape[0]
    for c in range(ncol):
        cc = c * sc
        for ia in range(colptr_a[c], colptr_a[c + 1]):
            ra = rowidx_a[ia] * sa
            for a in range(sa):
                for r in range(m):
                    acc = 0.0
                    for t in range(sc):
                        acc += data_a[ia, a, t] * B[r, cc + t]
                    target[ra + a, r] -= acc


@_jit
def bs_bs_t_bs(
    colptr_t, rowidx_t, data_t, colptr_a, rowidx_a, data_a, colptr_b, rowidx_b, data_b
):  # pragma: no cover
    """target (block-sparse, pattern containing that of A @ B.T) -= A @ B.T.

    The target's column index is B's row level and its row index A's row level; positions
    are found by binary search within the target column.
    """
    ncol = colptr_a.shape[0] - 1
    sa = data_a.shape[1]
    sb = data_b.shape[1]
    sc = data_a.shape[2]
    for c in range(ncol):
        for ib in range(colptr_b[c], colptr_b[c + 1]):
            tcol = rowidx_b[ib]
            lo0 = colptr_t[tcol]
            hi0 = colptr_t[tcol + 1]
            for ia in range(colptr_a[c], colptr_a[c + 1]):
                trow = rowidx_a[ia]
                lo = lo0
                hi = hi0
                while lo < hi:
                    mid = (lo + hi) // 2
                    if rowidx_t[mid] < trow:
                        lo = mid + 1
                    else:
                        hi = mid
                # lo is the position of (trow, tcol); the symbolic phase guarantees it exists
                for a in range(sa):
                    for b in range(sb):
                        acc = 0.0
                        for t in range(sc):
                            acc += data_a[ia, a, t] * data_b[ib, b, t]
                        data_t[lo, a, b] -= acc


@_jit
def bs_t_vec(out, colptr, rowidx, data, v):  # pragma: no cover
    """out (q_j) += B.T @ v for block-sparse B (q_k x q_j) and dense v (q_k)."""
    ncol = colptr.shape[0] - 1
    sr = data.shape[1]
    sc = data.shape[2]
    for c in range(ncol):
        for i in range(colptr[c], colptr[c + 1]):
            r = rowidx[i] * sr
            for b in range(sc):
                acc = 0.0
                for a in range(sr):
                    acc += data[i, a, b] * v[r + a]
                out[c * sc + b] += acc


def warm_up() -> None:
    """Compile (or load from cache) every kernel once, on tiny inputs."""
    colptr = np.array([0, 1], dtype=np.int64)
    rowidx = np.array([0], dtype=np.int64)
    data = np.ones((1, 1, 1))
    dense = np.zeros((1, 1))
    bs_syrk_dense(dense, colptr, rowidx, data)
    bs_bs_t_dense(dense, colptr, rowidx, data, colptr, rowidx, data)
    dense_bs_t(dense, np.ones((1, 1)), colptr, rowidx, data)
    bs_dense_t(dense, colptr, rowidx, data, np.ones((1, 1)))
    bs_bs_t_bs(colptr, rowidx, data.copy(), colptr, rowidx, data, colptr, rowidx, data)
    bs_t_vec(np.zeros(1), colptr, rowidx, data, np.ones(1))


@_jit
def term_blocks(refs, z, has_z, XY, w, has_w, nlevels):  # pragma: no cover - compiled
    """One term's diagonal blocks sum_i w_i z_i z_i' (nlevels, S, S) and its blocks with the
    fixed effects and the response sum_i w_i z_ia XY_ic as (XY columns, nlevels, S), in one
    pass over the rows. ``z`` is (S, n) (``has_z``: otherwise an intercept, S = 1) and ``w``
    the prior weights (``has_w``). Each sum runs over the rows in order with the factors
    multiplied as numpy's weighted ``bincount`` of (w * z_a) * z_b would: the same values
    to the last bit, without a pass over the rows per entry."""
    n = refs.shape[0]
    s = z.shape[0] if has_z else 1
    ncol = XY.shape[1]
    diag = np.zeros((nlevels, s, s))
    xy = np.zeros((ncol, nlevels, s))
    wz = np.empty(s)
    for i in range(n):
        lv = refs[i]
        wi = w[i] if has_w else 1.0
        for a in range(s):
            wz[a] = wi * z[a, i] if has_z else wi
        for a in range(s):
            for b in range(a + 1):
                diag[lv, a, b] += wz[a] * (z[b, i] if has_z else 1.0)
            for c in range(ncol):
                xy[c, lv, a] += wz[a] * XY[i, c]
    for lv in range(nlevels):
        for a in range(s):
            for b in range(a):
                diag[lv, b, a] = diag[lv, a, b]
    return diag, xy


@_jit
def one_term_blocks(refs, z, has_z, X, y, w, has_w, nlevels):  # pragma: no cover - compiled
    """The cross-products of a model with one random-effects term, in one call: (ok, gamma,
    diag, xy, xyxy). gamma and r = y - X gamma are
    :func:`~mixedmodels.linalg.lmm_kernels.wls_residual`'s; diag and xy are
    :func:`term_blocks`' for [X r] (bit for bit), xyxy is
    [X r]'W[X r] (its lower triangle summed row by row in order, then mirrored). ok is False
    when X'WX is not numerically positive definite (the caller then takes the general path)."""
    n, p = X.shape
    ok, r, gamma = wls_residual(X, y, w, has_w)
    XY = np.empty((n, p + 1))
    for i in range(n):
        for c in range(p):
            XY[i, c] = X[i, c]
        XY[i, p] = r[i]
    diag, xy = term_blocks(refs, z, has_z, XY, w, has_w, nlevels)
    xyxy = np.zeros((p + 1, p + 1))
    for i in range(n):
        wi = w[i] if has_w else 1.0
        for c in range(p + 1):
            wc = wi * XY[i, c]
            for e in range(c + 1):
                xyxy[c, e] += wc * XY[i, e]
    for c in range(p + 1):
        for e in range(c):
            xyxy[e, c] = xyxy[c, e]
    return ok, gamma, diag, xy, xyxy


@_jit
def rank_columns(X, tol, block):  # pragma: no cover - compiled
    """Which columns of X (n x p) to keep (a boolean per column), with LINPACK ``dqrdc2``'s
    rule: a column is dropped when its norm after projection on the kept columns before it is
    below ``tol`` times its original norm (R's ``qr()``, lme4's ``chkRank.drop.cols``).

    Gram-Schmidt with re-orthogonalization ("twice is enough") by blocks of ``block`` columns:
    each block is projected on the kept columns of the blocks before it with matrix products,
    then column by column within the block. The kept directions are the rows of Q."""
    n, p = X.shape
    keep = np.zeros(p, dtype=np.bool_)
    Q = np.empty((min(n, p), n))
    k = 0  # kept columns so far (the first k rows of Q)
    for j0 in range(0, p, block):
        nb_ = min(block, p - j0)
        B = np.empty((nb_, n))
        norms = np.empty(nb_)
        for i in range(nb_):
            for r in range(n):
                B[i, r] = X[r, j0 + i]
            norms[i] = math.sqrt(np.dot(B[i], B[i]))
        if k:
            Qk = Q[:k]
            for _ in range(2):
                B -= np.dot(np.dot(B, Qk.T), Qk)
        k_block = k
        for i in range(nb_):
            if norms[i] == 0.0 or k >= n:
                continue
            v = B[i]
            if k > k_block:
                Qb = Q[k_block:k]
                for _ in range(2):
                    v -= np.dot(np.dot(Qb, v), Qb)
            rnorm = math.sqrt(np.dot(v, v))
            if rnorm < tol * norms[i]:
                continue
            keep[j0 + i] = True
            for r in range(n):
                Q[k, r] = v[r] / rnorm
            k += 1
    return keep


@_jit
def rms_nonzero(z):  # pragma: no cover - compiled
    """The root mean square of each row of z over its nonzero entries (1 for a row of zeros)."""
    out = np.ones(z.shape[0])
    for j in range(z.shape[0]):
        acc = 0.0
        cnt = 0
        for i in range(z.shape[1]):
            v = z[j, i]
            if v != 0.0:
                acc += v * v
                cnt += 1
        if cnt:
            out[j] = math.sqrt(acc / cnt)
    return out


@_jit
def binomial_counts(succ, fail, y, trials):  # pragma: no cover - compiled
    """The proportion of successes (0 where there are no trials) and the number of trials of
    counts into ``y`` and ``trials``; False (nothing written) unless every count is finite,
    nonnegative and within 1e-3 of an integer (the rest is left to the general path)."""
    n = succ.shape[0]
    for i in range(n):
        a = succ[i]
        b = fail[i]
        if not (math.isfinite(a) and math.isfinite(b)) or a < 0.0 or b < 0.0:
            return False
        if abs(a - np.rint(a)) > 1e-3 or abs(b - np.rint(b)) > 1e-3:
            return False
    for i in range(n):
        t = succ[i] + fail[i]
        trials[i] = t
        y[i] = succ[i] / t if t > 0 else 0.0
    return True


@_jit
def _affine_row(nth, beta0, R, src, dst, z):  # pragma: no cover - compiled
    """dst = (src[:nth], beta0 + R src[nth:]); ``dst`` may be ``src`` (``z``: room for p)."""
    p = beta0.shape[0]
    for k in range(p):
        z[k] = src[nth + k]
    for k in range(nth):
        dst[k] = src[k]
    for j in range(p):
        acc = beta0[j]
        for k in range(p):
            acc += R[j, k] * z[k]
        dst[nth + j] = acc


@_jit
def affine_back(nth, beta0, R, final, path, grad, out):  # pragma: no cover - compiled
    """A search in (theta, z) back in (theta, beta), beta = beta0 + R z with R upper
    triangular: ``final`` into ``out``, each row of ``path`` in place, and the gradient
    ``grad`` in place (d/dbeta = R^-T d/dz, by forward substitution). False (the gradient
    left as it is) where R has a zero diagonal entry."""
    p = beta0.shape[0]
    z = np.empty(p)
    _affine_row(nth, beta0, R, final, out, z)
    for r in range(path.shape[0]):
        _affine_row(nth, beta0, R, path[r], path[r], z)
    for j in range(p):
        if R[j, j] == 0.0:
            return False
    if grad.shape[0] == nth + p:
        for j in range(p):
            acc = grad[nth + j]
            for k in range(j):
                acc -= R[k, j] * grad[nth + k]
            grad[nth + j] = acc / R[j, j]
    return True


@_jit
def hessian_parts(H, nth):  # pragma: no cover - compiled
    """What the checks of a finite-difference Hessian H at an optimum need, in one call: whether
    H is finite, the eigenvalues of its symmetric part (ascending), whether H (its lower
    triangle) has a Cholesky factor, and the covariance of the parameters after the first
    ``nth`` from H: (H^-1 + H^-T)[nth:, nth:] (the deviance's Hessian is twice the negative
    log-likelihood's), with whether H could be inverted (LU with partial pivoting) and whether
    that block's eigenvalues are all positive. Returns (finite, ev, chol_ok, inv_ok, V, V_pd)."""
    n = H.shape[0]
    k = n - nth
    V = np.zeros((k, k))
    for i in range(n):
        for j in range(n):
            if not math.isfinite(H[i, j]):
                return False, np.zeros(0), False, False, V, False
    Hs = np.empty((n, n))
    for i in range(n):
        for j in range(n):
            Hs[i, j] = 0.5 * (H[i, j] + H[j, i])
    ev = np.empty(n)
    symmetric_eigen(Hs, ev, np.empty((n, n)))
    chol_ok = _small_cholesky(H.copy(), n)  # of H's lower triangle
    # H^-1 by Gauss-Jordan elimination with partial pivoting
    A = H.copy()
    Inv = np.eye(n)
    for c in range(n):
        piv = c
        big = abs(A[c, c])
        for r in range(c + 1, n):
            if abs(A[r, c]) > big:
                big = abs(A[r, c])
                piv = r
        if big == 0.0:
            return True, ev, chol_ok, False, V, False
        if piv != c:
            for j in range(n):
                A[c, j], A[piv, j] = A[piv, j], A[c, j]
                Inv[c, j], Inv[piv, j] = Inv[piv, j], Inv[c, j]
        d = A[c, c]
        for j in range(n):
            A[c, j] /= d
            Inv[c, j] /= d
        for r in range(n):
            if r != c and A[r, c] != 0.0:
                f = A[r, c]
                for j in range(n):
                    A[r, j] -= f * A[c, j]
                    Inv[r, j] -= f * Inv[c, j]
    for i in range(k):
        for j in range(k):
            V[i, j] = Inv[nth + i, nth + j] + Inv[nth + j, nth + i]
    for i in range(k * k):
        if not math.isfinite(V.ravel()[i]):
            return True, ev, chol_ok, False, V, False
    V_pd = True
    if k:
        evV = np.empty(k)
        symmetric_eigen(V, evV, np.empty((k, k)))
        V_pd = evV[0] > 0.0
    return True, ev, chol_ok, True, V, V_pd
