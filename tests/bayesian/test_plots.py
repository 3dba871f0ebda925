"""Posterior predictive bands (headless): panels, bands, points and lines drawn."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest

import mixedmodels as mm

from .conftest import sleep_fit


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def test_bands_per_subject_like_the_seed_figure(tmp_path):
    fit = sleep_fit()
    fig = fit.plot_predictive("Days", group="Subject", ncols=3)
    axes = [a for a in fig.axes if a.get_visible()]
    assert len(axes) == 18
    sleep = mm.datasets.load("sleepstudy")
    for ax, (subject, rows) in zip(axes, sleep.groupby("Subject", observed=True), strict=True):
        assert ax.get_title() == str(subject)
        assert len(ax.collections) == 1  # the band
        lines = ax.get_lines()
        assert len(lines) == 2  # the posterior mean and the data points
        np.testing.assert_allclose(np.sort(lines[1].get_ydata()), np.sort(rows["Reaction"]))
        band = ax.collections[0].get_paths()[0].vertices
        # the band holds the posterior mean of the predictions
        mean = lines[0].get_ydata()
        assert band[:, 1].min() < mean.min() and band[:, 1].max() > mean.max()
    fig.savefig(tmp_path / "bands.png")
    assert (tmp_path / "bands.png").stat().st_size > 10_000


def test_population_band_and_ax():
    fit = sleep_fit()
    fig, ax = plt.subplots()
    out = fit.plot_predictive("Days", ax=ax, kind="mean")
    assert out is fig
    assert len(ax.collections) == 1
    assert len(ax.get_lines()[1].get_xdata()) == 180
    # at Days = 0 the band of the population mean is the intercept's 94% interval
    v = ax.collections[0].get_paths()[0].vertices
    at0 = v[v[:, 0] == 0.0, 1]
    b0 = fit.idata.posterior["beta"].sel(coef="(Intercept)").values.ravel()
    np.testing.assert_allclose([at0.min(), at0.max()], np.quantile(b0, [0.03, 0.97]), rtol=1e-10)


def test_bad_arguments():
    fit = sleep_fit()
    with pytest.raises(mm.ModelSpecError, match="not a column"):
        fit.plot_predictive("days")
    with pytest.raises(mm.ModelSpecError, match="no grouping factor 'subject'"):
        fit.plot_predictive("Days", group="subject")
    with pytest.raises(mm.ModelSpecError, match="ax has 2 Axes"):
        fit.plot_predictive("Days", group="Subject", ax=plt.subplots(1, 2)[1])
