"""Simulation from a mixed-model formula and chosen parameters (for power analysis)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from mixedmodels.errors import ModelSpecError
from mixedmodels.formula.design import ArrayLike, build_design
from mixedmodels.linalg.cholesky import ThetaLayout

__all__ = ["simulate", "simulate_arrays"]


def _vector(value: Any, names: Sequence[str], what: str) -> np.ndarray:
    if isinstance(value, Mapping | pd.Series):
        value = dict(value)
        unknown = [k for k in value if k not in names]
        missing = [n for n in names if n not in value]
        if unknown or missing:
            raise ModelSpecError(
                f"{what} must name exactly these parameters: {', '.join(names)}"
                + (f"; unknown: {', '.join(map(str, unknown))}" if unknown else "")
                + (f"; missing: {', '.join(missing)}" if missing else "")
            )
        return np.array([float(value[n]) for n in names])
    arr = np.atleast_1d(np.asarray(value, dtype=float)).ravel()
    if arr.size != len(names):
        raise ModelSpecError(
            f"{what} needs {len(names)} values ({', '.join(names)}), got {arr.size}"
        )
    return arr


def _params(
    newparams: Mapping[str, Any],
    beta: np.ndarray,
    theta: np.ndarray,
    sigma: float,
    beta_names: Sequence[str],
    theta_names: Sequence[str],
) -> tuple[np.ndarray, np.ndarray, float]:
    unknown = set(newparams) - {"beta", "theta", "sigma"}
    if unknown:
        raise ModelSpecError(
            f"newparams may hold 'beta', 'theta' and 'sigma', not {sorted(unknown)}"
        )
    if "beta" in newparams:
        beta = _vector(newparams["beta"], beta_names, "beta")
    if "theta" in newparams:
        theta = _vector(newparams["theta"], theta_names, "theta")
    if "sigma" in newparams:
        sigma = float(newparams["sigma"])
        if not sigma > 0:
            raise ModelSpecError("sigma must be positive")
    return beta, theta, sigma


def simulate_arrays(
    X: np.ndarray,
    offset: np.ndarray | None,
    parts: list[tuple[int, np.ndarray, np.ndarray | None]],
    nlevels: Sequence[int],
    weights: np.ndarray | None,
    beta: np.ndarray,
    templates: list[np.ndarray],
    sigma: float,
    nsim: int,
    rng: np.random.Generator,
    fixed_u: list[np.ndarray] | None = None,
    response: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None = None,
) -> np.ndarray:
    """Responses y = X beta + o + sum_j Z_j b_j + e, b_j = sigma T_j u, e ~ N(0, sigma^2 / w).

    ``parts`` holds each term's level codes (codes at or above ``nlevels[j]`` are levels not
    in a fit) and values; ``fixed_u`` keeps the spherical effects of the known levels fixed.
    For a GLMM ``response(eta, rng)`` draws the responses given the linear predictor, and the
    random effects are b_j = T_j u (lme4's ``simulate``). Returns an (n, nsim) array.
    """
    n = X.shape[0]
    base = X @ beta if X.shape[1] else np.zeros(n)
    if offset is not None:
        base = base + offset
    scale = sigma if weights is None else sigma / np.sqrt(weights)
    out = np.empty((n, nsim))
    for k in range(nsim):
        eta = base.copy()
        for pos, (j, refs, z) in enumerate(parts):
            T = templates[j]
            s = T.shape[0]
            nl = int(max(nlevels[j], refs.max(initial=-1) + 1))
            u = rng.standard_normal((nl, s)) * (sigma if response is None else 1.0)
            if fixed_u is not None:
                u[: nlevels[j]] = fixed_u[pos]
            b = u @ T.T
            rows = b[refs]
            eta += rows[:, 0] if z is None else np.einsum("sn,ns->n", z, rows)
        if response is None:
            out[:, k] = eta + scale * rng.standard_normal(n)
        else:
            out[:, k] = response(eta, rng)
    return out


def simulate(
    formula: str,
    data: Any,
    *,
    beta: Mapping[str, float] | ArrayLike,
    theta: Mapping[str, float] | ArrayLike,
    sigma: float,
    nsim: int = 1,
    seed: int | np.random.Generator | None = None,
    weights: str | ArrayLike | None = None,
    offset: str | ArrayLike | None = None,
) -> pd.DataFrame:
    """Simulate responses from a formula and parameters on a design (lme4's
    ``simulate(formula, newdata=, newparams=)``), e.g. for a power analysis.

    Parameters
    ----------
    formula
        The model, e.g. ``"~ treatment + (1 | subject) + (1 | item)"`` (a response on the left,
        if any, is ignored).
    data
        The design: one row per observation with the covariates and grouping factors.
    beta
        Fixed effects: a mapping name -> value (names as in a fit: ``(Intercept)``,
        ``treatmentB``) or an array in that order.
    theta
        Relative covariance parameters in lme4's order (for ``(1 | g)``: sd_g / sigma), as a
        mapping (names like ``g.(Intercept)``) or an array.
    sigma
        Residual standard deviation.
    nsim, seed
        Number of simulated responses and the seed.
    weights, offset
        Prior weights and offset (column names or arrays).

    Returns
    -------
    DataFrame
        One column per simulation (``sim_1``, ...), indexed like the rows of ``data`` used (rows
        with missing values in the variables needed are dropped).

    Examples
    --------
    >>> import numpy as np, pandas as pd, mixedmodels as mm
    >>> design = pd.DataFrame({"x": np.tile([0.0, 1.0], 20), "g": np.repeat(np.arange(10), 4)})
    >>> sims = mm.simulate("~ x + (1 | g)", design, beta={"(Intercept)": 1.0, "x": 0.5},
    ...                    theta=[0.8], sigma=1.0, nsim=3, seed=1)
    >>> sims.shape
    (40, 3)
    """
    from mixedmodels.formula.terms import split_formula

    spec = split_formula(formula)
    if spec.response is not None:
        from dataclasses import replace

        spec = replace(spec, response=None)
    design = build_design(spec, data, weights=weights, offset=offset, require_response=False)
    layout = ThetaLayout(tuple(t.n_effects for t in design.terms))
    theta_names = []
    for t in design.terms:
        r, c = layout.tril_indices(t.n_effects)
        for i, j in zip(r, c, strict=True):
            theta_names.append(
                f"{t.group_name}.{t.effect_names[i]}"
                if i == j
                else f"{t.group_name}.{t.effect_names[i]}.{t.effect_names[j]}"
            )
    b = _vector(beta, list(design.fixef_names), "beta")
    th = _vector(theta, theta_names, "theta")
    if np.any(th[layout.is_diagonal()] < 0):
        raise ModelSpecError("the diagonal entries of theta must be non-negative")
    if not sigma > 0:
        raise ModelSpecError("sigma must be positive")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    parts = [(j, t.refs.astype(np.int64), t.z) for j, t in enumerate(design.terms)]
    sims = simulate_arrays(
        design.X, design.offset, parts, [t.nlevels for t in design.terms], design.weights, b,
        layout.templates(th), float(sigma), nsim, rng,
    )  # fmt: skip
    return pd.DataFrame(sims, index=design.row_index, columns=[f"sim_{k + 1}" for k in range(nsim)])
