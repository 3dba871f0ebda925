r"""The blocked Cholesky factor L(theta) and the profiled objective.

For relative covariance factor Lambda(theta) (block diagonal, term j repeating its S_j x S_j lower
triangular template T_j over its levels) the matrix

.. math::

    \begin{bmatrix} \Lambda' Z'WZ \Lambda + I & \Lambda' Z'WX & \Lambda' Z'Wy \\
                    X'WZ\Lambda & X'WX & X'Wy \\ y'WZ\Lambda & y'WX & y'Wy \end{bmatrix}
    = L L'

is factored block by block (Bates et al. 2015, eq. 18-19; MixedModels.jl ``updateL!``): scale
the blocks of A by Lambda, inflate the random-effects diagonal by I, and for each block column j
subtract the rank updates from the columns to its left, factor the diagonal block and divide the
blocks below it. The last diagonal element of L is r(theta), the square root of the penalized
weighted residual sum of squares, and the profiled deviances are (Bates et al. 2015, eq. 34, 41)

.. math::

    -2\ell(\theta)   &= \log|L_Z|^2 + n\,[1 + \log(2\pi r^2 / n)] - \log|W| \\
    -2\ell_R(\theta) &= \log|L_Z|^2 + \log|L_X|^2 + (n-p)\,[1 + \log(2\pi r^2/(n-p))] - \log|W|.

Nothing here touches the rows of the data: the cost of :meth:`BlockedCholesky.update` depends
on the numbers of levels and columns only.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp
from scipy.linalg import lapack

from mixedmodels.linalg.assemble import CrossProducts
from mixedmodels.linalg.blocks import BlockSparse, pattern_matrix

__all__ = ["BlockedCholesky", "ThetaLayout"]

_LOG_2PI = math.log(2.0 * math.pi)


def _kernels():
    from mixedmodels.linalg import kernels

    return kernels


@dataclass(frozen=True)
class ThetaLayout:
    """Where each term's template entries sit in theta.

    theta holds, term after term, the lower triangle of each S_j x S_j template in column-major
    order (lme4's order: for S = 2, T[0,0], T[1,0], T[1,1]).
    """

    sizes: tuple[int, ...]  # S_j per term

    @property
    def offsets(self) -> tuple[int, ...]:
        """Where each term's entries start in theta (and where they end)."""
        return _offsets(self.sizes)

    @property
    def ntheta(self) -> int:
        return self.offsets[-1]

    def tril_indices(self, s: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows and columns of the lower triangle of an s x s template in lme4's order
        (read-only arrays, shared)."""
        return _tril_indices(s)

    def lower_bounds(self) -> np.ndarray:
        """0 for the diagonal entries of each template, -inf for the others."""
        return _entries(self.sizes)[1].copy()

    def initial(self) -> np.ndarray:
        """Identity templates, lme4's and MixedModels.jl's starting value."""
        return _entries(self.sizes)[0].astype(float)

    def scaled_start(self, scales: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Starting theta and initial optimizer steps in the units of the data.

        lme4 and MixedModels.jl start at identity templates, which assumes every random-effects
        column has unit scale: with a covariate in hours instead of days the start is 24 times
        too large for the slope and the search can end in a poor local optimum. Here the
        template row of a column with typical size c (``scales``, one array per term) starts at
        1/c, with steps 0.75/c on the diagonal and 1/c off it, so rescaling a covariate
        rescales the whole search and changes nothing else. For intercepts and indicator
        columns (c = 1) this is lme4's start.
        """
        if not self.sizes:
            return np.zeros(0), np.zeros(0)
        diagonal, _, row = _entries(self.sizes)
        inv = 1.0 / np.concatenate(scales).astype(float, copy=False)[row]
        return np.where(diagonal, inv, 0.0), np.where(diagonal, 0.75, 1.0) * inv

    def unit_start(self) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`scaled_start` with every column's scale 1 (intercepts, indicator columns):
        read-only arrays, made once per template sizes."""
        return _unit_start(self.sizes)

    def names(self, terms: Sequence[Any]) -> list[str]:
        """lme4's names for theta, e.g. ``Subject.(Intercept)``, ``Subject.Days.(Intercept)``
        (``terms``: the design's random-effects terms)."""
        out = []
        for t in terms:
            r, c = self.tril_indices(t.n_effects)
            for i, j in zip(r, c, strict=True):
                out.append(
                    f"{t.group_name}.{t.effect_names[i]}"
                    if i == j
                    else f"{t.group_name}.{t.effect_names[i]}.{t.effect_names[j]}"
                )
        return out

    def templates(self, theta: np.ndarray) -> list[np.ndarray]:
        out = []
        offs = self.offsets
        for j, s in enumerate(self.sizes):
            T = np.zeros((s, s))
            r, c = self.tril_indices(s)
            T[r, c] = theta[offs[j] : offs[j + 1]]
            out.append(T)
        return out

    def is_diagonal(self) -> np.ndarray:
        return _entries(self.sizes)[0].copy()

    def diagonal_positions(self) -> tuple[int, ...]:
        """Where the template diagonals are in theta (cached per template sizes)."""
        return _diagonal_positions(self.sizes)


@functools.lru_cache(maxsize=256)
def _offsets(sizes: tuple[int, ...]) -> tuple[int, ...]:
    out = [0]
    for s in sizes:
        out.append(out[-1] + s * (s + 1) // 2)
    return tuple(out)


@functools.lru_cache(maxsize=256)
def _entries(sizes: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each entry of theta (read-only arrays, shared by the layouts of these sizes):
    whether it is a template diagonal, its lower bound, and the position of its template row
    among the terms' random-effects columns (where its column scale is)."""
    diagonal, row = [], []
    first = 0
    for s in sizes:
        r, c = _tril_indices(s)
        diagonal.append(r == c)
        row.append(first + r)
        first += s
    is_diag = np.concatenate(diagonal) if diagonal else np.zeros(0, dtype=bool)
    out = (
        is_diag,
        np.where(is_diag, 0.0, -np.inf),
        np.concatenate(row) if row else np.zeros(0, dtype=np.intp),
    )
    for a in out:
        a.flags.writeable = False
    return out


@functools.lru_cache(maxsize=256)
def _unit_start(sizes: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    out = ThetaLayout(sizes).scaled_start([np.ones(s) for s in sizes])
    for a in out:
        a.flags.writeable = False
    return out


@functools.lru_cache(maxsize=256)
def _diagonal_positions(sizes: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(np.flatnonzero(_entries(sizes)[0]).tolist())


@functools.lru_cache(maxsize=64)
def _tril_indices(s: int) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = [], []
    for c in range(s):
        for r in range(c, s):
            rows.append(r)
            cols.append(c)
    out = np.array(rows, dtype=np.intp), np.array(cols, dtype=np.intp)
    for a in out:
        a.flags.writeable = False
    return out


def _blockdiag_cholesky(data: np.ndarray) -> bool:
    """In-place Cholesky of each S x S block; False if a block is not positive definite."""
    s = data.shape[1]
    if s == 1:
        d = data[:, 0, 0]
        if np.any(d <= 0.0):
            return False
        np.sqrt(d, out=d)
        return True
    if s == 2:
        a11 = data[:, 0, 0]
        if np.any(a11 <= 0.0):
            return False
        l11 = np.sqrt(a11)
        l21 = data[:, 1, 0] / l11
        d2 = data[:, 1, 1] - l21 * l21
        if np.any(d2 <= 0.0):
            return False
        data[:, 0, 0] = l11
        data[:, 1, 0] = l21
        data[:, 0, 1] = 0.0
        data[:, 1, 1] = np.sqrt(d2)
        return True
    try:
        data[...] = np.linalg.cholesky(data)
    except np.linalg.LinAlgError:
        return False
    return True


def _dense_cholesky(a: np.ndarray) -> bool:
    """In-place lower Cholesky of a C-contiguous array whose lower triangle is meaningful."""
    # a.T is Fortran-contiguous; its upper triangle is a's lower triangle.
    _, info = lapack.dpotrf(a.T, lower=0, clean=1, overwrite_a=1)
    if info != 0:
        return False
    return True


def _blockdiag_inverse(data: np.ndarray) -> np.ndarray:
    """Inverses of lower-triangular S x S blocks."""
    s = data.shape[1]
    if s == 1:
        return 1.0 / data
    if s == 2:
        # inv([[a, 0], [c, d]]) = [[1/a, 0], [-c/(a d), 1/d]]
        a, c, d = data[:, 0, 0], data[:, 1, 0], data[:, 1, 1]
        out = np.zeros_like(data)
        out[:, 0, 0] = 1.0 / a
        out[:, 1, 1] = 1.0 / d
        out[:, 1, 0] = -c / (a * d)
        return out
    eye = np.broadcast_to(np.eye(s), data.shape)
    return np.linalg.solve(data, eye)


class BlockedCholesky:
    """Storage and factorization of L(theta) for the blocks of A.

    Parameters
    ----------
    A
        The blocks of A = [Z X y]' W [Z X y].
    dense_fill
        Off-diagonal blocks of L filled beyond this fraction of their block positions are
        stored dense.

    Notes
    -----
    The symbolic analysis (which blocks are block diagonal, sparse or dense in L) is done once
    here from the level-level sparsity patterns; :meth:`update` then fills and factors the
    preallocated storage for each theta.
    """

    def __init__(self, A: CrossProducts, dense_fill: float = 0.1):
        self.A = A
        self.m = m = A.nterms
        self.p = A.p
        self.layout = ThetaLayout(tuple(s for _, s in A.sizes))
        self.levels = [lv for lv, _ in A.sizes]
        self.S = [s for _, s in A.sizes]
        self.q = [lv * s for lv, s in A.sizes]
        self._eye = [np.eye(s) for s in self.S]

        # -- symbolic analysis ---------------------------------------------------------------
        self.diag_dense = [False] * m
        self.off_kind: dict[tuple[int, int], str | None] = {}
        patterns: dict[tuple[int, int], sp.csc_matrix] = {}
        for j in range(m):
            dense = False
            for i in range(j):
                kind = self.off_kind[(j, i)]
                if kind == "dense":
                    dense = True
                elif kind == "bs" and np.diff(patterns[(j, i)].indptr).max(initial=0) > 1:
                    dense = True
            self.diag_dense[j] = dense
            for k in range(j + 1, m):
                pat = A.off[(k, j)].pattern() if (k, j) in A.off else None
                force_dense = dense
                for i in range(j):
                    ka, kb = self.off_kind[(k, i)], self.off_kind[(j, i)]
                    if ka is None or kb is None:
                        continue
                    if ka == "dense" or kb == "dense":
                        force_dense = True
                        continue
                    fill = (patterns[(k, i)] @ patterns[(j, i)].T).astype(bool)
                    pat = fill if pat is None else (pat + fill).astype(bool)
                if pat is None or pat.nnz == 0:
                    self.off_kind[(k, j)] = None
                    continue
                if force_dense or pat.nnz > dense_fill * self.levels[k] * self.levels[j]:
                    self.off_kind[(k, j)] = "dense"
                else:
                    self.off_kind[(k, j)] = "bs"
                    patterns[(k, j)] = sp.csc_matrix(pat, dtype=bool)

        # -- storage ---------------------------------------------------------------------------
        self.Ldiag: list[np.ndarray] = []
        for j in range(m):
            if self.diag_dense[j]:
                self.Ldiag.append(np.zeros((self.q[j], self.q[j])))
            else:
                self.Ldiag.append(np.zeros((self.levels[j], self.S[j], self.S[j])))
        self.Loff: dict[tuple[int, int], np.ndarray | BlockSparse] = {}
        self._amap: dict[tuple[int, int], np.ndarray | None] = {}
        for (k, j), kind in self.off_kind.items():
            if kind is None:
                continue
            if kind == "dense":
                self.Loff[(k, j)] = np.zeros((self.q[k], self.q[j]))
                continue
            colptr, rowidx = pattern_matrix(patterns[(k, j)])
            blk = BlockSparse(
                self.levels[k],
                self.levels[j],
                colptr,
                rowidx,
                np.zeros((len(rowidx), self.S[k], self.S[j])),
            )
            self.Loff[(k, j)] = blk
            a = A.off[(k, j)]
            if len(rowidx) == a.nnzb:
                self._amap[(k, j)] = None
            else:
                lkeys = blk.colidx * blk.nrow + rowidx
                akeys = a.colidx * a.nrow + a.rowidx
                self._amap[(k, j)] = np.searchsorted(lkeys, akeys)
        p1 = self.p + 1
        self.Lxy = [np.zeros((p1, qj)) for qj in self.q]
        self.Lxyxy = np.zeros((p1, p1))
        self.ok = False
        self._scipy_cache: dict[tuple[int, int], sp.csr_matrix] = {}

    # ------------------------------------------------------------------------------------------
    @property
    def needs_kernels(self) -> bool:
        """Whether the factorization uses the compiled sparse kernels."""
        return any(v is not None for v in self.off_kind.values())

    def storage_bytes(self) -> int:
        """Memory held by the factor's blocks."""
        total = (
            sum(a.nbytes for a in self.Ldiag) + sum(a.nbytes for a in self.Lxy) + self.Lxyxy.nbytes
        )
        for blk in self.Loff.values():
            total += (
                blk.nbytes if isinstance(blk, np.ndarray) else blk.data.nbytes + blk.rowidx.nbytes
            )
        return total

    # ------------------------------------------------------------------------------------------
    def update(self, theta: np.ndarray) -> bool:
        """Fill L from A scaled by Lambda(theta) and factor it in place.

        Returns ``False`` if a block is numerically not positive definite (only possible for
        extreme theta); the objective is then ``inf``.
        """
        A = self.A
        m = self.m
        Ts = self.layout.templates(np.asarray(theta, dtype=float))
        self._scipy_cache.clear()
        # scale by Lambda and inflate the diagonal: L_jj = T' A_jj T + I
        for j in range(m):
            T = Ts[j]
            if self.S[j] == 1:
                blocks = A.diag[j] * (T[0, 0] * T[0, 0])
                blocks += 1.0
            else:
                blocks = np.matmul(T.T, np.matmul(A.diag[j], T))
                blocks += self._eye[j]
            if self.diag_dense[j]:
                D = self.Ldiag[j]
                D.fill(0.0)
                idx = np.arange(self.levels[j])
                D.reshape(self.levels[j], self.S[j], self.levels[j], self.S[j])[idx, :, idx, :] = (
                    blocks
                )
            else:
                self.Ldiag[j][...] = blocks
        for (k, j), blk in self.Loff.items():
            a = A.off[(k, j)]
            if self.S[k] == 1 and self.S[j] == 1:
                scaled = a.data * (Ts[k][0, 0] * Ts[j][0, 0])
            else:
                scaled = np.matmul(Ts[k].T, np.matmul(a.data, Ts[j]))
            if isinstance(blk, np.ndarray):
                blk.fill(0.0)
                blk.reshape(self.levels[k], self.S[k], self.levels[j], self.S[j])[
                    a.rowidx, :, a.colidx, :
                ] = scaled
            else:
                amap = self._amap[(k, j)]
                if amap is None:
                    blk.data[...] = scaled
                else:
                    blk.data.fill(0.0)
                    blk.data[amap] = scaled
        p1 = self.p + 1
        for j in range(m):
            if self.S[j] == 1:
                np.multiply(A.xy[j], Ts[j][0, 0], out=self.Lxy[j])
            else:
                self.Lxy[j][...] = np.matmul(
                    A.xy[j].reshape(p1, self.levels[j], self.S[j]), Ts[j]
                ).reshape(p1, self.q[j])
        self.Lxyxy[...] = A.xyxy
        self.ok = self._factor()
        return self.ok

    def _factor(self) -> bool:
        m = self.m
        for j in range(m):
            Ljj = self.Ldiag[j]
            for i in range(j):
                Lji = self.Loff.get((j, i))
                if Lji is None:
                    continue
                self._syrk(j, Lji)
                for k in range(j + 1, m):
                    Lki = self.Loff.get((k, i))
                    if Lki is None:
                        continue
                    self._gemm(self.Loff[(k, j)], Lki, Lji)
                self._gemm(self.Lxy[j], self.Lxy[i], Lji)
            if self.diag_dense[j]:
                if not _dense_cholesky(Ljj):
                    return False
            elif not _blockdiag_cholesky(Ljj):
                return False
            for k in range(j + 1, m):
                Lkj = self.Loff.get((k, j))
                if Lkj is not None:
                    self._rdiv(Lkj, j)
            self._rdiv(self.Lxy[j], j)
        for i in range(m):
            Lxi = self.Lxy[i]
            self.Lxyxy -= Lxi @ Lxi.T
        if self.p + 1 == 1:
            val = self.Lxyxy[0, 0]
            if not val > 0.0:
                return False
            self.Lxyxy[0, 0] = math.sqrt(val)
            return True
        return _dense_cholesky(self.Lxyxy)

    # -- block operations --------------------------------------------------------------------
    def _syrk(self, j: int, src: np.ndarray | BlockSparse) -> None:
        """L_jj -= src @ src.T (lower triangle)."""
        target = self.Ldiag[j]
        if isinstance(src, np.ndarray):
            target -= src @ src.T
            return
        if self.diag_dense[j]:
            _kernels().bs_syrk_dense(target, src.colptr, src.rowidx, src.data)
            return
        # block-diagonal target: each block column of src has one block (nested factors)
        s = self.S[j]
        if s == 1 and src.data.shape[2] == 1:
            target[:, 0, 0] -= np.bincount(
                src.rowidx, weights=src.data[:, 0, 0] ** 2, minlength=self.levels[j]
            )
        else:
            prods = np.matmul(src.data, src.data.transpose(0, 2, 1))
            np.subtract.at(target, src.rowidx, prods)

    def _gemm(
        self,
        target: np.ndarray | BlockSparse,
        a: np.ndarray | BlockSparse,
        b: np.ndarray | BlockSparse,
    ) -> None:
        """target -= a @ b.T."""
        if isinstance(target, np.ndarray):
            if isinstance(a, np.ndarray):
                if isinstance(b, np.ndarray):
                    target -= a @ b.T
                else:
                    _kernels().dense_bs_t(target, a, b.colptr, b.rowidx, b.data)
            elif isinstance(b, np.ndarray):
                _kernels().bs_dense_t(target, a.colptr, a.rowidx, a.data, b)
            else:
                _kernels().bs_bs_t_dense(
                    target, a.colptr, a.rowidx, a.data, b.colptr, b.rowidx, b.data
                )
            return
        if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):  # pragma: no cover
            raise AssertionError("symbolic analysis should have made this block dense")
        _kernels().bs_bs_t_bs(
            target.colptr, target.rowidx, target.data,
            a.colptr, a.rowidx, a.data,
            b.colptr, b.rowidx, b.data,
        )  # fmt: skip

    def _rdiv(self, target: np.ndarray | BlockSparse, j: int) -> None:
        """target <- target @ inv(L_jj).T."""
        Ljj = self.Ldiag[j]
        if self.diag_dense[j]:
            if not isinstance(target, np.ndarray):  # pragma: no cover
                raise AssertionError("blocks right of a dense diagonal block must be dense")
            target[...] = sla.solve_triangular(Ljj, target.T, lower=True, check_finite=False).T
            return
        s = self.S[j]
        if isinstance(target, BlockSparse):
            cols = target.colidx
            if s == 1:
                target.data /= Ljj[cols, 0, 0][:, None, None]
            else:
                inv = _blockdiag_inverse(Ljj)
                target.data[...] = np.matmul(target.data, inv[cols].transpose(0, 2, 1))
            return
        rows = target.shape[0]
        t3 = target.reshape(rows, self.levels[j], s)
        if s == 1:
            t3 /= Ljj[None, :, 0, 0, None]
        else:
            inv = _blockdiag_inverse(Ljj)
            t3[...] = np.einsum("rls,lts->rlt", t3, inv)

    # -- results ---------------------------------------------------------------------------------
    def logdet_Z(self) -> float:
        """log |L_Z|^2 (twice the sum of the log diagonal of the random-effects part of L)."""
        total = 0.0
        for j in range(self.m):
            L = self.Ldiag[j]
            d = np.diagonal(L) if self.diag_dense[j] else np.diagonal(L, axis1=1, axis2=2)
            total += float(np.sum(np.log(d)))
        return 2.0 * total

    def logdet_X(self) -> float:
        """log |L_X|^2 (the fixed-effects part of L)."""
        p = self.p
        return 2.0 * float(np.sum(np.log(np.diagonal(self.Lxyxy)[:p])))

    def pwrss(self) -> float:
        """Penalized weighted residual sum of squares r^2(theta)."""
        r = self.Lxyxy[self.p, self.p]
        return float(r * r)

    def objective(self, reml: bool) -> float:
        """-2 log-likelihood (ML) or -2 REML log-likelihood, profiled over beta and sigma."""
        if not self.ok:
            return math.inf
        n = self.A.n
        r2 = self.pwrss()
        if r2 <= 0.0:
            return -math.inf if r2 == 0.0 else math.inf
        if reml:
            nmp = n - self.p
            val = self.logdet_Z() + self.logdet_X() + nmp * (1.0 + _LOG_2PI + math.log(r2 / nmp))
        else:
            val = self.logdet_Z() + n * (1.0 + _LOG_2PI + math.log(r2 / n))
        return val - self.A.sum_log_weights

    def beta(self) -> np.ndarray:
        """Conditional estimate of beta: L_X' beta = l_yX."""
        p = self.p
        if p == 0:
            return np.zeros(0)
        return sla.solve_triangular(
            self.Lxyxy[:p, :p], self.Lxyxy[p, :p], lower=True, trans="T", check_finite=False
        )

    def spherical_modes(self, beta: np.ndarray | None = None) -> list[np.ndarray]:
        """Conditional modes u of the spherical random effects, one (q_j,) array per term.

        Solves L_Z' u = l_yZ - L_XZ' beta by block back-substitution.
        """
        if beta is None:
            beta = self.beta()
        p = self.p
        rhs = [self.Lxy[j][p] - self.Lxy[j][:p].T @ beta for j in range(self.m)]
        u: list[np.ndarray] = [np.zeros(0)] * self.m
        for j in range(self.m - 1, -1, -1):
            v = rhs[j].copy()
            for k in range(j + 1, self.m):
                Lkj = self.Loff.get((k, j))
                if Lkj is None:
                    continue
                v -= self._off_t_vec(Lkj, u[k], j)
            u[j] = self._solve_diag_t(j, v)
        return u

    def _off_t_vec(self, Lkj: np.ndarray | BlockSparse, v: np.ndarray, j: int) -> np.ndarray:
        if isinstance(Lkj, np.ndarray):
            return Lkj.T @ v
        out = np.zeros(self.q[j])
        _kernels().bs_t_vec(out, Lkj.colptr, Lkj.rowidx, Lkj.data, v)
        return out

    def _solve_diag_t(self, j: int, v: np.ndarray) -> np.ndarray:
        """inv(L_jj)' v."""
        L = self.Ldiag[j]
        if self.diag_dense[j]:
            return sla.solve_triangular(L, v, lower=True, trans="T", check_finite=False)
        s = self.S[j]
        if s == 1:
            return v / L[:, 0, 0]
        v3 = v.reshape(self.levels[j], s, 1)
        return np.linalg.solve(L.transpose(0, 2, 1), v3).reshape(-1)

    def _solve_diag(self, j: int, X: np.ndarray) -> np.ndarray:
        """inv(L_jj) X for a dense X with q_j rows."""
        L = self.Ldiag[j]
        if self.diag_dense[j]:
            return sla.solve_triangular(L, X, lower=True, check_finite=False)
        s = self.S[j]
        cols = X.shape[1]
        if s == 1:
            return X / L[:, 0, 0][:, None]
        X3 = X.reshape(self.levels[j], s, cols)
        return np.linalg.solve(L, X3).reshape(self.q[j], cols)

    def _off_mul(self, k: int, i: int, X: np.ndarray) -> np.ndarray:
        """L_ki X for a dense X with q_i rows."""
        Lki = self.Loff[(k, i)]
        if isinstance(Lki, np.ndarray):
            return Lki @ X
        csr = self._scipy_cache.get((k, i))
        if csr is None:
            csr = Lki.to_scipy()
            self._scipy_cache[(k, i)] = csr
        return np.asarray(csr @ X)

    def forward_solve(
        self, WZ: list[np.ndarray], WX: np.ndarray
    ) -> tuple[list[np.ndarray], np.ndarray]:
        """Solve L v = w for the random-effects-and-fixed-effects part of L, column by column.

        ``WZ[j]`` holds the rows of term j (q_j x m) and ``WX`` the fixed-effects rows (p x m).
        Then ||v||^2 = w' inv(L L') w; with w = [Lambda' z; x] for a new observation,
        sigma^2 ||v||^2 is the variance of its estimated conditional mean x'beta + z'b given
        theta (the fixed effects' uncertainty included).
        """
        vs: list[np.ndarray] = []
        for k in range(self.m):
            rhs = np.array(WZ[k], dtype=float, copy=True)
            for i in range(k):
                if (k, i) in self.Loff:
                    rhs -= self._off_mul(k, i, vs[i])
            vs.append(self._solve_diag(k, rhs))
        p = self.p
        rhs = np.array(WX, dtype=float, copy=True)
        for i in range(self.m):
            rhs -= self.Lxy[i][:p] @ vs[i]
        vX = (
            sla.solve_triangular(self.Lxyxy[:p, :p], rhs, lower=True, check_finite=False)
            if p
            else rhs
        )
        return vs, vX

    def inverse_diag_blocks(self, j: int, max_entries: int = 4_000_000) -> np.ndarray:
        """The S_j x S_j diagonal blocks of inv(L_Z L_Z') belonging to term j, (l_j, S_j, S_j).

        These give the conditional covariance of the random effects,
        Var(b | y) = sigma^2 Lambda inv(L_Z L_Z') Lambda' (lme4's ``condVar``). Columns of
        inv(L_Z) for the levels of term j are formed a chunk at a time by block forward
        substitution.
        """
        lv, s, q = self.levels[j], self.S[j], self.q[j]
        out = np.zeros((lv, s, s))
        later = [
            k
            for k in range(j + 1, self.m)
            if any((kk, jj) in self.Loff for kk in [k] for jj in range(j, k))
        ]
        if not self.diag_dense[j] and not later:
            inv = _blockdiag_inverse(self.Ldiag[j])
            return np.matmul(inv.transpose(0, 2, 1), inv)
        rows_below = sum(self.q[k] for k in range(j, self.m))
        chunk = max(1, min(lv, max_entries // max(1, rows_below * s)))
        for start in range(0, lv, chunk):
            stop = min(lv, start + chunk)
            c = stop - start
            E = np.zeros((q, c * s))
            E[start * s : stop * s, :] = np.eye(c * s)
            Xs = {j: self._solve_diag(j, E)}
            for k in range(j + 1, self.m):
                rhs = np.zeros((self.q[k], c * s))
                for i in range(j, k):
                    if (k, i) in self.Loff:
                        rhs -= self._off_mul(k, i, Xs[i])
                Xs[k] = self._solve_diag(k, rhs)
            for X in Xs.values():
                X3 = X.reshape(X.shape[0], c, s)
                out[start:stop] += np.einsum("qca,qcb->cab", X3, X3)
        return out
