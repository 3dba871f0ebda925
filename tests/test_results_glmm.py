"""GlmerResult: predictions for new data, simulation, residuals, tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import mixedmodels as mm
from mixedmodels.errors import DataError, ModelSpecError

from .conftest import fitted_glmer, glmer_cases, glmer_inference_reference


@pytest.fixture(scope="module")
def fit() -> mm.GlmerResult:
    return fitted_glmer("cbpp_laplace")


def _newdata() -> pd.DataFrame:
    ref = glmer_inference_reference()["cases"]["cbpp"]["newdata"]
    cbpp = mm.datasets.load("cbpp")
    return pd.DataFrame(
        {
            "period": pd.Categorical(ref["period"], categories=cbpp["period"].cat.categories),
            "herd": ref["herd"],
        }
    )


def test_predict_new_data_matches_lme4(fit: mm.GlmerResult) -> None:
    ref = glmer_inference_reference()["cases"]["cbpp"]
    nd = _newdata()
    got = fit.predict(nd, type="response", allow_new_levels=True).to_numpy()
    np.testing.assert_allclose(got, ref["predict_response_newlevels"], rtol=1e-4)
    pop = fit.predict(nd, re_form="NA").to_numpy()
    np.testing.assert_allclose(pop, ref["predict_link_population"], rtol=1e-4)
    with pytest.raises(DataError, match="new levels of grouping factor 'herd'"):
        fit.predict(nd)


def test_predict_types(fit: mm.GlmerResult) -> None:
    link = fit.predict()
    resp = fit.predict(type="response")
    np.testing.assert_allclose(resp, 1 / (1 + np.exp(-link)), rtol=1e-12)
    np.testing.assert_allclose(resp, fit.fitted(), rtol=1e-10)
    with pytest.raises(ModelSpecError, match="type"):
        fit.predict(type="probability")


def test_residual_types_are_consistent(fit: mm.GlmerResult) -> None:
    y, mu = fit.design.y, fit.fitted().to_numpy()
    n = fit.model.prior_weights
    np.testing.assert_allclose(fit.residuals("response"), y - mu)
    np.testing.assert_allclose(fit.residuals("pearson"), (y - mu) * np.sqrt(n / (mu * (1 - mu))))
    dev = fit.residuals("deviance").to_numpy()
    assert np.all(np.sign(dev[y != mu]) == np.sign((y - mu)[y != mu]))
    with pytest.raises(ModelSpecError, match="residual type"):
        fit.residuals("studentized")


def test_simulate_binomial_proportions(fit: mm.GlmerResult) -> None:
    sims = fit.simulate(nsim=400, seed=7)
    assert sims.shape == (fit.nobs, 400)
    n = fit.model.trials
    counts = sims.to_numpy() * n[:, None]
    np.testing.assert_allclose(counts, np.round(counts), atol=1e-9)
    assert sims.to_numpy().min() >= 0 and sims.to_numpy().max() <= 1
    # with the random effects held at their modes, the mean is the fitted probability
    held = fit.simulate(nsim=4000, seed=8, use_u=True).to_numpy()
    se = np.sqrt(fit.fitted().to_numpy() * (1 - fit.fitted().to_numpy()) / (n * 4000))
    assert np.all(np.abs(held.mean(axis=1) - fit.fitted().to_numpy()) < 5 * se + 1e-12)
    # reproducible
    np.testing.assert_array_equal(fit.simulate(nsim=3, seed=1), fit.simulate(nsim=3, seed=1))


def test_simulate_poisson_counts() -> None:
    pfit = fitted_glmer("grouseticks_two")
    sims = pfit.simulate(nsim=5, seed=3).to_numpy()
    assert np.all(sims >= 0)
    np.testing.assert_array_equal(sims, np.round(sims))


def test_coef_table_and_wald_intervals(fit: mm.GlmerResult) -> None:
    tab = fit.coef_table()
    assert list(tab.columns) == ["Estimate", "Std. Error", "z value", "Pr(>|z|)"]
    np.testing.assert_allclose(tab["z value"], fit.fixef / fit.std_errors)
    z = tab["z value"].to_numpy()
    np.testing.assert_allclose(tab["Pr(>|z|)"], 2 * stats.norm.sf(np.abs(z)), rtol=1e-14)
    ref = glmer_inference_reference()["cases"]["cbpp"]["confint_wald"]
    ci = fit.confint(method="wald")
    for r in ref:
        if r["lower"] is None:
            assert np.isnan(ci.loc[r["parameter"]]).all()
        else:
            # the standard errors differ from lme4's by up to 5e-3 relative (finite differences)
            np.testing.assert_allclose(
                ci.loc[r["parameter"]].to_numpy(), [r["lower"], r["upper"]], rtol=5e-3
            )


def test_scale_families_label_t_and_report_dispersion() -> None:
    g = fitted_glmer("gamma_log")
    tab = g.coef_table()
    assert "t value" in tab.columns and "Pr(>|z|)" in tab.columns
    # lme4's sigma(): sqrt((Pearson RSS + ||u||^2) / n)
    assert g.sigma == pytest.approx(glmer_cases()["gamma_log"]["tight"]["sigma"], rel=1e-4)
    assert g.npar == 4


def test_coef_adds_modes_to_fixed_effects(fit: mm.GlmerResult) -> None:
    coef = fit.coef()["herd"]
    re = fit.ranef()["herd"]
    np.testing.assert_allclose(
        coef["(Intercept)"], fit.fixef["(Intercept)"] + re["(Intercept)"], rtol=1e-12
    )
    np.testing.assert_allclose(coef["period2"], fit.fixef["period2"])


def test_html_summary(fit: mm.GlmerResult) -> None:
    html = fit.summary()._repr_html_()
    assert "binomial" in html and "z value" in html
