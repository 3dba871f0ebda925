"""Printed output against lme4's, character for character.

The fits are evaluated at lme4's own theta so that both sides print the same numbers; what may
differ is listed in ``_normalize`` (the formula as the user wrote it, Python-specific hints, and
how R names an array of weights).
"""

from __future__ import annotations

import re

import pytest

import mixedmodels as mm

from ..conftest import case_at_lme4_theta, fitted_case, lmer_cases

CASES = sorted(lmer_cases())

# Lines that differ by design, and why.
_R_ONLY = {
    # lme4 prints the expanded form of (Days || Subject); we print the formula as written
    "Formula: Reaction ~ Days + ((1 | Subject) + (0 + Days | Subject))": "Formula: Reaction ~ Days + (Days || Subject)",
    # R's spelling of the transforms
    "Formula: log(Reaction) ~ Days + (Days | Subject)": "Formula: np.log(Reaction) ~ Days + (Days | Subject)",
    "Formula: incidence/size ~ period + (1 | herd)": "Formula: I(incidence / size) ~ period + (1 | herd)",
    # R-specific advice, given in Python terms here
    "boundary (singular) fit: see help('isSingular')": "boundary (singular) fit: see help(mixedmodels.LmerResult.is_singular)",
    "optimizer (nloptwrap) convergence code: 0 (OK)": "optimizer (LN_BOBYQA) convergence code: 0 (OK)",
}


def _normalize(r_text: str) -> str:
    lines = []
    skip = 0
    for line in r_text.rstrip("\n").split("\n"):
        if skip:
            skip -= 1
            continue
        if line.startswith("Use print(x, correlation=TRUE)"):
            lines.append("Use fit.summary(correlation=True) or fit.vcov if you need it")
            skip = 1
            continue
        line = _R_ONLY.get(line, line)
        line = re.sub(
            r"^optimizer \(nloptwrap\) convergence code: 0 \(OK\) ;",
            "optimizer (LN_BOBYQA) convergence code: 0 (OK) ;",
            line,
        )
        lines.append(line)
    return "\n".join(lines).rstrip("\n")


@pytest.mark.parametrize("name", CASES)
def test_summary_text_matches_lme4(name):
    fit = case_at_lme4_theta(name)
    ours = str(fit.summary(ddf="none")).rstrip("\n")
    expected = _normalize(lmer_cases()[name]["summary_text"])
    if fit.n_dropped:  # we also say how many rows were dropped; lme4 does not
        ours = ours.replace("\n  (4 observations deleted due to missingness)", "")
    assert ours == expected


@pytest.mark.parametrize("name", CASES)
def test_print_text_matches_lme4(name):
    fit = case_at_lme4_theta(name)
    ours = str(fit).rstrip("\n")
    assert ours == _normalize(lmer_cases()[name]["print_text"])


@pytest.mark.parametrize("name", CASES)
def test_varcorr_text_matches_lme4(name):
    fit = case_at_lme4_theta(name)
    assert str(fit.varcorr).rstrip("\n") == lmer_cases()[name]["varcorr_text"].rstrip("\n")


@pytest.mark.parametrize(
    "name", ["sleepstudy_corr_reml", "cake_ml", "penicillin_reml", "machines_reml"]
)
def test_optimized_summary_has_lme4_layout(name):
    """At our own optimum the layout is lme4's line for line (numbers may differ in the last
    digit where lme4 stopped short of the optimum)."""
    ours = str(fitted_case(name).summary(ddf="none")).rstrip("\n").split("\n")
    theirs = _normalize(lmer_cases()[name]["summary_text"]).split("\n")
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs, strict=True):
        assert len(a) == len(b)
        assert re.sub(r"[-\d.e+]+", "#", a) == re.sub(r"[-\d.e+]+", "#", b)


def test_summary_renders_html(sleep_fit):
    html = sleep_fit.summary()._repr_html_()
    assert "<table>" in html and "Random effects" in html and "Fixed effects" in html
    assert "Subject" in html and "(Intercept)" in html
    assert sleep_fit._repr_html_() == html
    assert "<table>" in sleep_fit.varcorr._repr_html_()


def _random_effects_table(html: str) -> str:
    start = html.index("<caption>Random effects</caption>")
    return html[start : html.index("</table>", start)]


def test_summary_html_random_effects_with_correlation(sleep_fit):
    # as lme4 prints it: Corr 0.07 on the Days row, the residual last
    table = _random_effects_table(sleep_fit.summary()._repr_html_())
    header = "<tr><th>Group</th><th>Name</th><th>Variance</th><th>Std.Dev.</th><th>Corr</th></tr>"
    assert header in table
    corr = sleep_fit.varcorr["Subject"].corr[1, 0]
    assert f"{corr:.2f}" == "0.07"
    sd = sleep_fit.varcorr["Subject"].sd[1]
    assert f"<td></td><td>Days</td><td>{sd**2:.4g}</td><td>{sd:.4g}</td><td>0.07</td>" in table
    assert f"<td>Residual</td><td></td><td>{sleep_fit.sigma**2:.4g}</td>" in table
    # the same table as the variance components' own rendering
    assert table == _random_effects_table(sleep_fit.varcorr._repr_html_())


def test_glmm_summary_html_random_effects():
    fit = mm.glmer(
        "cbind(incidence, size - incidence) ~ period + (1 | herd)",
        mm.datasets.load("cbpp"),
        "binomial",
        progress=False,
    )
    table = _random_effects_table(fit.summary()._repr_html_())
    assert "<th>Corr</th>" in table
    sd = fit.varcorr["herd"].sd[0]
    assert f"<td>herd</td><td>(Intercept)</td><td>{sd**2:.4g}</td><td>{sd:.4g}</td>" in table
    assert "Residual" not in table  # no residual scale in a binomial model


def test_anova_html(sleep_fit):
    table = sleep_fit.anova()
    html = table._repr_html_()
    assert "Type III Analysis of Variance Table with Satterthwaite&#x27;s method" in html
    for col in ("Sum Sq", "Mean Sq", "NumDF", "DenDF", "F value", "Pr(&gt;F)"):
        assert f"<th>{col}</th>" in html
    assert "<th>Days</th>" in html
    assert f"<td>{table.loc['Days', 'F value']:.5g}</td>" in html
    assert "45.85" in html  # lmerTest: F = 45.853


def test_model_comparison_html(sleepstudy):
    m0 = mm.lmer("Reaction ~ 1 + (Days | Subject)", sleepstudy, reml=False)
    m1 = mm.lmer("Reaction ~ Days + (Days | Subject)", sleepstudy, reml=False)
    table = mm.anova(m0, m1)
    html = table._repr_html_()
    assert "<div>Models:</div>" in html
    for col in ("npar", "AIC", "BIC", "logLik", "deviance", "Chisq", "Df", "Pr(&gt;Chisq)"):
        assert f"<th>{col}</th>" in html
    assert "<th>model1</th>" in html and "<th>model2</th>" in html
    assert f"<td>{table.iloc[1]['Chisq']:.5g}</td>" in html
    assert "23.537" in html  # lme4: Chisq 23.537 on 1 df
    assert "nan" not in html.lower()  # the first model's test cells are empty


def test_summary_coefficients_table(sleep_fit):
    coefs = sleep_fit.summary().coefficients
    assert list(coefs.columns) == ["Estimate", "Std. Error", "df", "t value", "Pr(>|t|)"]
    assert coefs.loc["Days", "t value"] == pytest.approx(6.771, abs=5e-4)
    assert coefs.loc["Days", "df"] == pytest.approx(17.0, abs=1e-3)
    lme4 = sleep_fit.summary(ddf="none").coefficients
    assert list(lme4.columns) == ["Estimate", "Std. Error", "t value"]


def test_correlation_switch(sleep_fit):
    assert "Correlation of Fixed Effects" not in str(sleep_fit.summary(correlation=False))
    cake = fitted_case("cake_ml")
    text = str(cake.summary(correlation=True))
    assert "Correlation of Fixed Effects" in text and "not shown by default" not in text
