"""Priors: names, defaults scaled to the data, validation, printing."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("numpyro")

import mixedmodels as mm
from mixedmodels.priors import accepts


@pytest.fixture(scope="module")
def sleep() -> pd.DataFrame:
    return mm.datasets.load("sleepstudy")


def test_parameter_names_follow_the_formula(sleep):
    model = mm.bayes("Reaction ~ Days + (Days | Subject)", sleep)
    assert list(model.priors) == [
        "(Intercept)",
        "Days",
        "1|Subject",
        "Days|Subject",
        "cor|Subject",
        "sigma",
    ]


def test_default_priors_are_scaled_to_the_data(sleep):
    model = mm.bayes("Reaction ~ Days + (Days | Subject)", sleep)
    sy = float(np.std(sleep["Reaction"]))
    sx = float(np.std(sleep["Days"]))
    p = model.priors
    assert p["(Intercept)"] == mm.priors.Normal(float(np.mean(sleep["Reaction"])), 2.5 * sy)
    assert p["Days"] == mm.priors.Normal(0.0, 2.5 * sy / sx)
    assert p["1|Subject"] == mm.priors.HalfStudentT(3.0, 2.5 * sy)
    assert p["Days|Subject"] == mm.priors.HalfStudentT(3.0, 2.5 * sy / sx)
    assert p["cor|Subject"] == mm.priors.LKJ(2.0)
    assert p["sigma"] == mm.priors.HalfStudentT(4.0, sy)
    # rescaling the response rescales every prior of a parameter in its units
    s2 = sleep.assign(Reaction=sleep["Reaction"] / 1000)
    p2 = mm.bayes("Reaction ~ Days + (Days | Subject)", s2).priors
    assert p2["Days"].sigma == pytest.approx(p["Days"].sigma / 1000)
    assert p2["sigma"].sigma == pytest.approx(p["sigma"].sigma / 1000)


def test_binomial_defaults_are_on_the_link_scale():
    cbpp = mm.datasets.load("cbpp")
    model = mm.bayes("cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp, "binomial")
    prop = cbpp["incidence"].sum() / cbpp["size"].sum()
    assert model.priors["(Intercept)"].mu == pytest.approx(np.log(prop / (1 - prop)))
    assert model.priors["(Intercept)"].sigma == 2.5
    assert model.priors["1|herd"] == mm.priors.HalfStudentT(3.0, 2.5)
    assert "sigma" not in list(model.priors)


def test_custom_priors_by_name_and_alias(sleep):
    model = mm.bayes(
        "Reaction ~ Days + (Days | Subject)",
        sleep,
        priors={
            "Days": mm.priors.Normal(0, 10),
            "Intercept": mm.priors.StudentT(3, 250, 50),
            "1|Subject": mm.priors.HalfNormal(5),
            "cor|Subject": mm.priors.LKJ(2),
            "sigma": mm.priors.Exponential(0.1),
        },
    )
    p = model.priors
    assert p["Days"] == mm.priors.Normal(0, 10)
    assert p["(Intercept)"] == mm.priors.StudentT(3, 250, 50)
    assert p["1|Subject"] == mm.priors.HalfNormal(5)
    assert p["cor|Subject"] == mm.priors.LKJ(2)
    text = str(model.priors)
    assert "Days         ~ Normal(mu: 0.0, sigma: 10.0)" in text
    assert "Days|Subject ~ HalfStudentT" in text and "(auto)" in text
    assert "1|Subject    ~ HalfNormal(sigma: 5.0)\n" in text


def test_uncorrelated_terms_get_names_for_each_term(sleep):
    model = mm.bayes("Reaction ~ Days + (Days || Subject)", sleep)
    assert list(model.priors) == ["(Intercept)", "Days", "1|Subject", "Days|Subject.1", "sigma"]
    # the plain spelling reaches the second term when it is unambiguous
    m2 = mm.bayes(
        "Reaction ~ Days + (Days || Subject)",
        sleep,
        priors={"Days|Subject": mm.priors.HalfNormal(3)},
    )
    assert m2.priors["Days|Subject.1"] == mm.priors.HalfNormal(3)


def test_unknown_names_and_wrong_kinds_are_clear_errors(sleep):
    f = "Reaction ~ Days + (Days | Subject)"
    with pytest.raises(mm.ModelSpecError, match=r"unknown parameter 'days'.*'Days'.*'1\|Subject'"):
        mm.bayes(f, sleep, priors={"days": mm.priors.Normal(0, 1)})
    with pytest.raises(
        mm.ModelSpecError, match="standard deviation and needs a distribution on the positive reals"
    ):
        mm.bayes(f, sleep, priors={"1|Subject": mm.priors.Normal(0, 1)})
    with pytest.raises(mm.ModelSpecError, match="needs LKJ"):
        mm.bayes(f, sleep, priors={"cor|Subject": mm.priors.HalfNormal(1)})
    with pytest.raises(
        mm.ModelSpecError, match="fixed effect and needs a distribution on the real"
    ):
        mm.bayes(f, sleep, priors={"Days": mm.priors.HalfNormal(1)})
    with pytest.raises(mm.ModelSpecError, match=r"must be a prior from mixedmodels\.priors"):
        mm.bayes(f, sleep, priors={"Days": 3.0})
    with pytest.raises(mm.ModelSpecError, match="sigma must be positive"):
        mm.priors.Normal(0, -1)
    with pytest.raises(mm.ModelSpecError, match="must be a number"):
        mm.priors.HalfNormal("5")
    with pytest.raises(mm.ModelSpecError, match="family must be one of"):
        mm.bayes(f, sleep, family="gamma")
    with pytest.raises(mm.ModelSpecError, match="link 'logit' is not available"):
        mm.bayes(f, sleep, link="logit")


def test_support_rules():
    assert accepts(mm.priors.Uniform(0, 10), "positive")
    assert not accepts(mm.priors.Uniform(-1, 10), "positive")
    assert accepts(mm.priors.Uniform(-1, 10), "real")
    assert not accepts(mm.priors.LKJ(1), "real")
    assert accepts(mm.priors.Gamma(2, 1), "positive")


def test_prior_printing_and_scaling():
    assert str(mm.priors.Normal(0, 10)) == "Normal(mu: 0.0, sigma: 10.0)"
    assert str(mm.priors.HalfStudentT(4, 65.1447)) == "HalfStudentT(nu: 4.0, sigma: 65.1447)"
    assert mm.priors.Exponential(2).scaled(4) == mm.priors.Exponential(0.5)
    assert mm.priors.LogNormal(0, 1).scaled(np.e).mu == pytest.approx(1.0)


def test_prior_distributions_match_numpyro():
    """Each prior's density is NumPyro's distribution with the documented parameters."""
    from scipy import stats

    x = np.array([0.3, 1.7, 4.2])
    cases = [
        (mm.priors.Normal(1, 2), stats.norm(1, 2)),
        (mm.priors.StudentT(3, 1, 2), stats.t(3, 1, 2)),
        (mm.priors.Cauchy(1, 2), stats.cauchy(1, 2)),
        (mm.priors.HalfNormal(2), stats.halfnorm(scale=2)),
        (mm.priors.HalfCauchy(2), stats.halfcauchy(scale=2)),
        (mm.priors.Exponential(0.5), stats.expon(scale=2)),
        (mm.priors.Gamma(2, 3), stats.gamma(2, scale=1 / 3)),
        (mm.priors.LogNormal(0.5, 0.7), stats.lognorm(0.7, scale=np.exp(0.5))),
        (mm.priors.Uniform(0, 5), stats.uniform(0, 5)),
    ]
    for prior, ref in cases:
        got = np.asarray(prior.to_numpyro().log_prob(x))
        np.testing.assert_allclose(got, ref.logpdf(x), rtol=1e-10, err_msg=str(prior))
    # half Student t: twice the t density on the positive half line
    got = np.asarray(mm.priors.HalfStudentT(4, 2).to_numpyro().log_prob(x))
    np.testing.assert_allclose(got, np.log(2) + stats.t(4, 0, 2).logpdf(x), rtol=1e-10)


def test_missing_extra_says_what_to_install(monkeypatch, sleep):
    import sys

    monkeypatch.setitem(sys.modules, "numpyro", None)
    with pytest.raises(mm.MissingExtraError, match=r"pip install 'mixedmodels\[bayes\]'"):
        mm.bayes("Reaction ~ Days + (Days | Subject)", sleep)


def test_import_without_the_extra(tmp_path):
    """mixedmodels imports without JAX, NumPyro and ArviZ; the Bayesian API then names the
    extra."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "for m in ('jax', 'numpyro', 'arviz'): sys.modules[m] = None\n"
        "import mixedmodels as mm\n"
        "fit = mm.lmer('Reaction ~ Days + (1 | Subject)', mm.datasets.load('sleepstudy'))\n"
        "try:\n"
        "    mm.bayes('Reaction ~ Days + (1 | Subject)', mm.datasets.load('sleepstudy'))\n"
        "except ImportError as e:\n"
        "    print('ERR', e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "ERR Bayesian models need jax, numpyro, arviz (the 'bayes' extra): " in out.stdout
    assert "pip install 'mixedmodels[bayes]'" in out.stdout
