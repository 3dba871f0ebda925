"""The worked examples in docs/examples run (at their small size) and give what they claim."""

from __future__ import annotations

import importlib.util
import sys
import warnings
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"

# The Bayesian parts of the examples need the 'bayes' extra (NumPyro, JAX, ArviZ); without it
# the examples skip them and so do these tests. They run at the "small" size (2 chains of 300
# draws), so they check only what holds robustly at that size.
needs_bayes = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("numpyro", "jax", "arviz")),
    reason="the 'bayes' extra is not installed",
)


def check_sampler(fit, rhat: float = 1.05) -> None:
    """No more than a trace of divergences, and chains that agree (R-hat at 600 draws is
    noisy: 1.05 rather than the 1.01 the fit warns about)."""
    s = fit.settings
    assert fit.divergences <= 0.01 * s["draws"] * s["chains"]
    assert (fit.summary().table["r_hat"] < rhat).all()


def load_example(name: str) -> ModuleType:
    path = EXAMPLES / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"docs_example_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def run_small(name: str) -> tuple[ModuleType, dict]:
    module = load_example(name)
    with warnings.catch_warnings():
        # 2 chains of 300 draws: R-hat is noisy and the Bayesian fits warn above 1.01; the
        # tests check R-hat (below 1.05) and the divergences themselves (check_sampler)
        warnings.filterwarnings("ignore", message="R-hat above 1.01")
        return module, module.main("small")


@pytest.fixture(scope="module")
def nested():
    return run_small("nested_schools")


@pytest.fixture(scope="module")
def archers():
    return run_small("archers")


@pytest.fixture(scope="module")
def services():
    return run_small("online_services")


@pytest.fixture(scope="module")
def sleep():
    return run_small("sleep_deprivation")


@pytest.fixture(scope="module")
def politeness():
    return run_small("politeness")


def test_every_example_has_a_small_main():
    scripts = sorted(p.stem for p in EXAMPLES.glob("*.py"))
    assert scripts == [
        "archers",
        "nested_schools",
        "online_services",
        "politeness",
        "sleep_deprivation",
    ]
    for name in scripts:
        module = load_example(name)
        assert module.__doc__ and len(module.__doc__) > 200
        assert set(module.SIZES) == {"full", "small"}


# -- nested random effects ---------------------------------------------------------------------


def test_nested_spellings_of_the_same_model_agree(nested):
    _, res = nested
    crit = res["spellings"]["REML criterion"]
    same = crit.drop("reused labels, crossed (wrong)")
    assert np.allclose(same, same.iloc[0], rtol=1e-7)
    groups = res["spellings"]["classroom groups"]
    assert groups.drop("reused labels, crossed (wrong)").eq(20).all()
    # classroom 1 of every school pooled into one group: 4 groups and a much worse fit
    assert groups["reused labels, crossed (wrong)"] == 4
    assert crit["reused labels, crossed (wrong)"] > crit.iloc[0] + 50


def test_nested_fit_and_intervals(nested):
    module, res = nested
    fit = res["fit"]
    assert fit.ngroups == {"classroom:school": 20, "school": 5}
    ci = res["confint"]
    for name, true in (
        ("fixed_effect", module.TRUE["slope"]),
        ("sigma", module.TRUE["sigma"]),
        ("sd_(Intercept)|classroom:school", module.TRUE["sd_classroom"]),
    ):
        assert ci.loc[name, "2.5 %"] < true < ci.loc[name, "97.5 %"], name
    # both levels of grouping are clearly needed
    assert (res["ranova"]["Pr(>Chisq)"].dropna() < 1e-3).all()


def test_nested_simulation_recovers_the_variance_components(nested):
    module, res = nested
    study = res["study"]
    assert len(study) == module.SIZES["small"]["nsim"]
    true = module.TRUE
    assert study["sigma"].mean() == pytest.approx(true["sigma"], rel=0.05)
    assert study["sd_classroom"].mean() == pytest.approx(true["sd_classroom"], rel=0.2)
    # five schools only: the school SD is estimated loosely
    assert study["sd_school"].mean() == pytest.approx(true["sd_school"], rel=0.35)
    assert study["slope"].mean() == pytest.approx(true["slope"], abs=0.02)


def test_nested_ignoring_the_grouping_misstates_standard_errors(nested):
    _, res = nested
    se = res["se_table"]
    # the residual of lm holds the school and classroom variance: the slope's SE is inflated
    assert se.loc["fixed_effect", "lm SE"] > 2 * se.loc["fixed_effect", "lmer SE"]
    # ... and the intercept's SE ignores that there are only five schools
    assert se.loc["(Intercept)", "lm SE"] < se.loc["(Intercept)", "lmer SE"] / 3
    summary = res["study_summary"]
    lm_int = summary.loc[("lm", "intercept")]
    lmer_int = summary.loc[("lmer", "intercept")]
    assert lm_int["mean reported SE"] < 0.3 * lm_int["SD of estimates"]
    ratio = lmer_int["mean reported SE"] / lmer_int["SD of estimates"]
    assert 0.6 < ratio < 1.6


@needs_bayes
def test_nested_bayesian_fit_agrees_with_reml(nested):
    _, res = nested
    check_sampler(res["bayes_fit"])
    cmp = res["bayes_comparison"]
    # posterior means within a posterior SD of the REML estimates
    assert (cmp["(mean - REML) / sd"].abs() < 1).all()
    # the slope of the student-level covariate: the same estimate, SE and interval
    slope = cmp.loc["beta[fixed_effect]"]
    assert slope["post. sd"] == pytest.approx(slope["SE"], rel=0.25)
    assert slope["2.5%"] == pytest.approx(slope["profile 2.5%"], abs=0.5 * slope["SE"])
    assert slope["97.5%"] == pytest.approx(slope["profile 97.5%"], abs=0.5 * slope["SE"])
    # five schools: the school SD's posterior is right-skewed and reaches beyond the profile
    # interval, and the intercept, informed by five schools, is less certain than its SE says
    school = cmp.loc["sd_school[(Intercept)]"]
    assert school["post. mean"] > school["REML"]
    assert school["97.5%"] > school["profile 97.5%"]
    intercept = cmp.loc["beta[(Intercept)]"]
    assert intercept["post. sd"] > intercept["SE"]


@needs_bayes
def test_nested_half_normal_priors_pull_the_school_sd_down(nested):
    _, res = nested
    stan_fit = res["bayes_stan_priors_fit"]
    check_sampler(stan_fit)
    assert not any(stan_fit.model.priors.auto)
    default, stan = res["bayes_comparison"], res["bayes_stan_priors_comparison"]
    name = "sd_school[(Intercept)]"
    assert stan.loc[name, "post. mean"] < default.loc[name, "post. mean"] - 0.5
    assert stan.loc[name, "post. sd"] < 0.5 * default.loc[name, "post. sd"]
    # the data decide the other parameters: the priors hardly matter for them
    for other in ("beta[fixed_effect]", "sigma"):
        assert stan.loc[other, "post. mean"] == pytest.approx(
            default.loc[other, "post. mean"], abs=0.5 * default.loc[other, "post. sd"]
        )


# -- archers -----------------------------------------------------------------------------------


def test_archers_adding_archer_terms_shrinks_the_bow_se(archers):
    _, res = archers
    bow = res["bow_effects"]
    only, with_archer = bow.loc["lm: bow only"], bow.loc["lm: bow + archer"]
    assert only["estimate"] == pytest.approx(with_archer["estimate"])  # balanced design
    assert only["SE"] > 3 * with_archer["SE"]
    assert with_archer["p"] < 1e-6 < only["p"]
    lm2, lmer = bow.loc["lm: bow + archer (exp. 2)"], bow.loc["lmer (exp. 2)"]
    assert lmer["estimate"] == pytest.approx(lm2["estimate"], rel=1e-8)
    assert lmer["SE"] == pytest.approx(lm2["SE"], rel=0.01)


def test_archers_variance_components(archers):
    module, res = archers
    ci = res["confint"]
    assert list(ci.index) == ["sd_(Intercept)|archer", "sigma"]
    true = module.TRUE
    assert ci.loc["sd_(Intercept)|archer", "2.5 %"] < true["sd_archer"]
    assert true["sd_archer"] < ci.loc["sd_(Intercept)|archer", "97.5 %"]
    assert ci.loc["sigma", "2.5 %"] < true["sigma"] < ci.loc["sigma", "97.5 %"]
    vc = res["varcorr"].set_index("grp")["sdcor"]
    assert vc["archer"] == pytest.approx(true["sd_archer"], rel=0.35)
    assert vc["Residual"] == pytest.approx(true["sigma"], rel=0.1)


def test_archers_ranking_matches_the_fixed_effects(archers):
    _, res = archers
    ranking = res["ranking"]
    assert len(ranking) == res["n_archers"]
    assert list(ranking["rank"]) == list(range(1, res["n_archers"] + 1))
    assert ranking["condval"].is_monotonic_decreasing
    assert ranking["lm_vs_first"].is_monotonic_decreasing
    assert res["correlation"] > 1 - 1e-9
    assert res["shrinkage_slope"] == pytest.approx(res["shrinkage"], rel=1e-6)
    assert 0.9 < res["shrinkage"] < 1.0


# -- online services ---------------------------------------------------------------------------


def test_services_mixed_model_predicts_best(services):
    _, res = services
    rmse = res["rmse"]
    assert rmse["mixed"] < rmse["pooled"]
    assert rmse["mixed"] < rmse["no pooling"]
    by = res["rmse_by_sessions"]
    # users seen once: their own mean is a poor predictor, the shrunk one a good one
    assert by.loc["1", "no pooling"] > 1.1 * by.loc["1", "mixed"]
    assert by["users"].sum() == 150


def test_services_variance_components_and_shrinkage(services):
    module, res = services
    vc = res["varcorr"].set_index("grp")["sdcor"]
    assert vc["user"] == pytest.approx(module.TRUE["sd_user"], rel=0.3)
    assert vc["Residual"] == pytest.approx(module.TRUE["sigma"], rel=0.1)
    shrink = res["shrinkage"]
    assert shrink.is_monotonic_increasing
    assert 0 < shrink.iloc[0] and shrink.iloc[-1] < 1


def test_services_new_users_get_the_population_prediction(services):
    _, res = services
    new = res["rmse_new_users"]
    assert new["mixed"] == pytest.approx(new["pooled"], rel=0.02)
    iv = res["new_user_intervals"]
    assert (iv["lower"] < iv["fit"]).all() and (iv["fit"] < iv["upper"]).all()
    # a new user's interval includes the between-user variance as well as sigma
    vc = res["varcorr"].set_index("grp")["vcov"]
    assert (iv["se_fit"] ** 2 > vc["user"] + vc["Residual"]).all()


# -- sleep deprivation -------------------------------------------------------------------------


def test_sleep_random_slopes_and_intercepts_are_both_needed(sleep):
    _, res = sleep
    assert res["lrt_intercept"]["Pr(>Chisq)"].iloc[1] < 1e-6
    assert res["lrt_slope"]["Pr(>Chisq)"].iloc[1] < 1e-3
    assert res["ranova"]["Pr(>Chisq)"].iloc[1] < 1e-6
    # the pooled line leaves the subjects' differences in its residual
    assert res["pooled"].sigma > 1.5 * res["fit"].sigma
    assert res["fit"].fixef["Days"] == pytest.approx(res["pooled"].coef["Days"], rel=1e-6)


def test_sleep_subject_lines_are_shrunk(sleep):
    _, res = sleep
    lines, separate = res["lines"], res["separate_lines"]
    assert lines.shape == (18, 2)
    assert (lines.std() < separate.std()).all()
    forest = res["forest"]
    assert len(forest) == 18 and forest["slope"].is_monotonic_increasing
    assert (forest["lower"] < forest["slope"]).all() and (forest["slope"] < forest["upper"]).all()


def test_sleep_bands_and_new_subject(sleep):
    _, res = sleep
    assert res["band_width"]["mixed"] < 0.75 * res["band_width"]["pooled"]
    assert res["coverage"]["mixed"] > 0.9
    assert len(res["bands"]) == 180
    new = res["new_subject"]
    # the uncertainty of a new subject's slope widens the interval with the days
    assert new["se_fit"].is_monotonic_increasing
    assert new["se_fit"].min() > res["bands"]["se_fit"].max()


def test_sleep_bootstrap_and_profile_intervals(sleep):
    _, res = sleep
    fit = res["fit"]
    for table in (res["bootstrap_ci"], res["profile_ci"]):
        assert table.loc["sigma", "2.5 %"] < fit.sigma < table.loc["sigma", "97.5 %"]
        lo, hi = table.loc["Days"]
        assert lo < fit.fixef["Days"] < hi


@needs_bayes
def test_sleep_bayes_pooled_and_mixed_agree_with_the_frequentist_fits(sleep):
    _, res = sleep
    pooled, mixed = res["bayes_pooled"], res["bayes_fit"]
    check_sampler(pooled)
    check_sampler(mixed)
    assert mixed.model.marginal and set(mixed.idata.posterior.data_vars) == {
        "beta",
        "sigma",
        "sd_Subject",
        "corr_Subject",
        "b_Subject",
    }
    for cmp in (res["bayes_comparison"], res["bayes_pooled_comparison"]):
        assert (cmp["(mean - est.) / sd"].abs() < 0.75).all()
        assert (cmp["3%"] < cmp["estimate"]).all() and (cmp["estimate"] < cmp["97%"]).all()
    cmp = res["bayes_comparison"]
    # SD posteriors are right-skewed: their means lie above the REML estimates
    sds = cmp.loc[cmp.index.str.startswith("sd_")]
    assert (sds["post. mean"] > sds["estimate"]).all()
    # the pooled regression leaves the subjects' differences in its residual
    sigma = res["bayes_pooled_comparison"].loc["sigma", "post. mean"]
    assert sigma > 1.5 * cmp.loc["sigma", "post. mean"]


@needs_bayes
def test_sleep_bayes_bands_forest_and_new_subject(sleep):
    _, res = sleep
    bands = res["bayes_bands"]
    assert len(bands) == 180 and (bands["lower"] < bands["mean"]).all()
    table = res["bayes_band_summary"]
    assert table.loc["Bayesian mixed", "coverage"] > 0.9
    width = table["mean width"]
    assert width["Bayesian mixed"] < 0.75 * width["Bayesian pooled"]
    assert width["Bayesian mixed"] == pytest.approx(width["REML mixed"], rel=0.1)
    assert width["Bayesian pooled"] == pytest.approx(width["least-squares pooled"], rel=0.1)

    forest = res["bayes_forest"]
    assert len(forest) == 18 and forest["slope"].is_monotonic_increasing
    assert ((forest["slope"] - forest["REML slope"]).abs() < 0.3 * forest["sd"]).all()
    assert ((forest["lower"] < forest["slope"]) & (forest["slope"] < forest["upper"])).all()

    new = res["bayes_new_subject"]
    assert list(new["Days"]) == list(range(10))
    # a new subject's band is wider than that of any subject in the data on every day, wider
    # than the REML prediction interval (it carries the variance parameters' uncertainty),
    # and widens with the days (the new subject's slope is unknown)
    assert (new["width"] > new["widest observed subject"]).all()
    assert new["width"].mean() > new["REML width"].mean()
    assert new["width"].iloc[-1] > 1.5 * new["width"].iloc[0]


@needs_bayes
def test_sleep_bayes_new_subject_intercept_and_slope(sleep):
    _, res = sleep
    line = res["bayes_new_line"]
    by_predict, by_hand = line["posterior, via predict"], line["posterior, beta + L eps"]
    # two independent sets of draws of the same distribution
    for stat in ("intercept", "slope"):
        sd = by_predict[f"{stat} sd"]
        assert by_hand[f"{stat} mean"] == pytest.approx(by_predict[f"{stat} mean"], abs=0.2 * sd)
        assert by_hand[f"{stat} sd"] == pytest.approx(sd, rel=0.15)
    assert by_hand["correlation"] == pytest.approx(by_predict["correlation"], abs=0.2)
    # wider than N(beta, Sigma) with the REML estimates plugged in
    reml = line["REML plug-in"]
    assert by_predict["intercept sd"] > reml["intercept sd"]
    assert by_predict["slope sd"] > reml["slope sd"]
    draws = res["bayes_new_line_draws"]
    fit = res["bayes_fit"]
    assert len(draws) == fit.settings["draws"] * fit.settings["chains"]


@needs_bayes
@pytest.mark.filterwarnings("ignore:Passing a dict or None as alias_mapping")  # ArviZ, mpl 3.11
def test_sleep_bayes_figures(sleep, tmp_path):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    module, res = sleep
    assert res["bayes_figures"] == []  # main("small") saves none
    paths = module.save_bayes_plots(res["bayes_fit"], str(tmp_path))
    assert len(paths) == 3
    assert all(Path(p).stat().st_size > 10_000 for p in paths)


# -- politeness --------------------------------------------------------------------------------


def test_politeness_fixed_effects_parameterizations(politeness):
    _, res = politeness
    additive, no_int = res["lm_additive"], res["lm_no_intercept"]
    assert additive.nobs == 83
    assert np.allclose(additive.fitted(), no_int.fitted())
    assert no_int.coef["attitudeinf"] == pytest.approx(additive.coef["(Intercept)"])
    assert "genderM:attitudepol" in res["lm_interaction"].coef.index


def test_politeness_mixed_models(politeness):
    _, res = politeness
    maximal = res["fits"]["subject and scenario slopes"]
    assert maximal.nobs == 83 and maximal.n_dropped == 1
    assert maximal.ngroups == {"scenario": 7, "subject": 6}
    assert len(res["ranova"]) == 3
    assert list(res["structures"]["npar"]) == [5, 7, 10]
    # a large between-subject effect: gender is clearly significant
    assert res["gender_lrt"]["Pr(>Chisq)"].iloc[1] < 1e-3


def test_politeness_random_slopes_make_the_attitude_test_honest(politeness):
    module, res = politeness
    tests = res["attitude_tests"]
    assert tests.loc["maximal", "SE"] > tests.loc["random intercepts", "SE"]
    assert tests.loc["maximal", "p (LRT)"] > tests.loc["random intercepts", "p (LRT)"]
    rate = res["type1_rate"]
    assert len(res["type1_pvalues"]) == module.SIZES["small"]["nsim"]
    assert rate["random intercepts"] > 0.1
    assert rate["random intercepts"] > rate["maximal"]


@needs_bayes
def test_politeness_bayesian_sequence_agrees_with_lm_and_lmer(politeness):
    module, res = politeness
    fits, cmps = res["bayes_fits"], res["bayes_comparisons"]
    assert list(fits) == list(module.BAYES_FORMULAS)
    for label, fit in fits.items():
        check_sampler(fit)
        assert fit.model.design.n_dropped == 1 and fit.model.design.nobs == 83
        cmp = cmps[label]
        if "|" not in module.BAYES_FORMULAS[label]:
            # flat priors compared with the data: the posterior is the least-squares fit
            assert (cmp["(mean - est.) / sd"].abs() < 0.3).all(), label
            fixed = cmp.loc[cmp.index.str.startswith("beta")]
            assert (fixed["post. sd"] / fixed["SE"]).between(0.8, 1.25).all(), label
        else:
            fixed = cmp.loc[cmp.index.str.startswith(("beta", "sd_", "sigma"))]
            assert (fixed["(mean - est.) / sd"].abs() < 1).all(), label
    # without an intercept: one coefficient per attitude, the same fit
    additive, no_int = cmps["gender + attitude"], cmps["0 + attitude + gender"]
    sd = additive.loc["beta[(Intercept)]", "post. sd"]
    assert no_int.loc["beta[attitudeinf]", "post. mean"] == pytest.approx(
        additive.loc["beta[(Intercept)]", "post. mean"], abs=0.5 * sd
    )
    # six subjects: gender, a between-subject effect, is far less certain than its REML SE
    gender = cmps["subject and scenario slopes"].loc["beta[genderM]"]
    assert gender["post. sd"] > 1.5 * gender["SE"]


@needs_bayes
def test_politeness_bayesian_attitude_effect_and_correlation(politeness):
    _, res = politeness
    att = res["bayes_attitude"]
    assert list(att.index) == [
        "subject intercepts",
        "subject slopes",
        "subject and scenario slopes",
    ]
    # random attitude slopes make the attitude effect far less certain (the two models with
    # slopes are alike: their posterior SDs, about 10, differ by less than the Monte Carlo
    # error of an SD from a heavy-tailed posterior)
    sd = att["post. sd"]
    assert (sd.iloc[1:] > 1.5 * sd.iloc[0]).all()
    assert sd.iloc[1:].max() < 1.25 * sd.iloc[1:].min()
    assert (att["P(effect < 0)"] > 0.9).all()
    # mm.bayes estimates the subjects' intercept-slope correlation (LKJ(2) prior), which the
    # six subjects hardly inform: far from the REML estimate, almost as wide as the prior
    corr = res["bayes_subject_corr"]
    fitted = corr.drop("LKJ(2) prior")
    assert (fitted["post. sd"] > 0.3).all()
    assert (fitted["post. mean"].abs() < fitted["estimate"].abs() - 0.3).all()
    fit = res["bayes_fits"]["subject slopes"]
    assert "corr_subject" in fit.idata.posterior
    assert str(fit.model.priors["cor|subject"]) == "LKJ(eta: 2.0)"
