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
