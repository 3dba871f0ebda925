r"""Generalized linear mixed models: PIRLS, the Laplace approximation, adaptive quadrature.

The model: y_i | b ~ family(mu_i), g(mu) = eta = X beta + Z b + o, b = Lambda(theta) u,
u ~ N(0, I) (Bates et al. 2015; lme4's ``glmer``; MixedModels.jl's ``GeneralizedLinearMixedModel``).

**PIRLS.** For given theta (and beta, or with beta estimated alongside u) the conditional modes
of u maximize the penalized log-likelihood. Each iteration forms working weights
w = w_prior (d mu/d eta)^2 / V(mu) and the working response z = eta - o + (y - mu)/(d mu/d eta),
solves the penalized weighted least-squares problem with the blocked Cholesky factorization of
the linear mixed model (the blocks of A are re-formed with the new weights: PIRLS is the one
place a GLMM touches the rows at every step), and halves the step while the penalized deviance
sum(d_i) + ||u||^2 increases.

**Laplace approximation** (nAGQ = 1), lme4's criterion:

.. math:: -2\ell(\theta,\beta) \approx \log|L_Z|^2 + \|\tilde u\|^2 + \mathrm{aic}(y, \tilde\mu)

where aic is the family's -2 conditional log-likelihood (with its normalizing constants).

**Adaptive Gauss-Hermite quadrature** (nAGQ > 1, one scalar random-effects term): the integral
over each group's effect is evaluated at nAGQ nodes centred on the mode and scaled by 1 / L_ii,
as lme4's ``glmerAGQ`` (whose deviance, like lme4's, uses deviance residuals and so omits the
family's normalizing constants).

**Optimization.** For binomial and Poisson models with their canonical links and scalar
random-effects terms the exact gradient of the Laplace criterion in (theta, beta) is available
(an adjoint computation costing about one more PIRLS iteration, see
:func:`mixedmodels._glmm_kernels.laplace_gradient`), and (theta, beta) are optimized jointly
by L-BFGS-B, started at the fixed effects of one PIRLS at the initial theta; the standard
errors come from central differences of the gradient. Otherwise, as lme4: stage 1 (nAGQ = 0)
optimizes theta with beta estimated inside PIRLS; for nAGQ >= 1 stage 2 then optimizes
(theta, beta) jointly with PIRLS over u only; both stages use BOBYQA.
"""

from __future__ import annotations

import functools
import itertools
import math
import warnings
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

import numpy as np
import scipy.linalg as sla

from mixedmodels._progress import FitProgress
from mixedmodels.errors import ModelSpecError
from mixedmodels.families import Binomial, Family, get_family
from mixedmodels.formula.design import ArrayLike, Design, build_design
from mixedmodels.linalg.assemble import CrossProducts, Reweighter, TermData, column_scales
from mixedmodels.linalg.cholesky import BlockedCholesky, ThetaLayout
from mixedmodels.linalg.threads import (
    UNTHREADED_MATVEC,
    UNTHREADED_PRODUCT,
    is_small,
    single_blas_thread,
)
from mixedmodels.optim import OptSummary, minimize_theta, minimize_with_gradient

__all__ = ["GeneralizedLinearMixedModel", "PirlsError", "glmer"]


class PirlsError(ModelSpecError):
    """Penalized iteratively reweighted least squares did not converge."""


#: PIRLS iterations after which a settled deviance ends the iteration even if the steps stay
#: large (separation)
_DRIFT_ITERATIONS = 25
#: the aic's per-row parts of the compiled data where the criterion does not need them
_NO_ROWS = np.zeros(0)
#: no matrix asked for from a compiled kernel (the derivatives of the modes, L_X^-T)
_NO_MATRIX = np.zeros((0, 0))


@functools.lru_cache(maxsize=256)
def _search_bounds(
    sizes: tuple[int, ...], nlevels: tuple[int, ...], p: int
) -> tuple[np.ndarray, np.ndarray]:
    """:meth:`GeneralizedLinearMixedModel._search_bounds` (read-only arrays, shared)."""
    nlev = [
        float(nl) for s, nl in zip(sizes, nlevels, strict=True) for _ in range(s * (s + 1) // 2)
    ]
    lower = np.concatenate((ThetaLayout(sizes).lower_bounds(), np.full(p, -np.inf)))
    root = np.sqrt(nlev)
    root.flags.writeable = False
    lower.flags.writeable = False
    return root, lower


@functools.lru_cache(maxsize=64)
def _first_inverse_hessian(nth: int, p: int) -> np.ndarray:
    """The compiled joint search's first inverse Hessian in its units (theta over its unit,
    beta in the units R with R R' its unscaled covariance at the joint start; see
    :meth:`GeneralizedLinearMixedModel._optimize_gradient`), diagonal: 0.35 for each theta (in
    these units its curvature is about 4 r^2 with r the groups' shrinkage factor, about 0.9
    where a variance is clearly positive); for the fixed effects 1/2 with one term (the
    deviance's curvature in beta is twice the inverse covariance) and 1/4 with more (R is
    made at the default theta, farther from the optimum: on VerbAgg and grouseticks the
    curvature in these units is 4 to 7 rather than 2). Against the identity rescaled after
    the first step the searches take fewer evaluations for the same optima: cbpp 8 -> 7,
    VerbAgg 18 -> 12, 144 simulated one-term binomial and Poisson fits 1722 -> 1434 and 24
    two-term ones 429 -> 317 in all. Shared, read only by the search."""
    H0 = np.diag(np.full(nth + p, 0.5 if nth == 1 else 0.25))
    H0[np.arange(nth), np.arange(nth)] = 0.35
    return H0


@functools.lru_cache(maxsize=64)
def _plain_units(p: int) -> tuple[np.ndarray, np.ndarray]:
    """beta0 = 0 and R = I of size p: the search's units of beta that leave beta as it is, for
    the compiled criterion at given points (shared; the kernels only read them, and they stay
    writable so that the kernels' signatures are those of the search's own arrays)."""
    return np.zeros(p), np.eye(p)


_PIRLS_MESSAGES = {
    1: "the penalized weighted least-squares system could not be factored",
    2: "PIRLS produced a non-finite deviance",
    3: "PIRLS step-halvings failed to reduce the deviance",
    4: "PIRLS did not converge in the maximum number of iterations",
}


def gauss_hermite(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights of the n-point Gauss-Hermite rule for the standard normal density
    (weights sum to 1)."""
    from numpy.polynomial.hermite_e import hermegauss

    z, w = hermegauss(n)
    return z, w / math.sqrt(2 * math.pi)


@dataclass
class _State:
    """PIRLS state kept between evaluations (warm starts)."""

    u: np.ndarray
    beta: np.ndarray


class Optimum(NamedTuple):
    """The result of :meth:`GeneralizedLinearMixedModel.optimize`: the estimates, the
    optimizer's summary (of the last stage), the evaluations per stage and the PIRLS state
    reached at the last evaluation (a warm start at the optimum)."""

    theta: np.ndarray
    beta: np.ndarray
    opt: OptSummary
    counts: dict[str, int]
    state: _State


@dataclass(frozen=True, eq=False)
class GeneralizedLinearMixedModel:
    """A generalized linear mixed model ready to be fitted (see :func:`glmer`).

    Attributes
    ----------
    design
        The evaluated formula.
    family
        Response distribution and link.
    trials
        Binomial numbers of trials per row (``n`` in R's binomial family; 1 otherwise).
    prior_weights
        Prior weights (times the trials for a ``cbind`` response, as R).
    offset
        Offset of the linear predictor (zeros if none).
    nAGQ
        0 (beta inside PIRLS), 1 (Laplace) or the number of quadrature nodes.
    """

    design: Design
    family: Family
    trials: np.ndarray
    prior_weights: np.ndarray
    offset: np.ndarray
    nAGQ: int
    layout: ThetaLayout
    terms_data: tuple[TermData, ...]
    tol_pirls: float = 1e-7
    tol_step: float = 1e-6
    maxit_pirls: int = 100
    _cache: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def from_design(
        cls, design: Design, family: Family, nAGQ: int = 1
    ) -> GeneralizedLinearMixedModel:
        if isinstance(nAGQ, bool | np.bool_):
            raise ModelSpecError(
                f"nAGQ must be an integer from 0 to 25, not the boolean {nAGQ!r}; use nAGQ=1 for "
                f"the Laplace approximation or nAGQ=0 for beta estimated inside PIRLS"
            )
        if not isinstance(nAGQ, int | np.integer) or nAGQ < 0 or nAGQ > 25:
            raise ModelSpecError("nAGQ must be an integer from 0 to 25")
        if nAGQ > 1 and (len(design.terms) != 1 or design.terms[0].n_effects != 1):
            raise ModelSpecError(
                "nAGQ > 1 (adaptive Gauss-Hermite quadrature) is only available for models with a "
                "single scalar random-effects term such as (1 | g); use nAGQ=1 (Laplace)"
            )
        n = design.nobs
        prior = np.ones(n) if design.weights is None else design.weights.copy()
        if design.trials is not None:
            if not isinstance(family, Binomial):
                raise ModelSpecError(
                    "a cbind(successes, failures) response needs family='binomial'"
                )
            trials = design.trials.copy()
            prior = prior * trials
        else:
            trials = np.ones(n)
        # a cbind() response's counts were checked (and warned about) with the design, and
        # its proportions lie in [0, 1]: nothing left to check
        if design.trials is None:
            family.check(design.y, trials, prior, design.response_name)
        if not family.established:
            warnings.warn(
                f"the {family.name} family is fitted with lme4's Laplace criterion, whose accuracy "
                f"for families with a scale parameter is not established",
                UserWarning,
                stacklevel=3,
            )
        offset = np.zeros(n) if design.offset is None else design.offset.copy()
        terms_data = tuple(TermData(t.refs, t.z, t.nlevels, t.n_effects) for t in design.terms)
        return cls(
            design=design,
            family=family,
            trials=trials,
            prior_weights=prior,
            offset=offset,
            nAGQ=int(nAGQ),
            layout=ThetaLayout(tuple(t.n_effects for t in design.terms)),
            terms_data=terms_data,
        )

    @classmethod
    def from_formula(
        cls,
        formula: str,
        data: Any,
        family: str | Family = "binomial",
        *,
        link: str | None = None,
        nAGQ: int = 1,
        weights: str | ArrayLike | None = None,
        offset: str | ArrayLike | None = None,
    ) -> GeneralizedLinearMixedModel:
        fam = get_family(family, link)
        design = build_design(
            formula,
            data,
            weights=weights,
            offset=offset,
            factor_response=isinstance(fam, Binomial),
            residual_variance=fam.has_scale,
        )
        return cls.from_design(design, fam, nAGQ)

    def with_response(self, y: np.ndarray) -> GeneralizedLinearMixedModel:
        """The same model with a new response (proportions for binomial), for the bootstrap."""
        y = np.asarray(y, dtype=float)
        # what does not depend on the response is shared
        cache = {k: v for k, v in self._cache.items() if k in ("rw_x", "rw_0", "gh")}
        new = replace(self, design=replace(self.design, y=y), _cache=cache)
        fast = self._cache.get("fast")
        if fast is not None:  # (without the search data's entries made from the old response)
            kept = {k: v for k, v in fast.items() if not k.startswith("_")}
            new._cache["fast"] = {**kept, **new._response_parts()}
        return new

    def with_nAGQ(self, nAGQ: int) -> GeneralizedLinearMixedModel:
        return (
            GeneralizedLinearMixedModel.from_design(self.design, self.family, nAGQ)
            if nAGQ != self.nAGQ
            else self
        )

    # -- sizes and names ------------------------------------------------------------------------
    @property
    def nobs(self) -> int:
        return self.design.nobs

    @property
    def n_fixef(self) -> int:
        return self.design.X.shape[1]

    @property
    def ntheta(self) -> int:
        return self.layout.ntheta

    @property
    def q(self) -> int:
        return sum(t.n_ranef for t in self.design.terms)

    @property
    def lower_bounds(self) -> np.ndarray:
        return self.layout.lower_bounds()

    @property
    def theta_names(self) -> list[str]:
        return self.layout.names(self.design.terms)

    # -- pieces of PIRLS ------------------------------------------------------------------------
    def _reweighter(self, with_x: bool) -> Reweighter:
        key = "rw_x" if with_x else "rw_0"
        rw = self._cache.get(key)
        if rw is None:
            X = self.design.X if with_x else np.zeros((self.nobs, 0))
            rw = Reweighter(self.terms_data, X)
            self._cache[key] = rw
        return rw

    def _workspace(self, with_x: bool) -> BlockedCholesky:
        key = "ws_x" if with_x else "ws_0"
        ws = self._cache.get(key)
        if ws is None:
            n = self.nobs
            rw = self._reweighter(with_x)
            ws = BlockedCholesky(rw.blocks(np.ones(n), np.zeros(n)))
            self._cache[key] = ws
        return ws

    def _zb(self, Ts: list[np.ndarray], u: np.ndarray) -> np.ndarray:
        out = np.zeros(self.nobs)
        k = 0
        for j, t in enumerate(self.terms_data):
            q = t.nlevels * t.n_effects
            b = u[k : k + q].reshape(t.nlevels, t.n_effects) @ Ts[j].T
            rows = b[t.refs]
            out += rows[:, 0] if t.z is None else np.einsum("sn,ns->n", t.z, rows)
            k += q
        return out

    def _eta(self, Ts: list[np.ndarray], u: np.ndarray, beta: np.ndarray) -> np.ndarray:
        eta = self.offset + self._zb(Ts, u)
        if self.n_fixef:
            eta = eta + self.design.X @ beta
        return eta

    def _devres(self, mu: np.ndarray) -> np.ndarray:
        return self.family.dev_resids(self.design.y, mu, self.prior_weights)

    def initial_state(self) -> _State:
        """Start of PIRLS: u = 0 and beta from a GLM fit of the fixed effects (IRLS)."""
        state = self._cache.get("glm_start")
        if state is None:
            beta = self._glm_beta()
            state = _State(np.zeros(self.q), beta)
            self._cache["glm_start"] = state
        return _State(state.u.copy(), state.beta.copy())

    def _mustart(self) -> np.ndarray:
        """The family's starting means (R's ``mustart``) for the response, made once (the
        compiled data and the GLM start both use them; not to be modified)."""
        mu = self._cache.get("mustart")
        if mu is None:
            mu = self._cache["mustart"] = self.family.mustart(
                self.design.y, self.trials, self.prior_weights
            )
        return mu

    def _glm_beta(self) -> np.ndarray:
        """IRLS for the fixed effects alone (the GLM without random effects)."""
        fam = self.family
        y, wt = self.design.y, self.prior_weights
        X = self.design.X
        if X.shape[1] == 0:
            return np.zeros(0)
        mu = self._mustart()
        eta = fam.linkfun(mu)
        from mixedmodels import _glmm_kernels as K

        if fam.name in K.FAMILY_CODES and fam.link.name in K.LINK_CODES:
            beta = np.zeros(X.shape[1])
            code, link = K.FAMILY_CODES[fam.name], K.LINK_CODES[fam.link.name]
            yv, wv = np.asarray(y, float), np.asarray(wt, float)
            if K.glm_irls(
                code, link, yv, wv, np.asarray(self.offset, float), np.ascontiguousarray(X),
                np.array(eta, dtype=float), np.array(mu, dtype=float), beta, 50,
                K.deviance_shift(code, link, yv, wv),
            ):  # fmt: skip
                return beta
        # the same iteration in Python, with least-squares steps where the normal equations
        # are ill-conditioned
        beta = np.zeros(X.shape[1])
        dev_old = math.inf
        for _ in range(50):
            mu_eta = fam.mu_eta(eta)
            w = wt * mu_eta**2 / fam.variance(mu)
            z = eta - self.offset + (y - mu) / mu_eta
            beta = _weighted_least_squares(X, z, w)
            eta = X @ beta + self.offset
            mu = fam.linkinv(eta)
            dev = float(np.sum(self._devres(mu)))
            if abs(dev - dev_old) < 1e-10 * (abs(dev) + 0.1):
                break
            dev_old = dev
        return beta

    def pirls(
        self, theta: np.ndarray, beta: np.ndarray | None, state: _State
    ) -> tuple[_State, np.ndarray, BlockedCholesky]:
        """Conditional modes at theta; beta fixed (given) or estimated alongside u (None).

        Returns the new state, mu and the factorization at the converged working weights.
        """
        fam = self.family
        y = self.design.y
        wt = self.prior_weights
        update_beta = beta is None
        # with a non-canonical link the iteration is Fisher scoring, which converges only
        # linearly: the step must be much smaller before the error it leaves is negligible
        tol_step = self.tol_step if fam.canonical else self.tol_step * 1e-4
        Ts = self.layout.templates(theta)
        u = state.u.copy()
        b = state.beta.copy() if update_beta else np.asarray(beta, dtype=float)
        rw = self._reweighter(update_beta)
        ws = self._workspace(update_beta)
        eta = self._eta(Ts, u, b)
        mu = fam.linkinv(eta)
        pdev_old = float(np.sum(self._devres(mu)) + u @ u)
        for it in range(self.maxit_pirls):
            mu_eta = fam.mu_eta(eta)
            var = fam.variance(mu)
            w = _floor_weights(wt * mu_eta**2 / var, wt)
            score = wt * (y - mu) * mu_eta / var  # d loglik / d eta
            factored = False
            if not fam.canonical:
                # Newton's method (observed information) where its weights are positive:
                # quadratic convergence where Fisher scoring is only linear
                w_obs = fam.observed_weights(y, mu, eta, wt)
                if np.all(w_obs > 1e-8 * np.max(w, initial=0.0)):
                    factored = self._factor_step(ws, rw, theta, w_obs, eta, score, b, update_beta)
            if not factored and not self._factor_step(ws, rw, theta, w, eta, score, b, update_beta):
                raise PirlsError(
                    "the penalized weighted least-squares system could not be factored"
                )
            if update_beta:
                b_new = ws.beta()
                u_new = np.concatenate(ws.spherical_modes(b_new)) if self.q else np.zeros(0)
            else:
                b_new = b
                u_new = np.concatenate(ws.spherical_modes(np.zeros(0))) if self.q else np.zeros(0)
            eta_new = self._eta(Ts, u_new, b_new)
            mu_new = fam.linkinv(eta_new)
            pdev = float(np.sum(self._devres(mu_new)) + u_new @ u_new)
            # size of the full Newton step. Once it is small the iteration is in its quadratic
            # region and the step is taken as it is: the change of the deviance is then at the
            # level of rounding, and step-halving on that noise would leave u short of the
            # mode by about the step, an error that shows in finite-difference derivatives
            step = float(np.max(np.abs(u_new - u), initial=0.0))
            if update_beta and b.size:
                step = max(step, float(np.max(np.abs(b_new - b))))
            small = step <= tol_step and math.isfinite(pdev)
            halvings = 0
            # an increase at the level of rounding is not a reason to halve
            slack = 1e-12 * max(1.0, abs(pdev_old))
            while (
                not small and (not math.isfinite(pdev) or pdev > pdev_old + slack) and halvings < 20
            ):
                u_new = 0.5 * (u_new + u)
                if update_beta:
                    b_new = 0.5 * (b_new + b)
                eta_new = self._eta(Ts, u_new, b_new)
                mu_new = fam.linkinv(eta_new)
                pdev = float(np.sum(self._devres(mu_new)) + u_new @ u_new)
                halvings += 1
            if not math.isfinite(pdev):
                raise PirlsError("PIRLS produced a non-finite deviance")
            if not small and pdev - pdev_old > self.tol_pirls * max(1.0, abs(pdev)):
                raise PirlsError("PIRLS step-halvings failed to reduce the deviance")
            settled = abs(pdev_old - pdev) <= self.tol_pirls * max(abs(pdev), 1.0)
            # under (quasi-)complete separation the estimates drift off to infinity with steps
            # that do not shrink while the deviance no longer changes: stop there, as glm does
            converged = settled and (small or it >= _DRIFT_ITERATIONS)
            u, b, eta, mu, pdev_old = u_new, b_new, eta_new, mu_new, pdev
            if converged:
                break
        else:
            raise PirlsError(f"PIRLS did not converge in {self.maxit_pirls} iterations")
        # the factorization at the (expected-information) working weights of the mode
        mu_eta = fam.mu_eta(eta)
        var = fam.variance(mu)
        w = _floor_weights(wt * mu_eta**2 / var, wt)
        self._factor_step(ws, rw, theta, w, eta, wt * (y - mu) * mu_eta / var, b, update_beta)
        return _State(u, b), mu, ws

    def _factor_step(
        self,
        ws: BlockedCholesky,
        rw: Reweighter,
        theta: np.ndarray,
        w: np.ndarray,
        eta: np.ndarray,
        score: np.ndarray,
        b: np.ndarray,
        update_beta: bool,
    ) -> bool:
        """Form and factor the penalized weighted least-squares system with weights w and
        working response eta - offset + score / w (less X beta when beta is fixed).

        Rows of weight 0 (binomial rows with no trials, prior weight 0) have score 0 and
        contribute nothing; their working response is taken as eta - offset.
        """
        z = eta - self.offset + _working_residual(score, w)
        if not update_beta and self.n_fixef:
            z = z - self.design.X @ b
        ws.A = _with_positive_pivot(rw.blocks(w, z))
        return bool(ws.update(theta))

    # -- criteria -----------------------------------------------------------------------------
    def laplace(
        self, theta: np.ndarray, beta: np.ndarray | None, state: _State
    ) -> tuple[float, _State, np.ndarray, BlockedCholesky]:
        """lme4's Laplace deviance log|L_Z|^2 + ||u||^2 + aic(y, mu) at the conditional modes."""
        new, mu, ws = self.pirls(theta, beta, state)
        dev = float(np.sum(self._devres(mu)))
        aic = self.family.aic(self.design.y, self.trials, mu, self.prior_weights, dev)
        return ws.logdet_Z() + float(new.u @ new.u) + aic, new, mu, ws

    def agq(
        self, theta: np.ndarray, beta: np.ndarray, state: _State
    ) -> tuple[float, _State, np.ndarray, BlockedCholesky]:
        """Adaptive Gauss-Hermite deviance for one scalar random-effects term (lme4's
        ``glmerAGQ``)."""
        new, mu, ws = self.pirls(theta, beta, state)
        t = self.terms_data[0]
        refs = t.refs
        nl = t.nlevels
        zcol = np.ones(self.nobs) if t.z is None else t.z[0]
        dres = self._devres(mu)
        devc0 = new.u**2 + np.bincount(refs, weights=dres, minlength=nl)
        Ldiag = ws.Ldiag[0][:, 0, 0]
        sd = 1.0 / Ldiag
        base = self.offset + (self.design.X @ beta if self.n_fixef else 0.0)
        nodes, weights = self._gh
        mult = np.zeros(nl)
        T = theta[0]
        for zk, wk in zip(nodes, weights, strict=True):
            if zk == 0.0:
                mult += wk
                continue
            uk = new.u + zk * sd
            mu_k = self.family.linkinv(base + T * uk[refs] * zcol)
            devc = uk**2 + np.bincount(refs, weights=self._devres(mu_k), minlength=nl)
            mult += wk * np.exp(-0.5 * (devc - devc0) + 0.5 * zk * zk)
        dev = float(np.sum(devc0) + ws.logdet_Z() - 2.0 * np.sum(np.log(mult)))
        return dev, new, mu, ws

    # -- compiled criterion for scalar terms -----------------------------------------------------
    def _fast(self) -> dict[str, Any] | None:
        """Arrays for the compiled criterion (:mod:`mixedmodels._glmm_kernels`), or None when
        the model has a vector-valued term or its dense part would be too large."""
        if "fast" in self._cache:
            return self._cache["fast"]
        out = self._fast_data()
        self._cache["fast"] = out
        return out

    def _fast_data(self) -> dict[str, Any] | None:
        from mixedmodels import _glmm_kernels as K

        terms = self.terms_data
        fam = self.family
        if not terms or any(t.n_effects != 1 for t in terms):
            return None
        if fam.name not in K.FAMILY_CODES or fam.link.name not in K.LINK_CODES:
            return None
        q1 = terms[0].nlevels
        m = sum(t.nlevels for t in terms[1:]) + self.n_fixef
        if m > 2000 or q1 * m > 30_000_000:
            return None
        n = self.nobs
        refs = np.empty((len(terms), n), dtype=np.int64)  # each term's level codes and values
        zv = np.empty((len(terms), n))
        for k, t in enumerate(terms):
            refs[k] = t.refs
            zv[k] = 1.0 if t.z is None else t.z[0]
        off = np.array([0, *itertools.accumulate(t.nlevels for t in terms)], dtype=np.int64)
        pattern = _schur_pattern(refs, off, self.n_fixef)
        order, rptr = K.level_order(refs[0], int(q1))
        return {
            "fam": K.FAMILY_CODES[fam.name],
            "link": K.LINK_CODES[fam.link.name],
            "canonical": bool(fam.canonical),
            "wt": np.array(self.prior_weights, dtype=float, order="C"),
            "offset": np.array(self.offset, dtype=float, order="C"),
            "X": np.array(self.design.X, dtype=float, order="C"),
            "refs": refs,
            "zv": zv,
            "off": off,
            "q1": int(q1),
            "order": order,
            "rptr": rptr,
            **pattern,
            **self._response_parts(start=True),
        }

    def _response_parts(self, start: bool = False) -> dict[str, Any]:
        """The parts of the compiled criterion's data that depend on the response; with
        ``start`` (binomial and Poisson families with their canonical links) the GLM's fixed
        effects too, from the same compiled call (cached for :meth:`initial_state`)."""
        from mixedmodels import _glmm_kernels as K

        fam = self.family
        n = self.nobs
        y = np.array(self.design.y, dtype=float, order="C")
        wt = np.ascontiguousarray(self.prior_weights, dtype=float)
        if fam.name in ("binomial", "poisson"):
            # aic(y, mu) - deviance(y, mu) depends on y only for these families: the criterion
            # is log|L_Z|^2 + penalized deviance + c0, and the parts of the aic are not needed
            p = self.n_fixef
            want = start and fam.canonical and p > 0 and "glm_start" not in self._cache
            beta = np.zeros(p)
            c0, ok = K.response_start(
                K.FAMILY_CODES[fam.name], K.LINK_CODES[fam.link.name], y, wt,
                np.ascontiguousarray(self.trials, dtype=float),
                np.ascontiguousarray(self.offset, dtype=float), np.ascontiguousarray(self.design.X),
                beta, np.bool_(want),
            )  # fmt: skip
            if want and ok:
                self._cache["glm_start"] = _State(np.zeros(self.q), beta)
            return {"y": y, "a1": _NO_ROWS, "a2": _NO_ROWS, "const": 0.0, "c0": float(c0)}
        a1 = np.zeros(n)
        a2 = np.zeros(n)
        const = 0.0
        if fam.name == "inverse.gaussian":
            const = float(3 * np.sum(np.log(y) * wt))
        elif fam.name == "gaussian":
            const = float(np.sum(np.log(wt)))
        return {"y": y, "a1": a1, "a2": a2, "const": const, "c0": 0.0}

    def criterion(
        self, theta: np.ndarray, beta: np.ndarray | None, state: _State
    ) -> tuple[float, _State]:
        """The optimization criterion at theta (and beta): Laplace, with beta estimated in
        PIRLS when it is None, or adaptive quadrature for nAGQ > 1; and the modes reached,
        for a warm start of the next evaluation."""
        fd = self._fast()
        if fd is None:
            if self.nAGQ > 1 and beta is not None:
                dev, st, _, _ = self.agq(theta, beta, state)
            else:
                dev, st, _, _ = self.laplace(theta, beta, state)
            return dev, st
        from mixedmodels import _glmm_kernels as K

        u = state.u.copy()
        upd = beta is None
        b = state.beta.copy() if upd else np.asarray(beta, dtype=float).copy()
        lam = np.asarray(theta, dtype=float)
        if self.nAGQ > 1 and not upd:
            nodes, weights = self._gh
            status, dev = K.agq(
                fd["fam"], fd["link"], fd["y"], fd["wt"], fd["offset"], fd["X"], fd["refs"],
                fd["zv"], lam, fd["off"], fd["cptr"], fd["ccol"], fd["nu"], fd["pos"], fd["dense"],
                u, b, self.tol_pirls, self.tol_step, self.maxit_pirls, nodes, weights,
            )  # fmt: skip
        else:
            status, dev = K.laplace(
                fd["fam"], fd["link"], fd["canonical"], fd["y"], fd["wt"], fd["offset"], fd["X"],
                fd["refs"], fd["zv"], lam, fd["off"], fd["q1"], fd["cptr"], fd["ccol"], fd["nu"],
                fd["pos"], fd["dense"], u, b, upd, self.tol_pirls, self.tol_step, self.maxit_pirls,
                fd["a1"], fd["a2"], fd["const"], fd["c0"], _NO_MATRIX, _NO_ROWS,
            )  # fmt: skip
        if status != K.STATUS_OK:
            raise PirlsError(_PIRLS_MESSAGES[status])
        return float(dev), _State(u, b)

    @property
    def has_gradient(self) -> bool:
        """Whether :meth:`criterion_gradient` is available: the Laplace criterion (nAGQ = 1) of
        a binomial or Poisson model with its canonical link and scalar random-effects terms."""
        known = self._cache.get("has_gradient")
        if known is None:
            fd = self._fast()
            known = (
                fd is not None
                and self.nAGQ == 1
                and self.family.name in ("binomial", "poisson")
                and self.family.canonical
                and self.q - fd["q1"] <= 400
            )
            self._cache["has_gradient"] = known
        return bool(known)

    def criterion_gradient(
        self, theta: np.ndarray, beta: np.ndarray, state: _State
    ) -> tuple[float, np.ndarray, _State]:
        """The Laplace criterion at (theta, beta), its exact gradient in (theta, beta) and the
        modes reached (see :func:`mixedmodels._glmm_kernels.laplace_gradient`)."""
        from mixedmodels import _glmm_kernels as K

        if not self.has_gradient:
            raise ModelSpecError("the exact gradient is not available for this model")
        fd = self._fast()
        assert fd is not None
        u = state.u.copy()
        b = np.asarray(beta, dtype=float).copy()
        grad = np.empty(self.ntheta + self.n_fixef)
        status, dev = K.laplace_gradient(
            fd["fam"], fd["link"], fd["y"], fd["wt"], fd["offset"], fd["X"], fd["refs"],
            fd["zv"], np.asarray(theta, dtype=float), fd["off"], fd["q1"], fd["cptr"],
            fd["ccol"], fd["nu"], fd["pos"], fd["dense"], u, b, self.tol_pirls, self.tol_step,
            self.maxit_pirls, fd["c0"], fd["order"], fd["rptr"], grad, _NO_MATRIX,
        )  # fmt: skip
        if status != K.STATUS_OK:
            raise PirlsError(_PIRLS_MESSAGES[status])
        return float(dev), grad, _State(u, b)

    @property
    def _gh(self) -> tuple[np.ndarray, np.ndarray]:
        rule = self._cache.get("gh")
        if rule is None:
            rule = gauss_hermite(self.nAGQ)
            self._cache["gh"] = rule
        return rule

    def deviance(self, theta: Sequence[float], beta: Sequence[float] | None = None) -> float:
        """The criterion at (theta, beta): Laplace (nAGQ <= 1, beta profiled if not given with
        nAGQ = 0) or adaptive quadrature."""
        th = np.asarray(theta, dtype=float)
        if self.nAGQ > 1 and beta is None:
            raise ModelSpecError("adaptive quadrature needs beta")
        b = None if beta is None else np.asarray(beta, dtype=float)
        return self.criterion(th, b, self.initial_state())[0]

    # -- fit ------------------------------------------------------------------------------------
    def initial_theta(self) -> tuple[np.ndarray, np.ndarray]:
        """Starting theta and initial steps in the units of the data (as for linear mixed
        models, :meth:`~mixedmodels.linalg.cholesky.ThetaLayout.scaled_start`)."""
        start = self._cache.get("initial")
        if start is None:
            if all(t.z is None for t in self.terms_data):  # intercepts: every scale is 1
                start = self.layout.unit_start()
            else:
                start = self.layout.scaled_start(column_scales(self.terms_data))
            self._cache["initial"] = start
        return start[0].copy(), start[1].copy()

    def fit(
        self,
        *,
        start: Sequence[float] | None = None,
        check_convergence: bool = True,
        warn: bool = True,
        use_hessian: bool = True,
        progress: bool = True,
    ) -> Any:
        """Fit by the two-stage optimization (see the module docstring).

        Parameters
        ----------
        start
            Starting theta.
        check_convergence
            Compute the finite-difference gradient and Hessian at the optimum, check the
            gradient (as lme4) and use the Hessian for the standard errors.
        warn
            Emit warnings (singular fit, convergence).
        use_hessian
            Standard errors from the Hessian of the deviance in (theta, beta), as lme4 does
            for GLMMs; otherwise from the penalized least-squares factor (lme4's
            ``use.hessian = FALSE``).
        progress
            Show the number of evaluations and the best criterion so far once the fit has run
            for more than two seconds (``False``: never).

        Returns
        -------
        GlmerResult
        """
        from mixedmodels.results_glmm import GlmerResult

        theta0, step = self.initial_theta()
        if start is not None:
            theta0 = np.asarray(start, dtype=float)
        with self._blas_threads():
            with FitProgress("glmer", progress) as bar:
                found = self.optimize(theta0, step, progress=bar, refine_start=start is None)
            theta_hat, beta_hat, opt, counts = found.theta, found.beta, found.opt, found.counts
            if not math.isfinite(opt.fmin):
                raise PirlsError(
                    "the criterion could not be evaluated at any of the parameter values tried "
                    "(PIRLS failed throughout); check the response and the family, or give start="
                )
            return GlmerResult.from_optimum(
                self,
                theta_hat,
                beta_hat,
                opt,
                counts,
                check_convergence=check_convergence,
                warn=warn,
                use_hessian=use_hessian,
                start=found.state,
            )

    def _blas_threads(self) -> AbstractContextManager[Any]:
        """One BLAS thread for the fit of a small model, the BLAS default otherwise.

        The dense matrices of a small model (the Schur complement of the random effects
        beyond the first term and the fixed effects, X'WX) are far too small for threads to
        pay: OpenBLAS's thread hand-offs cost more than the products. On two cores, fits of
        cbpp and of VerbAgg with two random-effects terms were both faster with one thread,
        several times faster while the cores were busy with other work.
        """
        fd = self._fast()
        p = self.n_fixef
        if fd is not None and fd["refs"].shape[0] == 1:
            # one term: the compiled kernels' only BLAS calls are X'WX, X's and L_X, which
            # OpenBLAS runs on one thread below its thresholds (setting the threads and back
            # costs more than such a product)
            cells = self.nobs * (p + 1)
            if cells * (p + 1) < UNTHREADED_PRODUCT and cells < UNTHREADED_MATVEC:
                return nullcontext()
        dense = self.q - fd["q1"] + p if fd is not None else self.q + p
        return single_blas_thread(is_small(dense, self.nobs * (p + 1)))

    def optimize(
        self,
        theta0: np.ndarray,
        step: np.ndarray,
        *,
        beta0: np.ndarray | None = None,
        se0: np.ndarray | None = None,
        progress: FitProgress | None = None,
        refine_start: bool = False,
    ) -> Optimum:
        """Optimize the criterion from theta0 (``step``: the natural size of each theta;
        ``progress``: counts the evaluations and shows them on long fits; ``refine_start``:
        the joint search may start from theta0 moved by one EM step, see
        :meth:`_joint_start`).

        Where the exact gradient is available (:attr:`has_gradient`) the Laplace criterion is
        minimized jointly over (theta, beta) by L-BFGS-B, started at theta0 and the fixed
        effects of one PIRLS at theta0 (or at ``beta0``). Otherwise, as lme4: stage 1 optimizes
        theta with beta estimated inside PIRLS (nAGQ = 0), then for nAGQ >= 1 stage 2 optimizes
        (theta, beta) jointly, both with BOBYQA; with ``beta0`` (and its standard errors
        ``se0``, which set the steps) stage 1 is skipped, as for a refit warm-started at a
        previous estimate.

        Returns an :class:`Optimum`.
        """
        counts = {"stage1": 0, "stage2": 0}
        bar = progress if progress is not None else FitProgress("glmer", False)
        p = self.n_fixef
        if self.has_gradient:
            start: tuple[np.ndarray, np.ndarray] | None = None
            u0 = None
            theta_s = theta0  # where the joint search starts
            if beta0 is not None:
                se = np.ones(p) if se0 is None else np.asarray(se0, dtype=float)
                start = (np.asarray(beta0, dtype=float), se)
            else:
                try:
                    # PIRLS with beta at theta0, and the scale of each beta
                    st0, R0, theta_s = self._joint_start(theta0, refine_start)
                    counts["stage1"] = 1
                    start = (st0.beta, R0)
                    u0 = st0.u  # the modes PIRLS starts from at the search's first point
                except PirlsError:
                    start = None
            if start is not None:
                beta_s, R_s = start
                done = self._optimize_gradient(theta_s, beta_s, R_s, step, counts, bar, u0=u0)
                if done is not None:
                    return done
        return self._optimize_two_stage(theta0, step, beta0, se0, counts, bar)

    def _optimize_gradient(
        self,
        theta0: np.ndarray,
        beta0: np.ndarray,
        se0: np.ndarray,
        step: np.ndarray,
        counts: dict[str, int],
        bar: FitProgress | None = None,
        *,
        u0: np.ndarray | None = None,
    ) -> Optimum | None:
        """Joint L-BFGS-B over (theta, beta) with the exact gradient; None if it fails.

        ``se0`` gives the fixed effects' units: their standard errors (a vector), or a matrix
        R with R R' their (unscaled) covariance (see :meth:`_beta_transform`); ``u0`` the
        modes at (theta0, beta0) when known (PIRLS's first start; zero otherwise).
        """
        bar = bar if bar is not None else FitProgress("glmer", False)
        nth = self.ntheta
        p = self.n_fixef
        first_u = np.zeros(self.q) if u0 is None else np.array(u0, dtype=float)
        state_box: list[_State] = []

        def fg(x: np.ndarray) -> tuple[float, np.ndarray]:
            counts["stage2"] += 1
            try:
                dev, grad, st = self.criterion_gradient(x[:nth], x[nth:], state_box[0])
            except PirlsError:
                return math.inf, np.zeros(x.size)
            state_box[0] = st
            return dev, grad

        theta0 = np.asarray(theta0, dtype=float)
        beta0 = np.asarray(beta0, dtype=float)
        se0 = np.asarray(se0, dtype=float)
        # The search runs in z with beta = beta0 + R z_beta, R R' the unscaled covariance of
        # beta (only its diagonal where se0 is a vector): the fixed effects' curvature is then
        # about the identity, without the correlations of an uncentred covariate with the
        # intercept. theta's unit is its size over the square root of its term's levels (the
        # criterion's curvature in theta grows like the number of levels). On VerbAgg,
        # grouseticks and cbpp this halves the evaluations (36 -> 17, 30 -> 16, 16 -> 9).
        R = se0 if se0.ndim == 2 else np.diag(np.maximum(se0, 1e-4))
        root_levels, lower_x = self._search_bounds()
        theta_unit = np.maximum(np.abs(theta0), step / 0.75) / root_levels

        def to_x(z: np.ndarray) -> np.ndarray:
            return np.concatenate([z[:nth], beta0 + R @ z[nth:]])

        def fgz(z: np.ndarray) -> tuple[float, np.ndarray]:
            dev, g = fg(to_x(z))
            return dev, np.concatenate([g[:nth], R.T @ g[nth:]])

        z0 = np.concatenate((theta0, np.zeros(p)))
        lower = lower_x.copy()
        zscale = np.concatenate((theta_unit, np.ones(p)))
        if self._compiled_search():
            optz, last = self._search_compiled(z0, lower, zscale, beta0, R, first_u)
            counts["stage2"] += optz.feval
            state_box.append(last)
        elif self._fast() is not None:  # the same search, in Python around the criterion
            state_box.append(_State(first_u, beta0.copy()))
            from mixedmodels.linalg import small_fit

            optz = small_fit.search_python(
                bar.wrap(fgz), z0, lower, zscale, inverse_hessian=_first_inverse_hessian(nth, p)
            )
        else:
            state_box.append(_State(first_u, beta0.copy()))
            optz = minimize_with_gradient(bar.wrap(fgz), z0, lower, zscale)
        if optz.return_code < 0 or not math.isfinite(optz.fmin):
            return None
        # back to (theta, beta): beta = beta0 + R z, g_beta = R^-T g_z
        from mixedmodels.linalg.kernels import affine_back

        final = np.empty(nth + p)
        grad = None if optz.gradient is None else np.array(optz.gradient, dtype=float)
        path = np.asarray(optz.theta_path, dtype=float).reshape(-1, nth + p)  # (its own)
        R = np.ascontiguousarray(R, dtype=float)
        zf = np.asarray(optz.final, dtype=float)
        if not affine_back(nth, beta0, R, zf, path, _NO_ROWS if grad is None else grad, final):
            grad = None  # (R with a zero on its diagonal: no gradient in beta)
        opt = optz.updated(
            initial=np.concatenate([theta0, beta0]),  # (z0's fixed effects are 0)
            final=final,
            theta_path=path,
            gradient=grad,
        )
        return Optimum(final[:nth].copy(), final[nth:].copy(), opt, counts, state_box[0])

    def _search_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """The square root of each theta's term's number of levels (theta's unit in the joint
        search is its size over it) and the lower bounds of (theta, beta): read-only arrays,
        made once per template sizes, numbers of levels and number of fixed effects."""
        nlevels = tuple(t.nlevels for t in self.terms_data)
        return _search_bounds(self.layout.sizes, nlevels, self.n_fixef)

    #: the joint search runs as one compiled call (no Python between evaluations) for models
    #: with at most this many rows, whose evaluations cost less than a Python optimizer's
    #: iteration does
    compiled_search_rows = 20_000

    def _compiled_search(self) -> bool:
        """Whether the joint search over (theta, beta) runs as one compiled call."""
        fd = self._fast()
        return fd is not None and self.nobs <= self.compiled_search_rows

    def _search_data(self, beta0: np.ndarray, R: np.ndarray, u0: np.ndarray) -> tuple[Any, ...]:
        """The data of :func:`~mixedmodels._glmm_kernels.laplace_search_point`: the compiled
        criterion's arrays, the modes PIRLS starts from (a copy of ``u0``, updated at each
        evaluation) and beta = beta0 + R z."""
        from mixedmodels import _glmm_kernels as K

        fd = self._fast()
        assert fd is not None
        nth, p = self.ntheta, self.n_fixef
        if "_head" not in fd:  # the entries that do not change from search to search
            fd["_head"] = (
                fd["fam"], fd["link"], fd["y"], fd["wt"], fd["offset"], fd["X"], fd["refs"],
                fd["zv"], fd["off"], fd["q1"], fd["cptr"], fd["ccol"], fd["nu"], fd["pos"],
                fd["dense"],
            )  # fmt: skip
            fd["_middle"] = (fd["c0"], fd["order"], fd["rptr"])
        u = np.array(u0, dtype=float)
        R = np.ascontiguousarray(R, dtype=float)
        # the modes' derivatives, for the first-order start of PIRLS (one scalar term)
        J = np.empty((u.size, nth + p)) if fd["refs"].shape[0] == 1 else _NO_MATRIX
        data = (
            *fd["_head"], u, np.empty_like(u), float(self.tol_pirls), float(self.tol_step),
            int(self.maxit_pirls), *fd["_middle"], nth, np.ascontiguousarray(beta0, dtype=float),
            R, np.empty(nth + p), np.empty(p), J, np.empty(nth), np.zeros(1, dtype=np.int64),
        )  # fmt: skip
        assert len(data) == K.GLMM_DATA_SIZE and data[K.SEARCH_U] is u and data[K.SEARCH_R] is R
        return data

    def gradients_at(self, points: np.ndarray, state: _State) -> tuple[np.ndarray, np.ndarray]:
        """The Laplace criterion and its exact gradient in (theta, beta) at each row of
        ``points``, PIRLS starting each from the modes of ``state``, in one compiled call (a
        model of :meth:`_compiled_search`); NaN gradients where PIRLS fails."""
        from mixedmodels import _glmm_kernels as K

        p = self.n_fixef
        points = np.ascontiguousarray(points, dtype=float)
        data = self._search_data(*_plain_units(p), state.u)
        values = np.empty(points.shape[0])
        grads = np.empty(points.shape)
        K.laplace_gradients(
            points, data, np.asarray(state.u, dtype=float), values, grads, _NO_ROWS, 0.0, 0.0,
            _NO_ROWS, _NO_ROWS, _NO_MATRIX, _NO_MATRIX, _NO_MATRIX,
        )  # fmt: skip
        return values, grads

    def optimum_gradients(
        self, x: np.ndarray, start: _State, theta_size: np.ndarray, rel: float
    ) -> tuple[float, _State, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
        """The state at an optimum x = (theta, beta) and the gradients that give the Hessian
        there by forward differences, in one compiled call (a model of
        :meth:`_compiled_search`): PIRLS from the modes of ``start`` at x, then at x moved
        by each step in turn, the steps rel max(|theta|, ``theta_size``) and rel times the
        unscaled standard errors of beta from the factor at x.

        Returns (criterion, state, means, unscaled covariance of beta from the factor
        (:meth:`fixed_factor`'s (L_X L_X')^-1), steps, gradients at x and at each moved point,
        one row each, and the Hessian they give,
        :func:`~mixedmodels.optim.hessian_from_forward_gradients`), or None when PIRLS fails
        at x or the factor cannot be formed.
        """
        from mixedmodels import _glmm_kernels as K

        p = self.n_fixef
        d = x.size
        points = np.empty((d + 1, d))
        points[0] = x
        data = self._search_data(*_plain_units(p), start.u)
        values = np.empty(d + 1)
        grads = np.empty((d + 1, d))
        steps = np.empty(d)
        steps[: d - p] = theta_size
        u = np.empty(self.q)
        mu = np.empty(self.nobs)
        LX = np.zeros((p, p))
        cov = np.empty((p, p))
        H = np.empty((d, d))
        if not K.laplace_gradients(
            points, data, np.asarray(start.u, dtype=float), values, grads, steps, rel, rel, u,
            mu, LX, cov, H,
        ):  # fmt: skip
            return None
        return float(values[0]), _State(u, points[0, d - p :].copy()), mu, cov, steps, grads, H

    def _search_compiled(
        self,
        z0: np.ndarray,
        lower: np.ndarray,
        scale: np.ndarray,
        beta0: np.ndarray,
        R: np.ndarray,
        u0: np.ndarray,
    ) -> tuple[OptSummary, _State]:
        """The joint search of :meth:`_optimize_gradient` in one compiled call: the BFGS-B of
        :mod:`~mixedmodels.linalg.small_fit` over z = (theta, beta in the units R), with the
        Laplace criterion and its exact gradient
        (:func:`~mixedmodels._glmm_kernels.laplace_search_point`) and the Python search's
        stopping rules (scaled projected gradient below 1e-5, or a predicted decrease below
        1e-10 or 1e-12 of the criterion). Returns the summary (in z) and the modes and fixed
        effects of the last point evaluated."""
        from mixedmodels import _glmm_kernels as K
        from mixedmodels.linalg import small_fit

        data = self._search_data(beta0, R, u0)
        u, beta = data[K.SEARCH_U], data[K.SEARCH_BETA]
        # (a theta stopped within 1e-3 of its unit from zero, where the criterion is flat,
        # is tried inside and at zero)
        opt = small_fit.search(
            data, z0, lower, scale, gtol=1e-5, decrease=(1e-10, 1e-12), maxeval=1000,
            inverse_hessian=_first_inverse_hessian(self.ntheta, self.n_fixef), boundary_tol=1e-3,
        )  # fmt: skip
        return opt, _State(u, beta.copy())

    def _optimize_two_stage(
        self,
        theta0: np.ndarray,
        step: np.ndarray,
        beta0: np.ndarray | None,
        se0: np.ndarray | None,
        counts: dict[str, int],
        bar: FitProgress | None = None,
    ) -> Optimum:
        """lme4's two stages with BOBYQA (see :meth:`optimize`)."""
        bar = bar if bar is not None else FitProgress("glmer", False)
        lower = self.lower_bounds
        p = self.n_fixef
        stage1 = beta0 is None or self.nAGQ == 0
        state_box = [self.initial_state() if stage1 else _State(np.zeros(self.q), np.zeros(p))]
        if stage1:

            def f1(theta: np.ndarray) -> float:
                counts["stage1"] += 1
                try:
                    dev, st = self.criterion(theta, None, state_box[0])
                except PirlsError:
                    state_box[0] = self.initial_state()
                    return math.inf
                state_box[0] = st
                return dev

            opt1 = minimize_theta(bar.wrap(f1), theta0, lower, initial_step=step)
            theta1 = opt1.final
            _, st1, _, ws1 = self.laplace(theta1, None, state_box[0])
            state_box[0] = st1
            if self.nAGQ == 0:
                return Optimum(theta1, st1.beta, opt1, counts, st1)
            beta1 = st1.beta
            se1 = self._rx_se(ws1.Lxyxy[:p, :p])
        else:
            assert beta0 is not None
            theta1 = np.asarray(theta0, dtype=float)
            beta1 = np.asarray(beta0, dtype=float)
            se1 = np.ones(p) if se0 is None else np.asarray(se0, dtype=float)
            state_box[0] = _State(np.zeros(self.q), beta1.copy())
        x0 = np.concatenate([theta1, beta1])
        lower2 = np.concatenate([lower, np.full(p, -np.inf)])
        step2 = np.concatenate(
            [
                np.maximum(0.1 * np.maximum(theta1, 0.1 * step / 0.75), 1e-3),
                np.maximum(se1, 1e-4),
            ]
        )
        nth = self.ntheta

        def f2(x: np.ndarray) -> float:
            counts["stage2"] += 1
            try:
                dev, st = self.criterion(x[:nth], x[nth:], state_box[0])
            except PirlsError:
                return math.inf
            state_box[0] = st
            return dev

        opt = minimize_theta(bar.wrap(f2), x0, lower2, initial_step=step2)
        return Optimum(opt.final[:nth].copy(), opt.final[nth:].copy(), opt, counts, state_box[0])

    def _joint_start(
        self, theta: np.ndarray, refine: bool = False
    ) -> tuple[_State, np.ndarray, np.ndarray]:
        """PIRLS with beta from the GLM start at theta, :meth:`_beta_transform` there, and the
        search's starting theta: ``theta``, or with ``refine`` and one scalar term theta after
        one EM step from the modes reached (their variance plus their conditional variances;
        cbpp's 1 -> 0.76 against an optimum of 0.64, which saves two of ten evaluations). In
        one compiled call where the compiled criterion applies (R from the factor PIRLS ends
        with, at the working weights of the modes reached)."""
        fd = self._fast()
        state = self.initial_state()
        p = self.n_fixef
        theta = np.asarray(theta, dtype=float)
        if fd is None or self.nAGQ > 1 or p == 0:
            _, st = self.criterion(theta, None, state)
            return st, self._beta_transform(theta, st), theta
        from mixedmodels import _glmm_kernels as K

        u, b = state.u, state.beta  # (copies)
        R = np.empty((p, p))
        em = np.empty(1 if refine and fd["refs"].shape[0] == 1 else 0)
        status, _ = K.laplace(
            fd["fam"], fd["link"], fd["canonical"], fd["y"], fd["wt"], fd["offset"], fd["X"],
            fd["refs"], fd["zv"], theta, fd["off"], fd["q1"], fd["cptr"], fd["ccol"], fd["nu"],
            fd["pos"], fd["dense"], u, b, np.bool_(True), self.tol_pirls, self.tol_step,
            self.maxit_pirls, fd["a1"], fd["a2"], fd["const"], fd["c0"], R, em,
        )  # fmt: skip
        if status != K.STATUS_OK:
            raise PirlsError(_PIRLS_MESSAGES[status])
        start = em if em.size and math.isfinite(em[0]) and em[0] > 0 else theta
        return _State(u, b), R, start

    def _beta_transform(self, theta: np.ndarray, state: _State) -> np.ndarray:
        """:meth:`_rx_transform` of the factor at the working weights of ``state``: the search
        units of beta. For effects that vary between groups these are much larger than the
        GLM's; with the GLM's units L-BFGS-B needs about twice the evaluations on VerbAgg."""
        if self.n_fixef == 0:
            return np.zeros((0, 0))
        return self._rx_transform(self.fixed_factor(theta, state))

    def _factor_with_x(self, theta: np.ndarray, st: _State) -> BlockedCholesky:
        """The blocked factor with the fixed effects at the working weights of ``st``."""
        Ts = self.layout.templates(theta)
        eta = self._eta(Ts, st.u, st.beta)
        fam = self.family
        mu = fam.linkinv(eta)
        mu_eta = fam.mu_eta(eta)
        w = self.prior_weights * mu_eta**2 / fam.variance(mu)
        z = eta - self.offset + (self.design.y - mu) / mu_eta
        ws = BlockedCholesky(_with_positive_pivot(self._reweighter(True).blocks(w, z)))
        ws.update(theta)
        return ws

    def fixed_factor(self, theta: np.ndarray, st: _State) -> np.ndarray:
        """L_X, the fixed effects' block of the factor with X at the working weights of ``st``
        (lower triangular, p x p; the compiled factorization where it applies, the blocked
        one otherwise)."""
        p = self.n_fixef
        fd = self._fast()
        if fd is not None and p:
            from mixedmodels import _glmm_kernels as K

            LX = np.zeros((p, p))
            if K.factor_x(
                fd["fam"], fd["link"], fd["y"], fd["wt"], fd["offset"], fd["X"], fd["refs"],
                fd["zv"], np.asarray(theta, dtype=float), fd["off"], fd["q1"], fd["cptr"],
                fd["ccol"], fd["nu"], fd["pos"], fd["dense"], np.asarray(st.u, dtype=float),
                np.asarray(st.beta, dtype=float), LX,
            ):  # fmt: skip
                return LX
        return np.array(self._factor_with_x(theta, st).Lxyxy[:p, :p])

    def _rx_transform(self, L_X: np.ndarray) -> np.ndarray:
        """R = L_X^-T (upper triangular; R R' is the unscaled covariance of the fixed effects)
        from the fixed effects' block of the penalized least-squares factor."""
        from mixedmodels.results import _lower_inverse

        return np.ascontiguousarray(_lower_inverse(L_X).T)

    def _rx_se(self, L_X: np.ndarray) -> np.ndarray:
        """The fixed effects' unscaled standard errors from L_X (see :meth:`_rx_transform`)."""
        if self.n_fixef == 0:
            return np.zeros(0)
        R = self._rx_transform(L_X)
        return np.sqrt(np.sum(R * R, axis=1))

    def state_at(
        self, theta: np.ndarray, beta: np.ndarray, start: _State | None = None
    ) -> tuple[float, _State, np.ndarray, np.ndarray]:
        """The criterion, modes, mu and L_X (the fixed effects' block of the factor with X, at
        the final working weights; :meth:`fixed_factor`) at an optimum; PIRLS starts from
        ``start`` (the optimizer's last modes) if given."""
        first = self.initial_state() if start is None else _State(start.u.copy(), beta.copy())
        fd = self._fast()
        if fd is not None and self.nAGQ <= 1:  # PIRLS, the means and L_X in one compiled call
            from mixedmodels import _glmm_kernels as K

            u, b = first.u, np.asarray(beta, dtype=float).copy()
            mu = np.empty(self.nobs)
            p = self.n_fixef
            LX = np.zeros((p, p))
            status, dev, ok = K.optimum_state(
                fd["fam"], fd["link"], fd["canonical"], fd["y"], fd["wt"], fd["offset"], fd["X"],
                fd["refs"], fd["zv"], np.asarray(theta, dtype=float), fd["off"], fd["q1"],
                fd["cptr"], fd["ccol"], fd["nu"], fd["pos"], fd["dense"], u, b, self.tol_pirls,
                self.tol_step, self.maxit_pirls, fd["a1"], fd["a2"], fd["const"], fd["c0"], mu,
                LX,
            )  # fmt: skip
            if status != K.STATUS_OK:
                raise PirlsError(_PIRLS_MESSAGES[status])
            st = _State(u, b)
            if not ok:
                LX = np.array(self._factor_with_x(theta, st).Lxyxy[:p, :p])
            return float(dev), st, mu, LX
        dev, st = self.criterion(theta, beta, first)
        mu = self.family.linkinv(self._eta(self.layout.templates(theta), st.u, st.beta))
        return dev, st, mu, self.fixed_factor(theta, st)


def _weighted_least_squares(X: np.ndarray, z: np.ndarray, w: np.ndarray) -> np.ndarray:
    """argmin_b sum_i w_i (z_i - x_i b)^2, as an IRLS step: by the normal equations of X with
    unit-norm columns (a p x p Cholesky factor; for thousands of rows ~20x cheaper than an SVD
    least-squares solve), or by lstsq when they are ill-conditioned (a pivot of the equilibrated
    factor below 1e-6, a condition number of about 1e12) or singular."""
    Xw = X * w[:, None]
    G = X.T @ Xw
    d = np.sqrt(np.diag(G))
    if np.all(d > 0) and np.all(np.isfinite(G)):
        try:
            L = np.linalg.cholesky(G / np.outer(d, d))
        except np.linalg.LinAlgError:
            L = None
        if L is not None and float(np.min(np.diag(L))) > 1e-6:
            rhs = (Xw.T @ z) / d
            v = sla.solve_triangular(L, rhs, lower=True, check_finite=False)
            return sla.solve_triangular(L.T, v, lower=False, check_finite=False) / d
    sw = np.sqrt(w)
    return np.linalg.lstsq(X * sw[:, None], z * sw, rcond=None)[0]


def _floor_weights(w: np.ndarray, wt: np.ndarray) -> np.ndarray:
    """Working weights no smaller than 1e-10 of the largest (rows with prior weight 0 stay 0).

    Fitted probabilities at 0 or 1 (separation) give weights at the level of rounding, and a
    column of X carried only by such rows would make the system numerically indefinite. The
    floor changes only the curvature used for the step, not the point PIRLS converges to.
    """
    floor = 1e-10 * float(np.max(w, initial=0.0))
    return np.where(wt > 0, np.maximum(w, floor), 0.0)


def _working_residual(score: np.ndarray, w: np.ndarray) -> np.ndarray:
    """score / w, 0 where the weight is 0 (those rows have score 0: no trials or prior
    weight 0)."""
    out = np.zeros_like(score)
    np.divide(score, w, out=out, where=w > 0)
    return out


def _with_positive_pivot(A: CrossProducts) -> CrossProducts:
    """The cross-products with the working response's own sum of squares doubled (in place).

    PIRLS uses the factor for the step (the modes and beta) and log|L_Z|, never for the last
    diagonal entry of L, the penalized weighted residual sum of squares, and neither depends on
    z'Wz. That entry is zero, and after rounding possibly negative, when the working response
    lies in the span of the model matrix: under complete separation every fitted probability
    is at 0 or 1 and z = eta + (y - mu) / mu_eta = X beta +/- 1 is fitted exactly (lme4 fits
    such data with warnings). Adding z'Wz (or 1 if it is 0) makes the entry at least z'Wz, so
    a perfect fit no longer stops the factorization; the solutions are unchanged.
    """
    p = A.p
    zz = float(A.xyxy[p, p])
    A.xyxy[p, p] += zz if zz > 0 else 1.0
    return A


def _schur_pattern(refs: np.ndarray, off: np.ndarray, p: int) -> dict[str, Any]:
    """Sparsity of the block below the first term's diagonal block, by the first term's levels.

    For each level l of the first term: the (sorted) levels of the other terms, as columns of
    the dense remainder, that share a row with l (``nu[l]`` of them), followed by the p fixed
    effects; ``pos[k - 1, i]`` is the position of row i's level of term k in that list.
    """
    K, n = refs.shape
    q1 = int(off[1])
    qr = int(off[K]) - q1
    m = qr + p
    r0 = refs[0]
    if K == 1:  # one term: each level is coupled to the fixed effects alone
        return {
            "cptr": np.arange(q1 + 1, dtype=np.int64) * p,
            "ccol": np.arange(q1 * p, dtype=np.int64) % max(p, 1),  # 0..p-1 for each level
            "nu": np.zeros(q1, dtype=np.int64),
            "pos": np.zeros((0, n), dtype=np.int64),
            "dense": False,
        }
    if K > 1:
        cols = np.concatenate([off[k] - q1 + refs[k] for k in range(1, K)])
        key = np.tile(r0, K - 1) * m + cols
        ukeys, inverse = np.unique(key, return_inverse=True)
        lev = ukeys // m
        nu = np.bincount(lev, minlength=q1).astype(np.int64)
    else:
        ukeys = np.zeros(0, dtype=np.int64)
        inverse = np.zeros(0, dtype=np.int64)
        lev = np.zeros(0, dtype=np.int64)
        nu = np.zeros(q1, dtype=np.int64)
    cptr = np.zeros(q1 + 1, dtype=np.int64)
    np.cumsum(nu + p, out=cptr[1:])
    ustart = np.zeros(q1 + 1, dtype=np.int64)
    np.cumsum(nu, out=ustart[1:])
    upos = cptr[lev] + (np.arange(ukeys.size) - ustart[lev])
    ccol = np.empty(int(cptr[-1]), dtype=np.int64)
    ccol[upos] = ukeys % m
    if p:
        xpos = (cptr[:-1] + nu)[:, None] + np.arange(p)
        ccol[xpos.ravel()] = np.tile(np.arange(qr, qr + p), q1)
    if K > 1 and nu.sum() >= 0.25 * q1 * qr:
        # dense enough for one matrix product: every level lists every column
        nu = np.full(q1, qr, dtype=np.int64)
        cptr = np.arange(q1 + 1, dtype=np.int64) * m
        ccol = np.tile(np.arange(m, dtype=np.int64), q1)
        cols = np.stack([off[k] - q1 + refs[k] for k in range(1, K)])
        pos = (r0 * m)[None, :] + cols
        dense = True
    else:
        pos = upos[inverse.ravel()].reshape(K - 1, n) if K > 1 else np.zeros((0, n))
        dense = False
    return {
        "cptr": cptr,
        "ccol": ccol,
        "nu": nu,
        "pos": np.ascontiguousarray(pos, dtype=np.int64),
        "dense": dense,
    }


def glmer(
    formula: str,
    data: Any,
    family: str | Family = "binomial",
    *,
    link: str | None = None,
    nAGQ: int = 1,
    weights: str | ArrayLike | None = None,
    offset: str | ArrayLike | None = None,
    start: Sequence[float] | None = None,
    check_convergence: bool = True,
    warn: bool = True,
    progress: bool = True,
) -> Any:
    """Fit a generalized linear mixed model, as lme4's ``glmer``.

    Parameters
    ----------
    formula
        lme4-style formula. Binomial responses may be 0/1 (or booleans, or a two-level factor:
        the second level is success), proportions with ``weights=`` the numbers of trials, or
        ``cbind(successes, failures)``. Offsets: ``offset(np.log(exposure))`` in the formula
        or ``offset=``.
    data
        A pandas DataFrame.
    family
        ``"binomial"``, ``"poisson"``, ``"Gamma"``, ``"inverse.gaussian"``, ``"gaussian"`` or a
        :class:`~mixedmodels.families.Family` (e.g. ``mm.families.Binomial("probit")``).
    link
        Link function name (default: the family's canonical link).
    nAGQ
        1 (Laplace approximation, default), 0 (fixed effects estimated inside PIRLS: faster,
        slightly less accurate) or up to 25 adaptive Gauss-Hermite nodes (one scalar
        random-effects term only).
    weights, offset
        Prior weights and offset: column names or arrays.
    start
        Starting theta.
    check_convergence, warn, progress
        As for :func:`~mixedmodels.lmer`.

    Returns
    -------
    GlmerResult

    Examples
    --------
    >>> import mixedmodels as mm
    >>> fit = mm.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)",
    ...                mm.datasets.load("cbpp"), family="binomial")
    >>> round(fit.loglik, 2)
    -92.03
    """
    model = GeneralizedLinearMixedModel.from_formula(
        formula, data, family, link=link, nAGQ=nAGQ, weights=weights, offset=offset
    )
    return model.fit(start=start, check_convergence=check_convergence, warn=warn, progress=progress)
