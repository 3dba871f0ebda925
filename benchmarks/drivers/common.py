"""Helpers shared by the drivers (run inside each tool's own Python)."""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any


def peak_rss_mb() -> float:
    """Peak resident memory of this process (VmHWM), in MiB."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def read_spec() -> dict[str, Any]:
    return json.loads(sys.argv[1])


def read_data(spec: dict[str, Any]) -> Any:
    import pandas as pd

    dtypes = {f: "string" for f in spec["factors"]}
    df = pd.read_csv(spec["data"], dtype=dtypes)
    for f in spec["factors"]:
        df[f] = df[f].astype("category")
    return df


#: a first fit slower than this is the measurement (no repetitions): set-up costs are then
#: negligible, and repeating a fit of many minutes would make the run impractical
SLOW_SECONDS = 60.0


def warm_then_timed(run: Callable[[], Any], repeat: int) -> tuple[list[float], Any]:
    """One untimed run (imports, compilation, caches), then ``repeat`` timed runs; if the first
    run took longer than :data:`SLOW_SECONDS`, its time is the single measurement."""
    t0 = time.perf_counter()
    out = run()
    first = time.perf_counter() - t0
    if first > SLOW_SECONDS:
        return [first], out
    return timed(run, repeat)


def timed(run: Callable[[], Any], repeat: int) -> tuple[list[float], Any]:
    """At least ``repeat`` timed runs; quick runs (a median under 50 ms) go on for at least a
    second, up to 200 runs, so that the median of a millisecond fit is not three samples'."""
    times: list[float] = []
    out = None
    start = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        out = run()
        times.append(time.perf_counter() - t0)
        if len(times) >= 200 or (
            len(times) >= repeat
            and (time.perf_counter() - start >= 1.0 or statistics.median(times) > 0.05)
        ):
            return times, out


def report(times: list[float], **extra: Any) -> None:
    result = {
        "seconds": statistics.median(times),
        "times": times,
        "peak_rss_mb": peak_rss_mb(),
        **extra,
    }
    print(json.dumps(result, default=float))


def bayes_summary(idata: Any, variables: list[str]) -> dict[str, Any]:
    """Bulk ESS (minimum over ``variables``, every element), the largest R-hat and the number
    of divergences of a posterior sample."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import arviz as az

        ess = az.ess(idata, var_names=variables, method="bulk")
        rhat = az.rhat(idata, var_names=variables)
    ess_min = min(float(ess[v].min()) for v in variables)
    rhat_max = max(float(rhat[v].max()) for v in variables)
    div = int(idata.sample_stats["diverging"].values.sum())
    return {"ess_bulk_min": ess_min, "rhat_max": rhat_max, "divergences": div}


def report_bayes(
    cold: float, warm: float, first: dict[str, Any], second: dict[str, Any], **extra: Any
) -> None:
    """One JSON line for a Bayesian case: the first fit in a fresh process (compilation
    included) and a second fit of a freshly built model in the same process."""
    print(json.dumps({
        "seconds": cold,
        "warm_seconds": warm,
        "ess_bulk_min": first["ess_bulk_min"],
        "ess_per_second": first["ess_bulk_min"] / cold,
        "warm_ess_bulk_min": second["ess_bulk_min"],
        "warm_ess_per_second": second["ess_bulk_min"] / warm,
        "rhat_max": max(first["rhat_max"], second["rhat_max"]),
        "divergences": first["divergences"] + second["divergences"],
        "peak_rss_mb": peak_rss_mb(),
        **extra,
    }, default=float))  # fmt: skip
