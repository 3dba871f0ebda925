"""Time a Python peer on a benchmark case, inside the peer's own virtual environment:
``python peer.py TOOL SPEC_JSON`` prints one JSON line (or ``{"error": ...}``)."""

from __future__ import annotations

import json
import os
import re
import sys
import warnings

sys.path.insert(0, os.path.dirname(__file__))

from common import bayes_summary, read_data, report, report_bayes, timed, warm_then_timed


def _glmm(spec: dict, df: object) -> None:
    import glmm

    data = {}
    for col in df.columns:  # type: ignore[attr-defined]
        s = df[col]  # type: ignore[index]
        if col in spec["factors"] or s.dtype.kind not in "biuf":
            data[col] = s.astype(str).to_numpy()
        else:
            data[col] = s.to_numpy(float)
    formula = spec["formula"]
    family = spec["family"]
    m = re.match(r"cbind\((\w+), (\w+) - (\w+)\)", formula)
    if m:  # cbind(s, n - s): glmm takes successes and failures as columns
        data["_failures"] = data[m.group(2)] - data[m.group(3)]
        formula = formula.replace(m.group(0), f"cbind({m.group(1)}, _failures)")
    if family == "binomial" and "r2" in data and data["r2"].dtype.kind in "UO":
        data["r2"] = (data["r2"] == "Y").astype(float)
    kwargs = {"satterthwaite": False} if family == "gaussian" else {}
    if family == "gaussian":
        kwargs["reml"] = spec["reml"]

    def fit() -> object:
        return glmm.fit(data, formula, family=family, **kwargs)

    times, res = warm_then_timed(fit, spec["repeat"])
    report(
        times,
        loglik=float(res.loglik),
        evaluations=int(getattr(res, "n_eval", 0) or 0),
        converged=bool(res.diagnostics.get("converged", True)),
    )


def _mixedlm(spec: dict, df: object) -> None:
    import mixedlm

    formula = spec["formula"]
    family = spec["family"]
    if family == "binomial" and "r2" in df.columns:  # type: ignore[attr-defined]
        df["r2"] = (df["r2"] == "Y").astype(float)  # type: ignore[index]
    m = re.match(r"cbind\((\w+), (\w+) - (\w+)\)", formula)
    if m:  # mixedlm's parser takes plain columns in cbind()
        df["failures"] = df[m.group(2)] - df[m.group(3)]  # type: ignore[index]
        formula = formula.replace(m.group(0), f"cbind({m.group(1)}, failures)")

    def fit() -> object:
        if family == "gaussian":
            return mixedlm.lmer(formula, df, REML=spec["reml"])
        return mixedlm.glmer(formula, df, family=mixedlm.families.Binomial(), nAGQ=spec["nagq"])

    if spec["mode"] == "bootstrap":
        model = fit()
        times, _ = timed(lambda: mixedlm.bootMer(model, nsim=spec["nsim"], seed=1), spec["repeat"])
        report(times, nsim=spec["nsim"])
        return
    times, res = warm_then_timed(fit, spec["repeat"])
    ll = res.logLik() if callable(getattr(res, "logLik", None)) else res.loglik
    report(times, loglik=float(getattr(ll, "value", ll)))


def _statsmodels(spec: dict, df: object) -> None:
    import numpy as np
    import statsmodels.formula.api as smf

    how = spec["statsmodels"]
    if how is None:
        print(json.dumps({"error": "statsmodels' MixedLM cannot express this model"}))
        return
    fixed = spec["formula"].split("+ (")[0].strip()
    if "groups" in how:
        model = smf.mixedlm(fixed, df, groups=df[how["groups"]], re_formula=how["re_formula"])  # type: ignore[index]
    else:
        df["_one"] = np.ones(len(df))  # type: ignore[index,arg-type]
        vc = {v: f"0 + C({v})" for v in how["vc"]}
        model = smf.mixedlm(fixed, df, groups="_one", vc_formula=vc, re_formula="0")

    def fit() -> object:
        return model.fit(reml=spec["reml"])

    times, res = warm_then_timed(fit, spec["repeat"])
    report(times, loglik=float(res.llf))


def _bambi(spec: dict, df: object) -> None:
    """Bambi on PyMC with NumPyro's NUTS (as the seed analyses run it): the first fit in this
    fresh process, then a second fit of a newly built model; same draws, tuning and chains."""
    import time

    import bambi as bmb

    out = []
    for seed in (1, 2):
        t0 = time.perf_counter()
        model = bmb.Model(spec["formula"], df)
        idata = model.fit(
            draws=spec["draws"], tune=spec["draws"], chains=spec["chains"], random_seed=seed,
            inference_method="numpyro", target_accept=0.8, progressbar=False,
        )  # fmt: skip
        elapsed = time.perf_counter() - t0
        # the fixed effects, the residual sd and the group-level sds (not the offsets)
        names = [v for v in idata.posterior.data_vars
                 if "|" not in v or v.endswith("_sigma")]  # fmt: skip
        out.append((elapsed, bayes_summary(idata, names), idata))
    post = out[0][2].posterior
    fixef = {v: float(post[v].mean()) for v in post.data_vars if "|" not in v and v != "sigma"
             and post[v].ndim == 2}  # fmt: skip
    report_bayes(out[0][0], out[1][0], out[0][1], out[1][1], fixef=fixef)


def main() -> None:
    tool = sys.argv[1]
    spec = json.loads(sys.argv[2])
    sys.argv = [sys.argv[0], sys.argv[2]]
    warnings.simplefilter("ignore")
    df = read_data(spec)
    {"glmm": _glmm, "mixedlm": _mixedlm, "statsmodels": _statsmodels, "bambi": _bambi}[tool](
        spec, df
    )


if __name__ == "__main__":
    main()
