"""The compiled objective and its exact gradient (FastObjective) against the blocked
factorization (itself checked against dense marginal likelihoods in test_cholesky.py) and
against finite differences of that objective.

The designs cover what the kernels distinguish: scalar and vector-valued first terms, nested
and crossed rest terms, vector-valued rest terms, prior weights, REML and ML, levels handled
through the dense (BLAS) path and entry by entry, and a response swapped for the bootstrap.
"""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
import pytest

import mixedmodels as mm
from mixedmodels.linalg.fast_lmm import FastObjective
from mixedmodels.lmm import LinearMixedModel


def _crossed(n: int = 4000, seed: int = 5) -> pd.DataFrame:
    """400 x 250 crossed levels; power-law activity of a, so that some of its levels are
    coupled to many levels of b (the dense path) and most to few."""
    rng = np.random.default_rng(seed)
    w = 1.0 / np.arange(1, 401) ** 1.2
    a = np.concatenate([np.arange(400), rng.choice(400, n - 400, p=w / w.sum())])
    b = np.concatenate([np.arange(250), rng.integers(0, 250, n - 250)])
    x = rng.normal(size=n)
    ua, ub = rng.normal(size=400), 0.7 * rng.normal(size=250)
    y = 1 + 0.5 * x + ua[a] + ub[b] + rng.normal(size=n)
    return pd.DataFrame(
        {
            "y": y,
            "x": x,
            "a": [f"a{i}" for i in a],
            "b": [f"b{i}" for i in b],
            "w": rng.uniform(0.5, 2.0, n),
        }
    )


def _crossed_vector(seed: int = 7) -> pd.DataFrame:
    """40 x 30 fully crossed levels, two rows per cell, correlated intercepts and two slopes by
    both factors: every level of the first term is coupled to all of the rest, with three
    effects (the gradient's matrix-product path for a level)."""
    rng = np.random.default_rng(seed)
    a = np.repeat(np.arange(40), 60)
    b = np.tile(np.repeat(np.arange(30), 2), 40)
    x = rng.choice([-0.5, 0.5], a.size)
    z = rng.normal(size=a.size)
    ua = rng.normal(size=(40, 3)) @ np.array([[1.0, 0.3, 0.2], [0.0, 0.5, 0.1], [0.0, 0.0, 0.4]])
    ub = rng.normal(size=(30, 3)) * [0.8, 0.4, 0.3]
    X = np.column_stack([np.ones_like(x), x, z])
    y = X @ [1.0, 0.5, -0.3] + np.einsum("ij,ij->i", X, ua[a] + ub[b]) + rng.normal(size=a.size)
    return pd.DataFrame({"y": y, "x": x, "z": z, "a": a, "b": b})


CASES = {
    "slope": ("sleepstudy", "Reaction ~ Days + (Days | Subject)", None),
    "uncorrelated": ("sleepstudy", "Reaction ~ Days + (1 | Subject) + (0 + Days | Subject)", None),
    "crossed_small": ("Penicillin", "diameter ~ 1 + (1 | plate) + (1 | sample)", None),
    "nested": ("Pastes", "strength ~ 1 + (1 | batch/cask)", None),
    "vector_rest": ("Machines", "score ~ Machine + (1 | Worker) + (0 + Machine | Worker)", None),
    "crossed": ("crossed", "y ~ x + (1 | a) + (1 | b)", None),
    "crossed_slopes": ("crossed", "y ~ x + (1 | a) + (x | b)", None),
    "weighted": ("crossed", "y ~ x + (1 | a) + (1 | b)", "w"),
    "crossed_vector": ("crossed_vector", "y ~ x + z + (1 + x + z | a) + (1 + x + z | b)", None),
}


@functools.cache
def _model(case: str, reml: bool) -> LinearMixedModel:
    data, formula, weights = CASES[case]
    makers = {"crossed": _crossed, "crossed_vector": _crossed_vector}
    df = makers[data]() if data in makers else mm.datasets.load(data)
    return LinearMixedModel.from_formula(formula, df, reml=reml, weights=weights)


def _theta(model: LinearMixedModel) -> np.ndarray:
    rng = np.random.default_rng(len(model.lower_bounds))
    theta, _ = model.initial_theta()
    theta = theta * rng.uniform(0.5, 1.5, theta.size)
    free = ~np.isfinite(model.lower_bounds)
    return np.where(free, rng.uniform(-0.3, 0.3, theta.size) * theta, theta)


@pytest.mark.parametrize("reml", [True, False], ids=["REML", "ML"])
@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("heavy_share", [0.07, 0.0, 10.0], ids=["auto", "all-dense", "none"])
def test_objective_and_gradient(case, reml, heavy_share, monkeypatch):
    monkeypatch.setattr(FastObjective, "heavy_share", heavy_share)
    if heavy_share == 0.0:
        monkeypatch.setattr(FastObjective, "heavy_min", 0)
    model = _model(case, reml)
    fo = FastObjective(model.A, model.layout, reml)
    if heavy_share == 0.0 and fo.m >= 200:
        assert fo.heavy.size == np.diff(fo.cptr).size  # every level through the BLAS path
    theta = _theta(model)
    expected = model.objective(theta)
    value, grad = fo.objective_gradient(theta)
    assert value == pytest.approx(expected, rel=1e-11, abs=1e-9)
    assert fo.objective(theta) == pytest.approx(expected, rel=1e-11, abs=1e-9)
    h = 1e-6 * np.maximum(1.0, np.abs(theta))
    for i in range(theta.size):
        e = np.zeros_like(theta)
        e[i] = h[i]
        numeric = (model.objective(theta + e) - model.objective(theta - e)) / (2 * h[i])
        assert grad[i] == pytest.approx(numeric, rel=1e-5, abs=1e-5 * max(1.0, abs(expected)))


def test_the_vector_valued_case_takes_the_matrix_product_path():
    from mixedmodels.linalg.lmm_kernels import _DENSE_LEVEL

    for reml in (True, False):
        fo = _model("crossed_vector", reml).fast_objective()
        active = fo.m_u + fo.p if reml else fo.m_u
        assert fo.A11.shape[1] == 3
        assert np.all(np.diff(fo.cptr) >= active) and active * 3 >= _DENSE_LEVEL


def test_levels_split_between_dense_and_entrywise_updates():
    model = _model("crossed", False)
    fo = FastObjective(model.A, model.layout, False)
    assert fo.m >= 200
    assert 0 < fo.heavy.size < np.diff(fo.cptr).size


def test_with_response_matches_a_fresh_objective():
    model = _model("crossed", True)
    fo = model.fast_objective()
    assert fo is not None
    rng = np.random.default_rng(11)
    y_new = model.design.y + rng.normal(size=model.nobs)
    other = model.with_response(y_new)
    theta = _theta(model)
    v1, g1 = other.fast_objective().objective_gradient(theta)
    v2, g2 = FastObjective(other.A, other.layout, True).objective_gradient(theta)
    assert v1 == pytest.approx(v2, rel=1e-12)
    np.testing.assert_allclose(g1, g2, rtol=1e-9, atol=1e-9)
    assert v1 == pytest.approx(other.objective(theta), rel=1e-11)


SMALL = ["slope", "uncorrelated", "crossed_small", "nested", "vector_rest"]


@pytest.mark.parametrize("reml", [True, False], ids=["REML", "ML"])
@pytest.mark.parametrize("case", SMALL)
def test_small_rest_in_one_call_matches_lapack(case, reml, monkeypatch):
    """A small rest is factored and inverted by the kernels in one call; LAPACK's
    factorization gives the same criterion and gradient to rounding."""
    model = _model(case, reml)
    fused = FastObjective(model.A, model.layout, reml)
    assert fused.small
    monkeypatch.setattr(FastObjective, "small_rest", 0)
    lapack = FastObjective(model.A, model.layout, reml)
    assert not lapack.small
    theta = _theta(model)
    v1, g1 = fused.objective_gradient(theta)
    v2, g2 = lapack.objective_gradient(theta)
    assert v1 == pytest.approx(v2, rel=1e-13)
    np.testing.assert_allclose(g1, g2, rtol=1e-9, atol=1e-9 * max(1.0, abs(v1)))
    assert fused.objective(theta) == v1


@pytest.mark.parametrize("reml", [True, False], ids=["REML", "ML"])
@pytest.mark.parametrize("case", [*SMALL, "crossed", "weighted"])
def test_solution_matches_the_blocked_factor(case, reml):
    """beta, u, r^2, the fixed-effects block of L and both criteria from the compiled
    objective's factor, against the blocked factorization."""
    model = _model(case, reml)
    fo = FastObjective(model.A, model.layout, reml)
    theta = _theta(model)
    sol = fo.solution(theta)
    assert sol is not None
    ws = model.workspace()
    assert ws.update(theta)
    beta = ws.beta()  # of the residualized response: rounding-level numbers plus beta_shift
    scale = max(1.0, float(np.abs(model.beta_shift).max()))
    np.testing.assert_allclose(sol.beta, beta, rtol=1e-9, atol=1e-10 * scale)
    for u_fast, u_ws in zip(sol.u, ws.spherical_modes(beta), strict=True):
        np.testing.assert_allclose(u_fast, u_ws, rtol=1e-8, atol=1e-9 * np.abs(u_ws).max())
    assert sol.pwrss == pytest.approx(ws.pwrss(), rel=1e-11)
    p = model.n_fixef
    np.testing.assert_allclose(np.abs(sol.L_X), np.abs(ws.Lxyxy[:p, :p]), rtol=1e-10, atol=1e-12)
    assert sol.reml_criterion == pytest.approx(ws.objective(True), rel=1e-12)
    assert sol.ml_deviance == pytest.approx(ws.objective(False), rel=1e-12)


def test_the_last_factor_is_reused_and_never_stale(monkeypatch):
    """The estimates at the last theta evaluated reuse its factor; another theta, another
    response (the bootstrap) or a released objective factor afresh, with the same numbers."""
    model = _model("crossed", True)
    fo = FastObjective(model.A, model.layout, True)
    made = []
    new_factor = FastObjective._new_factor

    def counting(self, theta):
        made.append(np.array(theta))
        return new_factor(self, theta)

    monkeypatch.setattr(FastObjective, "_new_factor", counting)
    theta = _theta(model)
    value, _ = fo.objective_gradient(theta)
    fresh = FastObjective(model.A, model.layout, True).solution(theta.copy())
    sol = fo.solution(theta.copy())  # the same theta (another array): no new factor
    assert len(made) == 2  # this objective's and the fresh one's
    assert sol.reml_criterion == value
    np.testing.assert_array_equal(sol.beta, fresh.beta)
    fo.objective(theta * 1.1)  # another theta: factored
    assert len(made) == 3
    rng = np.random.default_rng(3)
    other = model.with_response(model.design.y + rng.normal(size=model.nobs))
    swapped = fo.with_response(other.A)
    assert swapped.solution(theta * 1.1) is not None and len(made) == 4  # not the old factor
    reference = FastObjective(other.A, model.layout, True).solution(theta * 1.1)
    assert len(made) == 5
    assert swapped.solution(theta * 1.1).pwrss == pytest.approx(reference.pwrss, rel=1e-12)
    assert len(made) == 5  # the swapped objective's own last factor
    fo.release()
    fo.objective(theta * 1.1)
    assert len(made) == 6  # released: factored again


def test_a_fit_keeps_no_factor_in_the_model():
    model = _model("crossed", True)
    model.fit(progress=False)
    assert model.fast_objective()._last is None


@pytest.mark.parametrize("case", ["slope", "crossed_small", "nested", "crossed", "crossed_slopes"])
@pytest.mark.parametrize("heavy_share", [0.07, 0.0], ids=["auto", "all-heavy"])
def test_coupling_layout_is_the_coupling_of_each_level(case, heavy_share, monkeypatch):
    """Level l's entries are the nonzero rows of the rest coupled to it (the terms' rows, then
    X's and y's, by increasing row), with A's values; the runs the entry-by-entry kernels
    visit cover every entry of the levels that are not heavy once, block by block."""
    monkeypatch.setattr(FastObjective, "heavy_share", heavy_share)
    monkeypatch.setattr(FastObjective, "heavy_min", 0 if heavy_share == 0.0 else 64)
    model = _model(case, True)
    fo = FastObjective(model.A, model.layout, True)
    A = model.A
    l1, S1 = A.diag[0].shape[0], A.diag[0].shape[1]
    # the dense coupling of the rest (terms 1.., then X and y) to each column of the first term
    parts = [A.off[(k, 0)].to_dense() if (k, 0) in A.off
             else np.zeros((A.diag[k].shape[0] * A.diag[k].shape[1], l1 * S1))
             for k in range(1, A.nterms)]  # fmt: skip
    dense = np.vstack([*parts, A.xy[0]])
    assert dense.shape[0] == fo.m
    for lv in range(l1):
        block = dense[:, lv * S1 : (lv + 1) * S1]
        rows = fo.crow[fo.cptr[lv] : fo.cptr[lv + 1]]
        assert np.all(np.diff(rows) > 0)
        np.testing.assert_array_equal(fo.cval[fo.cptr[lv] : fo.cptr[lv + 1]], block[rows])
        others = np.setdiff1d(np.arange(fo.m), rows)
        assert not np.any(block[others])
        assert set(rows[rows >= fo.m_u]) == set(range(fo.m_u, fo.m))
    heavy = set(fo.heavy.tolist())
    seen = np.zeros(fo.cptr[-1], dtype=int)
    blocks = []
    for lv, beg, end in zip(fo.plev, fo.pbeg, fo.pend, strict=True):
        assert lv not in heavy and fo.cptr[lv] <= beg < end <= fo.cptr[lv + 1]
        assert len(set((fo.crow[beg:end] // fo.row_block).tolist())) == 1
        blocks.append(fo.crow[beg] // fo.row_block)
        seen[beg:end] += 1
    assert np.all(np.diff(blocks) >= 0)
    light = np.repeat([lv not in heavy for lv in range(l1)], np.diff(fo.cptr))
    np.testing.assert_array_equal(seen, light.astype(int))
    if heavy_share == 0.0 and fo.m >= 200:
        assert fo.heavy.size == l1 and fo.plev.size == 0


@pytest.mark.parametrize("reml", [True, False], ids=["REML", "ML"])
@pytest.mark.parametrize("case", ["crossed", "weighted"])
def test_scalar_information_from_the_dense_inverse(case, reml):
    """Each theta's information in log theta, 4 sum_i (1 - Sigma_ii)^2 over its term's
    levels, against Sigma computed densely: the inverse of Lambda'Z'WZ Lambda + I (ML) or of
    the (Z, X) block of the whole system (REML)."""
    model = _model(case, reml)
    fo = FastObjective(model.A, model.layout, reml)
    assert not fo.small and fo.scalar_terms
    theta = _theta(model)
    value, grad, info = fo.objective_gradient_information(theta)
    ref_value, ref_grad = fo.objective_gradient(theta)
    assert value == ref_value
    np.testing.assert_array_equal(grad, ref_grad)
    design = model.design
    w = np.ones(design.nobs) if design.weights is None else np.asarray(design.weights)
    Z = np.hstack([np.eye(t.nlevels)[t.refs] * theta[k] for k, t in enumerate(model.terms_data)])
    q = Z.shape[1]
    W = np.hstack([Z, design.X]) if reml else Z
    M = W.T @ (w[:, None] * W)
    M[:q, :q] += np.eye(q)
    r = 1.0 - np.diag(np.linalg.inv(M))[:q]
    term = np.repeat(np.arange(len(model.terms_data)), [t.nlevels for t in model.terms_data])
    expected = [4.0 * np.sum(r[term == k] ** 2) for k in range(theta.size)]
    np.testing.assert_allclose(info, expected, rtol=1e-10)


def test_no_information_where_a_term_is_vector_valued_or_the_model_small():
    for case in ("crossed_slopes", "crossed_small"):
        model = _model(case, True)
        fo = FastObjective(model.A, model.layout, True)
        value, _, info = fo.objective_gradient_information(_theta(model))
        assert info is None
        assert value == pytest.approx(model.objective(_theta(model)), rel=1e-11)


@pytest.mark.parametrize("case", ["crossed_vector", "crossed"])
def test_the_gradient_gives_the_first_terms_blocks_of_sigma(case):
    """The gradient kernel's optional output: each level's diagonal block of Sigma for the
    first term (vector-valued levels through the matrix-product path), against the dense
    inverse of Lambda'Z'Z Lambda + I."""
    from mixedmodels.linalg import lmm_kernels as K

    model = _model(case, False)
    fo = FastObjective(model.A, model.layout, False)
    theta = _theta(model)
    ok, L11, C, L22 = fo._factor(theta)
    assert ok
    sig = np.linalg.inv(L22[: fo.m_u, : fo.m_u] @ L22[: fo.m_u, : fo.m_u].T)
    sig11 = np.zeros(L11.shape)
    grad = np.zeros(theta.size)
    K.gradient(
        theta, fo.sizes, fo.toff, fo.A11, fo.cval, fo.cptr, fo.crow, fo.rowterm, fo.rowgrp,
        fo.A22, fo.rterm, fo.rlev, fo.roff, fo.rsize, fo.m_u, fo.p, False, float(fo.n), L11, C,
        L22, sig, fo.heavy, fo.plev, fo.pbeg, fo.pend, grad, sig11, True,
    )  # fmt: skip
    np.testing.assert_allclose(grad, fo.objective_gradient(theta)[1], rtol=1e-9)
    T = K.templates(theta, fo.sizes, fo.toff)
    blocks = []
    for k, t in enumerate(model.terms_data):
        s = t.n_effects
        z = np.ones((1, model.nobs)) if t.z is None else t.z
        Zk = np.zeros((model.nobs, t.nlevels * s))
        for e in range(s):
            Zk[np.arange(model.nobs), t.refs * s + e] = z[e]
        blocks.append(Zk @ np.kron(np.eye(t.nlevels), T[k, :s, :s]))
    Z = np.hstack(blocks)
    full = np.linalg.inv(Z.T @ Z + np.eye(Z.shape[1]))
    s1 = model.terms_data[0].n_effects
    for lv in range(model.terms_data[0].nlevels):
        block = full[lv * s1 : (lv + 1) * s1, lv * s1 : (lv + 1) * s1]
        np.testing.assert_allclose(sig11[lv], block, rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("reml", [True, False], ids=["REML", "ML"])
@pytest.mark.parametrize("case", ["crossed", "weighted", "nested"])
@pytest.mark.parametrize("heavy_share", [0.07, 0.0], ids=["auto", "all-dense"])
def test_the_diagonal_gradient_equals_the_general_one(case, reml, heavy_share, monkeypatch):
    """Every term scalar: the gradient from the diagonal of Sigma equals the one from the
    general sums over the pattern of G, with the heavy levels' quadratic forms by one product
    or not; a theta below the threshold takes the general sums, and the gradient still matches
    differences of the criterion there."""
    from mixedmodels.linalg import lmm_kernels as K

    monkeypatch.setattr(FastObjective, "heavy_share", heavy_share)
    if heavy_share == 0.0:
        monkeypatch.setattr(FastObjective, "heavy_min", 0)
    model = _model(case, reml)
    fo = FastObjective(model.A, model.layout, reml)
    fo.small = False  # the LAPACK path, whatever the size
    theta = _theta(model)
    assert K._scalar_interior(theta, fo.sizes, fo.toff)
    ok, L11, C, L22 = fo._factor(theta)
    assert ok
    ma = fo.m_u + fo.p if reml else fo.m_u
    sig = np.linalg.inv(L22[:ma, :ma] @ L22[:ma, :ma].T)
    grads, blocks = [], []
    for diagonal in (True, False):
        grad, sig11 = np.zeros(theta.size), np.zeros(L11.shape)
        K.gradient(
            theta, fo.sizes, fo.toff, fo.A11, fo.cval, fo.cptr, fo.crow, fo.rowterm, fo.rowgrp,
            fo.A22, fo.rterm, fo.rlev, fo.roff, fo.rsize, fo.m_u, fo.p, reml, float(fo.n), L11,
            C, L22, sig, fo.heavy, fo.plev, fo.pbeg, fo.pend, grad, sig11, diagonal,
        )  # fmt: skip
        grads.append(grad)
        blocks.append(sig11)
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-9)
    np.testing.assert_allclose(blocks[0], blocks[1], rtol=1e-12)
    small = theta.copy()
    small[-1] = 1e-5
    assert not K._scalar_interior(small, fo.sizes, fo.toff)
    _, grad = fo.objective_gradient(small)
    e = np.zeros_like(small)
    e[-1] = 1e-7
    numeric = (model.objective(small + e) - model.objective(small - e)) / 2e-7
    assert grad[-1] == pytest.approx(numeric, rel=1e-4, abs=1e-6)
