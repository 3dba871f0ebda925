"""Tables of tests (``AnovaTable``): a pandas DataFrame that prints like R's ``print.anova``."""

from __future__ import annotations

import html
import re
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from mixedmodels.display import rformat

__all__ = ["AnovaTable"]


class AnovaTable(pd.DataFrame):
    """A table of tests: a DataFrame (index = terms or models) with a heading.

    ``print(table)`` gives R's layout for ``anova`` objects (the heading, then the table with R's
    rounding, significance stars and legend); everything else is an ordinary DataFrame.
    """

    _metadata: ClassVar[list[str]] = ["heading"]

    @property
    def _constructor(self) -> Any:
        return AnovaTable

    def __init__(
        self, *args: Any, heading: list[str] | tuple[str, ...] | None = None, **kwargs: Any
    ):
        super().__init__(*args, **kwargs)
        if heading is not None:
            self.heading = list(heading)
        elif not hasattr(self, "heading"):
            self.heading = []

    def format(self, digits: int = 5, signif_stars: bool = True) -> str:
        """R's ``print.anova`` text."""
        out = "".join(f"{h}\n" for h in (getattr(self, "heading", None) or []))
        cn = [str(c) for c in self.columns]
        nc = len(cn)
        if nc == 0 or len(self) == 0:
            return out
        has_p = bool(re.match(r"^(P|Pr)\(", cn[-1]))
        zap = list(range(nc - 1 if has_p else nc))
        tst = [i for i, c in enumerate(cn) if c[1:7] == " value"]
        tst += [i for i, c in enumerate(cn) if c in ("F", "Cp", "Chisq")]
        zap = [i for i in zap if i not in tst]
        dfs = [i for i, c in enumerate(cn) if c.endswith("Df")]
        zap = [i for i in zap if i not in dfs]
        numbers = self.to_numpy(dtype=float, na_value=np.nan)
        values = numbers.astype(object)
        values[np.isnan(numbers)] = None  # R's NA (printed as na_print), not NaN
        out += rformat.print_coefmat(
            values,
            [str(i) for i in self.index],
            cn,
            digits=digits,
            signif_stars=signif_stars,
            has_pvalue=has_p,
            p_values=has_p,
            cs_ind=[],
            zap_ind=zap,
            tst_ind=tst,
            na_print="",
        )
        return out

    def __str__(self) -> str:
        return self.format()

    def __repr__(self) -> str:
        return self.format()

    def _repr_html_(self) -> str:
        head = "".join(
            f"<div>{html.escape(h)}</div>" for h in getattr(self, "heading", []) if h.strip()
        )
        table = pd.DataFrame(self).to_html(float_format=lambda v: f"{v:.5g}", na_rep="")
        return f"<div>{head}{table}</div>"

    def to_frame(self) -> pd.DataFrame:
        """The table as a plain DataFrame."""
        return pd.DataFrame(self)
