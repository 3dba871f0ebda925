"""A progress bar for long computations: tqdm when it is installed, a plain one otherwise.

Shown only when asked for and when standard error is a terminal (or tqdm is available, which
also handles notebooks); ``progress=False`` silences it.
"""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import Any

__all__ = ["Progress"]


class Progress:
    """``with Progress(total, "bootstrap", enabled) as bar: bar.update(k)``."""

    def __init__(self, total: int, desc: str, enabled: bool = True):
        self.total = total
        self.desc = desc
        self.done = 0
        self.start = time.perf_counter()
        self._bar: Any = None
        self._plain = False
        if not enabled or total <= 0:
            return
        try:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, desc=desc, leave=False)
        except ImportError:
            self._plain = sys.stderr.isatty()

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
