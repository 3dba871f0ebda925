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


@pytest.mark.parametrize("case", ["crossed_small", "singular", "slope"])
def test_a_python_criterion_runs_the_same_search(case):
    """With a Python function as its criterion the search runs uncompiled, step for step as
    compiled (the singular case through its checks at the bound and a restart)."""
    model = _model(case, False)
    fast = model.fast_objective()
    data = fast.search_data()
    theta0, scale = _units(model)
    calls = []

    def criterion(x, grad):
        calls.append(x.copy())
        f, g = small_fit.criterion_at(x, data)
        grad[:] += g
        return f

    settings = dict(gtol=1e-6, decrease=(1e-12, 1e-14), maxeval=200)
    compiled = small_fit.search(data, theta0, model.lower_bounds, scale, **settings)
    python = small_fit.search(criterion, theta0, model.lower_bounds, scale, **settings)
    assert python.feval == compiled.feval == len(calls)
    np.testing.assert_allclose(python.theta_path, compiled.theta_path, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(python.objective_path, compiled.objective_path, rtol=1e-13)
    assert python.fmin == pytest.approx(compiled.fmin, rel=1e-14)
    assert (python.return_code, python.message) == (compiled.return_code, compiled.message)


def _three_crossed(seed: int, n: int, levels: tuple[int, int, int], sd: tuple[float, ...]):
    """Three crossed factors, the second with power-law counts."""
    rng = np.random.default_rng(seed)
    la, lb, lc = levels
    a = rng.integers(0, la, n)
    b = (rng.pareto(1.5, n) * lb / 10).astype(int) % lb
    c = rng.integers(0, lc, n)
    x = rng.normal(size=n)
    y = (
        1.0 + 0.5 * x + sd[0] * rng.normal(size=la)[a] + sd[1] * rng.normal(size=lb)[b]
        + sd[2] * rng.normal(size=lc)[c] + rng.normal(size=n)
    )  # fmt: skip
    return {"y": y, "x": x, "a": a, "b": b, "c": c}


@pytest.mark.parametrize("reml", [True, False], ids=["REML", "ML"])
def test_large_scalar_models_start_from_the_information(reml):
    """A model whose terms are all scalar but too large for the compiled search: the same
    search, its first inverse Hessian from each theta's information in log theta. It ends
    where L-BFGS-B does, in fewer evaluations."""
    data = _three_crossed(3, 8000, (1000, 150, 12), (0.6, 0.4, 0.8))
    model = LinearMixedModel.from_formula("y ~ x + (1 | a) + (1 | b) + (1 | c)", data, reml=reml)
    assert not model.fast_objective().small
    fit = model.fit()
    assert fit.optinfo.optimizer == "BFGS-B"
    lbfgs = model.fit(optimizer="lbfgs")
    assert lbfgs.optinfo.optimizer == "L-BFGS-B"
    assert fit.optinfo.fmin <= lbfgs.optinfo.fmin + 1e-10 * abs(lbfgs.optinfo.fmin)
    np.testing.assert_allclose(fit.theta, lbfgs.theta, rtol=1e-4)
    assert fit.optinfo.feval < lbfgs.optinfo.feval


def test_a_variance_stopped_next_to_zero_is_freed():
    """The criterion is even in each theta, so a search that reaches a theta next to zero sees
    a vanishing gradient there: the search tries it a little inside and restarts with a step
    of one unit (here from 1e-6, where the first search stops, to the optimum at 0.08; as
    L-BFGS-B, whose projection lands on zero exactly)."""
    data = _three_crossed(0, 40000, (2000, 300, 20), (0.1, 1.0, 2.0))
    model = LinearMixedModel.from_formula("y ~ x + (1 | a) + (1 | b) + (1 | c)", data, reml=False)
    fit = model.fit(warn=False)
    assert fit.optinfo.optimizer == "BFGS-B"
    lbfgs = model.fit(optimizer="lbfgs", warn=False)
    assert fit.optinfo.fmin <= lbfgs.optinfo.fmin + 1e-10 * abs(lbfgs.optinfo.fmin)
    assert fit.theta[0] == pytest.approx(lbfgs.theta[0], rel=1e-3)
    assert fit.theta[0] > 0.05


def test_a_larger_model_with_a_correlated_slope_reaches_the_better_optimum():
    """A crossed design too large for the compiled search, with few parameters but a
    vector-valued term: the same search, run in Python. Its criterion has two minima on the
    boundary (the intercept's variance at zero, and next to zero with the slope's correlation
    at -1); L-BFGS-B ends in the worse one here, 1.04 higher in deviance, this search in the
    better one, which BOBYQA with tight tolerances confirms."""
    rng = np.random.default_rng(4)
    n = 9000
    a, b, x = rng.integers(0, 600, n), rng.integers(0, 120, n), rng.normal(size=n)
    y = (
        1 + 0.5 * x + 0.2 * rng.normal(size=600)[a] + 0.5 * rng.normal(size=120)[b] * x
        + rng.normal(size=n)
    )  # fmt: skip
    model = LinearMixedModel.from_formula(
        "y ~ x + (1 | a) + (x | b)", {"y": y, "x": x, "a": a, "b": b}, reml=False
    )
    assert not model.fast_objective().small
    fit = model.fit(warn=False)
    assert fit.optinfo.optimizer == "BFGS-B"
    lbfgs = model.fit(optimizer="lbfgs", warn=False)
    assert fit.optinfo.fmin < lbfgs.optinfo.fmin - 0.5
    bobyqa = model.fit(optimizer="bobyqa", warn=False, ftol_rel=1e-14, ftol_abs=1e-14)
    assert fit.optinfo.fmin <= bobyqa.optinfo.fmin + 1e-6
