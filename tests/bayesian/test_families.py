"""Binomial and Poisson models (non-centred): agreement with glmer, the response forms."""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("numpyro")

import mixedmodels as mm

CBPP = "cbind(incidence, size - incidence) ~ period + (1 | herd)"


@functools.cache
def cbpp_fit():
    return mm.bayes(CBPP, mm.datasets.load("cbpp"), "binomial").fit(
        seed=3, draws=1000, tune=1000, progress=False
    )


def test_binomial_agrees_with_glmer():
    fit = cbpp_fit()
    assert not fit.model.marginal
    table = fit.summary().table
    assert fit.divergences == 0
    assert table["r_hat"].max() <= 1.01
    glmm = mm.glmer(CBPP, mm.datasets.load("cbpp"), "binomial")
    for name, est in glmm.fixef.items():
        row = table.loc[f"beta[{name}]"]
        assert abs(row["mean"] - est) < 0.25 * row["sd"], name
    sd = glmm.varcorr.terms[0].sd[0]
    assert (
        table.loc["sd_herd[(Intercept)]", "hdi_3%"]
        < sd
        < table.loc["sd_herd[(Intercept)]", "hdi_97%"]
    )
    assert "sigma" not in fit.idata.posterior


def test_binomial_predictions_are_probabilities_and_counts():
    fit = cbpp_fit()
    cbpp = mm.datasets.load("cbpp")
    p = fit.predict()
    assert float(p.min()) > 0 and float(p.max()) < 1
    pp = fit.posterior_predictive(seed=1).posterior_predictive["y"]
    assert float(pp.max()) <= cbpp["size"].max()
    np.testing.assert_array_equal(pp.values, np.round(pp.values))
    # the replicated incidence has the observed total on average
    assert float(pp.sum(dim="obs").mean()) == pytest.approx(cbpp["incidence"].sum(), rel=0.08)
    # a new herd's probability is spread over the herds' distribution
    new = pd.DataFrame({"period": ["1"], "herd": ["new"]})
    draws = fit.predict(new, seed=1).values.ravel()
    assert np.std(draws) > np.std(fit.predict(new, re_form="~0").values.ravel())


def test_binomial_response_forms_give_the_same_model():
    """cbind(successes, failures), proportions with weights= trials, and 0/1 rows."""
    cbpp = mm.datasets.load("cbpp")
    a = mm.bayes(CBPP, cbpp, "binomial")
    b = mm.bayes(
        "incidence / size ~ period + (1 | herd)", cbpp.assign(), "binomial", weights="size"
    )
    np.testing.assert_array_equal(a.data.y, b.data.y)
    np.testing.assert_array_equal(a.data.trials, b.data.trials)
    rows = cbpp.loc[cbpp.index.repeat(cbpp["size"])].copy()
    k = rows.groupby(level=0).cumcount()
    rows["y"] = (k < rows["incidence"]).astype(int)
    c = mm.bayes("y ~ period + (1 | herd)", rows.reset_index(drop=True), "binomial")
    assert c.data.y.sum() == a.data.y.sum() and c.data.trials.sum() == a.data.trials.sum()
    with pytest.raises(mm.DataError, match="between 0 and 1"):
        mm.bayes("incidence ~ period + (1 | herd)", cbpp, "binomial")


def test_poisson_with_an_offset_agrees_with_glmer():
    cbpp = mm.datasets.load("cbpp")
    f = "incidence ~ period + offset(np.log(size)) + (1 | herd)"
    fit = mm.bayes(f, cbpp, "poisson").fit(seed=5, progress=False)
    table = fit.summary().table
    assert fit.divergences == 0
    assert table["r_hat"].max() <= 1.01
    glmm = mm.glmer(f, cbpp, "poisson")
    for name, est in glmm.fixef.items():
        row = table.loc[f"beta[{name}]"]
        assert abs(row["mean"] - est) < 0.25 * row["sd"], name
    pp = fit.posterior_predictive(seed=2).posterior_predictive["y"]
    assert float(pp.sum(dim="obs").mean()) == pytest.approx(cbpp["incidence"].sum(), rel=0.08)
    # the offset enters predictions for new data: twice the herd size, twice the mean
    new = pd.DataFrame({"period": ["1", "1"], "size": [10.0, 20.0], "herd": ["1", "1"]})
    mu = fit.predict(new).mean(dim=("chain", "draw")).values
    assert mu[1] == pytest.approx(2 * mu[0], rel=1e-10)


def test_hard_posteriors_are_flagged():
    """Ticks on grouse chicks, broods nested in locations: a hard posterior (broods carry the
    overdispersion). The brood effects, well informed by their counts, are sampled centred,
    the locations' non-centred; at short runs NUTS diverges, and the fit says what to do."""
    grouse = mm.datasets.load("grouseticks")
    f = "TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | LOCATION)"
    model = mm.bayes(f, grouse, "poisson")
    assert model.centring() == (True, False)
    assert "centred: BROOD" in str(model)
    with pytest.warns(mm.ConvergenceWarning) as record:
        fit = model.fit(seed=5, draws=200, tune=200, chains=2, progress=False)
    messages = [str(w.message) for w in record]
    assert messages == fit.check(stacklevel=1) or messages  # re-checking repeats the warnings
    if fit.divergences:
        assert any("refit with a higher target_accept (e.g. 0.95)" in m for m in messages)
        assert "consider target_accept=0.95" in str(fit.summary())
    if fit.summary().table["r_hat"].max() > 1.01:
        assert any("R-hat above 1.01" in m and "draw more" in m for m in messages)


def test_poisson_rejects_negative_counts():
    grouse = mm.datasets.load("grouseticks")
    bad = grouse.assign(TICKS=grouse["TICKS"] - 1)
    with pytest.raises(mm.DataError, match="negative"):
        mm.bayes("TICKS ~ YEAR + (1 | BROOD)", bad, "poisson")


def test_gaussian_regression_without_group_effects():
    """The seed's first Bambi model: frequency ~ gender + attitude, no random effects."""
    from tests.docs.test_examples import load_example

    ex = load_example("politeness")
    data = ex.simulate_pitch(ex.make_design(), np.random.default_rng(1))
    fit = mm.bayes("frequency ~ gender + attitude", data).fit(seed=1, progress=False)
    ols = mm.lm("frequency ~ gender + attitude", data)
    table = fit.summary().table
    for name, est in ols.coef.items():
        row = table.loc[f"beta[{name}]"]
        assert abs(row["mean"] - est) < 0.2 * row["sd"], name
        # flat-ish priors: the posterior sd is the least-squares standard error
        assert row["sd"] == pytest.approx(ols.std_errors[name], rel=0.15), name
    assert fit.divergences == 0
