"""Tests of the shipped example data sets (mixedmodels.datasets)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from mixedmodels import datasets

EXPECTED_NAMES = {
    "sleepstudy",
    "Dyestuff",
    "Dyestuff2",
    "Penicillin",
    "Pastes",
    "cake",
    "InstEval",
    "cbpp",
    "grouseticks",
    "VerbAgg",
    "Machines",
}

KIND_DTYPES = {
    "integer": np.dtype("int64"),
    "numeric": np.dtype("float64"),
    "logical": np.dtype(bool),
}


@pytest.fixture(scope="module", params=sorted(EXPECTED_NAMES, key=str.lower))
def loaded(request: pytest.FixtureRequest) -> tuple[pd.DataFrame, dict]:
    name = request.param
    return datasets.load(name), datasets.metadata(name)


def test_names_lists_every_data_set() -> None:
    got = datasets.names()
    assert set(got) == EXPECTED_NAMES
    assert got == sorted(got, key=str.lower)


def test_shape_and_columns_match_metadata(loaded: tuple[pd.DataFrame, dict]) -> None:
    df, meta = loaded
    assert df.attrs["name"] == meta["name"]
    assert len(df) == meta["nrow"]
    assert list(df.columns) == [col["name"] for col in meta["columns"]]
    assert isinstance(df.index, pd.RangeIndex)


def test_column_kinds_and_levels(loaded: tuple[pd.DataFrame, dict]) -> None:
    df, meta = loaded
    for col in meta["columns"]:
        series = df[col["name"]]
        kind = col["kind"]
        if kind in ("factor", "ordered"):
            assert isinstance(series.dtype, pd.CategoricalDtype), col["name"]
            assert list(series.cat.categories) == col["levels"], col["name"]
            assert series.cat.ordered == (kind == "ordered"), col["name"]
        else:
            assert series.dtype == KIND_DTYPES[kind], (col["name"], series.dtype)


def test_check_sums_and_counts(loaded: tuple[pd.DataFrame, dict]) -> None:
    df, meta = loaded
    kinds = {col["name"]: col["kind"] for col in meta["columns"]}
    for name, check in meta["check"].items():
        series = df[name]
        assert int(series.isna().sum()) == check["n_missing"], name
        if "sum" in check:
            total = math.fsum(series.dropna().astype(float))
            assert total == pytest.approx(check["sum"], rel=1e-13, abs=1e-9), name
        if "counts" in check:
            counts = series.value_counts(sort=False)
            assert list(counts.index) == list(check["counts"]), name
            assert [int(v) for v in counts] == list(check["counts"].values()), name
        if "n_true" in check:
            assert int(series.sum()) == check["n_true"], name
        assert kinds[name] in ("factor", "ordered", "integer", "numeric", "logical")


@pytest.mark.parametrize("name", ["SLEEPSTUDY", "sleepStudy", "instEval", "machines"])
def test_names_are_case_insensitive(name: str) -> None:
    df = datasets.load(name)
    assert df.attrs["name"].lower() == name.lower()
    assert df.attrs["name"] in EXPECTED_NAMES


def test_unknown_name_lists_available() -> None:
    with pytest.raises(ValueError, match="sleepstudy") as info:
        datasets.load("no_such_data")
    assert "no_such_data" in str(info.value)
    with pytest.raises(ValueError):
        datasets.describe("no_such_data")


def test_sleepstudy_contents() -> None:
    df = datasets.load("sleepstudy")
    assert df.shape == (180, 3)
    assert df["Subject"].cat.categories.size == 18
    assert list(df["Subject"].cat.categories[:3]) == ["308", "309", "310"]
    assert (df["Subject"].value_counts() == 10).all()
    assert sorted(df["Days"].unique()) == list(range(10))
    # First row of R's sleepstudy; the CSV keeps doubles exactly.
    assert df.loc[0, "Reaction"] == 249.56
    assert df.loc[1, "Reaction"] == 258.7047


def test_small_designs() -> None:
    dye = datasets.load("Dyestuff")
    assert dye.shape == (30, 2)
    assert list(dye["Batch"].cat.categories) == ["A", "B", "C", "D", "E", "F"]
    pen = datasets.load("Penicillin")
    assert pen.shape == (144, 3)
    assert pen["plate"].cat.categories.size == 24
    assert pen["sample"].cat.categories.size == 6
    pastes = datasets.load("Pastes")
    assert pastes.shape == (60, 4)
    assert list(pastes["cask"].cat.categories) == ["a", "b", "c"]
    assert pastes["sample"].cat.categories.size == 30


def test_ordered_factors() -> None:
    cake = datasets.load("cake")
    assert cake["temperature"].cat.ordered
    assert list(cake["temperature"].cat.categories) == ["175", "185", "195", "205", "215", "225"]
    assert not cake["recipe"].cat.ordered
    assert cake["angle"].dtype == np.int64
    verb = datasets.load("VerbAgg")
    assert list(verb["resp"].cat.categories) == ["no", "perhaps", "yes"]
    assert verb["resp"].cat.ordered


def test_large_and_nlme_data() -> None:
    inst = datasets.load("InstEval")
    assert inst.shape == (73421, 7)
    assert inst["s"].cat.categories.size == 2972
    assert inst["d"].cat.categories.size == 1128
    machines = datasets.load("Machines")
    assert machines.shape == (54, 3)
    assert list(machines["Machine"].cat.categories) == ["A", "B", "C"]
    assert machines["Worker"].cat.categories.size == 6


def test_describe_mentions_title_and_columns() -> None:
    text = datasets.describe("Penicillin")
    meta = datasets.metadata("penicillin")
    assert meta["title"] in text
    assert meta["description"] in text
    for col in meta["columns"]:
        assert col["name"] in text


def test_load_returns_independent_frames() -> None:
    first = datasets.load("Dyestuff")
    first.loc[0, "Yield"] = -1.0
    assert datasets.load("Dyestuff").loc[0, "Yield"] != -1.0
    meta = datasets.metadata("Dyestuff")
    meta["nrow"] = 0
    assert datasets.metadata("Dyestuff")["nrow"] == 30
