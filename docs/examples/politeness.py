"""A crossed design: subjects by scenarios, with a polite and an informal attitude.

Voice pitch (``frequency``) is simulated for six speakers (three female, three male), each
speaking in seven scenarios with an informal and a polite attitude; one measurement is
missing. Subjects and scenarios are crossed random factors, gender varies between subjects and
attitude within subjects and scenarios. The script fits

* fixed-effects models: ``frequency ~ gender + attitude``, the same without an intercept
  (``0 + attitude + gender``: other coefficients, the same fitted values) and with the
  interaction ``gender * attitude``;
* mixed models of growing random structure: ``(1 | subject)``, ``(attitude | subject)`` and
  ``(attitude | subject) + (attitude | scenario)``, with their variance components, singular-fit
  checks and likelihood-ratio tests of the random slopes (``ranova``, ``mm.anova``);
* tests of the attitude effect (Satterthwaite and Kenward-Roger t-tests, a likelihood-ratio
  test) under the random-intercept and the maximal random structure;
* a simulation with no attitude effect at all, in which subjects and scenarios do differ in
  their attitude effect: a random-intercept-only model rejects the true null hypothesis far
  more often than the nominal 5%, the maximal model much less often. This is the reason to
  keep the random structure as rich as the design allows.

The last part fits the sequence of models of the Bambi analysis it follows, the Bayesian way
with ``mm.bayes`` (NUTS in NumPyro, the ``bayes`` extra): each model is printed with its
automatic priors, as Bambi prints its models, sampled, summarized, and compared with the
``lm`` / ``lmer`` estimates. Unlike Bambi, ``mm.bayes`` reads ``(attitude | subject)`` as lme4
does: correlated subject intercepts and attitude slopes, with an LKJ prior on the
correlation.

Run it with ``python docs/examples/politeness.py`` (``--small`` for fewer simulations and
posterior draws; ``--plots DIR`` also saves trace plots, with the ``plot`` extra).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

import mixedmodels as mm

SUBJECTS = {"F1": "F", "F2": "F", "F3": "F", "M1": "M", "M2": "M", "M3": "M"}
SCENARIOS = range(1, 8)
ATTITUDES = ("inf", "pol")

TRUE = {
    "intercept": 257.0,  # female speaker, informal attitude (Hz)
    "genderM": -110.0,
    "attitudepol": -20.0,
    "sd_subject": 25.0,
    "sd_subject_attitude": 8.0,
    "sd_scenario": 15.0,
    "sd_scenario_attitude": 8.0,
    "sigma": 25.0,
}

# simulated data sets of the type I error study, and the NUTS settings of the Bayesian fits
# (those of the Bambi analysis at full size: 4 chains of 2000 draws after 2000 warm-up steps,
# target_accept=0.95)
SIZES = {
    "full": {"nsim": 500, "draws": 2000, "tune": 2000, "chains": 4},
    "small": {"nsim": 40, "draws": 300, "tune": 300, "chains": 2},
}
SEED = 42

INTERCEPTS = "(1 | subject) + (1 | scenario)"
MAXIMAL = "(attitude | subject) + (attitude | scenario)"


def section(title: str) -> None:
    print(f"\n{'=' * 8} {title} {'=' * max(4, 70 - len(title))}")


def make_design() -> pd.DataFrame:
    rows = [
        (subject, gender, scenario, attitude)
        for subject, gender in SUBJECTS.items()
        for scenario in SCENARIOS
        for attitude in ATTITUDES
    ]
    return pd.DataFrame(rows, columns=["subject", "gender", "scenario", "attitude"])


def simulate_pitch(design: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """Draw the random intercepts and attitude slopes of subjects and scenarios, then the
    measurements; one value is set missing."""

    def draw(levels, sd_int: float, sd_slope: float) -> tuple[dict, dict]:
        levels = list(levels)
        ints = rng.normal(0.0, sd_int, len(levels))
        slopes = rng.normal(0.0, sd_slope, len(levels))
        return dict(zip(levels, ints, strict=True)), dict(zip(levels, slopes, strict=True))

    subj_int, subj_slope = draw(SUBJECTS, TRUE["sd_subject"], TRUE["sd_subject_attitude"])
    scen_int, scen_slope = draw(SCENARIOS, TRUE["sd_scenario"], TRUE["sd_scenario_attitude"])
    polite = (design["attitude"] == "pol").to_numpy()
    frequency = (
        TRUE["intercept"]
        + TRUE["genderM"] * (design["gender"] == "M").to_numpy()
        + design["subject"].map(subj_int).to_numpy()
        + design["scenario"].map(scen_int).to_numpy()
        + polite
        * (
            TRUE["attitudepol"]
            + design["subject"].map(subj_slope).to_numpy()
            + design["scenario"].map(scen_slope).to_numpy()
        )
        + rng.normal(0.0, TRUE["sigma"], len(design))
    )
    data = design.assign(frequency=frequency)
    data.loc[rng.integers(len(data)), "frequency"] = np.nan
    data.attrs["name"] = "politeness"
    return data


def attitude_tests(data: pd.DataFrame) -> pd.DataFrame:
    """The attitude effect under the two random structures: estimate, standard error and
    p-values from Satterthwaite and Kenward-Roger t-tests and from a likelihood-ratio test."""
    rows = {}
    for label, random in (("random intercepts", INTERCEPTS), ("maximal", MAXIMAL)):
        fit = mm.lmer(f"frequency ~ gender + attitude + {random}", data, warn=False)
        sat = fit.coef_table("satterthwaite").loc["attitudepol"]
        kr = fit.coef_table("kenward-roger").loc["attitudepol"]
        null = mm.lmer(f"frequency ~ gender + {random}", data, reml=False, warn=False)
        alt = mm.lmer(f"frequency ~ gender + attitude + {random}", data, reml=False, warn=False)
        lrt = mm.anova(null, alt)
        rows[label] = {
            "estimate": sat["Estimate"],
            "SE": sat["Std. Error"],
            "df (Satterthwaite)": sat["df"],
            "p (Satterthwaite)": sat["Pr(>|t|)"],
            "p (Kenward-Roger)": kr["Pr(>|t|)"],
            "p (LRT)": lrt["Pr(>Chisq)"].iloc[1],
        }
    return pd.DataFrame.from_dict(rows, orient="index")


def type_one_error(design: pd.DataFrame, nsim: int, seed: int) -> pd.DataFrame:
    """Simulate ``nsim`` data sets with no attitude effect (but random attitude slopes) and
    test attitude by a likelihood-ratio test under each random structure."""
    sigma = TRUE["sigma"]
    # theta: the random effects' Cholesky factors relative to sigma, named as in a fit;
    # independent intercepts and slopes here
    theta = {
        "scenario.(Intercept)": TRUE["sd_scenario"] / sigma,
        "scenario.attitudepol.(Intercept)": 0.0,
        "scenario.attitudepol": TRUE["sd_scenario_attitude"] / sigma,
        "subject.(Intercept)": TRUE["sd_subject"] / sigma,
        "subject.attitudepol.(Intercept)": 0.0,
        "subject.attitudepol": TRUE["sd_subject_attitude"] / sigma,
    }
    sims = mm.simulate(
        f"~ gender + attitude + {MAXIMAL}",
        design,
        beta={"(Intercept)": TRUE["intercept"], "genderM": TRUE["genderM"], "attitudepol": 0.0},
        theta=theta,
        sigma=sigma,
        nsim=nsim,
        seed=seed,
    )
    # Build each model once and refit it to every simulated response.
    template = design.assign(frequency=sims.iloc[:, 0])
    models = {
        label: [
            mm.LinearMixedModel.from_formula(
                f"frequency ~ {fixed} + {random}", template, reml=False
            )
            for fixed in ("gender", "gender + attitude")
        ]
        for label, random in (("random intercepts", INTERCEPTS), ("maximal", MAXIMAL))
    }
    rows = []
    for column in sims:
        y = sims[column].to_numpy()
        row = {}
        for label, (null, alt) in models.items():
            fits = [null.with_response(y).fit(warn=False), alt.with_response(y).fit(warn=False)]
            row[label] = mm.anova(*fits)["Pr(>Chisq)"].iloc[1]
        rows.append(row)
    return pd.DataFrame(rows)


# -- the Bayesian version ------------------------------------------------------------------------

BAYES_FORMULAS = {
    "gender + attitude": "frequency ~ gender + attitude",
    "0 + attitude + gender": "frequency ~ 0 + attitude + gender",
    "gender * attitude": "frequency ~ gender * attitude",
    "subject intercepts": "frequency ~ gender + attitude + (1 | subject)",
    "subject slopes": "frequency ~ gender + attitude + (attitude | subject)",
    "subject and scenario slopes": f"frequency ~ gender + attitude + {MAXIMAL}",
}


def posterior_draws(bfit) -> pd.DataFrame:
    """The posterior draws of every parameter but the group-level effects, one column each
    (named as in ``bfit.summary()``: ``beta[genderM]``, ``sd_subject[attitudepol]``, ...)."""
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


def frequentist_estimates(fit) -> tuple[pd.Series, pd.Series]:
    """Estimates (and the fixed effects' standard errors) of an ``lm`` or ``lmer`` fit under
    the Bayesian names."""
    if isinstance(fit, mm.LmResult):
        est = {f"beta[{k}]": v for k, v in fit.coef.items()}
        se = {f"beta[{k}]": v for k, v in fit.std_errors.items()}
    else:
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


def posterior_vs_frequentist(bfit, fit) -> pd.DataFrame:
    """Posterior mean, SD and median of each parameter next to the ``lm`` / ``lmer`` (REML)
    estimate and standard error, and their distance in posterior SDs."""
    draws = posterior_draws(bfit)
    est, se = frequentist_estimates(fit)
    out = pd.DataFrame(
        {
            "estimate": est.reindex(draws.columns),
            "SE": se.reindex(draws.columns),
            "post. mean": draws.mean(),
            "post. sd": draws.std(),
            "post. median": draws.median(),
        }
    )
    out["(mean - est.) / sd"] = (out["post. mean"] - out["estimate"]) / out["post. sd"]
    return out


def bayesian_models(
    data: pd.DataFrame, cfg: dict, frequentist: dict, plots: str | None = None
) -> dict:
    """Fit the Bambi sequence of models with ``mm.bayes`` and compare with ``frequentist``
    (the ``lm`` / ``lmer`` fit of each, by label)."""
    fits, comparisons = {}, {}
    for label, formula in BAYES_FORMULAS.items():
        section(f"Bayesian: {formula}")
        model = mm.bayes(formula, data)
        # Bambi's defaults are the same kind of priors: normal fixed effects 2.5 response SDs
        # per predictor SD wide, a half Student-t(4) residual SD; the group-level SDs are
        # half Student-t(3) here (Bambi: half-normal), with LKJ(2) on the correlations of a
        # term's effects (Bambi has none)
        print(model)
        fit = model.fit(
            draws=cfg["draws"],
            tune=cfg["tune"],
            chains=cfg["chains"],
            target_accept=0.95,
            seed=SEED,
            progress=False,
        )
        print(fit.summary())
        comparisons[label] = posterior_vs_frequentist(fit, frequentist[label])
        print(f"\nposterior against the {'lm' if '|' not in formula else 'REML'} fit:")
        print(comparisons[label].round(3).to_string())
        fits[label] = fit
        if plots:
            save_trace(fit, plots, label)

    section("Bayesian: the attitude effect and the subject correlation")
    rows = {}
    for label in ("subject intercepts", "subject slopes", "subject and scenario slopes"):
        effect = posterior_draws(fits[label])["beta[attitudepol]"]
        rows[label] = {
            "post. mean": effect.mean(),
            "post. sd": effect.std(),
            "P(effect < 0)": (effect < 0).mean(),
            "REML SE": frequentist[label].std_errors["attitudepol"],
        }
    attitude = pd.DataFrame.from_dict(rows, orient="index")
    print(attitude.round(4))
    # Bambi's (attitude | subject) has independent priors on the subject intercepts and
    # slopes; lme4 and mm.bayes estimate their correlation, with an LKJ(2) prior (for two
    # effects: (r + 1) / 2 ~ Beta(2, 2), mean 0 and SD 1/sqrt(5) = 0.447). Six subjects say
    # little about it: its posterior stays almost as wide as the prior. (Bambi's model is
    # "(1 | subject) + (0 + polite | subject)" with a 0/1 column polite.)
    corr = pd.DataFrame(
        {
            label: comparisons[label].loc["corr_subject[(Intercept):attitudepol]"]
            for label in ("subject slopes", "subject and scenario slopes")
        }
    ).T[["estimate", "post. mean", "post. sd", "post. median"]]
    corr.loc["LKJ(2) prior"] = [np.nan, 0.0, 1 / np.sqrt(5), 0.0]
    print("\ncorrelation of the subjects' intercepts and attitude slopes:")
    print(corr.round(3))
    return {
        "bayes_fits": fits,
        "bayes_comparisons": comparisons,
        "bayes_attitude": attitude,
        "bayes_subject_corr": corr,
    }


def save_trace(fit, directory: str, label: str) -> str:
    """``az.plot_trace`` of the parameters (not the group-level effects), saved as a PNG."""
    import os

    import arviz as az
    import matplotlib.pyplot as plt

    os.makedirs(directory, exist_ok=True)
    names = [v for v in fit.idata.posterior.data_vars if not v.startswith("b_")]
    az.plot_trace(fit.idata, var_names=names)
    path = os.path.join(directory, f"politeness_trace_{label.replace(' ', '_')}.png")
    plt.gcf().tight_layout()
    plt.gcf().savefig(path, dpi=90)
    plt.close("all")
    print(f"saved {path}")
    return path


def main(size: str = "full", plots: str | None = None) -> dict:
    """Run the analysis; ``plots``: a directory to save trace plots of the Bayesian fits in."""
    cfg = SIZES[size]
    rng = np.random.default_rng(2013)
    design = make_design()
    data = simulate_pitch(design, rng)

    section("The data: pitch by gender and attitude")
    print(data.groupby(["gender", "attitude"])["frequency"].describe().round(1))

    section("Fixed-effects models")
    additive = mm.lm("frequency ~ gender + attitude", data)
    no_intercept = mm.lm("frequency ~ 0 + attitude + gender", data)
    interaction = mm.lm("frequency ~ gender * attitude", data)
    print(additive.summary())
    print("without an intercept: one coefficient per attitude")
    print(no_intercept.coefficients_table().round(3))
    same_fit = np.allclose(additive.fitted(), no_intercept.fitted())
    print(f"same fitted values as with an intercept: {same_fit}")
    print("\nwith the gender-by-attitude interaction:")
    print(interaction.coefficients_table().round(3))

    section("Mixed models of growing random structure")
    formulas = {
        "subject intercepts": "frequency ~ gender + attitude + (1 | subject)",
        "subject slopes": "frequency ~ gender + attitude + (attitude | subject)",
        "subject and scenario slopes": f"frequency ~ gender + attitude + {MAXIMAL}",
    }
    fits = {}
    for label, formula in formulas.items():
        fits[label] = mm.lmer(formula, data)
        print(f"--- {label}: {formula}")
        print(fits[label].varcorr)
        print(f"singular: {fits[label].is_singular}\n")
    maximal = fits["subject and scenario slopes"]
    print(maximal.summary())
    print(f"rows dropped for a missing value: {maximal.n_dropped}")

    section("Are the random slopes needed? (likelihood-ratio tests)")
    random_tests = maximal.ranova()
    print(random_tests)
    # same fixed effects, so the REML fits can be compared directly
    structures = mm.anova(
        *fits.values(), names=["subj int", "subj slope", "subj+scen slope"], refit=False
    )
    print(structures)

    section("The attitude and gender effects")
    print(maximal.anova())
    tests = attitude_tests(data)
    print()
    print(tests.to_string(float_format=lambda v: f"{v:.4g}"))
    null = mm.lmer(f"frequency ~ attitude + {INTERCEPTS}", data, reml=False)
    alt = mm.lmer(f"frequency ~ gender + attitude + {INTERCEPTS}", data, reml=False)
    gender_lrt = mm.anova(null, alt)
    print("\ngender, likelihood-ratio test:")
    print(gender_lrt)

    section(f"Type I error of the attitude test ({cfg['nsim']} simulations, no effect)")
    pvalues = type_one_error(design, cfg["nsim"], seed=7)
    rejection = (pvalues < 0.05).mean().rename("rejection rate at 5%")
    print(rejection.round(3).to_string())

    # the frequentist fit of each Bayesian model, by label
    frequentist = {
        "gender + attitude": additive,
        "0 + attitude + gender": no_intercept,
        "gender * attitude": interaction,
        **fits,
    }
    try:
        bayes_results = bayesian_models(data, cfg, frequentist, plots)
    except mm.MissingExtraError as err:  # NumPyro, JAX or ArviZ not installed
        print(f"\nBayesian models skipped: {err}")
        bayes_results = {}

    return {
        "data": data,
        "lm_additive": additive,
        "lm_no_intercept": no_intercept,
        "lm_interaction": interaction,
        "fits": fits,
        "ranova": random_tests,
        "structures": structures,
        "attitude_tests": tests,
        "gender_lrt": gender_lrt,
        "type1_pvalues": pvalues,
        "type1_rate": rejection,
    } | bayes_results


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="fewer simulations and draws")
    parser.add_argument("--plots", metavar="DIR", help="save trace plots in DIR")
    args = parser.parse_args()
    main("small" if args.small else "full", plots=args.plots)
