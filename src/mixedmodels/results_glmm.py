"""The frozen result of a generalized linear mixed-model fit (:func:`mixedmodels.glmer`)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy import special

from mixedmodels.errors import ConvergenceWarning, ModelSpecError, SingularFitWarning
from mixedmodels.glmm import PirlsError
from mixedmodels.optim import (
    OptSummary,
    finite_difference_derivatives,
    forward_difference_points,
    gradient_message,
    hessian_from_forward_gradients,
    hessian_from_gradient,
    hessian_messages,
    hessian_parts,
)
from mixedmodels.results import _MixedResult

if TYPE_CHECKING:
    from mixedmodels.display.glmer import GlmerSummary
    from mixedmodels.families import Family
    from mixedmodels.glmm import GeneralizedLinearMixedModel
    from mixedmodels.linalg.cholesky import BlockedCholesky

__all__ = ["GlmerResult"]


@dataclass(frozen=True, eq=False)
class GlmerResult(_MixedResult):
    """A fitted generalized linear mixed model (returned by :func:`mixedmodels.glmer`).

    Attributes
    ----------
    model
        The model fitted.
    theta, beta
        Covariance parameters (lme4's order) and fixed effects at the optimum.
    b, u
        Conditional modes of the random effects (b = Lambda u), one (levels, S) array per term.
    mu
        Fitted means (response scale).
    objective_value
        The criterion minimized: the Laplace (or quadrature) deviance, -2 log-likelihood.
    optinfo
        The record of the last optimization stage.
    feval
        Criterion evaluations per stage (``stage1``: theta, beta in PIRLS; ``stage2``:
        theta and beta jointly).
    vcov_rx
        Covariance of beta from the penalized least-squares factor (lme4's
        ``vcov(fit, use.hessian = FALSE)``).
    hessian
        Finite-difference Hessian of the criterion in (theta, beta), when computed.
    is_singular
        Whether a template diagonal is below 1e-4 (lme4's rule).
    """

    model: GeneralizedLinearMixedModel
    theta: np.ndarray
    beta: np.ndarray
    b: tuple[np.ndarray, ...]
    u: tuple[np.ndarray, ...]
    mu: np.ndarray = field(repr=False)
    objective_value: float
    optinfo: OptSummary
    feval: dict[str, int]
    vcov_matrix: np.ndarray = field(repr=False)
    vcov_rx: np.ndarray = field(repr=False)
    hessian: np.ndarray | None
    is_singular: bool
    scale: float

    @cached_property
    def _factor(self) -> BlockedCholesky:
        """The blocked factor with the fixed effects at the working weights of the optimum
        (for conditional variances), made when first needed."""
        from mixedmodels.glmm import _State

        u = np.concatenate([x.ravel() for x in self.u]) if self.u else np.zeros(0)
        return self.model._factor_with_x(self.theta, _State(u, self.beta))

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def from_optimum(
        cls,
        model: GeneralizedLinearMixedModel,
        theta: np.ndarray,
        beta: np.ndarray,
        opt: OptSummary,
        feval: dict[str, int],
        *,
        check_convergence: bool = True,
        warn: bool = True,
        use_hessian: bool = True,
        start: Any = None,
    ) -> GlmerResult:
        theta = np.asarray(theta, dtype=float)
        beta = np.asarray(beta, dtype=float)
        p = model.n_fixef
        nth = model.ntheta
        hessian_wanted = check_convergence and model.nAGQ >= 1 and nth + p <= 60
        # steps in the units of each parameter: relative for theta (in the units of its column)
        # and a fraction of a standard error for beta; forward differences of the exact
        # gradient need smaller steps than central ones (or differences of values)
        rel_theta, rel_beta = (1e-5, 1e-5) if model.has_gradient else (1e-4, 1e-3)
        fused = None
        if hessian_wanted and model.has_gradient and model._compiled_search():
            # the state at the optimum and the Hessian's gradients in one compiled call
            first = start if start is not None else model.initial_state()
            _, theta_scale = model.initial_theta()
            fused = model.optimum_gradients(
                np.concatenate([theta, beta]), first, theta_scale, rel_theta
            )
        if fused is not None:
            dev, state, mu, cov_rx, _, G, H_fused = fused
        else:
            dev, state, mu, L_X = model.state_at(theta, beta, start)
            cov_rx = np.zeros((0, 0))
            if p:
                # (L_X L_X')^-1, compiled: LAPACK's wrappers cost more than a few-by-few inverse
                from mixedmodels.linalg.lmm_kernels import cholesky_inverse

                cov_rx = cholesky_inverse(np.ascontiguousarray(L_X, dtype=float), p)
        u_list, b_list = [], []
        k = 0
        scalar = all(s == 1 for s in model.layout.sizes)  # b = theta u, term by term
        Ts = [] if scalar else model.layout.templates(theta)
        for j, t in enumerate(model.terms_data):
            q = t.nlevels * t.n_effects
            uj = state.u[k : k + q].reshape(t.nlevels, t.n_effects)
            u_list.append(uj)
            b_list.append(uj * theta[j] if scalar else uj @ Ts[j].T)
            k += q
        scale = _dispersion(model, mu, state.u)
        vcov_rx = scale * cov_rx if p else np.zeros((0, 0))
        values = theta.tolist()
        singular = min([values[i] for i in model.layout.diagonal_positions()], default=1.0) < 1e-4
        conv: list[str] = list(opt.warnings)
        hessian = None
        vcov = vcov_rx
        if hessian_wanted:
            H: np.ndarray | None
            if fused is not None:  # the gradients and the Hessian came with the state
                grad, H = G[0], H_fused
            else:
                grad, H = _gradient_and_hessian(
                    model, theta, beta, state, cov_rx, rel_theta, rel_beta
                )
            hessian = H
            parts = None if H is None else hessian_parts(H, nth)
            if parts is not None and parts.finite and parts.inverted:
                if p and parts.covariance_pd:
                    vcov = parts.covariance if use_hessian else vcov_rx
                elif p and use_hessian:
                    conv.append(
                        "variance-covariance matrix computed from finite-difference Hessian is "
                        "not positive definite: falling back to the one from the penalized "
                        "least-squares factor"
                    )
            if not singular and grad is not None and H is not None:
                # lme4's checkConv: the scaled gradient, then the Hessian of all parameters
                msg = gradient_message(grad, H)
                if msg:
                    conv.append(msg)
                conv += hessian_messages(H, parts=parts)
        opt = opt.updated(warnings=tuple(conv))
        if warn:
            if singular:
                warnings.warn(
                    "boundary (singular) fit: a variance is estimated as zero or a correlation as "
                    "+/-1; see GlmerResult.is_singular",
                    SingularFitWarning,
                    stacklevel=4,
                )
            for msg in conv:
                warnings.warn(msg, ConvergenceWarning, stacklevel=4)
            for msg in model.design.messages:
                if "rank deficient" in msg:
                    warnings.warn(msg, UserWarning, stacklevel=4)
        _warn_separation(model, mu, beta, vcov, warn)
        return cls(
            model=model,
            theta=theta,
            beta=beta,
            b=tuple(b_list),
            u=tuple(u_list),
            mu=mu,
            objective_value=float(dev),
            optinfo=opt,
            feval=dict(feval),
            vcov_matrix=vcov,
            vcov_rx=vcov_rx,
            hessian=hessian,
            is_singular=singular,
            scale=scale,
        )

    # -- basic quantities -----------------------------------------------------------------------
    @property
    def _scale(self) -> float:
        return math.sqrt(self.scale)

    @property
    def _use_scale(self) -> bool:
        return self.model.family.has_scale

    @property
    def _vcov_matrix(self) -> np.ndarray:
        return self.vcov_matrix

    @property
    def family(self) -> Family:
        return self.model.family

    @property
    def nAGQ(self) -> int:
        return self.model.nAGQ

    @property
    def sigma(self) -> float:
        """Residual standard deviation (1 for families without a scale parameter)."""
        return self._scale

    @property
    def reml(self) -> bool:
        return False

    @property
    def npar(self) -> int:
        """Fixed effects, theta, and the scale for families that have one."""
        return self.model.n_fixef + self.model.ntheta + (1 if self.family.has_scale else 0)

    @property
    def loglik(self) -> float:
        """-1/2 the criterion: the Laplace approximation of the log-likelihood (for nAGQ > 1 the
        quadrature approximation, which like lme4's omits the family's normalizing constants)."""
        return -0.5 * self.objective_value

    @property
    def deviance(self) -> float:
        """-2 log-likelihood (the criterion; what lme4 prints as "deviance" in the summary).
        lme4's ``deviance(fit)`` function instead returns the sum of squared deviance residuals:
        ``(fit.residuals("deviance") ** 2).sum()``."""
        return self.objective_value

    # -- fitted values, residuals, predictions ----------------------------------------------------
    def fitted(self) -> pd.Series:
        """Fitted means on the response scale (probabilities, rates)."""
        return pd.Series(self.mu, index=self.design.row_index, name="fitted")

    def residuals(self, type: str = "deviance", scaled: bool = False) -> pd.Series:
        """Residuals: ``"deviance"`` (default, as lme4), ``"pearson"``, ``"response"`` or
        ``"working"``; ``scaled`` divides by sigma."""
        y = self.design.y
        mu = self.mu
        fam = self.family
        wt = self.model.prior_weights
        if type == "deviance":
            d = np.sqrt(np.maximum(fam.dev_resids(y, mu, wt), 0.0))
            r = np.where(y > mu, d, -d)
        elif type == "pearson":
            r = (y - mu) * np.sqrt(wt / fam.variance(mu))
        elif type == "response":
            r = y - mu
        elif type == "working":
            eta = fam.linkfun(mu)
            r = (y - mu) / fam.mu_eta(eta)
        else:
            raise ModelSpecError(
                f"unknown residual type {type!r}; use 'deviance', 'pearson', 'response' or "
                f"'working'"
            )
        if scaled:
            r = r / self.sigma
        return pd.Series(r, index=self.design.row_index, name="residuals")

    def predict(
        self,
        newdata: pd.DataFrame | None = None,
        re_form: str | None = None,
        allow_new_levels: bool = False,
        type: str = "link",
    ) -> pd.Series:
        """Predictions on the link scale (``type="link"``, lme4's default) or the response scale
        (``type="response"``); ``re_form`` and ``allow_new_levels`` as for linear models."""
        if type not in ("link", "response"):
            raise ModelSpecError("type must be 'link' or 'response'")
        eta, complete, index, _ = self._eta_rows(newdata, re_form, allow_new_levels)
        vals = self.family.linkinv(eta) if type == "response" else eta
        out = np.full(len(complete), np.nan)
        out[complete] = vals
        return pd.Series(out, index=index, name="predicted")

    def _response_simulator(
        self, fitted_rows: bool
    ) -> Callable[[np.ndarray, np.random.Generator], np.ndarray] | None:
        """Responses from the family at the means linkinv(eta): the fit's numbers of trials
        and prior weights for the rows fitted, one trial and weight 1 for new data."""
        fam = self.family
        scale = self.scale
        trials = self.model.trials if fitted_rows else None
        wt = self.model.prior_weights if fitted_rows else None

        def draw(eta: np.ndarray, rng: np.random.Generator) -> np.ndarray:
            n = np.ones(eta.size) if trials is None else trials
            w = np.ones(eta.size) if wt is None else wt
            return np.asarray(fam.simulate(fam.linkinv(eta), n, w, scale, rng), dtype=float)

        return draw

    # -- inference --------------------------------------------------------------------------------
    def coef_table(self) -> pd.DataFrame:
        """Wald tests of the fixed effects: Estimate, Std. Error, z value, Pr(>|z|) (lme4's
        summary for GLMMs; t value and Pr(>|t|) for families with a scale parameter)."""
        se = self.std_errors.to_numpy()
        z = self.beta / se
        p = 2 * special.ndtr(-np.abs(z))
        # lme4 labels the statistic "t value" for families with a scale parameter but still
        # refers it to the normal distribution
        stat = "t value" if self.family.has_scale else "z value"
        return pd.DataFrame(
            {"Estimate": self.beta, "Std. Error": se, stat: z, "Pr(>|z|)": p},
            index=list(self.design.fixef_names),
        )

    def confint(
        self,
        method: str = "profile",
        level: float = 0.95,
        which: Sequence[str] | str | None = None,
        *,
        nsim: int = 1000,
        seed: int | None = None,
        boot_type: str = "perc",
        progress: bool = True,
    ) -> pd.DataFrame:
        """Confidence intervals: ``"profile"`` (profile of the criterion in the SDs,
        correlations and fixed effects, as lme4), ``"wald"`` or ``"boot"``; rows named as lme4's
        ``confint(fit, oldNames = FALSE)``. ``progress`` shows a progress bar for the profile
        (over the parameters) and the bootstrap (over the replicates)."""
        from mixedmodels.inference.profile_glmm import confint_profile_glmm, parameter_names_glmm

        method = method.lower()
        if method == "profile":
            return confint_profile_glmm(self, level=level, which=which, progress=progress)
        return self._confint_wald_boot(
            parameter_names_glmm(self), method, level, which, nsim, seed, boot_type, progress
        )

    def bootstrap(
        self,
        nsim: int = 1000,
        seed: int | None = None,
        *,
        n_jobs: int | None = None,
        progress: bool = True,
    ) -> Any:
        """Parametric bootstrap: simulate responses from the fit and refit (warm-started at the
        estimates); see :class:`~mixedmodels.inference.bootstrap.BootstrapResult`."""
        from mixedmodels.inference.bootstrap import bootstrap_glmm

        return bootstrap_glmm(self, nsim, seed, n_jobs=n_jobs, progress=progress)

    def profile(
        self,
        which: Sequence[str] | str | None = None,
        level: float | None = None,
        npoints: int = 8,
        *,
        progress: bool = True,
    ) -> Any:
        """Profile traces of the criterion (lme4's ``profile``); see
        :func:`~mixedmodels.inference.profile_glmm.profile_glmm` for the arguments
        (``progress``: a progress bar over the parameters)."""
        from mixedmodels.inference.profile_glmm import profile_glmm

        return profile_glmm(self, which=which, level=level, npoints=npoints, progress=progress)

    # -- presentation --------------------------------------------------------------------------
    def summary(self, *, correlation: bool | None = None, digits: int = 4) -> GlmerSummary:
        """lme4's summary of a GLMM: family, criterion, random effects, z-tests."""
        from mixedmodels.display.glmer import GlmerSummary

        return GlmerSummary.from_result(self, digits=digits, correlation=correlation)

    def __str__(self) -> str:
        from mixedmodels.display.glmer import format_print

        return format_print(self)

    def __repr__(self) -> str:
        return self.__str__()

    def _repr_html_(self) -> str:
        return self.summary()._repr_html_()


def _gradient_and_hessian(
    model: Any,
    theta: np.ndarray,
    beta: np.ndarray,
    state: Any,
    cov_rx: np.ndarray,
    rel_theta: float,
    rel_beta: float,
) -> tuple[np.ndarray, np.ndarray | None]:
    """The criterion's gradient and Hessian in (theta, beta) at an optimum whose state did not
    come with them (:meth:`GeneralizedLinearMixedModel.optimum_gradients`): forward differences
    of the exact gradient where it is available (in one compiled call for the models of the
    compiled search), finite differences of the criterion otherwise, PIRLS starting from the
    optimum's modes; steps rel_theta max(|theta|, its typical size) and rel_beta times beta's
    unscaled standard errors (``cov_rx``: their covariance from the factor)."""
    p = model.n_fixef
    nth = model.ntheta
    x = np.concatenate([theta, beta])
    _, theta_scale = model.initial_theta()
    se_unscaled = np.sqrt(cov_rx.diagonal()) if p else np.zeros(0)
    steps = np.concatenate(
        [rel_theta * np.maximum(np.abs(theta), theta_scale), rel_beta * se_unscaled]
    )
    if model.has_gradient and model._compiled_search():  # the gradients in one call
        _, G = model.gradients_at(forward_difference_points(x, steps), state)
        return hessian_from_forward_gradients(G, steps)
    lower = np.concatenate([model.lower_bounds, np.full(p, -np.inf)])
    if model.has_gradient:

        def fg(z: np.ndarray) -> tuple[float, np.ndarray]:
            try:
                dev, g, _ = model.criterion_gradient(z[:nth], z[nth:], state)
            except PirlsError:
                return math.inf, np.full(z.size, np.nan)
            return dev, g

        return hessian_from_gradient(fg, x, lower, steps, central=False)

    def f(z: np.ndarray) -> float:
        try:
            return float(model.criterion(z[:nth], z[nth:], state)[0])
        except PirlsError:
            return math.inf

    return finite_difference_derivatives(f, x, lower, hessian=True, step=steps)


def _dispersion(model: Any, mu: np.ndarray, u: np.ndarray) -> float:
    """The scale: 1 for binomial and Poisson; for families with a scale lme4's
    sigma^2 = (weighted Pearson RSS + ||u||^2) / n."""
    if not model.family.has_scale:
        return 1.0
    fam = model.family
    y = model.design.y
    wt = model.prior_weights
    wrss = float(np.sum(wt * (y - mu) ** 2 / fam.variance(mu)))
    return (wrss + float(u @ u)) / model.nobs


def _warn_separation(
    model: Any, mu: np.ndarray, beta: np.ndarray, vcov: np.ndarray, warn: bool
) -> None:
    """Complete (or quasi-complete) separation makes fitted probabilities 0 or 1 and the fixed
    effects diverge; say so rather than report huge estimates silently."""
    from mixedmodels.families import Binomial

    if not warn or not isinstance(model.family, Binomial):
        return
    if not any(abs(v) > 15 for v in beta.tolist()):  # (a few values: Python's max is quicker)
        return
    eps = 1e-8
    extreme = (mu < eps) | (mu > 1 - eps)
    if extreme.any():
        warnings.warn(
            f"fitted probabilities numerically 0 or 1 occurred for {int(extreme.sum())} rows and "
            f"some fixed effects are very large: the data may be (quasi-)completely separated, in "
            f"which case those estimates and their standard errors are not meaningful",
            ConvergenceWarning,
            stacklevel=5,
        )
