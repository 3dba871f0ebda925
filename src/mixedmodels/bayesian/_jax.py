"""The model in JAX and NumPyro's NUTS (imported only when sampling).

Two forms of the same model (parameterization: :mod:`mixedmodels.bayesian.spec`):

* **integrated** (Gaussian family, identity link): the random effects are integrated out of
  the likelihood exactly (:mod:`mixedmodels.bayesian.marginal`), at a cost that does not
  depend on the number of rows. The sampler moves in (beta, sigma, standard deviations,
  correlations) only: no funnel, no thousands of latent effects; the effects are drawn
  afterwards from their Gaussian conditional.
* **non-centred** (every family): u ~ N(0, I) is sampled with the other parameters and
  b = T u enters the linear predictor.

The posterior is a log density of one unconstrained vector (:class:`FlatDensity`); NUTS runs
on it with the data as an argument of the compiled sampler.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any


def _host_devices() -> None:
    """Let JAX see several CPU devices, so that chains run in parallel (one compiled chain
    mapped over devices compiles faster than the vectorized form of all chains, and uses every
    core). This is NumPyro's ``set_host_device_count``; it only works before JAX starts its CPU
    backend, so it is done when this module is first imported, unless
    ``MIXEDMODELS_HOST_DEVICES=0`` or the flag is already set."""
    if os.environ.get("MIXEDMODELS_HOST_DEVICES", "") == "0":
        return
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" in flags:
        return
    if "jax" in sys.modules:  # the backend may already run: leave it as the user set it up
        return
    n = max(4, os.cpu_count() or 1)
    os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={n}".strip()


_host_devices()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import numpyro  # noqa: E402
import numpyro.distributions as dist  # noqa: E402
from jax.scipy.linalg import solve_triangular  # noqa: E402
from numpyro.distributions.transforms import (  # noqa: E402
    ExpTransform,
    IdentityTransform,
    biject_to,
)
from numpyro.infer import MCMC, NUTS  # noqa: E402
from numpyro.infer.hmc import hmc  # noqa: E402

from mixedmodels.bayesian.marginal import marginal_loglik  # noqa: E402
from mixedmodels.bayesian.spec import BayesData, PriorSet  # noqa: E402

jax.config.update("jax_enable_x64", True)


def _use_compilation_cache() -> None:
    """Keep XLA's compiled samplers on disk (as numba keeps its kernels), so that a model of
    the same structure compiles once: NUTS's compiled loop takes seconds to build on a CPU.
    Respects a cache directory the user already set; ``MIXEDMODELS_JAX_CACHE=0`` turns it off,
    ``MIXEDMODELS_JAX_CACHE_DIR`` moves it."""
    if os.environ.get("MIXEDMODELS_JAX_CACHE", "1") == "0":
        return
    if getattr(jax.config, "jax_compilation_cache_dir", None):
        return
    path = os.environ.get("MIXEDMODELS_JAX_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
        "mixedmodels",
        "jax",
    )
    try:
        os.makedirs(path, exist_ok=True)
    except OSError:  # read-only home: no cache
        return
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


_use_compilation_cache()

__all__ = ["Sampler", "Structure"]


@dataclass(frozen=True)
class Structure:
    """What the model's code depends on, apart from the data arrays (hashable: the key of a
    model's compiled samplers, shared with the models :meth:`BayesModel.with_response`
    derives from it; XLA's disk cache also serves a newly built model of the same
    structure)."""

    family: str
    link: str
    marginal: bool
    p: int
    sizes: tuple[tuple[int, int], ...]  # (levels, effects) of each term
    intercept_only: tuple[bool, ...]  # whether each term is a plain intercept (no z)
    weighted: bool
    has_offset: bool
    priors: tuple[Any, ...]  # the PriorSet's priors, in its order
    kinds: tuple[tuple[str, int, int], ...]  # (kind, term, index) of each prior
    centred: tuple[bool, ...] = ()  # sampled form: each term's effects b (centred) or u

    def is_centred(self, j: int) -> bool:
        return bool(self.centred) and self.centred[j]


def structure_of(
    data: BayesData, priors: PriorSet, marginal: bool, centred: Sequence[bool] = ()
) -> Structure:
    return Structure(
        family=data.family,
        link=data.link,
        marginal=marginal,
        p=data.p,
        sizes=tuple((t.nlevels, t.n_effects) for t in data.terms),
        intercept_only=tuple(t.z is None for t in data.terms),
        weighted=data.weights is not None,
        has_offset=data.offset is not None,
        priors=tuple(priors.priors),
        kinds=tuple((p.kind, p.term, p.index) for p in priors.params),
        centred=tuple(bool(c) for c in centred) if not marginal else (),
    )


def arrays_of(data: BayesData, marginal: bool) -> dict[str, Any]:
    """The data arrays the model function takes (JAX arrays)."""
    n = data.nobs
    D: dict[str, Any] = {
        "X": jnp.asarray(data.X),
        "y": jnp.asarray(data.y),
        "offset": jnp.asarray(data.offset if data.offset is not None else np.zeros(n)),
        "weights": jnp.asarray(data.weights if data.weights is not None else np.ones(n)),
        "trials": jnp.asarray(data.trials if data.trials is not None else np.ones(n)),
        "refs": [jnp.asarray(t.refs) for t in data.terms],
        "z": [jnp.asarray(t.z if t.z is not None else np.ones((1, 0))) for t in data.terms],
    }
    if marginal:
        assert data.marginal is not None
        D["blocks"] = {k: jnp.asarray(v) for k, v in data.marginal.items() if k not in ("sizes",)}
    return D


# -- the model -----------------------------------------------------------------------------------
def _inverse_link(link: str, eta: Any) -> Any:
    if link == "identity":
        return eta
    if link == "log":
        return jnp.exp(eta)
    if link == "logit":
        return jax.nn.sigmoid(eta)
    if link == "probit":
        return jax.scipy.stats.norm.cdf(eta)
    if link == "cloglog":
        return -jnp.expm1(-jnp.exp(eta))
    if link == "sqrt":
        return eta * eta
    raise ValueError(link)  # pragma: no cover


def linear_predictor(D: dict[str, Any], st: Structure, beta_c: Any, bs: Sequence[Any]) -> Any:
    eta = D["X"] @ beta_c + D["offset"] if st.p else D["offset"]
    for j, b in enumerate(bs):
        rows = b[D["refs"][j]]  # (n, S)
        if st.intercept_only[j]:
            eta = eta + rows[:, 0]
        else:
            eta = eta + jnp.sum(D["z"][j].T * rows, axis=1)
    return eta


def likelihood(D: dict[str, Any], st: Structure, eta: Any, sigma: Any) -> Any:
    """The response distribution given the linear predictor."""
    if st.family == "gaussian":
        mu = _inverse_link(st.link, eta)
        return dist.Normal(mu, sigma / jnp.sqrt(D["weights"]))
    if st.family == "binomial":
        if st.link == "logit":
            return dist.BinomialLogits(eta, total_count=D["trials"])
        p = jnp.clip(_inverse_link(st.link, eta), 1e-12, 1 - 1e-12)
        return dist.BinomialProbs(p, total_count=D["trials"])
    rate = _inverse_link(st.link, eta)
    return dist.Poisson(jnp.maximum(rate, 1e-300))


def _sites(st: Structure) -> list[tuple[str, Any, str, int, int]]:
    """The model's parameters with a prior of their own, in order: (name, prior, kind, term,
    index). The group-level effects follow them in the flat vector (:class:`FlatDensity`):
    ``u_j`` (non-centred, b = T u) or ``b_j`` (centred)."""
    out = []
    for prior, (kind, term, index) in zip(st.priors, st.kinds, strict=True):
        name = {
            "fixef": f"beta_{index}",
            "sd": f"sd_{term}_{index}",
            "cor": f"cor_{term}",
            "sigma": "sigma",
        }[kind]
        out.append((name, prior, kind, term, index))
    return out


def _assemble(st: Structure, values: dict[str, Any]) -> tuple[Any, list[Any], Any]:
    """(beta_c, [T_j], sigma) from the sites' constrained values."""
    beta_c = jnp.stack([values[f"beta_{k}"] for k in range(st.p)]) if st.p else jnp.zeros(0)
    Ts = []
    for j, (_, sj) in enumerate(st.sizes):
        sd = jnp.stack([values[f"sd_{j}_{s}"] for s in range(sj)])
        R = values.get(f"cor_{j}")
        Ts.append(sd[:, None] * R if R is not None else jnp.diag(sd))
    return beta_c, Ts, values.get("sigma")


def _log_likelihood(
    D: dict[str, Any],
    st: Structure,
    beta_c: Any,
    Ts: Sequence[Any],
    sigma: Any,
    bs: Sequence[Any] | None,
) -> Any:
    if st.marginal:
        B = D["blocks"]
        return marginal_loglik(B, st.sizes, beta_c - B["shift"], sigma, Ts, jnp)
    assert bs is not None
    lik = likelihood(D, st, linear_predictor(D, st, beta_c, bs), sigma)
    lp = lik.log_prob(D["y"])
    if st.family == "poisson" and st.weighted:
        lp = D["weights"] * lp
    return jnp.sum(lp)


def make_model(st: Structure) -> Any:
    """The model as a NumPyro model with one site per parameter, ``model(D, prior_only)``:
    used to draw from the prior (the response included)."""

    def model(D: dict[str, Any], prior_only: bool = False) -> None:
        values: dict[str, Any] = {}
        for name, prior, kind, term, _ in _sites(st):
            d = prior.to_numpyro_dim(st.sizes[term][1]) if kind == "cor" else prior.to_numpyro()
            values[name] = numpyro.sample(name, d)
        beta_c, Ts, sigma = _assemble(st, values)
        bs = []
        for j, (lj, sj) in enumerate(st.sizes):
            u = numpyro.sample(f"u_{j}", dist.Normal(0.0, 1.0).expand([lj, sj]).to_event(2))
            bs.append(u @ Ts[j].T)
        eta = linear_predictor(D, st, beta_c, bs)
        lik = likelihood(D, st, eta, sigma)
        numpyro.sample("y", lik, obs=None if prior_only else D["y"])

    return model


class FlatDensity:
    """The posterior as a log density of one unconstrained vector z.

    Each parameter occupies a slice of z and maps to its support by NumPyro's bijection for
    its prior (exp for a standard deviation, the identity for a fixed effect, the
    correlation-Cholesky transform for an LKJ prior), with the log-Jacobian added. The
    compiled sampler takes the data as an argument, so a new response of the same shapes
    reuses it.
    """

    def __init__(self, st: Structure):
        self.st = st
        blocks = []
        o = 0
        for name, prior, kind, term, _ in _sites(st):
            d = prior.to_numpyro_dim(st.sizes[term][1]) if kind == "cor" else prior.to_numpyro()
            transform = biject_to(d.support)
            shape = tuple(d.event_shape)
            size = int(np.prod(transform.inverse_shape(shape))) if shape else 1
            blocks.append((name, d, transform, o, size, shape))
            o += size
        if not st.marginal:
            for j, (lj, sj) in enumerate(st.sizes):
                name = f"b_{j}" if st.is_centred(j) else f"u_{j}"
                blocks.append((name, None, None, o, lj * sj, (lj, sj)))
                o += lj * sj
        self.blocks = blocks
        self.dim = o

    def constrain(self, z: Any) -> tuple[dict[str, Any], Any]:
        """Constrained site values and the log-Jacobian of the map from z."""
        values: dict[str, Any] = {}
        logjac: Any = 0.0
        for name, _, transform, o, size, shape in self.blocks:
            zb = z[o : o + size]
            if transform is None:
                values[name] = zb.reshape(shape)
                continue
            zb = zb if shape else zb[0]
            x = transform(zb)
            logjac = logjac + jnp.sum(transform.log_abs_det_jacobian(zb, x))
            values[name] = x
        return values, logjac

    def log_density(self, z: Any, D: dict[str, Any]) -> Any:
        values, logjac = self.constrain(z)
        lp = logjac
        for name, d, _, _, _, _ in self.blocks:
            if d is not None:
                lp = lp + jnp.sum(d.log_prob(values[name]))
        beta_c, Ts, sigma = _assemble(self.st, values)
        bs = None
        if not self.st.marginal:
            bs = []
            for j, T in enumerate(Ts):
                if self.st.is_centred(j):
                    # b_l ~ N(0, T T'): -|T^-1 b_l|^2 / 2 - log|T| for each level
                    b = values[f"b_{j}"]
                    v = solve_triangular(T, b.T, lower=True)
                    lp = lp - 0.5 * jnp.sum(v**2) - b.shape[0] * jnp.sum(jnp.log(jnp.diag(T)))
                else:
                    u = values[f"u_{j}"]
                    lp = lp - 0.5 * jnp.sum(u**2)
                    b = u @ T.T
                bs.append(b)
        return lp + _log_likelihood(D, self.st, beta_c, Ts, sigma, bs)

    def potential(self, D: dict[str, Any]) -> Any:
        """The potential energy -log p(z | y) as a function of z, for data D."""
        return lambda z: -self.log_density(z, D)

    def unconstrain(self, values: dict[str, Any]) -> np.ndarray:
        """z for the given constrained values (numpy; for starting points)."""
        z = np.zeros(self.dim)
        for name, _, transform, o, size, _ in self.blocks:
            v = np.asarray(values[name], dtype=float)
            if transform is None or isinstance(transform, IdentityTransform):
                u = v
            elif isinstance(transform, ExpTransform):
                u = np.log(v)
            else:
                u = np.asarray(jax.jit(lambda a, t=transform: t.inv(a))(jnp.asarray(v)))
            z[o : o + size] = np.ravel(u)
        return z

    def jitter_scale(self, jitter: dict[str, Any]) -> np.ndarray:
        out = np.zeros(self.dim)
        for name, _, _, o, size, _ in self.blocks:
            out[o : o + size] = np.broadcast_to(np.ravel(jitter.get(name, 0.0)), (size,))
        return out


_EXTRA = (
    "diverging",
    "energy",
    "num_steps",
    "accept_prob",
    "adapt_state.step_size",
    "potential_energy",
)


class _DataNUTS(NUTS):
    """NUTS on a potential energy built from the data at each call (NumPyro's functional
    ``hmc(potential_fn_gen=...)``): the data are an argument of the compiled sampler, as with
    a NumPyro model, without tracing a model to find its sites and a valid start (the start
    is ours, from the frequentist fit)."""

    def __init__(self, potential_fn_gen: Any, **kwargs: Any):
        super().__init__(potential_fn=potential_fn_gen, **kwargs)
        self._potential_gen = potential_fn_gen

    def _init_state(
        self, rng_key: Any, model_args: Any, model_kwargs: Any, init_params: Any
    ) -> Any:
        if getattr(self, "_init_fn", None) is None:
            self._init_fn, self._sample_fn = hmc(
                potential_fn_gen=self._potential_gen, kinetic_fn=self._kinetic_fn, algo="NUTS"
            )
        return init_params


class Sampler:
    """NUTS on the flat density of one model structure; the compiled sampler is reused for new
    data of the same shapes (a simulation study)."""

    def __init__(
        self,
        st: Structure,
        *,
        draws: int,
        tune: int,
        chains: int,
        target_accept: float,
        dense_mass: bool,
        progress: bool,
        chain_method: str,
    ):
        self.structure = st
        self.density = FlatDensity(st)
        self.chains = chains
        self._mapped: tuple[Any, Any] | None = None
        kernel = _DataNUTS(
            self.density.potential, target_accept_prob=target_accept, dense_mass=dense_mass
        )
        # Chains mapped by us, with the data as an argument (see _mapped_chains); with a
        # progress bar and chains vectorized, NumPyro's own method, whose bar shows.
        method: Any = chain_method
        if chain_method == "parallel":
            method = self._parallel
        elif chain_method == "vectorized" and not progress:
            method = self._vectorized
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Disabling progress bar")
            self.mcmc = MCMC(
                kernel,
                num_warmup=tune,
                num_samples=draws,
                num_chains=chains,
                chain_method=method,
                progress_bar=progress,
                jit_model_args=True,
            )
        if progress and chain_method == "parallel":
            # NumPyro turns the bars off for a callable chain method; ours maps one chain per
            # device exactly as its "parallel" does, for which the bars work
            self.mcmc.progress_bar = True
        self._constrain = jax.jit(jax.vmap(lambda z: self.density.constrain(z)[0]))

    def _parallel(self, chain: Any) -> Any:
        """Chains in parallel, one per device (NumPyro's ``chain_method`` interface)."""
        return self._mapped_chains(chain, "parallel")

    def _vectorized(self, chain: Any) -> Any:
        """All chains in one compiled, vectorized program."""
        return self._mapped_chains(chain, "vectorized")

    def _mapped_chains(self, chain: Any, kind: str) -> Any:
        """``chain`` (NumPyro's one-chain function, with the data bound as the keyword
        ``args``) mapped over chains with the data as an argument of the mapped function.
        NumPyro's own methods bind the data into the program as constants (``"parallel"``)
        or rebuild the compiled loop on every run (``"vectorized"``): the compiled sampler
        could not be reused for new data, and large data would be copied into the program.
        The mapped function is built once and reused."""

        def transform(f: Any, in_axes: Any) -> Any:
            return (
                jax.pmap(f, in_axes=in_axes)
                if kind == "parallel"
                else jax.jit(jax.vmap(f, in_axes=in_axes))
            )

        if not (isinstance(chain, partial) and "args" in chain.keywords):
            return transform(chain, 0)
        data = chain.keywords["args"]
        rest = {k: v for k, v in chain.keywords.items() if k != "args"}
        key = (chain.func, tuple(sorted(rest.items())), kind)
        if self._mapped is None or self._mapped[0] != key:

            def one(map_args: Any, args: Any) -> Any:
                return chain.func(map_args, args=args, **rest)

            self._mapped = (key, transform(one, (0, None)))
        mapped = self._mapped[1]
        return lambda map_args: mapped(map_args, data)

    def run(
        self, D: dict[str, Any], seed: int, start: np.ndarray
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Sample from ``start`` (chains x dim, unconstrained); returns (constrained draws by
        site, chain-major; sampler statistics)."""
        init = jnp.asarray(start if self.chains > 1 else start[0])
        self.mcmc.run(jax.random.PRNGKey(seed), D, extra_fields=_EXTRA, init_params=init)
        z = np.asarray(self.mcmc.get_samples(group_by_chain=True))
        C, N = z.shape[:2]
        flat = self._constrain(jnp.asarray(z.reshape(C * N, -1)))
        samples = {k: np.asarray(v).reshape(C, N, *v.shape[1:]) for k, v in flat.items()}
        extra = {
            k: np.asarray(v) for k, v in self.mcmc.get_extra_fields(group_by_chain=True).items()
        }
        return samples, extra


def prior_draws(st: Structure, D: dict[str, Any], draws: int, seed: int) -> dict[str, np.ndarray]:
    """Draws of every site from the prior, the response included."""
    from numpyro.infer import Predictive

    pred = Predictive(make_model(st), num_samples=draws)
    out = pred(jax.random.PRNGKey(seed), D, prior_only=True)
    return {k: np.asarray(v) for k, v in out.items()}
