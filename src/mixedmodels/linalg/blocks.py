"""Block types for A = [Z X y]' W [Z X y] and its Cholesky factor L.

Random-effects term j has l_j levels and S_j columns per level, so q_j = l_j * S_j random effects,
ordered level-major (all S_j effects of level 0, then level 1, ...), as in lme4.

* :class:`BlockDiag` — l blocks of S x S on the diagonal, ``data`` of shape (l, S, S). Every
  diagonal block of A has this form (each row of the data belongs to one level), and so does the
  first diagonal block of L and any later one that receives no fill-in (nested factors).
* :class:`BlockSparse` — a sparse matrix of S_r x S_c blocks stored by block columns.
  Off-diagonal blocks of A between two random-effects terms have this form.
* dense ``numpy.ndarray`` — everything else (blocks filled in by crossed factors, and every
  block in the rows of [X y]).

This module holds no pandas and no formula objects (DESIGN principle 2).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

__all__ = ["BlockDiag", "BlockSparse", "pattern_matrix"]


@dataclass(eq=False)
class BlockDiag:
    """Block-diagonal matrix: ``data[l]`` is the S x S block of level l."""

    data: np.ndarray  # (l, S, S)

    @property
    def nlevels(self) -> int:
        return self.data.shape[0]

    @property
    def size(self) -> int:
        return self.data.shape[0] * self.data.shape[1]

    def copy(self) -> BlockDiag:
        return BlockDiag(self.data.copy())

    def to_dense(self) -> np.ndarray:
        n, s, _ = self.data.shape
        out = np.zeros((n * s, n * s))
        out4 = out.reshape(n, s, n, s)
        idx = np.arange(n)
        out4[idx, :, idx, :] = self.data
        return out


@dataclass(eq=False)
class BlockSparse:
    """Sparse matrix of S_r x S_c blocks, compressed by block column.

    Attributes
    ----------
    nrow, ncol
        Numbers of block rows and block columns (levels of the two terms).
    colptr
        int64 (ncol + 1): the blocks of column c are ``colptr[c]:colptr[c + 1]``.
    rowidx
        int64 (nnzb): block-row index of each stored block, increasing within a column.
    data
        float64 (nnzb, S_r, S_c).
    """

    nrow: int
    ncol: int
    colptr: np.ndarray
    rowidx: np.ndarray
    data: np.ndarray

    @property
    def nnzb(self) -> int:
        return self.rowidx.shape[0]

    @property
    def colidx(self) -> np.ndarray:
        """Block-column index of each stored block."""
        return np.repeat(np.arange(self.ncol), np.diff(self.colptr))

    def with_data(self, data: np.ndarray) -> BlockSparse:
        return BlockSparse(self.nrow, self.ncol, self.colptr, self.rowidx, data)

    def to_scipy(self) -> sp.csr_matrix:
        """The matrix with scalar entries, as a scipy CSR matrix."""
        _, sr, sc = self.data.shape
        cols = self.colidx
        rr = (self.rowidx[:, None, None] * sr + np.arange(sr)[None, :, None]) + 0 * np.arange(sc)
        cc = (cols[:, None, None] * sc + np.arange(sc)[None, None, :]) + 0 * np.arange(sr)[:, None]
        return sp.csr_matrix(
            (self.data.ravel(), (rr.ravel(), cc.ravel())), shape=(self.nrow * sr, self.ncol * sc)
        )

    def to_dense(self) -> np.ndarray:
        _, sr, sc = self.data.shape
        out = np.zeros((self.nrow * sr, self.ncol * sc))
        out4 = out.reshape(self.nrow, sr, self.ncol, sc)
        out4[self.rowidx, :, self.colidx, :] = self.data
        return out

    def pattern(self) -> sp.csc_matrix:
        """Block-level sparsity pattern as a boolean CSC matrix (nrow x ncol)."""
        return sp.csc_matrix(
            (np.ones(self.nnzb, dtype=bool), self.rowidx, self.colptr), shape=(self.nrow, self.ncol)
        )


def pattern_matrix(P: sp.spmatrix) -> tuple[np.ndarray, np.ndarray]:
    """(colptr, rowidx) of a boolean pattern, canonical (sorted, no duplicates)."""
    P = sp.csc_matrix(P, dtype=bool)
    P.sum_duplicates()
    P.sort_indices()
    return P.indptr.astype(np.int64), P.indices.astype(np.int64)
