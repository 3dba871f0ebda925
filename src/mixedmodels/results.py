"""Frozen result objects of a linear mixed-model fit.

:class:`LmerResult` holds what the fit computed (theta, beta, sigma, the conditional modes, the
factor L at the optimum, the optimizer's record) and derives everything else from those on
request: the variance components (:class:`VarCorr`), the random effects with their conditional
variances (:class:`RandomEffects`), fitted values, residuals, predictions and simulations.
Nothing is attached to a result after it is made.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pandas as pd
import scipy.linalg as sla
from scipy.linalg import lapack

from mixedmodels.errors import FormulaError, ModelSpecError

if TYPE_CHECKING:
    from mixedmodels.display.lmer import LmerSummary
    from mixedmodels.linalg.cholesky import BlockedCholesky
    from mixedmodels.lmm import LinearMixedModel
    from mixedmodels.optim import OptSummary

__all__ = ["LmerResult", "RandomEffects", "VarCorr", "VarCorrTerm"]


def _make_unique(names: Sequence[str]) -> list[str]:
    """R's ``make.unique``: the second ``a`` becomes ``a.1``, the third ``a.2``."""
    seen: dict[str, int] = {}
    out = []
    taken = set(names)
    for name in names:
        if name not in seen:
            seen[name] = 0
            out.append(name)
            continue
        k = seen[name]
        while True:
            k += 1
            cand = f"{name}.{k}"
            if cand not in taken:
                break
        seen[name] = k
        taken.add(cand)
        out.append(cand)
    return out


# ---------------------------------------------------------------------------------------------
# variance components


@dataclass(frozen=True)
class VarCorrTerm:
    """Covariance of one random-effects term.

    Attributes
    ----------
    group
        Grouping factor name, made unique as lme4 does (``Subject``, ``Subject.1``).
    names
        Names of the term's effects.
    cov
        Covariance matrix, (S, S) = sigma^2 T T'.
    """

    group: str
    names: tuple[str, ...]
    cov: np.ndarray

    @property
    def sd(self) -> np.ndarray:
        return np.sqrt(np.diag(self.cov))

    @property
    def corr(self) -> np.ndarray:
        sd = self.sd
        with np.errstate(divide="ignore", invalid="ignore"):
            c = self.cov / np.outer(sd, sd)
        c[~np.isfinite(c)] = 0.0
        np.fill_diagonal(c, 1.0)
        return c


@dataclass(frozen=True)
class VarCorr:
    """Estimated variances, standard deviations and correlations of the random effects.

    Prints like lme4's ``VarCorr``; :meth:`to_frame` gives lme4's
    ``as.data.frame(VarCorr(fit))`` (columns grp, var1, var2, vcov, sdcor).
    """

    terms: tuple[VarCorrTerm, ...]
    sigma: float
    use_scale: bool = True

    def __iter__(self) -> Iterator[VarCorrTerm]:
        return iter(self.terms)

    def __len__(self) -> int:
        return len(self.terms)

    def __getitem__(self, group: str) -> VarCorrTerm:
        for t in self.terms:
            if t.group == group:
                return t
        raise KeyError(
            f"no random-effects term for group {group!r}; groups: {[t.group for t in self.terms]}"
        )

    def to_frame(self) -> pd.DataFrame:
        """lme4's long form: one row per variance, then per covariance, then the residual."""
        rows: list[tuple[str, str | None, str | None, float, float]] = []
        for t in self.terms:
            sd = t.sd
            corr = t.corr
            for i, name in enumerate(t.names):
                rows.append((t.group, name, None, t.cov[i, i], sd[i]))
            for j in range(len(t.names)):
                for i in range(j + 1, len(t.names)):
                    rows.append((t.group, t.names[j], t.names[i], t.cov[i, j], corr[i, j]))
        if self.use_scale:
            rows.append(("Residual", None, None, self.sigma**2, self.sigma))
        return pd.DataFrame(rows, columns=["grp", "var1", "var2", "vcov", "sdcor"])

    def format(self, digits: int = 5, comp: Sequence[str] = ("Std.Dev.",)) -> str:
        """The table lme4 prints (``print(VarCorr(fit), digits=, comp=)``)."""
        from mixedmodels.display import rformat

        return rformat.format_varcorr(
            [t.group for t in self.terms],
            [list(t.names) for t in self.terms],
            [t.sd for t in self.terms],
            [t.corr if len(t.names) > 1 else None for t in self.terms],
            digits=digits,
            comp=tuple(comp),
            use_scale=self.use_scale,
            residual_sd=self.sigma,
        )

    def __str__(self) -> str:
        return self.format()

    def __repr__(self) -> str:
        return self.format()

    def _repr_html_(self) -> str:
        from mixedmodels.display.html import varcorr_html

        return varcorr_html(self)


# ---------------------------------------------------------------------------------------------
# random effects


class RandomEffects(Mapping[str, pd.DataFrame]):
    """Conditional modes of the random effects, by grouping factor.

    ``re["Subject"]`` is a DataFrame with one row per level and one column per effect (terms on
    the same grouping factor are put side by side, as lme4's ``ranef`` does). :meth:`to_frame`
    gives lme4's ``as.data.frame(ranef(fit, condVar=TRUE))``: grpvar, term, grp, condval,
    condsd. :meth:`condvar` gives the conditional covariance matrices.
    """

    def __init__(self, result: _MixedResult):
        self._result = result
        groups: dict[str, list[int]] = {}
        for j, t in enumerate(result.model.design.terms):
            groups.setdefault(t.group_name, []).append(j)
        self._groups = groups

    def _frame(self, group: str) -> pd.DataFrame:
        terms = self._result.model.design.terms
        parts = []
        for j in self._groups[group]:
            t = terms[j]
            parts.append(
                pd.DataFrame(self._result.b[j], index=t.levels, columns=list(t.effect_names))
            )
        df = pd.concat(parts, axis=1) if len(parts) > 1 else parts[0]
        df.index.name = group
        return df

    def __getitem__(self, group: str) -> pd.DataFrame:
        if group not in self._groups:
            raise KeyError(f"no grouping factor {group!r}; available: {list(self._groups)}")
        return self._frame(group)

    def __iter__(self) -> Iterator[str]:
        return iter(self._groups)

    def __len__(self) -> int:
        return len(self._groups)

    def __repr__(self) -> str:
        return "\n".join(f"${g}\n{self[g]}\n" for g in self)

    def condvar(self, group: str) -> list[np.ndarray]:
        """Conditional covariance matrices (levels, S, S) of each term on ``group``."""
        return [self._result.condvar(j) for j in self._groups[group]]

    def to_frame(self, condsd: bool = True) -> pd.DataFrame:
        """lme4's long form: grpvar, term, grp, condval and (optionally) condsd."""
        res = self._result
        terms = res.model.design.terms
        frames = []
        for group, idx in self._groups.items():
            for j in idx:
                t = terms[j]
                b = res.b[j]
                sd = np.sqrt(np.diagonal(res.condvar(j), axis1=1, axis2=2)) if condsd else None
                for s, name in enumerate(t.effect_names):
                    data = {
                        "grpvar": group,
                        "term": name,
                        "grp": t.levels.astype(str),
                        "condval": b[:, s],
                    }
                    if sd is not None:
                        data["condsd"] = sd[:, s]
                    frames.append(pd.DataFrame(data))
        return pd.concat(frames, ignore_index=True)


# ---------------------------------------------------------------------------------------------


class _MixedResult:
    """What linear and generalized linear mixed-model fits share: the fixed effects and their
    covariance, the variance components, the random effects and the linear predictor.

    Subclasses provide ``model``, ``theta``, ``beta``, ``b``, ``u``, ``_factor`` (the blocked
    factor at the optimum), ``npar``, ``loglik``, ``_scale`` (the residual standard deviation, 1
    for families without a scale) and ``_vcov_matrix`` (the covariance of beta).
    """

    model: Any
    theta: np.ndarray
    beta: np.ndarray
    b: tuple[np.ndarray, ...]
    u: tuple[np.ndarray, ...]
    _factor: Any

    @property
    def _scale(self) -> float:  # pragma: no cover - overridden
        raise NotImplementedError

    @property
    def _use_scale(self) -> bool:
        return True

    @property
    def _vcov_matrix(self) -> np.ndarray:  # pragma: no cover - overridden
        raise NotImplementedError

    @property
    def npar(self) -> int:  # pragma: no cover - overridden
        raise NotImplementedError

    @property
    def loglik(self) -> float:  # pragma: no cover - overridden
        raise NotImplementedError

    @property
    def design(self) -> Any:
        return self.model.design

    @property
    def formula(self) -> str:
        return self.model.design.formula.source

    @property
    def theta_names(self) -> list[str]:
        return self.model.theta_names

    @property
    def fixef(self) -> pd.Series:
        """Fixed-effects estimates, named as R names them (``(Intercept)``, ``Days``)."""
        return pd.Series(self.beta, index=list(self.design.fixef_names), name="Estimate")

    @property
    def vcov(self) -> pd.DataFrame:
        """Covariance matrix of the fixed-effects estimates."""
        names = list(self.design.fixef_names)
        return pd.DataFrame(self._vcov_matrix, index=names, columns=names)

    @property
    def std_errors(self) -> pd.Series:
        """Standard errors of the fixed effects."""
        return pd.Series(
            np.sqrt(np.diag(self._vcov_matrix)),
            index=list(self.design.fixef_names),
            name="Std. Error",
        )

    @property
    def nobs(self) -> int:
        """Number of observations used (after dropping rows with missing values)."""
        return self.model.nobs

    @property
    def n_dropped(self) -> int:
        """Number of rows of the data dropped because of missing values."""
        return self.design.n_dropped

    @property
    def ngroups(self) -> dict[str, int]:
        """Number of levels of each grouping factor."""
        out: dict[str, int] = {}
        for t in self.design.terms:
            out.setdefault(t.group_name, t.nlevels)
        return out

    @property
    def df_resid(self) -> int:
        """Residual degrees of freedom, nobs - npar (lme4's ``df.residual``)."""
        return self.nobs - self.npar

    @property
    def aic(self) -> float:
        return -2.0 * self.loglik + 2.0 * self.npar

    @property
    def bic(self) -> float:
        return -2.0 * self.loglik + math.log(self.nobs) * self.npar

    @cached_property
    def varcorr(self) -> VarCorr:
        """Variances, standard deviations and correlations of the random effects."""
        Ts = self.model.layout.templates(self.theta)
        terms = self.design.terms
        groups = _make_unique([t.group_name for t in terms])
        out = []
        for j, t in enumerate(terms):
            cov = self._scale**2 * (Ts[j] @ Ts[j].T)
            out.append(VarCorrTerm(groups[j], t.effect_names, cov))
        return VarCorr(tuple(out), self._scale, self._use_scale)

    def condvar(self, j: int) -> np.ndarray:
        """Conditional covariance matrices of the random effects of term ``j``: (levels, S, S).

        Var(b | y) = sigma^2 T_j [inv(L_Z L_Z')]_jj T_j' for each level (lme4's ``condVar``).
        """
        return self._condvars[j]

    @cached_property
    def _condvars(self) -> list[np.ndarray]:
        Ts = self.model.layout.templates(self.theta)
        out = []
        for j in range(len(self.design.terms)):
            blocks = self._factor.inverse_diag_blocks(j)
            T = Ts[j]
            out.append(self._scale**2 * np.matmul(T, np.matmul(blocks, T.T)))
        return out

    def ranef(self) -> RandomEffects:
        """Conditional modes of the random effects by grouping factor (lme4's ``ranef``)."""
        return RandomEffects(self)

    def tidy(
        self,
        effects: Sequence[str] | str = ("fixed", "ran_pars"),
        *,
        conf_int: bool = False,
        conf_level: float = 0.95,
        conf_method: str = "wald",
        ddf: str = "satterthwaite",
        **confint_options: Any,
    ) -> pd.DataFrame:
        """Every estimate in one DataFrame: effect, group, term, estimate, std_error, statistic,
        df, p_value (and conf_low, conf_high with ``conf_int=True``), in the spirit of R's
        broom.mixed; see :func:`mixedmodels.tidy.tidy` for the options."""
        from mixedmodels.tidy import tidy

        return tidy(
            self,
            effects,
            conf_int=conf_int,
            conf_level=conf_level,
            conf_method=conf_method,
            ddf=ddf,
            **confint_options,
        )

    # -- plots (matplotlib; see mixedmodels.plots) ---------------------------------------------
    def plot_ranef(
        self,
        group: str | None = None,
        term: str | None = None,
        *,
        level: float = 0.95,
        sort: bool = True,
        ax: Any = None,
    ) -> Any:
        """Caterpillar plot of the conditional modes with ``level`` intervals; returns the
        Figure (see :func:`mixedmodels.plots.caterpillar`)."""
        from mixedmodels.plots import caterpillar

        return caterpillar(cast(Any, self), group, term, level=level, sort=sort, ax=ax)

    def plot_groups(
        self,
        x: str,
        group: str | None = None,
        *,
        population: bool = True,
        ncols: int | None = None,
        max_groups: int | None = 48,
        ax: Any = None,
    ) -> Any:
        """The data of each group against ``x`` with its fitted line and the population line;
        returns the Figure (see :func:`mixedmodels.plots.group_panels`)."""
        from mixedmodels.plots import group_panels

        return group_panels(
            cast(Any, self),
            x,
            group,
            population=population,
            ncols=ncols,
            max_groups=max_groups,
            ax=ax,
        )

    def plot_residuals(self, *, ax: Any = None) -> Any:
        """Standardized residuals against fitted values; returns the Figure."""
        from mixedmodels.plots import residuals_vs_fitted

        return residuals_vs_fitted(cast(Any, self), ax=ax)

    def plot_qq(self, *, ax: Any = None) -> Any:
        """Normal QQ plot of the standardized residuals; returns the Figure."""
        from mixedmodels.plots import qq

        return qq(cast(Any, self), ax=ax)

    def coef(self) -> dict[str, pd.DataFrame]:
        """Per-level coefficients: the fixed effects plus the level's random effects (lme4's
        ``coef``)."""
        fe = self.fixef
        out = {}
        for group, frame in self.ranef().items():
            cols = list(fe.index) + [c for c in frame.columns if c not in fe.index]
            df = pd.DataFrame(
                {c: np.full(len(frame), fe.get(c, 0.0)) for c in cols}, index=frame.index
            )
            for c in frame.columns:
                df[c] = df[c].to_numpy() + frame[c].to_numpy()
            out[group] = df
        return out

    def _linear_predictor(self, terms_used: Sequence[int] | None = None) -> np.ndarray:
        d = self.design
        eta = d.X @ self.beta if d.X.shape[1] else np.zeros(d.nobs)
        if d.offset is not None:
            eta = eta + d.offset
        for j, t in enumerate(d.terms):
            if terms_used is not None and j not in terms_used:
                continue
            bj = self.b[j][t.refs]  # (n, S)
            if t.z is None:
                eta = eta + bj[:, 0]
            else:
                eta = eta + np.einsum("sn,ns->n", t.z, bj)
        return eta

    def _terms_in(self, re_form: Any) -> list[int]:
        terms = self.design.terms
        if re_form is None:
            return list(range(len(terms)))
        if isinstance(re_form, int | float) and re_form == 0:
            return []
        if not isinstance(re_form, str):
            raise ModelSpecError(
                "re_form must be None, '~0' (no random effects) or a formula with bar terms"
            )
        text = re_form.strip()
        if text in ("~0", "~ 0", "0", "NA", "~-1", "~ -1"):
            return []
        from mixedmodels.formula.terms import split_formula

        spec = split_formula(text if text.startswith("~") else f"~{text}")
        chosen = []
        for rt in spec.random:
            for j, t in enumerate(terms):
                if t.group_name == rt.group_name and t.spec.effects == rt.effects:
                    chosen.append(j)
                    break
            else:
                raise FormulaError(
                    f"re_form term ({rt.source}) is not a random-effects term of the model", re_form
                )
        return sorted(set(chosen))

    def _rows(
        self, newdata: pd.DataFrame | None, used: list[int], allow_new_levels: bool
    ) -> tuple[Any, ...]:
        """(X, offset, [(term, refs, z)], complete mask, index) for the data fitted or new data."""
        d = self.design
        if newdata is None:
            parts = [(j, d.terms[j].refs.astype(np.int64), d.terms[j].z) for j in used]
            return d.X, d.offset, parts, np.ones(d.nobs, dtype=bool), d.row_index
        from mixedmodels.formula.design import new_data_arrays

        X, offset, parts, complete = new_data_arrays(d, newdata, used, allow_new_levels)
        return X, offset, parts, complete, newdata.index

    def _confint_wald_boot(
        self,
        names: list[str],
        method: str,
        level: float,
        which: Sequence[str] | str | None,
        nsim: int,
        seed: int | None,
        boot_type: str,
        progress: bool,
    ) -> pd.DataFrame:
        """Wald intervals (fixed effects only; NaN for the variance parameters) or bootstrap
        intervals, for the parameters ``names`` (variance parameters first)."""
        from scipy import stats

        from mixedmodels.inference.profile import _pct, _which

        idx = _which(names, which)
        if method == "wald":
            z = float(stats.norm.ppf(0.5 + level / 2))
            nvar = len(names) - len(self.beta)
            se = self.std_errors.to_numpy()
            rows = [
                (np.nan, np.nan)
                if i < nvar
                else (
                    self.beta[i - nvar] - z * se[i - nvar],
                    self.beta[i - nvar] + z * se[i - nvar],
                )
                for i in idx
            ]
            a = (1 - level) / 2
            return pd.DataFrame(rows, index=[names[i] for i in idx], columns=[_pct(a), _pct(1 - a)])
        if method in ("boot", "bootstrap"):
            boot = self.bootstrap(nsim, seed=seed, progress=progress)  # type: ignore[attr-defined]
            return boot.confint(level=level, type=boot_type).loc[[names[i] for i in idx]]
        raise ModelSpecError(f"method must be 'profile', 'wald' or 'boot', not {method!r}")

    def _eta_rows(
        self, newdata: pd.DataFrame | None, re_form: str | None, allow_new_levels: bool
    ) -> tuple[np.ndarray, np.ndarray, pd.Index, tuple[Any, ...]]:
        """Linear predictor X beta + o + Z b for the fitted rows or new data (random effects of
        the terms in ``re_form``; new levels at zero): (eta of the complete rows, which rows are
        complete, the index, the row arrays)."""
        used = self._terms_in(re_form)
        X, offset, parts, complete, index = self._rows(newdata, used, allow_new_levels)
        eta = X @ self.beta if X.shape[1] else np.zeros(X.shape[0])
        if offset is not None:
            eta = eta + offset
        for j, refs, z in parts:
            bj = np.zeros((len(refs), self.b[j].shape[1]))
            ok = refs < self.b[j].shape[0]
            bj[ok] = self.b[j][refs[ok]]
            eta = eta + (bj[:, 0] if z is None else np.einsum("sn,ns->n", z, bj))
        return eta, complete, index, (X, offset, parts)

    def _response_simulator(
        self, fitted_rows: bool
    ) -> Callable[[np.ndarray, np.random.Generator], np.ndarray] | None:
        """For a GLMM, draws responses given the linear predictor; None for Gaussian noise."""
        return None

    def simulate(
        self,
        nsim: int = 1,
        seed: int | np.random.Generator | None = None,
        use_u: bool = False,
        newdata: pd.DataFrame | None = None,
        newparams: Mapping[str, Any] | None = None,
    ) -> pd.DataFrame:
        """Simulate responses from the fitted model (lme4's ``simulate``): new random effects
        (unless ``use_u``) and new residuals, or for a GLMM responses from the family (binomial
        responses as proportions of the trials, the scale of the response fitted).

        Parameters
        ----------
        nsim
            Number of simulated responses.
        seed
            Seed or numpy Generator.
        use_u
            Keep the random effects of the levels seen in the fit at their conditional modes
            (simulate only the residual noise, and new levels' effects) instead of drawing new
            ones.
        newdata
            Simulate for these rows instead of the data fitted (levels not seen in the fit get
            new random effects).
        newparams
            Parameters to simulate with instead of the estimates: any of ``beta`` (array in the
            order of :attr:`fixef`, or a mapping name -> value), ``theta`` (lme4's order) and
            ``sigma``.

        Returns
        -------
        DataFrame
            One column per simulation (``sim_1``, ...), aligned with the rows.
        """
        from mixedmodels.simulate import _params, simulate_arrays

        if nsim < 1:
            raise ModelSpecError("nsim must be at least 1")
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        beta, theta, sigma = _params(
            newparams or {},
            self.beta,
            self.theta,
            self._scale,
            list(self.design.fixef_names),
            self.model.theta_names,
        )
        used = list(range(len(self.design.terms)))
        X, offset, parts, complete, index = self._rows(newdata, used, True)
        weights = self.design.weights if newdata is None else None
        Ts = self.model.layout.templates(theta)
        fixed_u = None
        if use_u:
            fixed_u = [self.u[j] for j in used]
        sims = simulate_arrays(
            X, offset, parts, [t.nlevels for t in self.design.terms], weights, beta, Ts, sigma,
            nsim, rng, fixed_u, self._response_simulator(newdata is None),
        )  # fmt: skip
        out = np.full((len(complete), nsim), np.nan)
        out[complete] = sims
        return pd.DataFrame(out, index=index, columns=[f"sim_{k + 1}" for k in range(nsim)])


def _lower_inverse(L: np.ndarray) -> np.ndarray:
    """inv(L) for a lower-triangular L: ``scipy.linalg.solve_triangular(L, I, lower=True)``,
    the same LAPACK call (``trtrs``) without the wrapper's checks, which cost more than the
    solve for a few fixed effects."""
    L = np.asarray(L, dtype=np.float64)
    eye = np.eye(L.shape[0])
    if L.flags.f_contiguous:
        x, info = lapack.dtrtrs(L, eye, lower=1, trans=0)
    else:  # the transposed system, as solve_triangular solves it for C-ordered input
        x, info = lapack.dtrtrs(L.T, eye, lower=0, trans=1)
    if info != 0:  # pragma: no cover - singular: let scipy raise its error
        return sla.solve_triangular(L, eye, lower=True, check_finite=False)
    return x


@dataclass(frozen=True, eq=False)
class LmerResult(_MixedResult):
    """A fitted linear mixed model (returned by :func:`mixedmodels.lmer`).

    Attributes
    ----------
    model
        The model that was fitted.
    theta
        Relative covariance parameters at the optimum, lme4's order (:attr:`theta_names`).
    beta
        Fixed-effects estimates (see :attr:`fixef` for a named Series).
    sigma
        Residual standard deviation.
    b
        Conditional modes of the random effects, one (levels, S) array per term.
    u
        Spherical conditional modes (b = Lambda u), one (levels, S) array per term.
    optinfo
        The optimizer's record (evaluations, theta path, return code, time).
    is_singular
        Whether the fit is on the boundary (a template diagonal below 1e-4, lme4's rule).
    """

    model: LinearMixedModel
    theta: np.ndarray
    beta: np.ndarray
    sigma: float
    b: tuple[np.ndarray, ...]
    u: tuple[np.ndarray, ...]
    optinfo: OptSummary
    is_singular: bool
    objective_value: float
    ml_deviance: float
    vcov_unscaled: np.ndarray = field(repr=False)

    # -- construction ----------------------------------------------------------------------------
    @classmethod
    def from_workspace(
        cls, model: LinearMixedModel, ws: BlockedCholesky, opt: OptSummary, singular: bool
    ) -> LmerResult:
        """Collect the estimates from a workspace factored at the optimum."""
        reml = model.reml
        theta = np.array(opt.final, dtype=float)
        beta_work = ws.beta()
        p = model.n_fixef
        result = cls._make(
            model, theta, beta_work, ws.spherical_modes(beta_work), ws.pwrss(),
            ws.Lxyxy[:p, :p], opt, singular, ws.objective(reml), ws.objective(False),
        )  # fmt: skip
        object.__setattr__(result, "_factor", ws)
        return result

    @classmethod
    def from_fast(
        cls, model: LinearMixedModel, fast: Any, opt: OptSummary, singular: bool
    ) -> LmerResult | None:
        """Collect the estimates at the optimum from the compiled objective's factor
        (:meth:`~mixedmodels.linalg.fast_lmm.FastObjective.solution`); the blocked factor
        that conditional variances and prediction intervals need is made when first needed.
        None if the optimum cannot be factored."""
        theta = np.array(opt.final, dtype=float)
        sol = fast.solution(theta)
        if sol is None:  # pragma: no cover - the optimum is always factorable
            return None
        crit = sol.reml_criterion if model.reml else sol.ml_deviance
        return cls._make(
            model, theta, sol.beta, sol.u, sol.pwrss, sol.L_X, opt, singular, crit,
            sol.ml_deviance, b=sol.b, unscaled=sol.vcov_unscaled,
        )  # fmt: skip

    @classmethod
    def _make(
        cls,
        model: LinearMixedModel,
        theta: np.ndarray,
        beta_work: np.ndarray,
        u_flat: Sequence[np.ndarray],
        pwrss: float,
        L_X: np.ndarray,
        opt: OptSummary,
        singular: bool,
        objective: float,
        ml_deviance: float,
        *,
        b: list[np.ndarray] | None = None,
        unscaled: np.ndarray | None = None,
    ) -> LmerResult:
        """The result from the estimates at the optimum; ``b`` (the modes on the data's scale)
        and ``unscaled`` ((L_X L_X')^-1) are computed here unless given."""
        beta = beta_work + model.beta_shift
        n, p = model.nobs, model.n_fixef
        sigma = math.sqrt(pwrss / (n - p if model.reml else n))
        terms = model.design.terms
        u = [u_flat[j].reshape(t.nlevels, t.n_effects) for j, t in enumerate(terms)]
        if b is None:
            Ts = model.layout.templates(theta)
            b = [uj @ T.T for uj, T in zip(u, Ts, strict=True)]
        if unscaled is None:
            # (L_X L_X')^-1, compiled: LAPACK's wrappers cost more than a few-by-few inverse
            from mixedmodels.linalg.lmm_kernels import cholesky_inverse

            unscaled = cholesky_inverse(np.ascontiguousarray(L_X, dtype=float), p)
        return cls(
            model=model,
            theta=theta,
            beta=beta,
            sigma=sigma,
            b=tuple(b),
            u=tuple(u),
            optinfo=opt,
            is_singular=singular,
            objective_value=objective,
            ml_deviance=ml_deviance,
            vcov_unscaled=unscaled,
        )

    @cached_property
    def _factor(self) -> BlockedCholesky:
        """The blocked factor L at the optimum (for conditional variances and prediction
        intervals), factored when first needed."""
        ws = self.model.workspace()
        if not ws.update(self.theta):  # pragma: no cover - the optimum is always factorable
            raise ModelSpecError("the model matrix could not be factored at the optimum")
        return ws

    # -- basic quantities --------------------------------------------------------------------------
    @property
    def _scale(self) -> float:
        return self.sigma

    @property
    def _vcov_matrix(self) -> np.ndarray:
        return self.sigma**2 * self.vcov_unscaled

    @property
    def reml(self) -> bool:
        """Whether the fit maximized the REML criterion."""
        return self.model.reml

    @property
    def npar(self) -> int:
        """Number of parameters: fixed effects, theta and sigma (the ``df`` of ``logLik``)."""
        return self.model.n_fixef + self.model.ntheta + 1

    @property
    def loglik(self) -> float:
        """Log-likelihood at the optimum; the REML log-likelihood for REML fits (as lme4)."""
        return -0.5 * self.objective_value

    @property
    def deviance(self) -> float:
        """-2 log-likelihood. For REML fits, the ML deviance at the REML estimates
        (lme4's ``deviance(fit, REML = FALSE)``)."""
        return self.ml_deviance

    @property
    def reml_criterion(self) -> float | None:
        """The REML criterion at convergence (-2 REML log-likelihood); ``None`` for ML fits."""
        return self.objective_value if self.reml else None

    # -- variance components --------------------------------------------------------------------
    # -- fitted values and residuals -----------------------------------------------------------
    def fitted(self) -> pd.Series:
        """Fitted values X beta + Z b (+ offset), aligned with the rows used."""
        return pd.Series(self._linear_predictor(), index=self.design.row_index, name="fitted")

    def residuals(self, type: str = "response", scaled: bool = False) -> pd.Series:
        """Residuals.

        Parameters
        ----------
        type
            ``"response"`` (y - fitted), ``"pearson"`` (times sqrt of the prior weights),
            ``"working"`` (same as response for a linear model) or ``"deviance"`` (same as
            pearson for a linear model).
        scaled
            Divide by sigma (lme4's ``scaled = TRUE``).
        """
        r = self.design.y - self._linear_predictor()
        if type in ("pearson", "deviance"):
            if self.design.weights is not None:
                r = r * np.sqrt(self.design.weights)
        elif type not in ("response", "working"):
            raise ModelSpecError(
                f"unknown residual type {type!r}; "
                "use 'response', 'pearson', 'working' or 'deviance'"
            )
        if scaled:
            r = r / self.sigma
        return pd.Series(r, index=self.design.row_index, name="residuals")

    # -- prediction -----------------------------------------------------------------------------
    def predict(
        self,
        newdata: pd.DataFrame | None = None,
        re_form: str | None = None,
        allow_new_levels: bool = False,
        interval: str = "none",
        level: float = 0.95,
    ) -> pd.Series | pd.DataFrame:
        """Predictions, as lme4's ``predict``, optionally with intervals.

        Parameters
        ----------
        newdata
            Data to predict for (default: the data fitted). Rows with missing values in the
            variables needed get NaN.
        re_form
            ``None`` (all random effects), ``"~0"`` (population level: fixed effects only) or a
            formula naming the random-effects terms to include, e.g. ``"~(1 | Subject)"``.
        allow_new_levels
            Levels of a grouping factor not seen in the fit get random effects of zero (the
            population value); otherwise they raise :class:`~mixedmodels.DataError`.
        interval
            ``"none"`` (a Series of predictions), ``"confidence"`` (for the conditional mean
            x'beta + z'b) or ``"prediction"`` (for a new observation: also the residual
            variance). Variances are conditional on the estimated covariance parameters and
            include the uncertainty of the fixed effects and of the conditional modes
            (sigma^2 w' inv(L L') w with w = [Lambda'z; x]); a level not seen in the fit adds
            its random effects' variance z' Sigma z.
        level
            Coverage of the intervals.

        Returns
        -------
        Series, or DataFrame with columns fit, se_fit, lower, upper.
        """
        if interval not in ("none", "confidence", "prediction"):
            raise ModelSpecError("interval must be 'none', 'confidence' or 'prediction'")
        used = self._terms_in(re_form)
        eta, complete, index, (X, _, parts) = self._eta_rows(newdata, re_form, allow_new_levels)
        n_out = len(complete)
        if interval == "none":
            out = np.full(n_out, np.nan)
            out[complete] = eta
            return pd.Series(out, index=index, name="predicted")
        var = self._prediction_variance(X, parts, used)
        if interval == "prediction":
            w = self.design.weights if newdata is None else None
            var = var + self.sigma**2 / (w if w is not None else 1.0)
        from scipy import stats

        zq = float(stats.norm.ppf(0.5 + level / 2))
        se = np.sqrt(var)
        cols = {"fit": eta, "se_fit": se, "lower": eta - zq * se, "upper": eta + zq * se}
        frame = pd.DataFrame(np.nan, index=index, columns=list(cols))
        for name, vals in cols.items():
            frame.loc[frame.index[complete], name] = vals
        return frame

    def _prediction_variance(self, X: np.ndarray, parts: list, used: list[int]) -> np.ndarray:
        m = X.shape[0]
        if not used:  # population level: Var(x' beta_hat)
            V = self.sigma**2 * self.vcov_unscaled
            return np.einsum("ij,jk,ik->i", X, V, X) if X.shape[1] else np.zeros(m)
        ws = self._factor
        Ts = self.model.layout.templates(self.theta)
        terms = self.design.terms
        out = np.zeros(m)
        q_total = sum(t.n_ranef for t in terms)
        step = max(1, 4_000_000 // max(q_total, 1))
        part_of = {j: (refs, z) for j, refs, z in parts}
        for start in range(0, m, step):
            stop = min(m, start + step)
            cols = np.arange(start, stop)
            WZ = []
            new_var = np.zeros(stop - start)
            for j, t in enumerate(terms):
                W = np.zeros((t.n_ranef, stop - start))
                if j in part_of:
                    refs, z = part_of[j]
                    zr = np.ones((1, stop - start)) if z is None else z[:, cols]
                    r = refs[cols]
                    lz = Ts[j].T @ zr  # Lambda' z for each row, (S, rows)
                    known = r < t.nlevels
                    for s in range(t.n_effects):
                        W[r[known] * t.n_effects + s, np.flatnonzero(known)] = lz[s, known]
                    if (~known).any():
                        cov = self.sigma**2 * (Ts[j] @ Ts[j].T)
                        zn = zr[:, ~known]
                        new_var[~known] += np.einsum("sr,st,tr->r", zn, cov, zn)
                WZ.append(W)
            vs, vX = ws.forward_solve(WZ, X[cols].T)
            total = sum(np.sum(v * v, axis=0) for v in vs) + np.sum(vX * vX, axis=0)
            out[start:stop] = self.sigma**2 * total + new_var
        return out

    # -- inference -------------------------------------------------------------------------------
    @cached_property
    def _satterthwaite(self) -> Any:
        from mixedmodels.inference.satterthwaite import _warn_notes, varpar_derivatives

        info = varpar_derivatives(self)
        _warn_notes(info)
        return info

    @cached_property
    def _kenward_roger(self) -> Any:
        from mixedmodels.inference.kenward_roger import kenward_roger

        return kenward_roger(self)

    def coef_table(self, ddf: str = "satterthwaite") -> pd.DataFrame:
        """t-tests of the fixed effects: Estimate, Std. Error, df, t value, Pr(>|t|).

        ``ddf`` is ``"satterthwaite"`` (lmerTest's default), ``"kenward-roger"`` (standard errors
        from the adjusted covariance, as lmerTest) or ``"none"`` (lme4's table: Estimate,
        Std. Error, t value).
        """
        names = list(self.design.fixef_names)
        p = len(names)
        if ddf == "none" or ddf is None:
            se = self.std_errors.to_numpy()
            return pd.DataFrame(
                {"Estimate": self.beta, "Std. Error": se, "t value": self.beta / se}, index=names
            )
        from mixedmodels.inference.anova import _ddf_name

        method = _ddf_name(ddf)
        tester = self._satterthwaite if method == "satterthwaite" else self._kenward_roger
        rows = []
        for i in range(p):
            L = np.zeros(p)
            L[i] = 1.0
            if method == "satterthwaite":
                from mixedmodels.inference.satterthwaite import t_test

                rows.append(t_test(tester, L, self.beta))
            else:
                rows.append(tester.t_test(L, self.beta))
        return pd.DataFrame(
            rows, index=names, columns=["Estimate", "Std. Error", "df", "t value", "Pr(>|t|)"]
        )

    def anova(self, type: int | str = 3, ddf: str = "satterthwaite") -> Any:
        """F-tests of the fixed-effect terms (lmerTest's ``anova``).

        Parameters
        ----------
        type
            3 (default, marginal hypotheses as SAS), 2 or 1 (sequential).
        ddf
            ``"satterthwaite"`` or ``"kenward-roger"``.

        Returns
        -------
        AnovaTable
            Sum Sq, Mean Sq, NumDF, DenDF, F value, Pr(>F) per term.
        """
        from mixedmodels.inference.anova import term_tests

        return term_tests(self, type=type, ddf=ddf)

    def drop1(self, ddf: str = "satterthwaite") -> Any:
        """F-tests for dropping each marginal fixed-effect term (lmerTest's ``drop1``)."""
        from mixedmodels.inference.anova import drop1

        return drop1(self, ddf=ddf)

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
        """Confidence intervals for every parameter, in lme4's order and names.

        Rows: ``sd_(Intercept)|Subject``, ``cor_Days.(Intercept)|Subject``, ``sd_Days|Subject``,
        ..., ``sigma``, then the fixed effects (lme4's ``confint(fit, oldNames = FALSE)``).

        Parameters
        ----------
        method
            ``"profile"`` (profile likelihood of the ML deviance, as lme4; REML fits are
            refitted with ML), ``"wald"`` (fixed effects only: estimate -+ z SE; the variance
            parameters get NaN, as in lme4) or ``"boot"`` (parametric bootstrap, see
            :meth:`bootstrap`).
        level
            Confidence level.
        which
            Parameter names (or ``"theta_"`` for the variance parameters, ``"beta_"`` for the
            fixed effects); default all.
        nsim, seed, boot_type
            For ``method="boot"``: number of replicates, seed and interval type (``"perc"``,
            ``"basic"`` or ``"norm"``).
        progress
            For ``method="profile"`` and ``"boot"``: show a progress bar (over the parameters,
            or the replicates), where a terminal or a notebook can show it.
        """
        from mixedmodels.inference.profile import confint_profile, parameter_names

        method = method.lower()
        if method == "profile":
            return confint_profile(self, level=level, which=which, progress=progress)
        return self._confint_wald_boot(
            parameter_names(self), method, level, which, nsim, seed, boot_type, progress
        )

    def bootstrap(
        self,
        nsim: int = 1000,
        seed: int | None = None,
        *,
        use_u: bool = False,
        n_jobs: int | None = None,
        progress: bool = True,
    ) -> Any:
        """Parametric bootstrap (lme4's ``bootMer``): simulate from the fit and refit.

        Only the blocks of A that involve y are recomputed per replicate; replicates run in
        ``n_jobs`` processes (default: all CPUs). Returns a :class:`BootstrapResult` with the
        replicates (one column per parameter, lme4's ``confint`` names) and ``confint(type=)``
        for percentile, basic and normal intervals.
        """
        from mixedmodels.inference.bootstrap import bootstrap

        return bootstrap(self, nsim, seed, use_u=use_u, n_jobs=n_jobs, progress=progress)

    def profile(
        self,
        which: Sequence[str] | str | None = None,
        level: float | None = None,
        npoints: int = 8,
        *,
        progress: bool = True,
    ) -> Any:
        """Profile traces of the ML deviance (lme4's ``profile``): zeta and every parameter
        along each parameter's profile; ``.plot()`` draws them (needs matplotlib).

        Parameters
        ----------
        which
            Parameter names (or ``"theta_"`` / ``"beta_"``); default all.
        level
            How far each profile goes: to |zeta| = the normal quantile of ``(1 + level) / 2``;
            default lme4's cutoff, sqrt(qchisq(0.99, number of parameters)).
        npoints
            Profile points on each side of the estimate.
        progress
            Show a progress bar over the parameters (where a terminal or a notebook can show
            it).
        """
        from mixedmodels.inference.profile import profile

        return profile(self, which=which, level=level, npoints=npoints, progress=progress)

    def ranova(self) -> Any:
        """Likelihood-ratio tests for removing or reducing each random-effects term (lmerTest's
        ``ranova``)."""
        from mixedmodels.inference.anova import ranova

        return ranova(self)

    # -- presentation ----------------------------------------------------------------------------
    def summary(
        self, ddf: str = "satterthwaite", *, correlation: bool | None = None, digits: int = 4
    ) -> LmerSummary:
        """The fit summary: criterion, scaled residuals, random effects, fixed effects.

        Parameters
        ----------
        ddf
            ``"satterthwaite"`` (default) or ``"kenward-roger"``: t-tests with denominator df
            and p-values, in lmerTest's layout; ``"none"``: lme4's layout, without p-values.
        correlation
            Show the correlation of the fixed-effects estimates (default: when there are at
            most 12 fixed effects, as lme4).
        digits
            Significant digits of the text layout (lme4's default is 4).
        """
        from mixedmodels.display.lmer import LmerSummary

        return LmerSummary.from_result(self, ddf=ddf, digits=digits, correlation=correlation)

    def __str__(self) -> str:
        from mixedmodels.display.lmer import format_print

        return format_print(self)

    def __repr__(self) -> str:
        return self.__str__()

    def _repr_html_(self) -> str:
        return self.summary()._repr_html_()
