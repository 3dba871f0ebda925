"""The one pass over the rows: A = [Z X y]' W [Z X y], in blocks.

This is the only computation whose cost grows with the number of observations n; everything the
optimizer does afterwards works on these blocks, whose size depends on the numbers of levels and
columns only. The pass is written as a sum over row chunks (:func:`accumulate` on each chunk,
:func:`combine` of the partial sums), so the same code can stream rows from files or run on a
cluster, one chunk per task.

Blocks of A (lower triangle only), for random-effects terms 0..m-1 and the [X y] block m:

* ``diag[j]`` — Z_j' W Z_j, block diagonal, (l_j, S_j, S_j);
* ``off[(k, j)]``, k > j — Z_k' W Z_j, :class:`BlockSparse` with l_k x l_j blocks of S_k x S_j;
* ``xy[j]`` — [X y]' W Z_j, dense (p + 1, q_j);
* ``xyxy`` — [X y]' W [X y], dense (p + 1, p + 1).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from mixedmodels.linalg.blocks import BlockSparse

__all__ = [
    "CrossProducts",
    "Reweighter",
    "TermData",
    "accumulate",
    "assemble",
    "combine",
    "response_blocks",
    "transform_xy",
]

#: The off-diagonal pattern of two terms is found by counting the rows' level pairs into a dense
#: array of all l_k * l_j block positions only where there are at most about four of them per
#: row and at most this many; otherwise by sorting the rows' keys (InstEval's 2972 x 1128
#: positions from 73,421 rows: 2 ms to sort against 11 ms to count, before the values).
_DENSE_COUNT_LIMIT = 50_000_000
#: placeholders the compiled passes take for an intercept's columns and for no prior weights
_ONE = np.ones((1, 1))
_NO_WEIGHTS = np.ones(1)


def column_scales(terms: Sequence[TermData]) -> list[np.ndarray]:
    """Typical size of each random-effects column: its root mean square over the rows where it
    is not zero (1 for an intercept or an indicator column); one array per term."""
    from mixedmodels.linalg.kernels import rms_nonzero

    return [
        np.ones(1) if t.z is None else rms_nonzero(np.ascontiguousarray(t.z, dtype=float))
        for t in terms
    ]


@dataclass(frozen=True, eq=False)
class TermData:
    """What the linear algebra needs of one random-effects term.

    Attributes
    ----------
    refs
        Level code of each row, int32 (n,).
    z
        Values of the term's S columns, (S, n); ``None`` means a single column of ones.
    nlevels
        Number of levels l.
    n_effects
        Number of columns S.
    """

    refs: np.ndarray
    z: np.ndarray | None
    nlevels: int
    n_effects: int

    def rows(self, sl: slice) -> TermData:
        return TermData(
            self.refs[sl], None if self.z is None else self.z[:, sl], self.nlevels, self.n_effects
        )

    def zrow(self, a: int) -> np.ndarray | None:
        return None if self.z is None else self.z[a]


@dataclass(eq=False)
class CrossProducts:
    """The blocks of A (see the module docstring) and the totals the objective needs.

    Attributes
    ----------
    n
        Number of observations.
    p
        Number of fixed-effects columns.
    sum_log_weights
        sum(log w) over the rows (0 without prior weights).
    """

    diag: list[np.ndarray]
    off: dict[tuple[int, int], BlockSparse]
    xy: list[np.ndarray]
    xyxy: np.ndarray
    n: int
    p: int
    sum_log_weights: float = 0.0
    sizes: list[tuple[int, int]] = field(default_factory=list)  # (l_j, S_j)

    @property
    def nterms(self) -> int:
        return len(self.diag)

    def with_response(self, xy: list[np.ndarray], xyxy: np.ndarray) -> CrossProducts:
        """A copy sharing every block that does not involve y, with new y blocks."""
        return CrossProducts(
            self.diag, self.off, xy, xyxy, self.n, self.p, self.sum_log_weights, self.sizes
        )


def _prod(*vectors: np.ndarray | None) -> np.ndarray | None:
    """Elementwise product of the non-None vectors (None when all are None)."""
    out = None
    for v in vectors:
        if v is None:
            continue
        out = v if out is None else out * v
    return out


def _bincount(idx: np.ndarray, weights: np.ndarray | None, minlength: int) -> np.ndarray:
    if weights is None:
        return np.bincount(idx, minlength=minlength).astype(float)
    return np.bincount(idx, weights=weights, minlength=minlength)


@dataclass(eq=False)
class _Partial:
    diag: list[np.ndarray]
    off: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]]  # sorted keys, (nk, S_k, S_j) values
    xy: list[np.ndarray]
    xyxy: np.ndarray
    n: int
    sum_log_weights: float


def _off_block(tk: TermData, tj: TermData, w: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    nrow = tk.nlevels
    key = tj.refs.astype(np.int64) * nrow + tk.refs
    total = nrow * tj.nlevels
    if total <= _DENSE_COUNT_LIMIT and total <= 4 * len(key) + 100_000:
        counts = np.bincount(key, minlength=total)
        keys = np.flatnonzero(counts)
        inverse = None
    else:
        keys, inverse = np.unique(key, return_inverse=True)
        inverse = inverse.ravel()
    vals = np.empty((len(keys), tk.n_effects, tj.n_effects))
    for a in range(tk.n_effects):
        for b in range(tj.n_effects):
            wt = _prod(w, tk.zrow(a), tj.zrow(b))
            if inverse is None:
                vals[:, a, b] = _bincount(key, wt, total)[keys]
            else:
                vals[:, a, b] = _bincount(inverse, wt, len(keys))
    return keys, vals


def _term_blocks(
    terms: Sequence[TermData], XY: np.ndarray, w: np.ndarray | None
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Each term's diagonal blocks (levels, S, S) and its blocks with [X y] ((p + 1) x
    levels S), in one compiled pass over the rows per term (the same values to the last bit
    as weighted bincounts of each product)."""
    from mixedmodels.linalg.kernels import term_blocks

    XYc = np.ascontiguousarray(XY, dtype=float)
    wc = np.ones(1) if w is None else np.ascontiguousarray(w, dtype=float)
    diag, xy = [], []
    for t in terms:
        z = np.ones((1, 1)) if t.z is None else np.ascontiguousarray(t.z, dtype=float)
        d, x = term_blocks(
            np.ascontiguousarray(t.refs, dtype=np.int64), z, t.z is not None, XYc, wc,
            w is not None, t.nlevels,
        )  # fmt: skip
        diag.append(d)
        xy.append(x.reshape(XY.shape[1], t.nlevels * t.n_effects))
    return diag, xy


def accumulate(
    terms: Sequence[TermData], X: np.ndarray, y: np.ndarray, weights: np.ndarray | None
) -> _Partial:
    """Partial sums of the blocks of A over one chunk of rows."""
    XY = np.column_stack([X, y]) if X.shape[1] else y[:, None].astype(float)
    diag, xy = _term_blocks(terms, XY, weights)
    off = {}
    for k in range(len(terms)):
        for j in range(k):
            off[(k, j)] = _off_block(terms[k], terms[j], weights)
    WXY = XY if weights is None else XY * weights[:, None]
    xyxy = WXY.T @ XY
    slw = 0.0 if weights is None else float(np.sum(np.log(weights)))
    return _Partial(diag, off, xy, xyxy, len(y), slw)


def _merge_keyed(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    if len(parts) == 1:
        return parts[0]
    keys = np.concatenate([k for k, _ in parts])
    vals = np.concatenate([v for _, v in parts])
    uniq, inverse = np.unique(keys, return_inverse=True)
    out = np.zeros((len(uniq), *vals.shape[1:]))
    np.add.at(out, inverse.ravel(), vals)
    return uniq, out


def _total(arrays: list[np.ndarray]) -> np.ndarray:
    """The sum of the chunks' arrays (the array itself for a single chunk)."""
    out = arrays[0]
    for a in arrays[1:]:
        out = out + a
    return out


def combine(partials: Iterable[_Partial], terms: Sequence[TermData], p: int) -> CrossProducts:
    """Sum partial blocks from :func:`accumulate` into the blocks of A."""
    parts = list(partials)
    if not parts:
        raise ValueError("no data chunks to combine")
    diag = [_total([pp.diag[j] for pp in parts]) for j in range(len(terms))]
    xy = [_total([pp.xy[j] for pp in parts]) for j in range(len(terms))]
    xyxy = _total([pp.xyxy for pp in parts])
    off: dict[tuple[int, int], BlockSparse] = {}
    for k, j in parts[0].off:
        keys, vals = _merge_keyed([pp.off[(k, j)] for pp in parts])
        nrow = terms[k].nlevels
        ncol = terms[j].nlevels
        cols = keys // nrow
        rows = keys % nrow
        colptr = np.zeros(ncol + 1, dtype=np.int64)
        np.cumsum(np.bincount(cols, minlength=ncol), out=colptr[1:])
        off[(k, j)] = BlockSparse(nrow, ncol, colptr, rows.astype(np.int64), vals)
    return CrossProducts(
        diag=[np.asarray(d) for d in diag],
        off=off,
        xy=[np.asarray(x) for x in xy],
        xyxy=np.asarray(xyxy),
        n=sum(pp.n for pp in parts),
        p=p,
        sum_log_weights=sum(pp.sum_log_weights for pp in parts),
        sizes=[(t.nlevels, t.n_effects) for t in terms],
    )


def assemble(
    terms: Sequence[TermData],
    X: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray | None = None,
    chunk_rows: int = 1 << 20,
) -> CrossProducts:
    """Form the blocks of A = [Z X y]' W [Z X y] in one pass over the rows, chunk by chunk.

    Parameters
    ----------
    terms
        The random-effects terms.
    X
        Fixed-effects model matrix, (n, p).
    y
        Response (minus any offset), (n,).
    weights
        Prior weights, (n,), or ``None``.
    chunk_rows
        Rows per chunk; bounds the temporary memory of the pass.
    """
    n = len(y)
    if n <= chunk_rows:
        return combine([accumulate(terms, X, y, weights)], terms, X.shape[1])
    partials = []
    for start in range(0, n, chunk_rows):
        sl = slice(start, min(n, start + chunk_rows))
        partials.append(
            accumulate(
                [t.rows(sl) for t in terms],
                X[sl],
                y[sl],
                None if weights is None else weights[sl],
            )
        )
    return combine(partials, terms, X.shape[1])


def assemble_one_term(
    term: TermData, X: np.ndarray, y: np.ndarray, weights: np.ndarray | None
) -> tuple[CrossProducts, np.ndarray] | None:
    """For a model with one random-effects term, (A, gamma): the blocks of A for the residual
    r = y - X gamma of the weighted least-squares fit of y on X (see
    :class:`~mixedmodels.lmm.LinearMixedModel`), in one compiled pass
    (:func:`~mixedmodels.linalg.kernels.one_term_blocks`) rather than the least-squares fit,
    :func:`assemble`'s chunk and its merge; None where X'WX is not numerically positive
    definite (the general path's orthogonal factorization then applies)."""
    from mixedmodels.linalg.kernels import one_term_blocks

    p = X.shape[1]
    ok, gamma, diag, xy, xyxy = one_term_blocks(
        np.ascontiguousarray(term.refs, dtype=np.int64),
        _ONE if term.z is None else np.ascontiguousarray(term.z, dtype=float), term.z is not None,
        np.ascontiguousarray(X, dtype=float), np.ascontiguousarray(y, dtype=float),
        _NO_WEIGHTS if weights is None else np.ascontiguousarray(weights, dtype=float),
        weights is not None, term.nlevels,
    )  # fmt: skip
    if not ok:
        return None
    slw = 0.0 if weights is None else float(np.sum(np.log(weights)))
    A = CrossProducts(
        [diag], {}, [xy.reshape(p + 1, term.nlevels * term.n_effects)], xyxy, len(y), p, slw,
        [(term.nlevels, term.n_effects)],
    )  # fmt: skip
    return A, gamma


def response_blocks(
    A: CrossProducts,
    terms: Sequence[TermData],
    X: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray | None = None,
) -> CrossProducts:
    """A with the blocks that involve y recomputed for a new response (same X, Z, weights).

    A parametric bootstrap refit changes only y: this costs one bincount per random effect column
    instead of a new pass over all blocks.
    """
    p = X.shape[1]
    wy = y if weights is None else y * weights
    xy = []
    for j, t in enumerate(terms):
        blk = A.xy[j].copy()
        s = t.n_effects
        row = np.empty((t.nlevels, s))
        for a in range(s):
            row[:, a] = _bincount(t.refs, _prod(wy, t.zrow(a)), t.nlevels)
        blk[p] = row.ravel()
        xy.append(blk)
    xyxy = A.xyxy.copy()
    xty = X.T @ wy if p else np.zeros(0)
    xyxy[p, :p] = xty
    xyxy[:p, p] = xty
    xyxy[p, p] = float(y @ wy)
    return A.with_response(xy, xyxy)


def transform_xy(A: CrossProducts, T: np.ndarray) -> CrossProducts:
    """A for a new fixed-effects-and-response block [X' y'] = [X y] T' (T is (p'+1) x (p+1)).

    Any [X' y'] whose columns are linear combinations of those of [X y] needs no pass over the
    data: Z'W[X' y'] = (Z'W[X y]) T' and [X' y']'W[X' y'] = T ([X y]'W[X y]) T'. This fixes a
    fixed effect at a value (profiling), drops columns of X (tests of terms), or changes the
    response by a vector in the span of X.
    """
    T = np.asarray(T, dtype=float)
    xy = [T @ blk for blk in A.xy]
    xyxy = T @ A.xyxy @ T.T
    return CrossProducts(A.diag, A.off, xy, xyxy, A.n, T.shape[0] - 1, A.sum_log_weights, A.sizes)


class Reweighter:
    """Blocks of A for fixed rows and random-effects structure, with new weights and response.

    Penalized iteratively reweighted least squares forms A = [Z X z]' W [Z X z] once per
    iteration with new working weights W and working response z. The block patterns and the
    map from rows to blocks are found here once, so each assembly is a set of weighted
    bincounts (no sorting).

    Parameters
    ----------
    terms
        The random-effects terms.
    X
        The fixed-effects columns to include (may have no columns).
    """

    def __init__(self, terms: Sequence[TermData], X: np.ndarray):
        self.terms = list(terms)
        self.X = np.ascontiguousarray(X, dtype=float)
        self.n = X.shape[0]
        self.pairs: dict[tuple[int, int], tuple[np.ndarray, BlockSparse]] = {}
        for k in range(len(terms)):
            for j in range(k):
                tk, tj = terms[k], terms[j]
                key = tj.refs.astype(np.int64) * tk.nlevels + tk.refs
                keys, inverse = np.unique(key, return_inverse=True)
                cols = keys // tk.nlevels
                colptr = np.zeros(tj.nlevels + 1, dtype=np.int64)
                np.cumsum(np.bincount(cols, minlength=tj.nlevels), out=colptr[1:])
                pattern = BlockSparse(
                    tk.nlevels,
                    tj.nlevels,
                    colptr,
                    (keys % tk.nlevels).astype(np.int64),
                    np.empty((len(keys), tk.n_effects, tj.n_effects)),
                )
                self.pairs[(k, j)] = (inverse.ravel(), pattern)

    def blocks(self, w: np.ndarray, z: np.ndarray) -> CrossProducts:
        """A with weights ``w`` and response ``z``."""
        terms = self.terms
        XY = np.column_stack([self.X, z]) if self.X.shape[1] else z[:, None]
        diag, xy = _term_blocks(terms, XY, w)
        off = {}
        for (k, j), (inverse, pattern) in self.pairs.items():
            tk, tj = terms[k], terms[j]
            vals = np.empty_like(pattern.data)
            for a in range(tk.n_effects):
                for b in range(tj.n_effects):
                    vals[:, a, b] = _bincount(inverse, _prod(w, tk.zrow(a), tj.zrow(b)), len(vals))
            off[(k, j)] = pattern.with_data(vals)
        xyxy = (XY * w[:, None]).T @ XY
        return CrossProducts(
            diag,
            off,
            xy,
            xyxy,
            self.n,
            self.X.shape[1],
            0.0,
            [(t.nlevels, t.n_effects) for t in terms],
        )
