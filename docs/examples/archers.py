"""Archers and bows: from a linear model to a random-intercept model.

A bow comparison in which every archer shoots each of two bows (Northwood, Southwood) the same
number of times, simulated with large differences in skill between archers. The script walks
through

* a small experiment (3 archers): the bow effect from ``lm(distance ~ bow)``, which leaves the
  archers' skill in the residual, and from ``lm(distance ~ bow + archer)``, which removes it and
  shrinks the bow's standard error several-fold;
* a larger experiment with archers drawn at random from a population: the archer effects as
  fixed parameters (``lm``), then as a random intercept
  ``lmer(distance ~ bow + (1 | archer))``, whose question is the spread of skill in the
  population: its variance components (``varcorr``) and their profile intervals (``confint``);
* ranking the archers by their conditional modes (``ranef``), which are the fixed-effects
  estimates shrunk towards zero by one common factor, so the two rankings agree exactly.

Run it with ``python docs/examples/archers.py``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

import mixedmodels as mm

TRUE = {
    "northwood": 168.0,  # mean distance with a Northwood bow (m)
    "southwood_effect": -10.0,  # Southwood minus Northwood
    "sd_archer": 23.0,  # spread of archers' skill
    "sigma": 5.0,  # shot-to-shot noise
}

# The first, small experiment uses three hand-picked archers of very different skill.
FIRST_ARCHERS = {"A01": -10.0, "A02": 30.0, "A03": -15.0}

SIZES = {
    "full": {"archers": 50, "shots": 10},
    "small": {"archers": 20, "shots": 10},
}


def section(title: str) -> None:
    print(f"\n{'=' * 8} {title} {'=' * max(4, 70 - len(title))}")


def fmt(value: float) -> str:
    return f"{value:.4g}"


def simulate_experiment(
    skill: dict[str, float], shots: int, rng: np.random.Generator
) -> pd.DataFrame:
    """Each archer (name -> deviation of their mean distance) shoots each bow ``shots`` times;
    one row per shot."""
    bows = {"Northwood": 0.0, "Southwood": TRUE["southwood_effect"]}
    frames = []
    for archer, alpha in skill.items():
        for bow, tau in bows.items():
            distance = TRUE["northwood"] + tau + alpha + rng.normal(0.0, TRUE["sigma"], shots)
            frames.append(pd.DataFrame({"distance": distance, "bow": bow, "archer": archer}))
    return pd.concat(frames, ignore_index=True)


def bow_row(fit: mm.LmResult | mm.LmerResult, label: str) -> dict:
    table = fit.coefficients_table() if isinstance(fit, mm.LmResult) else fit.coef_table()
    row = table.loc["bowSouthwood"]
    return {
        "model": label,
        "estimate": row["Estimate"],
        "SE": row["Std. Error"],
        "p": row["Pr(>|t|)"],
    }


def rank_archers(fit: mm.LmerResult, fixed: mm.LmResult) -> pd.DataFrame:
    """Archers ranked by their conditional modes, next to the fixed-effects estimates."""
    modes = fit.ranef().to_frame()
    ranking = modes.set_index("grp")[["condval", "condsd"]].rename_axis("archer")
    # lm's archer coefficients are differences from the first archer (treatment contrasts)
    lm_coef = fixed.coef.filter(like="archer")
    lm_coef.index = lm_coef.index.str.removeprefix("archer")
    ranking["lm_vs_first"] = lm_coef.reindex(ranking.index).fillna(0.0)
    ranking = ranking.sort_values("condval", ascending=False)
    ranking.insert(0, "rank", np.arange(1, len(ranking) + 1))
    return ranking


def main(size: str = "full") -> dict:
    cfg = SIZES[size]
    rng = np.random.default_rng(20240301)

    section("Experiment 1: three archers")
    small_exp = simulate_experiment(FIRST_ARCHERS, cfg["shots"], rng)
    small_exp.attrs["name"] = "experiment1"
    lm0 = mm.lm("distance ~ bow", small_exp)
    lm1 = mm.lm("distance ~ bow + archer", small_exp)
    print(lm0.summary())
    print(lm1.summary())
    bow_effects = pd.DataFrame(
        [bow_row(lm0, "lm: bow only"), bow_row(lm1, "lm: bow + archer")]
    ).set_index("model")

    section(f"Experiment 2: {cfg['archers']} archers drawn at random")
    skill = rng.normal(0.0, TRUE["sd_archer"], cfg["archers"])
    names = [f"A{j + 1:02d}" for j in range(cfg["archers"])]
    big_exp = simulate_experiment(dict(zip(names, skill, strict=True)), cfg["shots"], rng)
    big_exp.attrs["name"] = "experiment2"
    lm2 = mm.lm("distance ~ bow + archer", big_exp)
    print(lm2.coefficients_table().head(6).to_string(float_format=fmt))
    print(f"... {len(lm2.coef) - 2} archer coefficients in all")

    lme2 = mm.lmer("distance ~ bow + (1 | archer)", big_exp)
    print()
    print(lme2.summary())
    bow_effects = pd.concat(
        [
            bow_effects,
            pd.DataFrame(
                [bow_row(lm2, "lm: bow + archer (exp. 2)"), bow_row(lme2, "lmer (exp. 2)")]
            ).set_index("model"),
        ]
    )

    section("Variance components and their profile intervals")
    print(lme2.varcorr)
    intervals = lme2.confint(which="theta_")
    print()
    print(intervals.round(3))
    print(f"\ntrue values: sd_archer = {TRUE['sd_archer']}, sigma = {TRUE['sigma']}")

    section("The bow effect, model by model")
    print(bow_effects.to_string(float_format=fmt))

    section("Ranking the archers")
    ranking = rank_archers(lme2, lm2)
    print(ranking.head(5).round(2))
    print("...")
    print(ranking.tail(3).round(2))
    # The conditional mode is the archer's mean deviation times a shrinkage factor
    # sd_archer^2 / (sd_archer^2 + sigma^2 / shots per archer); lm's coefficients are the same
    # deviations measured from the first archer, so the two are exactly linearly related.
    vc = lme2.varcorr
    var_archer = vc["archer"].cov[0, 0]
    n_shots = 2 * cfg["shots"]
    shrinkage = var_archer / (var_archer + lme2.sigma**2 / n_shots)
    others = ranking["lm_vs_first"] != 0.0
    slope = np.polyfit(ranking.loc[others, "lm_vs_first"], ranking.loc[others, "condval"], 1)[0]
    correlation = np.corrcoef(ranking.loc[others, "lm_vs_first"], ranking.loc[others, "condval"])
    print(f"\ncorrelation of conditional modes with lm estimates: {correlation[0, 1]:.6f}")
    print(f"shrinkage factor: {shrinkage:.5f} (slope of modes on lm estimates: {slope:.5f})")

    return {
        "lm0": lm0,
        "lm1": lm1,
        "lm2": lm2,
        "lmer": lme2,
        "bow_effects": bow_effects,
        "varcorr": vc.to_frame(),
        "confint": intervals,
        "ranking": ranking,
        "correlation": correlation[0, 1],
        "shrinkage": shrinkage,
        "shrinkage_slope": slope,
        "n_archers": cfg["archers"],
    }


if __name__ == "__main__":
    main()
