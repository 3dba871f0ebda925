"""Shared fixtures: lme4 reference values and fits cached across test files.

Reference values come from ``tests/fixtures/lme4/make_lme4_fixtures.R`` (lme4 1.1-31); each case
records the data set, the formula (R and Python spelling) and what lme4 computed.
"""

from __future__ import annotations

import functools
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import mixedmodels as mm

FIXTURES = Path(__file__).parent / "fixtures"


@functools.cache
def lme4_reference() -> dict[str, Any]:
    with open(FIXTURES / "lme4" / "lmer_reference.json") as fh:
        return json.load(fh)


def lmer_cases() -> dict[str, dict[str, Any]]:
    return lme4_reference()["cases"]


def case_data(name: str) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The data frame and the keyword arguments (weights, offset) of a reference case,
    prepared as the R script prepared them (names included, so summaries match)."""
    c = lmer_cases()[name]
    kwargs: dict[str, Any] = {}
    if "data" in c:
        df = pd.DataFrame(c["data"])
        df.attrs["name"] = name.rsplit("_", 1)[0]
    else:
        df = mm.datasets.load(c["dataset"]).copy()
    if c.get("na_rows"):
        for col, rows in c["na_rows"].items():
            df.loc[[r - 1 for r in rows], col] = np.nan
        df.attrs["name"] = "sleep_na"
    if name == "sleepstudy_rankdef_reml":
        df["Days2"] = 2 * df["Days"]
        df.attrs["name"] = "sleep_rd"
    if c.get("weights") is not None:
        if name.startswith("cbpp"):
            kwargs["weights"] = "size"
        else:
            df["w"] = np.asarray(c["weights"], dtype=float)
            kwargs["weights"] = "w"
    if c.get("offset") is not None:
        df["off"] = np.asarray(c["offset"], dtype=float)
        kwargs["offset"] = "off"
    return df, kwargs


@functools.cache
def fitted_case(name: str) -> mm.LmerResult:
    """Our fit of a reference case (cached for the whole test session)."""
    c = lmer_cases()[name]
    df, kwargs = case_data(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mm.lmer(c["formula"], df, reml=c["reml"], **kwargs)


@functools.cache
def case_at_lme4_theta(name: str) -> mm.LmerResult:
    """The reference case evaluated at lme4's theta (no optimization)."""
    c = lmer_cases()[name]
    df, kwargs = case_data(name)
    model = mm.LinearMixedModel.from_formula(c["formula"], df, reml=c["reml"], **kwargs)
    return model.fit(start=list(c["theta"].values()), optimize=False, warn=False)


@pytest.fixture(scope="session")
def sleepstudy() -> pd.DataFrame:
    return mm.datasets.load("sleepstudy")


@pytest.fixture(scope="session")
def sleep_fit() -> mm.LmerResult:
    return fitted_case("sleepstudy_corr_reml")


# ---------------------------------------------------------------------------------------------
# glmer references (tests/fixtures/glmer/make_glmer_fixtures.R, make_glmer_inference.R)


@functools.cache
def glmer_reference() -> dict[str, Any]:
    with open(FIXTURES / "glmer" / "glmer_reference.json") as fh:
        return json.load(fh)


@functools.cache
def glmer_inference_reference() -> dict[str, Any]:
    with open(FIXTURES / "glmer" / "glmer_inference.json") as fh:
        return json.load(fh)


def glmer_cases() -> dict[str, dict[str, Any]]:
    return glmer_reference()["cases"]


def glmer_family(expr: str) -> Any:
    """Our family for the R expression recorded in a case."""
    return {
        "binomial": "binomial",
        "poisson": "poisson",
        'binomial(link = "probit")': mm.families.Binomial("probit"),
        'Gamma(link = "log")': mm.families.Gamma("log"),
    }[expr]


def glmer_case_data(name: str) -> tuple[pd.DataFrame, dict[str, Any]]:
    c = glmer_cases()[name]
    if "data" in c:
        df = pd.DataFrame(c["data"])
        df["g"] = pd.Categorical(df["g"])
        df.attrs["name"] = "gamma_sim"
    else:
        df = mm.datasets.load(c["dataset"]).copy()
    kwargs: dict[str, Any] = {}
    if c.get("weights_column"):
        kwargs["weights"] = c["weights_column"]
    return df, kwargs


def glmer_model(name: str) -> mm.GeneralizedLinearMixedModel:
    c = glmer_cases()[name]
    df, kwargs = glmer_case_data(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mm.GeneralizedLinearMixedModel.from_formula(
            c["formula"], df, glmer_family(c["family"]), nAGQ=c["nAGQ"], **kwargs
        )


@functools.cache
def fitted_glmer(name: str) -> mm.GlmerResult:
    """Our fit of a glmer reference case (cached for the session)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return glmer_model(name).fit()


@functools.cache
def glmer_at_lme4(name: str) -> mm.GlmerResult:
    """The case evaluated at lme4's default-fit estimates, carrying lme4's covariance matrix of
    the fixed effects and its reported deviance: every number a summary prints then comes
    from lme4, so the text must match lme4's to the character."""
    import dataclasses

    from mixedmodels.optim import fixed_theta_summary

    c = glmer_cases()[name]
    model = glmer_model(name)
    par = np.asarray(c["par"], dtype=float)
    nth = model.ntheta
    theta = par[:nth]
    beta = par[nth:] if c["nAGQ"] > 0 else np.asarray(list(c["beta"].values()), dtype=float)
    res = mm.GlmerResult.from_optimum(
        model,
        theta,
        beta,
        fixed_theta_summary(theta, c["deviance_crit"], model.lower_bounds),
        {},
        check_convergence=False,
        warn=False,
    )
    return dataclasses.replace(
        res, vcov_matrix=np.asarray(c["vcov"], dtype=float), objective_value=c["deviance_crit"]
    )
