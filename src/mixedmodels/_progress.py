"""A progress bar for long computations: tqdm when it is installed, a plain one otherwise.

Shown only when asked for and when someone can see it: standard error is a terminal, or the code
runs in IPython or Jupyter. Output redirected to a file or a pipe (logs, ``2>err``) stays clean;
``progress=False`` silences it everywhere.
"""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import Any

__all__ = ["FitProgress", "Progress", "visible"]


def visible() -> bool:
    """Whether a progress bar would be seen: standard error is a terminal, or an IPython shell
    (terminal or Jupyter kernel) is running. Cheap: IPython is looked up, never imported."""
    try:
        if sys.stderr is not None and sys.stderr.isatty():
            return True
    except (AttributeError, ValueError):  # a replaced or closed stream
        pass
    ipython = sys.modules.get("IPython")
    get_ipython = getattr(ipython, "get_ipython", None)
    if get_ipython is None:
        return False
    try:
        return get_ipython() is not None
    except Exception:  # a broken or partial IPython: no bar rather than an error
        return False


class Progress:
    """``with Progress(total, "bootstrap", enabled) as bar: bar.update(k)``."""

    def __init__(self, total: int, desc: str, enabled: bool = True):
        self.total = total
        self.desc = desc
        self.done = 0
        self.start = time.perf_counter()
        self._bar: Any = None
        self._plain = False
        if not enabled or total <= 0 or not visible():
            return
        try:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, desc=desc, leave=False)
        except ImportError:
            self._plain = True

    def update(self, n: int = 1) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
        elif self._plain:
            frac = self.done / self.total
            width = 30
            filled = round(frac * width)
            elapsed = time.perf_counter() - self.start
            sys.stderr.write(
                f"\r{self.desc}: {100 * frac:3.0f}% |{'#' * filled}{' ' * (width - filled)}| "
                f"{self.done}/{self.total} [{elapsed:.1f}s]"
            )
            sys.stderr.flush()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        elif self._plain:
            sys.stderr.write("\r" + " " * 79 + "\r")
            sys.stderr.flush()

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class FitProgress:
    """Progress of an optimization whose length is not known in advance: the number of
    objective evaluations and the best value so far, shown only once the fit has run longer
    than ``delay`` seconds (so quick fits print nothing), only when enabled and only where it
    can be seen (see :func:`visible`).

    ``wrap(f)`` returns ``f`` counting its calls (for ``f`` returning a value or a
    ``(value, gradient)`` pair).
    """

    def __init__(self, desc: str, enabled: bool = True, delay: float = 2.0):
        self.desc = desc
        self.enabled = enabled
        self.delay = delay
        self.start = time.perf_counter()
        self.count = 0
        self.best = float("inf")
        self._bar: Any = None
        self._plain = False
        self._started = False

    def _show(self) -> None:
        if not self._started:
            self._started = True
            if not visible():
                return
            try:
                from tqdm.auto import tqdm

                self._bar = tqdm(desc=self.desc, unit=" evaluations", leave=False)
                self._bar.update(self.count)
            except ImportError:
                self._plain = True
            return
        if self._bar is not None:
            self._bar.update(1)
            self._bar.set_postfix(objective=f"{self.best:.6g}", refresh=False)
        elif self._plain:
            elapsed = time.perf_counter() - self.start
            sys.stderr.write(
                f"\r{self.desc}: {self.count} evaluations, objective {self.best:.8g} "
                f"[{elapsed:.1f}s]"
            )
            sys.stderr.flush()

    def tick(self, value: float) -> None:
        self.count += 1
        if value < self.best:
            self.best = float(value)
        if self.enabled and (self._started or time.perf_counter() - self.start > self.delay):
            self._show()

    def wrap(self, f: Any) -> Any:
        if not self.enabled:
            return f

        def counted(x: Any) -> Any:
            out = f(x)
            self.tick(out[0] if isinstance(out, tuple) else out)
            return out

        return counted

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        elif self._plain:
            sys.stderr.write("\r" + " " * 79 + "\r")
            sys.stderr.flush()

    def __enter__(self) -> FitProgress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
