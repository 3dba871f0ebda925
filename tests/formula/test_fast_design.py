"""The fast path of build_design (numeric columns, one grouping variable per term) against the
general path: the same design, field by field, and the general path wherever the fast one does
not apply."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

import mixedmodels as mm
from mixedmodels.formula import design as design_module
from mixedmodels.formula.design import Design, _fast_plan, _general_design, build_design
from mixedmodels.formula.terms import split_formula


def _general(formula: str, data: pd.DataFrame, **kw: Any) -> Design:
    return _general_design(
        split_formula(formula),
        data,
        weights=kw.get("weights"),
        offset=kw.get("offset"),
        factor_response=kw.get("factor_response", False),
        residual_variance=kw.get("residual_variance", True),
    )


def _same_index(a: pd.Index, b: pd.Index) -> None:
    assert type(a) is type(b)
    assert a.dtype == b.dtype
    assert a.name == b.name
    assert a.equals(b)


def _same_frame(a: pd.DataFrame, b: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    _same_index(a.columns, b.columns)
    _same_index(a.index, b.index)
    assert a.attrs == b.attrs
    assert list(a.dtypes) == list(b.dtypes)
    for col in a.columns:
        if isinstance(a[col].dtype, pd.CategoricalDtype):
            _same_index(a[col].cat.categories, b[col].cat.categories)


def assert_same_design(fast: Design, general: Design) -> None:
    assert fast.formula == general.formula
    assert fast.response_name == general.response_name
    for name in ("y", "X", "weights", "offset", "trials"):
        a, b = getattr(fast, name), getattr(general, name)
        if b is None:
            assert a is None, name
            continue
        assert a.dtype == b.dtype and a.shape == b.shape, name
        assert a.flags.c_contiguous == b.flags.c_contiguous, name
        np.testing.assert_array_equal(a, b, err_msg=name)
    for name in (
        "fixef_names",
        "dropped_fixef",
        "n_dropped",
        "data_name",
        "weights_name",
        "offset_name",
        "messages",
        "fixed_columns",
        "all_fixef_names",
        "fixed_terms",
    ):
        assert getattr(fast, name) == getattr(general, name), name
    assert fast.fixed_spec == general.fixed_spec
    _same_index(fast.row_index, general.row_index)
    assert len(fast.terms) == len(general.terms)
    for s, t in zip(fast.terms, general.terms, strict=True):
        assert s.spec == t.spec
        assert s.group_name == t.group_name
        _same_index(s.levels, t.levels)
        assert s.refs.dtype == t.refs.dtype
        np.testing.assert_array_equal(s.refs, t.refs)
        assert (s.z is None) == (t.z is None)
        if s.z is not None:
            assert s.z.flags.c_contiguous and t.z.flags.c_contiguous
            np.testing.assert_array_equal(s.z, t.z)
        assert s.effect_names == t.effect_names
        assert s.effects_spec == t.effects_spec
    assert fast.frame is not None and general.frame is not None
    _same_frame(fast.frame, general.frame)


def _uses_fast_path(monkeypatch: pytest.MonkeyPatch, formula: str, data: Any, **kw: Any) -> bool:
    calls = []
    real = design_module._general_design

    def spy(*args: Any, **kwargs: Any) -> Design:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(design_module, "_general_design", spy)
    build_design(formula, data, **kw)
    monkeypatch.setattr(design_module, "_general_design", real)
    return not calls


def _frame(n: int = 60, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g = np.arange(n) % 6
    h = np.arange(n) % 4
    return pd.DataFrame(
        {
            "y": rng.normal(size=n),
            "x": rng.normal(size=n),
            "k": rng.integers(0, 7, n),
            "u": rng.integers(0, 3, n).astype(np.uint8),
            "w": rng.uniform(0.5, 2.0, n),
            "g": pd.Categorical(np.array(list("fedcba"))[g], categories=list("abcdefz")),
            "gi": 10 * h + 3,
            "gs": pd.array(np.array(["p", "q", "r", "s"])[h], dtype="string"),
            "gf": h.astype(float) / 2,
            "o": rng.normal(size=n),
            "m": rng.integers(0, 5, n),
            "nt": np.full(n, 6),
            "r": pd.Categorical(np.where(rng.uniform(size=n) < 0.4, "yes", "no")),
            "rb": rng.uniform(size=n) < 0.4,
            "rs": np.where(rng.uniform(size=n) < 0.4, "Y", "N").astype(object),
        }
    ).set_axis(pd.Index(np.arange(100, 100 + n), name="row"))


CASES = [
    ("y ~ x + (x | g)", {}),
    ("y ~ x + (1 | g)", {}),
    ("y ~ 1 + (1 | g)", {}),
    ("y ~ 0 + x + (1 | g)", {}),
    ("y ~ x * k + (k | g) + (1 | gi)", {}),
    ("y ~ x + (1 | gi) + (0 + x | g)", {}),
    ("y ~ x + (x || g)", {}),
    ("y ~ x + k + u + (1 | gs)", {}),
    ("y ~ x + (1 | gf)", {}),
    ("k ~ x + (1 | g)", {}),
    ("y ~ x + (1 | g)", {"weights": "w"}),
    ("y ~ x + (1 | g)", {"weights": np.linspace(1, 2, 60)}),
    ("y ~ x + (1 | g)", {"offset": "o"}),
    ("y ~ x + (1 | g)", {"offset": np.linspace(-1, 1, 60)}),
    ("y ~ x + x:k + (1 | g)", {}),
    ("y ~ x + gs + (1 | g)", {}),
    ("y ~ 0 + gs + x + (1 | g)", {}),
    ("y ~ 0 + x + gs + g + (1 | gi)", {}),
    ("y ~ g + k + x:k + (x | gi)", {}),
    ("y ~ x + (1 | go)", {}),
    ("cbind(m, nt - m) ~ x + gs + (1 | g)", {"residual_variance": False}),
    ("cbind(m, 6 - m) ~ x + (1 | g)", {"residual_variance": False}),
    ("cbind(m, nt) ~ x + (1 | g)", {"residual_variance": False}),
    ("r ~ x + gs + (1 | g)", {"factor_response": True, "residual_variance": False}),
    ("rs ~ x + (1 | g)", {"factor_response": True, "residual_variance": False}),
    ("rb ~ x + (1 | g)", {"factor_response": True, "residual_variance": False}),
]


@pytest.mark.parametrize(("formula", "kw"), CASES, ids=[f"{f} {list(k)}" for f, k in CASES])
def test_fast_path_gives_the_general_design(formula, kw, monkeypatch):
    df = _frame().assign(go=lambda d: d["gs"].astype(object))
    df.attrs["name"] = "simulated"
    assert _fast_plan(split_formula(formula)) is not None
    assert _uses_fast_path(monkeypatch, formula, df, **kw)
    assert_same_design(build_design(formula, df, **kw), _general(formula, df, **kw))


def test_fast_path_ignores_columns_it_does_not_use(monkeypatch):
    df = _frame().assign(b=lambda d: d["x"] > 0, s=lambda d: d["g"].astype(object))
    formula = "y ~ x + (1 | g)"
    assert _uses_fast_path(monkeypatch, formula, df)
    assert_same_design(build_design(formula, df), _general(formula, df))


def test_fast_path_rank_deficient_columns():
    df = _frame().assign(x2=lambda d: 2 * d["x"])
    formula = "y ~ x + x2 + (1 | g)"
    d = build_design(formula, df)
    assert d.dropped_fixef == ("x2",)
    assert_same_design(d, _general(formula, df))


@pytest.mark.parametrize(
    ("formula", "checked"),
    [
        ("y ~ gs + (1 | g)", False),
        ("y ~ 0 + gs + (1 | g)", False),
        ("y ~ 1 + (1 | g)", False),
        ("y ~ x + (1 | g)", True),
        ("y ~ gs + x + (1 | g)", True),
        ("y ~ gs + g + (1 | gi)", True),
    ],
)
def test_rank_check_only_where_columns_can_be_dependent(formula, checked, monkeypatch):
    """An intercept alone, or one factor's indicators (all its levels occur) with or without an
    intercept, cannot be rank deficient: no rank check, and the general path's design; any
    other fixed part is checked."""
    df = _frame()
    df = df[df["gs"] != "q"]  # a level of gs unused: dropped, the rest still independent
    calls = []
    real = design_module._rank_columns

    def counted(X: np.ndarray) -> list[int]:
        calls.append(X.shape)
        return real(X)

    monkeypatch.setattr(design_module, "_rank_columns", counted)
    d = build_design(formula, df)
    assert _uses_fast_path(monkeypatch, formula, df)
    assert bool(calls) == checked
    assert np.linalg.matrix_rank(d.X) == d.X.shape[1]
    assert_same_design(d, _general(formula, df))


def test_fast_path_sleepstudy(monkeypatch):
    df = mm.datasets.load("sleepstudy")
    formula = "Reaction ~ Days + (Days | Subject)"
    assert _uses_fast_path(monkeypatch, formula, df)
    assert_same_design(build_design(formula, df), _general(formula, df))
    # integer Days and string levels, as a CSV file gives them
    df2 = df.assign(Days=df["Days"].astype(np.int64), Subject=df["Subject"].astype(str))
    assert _uses_fast_path(monkeypatch, formula, df2)
    assert_same_design(build_design(formula, df2), _general(formula, df2))


@pytest.mark.parametrize(
    ("formula", "change"),
    [
        ("y ~ x + (1 | g)", lambda d: d.assign(x=d["x"].where(d.index % 7 != 0))),  # missing
        ("y ~ x + (1 | g)", lambda d: d.assign(g=d["g"].where(d.index % 7 != 0))),
        ("y ~ x + (1 | gs)", lambda d: d.assign(gs=d["gs"].where(d.index % 7 != 0))),
        ("y ~ x + (1 | b)", lambda d: d.assign(b=d["x"] > 0)),  # boolean grouping
        ("y ~ b + (1 | g)", lambda d: d.assign(b=d["x"] > 0)),  # boolean fixed effect
        ("y ~ x + (1 | go)", lambda d: d.assign(go=d["gs"].astype(object).where(d.x > 1))),
        ("y ~ x + (1 | go)", lambda d: d.assign(go=[("a" if v > 0 else 1) for v in d.x])),
        ("y ~ f + (1 | g)", lambda d: d.assign(f=d["gs"].astype("category").cat.as_ordered())),
        ("y ~ x + f:x + (1 | g)", lambda d: d.assign(f=d["gs"].astype(object))),
        ("y ~ gs + (1 | g)", lambda d: d.assign(gs=d["gs"].where(d.index % 7 != 0))),
        ("cbind(m, nt - m) ~ x + (1 | g)", lambda d: d.assign(m=d["m"] + 0.5)),  # warns
        ("cbind(m, nt - m) ~ x + (1 | g)", lambda d: d.assign(m=d["m"].where(d.x > 0))),
        ("y ~ x + (1 | g)", lambda d: d.assign(x=d["x"].astype("Float64"))),
    ],
)
def test_general_path_where_the_fast_one_does_not_apply(formula, change, monkeypatch):
    df = change(_frame())
    assert not _uses_fast_path(monkeypatch, formula, df)
    assert_same_design(build_design(formula, df), _general(formula, df))


@pytest.mark.parametrize(
    "formula",
    [
        "np.log(y + 10) ~ x + (1 | g)",
        "y ~ np.log(k + 1) + (1 | g)",
        "y ~ I(x**2) + (1 | g)",
        "y ~ x + (1 | g:gi)",
        "y ~ x + (1 | g/gi)",
        "y ~ x + offset(o) + (1 | g)",
    ],
)
def test_formulas_for_the_general_path(formula):
    assert _fast_plan(split_formula(formula)) is None


@pytest.mark.parametrize("formula", ["y ~ x + (g | gi)", "y ~ x + (0 + g | gi)"])
def test_factors_in_the_effects_take_the_general_path(formula, monkeypatch):
    df = _frame()
    assert not _uses_fast_path(monkeypatch, formula, df)
    assert_same_design(build_design(formula, df), _general(formula, df))


def test_unused_categories_are_dropped_like_the_general_path():
    df = _frame()
    df = df[df["g"] != "c"]  # 'c' and 'z' unused now
    formula = "y ~ x + (x | g)"
    d = build_design(formula, df)
    assert list(d.terms[0].levels) == ["a", "b", "d", "e", "f"]
    assert_same_design(d, _general(formula, df))


def test_errors_come_from_the_general_path():
    from mixedmodels.errors import DataError, GroupingError, WeightsError

    df = _frame()
    with pytest.raises(DataError, match="infinite"):
        build_design("y ~ x + (1 | g)", df.assign(x=df["x"].where(df.index != 100, np.inf)))
    with pytest.raises(GroupingError, match="only 1 level"):
        build_design("y ~ x + (1 | c)", df.assign(c="a"))
    with pytest.raises(WeightsError, match="negative"):
        build_design("y ~ x + (1 | g)", df, weights=-df["w"].to_numpy())
    with pytest.raises(DataError, match="not in the data"):
        build_design("y ~ xx + (1 | g)", df)
    with pytest.raises(GroupingError, match="levels for"):
        build_design("y ~ x + (1 | r)", df.assign(r=np.arange(len(df))))
    with pytest.raises(DataError, match=r"'gs' is used as a factor .* only one level"):
        build_design("y ~ gs + (1 | g)", df.assign(gs="p"))
    with pytest.raises(DataError, match="failures must not be negative"):
        build_design("cbind(m, nt - m) ~ x + (1 | g)", df.assign(nt=df["m"] - 1))
    with pytest.raises(DataError, match="factor with 4 levels"):
        build_design("gs ~ x + (1 | g)", df, factor_response=True)
    with pytest.raises(DataError, match="'gs' must be numeric"):
        build_design("gs ~ x + (1 | g)", df)


def test_frame_is_a_snapshot_of_the_data():
    """The design's frame is made on first use from the data as it was when the design was
    built, even if the caller changes the data in between."""
    df = _frame()
    d = build_design("y ~ x + (1 | g)", df)
    before = df[["y", "x", "g"]].copy()
    df.loc[df.index[0], "x"] = 1e6
    df["y"] = 0.0
    frame = d.frame
    assert frame is not None
    assert list(frame.columns) == ["y", "x", "g"]
    np.testing.assert_array_equal(frame["x"].to_numpy(), before["x"].to_numpy())
    np.testing.assert_array_equal(frame["y"].to_numpy(), before["y"].to_numpy())
    assert list(frame["g"].cat.categories) == list("abcdef")
    assert d.frame is frame  # made once


def test_parsed_formula_is_cached():
    formula = "Reaction ~ Days + (Days | Subject)"
    assert split_formula(formula) is split_formula(formula)
