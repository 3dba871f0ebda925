"""Nested random effects: students in classrooms in schools.

Test scores of students are simulated with a random intercept for each school and, inside
each school, a random intercept for each classroom, plus one student-level covariate. The
script fits the nested model ``outcome ~ fixed_effect + (1 | school/classroom)`` and shows:

* the summary, the variance components and their profile-likelihood intervals;
* that ``(1 | school/classroom)`` is shorthand for ``(1 | school) + (1 | classroom:school)``,
  and when ``(1 | school) + (1 | classroom)`` means the same thing (classroom labels unique
  across schools) and when it does not (labels reused in every school);
* likelihood-ratio tests of each grouping level (``ranova``);
* what goes wrong when the grouping is ignored: an ordinary regression overstates the
  standard error of the student-level slope and understates that of the intercept;
* a small simulation study, refitting the model to many data sets drawn from the true
  parameters, that checks the estimates and the standard errors against their sampling
  distribution;
* the Bayesian fit of the same model with ``mm.bayes`` (NUTS in NumPyro, the ``bayes``
  extra), its posterior next to the REML estimates and the profile intervals, and again with
  the priors of a Stan version of the model (half-normal(0, 1) standard deviations), which
  pull the school SD down: five schools say little about it.

Run it with ``python docs/examples/nested_schools.py`` (``--small`` for fewer simulated data
sets and posterior draws).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

import mixedmodels as mm

# The parameters the data are simulated from.
TRUE = {
    "intercept": 5.0,
    "slope": 2.0,
    "sd_school": 2.0,
    "sd_classroom": 1.0,
    "sigma": 0.5,
}

# Design, number of simulated data sets and the NUTS settings of the Bayesian fit (draws and
# warm-up steps per chain) for each run size.
SIZES = {
    "full": {
        "schools": 5,
        "classrooms": 4,
        "students": 20,
        "nsim": 200,
        "draws": 1000,
        "tune": 1000,
        "chains": 4,
    },
    "small": {
        "schools": 5,
        "classrooms": 4,
        "students": 20,
        "nsim": 25,
        "draws": 300,
        "tune": 300,
        "chains": 2,
    },
}

FORMULA = "outcome ~ fixed_effect + (1 | school/classroom)"


def section(title: str) -> None:
    print(f"\n{'=' * 8} {title} {'=' * max(4, 70 - len(title))}")


def make_design(n_schools: int, n_classrooms: int, n_students: int) -> pd.DataFrame:
    """One row per student. ``classroom`` is numbered across schools (1, 2, ..., 20);
    ``class_in_school`` restarts at 1 in every school, as such labels often arrive."""
    n = n_schools * n_classrooms * n_students
    school = np.repeat(np.arange(1, n_schools + 1), n_classrooms * n_students)
    classroom = np.repeat(np.arange(1, n_schools * n_classrooms + 1), n_students)
    return pd.DataFrame(
        {
            "school": school,
            "classroom": classroom,
            "class_in_school": (classroom - 1) % n_classrooms + 1,
            "student": np.arange(1, n + 1),
        }
    )


def simulate_scores(design: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """Add a student-level covariate and the outcome drawn from the nested model."""
    n = len(design)
    school_effect = rng.normal(0.0, TRUE["sd_school"], design["school"].max())
    classroom_effect = rng.normal(0.0, TRUE["sd_classroom"], design["classroom"].max())
    x = rng.standard_normal(n)
    outcome = (
        TRUE["intercept"]
        + TRUE["slope"] * x
        + school_effect[design["school"] - 1]
        + classroom_effect[design["classroom"] - 1]
        + rng.normal(0.0, TRUE["sigma"], n)
    )
    data = design.assign(fixed_effect=x, outcome=outcome)
    data.attrs["name"] = "schools"
    return data


def equivalent_spellings(data: pd.DataFrame) -> pd.DataFrame:
    """REML criterion of several spellings of the grouping structure."""
    formulas = {
        "nested shorthand": FORMULA,
        "explicit nesting": "outcome ~ fixed_effect + (1 | school) + (1 | classroom:school)",
        "unique classroom ids": "outcome ~ fixed_effect + (1 | school) + (1 | classroom)",
        "reused labels, nested": "outcome ~ fixed_effect + (1 | school/class_in_school)",
        "reused labels, crossed (wrong)": (
            "outcome ~ fixed_effect + (1 | school) + (1 | class_in_school)"
        ),
    }
    rows = []
    for label, formula in formulas.items():
        fit = mm.lmer(formula, data, warn=False)
        classroom_term = next(t for t in fit.varcorr if t.group != "school")
        rows.append(
            {
                "model": label,
                "REML criterion": fit.reml_criterion,
                "classroom groups": fit.ngroups[classroom_term.group],
                "sd classroom": classroom_term.sd[0],
            }
        )
    return pd.DataFrame(rows).set_index("model")


def ignoring_the_grouping(data: pd.DataFrame, fit: mm.LmerResult) -> pd.DataFrame:
    """Standard errors of the ordinary regression and of the mixed model side by side."""
    ols = mm.lm("outcome ~ fixed_effect", data)
    return pd.DataFrame(
        {
            "lm estimate": ols.coef,
            "lm SE": ols.std_errors,
            "lmer estimate": fit.fixef,
            "lmer SE": fit.std_errors,
        }
    )


def simulation_study(design: pd.DataFrame, nsim: int, seed: int) -> pd.DataFrame:
    """Refit the nested model and the ordinary regression to ``nsim`` data sets drawn from the
    true parameters; one row per data set."""
    design = design.assign(fixed_effect=np.random.default_rng(seed).standard_normal(len(design)))
    sims = mm.simulate(
        "~ fixed_effect + (1 | school/classroom)",
        design,
        beta={"(Intercept)": TRUE["intercept"], "fixed_effect": TRUE["slope"]},
        # theta is relative to sigma, in lme4's term order: classroom:school, then school
        theta=[TRUE["sd_classroom"] / TRUE["sigma"], TRUE["sd_school"] / TRUE["sigma"]],
        sigma=TRUE["sigma"],
        nsim=nsim,
        seed=seed + 1,
    )
    rows = []
    for column in sims:
        data = design.assign(outcome=sims[column])
        fit = mm.lmer(FORMULA, data, warn=False)
        ols = mm.lm("outcome ~ fixed_effect", data)
        vc = fit.varcorr
        rows.append(
            {
                "sd_classroom": vc["classroom:school"].sd[0],
                "sd_school": vc["school"].sd[0],
                "sigma": fit.sigma,
                "intercept": fit.fixef["(Intercept)"],
                "slope": fit.fixef["fixed_effect"],
                "lmer_se_intercept": fit.std_errors["(Intercept)"],
                "lmer_se_slope": fit.std_errors["fixed_effect"],
                "lm_se_intercept": ols.std_errors["(Intercept)"],
                "lm_se_slope": ols.std_errors["fixed_effect"],
                "lm_intercept": ols.coef["(Intercept)"],
                "lm_slope": ols.coef["fixed_effect"],
                "singular": fit.is_singular,
            }
        )
    return pd.DataFrame(rows)


def summarize_study(study: pd.DataFrame) -> pd.DataFrame:
    """Reported standard errors against the spread of the estimates over the data sets."""
    rows = {}
    for model, prefix in (("lmer", ""), ("lm", "lm_")):
        for par in ("intercept", "slope"):
            rows[(model, par)] = {
                "true": TRUE[par],
                "mean estimate": study[f"{prefix}{par}"].mean(),
                "SD of estimates": study[f"{prefix}{par}"].std(ddof=1),
                "mean reported SE": study[f"{model}_se_{par}"].mean(),
            }
    return pd.DataFrame.from_dict(rows, orient="index")


def posterior_vs_reml(bfit, fit: mm.LmerResult, intervals: pd.DataFrame) -> pd.DataFrame:
    """Posterior mean, SD and central 95% interval of the fixed effects, the SDs and sigma,
    next to the REML estimates, standard errors and profile intervals."""
    post = bfit.idata.posterior
    draws = {f"beta[{k}]": post["beta"].sel(coef=k).values.ravel() for k in fit.fixef.index}
    reml = {f"beta[{k}]": v for k, v in fit.fixef.items()}
    se = {f"beta[{k}]": v for k, v in fit.std_errors.items()}
    profile = {f"beta[{k}]": intervals.loc[k] for k in fit.fixef.index}
    for term in fit.varcorr:  # one intercept per term: sd_school, sd_classroom:school
        name = f"sd_{term.group}[(Intercept)]"
        draws[name] = post[f"sd_{term.group}"].values.ravel()
        reml[name] = term.sd[0]
        profile[name] = intervals.loc[f"sd_(Intercept)|{term.group}"]
    draws["sigma"] = post["sigma"].values.ravel()
    reml["sigma"] = fit.sigma
    profile["sigma"] = intervals.loc["sigma"]
    draws = pd.DataFrame(draws)
    out = pd.DataFrame(
        {
            "REML": pd.Series(reml),
            "SE": pd.Series(se),
            "profile 2.5%": pd.Series({k: v.iloc[0] for k, v in profile.items()}),
            "profile 97.5%": pd.Series({k: v.iloc[1] for k, v in profile.items()}),
            "post. mean": draws.mean(),
            "post. sd": draws.std(),
            "2.5%": draws.quantile(0.025),
            "97.5%": draws.quantile(0.975),
        }
    )
    out["(mean - REML) / sd"] = (out["post. mean"] - out["REML"]) / out["post. sd"]
    return out


def main(size: str = "full") -> dict:
    cfg = SIZES[size]
    rng = np.random.default_rng(123)
    design = make_design(cfg["schools"], cfg["classrooms"], cfg["students"])
    data = simulate_scores(design, rng)

    section("The nested model")
    fit = mm.lmer(FORMULA, data)
    print(fit.summary())
    print(fit.varcorr)
    print(f"\nsingular fit: {fit.is_singular}")

    section("Profile-likelihood intervals")
    intervals = fit.confint()
    print(intervals.round(3))

    section("Spellings of the grouping structure")
    spellings = equivalent_spellings(data)
    print(spellings.round(3))
    print(
        "\nClassroom labels that restart in every school must be nested explicitly; written as"
        "\ncrossed factors, classroom 1 of every school becomes one group."
    )

    section("Does each level of grouping matter? (likelihood-ratio tests)")
    random_tests = fit.ranova()
    print(random_tests)

    section("Ignoring the grouping: ordinary regression")
    se_table = ignoring_the_grouping(data, fit)
    print(se_table.round(4))

    section(f"Simulation study: {cfg['nsim']} data sets from the true parameters")
    study = simulation_study(design, cfg["nsim"], seed=2024)
    components = study[["sd_classroom", "sd_school", "sigma"]].agg(["mean", "median", "std"])
    components.loc["true"] = [TRUE["sd_classroom"], TRUE["sd_school"], TRUE["sigma"]]
    print(components.round(3))
    se_check = summarize_study(study)
    print()
    print(se_check.round(4))
    print(f"\nsingular fits: {int(study['singular'].sum())} of {len(study)}")

    section("The Bayesian fit")
    bayes_results = {}
    try:
        model = mm.bayes(FORMULA, data)
    except mm.MissingExtraError as err:  # NumPyro, JAX or ArviZ not installed
        print(f"skipped: {err}")
    else:
        # The school and classroom intercepts are integrated out of the likelihood, so NUTS
        # samples five parameters (two fixed effects, two SDs, sigma), whatever the number of
        # classrooms; the 25 intercepts are drawn afterwards from their conditional.
        print(model)
        bfit = model.fit(
            draws=cfg["draws"], tune=cfg["tune"], chains=cfg["chains"], seed=11, progress=False
        )
        print(bfit.summary())
        comparison = posterior_vs_reml(bfit, fit, intervals)
        print()
        print(comparison.round(3).to_string())

        # The priors of the Stan version of this model, by parameter name: normal(0, 10) for
        # the intercept and the slope, half-normal(0, 1) for the three SDs. (mm.bayes puts
        # the intercept's prior on the intercept at the mean of fixed_effect, about 0 here.)
        P = mm.priors
        stan_priors = {
            "Intercept": P.Normal(0, 10),
            "fixed_effect": P.Normal(0, 10),
            "1|school": P.HalfNormal(1),
            "1|classroom:school": P.HalfNormal(1),
            "sigma": P.HalfNormal(1),
        }
        stan_model = mm.bayes(FORMULA, data, priors=stan_priors)
        print()
        print(stan_model.priors)
        stan_fit = stan_model.fit(
            draws=cfg["draws"], tune=cfg["tune"], chains=cfg["chains"], seed=11, progress=False
        )
        stan_comparison = posterior_vs_reml(stan_fit, fit, intervals)
        priors_matter = pd.concat(
            {
                "REML": comparison[["REML"]].set_axis(["estimate"], axis=1),
                "default priors": comparison[["post. mean", "post. sd"]],
                "Stan example's priors": stan_comparison[["post. mean", "post. sd"]],
            },
            axis=1,
        )
        print("\nthe posterior under the two sets of priors:")
        print(priors_matter.round(3).to_string())
        bayes_results = {
            "bayes_fit": bfit,
            "bayes_comparison": comparison,
            "bayes_stan_priors_fit": stan_fit,
            "bayes_stan_priors_comparison": stan_comparison,
            "bayes_priors_matter": priors_matter,
        }

    return {
        "fit": fit,
        "data": data,
        "varcorr": fit.varcorr.to_frame(),
        "confint": intervals,
        "spellings": spellings,
        "ranova": random_tests,
        "se_table": se_table,
        "study": study,
        "study_summary": se_check,
    } | bayes_results


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="fewer data sets and draws")
    main("small" if parser.parse_args().small else "full")
