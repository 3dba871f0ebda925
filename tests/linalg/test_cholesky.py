"""The blocked factorization against a direct dense computation of the marginal likelihood.

For y ~ N(X beta, sigma^2 V0), V0 = Z Lambda Lambda' Z' + W^-1, profiling out beta (GLS) and
sigma^2 gives

    ML:   -2 l   = n log(2 pi s2) + log|V0| + n,           s2 = r' V0^-1 r / n
    REML: -2 l_R = (n-p) log(2 pi s2) + log|V0| + log|X' V0^-1 X| + (n-p),  s2 = r'V0^-1 r/(n-p)

with r = y - X beta_GLS. These are formed here with dense n x n matrices on small problems and
compared with the blocked computation for random theta, on designs that exercise every storage
type of L (block diagonal, block sparse with fill-in, dense) and every kernel.
"""

from __future__ import annotations

import zlib

import numpy as np
import pandas as pd
import pytest

from mixedmodels.formula.design import build_design
from mixedmodels.linalg.cholesky import BlockedCholesky
from mixedmodels.lmm import LinearMixedModel


def _dense_Z(design) -> np.ndarray:
    blocks = []
    for t in design.terms:
        z = t.z_values()
        Zt = np.zeros((design.nobs, t.n_ranef))
        for s in range(t.n_effects):
            Zt[np.arange(design.nobs), t.refs * t.n_effects + s] = z[s]
        blocks.append(Zt)
    return np.hstack(blocks)


def _dense_Lambda(model, theta) -> np.ndarray:
    Ts = model.layout.templates(theta)
    mats = [np.kron(np.eye(t.nlevels), Ts[j]) for j, t in enumerate(model.design.terms)]
    q = sum(m.shape[0] for m in mats)
    out = np.zeros((q, q))
    k = 0
    for m in mats:
        out[k : k + m.shape[0], k : k + m.shape[0]] = m
        k += m.shape[0]
    return out


def dense_reference(model: LinearMixedModel, theta: np.ndarray, reml: bool) -> dict:
    d = model.design
    n, p = d.nobs, d.n_fixef
    y = d.y if d.offset is None else d.y - d.offset
    X = d.X
    w = np.ones(n) if d.weights is None else d.weights
    Z = _dense_Z(d)
    Lam = _dense_Lambda(model, theta)
    ZL = Z @ Lam
    V0 = ZL @ ZL.T + np.diag(1.0 / w)
    V0i = np.linalg.inv(V0)
    XtVi = X.T @ V0i
    beta = np.linalg.solve(XtVi @ X, XtVi @ y)
    r = y - X @ beta
    rss = float(r @ V0i @ r)
    logdetV = np.linalg.slogdet(V0)[1]
    if reml:
        s2 = rss / (n - p)
        dev = (n - p) * np.log(2 * np.pi * s2) + logdetV + np.linalg.slogdet(XtVi @ X)[1] + (n - p)
    else:
        s2 = rss / n
        dev = n * np.log(2 * np.pi * s2) + logdetV + n
    # conditional modes b = Lambda Lambda' Z' V0^-1 r and their conditional covariance
    b = Lam @ ZL.T @ V0i @ r
    W = np.diag(w)
    M = np.linalg.inv(ZL.T @ W @ ZL + np.eye(Z.shape[1]))
    condvar = s2 * Lam @ M @ Lam.T
    return {"deviance": dev, "beta": beta, "b": b, "condvar": condvar, "sigma2": s2}


def _seed(name: str) -> int:
    return zlib.crc32(name.encode()) % 1000


def _simulate(seed: int, n: int, levels: dict[str, int], nested: dict[str, str] | None = None):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"x": rng.normal(size=n), "z": rng.uniform(-1, 1, size=n)})
    for name, k in levels.items():
        df[name] = rng.integers(0, k, size=n)
    for child, parent in (nested or {}).items():
        # child levels nested within parent levels
        df[child] = df[parent] * 1000 + rng.integers(0, 3, size=n)
    df["y"] = 1.0 + 0.5 * df["x"] + rng.normal(size=n)
    for name in list(levels) + list(nested or {}):
        df["y"] += rng.normal(size=df[name].max() + 1)[df[name] % (df[name].max() + 1)]
    df["w"] = rng.uniform(0.5, 2.0, size=n)
    return df


DESIGNS = {
    # one scalar term: block-diagonal L, no compiled kernels
    "scalar": ("y ~ x + (1 | a)", dict(n=120, levels={"a": 15})),
    # one vector term (S = 2) and a 3 x 3 one
    "vector": ("y ~ x + (1 + x | a)", dict(n=150, levels={"a": 12})),
    "vector3": ("y ~ x + (1 + x + z | a)", dict(n=200, levels={"a": 10})),
    # crossed scalar terms: dense second diagonal block
    "crossed": ("y ~ x + (1 | a) + (1 | b)", dict(n=160, levels={"a": 20, "b": 9})),
    # nested: second diagonal block stays block diagonal
    "nested": ("y ~ x + (1 | c) + (1 | a)", dict(n=180, levels={"a": 8}, nested={"c": "a"})),
    # nested with vector-valued terms (S = 2 in both)
    "nested_vector": (
        "y ~ x + (1 + x | c) + (1 + x | a)",
        dict(n=240, levels={"a": 6}, nested={"c": "a"}),
    ),
    # mixed sizes: vector term crossed with a scalar term
    "crossed_mixed": ("y ~ x + (1 + x | a) + (1 | b)", dict(n=200, levels={"a": 18, "b": 7})),
    # three terms: nested pair plus a crossing factor -> block-sparse fill-in below the diagonal
    "three_terms": (
        "y ~ x + (1 | c) + (1 | a) + (1 | b)",
        dict(n=300, levels={"a": 150, "b": 120}, nested={"c": "a"}),
    ),
    # two terms on one factor
    "same_factor": ("y ~ x + (1 | a) + (0 + x | a)", dict(n=140, levels={"a": 14})),
}


@pytest.fixture(scope="module", params=sorted(DESIGNS))
def design_case(request):
    formula, spec = DESIGNS[request.param]
    df = _simulate(_seed(request.param), **spec)
    return request.param, formula, df


@pytest.mark.parametrize("reml", [True, False])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("dense_fill", [0.0, 0.1, 1.0])
def test_objective_matches_dense_likelihood(design_case, reml, weighted, dense_fill):
    _, formula, df = design_case
    design = build_design(formula, df, weights="w" if weighted else None)
    model = LinearMixedModel.from_design(design, reml=reml)
    rng = np.random.default_rng(7)
    lower = model.lower_bounds
    for _ in range(3):
        theta = np.where(
            np.isfinite(lower),
            rng.uniform(0.2, 1.5, size=lower.size),
            rng.normal(0, 0.4, size=lower.size),
        )
        ws = BlockedCholesky(model.A, dense_fill=dense_fill)
        assert ws.update(theta)
        ref = dense_reference(model, theta, reml)
        assert ws.objective(reml) == pytest.approx(ref["deviance"], rel=1e-10)
        beta = ws.beta()  # for the residualized response (see LinearMixedModel.beta_shift)
        np.testing.assert_allclose(beta + model.beta_shift, ref["beta"], rtol=1e-8, atol=1e-10)
        Ts = model.layout.templates(theta)
        u = ws.spherical_modes(beta)
        b = np.concatenate(
            [
                (u[j].reshape(t.nlevels, t.n_effects) @ Ts[j].T).ravel()
                for j, t in enumerate(design.terms)
            ]
        )
        np.testing.assert_allclose(b, ref["b"], rtol=1e-7, atol=1e-9)
        # conditional covariance: diagonal blocks of s2 Lambda inv(Lambda'Z'WZ Lambda + I) Lambda'
        s2 = ws.pwrss() / (design.nobs - (design.n_fixef if reml else 0))
        assert s2 == pytest.approx(ref["sigma2"], rel=1e-9)
        k = 0
        for j, t in enumerate(design.terms):
            blocks = s2 * np.matmul(Ts[j], np.matmul(ws.inverse_diag_blocks(j), Ts[j].T))
            S = t.n_effects
            for lv in range(t.nlevels):
                sl = slice(k + lv * S, k + (lv + 1) * S)
                np.testing.assert_allclose(
                    blocks[lv], ref["condvar"][sl, sl], rtol=1e-7, atol=1e-12
                )
            k += t.n_ranef


def test_storage_types_are_exercised():
    """The designs above really cover block-diagonal, block-sparse and dense blocks of L."""
    kinds = set()
    for name, (formula, spec) in DESIGNS.items():
        df = _simulate(_seed(name), **spec)
        model = LinearMixedModel.from_formula(formula, df)
        ws = model.workspace()
        kinds |= {("diag", "dense" if d else "blockdiag") for d in ws.diag_dense}
        kinds |= {("off", k) for k in ws.off_kind.values() if k is not None}
    assert kinds >= {("diag", "dense"), ("diag", "blockdiag"), ("off", "bs"), ("off", "dense")}


def test_three_terms_use_sparse_updates_of_sparse_blocks():
    """L[2,1] -= L[2,0] L[1,0]' with all three blocks sparse (the bs_bs_t_bs kernel)."""
    formula, spec = DESIGNS["three_terms"]
    df = _simulate(_seed("three_terms"), **spec)
    model = LinearMixedModel.from_formula(formula, df)
    ws = BlockedCholesky(model.A, dense_fill=1.0)
    assert ws.diag_dense == [False, False, True]
    assert ws.off_kind == {(1, 0): "bs", (2, 0): "bs", (2, 1): "bs"}


def test_objective_is_finite_at_zero_and_large_theta(design_case):
    _, formula, df = design_case
    model = LinearMixedModel.from_formula(formula, df)
    lower = model.lower_bounds
    assert np.isfinite(model.objective(np.where(np.isfinite(lower), 0.0, 0.0)))
    assert np.isfinite(model.objective(np.where(np.isfinite(lower), 50.0, 5.0)))


def test_diagonal_positions_are_where_is_diagonal_is_true():
    from mixedmodels.linalg.cholesky import ThetaLayout

    for sizes in [(1,), (2,), (2, 1, 3), (4, 4)]:
        layout = ThetaLayout(sizes)
        assert layout.diagonal_positions() == tuple(np.flatnonzero(layout.is_diagonal()))


@pytest.mark.parametrize("sizes", [(1,), (2, 1), (3, 1, 2)])
def test_unit_start_is_the_scaled_start_with_unit_scales(sizes: tuple[int, ...]) -> None:
    from mixedmodels.linalg.cholesky import ThetaLayout

    layout = ThetaLayout(sizes)
    theta, step = layout.unit_start()
    ref = layout.scaled_start([np.ones(s) for s in sizes])
    np.testing.assert_array_equal(theta, ref[0])
    np.testing.assert_array_equal(step, ref[1])
    assert not theta.flags.writeable and not step.flags.writeable
    assert layout.unit_start()[0] is theta  # made once per sizes
