"""Contrast matrices for F-tests of fixed-effect terms (types I, II and III).

These follow lmerTest (Kuznetsova et al. 2017), which follows SAS's definitions:

* **Type I** (sequential): rows of the unit lower-triangular factor of the Doolittle
  decomposition of X'X belonging to each term; each term is tested after the terms before it.
* **Type II**: a term contained in no other term is tested marginally (its columns); a term
  contained in others is tested after every term that does not contain it (Doolittle
  decomposition of X'X with the term and its containers moved last).
* **Type III**: contrasts for the "complete" (cell-means) parameterization projected on the
  model's parameterization, with each term orthogonalized against the terms containing it; they
  are worked out in treatment coding and mapped to the model's coding (e.g. the polynomial
  contrasts of ordered factors).

A term contains another when it has all the other's variables and more, and the same numeric
variables (so ``recipe`` is not contained in ``recipe:temp`` when ``temp`` is numeric).
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np

from mixedmodels.formula.design import FixedTerm, _model_matrix, _rank_columns, r_column_name

if TYPE_CHECKING:
    from mixedmodels.formula.design import Design

__all__ = ["contrasts", "doolittle_lower", "marginal_terms", "term_containment"]


def doolittle_lower(x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Unit lower-triangular factor L of the Doolittle LU decomposition x = L U, without pivoting;
    entries below ``eps`` in magnitude are set to zero (lmerTest's ``doolittle``)."""
    n = x.shape[0]
    L = np.eye(n)
    U = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            U[i, j] = x[i, j] - L[i, :i] @ U[:i, j]
        for j in range(i + 1, n):
            val = x[j, i] - L[j, :i] @ U[:i, i]
            L[j, i] = 0.0 if abs(U[i, i]) < eps else val / U[i, i]
    L[np.abs(L) < eps] = 0.0
    return L


def _zapsmall(x: np.ndarray, digits: int = 7) -> np.ndarray:
    """R's ``zapsmall``."""
    mx = float(np.max(np.abs(x), initial=0.0))
    if mx == 0 or not np.isfinite(mx):
        return x
    return np.round(x, max(0, digits - int(np.ceil(np.log10(mx)))))


def _ginv(A: np.ndarray) -> np.ndarray:
    """Moore-Penrose inverse with MASS::ginv's tolerance (sqrt(eps) times the largest s.v.)."""
    if A.size == 0:
        return A.T.copy()
    U, s, Vt = np.linalg.svd(A, full_matrices=False)
    keep = s > max(np.sqrt(np.finfo(float).eps) * s[0], 0.0)
    return (Vt[keep].T / s[keep]) @ U[:, keep].T


def _terms(design: Design) -> list[FixedTerm]:
    return [t for t in design.fixed_terms if t.label != "(Intercept)"]


def term_containment(design: Design) -> dict[str, list[str]]:
    """For each term, the terms that contain it (lmerTest's ``containment``)."""
    terms = _terms(design)
    out: dict[str, list[str]] = {}
    for t1 in terms:
        v1 = set(t1.factors)
        out[t1.label] = [
            t2.label
            for t2 in terms
            if v1 <= set(t2.factors)
            and set(t2.factors) - v1
            and t1.numeric_factors == t2.numeric_factors
        ]
    return out


def marginal_terms(design: Design) -> list[str]:
    """Terms that can be dropped without breaking marginality (R's ``drop.scope``): those whose
    variables are not all contained in another term."""
    terms = _terms(design)
    out = []
    for t1 in terms:
        v1 = set(t1.factors)
        if not any(v1 < set(t2.factors) for t2 in terms if t2 is not t1):
            out.append(t1.label)
    return out


def _type1(design: Design) -> dict[str, np.ndarray]:
    X = design.X
    p = X.shape[1]
    terms = _terms(design)
    if p == 0:
        return {}
    L = np.ones((1, 1)) if p == 1 else doolittle_lower(X.T @ X).T
    return {t.label: L[list(t.columns)] for t in terms}


def _marginal(design: Design, which: list[str]) -> dict[str, np.ndarray]:
    p = design.X.shape[1]
    eye = np.eye(p)
    cols = {t.label: list(t.columns) for t in _terms(design)}
    return {term: eye[cols[term]] for term in which}


def _type2(design: Design, which: list[str]) -> dict[str, np.ndarray]:
    X = design.X
    terms = {t.label: list(t.columns) for t in _terms(design)}
    contained = term_containment(design)
    out = {}
    for term in which:
        cols_term = sorted({c for name in [term, *contained[term]] for c in terms[name]})
        rest = [c for c in range(X.shape[1]) if c not in cols_term]
        order = rest + cols_term
        Xnew = X[:, order]
        Lc = doolittle_lower(Xnew.T @ Xnew).T
        rows = [i for i, c in enumerate(order) if c in terms[term]]
        # back to the columns of X
        back = np.empty_like(Lc[rows])
        back[:, order] = Lc[rows]
        out[term] = back
    return out


def _type2_unfolded(design: Design) -> dict[str, np.ndarray]:
    contained = term_containment(design)
    names = [t.label for t in _terms(design)]
    marginal = [n for n in names if not contained[n]]
    rest = [n for n in names if contained[n]]
    out = {**_marginal(design, marginal), **(_type2(design, rest) if rest else {})}
    return {n: out[n] for n in names}


def _factor_matrix(design: Design, expr: str) -> tuple[np.ndarray, list[str]]:
    """Columns of one factor in 'complete' coding: indicators of every level of a categorical
    factor, or the values of a numeric one."""
    assert design.frame is not None
    mm = _model_matrix(f"0 + {expr}", design.frame, "contrast matrix", design.formula.source)
    names = [r_column_name(str(c)) for c in mm.columns]
    return np.asarray(mm, dtype=float), names


def _khatri_rao(parts: list[tuple[np.ndarray, list[str]]]) -> tuple[np.ndarray, list[str]]:
    """Row-wise products of the factors' columns, the first factor varying fastest (R's order)."""
    M, names = parts[0]
    for M2, names2 in parts[1:]:
        M = (M[:, :, None] * M2[:, None, :]).reshape(M.shape[0], -1, order="F")
        names = [f"{a}:{b}" for b in names2 for a in names]
    return M, names


def _treatment_design(
    design: Design,
) -> tuple[np.ndarray, list[str], dict[str, list[int]], dict[str, list[str]]]:
    """The fixed-effects matrix rebuilt with treatment contrasts for every factor (full rank),
    its column names, the columns of each term, and each term's factor expressions."""
    assert design.frame is not None
    mm = _model_matrix(design.formula.fixed, design.frame, "contrast matrix", design.formula.source)
    X = np.asarray(mm, dtype=float)
    names = [r_column_name(str(c)) for c in mm.columns]
    keep = _rank_columns(X)
    position = {c: i for i, c in enumerate(keep)}
    spec = mm.model_spec
    term_cols: dict[str, list[int]] = {}
    term_exprs: dict[str, list[str]] = {}
    for term in spec.terms:
        exprs = [f.expr for f in term.factors if f.expr != "1"]
        if not exprs:
            continue
        label = ":".join(exprs)
        sl = spec.term_slices[term]
        term_cols[label] = [position[c] for c in range(sl.start, sl.stop) if c in position]
        term_exprs[label] = exprs
    return X[:, keep], [names[k] for k in keep], term_cols, term_exprs


def _type3(design: Design) -> dict[str, np.ndarray]:
    terms = _terms(design)
    X, xnames, term_cols, term_exprs = _treatment_design(design)
    labels = [t.label for t in terms]
    if set(labels) != set(term_cols):  # pragma: no cover - both come from the same formula
        raise RuntimeError(f"terms differ between codings: {labels} vs {list(term_cols)}")
    # the complete (cell-means) design, term by term
    blocks = []
    names: list[str] = []
    if design.has_intercept:
        blocks.append(np.ones((X.shape[0], 1)))
        names.append("(Intercept)")
    for label in labels:
        M, nm = _khatri_rao([_factor_matrix(design, e) for e in term_exprs[label]])
        blocks.append(M)
        names.extend(nm)
    rdX = np.hstack(blocks)
    empty = [names[i] for i in np.flatnonzero(np.all(rdX == 0, axis=0))]
    if empty:
        warnings.warn(
            f"Missing cells for: {', '.join(empty)}. Interpret type III hypotheses with care.",
            UserWarning,
            stacklevel=4,
        )
    # rows: parameters of the complete design; columns: parameters of X (treatment coding)
    L = _zapsmall((_ginv(X) @ rdX).T)
    contained = term_containment(design)
    for t in sorted(terms, key=lambda t: len(t.factors), reverse=True):
        containers = contained[t.label]
        if not containers:
            continue
        Xc = L[:, [c for name in containers for c in term_cols[name]]]
        Y = L[:, term_cols[t.label]]
        coef, *_ = np.linalg.lstsq(Xc, Y, rcond=None)
        L[:, term_cols[t.label]] = _zapsmall(Y - Xc @ coef)
    L = L[[names.index(n) for n in xnames]]
    mapping = _zapsmall(_ginv(X) @ design.X)  # treatment coding -> the model's coding
    out = {}
    for label in labels:
        Lt = L[:, term_cols[label]].T
        Lt = Lt[np.sum(np.abs(Lt), axis=1) > 1e-8]
        out[label] = Lt @ mapping
    return out


def contrasts(design: Design, type: int | str) -> dict[str, np.ndarray]:
    """The hypothesis matrix of each fixed-effect term for an F-test of the given type.

    Parameters
    ----------
    design
        The model's design.
    type
        1, 2 or 3 (or "I", "II", "III").

    Returns
    -------
    dict
        Term label -> contrast matrix (rows, p).
    """
    kind = {"1": 1, "I": 1, "2": 2, "II": 2, "3": 3, "III": 3}.get(str(type).upper())
    if kind is None:
        raise ValueError(f"type must be 1, 2 or 3 (or 'I', 'II', 'III'), not {type!r}")
    terms = _terms(design)
    if kind == 1 or design.X.shape[1] <= 1 or len(terms) <= 1:
        return _type1(design)
    if kind == 2:
        return _type2_unfolded(design)
    return _type3(design)
