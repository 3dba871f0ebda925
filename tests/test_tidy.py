"""fit.tidy(): every estimate in one DataFrame, consistent with the tables it is built from."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import mixedmodels as mm
from mixedmodels.errors import ModelSpecError


def test_columns_and_rows(sleep_fit):
    t = sleep_fit.tidy()
    assert list(t.columns) == [
        "effect", "group", "term", "estimate", "std_error", "statistic", "df", "p_value",
    ]  # fmt: skip
    assert list(t["effect"]) == ["fixed"] * 2 + ["ran_pars"] * 4
    assert list(t["term"]) == [
        "(Intercept)", "Days", "sd__(Intercept)", "sd__Days", "cor__(Intercept).Days",
        "sd__Observation",
    ]  # fmt: skip
    assert list(t["group"].iloc[2:]) == ["Subject"] * 3 + ["Residual"]


def test_fixed_rows_match_the_coefficient_table(sleep_fit):
    t = sleep_fit.tidy(conf_int=True).set_index("term")
    table = sleep_fit.coef_table()
    for name in table.index:
        row = t.loc[name]
        assert row["estimate"] == table.loc[name, "Estimate"]
        assert row["std_error"] == table.loc[name, "Std. Error"]
        assert row["statistic"] == table.loc[name, "t value"]
        assert row["df"] == table.loc[name, "df"]
        assert row["p_value"] == table.loc[name, "Pr(>|t|)"]
        q = stats.t.ppf(0.975, row["df"])
        assert row["conf_low"] == pytest.approx(row["estimate"] - q * row["std_error"])
        assert row["conf_high"] == pytest.approx(row["estimate"] + q * row["std_error"])
    kr = sleep_fit.tidy(ddf="kenward-roger").set_index("term")
    np.testing.assert_allclose(kr.loc["Days", "df"], 17.0, rtol=1e-3)
    none = sleep_fit.tidy(ddf="none")
    assert none["df"].isna().all() and none["p_value"].isna().all()


def test_variance_parameters_match_varcorr_and_profile_intervals(sleep_fit):
    t = sleep_fit.tidy(conf_int=True, conf_method="profile").set_index("term")
    vc = sleep_fit.varcorr.to_frame()
    assert t.loc["sd__(Intercept)", "estimate"] == pytest.approx(vc["sdcor"].iloc[0])
    assert t.loc["cor__(Intercept).Days", "estimate"] == pytest.approx(vc["sdcor"].iloc[2])
    assert t.loc["sd__Observation", "estimate"] == pytest.approx(sleep_fit.sigma)
    ci = sleep_fit.confint(method="profile")
    assert t.loc["sd__Days", "conf_low"] == ci.loc["sd_Days|Subject"].iloc[0]
    assert (
        t.loc["cor__(Intercept).Days", "conf_high"]
        == (ci.loc["cor_Days.(Intercept)|Subject"].iloc[1])
    )
    assert t.loc["sd__Observation", "conf_low"] == ci.loc["sigma"].iloc[0]
    assert t.loc["Days", "conf_low"] == ci.loc["Days"].iloc[0]
    assert not t[["conf_low", "conf_high"]].isna().any().any()
    # Wald intervals do not exist for the variance parameters (as in lme4)
    w = sleep_fit.tidy(conf_int=True).set_index("term")
    assert w.loc["sd__Days", ["conf_low", "conf_high"]].isna().all()


def test_random_effect_values(sleep_fit):
    t = sleep_fit.tidy("ran_vals", conf_int=True, conf_level=0.9)
    assert "level" in t.columns and len(t) == 36
    frame = sleep_fit.ranef().to_frame()
    np.testing.assert_array_equal(t["estimate"], frame["condval"])
    np.testing.assert_array_equal(t["std_error"], frame["condsd"])
    z = stats.norm.ppf(0.95)
    np.testing.assert_allclose(t["conf_high"] - t["estimate"], z * frame["condsd"])


def test_glmm_and_errors():
    fit = mm.glmer(
        "cbind(incidence, size - incidence) ~ period + (1 | herd)",
        mm.datasets.load("cbpp"),
        "binomial",
    )
    t = fit.tidy(conf_int=True)
    fixed = t[t["effect"] == "fixed"]
    table = fit.coef_table()
    np.testing.assert_array_equal(fixed["statistic"], table["z value"])
    assert fixed["df"].isna().all()
    q = stats.norm.ppf(0.975)
    np.testing.assert_allclose(fixed["conf_low"], fixed["estimate"] - q * fixed["std_error"])
    assert list(t.loc[t["effect"] == "ran_pars", "term"]) == ["sd__(Intercept)"]
    with pytest.raises(ModelSpecError, match="unknown effects 'random'"):
        fit.tidy("random")
    with pytest.raises(ModelSpecError, match="conf_method"):
        fit.tidy(conf_int=True, conf_method="bayes")
    assert isinstance(fit.tidy(), pd.DataFrame)
