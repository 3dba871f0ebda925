"""Prior distributions for Bayesian mixed models (:func:`mixedmodels.bayes`).

Each prior is a small immutable description (a family and its parameters); the sampling back end
turns it into a NumPyro distribution only when the model is fitted, so this module imports
nothing optional. Parameter names follow Bambi and PyMC (``mu``, ``sigma``, ``nu``, ``lam``).

>>> import mixedmodels as mm
>>> priors = {"Days": mm.priors.Normal(0, 10), "1|Subject": mm.priors.HalfNormal(5)}

Which parameter takes which kind of prior:

* fixed effects (``"(Intercept)"`` or ``"Intercept"``, ``"Days"``, ...): a prior on the real
  line (:class:`Normal`, :class:`StudentT`, :class:`Cauchy`, :class:`Uniform`, ...);
* standard deviations of group-level effects (``"1|Subject"``, ``"Days|Subject"``) and the
  residual standard deviation ``"sigma"``: a prior on the positive reals
  (:class:`HalfNormal`, :class:`HalfStudentT`, :class:`HalfCauchy`, :class:`Exponential`,
  :class:`Gamma`, :class:`LogNormal`, or :class:`Uniform` with a lower bound of at least 0);
* correlations of a term's effects (``"cor|Subject"``): :class:`LKJ`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from mixedmodels.errors import ModelSpecError

__all__ = [
    "LKJ",
    "Cauchy",
    "Exponential",
    "Gamma",
    "HalfCauchy",
    "HalfNormal",
    "HalfStudentT",
    "LogNormal",
    "Normal",
    "Prior",
    "StudentT",
    "Uniform",
]


def _fmt(x: float) -> str:
    """Numbers as Bambi prints them: up to 4 decimals, no trailing zeros beyond one."""
    if x == int(x) and abs(x) < 1e15:
        return f"{x:.1f}"
    return f"{x:.4g}" if abs(x) >= 1e4 or abs(x) < 1e-3 else f"{round(x, 4)}"


@dataclass(frozen=True)
class Prior:
    """Base class of the priors: a distribution family and its parameters.

    Subclasses declare their parameters as dataclass fields, the support of the distribution
    (``"real"``, ``"positive"`` or ``"correlation"``) and how to build the NumPyro
    distribution.
    """

    support: ClassVar[str] = "real"

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise ModelSpecError(
                    f"{type(self).__name__}: {f.name} must be a number, got {value!r}"
                )
            if not math.isfinite(float(value)):
                raise ModelSpecError(f"{type(self).__name__}: {f.name} must be finite")
            object.__setattr__(self, f.name, float(value))
        self._check()

    def _check(self) -> None:
        """Raise :class:`~mixedmodels.ModelSpecError` for invalid parameters."""

    def _positive(self, *names: str) -> None:
        for name in names:
            if not getattr(self, name) > 0:
                raise ModelSpecError(f"{type(self).__name__}: {name} must be positive")

    @property
    def params(self) -> dict[str, float]:
        """The parameters by name."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def __str__(self) -> str:
        inner = ", ".join(f"{k}: {_fmt(v)}" for k, v in self.params.items())
        return f"{type(self).__name__}({inner})"

    def to_numpyro(self) -> Any:  # pragma: no cover - overridden
        """The NumPyro distribution (imports NumPyro)."""
        raise NotImplementedError

    def scaled(self, factor: float) -> Prior:
        """The distribution of ``factor * X`` for X from this prior (factor > 0), where the
        family allows it (location-scale families and the scale priors)."""
        raise ModelSpecError(f"{type(self).__name__} cannot be rescaled")


def _dist() -> Any:
    import numpyro.distributions as dist

    from mixedmodels.bayesian import _jax  # noqa: F401  (double precision, as the sampler runs)

    return dist


@dataclass(frozen=True)
class Normal(Prior):
    """Normal distribution with mean ``mu`` and standard deviation ``sigma``."""

    mu: float = 0.0
    sigma: float = 1.0

    def _check(self) -> None:
        self._positive("sigma")

    def to_numpyro(self) -> Any:
        return _dist().Normal(self.mu, self.sigma)

    def scaled(self, factor: float) -> Prior:
        return Normal(self.mu * factor, self.sigma * factor)


@dataclass(frozen=True)
class StudentT(Prior):
    """Student's t with ``nu`` degrees of freedom, location ``mu`` and scale ``sigma``."""

    nu: float = 3.0
    mu: float = 0.0
    sigma: float = 1.0

    def _check(self) -> None:
        self._positive("nu", "sigma")

    def to_numpyro(self) -> Any:
        return _dist().StudentT(self.nu, self.mu, self.sigma)

    def scaled(self, factor: float) -> Prior:
        return StudentT(self.nu, self.mu * factor, self.sigma * factor)


@dataclass(frozen=True)
class Cauchy(Prior):
    """Cauchy distribution with location ``alpha`` and scale ``beta``."""

    alpha: float = 0.0
    beta: float = 1.0

    def _check(self) -> None:
        self._positive("beta")

    def to_numpyro(self) -> Any:
        return _dist().Cauchy(self.alpha, self.beta)

    def scaled(self, factor: float) -> Prior:
        return Cauchy(self.alpha * factor, self.beta * factor)


@dataclass(frozen=True)
class Uniform(Prior):
    """Uniform distribution on [``lower``, ``upper``]."""

    lower: float = 0.0
    upper: float = 1.0

    def _check(self) -> None:
        if not self.upper > self.lower:
            raise ModelSpecError("Uniform: upper must be greater than lower")

    @property
    def is_positive(self) -> bool:
        return self.lower >= 0

    def to_numpyro(self) -> Any:
        return _dist().Uniform(self.lower, self.upper)

    def scaled(self, factor: float) -> Prior:
        return Uniform(self.lower * factor, self.upper * factor)


@dataclass(frozen=True)
class HalfNormal(Prior):
    """Half-normal distribution: \\|X\\| for X ~ Normal(0, ``sigma``)."""

    support: ClassVar[str] = "positive"
    sigma: float = 1.0

    def _check(self) -> None:
        self._positive("sigma")

    def to_numpyro(self) -> Any:
        return _dist().HalfNormal(self.sigma)

    def scaled(self, factor: float) -> Prior:
        return HalfNormal(self.sigma * factor)


@dataclass(frozen=True)
class HalfStudentT(Prior):
    """Half Student's t: \\|X\\| for X ~ StudentT(``nu``, 0, ``sigma``)."""

    support: ClassVar[str] = "positive"
    nu: float = 4.0
    sigma: float = 1.0

    def _check(self) -> None:
        self._positive("nu", "sigma")

    def to_numpyro(self) -> Any:
        d = _dist()
        return d.FoldedDistribution(d.StudentT(self.nu, 0.0, self.sigma))

    def scaled(self, factor: float) -> Prior:
        return HalfStudentT(self.nu, self.sigma * factor)


@dataclass(frozen=True)
class HalfCauchy(Prior):
    """Half-Cauchy distribution with scale ``beta``."""

    support: ClassVar[str] = "positive"
    beta: float = 1.0

    def _check(self) -> None:
        self._positive("beta")

    def to_numpyro(self) -> Any:
        return _dist().HalfCauchy(self.beta)

    def scaled(self, factor: float) -> Prior:
        return HalfCauchy(self.beta * factor)


@dataclass(frozen=True)
class Exponential(Prior):
    """Exponential distribution with rate ``lam`` (mean 1 / lam)."""

    support: ClassVar[str] = "positive"
    lam: float = 1.0

    def _check(self) -> None:
        self._positive("lam")

    def to_numpyro(self) -> Any:
        return _dist().Exponential(self.lam)

    def scaled(self, factor: float) -> Prior:
        return Exponential(self.lam / factor)


@dataclass(frozen=True)
class Gamma(Prior):
    """Gamma distribution with shape ``alpha`` and rate ``beta`` (mean alpha / beta)."""

    support: ClassVar[str] = "positive"
    alpha: float = 2.0
    beta: float = 1.0

    def _check(self) -> None:
        self._positive("alpha", "beta")

    def to_numpyro(self) -> Any:
        return _dist().Gamma(self.alpha, self.beta)

    def scaled(self, factor: float) -> Prior:
        return Gamma(self.alpha, self.beta / factor)


@dataclass(frozen=True)
class LogNormal(Prior):
    """Log-normal distribution: exp(X) for X ~ Normal(``mu``, ``sigma``)."""

    support: ClassVar[str] = "positive"
    mu: float = 0.0
    sigma: float = 1.0

    def _check(self) -> None:
        self._positive("sigma")

    def to_numpyro(self) -> Any:
        return _dist().LogNormal(self.mu, self.sigma)

    def scaled(self, factor: float) -> Prior:
        return LogNormal(self.mu + math.log(factor), self.sigma)


@dataclass(frozen=True)
class LKJ(Prior):
    """LKJ distribution on correlation matrices with concentration ``eta`` (1: uniform over
    correlation matrices; larger values favour weaker correlations). Sampled through the
    Cholesky factor (NumPyro's ``LKJCholesky``)."""

    support: ClassVar[str] = "correlation"
    eta: float = 1.0

    def _check(self) -> None:
        self._positive("eta")

    def to_numpyro_dim(self, dim: int) -> Any:
        return _dist().LKJCholesky(dim, self.eta)


def accepts(prior: Prior, support: str) -> bool:
    """Whether ``prior`` can be the prior of a parameter with this support."""
    if support == "correlation":
        return isinstance(prior, LKJ)
    if isinstance(prior, LKJ):
        return False
    if support == "positive":
        return prior.support == "positive" or (isinstance(prior, Uniform) and prior.is_positive)
    return prior.support == "real"
