r"""Compiled profiled objective of a linear mixed model, and its exact gradient.

The structure covered is the one most models have once the term with the most levels is
eliminated first: the first term's blocks of :math:`\Lambda'Z'Z\Lambda + I` are diagonal
(:math:`S_1 \times S_1` per level); everything else -- the other terms, X and y -- forms a dense
"rest" of size m. With :math:`C_l` the rest's rows coupled to level l of the first term,

.. math::

    L_{11,l} L_{11,l}' = T_1' A_{11,l} T_1 + I, \qquad
    c_l = (P' A_{21,l}) T_1 L_{11,l}^{-T}, \qquad
    L_{22} L_{22}' = P'A_{22}P + I_u - \sum_l c_l c_l',

where P applies the other terms' templates. The last diagonal entry of :math:`L_{22}` is r, and
the profiled deviances follow as in :mod:`mixedmodels.linalg.cholesky`. Nothing here touches
the rows of the data.

**Gradient.** With :math:`\mathcal{A} = P'GP + D` (G the cross-products of [Z X], D the identity
on the random effects) and :math:`\Sigma` the inverse of its Z block (ML) or of its (Z, X) block
(REML), and :math:`\hat u, \hat\beta` the solution,

.. math::

    \frac{\partial}{\partial\theta_{k,rs}} \log|\mathcal{A}| =
        2 \sum_{\text{levels } l} \sum_i \Sigma_{(k,l,s), i} (P'G)_{i, (k,l,r)}, \qquad
    \frac{\partial r^2}{\partial\theta_{k,rs}} = -2 \sum_l \rho_{(k,l,r)} \hat u_{(k,l,s)},

with :math:`\rho = Z'(y - X\hat\beta - Z\Lambda\hat u)` (from the cross-products). The entries of
:math:`\Sigma` needed are those on the pattern of G: the dense inverse of :math:`L_{22}` and, per
level of the first term, :math:`\Sigma_{21} = -\Sigma_{22} c_l L_{11,l}^{-1}` on its pattern.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np


def _jit(func):
    return nb.njit(cache=True, nogil=True)(func)


# Kernels call one another with plain (non-literal) flags, np.bool_(True) rather than True:
# numba compiles a callee once more for each literal argument it is called with. And they
# copy arrays entry by entry rather than by slice assignment (`_copy_2d`), whose shape check
# formats its error message with numba's string functions, compiled into every caller.


_LOG_2PI = math.log(2.0 * math.pi)


@_jit
def criterion(ok, ldz, ldx, r2, reml, n, p, slw):  # pragma: no cover - compiled
    """The profiled REML criterion or ML deviance from the factor's parts (log|L_Z|^2,
    log|L_X|^2, r^2), n observations, p fixed effects and slw = sum of log prior weights;
    infinite when the factorization failed or r^2 is not positive."""
    if not ok or not r2 > 0.0:
        return math.inf
    if reml:
        nmp = n - p
        return ldz + ldx + nmp * (1.0 + _LOG_2PI + math.log(r2 / nmp)) - slw
    return ldz + n * (1.0 + _LOG_2PI + math.log(r2 / n)) - slw


@_jit
def templates(theta, sizes, toff):  # pragma: no cover - compiled
    """(K, Smax, Smax) lower-triangular templates from theta (lme4's column-major order)."""
    K = sizes.shape[0]
    smax = 1
    for k in range(K):
        smax = max(smax, sizes[k])
    T = np.zeros((K, smax, smax))
    for k in range(K):
        s = sizes[k]
        t = toff[k]
        for c in range(s):
            for r in range(c, s):
                T[k, r, c] = theta[t]
                t += 1
    return T


@_jit
def _small_cholesky(M, s):  # pragma: no cover - compiled
    """In-place lower Cholesky of the leading s x s block of M; False if not positive definite."""
    for j in range(s):
        d = M[j, j]
        for t in range(j):
            d -= M[j, t] * M[j, t]
        if not d > 0.0:
            return False
        d = math.sqrt(d)
        M[j, j] = d
        for i in range(j + 1, s):
            v = M[i, j]
            for t in range(j):
                v -= M[i, t] * M[j, t]
            M[i, j] = v / d
        for i in range(j):
            M[i, j] = 0.0
    return True


@_jit
def _copy_2d(dst, src):  # pragma: no cover - compiled
    """dst[i, j] = src[i, j] entry by entry (the shapes are the caller's to match). Used instead
    of slice assignment, whose compiled shape check formats its error message with numba's
    string functions: seconds of compilation in every kernel linked to it."""
    for i in range(src.shape[0]):
        for j in range(src.shape[1]):
            dst[i, j] = src[i, j]


@_jit
def symmetric_eigen(A, vals, vecs):  # pragma: no cover - compiled
    """Eigenvalues (ascending, into ``vals``) and orthonormal eigenvectors (the columns of
    ``vecs``) of the symmetric n x n matrix A, by cyclic Jacobi rotations: for the small
    matrices of the start and the Hessian checks, accurate to a few ulps of the largest
    eigenvalue, and plain loops (LAPACK's eigh would be compiled and linked into each caller)."""
    n = A.shape[0]
    W = np.empty((n, n))
    total = 0.0
    for i in range(n):
        for j in range(n):
            W[i, j] = A[i, j]
            vecs[i, j] = 1.0 if i == j else 0.0
            total += A[i, j] * A[i, j]
    for _sweep in range(60):
        off = 0.0
        for i in range(n):
            for j in range(i + 1, n):
                off += W[i, j] * W[i, j]
        if not off > 1e-32 * total:
            break
        for p in range(n - 1):
            for q in range(p + 1, n):
                apq = W[p, q]
                if apq == 0.0:
                    continue
                theta = (W[q, q] - W[p, p]) / (2.0 * apq)
                if abs(theta) > 1e150:
                    t = 0.5 / theta
                else:
                    t = 1.0 / (abs(theta) + math.sqrt(theta * theta + 1.0))
                    if theta < 0.0:
                        t = -t
                c = 1.0 / math.sqrt(t * t + 1.0)
                sn = t * c
                for k in range(n):  # columns p, q of W J
                    wkp = W[k, p]
                    wkq = W[k, q]
                    W[k, p] = c * wkp - sn * wkq
                    W[k, q] = sn * wkp + c * wkq
                for k in range(n):  # rows p, q of J' W J
                    wpk = W[p, k]
                    wqk = W[q, k]
                    W[p, k] = c * wpk - sn * wqk
                    W[q, k] = sn * wpk + c * wqk
                W[p, q] = 0.0
                W[q, p] = 0.0
                for k in range(n):
                    vkp = vecs[k, p]
                    vkq = vecs[k, q]
                    vecs[k, p] = c * vkp - sn * vkq
                    vecs[k, q] = sn * vkp + c * vkq
    for i in range(n):
        vals[i] = W[i, i]
    for i in range(n):  # ascending, the vectors with their values
        m = i
        for j in range(i + 1, n):
            if vals[j] < vals[m]:
                m = j
        if m != i:
            vals[i], vals[m] = vals[m], vals[i]
            for k in range(n):
                vecs[k, i], vecs[k, m] = vecs[k, m], vecs[k, i]


@_jit
def _symmetric_pinv(M, out):  # pragma: no cover - compiled
    """The pseudo-inverse of the symmetric matrix M into ``out``, with numpy's ``pinv`` rule:
    eigenvalues within 1e-15 of the largest in absolute value count as zero."""
    n = M.shape[0]
    vals = np.empty(n)
    vecs = np.empty((n, n))
    symmetric_eigen(M, vals, vecs)
    big = 0.0
    for i in range(n):
        big = max(big, abs(vals[i]))
    for i in range(n):
        vals[i] = 1.0 / vals[i] if abs(vals[i]) > 1e-15 * big else 0.0
    for i in range(n):
        for j in range(n):
            acc = 0.0
            for k in range(n):
                acc += vecs[i, k] * vals[k] * vecs[j, k]
            out[i, j] = acc


@_jit
def _cholesky_solve(L, x, m):  # pragma: no cover - compiled
    """x <- (L L')^-1 x in place, L lower triangular (its leading m x m block)."""
    for a in range(m):
        acc = x[a]
        for b in range(a):
            acc -= L[a, b] * x[b]
        x[a] = acc / L[a, a]
    for a in range(m - 1, -1, -1):
        acc = x[a]
        for b in range(a + 1, m):
            acc -= L[b, a] * x[b]
        x[a] = acc / L[a, a]


@_jit
def level_moments(G, g):  # pragma: no cover - compiled
    """For a vector-valued term with per-level cross-products G (levels, S, S) and g (levels,
    S) = Z_l'W r: the means over levels of b_l b_l' and of G_l^-1 (b_l = G_l^-1 g_l), and
    sum_l G_l (the moment start of :meth:`LinearMixedModel.start_theta
    <mixedmodels.lmm.LinearMixedModel.start_theta>`). A level whose G_l is not numerically
    positive definite (it does not identify every effect) uses the pseudo-inverse."""
    nl = G.shape[0]
    s = G.shape[1]
    spread = np.zeros((s, s))
    sampling = np.zeros((s, s))
    gram = np.zeros((s, s))
    Lf = np.empty((s, s))
    Gi = np.empty((s, s))
    col = np.empty(s)
    for lv in range(nl):
        M = G[lv]
        for i in range(s):
            for j in range(s):
                Lf[i, j] = M[i, j]
        pd = _small_cholesky(Lf, s)
        for j in range(s):
            if pd and not Lf[j, j] * Lf[j, j] > 1e-12 * M[j, j]:
                pd = False
        if pd:
            for c in range(s):  # Gi = (Lf Lf')^-1, column by column
                for i in range(s):
                    col[i] = 1.0 if i == c else 0.0
                _cholesky_solve(Lf, col, s)
                for i in range(s):
                    Gi[i, c] = col[i]
        else:
            _symmetric_pinv(M, Gi)
        for i in range(s):
            acc = 0.0
            for j in range(s):
                acc += Gi[i, j] * g[lv, j]
            col[i] = acc
        for i in range(s):
            for j in range(s):
                spread[i, j] += col[i] * col[j]
                sampling[i, j] += Gi[i, j]
                gram[i, j] += M[i, j]
    return spread / nl, sampling / nl, gram


@_jit
def _scale_rest(A22, T, rterm, rlev, roff, rsize, m_u):  # pragma: no cover - compiled
    """E = P' A22 P + I_u for the rest (P: the templates of the rest's terms, identity on X, y)."""
    m = A22.shape[0]
    nblk = rterm.shape[0]
    E = _right_scale(A22, T, rterm, roff, rsize, m)
    for g in range(nblk):  # left-multiply row groups by T'
        k = rterm[g]
        s = rsize[g]
        r0 = roff[g]
        if s == 1:
            t = T[k, 0, 0]
            for b in range(m):
                E[r0, b] *= t
        elif s >= _DENSE_TEMPLATE:  # a matrix product (the group's rows are contiguous)
            Tt = np.ascontiguousarray(T[k, :s, :s].T)
            _copy_2d(E[r0 : r0 + s], np.dot(Tt, np.ascontiguousarray(E[r0 : r0 + s])))
        else:  # row by row, the columns innermost (rows of E are contiguous)
            tmp = np.zeros((s, m))
            for r in range(s):
                for a in range(r, s):
                    t = T[k, a, r]
                    for b in range(m):
                        tmp[r, b] += t * E[r0 + a, b]
            for r in range(s):
                for b in range(m):
                    E[r0 + r, b] = tmp[r, b]
    for a in range(m_u):
        E[a, a] += 1.0
    _ = rlev
    return E


@_jit
def _scaled_column(cval, cptr, crow, lv, T, rowterm, rowgrp, S1, out, tmp):  # pragma: no cover
    """(P' A21_l) T_1 for level lv of the first term into the first nnz_l rows of ``out``
    (``tmp``: S1 scratch); returns nnz_l."""
    start = cptr[lv]
    nnz = cptr[lv + 1] - start
    _scaled_rows_into(cval, start, nnz, T, rowterm, rowgrp, S1, out)
    # right-multiply by T_1 (term 0)
    if S1 == 1:
        t = T[0, 0, 0]
        for i in range(nnz):
            out[i, 0] *= t
    else:
        for i in range(nnz):
            for c in range(S1):
                acc = 0.0
                for b in range(c, S1):
                    acc += out[i, b] * T[0, b, c]
                tmp[c] = acc
            for c in range(S1):
                out[i, c] = tmp[c]
    return nnz


@_jit
def build(
    theta, sizes, toff, A11, cval, cptr, crow, rowterm, rowgrp, A22, rterm, rlev, roff, rsize,
    m_u, heavy, plev, pbeg, pend,
):  # pragma: no cover - compiled  # fmt: skip
    """The first term's factor and the Schur complement of the rest.

    Returns (ok, L11 (l1, S1, S1), C (nnz, S1) the scaled coupling, E (m, m), P (m, nh S1));
    E's lower triangle is the Schur complement except for the heavy levels, whose scaled
    coupling columns are P: the caller subtracts P P' (BLAS ``syrk``) and factors E in place
    (LAPACK).
    """
    T = templates(theta, sizes, toff)
    l1 = A11.shape[0]
    S1 = A11.shape[1]
    L11 = np.empty((l1, S1, S1))
    C = np.empty(cval.shape)
    ok = True
    M = np.empty((S1, S1))
    maxnnz = 0
    for lv in range(l1):
        maxnnz = max(maxnnz, cptr[lv + 1] - cptr[lv])
    col = np.empty((maxnnz, S1))  # scratch, reused across levels
    tmp = np.empty(S1)
    for lv in range(l1):
        # T1' A11 T1 + I
        for r in range(S1):
            for c in range(S1):
                acc = 0.0
                for a in range(r, S1):
                    for b in range(c, S1):
                        acc += T[0, a, r] * A11[lv, a, b] * T[0, b, c]
                M[r, c] = acc
            M[r, r] += 1.0
        if not _small_cholesky(M, S1):
            ok = False
            break
        for r in range(S1):
            for c in range(S1):
                L11[lv, r, c] = M[r, c]
        start = cptr[lv]
        nnz = cptr[lv + 1] - start
        if S1 >= 2 and nnz * S1 >= _DENSE_LEVEL:
            _dense_coupling(lv, start, nnz, T, L11, cval, rowterm, rowgrp, C, col)
            continue
        nnz = _scaled_column(cval, cptr, crow, lv, T, rowterm, rowgrp, S1, col, tmp)
        # col L11^-T: solve X L11' = col row by row
        for i in range(nnz):
            for c in range(S1):
                v = col[i, c]
                for t in range(c):
                    v -= C[start + i, t] * M[c, t]
                C[start + i, c] = v / M[c, c]
    m = A22.shape[0]
    nh = heavy.shape[0]
    if not ok:
        return False, L11, C, np.zeros((m, m)), np.zeros((m, nh * S1))
    E = _scale_rest(A22, T, rterm, rlev, roff, rsize, m_u)
    # E -= sum_l c_l c_l': the heavy levels' columns go to P (one BLAS product by the caller)
    P = np.zeros((m, nh * S1))
    for h in range(nh):
        lv = heavy[h]
        for t in range(cptr[lv], cptr[lv + 1]):
            for c in range(S1):
                P[crow[t], h * S1 + c] = C[t, c]
    _schur_light(E, C, cptr, crow, plev, pbeg, pend)
    return True, L11, C, E, P


@_jit
def _dense_coupling(lv, start, nnz, T, L11, cval, rowterm, rowgrp, C, col):  # pragma: no cover
    """C_l = (P'A21_l)(T1 L11^-T) for level lv as one matrix product: for a level of a
    vector-valued first term coupled to much of the rest (kb07-like maximal models), which
    the entry-by-entry loops of :func:`build` run far slower than (``col``: scratch)."""
    S1 = L11.shape[1]
    _scaled_rows_into(cval, start, nnz, T, rowterm, rowgrp, S1, col)
    Li = np.empty((S1, S1))
    _level_factor_inverse(L11, lv, Li)
    T1 = np.ascontiguousarray(T[0, :S1, :S1])
    _copy_2d(C[start : start + nnz], np.dot(col[:nnz], np.dot(T1, Li.T)))


@_jit
def _schur_light(E, C, cptr, crow, plev, pbeg, pend):  # pragma: no cover - compiled
    """E[a, b] -= sum_l (c_l c_l')[a, b] for b <= a over the levels l that are not heavy.

    The coupling entries are visited by blocks of rows of E and, within a block, level by level
    (``plev``, ``pbeg``, ``pend``: for each (block, level) pair, the level and the range of its
    entries in the block; see :class:`~mixedmodels.linalg.fast_lmm.FastObjective`): the rows
    of a block stay in cache while every level touching them updates them, and the levels'
    entries are read in the order they are stored. Each row receives the levels' updates in
    increasing order of level, as row by row.
    """
    S1 = C.shape[1]
    if S1 == 1:  # scalar first term: the common case, without the inner loop
        c1 = np.ascontiguousarray(C[:, 0])
        for k in range(plev.shape[0]):
            s0 = cptr[plev[k]]
            for t in range(pbeg[k], pend[k]):
                row = E[crow[t]]
                ct = c1[t]
                for t2 in range(s0, t + 1):
                    row[crow[t2]] -= ct * c1[t2]
        return
    for k in range(plev.shape[0]):
        s0 = cptr[plev[k]]
        for t in range(pbeg[k], pend[k]):
            row = E[crow[t]]
            for t2 in range(s0, t + 1):  # the level's rows up to this one (sorted)
                acc = 0.0
                for c in range(S1):
                    acc += C[t, c] * C[t2, c]
                row[crow[t2]] -= acc


@_jit
def _sigma_coupling(Sig, C, cptr, crow, plev, pbeg, pend, ma, V):  # pragma: no cover
    """V[t] = sum_{t2 of level(t), crow[t2] < ma} Sig[crow[t], crow[t2]] C[t2] for the active
    coupling entries t (crow[t] < ma) of the levels that are not heavy; by blocks of rows of
    Sig and level by level within a block, as :func:`_schur_light`."""
    S1 = C.shape[1]
    if S1 == 1:
        c1 = np.ascontiguousarray(C[:, 0])
        for k in range(plev.shape[0]):
            lv = plev[k]
            for t in range(pbeg[k], pend[k]):
                a = crow[t]
                if a >= ma:  # the level's active rows come first
                    break
                srow = Sig[a]
                acc = 0.0
                for t2 in range(cptr[lv], cptr[lv + 1]):
                    b = crow[t2]
                    if b >= ma:
                        break
                    acc += srow[b] * c1[t2]
                V[t, 0] = acc
        return
    for k in range(plev.shape[0]):
        lv = plev[k]
        for t in range(pbeg[k], pend[k]):
            a = crow[t]
            if a >= ma:
                break
            srow = Sig[a]
            for c in range(S1):
                V[t, c] = 0.0
            for t2 in range(cptr[lv], cptr[lv + 1]):
                b = crow[t2]
                if b >= ma:  # the active rows come first
                    break
                sv = srow[b]
                for c in range(S1):
                    V[t, c] += sv * C[t2, c]


@_jit
def symmetrize_lower(S):  # pragma: no cover - compiled
    """Copy the lower triangle of a square C-ordered array onto its upper triangle."""
    m = S.shape[0]
    B = 64
    for i0 in range(0, m, B):  # blocked, to read the columns in cache-sized tiles
        for j0 in range(0, i0 + 1, B):
            for i in range(i0, min(i0 + B, m)):
                for j in range(j0, min(j0 + B, i)):
                    S[j, i] = S[i, j]


@_jit
def scalar_information(sig11, Sig, ma, rterm, roff, toff, out):  # pragma: no cover - compiled
    """Expected information of each scalar term's theta, in log theta, into ``out``:
    4 sum_i r_i^2 over the term's levels, with r_i = 1 - Sigma_ii the level's shrinkage factor
    (Sigma as in :func:`gradient`; every term scalar). For a one-way layout, twice the Fisher
    information of log sigma_b^2, in units of log theta: the criterion's curvature in log
    theta near its minimum, where the profiling over sigma changes little. The first term's
    Sigma_ii are ``sig11`` (from :func:`gradient`), the rest terms' on Sigma22's diagonal."""
    for k in range(out.shape[0]):
        out[k] = 0.0
    t0 = toff[0]
    for lv in range(sig11.shape[0]):
        r = 1.0 - sig11[lv, 0, 0]
        out[t0] += 4.0 * r * r
    for g in range(rterm.shape[0]):
        a = roff[g]
        if a < ma:
            r = 1.0 - Sig[a, a]
            out[toff[rterm[g]]] += 4.0 * r * r


@_jit
def objective_parts(L11, L22, m_u, p):  # pragma: no cover - compiled
    """(log|L_Z|^2, log|L_X|^2, r^2) from the factor."""
    ldz = 0.0
    for lv in range(L11.shape[0]):
        for c in range(L11.shape[1]):
            ldz += 2.0 * math.log(L11[lv, c, c])
    for a in range(m_u):
        ldz += 2.0 * math.log(L22[a, a])
    ldx = 0.0
    for a in range(m_u, m_u + p):
        ldx += 2.0 * math.log(L22[a, a])
    r = L22[m_u + p, m_u + p]
    return ldz, ldx, r * r


@_jit
def solution(L11, C, cptr, crow, L22, m_u, p):  # pragma: no cover - compiled
    """The conditional estimates from the factor: (w, u1) with w = (u of the rest, beta) (the
    spherical modes of the terms after the first, then the fixed effects) and u1 (l1, S1)
    those of the first term, from the y row of L by back substitution."""
    l1 = L11.shape[0]
    S1 = L11.shape[1]
    m = L22.shape[0]
    iy = m_u + p  # the y row
    w2 = np.empty(m - 1)
    for a in range(m - 1):
        w2[a] = L22[iy, a]
    for b in range(m - 2, -1, -1):  # L22a' w2 = l_y2, by rows of L22 (contiguous)
        w2[b] /= L22[b, b]
        wb = w2[b]
        row = L22[b]
        for a in range(b):
            w2[a] -= row[a] * wb
    u1 = np.empty((l1, S1))
    rhs = np.empty(S1)  # scratch, reused across levels
    for lv in range(l1):
        for c in range(S1):
            rhs[c] = 0.0
        start = cptr[lv]
        end = cptr[lv + 1]
        # y row of L in this level's columns is the C entry at row iy (last of the pattern)
        for t in range(start, end):
            if crow[t] == iy:
                for c in range(S1):
                    rhs[c] += C[t, c]
            elif crow[t] < m - 1:
                for c in range(S1):
                    rhs[c] -= C[t, c] * w2[crow[t]]
        for c in range(S1 - 1, -1, -1):  # L11' u = rhs
            acc = rhs[c]
            for b in range(c + 1, S1):
                acc -= L11[lv, b, c] * u1[lv, b]
            u1[lv, c] = acc / L11[lv, c, c]
    return w2, u1


#: a level of a vector-valued first term coupled to at least this many entries of the rest
#: (rows x effects) has its share of the gradient computed with matrix products (BLAS)
_DENSE_LEVEL = 128
#: a rest term with at least this many effects per level is scaled by one matrix product
_DENSE_TEMPLATE = 4


@_jit
def _level_factor_inverse(L11, lv, Li):  # pragma: no cover - compiled
    """The inverse of level lv's lower-triangular factor L11[lv] into ``Li`` (S1 x S1)."""
    S1 = Li.shape[0]
    for c in range(S1):
        for a in range(S1):
            Li[a, c] = 0.0
        Li[c, c] = 1.0 / L11[lv, c, c]
        for a in range(c + 1, S1):
            acc = 0.0
            for bq in range(c, a):
                acc -= L11[lv, a, bq] * Li[bq, c]
            Li[a, c] = acc / L11[lv, a, a]


@_jit
def _coupling_traces(S21, W, start, na, rowterm, rowgrp, toff, tr):  # pragma: no cover
    """The rest terms' template entries through the coupling of one level of the first term:
    for each rest-term level among the level's first ``na`` coupling rows (a group of s rows
    (k, l', 0..s-1)), sum_b Sigma21[(k,l',s'), b] W[(k,l',r), b] into ``tr`` at theta_(k,r,s'),
    with W = A21_l T1 (the rows' couplings times the first term's template)."""
    S1 = W.shape[1]
    i = 0
    while i < na:
        k = rowterm[start + i]
        if k < 0:  # an X or y row
            i += 1
            continue
        s_k = rowgrp[start + i]
        t0 = toff[k]
        for cc in range(s_k):
            for rr in range(cc, s_k):
                acc = 0.0
                for bq in range(S1):
                    acc += S21[i + cc, bq] * W[i + rr, bq]
                tr[t0] += acc
                t0 += 1
        i += s_k


@_jit
def _level_trace_dense(
    lv, start, na, T, A11, L11, C, cval, rowterm, rowgrp, toff, V, PA, tr
):  # pragma: no cover - compiled  # fmt: skip
    """The trace terms of level lv of the first term (what :func:`gradient`'s loop over levels
    adds for it), by matrix products: for a vector-valued term whose levels are coupled to
    much of the rest (kb07-like maximal models) the entry-by-entry loops run far below the
    machine's speed. ``V`` holds Sigma22 c_l in its first ``na`` rows (the active ones).
    Returns the level's Sigma11."""
    S1 = A11.shape[1]
    Li = np.zeros((S1, S1))
    _level_factor_inverse(L11, lv, Li)
    Va = V[:na]
    S21 = -np.dot(Va, Li)  # Sigma21 rows: -V L11^-1
    Minner = np.dot(C[start : start + na].T, Va)  # I + c' Sigma22 c
    for c in range(S1):
        Minner[c, c] += 1.0
    S11 = np.dot(Li.T, np.dot(Minner, Li))  # Sigma11_l
    T1 = np.ascontiguousarray(T[0, :S1, :S1])
    # first-term template entries: (Sigma11 T1'A11_l + Sigma21' (P'A21_l))[s, r]
    X = np.dot(S11, np.dot(T1.T, np.ascontiguousarray(A11[lv])))
    _scaled_rows_into(cval, start, na, T, rowterm, rowgrp, S1, PA)
    X += np.dot(S21.T, PA[:na])
    t0 = toff[0]
    for cc in range(S1):
        for rr in range(cc, S1):
            tr[t0] += X[cc, rr]
            t0 += 1
    _coupling_traces(S21, np.dot(cval[start : start + na], T1), start, na, rowterm, rowgrp,
                     toff, tr)  # fmt: skip
    return S11


@_jit
def gradient(
    theta, sizes, toff, A11, cval, cptr, crow, rowterm, rowgrp, A22, rterm, rlev, roff, rsize,
    m_u, p, reml, n, L11, C, L22, Sig, heavy, plev, pbeg, pend, grad, sig11, diagonal,
):  # pragma: no cover - compiled  # fmt: skip
    """The gradient of the profiled deviance (see the module docstring) into ``grad``;
    ``Sig`` is the inverse of the active leading block of L22 L22' (computed by LAPACK).
    ``sig11`` (levels, S1, S1) receives the first term's diagonal blocks of Sigma, unless it
    is empty. With ``diagonal``, where every term is scalar and no theta is near zero, the
    trace terms take the diagonal of Sigma only (:func:`_scalar_traces`)."""
    T = templates(theta, sizes, toff)
    l1 = A11.shape[0]
    S1 = A11.shape[1]
    m = L22.shape[0]
    K = sizes.shape[0]
    ntheta = grad.shape[0]
    ma = m_u + p if reml else m_u  # the active part of the rest
    iy = m_u + p  # the y row
    w2, u1 = solution(L11, C, cptr, crow, L22, m_u, p)
    r2 = L22[iy, iy] * L22[iy, iy]
    # b = Lambda u on both parts
    b1 = np.empty((l1, S1))
    for lv in range(l1):
        for r in range(S1):
            acc = 0.0
            for c in range(r + 1):
                acc += T[0, r, c] * u1[lv, c]
            b1[lv, r] = acc
    bw = np.empty(m)  # (Lambda u)_rest, beta, -1 for y
    for a in range(m - 1):
        bw[a] = w2[a]
    for g in range(rterm.shape[0]):
        k = rterm[g]
        s = rsize[g]
        r0 = roff[g]
        for r in range(s):
            acc = 0.0
            for c in range(r + 1):
                acc += T[k, r, c] * w2[r0 + c]
            bw[r0 + r] = acc
    bw[iy] = -1.0
    # -- rho = Z'(y - X beta - Z b): minus A times (b, beta, -1), Z rows -------------------
    rho1 = np.zeros((l1, S1))
    rho2 = np.zeros(m_u)
    for lv in range(l1):
        for r in range(S1):
            acc = 0.0
            for c in range(S1):
                acc -= A11[lv, r, c] * b1[lv, c]
            rho1[lv, r] = acc
        for t in range(cptr[lv], cptr[lv + 1]):
            a = crow[t]
            for r in range(S1):
                rho1[lv, r] -= cval[t, r] * bw[a]
            if a < m_u:
                for c in range(S1):
                    rho2[a] -= cval[t, c] * b1[lv, c]
    for a in range(m_u):
        acc = 0.0
        for b in range(m):
            acc -= A22[a, b] * bw[b]
        rho2[a] += acc
    # -- r^2 term ------------------------------------------------------------------------
    dr2 = np.zeros(ntheta)
    t0 = toff[0]
    for cc in range(S1):
        for rr in range(cc, S1):
            acc = 0.0
            for lv in range(l1):
                acc += rho1[lv, rr] * u1[lv, cc]
            dr2[t0] = -2.0 * acc
            t0 += 1
    for g in range(rterm.shape[0]):
        k = rterm[g]
        s_k = rsize[g]
        r0 = roff[g]
        t0 = toff[k]
        for cc in range(s_k):
            for rr in range(cc, s_k):
                dr2[t0] += -2.0 * rho2[r0 + rr] * w2[r0 + cc]
                t0 += 1
    dof = n - p if reml else n
    if diagonal and _scalar_interior(theta, sizes, toff):
        tr = _scalar_traces(theta, toff, cptr, crow, rterm, roff, ma, L11, C, Sig, heavy, plev,
                            pbeg, pend, sig11)  # fmt: skip
        for j in range(ntheta):
            grad[j] = 2.0 * tr[j] + dof / r2 * dr2[j]
        return
    # -- trace terms ---------------------------------------------------------------------
    tr = np.zeros(ntheta)
    # rest terms: sum over their columns of (Sigma22 B22)[(k,l,s), (k,l,r)], B22 = P' A22
    # (P'A22)[a, j] = (A22 P)[j, a]: rows j of BT are the columns of P'A22
    BT = _right_scale(A22, T, rterm, roff, rsize, ma)
    for g in range(rterm.shape[0]):
        k = rterm[g]
        s_k = rsize[g]
        r0 = roff[g]
        if r0 >= ma:
            continue
        t0 = toff[k]
        for cc in range(s_k):
            for rr in range(cc, s_k):
                acc = 0.0
                srow = Sig[r0 + cc]
                brow = BT[r0 + rr]
                for a in range(ma):
                    acc += srow[a] * brow[a]
                tr[t0] += acc
                t0 += 1
    # first term and the couplings through C (buffers reused across levels)
    maxnnz = 0
    for lv in range(l1):
        maxnnz = max(maxnnz, cptr[lv + 1] - cptr[lv])
    V = np.zeros((maxnnz, S1))
    S21 = np.zeros((maxnnz, S1))
    PA = np.zeros((maxnnz, S1))
    Minner = np.zeros((S1, S1))
    Li = np.zeros((S1, S1))
    S11 = np.zeros((S1, S1))
    TA = np.zeros((S1, S1))
    tmp = np.zeros((S1, S1))
    W = np.zeros((maxnnz, S1))
    # heavy levels (long coupling columns): Sigma22 c_l for all of them in one product
    nh = heavy.shape[0]
    hpos = np.full(l1, -1)
    Vall = np.zeros(C.shape)  # Sigma22 c_l for the other levels, by blocks of rows of Sigma22
    _sigma_coupling(Sig, C, cptr, crow, plev, pbeg, pend, ma, Vall)
    VH = np.zeros((0, 0))
    if nh > 0 and ma > 0:
        Pa = np.zeros((ma, nh * S1))
        for h in range(nh):
            lv = heavy[h]
            hpos[lv] = h
            for t in range(cptr[lv], cptr[lv + 1]):
                if crow[t] < ma:
                    for c in range(S1):
                        Pa[crow[t], h * S1 + c] = C[t, c]
        VH = np.dot(Sig, Pa)
    for lv in range(l1):
        start = cptr[lv]
        end = cptr[lv + 1]
        nnz = end - start
        # V = Sigma22[pat, pat] c_l (active rows only); Sigma21 = -V L11^-1
        na = 0  # active rows come first in the pattern (X and y rows last)
        while na < nnz and crow[start + na] < ma:
            na += 1
        for i in range(nnz):
            for c in range(S1):
                V[i, c] = 0.0
        if hpos[lv] >= 0:
            h = hpos[lv]
            for i in range(na):
                a = crow[start + i]
                for c in range(S1):
                    V[i, c] = VH[a, h * S1 + c]
        else:
            for i in range(na):
                for c in range(S1):
                    V[i, c] = Vall[start + i, c]
        if S1 >= 2 and na * S1 >= _DENSE_LEVEL:
            S11d = _level_trace_dense(lv, start, na, T, A11, L11, C, cval, rowterm, rowgrp,
                                      toff, V, PA, tr)  # fmt: skip
            if sig11.shape[0] > 0:
                _copy_2d(sig11[lv], S11d)
            continue
        # Sigma21 rows: S21[i, :] = -V[i, :] L11^-1  (solve x L11 = -V)
        for i in range(nnz):
            for c in range(S1 - 1, -1, -1):
                v = -V[i, c]
                for t in range(c + 1, S1):
                    v -= S21[i, t] * L11[lv, t, c]
                S21[i, c] = v / L11[lv, c, c]
        # Sigma11_l = L11^-T (I + c' Sigma22 c) L11^-1
        for c1 in range(S1):
            for c2 in range(S1):
                Minner[c1, c2] = 1.0 if c1 == c2 else 0.0
        for i in range(na):
            for c1 in range(S1):
                ci = C[start + i, c1]
                for c2 in range(S1):
                    Minner[c1, c2] += ci * V[i, c2]
        _level_factor_inverse(L11, lv, Li)
        for c1 in range(S1):  # tmp = Minner Li
            for c2 in range(S1):
                acc = 0.0
                for a in range(c2, S1):
                    acc += Minner[c1, a] * Li[a, c2]
                tmp[c1, c2] = acc
        for c1 in range(S1):  # S11 = Li' tmp
            for c2 in range(S1):
                acc = 0.0
                for a in range(c1, S1):
                    acc += Li[a, c1] * tmp[a, c2]
                S11[c1, c2] = acc
        if sig11.shape[0] > 0:
            _copy_2d(sig11[lv], S11)
        # first-term template entries: (Sigma11 T1'A11)[s, r] + sum_i S21[i, s] (P'A21)[i, r]
        for r in range(S1):  # T1' A11_l
            for c in range(S1):
                acc = 0.0
                for a in range(r, S1):
                    acc += T[0, a, r] * A11[lv, a, c]
                TA[r, c] = acc
        _scaled_rows_into(cval, start, na, T, rowterm, rowgrp, S1, PA)
        t0 = toff[0]
        for cc in range(S1):
            for rr in range(cc, S1):
                acc = 0.0
                for a in range(S1):
                    acc += S11[cc, a] * TA[a, rr]
                for i in range(na):
                    acc += S21[i, cc] * PA[i, rr]
                tr[t0] += acc
                t0 += 1
        # rest-term entries through the coupling, with W = A21_l T1
        for i in range(na):
            for bq in range(S1):
                acc = 0.0
                for c in range(bq, S1):
                    acc += T[0, c, bq] * cval[start + i, c]
                W[i, bq] = acc
        _coupling_traces(S21, W, start, na, rowterm, rowgrp, toff, tr)
    for j in range(ntheta):
        grad[j] = 2.0 * tr[j] + dof / r2 * dr2[j]
    _ = K
    _ = rlev


#: a scalar theta at least this large takes :func:`_scalar_traces` (its 1 - Sigma_ii lose
#: digits as theta goes to zero: a relative error of about 1e-16 / (n_i theta^2))
_SCALAR_MIN_THETA = 1e-3


@_jit
def _scalar_interior(theta, sizes, toff):  # pragma: no cover - compiled
    """Whether every term is scalar with theta at least :data:`_SCALAR_MIN_THETA`."""
    for k in range(sizes.shape[0]):
        if sizes[k] != 1 or not theta[toff[k]] >= _SCALAR_MIN_THETA:
            return False
    return True


@_jit
def _scalar_traces(
    theta, toff, cptr, crow, rterm, roff, ma, L11, C, Sig, heavy, plev, pbeg, pend, sig11
):  # pragma: no cover - compiled  # fmt: skip
    """Half the derivative of log|A| in each theta where every term is scalar, from the
    diagonal of Sigma alone: with Lambda'G Lambda = A - D, theta_k times the derivative is
    2 tr(E_k (A - D) A^-1) = 2 sum over the term's levels of (1 - Sigma_ii). The first term's
    Sigma_ll = (1 + c_l' Sigma22 c_l) / L11_l^2; the quadratic forms over the lower triangle of
    Sigma22 by blocks of rows (as :func:`_schur_light`), the heavy levels' by one product."""
    l1 = L11.shape[0]
    q = np.zeros(l1)
    for k in range(plev.shape[0]):
        lv = plev[k]
        s0 = cptr[lv]
        acc = 0.0
        for t in range(pbeg[k], pend[k]):
            a = crow[t]
            if a >= ma:  # the level's active rows come first
                break
            srow = Sig[a]
            inner = 0.0
            for t2 in range(s0, t):  # the level's rows before this one (sorted)
                inner += srow[crow[t2]] * C[t2, 0]
            ct = C[t, 0]
            acc += ct * (2.0 * inner + srow[a] * ct)
        q[lv] += acc
    nh = heavy.shape[0]
    if nh > 0 and ma > 0:
        Pa = np.zeros((ma, nh))
        for h in range(nh):
            for t in range(cptr[heavy[h]], cptr[heavy[h] + 1]):
                if crow[t] < ma:
                    Pa[crow[t], h] = C[t, 0]
        VH = np.dot(Sig, Pa)
        for h in range(nh):
            acc = 0.0
            for a in range(ma):
                acc += Pa[a, h] * VH[a, h]
            q[heavy[h]] = acc
    tr = np.zeros(theta.shape[0])
    for lv in range(l1):
        s11 = (1.0 + q[lv]) / (L11[lv, 0, 0] * L11[lv, 0, 0])
        if sig11.shape[0] > 0:
            sig11[lv, 0, 0] = s11
        tr[toff[0]] += 1.0 - s11
    for g in range(rterm.shape[0]):
        a = roff[g]
        if a < ma:
            tr[toff[rterm[g]]] += 1.0 - Sig[a, a]
    for k in range(toff.shape[0]):
        tr[toff[k]] /= theta[toff[k]]
    return tr


@_jit
def factor_small(
    theta, sizes, toff, A11, cval, cptr, crow, rowterm, rowgrp, A22, rterm, rlev, roff, rsize,
    m_u, heavy, plev, pbeg, pend,
):  # pragma: no cover - compiled  # fmt: skip
    """:func:`build` and the Cholesky factor of the Schur complement, in one call, for a small
    rest (no heavy levels): (ok, L11, C, L22), L22 lower triangular (C order). For a few dozen
    columns a plain loop is as fast as LAPACK, and the calls into LAPACK cost more than the
    arithmetic."""
    ok, L11, C, E, _ = build(
        theta, sizes, toff, A11, cval, cptr, crow, rowterm, rowgrp, A22, rterm, rlev, roff,
        rsize, m_u, heavy, plev, pbeg, pend,
    )  # fmt: skip
    if ok:
        ok = _small_cholesky(E, E.shape[0])
    return ok, L11, C, E


@_jit
def cholesky_inverse(L, ma):  # pragma: no cover - compiled
    """(L_a L_a')^-1 for the leading ma x ma block L_a of a lower-triangular L, full."""
    Li = np.zeros((ma, ma))
    for j in range(ma):
        Li[j, j] = 1.0 / L[j, j]
        for i in range(j + 1, ma):
            acc = 0.0
            for t in range(j, i):
                acc += L[i, t] * Li[t, j]
            Li[i, j] = -acc / L[i, i]
    S = np.empty((ma, ma))
    for i in range(ma):
        for j in range(i + 1):
            acc = 0.0
            for t in range(i, ma):
                acc += Li[t, i] * Li[t, j]
            S[i, j] = acc
            S[j, i] = acc
    return S


@_jit
def _right_scale(A22, T, rterm, roff, rsize, ma):  # pragma: no cover - compiled
    """Rows 0..ma of A22 P (column groups multiplied by their templates), row by row. By
    symmetry of A22 this is also the transpose of the first ma columns of P' A22."""
    m = A22.shape[0]
    nblk = rterm.shape[0]
    scalar = True
    for g in range(nblk):
        if rsize[g] != 1:
            scalar = False
            break
    sc = np.ones(m)
    if scalar:
        for g in range(nblk):
            sc[roff[g]] = T[rterm[g], 0, 0]
    B = np.empty((ma, m))
    tmp = np.empty(8)
    # terms with several effects per level: all their column groups share the template, so
    # the whole term is one matrix product, (rows x levels, s) times T_k
    done = np.zeros(nblk, dtype=np.bool_)
    if not scalar and ma > 0:
        g = 0
        while g < nblk:
            k = rterm[g]
            s = rsize[g]
            g1 = g
            while g1 < nblk and rterm[g1] == k:
                g1 += 1
            if s >= _DENSE_TEMPLATE:
                c0 = roff[g]
                w = (g1 - g) * s
                blk = np.ascontiguousarray(A22[:ma, c0 : c0 + w]).reshape(ma * (g1 - g), s)
                out = np.dot(blk, np.ascontiguousarray(T[k, :s, :s]))
                _copy_2d(B[:, c0 : c0 + w], out.reshape(ma, w))
                for h in range(g, g1):
                    done[h] = True
            g = g1
    for a in range(ma):
        src = A22[a]
        dst = B[a]
        if scalar:
            for b in range(m):
                dst[b] = src[b] * sc[b]
            continue
        for g in range(nblk):  # the columns the products above did not write
            if done[g]:
                continue
            for b in range(roff[g], roff[g] + rsize[g]):
                dst[b] = src[b]
        for b in range(roff[nblk - 1] + rsize[nblk - 1] if nblk else 0, m):
            dst[b] = src[b]
        for g in range(nblk):
            if done[g]:
                continue
            k = rterm[g]
            s = rsize[g]
            c0 = roff[g]
            if s == 1:
                dst[c0] *= T[k, 0, 0]
                continue
            if tmp.shape[0] < s:
                tmp = np.empty(s)
            for c in range(s):
                acc = 0.0
                for b in range(c, s):
                    acc += src[c0 + b] * T[k, b, c]
                tmp[c] = acc
            for c in range(s):
                dst[c0 + c] = tmp[c]
    return B


@_jit
def _scaled_rows_into(cval, start, nrows, T, rowterm, rowgrp, S1, out):  # pragma: no cover
    """The first ``nrows`` rows of P' A21_l (the level's coupling rows with the rest's templates
    applied; columns as A) into ``out``."""
    i = 0
    while i < nrows:
        k = rowterm[start + i]
        if k < 0:
            for c in range(S1):
                out[i, c] = cval[start + i, c]
            i += 1
            continue
        s = rowgrp[start + i]
        for r in range(s):  # the effects innermost: rows of cval are contiguous
            for c in range(S1):
                out[i + r, c] = 0.0
            for a in range(r, s):
                t = T[k, a, r]
                for c in range(S1):
                    out[i + r, c] += t * cval[start + i + a, c]
        i += s


@_jit
def coupling_layout(
    xy0, l1, S1, m_u, p, rstart, rsizes, colptr, rowidx, boff, vals, voff, heavy_min, block
):  # pragma: no cover - compiled  # fmt: skip
    """The coupling of the first term's levels to the rest, one sparse column block per level,
    with the orders the kernels visit it in.

    ``xy0`` is [X y]' W Z_1 (p + 1, l1 * S1). The rest's terms k = 1..K-1 (their first rows
    ``rstart[k - 1]``, ``rsizes[k - 1]`` effects per level) are coupled to the first term by
    block-sparse matrices compressed by level of the first term: term k's blocks of level lv
    are ``boff[k - 1] + colptr[k - 1, lv] .. colptr[k - 1, lv + 1]`` with their levels in
    ``rowidx`` (increasing) and their S_k x S1 values as rows ``voff[k - 1] + b * S_k + s`` of
    ``vals``. Within a level the entries come by row of the rest: the terms' rows in order,
    then X's and y's.

    Returns (cptr, crow, cval, rowterm, rowgrp, heavy, plev, pbeg, pend): the entries of level
    lv are cptr[lv]..cptr[lv + 1], at rows crow of the rest with values cval (S1 wide), from
    term rowterm (-1 for X and y) with rowgrp effects per level; ``heavy`` the levels with at
    least ``heavy_min`` entries (their updates go through BLAS; pass a huge value for none);
    (plev, pbeg, pend) the runs of the other levels' entries in the order the entry-by-entry
    kernels visit them: by blocks of ``block`` rows of the rest, level by level within a block
    (each level's entries of a block are a range, as they are sorted by row).
    """
    K1 = rstart.shape[0]
    cptr = np.zeros(l1 + 1, dtype=np.int64)
    for lv in range(l1):
        cnt = p + 1
        for k in range(K1):
            cnt += (colptr[k, lv + 1] - colptr[k, lv]) * rsizes[k]
        cptr[lv + 1] = cptr[lv] + cnt
    nnz = cptr[l1]
    crow = np.empty(nnz, dtype=np.int64)
    cval = np.empty((nnz, S1))
    rowterm = np.empty(nnz, dtype=np.int64)
    rowgrp = np.empty(nnz, dtype=np.int64)
    nheavy = 0
    for lv in range(l1):
        t = cptr[lv]
        for k in range(K1):
            sk = rsizes[k]
            for b in range(boff[k] + colptr[k, lv], boff[k] + colptr[k, lv + 1]):
                v0 = voff[k] + (b - boff[k]) * sk
                r0 = rstart[k] + rowidx[b] * sk
                for s in range(sk):
                    crow[t] = r0 + s
                    for c in range(S1):
                        cval[t, c] = vals[v0 + s, c]
                    rowterm[t] = k + 1
                    rowgrp[t] = sk
                    t += 1
        for a in range(p + 1):
            crow[t] = m_u + a
            for c in range(S1):
                cval[t, c] = xy0[a, lv * S1 + c]
            rowterm[t] = -1
            rowgrp[t] = 1
            t += 1
        if cptr[lv + 1] - cptr[lv] >= heavy_min:
            nheavy += 1
    heavy = np.empty(nheavy, dtype=np.int64)
    is_heavy = np.zeros(l1, dtype=np.bool_)
    h = 0
    for lv in range(l1):
        if cptr[lv + 1] - cptr[lv] >= heavy_min:
            heavy[h] = lv
            is_heavy[lv] = True
            h += 1
    # the runs (block, level): counted by block, then placed level by level within each
    nblock = (m_u + p + 1 + block - 1) // block
    per_block = np.zeros(nblock + 1, dtype=np.int64)
    for lv in range(l1):
        if is_heavy[lv]:
            continue
        prev = -1
        for t in range(cptr[lv], cptr[lv + 1]):
            bk = crow[t] // block
            if bk != prev:
                per_block[bk + 1] += 1
                prev = bk
    for bk in range(nblock):
        per_block[bk + 1] += per_block[bk]
    nrun = per_block[nblock]
    plev = np.empty(nrun, dtype=np.int64)
    pbeg = np.empty(nrun, dtype=np.int64)
    pend = np.empty(nrun, dtype=np.int64)
    fill = per_block[:nblock].copy()
    for lv in range(l1):
        if is_heavy[lv]:
            continue
        t = cptr[lv]
        end = cptr[lv + 1]
        while t < end:
            bk = crow[t] // block
            t1 = t + 1
            while t1 < end and crow[t1] // block == bk:
                t1 += 1
            j = fill[bk]
            plev[j] = lv
            pbeg[j] = t
            pend[j] = t1
            fill[bk] = j + 1
            t = t1
    return cptr, crow, cval, rowterm, rowgrp, heavy, plev, pbeg, pend


@_jit
def wls_residual(X, y, w, has_w):  # pragma: no cover - compiled
    """(ok, r, gamma): gamma the weighted least-squares coefficients of y on X (n x p) and
    r = y - X gamma, from the normal equations X'WX gamma = X'Wy (Cholesky) and one step of
    iterative refinement with the residual; one pass over the rows per step, no copy of X.
    ok is False (and r, gamma unusable) when X'WX is not numerically positive definite."""
    n, p = X.shape
    G = np.zeros((p, p))
    gamma = np.zeros(p)
    r = y.copy()
    c = np.empty(p)
    for step in range(2):  # the solve, then one refinement from its residual
        for a in range(p):
            c[a] = 0.0
        for i in range(n):
            wi = w[i] if has_w else 1.0
            ri = r[i] * wi
            for a in range(p):
                c[a] += X[i, a] * ri
            if step == 0:
                for a in range(p):
                    xa = X[i, a] * wi
                    for b in range(a + 1):
                        G[a, b] += xa * X[i, b]
        if step == 0 and not _small_cholesky(G, p):
            return False, r, gamma
        _cholesky_solve(G, c, p)
        for a in range(p):
            gamma[a] += c[a]
        for i in range(n):
            acc = y[i]
            for a in range(p):
                acc -= X[i, a] * gamma[a]
            r[i] = acc
    return True, r, gamma


@_jit
def moment_template(S):  # pragma: no cover - compiled
    """(ok, L): the lower Cholesky factor of the symmetric part of S (a moment estimate of a
    relative covariance matrix), its eigenvalues floored at 1e-3 of the largest where it is
    not positive definite; ok is False when no eigenvalue is positive."""
    s = S.shape[0]
    M = 0.5 * (S + S.T)
    L = M.copy()
    top = 0.0
    for j in range(s):
        top = max(top, M[j, j])
    if _small_cholesky(L, s):
        low = math.inf
        for j in range(s):
            low = min(low, L[j, j])
        if low > 1e-3 * math.sqrt(top):
            return True, L
    vals = np.empty(s)
    vecs = np.empty((s, s))
    symmetric_eigen(M, vals, vecs)
    big = 0.0
    for j in range(s):
        big = max(big, vals[j])
    if not big > 0.0:
        return False, L
    for j in range(s):
        vals[j] = max(vals[j], 1e-3 * big)
    L = np.dot(vecs * vals, vecs.T)
    return _small_cholesky(L, s), L
