"""One BLAS thread for the linear algebra of small models.

The dense matrices of a small model (a few columns for sleepstudy, a few hundred at most) are
far too small for BLAS threads to pay, and OpenBLAS's hand-offs between threads cost more than
the products; on a machine whose cores are busy with other work they cost milliseconds each
(a sleepstudy fit took 10-70 ms instead of 1 ms on two busy cores, all of it in BLAS calls on
3 x 3 matrices waiting for a second thread).
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

__all__ = [
    "UNTHREADED_MATVEC",
    "UNTHREADED_PRODUCT",
    "blas_controller",
    "is_small",
    "single_blas_thread",
]

#: a model is small (fitted with one BLAS thread) when its dense blocks have at most this many
#: columns ...
SMALL_DENSE_COLUMNS = 300
#: ... and its model matrix, with the response, at most this many entries
SMALL_CELLS = 5_000_000

#: OpenBLAS multiplies on one thread anyway when a matrix product has fewer multiply-adds than
#: this (m n k; its default threshold) ...
UNTHREADED_PRODUCT = 262_144
#: ... and a matrix-vector product fewer than this (m n)
UNTHREADED_MATVEC = 9_216

_CONTROLLER: list[Any] = []


def is_small(dense_columns: int, cells: int) -> bool:
    """Whether a model whose dense blocks have ``dense_columns`` columns and whose model
    matrix (with the response) has ``cells`` entries is small enough for one BLAS thread."""
    return dense_columns <= SMALL_DENSE_COLUMNS and cells <= SMALL_CELLS


def blas_controller() -> Any:
    """A threadpoolctl controller of the BLAS libraries loaded (made once: finding the
    libraries takes a millisecond or more, as long as a small fit), or None if threadpoolctl
    cannot inspect this platform."""
    if not _CONTROLLER:
        try:
            from threadpoolctl import ThreadpoolController

            _CONTROLLER.append(ThreadpoolController())
        except Exception:  # pragma: no cover - threadpoolctl cannot inspect this platform
            _CONTROLLER.append(None)
    return _CONTROLLER[0]


class _OneThread:
    """Set each BLAS library that uses more than one thread to one, and back on exit.

    The libraries' own controllers (threadpoolctl's ``LibController``: ``get_num_threads``,
    ``set_num_threads``) are called directly: ``ThreadpoolController.limit`` lists every
    library's settings on entry and exit, which costs more than a small fit's BLAS calls.
    """

    def __init__(self, libs: list[Any]) -> None:
        self.libs = libs
        self.saved: list[tuple[Any, int]] = []

    def __enter__(self) -> _OneThread:
        for lib in self.libs:
            n = lib.get_num_threads()
            if n is not None and n != 1:
                lib.set_num_threads(1)
                self.saved.append((lib, n))
        return self

    def __exit__(self, *exc: object) -> None:
        for lib, n in reversed(self.saved):
            lib.set_num_threads(n)
        self.saved.clear()


def single_blas_thread(enabled: bool = True) -> AbstractContextManager[Any]:
    """A context in which the BLAS libraries use one thread (``enabled``), or in which nothing
    changes (``enabled=False``, or threadpoolctl unavailable). The previous settings are
    restored on exit."""
    if not enabled:
        return nullcontext()
    controller = blas_controller()
    if controller is None:  # pragma: no cover
        return nullcontext()
    libs = getattr(controller, "lib_controllers", None)
    if libs is None:  # pragma: no cover - another threadpoolctl
        return controller.limit(limits=1, user_api="blas")
    return _OneThread([lib for lib in libs if getattr(lib, "user_api", None) == "blas"])
