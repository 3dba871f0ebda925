"""What a Bayesian mixed model needs from the data and the priors: plain numpy, no JAX.

Parameterization (the same for every family)::

    eta = X beta + offset + sum_j Z_j b_j,   b_j[l] = T_j u_j[l],   u_j[l] ~ N(0, I),
    T_j = diag(sd_j) R_j,                    R_j R_j' = the correlation matrix of term j,

so the covariance of a level's effects is Sigma_j = T_j T_j' (sd_j the standard deviations,
R_j the Cholesky factor of the correlations, with an LKJ prior). The fixed effects are sampled
with the columns of X other than the intercept centred at their means, as rstanarm, brms and
Bambi do: the intercept's prior is the prior of the intercept at the predictors' means, and the
reported ``(Intercept)`` is converted back to the uncentred columns.

For the Gaussian family with the identity link the random effects are integrated out (see
:mod:`mixedmodels.bayesian._jax`): the sampler then only sees beta, sigma, the standard deviations
and the correlations, and the group-level effects are drawn afterwards from their Gaussian
conditional distribution. The cross-products this needs are formed here once, in the blocks
of A = [Z X y]' W [Z X y] that the frequentist fit uses.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mixedmodels.errors import ModelSpecError
from mixedmodels.formula.design import Design
from mixedmodels.linalg.assemble import TermData, assemble
from mixedmodels.priors import LKJ, HalfStudentT, Normal, Prior, accepts

__all__ = ["FAMILIES", "BayesData", "ParamInfo", "PriorSet", "default_priors", "prepare_data"]

#: family -> (default link, links available)
FAMILIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "gaussian": ("identity", ("identity", "log")),
    "binomial": ("logit", ("logit", "probit", "cloglog")),
    "poisson": ("log", ("log", "identity", "sqrt")),
}


@dataclass(frozen=True)
class ParamInfo:
    """One parameter that takes a prior.

    Attributes
    ----------
    name
        The name used in ``priors=`` (``"Days"``, ``"1|Subject"``, ``"cor|Subject"``,
        ``"sigma"``).
    kind
        ``"fixef"``, ``"sd"``, ``"cor"`` or ``"sigma"``.
    term, index
        For ``"sd"`` and ``"cor"``: the random-effects term; for ``"sd"`` and ``"fixef"``: the
        effect's position.
    aliases
        Other names accepted for it in ``priors=``.
    """

    name: str
    kind: str
    term: int = -1
    index: int = -1
    aliases: tuple[str, ...] = ()

    @property
    def support(self) -> str:
        return {"fixef": "real", "sd": "positive", "sigma": "positive", "cor": "correlation"}[
            self.kind
        ]


@dataclass(frozen=True)
class PriorSet(Mapping[str, Prior]):
    """The priors of a model, by parameter name; prints like Bambi's model description.

    Attributes
    ----------
    params
        The parameters, in order (fixed effects, group-level standard deviations and
        correlations, residual standard deviation).
    priors
        The prior of each parameter (same order).
    auto
        Whether each prior is the automatic default (``False``: given by the user).
    centred_intercept
        Whether the intercept's prior is on the intercept at the predictors' means.
    """

    params: tuple[ParamInfo, ...]
    priors: tuple[Prior, ...]
    auto: tuple[bool, ...]
    centred_intercept: bool = False

    def __getitem__(self, name: str) -> Prior:
        for p, prior in zip(self.params, self.priors, strict=True):
            if name == p.name or name in p.aliases:
                return prior
        raise KeyError(name)

    def __iter__(self) -> Any:
        return iter(p.name for p in self.params)

    def __len__(self) -> int:
        return len(self.params)

    def of_kind(self, kind: str) -> list[tuple[ParamInfo, Prior]]:
        return [(p, q) for p, q in zip(self.params, self.priors, strict=True) if p.kind == kind]

    def __str__(self) -> str:
        sections = [
            ("fixef", "Fixed effects"),
            ("sd", "Group-level standard deviations"),
            ("cor", "Group-level correlations"),
            ("sigma", "Residual standard deviation"),
        ]
        width = max((len(p.name) for p in self.params), default=0)
        lines = [
            "Priors"
            + (" ((auto): scaled to the data, weakly informative)" if any(self.auto) else "")
        ]
        for kind, title in sections:
            rows = [
                (p, q, a)
                for p, q, a in zip(self.params, self.priors, self.auto, strict=True)
                if p.kind == kind
            ]
            if not rows:
                continue
            lines.append(f"  {title}")
            for p, q, a in rows:
                note = " (auto)" if a else ""
                if kind == "fixef" and p.name == "(Intercept)" and self.centred_intercept:
                    note += " at the predictors' means"
                lines.append(f"    {p.name:<{width}} ~ {q}{note}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        import html

        return f"<pre>{html.escape(str(self))}</pre>"


@dataclass(frozen=True, eq=False)
class TermInfo:
    """One random-effects term as the Bayesian model sees it."""

    label: str  # unique name: "Subject", "Subject.1"
    group: str
    levels: tuple[str, ...]
    effects: tuple[str, ...]
    refs: np.ndarray
    z: np.ndarray | None  # (S, n) or None for an intercept

    @property
    def nlevels(self) -> int:
        return len(self.levels)

    @property
    def n_effects(self) -> int:
        return len(self.effects)


@dataclass(frozen=True, eq=False)
class BayesData:
    """The arrays of a Bayesian mixed model (numpy; see the module docstring).

    Attributes
    ----------
    family, link
        Response family and link.
    y
        The response: for binomial the number of successes, for the others the values.
    trials
        Binomial numbers of trials (ones for 0/1 responses).
    X
        Fixed-effects matrix with every column but the intercept centred (n, p).
    x_means
        The column means removed (0 for the intercept and when there is no intercept).
    intercept
        Position of the intercept column, or -1.
    weights, offset
        Prior weights and offset (or None).
    terms
        The random-effects terms.
    marginal
        The blocks the integrated-out Gaussian likelihood needs, or None.
    """

    family: str
    link: str
    y: np.ndarray
    trials: np.ndarray | None
    X: np.ndarray
    x_means: np.ndarray
    intercept: int
    weights: np.ndarray | None
    offset: np.ndarray | None
    terms: tuple[TermInfo, ...]
    marginal: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def nobs(self) -> int:
        return len(self.y)

    @property
    def p(self) -> int:
        return self.X.shape[1]

    def uncentre(self, beta_c: np.ndarray) -> np.ndarray:
        """Coefficients of the uncentred X from those of the centred X (last axis)."""
        beta = np.array(beta_c, dtype=float, copy=True)
        if self.intercept >= 0:
            beta[..., self.intercept] -= beta_c @ self.x_means
        return beta

    def centre(self, beta: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`uncentre`."""
        beta_c = np.array(beta, dtype=float, copy=True)
        if self.intercept >= 0:
            beta_c[..., self.intercept] += beta @ self.x_means
        return beta_c


def term_labels(design: Design) -> list[str]:
    """Unique labels of the terms, as lme4's VarCorr names them (``Subject``, ``Subject.1``)."""
    from mixedmodels.results import _make_unique

    return _make_unique([t.group_name for t in design.terms])


def _effect_key(name: str) -> str:
    return "1" if name == "(Intercept)" else name


def parameters(design: Design, family: str) -> list[ParamInfo]:
    """Every parameter that takes a prior, with its name and aliases."""
    out: list[ParamInfo] = []
    for k, name in enumerate(design.fixef_names):
        out.append(
            ParamInfo(
                name, "fixef", index=k, aliases=("Intercept",) if name == "(Intercept)" else ()
            )
        )
    labels = term_labels(design)
    pairs: dict[tuple[str, str], int] = {}
    for t in design.terms:
        for e in t.effect_names:
            pairs[(_effect_key(e), t.group_name)] = pairs.get((_effect_key(e), t.group_name), 0) + 1
    for j, (t, label) in enumerate(zip(design.terms, labels, strict=True)):
        for s, e in enumerate(t.effect_names):
            key = _effect_key(e)
            name = f"{key}|{label}"
            aliases: list[str] = [f"{e}|{label}"] if key != e else []
            if label != t.group_name and pairs[(key, t.group_name)] == 1:
                aliases += [f"{key}|{t.group_name}"] + ([f"{e}|{t.group_name}"] if key != e else [])
            out.append(ParamInfo(name, "sd", term=j, index=s, aliases=tuple(aliases)))
        if t.n_effects > 1:
            out.append(ParamInfo(f"cor|{label}", "cor", term=j))
    if family == "gaussian":
        out.append(ParamInfo("sigma", "sigma"))
    return out


def _sd(x: np.ndarray) -> float:
    s = float(np.std(x))
    return s if s > 0 and math.isfinite(s) else 1.0


def default_priors(data: BayesData, params: list[ParamInfo]) -> dict[str, Prior]:
    """Automatic, weakly informative priors scaled to the data.

    With s_y the standard deviation of the response (1 on the link scale of the binomial and
    Poisson families) and s_x the standard deviation of a column:

    * intercept (at the predictors' means): Normal(location, 2.5 s_y), the location being the
      mean response on the link scale;
    * other fixed effects: Normal(0, 2.5 s_y / s_x);
    * standard deviation of a group-level effect: HalfStudentT(3, 2.5 s_y / s_z) (s_z = 1 for
      an intercept), brms's choice of family: its polynomial tail keeps the log-scale posterior
      of a standard deviation that few groups inform free of the steep wall a half-normal
      prior puts there, where NUTS's trajectories diverge;
    * correlations: LKJ(2), which keeps correlations away from +-1 where few levels
      cannot tell them apart (the boundary where lme4 reports singular fits) and where NUTS
      meets a wall; Stan's recommendation for a weakly regularizing prior;
    * residual standard deviation: HalfStudentT(4, s_y).

    The scales follow rstanarm's and Bambi's auto-scaled defaults (2.5 standard deviations of
    the response per standard deviation of the predictor).
    """
    fam = data.family
    y = data.y
    if fam == "gaussian":
        sy = _sd(y)
        loc = float(np.mean(y))
        if data.link == "log":
            loc = math.log(max(loc, 1e-8))
            sy = 1.0
    elif fam == "binomial":
        prop = float(np.sum(y) / np.sum(data.trials)) if data.trials is not None else 0.5
        prop = min(max(prop, 0.01), 0.99)
        loc = {"logit": math.log(prop / (1 - prop)), "probit": 0.0, "cloglog": 0.0}[data.link]
        if data.link == "probit":
            from scipy.stats import norm

            loc = float(norm.ppf(prop))
        elif data.link == "cloglog":
            loc = math.log(-math.log(1 - prop))
        sy = 1.0
    else:
        mean = max(float(np.mean(y)), 0.01)
        loc = {"log": math.log(mean), "identity": mean, "sqrt": math.sqrt(mean)}[data.link]
        sy = 1.0 if data.link == "log" else _sd(y) if data.link == "identity" else _sd(np.sqrt(y))
    out: dict[str, Prior] = {}
    if abs(loc) < 1e-10 * sy:  # a centred response: its mean is zero up to rounding
        loc = 0.0
    for p in params:
        if p.kind == "fixef":
            if p.index == data.intercept:
                out[p.name] = Normal(loc, 2.5 * sy)
            else:
                out[p.name] = Normal(0.0, 2.5 * sy / _sd(data.X[:, p.index]))
        elif p.kind == "sd":
            t = data.terms[p.term]
            sz = 1.0 if t.z is None or t.effects[p.index] == "(Intercept)" else _sd(t.z[p.index])
            out[p.name] = HalfStudentT(3.0, 2.5 * sy / sz)
        elif p.kind == "cor":
            out[p.name] = LKJ(2.0)
        else:
            out[p.name] = HalfStudentT(4.0, _sd(y))
    return out


def resolve_priors(
    data: BayesData, params: list[ParamInfo], priors: Mapping[str, Prior] | None
) -> PriorSet:
    """The model's priors: the defaults, replaced where ``priors`` names a parameter.

    Raises
    ------
    ModelSpecError
        For an unknown name, a value that is not a prior, or a prior whose support does not
        suit the parameter.
    """
    chosen = default_priors(data, params)
    auto = {p.name: True for p in params}
    lookup: dict[str, ParamInfo] = {}
    for p in params:
        lookup[p.name] = p
        for a in p.aliases:
            lookup.setdefault(a, p)
    for key, prior in (priors or {}).items():
        if key not in lookup:
            valid = ", ".join(repr(p.name) for p in params)
            raise ModelSpecError(
                f"priors: unknown parameter {key!r}; the model's parameters are {valid}"
            )
        p = lookup[key]
        if not isinstance(prior, Prior):
            raise ModelSpecError(
                f"priors[{key!r}] must be a prior from mixedmodels.priors (e.g. "
                f"mm.priors.Normal(0, 10)), got {type(prior).__name__}"
            )
        if not accepts(prior, p.support):
            need = {
                "real": "a distribution on the real line (Normal, StudentT, Cauchy, Uniform)",
                "positive": "a distribution on the positive reals (HalfNormal, HalfStudentT, "
                "HalfCauchy, Exponential, Gamma, LogNormal)",
                "correlation": "LKJ(eta)",
            }[p.support]
            what = {
                "fixef": "a fixed effect",
                "sd": "a standard deviation",
                "sigma": "the residual standard deviation",
                "cor": "the correlations of a term",
            }[p.kind]
            raise ModelSpecError(
                f"priors[{key!r}]: {p.name!r} is {what} and needs {need}, got {prior}"
            )
        chosen[p.name] = prior
        auto[p.name] = False
    return PriorSet(
        params=tuple(params),
        priors=tuple(chosen[p.name] for p in params),
        auto=tuple(auto[p.name] for p in params),
        centred_intercept=data.intercept >= 0 and data.p > 1,
    )


def prepare_data(design: Design, family: str, link: str, marginal: bool) -> BayesData:
    """The model's arrays; with ``marginal`` the blocks of the integrated likelihood too."""
    X = np.asarray(design.X, dtype=float)
    names = list(design.fixef_names)
    intercept = names.index("(Intercept)") if "(Intercept)" in names else -1
    x_means = np.zeros(X.shape[1])
    if intercept >= 0:
        x_means = X.mean(axis=0)
        x_means[intercept] = 0.0
        X = X - x_means
    labels = term_labels(design)
    terms = tuple(
        TermInfo(
            label=label,
            group=t.group_name,
            levels=tuple(str(v) for v in t.levels),
            effects=tuple(t.effect_names),
            refs=np.asarray(t.refs, dtype=np.int32),
            z=None if t.z is None else np.asarray(t.z, dtype=float),
        )
        for t, label in zip(design.terms, labels, strict=True)
    )
    y = np.asarray(design.y, dtype=float)
    trials: np.ndarray | None = None
    if family == "binomial":
        if design.trials is not None:
            trials = np.asarray(design.trials, dtype=float)
            if design.weights is not None:
                raise ModelSpecError(
                    "weights with a cbind(successes, failures) response: give the numbers of "
                    "trials through cbind() only"
                )
        elif design.weights is not None:
            trials = np.asarray(design.weights, dtype=float)  # proportions with weights = trials
        else:
            trials = np.ones_like(y)
        succ = y * trials
        if np.any(np.abs(succ - np.round(succ)) > 1e-6):
            raise ModelSpecError(
                "the binomial response times the number of trials must be a whole number of "
                "successes in each row"
            )
        y = np.round(succ)
    weights = None if family == "binomial" or design.weights is None else design.weights
    data = BayesData(
        family=family,
        link=link,
        y=y,
        trials=trials,
        X=X,
        x_means=x_means,
        intercept=intercept,
        weights=None if weights is None else np.asarray(weights, dtype=float),
        offset=None if design.offset is None else np.asarray(design.offset, dtype=float),
        terms=terms,
    )
    if marginal:
        from dataclasses import replace

        data = replace(data, marginal=_marginal_blocks(data, design))
    return data


def _marginal_blocks(data: BayesData, design: Design) -> dict[str, Any]:
    """Cross-products for the Gaussian likelihood with the random effects integrated out.

    The response is first residualized on X by weighted least squares (``shift``), as the
    frequentist fit does, so that r'Wr does not come from the difference of large sums of
    squares; the sampler's beta is then ``shift + delta``. Returned (numpy): the first term's
    diagonal blocks ``A11`` (l1, S1, S1); the other terms as one dense block: ``A21`` (q2, l1 S1)
    and ``A22`` (q2, q2); ``ZX1`` (l1, S1, p), ``Zr1`` (l1, S1), ``ZX2`` (q2, p), ``Zr2`` (q2,);
    ``XX`` (p, p), ``Xr`` (p,), ``rr``; ``n``, ``sum_log_w``, ``shift``; the term sizes
    ``sizes`` [(l_j, S_j)].
    """
    n, p = data.X.shape
    w = data.weights
    y = data.y - (data.offset if data.offset is not None else 0.0)
    sw = np.ones(n) if w is None else np.sqrt(w)
    if p:
        shift, *_ = np.linalg.lstsq(data.X * sw[:, None], y * sw, rcond=None)
        r = y - data.X @ shift
    else:
        shift = np.zeros(0)
        r = y
    tds = tuple(TermData(t.refs, t.z, t.nlevels, t.n_effects) for t in data.terms)
    out: dict[str, Any] = {
        "n": float(n),
        "sum_log_w": 0.0 if w is None else float(np.sum(np.log(w))),
        "shift": shift,
        "sizes": [(t.nlevels, t.n_effects) for t in data.terms],
    }
    if not tds:
        Xr = np.column_stack([data.X, r]) * sw[:, None]
        G = Xr.T @ Xr
        out.update(XX=G[:p, :p], Xr=G[:p, p], rr=float(G[p, p]))
        return out
    A = assemble(tds, data.X, r, w)
    l1, s1 = A.sizes[0]
    out["A11"] = A.diag[0]
    xy1 = A.xy[0]  # (p + 1, l1 s1): rows [X r]' W Z_1
    out["ZX1"] = xy1[:p].T.reshape(l1, s1, p)
    out["Zr1"] = xy1[p].reshape(l1, s1)
    m = A.nterms
    if m > 1:
        sizes = [A.sizes[j][0] * A.sizes[j][1] for j in range(1, m)]
        offs = np.concatenate([[0], np.cumsum(sizes)])
        q2 = int(offs[-1])
        A21 = np.zeros((q2, l1 * s1))
        A22 = np.zeros((q2, q2))
        for k in range(1, m):
            rk = slice(offs[k - 1], offs[k])
            A21[rk] = A.off[(k, 0)].to_dense()
            lk, sk = A.sizes[k]
            D = np.zeros((lk * sk, lk * sk))
            for lv in range(lk):
                D[lv * sk : (lv + 1) * sk, lv * sk : (lv + 1) * sk] = A.diag[k][lv]
            A22[rk, rk] = D
            for j in range(1, k):
                B = A.off[(k, j)].to_dense()
                A22[rk, offs[j - 1] : offs[j]] = B
                A22[offs[j - 1] : offs[j], rk] = B.T
        out["A21"] = A21
        out["A22"] = A22
        xy2 = np.concatenate([A.xy[k] for k in range(1, m)], axis=1)
        out["ZX2"] = xy2[:p].T
        out["Zr2"] = xy2[p]
    out["XX"] = A.xyxy[:p, :p]
    out["Xr"] = A.xyxy[:p, p]
    out["rr"] = float(A.xyxy[p, p])
    return out


def marginal_cost(data: BayesData) -> tuple[float, float]:
    """Rough floating-point operations per log-density evaluation of the integrated
    (marginal) and of the full (non-centred) Gaussian model, to choose between them."""
    n, p = data.X.shape
    sizes = [(t.nlevels, t.n_effects) for t in data.terms]
    s_total = sum(s for _, s in sizes)
    full = 4.0 * n * (p + 2 * s_total + 1) + sum(ls * s for ls, s in sizes) * 4
    if not sizes:
        return p**3 / 3 + 2 * p * p, full
    l1, s1 = sizes[0]
    q2 = sum(lk * sk for lk, sk in sizes[1:])
    marg = l1 * (s1**3 + 3 * s1 * s1 * (p + 1)) + q2 * q2 * (l1 * s1 + q2 / 3 + p) + p * p
    return float(marg), float(full)
