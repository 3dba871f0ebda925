"""The blocks of A = [Z X y]' W [Z X y] from one pass over the rows, against dense products."""

from __future__ import annotations

import numpy as np
import pytest

from mixedmodels.linalg.assemble import Reweighter, TermData, assemble


def _design(n: int, seed: int) -> tuple[list[TermData], np.ndarray, np.ndarray, np.ndarray]:
    """A vector-valued term (intercept and slope on 7 levels), a crossed intercept term on 5
    levels, two fixed effects, a response and prior weights."""
    rng = np.random.default_rng(seed)
    g1 = rng.integers(0, 7, n)
    g2 = rng.integers(0, 5, n)
    x = rng.normal(size=n)
    z1 = np.vstack([np.ones(n), x])
    terms = [TermData(g1, z1, 7, 2), TermData(g2, None, 5, 1)]
    X = np.column_stack([np.ones(n), x])
    y = rng.normal(size=n)
    w = rng.uniform(0.5, 2.0, n)
    return terms, X, y, w


def _dense_z(terms: list[TermData], n: int) -> np.ndarray:
    cols = []
    for t in terms:
        Zt = np.zeros((n, t.nlevels * t.n_effects))
        for a in range(t.n_effects):
            za = np.ones(n) if t.z is None else t.z[a]
            Zt[np.arange(n), t.refs * t.n_effects + a] = za
        cols.append(Zt)
    return np.hstack(cols)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("chunk_rows", [1 << 20, 37])
def test_blocks_equal_dense_products(weighted: bool, chunk_rows: int) -> None:
    n = 300
    terms, X, y, w = _design(n, 1)
    weights = w if weighted else None
    A = assemble(terms, X, y, weights, chunk_rows=chunk_rows)
    Z = _dense_z(terms, n)
    W = w if weighted else np.ones(n)
    full = np.hstack([Z, X, y[:, None]])
    G = full.T @ (full * W[:, None])
    q1 = 14
    # diagonal blocks of each term
    for lv in range(7):
        np.testing.assert_allclose(A.diag[0][lv], G[2 * lv : 2 * lv + 2, 2 * lv : 2 * lv + 2])
    np.testing.assert_allclose(A.diag[1][:, 0, 0], np.diag(G)[q1 : q1 + 5])
    # blocks with [X y] and [X y]'W[X y]
    np.testing.assert_allclose(A.xy[0], G[q1 + 5 :, :q1])
    np.testing.assert_allclose(A.xy[1], G[q1 + 5 :, q1 : q1 + 5])
    np.testing.assert_allclose(A.xyxy, G[q1 + 5 :, q1 + 5 :])
    # the crossed block, as a dense matrix
    off = A.off[(1, 0)]
    dense = np.zeros((5, q1))
    for c in range(7):
        for k in range(off.colptr[c], off.colptr[c + 1]):
            dense[off.rowidx[k], 2 * c : 2 * c + 2] = off.data[k, 0]
    np.testing.assert_allclose(dense, G[q1 : q1 + 5, :q1])


def test_term_blocks_are_the_weighted_bincounts_to_the_last_bit() -> None:
    """One compiled pass gives what a weighted bincount of each product gives (the same
    products, summed over the rows in the same order)."""
    n = 500
    terms, X, y, w = _design(n, 2)
    A = assemble(terms, X, y, w)
    t = terms[0]
    for a in range(2):
        for b in range(a + 1):
            expected = np.bincount(t.refs, weights=(w * t.z[a]) * t.z[b], minlength=7)
            assert np.array_equal(A.diag[0][:, a, b], expected)
            assert np.array_equal(A.diag[0][:, b, a], expected)
    XY = np.column_stack([X, y])
    xy = A.xy[0].reshape(3, 7, 2)
    for a in range(2):
        for c in range(3):
            expected = np.bincount(t.refs, weights=(w * t.z[a]) * XY[:, c], minlength=7)
            assert np.array_equal(xy[c, :, a], expected)
    counts = np.bincount(terms[1].refs, minlength=5).astype(float)
    assert np.array_equal(assemble(terms, X, y).diag[1][:, 0, 0], counts)


def test_reweighted_blocks_equal_assembled_blocks() -> None:
    n = 200
    terms, X, y, w = _design(n, 3)
    B = Reweighter(terms, X).blocks(w, y)
    A = assemble(terms, X, y, w)
    for j in range(2):
        np.testing.assert_array_equal(B.diag[j], A.diag[j])
        np.testing.assert_array_equal(B.xy[j], A.xy[j])
    np.testing.assert_allclose(B.xyxy, A.xyxy)
    np.testing.assert_allclose(B.off[(1, 0)].data, A.off[(1, 0)].data)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("term", [0, 1])
def test_one_term_blocks_are_the_general_blocks_of_the_residual(weighted: bool, term: int) -> None:
    """assemble_one_term: the least-squares fit, the term's blocks bit for bit as assemble
    makes them for the residual, and [X r]'W[X r] to rounding (loops instead of BLAS)."""
    from mixedmodels.linalg.assemble import assemble_one_term
    from mixedmodels.linalg.lmm_kernels import wls_residual

    n = 300
    terms, X, y, w = _design(n, seed=11)
    t = terms[term]
    weights = w if weighted else None
    got = assemble_one_term(t, X, 1e3 + y, weights)
    assert got is not None
    A, gamma = got
    ok, r, gamma0 = wls_residual(X, 1e3 + y, w if weighted else np.ones(1), weighted)
    assert ok
    np.testing.assert_array_equal(gamma, gamma0)
    B = assemble([t], X, r, weights)
    np.testing.assert_array_equal(A.diag[0], B.diag[0])
    np.testing.assert_array_equal(A.xy[0], B.xy[0])
    np.testing.assert_allclose(A.xyxy, B.xyxy, rtol=1e-13, atol=1e-12 * np.abs(B.xyxy).max())
    np.testing.assert_array_equal(A.xyxy, A.xyxy.T)
    assert (A.n, A.p, A.sizes, A.off) == (B.n, B.p, B.sizes, {})
    assert A.sum_log_weights == B.sum_log_weights
    # X'WX not positive definite: the general path's business
    Xs = np.column_stack([X, np.zeros(n)])
    assert assemble_one_term(t, Xs, y, weights) is None


@pytest.mark.parametrize("weighted", [False, True])
def test_off_block_by_counting_and_by_sorting_agree(
    weighted: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The off-diagonal blocks of two terms found by counting the level pairs into a dense
    array (few block positions per row) and by sorting the rows' keys (many: InstEval's
    2972 x 1128 levels) are the same keys and, bit for bit, the same sums."""
    from mixedmodels.linalg import assemble as A

    rng = np.random.default_rng(11)
    n = 2000
    rk, rj = rng.integers(0, 40, n), rng.integers(0, 30, n)
    rk[rk == 7] = 8  # a level without rows
    tk = TermData(rk.astype(np.int32), rng.normal(size=(2, n)), 40, 2)
    tj = TermData(rj.astype(np.int32), None, 30, 1)
    w = rng.uniform(0.5, 2.0, n) if weighted else None
    assert 40 * 30 <= 4 * n + 100_000  # counted
    keys_c, vals_c = A._off_block(tk, tj, w)
    monkeypatch.setattr(A, "_DENSE_COUNT_LIMIT", 0)  # sorted
    keys_s, vals_s = A._off_block(tk, tj, w)
    np.testing.assert_array_equal(keys_c, keys_s)
    np.testing.assert_array_equal(vals_c, vals_s)
    ref = np.unique(rj.astype(np.int64) * 40 + rk)
    np.testing.assert_array_equal(keys_c, ref)
    # each block: the sum of w z_k z_j' over the rows of its pair of levels
    i = 5
    rows = (rj * 40 + rk) == keys_c[i]
    ww = w[rows] if weighted else np.ones(rows.sum())
    np.testing.assert_allclose(vals_c[i, :, 0], (tk.z[:, rows] * ww).sum(axis=1), rtol=1e-13)
