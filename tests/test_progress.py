"""The progress indicators: silent on quick fits, when disabled and where nobody can see them
(stderr redirected outside IPython), counting otherwise; fits, bootstrap and profiles."""

from __future__ import annotations

import importlib.util
import io
import sys
import types

import pandas as pd
import pytest

import mixedmodels as mm
from mixedmodels._progress import FitProgress, Progress, visible


def test_counts_evaluations_and_best_value():
    bar = FitProgress("fit", enabled=True, delay=1e9)
    f = bar.wrap(lambda x: (x * x, 2 * x))
    for x in (3.0, -1.0, 2.0):
        f(x)
    assert bar.count == 3 and bar.best == 1.0
    assert not bar._started  # below the delay: nothing shown
    bar.close()


def test_disabled_wrap_is_the_function_itself():
    def f(x):
        return x

    assert FitProgress("fit", enabled=False).wrap(f) is f


def test_shown_after_the_delay_on_a_terminal(monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)  # the plain indicator
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    err = io.StringIO()
    err.isatty = lambda: True  # type: ignore[method-assign]
    monkeypatch.setattr(sys, "stderr", err)
    with FitProgress("lmer", enabled=True, delay=0.0) as bar:
        f = bar.wrap(lambda x: x)
        for x in (5.0, 4.0, 4.5):
            f(x)
    text = err.getvalue()
    assert "lmer: 3 evaluations, objective 4" in text
    assert text.endswith("\r")


def test_quick_fit_prints_nothing(capsys):
    mm.lmer("Reaction ~ Days + (Days | Subject)", mm.datasets.load("sleepstudy"))
    mm.glmer(
        "cbind(incidence, size - incidence) ~ period + (1 | herd)",
        mm.datasets.load("cbpp"),
        "binomial",
        progress=False,
    )
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""


# -- where the indicators are shown ------------------------------------------------------------


def _stderr(monkeypatch, tty: bool) -> io.StringIO:
    err = io.StringIO()
    err.isatty = lambda: tty  # type: ignore[method-assign]
    monkeypatch.setattr(sys, "stderr", err)
    return err


def _no_tqdm(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "tqdm", None)  # the plain indicator
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)


def test_not_shown_when_stderr_is_redirected(monkeypatch):
    # a file or a pipe (``2>err``, a log): nothing, with tqdm installed or not
    pytest.importorskip("tqdm")
    monkeypatch.delitem(sys.modules, "IPython", raising=False)
    err = _stderr(monkeypatch, tty=False)
    assert not visible()
    with Progress(3, "bootstrap", True) as bar:
        bar.update(3)
    with FitProgress("lmer", enabled=True, delay=0.0) as fit_bar:
        f = fit_bar.wrap(lambda x: x)
        for x in (3.0, 2.0):
            f(x)
    assert fit_bar.count == 2
    _no_tqdm(monkeypatch)
    with Progress(3, "bootstrap", True) as bar:
        bar.update(3)
    assert err.getvalue() == ""


def test_shown_on_a_terminal_plain_and_with_tqdm(monkeypatch):
    monkeypatch.delitem(sys.modules, "IPython", raising=False)
    err = _stderr(monkeypatch, tty=True)
    assert visible()
    if importlib.util.find_spec("tqdm") is not None:
        with Progress(2, "bootstrap", True) as bar:
            bar.update(2)
        assert "bootstrap" in err.getvalue()
        err.truncate(0)
        err.seek(0)
    _no_tqdm(monkeypatch)
    with Progress(2, "bootstrap", True) as bar:
        bar.update(2)
    assert "bootstrap: 100% |" in err.getvalue() and "2/2" in err.getvalue()


def test_shown_in_ipython_even_without_a_terminal(monkeypatch):
    _no_tqdm(monkeypatch)
    err = _stderr(monkeypatch, tty=False)
    shell = types.ModuleType("IPython")
    shell.get_ipython = lambda: object()  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "IPython", shell)
    assert visible()
    with Progress(1, "profile", True) as bar:
        bar.update()
    assert "profile: 100% |" in err.getvalue()
    # IPython imported but no shell running (a plain script that imports it): nothing
    shell.get_ipython = lambda: None  # type: ignore[attr-defined]
    assert not visible()


# -- profiles ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sleep_fit_ml() -> mm.LmerResult:
    return mm.lmer("Reaction ~ Days + (Days | Subject)", mm.datasets.load("sleepstudy"), reml=False)


def test_profile_progress_on_a_terminal(monkeypatch, sleep_fit_ml):
    _no_tqdm(monkeypatch)
    err = _stderr(monkeypatch, tty=True)
    quiet = sleep_fit_ml.profile(which=["sigma", "Days"], npoints=2, progress=False)
    assert err.getvalue() == ""
    loud = sleep_fit_ml.profile(which=["sigma", "Days"], npoints=2)  # progress=True by default
    text = err.getvalue()
    assert "profile:  50% |" in text and "profile: 100% |" in text and "2/2" in text
    assert text.endswith("\r")  # the line is cleared at the end
    pd.testing.assert_frame_equal(quiet.table, loud.table)


def test_profile_confint_progress(monkeypatch, sleep_fit_ml):
    _no_tqdm(monkeypatch)
    err = _stderr(monkeypatch, tty=True)
    sleep_fit_ml.confint(which="sigma", progress=False)
    assert err.getvalue() == ""
    sleep_fit_ml.confint(which="sigma", progress=True)
    assert "profile confint: 100% |" in err.getvalue()


def test_glmm_profile_progress(monkeypatch):
    fit = mm.glmer(
        "cbind(incidence, size - incidence) ~ period + (1 | herd)",
        mm.datasets.load("cbpp"),
        "binomial",
        progress=False,
    )
    _no_tqdm(monkeypatch)
    err = _stderr(monkeypatch, tty=True)
    fit.profile(which="period2", npoints=2, progress=False)
    fit.confint(which="period2", progress=False)
    assert err.getvalue() == ""
    fit.profile(which="period2", npoints=2)
    assert "profile: 100% |" in err.getvalue()
    fit.confint(which="period2")
    assert "profile confint: 100% |" in err.getvalue()


def test_profile_with_tqdm_on_a_terminal(monkeypatch, sleep_fit_ml):
    pytest.importorskip("tqdm")
    monkeypatch.delitem(sys.modules, "IPython", raising=False)
    err = _stderr(monkeypatch, tty=True)
    sleep_fit_ml.profile(which="sigma", npoints=2)
    assert "profile" in err.getvalue()
