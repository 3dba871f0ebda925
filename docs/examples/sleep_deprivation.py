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

The last part repeats the analysis the Bayesian way with ``mm.bayes`` (NUTS in NumPyro, the
``bayes`` extra), as the PyMC analysis it follows did: a Bayesian regression ``y ~ Days``
against ``y ~ Days + (Days | Subject)`` with an LKJ prior on the correlation of the subjects'
intercepts and slopes, the posterior summary next to the REML estimates, 94% posterior
predictive bands for every subject and day, each subject's slope (a forest plot, as a table),
a new subject's predicted trajectory with a 95% band, and the posterior predictive
distribution of a new subject's intercept and slope.

Run it with ``python docs/examples/sleep_deprivation.py`` (``--small`` for fewer bootstrap
replicates and posterior draws; ``--plots DIR`` also saves the Bayesian figures, with the
``plot`` extra).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

import mixedmodels as mm

# bootstrap replicates (and worker processes), and the NUTS settings of the Bayesian fits
# (draws and warm-up steps per chain)
SIZES = {
    "full": {"nsim": 1000, "n_jobs": None, "draws": 1000, "tune": 1000, "chains": 4},
    "small": {"nsim": 100, "n_jobs": 1, "draws": 300, "tune": 300, "chains": 2},
}

LEVEL = 0.94  # width of the per-subject bands
NEW_LEVEL = 0.95  # width of the band of a new subject
SEED = 20241220


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


# -- the Bayesian version ------------------------------------------------------------------------


def posterior_draws(bfit) -> pd.DataFrame:
    """The posterior draws of every parameter but the group-level effects, one column each
    (named as in ``bfit.summary()``: ``beta[Days]``, ``sd_Subject[(Intercept)]``, ...)."""
    post = bfit.idata.posterior
    columns = {}
    for var in post.data_vars:
        if var.startswith("b_"):
            continue
        da = post[var]
        inner = [d for d in da.dims if d not in ("chain", "draw")]
        if not inner:
            columns[var] = da.values.reshape(-1)
        for dim in inner:
            for label in da[dim].values:
                columns[f"{var}[{label}]"] = da.sel({dim: label}).values.reshape(-1)
    return pd.DataFrame(columns)


def reml_estimates(fit) -> tuple[pd.Series, pd.Series]:
    """REML estimates (and the fixed effects' standard errors) under the Bayesian names."""
    est = {f"beta[{k}]": v for k, v in fit.fixef.items()}
    se = {f"beta[{k}]": v for k, v in fit.std_errors.items()}
    for term in fit.varcorr:
        for name, sd in zip(term.names, term.sd, strict=True):
            est[f"sd_{term.group}[{name}]"] = sd
        for i in range(len(term.names)):
            for k in range(i):
                est[f"corr_{term.group}[{term.names[k]}:{term.names[i]}]"] = term.corr[i, k]
    est["sigma"] = fit.sigma
    return pd.Series(est), pd.Series(se)


def posterior_vs_reml(bfit, fit) -> pd.DataFrame:
    """Posterior mean, SD and central 94% interval of each parameter next to the frequentist
    estimate (REML, or least squares for ``lm``), and their distance in posterior SDs."""
    draws = posterior_draws(bfit)
    if isinstance(fit, mm.LmResult):
        est = pd.Series({f"beta[{k}]": v for k, v in fit.coef.items()} | {"sigma": fit.sigma})
        se = pd.Series({f"beta[{k}]": v for k, v in fit.std_errors.items()})
    else:
        est, se = reml_estimates(fit)
    out = pd.DataFrame(
        {
            "estimate": est.reindex(draws.columns),
            "SE": se.reindex(draws.columns),
            "post. mean": draws.mean(),
            "post. sd": draws.std(),
            "3%": draws.quantile(0.03),
            "97%": draws.quantile(0.97),
        }
    )
    out["(mean - est.) / sd"] = (out["post. mean"] - out["estimate"]) / out["post. sd"]
    return out


def predictive_bands(bfit, data: pd.DataFrame, level: float, seed: int) -> pd.DataFrame:
    """Posterior predictive mean and central ``level`` band of every observed row: the
    replicated responses of ``bfit.posterior_predictive`` (one per posterior draw)."""
    idata = bfit.posterior_predictive(seed=seed)
    yrep = idata.posterior_predictive["y"].values
    yrep = yrep.reshape(-1, yrep.shape[-1])
    rows = data.loc[bfit.model.design.row_index, ["Subject", "Days", "y"]]
    return rows.assign(
        mean=yrep.mean(axis=0),
        lower=np.quantile(yrep, (1 - level) / 2, axis=0),
        upper=np.quantile(yrep, (1 + level) / 2, axis=0),
    )


def band_summary(bands: dict[str, pd.DataFrame], y: pd.Series) -> pd.DataFrame:
    """Coverage of the observed values and mean width of several sets of bands."""
    return pd.DataFrame(
        {
            name: {
                "coverage": ((y >= b["lower"]) & (y <= b["upper"])).mean(),
                "mean width": (b["upper"] - b["lower"]).mean(),
            }
            for name, b in bands.items()
        }
    ).T


def bayes_slope_forest(bfit, level: float = 0.94) -> pd.DataFrame:
    """Each subject's Days slope, beta[Days] + b_Subject[subject, Days], draw by draw: the
    posterior mean, SD and central ``level`` interval (what ``az.plot_forest`` draws)."""
    post = bfit.idata.posterior
    slopes = post["beta"].sel(coef="Days") + post["b_Subject"].sel(Subject_effect="Days")
    draws = slopes.stack(sample=("chain", "draw")).transpose("Subject", "sample").values
    out = pd.DataFrame(
        {
            "slope": draws.mean(axis=1),
            "sd": draws.std(axis=1, ddof=1),
            "lower": np.quantile(draws, (1 - level) / 2, axis=1),
            "upper": np.quantile(draws, (1 + level) / 2, axis=1),
        },
        index=pd.Index(post["Subject"].values, name="Subject"),
    )
    return out.sort_values("slope")


def new_subject_line(bfit, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Draws of a new subject's intercept and slope, computed two ways.

    1. With ``predict``: for a level not in the data, ``predict`` draws the level's effects
       from N(0, Sigma) of each posterior draw, once per draw for all the level's rows. With
       ``kind="link"`` (no residual noise) the prediction at Days = 0 is then the new
       subject's intercept, beta_0 + b_0, and the change from Days 0 to 1 its slope,
       beta_1 + b_1.
    2. By hand from the posterior draws: (intercept, slope) = beta + L eps, with eps ~ N(0, I)
       and L the Cholesky factor of Sigma = diag(sd) C diag(sd) (C the correlation matrix):
       L = [[sd_0, 0], [r sd_1, sqrt(1 - r^2) sd_1]].

    Both are draws from the posterior predictive distribution of a new subject's line: they
    carry the uncertainty of beta, the SDs and the correlation, which plugging the REML
    estimates into N(beta, Sigma) leaves out.
    """
    two_days = pd.DataFrame({"Days": [0.0, 1.0], "Subject": "new"})
    eta = bfit.predict(two_days, kind="link", seed=seed).values.reshape(-1, 2)
    by_predict = pd.DataFrame({"(Intercept)": eta[:, 0], "Days": eta[:, 1] - eta[:, 0]})

    post = bfit.idata.posterior
    beta = post["beta"].values.reshape(-1, 2)
    sd = post["sd_Subject"].values.reshape(-1, 2)
    r = post["corr_Subject"].values.reshape(-1)
    eps = np.random.default_rng(seed + 1).standard_normal(beta.shape)  # independent of 1.
    by_hand = pd.DataFrame(
        {
            "(Intercept)": beta[:, 0] + sd[:, 0] * eps[:, 0],
            "Days": beta[:, 1] + sd[:, 1] * (r * eps[:, 0] + np.sqrt(1 - r**2) * eps[:, 1]),
        }
    )
    return by_predict, by_hand


def describe_line(draws: pd.DataFrame) -> pd.Series:
    return pd.Series(
        {
            "intercept mean": draws["(Intercept)"].mean(),
            "intercept sd": draws["(Intercept)"].std(),
            "slope mean": draws["Days"].mean(),
            "slope sd": draws["Days"].std(),
            "correlation": draws["(Intercept)"].corr(draws["Days"]),
        }
    )


def save_bayes_plots(bfit, directory: str) -> list[str]:
    """The figures of the PyMC analysis: trace plots, posterior predictive bands per subject
    and a forest plot of the subjects' slope deviations (needs matplotlib)."""
    import os

    import arviz as az
    import matplotlib.pyplot as plt

    os.makedirs(directory, exist_ok=True)
    paths = []
    fig = bfit.plot_predictive("Days", group="Subject", ncols=6)
    paths.append(os.path.join(directory, "sleep_bayes_bands.png"))
    fig.savefig(paths[-1], dpi=120)
    az.plot_trace(bfit.idata, var_names=["beta", "sd_Subject", "corr_Subject", "sigma"])
    paths.append(os.path.join(directory, "sleep_bayes_trace.png"))
    plt.gcf().tight_layout()
    plt.gcf().savefig(paths[-1], dpi=100)
    az.plot_forest(
        bfit.idata, var_names="b_Subject", coords={"Subject_effect": ["Days"]}, combined=True
    )
    paths.append(os.path.join(directory, "sleep_bayes_forest.png"))
    plt.gcf().tight_layout()
    plt.gcf().savefig(paths[-1], dpi=100)
    plt.close("all")
    return paths


def bayesian_analysis(
    sleep: pd.DataFrame,
    cfg: dict,
    pooled: mm.LmResult,
    fit: mm.LmerResult,
    freq_bands: dict[str, pd.DataFrame],
    new_pred: pd.DataFrame,
    plots: str | None = None,
) -> dict:
    sampling = {k: cfg[k] for k in ("draws", "tune", "chains")}

    section("Bayesian: one line for everybody")
    pooled_model = mm.bayes("y ~ Days", sleep)
    print(pooled_model)  # the formula and the priors, scaled to the data
    pooled_bayes = pooled_model.fit(**sampling, seed=SEED, progress=False)
    print(pooled_bayes.summary())

    section("Bayesian: correlated random intercepts and slopes")
    # The subjects' (intercept, slope) are N(0, Sigma) with Sigma = diag(sd) C diag(sd), a
    # half Student-t prior on each SD and LKJ(2) on the correlation matrix C. The random
    # effects are integrated out of the likelihood exactly, so NUTS samples six parameters;
    # b_Subject is drawn afterwards from its Gaussian conditional distribution.
    model = mm.bayes("y ~ Days + (Days | Subject)", sleep)
    print(model)
    bfit = model.fit(**sampling, seed=SEED, progress=False)
    print(bfit.summary())
    comparison = posterior_vs_reml(bfit, fit)
    pooled_comparison = posterior_vs_reml(pooled_bayes, pooled)
    print("\nposterior against REML (mixed model) and least squares (pooled regression):")
    print(pd.concat({"mixed": comparison, "pooled": pooled_comparison}).round(3).to_string())

    section(f"Bayesian: {LEVEL:.0%} posterior predictive bands by subject and day")
    bands = predictive_bands(bfit, sleep, LEVEL, seed=SEED + 1)
    pooled_bands_b = predictive_bands(pooled_bayes, sleep, LEVEL, seed=SEED + 1)
    print(bands[bands["Subject"] == "308"].round(3).to_string(index=False))
    band_table = band_summary(
        {"Bayesian mixed": bands, "Bayesian pooled": pooled_bands_b} | freq_bands, sleep["y"]
    )
    print("\ncoverage of the observed values and mean width of the bands:")
    print(band_table.round(3))

    section("Bayesian: each subject's slope (a forest plot, as a table)")
    forest = bayes_slope_forest(bfit)
    reml_forest = slope_forest(fit)
    forest = forest.join(reml_forest[["slope", "condsd"]].add_prefix("REML "))
    print(forest.round(3))

    section("Bayesian: a new subject")
    new_subject = pd.DataFrame({"Days": np.arange(10.0), "Subject": "new"})
    y_new = bfit.predict(new_subject, kind="response", seed=SEED + 2)
    y_new = y_new.values.reshape(-1, len(new_subject))
    lo, hi = (1 - NEW_LEVEL) / 2, (1 + NEW_LEVEL) / 2
    trajectory = new_subject[["Days"]].assign(
        mean=y_new.mean(axis=0),
        lower=np.quantile(y_new, lo, axis=0),
        upper=np.quantile(y_new, hi, axis=0),
    )
    # the same level of band for the observed subjects, from the posterior predictive draws
    observed95 = predictive_bands(bfit, sleep, NEW_LEVEL, seed=SEED + 1)
    observed_width = (observed95["upper"] - observed95["lower"]).groupby(observed95["Days"])
    trajectory["width"] = trajectory["upper"] - trajectory["lower"]
    trajectory["widest observed subject"] = observed_width.max().to_numpy()
    trajectory["REML width"] = (new_pred["upper"] - new_pred["lower"]).to_numpy()
    print(f"{NEW_LEVEL:.0%} band of a new subject's reaction times, and the widest band of a")
    print("subject in the data on the same day:")
    print(trajectory.round(3).to_string(index=False))

    by_predict, by_hand = new_subject_line(bfit, seed=SEED + 3)
    vc = fit.varcorr["Subject"]
    new_line = pd.DataFrame(
        {
            "posterior, via predict": describe_line(by_predict),
            "posterior, beta + L eps": describe_line(by_hand),
            "REML plug-in": [
                fit.fixef.iloc[0],
                vc.sd[0],
                fit.fixef.iloc[1],
                vc.sd[1],
                vc.corr[0, 1],
            ],
        }
    )
    print("\na new subject's intercept and slope:")
    print(new_line.round(3))

    figures = save_bayes_plots(bfit, plots) if plots else []
    for path in figures:
        print(f"saved {path}")

    return {
        "bayes_pooled": pooled_bayes,
        "bayes_fit": bfit,
        "bayes_comparison": comparison,
        "bayes_pooled_comparison": pooled_comparison,
        "bayes_bands": bands,
        "bayes_band_summary": band_table,
        "bayes_forest": forest,
        "bayes_new_subject": trajectory,
        "bayes_new_line": new_line,
        "bayes_new_line_draws": by_predict,
        "bayes_figures": figures,
    }


def main(size: str = "full", plots: str | None = None) -> dict:
    """Run the analysis; ``plots``: a directory to save the Bayesian figures in."""
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
    # the small run's 100 replicates take a fraction of a second: no worker processes
    boot = fit.bootstrap(cfg["nsim"], seed=1, progress=False, n_jobs=cfg["n_jobs"])
    boot_ci = boot.confint()
    profile_ci = fit.confint()
    print(pd.concat({"bootstrap": boot_ci, "profile": profile_ci}, axis=1).round(3))

    try:
        bayes_results = bayesian_analysis(
            sleep,
            cfg,
            pooled,
            fit,
            {"REML mixed": bands, "least-squares pooled": pooled_band},
            new_pred,
            plots,
        )
    except mm.MissingExtraError as err:  # NumPyro, JAX or ArviZ not installed
        print(f"\nBayesian models skipped: {err}")
        bayes_results = {}

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
    } | bayes_results


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="fewer replicates and draws")
    parser.add_argument("--plots", metavar="DIR", help="save the Bayesian figures in DIR")
    args = parser.parse_args()
    main("small" if args.small else "full", plots=args.plots)
