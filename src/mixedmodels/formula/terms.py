"""Split a parsed lme4 formula into its response, fixed part and random-effects terms.

This follows lme4's ``findbars``/``expandDoubleVerts``/``expandSlash``:

* ``(x || g)`` becomes ``(1 | g) + (0 + x | g)``, one term per formula term of ``x``;
* ``(1 | a/b)`` becomes ``(1 | b:a) + (1 | a)``, and ``(1 | a/b/c)`` becomes
  ``(1 | c:(b:a)) + (1 | b:a) + (1 | a)`` (innermost first, with lme4's names);
* ``(1 | a:b)`` groups by the observed combinations of ``a`` and ``b``.

The fixed part is everything that is not a bar term, re-rendered as a formulaic formula.
``offset(expr)`` terms in the fixed part are collected separately.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass

from mixedmodels.errors import FormulaError
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

__all__ = ["FormulaSpec", "RandomTermSpec", "render", "split_formula"]


@dataclass(frozen=True)
class RandomTermSpec:
    """One random-effects term ``(effects | group)`` after expansion.

    Attributes
    ----------
    effects
        Formula (formulaic syntax) of the columns that vary by group, e.g. ``"1 + Days"``.
    factors
        The grouping variables; more than one means their interaction (observed combinations),
        with levels ordered lexicographically by the variables' level codes in this order.
    group_name
        The grouping factor's name as lme4 prints it, e.g. ``"Subject"`` or ``"cask:batch"``.
    source
        The term as written in the formula (before expansion), for messages.
    """

    effects: str
    factors: tuple[str, ...]
    group_name: str
    source: str


@dataclass(frozen=True)
class FormulaSpec:
    """The parts of a mixed-model formula.

    Attributes
    ----------
    source
        The formula as given.
    response
        The response expression (formulaic syntax), or ``None`` for a one-sided formula.
    fixed
        The fixed-effects formula (formulaic syntax, right-hand side only).
    random
        The random-effects terms, in lme4's ``findbars`` order (before lme4 reorders them by
        number of levels).
    offsets
        Expressions given as ``offset(expr)`` in the fixed part.
    """

    source: str
    response: str | None
    fixed: str
    random: tuple[RandomTermSpec, ...]
    offsets: tuple[str, ...]

    @property
    def grouping_variables(self) -> tuple[str, ...]:
        """Every variable that appears as (part of) a grouping factor, in order of appearance."""
        seen: dict[str, None] = {}
        for term in self.random:
            for f in term.factors:
                seen.setdefault(f, None)
        return tuple(seen)


_PRECEDENCE = {"|": 1, "||": 1, "+": 2, "-": 2, "*": 3, "/": 3, "%in%": 4, ":": 5, "^": 7}


def render(node: Node, names: Mapping[str, str] | None = None) -> str:
    """Render a syntax tree back to formula text (formulaic syntax).

    ``names`` maps bare variable names to replacement text (used to give ordered categoricals
    polynomial contrasts); calls such as ``np.log(x)`` are reproduced verbatim.
    """
    names = names or {}
    if isinstance(node, Name):
        return names.get(node.text, node.text)
    if isinstance(node, Number | Call):
        return node.text
    if isinstance(node, Paren):
        return f"({render(node.inner, names)})"
    if isinstance(node, Unary):
        return f"{node.op}{render(node.operand, names)}"
    if isinstance(node, Binary):
        # R's `a %in% b` is the term a:b (formulaic reads %in% as nesting, like a/b)
        op = ":" if node.op == "%in%" else node.op
        sep = "" if op in (":", "^") else " "
        return f"{render(node.left, names)}{sep}{op}{sep}{render(node.right, names)}"
    raise TypeError(f"unknown node {node!r}")  # pragma: no cover


def _additive_items(node: Node, sign: str = "+") -> list[tuple[str, Node]]:
    """Flatten a chain of binary ``+``/``-`` into (sign, item) pairs, left to right."""
    if isinstance(node, Binary) and node.op in ("+", "-"):
        left = _additive_items(node.left, sign)
        right_sign = node.op if sign == "+" else ("-" if node.op == "+" else "+")
        return left + _additive_items(node.right, right_sign)
    if isinstance(node, Unary) and node.op == "-" and isinstance(node.operand, Number):
        return [("-" if sign == "+" else "+", node.operand)]
    if isinstance(node, Unary) and node.op == "+":
        return _additive_items(node.operand, sign)
    return [(sign, node)]


def _find_bar(node: Node) -> Binary | None:
    if isinstance(node, Binary):
        if node.op in ("|", "||"):
            return node
        return _find_bar(node.left) or _find_bar(node.right)
    if isinstance(node, Paren):
        return _find_bar(node.inner)
    if isinstance(node, Unary):
        return _find_bar(node.operand)
    return None


def _unparen(node: Node) -> Node:
    while isinstance(node, Paren):
        node = node.inner
    return node


def _group_chain(parsed: ParsedFormula, node: Node) -> list[tuple[str, ...]]:
    """The grouping expression as a slash chain of interactions: ``a/b:c`` -> [(a,), (b, c)]."""
    node = _unparen(node)
    if isinstance(node, Binary) and node.op == "/":
        return _group_chain(parsed, node.left) + _group_chain(parsed, node.right)
    return [_interaction(parsed, node)]


def _interaction(parsed: ParsedFormula, node: Node) -> tuple[str, ...]:
    node = _unparen(node)
    if isinstance(node, Name):
        text = node.text
        if text.startswith("`") and text.endswith("`"):
            text = text[1:-1]
        return (text,)
    if isinstance(node, Binary) and node.op == ":":
        return _interaction(parsed, node.left) + _interaction(parsed, node.right)
    what = parsed.text(node)
    hint = ""
    if isinstance(node, Binary) and node.op in ("*", "+"):
        a, b = parsed.text(node.left), parsed.text(node.right)
        hint = f"; for crossed factors write separate terms, e.g. (1 | {a}) + (1 | {b})"
    elif isinstance(node, Call):
        hint = "; add the grouping variable to the data as a column and name it here"
    raise FormulaError(
        f"cannot use {what!r} as a grouping factor: give a column name, an interaction a:b "
        f"or a nesting a/b{hint}",
        parsed.source,
        node.start,
    )


def _nested_terms(chain: list[tuple[str, ...]]) -> list[tuple[tuple[str, ...], str]]:
    """lme4's ``expandSlash``: innermost term first, named like ``c:(b:a)``."""
    out: list[tuple[tuple[str, ...], str]] = []
    factors: tuple[str, ...] = ()
    name = ""
    for k, inter in enumerate(chain):
        piece = ":".join(inter)
        if k == 0:
            factors, name = inter, piece
        else:
            wrapped = f"({name})" if ":" in name else name
            factors = inter + factors
            name = f"{piece}:{wrapped}"
        out.append((factors, name))
    return list(reversed(out))


def _effects_terms(effects: str, parsed: ParsedFormula, node: Node) -> tuple[bool, list[str]]:
    """Intercept flag and the formula terms of a random-effects expression (for ``||``)."""
    from mixedmodels.formula.design import formulaic_formula

    try:
        formula = formulaic_formula(effects)
    except Exception as exc:  # formulaic raises its own parser errors
        raise FormulaError(
            f"cannot read the random effects {effects!r}: {exc}", parsed.source, node.start
        ) from None
    terms = [str(t) for t in formula]
    intercept = "1" in terms
    return intercept, [t for t in terms if t != "1"]


def split_formula(formula: str) -> FormulaSpec:
    """Parse an lme4-style formula and expand its random-effects terms.

    The result depends on the text alone and is immutable, so it is cached (by the text).

    Parameters
    ----------
    formula
        E.g. ``"Reaction ~ Days + (Days | Subject)"``.

    Returns
    -------
    FormulaSpec

    Raises
    ------
    FormulaError
        If the formula is malformed, a bar term is not enclosed in parentheses or is combined
        with other operators, or a grouping factor is not a column name or interaction.
    """
    if isinstance(formula, str):
        return _split_formula_cached(formula)
    return _split_formula(formula)


@functools.lru_cache(maxsize=256)
def _split_formula_cached(formula: str) -> FormulaSpec:
    return _split_formula(formula)


def _split_formula(formula: str) -> FormulaSpec:
    parsed = parse_formula(formula)
    response = None
    if parsed.lhs is not None:
        bar = _find_bar(parsed.lhs)
        if bar is not None:
            raise FormulaError(
                "random-effects terms belong on the right of '~'", parsed.source, bar.start
            )
        response = render(parsed.lhs)

    fixed_items: list[tuple[str, Node]] = []
    random: list[RandomTermSpec] = []
    offsets: list[str] = []
    for sign, item in _additive_items(parsed.rhs):
        while isinstance(item, Paren) and isinstance(item.inner, Paren):
            item = item.inner  # ((1 | g)) is (1 | g), as in lme4's findbars
        inner = item.inner if isinstance(item, Paren) else None
        if isinstance(inner, Binary) and inner.op in ("|", "||"):
            if sign == "-":
                raise FormulaError(
                    "a random-effects term cannot be subtracted", parsed.source, item.start
                )
            random.extend(_expand_bar(parsed, inner))
            continue
        bar = _find_bar(item)
        if bar is not None:
            if item is bar:
                raise FormulaError(
                    "random-effects terms must be enclosed in parentheses, e.g. (1 | g)",
                    parsed.source,
                    bar.start,
                )
            raise FormulaError(
                "a random-effects term (… | g) must be added to the formula with '+', "
                "not combined with other operators or nested in parentheses",
                parsed.source,
                bar.start,
            )
        if isinstance(item, Call) and item.text.startswith("offset("):
            if sign == "-":
                raise FormulaError("an offset cannot be subtracted", parsed.source, item.start)
            offsets.append(item.text[len("offset(") : -1].strip())
            continue
        fixed_items.append((sign, item))

    fixed = _render_fixed(fixed_items)
    return FormulaSpec(
        source=formula,
        response=response,
        fixed=fixed,
        random=tuple(random),
        offsets=tuple(offsets),
    )


def _render_fixed(items: list[tuple[str, Node]]) -> str:
    if not items:
        return "1"
    parts: list[str] = []
    for k, (sign, node) in enumerate(items):
        text = render(node)
        if k == 0:
            parts.append(text if sign == "+" else f"-{text}")
        else:
            parts.append(f"{sign} {text}")
    return " ".join(parts)


def _expand_bar(parsed: ParsedFormula, bar: Binary) -> list[RandomTermSpec]:
    effects = render(bar.left)
    source = parsed.text(bar)
    chain = _group_chain(parsed, bar.right)
    groups = _nested_terms(chain)
    if bar.op == "|":
        effect_list = [effects]
    else:
        intercept, terms = _effects_terms(effects, parsed, bar.left)
        effect_list = (["1"] if intercept else []) + [f"0 + {t}" for t in terms]
        if not effect_list:
            raise FormulaError(
                "the random-effects term has no effects", parsed.source, bar.left.start
            )
    out: list[RandomTermSpec] = []
    # lme4 expands '||' first, then the slashes of each resulting term.
    for eff in effect_list:
        for factors, name in groups:
            out.append(RandomTermSpec(eff, factors, name, source))
    return out
