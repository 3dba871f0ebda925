"""Families and links: R's definitions, derivatives, support checks, and the compiled copies."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy import stats

import mixedmodels as mm
from mixedmodels import _glmm_kernels as K
from mixedmodels.errors import DataError, ModelSpecError
from mixedmodels.families import LINKS, get_family

ETA = {
    "logit": np.array([-4.0, -1.3, 0.0, 0.7, 3.5]),
    "probit": np.array([-2.5, -0.8, 0.0, 0.4, 2.2]),
    "cauchit": np.array([-3.0, -0.5, 0.0, 0.9, 4.0]),
    "cloglog": np.array([-3.0, -1.0, 0.0, 0.5, 1.2]),
    "log": np.array([-2.0, -0.3, 0.0, 1.1, 2.5]),
    "identity": np.array([0.2, 0.9, 1.5, 3.0, 7.0]),
    "inverse": np.array([0.2, 0.9, 1.5, 3.0, 7.0]),
    "sqrt": np.array([0.2, 0.9, 1.5, 3.0, 7.0]),
    "1/mu^2": np.array([0.2, 0.9, 1.5, 3.0, 7.0]),
}


@pytest.mark.parametrize("name", sorted(LINKS))
def test_link_inverse_and_derivatives(name: str) -> None:
    link = LINKS[name]
    eta = ETA[name]
    mu = link.linkinv(eta)
    np.testing.assert_allclose(link.linkfun(mu), eta, rtol=1e-10, atol=1e-12)
    h = 1e-5
    d1 = (link.linkinv(eta + h) - link.linkinv(eta - h)) / (2 * h)
    np.testing.assert_allclose(link.mu_eta(eta), d1, rtol=1e-7)
    d2 = (link.mu_eta(eta + h) - link.mu_eta(eta - h)) / (2 * h)
    np.testing.assert_allclose(link.mu_eta2(eta), d2, rtol=1e-6, atol=1e-9)


FAMILY_MU = {
    "binomial": np.array([0.1, 0.35, 0.5, 0.8]),
    "poisson": np.array([0.5, 1.5, 4.0, 9.0]),
    "Gamma": np.array([0.5, 1.5, 4.0, 9.0]),
    "inverse.gaussian": np.array([0.5, 1.5, 4.0, 9.0]),
    "gaussian": np.array([0.5, 1.5, 4.0, 9.0]),
}


@pytest.mark.parametrize("name", sorted(FAMILY_MU))
def test_variance_derivative(name: str) -> None:
    fam = get_family(name)
    mu = FAMILY_MU[name]
    h = 1e-6
    num = (fam.variance(mu + h) - fam.variance(mu - h)) / (2 * h)
    np.testing.assert_allclose(fam.variance_deriv(mu), num, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize(
    ("name", "link"),
    [("binomial", "logit"), ("poisson", "log"), ("Gamma", "inverse"), ("gaussian", "identity")],
)
def test_observed_weights_are_fisher_weights_for_canonical_links(name: str, link: str) -> None:
    fam = get_family(name, link)
    assert fam.canonical
    mu = FAMILY_MU[name]
    eta = fam.linkfun(mu)
    y = mu * 1.3 if name != "binomial" else np.array([0.0, 1.0, 0.0, 1.0])
    wt = np.array([1.0, 2.0, 1.0, 3.0])
    fisher = wt * fam.mu_eta(eta) ** 2 / fam.variance(mu)
    np.testing.assert_allclose(fam.observed_weights(y, mu, eta, wt), fisher, rtol=1e-10)


def test_observed_weights_are_minus_second_derivative_of_loglik() -> None:
    # probit binomial: -d^2/deta^2 of y log mu + (1 - y) log(1 - mu)
    fam = mm.families.Binomial("probit")
    eta = np.array([-1.2, 0.3, 1.7])
    y = np.array([1.0, 0.0, 1.0])

    def loglik(e: np.ndarray) -> np.ndarray:
        m = fam.linkinv(e)
        return y * np.log(m) + (1 - y) * np.log1p(-m)

    h = 1e-4
    second = (loglik(eta + h) - 2 * loglik(eta) + loglik(eta - h)) / h**2
    obs = fam.observed_weights(y, fam.linkinv(eta), eta, np.ones(3))
    np.testing.assert_allclose(obs, -second, rtol=1e-5)


def test_aic_and_deviance_against_scipy() -> None:
    y = np.array([0.0, 0.25, 0.5, 1.0])
    n = np.array([4.0, 4.0, 2.0, 3.0])
    mu = np.array([0.2, 0.3, 0.45, 0.9])
    fam = get_family("binomial")
    dev = float(np.sum(fam.dev_resids(y, mu, n)))
    ll = np.sum(stats.binom.logpmf(np.round(n * y), n, mu))
    assert fam.aic(y, n, mu, n, dev) == pytest.approx(-2 * ll)
    # deviance = 2 (saturated - fitted) log-likelihood
    sat = np.sum(stats.binom.logpmf(np.round(n * y), n, y))
    assert dev == pytest.approx(2 * (sat - ll))
    counts = np.array([0.0, 2.0, 5.0, 1.0])
    lam = np.array([0.5, 2.5, 4.0, 1.5])
    pois = get_family("poisson")
    pdev = float(np.sum(pois.dev_resids(counts, lam, np.ones(4))))
    assert pois.aic(counts, np.ones(4), lam, np.ones(4), pdev) == pytest.approx(
        -2 * np.sum(stats.poisson.logpmf(counts, lam))
    )


def test_get_family_errors() -> None:
    with pytest.raises(ModelSpecError, match="family"):
        get_family("negbin")
    with pytest.raises(ModelSpecError, match="choose from"):
        get_family("poisson", "logit")
    assert get_family("binomial", "cloglog").link.name == "cloglog"
    assert not get_family("binomial", "cloglog").canonical


def test_support_checks() -> None:
    ones = np.ones(3)
    with pytest.raises(DataError, match="negative"):
        get_family("poisson").check(np.array([1.0, -2.0, 0.0]), ones, ones, "count")
    with pytest.raises(DataError, match="between 0 and 1"):
        get_family("binomial").check(np.array([0.2, 1.5, 0.0]), ones, ones, "p")
    with pytest.raises(DataError, match="positive"):
        get_family("Gamma").check(np.array([0.2, 0.0, 1.0]), ones, ones, "y")
    with pytest.warns(UserWarning, match="non-integer"):
        get_family("poisson").check(np.array([1.0, 2.5, 0.0]), ones, ones, "count")
    with pytest.warns(UserWarning, match="non-integer"):
        get_family("binomial").check(np.array([0.3, 0.5]), np.ones(2), np.array([3.0, 2.0]), "p")


# -- the compiled copies agree with the Python definitions ------------------------------------
@pytest.mark.parametrize("name", sorted(LINKS))
def test_compiled_links_match(name: str) -> None:
    link = LINKS[name]
    code = K.LINK_CODES[name]
    for e in ETA[name]:
        assert K.linkinv(code, e) == pytest.approx(float(link.linkinv(np.array([e]))[0]), rel=1e-14)
        assert K.mu_eta(code, e) == pytest.approx(float(link.mu_eta(np.array([e]))[0]), rel=1e-13)
        assert K.mu_eta2(code, e) == pytest.approx(
            float(link.mu_eta2(np.array([e]))[0]), rel=1e-12, abs=1e-300
        )


@pytest.mark.parametrize("name", sorted(FAMILY_MU))
def test_compiled_families_match(name: str) -> None:
    fam = get_family(name)
    code = K.FAMILY_CODES[name]
    mu = FAMILY_MU[name]
    y = np.array([0.0, 1.0, 1.0, 0.0]) if name == "binomial" else mu * np.array([0.7, 1.2, 1, 2])
    if name in ("Gamma", "inverse.gaussian"):
        y = np.maximum(y, 0.1)
    wt = np.array([1.0, 2.0, 0.5, 1.0])
    for i in range(4):
        assert K.variance(code, mu[i]) == pytest.approx(float(fam.variance(mu[i : i + 1])[0]))
        assert K.dev_resid(code, y[i], mu[i], wt[i]) == pytest.approx(
            float(fam.dev_resids(y[i : i + 1], mu[i : i + 1], wt[i : i + 1])[0]), rel=1e-13
        )


def test_links_clamp_like_r() -> None:
    # R's logit link keeps probabilities in [eps, 1 - eps]
    inv = LINKS["logit"].linkinv(np.array([-40.0, 40.0]))
    eps = np.finfo(float).eps
    assert inv[0] == eps and inv[1] == 1 - eps
    assert K.linkinv(K.LOGIT, -40.0) == eps
    assert math.isfinite(LINKS["probit"].linkfun(LINKS["probit"].linkinv(np.array([-9.0])))[0])


def test_family_repr_and_equality() -> None:
    assert mm.families.Binomial() == get_family("binomial")
    assert mm.families.Binomial("probit") != mm.families.Binomial()
    assert "probit" in repr(mm.families.Binomial("probit"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert hash(get_family("poisson")) == hash(mm.families.Poisson())


@pytest.mark.parametrize(
    ("name", "y", "n"),
    [
        ("binomial", np.array([0.25, 0.5]), np.array([3.0, 3.0])),
        ("poisson", np.array([1.5, 2.0]), None),
    ],
)
def test_non_integer_warning_can_be_left_to_the_caller(
    name: str, y: np.ndarray, n: np.ndarray | None
) -> None:
    fam = get_family(name)
    trials = np.ones(y.size) if n is None else n
    with pytest.warns(UserWarning, match="non-integer"):
        fam.check(y, trials, trials, "y")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fam.check(y, trials, trials, "y", warn_non_integer=False)
