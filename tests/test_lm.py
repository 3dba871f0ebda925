"""lm against R's lm (reference values from tests/fixtures/lme4/make_lme4_fixtures.R)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import mixedmodels as mm

from .conftest import lme4_reference

LM_CASES = sorted(lme4_reference()["lm"])


def _fit(name):
    c = lme4_reference()["lm"][name]
    return c, mm.lm(c["formula"], mm.datasets.load(c["dataset"]))


@pytest.mark.parametrize("name", LM_CASES)
def test_coefficients(name):
    c, fit = _fit(name)
    ref = pd.DataFrame(c["coefficients"]).set_index("term")
    table = fit.coefficients_table()
    assert list(table.index) == list(ref.index)
    np.testing.assert_allclose(table.to_numpy(), ref.to_numpy(dtype=float), rtol=1e-9)


@pytest.mark.parametrize("name", LM_CASES)
def test_fit_statistics(name):
    c, fit = _fit(name)
    assert fit.sigma == pytest.approx(c["sigma"], rel=1e-10)
    assert fit.r_squared == pytest.approx(c["r.squared"], rel=1e-10)
    assert fit.adj_r_squared == pytest.approx(c["adj.r.squared"], rel=1e-10)
    f = fit.fstatistic
    assert f[0] == pytest.approx(c["fstatistic"]["value"], rel=1e-10)
    assert (f[1], f[2]) == (c["fstatistic"]["numdf"], c["fstatistic"]["dendf"])
    assert fit.f_pvalue == pytest.approx(stats.f.sf(*f), rel=1e-14)
    assert fit.nobs == c["nobs"]


@pytest.mark.parametrize("name", LM_CASES)
def test_summary_text(name):
    c, fit = _fit(name)
    # capture.output() in the R script drops the final empty line
    assert str(fit.summary()).rstrip("\n") == c["summary_text"].rstrip("\n")


def test_lm_refuses_random_effects(sleepstudy):
    with pytest.raises(mm.FormulaError, match=r"use mixedmodels\.lmer"):
        mm.lm("Reaction ~ Days + (1 | Subject)", sleepstudy)


def test_lm_aliased_coefficient(sleepstudy):
    df = sleepstudy.assign(Days2=2 * sleepstudy["Days"])
    fit = mm.lm("Reaction ~ Days + Days2", df)
    assert np.isnan(fit.coef["Days2"])
    assert "Coefficients: (1 not defined because of singularities)" in str(fit.summary())


def test_lm_loglik_matches_gaussian_likelihood(sleepstudy):
    fit = mm.lm("Reaction ~ Days", sleepstudy)
    r = fit.residuals().to_numpy()
    n = len(r)
    s2 = r @ r / n
    assert fit.loglik == pytest.approx(-0.5 * n * (np.log(2 * np.pi * s2) + 1), rel=1e-12)


def test_lm_predict(sleepstudy):
    fit = mm.lm("Reaction ~ Days", sleepstudy)
    new = pd.DataFrame({"Days": [0.0, 10.0]})
    np.testing.assert_allclose(
        fit.predict(new), fit.coef["(Intercept)"] + fit.coef["Days"] * new["Days"]
    )
