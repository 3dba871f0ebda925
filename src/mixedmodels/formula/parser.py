"""A parser for lme4-style model formulas.

The grammar is R's formula grammar restricted to what model formulas use, with R's operator
precedence (lowest first)::

    formula  := [expr] "~" expr
    expr     := sum (("|" | "||") sum)?          # a bar only makes sense inside parentheses
    sum      := product (("+" | "-") product)*
    product  := inop (("*" | "/") inop)*
    inop     := colon ("%in%" colon)*
    colon    := unary (":" unary)*
    unary    := ("-" | "+") unary | power
    power    := atom ("^" unary)?
    atom     := NAME | NUMBER | CALL | "(" expr ")"

A CALL is a name followed by a parenthesised argument list (``np.log(x)``, ``I(x**2)``,
``C(f, Treatment("b"))``), a ``{...}`` Python block, or a back-quoted name; its text is kept
verbatim and handed to formulaic, which evaluates it. Every node records its span in the source
so that errors can point at the offending position.
"""

from __future__ import annotations

from dataclasses import dataclass

from mixedmodels.errors import FormulaError

__all__ = [
    "Binary",
    "Call",
    "Name",
    "Node",
    "Number",
    "Paren",
    "ParsedFormula",
    "Unary",
    "parse_formula",
]


@dataclass(frozen=True)
class Node:
    """A node of the formula syntax tree; ``start:end`` is its span in the source text."""

    start: int
    end: int


@dataclass(frozen=True)
class Name(Node):
    text: str


@dataclass(frozen=True)
class Number(Node):
    text: str


@dataclass(frozen=True)
class Call(Node):
    text: str


@dataclass(frozen=True)
class Paren(Node):
    inner: Node


@dataclass(frozen=True)
class Unary(Node):
    op: str
    operand: Node


@dataclass(frozen=True)
class Binary(Node):
    op: str
    left: Node
    right: Node


@dataclass(frozen=True)
class ParsedFormula:
    """A parsed two-sided (or one-sided) formula.

    Attributes
    ----------
    source
        The formula text as given.
    lhs
        The response expression, or ``None`` for a one-sided formula.
    rhs
        The right-hand side expression.
    """

    source: str
    lhs: Node | None
    rhs: Node

    def text(self, node: Node) -> str:
        """The source text spanned by ``node``."""
        return self.source[node.start : node.end].strip()


@dataclass(frozen=True)
class _Token:
    kind: str  # "name", "number", "call", "op", "lparen", "rparen", "end"
    text: str
    start: int
    end: int


_OPERATORS = ("%in%", "||", "**", "~", "+", "-", "*", "/", ":", "^", "|")
_CLOSERS = {"(": ")", "[": "]", "{": "}"}


def _is_name_start(ch: str) -> bool:
    return ch.isalpha() or ch in "._"


def _is_name_char(ch: str) -> bool:
    return ch.isalnum() or ch in "._"


def _skip_balanced(source: str, pos: int) -> int:
    """Return the offset just past the bracket that closes the one at ``source[pos]``.

    Quotes are honoured, so a ``)`` inside a string literal does not close anything.
    """
    stack = [_CLOSERS[source[pos]]]
    i = pos + 1
    while i < len(source):
        ch = source[i]
        if ch in "\"'":
            j = i + 1
            while j < len(source) and source[j] != ch:
                j += 2 if source[j] == "\\" else 1
            if j >= len(source):
                raise FormulaError("unterminated string literal", source, i)
            i = j + 1
            continue
        if ch in _CLOSERS:
            stack.append(_CLOSERS[ch])
        elif ch in ")]}":
            if ch != stack[-1]:
                raise FormulaError(f"unexpected {ch!r}", source, i)
            stack.pop()
            if not stack:
                return i + 1
        i += 1
    raise FormulaError(
        f"unbalanced {source[pos]!r}: no matching {_CLOSERS[source[pos]]!r}", source, pos
    )


def _tokenize(source: str) -> list[_Token]:
    tokens: list[_Token] = []
    i = 0
    n = len(source)
    while i < n:
        ch = source[i]
        if ch.isspace():
            i += 1
            continue
        if _is_name_start(ch) and not (ch == "." and i + 1 < n and source[i + 1].isdigit()):
            j = i + 1
            while j < n and _is_name_char(source[j]):
                j += 1
            k = j
            while k < n and source[k] in " \t":
                k += 1
            if k < n and source[k] == "(":
                end = _skip_balanced(source, k)
                tokens.append(_Token("call", source[i:end], i, end))
                i = end
            else:
                tokens.append(_Token("name", source[i:j], i, j))
                i = j
            continue
        if ch.isdigit() or ch == ".":
            j = i
            while j < n and (source[j].isdigit() or source[j] == "."):
                j += 1
            if j < n and source[j] in "eE":
                k = j + 1
                if k < n and source[k] in "+-":
                    k += 1
                if k < n and source[k].isdigit():
                    j = k
                    while j < n and source[j].isdigit():
                        j += 1
            tokens.append(_Token("number", source[i:j], i, j))
            i = j
            continue
        if ch == "`":
            close = source.find("`", i + 1)
            if close == -1:
                raise FormulaError("unterminated back-quoted name", source, i)
            tokens.append(_Token("name", source[i : close + 1], i, close + 1))
            i = close + 1
            continue
        if ch == "{":
            end = _skip_balanced(source, i)
            tokens.append(_Token("call", source[i:end], i, end))
            i = end
            continue
        if ch == "(":
            tokens.append(_Token("lparen", ch, i, i + 1))
            i += 1
            continue
        if ch == ")":
            tokens.append(_Token("rparen", ch, i, i + 1))
            i += 1
            continue
        for op in _OPERATORS:
            if source.startswith(op, i):
                tokens.append(_Token("op", "^" if op == "**" else op, i, i + len(op)))
                i += len(op)
                break
        else:
            if ch == "%":
                raise FormulaError("unknown %-operator (only %in% is supported)", source, i)
            raise FormulaError(f"unexpected character {ch!r}", source, i)
    tokens.append(_Token("end", "", n, n))
    return tokens


class _Parser:
    def __init__(self, source: str):
        self.source = source
        self.tokens = _tokenize(source)
        self.pos = 0

    # -- helpers --------------------------------------------------------------------------------
    @property
    def tok(self) -> _Token:
        return self.tokens[self.pos]

    def advance(self) -> _Token:
        tok = self.tokens[self.pos]
        self.pos += 1
        return tok

    def at_op(self, *ops: str) -> bool:
        return self.tok.kind == "op" and self.tok.text in ops

    def error(self, message: str, tok: _Token | None = None) -> FormulaError:
        tok = tok or self.tok
        return FormulaError(message, self.source, tok.start)

    def describe(self, tok: _Token) -> str:
        if tok.kind == "end":
            return "end of formula"
        return repr(tok.text)

    # -- grammar --------------------------------------------------------------------------------
    def formula(self) -> ParsedFormula:
        if self.tok.kind == "end":
            raise FormulaError("the formula is empty", self.source, 0)
        lhs: Node | None = None
        if not self.at_op("~"):
            lhs = self.expr()
        if not self.at_op("~"):
            if self.tok.kind == "end":
                raise FormulaError(
                    "a formula needs '~' between the response and the terms, "
                    "e.g. 'y ~ x + (1 | g)'",
                    self.source,
                    len(self.source),
                )
            raise self.error(f"unexpected {self.describe(self.tok)}")
        tilde = self.advance()
        if self.tok.kind == "end":
            raise FormulaError("nothing follows '~'", self.source, tilde.start)
        rhs = self.expr()
        if self.tok.kind != "end":
            if self.at_op("~"):
                raise self.error("a formula can have only one '~'")
            if self.tok.kind == "rparen":
                raise self.error("unbalanced ')': no matching '('")
            raise self.error(
                f"unexpected {self.describe(self.tok)}; an operator such as '+' is missing"
            )
        return ParsedFormula(self.source, lhs, rhs)

    def expr(self) -> Node:
        left = self.sum()
        if self.at_op("|", "||"):
            op = self.advance()
            if self.tok.kind in ("end", "rparen"):
                raise self.error(f"the grouping factor after {op.text!r} is missing")
            right = self.sum()
            if self.at_op("|", "||"):
                raise self.error("only one '|' or '||' is allowed in a random-effects term")
            return Binary(left.start, right.end, op.text, left, right)
        return left

    def sum(self) -> Node:
        if self.at_op("|", "||"):
            raise self.error(f"the effects before {self.tok.text!r} are missing, e.g. (1 | g)")
        left = self.product()
        while self.at_op("+", "-"):
            op = self.advance()
            right = self.product()
            left = Binary(left.start, right.end, op.text, left, right)
        return left

    def product(self) -> Node:
        left = self.inop()
        while self.at_op("*", "/"):
            op = self.advance()
            right = self.inop()
            left = Binary(left.start, right.end, op.text, left, right)
        return left

    def inop(self) -> Node:
        left = self.colon()
        while self.at_op("%in%"):
            op = self.advance()
            right = self.colon()
            left = Binary(left.start, right.end, op.text, left, right)
        return left

    def colon(self) -> Node:
        left = self.unary()
        while self.at_op(":"):
            op = self.advance()
            right = self.unary()
            left = Binary(left.start, right.end, op.text, left, right)
        return left

    def unary(self) -> Node:
        if self.at_op("-", "+"):
            op = self.advance()
            operand = self.unary()
            return Unary(op.start, operand.end, op.text, operand)
        return self.power()

    def power(self) -> Node:
        base = self.atom()
        if self.at_op("^"):
            self.advance()
            exponent = self.unary()
            return Binary(base.start, exponent.end, "^", base, exponent)
        return base

    def atom(self) -> Node:
        tok = self.tok
        if tok.kind == "name":
            self.advance()
            return Name(tok.start, tok.end, tok.text)
        if tok.kind == "number":
            self.advance()
            return Number(tok.start, tok.end, tok.text)
        if tok.kind == "call":
            self.advance()
            return Call(tok.start, tok.end, tok.text)
        if tok.kind == "lparen":
            self.advance()
            if self.tok.kind == "rparen":
                raise self.error("empty parentheses")
            inner = self.expr()
            if self.tok.kind != "rparen":
                if self.tok.kind == "end":
                    raise self.error("unbalanced '(': no matching ')'", tok)
                raise self.error(f"expected ')' but found {self.describe(self.tok)}")
            close = self.advance()
            return Paren(tok.start, close.end, inner)
        if tok.kind == "rparen":
            raise self.error("unbalanced ')': no matching '('")
        if tok.kind == "end":
            raise self.error("the formula ends where a term is expected")
        raise self.error(f"a term is expected here, not {self.describe(tok)}")


def parse_formula(source: str) -> ParsedFormula:
    """Parse a model formula into a syntax tree.

    Parameters
    ----------
    source
        The formula, e.g. ``"Reaction ~ Days + (Days | Subject)"``.

    Returns
    -------
    ParsedFormula

    Raises
    ------
    FormulaError
        With the position of the offending token when the formula is malformed.
    """
    if not isinstance(source, str):
        raise FormulaError(f"a formula must be a string, not {type(source).__name__}")
    return _Parser(source).formula()
