"""Simulation-based calibration: parameters drawn from the prior, data simulated from them,
the posterior sampled; the rank of the true value among the posterior draws is uniform when
the sampler and the likelihood are right (Talts et al. 2018, arXiv:1804.06788)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

pytest.importorskip("numpyro")

import mixedmodels as mm

PRIORS = {
    "(Intercept)": mm.priors.Normal(0, 1),
    "x": mm.priors.Normal(0, 1),
    "1|g": mm.priors.HalfNormal(1),
    "sigma": mm.priors.HalfNormal(1),
}


def _design(rng: np.random.Generator) -> pd.DataFrame:
    g = np.repeat(np.arange(8), 6)
    x = rng.normal(size=g.size)
    x -= x.mean()  # the intercept's prior is at the predictors' means: make that x = 0
    return pd.DataFrame({"g": g.astype(str), "x": x, "y": rng.normal(size=g.size)})


def test_simulation_based_calibration_of_a_random_intercept_model():
    rng = np.random.default_rng(20261201)
    design = _design(rng)
    base = mm.bayes("y ~ x + (1 | g)", design, priors=PRIORS)
    refs = base.design.terms[0].refs
    reps, keep = 60, 49  # 49 thinned draws: ranks 0..49 in 5 bins of 10
    ranks = {"(Intercept)": [], "x": [], "sd": [], "sigma": []}
    for r in range(reps):
        b0, b1 = rng.normal(0, 1, 2)
        tau, sigma = np.abs(rng.normal(0, 1, 2))
        u = rng.normal(0, tau, 8)
        y = b0 + b1 * design["x"].to_numpy() + u[refs] + rng.normal(0, sigma, len(design))
        fit = base.with_response(y).fit(draws=245, tune=300, chains=2, seed=r, progress=False)
        post = fit.idata.posterior
        draws = {
            "(Intercept)": post["beta"].sel(coef="(Intercept)").values,
            "x": post["beta"].sel(coef="x").values,
            "sd": post["sd_g"].values[..., 0],
            "sigma": post["sigma"].values,
        }
        truth = {"(Intercept)": b0, "x": b1, "sd": tau, "sigma": sigma}
        for name, d in draws.items():
            thinned = d.ravel()[:: len(d.ravel()) // keep][:keep]
            ranks[name].append(int(np.sum(thinned < truth[name])))
    for name, rk in ranks.items():
        counts = np.bincount(np.asarray(rk) // 10, minlength=5)
        p = stats.chisquare(counts).pvalue
        assert p > 0.001, (name, counts)


def test_a_wrong_likelihood_fails_the_calibration():
    """The check has power: data simulated with twice the noise the model assumes give
    ranks of sigma piled at the top."""
    rng = np.random.default_rng(7)
    design = _design(rng)
    base = mm.bayes("y ~ x + (1 | g)", design, priors=PRIORS)
    refs = base.design.terms[0].refs
    ranks = []
    for r in range(20):
        tau, sigma = np.abs(rng.normal(0, 1, 2))
        y = rng.normal(0, tau, 8)[refs] + rng.normal(0, 2 * sigma, len(design))
        fit = base.with_response(y).fit(draws=245, tune=300, chains=2, seed=r, progress=False)
        d = fit.idata.posterior["sigma"].values.ravel()[::10][:49]
        ranks.append(int(np.sum(d < sigma)))
    counts = np.bincount(np.asarray(ranks) // 10, minlength=5)
    assert stats.chisquare(counts).pvalue < 0.001
