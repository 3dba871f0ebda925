"""Plots render headlessly (Agg) to PNG and draw what they should: panels, points, lines."""

from __future__ import annotations

import functools
import io

import numpy as np
import pytest

import mixedmodels as mm
from mixedmodels import plots
from mixedmodels.errors import ModelSpecError

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=40)
    data = buf.getvalue()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return data


def _visible_axes(fig):
    return [a for a in fig.axes if a.get_visible()]


@functools.cache
def _pastes() -> mm.LmerResult:
    return mm.lmer("strength ~ 1 + (1 | batch/cask)", mm.datasets.load("Pastes"))


@functools.cache
def _cbpp() -> mm.GlmerResult:
    return mm.glmer(
        "cbind(incidence, size - incidence) ~ period + (1 | herd)",
        mm.datasets.load("cbpp"),
        "binomial",
    )


def test_caterpillar_one_panel_per_group_and_effect(sleep_fit):
    fig = sleep_fit.plot_ranef()
    _png(fig)
    axes = _visible_axes(fig)
    assert [a.get_title() for a in axes] == ["Subject: (Intercept)", "Subject: Days"]
    modes = sleep_fit.ranef()["Subject"]
    for a, col in zip(axes, ["(Intercept)", "Days"], strict=True):
        # one point per subject at its conditional mode, sorted by the intercepts' order
        points = a.lines[0].get_xdata()
        assert len(points) == 18
        np.testing.assert_allclose(np.sort(points), np.sort(modes[col].to_numpy()))
        assert len(a.get_yticklabels()) == 18


def test_caterpillar_intervals_are_mode_plus_minus_z_condsd(sleep_fit):
    fig, ax = plt.subplots()
    out = sleep_fit.plot_ranef("Subject", "Days", level=0.9, ax=ax)
    assert out is fig
    frame = sleep_fit.ranef().to_frame()
    days = frame[frame["term"] == "Days"].sort_values("condval")
    segments = ax.collections[0].get_segments()
    assert len(segments) == 18
    z = 1.6448536269514722
    lo = np.array([s[0][0] for s in segments])
    hi = np.array([s[1][0] for s in segments])
    np.testing.assert_allclose(lo, days["condval"] - z * days["condsd"])
    np.testing.assert_allclose(hi, days["condval"] + z * days["condsd"])


def test_caterpillar_nested_factors_and_errors():
    fit = _pastes()
    fig = fit.plot_ranef()
    assert len(_visible_axes(fig)) == 2
    _, ax = plt.subplots()
    with pytest.raises(ModelSpecError, match="choose one with group="):
        fit.plot_ranef(ax=ax)
    with pytest.raises(ModelSpecError, match="no grouping factor 'plate'"):
        fit.plot_ranef("plate")


def test_group_panels_data_fitted_and_population(sleep_fit):
    fig = sleep_fit.plot_groups("Days")
    _png(fig)
    axes = _visible_axes(fig)
    assert len(axes) == 18
    first = axes[0]
    data, fitted, population = first.lines
    assert len(data.get_xdata()) == 10
    # the fitted line is the subject's conditional fit, the dashed one the population line
    subj = sleep_fit.model.design.terms[0].levels[0]
    b = sleep_fit.coef()["Subject"].loc[subj]
    np.testing.assert_allclose(
        fitted.get_ydata(), b["(Intercept)"] + b["Days"] * np.arange(10), rtol=1e-10
    )
    fe = sleep_fit.fixef
    np.testing.assert_allclose(
        population.get_ydata(), fe["(Intercept)"] + fe["Days"] * np.arange(10), rtol=1e-10
    )
    assert first.get_title() == str(subj)


def test_group_panels_on_one_axes_and_limits(sleep_fit):
    fig, ax = plt.subplots()
    assert sleep_fit.plot_groups("Days", ax=ax) is fig
    assert len(ax.lines) == 2 * 18 + 1  # points and line per subject, then the population
    fig2 = sleep_fit.plot_groups("Days", max_groups=4, population=False)
    axes = _visible_axes(fig2)
    assert len(axes) == 4 and all(len(a.lines) == 2 for a in axes)
    fig3, grid = plt.subplots(2, 2)
    assert sleep_fit.plot_groups("Days", max_groups=4, ax=grid) is fig3
    assert [len(a.lines) for a in grid.ravel()] == [3, 3, 3, 3]
    with pytest.raises(ModelSpecError, match="not a column"):
        sleep_fit.plot_groups("Hours")
    with pytest.raises(ModelSpecError, match="numeric"):
        sleep_fit.plot_groups("Subject")


def test_residual_and_qq_plots(sleep_fit):
    fig = sleep_fit.plot_residuals()
    _png(fig)
    ax = fig.axes[0]
    offsets = ax.collections[0].get_offsets()
    assert offsets.shape == (180, 2)
    np.testing.assert_allclose(offsets[:, 0], sleep_fit.fitted().to_numpy())
    np.testing.assert_allclose(
        offsets[:, 1], sleep_fit.residuals(scaled=True).to_numpy(), rtol=1e-12
    )
    assert len(ax.lines) == 2  # the zero line and the trend
    fig = sleep_fit.plot_qq()
    _png(fig)
    points = fig.axes[0].lines[0]
    r = np.sort(sleep_fit.residuals(scaled=True).to_numpy())
    np.testing.assert_allclose(points.get_ydata(), r)
    assert points.get_xdata()[0] < -2.5 and points.get_xdata()[-1] > 2.5


def test_single_panel_plots_draw_on_the_axes_given(sleep_fit):
    fig, ax = plt.subplots()
    assert sleep_fit.plot_residuals(ax=ax) is fig
    assert ax.collections[0].get_offsets().shape == (180, 2)
    fig, ax = plt.subplots()
    assert sleep_fit.plot_qq(ax=ax) is fig
    assert len(ax.lines) == 2 and len(ax.lines[0].get_xdata()) == 180
    fig, ax = plt.subplots()
    assert plots.qq(sleep_fit, ax=np.array([ax])) is fig
    _, two = plt.subplots(1, 2)
    with pytest.raises(ModelSpecError, match="ax has 2 Axes"):
        sleep_fit.plot_qq(ax=two)


def test_glmm_plots():
    fit = _cbpp()
    assert len(_visible_axes(fit.plot_ranef())) == 1
    fig = fit.plot_residuals()
    assert fig.axes[0].collections[0].get_offsets().shape == (56, 2)
    fig = fit.plot_groups("size", max_groups=3)
    assert len(_visible_axes(fig)) == 3


def test_bootstrap_densities(sleep_fit):
    boot = sleep_fit.bootstrap(40, seed=3, progress=False, n_jobs=1)
    fig = boot.plot()
    _png(fig)
    axes = _visible_axes(fig)
    assert [a.get_title() for a in axes] == list(boot.replicates.columns)
    first = axes[0]
    assert len(first.patches) >= 30  # histogram bars (+ the interval band)
    est = float(boot.estimates.iloc[0])
    assert any(np.allclose(line.get_xdata(), est) for line in first.lines)
    fig, ax = plt.subplots()
    assert boot.plot("sigma", ax=ax) is fig
    assert ax.get_title() == "sigma"
    fig, grid = plt.subplots(1, 2)
    assert plots.bootstrap_densities(boot, ["sigma", "Days"], ax=grid) is fig
    assert [a.get_title() for a in grid] == ["sigma", "Days"]
    _, ax = plt.subplots()
    with pytest.raises(ModelSpecError, match="pass params= or one Axes per parameter"):
        boot.plot(ax=ax)
    with pytest.raises(ModelSpecError, match="no parameter"):
        boot.plot("tau")


def test_profile_plot(sleep_fit):
    prof = sleep_fit.profile(which="sigma", progress=False)
    fig = prof.plot()
    _png(fig)
    ax = _visible_axes(fig)[0]
    assert ax.get_xlabel() == "sigma"
    zeta = ax.lines[0].get_ydata()
    assert zeta.min() < -2 and zeta.max() > 2


PROFILED = ["sd_Days|Subject", "sigma", "Days"]  # lme4's order: random effects, sigma, fixed


@pytest.fixture(scope="module")
def three_profiles(sleep_fit):
    return sleep_fit.profile(which=["sigma", "Days", "sd_Days|Subject"], npoints=3, progress=False)


def test_profile_zeta_one_panel_per_parameter(three_profiles):
    prof = three_profiles
    fig = prof.plot()
    _png(fig)
    axes = _visible_axes(fig)
    assert [a.get_xlabel() for a in axes] == PROFILED
    for a, name in zip(axes, PROFILED, strict=True):
        assert a.get_ylabel() == "zeta"
        trace, zero = a.lines  # the profile trace and the zeta = 0 line, nothing else
        rows = prof.table[prof.table["parameter"] == name].sort_values("value")
        assert len(trace.get_xdata()) == 7  # 3 points each side and the estimate
        np.testing.assert_allclose(trace.get_xdata(), rows["value"])
        np.testing.assert_allclose(trace.get_ydata(), rows["zeta"])
        assert trace.get_ydata().min() < 0 < trace.get_ydata().max()
        assert list(zero.get_ydata()) == [0.0, 0.0]
    # the same drawing through the plots module, |zeta| and a chosen parameter
    fig = plots.profile_zeta(prof, ["sigma", "Days"], absolute=True)
    axes = _visible_axes(fig)
    assert [a.get_xlabel() for a in axes] == ["sigma", "Days"]
    assert all(a.get_ylabel() == "|zeta|" and a.lines[0].get_ydata().min() >= 0 for a in axes)


def test_profile_zeta_on_given_axes(three_profiles):
    prof = three_profiles
    fig, grid = plt.subplots(1, 3)
    assert prof.plot(ax=grid) is fig
    assert [a.get_xlabel() for a in grid] == PROFILED
    assert [len(a.lines) for a in grid] == [2, 2, 2]
    fig, ax = plt.subplots()
    assert prof.plot(ax=ax, params="sigma") is fig
    assert ax.get_xlabel() == "sigma" and len(ax.lines) == 2
    # one Axes for three parameters: an error naming how many are needed, nothing drawn
    _, ax = plt.subplots()
    with pytest.raises(ModelSpecError, match=r"ax has 1 Axes.*draws 3 panels.*pass 3 Axes"):
        prof.plot(ax=ax)
    assert len(ax.lines) == 0
    _, two = plt.subplots(1, 2)
    with pytest.raises(ModelSpecError, match=r"ax has 2 Axes.*pass 3 Axes"):
        plots.profile_zeta(prof, ax=two)
    with pytest.raises(ModelSpecError, match="'sd_Days' was not profiled"):
        prof.plot(params="sd_Days")
