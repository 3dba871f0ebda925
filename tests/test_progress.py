"""The fit progress indicator: silent on quick fits and when disabled, counting otherwise."""

from __future__ import annotations

import io
import sys

import mixedmodels as mm
from mixedmodels._progress import FitProgress


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
