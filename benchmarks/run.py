"""Benchmarks of mixedmodels with lme4 and the Python peers side by side, in one run.

Usage::

    python benchmarks/run.py                          # the main cases, every installed tool
    python benchmarks/run.py --cases sleepstudy insteval --repeat 5
    python benchmarks/run.py --group scaling          # the scaling series
    python benchmarks/run.py --group all --tools mixedmodels lme4

Every tool runs each case in its own process (so peak memory is its own), reads the same CSV
(``benchmarks/.data``, written once by ``benchmarks/cases.py``), fits once untimed (imports,
compiled kernels) and then ``--repeat`` times; the median is reported (the median of the rounds'
medians where tools run in turn in ``--rounds`` rounds). lme4 runs through
``Rscript benchmarks/r/fit_case.R``; the Python peers glmm, mixedlm and statsmodels each in its
own virtual environment (``bash benchmarks/peers/setup.sh`` creates them under
``benchmarks/.envs``). A tool that is not installed, cannot express the model, fails or runs
past the case's time limit is reported as such. Results: ``benchmarks/results/latest.json`` and
``latest.md`` (time, ratio to mixedmodels, log-likelihood difference from mixedmodels, peak
memory), with the machine.
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
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from cases import CASES, TOOLS, Case  # noqa: E402

DRIVERS = HERE / "drivers"


def _command(tool: str, spec: dict[str, Any], envs: Path) -> list[str] | str:
    """The command that runs ``tool`` on ``spec``, or a reason why it cannot run."""
    text = json.dumps(spec)
    if tool == "mixedmodels":
        return [sys.executable, str(DRIVERS / "ours.py"), text]
    if tool == "lme4":
        if shutil.which("Rscript") is None:
            return "R not installed"
        return ["Rscript", str(HERE / "r" / "fit_case.R"), text]
    python = envs / tool / "bin" / "python"
    if not python.exists():
        return f"not installed (bash benchmarks/peers/setup.sh {tool})"
    return [str(python), str(DRIVERS / "peer.py"), tool, text]


def run_tool(tool: str, case: Case, repeat: int, envs: Path) -> dict[str, Any]:
    spec = case.spec(repeat)
    cmd = _command(tool, spec, envs)
    if isinstance(cmd, str):
        return {"status": cmd}
    limit = case.tool_timeout.get(tool, case.timeout)
    env = dict(os.environ)
    env.setdefault("PYTHONHASHSEED", "0")
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=limit, env=env)
    except subprocess.TimeoutExpired:
        return {"status": f"timeout after {limit:.0f} s"}
    wall = time.perf_counter() - t0
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip().startswith("{")]
    if proc.returncode != 0 or not lines:
        err = (proc.stderr.strip().splitlines() or ["failed"])[-1]
        return {"status": f"failed: {err[:200]}"}
    out = json.loads(lines[-1])
    if "error" in out:
        return {"status": out["error"]}
    out["status"] = "ok"
    out["wall_seconds"] = wall
    return out


def machine() -> dict[str, Any]:
    import numpy as np

    info: dict[str, Any] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "numpy": np.__version__,
    }
    try:
        mem = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]
        info["memory_gib"] = round(int(mem) / 1024**2, 1)
    except OSError:
        pass
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="*", choices=list(CASES))
    parser.add_argument(
        "--group", default="main",
        choices=["main", "glmm", "scaling", "large", "bayes", "first", "all"],
        help="which cases when --cases is not given (default: main)",
    )  # fmt: skip
    parser.add_argument("--tools", nargs="*", default=list(TOOLS), choices=list(TOOLS))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--rounds", type=int, default=3,
        help="run the tools in turn this many times (tools whose fit takes under "
        f"{ROUND_SECONDS:.0f} s), reporting the median of the rounds' medians, so that a drift "
        "in the machine's speed does not favour one tool (default: 3)",
    )  # fmt: skip
    parser.add_argument("--envs", type=Path, default=HERE / ".envs", help="peer environments")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--name", default="latest", help="results file name (without suffix)")
    args = parser.parse_args(argv)

    names = args.cases or [
        n for n, c in CASES.items() if args.group == "all" or c.group == args.group
    ]
    results: dict[str, Any] = {
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d"),
        "command": " ".join(["python benchmarks/run.py", *(argv or sys.argv[1:])]),
        "cases": {},
    }
    for name in names:
        case = CASES[name]
        entry: dict[str, Any] = {"description": case.description, "target": case.target}
        for rnd in range(max(1, args.rounds)):
            for tool in args.tools:
                if tool not in case.tools:
                    continue
                if rnd > 0 and not _another_round(entry.get(tool)):
                    continue
                res = run_tool(tool, case, args.repeat, args.envs)
                if rnd == 0:
                    entry[tool] = res
                    if res.get("status") == "ok" and "seconds" in res:
                        res["round_seconds"] = [res["seconds"]]
                shown = f"{res['seconds']:.4g} s" if res.get("status") == "ok" else res["status"]
                if rnd > 0 and res.get("status") == "ok":
                    _merge_round(entry[tool], res)
                    shown += f" (median of the rounds so far {entry[tool]['seconds']:.4g} s)"
                if res.get("status") == "ok" and "ess_per_second" in res:
                    shown += f", ESS/s {res['ess_per_second']:.4g}"
                print(f"{name:22s} {tool:12s} round {rnd + 1}: {shown}", flush=True)
        _compare(entry)
        results["cases"][name] = entry
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / f"{args.name}.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / f"{args.name}.md").write_text(markdown(results))
    print(markdown(results))
    return 0


#: tools whose fit takes longer than this run one round only (a drift matters less, and the
#: rounds would take too long)
ROUND_SECONDS = 10.0


def _another_round(res: dict[str, Any] | None) -> bool:
    return (
        res is not None
        and res.get("status") == "ok"
        and "ess_per_second" not in res  # Bayesian cases: one round
        and "round_seconds" in res
        and float(res["seconds"]) < ROUND_SECONDS
    )


def _merge_round(res: dict[str, Any], new: dict[str, Any]) -> None:
    """Add a round's measurement: the times are pooled, the reported time is the median of the
    rounds' medians."""
    res["round_seconds"].append(new["seconds"])
    res["times"] = list(res.get("times", [])) + list(new.get("times", []))
    res["seconds"] = float(statistics.median(res["round_seconds"]))
    res["peak_rss_mb"] = max(res.get("peak_rss_mb", 0.0), new.get("peak_rss_mb", 0.0))
    res["wall_seconds"] = res.get("wall_seconds", 0.0) + new.get("wall_seconds", 0.0)


def _compare(entry: dict[str, Any]) -> None:
    """Ratios of each tool's time to ours and log-likelihood differences from ours."""
    ours = entry.get("mixedmodels", {})
    if ours.get("status") != "ok":
        return
    for tool, res in entry.items():
        if tool in ("description", "target", "mixedmodels") or not isinstance(res, dict):
            continue
        if res.get("status") != "ok":
            continue
        res["ratio_to_mixedmodels"] = res["seconds"] / ours["seconds"]
        if "loglik" in res and "loglik" in ours:
            res["loglik_minus_mixedmodels"] = res["loglik"] - ours["loglik"]


def _cell(res: dict[str, Any] | None, ours: bool = False) -> str:
    if res is None:
        return "—"
    if res.get("status") != "ok":
        return res["status"].split(":")[0]
    sec = res["seconds"]
    text = f"{sec * 1000:.2f} ms" if sec < 1 else f"{sec:.2f} s"
    if not ours and "ratio_to_mixedmodels" in res:
        text += f" ({res['ratio_to_mixedmodels']:.1f}x)"
    return text


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        f"Benchmarks, {results['date']}: {m.get('cpu', '?')}, {m['cpus']} CPUs, "
        f"{m.get('memory_gib', '?')} GiB, Python {m['python']}, {m['platform']}",
        f"Command: `{results['command']}`",
        "",
        "Median wall time of repeated fits (each tool in its own process, after one untimed fit;"
        f" tools whose fit takes under {ROUND_SECONDS:.0f} s ran in turn in several rounds, and"
        " the median of the rounds' medians is shown); in parentheses the time relative to"
        " mixedmodels.",
        "",
        "| case | mixedmodels | lme4 | glmm | mixedlm | statsmodels | target |",
        "|---|---|---|---|---|---|---|",
    ]
    notes = []
    bayes = {n: e for n, e in results["cases"].items() if _is_bayes(e)}
    for name, e in results["cases"].items():
        if name in bayes:
            continue
        desc = e["description"].replace("|", "\\|")
        cells = [_cell(e.get("mixedmodels"), ours=True)] + [
            _cell(e.get(t)) for t in ("lme4", "glmm", "mixedlm", "statsmodels")
        ]
        lines.append(f"| {desc} | " + " | ".join(cells) + f" | {e['target']} |")
        ours = e.get("mixedmodels", {})
        if ours.get("status") == "ok":
            extra = [f"peak memory {ours['peak_rss_mb']:.0f} MiB"]
            if "new_session_seconds" in ours:
                extra.append(
                    "the same in a new session (the compiled kernels loaded from the cache): "
                    f"{ours['new_session_seconds']:.2f} s"
                )
            if "evaluations" in ours:
                extra.append(f"{ours['evaluations']} evaluations")
            if ours.get("per_eval_ms") is not None:
                extra.append(
                    f"{ours['per_eval_ms']:.3g} ms per evaluation (objective and gradient)"
                )
            diffs = [
                f"{t} {e[t]['loglik_minus_mixedmodels']:+.2e}"
                for t in ("lme4", "glmm", "mixedlm", "statsmodels")
                if isinstance(e.get(t), dict) and "loglik_minus_mixedmodels" in e[t]
            ]
            if diffs:
                extra.append("logLik minus ours: " + ", ".join(diffs))
            notes.append(f"- `{name}`: " + "; ".join(extra))
    if bayes:
        if len(bayes) == len(results["cases"]):
            lines = lines[:3]
        lines += ["", *_bayes_table(bayes)]
    return "\n".join([*lines, "", *notes]) + "\n"


def _is_bayes(entry: dict[str, Any]) -> bool:
    return any(isinstance(r, dict) and "ess_per_second" in r for r in entry.values())


def _bayes_table(cases: dict[str, Any]) -> list[str]:
    """Bayesian cases: wall time of the first fit in a fresh process (compilation included) and
    of a second fit, the smallest bulk ESS over the fixed effects, residual and group-level
    standard deviations, ESS per second, and the ratio of ours to the peer's ESS per second."""
    lines = [
        "Bayesian fits: first fit in a fresh process (compilation included) and a second fit "
        "of a newly built model; ESS = smallest bulk effective sample size over the fixed "
        "effects and the standard deviations.",
        "",
        "| case | tool | first fit | ESS | ESS/s | second fit | ESS/s (second) | divergences "
        "| max R-hat | target |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for e in cases.values():
        desc = e["description"].replace("|", "\\|")
        ours = e.get("mixedmodels", {})
        for tool in TOOLS:
            res = e.get(tool)
            if not isinstance(res, dict):
                continue
            if res.get("status") != "ok":
                lines.append(f"| {desc} | {tool} | {res['status']} | | | | | | | |")
                continue
            ratio = ""
            if tool != "mixedmodels" and ours.get("status") == "ok":
                ratio = (
                    f" (ours {ours['ess_per_second'] / res['ess_per_second']:.1f}x; second "
                    f"{ours['warm_ess_per_second'] / res['warm_ess_per_second']:.1f}x)"
                )
            lines.append(
                f"| {desc} | {tool} | {res['seconds']:.1f} s | {res['ess_bulk_min']:.0f} "
                f"| {res['ess_per_second']:.0f}{ratio} | {res['warm_seconds']:.1f} s "
                f"| {res['warm_ess_per_second']:.0f} | {res['divergences']} "
                f"| {res['rhat_max']:.3f} | {e['target']} |"
            )
    return lines


if __name__ == "__main__":
    sys.exit(main())
