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
    times = []
    out = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = run()
        times.append(time.perf_counter() - t0)
    return times, out


def report(times: list[float], **extra: Any) -> None:
    result = {
        "seconds": statistics.median(times),
        "times": times,
        "peak_rss_mb": peak_rss_mb(),
        **extra,
    }
    print(json.dumps(result, default=float))
