"""The Gaussian likelihood with the random effects integrated out, and the conditional
distribution of the random effects, written once for numpy and for JAX.

With e = y - X beta, Sigma_j = T_j T_j' the covariance of term j's effects at each level,
T = blockdiag_j(I_{l_j} (x) T_j), c = T'Z'We and M = T'Z'WZT + sigma^2 I (q x q), Woodbury's
identity gives (Henderson's mixed-model equations in the spherical form of Bates et al. 2015,
JSS 67(1), eq. 5-11, with sigma^2 moved into M):

    log p(y | beta, T, sigma) = -1/2 [ n log 2 pi + (n - q) log sigma^2 + log|M|
                                       + (e'We - c'M^{-1}c) / sigma^2 ] + 1/2 sum log w,

and b | y, beta, T, sigma = T v with v ~ N(M^{-1}c, sigma^2 M^{-1}). Only the cross-products
Z'WZ, Z'WX, X'WX, Z'We, ... enter (:func:`mixedmodels.bayesian.spec.prepare_data` forms them),
so the cost does not depend on the number of rows. M is factored block by block: the first
term's levels give independent S1 x S1 blocks, the later terms one dense block, updated by the
first (L21 = M21 L11^{-T}, L22 L22' = M22 - L21 L21').

Every function takes the array module ``xp`` (numpy or jax.numpy) and accepts leading batch
dimensions on the parameters (delta (..., p), sigma (...), T_j (..., S, S)): JAX evaluates the
log density for one parameter value inside the sampler, numpy draws the effects for all the
posterior draws at once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["conditional_effects", "effects_draws", "factor", "marginal_loglik"]

LOG_2PI = math.log(2 * math.pi)

#: Diagonal blocks up to this size are factored with unrolled scalar formulas, elementwise over
#: the levels (which XLA fuses), rather than one LAPACK call per level.
UNROLL = 6


def _swap(a: Any, xp: Any) -> Any:
    return xp.swapaxes(a, -1, -2)


def tri_solve(L: Any, C: Any, xp: Any, transpose: bool = False) -> Any:
    """Solve L X = C (or L' X = C) for lower-triangular L (..., n, n), C (..., n, m)."""
    if xp is np:
        return np.linalg.solve(_swap(L, xp) if transpose else L, C)
    from jax.lax.linalg import triangular_solve

    return triangular_solve(L, C, left_side=True, lower=True, transpose_a=transpose)


def chol_blocks(M: Any, xp: Any) -> Any:
    """Cholesky factors of a batch of small SPD matrices (..., S, S)."""
    S = M.shape[-1]
    if S > UNROLL:
        return xp.linalg.cholesky(M)
    L: list[list[Any]] = [[None] * S for _ in range(S)]
    for j in range(S):
        d = M[..., j, j]
        for k in range(j):
            d = d - L[j][k] * L[j][k]
        L[j][j] = xp.sqrt(d)
        for i in range(j + 1, S):
            v = M[..., i, j]
            for k in range(j):
                v = v - L[i][k] * L[j][k]
            L[i][j] = v / L[j][j]
    zero = xp.zeros_like(M[..., 0, 0])
    rows = [xp.stack([L[i][j] if j <= i else zero for j in range(S)], axis=-1) for i in range(S)]
    return xp.stack(rows, axis=-2)


def solve_blocks(L: Any, C: Any, xp: Any, transpose: bool = False) -> Any:
    """Solve L x = c (or L' x = c) for a batch of small lower-triangular L (..., S, S) and
    right sides C (..., S, m)."""
    S = L.shape[-1]
    if S > UNROLL:
        return tri_solve(L, C, xp, transpose)
    x: list[Any] = [None] * S
    for i in range(S - 1, -1, -1) if transpose else range(S):
        v = C[..., i, :]
        for k in range(i + 1, S) if transpose else range(i):
            coef = L[..., k, i] if transpose else L[..., i, k]
            v = v - coef[..., None] * x[k]
        x[i] = v / L[..., i, i][..., None]
    return xp.stack(x, axis=-2)


def left_t(M: Any, Ts: Sequence[Any], sizes: Sequence[tuple[int, int]], xp: Any) -> Any:
    """blockdiag_k(I_{l_k} (x) T_k)' M for M (..., q, m) with rows in the terms' level-major
    order."""
    parts = []
    o = 0
    m = M.shape[-1]
    for (lk, sk), T in zip(sizes, Ts, strict=True):
        blk = M[..., o : o + lk * sk, :]
        blk = blk.reshape(*blk.shape[:-2], lk, sk, m)
        out = xp.einsum("...ts,...ltm->...lsm", T, blk)
        parts.append(out.reshape(*out.shape[:-3], lk * sk, m))
        o += lk * sk
    return xp.concatenate(parts, axis=-2)


def factor(
    B: dict[str, Any],
    sizes: Sequence[tuple[int, int]],
    delta: Any,
    sigma: Any,
    Ts: Sequence[Any],
    xp: Any,
) -> dict[str, Any]:
    """The blocked Cholesky factor of M and the forward solve L w = c.

    Returns ``L11`` (..., l1, S1, S1), ``w1`` (..., l1, S1) and, with more than one term,
    ``L21`` (..., q2, l1 S1), ``L22`` (..., q2, q2), ``w2`` (..., q2).
    """
    s2 = sigma * sigma
    l1, s1 = sizes[0]
    T1 = Ts[0]
    r1 = B["Zr1"] - xp.einsum("lsp,...p->...ls", B["ZX1"], delta)
    c1 = xp.einsum("...ts,...lt->...ls", T1, r1)
    M11 = xp.einsum("...ts,ltu,...uv->...lsv", T1, B["A11"], T1)
    M11 = M11 + s2[..., None, None, None] * xp.eye(s1)
    L11 = chol_blocks(M11, xp)
    w1 = solve_blocks(L11, c1[..., None], xp)[..., 0]
    out = {"L11": L11, "w1": w1}
    if len(sizes) > 1:
        sizes2 = sizes[1:]
        q2 = sum(lk * sk for lk, sk in sizes2)
        Tr = Ts[1:]
        r2 = B["Zr2"] - xp.einsum("qp,...p->...q", B["ZX2"], delta)
        c2 = left_t(r2[..., None], Tr, sizes2, xp)[..., 0]
        M21 = left_t(B["A21"], Tr, sizes2, xp)
        M21 = xp.einsum("...qlu,...uv->...qlv", M21.reshape(*M21.shape[:-1], l1, s1), T1)
        Xs = solve_blocks(L11, xp.moveaxis(M21, -3, -1), xp)  # (..., l1, s1, q2)
        L21 = xp.moveaxis(Xs, -1, -3)
        L21 = L21.reshape(*L21.shape[:-3], q2, l1 * s1)
        TAT = _swap(left_t(_swap(left_t(B["A22"], Tr, sizes2, xp), xp), Tr, sizes2, xp), xp)
        M22 = TAT + s2[..., None, None] * xp.eye(q2) - L21 @ _swap(L21, xp)
        L22 = xp.linalg.cholesky(M22)
        flat_w1 = w1.reshape(*w1.shape[:-2], l1 * s1)
        rhs = c2 - (L21 @ flat_w1[..., None])[..., 0]
        w2 = tri_solve(L22, rhs[..., None], xp)[..., 0]
        out.update(L21=L21, L22=L22, w2=w2)
    return out


def marginal_loglik(
    B: dict[str, Any],
    sizes: Sequence[tuple[int, int]],
    delta: Any,
    sigma: Any,
    Ts: Sequence[Any],
    xp: Any,
) -> Any:
    """log p(y | beta = shift + delta, T, sigma) with the random effects integrated out."""
    s2 = sigma * sigma
    ee = B["rr"] - 2.0 * delta @ B["Xr"] + xp.einsum("...p,pk,...k->...", delta, B["XX"], delta)
    q = sum(lk * sk for lk, sk in sizes)
    logdet: Any = 0.0
    ww: Any = 0.0
    if sizes:
        F = factor(B, sizes, delta, sigma, Ts, xp)
        d1 = xp.diagonal(F["L11"], axis1=-2, axis2=-1)
        logdet = 2.0 * xp.sum(xp.log(d1), axis=(-2, -1))
        ww = xp.sum(F["w1"] ** 2, axis=(-2, -1))
        if "L22" in F:
            d2 = xp.diagonal(F["L22"], axis1=-2, axis2=-1)
            logdet = logdet + 2.0 * xp.sum(xp.log(d2), axis=-1)
            ww = ww + xp.sum(F["w2"] ** 2, axis=-1)
    quad = (ee - ww) / s2
    n = B["n"]
    return -0.5 * (n * LOG_2PI + (n - q) * xp.log(s2) + logdet + quad) + 0.5 * B["sum_log_w"]


def conditional_effects(
    B: dict[str, Any],
    sizes: Sequence[tuple[int, int]],
    delta: Any,
    sigma: Any,
    Ts: Sequence[Any],
    xp: Any,
    noise: tuple[Any, Any] | None = None,
) -> list[Any]:
    """The group-level effects b_j (..., l_j, S_j) drawn from their conditional distribution
    given beta, T and sigma, with standard normal ``noise`` = (eps1 (..., l1, S1),
    eps2 (..., q2)); without noise, the conditional mean."""
    F = factor(B, sizes, delta, sigma, Ts, xp)
    l1, s1 = sizes[0]
    rhs1 = F["w1"]
    if noise is not None:
        rhs1 = rhs1 + sigma[..., None, None] * noise[0]
    bs = []
    if "L22" in F:
        rhs2 = F["w2"] if noise is None else F["w2"] + sigma[..., None] * noise[1]
        x2 = tri_solve(F["L22"], rhs2[..., None], xp, transpose=True)[..., 0]
        back = (_swap(F["L21"], xp) @ x2[..., None])[..., 0]
        rhs1 = rhs1 - back.reshape(*back.shape[:-1], l1, s1)
    x1 = solve_blocks(F["L11"], rhs1[..., None], xp, transpose=True)[..., 0]
    bs.append(xp.einsum("...ls,...ts->...lt", x1, Ts[0]))
    if "L22" in F:
        bs += _split(x2, Ts[1:], sizes[1:], xp)
    return bs


def _split(x: Any, Ts: Sequence[Any], sizes: Sequence[tuple[int, int]], xp: Any) -> list[Any]:
    """b_j = T_j x_j for each level, from x (..., q) in the terms' level-major order."""
    out = []
    o = 0
    for (lk, sk), T in zip(sizes, Ts, strict=True):
        xk = x[..., o : o + lk * sk]
        out.append(xp.einsum("...ls,...ts->...lt", xk.reshape(*xk.shape[:-1], lk, sk), T))
        o += lk * sk
    return out


def effects_draws(
    B: dict[str, Any],
    sizes: Sequence[tuple[int, int]],
    delta: np.ndarray,
    sigma: np.ndarray,
    Ts: Sequence[np.ndarray],
    rng: np.random.Generator,
    memory: float = 2e8,
) -> list[np.ndarray]:
    """One draw of the effects per posterior draw (numpy; arrays flat over the N draws:
    delta (N, p), sigma (N,), Ts[j] (N, S, S)); in batches of about ``memory`` bytes."""
    N = delta.shape[0]
    l1, s1 = sizes[0]
    q2 = sum(lk * sk for lk, sk in sizes[1:])
    per_draw = 8.0 * (q2 * q2 + 2 * q2 * l1 * s1 + 4 * l1 * s1 * s1 + 16)
    batch = max(1, min(N, int(memory / per_draw)))
    out: list[list[np.ndarray]] = [[] for _ in sizes]
    for a in range(0, N, batch):
        sl = slice(a, min(N, a + batch))
        m = sl.stop - sl.start
        noise = (rng.standard_normal((m, l1, s1)), rng.standard_normal((m, q2)))
        bs = conditional_effects(B, sizes, delta[sl], sigma[sl], [T[sl] for T in Ts], np, noise)
        for j, b in enumerate(bs):
            out[j].append(b)
    return [np.concatenate(parts, axis=0) for parts in out]
