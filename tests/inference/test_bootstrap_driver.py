"""The parametric bootstrap's machinery: where the replicates run (this process or workers),
the caller's BLAS threads, and each replicate's refit (the compiled objective and the blocked
factorization) against a full fit of the simulated response."""

from __future__ import annotations

import sys
import types

import numpy as np
import pandas as pd
import pytest
import threadpoolctl

import mixedmodels as mm
import mixedmodels.inference.bootstrap as bootstrap_mod

from ..conftest import fitted_case


@pytest.fixture(scope="module")
def fit():
    return fitted_case("sleepstudy_corr_reml")


class _PoolSpy:
    """Stands in for ProcessPoolExecutor in the bootstrap module and counts the pools."""

    def __init__(self, monkeypatch, forbid: bool = False):
        self.started = 0
        real = bootstrap_mod.ProcessPoolExecutor
        spy = self

        def make(*args, **kwargs):
            if forbid:
                raise AssertionError("worker processes started for a small bootstrap")
            spy.started += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(bootstrap_mod, "ProcessPoolExecutor", make)


def _threads() -> list[tuple[str, int]]:
    return [(i["filepath"], i["num_threads"]) for i in threadpoolctl.threadpool_info()]


@pytest.mark.parametrize("how", ["n_jobs=1", "small", "workers"])
def test_bootstrap_restores_the_blas_threads(fit, monkeypatch, how):
    """Replicates run in this process with one BLAS thread, but the caller's setting is back
    afterwards (it used to stay at one thread for good)."""
    if not threadpoolctl.threadpool_info():
        pytest.skip("no BLAS or OpenMP library that threadpoolctl can control")
    if how == "workers":
        monkeypatch.setattr(bootstrap_mod, "_POOL_MIN_SECONDS", 0.0)
    n_jobs = 1 if how == "n_jobs=1" else 2
    with threadpoolctl.threadpool_limits(2):
        before = _threads()
        assert any(n == 2 for _, n in before)  # else the test could not see the leak
        bootstrap_mod.bootstrap(fit, 5, seed=1, n_jobs=n_jobs, progress=False, chunk=2)
        assert _threads() == before


def test_workers_give_the_same_replicates(fit, monkeypatch):
    """Forced into worker processes (and the first batch cut short after one replicate), the
    replicates are those of a run in this process."""
    here = bootstrap_mod.bootstrap(fit, 12, seed=3, n_jobs=1, progress=False, chunk=4)
    spy = _PoolSpy(monkeypatch)
    monkeypatch.setattr(bootstrap_mod, "_POOL_MIN_SECONDS", 0.0)
    monkeypatch.setattr(bootstrap_mod, "_PROBE_SECONDS", 0.0)
    # JAX may be loaded by other tests in this session, which keeps replicates in-process
    monkeypatch.setattr(bootstrap_mod, "_workers_safe", lambda: True)
    here_ran = []  # what ran in this process (the workers record into their own copies)
    run_task = bootstrap_mod._run_task

    def recording(task, indices, seeds, until=np.inf):
        out = run_task(task, indices, seeds, until)
        here_ran.append(list(out[0]))
        return out

    monkeypatch.setattr(bootstrap_mod, "_run_task", recording)
    there = bootstrap_mod.bootstrap(fit, 12, seed=3, n_jobs=2, progress=False, chunk=4)
    assert spy.started == 1
    assert here_ran == [[0]]  # the first batch cut short; 1-3 and the rest went to workers
    assert not there.failures
    pd.testing.assert_frame_equal(here.replicates, there.replicates)


def test_no_workers_are_forked_once_jax_is_loaded(fit, monkeypatch):
    """With JAX in the process (a Bayesian fit earlier in the session) forking could deadlock,
    so even a bootstrap long enough for workers runs here, with the same replicates."""
    here = bootstrap_mod.bootstrap(fit, 8, seed=5, n_jobs=1, progress=False, chunk=4)
    _PoolSpy(monkeypatch, forbid=True)
    monkeypatch.setattr(bootstrap_mod, "_POOL_MIN_SECONDS", 0.0)
    monkeypatch.setattr(bootstrap_mod, "_PROBE_SECONDS", 0.0)
    monkeypatch.setitem(sys.modules, "jax", sys.modules.get("jax", types.ModuleType("jax")))
    there = bootstrap_mod.bootstrap(fit, 8, seed=5, n_jobs=2, progress=False, chunk=4)
    pd.testing.assert_frame_equal(here.replicates, there.replicates)


def test_a_small_bootstrap_starts_no_workers(fit, monkeypatch):
    """A few replicates of a small model take less than starting worker processes would."""
    _PoolSpy(monkeypatch, forbid=True)
    boot = fit.bootstrap(10, seed=1, n_jobs=2, progress=False)
    assert not boot.failures
    assert np.isfinite(boot.replicates.to_numpy()).all()


def _full_refits(
    result, seed: int, nsim: int, which: list[int], optimizer: str = "bobyqa"
) -> np.ndarray:
    """The parameters of full fits from the estimate (by ``optimizer``) of the responses that
    replicates ``which`` simulate."""
    from mixedmodels.inference.profile import sdcor

    model = result.model
    _, step = model.initial_theta()
    task = bootstrap_mod._Task(
        model, result.theta, result.beta, result.sigma, step, False, tuple(result.b)
    )
    seeds = np.random.SeedSequence(seed).spawn(nsim)
    rows = []
    for i in which:
        y = bootstrap_mod._simulate(task, np.random.default_rng(seeds[i]))
        refit = model.with_response(y).fit(
            start=result.theta, optimizer=optimizer, warn=False, progress=False
        )
        rows.append(np.concatenate([sdcor(model.layout, refit.theta, refit.sigma), refit.beta]))
    return np.array(rows)


@pytest.mark.parametrize(
    "case",
    [
        "sleepstudy_corr_reml",
        "penicillin_ml",  # two crossed terms: the dense rest has response entries too
        "pastes_nested_reml",
        "sleepstudy_weights_reml",
        "sleepstudy_offset_reml",
        "cake_ml",
    ],
)
@pytest.mark.parametrize("objective", ["compiled", "blocked"])
def test_a_replicate_is_the_fit_to_its_simulated_response(case, objective, monkeypatch):
    """Each replicate equals a full fit of the response it simulated, started where the
    bootstrap starts (the estimate): with the blocked factorization, by the same optimizer
    (BOBYQA) and so up to rounding; with the compiled objective of these small models, by the
    compiled search (started with the Hessian at the estimate in the bootstrap, with the
    identity in the fit), so to the precision of two searches' optima (the least determined
    parameters move by 1e-5 relative for a change of 1e-12 in the criterion)."""
    result = fitted_case(case)
    if objective == "blocked":
        monkeypatch.setattr(mm.LinearMixedModel, "fast_objective", lambda self: None)
    elif result.model.fast_objective() is None:  # pragma: no cover - all of these have one
        pytest.skip("no compiled objective for this model")
    boot = result.bootstrap(6, seed=11, n_jobs=1, progress=False)
    assert not boot.failures
    which = [0, 3, 5]
    got = boot.replicates.to_numpy()[which]
    if objective == "blocked":
        # the same objective, start, steps and optimizer: the same path up to rounding
        expected = _full_refits(result, 11, 6, which)
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-8 * np.abs(expected).max())
    else:
        expected = _full_refits(result, 11, 6, which, optimizer="auto")
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6 * np.abs(expected).max())


def test_no_worker_processes_once_jax_is_loaded(monkeypatch):
    """After a Bayesian fit (JAX imported, with its threads) the replicates run in this
    process: forked workers could deadlock, spawned ones would re-run the user's script."""
    import sys
    import types

    import mixedmodels.inference.bootstrap as B

    monkeypatch.setitem(sys.modules, "jax", types.ModuleType("jax"))
    started = []
    monkeypatch.setattr(B, "ProcessPoolExecutor", lambda *a, **k: started.append(1))
    monkeypatch.setattr(B, "_POOL_MIN_SECONDS", 0.0)  # would otherwise pay to start workers
    fit = mm.lmer("Reaction ~ Days + (Days | Subject)", mm.datasets.load("sleepstudy"))
    boot = fit.bootstrap(60, seed=3, n_jobs=2, progress=False)
    assert not started
    assert boot.replicates.shape[0] == 60
