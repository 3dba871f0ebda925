"""Inference for GLMMs against lme4 1.1-31: likelihood-ratio tests, profile intervals, and the
parametric bootstrap (tests/fixtures/glmer/make_glmer_inference.R)."""

from __future__ import annotations

import functools
import warnings

import numpy as np
import pandas as pd
import pytest

import mixedmodels as mm
from mixedmodels.errors import ModelSpecError

from ..conftest import fitted_glmer, glmer_inference_reference


def _ref(case: str) -> dict:
    return glmer_inference_reference()["cases"][case]


@functools.cache
def _grouseticks() -> pd.DataFrame:
    df = mm.datasets.load("grouseticks").copy()
    h = df["HEIGHT"].to_numpy(dtype=float)
    df["sHEIGHT"] = (h - h.mean()) / h.std(ddof=1)
    return df


@functools.cache
def _fit(case: str, which: str = "formula", nAGQ: int = 1) -> mm.GlmerResult:
    ref = _ref(case)
    if case.startswith("cbpp"):
        data, family = mm.datasets.load("cbpp"), "binomial"
    else:
        data, family = _grouseticks(), "poisson"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mm.glmer(ref[which], data, family, nAGQ=nAGQ)


@pytest.mark.parametrize("case", ["cbpp", "grouseticks"])
def test_likelihood_ratio_test_matches_lme4(case: str) -> None:
    ref = _ref(case)["anova"]
    tab = mm.anova(_fit(case, "formula0"), _fit(case))
    assert list(tab["npar"]) == [r["npar"] for r in ref]
    np.testing.assert_allclose(tab["logLik"], [r["logLik"] for r in ref], rtol=1e-6)
    np.testing.assert_allclose(tab["AIC"], [r["AIC"] for r in ref], rtol=1e-6)
    np.testing.assert_allclose(tab["BIC"], [r["BIC"] for r in ref], rtol=1e-6)
    assert tab["Chisq"].iloc[1] == pytest.approx(ref[1]["Chisq"], rel=1e-4)
    assert tab["Df"].iloc[1] == ref[1]["Df"]
    assert tab["Pr(>Chisq)"].iloc[1] == pytest.approx(ref[1]["Pr(>Chisq)"], rel=1e-3)


def test_anova_refuses_mixed_kinds_and_families() -> None:
    cbpp = mm.datasets.load("cbpp")
    binom = _fit("cbpp")
    probit = mm.glmer(_ref("cbpp")["formula"], cbpp, mm.families.Binomial("probit"), warn=False)
    assert probit.loglik == pytest.approx(_ref("cbpp")["loglik_probit"], rel=1e-6)
    with pytest.raises(ModelSpecError, match="different families or links"):
        mm.anova(binom, probit)
    lmm = mm.lmer("incidence ~ period + (1 | herd)", cbpp)
    with pytest.raises(ModelSpecError, match="generalized linear mixed model"):
        mm.anova(lmm, binom)
    agq = _fit("cbpp_agq9", nAGQ=9)
    with pytest.warns(UserWarning, match="nAGQ"):
        mm.anova(_fit("cbpp", "formula0"), agq)


@pytest.mark.parametrize(("case", "nAGQ"), [("cbpp", 1), ("grouseticks", 1), ("cbpp_agq9", 9)])
def test_profile_intervals_match_lme4(case: str, nAGQ: int) -> None:
    ref = _ref(case)["confint_profile"]
    ci = _fit(case, nAGQ=nAGQ).confint(method="profile")
    assert list(ci.index) == [r["parameter"] for r in ref]
    for r in ref:
        lo, hi = ci.loc[r["parameter"]]
        assert lo == pytest.approx(r["lower"], rel=2e-3, abs=2e-3), r["parameter"]
        assert hi == pytest.approx(r["upper"], rel=2e-3, abs=2e-3), r["parameter"]


def test_profile_object_for_glmm() -> None:
    prof = _fit("cbpp").profile(which="period2")
    frame = prof.table
    assert set(frame["parameter"]) == {"period2"}
    z = frame["zeta"].to_numpy()
    assert z.min() < -2 and z.max() > 2
    # interpolated limits are close to the exact ones
    exact = _fit("cbpp").confint(method="profile", which="period2")
    np.testing.assert_allclose(prof.confint().to_numpy(), exact.to_numpy(), rtol=2e-2)


def test_bootstrap_spread_matches_bootmer() -> None:
    ref = _ref("cbpp")["bootstrap"]
    fit = fitted_glmer("cbpp_laplace")
    boot = fit.bootstrap(1000, seed=11, n_jobs=1, progress=False)
    assert boot.nsim == 1000 and not boot.failures
    assert list(boot.replicates.columns) == ref["parameters"]
    reps = boot.replicates.to_numpy()
    # compare robust summaries: replicates where period 4 happens to have no cases at all are
    # (quasi-)separated and give arbitrary large negative estimates that dominate the SD
    spread = (np.asarray(ref["q975"]) - np.asarray(ref["q025"])) / (2 * 1.96)
    for q, key in ((0.025, "q025"), (0.975, "q975")):
        # the Monte Carlo s.e. of a 2.5% quantile from 1000 draws is about 0.1 SD per run
        np.testing.assert_allclose(
            np.quantile(reps, q, axis=0), ref[key], atol=0.45 * spread.max(), rtol=0
        )
        assert np.all(np.abs(np.quantile(reps, q, axis=0) - ref[key]) < 0.45 * spread), key
    med = np.median(reps, axis=0)
    mc_se = 1.25 * spread / np.sqrt(1000) * np.sqrt(2)  # two runs' medians
    assert np.all(np.abs(med - np.asarray(ref["median"])) < 4.5 * mc_se)
    ci = boot.confint()
    assert np.all(ci.iloc[:, 0] < boot.estimates) and np.all(ci.iloc[:, 1] > boot.estimates)
    # reproducible, whatever the number of workers
    again = fit.bootstrap(20, seed=5, n_jobs=1, progress=False)
    pooled = fit.bootstrap(20, seed=5, n_jobs=2, progress=False)
    np.testing.assert_allclose(again.replicates, pooled.replicates, rtol=1e-10)


def test_profile_that_cannot_reach_its_limit_says_which_and_why():
    """Complete separation: the likelihood keeps rising with the slope, so its profile never
    reaches the cutoff; the warning names the parameter and the reason, and points at the
    caller's line."""
    import numpy as np
    import pandas as pd

    from mixedmodels.inference.profile import ProfileWarning

    rng = np.random.default_rng(1)
    x = rng.normal(size=80)
    d = pd.DataFrame({"y": (x > 0).astype(float), "x": x, "g": np.repeat(np.arange(10), 8)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = mm.glmer("y ~ x + (1 | g)", d, "binomial")
    with pytest.warns(ProfileWarning, match=r"the profile for x does not reach zeta = \+") as rec:
        prof = fit.profile(which=["x"], progress=False)
    assert "the likelihood stays flat" in str(rec[0].message)
    assert rec[0].filename == __file__
    assert prof.table["zeta"].max() < 3.37  # lme4's cutoff for three parameters
