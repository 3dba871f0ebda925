"""Fits that must not change when the data are presented differently.

Permuting the rows, relabeling the levels of a grouping factor, shifting the response or
rescaling a covariate changes nothing of substance: the criterion is the same, and estimates
transform as the algebra says they should.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import mixedmodels as mm

MODELS = {
    "sleepstudy": ("Reaction ~ Days + (Days | Subject)", "sleepstudy", "Subject", "Days"),
    "penicillin": ("diameter ~ 1 + (1 | plate) + (1 | sample)", "Penicillin", "plate", None),
    "pastes": ("strength ~ 1 + (1 | batch/cask)", "Pastes", "batch", None),
    "cake": ("angle ~ recipe * temperature + (1 | recipe:replicate)", "cake", "replicate", "temp"),
}


def _fit(formula, data, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mm.lmer(formula, data, **kw)


@pytest.fixture(scope="module", params=sorted(MODELS))
def base(request):
    formula, dataset, group, covariate = MODELS[request.param]
    df = mm.datasets.load(dataset)
    return request.param, formula, df, group, covariate, _fit(formula, df)


def test_row_permutation(base):
    _, formula, df, _, _, fit = base
    perm = np.random.default_rng(1).permutation(len(df))
    shuffled = df.iloc[perm]
    refit = _fit(formula, shuffled)
    assert refit.loglik == pytest.approx(fit.loglik, rel=1e-10, abs=1e-8)
    np.testing.assert_allclose(refit.fixef, fit.fixef, rtol=1e-6)
    np.testing.assert_allclose(refit.theta, fit.theta, rtol=1e-4, atol=1e-5)
    # fitted values follow their rows
    np.testing.assert_allclose(refit.fitted().loc[df.index], fit.fitted(), rtol=1e-6)


def test_relabeling_levels(base):
    _, formula, df, group, _, fit = base
    rng = np.random.default_rng(2)
    levels = list(pd.unique(df[group].astype(str)))
    new_names = {old: f"L{i:03d}" for i, old in enumerate(rng.permutation(levels))}
    relabeled = df.assign(**{group: df[group].astype(str).map(new_names)})
    refit = _fit(formula, relabeled)
    assert refit.loglik == pytest.approx(fit.loglik, rel=1e-10, abs=1e-8)
    np.testing.assert_allclose(refit.fixef, fit.fixef, rtol=1e-6)
    old = fit.ranef().to_frame()
    new = refit.ranef().to_frame()
    for term in old["grpvar"].unique():
        if term != group:
            continue
        a = old[old.grpvar == term].set_index(["term", "grp"])["condval"]
        b = new[new.grpvar == term]
        b = b.assign(grp=b["grp"].map({v: k for k, v in new_names.items()})).set_index(
            ["term", "grp"]
        )["condval"]
        np.testing.assert_allclose(b.loc[a.index], a, rtol=1e-5, atol=1e-7)


def test_shifting_the_response(base):
    _, formula, df, _, _, fit = base
    response = formula.split("~")[0].strip()
    shifted = df.assign(**{response: df[response] + 1000.0})
    refit = _fit(formula, shifted)
    assert refit.loglik == pytest.approx(fit.loglik, rel=1e-9)
    assert refit.fixef["(Intercept)"] == pytest.approx(fit.fixef["(Intercept)"] + 1000.0, rel=1e-9)
    others = [c for c in fit.fixef.index if c != "(Intercept)"]
    np.testing.assert_allclose(refit.fixef[others], fit.fixef[others], rtol=1e-6, atol=1e-8)
    assert refit.sigma == pytest.approx(fit.sigma, rel=1e-6)
    np.testing.assert_allclose(refit.std_errors, fit.std_errors, rtol=1e-5)


@pytest.mark.parametrize("reml", [True, False])
def test_rescaling_a_covariate(sleepstudy, reml):
    """Days in hours: the slope (fixed and random) scales by 1/24; the likelihood is unchanged
    (the REML likelihood moves by the constant -log 24, from log|X' V^-1 X|)."""
    fit = _fit("Reaction ~ Days + (Days | Subject)", sleepstudy, reml=reml)
    hours = sleepstudy.assign(Days=sleepstudy["Days"] * 24.0)
    refit = _fit("Reaction ~ Days + (Days | Subject)", hours, reml=reml)
    shift = -np.log(24.0) if reml else 0.0
    assert refit.loglik == pytest.approx(fit.loglik + shift, rel=1e-9)
    assert refit.fixef["Days"] == pytest.approx(fit.fixef["Days"] / 24.0, rel=1e-5)
    assert refit.std_errors["Days"] == pytest.approx(fit.std_errors["Days"] / 24.0, rel=1e-4)
    sd_old = fit.varcorr["Subject"].sd
    sd_new = refit.varcorr["Subject"].sd
    assert sd_new[0] == pytest.approx(sd_old[0], rel=1e-4)
    assert sd_new[1] == pytest.approx(sd_old[1] / 24.0, rel=1e-4)
    assert refit.varcorr["Subject"].corr[1, 0] == pytest.approx(
        fit.varcorr["Subject"].corr[1, 0], abs=1e-4
    )


def test_scaling_the_response(sleepstudy):
    fit = _fit("Reaction ~ Days + (Days | Subject)", sleepstudy)
    refit = _fit(
        "Reaction ~ Days + (Days | Subject)",
        sleepstudy.assign(Reaction=sleepstudy["Reaction"] / 1000.0),
    )
    np.testing.assert_allclose(refit.theta, fit.theta, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(refit.fixef * 1000.0, fit.fixef, rtol=1e-6)
    # the REML log-likelihood of y/c is that of y plus (n - p) log c
    dof = fit.nobs - len(fit.fixef)
    assert refit.loglik == pytest.approx(fit.loglik + dof * np.log(1000.0), rel=1e-9)


def test_numeric_string_and_categorical_groups_agree(sleepstudy):
    as_int = sleepstudy.assign(Subject=sleepstudy["Subject"].astype(int))
    as_str = sleepstudy.assign(Subject=sleepstudy["Subject"].astype(str))
    fits = [_fit("Reaction ~ Days + (Days | Subject)", d) for d in (sleepstudy, as_int, as_str)]
    for f in fits[1:]:
        assert f.loglik == pytest.approx(fits[0].loglik, rel=1e-12)
    assert [str(v) for v in fits[1].ranef()["Subject"].index] == list(
        fits[0].ranef()["Subject"].index
    )
