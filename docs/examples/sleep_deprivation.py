"""Per-subject trends: pooled regression, random-intercept, random-slope and random
intercept-and-slope models of reaction times under sleep deprivation.

The shipped ``sleepstudy`` data hold the reaction times of 18 subjects over ten days of
restricted sleep. The reaction time is standardized and modelled against the day

* with one line for everybody (``lm(y ~ Days)``), which gets the average trend but not the
  spread between subjects;
* with subject-specific intercepts, slopes, or both (``(1 | Subject)``,
  ``(0 + Days | Subject)``, ``(Days | Subject)``), compared by likelihood-ratio tests.

For the model with correlated random intercepts and slopes it computes what would otherwise be
read off plots: each subject's fitted line (and how it is shrunk compared with a separate
regression per subject), 94% prediction bands per subject and day, each subject's slope with
an interval (a forest plot as a table), and the prediction for a new subject, whose intercept
and slope follow the estimated bivariate normal distribution. A parametric bootstrap gives
intervals for the variance components.

Run it with ``python docs/examples/sleep_deprivation.py``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

import mixedmodels as mm

SIZES = {"full": {"nsim": 1000}, "small": {"nsim": 100}}

LEVEL = 0.94  # width of the per-subject bands


def section(title: str) -> None:
    print(f"\n{'=' * 8} {title} {'=' * max(4, 70 - len(title))}")


def load_data() -> pd.DataFrame:
    sleep = mm.datasets.load("sleepstudy").copy()
    sleep["y"] = (sleep["Reaction"] - sleep["Reaction"].mean()) / sleep["Reaction"].std()
    sleep.attrs["name"] = "sleepstudy"
    return sleep


def pooled_bands(fit: mm.LmResult, data: pd.DataFrame, level: float) -> pd.DataFrame:
    """Prediction intervals of the pooled regression: x'beta -+ t * sqrt(x'Vx + sigma^2)."""
    X = np.column_stack([np.ones(len(data)), data["Days"].to_numpy()])
    var_fit = np.einsum("ij,jk,ik->i", X, fit.vcov.to_numpy(), X)
    half = stats.t.ppf(0.5 + level / 2, fit.df_resid) * np.sqrt(var_fit + fit.sigma**2)
    mean = fit.predict(data).to_numpy()
    return pd.DataFrame({"fit": mean, "lower": mean - half, "upper": mean + half}, data.index)


def separate_lines(data: pd.DataFrame) -> pd.DataFrame:
    """Intercept and slope of a separate least-squares line for each subject (no pooling)."""
    rows = {}
    for subject, rows_s in data.groupby("Subject", observed=True):
        coef = mm.lm("y ~ Days", rows_s).coef
        rows[subject] = {"(Intercept)": coef["(Intercept)"], "Days": coef["Days"]}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("Subject")


def slope_forest(fit: mm.LmerResult, level: float = 0.95) -> pd.DataFrame:
    """Each subject's Days slope (fixed effect + conditional mode) with the conditional SD of
    its mode and a normal interval, sorted."""
    modes = fit.ranef().to_frame()
    slopes = modes[modes["term"] == "Days"].set_index("grp")
    z = stats.norm.ppf(0.5 + level / 2)
    out = pd.DataFrame(
        {
            "slope": fit.fixef["Days"] + slopes["condval"],
            "condsd": slopes["condsd"],
        }
    )
    out["lower"] = out["slope"] - z * out["condsd"]
    out["upper"] = out["slope"] + z * out["condsd"]
    return out.rename_axis("Subject").sort_values("slope")


def main(size: str = "full") -> dict:
    cfg = SIZES[size]
    sleep = load_data()

    section("One line for everybody")
    pooled = mm.lm("y ~ Days", sleep)
    print(pooled.summary())

    section("Random intercepts, random slopes, or both")
    formulas = {
        "random intercept": "y ~ Days + (1 | Subject)",
        "random slope": "y ~ Days + (0 + Days | Subject)",
        "both, correlated": "y ~ Days + (Days | Subject)",
    }
    ml_fits = {name: mm.lmer(f, sleep, reml=False) for name, f in formulas.items()}
    lrt_intercept = mm.anova(
        ml_fits["random intercept"],
        ml_fits["both, correlated"],
        names=["random intercept", "both"],
    )
    lrt_slope = mm.anova(
        ml_fits["random slope"], ml_fits["both, correlated"], names=["random slope", "both"]
    )
    print(lrt_intercept)
    print(lrt_slope)
    fit = mm.lmer(formulas["both, correlated"], sleep)
    random_tests = fit.ranova()
    print(random_tests)

    section("The model with correlated random intercepts and slopes")
    print(fit.summary())
    print(f"residual SD: pooled regression {pooled.sigma:.3f}, mixed model {fit.sigma:.3f}")

    section("Each subject's line: mixed model against separate regressions")
    lines = fit.coef()["Subject"]
    separate = separate_lines(sleep)
    comparison = lines.join(separate.add_suffix(" separate"))
    print(comparison.round(3).head(8))
    spread = pd.DataFrame(
        {"mixed model": lines.std(), "separate lines": separate.std()}
    ).rename_axis("SD across subjects")
    print()
    print(spread.round(4))

    section(f"{LEVEL:.0%} prediction bands by subject and day")
    bands = fit.predict(interval="prediction", level=LEVEL)
    bands = pd.concat([sleep[["Subject", "Days", "y"]], bands], axis=1)
    pooled_band = pooled_bands(pooled, sleep, LEVEL)
    coverage = pd.Series(
        {
            "mixed": ((sleep["y"] >= bands["lower"]) & (sleep["y"] <= bands["upper"])).mean(),
            "pooled": (
                (sleep["y"] >= pooled_band["lower"]) & (sleep["y"] <= pooled_band["upper"])
            ).mean(),
        }
    )
    width = pd.Series(
        {
            "mixed": (bands["upper"] - bands["lower"]).mean(),
            "pooled": (pooled_band["upper"] - pooled_band["lower"]).mean(),
        }
    )
    print(bands[bands["Subject"] == "308"].round(3).to_string(index=False))
    print("\ncoverage of the observed values and mean width of the bands:")
    print(pd.DataFrame({"coverage": coverage, "mean width": width}).round(3))

    section("Each subject's slope (a forest plot, as a table)")
    forest = slope_forest(fit)
    print(forest.round(3))

    section("A new subject")
    vc = fit.varcorr["Subject"]
    new_subject = pd.DataFrame({"Days": np.arange(10.0), "Subject": "new"})
    new_pred = fit.predict(new_subject, allow_new_levels=True, interval="prediction")
    print(pd.concat([new_subject, new_pred], axis=1).round(3).to_string(index=False))
    new_params = pd.DataFrame(
        {
            "mean": fit.fixef,
            "sd": vc.sd,
            "2.5 %": fit.fixef - 1.96 * vc.sd,
            "97.5 %": fit.fixef + 1.96 * vc.sd,
        }
    )
    print(f"\nintercept and slope of a new subject (normal, correlation {vc.corr[0, 1]:.3f}):")
    print(new_params.round(3))

    section(f"Parametric bootstrap ({cfg['nsim']} replicates) and profile intervals")
    boot = fit.bootstrap(cfg["nsim"], seed=1, progress=False)
    boot_ci = boot.confint()
    profile_ci = fit.confint()
    print(pd.concat({"bootstrap": boot_ci, "profile": profile_ci}, axis=1).round(3))

    # A Bayesian version of these models awaits the Bayesian backend.

    return {
        "pooled": pooled,
        "fit": fit,
        "ml_fits": ml_fits,
        "lrt_intercept": lrt_intercept,
        "lrt_slope": lrt_slope,
        "ranova": random_tests,
        "lines": lines,
        "separate_lines": separate,
        "bands": bands,
        "coverage": coverage,
        "band_width": width,
        "forest": forest,
        "new_subject": new_pred,
        "new_subject_params": new_params,
        "bootstrap_ci": boot_ci,
        "profile_ci": profile_ci,
    }


if __name__ == "__main__":
    main()
