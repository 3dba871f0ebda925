"""Tests of mixedmodels.formula.terms: splitting a formula into response, fixed part and
random-effects terms, with lme4's expansion of ``||`` and ``/``.

The expansion is compared with lme4's ``findbars`` / ``nobars`` (recorded by
``tests/fixtures/model_matrix/make_model_matrix_fixtures.R``).
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any

import pytest

from mixedmodels.errors import FormulaError
from mixedmodels.formula.parser import parse_formula
from mixedmodels.formula.terms import FormulaSpec, RandomTermSpec, render, split_formula

FIXTURE = Path(__file__).parents[1] / "fixtures" / "model_matrix" / "model_matrix_cases.json"


@functools.cache
def findbars_cases() -> list[dict[str, Any]]:
    with open(FIXTURE) as fh:
        return json.load(fh)["findbars"]


def squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


# ---------------------------------------------------------------------------------------------
# against lme4


@pytest.mark.parametrize("case", findbars_cases(), ids=lambda c: c["formula"])
def test_bars_match_lme4_findbars(case: dict[str, Any]) -> None:
    spec = split_formula(case["formula"])
    ours = [f"{t.effects} | {t.group_name}" for t in spec.random]
    assert [squash(b) for b in ours] == [squash(b) for b in case["bars"]]


@pytest.mark.parametrize("case", findbars_cases(), ids=lambda c: c["formula"])
def test_fixed_part_matches_lme4_nobars(case: dict[str, Any]) -> None:
    spec = split_formula(case["formula"])
    assert squash(f"{spec.response} ~ {spec.fixed}") == squash(case["nobars"])


def test_enough_findbars_cases() -> None:
    assert len(findbars_cases()) >= 15


# ---------------------------------------------------------------------------------------------
# the expansion in detail


def test_simple_formula() -> None:
    spec = split_formula("Reaction ~ Days + (Days | Subject)")
    assert isinstance(spec, FormulaSpec)
    assert spec.source == "Reaction ~ Days + (Days | Subject)"
    assert spec.response == "Reaction"
    assert spec.fixed == "Days"
    assert spec.offsets == ()
    assert spec.random == (
        RandomTermSpec(
            effects="Days", factors=("Subject",), group_name="Subject", source="Days | Subject"
        ),
    )


@pytest.mark.parametrize(
    ("formula", "expected"),
    [
        ("y ~ (x || g)", [("1", ("g",)), ("0 + x", ("g",))]),
        ("y ~ (1 + x || g)", [("1", ("g",)), ("0 + x", ("g",))]),
        ("y ~ (0 + x || g)", [("0 + x", ("g",))]),
        ("y ~ (x - 1 || g)", [("0 + x", ("g",))]),
        ("y ~ (1 || g)", [("1", ("g",))]),
        ("y ~ (f || g)", [("1", ("g",)), ("0 + f", ("g",))]),
        ("y ~ (0 + f || g)", [("0 + f", ("g",))]),
        ("y ~ (x + z || g)", [("1", ("g",)), ("0 + x", ("g",)), ("0 + z", ("g",))]),
        ("y ~ (np.log(x) || g)", [("1", ("g",)), ("0 + np.log(x)", ("g",))]),
        (
            "y ~ (x || g:h)",
            [("1", ("g", "h")), ("0 + x", ("g", "h"))],
        ),
        (
            "y ~ (x || g/h)",
            [
                ("1", ("h", "g")),
                ("1", ("g",)),
                ("0 + x", ("h", "g")),
                ("0 + x", ("g",)),
            ],
        ),
    ],
)
def test_double_bar_expansion(formula: str, expected: list[tuple[str, tuple[str, ...]]]) -> None:
    spec = split_formula(formula)
    assert [(t.effects, t.factors) for t in spec.random] == expected
    # every expanded term remembers the term as written
    source = formula[formula.index("(") + 1 : formula.rindex(")")]
    assert {t.source for t in spec.random} == {source}


@pytest.mark.parametrize(
    ("group", "expected"),
    [
        ("g", [(("g",), "g")]),
        ("g:h", [(("g", "h"), "g:h")]),
        ("g/h", [(("h", "g"), "h:g"), (("g",), "g")]),
        ("(g/h)", [(("h", "g"), "h:g"), (("g",), "g")]),
        ("g/h/k", [(("k", "h", "g"), "k:(h:g)"), (("h", "g"), "h:g"), (("g",), "g")]),
        (
            "a/b/c/d",
            [
                (("d", "c", "b", "a"), "d:(c:(b:a))"),
                (("c", "b", "a"), "c:(b:a)"),
                (("b", "a"), "b:a"),
                (("a",), "a"),
            ],
        ),
        ("a/b:c", [(("b", "c", "a"), "b:c:a"), (("a",), "a")]),
        ("a:b/c", [(("c", "a", "b"), "c:(a:b)"), (("a", "b"), "a:b")]),
        ("`my g`", [(("my g",), "my g")]),
        ("`my g`:h", [(("my g", "h"), "my g:h")]),
    ],
)
def test_grouping_factor_expansion(group: str, expected: list[tuple[tuple[str, ...], str]]) -> None:
    spec = split_formula(f"y ~ x + (1 | {group})")
    assert [(t.factors, t.group_name) for t in spec.random] == expected
    assert all(t.effects == "1" for t in spec.random)


def test_grouping_variables_in_order_of_appearance() -> None:
    spec = split_formula("y ~ (x | g) + (1 | h/g) + (1 | k:g) + (1 | h)")
    assert spec.grouping_variables == ("g", "h", "k")


def test_several_terms_keep_findbars_order() -> None:
    spec = split_formula("y ~ (1 | h) + x + (x | g) + z + (0 + z | g)")
    assert [(t.effects, t.group_name) for t in spec.random] == [
        ("1", "h"),
        ("x", "g"),
        ("0 + z", "g"),
    ]
    assert spec.fixed == "x + z"


@pytest.mark.parametrize(
    ("formula", "fixed"),
    [
        ("y ~ (1 | g)", "1"),
        ("y ~ 1 + (1 | g)", "1"),
        ("y ~ 0 + (1 | g)", "0"),
        ("y ~ x + (1 | g)", "x"),
        ("y ~ x - 1 + (1 | g)", "x - 1"),
        ("y ~ -1 + x + (1 | g)", "-1 + x"),
        ("y ~ x + -1 + (1 | g)", "x - 1"),
        ("y ~ x - -1 + (1 | g)", "x + 1"),
        ("y ~ x + (1 | g) + 0", "x + 0"),
        ("y ~ x + (1 | g) - 1", "x - 1"),
        # lme4's nobars() turns this into y ~ 1 (keeping the intercept); R's formula semantics,
        # which we follow, remove it
        ("y ~ (1 | g) - 1", "-1"),
        ("y ~ x * f + (1 | g)", "x * f"),
        ("y ~ x:f + (1 | g)", "x:f"),
        ("y ~ (x + z)^2 + (1 | g)", "(x + z)^2"),
        ("y ~ (x + z)**2 + (1 | g)", "(x + z)^2"),
        ("y ~ x - (z + w) + (1 | g)", "x - (z + w)"),
        ("y ~ np.log(x) + I(x**2) + (1 | g)", "np.log(x) + I(x**2)"),
        ("y ~ f / x + (1 | g)", "f / x"),
        # R's x %in% f is the term x:f
        ("y ~ x %in% f + (1 | g)", "x:f"),
        ("y ~ -x + (1 | g)", "-x"),
    ],
)
def test_fixed_part(formula: str, fixed: str) -> None:
    assert split_formula(formula).fixed == fixed


@pytest.mark.parametrize(
    ("formula", "response"),
    [
        ("y ~ x", "y"),
        ("np.log(y) ~ x", "np.log(y)"),
        ("I(y / 2) ~ x", "I(y / 2)"),
        ("`my y` ~ x", "`my y`"),
        ("~ x", None),
    ],
)
def test_response(formula: str, response: str | None) -> None:
    assert split_formula(formula).response == response


def test_offsets_are_collected() -> None:
    spec = split_formula("y ~ x + offset(np.log(t)) + (1 | g) + offset( z )")
    assert spec.offsets == ("np.log(t)", "z")
    assert spec.fixed == "x"


def test_only_offset_leaves_intercept() -> None:
    spec = split_formula("y ~ offset(z) + (1 | g)")
    assert spec.fixed == "1"
    assert spec.offsets == ("z",)


@pytest.mark.parametrize(
    "text",
    [
        "x",
        "x + z",
        "x - 1",
        "x * f",
        "x:f",
        "f / x",
        "(x + z)^2",
        "np.log(x) + I(x**2)",
        "-x",
        "`my var` + x",
        "{x + 1}",
        "0 + x + z",
    ],
)
def test_render_round_trip(text: str) -> None:
    node = parse_formula(f"~ {text}").rhs
    assert render(node) == text
    # rendering is stable
    assert render(parse_formula(f"~ {render(node)}").rhs) == text


def test_render_with_renamed_variables() -> None:
    node = parse_formula("~ o * x + o:z + np.log(o)").rhs
    assert render(node, {"o": "C(o, contr.poly)"}) == (
        "C(o, contr.poly) * x + C(o, contr.poly):z + np.log(o)"
    )


# ---------------------------------------------------------------------------------------------
# errors found while splitting (the parser accepted the text)

TERM_ERRORS = [
    ("bar_outside_parentheses", "y ~ x + 1 | g", 4, "must be enclosed in parentheses"),
    ("bar_at_top", "y ~ 1 | g", 4, "must be enclosed in parentheses"),
    ("subtract_bar_term", "y ~ x - (1 | g)", 8, "cannot be subtracted"),
    ("bar_in_interaction", "y ~ x:(1 | g)", 7, "must be added to the formula with '+'"),
    ("bar_in_product", "y ~ x * (1|g)", 9, "must be added to the formula with '+'"),
    ("bar_powered", "y ~ x + (1 | g)^2", 9, "must be added to the formula with '+'"),
    ("negated_bar", "y ~ -(1 | g)", 6, "must be added to the formula with '+'"),
    ("bar_in_parenthesised_sum", "y ~ (x + (1 | g))", 10, "must be added to the formula"),
    ("bar_in_response", "(1 | g) ~ x", 1, "belong on the right of '~'"),
    ("crossed_with_star", "y ~ x + (1 | a*b)", 13, "(1 | a) + (1 | b)"),
    ("crossed_with_plus", "y ~ x + (1 | g + h)", 13, "(1 | g) + (1 | h)"),
    ("call_as_group", "y ~ (1 | np.log(g))", 9, "add the grouping variable to the data"),
    ("number_as_group", "y ~ (1 | 1)", 9, "cannot use '1' as a grouping factor"),
    ("power_as_group", "y ~ (1 | g^2)", 9, "cannot use 'g^2' as a grouping factor"),
    ("subtract_offset", "y ~ x - offset(z) + (1 | g)", 8, "an offset cannot be subtracted"),
    ("double_bar_no_effects", "y ~ x + (0 || g)", 9, "the random-effects term has no effects"),
]


@pytest.mark.parametrize(
    ("formula", "position", "words"),
    [pytest.param(f, p, w, id=i) for i, f, p, w in TERM_ERRORS],
)
def test_term_error_position_and_message(formula: str, position: int, words: str) -> None:
    with pytest.raises(FormulaError) as info:
        split_formula(formula)
    err = info.value
    assert words in err.reason
    assert err.position == position
    assert err.formula == formula
    assert str(err).split("\n")[2] == "  " + " " * position + "^"


def test_crossed_factor_message_names_the_whole_group() -> None:
    with pytest.raises(FormulaError, match=r"cannot use 'a\*b' as a grouping factor"):
        split_formula("y ~ x + (1 | a*b)")


def test_doubly_parenthesised_bar_is_accepted_like_lme4() -> None:
    spec = split_formula("y ~ x + ((1 | g))")
    assert [t.group_name for t in spec.random] == ["g"]


def test_syntax_errors_come_from_the_parser() -> None:
    with pytest.raises(FormulaError, match="unbalanced") as info:
        split_formula("y ~ (x + (1 | g)")
    assert info.value.position == 4
