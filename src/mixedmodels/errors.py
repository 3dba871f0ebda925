"""Exceptions and warnings raised by mixedmodels.

Every error the library raises on bad input is a subclass of :class:`MixedModelError`, so a caller
can catch them all with one ``except`` clause, and each message names what is wrong (the column,
the term, the position in the formula) and what to do about it.
"""

from __future__ import annotations

__all__ = [
    "ConvergenceWarning",
    "DataError",
    "FormulaError",
    "GroupingError",
    "MixedModelError",
    "ModelSpecError",
    "SingularFitWarning",
    "WeightsError",
    "user_stacklevel",
]


class MixedModelError(Exception):
    """Base class of every error raised by mixedmodels on bad input or an impossible request."""


class FormulaError(MixedModelError, ValueError):
    """A malformed model formula.

    Parameters
    ----------
    message
        What is wrong.
    formula
        The formula text, when known.
    position
        Zero-based character offset of the offending token, when known; the message then shows
        the formula with a caret under that position.
    """

    def __init__(self, message: str, formula: str | None = None, position: int | None = None):
        self.formula = formula
        self.position = position
        self.reason = message
        text = message
        if formula is not None and position is not None:
            text = f"{message} (at position {position})\n  {formula}\n  {' ' * position}^"
        elif formula is not None:
            text = f"{message}\n  in formula: {formula}"
        super().__init__(text)


class DataError(MixedModelError, ValueError):
    """The data cannot be used as given: unknown or non-numeric column, non-finite values, or no
    rows left."""


class GroupingError(DataError):
    """A grouping factor cannot define random effects (one level, or one level per observation)."""


class WeightsError(DataError):
    """Prior weights or offsets that are negative, non-finite or not aligned with the data."""


class ModelSpecError(MixedModelError, ValueError):
    """A request that does not fit the model (unknown parameter name, wrong length of theta,
    ...)."""


class SingularFitWarning(UserWarning):
    """The fit lies on the boundary of the parameter space (a variance estimated as zero, or a
    correlation of plus or minus one). See :attr:`LmerResult.is_singular`."""


class ConvergenceWarning(UserWarning):
    """The optimizer stopped without meeting its convergence criteria, or the gradient at the
    reported optimum is larger than expected."""


def user_stacklevel() -> int:
    """The ``stacklevel`` that makes a warning point at the first caller outside mixedmodels,
    for a ``warnings.warn`` call made in the function that calls this one (however deep in the
    library the warning arises)."""
    import os
    import sys
    import types

    package = os.path.dirname(os.path.abspath(__file__)) + os.sep
    frame: types.FrameType | None = sys._getframe(1)  # the function that will warn: level 1
    level = 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package):
        frame = frame.f_back
        level += 1
    return level
