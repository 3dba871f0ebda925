"""The result of sampling a Bayesian mixed model: ArviZ ``InferenceData`` and what users do with
it (summary, group-level effects, posterior predictive draws, predictions for new data)."""

from __future__ import annotations

import html
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mixedmodels.errors import ModelSpecError

__all__ = ["BayesResult", "BayesSummary"]


def _arviz() -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # ArviZ announces its refactor on import
        import arviz as az
    return az


def _pairs(effects: Sequence[str]) -> list[tuple[int, int, str]]:
    """Lower-triangle pairs (i > k) of a term's effects, with labels ``"(Intercept):Days"``."""
    return [(i, k, f"{effects[k]}:{effects[i]}") for i in range(len(effects)) for k in range(i)]


def parameter_draws(
    model: Any,
    raw: dict[str, np.ndarray],
    effects: Sequence[tuple[str, np.ndarray]] | None = None,
) -> dict[str, Any]:
    """The model's parameters from the sampler's sites (arrays shaped (chains, draws, ...)).

    ``effects`` are the sampled group-level effects of each term: the spherical u_j
    (non-centred; b_j = T_j u_j for each level) or b_j itself (centred), as ("u" or "b",
    array).
    """
    d = model.data
    C, N = next(iter(raw.values())).shape[:2]
    p = d.p
    beta_c = np.stack([raw[f"beta_{k}"] for k in range(p)], axis=-1) if p else np.zeros((C, N, 0))
    out: dict[str, Any] = {"beta_c": beta_c, "beta": d.uncentre(beta_c)}
    if d.family == "gaussian":
        out["sigma"] = raw["sigma"]
    sds, Rs, Ts, bs = [], [], [], []
    for j, t in enumerate(d.terms):
        sd = np.stack([raw[f"sd_{j}_{s}"] for s in range(t.n_effects)], axis=-1)
        R = raw.get(f"cor_{j}")
        if R is None:
            R = np.broadcast_to(np.eye(t.n_effects), (C, N, t.n_effects, t.n_effects))
        T = sd[..., :, None] * R
        sds.append(sd)
        Rs.append(np.asarray(R))
        Ts.append(T)
        if effects is not None:
            kind, e = effects[j]
            bs.append(e if kind == "b" else np.einsum("cnts,cnls->cnlt", T, e))
    out.update(sd=sds, R=Rs, T=Ts, b=bs if effects is not None else None)
    return out


def to_inference_data(
    model: Any,
    params: dict[str, Any],
    *,
    prior: bool = False,
    predictive: np.ndarray | None = None,
    sample_stats: dict[str, np.ndarray] | None = None,
) -> Any:
    """ArviZ InferenceData with named dimensions and coordinates.

    Variables: ``beta`` (dim ``coef``: the fixed effects' names), ``sigma``, and for each
    random-effects term labelled g (``Subject``, or ``Subject.1`` for a second term on the same
    factor): ``sd_g`` (dim ``g_effect``), ``corr_g`` (dim ``g_pair``, e.g.
    ``"(Intercept):Days"``) and ``b_g`` (dims ``g``, ``g_effect``: the group-level effects).
    """
    az = _arviz()
    d = model.data
    names = list(model.design.fixef_names)
    coords: dict[str, Any] = {"coef": names, "obs": np.arange(d.nobs)}
    dims: dict[str, list[str]] = {"beta": ["coef"], "y": ["obs"]}
    group: dict[str, np.ndarray] = {"beta": params["beta"]}
    if "sigma" in params:
        group["sigma"] = params["sigma"]
    for j, t in enumerate(d.terms):
        g = t.label
        eff = f"{g}_effect"
        coords[eff] = list(t.effects)
        group[f"sd_{g}"] = params["sd"][j]
        dims[f"sd_{g}"] = [eff]
        if t.n_effects > 1:
            pairs = _pairs(t.effects)
            R = params["R"][j]
            corr = np.einsum("...ik,...jk->...ij", R, R)
            group[f"corr_{g}"] = np.stack([corr[..., i, k] for i, k, _ in pairs], axis=-1)
            coords[f"{g}_pair"] = [lab for _, _, lab in pairs]
            dims[f"corr_{g}"] = [f"{g}_pair"]
        if params.get("b") is not None:
            coords[g] = list(t.levels)
            group[f"b_{g}"] = params["b"][j]
            dims[f"b_{g}"] = [g, eff]
    observed = {"y": np.asarray(model.data.y)}
    if prior:
        kwargs: dict[str, Any] = {"prior": group, "observed_data": observed}
        if predictive is not None:
            kwargs["prior_predictive"] = {"y": predictive}
    else:
        kwargs = {"posterior": group, "observed_data": observed}
        if sample_stats is not None:
            kwargs["sample_stats"] = sample_stats
        if predictive is not None:
            kwargs["posterior_predictive"] = {"y": predictive}
    return az.from_dict(**kwargs, coords=coords, dims=dims)


@dataclass(frozen=True)
class BayesSummary:
    """Posterior summary: a table (mean, sd, HDI, MCSE, ESS, R-hat) and the sampler's
    diagnostics; prints as text and renders as HTML in notebooks.

    Attributes
    ----------
    table
        ArviZ's summary table (one row per scalar parameter).
    header
        The model and sampler lines printed above the table.
    divergences
        Number of divergent transitions after warm-up.
    """

    table: pd.DataFrame
    header: tuple[str, ...]
    divergences: int

    def __str__(self) -> str:
        with pd.option_context("display.width", 200, "display.max_columns", 20):
            return "\n".join(self.header) + "\n\n" + self.table.to_string()

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        head = "<br>".join(html.escape(h) for h in self.header)
        return f"<div><p>{head}</p>{self.table.to_html()}</div>"


@dataclass(frozen=True, eq=False)
class BayesResult:
    """Posterior draws of a Bayesian mixed model (returned by :meth:`BayesModel.fit`).

    Attributes
    ----------
    model
        The model that was sampled.
    idata
        ArviZ ``InferenceData`` with groups ``posterior``, ``sample_stats`` and
        ``observed_data`` (see :func:`to_inference_data` for the variables and dimensions):
        ``az.summary(fit.idata)``, ``az.plot_trace(fit.idata)`` and ``az.plot_forest`` work on
        it directly.
    settings
        How it was sampled: draws, tune, chains, target_accept, seed, chain method, start,
        sampling time in seconds (compilation included).
    """

    model: Any
    idata: Any
    settings: dict[str, Any]
    _draws: dict[str, Any] = field(repr=False)

    @classmethod
    def from_samples(
        cls,
        model: Any,
        samples: dict[str, np.ndarray],
        extra: dict[str, np.ndarray],
        settings: dict[str, Any],
    ) -> BayesResult:
        d = model.data
        if model.marginal:
            params = parameter_draws(model, samples)
            params["b"] = []
            if d.terms:
                from mixedmodels.bayesian.marginal import effects_draws

                B = d.marginal
                assert B is not None
                C, N = params["beta_c"].shape[:2]
                flat = effects_draws(
                    B,
                    [(t.nlevels, t.n_effects) for t in d.terms],
                    params["beta_c"].reshape(C * N, -1) - B["shift"],
                    params["sigma"].reshape(C * N),
                    [T.reshape(C * N, *T.shape[2:]) for T in params["T"]],
                    np.random.default_rng(settings["seed"] + 1),
                )
                params["b"] = [b.reshape(C, N, *b.shape[1:]) for b in flat]
        else:
            sampled = [
                ("b", samples[f"b_{j}"]) if f"b_{j}" in samples else ("u", samples[f"u_{j}"])
                for j in range(len(d.terms))
            ]
            params = parameter_draws(model, samples, effects=sampled)
        steps = extra["num_steps"]
        stats = {
            "diverging": extra["diverging"].astype(bool),
            "energy": extra["energy"],
            "lp": -extra["potential_energy"],
            "n_steps": steps,
            "tree_depth": np.floor(np.log2(np.maximum(steps, 1))).astype(int) + 1,
            "acceptance_rate": extra["accept_prob"],
            "step_size": extra["adapt_state.step_size"],
        }
        idata = to_inference_data(model, params, sample_stats=stats)
        return cls(model=model, idata=idata, settings=settings, _draws=params)

    # -- basic quantities -----------------------------------------------------------------------
    def check(self, rhat: float = 1.01, stacklevel: int = 2) -> list[str]:
        """Warn about what makes the draws unreliable, as PyMC and Stan do: divergent
        transitions after warm-up, and R-hat above ``rhat`` (1.01, Vehtari et al. 2021) for
        the fixed effects, standard deviations, correlations or sigma. Returns the messages."""
        from mixedmodels.errors import ConvergenceWarning

        messages = []
        if self.divergences:
            messages.append(
                f"{self.divergences} divergent transitions after warm-up: the draws may be "
                f"biased; refit with a higher target_accept (e.g. 0.95)"
            )
        table = self.summary().table
        bad = table.index[table["r_hat"] > rhat].tolist()
        if bad:
            shown = ", ".join(bad[:5]) + (", ..." if len(bad) > 5 else "")
            messages.append(
                f"R-hat above {rhat} for {shown}: the chains have not mixed; draw more "
                f"(draws=, tune=) or reparameterize (centred=)"
            )
        for msg in messages:
            warnings.warn(msg, ConvergenceWarning, stacklevel=stacklevel + 1)
        return messages

    @property
    def divergences(self) -> int:
        """Number of divergent transitions after warm-up (all chains)."""
        return int(np.sum(self.idata.sample_stats["diverging"].values))

    @property
    def fixef(self) -> pd.Series:
        """Posterior means of the fixed effects."""
        beta = self._draws["beta"]
        return pd.Series(
            beta.reshape(-1, beta.shape[-1]).mean(axis=0),
            index=list(self.model.design.fixef_names),
            name="mean",
        )

    def ranef(self, stat: str = "mean") -> dict[str, pd.DataFrame]:
        """Posterior means (or medians, ``stat="median"``) of the group-level effects, one
        DataFrame (levels x effects) per term."""
        if stat not in ("mean", "median"):
            raise ModelSpecError("stat must be 'mean' or 'median'")
        f = np.mean if stat == "mean" else np.median
        out = {}
        for j, t in enumerate(self.model.data.terms):
            b = self._draws["b"][j]
            vals = f(b.reshape(-1, *b.shape[2:]), axis=0)
            out[t.label] = pd.DataFrame(
                vals, index=pd.Index(t.levels, name=t.group), columns=list(t.effects)
            )
        return out

    def summary(
        self,
        var_names: Sequence[str] | None = None,
        hdi_prob: float = 0.94,
        group_effects: bool = False,
    ) -> BayesSummary:
        """Posterior mean, sd, highest-density interval, MCSE, bulk and tail ESS and R-hat.

        Parameters
        ----------
        var_names
            Variables to include (default: the fixed effects, the standard deviations and
            correlations of the group-level effects, sigma).
        hdi_prob
            Probability mass of the HDI (ArviZ's default 0.94).
        group_effects
            Also include the group-level effects ``b_*``.
        """
        az = _arviz()
        if var_names is None:
            var_names = [
                v for v in self.idata.posterior.data_vars if group_effects or not v.startswith("b_")
            ]
        table = az.summary(self.idata, var_names=list(var_names), hdi_prob=hdi_prob)
        s = self.settings
        d = self.model.design
        how = ""
        if self.model.data.terms:
            how = "; group effects integrated out" if self.model.marginal else "; non-centred"
        header = (
            "Bayesian mixed model sampled with NUTS (NumPyro)",
            f" Formula: {self.model.formula}",
            f"  Family: {self.model.family} ({self.model.link} link){how}",
            f"    Data: {d.nobs} observations"
            + "".join(f", {t.nlevels} {t.label}" for t in self.model.data.terms),
            f"   Draws: {s['chains']} chains x {s['draws']} (tune {s['tune']}); "
            f"{s['sampling_seconds']:.1f} s; seed {s['seed']}",
            f"Divergences: {self.divergences}"
            + ("  (consider target_accept=0.95)" if self.divergences else ""),
        )
        return BayesSummary(table=table, header=header, divergences=self.divergences)

    def __str__(self) -> str:
        return str(self.summary())

    def _repr_html_(self) -> str:
        return self.summary()._repr_html_()

    # -- predictions ---------------------------------------------------------------------------
    def _flat(self, name: str) -> Any:
        v = self._draws[name]
        if isinstance(v, list):
            return [a.reshape(-1, *a.shape[2:]) for a in v]
        return v.reshape(-1, *v.shape[2:])

    def _eta(
        self,
        X: np.ndarray,
        offset: np.ndarray | None,
        parts: list[tuple[int, np.ndarray, np.ndarray | None]],
        rng: np.random.Generator,
        batch: int = 256,
    ) -> np.ndarray:
        """Draws of the linear predictor (N, m) for rows with fixed-effects matrix X (uncentred)
        and random-effects codes/values ``parts`` (codes from the term's number of levels up
        mark new levels, whose effects are drawn from N(0, Sigma_j) in each draw)."""
        beta = self._flat("beta")
        N = beta.shape[0]
        m = X.shape[0]
        eta = beta @ X.T if X.shape[1] else np.zeros((N, m))
        if offset is not None:
            eta += offset
        bs = self._flat("b")
        Ts = self._flat("T")
        for j, refs, z in parts:
            t = self.model.data.terms[j]
            n_new = int(refs.max()) + 1 - t.nlevels if refs.size else 0
            for a in range(0, N, batch):
                sl = slice(a, min(N, a + batch))
                b = bs[j][sl]
                if n_new > 0:
                    eps = rng.standard_normal((b.shape[0], n_new, t.n_effects))
                    b = np.concatenate([b, np.einsum("nts,nls->nlt", Ts[j][sl], eps)], axis=1)
                rows = b[:, refs, :]  # (batch, m, S)
                if z is None:
                    eta[sl] += rows[:, :, 0]
                else:
                    eta[sl] += np.einsum("nms,sm->nm", rows, z)
        return eta

    def _mean(self, eta: np.ndarray) -> np.ndarray:
        from scipy import special, stats

        link = self.model.link
        if link == "identity":
            return eta
        if link == "log":
            return np.exp(eta)
        if link == "logit":
            return special.expit(eta)
        if link == "probit":
            return stats.norm.cdf(eta)
        if link == "cloglog":
            return -np.expm1(-np.exp(eta))
        return eta * eta  # sqrt

    def _draw_response(
        self, mu: np.ndarray, weights: np.ndarray, trials: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        fam = self.model.family
        if fam == "gaussian":
            sigma = self._flat("sigma")[:, None]
            return mu + sigma / np.sqrt(weights) * rng.standard_normal(mu.shape)
        if fam == "binomial":
            return rng.binomial(trials.astype(np.int64), np.clip(mu, 0.0, 1.0)).astype(float)
        return rng.poisson(mu).astype(float)

    def _observed_parts(self) -> tuple[np.ndarray, Any, list[Any]]:
        d = self.model.design
        X = np.asarray(d.X, dtype=float)
        parts = [(j, np.asarray(t.refs), t.z) for j, t in enumerate(d.terms)]
        return X, d.offset, parts

    def _shape(self, draws: np.ndarray) -> np.ndarray:
        s = self.settings
        return draws.reshape(s["chains"], s["draws"], -1)

    def posterior_predictive(self, seed: int | None = None) -> Any:
        """Draws of replicated responses for the observed rows, one per posterior draw.

        Returns
        -------
        arviz.InferenceData
            The posterior with a ``posterior_predictive`` group (``y``, dims ``(chain, draw,
            obs)``) and the observed data, ready for ``az.plot_ppc``. Binomial responses are
            numbers of successes.
        """
        rng = np.random.default_rng(seed)
        X, offset, parts = self._observed_parts()
        eta = self._eta(X, offset, parts, rng)
        d = self.model.data
        w = d.weights if d.weights is not None else np.ones(d.nobs)
        trials = d.trials if d.trials is not None else np.ones(d.nobs)
        y = self._draw_response(self._mean(eta), w, trials, rng)
        az = _arviz()
        out = self.idata.copy()
        pp = az.from_dict(
            posterior_predictive={"y": self._shape(y)},
            coords={"obs": np.arange(d.nobs)},
            dims={"y": ["obs"]},
        )
        out.extend(pp)
        return out

    def predict(
        self,
        newdata: Any = None,
        kind: str = "mean",
        *,
        re_form: str | None = None,
        allow_new_levels: bool = True,
        seed: int | None = None,
    ) -> Any:
        """Posterior draws of predictions.

        Parameters
        ----------
        newdata
            Rows to predict (default: the observed rows).
        kind
            ``"mean"``: the mean response (e.g. probabilities for binomial); ``"link"``: the
            linear predictor; ``"response"``: new observations, drawn from the likelihood (0/1
            outcomes for binomial new data; numbers of successes of the observed trials for
            the observed rows).
        re_form
            ``None``: every random-effects term; ``"~0"`` (or ``"NA"``): none, the population
            level.
        allow_new_levels
            Levels of a grouping factor not in the data get effects drawn from the fitted
            population distribution N(0, Sigma) in each posterior draw (the posterior predictive
            distribution of a new group). With ``False`` they are an error.
        seed
            Random seed for the new levels' effects and the response draws.

        Returns
        -------
        xarray.DataArray
            Dims ``(chain, draw, obs)``; ``obs`` is the index of ``newdata``.
        """
        import xarray as xr

        from mixedmodels.formula.design import new_data_arrays

        if kind not in ("mean", "link", "response"):
            raise ModelSpecError("kind must be 'mean', 'link' or 'response'")
        rng = np.random.default_rng(seed)
        d = self.model.design
        population = re_form is not None and str(re_form).replace(" ", "") in ("~0", "NA", "0")
        if re_form is not None and not population:
            raise ModelSpecError("re_form must be None (all terms) or '~0' (population level)")
        used = [] if population else list(range(len(d.terms)))
        if newdata is None:
            X, offset, parts = self._observed_parts()
            parts = [p for p in parts if p[0] in used]
            index = d.row_index
            trials = self.model.data.trials
            weights = self.model.data.weights
        else:
            X, offset, parts, complete = new_data_arrays(d, newdata, used, allow_new_levels)
            if not complete.all():
                raise ModelSpecError(
                    f"newdata has missing values in {int((~complete).sum())} rows in the "
                    f"variables the model needs; drop or fill them first"
                )
            index = getattr(newdata, "index", pd.RangeIndex(X.shape[0]))
            trials = None
            weights = None
        eta = self._eta(X, offset, parts, rng)
        if kind == "link":
            out = eta
        else:
            out = self._mean(eta)
            if kind == "response":
                m = out.shape[1]
                out = self._draw_response(
                    out,
                    weights if weights is not None else np.ones(m),
                    trials if trials is not None else np.ones(m),
                    rng,
                )
        s = self.settings
        return xr.DataArray(
            self._shape(out),
            dims=("chain", "draw", "obs"),
            coords={"chain": np.arange(s["chains"]), "draw": np.arange(s["draws"]), "obs": index},
            name={"mean": "mu", "link": "eta", "response": "y"}[kind],
        )

    def plot_predictive(
        self,
        x: str,
        *,
        group: str | None = None,
        kind: str = "response",
        hdi_prob: float = 0.94,
        ncols: int | None = None,
        ax: Any = None,
    ) -> Any:
        """Posterior predictive bands against a covariate: the data, the posterior mean and a
        central band of the predictions, one panel per level of ``group`` (the group's own
        effects) or one panel at the population level. See
        :func:`mixedmodels.plots.bayes_predictive_bands`."""
        from mixedmodels.plots import bayes_predictive_bands

        return bayes_predictive_bands(
            self, x, group=group, kind=kind, hdi_prob=hdi_prob, ncols=ncols, ax=ax
        )
