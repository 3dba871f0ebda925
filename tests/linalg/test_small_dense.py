"""The compiled small dense routines (eigen-decomposition, pseudo-inverse, level moments)
against numpy's LAPACK-based ones."""

from __future__ import annotations

import numpy as np
import pytest

from mixedmodels.linalg.lmm_kernels import (
    _symmetric_pinv,
    level_moments,
    moment_template,
    symmetric_eigen,
)


def _symmetric_cases():
    rng = np.random.default_rng(7)
    out = [np.zeros((1, 1)), np.array([[3.0]]), np.zeros((3, 3)), np.diag([3.0, -1.0, 2.0])]
    for n in (2, 3, 5, 8, 13):
        A = rng.standard_normal((n, n))
        out.append(A + A.T)
        out.append(A @ A.T)  # positive definite
        B = rng.standard_normal((n, max(1, n // 2)))
        out.append(B @ B.T)  # singular, repeated zero eigenvalues
    out.append(np.eye(4) * 2.5)  # one eigenvalue four times
    out.append(np.array([[1e8, 1.0], [1.0, 1e-8]]))  # badly scaled
    Q, _ = np.linalg.qr(rng.standard_normal((6, 6)))
    out.append(Q @ np.diag([1.0, 1.0, 1.0, 2.0, 2.0, -3.0]) @ Q.T)  # clustered
    return out


@pytest.mark.parametrize("A", _symmetric_cases(), ids=lambda A: f"n{A.shape[0]}")
def test_symmetric_eigen_matches_lapack(A):
    n = A.shape[0]
    vals = np.empty(n)
    vecs = np.empty((n, n))
    symmetric_eigen(A, vals, vecs)
    scale = max(1.0, np.abs(A).max())
    np.testing.assert_allclose(vals, np.linalg.eigvalsh(A), rtol=0, atol=1e-13 * scale)
    assert np.all(np.diff(vals) >= 0)
    np.testing.assert_allclose(vecs.T @ vecs, np.eye(n), atol=1e-13)
    np.testing.assert_allclose(vecs @ np.diag(vals) @ vecs.T, A, atol=1e-12 * scale)


@pytest.mark.parametrize("A", _symmetric_cases(), ids=lambda A: f"n{A.shape[0]}")
def test_symmetric_pinv_matches_numpy(A):
    out = np.empty_like(A)
    _symmetric_pinv(A, out)
    expected = np.linalg.pinv(A)
    np.testing.assert_allclose(
        out, expected, rtol=1e-9, atol=1e-9 * max(1.0, np.abs(expected).max())
    )


def test_level_moments_match_numpy_with_singular_levels():
    rng = np.random.default_rng(3)
    s, nl = 3, 9
    G = np.empty((nl, s, s))
    g = rng.standard_normal((nl, s))
    for lv in range(nl):
        Z = rng.standard_normal((6, s))
        if lv % 3 == 0:
            Z[:, 2] = Z[:, 1]  # a level that does not identify every effect
        G[lv] = Z.T @ Z
    spread, sampling, gram = level_moments(G, g)
    Gi = [np.linalg.pinv(G[lv]) for lv in range(nl)]
    b = np.array([Gi[lv] @ g[lv] for lv in range(nl)])
    np.testing.assert_allclose(spread, b.T @ b / nl, rtol=1e-8)
    np.testing.assert_allclose(sampling, sum(Gi) / nl, rtol=1e-8)
    np.testing.assert_allclose(gram, G.sum(axis=0), rtol=1e-14)


def test_moment_template_floors_indefinite_matrices_like_lapack():
    S = np.array([[2.0, 1.9, 0.0], [1.9, 1.0, 0.3], [0.0, 0.3, -0.5]])
    ok, L = moment_template(S)
    vals, vecs = np.linalg.eigh(S)
    floored = (vecs * np.maximum(vals, 1e-3 * vals.max())) @ vecs.T
    assert ok
    np.testing.assert_allclose(L @ L.T, floored, rtol=1e-12, atol=1e-13)
