"""The designs of the analyses users run today (docs/examples, after the seed documents), fitted
the Bayesian way at the default settings: convergence and agreement with the REML fit."""

from __future__ import annotations

import functools
import warnings

import numpy as np
import pytest

pytest.importorskip("numpyro")

import mixedmodels as mm
from tests.docs.test_examples import load_example

from .test_sampling import _check_converged


@functools.cache
def _politeness():
    ex = load_example("politeness")
    return ex.simulate_pitch(ex.make_design(), np.random.default_rng(20240301))


@functools.cache
def _schools():
    ex = load_example("nested_schools")
    return ex.simulate_scores(ex.make_design(5, 4, 20), np.random.default_rng(20240301))


@functools.cache
def _archers():
    ex = load_example("archers")
    rng = np.random.default_rng(20240301)
    skill = rng.normal(0.0, ex.TRUE["sd_archer"], 20)
    names = [f"A{j + 1:02d}" for j in range(20)]
    return ex.simulate_experiment(dict(zip(names, skill, strict=True)), 10, rng)


CASES = {
    "politeness maximal": (
        _politeness,
        "frequency ~ gender + attitude + (attitude | subject) + (attitude | scenario)",
    ),
    "nested schools": (_schools, "outcome ~ fixed_effect + (1 | school/classroom)"),
    "archers": (_archers, "distance ~ bow + (1 | archer)"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_seed_design_at_default_settings(case):
    data_fn, formula = CASES[case]
    data = data_fn()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reml = mm.lmer(formula, data)
    fit = mm.bayes(formula, data).fit(seed=11, progress=False)
    _check_converged(fit, reml)
    if case == "politeness maximal":
        # one missing pitch value: the row is dropped, and the model says so
        assert fit.model.design.n_dropped == 1
        assert "1 rows with missing values dropped" in str(fit.model)
