"""Bayesian mixed models on lme4 formulas, sampled with NumPyro's NUTS (extra ``bayes``).

>>> import mixedmodels as mm
>>> model = mm.bayes("Reaction ~ Days + (Days | Subject)", mm.datasets.load("sleepstudy"))
>>> print(model.priors)                                           # doctest: +SKIP
>>> fit = model.fit(draws=1000, tune=1000, chains=4, seed=1)      # doctest: +SKIP
>>> fit.summary()                                                 # doctest: +SKIP

The formula layer is the one :func:`mixedmodels.lmer` uses, so a model has the same fixed
effects, terms and names. For the Gaussian family the random effects are integrated out of the
likelihood exactly (the blocked cross-products of the frequentist fit give the marginal
likelihood at a cost that does not depend on the number of rows), NUTS samples only the fixed
effects and the variance parameters, and the group-level effects are drawn afterwards from their
conditional distribution. Other families use the non-centred parameterization. See
``docs/bayes.md``.
"""

from __future__ import annotations

import importlib.util
import sys
import time
import warnings
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from mixedmodels.bayesian.spec import (
    FAMILIES,
    BayesData,
    PriorSet,
    marginal_cost,
    parameters,
    prepare_data,
)
from mixedmodels.errors import MixedModelError, ModelSpecError
from mixedmodels.formula.design import ArrayLike, Design, build_design
from mixedmodels.priors import Prior

__all__ = ["BayesModel", "MissingExtraError", "bayes"]

_INSTALL = "pip install 'mixedmodels[bayes]'"


class MissingExtraError(MixedModelError, ImportError):
    """An optional dependency of the Bayesian back end (NumPyro, JAX, ArviZ) is missing."""


def require_extra() -> None:
    """Raise :class:`MissingExtraError` naming what to install if the extra is missing."""
    missing = []
    for name in ("jax", "numpyro", "arviz"):
        if name in sys.modules and sys.modules[name] is not None:
            continue
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(name)
    if missing:
        raise MissingExtraError(
            f"Bayesian models need {', '.join(missing)} (the 'bayes' extra): {_INSTALL}"
        )


def bayes(
    formula: str,
    data: Any,
    family: str = "gaussian",
    *,
    link: str | None = None,
    priors: dict[str, Prior] | None = None,
    weights: str | ArrayLike | None = None,
    offset: str | ArrayLike | None = None,
    marginalize: bool | None = None,
    centred: bool | None = None,
) -> BayesModel:
    """A Bayesian mixed model of an lme4 formula, ready to sample.

    Parameters
    ----------
    formula
        lme4 formula, e.g. ``"Reaction ~ Days + (Days | Subject)"``; ``cbind(successes,
        failures)`` responses for the binomial family; a formula without random-effects terms
        gives a Bayesian regression.
    data
        A pandas DataFrame.
    family
        ``"gaussian"`` (default), ``"binomial"`` or ``"poisson"``.
    link
        The link function; default the canonical one (identity, logit, log). Gaussian also
        takes ``"log"``, binomial ``"probit"`` and ``"cloglog"``, Poisson ``"identity"`` and
        ``"sqrt"``.
    priors
        Priors by parameter name, replacing the automatic ones: fixed effects by column name
        (``"Days"``, ``"(Intercept)"`` or ``"Intercept"``), standard deviations of group-level
        effects as ``"1|Subject"`` / ``"Days|Subject"``, correlations as ``"cor|Subject"`` and
        the residual standard deviation as ``"sigma"``. See :mod:`mixedmodels.priors`.
    weights, offset
        Column names or arrays: prior weights (for the binomial family, the numbers of trials
        of proportion responses) and an offset of the linear predictor.
    marginalize
        Gaussian family with the identity link only: integrate the random effects out of the
        likelihood (``True``) or sample them (``False``, non-centred). Default: integrate
        unless the dense block of the second and later terms is so large that an evaluation
        would cost more than going over the rows.
    centred
        For effects that are sampled (other families, or ``marginalize=False``): ``False``
        samples every term non-centred (b = T u with u ~ N(0, I): good when a level has few
        observations), ``True`` centred (b ~ N(0, Sigma): good when each level is well
        informed by its data); default: chosen for each term from the frequentist fit (see
        :meth:`BayesModel.centring`).

    Returns
    -------
    BayesModel

    Raises
    ------
    MissingExtraError
        If NumPyro, JAX or ArviZ is not installed.
    """
    require_extra()
    if not isinstance(family, str) or family not in FAMILIES:
        raise ModelSpecError(
            f"family must be one of {', '.join(repr(f) for f in FAMILIES)}, got {family!r}"
        )
    default_link, links = FAMILIES[family]
    link = link or default_link
    if link not in links:
        raise ModelSpecError(
            f"link {link!r} is not available for the {family} family in Bayesian models; "
            f"choose from {', '.join(links)}"
        )
    design = build_design(
        formula,
        data,
        weights=weights,
        offset=offset,
        require_random=False,
        factor_response=family == "binomial",
        residual_variance=family == "gaussian",
    )
    if design.trials is not None and family != "binomial":
        raise ModelSpecError("a cbind(successes, failures) response needs family='binomial'")
    if family != "gaussian":
        _check_response(design, family)
    can_integrate = family == "gaussian" and link == "identity"
    if marginalize and not can_integrate:
        raise ModelSpecError(
            "marginalize=True integrates the random effects out of a Gaussian likelihood with "
            "the identity link; other models sample them (marginalize=False)"
        )
    if marginalize is None:
        marginalize = can_integrate
        if can_integrate:
            probe = prepare_data(design, family, link, marginal=False)
            marg, full = marginal_cost(probe)
            marginalize = marg <= 4 * full
    data_arrays = prepare_data(design, family, link, marginal=bool(marginalize))
    params = parameters(design, family)
    from mixedmodels.bayesian.spec import resolve_priors

    prior_set = resolve_priors(data_arrays, params, priors)
    return BayesModel(
        design=design,
        data=data_arrays,
        priors=prior_set,
        marginal=bool(marginalize),
        centred=centred,
    )


def _check_response(design: Design, family: str) -> None:
    from mixedmodels.families import get_family

    fam = get_family(family)
    n = np.ones(design.nobs) if design.trials is None else design.trials
    wt = np.ones(design.nobs) if design.weights is None else design.weights
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        try:
            fam.check(design.y, n, wt, design.response_name)
        except UserWarning as w:
            raise ModelSpecError(
                f"the response {design.response_name!r} does not suit the {family} family: {w}"
            ) from None


@dataclass(frozen=True, eq=False)
class BayesModel:
    """A Bayesian mixed model before sampling (see :func:`bayes`).

    Attributes
    ----------
    design
        The evaluated formula (the same object :func:`mixedmodels.lmer` builds).
    data
        The model's arrays (centred fixed-effects columns, the integrated likelihood's blocks).
    priors
        The priors by parameter name (printable).
    marginal
        Whether the random effects are integrated out of the likelihood.
    centred
        How sampled effects are parameterized: None (automatic, see :meth:`centring`), True
        (centred) or False (non-centred).
    """

    design: Design
    data: BayesData
    priors: PriorSet
    marginal: bool
    centred: bool | None = None
    _cache: dict[Any, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def family(self) -> str:
        return self.data.family

    @property
    def link(self) -> str:
        return self.data.link

    @property
    def formula(self) -> str:
        return self.design.formula.source

    def __str__(self) -> str:
        d = self.design
        lines = [
            f"       Formula: {self.formula}",
            f"        Family: {self.family}",
            f"          Link: {self.link}",
            f"  Observations: {d.nobs}"
            + (f" ({d.n_dropped} rows with missing values dropped)" if d.n_dropped else ""),
        ]
        if d.terms:
            groups = ", ".join(f"{t.label} ({t.nlevels})" for t in self.data.terms)
            lines.append(f"        Groups: {groups}")
            how = (
                "integrated out of the likelihood (drawn afterwards from their conditional)"
                if self.marginal
                else "sampled, non-centred"
            )
            if not self.marginal:
                forms = self.centring()
                if any(forms):
                    how += (
                        " (centred: "
                        + ", ".join(
                            t.label for t, c in zip(self.data.terms, forms, strict=True) if c
                        )
                        + ")"
                    )
            lines.append(f"Group effects: {how}")
        lines.append("")
        lines.append(str(self.priors))
        return "\n".join(lines)

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        import html

        return f"<pre>{html.escape(str(self))}</pre>"

    # -- sampling ---------------------------------------------------------------------------------
    def fit(
        self,
        draws: int = 1000,
        tune: int = 1000,
        chains: int = 4,
        target_accept: float = 0.8,
        seed: int | None = None,
        progress: bool = True,
        *,
        init: str = "fit",
        chain_method: str = "auto",
        warn: bool = True,
    ) -> Any:
        """Sample the posterior with NUTS.

        Parameters
        ----------
        draws, tune
            Draws kept and warm-up (adaptation) iterations per chain.
        chains
            Number of chains.
        target_accept
            NUTS's target acceptance probability (raise it, e.g. to 0.95, if there are
            divergences).
        seed
            Random seed (default: a fresh one, recorded in the result).
        progress
            Show NumPyro's progress bar.
        init
            ``"fit"`` (default): each chain starts near the frequentist estimates
            (:func:`~mixedmodels.lmer` / :func:`~mixedmodels.glmer`), jittered; ``"random"``:
            NumPyro's default (uniform in (-2, 2) on the unconstrained scale).
        chain_method
            ``"auto"``: chains in parallel on several devices when JAX has one per chain,
            otherwise vectorized (all chains in one compiled loop); or ``"parallel"``,
            ``"vectorized"``, ``"sequential"``.
        warn
            Warn (:class:`~mixedmodels.ConvergenceWarning`) about divergent transitions and
            R-hat above 1.01 (see :meth:`BayesResult.check`).

        Returns
        -------
        BayesResult
        """
        from mixedmodels.bayesian._jax import Sampler, arrays_of, structure_of
        from mixedmodels.bayesian.result import BayesResult

        for name, v in (("draws", draws), ("tune", tune), ("chains", chains)):
            if not isinstance(v, int | np.integer) or v < (0 if name == "tune" else 1):
                raise ModelSpecError(f"{name} must be a positive integer, got {v!r}")
        if not 0 < target_accept < 1:
            raise ModelSpecError("target_accept must be between 0 and 1")
        if init not in ("fit", "random"):
            raise ModelSpecError("init must be 'fit' or 'random'")
        if seed is None:
            seed = int(np.random.SeedSequence().generate_state(1)[0] >> 1)
        import jax

        if chain_method == "auto":
            chain_method = "parallel" if jax.local_device_count() >= chains > 1 else "vectorized"
        from mixedmodels._progress import visible

        progress = bool(progress) and visible()
        st = structure_of(self.data, self.priors, self.marginal, self.centring())
        key = (st, draws, tune, chains, float(target_accept), chain_method, progress)
        samplers = self._cache.setdefault("samplers", {})
        sampler = samplers.get(key)
        if sampler is None:
            sampler = Sampler(
                st,
                draws=int(draws),
                tune=int(tune),
                chains=int(chains),
                target_accept=float(target_accept),
                dense_mass=self._n_unconstrained() <= 60,
                progress=progress,
                chain_method=chain_method,
            )
            samplers[key] = sampler
        density = sampler.density
        rng = np.random.default_rng(seed)
        values, jitter = self._start(init)
        if values:
            z0 = density.unconstrain(values)
            scale = density.jitter_scale(jitter)
            start = z0 + scale * rng.uniform(-1.0, 1.0, size=(int(chains), density.dim))
        else:  # NumPyro's default: uniform in (-2, 2) on the unconstrained scale
            start = rng.uniform(-2.0, 2.0, size=(int(chains), density.dim))
        D = arrays_of(self.data, self.marginal)
        t0 = time.perf_counter()
        samples, extra = sampler.run(D, int(seed), start)
        elapsed = time.perf_counter() - t0
        result = BayesResult.from_samples(
            self,
            samples,
            extra,
            settings={
                "draws": int(draws),
                "tune": int(tune),
                "chains": int(chains),
                "target_accept": float(target_accept),
                "seed": int(seed),
                "chain_method": chain_method,
                "init": init,
                "sampling_seconds": elapsed,
            },
        )
        if warn:
            result.check(stacklevel=3)
        return result

    def _n_unconstrained(self) -> int:
        n = self.data.p + (1 if self.family == "gaussian" else 0)
        for t in self.data.terms:
            s = t.n_effects
            n += s + s * (s - 1) // 2
            if not self.marginal:
                n += t.nlevels * s
        return n

    def frequentist_fit(self) -> Any:
        """The maximum-likelihood (REML for Gaussian) fit of the same model, or None where it
        does not exist or fails; cached."""
        if "freq" in self._cache:
            return self._cache["freq"]
        fit = None
        if self.design.terms:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    if self.family == "gaussian" and self.link == "identity":
                        from mixedmodels.lmm import LinearMixedModel

                        fit = LinearMixedModel.from_design(self.design).fit(
                            progress=False, warn=False, check_convergence=False
                        )
                    else:
                        from mixedmodels.families import get_family
                        from mixedmodels.glmm import GeneralizedLinearMixedModel

                        fam = get_family(self.family, self.link)
                        fit = GeneralizedLinearMixedModel.from_design(self.design, fam).fit(
                            progress=False
                        )
            except Exception:  # the start is a convenience: fall back to NumPyro's
                fit = None
        self._cache["freq"] = fit
        return fit

    def _start(self, init: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """Starting values (constrained) and jitter half-widths (unconstrained) by site."""
        if init != "fit":
            return {}, {}
        fit = self.frequentist_fit()
        d = self.data
        values: dict[str, Any] = {}
        jitter: dict[str, Any] = {}
        if fit is None:
            if self.design.terms:
                return {}, {}
            # a regression without group effects: least squares
            y = d.y if self.family == "gaussian" else None
            if y is None or d.p == 0:
                return {}, {}
            coef, *_ = np.linalg.lstsq(
                d.X, y - (d.offset if d.offset is not None else 0), rcond=None
            )
            resid = y - d.X @ coef
            sigma = max(float(np.std(resid)), 1e-3 * max(float(np.std(y)), 1e-8))
            se = sigma / np.sqrt(np.maximum(np.sum(d.X**2, axis=0), 1e-12))
            for k in range(d.p):
                values[f"beta_{k}"] = float(coef[k])
                jitter[f"beta_{k}"] = float(se[k])
            values["sigma"] = sigma
            jitter["sigma"] = 0.3
            return values, jitter
        beta_c = d.centre(np.asarray(fit.beta, dtype=float))
        se = np.asarray(fit.std_errors, dtype=float)
        for k in range(d.p):
            values[f"beta_{k}"] = float(beta_c[k])
            jitter[f"beta_{k}"] = float(se[k]) if np.isfinite(se[k]) and se[k] > 0 else 0.1
        scale = 1.0
        if self.family == "gaussian":
            scale = float(fit.sigma)
            values["sigma"] = max(scale, 1e-8)
            jitter["sigma"] = 0.3
        vc = fit.varcorr
        for j, t in enumerate(d.terms):
            cov = vc.terms[j].cov
            sd = np.sqrt(np.maximum(np.diag(cov), 0.0))
            floor = 0.05 * (scale if self.family == "gaussian" else 1.0)
            floor = max(floor, 0.05 * float(np.max(sd)) if sd.size else floor)
            sd_start = np.maximum(sd, floor)
            for s in range(t.n_effects):
                values[f"sd_{j}_{s}"] = float(sd_start[s])
                jitter[f"sd_{j}_{s}"] = 0.3
            R = np.eye(t.n_effects)
            if t.n_effects > 1:
                corr = vc.terms[j].corr
                corr = 0.8 * corr + 0.2 * np.eye(t.n_effects)  # away from +-1
                R = np.linalg.cholesky(corr)
                values[f"cor_{j}"] = R
                jitter[f"cor_{j}"] = 0.2
            if not self.marginal:
                b = np.asarray(fit.b[j], dtype=float)
                if self.centring()[j]:
                    values[f"b_{j}"] = b
                    condsd = np.sqrt(np.maximum(np.diagonal(fit.condvar(j), 0, 1, 2), 0.0))
                    jitter[f"b_{j}"] = 0.5 * condsd
                else:
                    T = sd_start[:, None] * R
                    values[f"u_{j}"] = np.linalg.solve(T, b.T).T
                    jitter[f"u_{j}"] = 0.3
        return values, jitter

    def centring(self) -> tuple[bool, ...]:
        """Which terms' effects are sampled centred (b ~ N(0, Sigma)) rather than non-centred
        (b = T u, u ~ N(0, I)): with ``centred=None``, the terms whose levels the data inform
        well, judged at the frequentist fit: the median over levels of the conditional
        standard deviation of an effect is below 0.7 times its estimated standard deviation
        (the data then carry more information about a level than its prior, where the centred
        form mixes better; Betancourt & Girolami 2015, arXiv:1312.0906). Integrated models
        sample no effects."""
        if self.marginal or not self.design.terms:
            return ()
        if self.centred is not None:
            return tuple([bool(self.centred)] * len(self.design.terms))
        if "centring" not in self._cache:
            fit = self.frequentist_fit()
            out = [False] * len(self.design.terms)
            if fit is not None:
                for j, term in enumerate(fit.varcorr.terms):
                    sd = term.sd
                    if not np.all(sd > 0):
                        continue
                    condsd = np.sqrt(np.maximum(np.diagonal(fit.condvar(j), 0, 1, 2), 0.0))
                    out[j] = bool(np.median(np.mean(condsd / sd, axis=1)) < 0.7)
            self._cache["centring"] = tuple(out)
        return self._cache["centring"]

    def with_response(self, y: Any) -> BayesModel:
        """The same model (design, priors) with a new response, sharing compiled samplers: for
        simulation studies and calibration checks. The priors are kept as they are (automatic
        priors are not rescaled to the new response)."""
        y = np.asarray(y, dtype=float)
        if y.shape != self.design.y.shape:
            raise ModelSpecError(f"y must have {self.design.nobs} values, got {y.shape}")
        design = replace(self.design, y=y)
        if self.family != "gaussian":
            _check_response(design, self.family)
        data = prepare_data(design, self.family, self.link, self.marginal)
        # the compiled samplers are shared (the same dict) with every model derived this way
        cache = {"samplers": self._cache.setdefault("samplers", {}), "centring": self.centring()}
        new = replace(self, design=design, data=data, _cache=cache)
        return new

    def prior_predictive(self, draws: int = 500, seed: int | None = None) -> Any:
        """Draws of the parameters and of the response from the prior.

        Returns
        -------
        arviz.InferenceData
            Groups ``prior`` (the parameters, named as in the posterior), ``prior_predictive``
            (``y``, dims ``(chain, draw, obs)``) and ``observed_data``.
        """
        from mixedmodels.bayesian._jax import arrays_of, prior_draws, structure_of
        from mixedmodels.bayesian.result import parameter_draws, to_inference_data

        if seed is None:
            seed = int(np.random.SeedSequence().generate_state(1)[0] >> 1)
        st = structure_of(self.data, self.priors, False)
        D = arrays_of(self.data, False)
        raw = prior_draws(st, D, int(draws), int(seed))
        raw = {k: v[None] for k, v in raw.items()}  # one chain
        params = parameter_draws(
            self, raw, effects=[("u", raw[f"u_{j}"]) for j in range(len(st.sizes))]
        )
        y = raw["y"]
        return to_inference_data(self, params, prior=True, predictive=y)
