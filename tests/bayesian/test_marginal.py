"""The integrated (marginal) Gaussian likelihood and the conditional draws of the group-level
effects, against dense linear algebra on the n x n marginal covariance."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

pytest.importorskip("numpyro")

import mixedmodels as mm
from mixedmodels.bayesian.marginal import conditional_effects, effects_draws, marginal_loglik


def _data(seed: int = 3, n: int = 150) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "y": rng.normal(50, 10, n),
            "x": rng.normal(2, 1.5, n),
            "f": rng.choice(["a", "b", "c"], n),
            "g": rng.integers(0, 9, n).astype(str),
            "h": rng.integers(0, 5, n).astype(str),
            "k": rng.integers(0, 4, n).astype(str),
            "w": rng.uniform(0.5, 2.0, n),
            "o": rng.normal(0, 1, n),
        }
    )


FORMULAS = [
    "y ~ x + (1 | g)",
    "y ~ x + f + (x | g)",
    "y ~ x + (1 | g) + (1 | h)",
    "y ~ x + f + (x | g) + (1 | h) + (0 + x | k)",
    "y ~ x + (x | g) + (x | h)",
]


def _random_params(model, rng):
    d = model.data
    beta_c = rng.normal(0, 1, d.p) + np.r_[50, np.zeros(d.p - 1)]
    sigma = rng.uniform(3, 12)
    Ts = []
    for t in d.terms:
        S = t.n_effects
        A = rng.normal(0, 1, (S, S))
        L = np.linalg.cholesky(A @ A.T + S * np.eye(S))
        Ts.append(L * rng.uniform(1, 6))
    return beta_c, sigma, Ts


def _dense(model, beta_c, sigma, Ts):
    """Dense marginal covariance V = sigma^2 W^-1 + Z Sigma Z' and mean X beta + offset."""
    d = model.data
    n = d.nobs
    Z_blocks, Sig_blocks = [], []
    for t, T in zip(d.terms, Ts, strict=True):
        z = np.ones((1, n)) if t.z is None else t.z
        for s in range(t.n_effects):
            Zs = np.zeros((n, t.nlevels))
            Zs[np.arange(n), t.refs] = z[s]
            Z_blocks.append((Zs, s))
        Sig_blocks.append(T @ T.T)
    # Z with columns level-major within each term
    cols = []
    covs = []
    for t, T in zip(d.terms, Ts, strict=True):
        z = np.ones((1, n)) if t.z is None else t.z
        Zt = np.zeros((n, t.nlevels * t.n_effects))
        for s in range(t.n_effects):
            Zt[np.arange(n), t.refs * t.n_effects + s] = z[s]
        cols.append(Zt)
        covs.append(np.kron(np.eye(t.nlevels), T @ T.T))
    Z = np.hstack(cols)
    from scipy.linalg import block_diag

    Sigma = block_diag(*covs)
    w = d.weights if d.weights is not None else np.ones(n)
    V = sigma**2 * np.diag(1 / w) + Z @ Sigma @ Z.T
    mean = d.X @ beta_c + (d.offset if d.offset is not None else 0)
    return Z, Sigma, V, mean


def _blocks(model, xp):
    B = model.data.marginal
    sizes = [(t.nlevels, t.n_effects) for t in model.data.terms]
    if xp is np:
        return {k: v for k, v in B.items() if k != "sizes"}, sizes
    return {k: xp.asarray(v) for k, v in B.items() if k != "sizes"}, sizes


@pytest.mark.parametrize("formula", FORMULAS)
@pytest.mark.parametrize("weighted", [False, True])
def test_marginal_loglik_matches_dense_normal(formula, weighted):
    import jax.numpy as jnp

    import mixedmodels.bayesian._jax  # noqa: F401  (double precision)

    df = _data()
    kw = {"weights": "w", "offset": "o"} if weighted else {}
    model = mm.bayes(formula, df, marginalize=True, **kw)
    assert model.marginal
    rng = np.random.default_rng(11)
    draws = [_random_params(model, rng) for _ in range(3)]
    expected = []
    for beta_c, sigma, Ts in draws:
        _, _, V, mean = _dense(model, beta_c, sigma, Ts)
        expected.append(stats.multivariate_normal(mean, V).logpdf(model.data.y))
    for xp in (np, jnp):
        B, sizes = _blocks(model, xp)
        for (beta_c, sigma, Ts), want in zip(draws, expected, strict=True):
            delta = xp.asarray(beta_c - model.data.marginal["shift"])
            Tx = [xp.asarray(T) for T in Ts]
            got = float(marginal_loglik(B, sizes, delta, xp.asarray(sigma), Tx, xp))
            assert got == pytest.approx(want, rel=1e-10, abs=1e-8)
    # numpy, batched over the three parameter values at once
    B, sizes = _blocks(model, np)
    delta = np.stack([b - model.data.marginal["shift"] for b, _, _ in draws])
    sigma = np.array([s for _, s, _ in draws])
    Ts = [np.stack([d[2][j] for d in draws]) for j in range(len(sizes))]
    got = marginal_loglik(B, sizes, delta, sigma, Ts, np)
    np.testing.assert_allclose(got, expected, rtol=1e-10)


@pytest.mark.parametrize("formula", FORMULAS)
def test_conditional_effects_match_dense(formula):
    import jax.numpy as jnp

    import mixedmodels.bayesian._jax  # noqa: F401  (double precision)

    df = _data(5)
    model = mm.bayes(formula, df, weights="w", marginalize=True)
    rng = np.random.default_rng(2)
    beta_c, sigma, Ts = _random_params(model, rng)
    Z, Sigma, V, mean = _dense(model, beta_c, sigma, Ts)
    expected = Sigma @ Z.T @ np.linalg.solve(V, model.data.y - mean)
    delta = beta_c - model.data.marginal["shift"]
    for xp in (np, jnp):
        B, sizes = _blocks(model, xp)
        bs = conditional_effects(
            B, sizes, xp.asarray(delta), xp.asarray(sigma), [xp.asarray(T) for T in Ts], xp
        )
        got = np.concatenate([np.asarray(b).ravel() for b in bs])
        np.testing.assert_allclose(got, expected, rtol=1e-8, atol=1e-8)
    # the draws scatter around the mean with the conditional covariance
    B, sizes = _blocks(model, np)
    N = 4000
    bs = effects_draws(
        B,
        sizes,
        np.tile(delta, (N, 1)),
        np.full(N, sigma),
        [np.tile(T, (N, 1, 1)) for T in Ts],
        np.random.default_rng(1),
        memory=2e6,  # several batches
    )
    draws = np.concatenate([b.reshape(N, -1) for b in bs], axis=1)
    w = model.data.weights
    cond_cov = np.linalg.inv(np.linalg.inv(Sigma) + Z.T @ np.diag(w) @ Z / sigma**2)
    z = (draws.mean(axis=0) - expected) / np.sqrt(np.diag(cond_cov) / N)
    assert np.max(np.abs(z)) < 5
    np.testing.assert_allclose(np.cov(draws.T), cond_cov, atol=0.1 * np.max(np.diag(cond_cov)))


def test_marginal_loglik_at_the_ml_fit_is_the_ml_deviance():
    """At the ML estimates the integrated likelihood is lmer's maximized log-likelihood."""
    sleep = mm.datasets.load("sleepstudy")
    f = "Reaction ~ Days + (Days | Subject)"
    ml = mm.lmer(f, sleep, reml=False)
    model = mm.bayes(f, sleep)
    B, sizes = _blocks(model, np)
    delta = model.data.centre(ml.beta) - B["shift"]
    Ts = [np.linalg.cholesky(ml.varcorr.terms[0].cov)]
    got = float(marginal_loglik(B, sizes, delta, np.asarray(ml.sigma), Ts, np))
    assert got == pytest.approx(ml.loglik, rel=1e-10)
