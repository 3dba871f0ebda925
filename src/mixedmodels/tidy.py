"""Every estimate of a fit in one tidy DataFrame (in the spirit of R's broom.mixed)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from mixedmodels.errors import ModelSpecError

__all__ = ["tidy"]

COLUMNS = [
    "effect",
    "group",
    "term",
    "estimate",
    "std_error",
    "statistic",
    "df",
    "p_value",
    "conf_low",
    "conf_high",
]
_EFFECTS = ("fixed", "ran_pars", "ran_vals")


def tidy(
    result: Any,
    effects: Sequence[str] | str = ("fixed", "ran_pars"),
    *,
    conf_int: bool = False,
    conf_level: float = 0.95,
    conf_method: str = "wald",
    ddf: str = "satterthwaite",
    **confint_options: Any,
) -> pd.DataFrame:
    """One row per estimate: effect, group, term, estimate, std_error, statistic, df, p_value
    (and level, for the random effects' values); with ``conf_int=True`` also conf_low and
    conf_high.

    Parameters
    ----------
    result
        A fitted linear or generalized linear mixed model.
    effects
        Which estimates: ``"fixed"`` (fixed effects, with their tests), ``"ran_pars"``
        (standard deviations and correlations of the random effects, and the residual
        standard deviation; terms ``sd__(Intercept)``, ``cor__(Intercept).Days``,
        ``sd__Observation``) and ``"ran_vals"`` (the conditional modes of each level, with
        their conditional standard deviations).
    conf_int
        Add confidence intervals.
    conf_level
        Their coverage.
    conf_method
        ``"wald"``: fixed effects with the t distribution on the table's df (normal where
        there are none), random-effect values as mode +/- z * conditional SD, none for the
        variance parameters (as lme4's Wald intervals); ``"profile"`` or ``"boot"``: from
        ``result.confint(method=...)`` for the fixed effects and the variance parameters.
    ddf
        Denominator degrees of freedom for the fixed effects of a linear mixed model
        (``"satterthwaite"``, ``"kenward-roger"`` or ``"none"``).
    **confint_options
        Passed to ``confint`` (e.g. ``nsim=`` and ``seed=`` for the bootstrap).
    """
    chosen = [effects] if isinstance(effects, str) else list(effects)
    bad = [e for e in chosen if e not in _EFFECTS]
    if bad:
        raise ModelSpecError(f"unknown effects {bad[0]!r}; choose from {list(_EFFECTS)}")
    if conf_method not in ("wald", "profile", "boot"):
        raise ModelSpecError("conf_method must be 'wald', 'profile' or 'boot'")
    if not 0 < conf_level < 1:
        raise ModelSpecError("conf_level must be between 0 and 1")
    intervals = None
    if conf_int and conf_method != "wald" and ({"fixed", "ran_pars"} & set(chosen)):
        intervals = result.confint(method=conf_method, level=conf_level, **confint_options)
    parts = []
    for effect in chosen:
        if effect == "fixed":
            parts.append(_fixed(result, ddf, conf_int, conf_level, intervals))
        elif effect == "ran_pars":
            parts.append(_ran_pars(result, conf_int, intervals))
        else:
            parts.append(_ran_vals(result, conf_int, conf_level))
    out = pd.concat(parts, ignore_index=True)
    columns = COLUMNS if "ran_vals" not in chosen else [*COLUMNS[:2], "level", *COLUMNS[2:]]
    if not conf_int:
        columns = [c for c in columns if c not in ("conf_low", "conf_high")]
    return out.reindex(columns=columns)


def _fixed(
    result: Any, ddf: str, conf_int: bool, level: float, intervals: pd.DataFrame | None
) -> pd.DataFrame:
    from mixedmodels.results_glmm import GlmerResult

    table = result.coef_table() if isinstance(result, GlmerResult) else result.coef_table(ddf)
    stat = next(c for c in table.columns if c in ("t value", "z value"))
    pcol = next((c for c in table.columns if c.startswith("Pr(")), None)
    df = table["df"].to_numpy(dtype=float) if "df" in table.columns else np.full(len(table), np.nan)
    out = pd.DataFrame(
        {
            "effect": "fixed",
            "group": None,
            "term": list(table.index),
            "estimate": table["Estimate"].to_numpy(dtype=float),
            "std_error": table["Std. Error"].to_numpy(dtype=float),
            "statistic": table[stat].to_numpy(dtype=float),
            "df": df,
            "p_value": table[pcol].to_numpy(dtype=float) if pcol else np.nan,
        }
    )
    if conf_int:
        if intervals is not None:
            ci = intervals.reindex(out["term"]).to_numpy(dtype=float)
            out["conf_low"], out["conf_high"] = ci[:, 0], ci[:, 1]
        else:
            q = np.where(
                np.isfinite(df),
                stats.t.ppf(0.5 + level / 2, np.where(np.isfinite(df), df, 1.0)),
                stats.norm.ppf(0.5 + level / 2),
            )
            out["conf_low"] = out["estimate"] - q * out["std_error"]
            out["conf_high"] = out["estimate"] + q * out["std_error"]
    return out


def _ran_pars(result: Any, conf_int: bool, intervals: pd.DataFrame | None) -> pd.DataFrame:
    vc = result.varcorr.to_frame()
    rows = []
    for _, r in vc.iterrows():
        grp, v1, v2 = r["grp"], r["var1"], r["var2"]
        if grp == "Residual":
            rows.append(("Residual", "sd__Observation", float(r["sdcor"]), "sigma"))
        elif v2 is None or (isinstance(v2, float) and np.isnan(v2)):
            rows.append((grp, f"sd__{v1}", float(r["sdcor"]), f"sd_{v1}|{grp}"))
        else:
            rows.append((grp, f"cor__{v1}.{v2}", float(r["sdcor"]), f"cor_{v2}.{v1}|{grp}"))
    out = pd.DataFrame(
        {
            "effect": "ran_pars",
            "group": [r[0] for r in rows],
            "term": [r[1] for r in rows],
            "estimate": [r[2] for r in rows],
            "std_error": np.nan,
            "statistic": np.nan,
            "df": np.nan,
            "p_value": np.nan,
        }
    )
    if conf_int:
        if intervals is not None:
            ci = intervals.reindex([r[3] for r in rows]).to_numpy(dtype=float)
            out["conf_low"], out["conf_high"] = ci[:, 0], ci[:, 1]
        else:
            out["conf_low"] = np.nan
            out["conf_high"] = np.nan
    return out


def _ran_vals(result: Any, conf_int: bool, level: float) -> pd.DataFrame:
    frame = result.ranef().to_frame(condsd=True)
    out = pd.DataFrame(
        {
            "effect": "ran_vals",
            "group": frame["grpvar"].to_numpy(),
            "level": frame["grp"].to_numpy(),
            "term": frame["term"].to_numpy(),
            "estimate": frame["condval"].to_numpy(dtype=float),
            "std_error": frame["condsd"].to_numpy(dtype=float),
            "statistic": np.nan,
            "df": np.nan,
            "p_value": np.nan,
        }
    )
    if conf_int:
        z = float(stats.norm.ppf(0.5 + level / 2))
        out["conf_low"] = out["estimate"] - z * out["std_error"]
        out["conf_high"] = out["estimate"] + z * out["std_error"]
    return out
