"""mixedmodels: linear mixed-effects models with lme4's formulas and results.

>>> import mixedmodels as mm
>>> fit = mm.lmer("Reaction ~ Days + (Days | Subject)", mm.datasets.load("sleepstudy"))
>>> print(fit.summary())                                        # doctest: +SKIP
"""

from __future__ import annotations

from . import datasets
from .errors import (
    ConvergenceWarning,
    DataError,
    FormulaError,
    GroupingError,
    MixedModelError,
    ModelSpecError,
    SingularFitWarning,
    WeightsError,
)
from .lm import LmResult, lm
from .lmm import LinearMixedModel, lmer
from .results import LmerResult, RandomEffects, VarCorr

__version__ = "0.1.0"

__all__ = [
    "ConvergenceWarning",
    "DataError",
    "FormulaError",
    "GroupingError",
    "LinearMixedModel",
    "LmResult",
    "LmerResult",
    "MixedModelError",
    "ModelSpecError",
    "RandomEffects",
    "SingularFitWarning",
    "VarCorr",
    "WeightsError",
    "__version__",
    "datasets",
    "lm",
    "lmer",
]
