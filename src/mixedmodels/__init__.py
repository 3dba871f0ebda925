"""mixedmodels: linear mixed-effects models with lme4's formulas and results.

>>> import mixedmodels as mm
>>> fit = mm.lmer("Reaction ~ Days + (Days | Subject)", mm.datasets.load("sleepstudy"))
>>> print(fit.summary())                                        # doctest: +SKIP
"""

from __future__ import annotations

from . import datasets, families, priors
from .bayesian import BayesModel, MissingExtraError, bayes
from .display.anova import AnovaTable
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
from .glmm import GeneralizedLinearMixedModel, glmer
from .inference.anova import RefitNotice
from .inference.anova import compare as anova
from .lm import LmResult, lm
from .lmm import LinearMixedModel, lmer
from .results import LmerResult, RandomEffects, VarCorr
from .results_glmm import GlmerResult
from .simulate import simulate

__version__ = "0.1.0"

__all__ = [
    "AnovaTable",
    "BayesModel",
    "ConvergenceWarning",
    "DataError",
    "FormulaError",
    "GeneralizedLinearMixedModel",
    "GlmerResult",
    "GroupingError",
    "LinearMixedModel",
    "LmResult",
    "LmerResult",
    "MissingExtraError",
    "MixedModelError",
    "ModelSpecError",
    "RandomEffects",
    "RefitNotice",
    "SingularFitWarning",
    "VarCorr",
    "WeightsError",
    "__version__",
    "anova",
    "bayes",
    "datasets",
    "families",
    "glmer",
    "lm",
    "lmer",
    "priors",
    "simulate",
]
