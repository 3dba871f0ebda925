"""Prediction intervals, simulation, the bootstrap, model comparisons and profiles: behaviour
and errors (the reference comparisons are in test_against_lmertest.py)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import mixedmodels as mm

from ..conftest import fitted_case


@pytest.fixture(scope="module")
def sleep():
    return mm.datasets.load("sleepstudy")


@pytest.fixture(scope="module")
def fit():
    return fitted_case("sleepstudy_corr_reml")


# -- prediction intervals ----------------------------------------------------------------------


def _dense_prediction_variance(fit, X, Z):
    """sigma^2 w' inv(C) w with C the penalized normal-equations matrix, formed densely."""
    model = fit.model
    d = model.design
    Zfit = np.zeros((d.nobs, 36))
    t = d.terms[0]
    for s in range(2):
        Zfit[np.arange(d.nobs), t.refs * 2 + s] = t.z_values()[s]
    T = model.layout.templates(fit.theta)[0]
    Lam = np.kron(np.eye(18), T)
    ZL = Zfit @ Lam
    C = np.block([[ZL.T @ ZL + np.eye(36), ZL.T @ d.X], [d.X.T @ ZL, d.X.T @ d.X]])
    W = np.hstack([Z @ Lam, X])
    return fit.sigma**2 * np.einsum("ij,jk,ik->i", W, np.linalg.inv(C), W)


def test_confidence_intervals_match_a_dense_computation(fit, sleep):
    new = pd.DataFrame({"Days": [0.0, 4.5, 9.0], "Subject": ["308", "331", "372"]})
    pred = fit.predict(new, interval="confidence")
    assert list(pred.columns) == ["fit", "se_fit", "lower", "upper"]
    np.testing.assert_allclose(pred["fit"], fit.predict(new), rtol=1e-12)
    levels = list(fit.design.terms[0].levels)
    Z = np.zeros((3, 36))
    for r, (days, subj) in enumerate(zip(new["Days"], new["Subject"], strict=True)):
        k = levels.index(subj)
        Z[r, 2 * k] = 1.0
        Z[r, 2 * k + 1] = days
    X = np.column_stack([np.ones(3), new["Days"]])
    np.testing.assert_allclose(
        pred["se_fit"] ** 2, _dense_prediction_variance(fit, X, Z), rtol=1e-8
    )
    np.testing.assert_allclose(pred["upper"] - pred["fit"], 1.959963985 * pred["se_fit"], rtol=1e-8)


def test_population_intervals_use_the_fixed_effects_covariance(fit, sleep):
    pred = fit.predict(sleep.iloc[:10], re_form="~0", interval="confidence")
    X = fit.design.X[:10]
    np.testing.assert_allclose(
        pred["se_fit"] ** 2, np.einsum("ij,jk,ik->i", X, fit.vcov.to_numpy(), X), rtol=1e-10
    )


def test_prediction_intervals_add_the_residual_variance(fit, sleep):
    conf = fit.predict(interval="confidence")
    pred = fit.predict(interval="prediction", level=0.9)
    np.testing.assert_allclose(pred["se_fit"] ** 2, conf["se_fit"] ** 2 + fit.sigma**2, rtol=1e-10)
    assert (pred["upper"] - pred["lower"] > conf["upper"] - conf["lower"]).all()


def test_prediction_intervals_for_a_new_subject(fit):
    new = pd.DataFrame({"Days": [0.0, 5.0], "Subject": ["new", "new"]})
    pred = fit.predict(new, interval="confidence", allow_new_levels=True)
    pop = fit.predict(new, re_form="~0", interval="confidence")
    np.testing.assert_allclose(pred["fit"], pop["fit"])
    cov = fit.varcorr["Subject"].cov
    z = np.column_stack([np.ones(2), new["Days"]])
    extra = np.einsum("ij,jk,ik->i", z, cov, z)
    # a new subject's mean is uncertain by its random effects as well
    assert (pred["se_fit"] ** 2 > extra).all()


def test_interval_argument_is_checked(fit):
    with pytest.raises(mm.ModelSpecError, match="interval must be"):
        fit.predict(interval="credible")


# -- simulation ------------------------------------------------------------------------------


def test_simulate_with_new_parameters(fit):
    beta = {"(Intercept)": 100.0, "Days": 0.0}
    sims = fit.simulate(
        2000, seed=3, newparams={"beta": beta, "theta": [0.0, 0.0, 0.0], "sigma": 1.0}
    )
    np.testing.assert_allclose(sims.mean(axis=1), 100.0, atol=0.2)
    np.testing.assert_allclose(sims.var(axis=1), 1.0, rtol=0.15)
    with pytest.raises(mm.ModelSpecError, match="unknown: Day"):
        fit.simulate(newparams={"beta": {"(Intercept)": 1.0, "Day": 2.0}})
    with pytest.raises(mm.ModelSpecError, match="theta needs 3 values"):
        fit.simulate(newparams={"theta": [1.0]})
    with pytest.raises(mm.ModelSpecError, match="may hold"):
        fit.simulate(newparams={"gamma": 1.0})


def test_simulate_on_new_data(fit):
    new = pd.DataFrame(
        {"Days": np.tile(np.arange(10.0), 3), "Subject": np.repeat(["308", "x1", "x2"], 10)}
    )
    sims = fit.simulate(500, seed=1, newdata=new)
    assert sims.shape == (30, 500)
    assert list(sims.index) == list(new.index)
    # with use_u the known subject keeps its conditional mean; new subjects are drawn
    kept = fit.simulate(2000, seed=2, newdata=new, use_u=True)
    np.testing.assert_allclose(kept.iloc[:10].mean(axis=1), fit.predict(new.iloc[:10]), atol=2.5)
    spread_new = kept.iloc[10:20].mean(axis=0).std()
    spread_known = kept.iloc[:10].mean(axis=0).std()
    assert spread_new > 3 * spread_known


def test_top_level_simulate_for_a_power_analysis():
    rng = np.random.default_rng(0)
    design = pd.DataFrame(
        {
            "subject": np.repeat([f"s{i}" for i in range(20)], 10),
            "item": np.tile([f"i{j}" for j in range(10)], 20),
            "treatment": rng.permutation(np.repeat(["control", "drug"], 100)),
        }
    )
    beta = {"(Intercept)": 10.0, "treatmentdrug": 1.0}
    sims = mm.simulate(
        "~ treatment + (1 | subject) + (1 | item)",
        design,
        beta=beta,
        theta=[0.5, 0.3],
        sigma=2.0,
        nsim=20,
        seed=4,
    )
    again = mm.simulate(
        "y ~ treatment + (1 | subject) + (1 | item)",
        design,
        beta=beta,
        theta=[0.5, 0.3],
        sigma=2.0,
        nsim=20,
        seed=4,
    )
    pd.testing.assert_frame_equal(sims, again)
    pvals = []
    for k in range(sims.shape[1]):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            f = mm.lmer(
                "y ~ treatment + (1 | subject) + (1 | item)", design.assign(y=sims.iloc[:, k])
            )
        pvals.append(f.coef_table().loc["treatmentdrug", "Pr(>|t|)"])
    power = np.mean(np.array(pvals) < 0.05)
    assert 0.3 < power <= 1.0  # the effect is half a residual SD with 100 rows per arm


def test_top_level_simulate_errors():
    design = pd.DataFrame({"x": [0.0, 1.0] * 10, "g": np.repeat(np.arange(5), 4)})
    with pytest.raises(mm.ModelSpecError, match=r"missing: x"):
        mm.simulate("~ x + (1 | g)", design, beta={"(Intercept)": 1.0}, theta=[1.0], sigma=1.0)
    with pytest.raises(mm.ModelSpecError, match="non-negative"):
        mm.simulate("~ x + (1 | g)", design, beta=[1.0, 2.0], theta=[-1.0], sigma=1.0)
    with pytest.raises(mm.ModelSpecError, match="sigma must be positive"):
        mm.simulate("~ x + (1 | g)", design, beta=[1.0, 2.0], theta=[1.0], sigma=0.0)


# -- bootstrap -------------------------------------------------------------------------------


def test_bootstrap_table_and_intervals(fit):
    boot = fit.bootstrap(60, seed=5, n_jobs=2, progress=False)
    assert boot.replicates.shape == (60, 6)
    assert list(boot.replicates.columns) == list(fit.confint("wald").index)
    assert not boot.failures
    same = fit.bootstrap(60, seed=5, n_jobs=1, progress=False)
    pd.testing.assert_frame_equal(boot.replicates, same.replicates)
    for kind in ("perc", "basic", "norm"):
        ci = boot.confint(type=kind)
        assert (ci.iloc[:, 0] < ci.iloc[:, 1]).all()
    summary = boot.summary()
    assert list(summary.columns) == ["original", "bias", "std. error", "mean"]
    np.testing.assert_allclose(summary["original"], boot.estimates)
    with pytest.raises(mm.ModelSpecError, match="type must be"):
        boot.confint(type="bca")


def test_percentile_interval_follows_boot_ci():
    """R's boot.ci percentile rule: order statistic (R + 1) alpha, normal-scale interpolation."""
    from mixedmodels.inference.bootstrap import _norm_inter

    t = np.arange(1.0, 100.0)  # R = 99: (R + 1) * 0.025 = 2.5 -> between the 2nd and 3rd
    lo, hi = _norm_inter(t, np.array([0.025, 0.975]))
    from scipy import stats

    z = stats.norm.ppf
    expected_lo = 2 + (z(0.025) - z(2 / 100)) / (z(3 / 100) - z(2 / 100))
    assert lo == pytest.approx(expected_lo)
    assert hi == pytest.approx(100 - expected_lo)


def test_confint_boot_method(fit):
    ci = fit.confint("boot", nsim=40, seed=2, progress=False, which="beta_")
    assert list(ci.index) == ["(Intercept)", "Days"]


def test_bootstrap_reuses_the_blocks(fit, monkeypatch):
    """A replicate must not redo the pass over the data: assemble() is never called.

    ``assemble`` is patched wherever it is looked up: in its own module and in every module
    that imported it by name (``mixedmodels.lmm`` among them), since patching only the
    defining module would not reach ``from .linalg.assemble import assemble``. A failed refit
    is recorded, not raised, so the failures are checked too."""
    import sys

    import mixedmodels.linalg.assemble as assemble_mod
    import mixedmodels.lmm  # noqa: F401 - the main importer of assemble by name

    original = assemble_mod.assemble
    calls = []

    def fail(*a, **k):
        calls.append(1)
        raise AssertionError("assemble called during the bootstrap")

    patched = []
    for modname, module in list(sys.modules.items()):
        if modname.startswith("mixedmodels") and getattr(module, "assemble", None) is original:
            monkeypatch.setattr(module, "assemble", fail)
            patched.append(modname)
    assert {"mixedmodels.linalg.assemble", "mixedmodels.lmm"} <= set(patched)
    boot = fit.bootstrap(5, seed=1, n_jobs=1, progress=False)
    assert not calls
    assert not boot.failures
    assert np.isfinite(boot.replicates.to_numpy()).all()


# -- comparisons and their errors ------------------------------------------------------------


def test_anova_needs_the_same_data(sleep):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m0 = mm.lmer("Reaction ~ Days + (1 | Subject)", sleep, reml=False)
        m1 = mm.lmer("Reaction ~ Days + (Days | Subject)", sleep.iloc[:150], reml=False)
        shifted = mm.lmer(
            "Reaction ~ Days + (Days | Subject)",
            sleep.assign(Reaction=sleep["Reaction"] + 1),
            reml=False,
        )
        reindexed = mm.lmer(
            "Reaction ~ Days + (Days | Subject)", sleep.set_index(sleep.index + 1000), reml=False
        )
        both = mm.lmer(
            "Reaction ~ Days + (Days | Subject)",
            sleep.assign(Reaction=sleep["Reaction"] + 1).set_index(sleep.index + 1000),
            reml=False,
        )
    with pytest.raises(mm.DataError, match="180 and 150 observations"):
        mm.anova(m0, m1)
    with pytest.raises(mm.DataError, match=r"the responses differ; fit them"):
        mm.anova(m0, shifted)
    # same responses, other row labels: lme4 refuses too ("all models must be fit to the same
    # data object"), but the message must not claim the responses differ
    with pytest.raises(mm.DataError, match="responses are the same but the row labels") as err:
        mm.anova(m0, reindexed)
    assert "responses differ" not in str(err.value)
    with pytest.raises(mm.DataError, match="the responses differ and the row labels differ"):
        mm.anova(m0, both)


def test_anova_refuses_non_nested_models(sleep):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = mm.lmer("Reaction ~ Days + (1 | Subject)", sleep, reml=False)
        b = mm.lmer("Reaction ~ 1 + (Days | Subject)", sleep, reml=False)
        c = mm.lmer("Reaction ~ Days + (1 | Subject) + (0 + Days | Subject)", sleep, reml=False)
        d = mm.lmer("Reaction ~ Days + (Days | Subject)", sleep, reml=False)
    with pytest.raises(mm.ModelSpecError, match=r"not nested.*AIC or BIC"):
        mm.anova(a, b)
    table = mm.anova(a, b, check_nested=False, names=["a", "b"])
    assert list(table.index) == ["a", "b"]
    mm.anova(c, d)  # uncorrelated is nested in correlated
    with pytest.raises(mm.ModelSpecError, match="at least two"):
        mm.anova(a)
    with pytest.raises(mm.ModelSpecError, match="unique"):
        mm.anova(a, d, names=["x", "x"])


def test_anova_without_refit_warns_about_mixed_criteria(sleep):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = mm.lmer("Reaction ~ Days + (1 | Subject)", sleep)
        b = mm.lmer("Reaction ~ Days + (Days | Subject)", sleep, reml=False)
    with pytest.warns(UserWarning, match="some models fit with REML"):
        mm.anova(a, b, refit=False)


def test_anova_with_an_lm(sleep):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = mm.lmer("Reaction ~ Days + (1 | Subject)", sleep, reml=False)
    linear = mm.lm("Reaction ~ Days", sleep)
    table = mm.anova(linear, m, names=["lm", "lmer"])
    assert table.loc["lmer", "Chisq"] == pytest.approx(2 * (m.loglik - linear.loglik))


def test_unknown_ddf_and_type(fit):
    with pytest.raises(mm.ModelSpecError, match="ddf must be"):
        fit.summary(ddf="containment")
    with pytest.raises(mm.ModelSpecError, match="type must be"):
        fit.anova(type=4)


def test_kenward_roger_refuses_ml_and_weighted_fits():
    ml = fitted_case("sleepstudy_corr_ml")
    with pytest.raises(mm.ModelSpecError, match="only available for REML"):
        ml.coef_table("kenward-roger")
    weighted = fitted_case("sleepstudy_weights_reml")
    with pytest.raises(mm.ModelSpecError, match="prior weights"):
        weighted.coef_table("kenward-roger")


# -- profiles --------------------------------------------------------------------------------


def test_profile_traces(fit):
    prof = fit.profile(which=["sigma", "Days"], npoints=4)
    tab = prof.table
    assert set(tab["parameter"]) == {"sigma", "Days"}
    assert {"value", "zeta", "sd_(Intercept)|Subject", "Days"} <= set(tab.columns)
    days = tab[tab["parameter"] == "Days"].sort_values("value")
    assert np.all(np.diff(days["zeta"]) > 0)  # monotone
    assert days["zeta"].min() < -2.5 and days["zeta"].max() > 2.5
    ci = prof.confint(level=0.95)
    exact = fit.confint(which="Days")
    np.testing.assert_allclose(ci.loc["Days"], exact.loc["Days"], rtol=5e-3)


def test_profile_at_the_boundary_stops_at_zero():
    f = fitted_case("dyestuff2_reml")
    ci = f.confint(which="theta_")
    assert ci.loc["sd_(Intercept)|Batch"].iloc[0] == 0.0


def test_profile_reports_a_limit_it_cannot_reach():
    """A flat profile (a parameter the data do not determine) never reaches the cutoff: the
    limit is infinite and the warning names the parameter and says why."""
    from mixedmodels.inference.profile import ProfileWarning, _find_limit

    def flat(x):
        return 0.5 * np.tanh(x), np.array([x])

    with pytest.warns(
        ProfileWarning, match=r"sd_x\|g does not reach zeta = \+1.96: the likelihood stays flat"
    ):
        limit = _find_limit(flat, 0.0, 1.96, np.inf, 1.0, "sd_x|g", [])
    assert limit == np.inf


def test_profile_of_a_large_but_finite_limit():
    """Two well separated groups: the group SD's upper limit is far out but found."""
    rng = np.random.default_rng(0)
    df = pd.DataFrame(
        {"g": np.repeat(["a", "b"], 50), "y": np.r_[rng.normal(0, 1, 50), rng.normal(5, 1, 50)]}
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        f = mm.lmer("y ~ 1 + (1 | g)", df)
    ci = f.confint(which="sd_(Intercept)|g", level=0.95)
    upper = float(ci.iloc[0, 1])
    assert np.isfinite(upper) and upper > 2.5 * f.varcorr["g"].sd[0]


def test_confint_arguments(fit):
    with pytest.raises(mm.ModelSpecError, match="unknown parameter"):
        fit.confint(which="sd_Days")
    with pytest.raises(mm.ModelSpecError, match="method must be"):
        fit.confint(method="bayes")
    wald = fit.confint("wald", level=0.9)
    assert list(wald.columns) == ["5 %", "95 %"]


def test_profile_plot_draws_one_panel_per_parameter(fit):
    import matplotlib

    matplotlib.use("Agg")
    prof = fit.profile(which=["sigma", "Days"], npoints=3)
    fig = prof.plot()
    panels = [a for a in fig.axes if a.get_visible()]
    assert len(panels) == 2
    assert [a.get_xlabel() for a in panels] == ["sigma", "Days"]  # lme4's parameter order
    for a in panels:
        (line,) = [ln for ln in a.get_lines() if len(ln.get_xdata()) > 2]
        assert len(line.get_xdata()) == 7  # 3 points each side and the estimate
    import io

    fig.savefig(io.BytesIO(), format="png")
