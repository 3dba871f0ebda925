"""Tests for mixedmodels.display.rformat against output recorded from R.

The cases in ``tests/fixtures/rformat/rformat_cases.json`` are produced by
``tests/fixtures/rformat/make_rformat_fixtures.R``; every case must be
reproduced character for character.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mixedmodels.display import rformat

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "rformat" / "rformat_cases.json"
_DATA = json.loads(FIXTURE.read_text(encoding="utf-8"))
CASES: list[dict[str, Any]] = _DATA["cases"]


# ----------------------------------------------------------------- decoding helpers


def _listify(v: Any) -> list[Any]:
    return v if isinstance(v, list) else [v]


def _dec(s: Any) -> float:
    """Decode one number written by the R script ("%.17g" or NA/NaN/Inf/-Inf)."""
    if s is None or s == "NA":
        return rformat.NA_real
    return float(s)


def _decv(v: Any) -> list[float]:
    return [_dec(s) for s in _listify(v)]


def _enc(v: float) -> str:
    """Encode a float the way the R script does, for exact comparison."""
    if rformat.is_na(v):
        return "NA"
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "Inf" if v > 0 else "-Inf"
    return f"{v:.17g}"


def _run(case: dict[str, Any]) -> Any:
    fn, a = case["fn"], case["args"]
    if fn == "format_num":
        x: Any = _listify(a["x"]) if a["integer"] else _decv(a["x"])
        return rformat.format_num(
            x,
            digits=a["digits"],
            nsmall=a["nsmall"],
            width=a.get("width"),
            drop0trailing=a["drop0trailing"],
        )
    if fn in ("r_round", "signif", "zapsmall"):
        res = getattr(rformat, fn)(np.array(_decv(a["x"])), a["digits"])
        return [_enc(v) for v in np.atleast_1d(res).tolist()]
    if fn == "format_pval":
        return rformat.format_pval(_decv(a["pv"]), digits=a["digits"], eps=_dec(a["eps"][0]))
    if fn == "abbreviate":
        return rformat.abbreviate(_listify(a["names"]), a["minlength"], strict=a["strict"])
    if fn == "cat_fill":
        return rformat.cat_fill([_listify(p) for p in a["parts"]], width=a["width"], sep=a["sep"])
    if fn == "print_named":
        return rformat.print_named(_listify(a["values"]), _listify(a["names"]), width=a["width"])
    if fn == "print_named_numeric":
        return rformat.print_named_numeric(
            _decv(a["x"]), _listify(a["names"]), digits=a["digits"], width=a["width"]
        )
    if fn == "print_matrix":
        cells = [_listify(r) for r in a["cells"]]
        rn = None if a["rownames"] is None else _listify(a["rownames"])
        cn = None if a["colnames"] is None else _listify(a["colnames"])
        return rformat.print_matrix(cells, rn, cn, right=a["right"], width=a["width"])
    if fn == "print_coefmat":
        x = np.array([_decv(r) for r in a["x"]], dtype=np.float64)
        kwargs: dict[str, Any] = {}
        if "cs_ind" in a:
            kwargs["cs_ind"] = _listify(a["cs_ind"])
        if "tst_ind" in a:
            kwargs["tst_ind"] = _listify(a["tst_ind"])
        if "signif_legend" in a:
            kwargs["signif_legend"] = a["signif_legend"]
        return rformat.print_coefmat(
            x,
            _listify(a["rownames"]),
            _listify(a["colnames"]),
            digits=a["digits"],
            signif_stars=a["signif_stars"],
            zap_ind=_listify(a["zap_ind"]),
            width=a["width"],
            fancy_quotes=False,  # the R script sets useFancyQuotes = FALSE
            **kwargs,
        )
    if fn == "format_varcorr":
        corrs = [None if c is None else [_decv(r) for r in c] for c in a["corrs"]]
        resid = a["residual_sd"]
        return rformat.format_varcorr(
            _listify(a["groups"]),
            [_listify(n) for n in a["names"]],
            [_decv(s) for s in a["sds"]],
            corrs,
            digits=a["digits"],
            comp=tuple(_listify(a["comp"])),
            use_scale=a["use_scale"],
            residual_sd=None if resid is None else _dec(_listify(resid)[0]),
            width=a["width"],
        )
    raise AssertionError(f"unknown fixture function {fn}")


def _expected(case: dict[str, Any]) -> Any:
    out = case["out"]
    if case["fn"] in ("format_num", "format_pval", "abbreviate", "r_round", "signif", "zapsmall"):
        return _listify(out)
    return out


@pytest.mark.parametrize(
    "case",
    CASES,
    ids=[f"{i:04d}-{c['fn']}-{c['label'].replace(' ', '_')}" for i, c in enumerate(CASES)],
)
def test_matches_r(case: dict[str, Any]) -> None:
    assert _run(case) == _expected(case)


def test_fixture_metadata() -> None:
    meta = _DATA["meta"]
    assert meta["R"].startswith("R version")
    assert meta["n_cases"] == len(CASES) >= 500


# ----------------------------------------------------------------- hand-written examples


def test_format_picks_common_fixed_or_scientific_format() -> None:
    assert rformat.format_num([1, 10, 100.5]) == ["  1.0", " 10.0", "100.5"]
    assert rformat.format_num([123456.0, 0.001]) == ["123456.000", "     0.001"]
    assert rformat.format_num([1e10, 1e-10]) == ["1e+10", "1e-10"]
    assert rformat.format_num([0.5, None, np.nan, np.inf, -np.inf]) == [
        " 0.5",
        "  NA",
        " NaN",
        " Inf",
        "-Inf",
    ]


def test_format_digits_and_rounding_boundaries() -> None:
    assert rformat.format_num([2.675], digits=3) == ["2.67"]
    assert rformat.format_num([0.15], digits=1) == ["0.1"]
    assert rformat.format_num([9996.0, 1.0], digits=3) == ["9996", "   1"]
    assert rformat.format_num([0.1, 0.123456789], digits=3, nsmall=5) == ["0.10000", "0.12346"]


def test_integer_vectors_never_use_scientific_notation() -> None:
    assert rformat.format_num(np.array([1, 100000, 123456])) == ["     1", "100000", "123456"]
    assert rformat.format_num([100000.0]) == ["1e+05"]


def test_round_follows_r4() -> None:
    assert rformat.r_round(0.15, 1) == 0.1
    assert rformat.r_round(2.5) == 2.0
    assert rformat.r_round(-0.5) == -0.0
    np.testing.assert_array_equal(rformat.r_round(np.array([1.005, 2.675]), 2), [1.0, 2.67])
    assert rformat.signif(123456, 2) == 120000.0


def test_format_pval() -> None:
    assert rformat.format_pval([1.171558e-17, 3.263824e-06], digits=3) == ["< 2e-16", "3.26e-06"]
    assert rformat.format_pval([0.0], digits=1) == ["<2e-16"]
    assert rformat.format_pval([None, 0.5], digits=3) == ["NA", "0.5"]


def test_abbreviate_coefficient_names() -> None:
    names = ["(Intercept)", "Days", "MachineB", "MachineC"]
    assert rformat.abbreviate(names, minlength=6) == ["(Intr)", "Days", "MachnB", "MachnC"]


def test_cat_fill_inserts_separator_space() -> None:
    text = rformat.cat_fill(["Number of obs: 180, groups: ", "Subject, 18"])
    assert text == "Number of obs: 180, groups:  Subject, 18\n"


def test_lme4_sleepstudy_summary_tables() -> None:
    aic = rformat.print_named(
        ["1763.9", "1783.1", "-876.0", "1751.9", "174"],
        ["AIC", "BIC", "logLik", "deviance", "df.resid"],
    )
    assert aic == (
        "     AIC      BIC   logLik deviance df.resid \n"
        "  1763.9   1783.1   -876.0   1751.9      174 \n"
    )
    vc = rformat.format_varcorr(
        ["Subject"],
        [["(Intercept)", "Days"]],
        [[24.7407, 5.9221]],
        [[[1.0, 0.066], [0.066, 1.0]]],
        residual_sd=25.5918,
    )
    assert vc == (
        " Groups   Name        Variance Std.Dev. Corr\n"
        " Subject  (Intercept) 612.10   24.741       \n"
        "          Days         35.07    5.922   0.07\n"
        " Residual             654.94   25.592       \n"
    )
    coefs = [
        [251.40510, 6.824597, 16.99973, 36.838090, 1.171558e-17],
        [10.46729, 1.545790, 16.99998, 6.771481, 3.263824e-06],
    ]
    table = rformat.print_coefmat(
        coefs,
        ["(Intercept)", "Days"],
        ["Estimate", "Std. Error", "df", "t value", "Pr(>|t|)"],
        digits=4,
        fancy_quotes=False,
    )
    assert table == (
        "            Estimate Std. Error      df t value Pr(>|t|)    \n"
        "(Intercept)  251.405      6.825  17.000  36.838  < 2e-16 ***\n"
        "Days          10.467      1.546  17.000   6.771 3.26e-06 ***\n"
        "---\n"
        "Signif. codes:  0 '***' 0.001 '**' 0.01 '*' 0.05 '.' 0.1 ' ' 1\n"
    )
