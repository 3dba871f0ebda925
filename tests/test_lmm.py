"""lmer fits against lme4 1.1-31 (reference values: tests/fixtures/lme4/make_lme4_fixtures.R).

Tolerances are those the project promises: log-likelihood within 1e-6 relative (and never worse
than lme4's optimum); fixed effects, standard errors and sigma within 1e-4 relative; random-effect
SDs and correlations within 1e-3 (or both on the boundary); conditional modes within 1e-3.

Each case holds two lme4 fits: with lme4's defaults (what users see; NLopt stops when theta moves
by less than 1e-4 relative, which can leave estimates 1e-4 away from the optimum on a flat ridge)
and with tight tolerances (``tight``: the optimum itself). The criterion is compared with both;
the estimates with the optimum.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mixedmodels.errors import ModelSpecError

from .conftest import case_at_lme4_theta, fitted_case, lmer_cases

CASES = sorted(lmer_cases())


def _rel(a, b) -> float:
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-12), initial=0.0))


@pytest.mark.parametrize("name", CASES)
def test_loglik_and_criterion(name):
    c = lmer_cases()[name]
    fit = fitted_case(name)
    assert _rel(fit.loglik, c["loglik"]) < 1e-6
    assert _rel(fit.loglik, c["tight"]["loglik"]) < 1e-9
    # at least as good an optimum as lme4's with its default settings (to rounding error)
    assert fit.loglik >= c["loglik"] - 1e-12 * abs(c["loglik"])
    assert _rel(fit.deviance, c["deviance"]) < 1e-6
    if c["reml"]:
        assert _rel(fit.reml_criterion, c["reml_criterion"]) < 1e-6
    else:
        assert fit.reml_criterion is None
    assert fit.npar == c["df"]
    assert _rel(fit.aic, c["aic"]) < 1e-6
    assert _rel(fit.bic, c["bic"]) < 1e-6
    assert fit.df_resid == c["df_resid"]


@pytest.mark.parametrize("name", CASES)
def test_fixed_effects(name):
    c = lmer_cases()[name]
    t = c["tight"]
    fit = fitted_case(name)
    assert list(fit.fixef.index) == c["fe_names"] == list(c["beta"])
    assert _rel(fit.fixef.to_numpy(), list(t["beta"].values())) < 1e-4
    assert _rel(fit.std_errors.to_numpy(), list(t["se"].values())) < 1e-4
    V, Vref = fit.vcov.to_numpy(), np.array(t["vcov"])
    scale = np.sqrt(np.outer(np.diag(Vref), np.diag(Vref)))
    assert np.all(np.abs(V - Vref) <= 1e-4 * scale)
    assert _rel(fit.sigma, t["sigma"]) < 1e-4
    # lme4's default fit is close to the optimum too
    assert _rel(fit.std_errors.to_numpy(), list(c["se"].values())) < 1e-3


@pytest.mark.parametrize("name", CASES)
def test_same_numbers_at_lme4_theta(name):
    """At lme4's own theta every derived quantity agrees to rounding error: this separates the
    formulas (criterion, beta, sigma, vcov, modes) from differences between the optimizers."""
    c = lmer_cases()[name]
    fit = case_at_lme4_theta(name)
    assert _rel(fit.loglik, c["loglik"]) < 1e-9
    assert _rel(fit.deviance, c["deviance"]) < 1e-9
    assert _rel(fit.fixef.to_numpy(), list(c["beta"].values())) < 1e-7
    assert _rel(fit.sigma, c["sigma"]) < 1e-7
    np.testing.assert_allclose(fit.vcov.to_numpy(), np.array(c["vcov"]), rtol=1e-6, atol=1e-12)
    ref = pd.DataFrame(c["ranef"])
    ours = fit.ranef().to_frame().head(len(ref))
    np.testing.assert_allclose(ours["condval"], ref["condval"], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(ours["condsd"], ref["condsd"], rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("name", CASES)
def test_structure(name):
    c = lmer_cases()[name]
    fit = fitted_case(name)
    assert fit.nobs == c["nobs"]
    assert fit.ngroups == c["ngroups"]
    assert fit.theta_names == list(c["theta"])
    assert np.array_equal(
        fit.model.lower_bounds, np.array([-np.inf if v is None else v for v in c["lower"].values()])
    )
    assert fit.is_singular == c["is_singular"]


@pytest.mark.parametrize("name", CASES)
def test_variance_components(name):
    c = lmer_cases()[name]
    fit = fitted_case(name)
    ours = fit.varcorr.to_frame()
    ref = pd.DataFrame(c["tight"]["varcorr"])
    assert list(ours["grp"]) == list(ref["grp"])
    assert list(ours["var1"].fillna("NA")) == list(ref["var1"].fillna("NA"))
    assert list(ours["var2"].fillna("NA")) == list(ref["var2"].fillna("NA"))
    for a, b in zip(ours["sdcor"], ref["sdcor"], strict=True):
        if abs(b) < 1e-4 and abs(a) < 1e-4:  # both on the boundary
            continue
        assert abs(a - b) <= 1e-3 * max(abs(b), 1.0 if abs(b) <= 1 else 0.0), (a, b)


@pytest.mark.parametrize("name", CASES)
def test_conditional_modes(name):
    c = lmer_cases()[name]
    fit = fitted_case(name)
    ours = fit.ranef().to_frame()
    ref = pd.DataFrame(c["tight"]["ranef"])
    ours = ours.head(len(ref)) if name == "insteval_ml" else ours
    assert list(ours["grpvar"]) == list(ref["grpvar"])
    assert list(ours["term"]) == list(ref["term"])
    assert list(ours["grp"]) == list(ref["grp"].astype(str))
    scale = max(float(np.max(np.abs(ref["condval"]))), 1e-8)
    np.testing.assert_allclose(ours["condval"], ref["condval"], rtol=1e-3, atol=1e-3 * scale)
    np.testing.assert_allclose(ours["condsd"], ref["condsd"], rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("name", CASES)
def test_fitted_residuals_predictions(name):
    c = lmer_cases()[name]
    fit = fitted_case(name)
    k = len(c["fitted"])
    np.testing.assert_allclose(fit.fitted().to_numpy()[:k], c["fitted"], rtol=1e-4)
    resid = fit.residuals().to_numpy()[:k]
    scale = float(np.std(c["residuals"]))
    np.testing.assert_allclose(resid, c["residuals"], rtol=1e-3, atol=1e-3 * scale)
    np.testing.assert_allclose(
        fit.residuals(scaled=True).to_numpy()[:k], c["scaled_residuals"], rtol=1e-3, atol=1e-3
    )
    np.testing.assert_allclose(fit.predict(re_form="~0").to_numpy()[: len(c["predict_population"])],
                               c["predict_population"], rtol=1e-4)  # fmt: skip


@pytest.mark.parametrize("name", CASES)
def test_coef(name):
    c = lmer_cases()[name]
    fit = fitted_case(name)
    coefs = fit.coef()
    assert list(coefs) == list(c["coef"])
    for group, rows in c["coef"].items():
        ref = pd.DataFrame(rows).set_index("level")
        ours = coefs[group]
        assert [str(v) for v in ours.index[: len(ref)]] == list(ref.index.astype(str))
        assert list(ours.columns) == list(ref.columns)
        np.testing.assert_allclose(
            ours.to_numpy()[: len(ref)], ref.to_numpy(dtype=float), rtol=1e-3, atol=1e-6
        )


def test_missing_rows_are_counted():
    fit = fitted_case("sleepstudy_missing_reml")
    c = lmer_cases()["sleepstudy_missing_reml"]
    assert fit.n_dropped == 4
    assert fit.nobs == 176
    assert [i + 1 for i in fit.fitted().index] == c["rows_used"]
    assert "4 observations deleted due to missingness" in str(fit.summary())


def test_rank_deficient_columns_dropped():
    fit = fitted_case("sleepstudy_rankdef_reml")
    assert list(fit.fixef.index) == ["(Intercept)", "Days"]
    assert fit.design.dropped_fixef == ("Days2",)
    assert "rank deficient so dropping 1 column / coefficient" in str(fit.summary())


def test_rank_deficiency_warns(sleepstudy):
    import mixedmodels as mm

    df = sleepstudy.assign(Days2=2 * sleepstudy["Days"])
    with pytest.warns(UserWarning, match="rank deficient so dropping 1 column"):
        mm.lmer("Reaction ~ Days + Days2 + (1 | Subject)", df)


def test_singular_fit_warns():
    import mixedmodels as mm
    from mixedmodels.errors import SingularFitWarning

    with pytest.warns(SingularFitWarning, match="singular"):
        fit = mm.lmer("Yield ~ 1 + (1 | Batch)", mm.datasets.load("Dyestuff2"))
    assert fit.is_singular
    assert fit.theta[0] == 0.0  # snapped to the boundary, as MixedModels.jl does


def test_optinfo_records_the_run(sleep_fit):
    opt = sleep_fit.optinfo
    # the exact gradient is available for this small model: the compiled quasi-Newton search
    assert opt.optimizer == "BFGS-B"
    assert opt.feval == len(opt.objective_path) == opt.theta_path.shape[0]
    assert opt.return_code > 0
    assert opt.elapsed > 0
    assert np.min(opt.objective_path) == pytest.approx(opt.fmin, abs=1e-9)
    # the search starts at the moment start; lme4's identity start, in the units of the data
    # (Days has RMS 5.6 over its nonzero rows), is what the moment start replaces
    np.testing.assert_array_equal(opt.initial, sleep_fit.model.start_theta())
    theta0, _ = sleep_fit.model.initial_theta()
    days = sleep_fit.design.terms[0].z[1]
    np.testing.assert_allclose(theta0, [1.0, 0.0, 1.0 / np.sqrt(np.mean(days[days != 0] ** 2))])
    assert opt.gradient is not None and np.max(np.abs(opt.gradient)) < 1e-3
    assert "Evaluations" in str(opt)


def test_derivative_free_optimizer_on_request(sleep_fit):
    fit = sleep_fit.model.fit(optimizer="bobyqa")
    assert fit.optinfo.optimizer == "LN_BOBYQA"
    assert fit.optinfo.message.startswith("NLOPT_")
    assert fit.loglik == pytest.approx(sleep_fit.loglik, rel=1e-10)
    np.testing.assert_allclose(fit.theta, sleep_fit.theta, rtol=1e-4)
    # the gradient needs far fewer evaluations
    assert sleep_fit.optinfo.feval < fit.optinfo.feval / 2
    with pytest.raises(ModelSpecError, match="optimizer"):
        sleep_fit.model.fit(optimizer="newton")


def test_result_is_frozen(sleep_fit):
    import dataclasses

    with pytest.raises(dataclasses.FrozenInstanceError):
        sleep_fit.sigma = 1.0  # type: ignore[misc]


# -- the moment start -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("formula", "dataset"),
    [
        ("Reaction ~ Days + (Days | Subject)", "sleepstudy"),
        ("score ~ Machine + (Machine | Worker)", "Machines"),
    ],
)
def test_vector_valued_terms_start_nearer_the_optimum(formula, dataset):
    """The moment start of a vector-valued term has a lower criterion than identity templates
    and reaches the same optimum."""
    import mixedmodels as mm
    from mixedmodels.lmm import LinearMixedModel

    model = LinearMixedModel.from_formula(formula, mm.datasets.load(dataset))
    start = model.start_theta()
    default, _ = model.initial_theta()
    assert not np.array_equal(start, default)
    assert np.all(start >= model.lower_bounds)
    assert model.objective(start) < model.objective(default)
    fit = model.fit()
    reference = model.fit(start=default)
    assert fit.objective_value == pytest.approx(reference.objective_value, rel=1e-10, abs=1e-8)


def test_moment_start_with_levels_that_do_not_identify_every_effect():
    """Levels observed at one value of the covariate (their own regression is singular) use
    pseudo-inverses; the start stays finite and the fit reaches the optimum from it."""
    from mixedmodels.lmm import LinearMixedModel

    rng = np.random.default_rng(7)
    g = np.repeat(np.arange(12), 6)
    x = np.tile(np.arange(6.0), 12)
    x[g == 3] = 2.0  # one level sees a single value of x
    b = rng.normal(size=(12, 2)) * [1.0, 0.3]
    y = 1 + 0.5 * x + b[g, 0] + b[g, 1] * x + rng.normal(scale=0.5, size=x.size)
    data = pd.DataFrame({"y": y, "x": x, "g": [f"g{v}" for v in g]})
    model = LinearMixedModel.from_formula("y ~ x + (x | g)", data)
    start = model.start_theta()
    assert np.all(np.isfinite(start)) and np.all(start >= model.lower_bounds)
    default, _ = model.initial_theta()
    fit = model.fit()
    assert fit.objective_value <= model.fit(start=default).objective_value + 1e-8


def test_intercept_moment_start_uses_the_cross_products():
    """An intercept term's moment start (from the cross-products' y row and diagonal) is the
    one-way random-effects estimate computed from the rows: weighted level means of the
    least-squares residual."""
    from mixedmodels.lmm import LinearMixedModel

    rng = np.random.default_rng(11)
    g = rng.integers(0, 15, 300)
    x = rng.normal(size=300)
    w = rng.uniform(0.5, 2.0, 300)
    y = 3 + x + rng.normal(scale=0.8, size=15)[g] + rng.normal(size=300)
    data = pd.DataFrame({"y": y, "x": x, "g": [f"g{v}" for v in g], "w": w})
    model = LinearMixedModel.from_formula("y ~ x + (1 | g)", data, weights="w")
    X = np.column_stack([np.ones(300), x])
    sw = np.sqrt(w)
    r = y - X @ np.linalg.lstsq(X * sw[:, None], y * sw, rcond=None)[0]
    n, s2r = w.sum(), np.sum(w * r * r) / w.sum()
    cnt, tot = np.bincount(g, w), np.bincount(g, w * r)
    between = np.sum(tot**2 / cnt)
    s2e = s2r
    for _ in range(3):
        tau2 = max(0.0, between - s2e * 15) / n
        s2e = max(s2r - tau2, 0.1 * s2r)
    assert model.start_theta()[0] == pytest.approx(np.sqrt(tau2 / s2e), rel=1e-10)


@pytest.mark.parametrize("weighted", [False, True])
def test_residualized_response_matches_least_squares(weighted):
    """The cross-products' response is y less its weighted least-squares fit on X (normal
    equations refined once; an orthogonal factorization where they fail)."""
    from dataclasses import replace

    import mixedmodels as mm
    from mixedmodels.lmm import LinearMixedModel, _residualized_response

    rng = np.random.default_rng(3)
    design = LinearMixedModel.from_formula(
        "Reaction ~ Days + (Days | Subject)", mm.datasets.load("sleepstudy")
    ).design
    w = rng.uniform(0.2, 3.0, design.nobs) if weighted else None
    design = replace(design, weights=w)
    y = design.y + 1e6  # far from zero: the residual keeps its digits
    r, gamma = _residualized_response(design, y)
    sw = np.ones(design.nobs) if w is None else np.sqrt(w)
    ref = np.linalg.lstsq(design.X * sw[:, None], y * sw, rcond=None)[0]
    np.testing.assert_allclose(gamma, ref, rtol=1e-10)
    np.testing.assert_allclose(r, y - design.X @ ref, rtol=0, atol=1e-8)
    # a repeated column: X'WX is singular and the least-squares path answers
    twice = replace(design, X=np.column_stack([design.X, design.X[:, 1]]))
    r2, gamma2 = _residualized_response(twice, y)
    np.testing.assert_allclose(r2, r, rtol=0, atol=1e-7)
    assert gamma2.shape == (3,)


def test_moment_template_floors_the_eigenvalues():
    """A positive definite moment estimate gives its Cholesky factor; an indefinite one the
    factor of the matrix with its eigenvalues floored at 1e-3 of the largest; one without a
    positive eigenvalue none."""
    from mixedmodels.lmm import _moment_template

    S = np.array([[2.0, 0.3], [0.3, 0.5]])
    np.testing.assert_allclose(_moment_template(S), np.linalg.cholesky(S), rtol=1e-14)
    bad = np.array([[1.0, 2.0], [2.0, 1.0]])  # eigenvalues 3 and -1
    vals, vecs = np.linalg.eigh(bad)
    floored = (vecs * np.maximum(vals, 3e-3)) @ vecs.T
    L = _moment_template(bad + np.array([[0.0, 0.1], [-0.1, 0.0]]))  # the symmetric part counts
    np.testing.assert_allclose(L @ L.T, floored, rtol=1e-12)
    assert np.all(np.triu(L, 1) == 0)
    assert _moment_template(-np.eye(2)) is None


def test_column_scales_are_root_mean_squares_of_the_nonzero_entries():
    from mixedmodels.linalg.assemble import TermData, column_scales

    z = np.array([[0.0, 3.0, 4.0, 0.0], [0.0, 0.0, 0.0, 0.0], [1.0, -1.0, 1.0, -1.0]])
    out = column_scales(
        [TermData(np.zeros(4, dtype=np.int64), z, 1, 3), TermData(None, None, 1, 1)]
    )
    np.testing.assert_allclose(out[0], [np.sqrt(12.5), 1.0, 1.0], rtol=1e-15)
    np.testing.assert_array_equal(out[1], [1.0])
