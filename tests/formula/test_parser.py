"""Tests of mixedmodels.formula.parser: the syntax tree, R's operator precedence, and the
positions reported in FormulaError for malformed formulas."""

from __future__ import annotations

import pytest

from mixedmodels.errors import FormulaError, MixedModelError
from mixedmodels.formula.parser import (
    Binary,
    Call,
    Name,
    Node,
    Number,
    Paren,
    ParsedFormula,
    Unary,
    parse_formula,
)


def sexpr(node: Node | None) -> str:
    """A compact, fully parenthesised rendering of a tree: shows how the parser grouped things."""
    if node is None:
        return "None"
    if isinstance(node, Name | Number | Call):
        return node.text
    if isinstance(node, Paren):
        return f"[{sexpr(node.inner)}]"
    if isinstance(node, Unary):
        return f"({node.op} {sexpr(node.operand)})"
    if isinstance(node, Binary):
        return f"({node.op} {sexpr(node.left)} {sexpr(node.right)})"
    raise TypeError(node)


def rhs(formula: str) -> str:
    return sexpr(parse_formula(formula).rhs)


# ---------------------------------------------------------------------------------------------
# well-formed formulas


@pytest.mark.parametrize(
    ("formula", "expected"),
    [
        # R's precedence, lowest first: ~, | (inside parentheses), + -, * /, %in%, :, unary -, ^
        ("y ~ a + b * c", "(+ a (* b c))"),
        ("y ~ a * b + c", "(+ (* a b) c)"),
        ("y ~ a * b:c", "(* a (: b c))"),
        ("y ~ a / b + c", "(+ (/ a b) c)"),
        ("y ~ a %in% b:c", "(%in% a (: b c))"),
        ("y ~ a * b %in% c", "(* a (%in% b c))"),
        ("y ~ a:b^2", "(: a (^ b 2))"),
        ("y ~ -a:b", "(: (- a) b)"),  # as in R, where -1:3 is (-1):3
        ("y ~ -a^2", "(- (^ a 2))"),  # as in R, where -2^2 is -4
        ("y ~ a^b^c", "(^ a (^ b c))"),  # right associative
        ("y ~ a - b - c", "(- (- a b) c)"),  # left associative
        ("y ~ a / b / c", "(/ (/ a b) c)"),
        ("y ~ a:b:c", "(: (: a b) c)"),
        ("y ~ (a + b)^2", "(^ [(+ a b)] 2)"),
        ("y ~ (a + b)**2", "(^ [(+ a b)] 2)"),  # Python's ** is R's ^
        ("y ~ x - 1", "(- x 1)"),
        ("y ~ 0 + x", "(+ 0 x)"),
        ("y ~ -1 + x", "(+ (- 1) x)"),
        ("y ~ x ++ z", "(+ x (+ z))"),
        ("y ~ x + (1 | g)", "(+ x [(| 1 g)])"),
        ("y ~ x + (x || g)", "(+ x [(|| x g)])"),
        ("y ~ (1 + x | g/h)", "[(| (+ 1 x) (/ g h))]"),
        ("y ~ (1 | g:h)", "[(| 1 (: g h))]"),
        ("y ~ (0 + x + z | g)", "[(| (+ (+ 0 x) z) g)]"),
    ],
)
def test_precedence_and_associativity(formula: str, expected: str) -> None:
    assert rhs(formula) == expected


@pytest.mark.parametrize(
    ("formula", "text"),
    [
        ('y ~ C(f, Treatment("b"))', 'C(f, Treatment("b"))'),
        ("y ~ C(f, Treatment('b'))", "C(f, Treatment('b'))"),
        ("y ~ np.log(x + 1)", "np.log(x + 1)"),
        ("y ~ I((x - 1)**2)", "I((x - 1)**2)"),
        ("y ~ {x + 1}", "{x + 1}"),
        ("y ~ {(x + 1) * 2}", "{(x + 1) * 2}"),
        ('y ~ C(f, levels=["b", "a", "c"])', 'C(f, levels=["b", "a", "c"])'),
        ("y ~ np.power(x, {2: 3}[2])", "np.power(x, {2: 3}[2])"),
        ('y ~ I("a)b")', 'I("a)b")'),  # a ')' inside a string closes nothing
        ("y ~ I('(')", "I('(')"),
        ('y ~ I("it\\"s")', 'I("it\\"s")'),  # escaped quote inside a string
        ("y ~ np.log (x)", "np.log (x)"),  # space before the argument list
        ("y ~ scale(x, with_mean=False)", "scale(x, with_mean=False)"),
    ],
)
def test_calls_are_kept_verbatim(formula: str, text: str) -> None:
    parsed = parse_formula(formula)
    assert isinstance(parsed.rhs, Call)
    assert parsed.rhs.text == text
    assert parsed.text(parsed.rhs) == text
    assert (parsed.rhs.start, parsed.rhs.end) == (4, len(formula))


def test_string_ending_in_escaped_backslash() -> None:
    parsed = parse_formula('y ~ I(x + len("a\\\\"))')
    assert isinstance(parsed.rhs, Call)


@pytest.mark.parametrize(
    ("formula", "names"),
    [
        ("y ~ `my var` + x", ["`my var`", "x"]),
        ("y ~ `a+b`:x", ["`a+b`", "x"]),
        ("y ~ my.var + .x + x_1 + x.1", ["my.var", ".x", "x_1", "x.1"]),
        ("y ~ café + x", ["café", "x"]),
    ],
)
def test_names(formula: str, names: list[str]) -> None:
    parsed = parse_formula(formula)
    found: list[str] = []

    def walk(node: Node) -> None:
        if isinstance(node, Name):
            found.append(node.text)
        elif isinstance(node, Binary):
            walk(node.left)
            walk(node.right)

    walk(parsed.rhs)
    assert found == names


@pytest.mark.parametrize("number", ["1", "0", "2.5", ".5", "1e-3", "1E+2", "10"])
def test_numbers(number: str) -> None:
    parsed = parse_formula(f"y ~ {number}")
    assert isinstance(parsed.rhs, Number)
    assert parsed.rhs.text == number


def test_one_sided_formula() -> None:
    parsed = parse_formula("~ x + z")
    assert parsed.lhs is None
    assert sexpr(parsed.rhs) == "(+ x z)"


def test_response_expression() -> None:
    parsed = parse_formula("np.log(y) + 1 ~ x")
    assert sexpr(parsed.lhs) == "(+ np.log(y) 1)"
    assert parsed.text(parsed.lhs) == "np.log(y) + 1"


def test_spans_cover_the_source() -> None:
    source = "Reaction ~ Days + (Days | Subject)"
    parsed = parse_formula(source)
    assert isinstance(parsed, ParsedFormula)
    assert parsed.source == source
    top = parsed.rhs
    assert isinstance(top, Binary) and top.op == "+"
    assert (top.start, top.end) == (11, len(source))
    assert parsed.text(top.left) == "Days"
    assert isinstance(top.right, Paren)
    assert parsed.text(top.right) == "(Days | Subject)"
    bar = top.right.inner
    assert isinstance(bar, Binary) and bar.op == "|"
    assert parsed.text(bar) == "Days | Subject"
    assert parsed.text(bar.right) == "Subject"


def test_whitespace_is_insignificant() -> None:
    assert rhs("y~x*z+(1|g)") == rhs("  y  ~  x * z  +  ( 1 | g )  ")


def test_nodes_are_immutable() -> None:
    node = parse_formula("y ~ x").rhs
    with pytest.raises(AttributeError):
        node.start = 3  # type: ignore[misc]


# ---------------------------------------------------------------------------------------------
# malformed formulas: the error names the problem and points at it

ERRORS = [
    # (id, formula, position, words in the message)
    ("empty", "", 0, "the formula is empty"),
    ("blank", "   ", 0, "the formula is empty"),
    ("unbalanced_open", "y ~ (x + (1 | g)", 4, "unbalanced '(': no matching ')'"),
    ("unbalanced_close", "y ~ x + (1 | g))", 15, "unbalanced ')': no matching '('"),
    ("unbalanced_close_first", "y ~ ) + x", 4, "unbalanced ')'"),
    ("unbalanced_call", "y ~ np.log(x", 10, "unbalanced '(': no matching ')'"),
    ("unbalanced_brace", "y ~ x + {x + 1", 8, "unbalanced '{': no matching '}'"),
    ("mismatched_bracket", 'y ~ C(f, Treatment("b"]))', 22, "unexpected ']'"),
    ("missing_tilde", "y x + (1 | g)", 2, "unexpected 'x'"),
    ("missing_tilde_at_end", "y + x", 5, "needs '~'"),
    ("nothing_after_tilde", "y ~", 2, "nothing follows '~'"),
    ("only_tilde", "~", 0, "nothing follows '~'"),
    ("two_tildes", "y ~ x ~ z", 6, "only one '~'"),
    ("trailing_plus", "y ~ x +", 7, "the formula ends where a term is expected"),
    ("trailing_star", "y ~ x * z *", 11, "the formula ends where a term is expected"),
    ("trailing_colon", "y ~ x:", 6, "the formula ends where a term is expected"),
    ("unknown_character", "y ~ x $ z", 6, "unexpected character '$'"),
    ("unknown_bracket", "y ~ x + [1]", 8, "unexpected character '['"),
    ("unknown_percent_op", "y ~ x %o% z", 6, "unknown %-operator"),
    ("unterminated_string", 'y ~ I("abc)', 6, "unterminated string literal"),
    ("unterminated_backquote", "y ~ `x", 4, "unterminated back-quoted name"),
    ("empty_parentheses", "y ~ x + ()", 9, "empty parentheses"),
    ("empty_bar_left", "y ~ x + ( | g)", 10, "the effects before '|' are missing"),
    ("empty_double_bar_left", "y ~ x + ( || g)", 10, "the effects before '||' are missing"),
    ("empty_bar_right", "y ~ x + (1 | )", 13, "the grouping factor after '|' is missing"),
    ("empty_double_bar_right", "y ~ x + (1 || )", 14, "the grouping factor after '||' is"),
    ("bar_at_end", "y ~ x + (1 |", 12, "the grouping factor after '|' is missing"),
    ("two_bars", "y ~ (1 | g | h)", 11, "only one '|' or '||'"),
    ("operator_before_bar", "y ~ 1 +| g", 7, "a term is expected here, not '|'"),
    ("missing_operator", "y ~ x z", 6, "unexpected 'z'; an operator such as '+' is missing"),
    ("missing_operator_paren", "y ~ x + (1|g)(1|h)", 13, "an operator such as '+' is missing"),
    ("unclosed_then_other", "y ~ (x + z ~ w", 11, "expected ')' but found '~'"),
    ("operator_first", "y ~ * x", 4, "a term is expected here, not '*'"),
]


@pytest.mark.parametrize(
    ("formula", "position", "words"),
    [pytest.param(f, p, w, id=i) for i, f, p, w in ERRORS],
)
def test_error_position_and_message(formula: str, position: int, words: str) -> None:
    with pytest.raises(FormulaError) as info:
        parse_formula(formula)
    err = info.value
    assert err.position == position
    assert err.formula == formula
    assert words in err.reason
    # the message shows the formula with a caret under the offending position
    lines = str(err).split("\n")
    assert lines[0] == f"{err.reason} (at position {position})"
    assert lines[1] == f"  {formula}"
    assert lines[2] == "  " + " " * position + "^"


def test_at_least_fifteen_error_cases() -> None:
    assert len(ERRORS) >= 15
    assert len({f for _, f, _, _ in ERRORS}) == len(ERRORS)


@pytest.mark.parametrize("value", [None, 3, b"y ~ x", ["y ~ x"]])
def test_non_string_formula(value: object) -> None:
    with pytest.raises(FormulaError, match="a formula must be a string, not") as info:
        parse_formula(value)  # type: ignore[arg-type]
    assert info.value.position is None
    assert info.value.formula is None


def test_formula_error_is_a_value_error_and_a_mixed_model_error() -> None:
    with pytest.raises(ValueError):
        parse_formula("y ~")
    with pytest.raises(MixedModelError):
        parse_formula("y ~")


def test_formula_error_without_position_names_the_formula() -> None:
    err = FormulaError("something is wrong", "y ~ x")
    assert str(err) == "something is wrong\n  in formula: y ~ x"
    assert FormulaError("plain").reason == "plain"
    assert str(FormulaError("plain")) == "plain"
