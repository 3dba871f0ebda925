"""Finite-difference derivatives with Richardson extrapolation.

Central differences with a sequence of steps h, h/2, h/4, h/8, combined by Richardson
extrapolation (each round cancels the next even power of h in the error; Richardson 1911, as
implemented for example in R's numDeriv, which lmerTest uses for Satterthwaite's method). The
default relative steps are numDeriv's: 1e-4 for gradients and Jacobians, 0.1 for Hessians, with
an absolute step of 1e-4 for coordinates near zero.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["hessian", "jacobian"]

_ZERO_TOL = float(np.sqrt(np.finfo(float).eps / 7e-7))


def _steps(x: np.ndarray, d: float, eps: float) -> np.ndarray:
    return np.abs(d * x) + eps * (np.abs(x) < _ZERO_TOL)


def _extrapolate(approx: np.ndarray) -> np.ndarray:
    """Richardson extrapolation over the first axis (steps halving each time, error in h^2)."""
    a = approx.copy()
    r = a.shape[0]
    for m in range(1, r):
        factor = 4.0**m
        for k in range(r - m):
            a[k] = (a[k + 1] * factor - a[k]) / (factor - 1.0)
    return a[0]


def jacobian(
    f: Callable[[np.ndarray], np.ndarray],
    x: np.ndarray,
    *,
    d: float = 1e-4,
    eps: float = 1e-4,
    r: int = 4,
) -> np.ndarray:
    """Jacobian of a vector (or array) valued function: shape ``f(x).shape + (len(x),)``."""
    x = np.asarray(x, dtype=float)
    f0 = np.asarray(f(x), dtype=float)
    out = np.empty((*f0.shape, x.size))
    h0 = _steps(x, d, eps)
    for i in range(x.size):
        approx = np.empty((r, *f0.shape))
        h = h0[i]
        for k in range(r):
            e = np.zeros_like(x)
            e[i] = h
            approx[k] = (np.asarray(f(x + e)) - np.asarray(f(x - e))) / (2.0 * h)
            h /= 2.0
        out[..., i] = _extrapolate(approx)
    return out


def hessian(
    f: Callable[[np.ndarray], float],
    x: np.ndarray,
    *,
    d: float = 0.1,
    eps: float = 1e-4,
    r: int = 4,
) -> np.ndarray:
    """Hessian of a scalar function (numDeriv's ``genD`` scheme)."""
    x = np.asarray(x, dtype=float)
    n = x.size
    f0 = float(f(x))
    h0 = _steps(x, d, eps)
    diag = np.empty(n)
    H = np.empty((n, n))
    for i in range(n):
        approx = np.empty(r)
        h = h0.copy()
        for k in range(r):
            e = np.zeros(n)
            e[i] = h[i]
            approx[k] = (f(x + e) - 2.0 * f0 + f(x - e)) / h[i] ** 2
            h /= 2.0
        diag[i] = _extrapolate(approx)
        H[i, i] = diag[i]
    for i in range(n):
        for j in range(i):
            approx = np.empty(r)
            h = h0.copy()
            for k in range(r):
                e = np.zeros(n)
                e[i] = h[i]
                e[j] = h[j]
                approx[k] = (
                    f(x + e) - 2.0 * f0 + f(x - e) - diag[i] * h[i] ** 2 - diag[j] * h[j] ** 2
                ) / (2.0 * h[i] * h[j])
                h /= 2.0
            H[i, j] = H[j, i] = _extrapolate(approx)
    return H
