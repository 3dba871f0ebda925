"""Response distributions and link functions for generalized linear mixed models.

Each :class:`Family` provides what penalized iteratively reweighted least squares and the
Laplace approximation need, with R's definitions (``stats::family``) so that deviances and
log-likelihoods agree with lme4's ``glmer``:

* ``variance(mu)``, the link's ``linkfun``, ``linkinv`` and ``mu_eta`` (d mu / d eta);
* ``dev_resids(y, mu, wt)``: squared deviance residuals;
* ``aic(y, n, mu, wt, dev)``: -2 times the conditional log-likelihood, normalizing constants
  included (R's ``family$aic`` without the ``+ 2k`` penalty);
* ``mustart(y, n, wt)``: starting values;
* ``check(y, n, wt)``: errors for responses outside the support, warnings for non-integers.

Binomial responses are proportions y with ``n`` trials (1 for 0/1 data); the prior weights
carry the number of trials when the proportions come with ``weights=``, as in R.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import special

from mixedmodels.errors import DataError, ModelSpecError

__all__ = [
    "Binomial",
    "Family",
    "Gamma",
    "Gaussian",
    "InverseGaussian",
    "Link",
    "Poisson",
    "get_family",
]

_EPS = np.finfo(float).eps
_THRESH = 30.0


@dataclass(frozen=True)
class Link:
    """A link function g: eta = g(mu), with its inverse, d mu / d eta and d^2 mu / d eta^2."""

    name: str
    linkfun: Callable[[np.ndarray], np.ndarray] = field(repr=False)
    linkinv: Callable[[np.ndarray], np.ndarray] = field(repr=False)
    mu_eta: Callable[[np.ndarray], np.ndarray] = field(repr=False)
    mu_eta2: Callable[[np.ndarray], np.ndarray] = field(repr=False)
    valideta: Callable[[np.ndarray], bool] = field(repr=False, default=lambda eta: True)


def _logit_inv(eta: np.ndarray) -> np.ndarray:
    out = special.expit(eta)
    out = np.where(eta < -_THRESH, _EPS, out)
    return np.where(eta > _THRESH, 1.0 - _EPS, out)


def _logit_mu_eta(eta: np.ndarray) -> np.ndarray:
    e = np.exp(-np.abs(eta))
    d = e / (1.0 + e) ** 2
    return np.where(np.abs(eta) > _THRESH, _EPS, d)


_PROBIT_THRESH = -special.ndtri(_EPS)  # -qnorm(eps); what scipy.stats' norm.ppf computes


def _stats() -> Any:
    """scipy.stats, imported when first needed (it takes most of a second to import, and
    only the probit, cauchit and Gamma families use it here)."""
    from scipy import stats

    return stats


def _logit_mu_eta2(eta: np.ndarray) -> np.ndarray:
    mu = special.expit(eta)
    return mu * (1 - mu) * (1 - 2 * mu)


def _cloglog_mu_eta2(eta: np.ndarray) -> np.ndarray:
    e = np.exp(np.minimum(eta, 700))
    return np.exp(np.minimum(eta, 700)) * np.exp(-e) * (1 - e)


def _make_links() -> dict[str, Link]:
    links = {
        "logit": Link(
            "logit", lambda mu: np.log(mu / (1 - mu)), _logit_inv, _logit_mu_eta, _logit_mu_eta2
        ),
        "probit": Link(
            "probit",
            lambda mu: _stats().norm.ppf(mu),
            lambda eta: _stats().norm.cdf(np.clip(eta, -_PROBIT_THRESH, _PROBIT_THRESH)),
            lambda eta: np.maximum(_stats().norm.pdf(eta), _EPS),
            lambda eta: -eta * _stats().norm.pdf(eta),
        ),
        "cauchit": Link(
            "cauchit",
            lambda mu: _stats().cauchy.ppf(mu),
            lambda eta: _stats().cauchy.cdf(
                np.clip(eta, -_stats().cauchy.ppf(1 - _EPS), _stats().cauchy.ppf(1 - _EPS))
            ),
            lambda eta: np.maximum(_stats().cauchy.pdf(eta), _EPS),
            lambda eta: -2 * eta / (math.pi * (1 + eta * eta) ** 2),
        ),
        "cloglog": Link(
            "cloglog",
            lambda mu: np.log(-np.log1p(-mu)),
            lambda eta: np.clip(-np.expm1(-np.exp(eta)), _EPS, 1 - _EPS),
            lambda eta: np.maximum(
                np.exp(np.minimum(eta, 700)) * np.exp(-np.exp(np.minimum(eta, 700))), _EPS
            ),
            _cloglog_mu_eta2,
        ),
        "log": Link(
            "log",
            np.log,
            lambda eta: np.maximum(np.exp(eta), _EPS),
            lambda eta: np.maximum(np.exp(eta), _EPS),
            lambda eta: np.exp(eta),
        ),
        "identity": Link(
            "identity",
            lambda mu: mu,
            lambda eta: eta,
            lambda eta: np.ones_like(eta),
            lambda eta: np.zeros_like(eta),
        ),
        "inverse": Link(
            "inverse",
            lambda mu: 1.0 / mu,
            lambda eta: 1.0 / eta,
            lambda eta: -1.0 / (eta * eta),
            lambda eta: 2.0 / eta**3,
            lambda eta: bool(np.all(np.isfinite(eta)) and np.all(eta != 0)),
        ),
        "sqrt": Link(
            "sqrt",
            np.sqrt,
            lambda eta: eta * eta,
            lambda eta: 2 * eta,
            lambda eta: np.full_like(eta, 2.0),
            lambda eta: bool(np.all(np.isfinite(eta)) and np.all(eta > 0)),
        ),
        "1/mu^2": Link(
            "1/mu^2",
            lambda mu: 1.0 / mu**2,
            lambda eta: 1.0 / np.sqrt(eta),
            lambda eta: -1.0 / (2 * eta**1.5),
            lambda eta: 0.75 / eta**2.5,
            lambda eta: bool(np.all(np.isfinite(eta)) and np.all(eta > 0)),
        ),
    }
    return links


LINKS = _make_links()


def _ylogy(y: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """y log(y / mu), 0 where y == 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(y > 0, y * np.log(np.where(y > 0, y, 1.0) / mu), 0.0)


class Family:
    """A response distribution with a link (R's ``family`` objects).

    Parameters
    ----------
    link
        Name of the link; default the canonical link.
    """

    name = "family"
    default_link = "identity"
    links: tuple[str, ...] = ()
    #: whether the family has a dispersion (scale) parameter to estimate
    has_scale = False
    #: whether lme4's treatment of this family is established
    established = True

    def __init__(self, link: str | None = None):
        link = link or self.default_link
        if link not in self.links:
            raise ModelSpecError(
                f"link {link!r} is not available for the {self.name} family; "
                f"choose from {', '.join(self.links)}"
            )
        self.link: Link = LINKS[link]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(link={self.link.name!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Family) and type(self) is type(other) and self.link == other.link

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.link.name))

    @property
    def canonical(self) -> bool:
        """Whether the link is the family's canonical link (Fisher scoring is then Newton's
        method and PIRLS converges quadratically)."""
        return self.link.name == self.default_link

    # -- pieces --------------------------------------------------------------------------------
    def linkfun(self, mu: np.ndarray) -> np.ndarray:
        return self.link.linkfun(mu)

    def linkinv(self, eta: np.ndarray) -> np.ndarray:
        return self.link.linkinv(eta)

    def mu_eta(self, eta: np.ndarray) -> np.ndarray:
        return self.link.mu_eta(eta)

    def variance(self, mu: np.ndarray) -> np.ndarray:  # pragma: no cover - overridden
        raise NotImplementedError

    def variance_deriv(self, mu: np.ndarray) -> np.ndarray:  # pragma: no cover - overridden
        """d V / d mu."""
        raise NotImplementedError

    def observed_weights(
        self, y: np.ndarray, mu: np.ndarray, eta: np.ndarray, wt: np.ndarray
    ) -> np.ndarray:
        """Minus the second derivative of the log-likelihood in eta (Newton's weights).

        Fisher scoring uses the expected information wt mu'^2 / V; the observed information
        subtracts wt (y - mu) d/d eta (mu' / V). The two agree for the canonical link.
        """
        d1 = self.mu_eta(eta)
        d2 = self.link.mu_eta2(eta)
        v = self.variance(mu)
        return wt * (
            d1 * d1 / v - (y - mu) * (d2 * v - d1 * d1 * self.variance_deriv(mu)) / (v * v)
        )

    def dev_resids(
        self, y: np.ndarray, mu: np.ndarray, wt: np.ndarray
    ) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def aic(
        self, y: np.ndarray, n: np.ndarray, mu: np.ndarray, wt: np.ndarray, dev: float
    ) -> float:  # pragma: no cover
        raise NotImplementedError

    def mustart(self, y: np.ndarray, n: np.ndarray, wt: np.ndarray) -> np.ndarray:
        return y.astype(float).copy()

    def check(
        self,
        y: np.ndarray,
        n: np.ndarray,
        wt: np.ndarray,
        name: str,
        *,
        warn_non_integer: bool = True,
    ) -> None:
        """Raise for responses outside the support; warn where R's glm warns.

        Parameters
        ----------
        y
            The response (proportions for the binomial family).
        n
            Binomial numbers of trials (1 otherwise).
        wt
            Prior weights.
        name
            The response's name, for the messages.
        warn_non_integer
            Warn about non-integer counts (``False`` where they have already been reported,
            as for a ``cbind(successes, failures)`` response).
        """

    def validmu(self, mu: np.ndarray) -> bool:
        return bool(np.all(np.isfinite(mu)))

    def simulate(
        self, mu: np.ndarray, n: np.ndarray, wt: np.ndarray, scale: float, rng: np.random.Generator
    ) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError


class Binomial(Family):
    """Binomial responses: 0/1 (or booleans), or proportions of ``n`` trials."""

    name = "binomial"
    default_link = "logit"
    links = ("logit", "probit", "cauchit", "cloglog", "log")

    def variance(self, mu: np.ndarray) -> np.ndarray:
        return mu * (1 - mu)

    def variance_deriv(self, mu: np.ndarray) -> np.ndarray:
        return 1 - 2 * mu

    def dev_resids(self, y: np.ndarray, mu: np.ndarray, wt: np.ndarray) -> np.ndarray:
        return 2 * wt * (_ylogy(y, mu) + _ylogy(1 - y, 1 - mu))

    def aic(
        self, y: np.ndarray, n: np.ndarray, mu: np.ndarray, wt: np.ndarray, dev: float
    ) -> float:
        m = n if np.any(n > 1) else wt
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(m > 0, wt / np.where(m > 0, m, 1.0), 0.0)
        k = np.round(m * y)
        size = np.round(m)
        # the binomial log-probabilities, computed as scipy.stats.binom.logpmf computes them
        # (without its argument checking and broadcasting machinery, ~40x its cost here)
        logpmf = (
            special.gammaln(size + 1) - (special.gammaln(k + 1) + special.gammaln(size - k + 1))
            + special.xlogy(k, mu) + special.xlog1py(size - k, -mu)
        )  # fmt: skip
        return float(-2 * np.sum(ratio * logpmf))

    def mustart(self, y: np.ndarray, n: np.ndarray, wt: np.ndarray) -> np.ndarray:
        if np.any(n > 1):
            return (n * y + 0.5) / (n + 1)
        return (wt * y + 0.5) / (wt + 1)

    def check(
        self,
        y: np.ndarray,
        n: np.ndarray,
        wt: np.ndarray,
        name: str,
        *,
        warn_non_integer: bool = True,
    ) -> None:
        if np.any((y < 0) | (y > 1)):
            bad = int(np.sum((y < 0) | (y > 1)))
            raise DataError(
                f"the response {name!r} must be between 0 and 1 for the binomial family "
                f"({bad} value{'s' if bad != 1 else ''} outside): give 0/1 outcomes, proportions "
                f"with weights= the numbers of trials, or cbind(successes, failures)"
            )
        if not warn_non_integer:
            return
        m = (n if np.any(n > 1) else wt) * y
        if np.any(np.abs(m - np.round(m)) > 1e-3):
            warnings.warn("non-integer #successes in a binomial glm", UserWarning, stacklevel=4)

    def validmu(self, mu: np.ndarray) -> bool:
        return bool(np.all(np.isfinite(mu)) and np.all((mu > 0) & (mu < 1)))

    def simulate(
        self, mu: np.ndarray, n: np.ndarray, wt: np.ndarray, scale: float, rng: np.random.Generator
    ) -> np.ndarray:
        trials = np.round(n if np.any(n > 1) else wt).astype(np.int64)
        trials = np.maximum(trials, 1)
        return rng.binomial(trials, np.clip(mu, 0, 1)) / trials


class Poisson(Family):
    """Counts."""

    name = "poisson"
    default_link = "log"
    links = ("log", "identity", "sqrt")

    def variance(self, mu: np.ndarray) -> np.ndarray:
        return mu

    def variance_deriv(self, mu: np.ndarray) -> np.ndarray:
        return np.ones_like(mu)

    def dev_resids(self, y: np.ndarray, mu: np.ndarray, wt: np.ndarray) -> np.ndarray:
        return 2 * wt * (_ylogy(y, mu) - (y - mu))

    def aic(
        self, y: np.ndarray, n: np.ndarray, mu: np.ndarray, wt: np.ndarray, dev: float
    ) -> float:
        # the log-density extended to non-integer y through the gamma function (equal to the
        # Poisson log-probability at integer counts)
        ll = special.xlogy(y, mu) - mu - special.gammaln(y + 1)
        return float(-2 * np.sum(ll * wt))

    def mustart(self, y: np.ndarray, n: np.ndarray, wt: np.ndarray) -> np.ndarray:
        return y + 0.1

    def check(
        self,
        y: np.ndarray,
        n: np.ndarray,
        wt: np.ndarray,
        name: str,
        *,
        warn_non_integer: bool = True,
    ) -> None:
        if np.any(y < 0):
            raise DataError(
                f"the response {name!r} has {int(np.sum(y < 0))} negative value(s); counts for "
                f"the Poisson family must be non-negative"
            )
        if warn_non_integer and np.any(np.abs(y - np.round(y)) > 1e-8):
            warnings.warn(
                f"non-integer counts in the response {name!r} for the Poisson family",
                UserWarning,
                stacklevel=4,
            )

    def validmu(self, mu: np.ndarray) -> bool:
        return bool(np.all(np.isfinite(mu)) and np.all(mu > 0))

    def simulate(
        self, mu: np.ndarray, n: np.ndarray, wt: np.ndarray, scale: float, rng: np.random.Generator
    ) -> np.ndarray:
        return rng.poisson(mu).astype(float)


class Gamma(Family):
    """Positive continuous responses with constant coefficient of variation."""

    name = "Gamma"
    default_link = "inverse"
    links = ("inverse", "identity", "log")
    has_scale = True
    established = False

    def variance(self, mu: np.ndarray) -> np.ndarray:
        return mu * mu

    def variance_deriv(self, mu: np.ndarray) -> np.ndarray:
        return 2 * mu

    def dev_resids(self, y: np.ndarray, mu: np.ndarray, wt: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(y == 0, 1.0, y / mu)
        return -2 * wt * (np.log(ratio) - (y - mu) / mu)

    def aic(
        self, y: np.ndarray, n: np.ndarray, mu: np.ndarray, wt: np.ndarray, dev: float
    ) -> float:
        nobs = float(np.sum(wt))
        disp = dev / nobs
        logpdf = _stats().gamma.logpdf(y, 1 / disp, scale=mu * disp)
        return float(-2 * np.sum(logpdf * wt) + 2)

    def check(
        self,
        y: np.ndarray,
        n: np.ndarray,
        wt: np.ndarray,
        name: str,
        *,
        warn_non_integer: bool = True,
    ) -> None:
        if np.any(y <= 0):
            raise DataError(f"the response {name!r} must be positive for the Gamma family")

    def validmu(self, mu: np.ndarray) -> bool:
        return bool(np.all(np.isfinite(mu)) and np.all(mu > 0))

    def simulate(
        self, mu: np.ndarray, n: np.ndarray, wt: np.ndarray, scale: float, rng: np.random.Generator
    ) -> np.ndarray:
        shape = 1.0 / scale
        return rng.gamma(shape, mu / shape)


class InverseGaussian(Family):
    """Positive continuous responses with variance proportional to mu^3."""

    name = "inverse.gaussian"
    default_link = "1/mu^2"
    links = ("1/mu^2", "inverse", "identity", "log")
    has_scale = True
    established = False

    def variance(self, mu: np.ndarray) -> np.ndarray:
        return mu**3

    def variance_deriv(self, mu: np.ndarray) -> np.ndarray:
        return 3 * mu * mu

    def dev_resids(self, y: np.ndarray, mu: np.ndarray, wt: np.ndarray) -> np.ndarray:
        return wt * ((y - mu) ** 2) / (y * mu**2)

    def aic(
        self, y: np.ndarray, n: np.ndarray, mu: np.ndarray, wt: np.ndarray, dev: float
    ) -> float:
        sw = float(np.sum(wt))
        return float(sw * (math.log(dev / sw * 2 * math.pi) + 1) + 3 * np.sum(np.log(y) * wt) + 2)

    def check(
        self,
        y: np.ndarray,
        n: np.ndarray,
        wt: np.ndarray,
        name: str,
        *,
        warn_non_integer: bool = True,
    ) -> None:
        if np.any(y <= 0):
            raise DataError(
                f"the response {name!r} must be positive for the inverse Gaussian family"
            )

    def validmu(self, mu: np.ndarray) -> bool:
        return bool(np.all(np.isfinite(mu)) and np.all(mu > 0))

    def simulate(
        self, mu: np.ndarray, n: np.ndarray, wt: np.ndarray, scale: float, rng: np.random.Generator
    ) -> np.ndarray:
        return rng.wald(mu, 1.0 / scale)


class Gaussian(Family):
    """Normal responses with a non-identity link (use lmer for the identity link)."""

    name = "gaussian"
    default_link = "identity"
    links = ("identity", "log", "inverse")
    has_scale = True
    established = False

    def variance(self, mu: np.ndarray) -> np.ndarray:
        return np.ones_like(mu)

    def variance_deriv(self, mu: np.ndarray) -> np.ndarray:
        return np.zeros_like(mu)

    def dev_resids(self, y: np.ndarray, mu: np.ndarray, wt: np.ndarray) -> np.ndarray:
        return wt * (y - mu) ** 2

    def aic(
        self, y: np.ndarray, n: np.ndarray, mu: np.ndarray, wt: np.ndarray, dev: float
    ) -> float:
        nobs = y.size
        return float(nobs * (math.log(2 * math.pi * dev / nobs) + 1) + 2 - np.sum(np.log(wt)))

    def simulate(
        self, mu: np.ndarray, n: np.ndarray, wt: np.ndarray, scale: float, rng: np.random.Generator
    ) -> np.ndarray:
        return mu + math.sqrt(scale) * rng.standard_normal(mu.size) / np.sqrt(wt)


_FAMILIES: dict[str, type[Family]] = {
    "binomial": Binomial,
    "poisson": Poisson,
    "gamma": Gamma,
    "inverse.gaussian": InverseGaussian,
    "inverse_gaussian": InverseGaussian,
    "inversegaussian": InverseGaussian,
    "gaussian": Gaussian,
}


def get_family(family: str | Family, link: str | None = None) -> Family:
    """A family from its name (``"binomial"``, ``"poisson"``, ``"Gamma"``, ...) or a Family."""
    if isinstance(family, Family):
        if link is not None and link != family.link.name:
            return type(family)(link)
        return family
    if isinstance(family, type) and issubclass(family, Family):
        return family(link)
    if not isinstance(family, str):
        raise ModelSpecError(f"family must be a name or a Family, not {type(family).__name__}")
    cls = _FAMILIES.get(family.lower())
    if cls is None:
        raise ModelSpecError(
            f"unknown family {family!r}; choose from binomial, poisson, Gamma, "
            f"inverse.gaussian, gaussian"
        )
    return cls(link)
