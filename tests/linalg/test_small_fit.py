"""The compiled search of a small linear mixed model (FastObjective.minimize) against the
Python optimizers on the same criterion: L-BFGS-B with the exact gradient and BOBYQA with tight
tolerances, from the default start, from a start on the boundary, warm-started with a Hessian,
and stopped by its evaluation limit."""

from __future__ import annotations

import functools

import numpy as np
import pytest

import mixedmodels as mm
from mixedmodels.linalg import small_fit
from mixedmodels.lmm import LinearMixedModel
from mixedmodels.optim import hessian_from_gradient, minimize_theta, minimize_with_gradient

CASES = {
    "slope": ("sleepstudy", "Reaction ~ Days + (Days | Subject)", None),
    "uncorrelated": ("sleepstudy", "Reaction ~ Days + (1 | Subject) + (0 + Days | Subject)", None),
    "crossed_small": ("Penicillin", "diameter ~ 1 + (1 | plate) + (1 | sample)", None),
    "nested": ("Pastes", "strength ~ 1 + (1 | batch/cask)", None),
    "singular": ("Dyestuff2", "Yield ~ 1 + (1 | Batch)", None),
    "weighted": ("cbpp", "I(incidence / size) ~ period + (1 | herd)", "size"),
}


@functools.cache
def _model(case: str, reml: bool) -> LinearMixedModel:
    data, formula, weights = CASES[case]
    return LinearMixedModel.from_formula(
        formula, mm.datasets.load(data), reml=reml, weights=weights
    )


def _units(model: LinearMixedModel) -> tuple[np.ndarray, np.ndarray]:
    theta0, _ = model.initial_theta()
    return theta0, model.search_scale()


@pytest.mark.parametrize("reml", [True, False], ids=["REML", "ML"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_finds_the_optimum_of_the_python_optimizers(case, reml):
    model = _model(case, reml)
    fast = model.fast_objective()
    assert fast is not None and fast.small
    theta0, scale = _units(model)
    lower = model.lower_bounds
    opt = fast.minimize(theta0, lower, scale)
    assert opt.return_code > 0, opt.message
    lbfgs = minimize_with_gradient(fast.objective_gradient, theta0, lower, scale)
    bobyqa = minimize_theta(
        fast.objective, theta0, lower, ftol_rel=1e-14, ftol_abs=1e-14, xtol_abs=1e-12
    )
    best = min(lbfgs.fmin, bobyqa.fmin)
    assert opt.fmin <= best + 1e-10 * abs(best)
    assert opt.fmin == pytest.approx(fast.objective(opt.final), rel=1e-14, abs=1e-12)
    np.testing.assert_allclose(opt.final, bobyqa.final, rtol=1e-3, atol=1e-4)
    # the record of the search: every point and its criterion, the best one last or earlier
    assert opt.feval == len(opt.objective_path) == opt.theta_path.shape[0]
    k = len(opt.objective_path) // 2
    assert opt.objective_path[k] == pytest.approx(
        fast.objective(opt.theta_path[k]), rel=1e-14, abs=1e-12
    )
    assert np.min(opt.objective_path) == pytest.approx(opt.fmin, rel=1e-14, abs=1e-12)
    assert np.all(opt.final >= lower)
    if case == "singular":
        assert opt.final[0] == 0.0  # set on the bound, as the Python optimizers do
    else:
        assert opt.feval <= 40


def test_a_start_on_the_boundary_is_left():
    """theta = 0 is a stationary point of every variance parameter (the criterion is even in
    it); the search tries a little inside and goes on from there."""
    model = _model("slope", True)
    fast = model.fast_objective()
    theta0, scale = _units(model)
    zero = np.zeros_like(theta0)
    opt = fast.minimize(zero, model.lower_bounds, scale)
    ref = fast.minimize(theta0, model.lower_bounds, scale)
    assert opt.return_code > 0
    assert opt.fmin == pytest.approx(ref.fmin, rel=1e-11)


def test_a_newton_start_converges_in_a_few_evaluations():
    """The bootstrap's refits start at the estimate with the inverse Hessian there."""
    model = _model("slope", True)
    fast = model.fast_objective()
    _, scale = _units(model)
    lower = model.lower_bounds
    fit = fast.minimize(*_units(model)[:1], lower, scale)
    start = fit.final * np.array([1.1, 0.8, 0.95])  # as a replicate's optimum differs
    _, H = hessian_from_gradient(fast.objective_gradient, fit.final, lower, 1e-4 * scale)
    hinv = np.linalg.inv(H * np.outer(scale, scale))
    warm = fast.minimize(start, lower, scale, inverse_hessian=hinv)
    cold = fast.minimize(start, lower, scale)
    assert warm.fmin == pytest.approx(fit.fmin, rel=1e-12)
    assert warm.feval < cold.feval
    assert warm.feval <= 6


def test_the_evaluation_limit_stops_the_search():
    model = _model("slope", True)
    fast = model.fast_objective()
    theta0, scale = _units(model)
    opt = fast.minimize(theta0, model.lower_bounds, scale, maxeval=3)
    assert opt.return_code == small_fit.MAXEVAL
    assert opt.message.startswith("STOP")
    assert 3 <= opt.feval <= 3 + 2 * theta0.size
    assert opt.fmin == np.min(opt.objective_path[:3])


def test_only_for_small_models():
    big = LinearMixedModel.from_formula(
        "y ~ 1 + (1 | a) + (1 | b)",
        {
            "y": np.random.default_rng(1).normal(size=400),
            "a": np.arange(400) % 80,
            "b": np.arange(400) % 97,
        },
    )
    fast = big.fast_objective()
    assert fast is not None and not fast.small
    theta0, scale = _units(big)
    with pytest.raises(ValueError, match="small models"):
        fast.minimize(theta0, big.lower_bounds, scale)


def test_lmer_uses_it_and_agrees_with_lbfgs():
    sleep = mm.datasets.load("sleepstudy")
    fit = mm.lmer("Reaction ~ Days + (Days | Subject)", sleep)
    assert fit.optinfo.optimizer == "BFGS-B"
    lbfgs = fit.model.fit(optimizer="lbfgs")
    assert lbfgs.optinfo.optimizer == "L-BFGS-B"
    assert fit.loglik >= lbfgs.loglik - 1e-10 * abs(lbfgs.loglik)
    # theta's correlation entry (0.015) is the least determined: 1e-6 in it moves the
    # criterion by about 1e-12
    np.testing.assert_allclose(fit.theta, lbfgs.theta, rtol=2e-4)
