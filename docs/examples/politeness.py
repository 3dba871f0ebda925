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

Run it with ``python docs/examples/politeness.py``.
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

SIZES = {"full": {"nsim": 500}, "small": {"nsim": 40}}

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


def main(size: str = "full") -> dict:
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

    # Bayesian versions of these models await the Bayesian backend.

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
    }


if __name__ == "__main__":
    main()
