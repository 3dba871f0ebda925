"""The optimizer drivers: scipy's L-BFGS-B routine driven directly (the same run as through
scipy.optimize.minimize) and one BLAS thread for small fits."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import mixedmodels as mm
from mixedmodels import optim
from mixedmodels.lmm import LinearMixedModel

from .conftest import case_data, lmer_cases

needs_direct = pytest.mark.skipif(
    optim._setulb() is None, reason="this scipy's L-BFGS-B has another interface"
)


def _quadratic(shift: float):
    A = np.array([[3.0, 1.0, 0.0, 0.2], [1.0, 2.0, 0.5, 0.0], [0.0, 0.5, 1.0, 0.1],
                  [0.2, 0.0, 0.1, 4.0]])  # fmt: skip
    b = np.array([1.0, -2.0, shift, 0.5])
    calls: list[np.ndarray] = []

    def fg(x: np.ndarray) -> tuple[float, np.ndarray]:
        calls.append(x.copy())
        return float(0.5 * x @ A @ x - b @ x + (x @ x) ** 2 / 50), A @ x - b + x * (x @ x) / 12.5

    return fg, calls


@needs_direct
@pytest.mark.parametrize("shift", [1.0, -3.0])
@pytest.mark.parametrize("stop_at", [None, 2])
@pytest.mark.parametrize("maxiter", [1000, 3])
def test_direct_driver_is_scipys_run(shift, stop_at, maxiter):
    """Every evaluated point, the result and the message are scipy's, bit for bit."""
    lower = np.array([0.0, -np.inf, 0.0, -np.inf])
    x0 = np.array([0.5, 0.5, 0.0, -1.0])
    runs = []
    for use_scipy in (False, True):
        fg, calls = _quadratic(shift)
        seen: list[tuple[np.ndarray, float]] = []

        def on_iteration(x: np.ndarray, f: float, seen: list = seen) -> bool:
            seen.append((x.copy(), float(f)))
            return stop_at is not None and len(seen) >= stop_at

        res = optim.lbfgsb(fg, x0, lower, maxcor=20, ftol=1e-14, gtol=1e-8, maxiter=maxiter,
                           on_iteration=on_iteration, use_scipy=use_scipy)  # fmt: skip
        runs.append((res, calls, seen))
    (a, calls_a, seen_a), (b, calls_b, seen_b) = runs
    assert len(calls_a) == len(calls_b) == a.nfev == b.nfev
    for p, q in zip(calls_a, calls_b, strict=True):
        np.testing.assert_array_equal(p, q)
    assert len(seen_a) == len(seen_b) == a.nit == b.nit
    for (p, f), (q, g) in zip(seen_a, seen_b, strict=True):
        np.testing.assert_array_equal(p, q)
        assert f == g
    np.testing.assert_array_equal(a.x, b.x)
    assert a.fun == b.fun
    assert (a.success, a.message) == (b.success, b.message)


CASES = [n for n in sorted(lmer_cases()) if not n.startswith("insteval")]


@needs_direct
@pytest.mark.parametrize("name", CASES)
def test_lmer_runs_are_scipys(name, monkeypatch):
    """The optimizer's record of every reference fit is the one scipy's minimize gives."""
    c = lmer_cases()[name]
    df, kwargs = case_data(name)
    model = LinearMixedModel.from_formula(c["formula"], df, reml=c["reml"], **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        direct = model.fit()
        monkeypatch.setattr(optim, "_SETULB", [None])
        through_scipy = model.fit()
    a, b = direct.optinfo, through_scipy.optinfo
    assert (a.optimizer, a.feval, a.return_code, a.message) == (
        b.optimizer, b.feval, b.return_code, b.message
    )  # fmt: skip
    np.testing.assert_array_equal(a.theta_path, b.theta_path)
    np.testing.assert_array_equal(a.objective_path, b.objective_path)
    np.testing.assert_array_equal(direct.theta, through_scipy.theta)
    assert direct.loglik == through_scipy.loglik


def test_small_fits_use_one_blas_thread(monkeypatch):
    """The BLAS libraries run with one thread during a small fit, and are restored after."""
    from threadpoolctl import threadpool_info

    from mixedmodels.linalg import threads

    before = [(i["filepath"], i["num_threads"]) for i in threadpool_info()
              if i["user_api"] == "blas"]  # fmt: skip
    seen = []
    real = threads.single_blas_thread

    def spy(enabled: bool = True):
        seen.append(enabled)
        return real(enabled)

    monkeypatch.setattr("mixedmodels.lmm.single_blas_thread", spy)
    inside = []
    model = LinearMixedModel.from_formula(
        "diameter ~ 1 + (1 | plate) + (1 | sample)", mm.datasets.load("Penicillin")
    )
    fast = model.fast_objective()
    assert fast.small and not fast.one_term
    real_minimize = fast.minimize  # the compiled search of a small model

    def spy_minimize(*args, **kwargs):
        inside.append([i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"])
        return real_minimize(*args, **kwargs)

    monkeypatch.setattr(fast, "minimize", spy_minimize)
    model.fit()
    assert seen == [True]
    assert inside and all(n == 1 for counts in inside for n in counts)
    # a one-term model's fit makes no BLAS call: its threads are left as they are
    LinearMixedModel.from_formula(
        "Reaction ~ Days + (Days | Subject)", mm.datasets.load("sleepstudy")
    ).fit()
    assert seen == [True, False]
    after = [(i["filepath"], i["num_threads"]) for i in threadpool_info()
             if i["user_api"] == "blas"]  # fmt: skip
    assert after == before


def test_one_blas_thread_context_restores():
    from threadpoolctl import threadpool_info

    from mixedmodels.linalg.threads import single_blas_thread

    def counts():
        return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]

    before = counts()
    with single_blas_thread():
        assert all(n == 1 for n in counts())
    assert counts() == before
    with single_blas_thread(False):
        assert counts() == before


def _hessians() -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    out = []
    for n in (1, 2, 4, 7):
        B = rng.normal(size=(n, n))
        pd_ = B @ B.T + n * np.eye(n)
        out.append(pd_ + 1e-9 * rng.normal(size=(n, n)))  # finite differences: not symmetric
        out.append(pd_ - 2.5 * n * np.eye(n))  # indefinite
    sing = np.ones((3, 3))  # singular: rank one
    return [*out, sing]


@pytest.mark.parametrize("nth", [0, 1])
def test_hessian_parts_match_numpy(nth: int) -> None:
    from mixedmodels.optim import hessian_parts

    for H in _hessians():
        parts = hessian_parts(H, nth)
        assert parts.finite
        np.testing.assert_allclose(
            parts.eigenvalues, np.linalg.eigvalsh(0.5 * (H + H.T)), rtol=1e-12, atol=1e-12
        )
        try:
            np.linalg.cholesky(H)
            chol = True
        except np.linalg.LinAlgError:
            chol = False
        assert parts.cholesky_ok == chol
        if np.linalg.matrix_rank(H) < H.shape[0]:
            # exactly singular for LAPACK's LU or not: either no inverse or a useless one
            assert not (
                parts.inverted and parts.covariance_pd and np.all(np.abs(parts.covariance) < 1e8)
            )
            continue
        Hinv = np.linalg.inv(H)
        V = (Hinv + Hinv.T)[nth:, nth:]
        assert parts.inverted
        np.testing.assert_allclose(parts.covariance, V, rtol=1e-10, atol=1e-12)
        assert parts.covariance_pd == bool(np.all(np.linalg.eigvalsh(V) > 0))


def test_hessian_parts_of_a_matrix_with_missing_values() -> None:
    from mixedmodels.optim import hessian_messages, hessian_parts

    H = np.eye(3)
    H[1, 2] = np.nan
    parts = hessian_parts(H, 1)
    assert not parts.finite and not parts.inverted
    assert hessian_messages(H) == ["Problem with Hessian check (infinite or missing values?)"]


def test_hessian_messages_name_lme4s_problems() -> None:
    from mixedmodels.optim import hessian_messages

    assert hessian_messages(np.diag([1.0, 2.0])) == []
    assert "2 negative eigenvalues" in hessian_messages(np.diag([1.0, -1.0, -2.0]))[0]
    assert "numerically singular" in hessian_messages(np.diag([1.0, 1e-9]))[0]
    assert "large eigenvalue ratio" in hessian_messages(np.diag([10.0, 5e-6]))[0]
    assert "very large eigenvalue" in hessian_messages(np.diag([1.0, 1e7]))[0]


def test_updated_summary_is_a_replaced_copy():
    from dataclasses import replace

    from mixedmodels.optim import fixed_theta_summary

    opt = fixed_theta_summary(np.array([1.0, 0.5]), 3.0, np.array([0.0, -np.inf]))
    new = opt.updated(warnings=("w",), fmin=2.0)
    assert new == replace(opt, warnings=("w",), fmin=2.0)
    assert opt.warnings == () and opt.fmin == 3.0  # the original is unchanged
    with pytest.raises(TypeError, match="no field 'nope'"):
        opt.updated(nope=1)


def test_gradient_message_sees_a_missing_gradient_entry():
    from mixedmodels.optim import gradient_message

    assert gradient_message(np.array([1e-4, 1e-5]), np.eye(2)) is None
    assert gradient_message(np.array([]), None) is None
    assert gradient_message(np.array([1e-4, np.nan]), np.eye(2)) == (
        "unable to evaluate scaled gradient"
    )
    assert "max|grad| = 0.01 " in gradient_message(np.array([1e-2, 0.0]), np.eye(2))
