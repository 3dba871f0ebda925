"""Time mixedmodels on a benchmark case: ``python ours.py SPEC_JSON`` prints one JSON line."""

from __future__ import annotations

import os
import sys
import warnings
from typing import Any

sys.path.insert(0, os.path.dirname(__file__))

from common import (
    bayes_summary,
    peak_rss_mb,
    read_data,
    read_spec,
    report,
    report_bayes,
    timed,
    warm_then_timed,
)


def main() -> None:
    spec = read_spec()
    warnings.simplefilter("ignore")
    if spec["mode"] == "bayes":
        _bayes(spec)
        return
    if spec["mode"] == "first":
        _first(spec)
        return
    if spec["mode"] == "first_child":
        _first_child(spec)
        return
    import mixedmodels as mm

    df = read_data(spec)
    binomial = spec["family"] != "gaussian"

    def fit() -> object:
        return _fit_case(mm, spec, df)

    if spec["mode"] == "bootstrap":
        model = fit()  # also the warm-up: loads the compiled kernels from numba's cache
        times, boot = timed(
            lambda: model.bootstrap(spec["nsim"], seed=1, progress=False), spec["repeat"]
        )
        report(times, nsim=spec["nsim"], failed=len(boot.failures), workers=os.cpu_count())
        return
    times, res = warm_then_timed(fit, spec["repeat"])
    opt = res.optinfo
    evals = opt.feval if not binomial else res.feval.get("stage1", 0) + res.feval.get("stage2", 0)
    report(
        times,
        loglik=float(res.loglik),
        criterion="REML" if (not binomial and spec["reml"]) else "ML",
        evaluations=int(evals),
        per_eval_ms=_per_evaluation_ms(res) if not binomial else None,
        optimizer=opt.optimizer,
    )


def _bayes(spec: dict) -> None:
    """A Bayesian case: the first fit in this fresh process with an empty compilation cache
    (everything compiled), then a second fit of a newly built model."""
    import tempfile
    import time

    os.environ["MIXEDMODELS_JAX_CACHE_DIR"] = tempfile.mkdtemp(prefix="mm-jax-")
    import arviz  # noqa: F401  (libraries are imported before timing, as Bambi's driver does)

    import mixedmodels as mm
    import mixedmodels.bayesian._jax

    df = read_data(spec)
    out = []
    for seed in (1, 2):
        t0 = time.perf_counter()
        fit = mm.bayes(spec["formula"], df).fit(
            draws=spec["draws"], tune=spec["draws"], chains=spec["chains"], seed=seed,
            progress=False,
        )  # fmt: skip
        elapsed = time.perf_counter() - t0
        names = [v for v in fit.idata.posterior.data_vars if v == "beta" or v == "sigma"
                 or v.startswith("sd_")]  # fmt: skip
        out.append((elapsed, bayes_summary(fit.idata, names), fit))
    fit = out[0][2]
    report_bayes(
        out[0][0], out[1][0], out[0][1], out[1][1],
        fixef={k: float(v) for k, v in fit.fixef.items()},
        integrated=bool(fit.model.marginal),
    )  # fmt: skip


def _fit_case(mm: Any, spec: dict, df: Any) -> Any:
    """The case's model fitted with lmer, or glmer for a family other than gaussian."""
    if spec["family"] != "gaussian":
        return mm.glmer(spec["formula"], df, spec["family"], nAGQ=spec["nagq"])
    return mm.lmer(spec["formula"], df, reml=spec["reml"])


def _first(spec: dict) -> None:
    """The first fit after installing: ``import mixedmodels`` and one fit in a fresh process
    whose compilation cache (numba's) is empty, so that every kernel the fit needs is compiled;
    then the same in another fresh process that finds the cache filled (a new session)."""
    import json
    import subprocess
    import tempfile

    env = {**os.environ, "NUMBA_CACHE_DIR": tempfile.mkdtemp(prefix="mm-numba-")}
    child = [sys.executable, __file__, json.dumps({**spec, "mode": "first_child"})]
    runs = []
    for _ in range(2):
        proc = subprocess.run(child, capture_output=True, text=True, env=env, check=True)
        runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    print(
        json.dumps(
            {
                "seconds": runs[0]["seconds"],
                "times": [runs[0]["seconds"]],
                "peak_rss_mb": runs[0]["peak_rss_mb"],  # the fresh process's, not this one's
                "new_session_seconds": runs[1]["seconds"],
            }
        )
    )


def _first_child(spec: dict) -> None:
    import json
    import time

    df = read_data(spec)  # pandas is imported and the data read before the clock starts
    t0 = time.perf_counter()
    import mixedmodels as mm

    _fit_case(mm, spec, df)
    seconds = time.perf_counter() - t0
    print(json.dumps({"seconds": seconds, "peak_rss_mb": peak_rss_mb()}))


def _per_evaluation_ms(res: object) -> float:
    """Time of one evaluation of what the optimizer calls (the objective and its gradient, or
    the objective alone) at the optimum: the least of three batch medians. The factor the
    compiled objective keeps from its last evaluation is dropped before each call, so that
    every call factors anew, as each evaluation of a search does."""
    import statistics
    import time

    model = res.model  # type: ignore[attr-defined]
    theta = res.theta  # type: ignore[attr-defined]
    fast = model.fast_objective()

    def fresh_objective_gradient() -> object:
        fast.release()
        return fast.objective_gradient(theta)

    evaluate = fresh_objective_gradient if fast is not None else (lambda: model.objective(theta))
    evaluate()
    medians = []
    for _ in range(3):  # the least of three batch medians: robust to a busy machine
        times: list[float] = []
        budget = time.perf_counter() + 1.0
        while len(times) < 100 and (len(times) < 3 or time.perf_counter() < budget):
            t0 = time.perf_counter()
            evaluate()
            times.append(time.perf_counter() - t0)
        medians.append(statistics.median(times))
    return 1000 * min(medians)


if __name__ == "__main__":
    main()
