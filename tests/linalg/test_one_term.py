"""The one-term criterion of the compiled search (mixedmodels.linalg.one_term) against the
general kernels' on the same models: criterion and exact gradient at many theta, for templates
of one to three effects, REML and ML, with prior weights, with a level whose covariate is zero
throughout, without fixed effects, and on the boundary; and which models it serves."""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
import pytest

import mixedmodels as mm
from mixedmodels.linalg import one_term, small_fit
from mixedmodels.lmm import LinearMixedModel


def _sleep_with_zero_level() -> pd.DataFrame:
    df = mm.datasets.load("sleepstudy").copy()
    df["Days2"] = df["Days"] ** 2 / 9.0
    df["x"] = np.where(df["Subject"].astype(str) == "308", 0.0, np.cos(np.arange(len(df))))
    return df


CASES = {
    "intercept": ("Reaction ~ Days + (1 | Subject)", None),
    "slope": ("Reaction ~ Days + (Days | Subject)", None),
    "quadratic": ("Reaction ~ Days + (Days + Days2 | Subject)", None),
    "zero_level": ("Reaction ~ Days + x + (x | Subject)", None),
    "no_fixed": ("Reaction ~ 0 + (1 | Subject)", None),
    "weighted": ("Reaction ~ Days + (Days | Subject)", "w"),
}


@functools.cache
def _fast(case: str, reml: bool):
    formula, weights = CASES[case]
    df = _sleep_with_zero_level()
    df["w"] = 1.0 + (np.arange(len(df)) % 5) / 2.0
    model = LinearMixedModel.from_formula(formula, df, reml=reml, weights=weights)
    fast = model.fast_objective()
    assert fast is not None and fast.small
    return model, fast


def _thetas(model: LinearMixedModel, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    start = model.start_theta()
    out = [start, np.maximum(start * 0.3, model.lower_bounds)]
    for _ in range(4):
        out.append(np.maximum(start * rng.uniform(0.2, 2.5, start.size)
                              + rng.normal(0, 0.2, start.size), model.lower_bounds))  # fmt: skip
    on_boundary = start.copy()
    on_boundary[model.lower_bounds == 0] = 0.0  # every diagonal at zero
    out.append(on_boundary)
    return out


@pytest.mark.parametrize("reml", [True, False], ids=["REML", "ML"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_criterion_and_gradient_match_the_general_kernels(case, reml):
    model, fast = _fast(case, reml)
    data = fast.search_data()
    general = fast.search_data(general=True)
    assert len(data) == one_term.ONE_TERM_DATA_SIZE != len(general)
    for theta in _thetas(model, seed=len(case) + reml):
        f1, g1 = small_fit.criterion_at(theta, data)
        f0, g0 = small_fit.criterion_at(theta, general)
        assert f1 == pytest.approx(f0, rel=1e-13, abs=1e-10)
        np.testing.assert_allclose(g1, g0, rtol=1e-9, atol=1e-8 * max(1.0, np.abs(g0).max()))
        # and both are the Python objective's
        assert f1 == pytest.approx(fast.objective(theta), rel=1e-13)


def test_gradient_matches_finite_differences():
    model, fast = _fast("quadratic", True)
    data = fast.search_data()
    theta = model.start_theta() * 1.2 + 0.05
    _, g = small_fit.criterion_at(theta, data)
    h = 1e-6
    for j in range(theta.size):
        e = np.zeros_like(theta)
        e[j] = h
        fd = (
            small_fit.criterion_at(theta + e, data)[0] - small_fit.criterion_at(theta - e, data)[0]
        ) / (2 * h)
        assert g[j] == pytest.approx(fd, rel=1e-5, abs=1e-5)


def test_a_template_that_cannot_be_factored_gives_an_infinite_criterion():
    _, fast = _fast("slope", True)
    theta = np.array([np.nan, 0.0, 0.5])
    f, _ = small_fit.criterion_at(theta, fast.search_data())
    assert f == np.inf


def test_serves_one_term_models_only():
    assert one_term.applies(1, 1) and one_term.applies(1, one_term.MAX_EFFECTS)
    assert not one_term.applies(2, 1)
    assert not one_term.applies(1, one_term.MAX_EFFECTS + 1)
    df = mm.datasets.load("sleepstudy")
    two = LinearMixedModel.from_formula(
        "Reaction ~ Days + (1 | Subject) + (0 + Days | Subject)", df
    ).fast_objective()
    assert len(two.search_data()) == small_fit.LMM_DATA_SIZE


@pytest.mark.parametrize("case", ["intercept", "slope", "quadratic", "weighted"])
def test_the_search_ends_where_it_does_with_the_general_kernels(case):
    model, fast = _fast(case, True)
    theta0, scale = model.start_theta(), model.search_scale()
    lower = model.lower_bounds
    opt = fast.minimize(theta0, lower, scale)
    ref = small_fit.search(
        fast.search_data(general=True), theta0, lower, scale, gtol=1e-6,
        decrease=(1e-12, 1e-14), maxeval=2000,
    )  # fmt: skip
    assert opt.fmin == pytest.approx(ref.fmin, rel=1e-12)
    np.testing.assert_allclose(opt.final, ref.final, rtol=1e-6, atol=1e-8)


def _general(fast):
    """The same objective evaluated by the general kernels."""
    import copy

    gen = copy.copy(fast)
    gen.one_term = False
    gen._coupling()
    return gen


@pytest.mark.parametrize("reml", [True, False], ids=["REML", "ML"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_solution_and_objective_match_the_general_kernels(case, reml):
    model, fast = _fast(case, reml)
    gen = _general(fast)
    for theta in _thetas(model, seed=7)[:3]:
        a, b = fast.solution(theta), gen.solution(theta)
        np.testing.assert_allclose(a.beta, b.beta, rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(a.u[0], b.u[0], rtol=1e-9, atol=1e-10)
        np.testing.assert_allclose(np.tril(a.L_X), np.tril(b.L_X), rtol=1e-12)
        assert a.pwrss == pytest.approx(b.pwrss, rel=1e-12)
        assert a.reml_criterion == pytest.approx(b.reml_criterion, rel=1e-13)
        assert a.ml_deviance == pytest.approx(b.ml_deviance, rel=1e-13)
        f1, g1 = fast.objective_gradient(theta)
        f0, g0 = gen.objective_gradient(theta)
        assert f1 == pytest.approx(f0, rel=1e-13) and fast.objective(theta) == f1
        np.testing.assert_allclose(g1, g0, rtol=1e-9, atol=1e-8 * max(1.0, np.abs(g0).max()))


def test_a_one_term_fit_never_makes_the_coupling_layout_but_can():
    df = mm.datasets.load("sleepstudy")
    model = LinearMixedModel.from_formula("Reaction ~ Days + (Days | Subject)", df)
    model.fit()
    fast = model.fast_objective()
    assert fast.one_term and "cval" not in fast.__dict__
    # asked for, it is made (from the cross-products) as for any model
    ref = _general(fast)
    np.testing.assert_array_equal(fast.cptr, ref.cptr)
    np.testing.assert_array_equal(fast.cval, ref.cval)
    assert fast.small


def test_a_new_response_is_seen_by_the_one_term_criterion():
    df = mm.datasets.load("sleepstudy")
    model = LinearMixedModel.from_formula("Reaction ~ Days + (Days | Subject)", df)
    fast = model.fast_objective()
    theta = model.start_theta()
    fast.search_data()  # the data of the first response, kept
    y = df["Reaction"].to_numpy()[::-1].copy()
    refit = model.with_response(y).fast_objective()
    fresh = LinearMixedModel.from_formula(
        "Reaction ~ Days + (Days | Subject)", df.assign(Reaction=y)
    ).fast_objective()
    assert refit.objective(theta) == pytest.approx(fresh.objective(theta), rel=1e-12)
    assert refit.objective(theta) != pytest.approx(fast.objective(theta), rel=1e-6)


def test_each_template_size_has_its_own_kernels_in_a_fresh_process():
    """Fitted one after another in a new process (kernels loaded from numba's cache), models
    with templates of 3, 1 and 2 effects each get their own specialization: the one-term
    criterion at the optimum equals the general kernels'."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(
        """
        import warnings
        warnings.simplefilter("ignore")
        import mixedmodels as mm
        from mixedmodels.linalg import small_fit
        df = mm.datasets.load("sleepstudy")
        for rhs in ("(Days + I(Days**2) | Subject)", "(1 | Subject)", "(Days | Subject)"):
            fit = mm.lmer("Reaction ~ Days + " + rhs, df)
            fast = fit.model.fast_objective()
            one = small_fit.criterion_at(fit.theta, fast.search_data())[0]
            general = small_fit.criterion_at(fit.theta, fast.search_data(general=True))[0]
            assert abs(one - general) <= 1e-9 * abs(general), (rhs, one, general)
            assert abs(one + 2 * fit.loglik) <= 1e-9 * abs(one), (rhs, one, fit.loglik)
        print("ok")
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=600, check=False
    )
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


START_CASES = {
    **CASES,
    "slope_only": ("Reaction ~ 1 + (0 + Days | Subject)", None),
    "constant_response": ("c ~ Days + (Days | Subject)", None),
    "no_variance": ("e ~ Days + (1 | Subject)", None),
}


@pytest.mark.parametrize("case", sorted(START_CASES))
def test_the_one_term_start_is_the_general_start(case, monkeypatch):
    """start_values gives the general path's theta0, steps, moment start and search units bit
    for bit (the fit is then the same), for intercepts, slopes, weights, a response without
    variance between levels and one the fixed effects fit exactly."""
    formula, weights = START_CASES[case]
    df = _sleep_with_zero_level()
    df["w"] = 1.0 + (np.arange(len(df)) % 5) / 2.0
    df["c"] = 2.0 + 0.5 * df["Days"]
    df["e"] = np.cos(np.arange(len(df)) * 2.1) - np.cos(np.arange(len(df)) * 2.1).mean()
    one = LinearMixedModel.from_formula(formula, df, weights=weights)
    general = LinearMixedModel.from_formula(formula, df, weights=weights)
    assert one._one_term_start() is not None
    monkeypatch.setattr(LinearMixedModel, "_one_term_start", lambda self: None)
    expected = (*general.initial_theta(), general.start_theta(), general.search_scale())
    fits = case != "constant_response"  # (r = 0: no model to fit, only the start's branch)
    fit_general = general.fit(warn=False) if fits else None
    monkeypatch.undo()
    got = (*one.initial_theta(), one.start_theta(), one.search_scale())
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_array_equal(a, b)
    if fit_general is None:
        np.testing.assert_array_equal(got[2], got[0])  # the start is theta0 there
        return
    fit_one = one.fit(warn=False)
    assert fit_one.optinfo.feval == fit_general.optinfo.feval
    np.testing.assert_array_equal(fit_one.theta, fit_general.theta)
    assert fit_one.objective_value == fit_general.objective_value
