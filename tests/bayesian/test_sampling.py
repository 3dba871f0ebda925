"""Sampling: agreement with the REML fit, convergence at the default settings, the ArviZ
output, predictions, and the equivalence of the integrated and the non-centred forms."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("numpyro")

import mixedmodels as mm

from .conftest import SLEEP, sleep_fit, sleep_model, sleep_reml


def _check_converged(fit, reml, max_sd: float = 0.2) -> None:
    """Posterior means of the fixed effects within ``max_sd`` posterior SDs of the REML
    estimates; R-hat <= 1.01 for every parameter; no divergences."""
    table = fit.summary().table
    assert fit.divergences == 0
    assert table["r_hat"].max() <= 1.01, table
    for name, est in reml.fixef.items():
        row = table.loc[f"beta[{name}]"]
        assert abs(row["mean"] - est) <= max_sd * row["sd"], (name, row["mean"], est, row["sd"])


def test_sleepstudy_at_default_settings_agrees_with_reml():
    fit = sleep_fit()
    assert fit.settings["draws"] == 1000 and fit.settings["chains"] == 4
    assert fit.settings["tune"] == 1000 and fit.settings["target_accept"] == 0.8
    _check_converged(fit, sleep_reml())
    table = fit.summary().table
    # the variance parameters are near the REML estimates too (posterior skewed upwards)
    vc = sleep_reml().varcorr.terms[0]
    assert table.loc["sd_Subject[(Intercept)]", "hdi_3%"] < vc.sd[0]
    assert table.loc["sd_Subject[(Intercept)]", "hdi_97%"] > vc.sd[0]
    assert (
        table.loc["sd_Subject[Days]", "hdi_3%"]
        < vc.sd[1]
        < table.loc["sd_Subject[Days]", "hdi_97%"]
    )
    assert table.loc["sigma", "hdi_3%"] < sleep_reml().sigma < table.loc["sigma", "hdi_97%"]
    # integrated out, the parameters mix well: effective sample sizes near the draws
    assert table["ess_bulk"].min() > 2000


def test_inference_data_has_named_dimensions_and_coordinates():
    fit = sleep_fit()
    post = fit.idata.posterior
    assert dict(post["beta"].sizes) == {"chain": 4, "draw": 1000, "coef": 2}
    assert list(post["beta"].coords["coef"].values) == ["(Intercept)", "Days"]
    assert list(post["sd_Subject"].coords["Subject_effect"].values) == ["(Intercept)", "Days"]
    assert list(post["corr_Subject"].coords["Subject_pair"].values) == ["(Intercept):Days"]
    b = post["b_Subject"]
    assert b.dims == ("chain", "draw", "Subject", "Subject_effect")
    levels = [str(v) for v in mm.datasets.load("sleepstudy")["Subject"].cat.categories]
    assert list(b.coords["Subject"].values) == levels
    assert {"diverging", "energy", "lp", "tree_depth", "step_size"} <= set(
        fit.idata.sample_stats.data_vars
    )
    assert "y" in fit.idata.observed_data


def test_arviz_functions_work_directly():
    import matplotlib

    matplotlib.use("Agg")
    import arviz as az
    import matplotlib.pyplot as plt

    fit = sleep_fit()
    s = az.summary(fit.idata, var_names=["beta", "sigma"])
    assert list(s.index) == ["beta[(Intercept)]", "beta[Days]", "sigma"]
    axes = az.plot_trace(fit.idata, var_names=["beta", "sd_Subject"])
    assert np.asarray(axes).shape == (2, 2)
    axes = az.plot_forest(fit.idata, var_names=["b_Subject"], coords={"Subject_effect": ["Days"]})
    # one line per subject (the seed's forest plot of each subject's slope)
    assert len(np.atleast_1d(axes)[0].get_yticklabels()) == 18
    plt.close("all")


def test_group_effects_agree_with_the_conditional_modes():
    fit = sleep_fit()
    reml = sleep_reml()
    post = fit.ranef()["Subject"]
    modes = reml.ranef()["Subject"]
    b = fit.idata.posterior["b_Subject"]
    sd = b.std(dim=("chain", "draw")).values
    # posterior means of each subject's effects near the conditional modes (the posterior
    # integrates over the variance parameters, the modes condition on their estimates)
    z = (post.to_numpy() - modes.to_numpy()) / sd
    assert np.max(np.abs(z)) < 0.35
    assert list(post.columns) == ["(Intercept)", "Days"]


def test_summary_prints_the_sampler_diagnostics():
    fit = sleep_fit()
    text = str(fit.summary())
    assert "Formula: Reaction ~ Days + (Days | Subject)" in text
    assert "group effects integrated out" in text
    assert "4 chains x 1000 (tune 1000)" in text
    assert "Divergences: 0" in text
    assert {"mean", "sd", "hdi_3%", "hdi_97%", "ess_bulk", "ess_tail", "r_hat"} <= set(
        fit.summary().table.columns
    )
    assert "<table" in fit._repr_html_()
    full = fit.summary(group_effects=True).table
    assert "b_Subject[308, Days]" in full.index


def test_posterior_predictive_replicates_the_data():
    fit = sleep_fit()
    pp = fit.posterior_predictive(seed=1)
    y = pp.posterior_predictive["y"]
    assert dict(y.sizes) == {"chain": 4, "draw": 1000, "obs": 180}
    obs = mm.datasets.load("sleepstudy")["Reaction"].to_numpy()
    # each observation lies in its 99% predictive interval nearly always
    lo = y.quantile(0.005, dim=("chain", "draw")).values
    hi = y.quantile(0.995, dim=("chain", "draw")).values
    inside = np.mean((obs >= lo) & (obs <= hi))
    assert inside > 0.95
    np.testing.assert_allclose(y.mean().item(), obs.mean(), rtol=0.01)


def test_prediction_for_a_new_subject_draws_from_the_population():
    fit = sleep_fit()
    days = pd.DataFrame({"Days": np.arange(10), "Subject": "new"})
    new = fit.predict(days, kind="mean", seed=3)
    pop = fit.predict(days, kind="mean", re_form="~0")
    assert new.dims == ("chain", "draw", "obs")
    # centred on the population line, but spread by the subjects' variation
    beta = fit.idata.posterior["beta"].mean(dim=("chain", "draw")).values
    line = beta[0] + beta[1] * np.arange(10)
    np.testing.assert_allclose(pop.mean(dim=("chain", "draw")).values, line, rtol=1e-10)
    np.testing.assert_allclose(new.mean(dim=("chain", "draw")).values, line, rtol=0.02)
    assert np.all(new.std(dim=("chain", "draw")).values > 3 * pop.std(dim=("chain", "draw")).values)
    # a known subject's prediction uses its own effects
    one = pd.DataFrame({"Days": [0.0], "Subject": ["308"]})
    p308 = fit.predict(one).mean().item()
    b = fit.ranef()["Subject"].loc["308"]
    assert p308 == pytest.approx(fit.fixef["(Intercept)"] + b["(Intercept)"], rel=1e-6)
    with pytest.raises(mm.DataError, match="new levels"):
        fit.predict(days, allow_new_levels=False)
    ynew = fit.predict(days, kind="response", seed=1)
    assert float(ynew.std(dim=("chain", "draw")).mean()) > float(
        new.std(dim=("chain", "draw")).mean()
    )


def test_prior_predictive():
    model = sleep_model()
    prior = model.prior_predictive(draws=2000, seed=5)
    assert dict(prior.prior_predictive["y"].sizes) == {"chain": 1, "draw": 2000, "obs": 180}
    days = prior.prior["beta"].sel(coef="Days").values.ravel()
    # the prior of Days is Normal(0, 2.5 sd(y) / sd(Days))
    assert np.std(days) == pytest.approx(model.priors["Days"].sigma, rel=0.06)
    assert abs(np.mean(days)) < 0.1 * model.priors["Days"].sigma
    sd = prior.prior["sd_Subject"].sel(Subject_effect="(Intercept)").values.ravel()
    # the median of a half Student t with 3 df is its scale times t_3's 75% quantile
    from scipy import stats

    assert np.median(sd) == pytest.approx(
        model.priors["1|Subject"].sigma * stats.t(3).ppf(0.75), rel=0.08
    )


def test_integrated_and_non_centred_forms_give_the_same_posterior():
    """The random effects integrated out or sampled: the same posterior (within Monte Carlo
    error)."""
    sleep = mm.datasets.load("sleepstudy")
    full = mm.bayes(SLEEP, sleep, marginalize=False)
    assert not full.marginal
    a = sleep_fit().summary().table
    b = full.fit(seed=7, progress=False, draws=1000, tune=1000, chains=4).summary().table
    for row in a.index:
        se = np.hypot(a.loc[row, "mcse_mean"], b.loc[row, "mcse_mean"])
        assert abs(a.loc[row, "mean"] - b.loc[row, "mean"]) < 5 * se + 1e-3 * abs(
            a.loc[row, "mean"]
        ), row
        assert b.loc[row, "sd"] == pytest.approx(a.loc[row, "sd"], rel=0.12), row
