"""Tests of terms and comparisons of models.

* :func:`term_tests` — F-tests of the fixed-effect terms of one model (types I, II, III) with
  Satterthwaite's or Kenward-Roger's denominator df (lmerTest's ``anova``).
* :func:`drop1` — F-tests for dropping each marginal fixed-effect term (lmerTest's ``drop1``).
* :func:`ranova` — likelihood-ratio tests for reducing each random-effects term (lmerTest's
  ``ranova``).
* :func:`compare` — likelihood-ratio tests between nested models (lme4's ``anova(m0, m1)``);
  REML fits are refitted with ML first.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import special

from mixedmodels.display.anova import AnovaTable
from mixedmodels.errors import DataError, ModelSpecError
from mixedmodels.inference.contrasts import contrasts, marginal_terms

if TYPE_CHECKING:
    from mixedmodels.formula.terms import RandomTermSpec
    from mixedmodels.results import LmerResult

__all__ = ["RefitNotice", "compare", "drop1", "ranova", "term_tests"]

_F_COLUMNS = ["Sum Sq", "Mean Sq", "NumDF", "DenDF", "F value", "Pr(>F)"]


class RefitNotice(UserWarning):
    """A model was refitted (e.g. with ML instead of REML) to make a comparison valid."""


def _ddf_name(ddf: str) -> str:
    key = ddf.lower().replace("_", "-").replace(" ", "-")
    if key in ("satterthwaite", "s"):
        return "satterthwaite"
    if key in ("kenward-roger", "kenward", "kr", "kenwardroger"):
        return "kenward-roger"
    raise ModelSpecError(f"ddf must be 'satterthwaite' or 'kenward-roger', not {ddf!r}")


def contrast_f_test(result: LmerResult, L: np.ndarray, ddf: str = "satterthwaite") -> list[float]:
    """[Sum Sq, Mean Sq, NumDF, DenDF, F value, Pr(>F)] for H0: L beta = 0."""
    L = np.atleast_2d(np.asarray(L, dtype=float))
    method = _ddf_name(ddf)
    s2 = result.sigma**2
    if L.shape[0] == 0:
        return [math.nan] * 6
    if method == "kenward-roger":
        kr = result._kenward_roger
        F_u, F, q, den, p = kr.f_test(L, result.beta)
        ms = F_u * s2
        return [ms * q, ms, float(q), den, F, p]
    from mixedmodels.inference.satterthwaite import f_test

    res = f_test(result._satterthwaite, L, result.beta)
    if res is None:
        return [math.nan] * 6
    F, q, den, p = res
    ms = F * s2
    return [ms * q, ms, float(q), den, F, p]


def term_tests(result: LmerResult, type: int | str = 3, ddf: str = "satterthwaite") -> AnovaTable:
    """F-tests of the fixed-effect terms (lmerTest's ``anova(fit, type=, ddf=)``)."""
    method = _ddf_name(ddf)
    kind = {"1": "I", "I": "I", "2": "II", "II": "II", "3": "III", "III": "III"}.get(
        str(type).upper()
    )
    if kind is None:
        raise ModelSpecError(f"type must be 1, 2 or 3, not {type!r}")
    Ls = contrasts(result.design, type)
    rows = {term: contrast_f_test(result, L, method) for term, L in Ls.items()}
    name = "Satterthwaite's" if method == "satterthwaite" else "Kenward-Roger's"
    return AnovaTable(
        [rows[t] for t in rows],
        index=list(rows),
        columns=_F_COLUMNS,
        heading=[f"Type {kind} Analysis of Variance Table with {name} method"],
    )


def drop1(result: LmerResult, ddf: str = "satterthwaite") -> AnovaTable:
    """F-tests for dropping each marginal fixed-effect term (lmerTest's ``drop1``)."""
    method = _ddf_name(ddf)
    design = result.design
    cols = {t.label: list(t.columns) for t in design.fixed_terms}
    eye = np.eye(design.X.shape[1])
    rows = {}
    for term in marginal_terms(design):
        rows[term] = contrast_f_test(result, eye[cols[term]], method)
    name = "Satterthwaite's" if method == "satterthwaite" else "Kenward-Roger's"
    return AnovaTable(
        [rows[t] for t in rows],
        index=list(rows),
        columns=_F_COLUMNS,
        heading=[f"Single term deletions using {name} method:", "\nModel:", design.formula.source],
    )


# ---------------------------------------------------------------------------------------------
# random-effects tests


def _term_text(term: RandomTermSpec) -> str:
    return f"{term.effects} | {term.group_name}"


def _reductions(term: RandomTermSpec) -> list[tuple[str, str | None]]:
    """lmerTest's ``get_newforms``: (row name, new effects or None to drop the term)."""
    from formulaic import Formula

    labels = [str(t) for t in Formula(term.effects)]
    effects = [t for t in labels if t != "1"]
    if not effects:
        return [(f"({_term_text(term)})", None)]
    scope = [
        t
        for t in effects
        if not any(set(t.split(":")) < set(o.split(":")) for o in effects if o != t)
    ]
    out: list[tuple[str, str | None]] = []
    for scp in scope:
        rest = [t for t in effects if t != scp]
        if not rest:
            new = "1"
        else:
            prefix = "" if "1" in labels else "0 + "
            new = prefix + " + ".join(rest)
        out.append((f"{scp} in ({_term_text(term)})", new))
    return out


def _refit_random(result: LmerResult, random: Sequence[RandomTermSpec]) -> Any:
    """The model with other random-effects terms, fitted with the same criterion."""
    from mixedmodels.formula.design import build_design
    from mixedmodels.lm import fit_lm
    from mixedmodels.lmm import LinearMixedModel

    design = result.design
    spec = design.formula
    text = f"{spec.response} ~ {spec.fixed}" + "".join(f" + ({_term_text(t)})" for t in random)
    new_spec = replace(spec, source=text, random=tuple(random), offsets=())
    frame = design.frame
    assert frame is not None
    if not random:
        d = build_design(
            new_spec, frame, weights=design.weights, offset=design.offset, require_random=False
        )
        return fit_lm(d)
    d = build_design(new_spec, frame, weights=design.weights, offset=design.offset)
    model = LinearMixedModel.from_design(d, reml=result.reml)
    return model.fit(warn=False)


def _loglik_df(fit: Any, reml: bool) -> tuple[float, int]:
    from mixedmodels.lm import LmResult

    if isinstance(fit, LmResult):
        return (fit.loglik_reml if reml else fit.loglik), fit.npar
    return fit.loglik, fit.npar


def ranova(result: LmerResult) -> AnovaTable:
    """Likelihood-ratio tests for removing or reducing each random-effects term.

    A term ``(1 | g)`` (or ``(0 + x | g)``) is removed; in ``(x | g)`` each effect that can be
    dropped is dropped (lmerTest's ``ranova``). Models are compared with the criterion they were
    fitted with (REML fits by their REML likelihood, which is valid since the fixed effects do
    not change).
    """
    spec = result.design.formula
    terms = list(spec.random)
    ll0, df0 = result.loglik, result.npar
    rows = [[df0, ll0, -2 * ll0 + 2 * df0, math.nan, math.nan, math.nan]]
    names = ["<none>"]
    for i, term in enumerate(terms):
        for name, new_effects in _reductions(term):
            new_terms = list(terms)
            if new_effects is None:
                del new_terms[i]
            else:
                new_terms[i] = replace(
                    term, effects=new_effects, source=f"{new_effects} | {term.group_name}"
                )
            fit = _refit_random(result, new_terms)
            ll, npar = _loglik_df(fit, result.reml)
            if fit.nobs != result.nobs:  # pragma: no cover - same rows by construction
                raise DataError("number of rows in use has changed: remove missing values?")
            lrt = 2 * (ll0 - ll)
            dfd = df0 - npar
            p = float(special.chdtrc(dfd, lrt)) if dfd > 0 else math.nan
            rows.append([npar, ll, -2 * ll + 2 * npar, lrt, dfd, p])
            names.append(name)
    full = f"{spec.response} ~ {spec.fixed}" + "".join(f" + ({_term_text(t)})" for t in terms)
    return AnovaTable(
        rows,
        index=names,
        columns=["npar", "logLik", "AIC", "LRT", "Df", "Pr(>Chisq)"],
        heading=["ANOVA-like table for random-effects: Single term deletions", "\nModel:", full],
    )


# ---------------------------------------------------------------------------------------------
# comparisons of models


def _same_data(fits: Sequence[Any]) -> None:
    ref = fits[0].design
    for f in fits[1:]:
        d = f.design
        if d.nobs != ref.nobs:
            raise DataError(
                f"models were not all fitted to the same data: {ref.nobs} and {d.nobs} "
                f"observations "
                f"(rows dropped for missing values differ?); fit them to the same rows"
            )
        same_rows = d.row_index.equals(ref.row_index)
        same_y = np.array_equal(d.y, ref.y)
        if not same_y:
            rows = "" if same_rows else " and the row labels differ"
            raise DataError(
                f"models were not all fitted to the same data: the responses differ{rows}; "
                "fit them to the same data frame"
            )
        if not same_rows:
            raise DataError(
                "models were not all fitted to the same data: the responses are the same but the "
                "row labels of the data differ (was the data frame reindexed or its rows "
                "reordered?); fit them to the same data frame, as lme4 requires"
            )


def _column_space_contains(big: np.ndarray, small: np.ndarray, tol: float = 1e-7) -> bool:
    if small.shape[1] == 0:
        return True
    if big.shape[1] == 0:
        return False
    coef, *_ = np.linalg.lstsq(big, small, rcond=None)
    resid = small - big @ coef
    return bool(
        np.all(
            np.linalg.norm(resid, axis=0) <= tol * np.maximum(np.linalg.norm(small, axis=0), 1.0)
        )
    )


def _random_nested(small: Any, big: Any) -> bool:
    big_terms = [
        (frozenset(t.spec.factors), set(t.effect_names)) for t in getattr(big.design, "terms", ())
    ]
    for t in getattr(small.design, "terms", ()):
        need = (frozenset(t.spec.factors), set(t.effect_names))
        if not any(need[0] == f and need[1] <= names for f, names in big_terms):
            return False
    return True


def _fixed_names(fit: Any) -> list[str]:
    return list(fit.design.fixef_names)


def compare(
    *fits: Any, names: Sequence[str] | None = None, refit: bool = True, check_nested: bool = True
) -> AnovaTable:
    """Likelihood-ratio tests between nested models (lme4's ``anova(m0, m1, ...)``).

    Models are sorted by their number of parameters; each is compared with the one before.
    REML fits are refitted with ML first (with a :class:`RefitNotice`), as lme4 does.

    Parameters
    ----------
    *fits
        Fitted models (:class:`~mixedmodels.LmerResult` or :class:`~mixedmodels.LmResult`; or
        all :class:`~mixedmodels.GlmerResult` of the same family).
    names
        Row names (default ``model1``, ``model2``, ... in the order given).
    refit
        Refit REML fits with ML (default, as lme4). With ``False`` the REML likelihoods are
        compared, which is valid only when the fixed effects are the same.
    check_nested
        Raise if the models are not nested (fixed-effect column spaces and random-effects
        terms). A likelihood-ratio test between non-nested models is not valid; compare their
        AIC or BIC instead.

    Returns
    -------
    AnovaTable
        Columns npar, AIC, BIC, logLik, deviance, Chisq, Df, Pr(>Chisq).
    """
    from mixedmodels.lm import LmResult
    from mixedmodels.results import LmerResult
    from mixedmodels.results_glmm import GlmerResult

    if len(fits) < 2:
        raise ModelSpecError("give at least two fitted models to compare")
    for f in fits:
        if not isinstance(f, LmerResult | LmResult | GlmerResult):
            raise ModelSpecError(f"cannot compare a {type(f).__name__}; give fitted models")
    glmms = [f for f in fits if isinstance(f, GlmerResult)]
    if glmms:
        if len(glmms) != len(fits):
            raise ModelSpecError(
                "cannot compare a generalized linear mixed model with a linear (mixed) model: "
                "their likelihoods are for different distributions of the response"
            )
        fams = {(f.family.name, f.family.link.name) for f in glmms}
        if len(fams) > 1:
            raise ModelSpecError(
                "the models have different families or links ("
                + ", ".join(f"{a}({b})" for a, b in sorted(fams))
                + "); a likelihood-ratio test needs the same response distribution"
            )
        quad = {f.model.nAGQ for f in glmms}
        if len(quad) > 1:
            warnings.warn(
                "the models use different approximations of the likelihood (nAGQ "
                + ", ".join(str(q) for q in sorted(quad))
                + "); their log-likelihoods are not strictly comparable",
                UserWarning,
                stacklevel=3,
            )
    names = list(names) if names is not None else [f"model{i + 1}" for i in range(len(fits))]
    if len(names) != len(fits) or len(set(names)) != len(names):
        raise ModelSpecError("names must be unique, one per model")
    _same_data(fits)
    if refit:
        reml = [isinstance(f, LmerResult) and f.reml for f in fits]
        if any(reml):
            warnings.warn("refitting model(s) with ML (instead of REML)", RefitNotice, stacklevel=3)
        fits = tuple(
            f.model.with_reml(False).fit(start=f.theta, warn=False) if r else f
            for f, r in zip(fits, reml, strict=True)
        )
    else:
        kinds = {isinstance(f, LmerResult) and f.reml for f in fits}
        if len(kinds) > 1:
            warnings.warn("some models fit with REML = True, some not", UserWarning, stacklevel=3)
    lls = [f.loglik for f in fits]
    npars = [f.npar for f in fits]
    order = sorted(range(len(fits)), key=lambda i: npars[i])
    if check_nested:
        for a, b in itertools.pairwise(order):
            small, big = fits[a], fits[b]
            fixed_ok = _column_space_contains(big.design.X, small.design.X)
            if not (fixed_ok and _random_nested(small, big)) or (
                npars[a] == npars[b] and lls[a] != lls[b]
            ):
                raise ModelSpecError(
                    f"models {names[a]!r} and {names[b]!r} are not nested, so a likelihood-ratio "
                    f"test between them is not valid; compare their AIC or BIC instead (or pass "
                    f"check_nested=False)"
                )
    rows = []
    prev = None
    for i in order:
        f = fits[i]
        ll, k = lls[i], npars[i]
        aic = -2 * ll + 2 * k
        bic = -2 * ll + math.log(f.nobs) * k
        if prev is None:
            chisq = dfc = p = math.nan
        else:
            chisq = 2 * max(0.0, ll - lls[prev])
            dfc = k - npars[prev]
            p = float(special.chdtrc(dfc, chisq)) if dfc != 0 else math.nan
        rows.append([k, aic, bic, ll, -2 * ll, chisq, dfc, p])
        prev = i
    data_name = fits[0].design.data_name or "data"
    heading = [f"Data: {data_name}", "Models:"] + [
        f"{names[i]}: {fits[i].design.formula.source}" for i in order
    ]
    return AnovaTable(
        rows,
        index=[names[i] for i in order],
        columns=["npar", "AIC", "BIC", "logLik", "deviance", "Chisq", "Df", "Pr(>Chisq)"],
        heading=heading,
    )
