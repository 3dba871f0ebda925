"""Parametric bootstrap of linear and generalized linear mixed models (lme4's ``bootMer``).

Each replicate simulates a new response from the fitted model (new random effects and new
residual noise, ``use_u=False``, as lme4's default) and refits the model to it. Only the blocks
of A that involve y are recomputed for a replicate; X, Z, the weights and every block without y
are shared, and each refit starts at the original estimate of theta. A small model's refit is
one compiled quasi-Newton search with the exact gradient, whose first step is Newton's (the
Hessian at the estimate is computed once); otherwise BOBYQA minimizes the compiled objective
where the model has one. Replicates are spread over worker processes when
there are enough of them to pay for starting the workers; each replicate has its own random
stream (spawned from the seed), so the results do not depend on where or by how many workers
they run.

For a GLMM a replicate draws new random effects, then responses from the family at the
resulting means (binomial counts of the same numbers of trials, Poisson counts, ...), and refits
by the joint optimization over (theta, beta) started at the original estimates.

Intervals (as R's ``boot.ci``, which lme4's ``confint(method = "boot")`` uses): percentile,
basic, and normal (bias-corrected).
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy import stats

from mixedmodels._progress import Progress
from mixedmodels.errors import ModelSpecError
from mixedmodels.inference.profile import _pct, parameter_names, sdcor
from mixedmodels.linalg.assemble import response_blocks
from mixedmodels.linalg.cholesky import BlockedCholesky
from mixedmodels.optim import hessian_from_gradient, minimize_theta

if TYPE_CHECKING:
    from mixedmodels.results import LmerResult
    from mixedmodels.results_glmm import GlmerResult

__all__ = ["BootstrapResult", "bootstrap", "bootstrap_glmm"]


@dataclass(frozen=True)
class _Task:
    """What a worker needs to simulate and refit replicates (picklable)."""

    model: Any  # LinearMixedModel or GeneralizedLinearMixedModel
    theta: np.ndarray
    beta: np.ndarray
    sigma: float
    step: np.ndarray
    use_u: bool
    b: tuple[np.ndarray, ...]
    glmm: bool = False
    se: np.ndarray | None = None  # GLMM: standard errors of beta (optimizer steps)
    # a small LMM: the compiled search's units for theta, and its inverse Hessian in them at
    # the estimate (None if not positive definite)
    scale: np.ndarray | None = None
    inverse_hessian: np.ndarray | None = None


_TASK: _Task | None = None

#: Worker processes are started only when the replicates still to run would take longer than
#: this in this process: starting them and shipping the task to them costs up to a few tenths
#: of a second, more than a small bootstrap of a small model takes.
_POOL_MIN_SECONDS = 0.5
#: How long replicates run in this process first, to time one (the delay before the workers
#: start; long enough that the first replicate's one-off costs do not dominate the estimate).
_PROBE_SECONDS = 0.1


def _init_worker(task: _Task) -> None:
    """Initializer of a worker process: the task, and one BLAS thread for the process's life."""
    global _TASK
    _TASK = task
    # one BLAS thread per worker: the matrices are small and the workers already use the
    # cores (several BLAS threads per worker slow the bootstrap down many times over)
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)


def _simulate(task: _Task, rng: np.random.Generator) -> np.ndarray:
    model = task.model
    d = model.design
    eta = d.X @ task.beta if d.X.shape[1] else np.zeros(d.nobs)
    if d.offset is not None:
        eta = eta + d.offset
    Ts = model.layout.templates(task.theta)
    for j, t in enumerate(model.terms_data):
        if task.use_u:
            bj = task.b[j]
        else:
            bj = task.sigma * rng.standard_normal((t.nlevels, t.n_effects)) @ Ts[j].T
        rows = bj[t.refs]
        eta = eta + (rows[:, 0] if t.z is None else np.einsum("sn,ns->n", t.z, rows))
    scale = task.sigma if d.weights is None else task.sigma / np.sqrt(d.weights)
    return eta + scale * rng.standard_normal(d.nobs)


def _refit(
    task: _Task, y: np.ndarray, ws: BlockedCholesky | None
) -> tuple[np.ndarray, BlockedCholesky | None]:
    """Parameters (sd/cor, sigma, beta) of the model refitted to y, and the workspace of the
    blocked factorization for the next replicate (made on first need).

    A small model's refit is one compiled search (:meth:`FastObjective.minimize
    <mixedmodels.linalg.fast_lmm.FastObjective.minimize>`) started at the estimate with
    Newton's step there (the inverse Hessian computed once for the whole bootstrap).

    Otherwise BOBYQA minimizes the compiled objective
    (:class:`~mixedmodels.linalg.fast_lmm.FastObjective`, with only its response entries
    replaced) where the model has one, or the blocked factorization's, which is then used once
    at the optimum for sigma and beta.
    """
    from mixedmodels.lmm import _residualized_response

    model = task.model
    d = model.design
    yr, shift = _residualized_response(d, y)
    A = response_blocks(model.A, model.terms_data, d.X, yr, d.weights)
    reml = model.reml
    n, p = model.nobs, model.n_fixef
    fast = model.fast_objective()
    if fast is not None and fast.small and task.scale is not None:
        # the whole search in one compiled call, started with Newton's step from the estimate
        fr = fast.with_response(A)
        found = fr.minimize(
            task.theta, model.lower_bounds, task.scale, inverse_hessian=task.inverse_hessian
        )
        sol = fr.solution(found.final) if found.return_code > 0 else None
        if sol is not None:
            sigma = math.sqrt(sol.pwrss / (n - p if reml else n))
            params = [sdcor(model.layout, found.final, sigma), sol.beta + shift]
            return np.concatenate(params), ws
    if ws is None:
        ws = BlockedCholesky(A)
    else:
        ws.A = A
    if fast is not None:
        f = fast.with_response(A).objective
    else:

        def f(theta: np.ndarray) -> float:
            ws.update(theta)
            return ws.objective(reml)

    opt = minimize_theta(f, task.theta, model.lower_bounds, initial_step=task.step)
    ws.update(opt.final)
    sigma = math.sqrt(ws.pwrss() / (n - p if reml else n))
    beta = ws.beta() + shift
    return np.concatenate([sdcor(model.layout, opt.final, sigma), beta]), ws


def _simulate_glmm(task: _Task, rng: np.random.Generator) -> np.ndarray:
    model = task.model
    d = model.design
    eta = model.offset + (d.X @ task.beta if d.X.shape[1] else 0.0)
    Ts = model.layout.templates(task.theta)
    for j, t in enumerate(model.terms_data):
        if task.use_u:
            bj = task.b[j]
        else:
            bj = rng.standard_normal((t.nlevels, t.n_effects)) @ Ts[j].T
        rows = bj[t.refs]
        eta = eta + (rows[:, 0] if t.z is None else np.einsum("sn,ns->n", t.z, rows))
    mu = model.family.linkinv(eta)
    return np.asarray(
        model.family.simulate(mu, model.trials, model.prior_weights, task.sigma**2, rng),
        dtype=float,
    )


def _refit_glmm(task: _Task, y: np.ndarray) -> np.ndarray:
    """Parameters (sd/cor, beta) of the GLMM refitted to y, started at the estimates."""
    from mixedmodels.inference.profile_glmm import _sdcor

    model = task.model.with_response(y)
    found = model.optimize(task.theta, task.step, beta0=task.beta, se0=task.se)
    theta, beta = found.theta, found.beta
    return np.concatenate([_sdcor(model.layout, theta), beta])


def _run(
    indices: list[int], seeds: list[np.random.SeedSequence]
) -> tuple[list[int], np.ndarray, list[str]]:
    """A batch of replicates in a worker process (the task is the one its initializer set)."""
    assert _TASK is not None
    return _run_task(_TASK, indices, seeds)


def _run_task(
    task: _Task,
    indices: list[int],
    seeds: list[np.random.SeedSequence],
    until: float = math.inf,
) -> tuple[list[int], np.ndarray, list[str]]:
    """Simulate and refit the replicates ``indices`` (``seeds`` their streams), stopping early
    after the first replicate that ends past the time ``until`` (``time.perf_counter``); returns
    the replicates run, their parameters (NaN where the refit failed) and the failures."""
    done = []
    out = []
    errors = []
    ws = None
    nparams = len(task.theta) + len(task.beta) + (0 if task.glmm else 1)
    for i, ss in zip(indices, seeds, strict=True):
        rng = np.random.default_rng(ss)
        try:
            if task.glmm:
                params = _refit_glmm(task, _simulate_glmm(task, rng))
            else:
                params, ws = _refit(task, _simulate(task, rng), ws)
        except Exception as exc:  # a failed replicate is recorded, not fatal
            params = np.full(nparams, np.nan)
            errors.append(f"replicate {i + 1}: {exc}")
        out.append(params)
        done.append(i)
        if time.perf_counter() > until:
            break
    return done, np.array(out), errors


@dataclass(frozen=True)
class BootstrapResult:
    """Replicates of a parametric bootstrap and the intervals they give.

    Attributes
    ----------
    replicates
        One row per replicate, one column per parameter (lme4's ``confint`` names:
        ``sd_(Intercept)|Subject``, ..., ``sigma``, fixed effects).
    estimates
        The estimates from the original fit (``t0`` in R's boot).
    seed
        The seed the replicates were drawn from.
    elapsed
        Wall time in seconds.
    failures
        Messages of replicates whose refit failed (their rows are NaN).
    """

    replicates: pd.DataFrame
    estimates: pd.Series
    seed: int | None
    elapsed: float
    failures: tuple[str, ...] = ()

    @property
    def nsim(self) -> int:
        return len(self.replicates)

    def summary(self) -> pd.DataFrame:
        """original, bias, std. error and the mean of each parameter over the replicates."""
        t = self.replicates
        return pd.DataFrame(
            {
                "original": self.estimates,
                "bias": t.mean() - self.estimates,
                "std. error": t.std(ddof=1),
                "mean": t.mean(),
            }
        )

    def plot(
        self,
        params: Sequence[str] | str | None = None,
        *,
        level: float = 0.95,
        ncols: int | None = None,
        ax: Any = None,
    ) -> Any:
        """Density of each parameter over the replicates with the estimate and the percentile
        interval; returns the Figure (see :func:`mixedmodels.plots.bootstrap_densities`)."""
        from mixedmodels.plots import bootstrap_densities

        return bootstrap_densities(self, params, level=level, ncols=ncols, ax=ax)

    def confint(self, level: float = 0.95, type: str = "perc") -> pd.DataFrame:
        """Bootstrap confidence intervals (R's ``boot.ci``).

        Parameters
        ----------
        level
            Confidence level.
        type
            ``"perc"`` (percentile, lme4's default), ``"basic"`` or ``"norm"`` (normal
            approximation with bias correction).
        """
        if not 0 < level < 1:
            raise ModelSpecError("level must be between 0 and 1")
        a = (1 - level) / 2
        rows = {}
        for name in self.replicates.columns:
            t = self.replicates[name].to_numpy()
            t = t[np.isfinite(t)]
            t0 = float(self.estimates[name])
            if t.size < 2:
                rows[name] = (np.nan, np.nan)
            elif type == "perc":
                rows[name] = tuple(_norm_inter(t, np.array([a, 1 - a])))
            elif type == "basic":
                lo, hi = _norm_inter(t, np.array([1 - a, a]))
                rows[name] = (2 * t0 - lo, 2 * t0 - hi)
            elif type == "norm":
                bias = float(t.mean()) - t0
                half = float(stats.norm.ppf(1 - a)) * float(t.std(ddof=1))
                rows[name] = (t0 - bias - half, t0 - bias + half)
            else:
                raise ModelSpecError(f"type must be 'perc', 'basic' or 'norm', not {type!r}")
        return pd.DataFrame.from_dict(rows, orient="index", columns=[_pct(a), _pct(1 - a)])

    def __repr__(self) -> str:
        head = f"Parametric bootstrap: {self.nsim} replicates ({len(self.failures)} failed)"
        return f"{head}\n{self.summary()}"


def _norm_inter(t: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Quantiles of the replicates as R's ``boot:::norm.inter``: order statistic (R+1) alpha,
    interpolated on the normal scale between neighbouring order statistics."""
    R = t.size
    ts = np.sort(t)
    rk = (R + 1) * alpha
    k = np.trunc(rk).astype(int)
    out = np.empty(alpha.size)
    for i in range(alpha.size):
        if k[i] == rk[i] and 0 < k[i] <= R:
            out[i] = ts[k[i] - 1]
        elif k[i] <= 0:
            out[i] = ts[0]
        elif k[i] >= R:
            out[i] = ts[-1]
        else:
            z = stats.norm.ppf(alpha[i])
            z1 = stats.norm.ppf(k[i] / (R + 1))
            z2 = stats.norm.ppf((k[i] + 1) / (R + 1))
            lo, hi = ts[k[i] - 1], ts[k[i]]
            out[i] = lo + (z - z1) / (z2 - z1) * (hi - lo)
    return out


def _context() -> Any:
    methods = mp.get_all_start_methods()
    return mp.get_context("fork" if "fork" in methods else "spawn")


def _workers_safe() -> bool:
    """Whether worker processes may be forked. Not once JAX has been imported (a Bayesian fit
    in the same session): its threads make a forked child prone to deadlock, and workers
    started afresh ("spawn") would re-run a user's script that lacks a ``__main__`` guard. The
    replicates then run in this process."""
    return "jax" not in sys.modules


def _small_search_units(
    model: Any, theta: np.ndarray
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """For a small LMM (refitted by the compiled search): theta's units, as the fit's, and the
    inverse of the criterion's Hessian in them at the estimate, from differences of the exact
    gradient (None if it is not positive definite, e.g. at a boundary); (None, None) for other
    models."""
    fast = model.fast_objective()
    if fast is None or not fast.small:
        return None, None
    scale = model.search_scale()
    lower = model.lower_bounds
    _, H = hessian_from_gradient(
        fast.objective_gradient, theta, lower, 1e-4 * np.maximum(np.abs(theta), scale)
    )
    Hz = H * np.outer(scale, scale)
    try:
        np.linalg.cholesky(Hz)
    except np.linalg.LinAlgError:
        return scale, None
    hinv = np.linalg.inv(Hz)
    return scale, 0.5 * (hinv + hinv.T)


def bootstrap(
    result: LmerResult,
    nsim: int = 1000,
    seed: int | None = None,
    *,
    use_u: bool = False,
    n_jobs: int | None = None,
    progress: bool = True,
    chunk: int | None = None,
) -> BootstrapResult:
    """Parametric bootstrap: simulate ``nsim`` responses from the fit, refit, collect parameters.

    Parameters
    ----------
    result
        The fit.
    nsim
        Number of replicates.
    seed
        Seed of the random streams (each replicate gets its own stream spawned from it).
    use_u
        Keep the random effects at their conditional modes and simulate only the residual noise.
    n_jobs
        Worker processes at most (default: the number of CPUs). 1 runs every replicate in this
        process, and so does a bootstrap that would take less time here than starting workers,
        or one in a session where JAX has been imported (a Bayesian fit): forked workers could
        deadlock on JAX's threads.
    progress
        Show a progress bar.
    chunk
        Replicates per task sent to a worker (default: about 40 tasks in all).
    """
    if nsim < 1:
        raise ModelSpecError("nsim must be at least 1")
    model = result.model
    _, step = model.initial_theta()
    scale, hinv = _small_search_units(model, result.theta)
    task = _Task(
        model, result.theta, result.beta, result.sigma, step, use_u, tuple(result.b),
        scale=scale, inverse_hessian=hinv,
    )  # fmt: skip
    names = parameter_names(result)
    estimates = pd.Series(
        np.concatenate([sdcor(model.layout, result.theta, result.sigma), result.beta]), index=names
    )
    return _drive(task, names, estimates, nsim, seed, n_jobs, progress, chunk)


def bootstrap_glmm(
    result: GlmerResult,
    nsim: int = 1000,
    seed: int | None = None,
    *,
    use_u: bool = False,
    n_jobs: int | None = None,
    progress: bool = True,
    chunk: int | None = None,
) -> BootstrapResult:
    """Parametric bootstrap of a GLMM: simulate ``nsim`` responses from the fit (new random
    effects, responses from the family), refit each, collect sd/cor and fixed effects.

    Parameters are as for :func:`bootstrap`.
    """
    from mixedmodels.inference.profile_glmm import _sdcor, parameter_names_glmm

    if nsim < 1:
        raise ModelSpecError("nsim must be at least 1")
    model = result.model
    _, step = model.initial_theta()
    task = _Task(
        model,
        result.theta,
        result.beta,
        math.sqrt(result.scale),
        step,
        use_u,
        tuple(result.b),
        glmm=True,
        se=np.sqrt(np.diag(result.vcov_rx)) if model.n_fixef else np.zeros(0),
    )
    names = parameter_names_glmm(result)
    estimates = pd.Series(
        np.concatenate([_sdcor(model.layout, result.theta), result.beta]), index=names
    )
    return _drive(task, names, estimates, nsim, seed, n_jobs, progress, chunk)


def _drive(
    task: _Task,
    names: list[str],
    estimates: pd.Series,
    nsim: int,
    seed: int | None,
    n_jobs: int | None,
    progress: bool,
    chunk: int | None,
) -> BootstrapResult:
    """Run the replicates in this process or in worker processes.

    Replicates run here for ``_PROBE_SECONDS`` first, which tells how long one takes. Worker
    processes run the rest when more than one job is allowed and the rest would take longer
    than ``_POOL_MIN_SECONDS`` here; otherwise this process does. Every replicate has its own
    random stream, so the replicates do not depend on where they ran.
    """
    from threadpoolctl import threadpool_limits

    seeds = np.random.SeedSequence(seed).spawn(nsim)
    n_jobs = (os.cpu_count() or 1) if n_jobs is None else max(1, int(n_jobs))
    n_jobs = min(n_jobs, nsim) if _workers_safe() else 1
    chunk = chunk or max(1, min(50, math.ceil(nsim / 40)))
    batches = [list(range(s, min(nsim, s + chunk))) for s in range(0, nsim, chunk)]
    values = np.full((nsim, len(names)), np.nan)
    failures: list[str] = []
    t0 = time.perf_counter()
    with Progress(nsim, "bootstrap", progress) as bar:

        def collect(got: list[int], vals: np.ndarray, errs: list[str]) -> None:
            values[got] = vals
            failures.extend(errs)
            bar.update(len(got))

        # one BLAS thread, as in the workers, but only while replicates run in this process:
        # the caller's setting is restored afterwards
        pending = list(batches)
        with threadpool_limits(1):
            start = time.perf_counter()
            done = 0
            while pending and (done == 0 or time.perf_counter() - start < _PROBE_SECONDS):
                idx = pending.pop(0)
                got, vals, errs = _run_task(
                    task, idx, [seeds[i] for i in idx], until=start + _PROBE_SECONDS
                )
                collect(got, vals, errs)
                done += len(got)
                if len(got) < len(idx):
                    pending.insert(0, idx[len(got) :])
            per_replicate = (time.perf_counter() - start) / done
            if n_jobs == 1 or per_replicate * (nsim - done) <= _POOL_MIN_SECONDS:
                for idx in pending:
                    collect(*_run_task(task, idx, [seeds[i] for i in idx]))
                pending = []
        if pending:
            with ProcessPoolExecutor(
                max_workers=min(n_jobs, len(pending)),
                mp_context=_context(),
                initializer=_init_worker,
                initargs=(task,),
            ) as pool:
                futures = [pool.submit(_run, idx, [seeds[i] for i in idx]) for idx in pending]
                for fut in as_completed(futures):
                    collect(*fut.result())
    elapsed = time.perf_counter() - t0
    reps = pd.DataFrame(values, columns=names)
    reps.index.name = "replicate"
    return BootstrapResult(
        replicates=reps,
        estimates=estimates,
        seed=seed,
        elapsed=elapsed,
        failures=tuple(sorted(failures)),
    )
