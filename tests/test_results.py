"""The result API: predictions, simulation, coefficients, residuals, random effects, errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import mixedmodels as mm

from .conftest import fitted_case


@pytest.fixture(scope="module")
def uncorr_fit():
    return fitted_case("sleepstudy_uncorr_explicit_reml")


def test_predict_on_the_fitted_data_equals_fitted(sleep_fit, sleepstudy):
    np.testing.assert_allclose(sleep_fit.predict(sleepstudy), sleep_fit.fitted(), rtol=1e-12)
    np.testing.assert_allclose(sleep_fit.predict(), sleep_fit.fitted(), rtol=1e-12)


def test_population_prediction(sleep_fit, sleepstudy):
    expected = sleep_fit.fixef["(Intercept)"] + sleep_fit.fixef["Days"] * sleepstudy["Days"]
    for re_form in ("~0", "~ 0", "0", 0, "NA"):
        np.testing.assert_allclose(
            sleep_fit.predict(sleepstudy, re_form=re_form), expected, rtol=1e-12
        )


def test_predict_for_one_subject_uses_its_coefficients(sleep_fit):
    coef = sleep_fit.coef()["Subject"].loc["309"]
    new = pd.DataFrame({"Days": [0.0, 4.5, 12.0], "Subject": ["309", "309", "309"]})
    np.testing.assert_allclose(
        sleep_fit.predict(new), coef["(Intercept)"] + coef["Days"] * new["Days"], rtol=1e-12
    )


def test_new_levels(sleep_fit):
    new = pd.DataFrame({"Days": [1.0, 2.0], "Subject": ["308", "999"]})
    with pytest.raises(
        mm.DataError, match=r"new levels of grouping factor 'Subject'.*999.*allow_new_levels=True"
    ):
        sleep_fit.predict(new)
    pred = sleep_fit.predict(new, allow_new_levels=True)
    population = sleep_fit.predict(new, re_form="~0")
    assert pred.iloc[1] == pytest.approx(population.iloc[1])
    assert pred.iloc[0] != pytest.approx(population.iloc[0])


def test_re_form_selects_terms(uncorr_fit, sleepstudy):
    only_intercepts = uncorr_fit.predict(sleepstudy, re_form="~(1 | Subject)")
    b0 = uncorr_fit.ranef()["Subject"]["(Intercept)"]
    expected = (
        uncorr_fit.predict(sleepstudy, re_form="~0")
        + b0.loc[sleepstudy["Subject"].astype(str)].to_numpy()
    )
    np.testing.assert_allclose(only_intercepts, expected, rtol=1e-12)
    with pytest.raises(mm.FormulaError, match="not a random-effects term of the model"):
        uncorr_fit.predict(sleepstudy, re_form="~(1 | Days)")


def test_predict_keeps_rows_with_missing_values_as_nan(sleep_fit):
    new = pd.DataFrame({"Days": [1.0, np.nan, 3.0], "Subject": ["308", "309", None]})
    pred = sleep_fit.predict(new)
    assert np.isfinite(pred.iloc[0]) and np.isnan(pred.iloc[1]) and np.isnan(pred.iloc[2])
    assert list(pred.index) == list(new.index)


def test_predict_with_factor_covariates():
    cake = mm.datasets.load("cake")
    fit = fitted_case("cake_reml")
    np.testing.assert_allclose(fit.predict(cake.iloc[:30]), fit.fitted().iloc[:30], rtol=1e-12)


@pytest.mark.parametrize(
    "formula",
    ["Reaction ~ Days + shift + (1 | Subject)", "Reaction ~ Days * shift + (1 | Subject)"],
)
def test_predict_rejects_new_levels_of_a_fixed_factor(formula):
    """A fixed effect cannot be predicted for a level the model was not fitted with, whether
    the factor's columns were built directly (main effect) or by formulaic (interaction)."""
    sleep = mm.datasets.load("sleepstudy")
    sleep["shift"] = np.where(sleep["Subject"].astype(int) % 2 == 0, "day", "night")
    fit = mm.lmer(formula, sleep)
    new = sleep.iloc[:3].assign(shift=["day", "swing", "night"])
    with pytest.raises(mm.DataError, match="swing"):
        fit.predict(new)
    np.testing.assert_allclose(fit.predict(sleep.iloc[:20]), fit.fitted().iloc[:20], rtol=1e-12)


def test_predict_with_offset_column():
    fit = fitted_case("sleepstudy_offset_reml")
    sleep = mm.datasets.load("sleepstudy").assign(off=lambda d: 2.5 * d["Days"])
    np.testing.assert_allclose(fit.predict(sleep), fit.fitted(), rtol=1e-12)
    with pytest.raises(mm.DataError, match="column 'off', used in the offset"):
        fit.predict(sleep.drop(columns="off"))


def test_predict_missing_grouping_column(sleep_fit):
    with pytest.raises(mm.DataError, match="Subject"):
        sleep_fit.predict(pd.DataFrame({"Days": [1.0]}))


def test_coef_is_fixed_plus_random(sleep_fit):
    coef = sleep_fit.coef()["Subject"]
    ranef = sleep_fit.ranef()["Subject"]
    np.testing.assert_allclose(coef["Days"], sleep_fit.fixef["Days"] + ranef["Days"])
    np.testing.assert_allclose(
        coef["(Intercept)"], sleep_fit.fixef["(Intercept)"] + ranef["(Intercept)"]
    )


def test_coef_with_fixed_effect_not_in_ranef():
    fit = fitted_case("sleepstudy_intercept_reml")
    coef = fit.coef()["Subject"]
    assert np.all(coef["Days"] == fit.fixef["Days"])


def test_ranef_mapping_and_long_form(uncorr_fit):
    re = uncorr_fit.ranef()
    assert list(re) == ["Subject"] and len(re) == 1
    assert list(re["Subject"].columns) == ["(Intercept)", "Days"]  # both terms side by side
    long = re.to_frame()
    assert list(long.columns) == ["grpvar", "term", "grp", "condval", "condsd"]
    assert len(long) == 36
    assert (long["condsd"] > 0).all()
    with pytest.raises(KeyError, match="available"):
        re["Days"]
    assert [m.shape for m in re.condvar("Subject")] == [(18, 1, 1), (18, 1, 1)]
    assert "Subject" in repr(re)


def test_residual_types(sleep_fit):
    r = sleep_fit.residuals()
    np.testing.assert_allclose(r, sleep_fit.design.y - sleep_fit.fitted())
    np.testing.assert_allclose(sleep_fit.residuals("pearson"), r)  # no weights
    np.testing.assert_allclose(sleep_fit.residuals(scaled=True), r / sleep_fit.sigma)
    weighted = fitted_case("sleepstudy_weights_reml")
    w = weighted.design.weights
    np.testing.assert_allclose(weighted.residuals("pearson"), weighted.residuals() * np.sqrt(w))
    with pytest.raises(mm.ModelSpecError, match="unknown residual type"):
        sleep_fit.residuals("studentized")


def test_simulate_is_reproducible_and_has_the_fitted_moments(sleep_fit):
    a = sleep_fit.simulate(3, seed=11)
    b = sleep_fit.simulate(3, seed=11)
    assert a.shape == (180, 3) and list(a.columns) == ["sim_1", "sim_2", "sim_3"]
    pd.testing.assert_frame_equal(a, b)
    many = sleep_fit.simulate(4000, seed=1).to_numpy()
    population = sleep_fit.predict(re_form="~0").to_numpy()
    # mean X beta; marginal variance sigma^2 + z' Sigma z at each row
    np.testing.assert_allclose(
        many.mean(axis=1), population, atol=4 * np.sqrt(many.var(axis=1) / 4000).max()
    )
    cov = sleep_fit.varcorr["Subject"].cov
    days = sleep_fit.design.X[:, 1]
    marginal = sleep_fit.sigma**2 + cov[0, 0] + 2 * days * cov[0, 1] + days**2 * cov[1, 1]
    np.testing.assert_allclose(many.var(axis=1), marginal, rtol=0.12)


def test_simulate_with_conditional_modes(sleep_fit):
    many = sleep_fit.simulate(3000, seed=2, use_u=True).to_numpy()
    np.testing.assert_allclose(many.mean(axis=1), sleep_fit.fitted(), atol=3.0)
    np.testing.assert_allclose(many.var(axis=1), sleep_fit.sigma**2, rtol=0.12)
    with pytest.raises(mm.ModelSpecError):
        sleep_fit.simulate(0)


def test_varcorr_accessors(sleep_fit):
    vc = sleep_fit.varcorr
    term = vc["Subject"]
    assert term.names == ("(Intercept)", "Days")
    assert term.corr[1, 0] == pytest.approx(0.0656, abs=1e-3)
    assert len(vc) == 1 and [t.group for t in vc] == ["Subject"]
    with pytest.raises(KeyError):
        vc["Days"]
    frame = vc.to_frame()
    assert list(frame.columns) == ["grp", "var1", "var2", "vcov", "sdcor"]
    assert frame.iloc[-1]["grp"] == "Residual"


def test_theta_and_objective_api(sleep_fit):
    model = sleep_fit.model
    assert model.theta_names == ["Subject.(Intercept)", "Subject.Days.(Intercept)", "Subject.Days"]
    assert model.objective(sleep_fit.theta) == pytest.approx(sleep_fit.reml_criterion, rel=1e-12)
    with pytest.raises(mm.ModelSpecError, match="theta must have 3 values"):
        model.objective([1.0, 0.0])
    with pytest.raises(mm.ModelSpecError, match="non-negative"):
        model.objective([-1.0, 0.0, 1.0])
    with pytest.raises(mm.ModelSpecError, match="optimize=False needs start"):
        model.fit(optimize=False)


def test_refit_with_new_response(sleep_fit):
    """The bootstrap path: only y changes, the blocks without y are shared."""
    model = sleep_fit.model
    y = sleep_fit.simulate(1, seed=5)["sim_1"].to_numpy()
    new = model.with_response(y)
    assert new.A.diag is model.A.diag and new.A.off is model.A.off
    direct = mm.lmer(
        "Reaction ~ Days + (Days | Subject)", mm.datasets.load("sleepstudy").assign(Reaction=y)
    )
    refit = new.fit()
    assert refit.loglik == pytest.approx(direct.loglik, rel=1e-10)
    np.testing.assert_allclose(refit.fixef, direct.fixef, rtol=1e-7)
    with pytest.raises(mm.ModelSpecError):
        model.with_response(y[:10])


def test_ml_and_reml_from_one_model(sleep_fit):
    ml = sleep_fit.model.with_reml(False).fit()
    ref = fitted_case("sleepstudy_corr_ml")
    assert ml.loglik == pytest.approx(ref.loglik, rel=1e-10)
    assert not ml.reml and ml.reml_criterion is None


def test_data_as_mapping():
    sleep = mm.datasets.load("sleepstudy")
    data = {c: sleep[c].to_numpy() for c in sleep.columns}
    fit = mm.lmer("Reaction ~ Days + (Days | Subject)", data)
    assert fit.loglik == pytest.approx(fitted_case("sleepstudy_corr_reml").loglik, rel=1e-10)


def test_boolean_and_string_factors():
    sleep = mm.datasets.load("sleepstudy")
    df = sleep.assign(late=sleep["Days"] >= 5, grp=np.where(sleep["Days"] % 2 == 0, "even", "odd"))
    fit = mm.lmer("Reaction ~ late + grp + (1 | Subject)", df)
    assert list(fit.fixef.index) == ["(Intercept)", "lateTrue", "grpodd"]
    same = mm.lmer(
        "Reaction ~ late + grp + (1 | Subject)",
        df.assign(late=df["late"].astype(int), grp=(df["grp"] == "odd").astype(float)),
    )
    np.testing.assert_allclose(fit.fixef.to_numpy(), same.fixef.to_numpy(), rtol=1e-8)
