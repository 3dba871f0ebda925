"""Benchmarks of mixedmodels, with lme4 timed side by side when R is installed.

Usage::

    python benchmarks/run.py                      # every case, 3 repetitions
    python benchmarks/run.py --cases bootstrap_sleepstudy --repeat 5

Each case is timed ``--repeat`` times (median reported) in this process; the reference tools run
as separate processes (``Rscript``) and report their own timings. Results are written to
``benchmarks/results/latest.json`` and ``latest.md`` with the machine description.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
R_DIR = HERE / "r"


@dataclass
class Case:
    name: str
    description: str
    run: Callable[[], dict[str, Any]]  # one timed repetition; returns {"seconds": ..., ...}
    lme4: list[str] | None = None  # Rscript arguments (script and its arguments)
    target: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    warmup: bool = False  # run once untimed first (loads compiled kernels from numba's cache)


def _bootstrap_sleepstudy(nsim: int = 1000) -> dict[str, Any]:
    import mixedmodels as mm

    fit = mm.lmer("Reaction ~ Days + (Days | Subject)", mm.datasets.load("sleepstudy"))
    t0 = time.perf_counter()
    boot = fit.bootstrap(nsim, seed=1, progress=False)
    seconds = time.perf_counter() - t0
    return {
        "seconds": seconds,
        "nsim": nsim,
        "failed": len(boot.failures),
        "workers": os.cpu_count(),
    }


def _glmer(
    formula: str, dataset: str, prepare: Callable[[Any], Any] | None = None
) -> Callable[[], dict[str, Any]]:
    def run() -> dict[str, Any]:
        import warnings

        import mixedmodels as mm

        data = mm.datasets.load(dataset)
        if prepare is not None:
            data = prepare(data)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t0 = time.perf_counter()
            fit = mm.glmer(formula, data, "binomial")
            seconds = time.perf_counter() - t0
        return {"seconds": seconds, "loglik": fit.loglik, "evaluations": fit.feval}

    return run


def _bootstrap_cbpp(nsim: int = 200) -> dict[str, Any]:
    import warnings

    import mixedmodels as mm

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = mm.glmer(
            "cbind(incidence, size - incidence) ~ period + (1 | herd)", mm.datasets.load("cbpp")
        )
    t0 = time.perf_counter()
    boot = fit.bootstrap(nsim, seed=1, progress=False)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "nsim": nsim, "failed": len(boot.failures)}


CASES = {
    "bootstrap_sleepstudy": Case(
        name="bootstrap_sleepstudy",
        description="1000-replicate parametric bootstrap, Reaction ~ Days + (Days | Subject)",
        run=_bootstrap_sleepstudy,
        lme4=[str(R_DIR / "bootstrap_sleepstudy.R"), "1000"],
        target="<= 5 s",
    ),
    "glmer_cbpp": Case(
        name="glmer_cbpp",
        description="glmer cbind(incidence, size - incidence) ~ period + (1 | herd), binomial",
        run=_glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", "cbpp"),
        lme4=[str(R_DIR / "glmer_cbpp.R")],
        target=">= 5x lme4",
        warmup=True,
    ),
    "glmer_verbagg": Case(
        name="glmer_verbagg",
        description="glmer r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item), binomial",
        run=_glmer("r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)", "VerbAgg"),
        lme4=[str(R_DIR / "glmer_verbagg.R")],
        target=">= 5x lme4",
        warmup=True,
    ),
    "bootstrap_cbpp": Case(
        name="bootstrap_cbpp",
        description="200-replicate parametric bootstrap of the cbpp binomial GLMM",
        run=_bootstrap_cbpp,
        lme4=[str(R_DIR / "bootstrap_cbpp.R"), "200"],
        target="faster than lme4",
    ),
}


def _run_r(args: list[str]) -> dict[str, Any] | None:
    if shutil.which("Rscript") is None:
        return None
    proc = subprocess.run(["Rscript", *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1:] or ["failed"]}
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")][-1]
    return json.loads(line)


def machine() -> dict[str, Any]:
    import numpy as np

    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "numpy": np.__version__,
        "rscript": shutil.which("Rscript") is not None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-r", action="store_true", help="do not time lme4")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)

    results = {"machine": machine(), "date": time.strftime("%Y-%m-%d"), "cases": {}}
    for name in args.cases:
        case = CASES[name]
        if case.warmup:
            case.run()
        runs = [case.run() for _ in range(args.repeat)]
        ours = statistics.median(r["seconds"] for r in runs)
        entry: dict[str, Any] = {
            "description": case.description,
            "target": case.target,
            "mixedmodels_seconds": ours,
            "mixedmodels_runs": runs,
        }
        if case.lme4 and not args.no_r:
            r_runs = [_run_r(case.lme4) for _ in range(max(1, min(args.repeat, 3)))]
            if r_runs[0] is None:
                entry["lme4"] = "R not installed"
            elif all("seconds" in r for r in r_runs):
                entry["lme4_seconds"] = statistics.median(r["seconds"] for r in r_runs)
                entry["lme4_runs"] = r_runs
                entry["speedup_vs_lme4"] = entry["lme4_seconds"] / ours
            else:
                entry["lme4"] = r_runs
        results["cases"][name] = entry
        r_text = f", lme4 {entry['lme4_seconds']:.3f} s" if "lme4_seconds" in entry else ""
        print(f"{name}: mixedmodels {ours:.3f} s{r_text}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latest.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "latest.md").write_text(markdown(results))
    print(markdown(results))
    return 0


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        f"Benchmarks, {results['date']}: Python {m['python']}, {m['cpus']} CPUs, {m['platform']}",
        "",
        "| case | mixedmodels | lme4 | speed-up | target |",
        "|---|---|---|---|---|",
    ]
    for e in results["cases"].values():
        lme4 = f"{e['lme4_seconds']:.2f} s" if "lme4_seconds" in e else "—"
        speed = f"{e['speedup_vs_lme4']:.1f}x" if "speedup_vs_lme4" in e else "—"
        desc = e["description"].replace("|", "\\|")
        lines.append(
            f"| {desc} | {e['mixedmodels_seconds']:.2f} s | {lme4} | {speed} | {e['target']} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
