"""From a formula and a data frame to the arrays a mixed model is fitted from.

The output, :class:`Design`, holds the response ``y``, the fixed-effects matrix ``X`` (dense,
n x p), and for each random-effects term the level code of every row (``refs``) and the values of
the term's columns (``z``, S x n). A dense n x q random-effects matrix is never formed.

Conventions follow R / lme4 so that results agree with theirs:

* rows with a missing value in any variable the model uses are dropped (and counted);
* strings, booleans and pandas categoricals are factors with treatment contrasts; ordered
  categoricals get orthogonal polynomial contrasts (R's ``contr.poly``); numeric grouping
  variables are factors; unused categories are dropped;
* column names follow R: ``(Intercept)``, ``recipeB``, ``temperature.L``, ``recipeB:temperature.L``;
* a rank-deficient ``X`` loses the columns that are linear combinations of earlier ones, as in
  lme4 (pivoting only moves near-zero columns, tolerance 1e-7), with a message;
* random-effects terms are put in lme4's order: by decreasing number of levels, the same
  permutation lme4 uses (``rev(order(nlevels))`` when the levels are not already decreasing).
"""

from __future__ import annotations

import ast
import copy
import difflib
import functools
import itertools
import keyword
import re
import warnings
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import numpy as np
import pandas as pd

from mixedmodels.errors import DataError, FormulaError, GroupingError, WeightsError
from mixedmodels.formula.terms import FormulaSpec, RandomTermSpec, split_formula

__all__ = [
    "Design",
    "FixedTerm",
    "RandomTerm",
    "build_design",
    "r_column_name",
]

ArrayLike: TypeAlias = Sequence[float] | np.ndarray | pd.Series


@dataclass(frozen=True, eq=False)
class RandomTerm:
    """One random-effects term evaluated on the data.

    Attributes
    ----------
    spec
        The term as written (after expansion of ``||`` and ``/``).
    group_name
        lme4's name for the grouping factor (``"Subject"``, ``"cask:batch"``).
    levels
        The grouping factor's levels, in the order of the random effects.
    refs
        Level code (0-based, int32) of every row, shape (n,).
    z
        Values of the term's columns, shape (S, n) (``None`` for an intercept-only term, whose
        values are all one).
    effect_names
        Names of the S columns, R style (``"(Intercept)"``, ``"Days"``).
    effects_spec
        The formulaic model spec that rebuilds ``z`` on new data (``None`` for intercept only).
    """

    spec: RandomTermSpec
    group_name: str
    levels: pd.Index
    refs: np.ndarray
    z: np.ndarray | None
    effect_names: tuple[str, ...]
    effects_spec: Any

    @functools.cached_property
    def nlevels(self) -> int:
        # (remembered: the length of a pandas Index of strings costs a few microseconds, and a
        # fit asks for it several times; the levels cannot change)
        return len(self.levels)

    @property
    def n_effects(self) -> int:
        return len(self.effect_names)

    @property
    def n_ranef(self) -> int:
        return self.nlevels * self.n_effects

    def z_values(self) -> np.ndarray:
        """``z`` as an (S, n) array (materialising the ones of an intercept-only term)."""
        if self.z is None:
            return np.ones((1, len(self.refs)))
        return self.z


@dataclass(frozen=True)
class FixedTerm:
    """One term of the fixed part, as R's ``terms()`` sees it.

    Attributes
    ----------
    label
        R's term label: ``"(Intercept)"``, ``"recipe"``, ``"recipe:temperature"``.
    factors
        The variables (factor expressions) multiplied in the term, R-style names.
    numeric
        For each of ``factors``, whether it is numeric (not categorical).
    columns
        Indices of the term's columns in ``Design.X`` (after rank-deficient columns were dropped).
    full_columns
        Indices of the term's columns in the full fixed-effects matrix.
    """

    label: str
    factors: tuple[str, ...]
    numeric: tuple[bool, ...]
    columns: tuple[int, ...]
    full_columns: tuple[int, ...]

    @property
    def numeric_factors(self) -> frozenset[str]:
        return frozenset(f for f, num in zip(self.factors, self.numeric, strict=True) if num)


@dataclass(frozen=True, eq=False)
class Design:
    """Everything a linear mixed model needs from the data, as arrays.

    Attributes
    ----------
    formula
        The parsed formula.
    response_name
        The response as written (``"Reaction"``, ``"np.log(Reaction)"``).
    y
        Response, shape (n,).
    X
        Fixed-effects model matrix, shape (n, p), rank-deficient columns removed.
    fixef_names
        Names of the columns of ``X`` (R style).
    dropped_fixef
        Names of the columns removed because ``X`` was rank deficient.
    fixed_columns, all_fixef_names
        Which columns of the full fixed-effects matrix were kept, and the names of all of them.
    fixed_terms
        The terms of the fixed part and their columns (for F-tests of terms).
    trials
        For a ``cbind(successes, failures)`` response, the number of trials of each row (``y``
        is then the proportion of successes).
    frame
        The data the model was built from: the rows used and the columns the formula needs,
        prepared (booleans as categoricals, unused categories dropped). Reduced and refitted
        models (likelihood-ratio tests, random-effects tests) are built from it. It may be
        made on first use (from a copy-on-write snapshot of the data taken when the design was
        built), so that a fit that never needs it does not pay for it.
    fixed_spec
        The formulaic model spec for the fixed part (to build ``X`` on new data), or ``None``
        when there are no fixed effects.
    terms
        The random-effects terms, in lme4's order.
    weights
        Prior weights, shape (n,), or ``None``.
    offset
        Offset, shape (n,), or ``None``.
    row_index
        The labels (from the data's index) of the rows used.
    n_dropped
        Number of rows dropped because of missing values.
    data_name
        Name of the data set if known (``df.attrs["name"]``), for summaries.
    weights_name, offset_name
        How the weights / offset were given (column name or ``"<array>"``), for summaries.
    messages
        Notes produced while building the design (dropped rows, dropped columns).
    """

    formula: FormulaSpec
    response_name: str
    y: np.ndarray
    X: np.ndarray
    fixef_names: tuple[str, ...]
    dropped_fixef: tuple[str, ...]
    fixed_spec: Any
    terms: tuple[RandomTerm, ...]
    weights: np.ndarray | None
    offset: np.ndarray | None
    row_index: pd.Index
    n_dropped: int
    data_name: str | None
    weights_name: str | None = None
    offset_name: str | None = None
    messages: tuple[str, ...] = field(default=())
    fixed_columns: tuple[int, ...] = field(default=())
    all_fixef_names: tuple[str, ...] = field(default=())
    fixed_terms: tuple[FixedTerm, ...] = field(default=())
    _frame: pd.DataFrame | Callable[[], pd.DataFrame] | None = field(default=None, repr=False)
    trials: np.ndarray | None = None

    @property
    def frame(self) -> pd.DataFrame | None:
        """The prepared data (see the class's attributes); made on first use if need be."""
        f = self._frame
        if callable(f):
            f = f()
            object.__setattr__(self, "_frame", f)
        return f

    @property
    def has_intercept(self) -> bool:
        return any(t.label == "(Intercept)" for t in self.fixed_terms)

    @property
    def nobs(self) -> int:
        return len(self.y)

    @property
    def n_fixef(self) -> int:
        return self.X.shape[1]


# ---------------------------------------------------------------------------------------------
# column names


_BRACKET = re.compile(r"^(?P<var>.*)\[(?:T\.)?(?P<level>.*)\]$")


def _split_top_level(name: str, sep: str = ":") -> list[str]:
    parts: list[str] = []
    depth = 0
    start = 0
    for i, ch in enumerate(name):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == sep and depth == 0:
            parts.append(name[start:i])
            start = i + 1
    parts.append(name[start:])
    return parts


def r_column_name(name: str, rename: Mapping[str, str] | None = None) -> str:
    """Translate a formulaic column name into R's convention.

    ``Intercept`` -> ``(Intercept)``, ``f[T.b]`` -> ``fb``, ``f[b]`` -> ``fb``,
    ``C(o, contr.poly)[.L]`` -> ``o.L`` (via ``rename``), ``x:f[T.b]`` -> ``x:fb``.
    """
    if name == "Intercept":
        return "(Intercept)"
    rename = rename or {}
    out = []
    for part in _split_top_level(name):
        m = _BRACKET.match(part)
        if m:
            var = rename.get(m["var"], m["var"])
            out.append(f"{var}{m['level']}")
        else:
            out.append(rename.get(part, part))
    return ":".join(out)


# ---------------------------------------------------------------------------------------------
# helpers


def _as_frame(data: Any) -> pd.DataFrame:
    if isinstance(data, pd.DataFrame):
        return data
    if isinstance(data, Mapping):
        try:
            return pd.DataFrame(dict(data))
        except ValueError as exc:
            raise DataError(
                f"cannot make a data frame from the mapping given as data: {exc}"
            ) from None
    to_pandas = getattr(data, "to_pandas", None)
    if callable(to_pandas):  # polars, pyarrow tables
        return to_pandas()
    raise DataError(
        f"data must be a pandas DataFrame (or a mapping of column name to values), "
        f"not {type(data).__name__}"
    )


def _unknown_column(name: str, frame: pd.DataFrame, role: str) -> DataError:
    columns = [str(c) for c in frame.columns]
    close = difflib.get_close_matches(name, columns, n=3)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    listing = ", ".join(repr(c) for c in columns[:12]) + (", ..." if len(columns) > 12 else "")
    return DataError(
        f"column {name!r}, used in {role}, is not in the data{hint} (columns: {listing})"
    )


_BACKTICK = re.compile(r"`([^`]*)`")


def _python_names(expr: str) -> set[str]:
    """Names an expression reads as values (not the functions it calls or their modules).

    ``np.log(x + 1)`` reads ``x``; ``C(f, Treatment("b"))`` reads ``f``; back-quoted names
    (```a b```) are names too.
    """
    quoted: dict[str, str] = {}

    def _placeholder(m: re.Match[str]) -> str:
        key = f"__bq{len(quoted)}__"
        quoted[key] = m.group(1)
        return key

    source = _BACKTICK.sub(_placeholder, expr)
    try:
        tree = ast.parse(source.strip(), mode="eval")
    except SyntaxError as exc:
        raise FormulaError(f"cannot read the expression {expr!r}: {exc.msg}") from None
    callees: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            while isinstance(func, ast.Attribute):
                func = func.value
            callees.add(id(func))
        elif isinstance(node, ast.Attribute):
            root = node.value
            while isinstance(root, ast.Attribute):
                root = root.value
            callees.add(id(root))  # module or object attribute, e.g. np.pi
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and id(node) not in callees:
            names.add(quoted.get(node.id, node.id))
    return names


def _required_variables(
    expr: str, frame: pd.DataFrame, role: str, *, formula: bool = True
) -> set[str]:
    """Columns of ``frame`` that a formula (or, with ``formula=False``, a Python expression)
    uses; an unknown name raises :class:`DataError` with suggestions."""
    names: set[str] = set()
    if formula:
        try:
            parsed = formulaic_formula(expr)
        except Exception as exc:
            raise FormulaError(f"cannot read {role} {expr!r}: {exc}") from None
        for term in parsed:
            for factor in term.factors:
                method = str(factor.eval_method)
                if method.endswith("LOOKUP"):
                    names.add(factor.expr)
                elif method.endswith("PYTHON"):
                    names |= _python_names(factor.expr)
    else:
        names = _python_names(expr)
    out = set()
    for name in names:
        if name in frame.columns:
            out.add(name)
        elif name not in _KNOWN_NAMES:
            raise _unknown_column(name, frame, role)
    return out


# names formulaic resolves without the data (constants); modules and functions are callees
_KNOWN_NAMES = {"pi", "e", "inf", "nan", "np", "numpy", "math"}


def _is_factor_like(s: pd.Series) -> bool:
    return (
        isinstance(s.dtype, pd.CategoricalDtype)
        or pd.api.types.is_bool_dtype(s.dtype)
        or pd.api.types.is_string_dtype(s.dtype)
        or pd.api.types.is_object_dtype(s.dtype)
    )


def _prepare_frame(
    frame: pd.DataFrame, fixed_vars: set[str]
) -> tuple[pd.DataFrame, dict[str, str]]:
    """Booleans become categoricals, unused categories are dropped, ordered categoricals are
    given polynomial contrasts. Returns the frame and the formula substitutions."""
    poly: dict[str, str] = {}
    if not any(
        isinstance(d, pd.CategoricalDtype) or pd.api.types.is_bool_dtype(d) for d in frame.dtypes
    ):
        return frame, poly
    out = {}
    for col in frame.columns:
        s = frame[col]
        if pd.api.types.is_bool_dtype(s.dtype):
            s = pd.Categorical(s, categories=[v for v in (False, True) if (s == v).any()])
            s = pd.Series(s, index=frame.index, name=col)
        elif isinstance(s.dtype, pd.CategoricalDtype):
            s = _without_unused_categories(s)
            if s.cat.ordered and col in fixed_vars and isinstance(col, str) and col.isidentifier():
                poly[col] = f"C({col}, contr.poly)"
        out[col] = s
    return pd.DataFrame(out, index=frame.index), poly


def _without_unused_categories(s: pd.Series) -> pd.Series:
    """``s.cat.remove_unused_categories()``, or ``s`` itself when every category occurs (one
    count of the codes instead of pandas' sort of them: for InstEval's 73,421 rows ~0.1 ms
    against ~1.5 ms a column)."""
    codes = s.cat.codes.to_numpy()
    k = len(s.cat.categories)
    if k and codes.size and (np.bincount(codes[codes >= 0], minlength=k)[:k] > 0).all():
        return s
    return s.cat.remove_unused_categories()


@functools.lru_cache(maxsize=256)
def formulaic_formula(expr: str) -> Any:
    """formulaic's parse of a formula string, cached: parsing costs more than building the
    matrix for small data, and the parsed formula is immutable."""
    from formulaic import Formula

    return Formula(expr)


@dataclass(frozen=True)
class NumericSpec:
    """Recipe for a model matrix whose terms are products of numeric columns, an intercept,
    and main effects of unordered factors (treatment contrasts): the common case, built with
    numpy instead of a general formula materializer.

    ``factors`` gives, for each factor among the terms, its levels and whether it is coded by
    one indicator per level (R's rule: the first factor of a model without an intercept) or
    by indicators of all levels but the first. It answers ``get_model_matrix`` like
    formulaic's ``ModelSpec`` so that prediction on new data treats both alike.
    """

    terms: tuple[tuple[str, ...], ...]  # () is the intercept
    column_names: tuple[str, ...]
    factors: tuple[tuple[str, tuple[Any, ...], bool], ...] = ()  # (name, levels, full coding)

    @property
    def columns(self) -> tuple[str, ...]:
        return self.column_names

    def term_widths(self) -> list[int]:
        """The number of columns of each term."""
        return list(self._layout[1])

    @functools.cached_property
    def _layout(self) -> tuple[dict[str, bool], tuple[int, ...], tuple[np.ndarray | None, ...]]:
        """Whether each factor is coded fully, each term's number of columns, and for each
        factor term the level codes its columns stand for (made once per spec)."""
        coding = {name: full for name, _, full in self.factors}
        widths = {name: len(levels) - (not full) for name, levels, full in self.factors}
        per_term = tuple(widths.get(t[0], 1) if len(t) == 1 else 1 for t in self.terms)
        codes = []
        for t, w in zip(self.terms, per_term, strict=True):
            first = 0 if len(t) == 1 and coding.get(t[0], True) else 1
            codes.append(np.arange(first, first + w) if len(t) == 1 and t[0] in coding else None)
        return coding, per_term, tuple(codes)

    def get_model_matrix(self, frame: pd.DataFrame, na_action: str | None = None) -> np.ndarray:
        factor_levels = {name: levels for name, levels, _ in self.factors}

        def column(name: str) -> np.ndarray:
            s = frame[name]
            if not _is_plain_numeric(s):
                raise DataError(f"column {name!r} must be numeric, not {s.dtype}")
            return s.to_numpy(dtype=float)

        def codes(name: str) -> np.ndarray:
            s = frame[name]
            values = s.astype(object) if isinstance(s.dtype, pd.CategoricalDtype) else s
            out = pd.Index(factor_levels[name]).get_indexer(pd.Index(values))
            if (out < 0).any():
                new = pd.unique(np.asarray(values, dtype=object)[out < 0])
                shown = ", ".join(map(repr, new[:5])) + (", ..." if len(new) > 5 else "")
                raise DataError(
                    f"column {name!r} has levels the model was not fitted with ({shown}); "
                    f"a fixed effect cannot be predicted for a new level"
                )
            return out

        return _numeric_matrix(self.terms, column, len(frame), spec=self, codes=codes)


def _numeric_matrix(
    terms: Sequence[tuple[str, ...]],
    column: Callable[[str], np.ndarray],
    n: int,
    *,
    rows: bool = False,
    spec: NumericSpec | None = None,
    codes: Callable[[str], np.ndarray] | None = None,
) -> np.ndarray:
    """The model matrix of products of numeric columns, (n, terms) or with ``rows`` its
    transpose (terms, n), C-ordered; ``column`` gives a column's values. With ``spec`` the
    factors it names are coded as it says, from their level codes (``codes``)."""
    if spec is not None:
        coding, widths, level_codes = spec._layout
    else:
        coding, widths, level_codes = {}, (1,) * len(terms), (None,) * len(terms)
    p = sum(widths)
    out = np.empty((p, n) if rows else (n, p))
    j = 0
    for k, (term, width) in enumerate(zip(terms, widths, strict=True)):
        if len(term) == 1 and term[0] in coding:
            stand_for = level_codes[k]
            assert codes is not None and not rows and stand_for is not None
            # the indicators of the levels the columns stand for (all, or all but the first)
            np.equal(codes(term[0])[:, None], stand_for, out=out[:, j : j + width],
                     casting="unsafe")  # fmt: skip
            j += width
            continue
        dst = out[j] if rows else out[:, j]
        j += 1
        if not term:
            dst[...] = 1.0
            continue
        for k, name in enumerate(term):
            if k == 0:
                dst[...] = column(name)
            else:
                dst *= column(name)
    return out


def _is_plain_numeric(s: pd.Series) -> bool:
    return s.dtype.kind in "iuf"


def _factor_codes(values: Any, *, ordered: bool = False) -> tuple[np.ndarray, pd.Index] | None:
    """Level codes (int32) and levels of a factor as the general path and formulaic make them
    (unused categories dropped, strings sorted), or None for what only the general path handles
    (booleans, ordered categoricals unless ``ordered``, objects that are not all strings,
    missing values, fewer than two levels). Numeric arrays are factors here too (grouping
    variables)."""
    if values is None:
        return None
    if isinstance(values, pd.Categorical):
        codes = values.codes
        cats = values.categories
        if values.ordered and not ordered:
            return None
        try:  # (a missing value's code is -1: bincount refuses it)
            used = np.bincount(codes, minlength=len(cats)) > 0
        except ValueError:
            return None
        if used.all():  # the categories themselves (an Index is immutable)
            refs = codes.astype(np.int32)
            levels = cats
        else:
            refs = (np.cumsum(used) - 1)[codes].astype(np.int32)
            levels = cats.take(np.flatnonzero(used))
    elif isinstance(values, np.ndarray) and values.dtype.kind in "iuf":
        if _plain_numeric_values(values) is None:
            return None
        codes, uniques = pd.factorize(values, sort=True)
        refs, levels = codes.astype(np.int32), pd.Index(uniques)
    elif isinstance(values.dtype, pd.StringDtype) or (
        isinstance(values, np.ndarray)
        and values.dtype == object
        and pd.api.types.infer_dtype(values, skipna=False) == "string"
    ):
        if bool(pd.isna(values).any()):
            return None
        codes, uniques = pd.factorize(values, sort=True)
        refs = codes.astype(np.int32)
        levels = pd.Index(uniques, dtype=object if values.dtype == object else None)
    else:
        return None
    if len(levels) < 2:
        return None
    return refs, levels


@functools.lru_cache(maxsize=256)
def _numeric_terms(formula: str) -> tuple[tuple[str, ...], ...] | None:
    """The terms of ``formula`` as tuples of variable names when every factor is a name looked
    up as is (no function calls), without repeated terms; None otherwise or if formulaic cannot
    read the formula. It depends on the text only (cached)."""
    try:
        parsed = formulaic_formula(formula)
    except Exception:
        return None
    terms = []
    for term in parsed:
        names = []
        for f in term.factors:
            if f.expr == "1":
                continue
            if not (str(f.eval_method).endswith("LOOKUP") and f.expr.isidentifier()):
                return None
            names.append(f.expr)
        terms.append(tuple(names))
    if len(set(terms)) != len(terms):
        return None
    return tuple(terms)


def _numeric_spec_of(
    terms: tuple[tuple[str, ...], ...], factors: Mapping[str, pd.Index] | None = None
) -> NumericSpec:
    """The spec of ``terms``; the names in ``factors`` (single-variable terms) are factors with
    those levels. Column names are formulaic's (``Intercept``, ``x:z``, ``f[T.b]``, ``f[a]``).
    It depends on the terms and the levels only: cached."""
    if not factors:
        return _numeric_spec_without_factors(terms)
    # the levels' types are part of the key: 1 == 1.0 == True, but their names differ
    levels = tuple(
        (name, lv, tuple(map(type, lv)))
        for name, lv in ((name, _level_tuple(index)) for name, index in factors.items())
    )
    try:
        return _numeric_spec_with_factors(terms, levels)
    except TypeError:  # unhashable levels: made anew
        return _numeric_spec_with_factors.__wrapped__(terms, levels)


@functools.lru_cache(maxsize=256)
def _numeric_spec_with_factors(
    terms: tuple[tuple[str, ...], ...],
    factors: tuple[tuple[str, tuple[Any, ...], tuple[type, ...]], ...],
) -> NumericSpec:
    """:func:`_numeric_spec_of` with factors (name, levels, the levels' types)."""
    factor_levels = {name: levels for name, levels, _ in factors}
    reduced = () in terms  # R: with an intercept every factor is coded by contrasts
    names: list[str] = []
    coding = []
    for t in terms:
        if len(t) == 1 and t[0] in factor_levels:
            levels = factor_levels[t[0]]
            if reduced:
                names += [f"{t[0]}[T.{level}]" for level in levels[1:]]
            else:  # the first factor of a model without an intercept: every level
                names += [f"{t[0]}[{level}]" for level in levels]
            coding.append((t[0], levels, not reduced))
            reduced = True
        else:
            names.append(":".join(t) if t else "Intercept")
    return NumericSpec(terms, tuple(names), tuple(coding))


#: id(Index) -> (a weak reference to it, its tuple of levels)
_LEVEL_TUPLES: dict[int, tuple[weakref.ref[pd.Index], tuple[Any, ...]]] = {}


def _level_tuple(levels: pd.Index) -> tuple[Any, ...]:
    """``tuple(levels)``, remembered for as long as the Index lives (an Index is immutable, a
    categorical column's levels are the same Index from fit to fit, and iterating one of
    pandas' string Indexes costs about 10 us)."""
    key = id(levels)
    hit = _LEVEL_TUPLES.get(key)
    if hit is not None and hit[0]() is levels:
        return hit[1]
    out = tuple(levels)

    def forget(_: object) -> None:
        _LEVEL_TUPLES.pop(key, None)

    try:
        ref = weakref.ref(levels, forget)
    except TypeError:  # pragma: no cover - an Index that takes no weak reference
        return out
    _LEVEL_TUPLES[key] = (ref, out)
    return out


@functools.lru_cache(maxsize=256)
def _numeric_spec_without_factors(terms: tuple[tuple[str, ...], ...]) -> NumericSpec:
    """:func:`_numeric_spec_of` without factors (it depends on the terms only: cached)."""
    return NumericSpec(terms, tuple(":".join(t) if t else "Intercept" for t in terms))


def _array_of(s: pd.Series) -> Any:
    """A column's values: an ndarray for numpy dtypes, the extension array otherwise."""
    values = s.array
    return values.to_numpy() if isinstance(values, pd.arrays.NumpyExtensionArray) else values


def _numeric_spec(formula: str, frame: pd.DataFrame) -> NumericSpec | None:
    """A :class:`NumericSpec` when every factor of ``formula`` is a numeric column named as is
    (no function calls) or an unordered factor in a term of its own; None otherwise."""
    terms = _numeric_terms(formula)
    if terms is None:
        return None
    factors: dict[str, pd.Index] = {}
    for term in terms:
        for name in term:
            if name not in frame.columns:
                return None
            s = frame[name]
            if _is_plain_numeric(s):
                continue
            found = _factor_codes(_array_of(s)) if len(term) == 1 else None
            if found is None:
                return None
            factors[name] = found[1]
    return _numeric_spec_of(terms, factors)


class _NumericMatrix:
    """A model matrix from a :class:`NumericSpec` (the attributes build_design reads)."""

    def __init__(self, spec: NumericSpec, frame: pd.DataFrame) -> None:
        self.model_spec = spec
        self.columns = spec.column_names
        self.values = spec.get_model_matrix(frame)
        self.shape = self.values.shape

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return self.values if dtype is None else self.values.astype(dtype, copy=False)


def _design_matrix(formula: str, frame: pd.DataFrame, role: str, formula_source: str) -> Any:
    """The model matrix of ``formula``: numpy for products of numeric columns, formulaic
    otherwise."""
    spec = _numeric_spec(formula, frame)
    if spec is not None:
        return _NumericMatrix(spec, frame)
    return _model_matrix(formula, frame, role, formula_source)


def _model_matrix(formula: str, frame: pd.DataFrame, role: str, formula_source: str) -> Any:
    from formulaic import model_matrix

    try:
        return model_matrix(formulaic_formula(formula), frame, na_action="ignore")
    except Exception as exc:  # formulaic raises many kinds of error; make them ours
        msg = str(exc).split("\n")[0]
        raise FormulaError(
            f"cannot build the {role} from {formula!r}: {msg}", formula_source
        ) from None


def _check_finite_columns(
    matrix: np.ndarray, by_rows: bool, names: Sequence[str], what: str
) -> None:
    """:func:`_check_finite` on each column of a matrix (each row with ``by_rows``), named
    ``what.format(repr(name))`` in the error; one check of the whole matrix when every value
    is finite."""
    if np.isfinite(matrix).all():
        return
    for j, name in enumerate(names):
        _check_finite(matrix[j] if by_rows else matrix[:, j], what.format(repr(name)))


def _check_finite(values: np.ndarray, what: str) -> None:
    bad = ~np.isfinite(values)
    if bad.any():
        k = int(bad.sum())
        raise DataError(
            f"{what} has {k} non-finite value{'s' if k != 1 else ''} (NaN or infinite) after "
            f"evaluation, e.g. from the log of a non-positive number; fix or remove those rows"
        )


def _check_one_level_factors(frame: pd.DataFrame, variables: set[str], role: str) -> None:
    for col in sorted(variables):
        s = frame[col]
        if _is_factor_like(s):
            n = s.nunique(dropna=True)
            if n < 2:
                value = s.iloc[0] if len(s) else None
                raise DataError(
                    f"column {col!r} is used as a factor in the {role} but has only one level "
                    f"({value!r}) in the rows used; a factor needs two or more levels — "
                    f"remove it from the formula"
                )


def _rank_columns(X: np.ndarray, tol: float = 1e-7, block: int = 64) -> list[int]:
    """Indices of the columns of X to keep, in order (LINPACK ``dqrdc2`` semantics).

    A column is dropped when its norm after projection on the kept columns before it falls
    below ``tol`` times its original norm, which is how R's ``qr()`` decides rank (lme4's
    ``chkRank.drop.cols``). Gram-Schmidt with re-orthogonalization, by blocks of columns, in
    one compiled call (:func:`~mixedmodels.linalg.kernels.rank_columns`).
    """
    from mixedmodels.linalg.kernels import rank_columns

    keep = rank_columns(np.asarray(X, dtype=float), float(tol), int(block))
    return np.flatnonzero(keep).tolist()


def _resolve_vector(
    value: str | ArrayLike | None, frame: pd.DataFrame, role: str
) -> tuple[np.ndarray | None, str | None]:
    if value is None:
        return None, None
    if isinstance(value, str):
        if value not in frame.columns:
            raise _unknown_column(value, frame, role)
        s = frame[value]
        name = value
    else:
        arr = np.asarray(value)
        if arr.ndim != 1 or len(arr) != len(frame):
            raise WeightsError(
                f"{role} must be a column name or a 1-D array with one value per row of the data "
                f"({len(frame)} rows); got shape {arr.shape}"
            )
        s = pd.Series(arr, index=frame.index)
        name = "<array>"
    if not pd.api.types.is_numeric_dtype(s.dtype) or pd.api.types.is_bool_dtype(s.dtype):
        raise WeightsError(f"{role} ({name}) must be numeric, not {s.dtype}")
    return s.to_numpy(dtype=float, na_value=np.nan), name


def _group_codes(frame: pd.DataFrame, factors: tuple[str, ...]) -> tuple[np.ndarray, pd.Index]:
    """Level codes and labels of a grouping factor or an interaction of several."""
    codes_list = []
    labels_list = []
    for f in factors:
        s = frame[f]
        if isinstance(s.dtype, pd.CategoricalDtype):
            s = _without_unused_categories(s)
            codes = s.cat.codes.to_numpy()
            labels = s.cat.categories
        else:
            codes, labels = pd.factorize(s, sort=True)
        codes_list.append(codes.astype(np.int64))
        labels_list.append(pd.Index(labels))
    if len(factors) == 1:
        return codes_list[0].astype(np.int32), labels_list[0]
    key = np.zeros(len(frame), dtype=np.int64)
    for codes, labels in zip(codes_list, labels_list, strict=True):
        key = key * len(labels) + codes
    uniq, inverse = np.unique(key, return_inverse=True)
    # decode the observed combinations, lexicographic in the order of `factors`
    parts = []
    rem = uniq.copy()
    for labels in reversed(labels_list):
        parts.append(np.asarray(labels.astype(str))[rem % len(labels)])
        rem //= len(labels)
    parts.reverse()
    names = parts[0].astype(object)
    for p in parts[1:]:
        names = names + ":" + p.astype(object)
    return inverse.astype(np.int32).ravel(), pd.Index(names, dtype=object)


def _lme4_term_order(nlevels: list[int]) -> list[int]:
    """lme4's ``mkReTrms`` ordering: if the numbers of levels ever increase, terms are put in
    ``rev(order(nl))`` order (a stable ascending sort, reversed, so ties swap)."""
    if len(nlevels) < 2 or not any(b > a for a, b in itertools.pairwise(nlevels)):
        return list(range(len(nlevels)))
    asc = sorted(range(len(nlevels)), key=lambda i: nlevels[i])  # stable, like R's order()
    return asc[::-1]


# ---------------------------------------------------------------------------------------------


def build_design(
    formula: str | FormulaSpec,
    data: Any,
    *,
    weights: str | ArrayLike | None = None,
    offset: str | ArrayLike | None = None,
    require_random: bool = True,
    require_response: bool = True,
    factor_response: bool = False,
    residual_variance: bool = True,
) -> Design:
    """Evaluate a mixed-model formula on a data frame.

    Parameters
    ----------
    formula
        lme4-style formula, e.g. ``"Reaction ~ Days + (Days | Subject)"``.
    data
        A pandas DataFrame (or a mapping of column names to values).
    weights, offset
        Column names or arrays aligned with the rows of ``data``.
    require_random
        Raise if the formula has no random-effects term (``False`` for :func:`mixedmodels.lm`).
    require_response
        Raise if the formula has no response (``False`` for simulation from a one-sided
        formula; the response is then all zeros).
    factor_response
        Accept a two-level factor as the response (1 for the second level), for the binomial
        family.
    residual_variance
        Whether the model has a residual variance besides the random effects. If not (binomial
        and Poisson GLMMs) a grouping factor may have one level per observation.

    Returns
    -------
    Design

    Raises
    ------
    FormulaError, DataError, GroupingError, WeightsError

    Notes
    -----
    The common case -- a numeric response, fixed and random effects that are products of
    numeric columns, one grouping variable per term, and data without missing or infinite
    values -- is built straight from the columns' arrays (:func:`_fast_design`); everything
    else, and every error, goes through the general path. Both give the same design.
    """
    spec = formula if isinstance(formula, FormulaSpec) else split_formula(formula)
    frame_all = _as_frame(data)
    if not frame_all.columns.is_unique:
        dup = frame_all.columns[frame_all.columns.duplicated()].tolist()
        raise DataError(f"the data has duplicated column names: {dup}")
    if spec.response is None and require_response:
        raise FormulaError("the formula has no response: write it as 'y ~ ...'", spec.source, 0)
    if require_random and not spec.random:
        raise FormulaError(
            "the formula has no random-effects term such as (1 | group); "
            "use mixedmodels.lm for a model without random effects",
            spec.source,
        )
    plan = _fast_plan(spec)
    if plan is not None:
        design = _fast_design(
            plan, spec, frame_all, weights, offset, residual_variance, factor_response
        )
        if design is not None:
            return design
    return _general_design(
        spec,
        frame_all,
        weights=weights,
        offset=offset,
        factor_response=factor_response,
        residual_variance=residual_variance,
    )


def _general_design(
    spec: FormulaSpec,
    frame_all: pd.DataFrame,
    *,
    weights: str | ArrayLike | None,
    offset: str | ArrayLike | None,
    factor_response: bool,
    residual_variance: bool,
) -> Design:
    """:func:`build_design` for any formula and data (after the checks of the formula)."""
    # -- which columns are used ----------------------------------------------------------------
    response_vars = (
        _required_variables(spec.response, frame_all, "the response", formula=False)
        if spec.response is not None
        else set()
    )
    fixed_vars = _required_variables(spec.fixed, frame_all, "the fixed effects")
    effect_vars: set[str] = set()
    for term in spec.random:
        effect_vars |= _required_variables(
            term.effects, frame_all, f"the random-effects term ({term.source})"
        )
    group_vars: set[str] = set()
    for term in spec.random:
        for f in term.factors:
            if f not in frame_all.columns:
                raise _unknown_column(f, frame_all, f"the grouping factor of ({term.source})")
            group_vars.add(f)
    offset_vars: set[str] = set()
    for expr in spec.offsets:
        offset_vars |= _required_variables(expr, frame_all, "the offset", formula=False)
    used = response_vars | fixed_vars | effect_vars | group_vars | offset_vars
    used_cols = [c for c in frame_all.columns if c in used]

    w_all, weights_name = _resolve_vector(weights, frame_all, "weights")
    o_all, offset_name = _resolve_vector(offset, frame_all, "offset")

    # -- missing values ------------------------------------------------------------------------
    frame = frame_all[used_cols]
    missing = frame.isna().any(axis=1).to_numpy().copy()
    if w_all is not None:
        missing |= np.isnan(w_all)
    if o_all is not None:
        missing |= np.isnan(o_all)
    n_dropped = int(missing.sum())
    messages: list[str] = []
    if n_dropped:
        if n_dropped == len(frame):
            cols = [c for c in used_cols if frame[c].isna().any()]
            raise DataError(
                f"no rows left after dropping rows with missing values (columns with missing "
                f"values: {', '.join(map(repr, cols))})"
            )
        messages.append(
            f"{n_dropped} row{'s' if n_dropped != 1 else ''} with missing values dropped "
            f"({len(frame) - n_dropped} used)"
        )
        keep_rows = ~missing
        frame = frame.loc[keep_rows]
        w_all = None if w_all is None else w_all[keep_rows]
        o_all = None if o_all is None else o_all[keep_rows]
    if len(frame) == 0:
        raise DataError("the data has no rows")

    # numeric columns must be finite
    for col in used_cols:
        s = frame[col]
        if pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype):
            vals = s.to_numpy(dtype=float)
            if not np.isfinite(vals).all():
                k = int((~np.isfinite(vals)).sum())
                raise DataError(f"column {col!r} has {k} infinite value{'s' if k != 1 else ''}")

    if w_all is not None:
        if not np.isfinite(w_all).all():
            raise WeightsError("weights must be finite")
        if (w_all < 0).any():
            k = int((w_all < 0).sum())
            raise WeightsError(
                f"weights must not be negative ({k} negative value{'s' if k != 1 else ''})"
            )
        if (w_all == 0).any():
            k = int((w_all == 0).sum())
            raise WeightsError(
                f"{k} row{'s have' if k != 1 else ' has'} weight 0; such rows carry no "
                f"information — remove them from the data or give them a positive weight"
            )
    if o_all is not None and not np.isfinite(o_all).all():
        raise WeightsError("offset must be finite")

    frame, poly = _prepare_frame(frame, fixed_vars | effect_vars)
    rename = {v: k for k, v in poly.items()}

    # -- response ------------------------------------------------------------------------------
    if spec.response is not None:
        y, trials = _evaluate_response(spec, frame, factor_response)
    else:
        y, trials = np.zeros(len(frame)), None

    # -- fixed effects -------------------------------------------------------------------------
    _check_one_level_factors(frame, fixed_vars, "fixed effects")
    fixed_formula = _substitute(spec.fixed, poly)
    mm = _design_matrix(fixed_formula, frame, "fixed-effects model matrix", spec.source)
    fixed = _fixed_part(np.asarray(mm, dtype=float), mm.columns, mm.model_spec, rename)
    messages.extend(fixed.messages)

    # -- offsets -------------------------------------------------------------------------------
    off = None if o_all is None else o_all.copy()
    for expr in spec.offsets:
        col = _model_matrix(f"0 + I({expr})", frame, "offset", spec.source)
        vals = np.asarray(col, dtype=float).ravel()
        _check_finite(vals, f"the offset {expr!r}")
        off = vals if off is None else off + vals

    # -- random effects ------------------------------------------------------------------------
    terms = [_build_term(t, frame, poly, rename, spec.source) for t in spec.random]
    terms = _order_and_check_terms(terms, len(y), residual_variance)

    return _make_design(
        spec, frame_all, fixed, terms,
        response_name=spec.response or "", y=y, weights=w_all, offset=off,
        row_index=frame.index, n_dropped=n_dropped, weights_name=weights_name,
        offset_name=offset_name, messages=tuple(messages), frame=frame, trials=trials,
    )  # fmt: skip


def _make_design(
    spec: FormulaSpec,
    frame_all: pd.DataFrame,
    fixed: _FixedPart,
    terms: Sequence[RandomTerm],
    *,
    response_name: str,
    y: np.ndarray,
    weights: np.ndarray | None,
    offset: np.ndarray | None,
    row_index: pd.Index,
    n_dropped: int,
    weights_name: str | None,
    offset_name: str | None,
    messages: tuple[str, ...],
    frame: pd.DataFrame | Callable[[], pd.DataFrame],
    trials: np.ndarray | None,
) -> Design:
    """The :class:`Design` of either path, from its fixed part, terms and data."""
    data_name = frame_all.attrs.get("name") if hasattr(frame_all, "attrs") else None
    return Design(
        formula=spec,
        response_name=response_name,
        y=y,
        X=fixed.X,
        fixef_names=fixed.names,
        dropped_fixef=fixed.dropped,
        fixed_spec=fixed.spec,
        terms=tuple(terms),
        weights=weights,
        offset=offset,
        row_index=row_index,
        n_dropped=n_dropped,
        data_name=data_name if isinstance(data_name, str) else None,
        weights_name=weights_name,
        offset_name=offset_name,
        messages=messages,
        fixed_columns=fixed.keep,
        all_fixef_names=fixed.all_names,
        fixed_terms=fixed.terms,
        _frame=frame,
        trials=trials,
    )


@dataclass(frozen=True)
class _FixedPart:
    X: np.ndarray
    names: tuple[str, ...]
    dropped: tuple[str, ...]
    keep: tuple[int, ...]
    all_names: tuple[str, ...]
    terms: tuple[FixedTerm, ...]
    spec: Any
    messages: tuple[str, ...]


def _fixed_part(
    X_full: np.ndarray,
    columns: Sequence[Any],
    model_spec: Any,
    rename: Mapping[str, str],
    *,
    finite: bool = False,
    full_rank: bool = False,
) -> _FixedPart:
    """The fixed-effects matrix without its rank-deficient columns, with R's names
    (``finite``: X_full is known to be finite, no check; ``full_rank``: its columns are known
    to be independent, no rank check)."""
    if rename:
        names_full = [r_column_name(str(c), rename) for c in columns]
    else:
        names_full = list(_r_names(tuple(str(c) for c in columns)))
    if X_full.shape[1] and not finite:
        _check_finite_columns(X_full, False, names_full, "fixed-effects column {}")
    if full_rank:
        keep = list(range(X_full.shape[1]))
        dropped: tuple[str, ...] = ()
    else:
        keep = _rank_columns(X_full) if X_full.shape[1] else []
        dropped = tuple(n for j, n in enumerate(names_full) if j not in keep)
    messages = []
    if dropped:
        k = len(dropped)
        messages.append(
            f"fixed-effect model matrix is rank deficient so dropping {k} column"
            f"{'s' if k != 1 else ''} / coefficient{'s' if k != 1 else ''}: {', '.join(dropped)}"
        )
    X = np.ascontiguousarray(X_full[:, keep]) if len(keep) != X_full.shape[1] else X_full
    return _FixedPart(
        X=X,
        names=tuple(names_full[j] for j in keep),
        dropped=dropped,
        keep=tuple(keep),
        all_names=tuple(names_full),
        terms=(
            ()
            if not X_full.shape[1]
            else _numeric_fixed_terms(model_spec, tuple(keep))
            if isinstance(model_spec, NumericSpec) and not rename
            else _fixed_terms(model_spec, rename, keep)
        ),
        spec=model_spec if X_full.shape[1] else None,
        messages=tuple(messages),
    )


def _order_and_check_terms(
    terms: list[RandomTerm], n: int, residual_variance: bool
) -> list[RandomTerm]:
    """The terms in lme4's order, checked for enough observations per level and effect."""
    order = _lme4_term_order([t.nlevels for t in terms])
    terms = [terms[i] for i in order]
    for t in terms:
        if not residual_variance:
            # GLMMs without a scale parameter may have one level per observation
            # (observation-level random effects for overdispersion), as lme4's glmer
            continue
        if t.nlevels >= n:
            raise GroupingError(
                f"grouping factor {t.group_name!r} has {t.nlevels} levels for {n} observations; "
                f"the number of levels of each grouping factor must be less than the number of "
                f"observations (each group needs replicates)"
            )
        if n <= t.n_ranef:
            raise GroupingError(
                f"the term ({t.spec.source}) has {t.n_ranef} random effects "
                f"({t.nlevels} levels x {t.n_effects} effects) for {n} observations; "
                f"its variance components and the residual variance cannot be identified — "
                f"simplify the term"
            )
    return terms


# ---------------------------------------------------------------------------------------------
# the fast path


@dataclass(frozen=True)
class _FastPlan:
    """What the fast path needs from a formula (it depends on the text only).

    ``response`` is a column name, or with ``cbind`` the two expressions (sums, differences,
    products... of columns) of a ``cbind(successes, failures)`` response. ``numeric`` lists the
    columns that must be numeric (those of a cbind response, the variables of the fixed part's
    interactions and of the random effects, without repeats); ``fixed_single`` the variables of
    the fixed part's one-variable terms, numeric columns or factors; ``groups`` the grouping
    variable of each random-effects term, in the formula's order; ``effects`` each term's
    columns (None for an intercept only).
    """

    response: str
    cbind: tuple[str, str] | None
    fixed_terms: tuple[tuple[str, ...], ...]
    fixed_single: tuple[str, ...]
    effects: tuple[NumericSpec | None, ...]
    groups: tuple[str, ...]
    numeric: tuple[str, ...]
    formula_vars: frozenset[str]
    used: frozenset[str]


@functools.lru_cache(maxsize=256)
def _fast_plan(spec: FormulaSpec) -> _FastPlan | None:
    """The fast path's recipe for a formula, or None when the formula needs the general path
    (transformations, factors in interactions, interactions or nesting of grouping factors,
    offsets, a response that is neither a column name nor cbind() of arithmetic of columns)."""
    resp = spec.response
    if resp is None or spec.offsets:
        return None
    numeric: dict[str, None] = {}
    response_vars: frozenset[str] = frozenset()
    cbind = None
    if resp.isidentifier() and not keyword.iskeyword(resp):
        response_vars = frozenset([resp])
    else:
        try:
            args = _cbind_args(resp)
        except FormulaError:
            return None
        parsed = [_arithmetic_tree(a) for a in args] if args is not None else [None]
        if args is None or parsed[0] is None or parsed[1] is None:
            return None
        cbind = (args[0], args[1])
        for _, names in parsed:  # type: ignore[misc]
            for name in sorted(names):
                numeric.setdefault(name, None)
        response_vars = frozenset(numeric)
    fixed = _numeric_terms(spec.fixed)
    if fixed is None:
        return None
    effects: list[NumericSpec | None] = []
    groups: list[str] = []
    for term in spec.random:
        if len(term.factors) != 1:
            return None
        groups.append(term.factors[0])
        if term.effects.strip() == "1":
            effects.append(None)
            continue
        eff = _numeric_terms(term.effects)
        if not eff:
            return None
        effects.append(_numeric_spec_of(eff))
    single = tuple(t[0] for t in fixed if len(t) == 1)
    formula_vars: set[str] = set(single)
    for terms in [[t for t in fixed if len(t) > 1]] + [e.terms for e in effects if e is not None]:
        for t in terms:
            for name in t:
                numeric.setdefault(name, None)
                formula_vars.add(name)
    return _FastPlan(
        response=resp,
        cbind=cbind,
        fixed_terms=fixed,
        fixed_single=single,
        effects=tuple(effects),
        groups=tuple(groups),
        numeric=tuple(numeric),
        formula_vars=frozenset(formula_vars),
        used=frozenset(numeric) | frozenset(groups) | frozenset(single) | response_vars,
    )


def _column_array(frame: pd.DataFrame, name: str) -> tuple[int, Any] | None:
    """The position and values of a column (an ndarray or a pandas extension array; not to be
    modified), or None if ``name`` is not a column."""
    try:
        loc = frame.columns.get_loc(name)
    except (KeyError, TypeError):
        return None
    if not isinstance(loc, int):
        return None
    get = getattr(frame, "_get_column_array", None)
    if get is not None:  # pandas' own accessor: no Series is made (a Series costs ~10 us)
        try:
            return loc, get(loc)
        except Exception:  # pragma: no cover - a pandas without it
            pass
    return loc, frame.iloc[:, loc].array  # pragma: no cover


class _FrameSnapshot:
    """``Design.frame`` of the fast path, made when first asked for: the columns used, copied
    when the design is built (so that later changes to the data do not show), and put together
    as the general path does (``data[used columns]`` prepared by :func:`_prepare_frame`).

    Copying a few arrays costs a microsecond or two; making the frame costs about a
    millisecond, which a fit that never needs the frame does not pay.
    """

    def __init__(
        self,
        data: pd.DataFrame,
        columns: Mapping[str, tuple[int, Any]],
        formula_vars: frozenset[str],
    ) -> None:
        used = sorted(columns.values(), key=lambda lv: lv[0])  # in the data's column order
        self.positions = [loc for loc, _ in used]
        self.values = [np.array(v) if isinstance(v, np.ndarray) else v.copy() for _, v in used]
        self.labels = data.columns  # an Index is immutable
        self.index = data.index
        attrs = data.attrs
        plain = all(v is None or isinstance(v, str | int | float) for v in attrs.values())
        self.attrs = dict(attrs) if plain else copy.deepcopy(attrs)  # plain values: immutable
        self.formula_vars = set(formula_vars)

    def __call__(self) -> pd.DataFrame:
        values = {  # object columns stay objects (pandas 3 would make strings of them)
            i: pd.Series(v, dtype=object, copy=False) if v.dtype == object else v
            for i, v in enumerate(self.values)
        }
        frame = pd.DataFrame(values, copy=False)
        frame.index = self.index
        frame.columns = self.labels.take(self.positions)
        frame.attrs = self.attrs
        return _prepare_frame(frame, self.formula_vars)[0]


def _plain_numeric_values(values: Any) -> np.ndarray | None:
    """A numpy integer or float column as a read-only view, None for anything else (booleans,
    extension dtypes) or when it has a missing or infinite value."""
    if not isinstance(values, np.ndarray) or values.dtype.kind not in "iuf":
        return None
    if values.dtype.kind == "f" and not np.isfinite(values).all():
        return None
    return values


def _fast_design(
    plan: _FastPlan,
    spec: FormulaSpec,
    frame_all: pd.DataFrame,
    weights: str | ArrayLike | None,
    offset: str | ArrayLike | None,
    residual_variance: bool,
    factor_response: bool,
) -> Design | None:
    """:func:`build_design` from the columns' arrays, or None for anything the general path
    must handle (which also raises every error)."""
    n = len(frame_all)
    if n == 0:
        return None
    columns: dict[str, tuple[int, Any]] = {}  # name: (position, values) of the columns used
    for name in plan.used:
        found = _column_array(frame_all, name)
        if found is None:
            return None
        columns[name] = found
    numeric: dict[str, np.ndarray] = {}
    for name in plan.numeric:
        values = _plain_numeric_values(columns[name][1])
        if values is None:
            return None
        numeric[name] = values
    grouping: dict[str, tuple[np.ndarray, pd.Index]] = {}
    for name in plan.groups:
        if name not in grouping:
            g = _factor_codes(columns[name][1], ordered=True)
            if g is None:
                return None
            grouping[name] = g
    w_all, weights_name = _resolve_vector(weights, frame_all, "weights")
    if w_all is not None and not (np.isfinite(w_all).all() and (w_all > 0).all()):
        return None
    o_all, offset_name = _resolve_vector(offset, frame_all, "offset")
    if o_all is not None and not np.isfinite(o_all).all():
        return None

    factors: dict[str, tuple[np.ndarray, pd.Index]] = {}
    for name in plan.fixed_single:
        values = columns[name][1]
        if name in numeric:
            continue
        num = _plain_numeric_values(values)
        if num is not None:
            numeric[name] = num
            continue
        if isinstance(values, np.ndarray) and values.dtype.kind in "iuf":
            return None  # a numeric column with missing or infinite values
        coded = _factor_codes(values)
        if coded is None:
            return None
        factors[name] = coded
    response = _fast_response(plan, columns[plan.response][1] if plan.cbind is None else None,
                              numeric, factor_response)  # fmt: skip
    if response is None:
        return None
    y, trials = response

    def column(name: str) -> np.ndarray:
        return numeric[name]

    fixed_spec = _numeric_spec_of(plan.fixed_terms, {k: v[1] for k, v in factors.items()})
    X_full = _numeric_matrix(
        fixed_spec.terms, column, n, spec=fixed_spec, codes=lambda name: factors[name][0]
    )
    # the columns used are finite (checked above): only products of them can overflow
    fixed = _fixed_part(X_full, fixed_spec.column_names, fixed_spec, {},
                        finite=all(len(t) < 2 for t in fixed_spec.terms),
                        full_rank=_independent_by_construction(fixed_spec))  # fmt: skip

    terms = []
    for t, eff, group in zip(spec.random, plan.effects, plan.groups, strict=True):
        refs, levels = grouping[group]
        z = None
        names: tuple[str, ...] = ("(Intercept)",)
        if eff is not None:
            z = _numeric_matrix(eff.terms, column, n, rows=True)
            names = _r_names(eff.column_names)
            if any(len(term) > 1 for term in eff.terms):
                what = f"column {{}} of the random-effects term ({t.source})"
                _check_finite_columns(z, True, names, what)
        terms.append(
            RandomTerm(
                spec=t,
                group_name=t.group_name,
                levels=levels,
                refs=refs,
                z=z,
                effect_names=names,
                effects_spec=eff,
            )
        )
    terms = _order_and_check_terms(terms, n, residual_variance)

    return _make_design(
        spec, frame_all, fixed, terms,
        response_name=plan.response, y=y, weights=w_all,
        offset=None if o_all is None else o_all.copy(), row_index=frame_all.index, n_dropped=0,
        weights_name=weights_name, offset_name=offset_name, messages=fixed.messages,
        frame=_FrameSnapshot(frame_all, columns, plan.formula_vars), trials=trials,
    )  # fmt: skip


def _independent_by_construction(spec: NumericSpec) -> bool:
    """Whether the columns of the fast path's fixed part are independent whatever the data:
    an intercept alone, or one factor's indicators with or without an intercept (the fast path
    keeps only the levels that occur, so each indicator has a row of its own)."""
    rest = [t for t in spec.terms if t]
    if not rest:
        return len(spec.terms) == 1
    return len(rest) == 1 and len(spec.factors) == 1 and rest[0] == (spec.factors[0][0],)


def _fast_response(
    plan: _FastPlan, values: Any, numeric: Mapping[str, np.ndarray], factor_response: bool
) -> tuple[np.ndarray, np.ndarray | None] | None:
    """(y, trials) of the fast path, as :func:`_evaluate_response` makes them, or None when
    the general path must evaluate (or reject) the response."""
    if plan.cbind is not None:
        succ, fail = (_arithmetic(a, lambda name: np.asarray(numeric[name], dtype=float))
                      for a in plan.cbind)  # fmt: skip
        if succ is None or fail is None or succ.shape != fail.shape:
            return None
        # what the general path rejects (non-finite or negative counts) or warns about
        # (non-integer counts) is left to it; the rest needs no further check
        from mixedmodels.linalg.kernels import binomial_counts

        y, trials = np.empty(succ.shape), np.empty(succ.shape)
        return (y, trials) if binomial_counts(succ, fail, y, trials) else None
    num = _plain_numeric_values(values)
    if num is not None:
        return np.array(num, dtype=float), None
    if isinstance(values, np.ndarray) and values.dtype == bool:
        return values.astype(float), None
    if not factor_response or (isinstance(values, np.ndarray) and values.dtype.kind in "iuf"):
        return None
    found = _factor_codes(values, ordered=True)
    if found is None or len(found[1]) != 2 or found[1].dtype == bool:
        return None
    if isinstance(values, pd.Categorical) and set(values.categories) <= {False, True}:
        return None
    return (found[0] == 1).astype(float), None


@functools.lru_cache(maxsize=256)
def _r_names(columns: tuple[str, ...]) -> tuple[str, ...]:
    """R's names of formulaic's columns (:func:`r_column_name` without renaming; cached: the
    same columns come back with every fit of a formula)."""
    return tuple(r_column_name(c) for c in columns)


@functools.lru_cache(maxsize=256)
def _numeric_fixed_terms(spec: NumericSpec, keep: tuple[int, ...]) -> tuple[FixedTerm, ...]:
    """:func:`_fixed_terms` of the fast path's spec (immutable, hashable: cached)."""
    return _fixed_terms(spec, {}, list(keep))


def _fixed_terms(spec: Any, rename: Mapping[str, str], keep: list[int]) -> tuple[FixedTerm, ...]:
    """R-style description of formulaic's terms: labels, factors, numeric flags, columns."""
    position = {c: i for i, c in enumerate(keep)}
    out = []
    if isinstance(spec, NumericSpec):
        coded = {name for name, _, _ in spec.factors}
        start = 0
        for names, width in zip(spec.terms, spec.term_widths(), strict=True):
            factors = tuple(rename.get(e, e) for e in names)
            full = tuple(range(start, start + width))
            start += width
            out.append(
                FixedTerm(
                    label=":".join(factors) if factors else "(Intercept)",
                    factors=factors,
                    numeric=tuple(e not in coded for e in names),
                    columns=tuple(position[c] for c in full if c in position),
                    full_columns=full,
                )
            )
        return tuple(out)
    for term in spec.terms:
        sl = spec.term_slices[term]
        exprs = [f.expr for f in term.factors if f.expr != "1"]
        factors = tuple(rename.get(e, e) for e in exprs)
        numeric = tuple(not str(spec.encoder_state[e][0]).endswith("CATEGORICAL") for e in exprs)
        full = tuple(range(sl.start, sl.stop))
        out.append(
            FixedTerm(
                label=":".join(factors) if factors else "(Intercept)",
                factors=factors,
                numeric=numeric,
                columns=tuple(position[c] for c in full if c in position),
                full_columns=full,
            )
        )
    return tuple(out)


def _substitute(formula: str, poly: Mapping[str, str]) -> str:
    """Give ordered categoricals polynomial contrasts by rewriting their bare names."""
    if not poly:
        return formula
    from mixedmodels.formula.parser import _Parser
    from mixedmodels.formula.terms import render

    node = _Parser(formula).expr()
    return render(node, poly)


def _cbind_args(resp: str) -> list[str] | None:
    """The two expressions of a ``cbind(successes, failures)`` response, or None."""
    text = resp.strip()
    if not (text.startswith("cbind(") and text.endswith(")")):
        return None
    inner = text[len("cbind(") : -1]
    parts = _split_top_level(inner, ",")
    if len(parts) != 2:
        raise FormulaError(
            f"cbind() in the response takes two arguments, successes and failures; "
            f"got {len(parts)}",
            resp,
        )
    return [p.strip() for p in parts]


_ARITHMETIC = {
    ast.Add: np.add,
    ast.Sub: np.subtract,
    ast.Mult: np.multiply,
    ast.Div: np.true_divide,
    ast.Pow: np.power,
}


@functools.lru_cache(maxsize=256)
def _arithmetic_tree(expr: str) -> tuple[ast.AST, frozenset[str]] | None:
    """The syntax tree of +, -, *, /, ** of names and numbers (optionally inside ``I()``) and
    the names in it; None for any other expression."""
    try:
        tree = ast.parse(expr.strip(), mode="eval").body
    except SyntaxError:
        return None
    if (
        isinstance(tree, ast.Call)
        and isinstance(tree.func, ast.Name)
        and tree.func.id == "I"
        and len(tree.args) == 1
        and not tree.keywords
    ):
        tree = tree.args[0]
    names: set[str] = set()

    def simple(node: ast.AST) -> bool:
        if isinstance(node, ast.Constant):
            return isinstance(node.value, int | float) and not isinstance(node.value, bool)
        if isinstance(node, ast.Name):
            names.add(node.id)
            return True
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return simple(node.operand)
        if isinstance(node, ast.BinOp) and type(node.op) in _ARITHMETIC:
            return simple(node.left) and simple(node.right)
        return False

    if not simple(tree) or not names:
        return None
    return tree, frozenset(names)


def _arithmetic(expr: str, column: Callable[[str], np.ndarray | None]) -> np.ndarray | None:
    """Evaluate +, -, *, /, ** of numeric columns and numbers (optionally inside ``I()``)
    directly, ``column`` giving a column's values as floats (None if it is not a numeric
    column); None for anything else (left to formulaic)."""
    parsed = _arithmetic_tree(expr)
    if parsed is None:
        return None
    tree, names = parsed
    values = {}
    for name in names:
        v = column(name)
        if v is None:
            return None
        values[name] = v

    def ev(node: ast.AST) -> Any:
        if isinstance(node, ast.Constant):
            assert isinstance(node.value, int | float)
            return float(node.value)
        if isinstance(node, ast.Name):
            return values[node.id]
        if isinstance(node, ast.UnaryOp):
            return -ev(node.operand)
        assert isinstance(node, ast.BinOp)
        a, b = ev(node.left), ev(node.right)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.asarray(_ARITHMETIC[type(node.op)](a, b), dtype=float)

    return np.array(ev(tree), dtype=float)


def _simple_arithmetic(expr: str, frame: pd.DataFrame) -> np.ndarray | None:
    """:func:`_arithmetic` on the columns of a data frame."""

    def column(name: str) -> np.ndarray | None:
        if name not in frame.columns:
            return None
        col = frame[name]
        if not pd.api.types.is_numeric_dtype(col.dtype) or pd.api.types.is_bool_dtype(col.dtype):
            return None
        return col.to_numpy(dtype=float)

    return _arithmetic(expr, column)


def _evaluate_expression(expr: str, frame: pd.DataFrame, what: str, source: str) -> np.ndarray:
    if expr in frame.columns:
        s = frame[expr]
        if not pd.api.types.is_numeric_dtype(s.dtype) or pd.api.types.is_bool_dtype(s.dtype):
            raise DataError(f"{what} {expr!r} must be numeric, but the column has type {s.dtype}")
        return s.to_numpy(dtype=float).copy()
    fast = _simple_arithmetic(expr, frame)
    if fast is not None:
        _check_finite(fast, f"{what} {expr!r}")
        return fast
    mm = _model_matrix(f"0 + I({expr})", frame, what, source)
    if mm.shape[1] != 1:
        raise DataError(f"{what} {expr!r} must evaluate to one numeric column")
    values = np.asarray(mm, dtype=float).ravel()
    _check_finite(values, f"{what} {expr!r}")
    return values


def _binomial_counts(
    succ: np.ndarray, fail: np.ndarray, args: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """(proportion of successes, trials) of ``cbind(successes, failures)``, checked."""
    if np.any(succ < 0) or np.any(fail < 0):
        bad = "successes" if np.any(succ < 0) else "failures"
        nbad = int(np.sum((succ if bad == "successes" else fail) < 0))
        hint = "successes above the number of trials?" if bad == "failures" else "check the data"
        raise DataError(
            f"cbind({args[0]}, {args[1]}): the {bad} must not be negative "
            f"({nbad} row{'s' if nbad != 1 else ''}; {hint})"
        )
    if np.any(np.abs(succ - np.round(succ)) > 1e-3) or np.any(np.abs(fail - np.round(fail)) > 1e-3):
        import warnings

        warnings.warn("non-integer counts in a binomial glm", UserWarning, stacklevel=5)
    return _proportions(succ, fail)


def _proportions(succ: np.ndarray, fail: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(proportion of successes, trials) of checked counts; 0 where there are no trials."""
    trials = succ + fail
    if trials.size and trials.min() > 0:
        return succ / trials, trials
    with np.errstate(invalid="ignore", divide="ignore"):
        y = np.where(trials > 0, succ / np.where(trials > 0, trials, 1.0), 0.0)
    return y, trials


def _evaluate_response(
    spec: FormulaSpec, frame: pd.DataFrame, factor_response: bool = False
) -> tuple[np.ndarray, np.ndarray | None]:
    """(y, trials): the response, and for ``cbind(successes, failures)`` the numbers of trials
    (y is then the proportion of successes, R's convention)."""
    assert spec.response is not None
    resp = spec.response
    args = _cbind_args(resp)
    if args is not None:
        succ = _evaluate_expression(args[0], frame, "the successes", spec.source)
        fail = _evaluate_expression(args[1], frame, "the failures", spec.source)
        return _binomial_counts(succ, fail, args)
    if resp in frame.columns:
        s = frame[resp]
        if pd.api.types.is_bool_dtype(s.dtype) or (
            isinstance(s.dtype, pd.CategoricalDtype) and set(s.cat.categories) <= {False, True}
        ):
            return s.astype(float).to_numpy(), None
        if not pd.api.types.is_numeric_dtype(s.dtype):
            if factor_response:
                return _two_level_indicator(s, resp), None
            raise DataError(
                f"the response {resp!r} must be numeric, but the column has type {s.dtype}; "
                f"convert it (e.g. with pd.to_numeric) or choose another response"
            )
        return s.to_numpy(dtype=float).copy(), None
    fast = _simple_arithmetic(resp, frame)
    if fast is not None:
        _check_finite(fast, f"the response {resp!r}")
        return fast, None
    mm = _model_matrix(f"0 + I({resp})", frame, "response", spec.source)
    if mm.shape[1] != 1:
        raise DataError(f"the response {resp!r} must evaluate to one numeric column")
    y = np.asarray(mm, dtype=float).ravel()
    _check_finite(y, f"the response {resp!r}")
    return y, None


def _two_level_indicator(s: pd.Series, name: str) -> np.ndarray:
    """A factor response for the binomial family: 1 for the second level (R: not the first)."""
    if isinstance(s.dtype, pd.CategoricalDtype):
        levels = list(s.cat.remove_unused_categories().cat.categories)
    else:
        levels = sorted(pd.unique(s.dropna()))
    if len(levels) != 2:
        raise DataError(
            f"the response {name!r} is a factor with {len(levels)} levels; a binomial response "
            f"needs two (the first, {levels[0]!r}, counts as failure)"
            if levels
            else f"the response {name!r} has no values"
        )
    return (s.astype(object) == levels[1]).to_numpy(dtype=float)


def _build_term(
    spec: RandomTermSpec,
    frame: pd.DataFrame,
    poly: Mapping[str, str],
    rename: Mapping[str, str],
    source: str,
) -> RandomTerm:
    for f in spec.factors:
        s = frame[f]
        nlev = s.nunique(dropna=True)
        if nlev < 2:
            raise GroupingError(
                f"grouping factor {f!r} in ({spec.source}) has only {nlev} level in the rows used; "
                f"random effects need a factor with two or more levels"
            )
    refs, levels = _group_codes(frame, spec.factors)
    if spec.effects.strip() == "1":
        z = None
        names: tuple[str, ...] = ("(Intercept)",)
        effects_spec = None
    else:
        effects = _substitute(spec.effects, poly)
        mm = _design_matrix(effects, frame, f"random-effects term ({spec.source})", source)
        z = np.ascontiguousarray(np.asarray(mm, dtype=float).T)
        names = tuple(r_column_name(str(c), rename) for c in mm.columns)
        if z.shape[0] == 0:
            raise FormulaError(f"the random-effects term ({spec.source}) has no columns", source)
        what = f"column {{}} of the random-effects term ({spec.source})"
        _check_finite_columns(z, True, names, what)
        effects_spec = mm.model_spec
    return RandomTerm(
        spec=spec,
        group_name=spec.group_name,
        levels=levels,
        refs=refs,
        z=z,
        effect_names=names,
        effects_spec=effects_spec,
    )


def _prepare_newdata(design: Design, frame: pd.DataFrame) -> pd.DataFrame:
    out = {}
    for col in frame.columns:
        s = frame[col]
        if pd.api.types.is_bool_dtype(s.dtype):
            s = pd.Series(pd.Categorical(s, categories=[False, True]), index=frame.index, name=col)
        out[col] = s
    return pd.DataFrame(out, index=frame.index)


def new_data_arrays(
    design: Design,
    newdata: Any,
    used_terms: Sequence[int],
    allow_new_levels: bool,
) -> tuple[
    np.ndarray, np.ndarray | None, list[tuple[int, np.ndarray, np.ndarray | None]], np.ndarray
]:
    """Evaluate the fixed part and the chosen random-effects terms of a fitted design on new data.

    Returns ``(X, offset, [(term index, level codes, z)], complete)`` where ``complete`` marks
    the rows of ``newdata`` without missing values in the variables needed (the arrays cover
    those rows only). Levels not seen in the fit get codes from the term's number of levels up,
    one code per new level.
    """
    frame = _as_frame(newdata)
    spec = design.formula
    needed: set[str] = set()
    needed |= _required_variables(spec.fixed, frame, "the fixed effects")
    for expr in spec.offsets:
        needed |= _required_variables(expr, frame, "the offset", formula=False)
    for j in used_terms:
        t = design.terms[j]
        if t.effects_spec is not None:
            needed |= _required_variables(
                t.spec.effects, frame, f"the random-effects term ({t.spec.source})"
            )
        for f in t.spec.factors:
            if f not in frame.columns:
                raise _unknown_column(f, frame, f"the grouping factor of ({t.spec.source})")
            needed.add(f)
    offset_col = design.offset_name if design.offset_name not in (None, "<array>") else None
    if offset_col is not None:
        if offset_col not in frame.columns:
            raise _unknown_column(offset_col, frame, "the offset")
        needed.add(offset_col)
    elif design.offset_name == "<array>":
        raise DataError(
            "the model was fitted with an offset given as an array; to predict on new data give "
            "the offset as a column name when fitting (or use offset(...) in the formula)"
        )
    cols = [c for c in frame.columns if c in needed]
    complete = ~frame[cols].isna().any(axis=1).to_numpy() if cols else np.ones(len(frame), bool)
    sub = _prepare_newdata(design, frame.loc[complete, cols] if cols else frame.loc[complete])
    m = int(complete.sum())

    if design.fixed_spec is None:
        X = np.zeros((m, 0))
    else:
        try:
            with warnings.catch_warnings():
                # formulaic warns of levels not in the fit (and codes them as zeros): an error,
                # as for the factors it leaves to us and in R
                warnings.filterwarnings("error", message=".*categories outside of the nominated")
                mm = design.fixed_spec.get_model_matrix(sub, na_action="ignore")
        except DataError:
            raise
        except Exception as exc:
            raise DataError(
                f"cannot evaluate the fixed effects on the new data: {str(exc).splitlines()[0]}"
            ) from None
        X = np.asarray(mm, dtype=float)[:, list(design.fixed_columns)]
    offset = None
    if offset_col is not None:
        offset = sub[offset_col].to_numpy(dtype=float)
    for expr in spec.offsets:
        col = np.asarray(
            _model_matrix(f"0 + I({expr})", sub, "offset", spec.source), dtype=float
        ).ravel()
        offset = col if offset is None else offset + col

    parts: list[tuple[int, np.ndarray, np.ndarray | None]] = []
    for j in used_terms:
        t = design.terms[j]
        if len(t.spec.factors) == 1:
            values = sub[t.spec.factors[0]]
            values = (
                values.astype(object) if isinstance(values.dtype, pd.CategoricalDtype) else values
            )
            refs = t.levels.get_indexer(pd.Index(values))
        else:
            lab = None
            for f in t.spec.factors:
                piece = sub[f].astype(str).to_numpy(dtype=object)
                lab = piece if lab is None else lab + ":" + piece
            refs = t.levels.get_indexer(pd.Index(lab))
        new = refs < 0
        if new.any():
            labels = np.asarray(sub[list(t.spec.factors)].astype(str).agg(":".join, axis=1))[new]
            if not allow_new_levels:
                bad = pd.unique(labels)
                shown = ", ".join(map(str, bad[:5])) + (", ..." if len(bad) > 5 else "")
                raise DataError(
                    f"new levels of grouping factor {t.group_name!r} in newdata ({shown}); "
                    f"pass allow_new_levels=True to predict them at the population level"
                )
            codes, _ = pd.factorize(labels)
            refs = refs.copy()
            refs[new] = t.nlevels + codes
        if t.effects_spec is None:
            z = None
        else:
            try:
                mmz = t.effects_spec.get_model_matrix(sub, na_action="ignore")
            except Exception as exc:
                raise DataError(
                    f"cannot evaluate the random-effects term ({t.spec.source}) on the new data: "
                    f"{str(exc).splitlines()[0]}"
                ) from None
            z = np.ascontiguousarray(np.asarray(mmz, dtype=float).T)
        parts.append((j, refs.astype(np.int64), z))
    return X, offset, parts, complete
