"""Bayesian fits shared by the tests of the Bayesian back end (sampled once per session)."""

from __future__ import annotations

import functools

try:  # before anything else imports JAX, so that chains run in parallel as for users
    import mixedmodels.bayesian._jax
except ImportError:  # the 'bayes' extra is not installed
    collect_ignore_glob = ["test_*.py"]

import mixedmodels as mm

SLEEP = "Reaction ~ Days + (Days | Subject)"


@functools.cache
def sleep_model() -> mm.BayesModel:
    return mm.bayes(SLEEP, mm.datasets.load("sleepstudy"))


@functools.cache
def sleep_fit():
    """sleepstudy's maximal model at the default settings (1000 draws, 1000 tuning steps, 4
    chains)."""
    return sleep_model().fit(seed=20261201, progress=False)


@functools.cache
def sleep_reml() -> mm.LmerResult:
    return mm.lmer(SLEEP, mm.datasets.load("sleepstudy"))
