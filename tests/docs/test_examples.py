"""The worked examples in docs/examples run (at their small size) and give what they claim."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"


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
