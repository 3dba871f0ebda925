"""Tests of mixedmodels.formula.design.build_design.

The fixed-effects model matrices are compared with R's ``model.matrix`` (after lme4's dropping of
rank-deficient columns) and the random-effects terms with ``lme4::lFormula()$reTrms``; both come
from ``tests/fixtures/model_matrix/make_model_matrix_fixtures.R``, which also writes the data so
that R and Python see identical values. The second half checks the errors raised on bad data.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import mixedmodels
from mixedmodels.errors import (
    DataError,
    FormulaError,
    GroupingError,
    MixedModelError,
    WeightsError,
)
from mixedmodels.formula.design import Design, build_design, r_column_name

FIXTURE = Path(__file__).parents[1] / "fixtures" / "model_matrix" / "model_matrix_cases.json"


# ---------------------------------------------------------------------------------------------
# reference data


@functools.cache
def reference() -> dict[str, Any]:
    with open(FIXTURE) as fh:
        return json.load(fh)


def frame_from_json(spec: dict[str, Any]) -> pd.DataFrame:
    """Rebuild the data frame the R script used (factors keep R's level order)."""
    out: dict[str, Any] = {}
    for name, values in spec["columns"].items():
        kind = spec["types"][name]
        if kind == "factor":
            fac = spec["factors"][name]
            out[name] = pd.Categorical(values, categories=fac["levels"], ordered=fac["ordered"])
        elif kind == "logical":
            out[name] = np.asarray(values, dtype=bool)
        elif kind == "integer":
            out[name] = np.asarray(values, dtype=np.int64)
        elif kind == "double":
            out[name] = np.array([float(v) for v in values])
        else:
            out[name] = np.asarray(values, dtype=object)
    df = pd.DataFrame(out)
    assert len(df) == spec["nrow"]
    return df


@functools.cache
def fixed_frame() -> pd.DataFrame:
    return frame_from_json(reference()["fixed"]["data"])


@functools.cache
def random_frame() -> pd.DataFrame:
    return frame_from_json(reference()["random"]["data"])


def _cases(part: str) -> dict[str, dict[str, Any]]:
    return {c["id"]: c for c in reference()[part]["cases"]}


FIXED_CASES = _cases("fixed")
RANDOM_CASES = _cases("random")

# Where we knowingly differ from R; keyed by (case id, aspect).
_BOOL_NAMES = "logical columns are named bTrue/bFalse (Python spelling), R names them bTRUE/bFALSE"
_F_COLON_G = (
    "formulaic codes f:g (with an intercept) as g + f:g contrasts, R's model.matrix gives "
    "all 6 cell indicators and lme4 then drops fhi:gtrt"
)
KNOWN_DIFFERENCES: dict[tuple[str, str], str] = {
    ("logical", "names"): _BOOL_NAMES,
    ("logical_colon_x", "names"): _BOOL_NAMES,
    ("f_colon_g", "names"): _F_COLON_G,
    ("f_colon_g", "values"): _F_COLON_G,
    ("f_plus_x_in_f", "names"): (
        "R orders the variables of an interaction by their first appearance in the formula "
        "(f + x:f gives flo:x); we keep the written order (x:flo)"
    ),
}


def _params(cases: dict[str, Any], aspect: str) -> list[Any]:
    out = []
    for cid in cases:
        reason = KNOWN_DIFFERENCES.get((cid, aspect))
        marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
        out.append(pytest.param(cid, id=cid, marks=marks))
    return out


@functools.cache
def fixed_design(cid: str) -> Design:
    case = FIXED_CASES[cid]
    return build_design(f"y ~ {case['py']} + (1 | grp)", fixed_frame())


def _r_matrix(case: dict[str, Any]) -> np.ndarray:
    return np.array([[float(v) for v in row] for row in case["X"]])


def _py_names(case: dict[str, Any], names: list[str]) -> list[str]:
    return [case["names"].get(n, n) for n in names]


# ---------------------------------------------------------------------------------------------
# 1. fixed effects vs R's model.matrix


def test_reference_file_has_the_expected_cases() -> None:
    assert len(FIXED_CASES) >= 40
    assert len(RANDOM_CASES) >= 15
    assert reference()["lme4_version"]


@pytest.mark.parametrize("cid", _params(FIXED_CASES, "names"))
def test_fixef_names_match_r(cid: str) -> None:
    case = FIXED_CASES[cid]
    d = fixed_design(cid)
    assert list(d.all_fixef_names) == _py_names(case, case["all_names"])
    assert list(d.fixef_names) == _py_names(case, case["kept_names"])
    assert list(d.dropped_fixef) == _py_names(case, case["dropped"])


@pytest.mark.parametrize("cid", _params(FIXED_CASES, "values"))
def test_fixef_matrix_matches_r(cid: str) -> None:
    case = FIXED_CASES[cid]
    d = fixed_design(cid)
    X_r = _r_matrix(case)
    kept = [case["all_names"].index(n) for n in case["kept_names"]]
    assert d.X.shape == (len(X_r), len(kept))
    np.testing.assert_allclose(d.X, X_r[:, kept], rtol=1e-12, atol=1e-12)
    assert d.fixed_columns == tuple(kept)


@pytest.mark.parametrize("cid", _params(FIXED_CASES, "space"))
def test_fixef_column_space_matches_r(cid: str) -> None:
    """Even where the parametrisation differs, X must span the same space as R's."""
    case = FIXED_CASES[cid]
    d = fixed_design(cid)
    X_r = _r_matrix(case)[:, [case["all_names"].index(n) for n in case["kept_names"]]]
    assert np.linalg.matrix_rank(d.X) == d.X.shape[1] == X_r.shape[1]
    both = np.column_stack([d.X, X_r])
    assert np.linalg.matrix_rank(both) == X_r.shape[1]


def test_rank_deficiency_is_reported_in_messages() -> None:
    d = fixed_design("rankdef_f_plus_s")
    assert d.dropped_fixef == ("sv", "sw")
    assert any("rank deficient" in m and "sv, sw" in m for m in d.messages)
    assert d.n_fixef == 3


def test_response_matches_data() -> None:
    d = fixed_design("x")
    np.testing.assert_array_equal(d.y, fixed_frame()["y"].to_numpy())
    assert d.response_name == "y"
    assert d.nobs == len(fixed_frame())
    assert d.n_dropped == 0
    assert d.messages == ()


def test_fixed_spec_rebuilds_x_on_new_data() -> None:
    d = fixed_design("x_times_f")
    again = np.asarray(d.fixed_spec.get_model_matrix(fixed_frame()), dtype=float)
    np.testing.assert_allclose(again[:, list(d.fixed_columns)], d.X)


@pytest.mark.parametrize(
    ("formulaic", "r"),
    [
        ("Intercept", "(Intercept)"),
        ("x", "x"),
        ("f[T.b]", "fb"),
        ("f[b]", "fb"),
        ("x:f[T.b]", "x:fb"),
        ("f[T.b]:g[T.y]", "fb:gy"),
        ("np.log(x)", "np.log(x)"),
        ("I(x[0] ** 2)", "I(x[0] ** 2)"),
    ],
)
def test_r_column_name(formulaic: str, r: str) -> None:
    assert r_column_name(formulaic) == r


def test_r_column_name_with_rename() -> None:
    rename = {"C(o, contr.poly)": "o"}
    assert r_column_name("C(o, contr.poly)[.L]", rename) == "o.L"
    assert r_column_name("x:C(o, contr.poly)[.Q]", rename) == "x:o.Q"


# ---------------------------------------------------------------------------------------------
# 2. random-effects terms vs lme4's reTrms


@functools.cache
def random_design(cid: str) -> Design:
    return build_design(f"y ~ 1 + {RANDOM_CASES[cid]['re']}", random_frame())


def dense_zt(d: Design) -> np.ndarray:
    """lme4's Zt (q x n): terms in order, within a term level-major then effect."""
    blocks = []
    n = d.nobs
    for t in d.terms:
        block = np.zeros((t.n_ranef, n))
        z = t.z_values()
        for s in range(t.n_effects):
            block[t.refs * t.n_effects + s, np.arange(n)] = z[s]
        blocks.append(block)
    return np.vstack(blocks)


@pytest.mark.parametrize("cid", list(RANDOM_CASES))
def test_random_terms_match_lme4(cid: str) -> None:
    case = RANDOM_CASES[cid]
    d = random_design(cid)
    assert [t.group_name for t in d.terms] == case["group_names"]
    assert [list(t.effect_names) for t in d.terms] == case["cnms"]
    assert [t.nlevels for t in d.terms] == case["nl"]
    assert sum(t.n_effects * (t.n_effects + 1) // 2 for t in d.terms) == case["theta_length"]
    # levels, in lme4's order, of the grouping factor of every term
    for k, t in enumerate(d.terms):
        expected = case["levels"][case["flist_assign"][k] - 1]
        assert [str(v) for v in t.levels] == expected, t.group_name
    # Gp: cumulative number of random effects
    gp = np.concatenate([[0], np.cumsum([t.n_ranef for t in d.terms])])
    assert gp.tolist() == case["Gp"]


@pytest.mark.parametrize("cid", list(RANDOM_CASES))
def test_random_effects_matrix_matches_lme4(cid: str) -> None:
    case = RANDOM_CASES[cid]
    assert case["Zt"] is not None
    Zt_r = np.array([[float(v) for v in row] for row in case["Zt"]])
    np.testing.assert_allclose(dense_zt(random_design(cid)), Zt_r, rtol=0, atol=1e-14)


@pytest.mark.parametrize("cid", list(RANDOM_CASES))
def test_random_term_refs_and_shapes(cid: str) -> None:
    d = random_design(cid)
    for t in d.terms:
        assert t.refs.dtype == np.int32
        assert t.refs.shape == (d.nobs,)
        assert t.refs.min() == 0 and t.refs.max() == t.nlevels - 1
        # every level is observed (unused levels are dropped, as lme4 does)
        assert len(np.unique(t.refs)) == t.nlevels
        if t.z is None:
            assert t.effect_names == ("(Intercept)",)
        else:
            assert t.z.shape == (t.n_effects, d.nobs)


def test_grouping_levels_follow_categorical_order() -> None:
    """lme4 keeps the factor's level order; so must we (g's levels are not sorted)."""
    d = random_design("intercept")
    assert list(d.terms[0].levels) == ["g3", "g1", "g2", "g6", "g4", "g5"]


def test_numeric_grouping_levels_sort_numerically() -> None:
    d = random_design("numeric_group")
    assert list(d.terms[0].levels) == [2, 4, 7, 8, 10, 21, 33, 100]


def test_unused_grouping_levels_are_dropped() -> None:
    df = random_frame().copy()
    df["g"] = df["g"].cat.add_categories(["unused"])
    d = build_design("y ~ 1 + (1 | g)", df)
    assert "unused" not in list(d.terms[0].levels)
    assert d.terms[0].nlevels == 6


def test_term_spec_keeps_source() -> None:
    d = random_design("double_bar_nested")
    assert {t.spec.source for t in d.terms} == {"x || g/h"}
    assert [t.spec.factors for t in d.terms] == [("h", "g"), ("h", "g"), ("g",), ("g",)]


# ---------------------------------------------------------------------------------------------
# 4. errors on bad data


def small_frame(n: int = 12) -> pd.DataFrame:
    i = np.arange(n)
    return pd.DataFrame(
        {
            "y": np.linspace(1.0, 3.0, n),
            "x": (i % 5).astype(float),
            "f": pd.Categorical(np.array(["a", "b", "c"])[i % 3]),
            "grp": np.array(["p", "q", "r", "s"])[i % 4],
        }
    )


def test_errors_share_the_base_class() -> None:
    for cls in (DataError, FormulaError, GroupingError, WeightsError):
        assert issubclass(cls, MixedModelError)
    assert mixedmodels.MixedModelError is MixedModelError


@pytest.mark.parametrize(
    ("formula", "missing", "suggestion"),
    [
        ("y ~ xx + (1 | grp)", "xx", "x"),
        ("y ~ x + (1 | grpp)", "grpp", "grp"),
        ("yy ~ x + (1 | grp)", "yy", "y"),
        ("y ~ x + (xz | grp)", "xz", "x"),
        ("y ~ np.log(xx) + (1 | grp)", "xx", "x"),
        ("y ~ x + offset(xx) + (1 | grp)", "xx", "x"),
    ],
    ids=["fixed", "grouping", "response", "random_effect", "inside_call", "offset"],
)
def test_unknown_column_names_it_and_suggests(formula: str, missing: str, suggestion: str) -> None:
    with pytest.raises(DataError) as info:
        build_design(formula, small_frame())
    msg = str(info.value)
    assert f"column {missing!r}" in msg
    assert f"did you mean {suggestion!r}" in msg
    assert "columns: 'y', 'x', 'f', 'grp'" in msg


def test_unknown_column_without_close_match_has_no_suggestion() -> None:
    with pytest.raises(
        DataError, match="'qqqqq', used in the fixed effects, is not in the data"
    ) as info:
        build_design("y ~ qqqqq + (1 | grp)", small_frame())
    assert "did you mean" not in str(info.value)


def test_unknown_weights_column() -> None:
    with pytest.raises(DataError, match="column 'ww', used in weights, is not in the data"):
        build_design("y ~ x + (1 | grp)", small_frame(), weights="ww")


def test_non_numeric_response() -> None:
    df = small_frame()
    df["word"] = np.array(["u", "v"] * 6, dtype=object)
    with pytest.raises(DataError, match=r"response 'word' must be numeric"):
        build_design("word ~ x + (1 | grp)", df)


def test_categorical_response() -> None:
    with pytest.raises(DataError, match=r"response 'f' must be numeric.*category"):
        build_design("f ~ x + (1 | grp)", small_frame())


def test_boolean_response_is_coded_zero_one_like_lme4() -> None:
    """lme4 accepts a logical response (it is coerced to 0/1); so do we."""
    df = small_frame()
    df["ok"] = np.arange(12) % 3 == 0
    d = build_design("ok ~ x + (1 | grp)", df)
    assert d.y.dtype == np.float64
    np.testing.assert_array_equal(d.y, (np.arange(12) % 3 == 0).astype(float))


def test_grouping_factor_with_a_level_per_observation() -> None:
    df = small_frame()
    df["id"] = np.arange(12)
    with pytest.raises(GroupingError, match=r"grouping factor 'id' has 12 levels for 12 obs"):
        build_design("y ~ x + (1 | id)", df)


def test_grouping_factor_with_too_many_random_effects() -> None:
    df = small_frame()
    df["half"] = np.arange(12) // 2  # 6 levels x 2 effects = 12 random effects
    with pytest.raises(GroupingError, match=r"\(x \| half\) has 12 random effects"):
        build_design("y ~ x + (x | half)", df)


def test_grouping_factor_with_one_level() -> None:
    df = small_frame()
    df["one"] = "only"
    with pytest.raises(GroupingError, match=r"grouping factor 'one' in \(1 \| one\) has only 1"):
        build_design("y ~ x + (1 | one)", df)


def test_grouping_factor_with_one_level_after_dropping_missing() -> None:
    df = small_frame()
    df["two"] = ["a"] * 11 + ["b"]
    df.loc[11, "y"] = np.nan
    with pytest.raises(GroupingError, match="'two'"):
        build_design("y ~ x + (1 | two)", df)


def test_fixed_factor_with_one_level() -> None:
    df = small_frame()
    df["one"] = pd.Categorical(["only"] * 12, categories=["only", "never"])
    with pytest.raises(DataError, match=r"column 'one' is used as a factor.*only one level"):
        build_design("y ~ x + one + (1 | grp)", df)


def test_no_rows_left_after_dropping_missing_values() -> None:
    df = small_frame()
    df.loc[::2, "y"] = np.nan
    df.loc[1::2, "x"] = np.nan
    with pytest.raises(DataError, match=r"no rows left.*'y', 'x'"):
        build_design("y ~ x + (1 | grp)", df)


def test_empty_data() -> None:
    with pytest.raises(DataError, match="no rows"):
        build_design("y ~ x + (1 | grp)", small_frame().iloc[:0])


@pytest.mark.parametrize("column", ["y", "x"])
@pytest.mark.parametrize("value", [np.inf, -np.inf])
def test_infinite_values(column: str, value: float) -> None:
    df = small_frame()
    df.loc[3, column] = value
    with pytest.raises(DataError, match=rf"column {column!r} has 1 infinite value"):
        build_design("y ~ x + (1 | grp)", df)


def test_missing_values_are_dropped_counted_and_reported() -> None:
    df = small_frame()
    df.loc[[1, 5], "x"] = np.nan
    df.loc[7, "y"] = np.nan
    df.loc[[0, 1], "grp"] = None
    df["unused"] = np.nan  # not in the formula: must not drop anything
    d = build_design("y ~ x + (1 | grp)", df)
    assert d.n_dropped == 4
    assert d.nobs == 8
    assert list(d.row_index) == [2, 3, 4, 6, 8, 9, 10, 11]
    assert d.messages == ("4 rows with missing values dropped (8 used)",)
    np.testing.assert_array_equal(d.y, df["y"].to_numpy()[d.row_index])


def test_one_missing_value_message_is_singular() -> None:
    df = small_frame()
    df.loc[4, "y"] = np.nan
    d = build_design("y ~ x + (1 | grp)", df)
    assert d.messages == ("1 row with missing values dropped (11 used)",)


def test_missing_weight_drops_the_row() -> None:
    df = small_frame()
    w = np.ones(12)
    w[2] = np.nan
    d = build_design("y ~ x + (1 | grp)", df, weights=w)
    assert d.n_dropped == 1
    assert d.weights is not None and d.weights.shape == (11,)


@pytest.mark.parametrize(
    ("weights", "error", "pattern"),
    [
        (np.r_[-1.0, np.ones(11)], WeightsError, r"weights must not be negative \(1 negative"),
        (np.r_[0.0, 0.0, np.ones(10)], WeightsError, r"2 rows have weight 0"),
        (np.ones(11), WeightsError, r"weights must be .* one value per row .*12 rows.*\(11,\)"),
        (np.ones((12, 1)), WeightsError, r"weights must be .*1-D.*\(12, 1\)"),
        (np.array(["a"] * 12), WeightsError, r"weights \(<array>\) must be numeric"),
        (np.ones(12, dtype=bool), WeightsError, r"weights \(<array>\) must be numeric, not bool"),
        (np.r_[np.inf, np.ones(11)], WeightsError, r"weights must be finite"),
        ("f", WeightsError, r"weights \(f\) must be numeric"),
    ],
    ids=["negative", "zero", "misaligned", "two_d", "strings", "boolean", "infinite", "factor"],
)
def test_bad_weights(weights: Any, error: type[Exception], pattern: str) -> None:
    with pytest.raises(error, match=pattern):
        build_design("y ~ x + (1 | grp)", small_frame(), weights=weights)


def test_weights_from_column_and_array_agree() -> None:
    df = small_frame()
    df["w"] = np.arange(1.0, 13.0)
    a = build_design("y ~ x + (1 | grp)", df, weights="w")
    b = build_design("y ~ x + (1 | grp)", df, weights=df["w"].to_numpy())
    np.testing.assert_array_equal(a.weights, b.weights)
    assert (a.weights_name, b.weights_name) == ("w", "<array>")


@pytest.mark.parametrize(
    ("offset", "pattern"),
    [
        (np.zeros(13), r"offset must be .* one value per row"),
        (np.r_[np.inf, np.zeros(11)], r"offset must be finite"),
        (np.array(["a"] * 12), r"offset \(<array>\) must be numeric"),
    ],
    ids=["misaligned", "infinite", "strings"],
)
def test_bad_offset(offset: Any, pattern: str) -> None:
    with pytest.raises(WeightsError, match=pattern):
        build_design("y ~ x + (1 | grp)", small_frame(), offset=offset)


def test_offset_argument_and_offset_terms_add_up() -> None:
    df = small_frame()
    d = build_design(
        "y ~ x + offset(x) + offset(np.log(x + 1)) + (1 | grp)", df, offset=np.ones(12)
    )
    x = df["x"].to_numpy()
    np.testing.assert_allclose(d.offset, 1.0 + x + np.log(x + 1))
    assert d.formula.offsets == ("x", "np.log(x + 1)")
    assert d.fixef_names == ("(Intercept)", "x")


def test_offset_term_with_arithmetic() -> None:
    d = build_design("y ~ x + offset(2 * x) + (1 | grp)", small_frame())
    np.testing.assert_allclose(d.offset, 2 * small_frame()["x"].to_numpy())


@pytest.mark.parametrize(
    ("formula", "pattern"),
    [
        ("np.log(y - 2) ~ x + (1 | grp)", r"the response 'np.log\(y - 2\)' has \d+ non-finite"),
        ("y ~ np.log(x) + (1 | grp)", r"fixed-effects column 'np.log\(x\)' has 3 non-finite"),
        ("y ~ x + (np.log(x) | grp)", r"column 'np.log\(x\)' of the random-effects term"),
        ("y ~ x + offset(np.log(x)) + (1 | grp)", r"the offset 'np.log\(x\)' has 3 non-finite"),
    ],
    ids=["response", "fixed", "random", "offset"],
)
def test_transform_producing_non_finite_values(formula: str, pattern: str) -> None:
    with np.errstate(all="ignore"), pytest.raises(DataError, match=pattern):
        build_design(formula, small_frame())


def test_data_given_as_dict() -> None:
    df = small_frame()
    as_dict = {c: df[c].to_numpy() for c in df.columns}
    a = build_design("y ~ x + f + (1 | grp)", as_dict)
    b = build_design("y ~ x + f + (1 | grp)", df)
    np.testing.assert_array_equal(a.X, b.X)
    assert a.fixef_names == b.fixef_names == ("(Intercept)", "x", "fb", "fc")


def test_dict_with_unequal_lengths() -> None:
    with pytest.raises(DataError, match="cannot make a data frame from the mapping"):
        build_design("y ~ x + (1 | grp)", {"y": [1.0, 2.0], "x": [1.0], "grp": ["a", "b"]})


@pytest.mark.parametrize("data", [[[1, 2], [3, 4]], np.ones((4, 3)), "y,x"])
def test_data_of_the_wrong_type(data: Any) -> None:
    with pytest.raises(DataError, match="data must be a pandas DataFrame"):
        build_design("y ~ x + (1 | grp)", data)


def test_duplicated_column_names() -> None:
    df = small_frame()
    df = pd.concat([df, df[["x"]]], axis=1)
    with pytest.raises(DataError, match=r"duplicated column names: \['x'\]"):
        build_design("y ~ x + (1 | grp)", df)


def test_formula_without_response() -> None:
    with pytest.raises(FormulaError, match="no response"):
        build_design("~ x + (1 | grp)", small_frame())


def test_formula_without_random_effects() -> None:
    with pytest.raises(FormulaError, match=r"no random-effects term.*mixedmodels.lm"):
        build_design("y ~ x", small_frame())
    d = build_design("y ~ x", small_frame(), require_random=False)
    assert d.terms == ()
    assert d.fixef_names == ("(Intercept)", "x")


def test_formula_without_fixed_effects() -> None:
    d = build_design("y ~ 0 + (1 | grp)", small_frame())
    assert d.X.shape == (12, 0)
    assert d.fixef_names == ()
    assert d.fixed_spec is None


@pytest.mark.parametrize("transform", ["scale(x)", "center(x)", "poly(x, 2)"])
def test_stateful_transform_of_a_column_used_nowhere_else(transform: str) -> None:
    d = build_design(f"y ~ {transform} + (1 | grp)", small_frame())
    assert d.X.shape[0] == 12


@pytest.mark.parametrize("transform", ["scale(x)", "center(x)", "poly(x, 2)"])
def test_stateful_transform_of_a_column_also_used_elsewhere(transform: str) -> None:
    d = build_design(f"y ~ {transform} + (x | grp)", small_frame())
    assert d.X.shape[0] == 12
    assert np.all(np.isfinite(d.X))


def test_unreadable_fixed_part_message() -> None:
    with pytest.raises(FormulaError) as info:
        build_design("y ~ . + (1 | grp)", small_frame())
    assert "the the" not in str(info.value)


def test_random_term_without_columns() -> None:
    with pytest.raises(FormulaError, match=r"the random-effects term \(0 \| grp\) has no columns"):
        build_design("y ~ x + (0 | grp)", small_frame())


def test_removing_the_intercept_after_a_bar_term() -> None:
    """R's formula semantics: y ~ (1 | g) - 1 has no intercept (lme4's nobars keeps one)."""
    d = build_design("y ~ (1 | grp) - 1", small_frame())
    assert d.fixef_names == ()


def test_data_name_is_taken_from_attrs() -> None:
    df = small_frame()
    df.attrs["name"] = "toy"
    assert build_design("y ~ x + (1 | grp)", df).data_name == "toy"


def test_formulaic_errors_become_formula_errors() -> None:
    """An error inside formulaic surfaces as our FormulaError, naming the formula."""
    with pytest.raises(FormulaError) as info:
        build_design("y ~ np.nosuchfunction(x) + (1 | grp)", small_frame())
    assert "cannot build the fixed-effects model matrix from 'np.nosuchfunction(x)'" in str(
        info.value
    )
    assert info.value.formula == "y ~ np.nosuchfunction(x) + (1 | grp)"


@pytest.mark.parametrize(
    ("formula", "names"),
    [
        ("y ~ np.log(x + 1) + (1 | grp)", ("(Intercept)", "np.log(x + 1)")),
        ('y ~ C(f, Treatment("b")) + (1 | grp)', None),
        ("y ~ I((x - 1)**2) + (1 | grp)", ("(Intercept)", "I((x - 1) ** 2)")),
        ("y ~ {x + 1} + (1 | grp)", ("(Intercept)", "x + 1")),
        ("y ~ `x` + (1 | `grp`)", ("(Intercept)", "x")),
    ],
    ids=["np_log", "C_treatment", "I_square", "braces", "backquotes"],
)
def test_calls_evaluate(formula: str, names: tuple[str, ...] | None) -> None:
    d = build_design(formula, small_frame())
    assert d.X.shape[0] == 12
    if names is not None:
        assert d.fixef_names == names


def test_treatment_contrast_with_other_reference_level() -> None:
    """Like R's C(f, contr.treatment, base = 2): indicator columns for levels a and c."""
    df = small_frame()
    d = build_design('y ~ C(f, Treatment("b")) + (1 | grp)', df)
    assert [n[-1] for n in d.fixef_names[1:]] == ["a", "c"]
    f = df["f"].to_numpy()
    np.testing.assert_array_equal(d.X[:, 1:], np.column_stack([f == "a", f == "c"]))


@pytest.mark.parametrize(
    "formula",
    ["x", "0 + x", "x + z", "x * z", "(x + z + w)^2", "x:z + w - 1", "z + x + x:z:w"],
)
def test_numeric_fast_path_matches_formulaic(formula):
    """Products of numeric columns are built with numpy; names, order and values must be the
    ones formulaic gives."""
    from formulaic import model_matrix

    from mixedmodels.formula.design import _numeric_spec, _NumericMatrix

    rng = np.random.default_rng(3)
    frame = pd.DataFrame(
        {"x": rng.normal(size=20), "z": rng.integers(0, 5, 20), "w": rng.uniform(size=20)}
    )
    spec = _numeric_spec(formula, frame)
    assert spec is not None
    ours = _NumericMatrix(spec, frame)
    ref = model_matrix(formula, frame)
    assert list(ours.columns) == [str(c) for c in ref.columns]
    np.testing.assert_array_equal(np.asarray(ours), np.asarray(ref, dtype=float))


@pytest.mark.parametrize(
    "formula",
    ["x + f", "f + x + g", "0 + f", "0 + x + f + g", "f - 1 + s", "x * z + g", "1 + i + s"],
)
def test_factor_main_effects_match_formulaic(formula):
    """Main effects of unordered factors (categoricals of strings or numbers, string columns)
    are built with numpy too: treatment contrasts, or every level for the first factor of a
    model without an intercept. Names, order and values must be formulaic's, and new data
    must be coded with the fitted levels."""
    from formulaic import model_matrix

    from mixedmodels.formula.design import _numeric_spec, _NumericMatrix

    rng = np.random.default_rng(4)
    n = 30
    frame = pd.DataFrame(
        {
            "x": rng.normal(size=n),
            "z": rng.integers(0, 5, n),
            "f": pd.Categorical(rng.choice(list("cab"), n), categories=list("abcd")),
            "g": rng.choice(["lo", "mid", "hi"], n).astype(object),
            "s": rng.choice(["u", "v"], n),  # strings (dtype str, or object before pandas 3)
            "i": pd.Categorical(rng.choice([3, 1, 2], n)),
        }
    ).assign(f=lambda d: d["f"].cat.remove_unused_categories())
    spec = _numeric_spec(formula, frame)
    assert spec is not None and spec.factors
    ours = _NumericMatrix(spec, frame)
    ref = model_matrix(formula, frame)
    assert list(ours.columns) == [str(c) for c in ref.columns]
    np.testing.assert_array_equal(np.asarray(ours), np.asarray(ref, dtype=float))
    new = frame.iloc[[5, 0, 17]]
    np.testing.assert_array_equal(
        spec.get_model_matrix(new), np.asarray(ref.model_spec.get_model_matrix(new), dtype=float)
    )
    if "g" in formula:
        with pytest.raises(mixedmodels.DataError, match=r"column 'g' has levels .*'top'"):
            spec.get_model_matrix(new.assign(g=["lo", "top", "hi"]))


def test_numeric_fast_path_declines_factors_and_calls():
    from mixedmodels.formula.design import _numeric_spec

    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0], "f": ["a", "b", "a"], "b": [True, False, True]})
    assert _numeric_spec("x:f", frame) is None  # a factor in an interaction
    assert _numeric_spec("x + f:x", frame) is None
    o = frame.assign(f=pd.Categorical(frame["f"], ordered=True))  # polynomial contrasts
    assert _numeric_spec("x + f", o) is None
    assert _numeric_spec("x + f", frame.assign(f=["a", 1, "a"])) is None  # mixed objects
    assert _numeric_spec("x + b", frame) is None
    assert _numeric_spec("np.log(x)", frame) is None
    assert _numeric_spec("I(x**2)", frame) is None


def test_level_tuples_are_remembered_while_the_index_lives():
    import gc

    from mixedmodels.formula import design as D

    idx = pd.Index(["b", "a", "c"], dtype="str")
    first = D._level_tuple(idx)
    assert first == ("b", "a", "c") and D._level_tuple(idx) is first
    assert D._level_tuple(pd.Index(["b", "a", "c"])) is not first  # another Index: its own
    key = id(idx)
    del idx
    gc.collect()
    assert key not in D._LEVEL_TUPLES


def test_the_fast_specs_cache_tells_equal_levels_of_other_types_apart():
    from mixedmodels.formula import design as D

    terms = ((), ("f",))
    ints = D._numeric_spec_of(terms, {"f": pd.Index([1, 2, 3])})
    floats = D._numeric_spec_of(terms, {"f": pd.Index([1.0, 2.0, 3.0])})
    assert ints.column_names == ("Intercept", "f[T.2]", "f[T.3]")
    assert floats.column_names == ("Intercept", "f[T.2.0]", "f[T.3.0]")
    assert D._numeric_spec_of(terms, {"f": pd.Index([1, 2, 3])}) is ints  # cached


def test_unused_categories_dropped_only_when_there_are_some() -> None:
    """A categorical whose every category occurs is kept as it is (no copy); otherwise the
    unused categories go, as pandas' remove_unused_categories drops them (missing values
    stay missing)."""
    from mixedmodels.formula.design import _without_unused_categories

    s = pd.Series(pd.Categorical(["b", "a", "c", "a"], categories=["c", "b", "a"]))
    assert _without_unused_categories(s) is s
    t = pd.Series(pd.Categorical(["b", None, "b", "a"], categories=["c", "b", "a", "d"]))
    out = _without_unused_categories(t)
    pd.testing.assert_series_equal(out, t.cat.remove_unused_categories())
    assert list(out.cat.categories) == ["b", "a"] and out.isna().sum() == 1
    u = pd.Series(pd.Categorical([None, None], categories=["x"]))
    assert len(_without_unused_categories(u).cat.categories) == 0
