"""Linear mixed models: the model specification, its profiled objective, and the fit.

The model is :math:`y \\mid b \\sim N(X\\beta + Zb + o, \\sigma^2 W^{-1})`,
:math:`b = \\Lambda_\\theta u`, :math:`u \\sim N(0, \\sigma^2 I_q)` (Bates et al. 2015, JSS 67(1),
eq. 2-4). The blocks of A = [Z X y]' W [Z X y] are formed once from the data; each evaluation of
the objective is a blocked Cholesky factorization of a matrix whose size does not depend on the
number of rows.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mixedmodels._progress import FitProgress
from mixedmodels.errors import ConvergenceWarning, FormulaError, ModelSpecError, SingularFitWarning
from mixedmodels.formula.design import ArrayLike, Design, build_design
from mixedmodels.linalg.assemble import (
    CrossProducts,
    TermData,
    assemble,
    assemble_one_term,
    column_scales,
    response_blocks,
)
from mixedmodels.linalg.cholesky import BlockedCholesky, ThetaLayout
from mixedmodels.linalg.threads import is_small, single_blas_thread
from mixedmodels.optim import (
    PREDICTED_DECREASE_MESSAGE,
    OptSummary,
    finite_difference_derivatives,
    fixed_theta_summary,
    gradient_message,
    hessian_from_gradient,
    minimize_theta,
    minimize_with_gradient,
)

__all__ = ["LinearMixedModel", "lmer"]

#: what :class:`LinearMixedModel` caches that depends neither on the response nor on the
#: criterion (the bounds and the unit start depend on the random-effects columns only)
_Y_FREE_CACHES = frozenset({"lower", "diagonal", "initial"})
_NO_WEIGHTS = np.ones(0)
_NO_COLUMNS = np.ones((1, 1))


@dataclass(frozen=True, eq=False)
class LinearMixedModel:
    """A linear mixed model ready to be fitted: formula, data arrays and the blocks of A.

    Build it with :meth:`from_formula` (or use :func:`lmer`, which also fits it). The object
    is immutable; :meth:`fit` returns a new :class:`~mixedmodels.results.LmerResult`.

    Attributes
    ----------
    design
        The evaluated formula (y, X, random-effects terms, weights, offset).
    reml
        Whether :meth:`fit` maximizes the REML criterion (default) or the likelihood.
    A
        The blocks of A = [Z X y]' W [Z X y].
    layout
        How theta is laid out over the terms.
    beta_shift
        Weighted least-squares coefficients of y on X. The blocks of A are formed from the
        residual y - X beta_shift (minus any offset) rather than from y: the profiled objective
        is the same (the fixed effects absorb any vector in the span of X) but r^2 is no longer
        the small difference of large sums of squares, so a response far from zero loses no
        precision. The estimate of beta is the solution for the residual plus ``beta_shift``.
    """

    design: Design
    reml: bool
    A: CrossProducts
    layout: ThetaLayout
    terms_data: tuple[TermData, ...]
    beta_shift: np.ndarray
    _fast_cache: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    # -- construction ----------------------------------------------------------------------------
    @classmethod
    def from_design(
        cls, design: Design, *, reml: bool = True, chunk_rows: int = 1 << 20
    ) -> LinearMixedModel:
        """Assemble the blocks of A for an evaluated design."""
        if design.trials is not None:
            raise FormulaError(
                "a cbind(successes, failures) response is for binomial models: use "
                "mixedmodels.glmer(..., family='binomial')",
                design.formula.source,
            )
        terms_data = tuple(TermData(t.refs, t.z, t.nlevels, t.n_effects) for t in design.terms)
        one = None
        if len(terms_data) == 1 and design.X.shape[1] and design.nobs <= chunk_rows:
            y = design.y if design.offset is None else design.y - design.offset
            one = assemble_one_term(terms_data[0], design.X, y, design.weights)
        if one is not None:
            A, shift = one
        else:
            y, shift = _residualized_response(design, design.y)
            A = assemble(terms_data, design.X, y, design.weights, chunk_rows=chunk_rows)
        layout = ThetaLayout(tuple(t.n_effects for t in design.terms))
        return cls(
            design=design,
            reml=bool(reml),
            A=A,
            layout=layout,
            terms_data=terms_data,
            beta_shift=shift,
        )

    @classmethod
    def from_formula(
        cls,
        formula: str,
        data: Any,
        *,
        reml: bool = True,
        weights: str | ArrayLike | None = None,
        offset: str | ArrayLike | None = None,
    ) -> LinearMixedModel:
        """Build the model from an lme4-style formula and a data frame (see :func:`lmer`)."""
        design = build_design(formula, data, weights=weights, offset=offset)
        return cls.from_design(design, reml=reml)

    def with_response(self, y: np.ndarray) -> LinearMixedModel:
        """The same model with a new response vector (same X, Z, weights, offset).

        Only the blocks of A that involve y are recomputed, which is what a parametric
        bootstrap needs.
        """
        y = np.asarray(y, dtype=float)
        if y.shape != self.design.y.shape:
            raise ModelSpecError(f"y must have {self.design.nobs} values, got {y.shape}")
        d = self.design
        yr, shift = _residualized_response(d, y)
        A = response_blocks(self.A, self.terms_data, d.X, yr, d.weights)
        from dataclasses import replace

        cache = {k: v for k, v in self._fast_cache.items() if k in _Y_FREE_CACHES}
        if "fast" in self._fast_cache:
            fast = self._fast_cache["fast"]
            cache["fast"] = None if fast is None else fast.with_response(A)
        return replace(self, design=replace(d, y=y), A=A, beta_shift=shift, _fast_cache=cache)

    def with_reml(self, reml: bool) -> LinearMixedModel:
        """The same model with the other criterion (REML or ML)."""
        from dataclasses import replace

        # the starts do not depend on the criterion
        keep = _Y_FREE_CACHES | {"start", "one_term_start"}
        cache = {k: v for k, v in self._fast_cache.items() if k in keep}
        return replace(self, reml=bool(reml), _fast_cache=cache)

    # -- parameters ------------------------------------------------------------------------------
    @property
    def ntheta(self) -> int:
        return self.layout.ntheta

    def _cached(self, key: str, make: Any) -> Any:
        """``make()``, computed once per model (the model is immutable)."""
        cache = self._fast_cache
        if key not in cache:
            cache[key] = make()
        return cache[key]

    @property
    def lower_bounds(self) -> np.ndarray:
        """Lower bounds of theta: 0 for template diagonals, -inf otherwise."""
        return self._cached("lower", self.layout.lower_bounds).copy()

    def _is_intercept_entry(self) -> np.ndarray:
        """Which entries of theta are those of scalar random-intercept terms (cached)."""

        def make() -> np.ndarray:
            out = np.zeros(self.ntheta, dtype=bool)
            for t, off in zip(self.terms_data, self.layout.offsets, strict=False):
                out[off] = t.n_effects == 1 and t.z is None
            return out

        return self._cached("intercept_entries", make)

    def _is_diagonal(self) -> np.ndarray:
        """Which entries of theta are template diagonals (cached; not to be modified)."""
        return self._cached("diagonal", self.layout.is_diagonal)

    def _has_intercept_terms(self) -> bool:
        """Whether a scalar random-intercept term is among the terms."""
        return any(t.n_effects == 1 and t.z is None for t in self.terms_data)

    @property
    def theta_names(self) -> list[str]:
        """lme4's names for theta, e.g. ``Subject.(Intercept)``, ``Subject.Days.(Intercept)``."""
        return self.layout.names(self.design.terms)

    @property
    def nobs(self) -> int:
        return self.A.n

    def column_scales(self) -> list[np.ndarray]:
        """Typical size of each random-effects column (see
        :func:`~mixedmodels.linalg.assemble.column_scales`)."""
        return column_scales(self.terms_data)

    def fast_objective(self) -> Any:
        """The compiled objective with its exact gradient
        (:class:`~mixedmodels.linalg.fast_lmm.FastObjective`), or None where it does not apply;
        built once and cached."""
        cache = self._fast_cache
        if "fast" not in cache:
            from mixedmodels.linalg.fast_lmm import FastObjective

            cache["fast"] = (
                FastObjective(self.A, self.layout, self.reml)
                if FastObjective.applicable(self.A)
                else None
            )
        return cache["fast"]

    def _single_thread(self) -> bool:
        """Whether the fit runs with one BLAS thread: its dense blocks (the terms after the
        first, X and y, see :class:`~mixedmodels.linalg.fast_lmm.FastObjective`) are small.
        A one-term model's search and estimates are compiled loops without BLAS calls
        (:mod:`~mixedmodels.linalg.one_term`): nothing to set there (setting and restoring the
        libraries' threads costs about 10 us, a few per cent of such a fit)."""
        A = self.A
        if A.nterms == 1:
            fast = self.fast_objective()
            if fast is not None and fast.one_term:
                return False
        dense = sum(lv * s for lv, s in A.sizes[1:]) + A.p + 1
        return is_small(dense, self.nobs * (A.p + 1))

    def start_theta(self) -> np.ndarray:
        """Where the optimizer starts: :meth:`initial_theta`, except that each scalar
        random-intercept term (``(1 | g)``) and each vector-valued term starts at a moment
        estimate.

        With r the least-squares residuals, a one-way random-effects model for each intercept
        term gives E[sum_l n_l rbar_l^2] = tau^2 n + sigma^2 l, solved for tau^2. A vector-valued
        term regresses r on its columns within each level (b_l, from the cross-products: no pass
        over the rows) and takes the spread of the b_l less their average sampling covariance,
        sigma^2 mean(G_l^-1), as its covariance. sigma^2 = var(r) less what the terms explain;
        three passes. Crossed and nested designs start within a few per cent of the optimum this
        way (InstEval: 14 evaluations instead of 22; a kb07-like maximal model: 237 instead of
        357), and nothing depends on it but the path.
        """
        return self._cached("start", self._start_theta).copy()

    def _start_theta(self) -> np.ndarray:
        one = self._one_term_start()
        if one is not None:
            return one[2]
        theta0 = self._initial()[0]
        d = self.design
        A = self.A
        intercepts = [j for j, t in enumerate(self.terms_data) if t.n_effects == 1 and t.z is None]
        vectors = [j for j, t in enumerate(self.terms_data) if t.n_effects > 1]
        if not (intercepts or vectors) or d.nobs < 3:
            return theta0
        n = float(d.nobs) if d.weights is None else float(d.weights.sum())
        # the cross-products' response is the residual r of y on X: sum w r^2 is its last
        # entry, and an intercept term's Z'W r and Z'W 1 (the levels' weighted totals of r and
        # their weights) are its y row and its diagonal blocks -- no pass over the rows
        s2r = float(A.xyxy[-1, -1]) / n
        if not s2r > 0:
            return theta0
        # what each term explains is linear in sigma^2: a - sigma^2 b (before the floor at 0)
        linear: list[tuple[float, float]] = []
        for j in intercepts:  # sum_l n_l rbar_l^2 and the number of levels seen
            cnt, tot = A.diag[j][:, 0, 0], A.xy[j][A.p]
            ok = cnt > 0
            linear.append((float(tot[ok] @ (tot[ok] / cnt[ok])), float(np.count_nonzero(ok))))
        moments = {j: self._level_moments(j) for j in vectors}
        for spread, sampling, gram in moments.values():
            linear.append((float(np.vdot(spread, gram)), float(np.vdot(sampling, gram))))
        s2e = s2r
        for _ in range(3):  # the terms' variances at s2e, then s2e from them
            used = s2e
            explained = sum(max(a - used * b, 0.0) for a, b in linear) / n
            s2e = max(s2r - explained, 0.1 * s2r)
        tau2 = [max(0.0, a - used * b) / n for a, b in linear[: len(intercepts)]]
        cov = {j: spread - used * sampling for j, (spread, sampling, _) in moments.items()}
        theta = theta0.copy()
        offs = self.layout.offsets
        for j, t2 in zip(intercepts, tau2, strict=True):
            theta[offs[j]] = max(math.sqrt(t2 / s2e), 0.05)
        for j, Sb in cov.items():
            L = _moment_template(Sb / s2e)
            if L is not None:
                rows, cols = self.layout.tril_indices(self.terms_data[j].n_effects)
                theta[offs[j] : offs[j + 1]] = L[rows, cols]
        return theta

    def _level_moments(self, j: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For a vector-valued term j, from the cross-products (G_l = Z_l'WZ_l, Z_l'W r with r
        the residual of y on X): the mean over levels of b_l b_l' (b_l = G_l^-1 Z_l'W r, the
        level's own regression of r on the term's columns), the mean of G_l^-1 (pseudo-inverses
        where a level does not identify every effect) and sum_l G_l."""
        from mixedmodels.linalg.lmm_kernels import level_moments

        G = np.ascontiguousarray(self.A.diag[j], dtype=float)
        g = self.A.xy[j][self.A.p].reshape(G.shape[0], G.shape[1])
        return level_moments(G, np.ascontiguousarray(g, dtype=float))

    def initial_theta(self) -> tuple[np.ndarray, np.ndarray]:
        """Starting theta and BOBYQA's initial steps, in the units of the data (see
        :meth:`~mixedmodels.linalg.cholesky.ThetaLayout.scaled_start`)."""
        theta0, step = self._initial()
        return theta0.copy(), step.copy()

    def _initial(self) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`initial_theta`, cached (not to be modified)."""
        cache = self._fast_cache
        if "initial" not in cache:
            one = self._one_term_start()
            cache["initial"] = (
                one[:2] if one is not None else self.layout.scaled_start(self.column_scales())
            )
        return cache["initial"]

    def _one_term_start(self) -> tuple[np.ndarray, ...] | None:
        """For a model with one term, :meth:`initial_theta`, :meth:`start_theta`,
        :meth:`search_scale` and the search's unit from the moment start, in one compiled call
        (:func:`~mixedmodels.linalg.one_term.start_values`: the same numbers as the general
        path, at a fraction of its cost); None for other models. Cached."""
        if len(self.terms_data) != 1:
            return None
        cache = self._fast_cache
        if "one_term_start" not in cache:
            from mixedmodels.linalg.one_term import start_values

            d, A, t = self.design, self.A, self.terms_data[0]
            n = float(d.nobs) if d.weights is None else float(d.weights.sum())
            cache["one_term_start"] = start_values(
                A.diag[0], A.xy[0][A.p].reshape(t.nlevels, t.n_effects),
                float(A.xyxy[-1, -1]), n, d.nobs,
                _NO_COLUMNS if t.z is None else np.ascontiguousarray(t.z, dtype=float),
                t.z is not None,
            )  # fmt: skip
        return cache["one_term_start"]

    def search_scale(self) -> np.ndarray:
        """The gradient searches' unit for each entry of theta: the initial step, larger by
        1/0.75 for template diagonals (their first trial step is one unit)."""
        return self._initial()[1] / np.where(self._is_diagonal(), 0.75, 1.0)

    @property
    def n_fixef(self) -> int:
        return self.A.p

    # -- objective -------------------------------------------------------------------------------
    def workspace(self) -> BlockedCholesky:
        """A fresh factorization workspace for this model's blocks."""
        return BlockedCholesky(self.A)

    def objective(self, theta: Sequence[float] | np.ndarray, reml: bool | None = None) -> float:
        """The profiled objective at theta: REML criterion (-2 REML log-likelihood) or deviance.

        Parameters
        ----------
        theta
            Covariance parameters in lme4's order (see :attr:`theta_names`).
        reml
            Override the model's criterion.
        """
        theta = self._check_theta(theta)
        ws = self.workspace()
        ws.update(theta)
        return ws.objective(self.reml if reml is None else reml)

    def _check_theta(self, theta: Sequence[float] | np.ndarray) -> np.ndarray:
        theta = np.asarray(theta, dtype=float).ravel()
        if theta.shape != (self.ntheta,):
            raise ModelSpecError(
                f"theta must have {self.ntheta} values ({', '.join(self.theta_names)}), "
                f"got {theta.size}"
            )
        if np.any(theta < self.lower_bounds):
            raise ModelSpecError("the diagonal entries of theta must be non-negative")
        return theta

    # -- fit -------------------------------------------------------------------------------------
    def fit(
        self,
        *,
        start: Sequence[float] | np.ndarray | None = None,
        ftol_rel: float = 1e-12,
        ftol_abs: float = 1e-10,
        xtol_abs: float = 1e-10,
        maxeval: int | None = None,
        check_convergence: bool = True,
        warn: bool = True,
        optimize: bool = True,
        optimizer: str = "auto",
        progress: bool = True,
    ) -> Any:
        """Estimate theta by minimizing the profiled objective, then beta, sigma and the modes.

        Parameters
        ----------
        start
            Starting theta (default: identity templates).
        optimize
            With ``False``, do not optimize: evaluate the model at ``start`` (which is then
            required) and return the result there (beta, sigma and the modes are still the
            conditional estimates at that theta).
        ftol_rel, ftol_abs, xtol_abs, maxeval
            Stopping criteria of BOBYQA.
        optimizer
            ``"auto"`` (default): a quasi-Newton search with the exact gradient of the objective
            where it is available (every term after the first small enough for a dense block,
            see :class:`~mixedmodels.linalg.fast_lmm.FastObjective`) -- compiled as a whole
            for a small model (:mod:`~mixedmodels.linalg.small_fit`), the same search run in
            Python for a larger one (started from each theta's information where every term
            is scalar), L-BFGS-B for a larger one with more than ten parameters -- and BOBYQA
            where it is not available; ``"lbfgs"`` (L-BFGS-B) or ``"bobyqa"`` to choose.
        check_convergence
            Compute the finite-difference gradient at the optimum and warn if it is large.
        progress
            Show the number of evaluations and the best criterion so far once the fit has run
            for more than two seconds (``False``: never).
        warn
            Emit warnings (singular fit, rank deficiency, convergence) when fitting.

        Returns
        -------
        LmerResult
        """
        from mixedmodels.results import LmerResult

        with single_blas_thread(self._single_thread()):
            step = self._initial()[1]
            x0 = self.start_theta() if start is None else self._check_theta(start)
            reml = self.reml
            fast = self.fast_objective()
            use_gradient = fast is not None and optimizer in ("auto", "lbfgs")
            if optimizer not in ("auto", "lbfgs", "bobyqa"):
                raise ModelSpecError("optimizer must be 'auto', 'lbfgs' or 'bobyqa'")
            if optimizer == "lbfgs" and fast is None:
                raise ModelSpecError(
                    "the exact gradient (optimizer='lbfgs') is not available for this model: its "
                    "random-effects terms other than the first are too large for a dense block"
                )

            if fast is not None:
                f = fast.objective
            else:
                ws = self.workspace()

                def f(theta: np.ndarray) -> float:
                    ws.update(theta)
                    return ws.objective(reml)

            opt: OptSummary | None = None
            if optimize and use_gradient:
                assert fast is not None
                one = self._one_term_start() if start is None else None
                scale = self.search_scale() if one is None else one[4].copy()
                if one is None and start is None and self._has_intercept_terms():
                    # L-BFGS-B's first trial step is one unit of scale. A moment start is already
                    # close, within about its standard error, theta / sqrt(levels) (the criterion's
                    # curvature in log theta grows like the number of levels): that is its unit
                    # (with theta at least half the default unit, for starts near zero).
                    # (vector-valued terms, whose moment start is rougher, keep the plain unit)
                    theta_init = self._initial()[0]
                    moved = (x0 != theta_init) & (x0 > 0) & self._is_intercept_entry()
                    if moved.any():
                        nlev = np.ones_like(x0)
                        for t, off in zip(self.terms_data, self.layout.offsets, strict=False):
                            nlev[off] = t.nlevels
                        unit = np.maximum(x0, 0.5 * scale) / np.sqrt(nlev)
                        scale = np.where(moved, np.minimum(scale, unit), scale)
                if fast.small and optimizer == "auto":
                    # the whole search in one compiled call (a few evaluations of ~10 us each;
                    # a Python optimizer loop would cost several times more than they do)
                    opt = fast.minimize(x0, self.lower_bounds, scale)
                else:
                    with FitProgress("lmer", progress) as bar:
                        fg = bar.wrap(fast.objective_gradient)
                        if optimizer == "auto" and fast.scalar_terms:
                            opt = _quasi_newton(
                                fg, x0, self.lower_bounds, scale,
                                bar.wrap(fast.objective_gradient_information),
                            )  # fmt: skip
                        elif optimizer == "auto" and x0.size <= _QUASI_NEWTON_MAX_THETA:
                            opt = _quasi_newton(fg, x0, self.lower_bounds, scale)
                        else:
                            opt = minimize_with_gradient(fg, x0, self.lower_bounds, scale)
                if opt.return_code < 0 or not np.isfinite(opt.fmin):
                    opt = None  # fall back to the derivative-free optimizer
            if optimize and opt is None:
                with FitProgress("lmer", progress) as bar:
                    opt = minimize_theta(
                        bar.wrap(f),
                        x0,
                        self.lower_bounds,
                        ftol_rel=ftol_rel,
                        ftol_abs=ftol_abs,
                        xtol_abs=xtol_abs,
                        maxeval=maxeval,
                        initial_step=step,
                    )
            elif not optimize:
                if start is None:
                    raise ModelSpecError(
                        "optimize=False needs start= (the theta to evaluate the model at)"
                    )
                opt = fixed_theta_summary(x0, f(x0), self.lower_bounds)
            assert opt is not None
            theta = opt.final
            values = theta.tolist()
            singular = (
                min([values[i] for i in self.layout.diagonal_positions()], default=1.0) < 1e-4
            )
            conv_warnings: list[str] = []
            if opt.return_code < 0 or opt.return_code == 5:
                conv_warnings.append(
                    f"optimizer (LN_BOBYQA) stopped with code {opt.return_code} ({opt.message})"
                )
            gradient = None
            if optimize and check_convergence and fast is not None:
                gradient = opt.gradient
                if gradient is None:
                    _, gradient = fast.objective_gradient(theta)
                # lme4's check scales the gradient by the Hessian (ntheta more gradients); a stop on
                # the predicted decrease has already shown the Newton step to be negligible
                if (
                    not singular
                    and gradient.size
                    and float(np.abs(gradient).max()) > 2e-3
                    and opt.message != PREDICTED_DECREASE_MESSAGE
                ):
                    steps = 1e-4 * np.maximum(np.abs(theta), step)
                    _, H = hessian_from_gradient(
                        fast.objective_gradient, theta, self.lower_bounds, steps
                    )
                    msg = gradient_message(gradient, H)
                    if msg:
                        conv_warnings.append(msg)
            elif optimize and check_convergence and self.ntheta <= 30:
                gradient, _ = finite_difference_derivatives(
                    f, theta, self.lower_bounds, hessian=False
                )
                if not singular:
                    msg = _gradient_check(f, theta, self.lower_bounds, gradient)
                    if msg:
                        conv_warnings.append(msg)
            if conv_warnings or opt.warnings or gradient is not opt.gradient:
                opt = opt.updated(gradient=gradient, warnings=tuple(conv_warnings))
            result = None if fast is None else LmerResult.from_fast(self, fast, opt, singular)
            if fast is not None:
                fast.release()  # the model keeps its objective, not the last factor
            if result is None:
                ws = self.workspace()
                ws.update(theta)
                if not ws.ok:  # pragma: no cover - the optimum is always factorable
                    raise ModelSpecError("the model matrix could not be factored at the optimum")
                result = LmerResult.from_workspace(self, ws, opt, singular)
        if warn:
            for msg in self.design.messages:
                if "rank deficient" in msg:
                    warnings.warn(msg, UserWarning, stacklevel=3)
            if singular:
                warnings.warn(
                    "boundary (singular) fit: a variance is estimated as zero or a correlation as "
                    "+/-1; see LmerResult.is_singular",
                    SingularFitWarning,
                    stacklevel=3,
                )
            for msg in conv_warnings:
                warnings.warn(msg, ConvergenceWarning, stacklevel=3)
        return result


def _moment_template(S: np.ndarray) -> np.ndarray | None:
    """The lower Cholesky factor of a moment estimate of a relative covariance matrix, its
    eigenvalues floored at 1e-3 of the largest where it is not positive definite (compiled:
    numpy's and scipy's wrappers cost more than a few-by-few factorization); None when no
    eigenvalue is positive."""
    from mixedmodels.linalg.lmm_kernels import moment_template

    ok, L = moment_template(np.ascontiguousarray(S, dtype=float))
    return L if ok else None


def _gradient_check(
    f: Any, theta: np.ndarray, lower: np.ndarray, grad: np.ndarray, tol: float = 2e-3
) -> str | None:
    """lme4's check.conv.grad: warn when the Hessian-scaled gradient exceeds ``tol``."""
    if np.max(np.abs(grad), initial=0.0) <= tol:
        return None
    _, H = finite_difference_derivatives(f, theta, lower, hessian=True)
    return gradient_message(grad, H, tol)


#: a larger model with vector-valued terms and at most this many parameters is fitted by the
#: quasi-Newton search of small models (run in Python); with more, L-BFGS-B's handling of many
#: parameters on their bounds takes far fewer evaluations (the kb07-like maximal model, 72
#: parameters and half of them on zero: 274 against 1203)
_QUASI_NEWTON_MAX_THETA = 10


def _quasi_newton(
    fg: Callable[[np.ndarray], tuple[float, np.ndarray]],
    x0: np.ndarray,
    lower: np.ndarray,
    scale: np.ndarray,
    fgi: Callable[[np.ndarray], tuple[float, np.ndarray, np.ndarray | None]] | None = None,
) -> OptSummary:
    """Minimize the criterion of a model too large for the compiled search by the same
    quasi-Newton search, run in Python around ``fg``
    (:func:`~mixedmodels.linalg.small_fit.search_python`).

    Where every term is scalar (``fgi``: :meth:`FastObjective.objective_gradient_information
    <mixedmodels.linalg.fast_lmm.FastObjective.objective_gradient_information>`) its first
    inverse Hessian comes from each theta's expected information at x0: the information I of
    log theta (4 sum r_i^2 over a term's levels, r_i the shrinkage factors) gives the
    curvature in theta, I / theta^2, and the first step is a scoring step, which lands next to
    the minimum (InstEval: 9 evaluations with L-BFGS-B, 6 with this start); a theta next to
    zero, whose information vanishes, gets at most four units of ``scale`` squared. Otherwise
    the search starts from the identity, with a first step of unit length. On simulated
    crossed designs with a correlated slope L-BFGS-B ended 0.3 to 1.2 higher in deviance on 5
    of 64 fits (a variance on zero with the correlation's sign the other way), this search on
    none."""
    from mixedmodels.linalg import small_fit

    if fgi is None:
        return small_fit.search_python(fg, x0, lower, scale)
    f0, g0, info = fgi(x0)
    h = 4.0 * scale * scale
    if info is not None:
        with np.errstate(divide="ignore", invalid="ignore"):
            h = np.minimum(np.where((x0 > 0) & (info > 0), x0 * x0 / info, np.inf), h)
    return small_fit.search_python(
        fg, x0, lower, scale, inverse_hessian=np.diag(h / (scale * scale)), start=(f0, g0)
    )


def lmer(
    formula: str,
    data: Any,
    *,
    reml: bool = True,
    weights: str | ArrayLike | None = None,
    offset: str | ArrayLike | None = None,
    start: Sequence[float] | np.ndarray | None = None,
    check_convergence: bool = True,
    warn: bool = True,
    progress: bool = True,
) -> Any:
    """Fit a linear mixed model, as lme4's ``lmer``.

    Parameters
    ----------
    formula
        lme4-style formula, e.g. ``"Reaction ~ Days + (Days | Subject)"``. Random-effects terms
        are written ``(effects | group)``; ``(x || g)`` drops the correlations, ``(1 | a/b)``
        nests ``b`` in ``a``, ``(1 | a:b)`` groups by combinations. The fixed part accepts
        ``a * b``, ``a:b``, ``0 +``/``- 1``, ``np.log(x)``, ``I(x**2)``, ``C(x)``,
        ``center(x)``, ``scale(x)`` and ``offset(expr)``.
    data
        A pandas DataFrame (or a mapping of column name to values).
    reml
        Maximize the REML criterion (default) or the log-likelihood (``False``).
    weights
        Prior weights: a column name or an array with one value per row of ``data``.
    offset
        An offset added to the linear predictor: a column name or an array.
    start
        Starting value of theta.
    check_convergence
        Check the gradient at the optimum (as lme4 does) and warn if it is large.
    warn
        Emit warnings about singular fits, rank deficiency and convergence.
    progress
        Show the number of evaluations and the best criterion so far on fits that run for
        more than two seconds (``False``: never).

    Returns
    -------
    LmerResult
        The fitted model.

    Examples
    --------
    >>> import mixedmodels as mm
    >>> fit = mm.lmer("Reaction ~ Days + (Days | Subject)", mm.datasets.load("sleepstudy"))
    >>> round(fit.loglik, 4)
    -871.8141
    """
    model = LinearMixedModel.from_formula(formula, data, reml=reml, weights=weights, offset=offset)
    return model.fit(start=start, check_convergence=check_convergence, warn=warn, progress=progress)


def _residualized_response(design: Design, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(y - offset - X gamma, gamma): gamma is the weighted least-squares fit of y - offset on X
    (normal equations with one step of refinement, compiled; an orthogonal factorization
    where X'WX is too ill-conditioned for them)."""
    from mixedmodels.linalg.lmm_kernels import wls_residual

    yo = y if design.offset is None else y - design.offset
    X = design.X
    if X.shape[1] == 0:
        return yo, np.zeros(0)
    w = design.weights
    ok, r, gamma = wls_residual(
        np.ascontiguousarray(X, dtype=float), np.ascontiguousarray(yo, dtype=float),
        _NO_WEIGHTS if w is None else np.ascontiguousarray(w, dtype=float), w is not None,
    )  # fmt: skip
    if ok:
        return r, gamma
    if w is None:
        gamma = np.linalg.lstsq(X, yo, rcond=None)[0]
    else:
        sw = np.sqrt(w)
        gamma = np.linalg.lstsq(X * sw[:, None], yo * sw, rcond=None)[0]
    return yo - X @ gamma, gamma
