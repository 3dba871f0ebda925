"""mixedmodels: linear mixed-effects models with lme4's formulas and results.

>>> import mixedmodels as mm
>>> fit = mm.lmer("Reaction ~ Days + (Days | Subject)", mm.datasets.load("sleepstudy"))
>>> print(fit.summary())                                        # doctest: +SKIP
"""

from __future__ import annotations

from mixedmodels import datasets, families, priors
from mixedmodels.bayesian import BayesModel, MissingExtraError, bayes
from mixedmodels.display.anova import AnovaTable
from mixedmodels.errors import (
    ConvergenceWarning,
    DataError,
    FormulaError,
    GroupingError,
    MixedModelError,
    ModelSpecError,
    SingularFitWarning,
    WeightsError,
)
from mixedmodels.glmm import GeneralizedLinearMixedModel, glmer
from mixedmodels.inference.anova import RefitNotice
from mixedmodels.inference.anova import compare as anova
from mixedmodels.lm import LmResult, lm
from mixedmodels.lmm import LinearMixedModel, lmer
from mixedmodels.results import LmerResult, RandomEffects, VarCorr
from mixedmodels.results_glmm import GlmerResult
from mixedmodels.simulate import simulate

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
