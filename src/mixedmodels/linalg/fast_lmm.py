"""The compiled objective and exact gradient of a linear mixed model (see
:mod:`mixedmodels.linalg.lmm_kernels`), set up once from the cross-products A.

:class:`FastObjective` holds A rearranged for the kernels: the first term's diagonal blocks,
the coupling of each of its levels to the rest (a sparse column per level) and the rest as one
dense matrix. It applies when the rest is not too large (``max_rest`` columns).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.linalg import blas, lapack

from mixedmodels.linalg.assemble import CrossProducts
from mixedmodels.linalg.cholesky import ThetaLayout

__all__ = ["FastObjective", "FastSolution"]

_KERNELS: Any = None


_NO_ROWS = np.zeros(0, dtype=np.int64)


def _kernels() -> Any:
    """The compiled kernels, imported (and compiled or loaded from numba's cache) on first use."""
    global _KERNELS
    if _KERNELS is None:
        from mixedmodels.linalg import lmm_kernels

        _KERNELS = lmm_kernels
    return _KERNELS


@dataclass(frozen=True)
class FastSolution:
    """The conditional estimates at a theta (see :meth:`FastObjective.solution`).

    Attributes
    ----------
    beta
        The fixed effects (of the cross-products' response).
    u
        The spherical modes of each term, flat (levels x effects, level-major).
    pwrss
        The penalized weighted residual sum of squares r^2.
    L_X
        The fixed-effects block of the factor (lower triangular, p x p).
    reml_criterion, ml_deviance
        The profiled criteria at theta.
    b, vcov_unscaled
        The modes on the scale of the data, one (levels, effects) array per term, and
        (L_X L_X')^-1, where the kernels computed them (None: the caller does).
    """

    beta: np.ndarray
    u: list[np.ndarray]
    pwrss: float
    L_X: np.ndarray
    reml_criterion: float
    ml_deviance: float
    b: list[np.ndarray] | None = None
    vcov_unscaled: np.ndarray | None = None


class FastObjective:
    """Profiled REML/ML criterion of a linear mixed model and its gradient in theta.

    Parameters
    ----------
    A
        The cross-products of the model.
    layout
        Where each term's template entries sit in theta.
    reml
        REML (True) or ML criterion.
    """

    #: largest dense rest (other terms + fixed effects + response) handled
    max_rest = 6000
    #: a level of the first term is "heavy" when coupled to this share of the rest or more
    heavy_share = 0.07
    #: ... and to at least this many of its entries
    heavy_min = 64
    #: the entry-by-entry kernels visit the rest by blocks of this many rows (see
    #: :func:`_block_pairs`)
    row_block = 16
    #: up to this size of the rest, one compiled call factors it and computes the gradient
    #: (LAPACK's calls cost more than the arithmetic of a small matrix)
    small_rest = 64

    def __init__(self, A: CrossProducts, layout: ThetaLayout, reml: bool):
        self.A = A
        self.layout = layout
        self.reml = bool(reml)
        K = A.nterms
        self.n = A.n
        self.p = A.p
        S1 = A.diag[0].shape[1]
        self.A11 = np.ascontiguousarray(A.diag[0], dtype=float)
        p = A.p
        if K == 1:  # the rest is X and y only (a one-term model: no layout to make)
            self.m_u, self.m = 0, p + 1
            self.rterm = self.roff = self.rsize = self.rlev = _NO_ROWS
            self._rstart = [0]
            self.A22 = np.array(A.xyxy, dtype=float)
        else:
            self._rest(A, K, p)
        from mixedmodels.linalg import one_term

        #: a model with one term is evaluated by :mod:`~mixedmodels.linalg.one_term` (its
        #: search, objective and estimates); the general kernels' coupling layout is then made
        #: only if something asks for it
        self.one_term = self.m <= self.small_rest and one_term.applies(K, S1)
        self._one_data: tuple[Any, ...] | None = None
        if self.one_term:
            self.small = True  # (no heavy levels below 200 columns of rest)
        else:
            self._coupling()
        #: the factor at the theta evaluated last (theta's bytes, the factor): the estimates at
        #: the optimum, usually the last point evaluated, reuse it (see :meth:`release`)
        self._last: tuple[bytes, tuple[bool, Any, Any, Any]] | None = None

    def _rest(self, A: CrossProducts, K: int, p: int) -> None:
        """The rest's layout (terms 1..K-1, then X, then y) and its dense cross-products."""
        rstart = [0]
        for k in range(1, K):
            lk, sk = A.diag[k].shape[0], A.diag[k].shape[1]
            rstart.append(rstart[-1] + lk * sk)
        m_u = rstart[-1]
        m = m_u + p + 1
        self.m_u, self.m = m_u, m
        rterm, roff, rsize, rlev = [], [], [], []
        for k in range(1, K):
            lk, sk = A.diag[k].shape[0], A.diag[k].shape[1]
            rterm.append(np.full(lk, k))
            roff.append(rstart[k - 1] + np.arange(lk) * sk)
            rsize.append(np.full(lk, sk))
            rlev.append(np.arange(lk))

        def cat(xs: list[np.ndarray]) -> np.ndarray:
            return np.concatenate(xs).astype(np.int64) if xs else np.zeros(0, np.int64)

        self.rterm, self.roff, self.rsize, self.rlev = cat(rterm), cat(roff), cat(rsize), cat(rlev)
        # dense rest A22
        A22 = np.zeros((m, m))
        for k in range(1, K):
            lk, sk = A.diag[k].shape[0], A.diag[k].shape[1]
            base = rstart[k - 1]
            idx = base + np.arange(lk)[:, None] * sk + np.arange(sk)[None, :]
            A22[idx[:, :, None], idx[:, None, :]] = A.diag[k]
            A22[m_u:, base : base + lk * sk] = A.xy[k]
            A22[base : base + lk * sk, m_u:] = A.xy[k].T
        for (k, j), blk in A.off.items():
            if j == 0:
                continue
            sk, sj = blk.data.shape[1], blk.data.shape[2]
            rows = rstart[k - 1] + blk.rowidx[:, None] * sk + np.arange(sk)[None, :]
            cols = rstart[j - 1] + blk.colidx[:, None] * sj + np.arange(sj)[None, :]
            A22[rows[:, :, None], cols[:, None, :]] = blk.data
            A22[cols[:, :, None], rows[:, None, :]] = blk.data.transpose(0, 2, 1)
        A22[m_u:, m_u:] = A.xyxy
        self.A22 = A22
        self._rstart = rstart

    #: the attributes :meth:`_coupling` sets
    _COUPLING = frozenset(
        ("cptr", "crow", "cval", "rowterm", "rowgrp", "heavy", "plev", "pbeg", "pend")
    )

    def _coupling(self) -> None:
        """The coupling of the first term's levels to the rest: one sparse column block per
        level, with the orders the kernels visit it in (see
        :func:`lmm_kernels.coupling_layout`)."""
        A, K, rstart = self.A, self.A.nterms, self._rstart
        l1, S1 = self.A11.shape[0], self.A11.shape[1]
        m_u, m, p = self.m_u, self.m, self.p
        nrest = K - 1
        colptr = np.zeros((nrest, l1 + 1), dtype=np.int64)
        rowidx_parts, val_parts = [], []
        boff = np.zeros(nrest, dtype=np.int64)
        voff = np.zeros(nrest, dtype=np.int64)
        nb = nv = 0
        for k in range(1, K):
            boff[k - 1], voff[k - 1] = nb, nv
            coupling = A.off.get((k, 0))
            if coupling is None:
                continue
            colptr[k - 1] = coupling.colptr
            rowidx_parts.append(coupling.rowidx)
            val_parts.append(coupling.data.reshape(-1, S1))
            nb += coupling.rowidx.shape[0]
            nv += val_parts[-1].shape[0]
        # levels coupled to a large share of the rest are "heavy": their rank-S1 updates are
        # cheaper as one BLAS product (m^2 per level) than entry by entry (nnz^2 / 2 with
        # indirect access)
        threshold = max(self.heavy_min, int(self.heavy_share * m)) if m >= 200 else m + 1
        (self.cptr, self.crow, self.cval, self.rowterm, self.rowgrp, self.heavy, self.plev,
         self.pbeg, self.pend) = _kernels().coupling_layout(
            np.ascontiguousarray(A.xy[0], dtype=float), l1, S1, m_u, p,
            np.array(rstart[:-1], dtype=np.int64),
            np.array([A.diag[k].shape[1] for k in range(1, K)], dtype=np.int64), colptr,
            _concat(rowidx_parts, np.int64, (0,)), boff,
            _concat(val_parts, float, (0, S1)), voff, threshold, self.row_block,
        )  # fmt: skip
        self.small = m <= self.small_rest and self.heavy.size == 0

    def __getattr__(self, name: str) -> Any:
        # the general kernels' layout, made when first asked for (a one-term model's fit never
        # does): the terms' sizes and offsets in theta, the coupling
        if name in ("sizes", "toff") and "layout" in self.__dict__:
            self.sizes = np.array(self.layout.sizes, dtype=np.int64)
            self.toff = np.array(self.layout.offsets[:-1], dtype=np.int64)
            return self.__dict__[name]
        if name in FastObjective._COUPLING and "_rstart" in self.__dict__:
            self._coupling()
            return self.__dict__[name]
        raise AttributeError(name)

    def with_response(self, A: CrossProducts) -> FastObjective:
        """The same objective for cross-products that differ only in the response (the
        parametric bootstrap): the y row of the coupling and of the dense rest are replaced."""
        new = object.__new__(FastObjective)
        new.__dict__.update(self.__dict__)
        new.A = A
        iy = self.m - 1
        l1, S1 = self.A11.shape[0], self.A11.shape[1]
        if "cval" in self.__dict__:  # (otherwise made from the new A when asked for)
            cval = self.cval.copy()
            cval[self.crow == iy] = A.xy[0][-1].reshape(l1, S1)
            new.cval = cval
        new._one_data = None
        A22 = self.A22.copy()
        for k in range(1, A.nterms):
            g = self.rterm == k
            lk, sk = A.diag[k].shape[0], A.diag[k].shape[1]
            base = int(self.roff[g][0]) if g.any() else 0
            A22[iy, base : base + lk * sk] = A.xy[k][-1]
            A22[base : base + lk * sk, iy] = A.xy[k][-1]
        A22[self.m_u :, self.m_u :] = A.xyxy
        new.A22 = A22
        new._last = None
        return new

    def release(self) -> None:
        """Forget the factor kept from the last evaluation (its memory)."""
        self._last = None

    def minimize(
        self,
        theta0: np.ndarray,
        lower: np.ndarray,
        scale: np.ndarray,
        *,
        inverse_hessian: np.ndarray | None = None,
        gtol: float = 1e-6,
        decrease: tuple[float, float] = (1e-12, 1e-14),
        maxeval: int = 2000,
        boundary_tol: float = 1e-5,
    ) -> Any:
        """Minimize the criterion over theta in one compiled call (a small model only; see
        :mod:`mixedmodels.linalg.small_fit`), from theta0 in coordinates scaled by ``scale``.
        ``inverse_hessian`` (in the scaled coordinates), when known, gives the first steps
        their length and direction. It stops when the scaled projected gradient is below
        ``gtol`` or the decrease still to be had is below ``decrease`` (absolute, relative):
        tighter than the Python optimizer's rules, as evaluations cost so little here.
        Returns an :class:`~mixedmodels.optim.OptSummary`."""
        from mixedmodels.linalg import small_fit

        if not self.small:
            raise ValueError("the compiled minimizer is for small models (FastObjective.small)")
        data = self.search_data()
        return small_fit.search(
            data, theta0, lower, scale, inverse_hessian=inverse_hessian, gtol=gtol,
            decrease=decrease, maxeval=maxeval, boundary_tol=boundary_tol,
        )  # fmt: skip

    def search_data(self, *, general: bool = False) -> tuple[Any, ...]:
        """The data of the compiled search's criterion (:mod:`~mixedmodels.linalg.small_fit`):
        for a model with one term, the layout of :mod:`~mixedmodels.linalg.one_term` (its
        template size a constant of the compiled code); otherwise, or with ``general``, the
        general kernels'."""
        from mixedmodels.linalg import one_term

        A = self.A
        if self.one_term and not general:
            if self._one_data is None:
                self._one_data = one_term.one_term_data(
                    self.A11, A.xy[0], self.A22, self.reml, float(self.n),
                    float(A.sum_log_weights),
                )  # fmt: skip
            return self._one_data
        return (
            self.sizes, self.toff, self.A11, self.cval, self.cptr, self.crow, self.rowterm,
            self.rowgrp, self.A22, self.rterm, self.rlev, self.roff, self.rsize, self.m_u,
            self.p, self.heavy, self.plev, self.pbeg, self.pend, self.reml, float(self.n),
            float(self.A.sum_log_weights),
        )  # fmt: skip

    @classmethod
    def applicable(cls, A: CrossProducts) -> bool:
        """Whether the rest is small enough for a dense factorization per evaluation."""
        rest = sum(A.diag[k].shape[0] * A.diag[k].shape[1] for k in range(1, A.nterms))
        return A.nterms >= 1 and rest + A.p + 1 <= cls.max_rest

    # -- evaluation ----------------------------------------------------------------------------
    def _factor(self, theta: np.ndarray) -> tuple[bool, Any, Any, Any]:
        """(ok, L11, C, L22): the kernels build the Schur complement of the rest, LAPACK
        factors it in place (its C-ordered lower triangle is the transposed Fortran upper);
        a small rest is factored by the kernels too. The factor is kept until the next call
        (nothing changes it), and a repeated theta reuses it."""
        theta = np.asarray(theta, dtype=float)
        key = theta.tobytes()
        last = self._last
        if last is not None and last[0] == key:
            return last[1]
        out = self._new_factor(theta)
        self._last = (key, out)
        return out

    def _new_factor(self, theta: np.ndarray) -> tuple[bool, Any, Any, Any]:
        if self.small:
            return _kernels().factor_small(
                np.asarray(theta, dtype=float), self.sizes, self.toff, self.A11, self.cval,
                self.cptr, self.crow, self.rowterm, self.rowgrp, self.A22, self.rterm,
                self.rlev, self.roff, self.rsize, self.m_u, self.heavy, self.plev, self.pbeg,
                self.pend,
            )  # fmt: skip
        ok, L11, C, E, P = _kernels().build(
            np.asarray(theta, dtype=float), self.sizes, self.toff, self.A11, self.cval,
            self.cptr, self.crow, self.rowterm, self.rowgrp, self.A22, self.rterm, self.rlev,
            self.roff, self.rsize, self.m_u, self.heavy, self.plev, self.pbeg, self.pend,
        )  # fmt: skip
        if not ok:
            return False, L11, C, E
        if P.shape[1]:  # E -= P P' on E's C-ordered lower triangle (the Fortran upper of E')
            blas.dsyrk(-1.0, P.T, beta=1.0, c=E.T, trans=1, lower=0, overwrite_c=1)
        _, info = lapack.dpotrf(E.T, lower=0, clean=1, overwrite_a=1)
        return info == 0, L11, C, E

    def _value(self, L11: np.ndarray, L22: np.ndarray) -> float:
        ldz, ldx, r2 = _kernels().objective_parts(L11, L22, self.m_u, self.p)
        return self._criterion(ldz, ldx, r2, self.reml)

    def _criterion(self, ldz: float, ldx: float, r2: float, reml: bool) -> float:
        return float(
            _kernels().criterion(
                True, ldz, ldx, r2, reml, float(self.n), self.p, float(self.A.sum_log_weights)
            )
        )

    def solution(self, theta: np.ndarray) -> FastSolution | None:
        """The conditional estimates at theta from the factor (what
        :class:`~mixedmodels.linalg.cholesky.BlockedCholesky` gives after ``update``, without
        its symbolic analysis and blocked factorization); None if theta cannot be factored."""
        theta = np.asarray(theta, dtype=float)
        if self.one_term:
            from mixedmodels.linalg.one_term import solution_at

            ok, r2, beta, u1, b1, L_X, unscaled, reml, ml = solution_at(theta, self.search_data())
            if not ok:
                return None
            return FastSolution(
                beta, [u1.reshape(-1)], float(r2), L_X, float(reml), float(ml), [b1], unscaled
            )
        ok, L11, C, L22 = self._factor(theta)
        if not ok:
            return None
        k = _kernels()
        m_u, p = self.m_u, self.p
        w, u1 = k.solution(L11, C, self.cptr, self.crow, L22, m_u, p)
        ldz, ldx, r2 = k.objective_parts(L11, L22, m_u, p)
        u = [u1.reshape(-1)]
        start = 0
        for d in self.A.diag[1:]:
            size = d.shape[0] * d.shape[1]
            u.append(w[start : start + size])
            start += size
        return FastSolution(
            beta=w[m_u : m_u + p].copy(),
            u=u,
            pwrss=float(r2),
            L_X=np.array(L22[m_u : m_u + p, m_u : m_u + p]),
            reml_criterion=self._criterion(ldz, ldx, r2, True),
            ml_deviance=self._criterion(ldz, ldx, r2, False),
        )

    def objective(self, theta: np.ndarray) -> float:
        if self.one_term:
            return self.objective_gradient(theta)[0]
        ok, L11, _, L22 = self._factor(theta)
        if not ok:
            return math.inf
        return self._value(L11, L22)

    def objective_gradient(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        """The criterion and its exact gradient in theta."""
        theta = np.asarray(theta, dtype=float)
        if self.one_term or self.small:  # one compiled call
            from mixedmodels.linalg.small_fit import criterion_at

            f, g = criterion_at(theta, self.search_data())
            return float(f), g
        return self._objective_gradient(theta, None)

    @property
    def scalar_terms(self) -> bool:
        """Whether every term is scalar (one template entry; see
        :meth:`objective_gradient_information`)."""
        return all(d.shape[1] == 1 for d in self.A.diag)

    def objective_gradient_information(
        self, theta: np.ndarray
    ) -> tuple[float, np.ndarray, np.ndarray | None]:
        """The criterion, its gradient and, for a model whose terms are all scalar, each
        theta's expected information in log theta (:func:`lmm_kernels.scalar_information
        <mixedmodels.linalg.lmm_kernels.scalar_information>`: 4 sum_i r_i^2 over the term's
        levels, r_i the level's shrinkage factor); None for the information where the terms
        are not all scalar, the model is small (its search is compiled) or the criterion is
        not finite."""
        theta = np.asarray(theta, dtype=float)
        if self.one_term or self.small or not self.scalar_terms:
            f, g = self.objective_gradient(theta)
            return f, g, None
        info = np.full(theta.size, np.nan)
        f, g = self._objective_gradient(theta, info)
        return f, g, (info if np.isfinite(info).all() else None)

    def _objective_gradient(
        self, theta: np.ndarray, info: np.ndarray | None
    ) -> tuple[float, np.ndarray]:
        grad = np.zeros(theta.size)
        ok, L11, C, L22 = self._factor(theta)
        if not ok:
            return math.inf, grad
        val = self._value(L11, L22)
        if not math.isfinite(val):
            return val, grad
        ma = self.m_u + self.p if self.reml else self.m_u
        sig = np.array(L22[:ma, :ma], order="C")
        if ma > 0:
            # inverse of L22a L22a' from its factor, in place; lower triangle, then mirrored
            _, status = lapack.dpotri(sig.T, lower=0, overwrite_c=1)
            if status != 0:
                return val, np.full(theta.size, np.nan)
            _kernels().symmetrize_lower(sig)
        sig11 = np.zeros((L11.shape[0] if info is not None else 0, *L11.shape[1:]))
        _kernels().gradient(
            theta, self.sizes, self.toff, self.A11, self.cval, self.cptr, self.crow,
            self.rowterm, self.rowgrp, self.A22, self.rterm, self.rlev, self.roff, self.rsize,
            self.m_u, self.p, self.reml, float(self.n), L11, C, L22, sig, self.heavy, self.plev,
            self.pbeg, self.pend, grad, sig11, True,
        )  # fmt: skip
        if info is not None:
            _kernels().scalar_information(sig11, sig, ma, self.rterm, self.roff, self.toff, info)
        return val, grad


def _concat(parts: list[np.ndarray], dtype: Any, empty: tuple[int, ...]) -> np.ndarray:
    """The parts, concatenated as one contiguous array of ``dtype`` (of shape ``empty`` when
    there are none)."""
    if not parts:
        return np.zeros(empty, dtype=dtype)
    return np.ascontiguousarray(np.concatenate(parts), dtype=dtype)
