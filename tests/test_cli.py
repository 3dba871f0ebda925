"""The ``mixedmodels`` command line: demo, fit (CSV, TSV, gzip, Parquet; text and JSON), datasets,
errors and warnings. Everything runs on sleepstudy so that the file stays fast."""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mixedmodels as mm
from mixedmodels.cli import _COMPILE_MODELS, main

FORMULA = "Reaction ~ Days + (Days | Subject)"


@pytest.fixture(scope="module")
def sleep() -> pd.DataFrame:
    return mm.datasets.load("sleepstudy")


@pytest.fixture(scope="module")
def reml_fit(sleep: pd.DataFrame) -> mm.LmerResult:
    return mm.lmer(FORMULA, sleep)


@pytest.fixture
def sleep_csv(sleep: pd.DataFrame, tmp_path: Path) -> Path:
    path = tmp_path / "sleep.csv"
    sleep.to_csv(path, index=False)
    return path


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def fit_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict:
    code, out, err = run_cli(capsys, "fit", *args, "--format", "json")
    assert code == 0, err
    return json.loads(out)


# ---------------------------------------------------------------------------------------------
# demo and the console script


def test_demo(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "demo")
    assert code == 0
    assert err == ""
    assert "Linear mixed model fit by REML. t-tests use Satterthwaite's method" in out
    assert "   Data: sleepstudy" in out
    assert "REML criterion at convergence: 1743.6" in out
    assert "Fixed effects:" in out
    assert "(Intercept)  251.405      6.825  17.000  36.838  < 2e-16 ***" in out
    assert "Days          10.467      1.546  17.000   6.771 3.26e-06 ***" in out


def test_demo_in_lme4_layout(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "demo", "--ddf", "none")
    assert code == 0
    assert "Linear mixed model fit by REML ['lmerMod']" in out
    assert "(Intercept)  251.405      6.825  36.838" in out


def test_demo_ml(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "demo", "--ml")
    assert code == 0
    assert "fit by maximum likelihood" in out
    assert "AIC      BIC   logLik deviance df.resid" in out
    assert "REML criterion" not in out


def test_compile_fits_each_kind_once(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import mixedmodels as mm

    fitted: list[tuple[str, str]] = []
    lmer, glmer = mm.lmer, mm.glmer

    def spy_lmer(formula: str, data: object, **kw: object) -> object:
        fitted.append((formula, "gaussian"))
        return lmer(formula, data, **kw)

    def spy_glmer(formula: str, data: object, family: str, **kw: object) -> object:
        fitted.append((formula, family))
        return glmer(formula, data, family, **kw)

    monkeypatch.setattr(mm, "lmer", spy_lmer)
    monkeypatch.setattr(mm, "glmer", spy_glmer)
    code, out, err = run_cli(capsys, "compile")
    assert code == 0, err
    assert fitted == [(f, fam) for _, f, fam in _COMPILE_MODELS]
    assert {fam for _, fam in fitted} == {"gaussian", "binomial", "poisson"}
    assert len(out.strip().splitlines()) == len(fitted) + 1
    assert "compiled and cached in" in out


def test_console_script_demo() -> None:
    # The script installed next to this interpreter (a venv's bin/), else the one on PATH.
    name = "mixedmodels.exe" if os.name == "nt" else "mixedmodels"
    local = Path(sysconfig.get_path("scripts")) / name
    script = str(local) if local.exists() else shutil.which("mixedmodels")
    assert script is not None, "the mixedmodels console script is not installed"
    proc = subprocess.run(
        [script, "demo"], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert "REML criterion at convergence: 1743.6" in proc.stdout
    assert "Fixed effects:" in proc.stdout


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "--version")
    assert code == 0
    assert out.strip() == f"mixedmodels {mm.__version__}"


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys)
    assert code == 2
    assert "mixedmodels: error:" in err


def test_cli_module_imports_no_heavy_dependency_itself() -> None:
    # The package __init__ imports pandas; the CLI module itself must not need more than the
    # standard library at import time (checked on its source, not on sys.modules).
    import mixedmodels.cli as cli

    source = Path(cli.__file__).read_text(encoding="utf-8")
    top_level = [line for line in source.splitlines() if line.startswith(("import ", "from "))]
    assert not any("pandas" in line or "numpy" in line for line in top_level)


# ---------------------------------------------------------------------------------------------
# fit


def test_fit_csv_text_matches_lmer(
    capsys: pytest.CaptureFixture[str], sleep_csv: Path, reml_fit: mm.LmerResult
) -> None:
    code, out, err = run_cli(capsys, "fit", str(sleep_csv), FORMULA)
    assert code == 0
    assert err == ""
    assert "   Data: sleep\n" in out
    # Same printed numbers as the in-process fit (the data name aside).
    expected = str(reml_fit.summary()).replace("Data: sleepstudy", "Data: sleep")
    assert out == expected.rstrip("\n") + "\n"


def test_fit_json_matches_lmer(
    capsys: pytest.CaptureFixture[str], sleep_csv: Path, reml_fit: mm.LmerResult
) -> None:
    doc = fit_json(capsys, str(sleep_csv), FORMULA)
    fit = reml_fit
    assert doc["formula"] == FORMULA
    assert doc["reml"] is True
    assert doc["nobs"] == 180
    assert doc["n_dropped"] == 0
    assert doc["ngroups"] == {"Subject": 18}
    assert list(doc["theta"]) == fit.theta_names
    np.testing.assert_allclose(list(doc["theta"].values()), fit.theta, rtol=1e-10)
    assert list(doc["fixef"]) == ["(Intercept)", "Days"]
    np.testing.assert_allclose(list(doc["fixef"].values()), fit.fixef.to_numpy(), rtol=1e-10)
    np.testing.assert_allclose(
        list(doc["std_errors"].values()), fit.std_errors.to_numpy(), rtol=1e-10
    )
    assert doc["vcov"]["names"] == ["(Intercept)", "Days"]
    np.testing.assert_allclose(doc["vcov"]["matrix"], fit.vcov.to_numpy(), rtol=1e-10)
    for key in ("sigma", "loglik", "aic", "bic", "deviance", "reml_criterion"):
        assert doc[key] == pytest.approx(getattr(fit, key), rel=1e-10), key
    assert doc["reml_criterion"] == pytest.approx(1743.628, abs=1e-3)
    assert doc["is_singular"] is False
    vc = doc["varcorr"]
    assert [r["grp"] for r in vc] == ["Subject", "Subject", "Subject", "Residual"]
    assert vc[2]["var1"] == "(Intercept)" and vc[2]["var2"] == "Days"
    assert vc[0]["var2"] is None and vc[3]["var1"] is None  # NaN/None -> null
    np.testing.assert_allclose(
        [r["vcov"] for r in vc], fit.varcorr.to_frame()["vcov"].to_numpy(), rtol=1e-10
    )
    opt = doc["optimizer"]
    assert opt["feval"] > 0 and opt["return_code"] > 0
    assert opt["message"].startswith("CONVERGENCE") or opt["message"].startswith("NLOPT_")
    assert opt["elapsed"] >= 0
    assert doc["messages"] == []


def test_fit_json_ml(capsys: pytest.CaptureFixture[str], sleep_csv: Path) -> None:
    doc = fit_json(capsys, str(sleep_csv), FORMULA, "--ml")
    assert doc["reml"] is False
    assert doc["reml_criterion"] is None
    assert doc["loglik"] == pytest.approx(-875.9697, abs=1e-4)


def test_fit_ml_text_shows_aic_table(capsys: pytest.CaptureFixture[str], sleep_csv: Path) -> None:
    code, out, _ = run_cli(capsys, "fit", str(sleep_csv), FORMULA, "--ml")
    assert code == 0
    assert "fit by maximum likelihood" in out
    assert "AIC      BIC   logLik deviance df.resid" in out
    assert "1763.9   1783.1   -876.0   1751.9      174" in out


@pytest.mark.parametrize("name", ["sleep.csv.gz", "sleep.tsv", "sleep.parquet", "sleep.pq"])
def test_fit_other_formats(
    capsys: pytest.CaptureFixture[str],
    sleep: pd.DataFrame,
    reml_fit: mm.LmerResult,
    tmp_path: Path,
    name: str,
) -> None:
    path = tmp_path / name
    if name.endswith((".parquet", ".pq")):
        pytest.importorskip("pyarrow")
        sleep.to_parquet(path)
    else:
        sleep.to_csv(path, sep="\t" if ".tsv" in name else ",", index=False)
    if name.endswith(".gz"):
        with open(path, "rb") as fh:
            assert fh.read(2) == b"\x1f\x8b"  # really gzip-compressed
    doc = fit_json(capsys, str(path), FORMULA)
    assert doc["nobs"] == 180
    np.testing.assert_allclose(list(doc["fixef"].values()), reml_fit.fixef.to_numpy(), rtol=1e-8)
    assert doc["loglik"] == pytest.approx(reml_fit.loglik, rel=1e-10)


def test_fit_weights_and_offset(
    capsys: pytest.CaptureFixture[str], sleep: pd.DataFrame, tmp_path: Path
) -> None:
    df = sleep.copy()
    df["w"] = 1.0 + (df["Days"] % 3)
    df["off"] = 0.5 * df["Days"]
    path = tmp_path / "weighted.csv"
    df.to_csv(path, index=False)
    expected = mm.lmer(FORMULA, df, weights="w")
    doc = fit_json(capsys, str(path), FORMULA, "--weights", "w")
    np.testing.assert_allclose(list(doc["fixef"].values()), expected.fixef.to_numpy(), rtol=1e-8)
    assert doc["sigma"] == pytest.approx(expected.sigma, rel=1e-8)
    unweighted = mm.lmer(FORMULA, sleep)
    assert doc["sigma"] != pytest.approx(unweighted.sigma, rel=1e-3)

    expected_off = mm.lmer(FORMULA, df, offset="off")
    doc = fit_json(capsys, str(path), FORMULA, "--offset", "off")
    np.testing.assert_allclose(
        list(doc["fixef"].values()), expected_off.fixef.to_numpy(), rtol=1e-8
    )
    assert doc["fixef"]["Days"] == pytest.approx(unweighted.fixef["Days"] - 0.5, rel=1e-6)


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_fit_out_file(
    capsys: pytest.CaptureFixture[str], sleep_csv: Path, tmp_path: Path, fmt: str
) -> None:
    out_file = tmp_path / f"result.{fmt}"
    code, out, err = run_cli(
        capsys, "fit", str(sleep_csv), FORMULA, "--format", fmt, "--out", str(out_file)
    )
    assert code == 0
    assert out == "" and err == ""
    text = out_file.read_text(encoding="utf-8")
    if fmt == "json":
        assert json.loads(text)["nobs"] == 180
    else:
        assert "REML criterion at convergence: 1743.6" in text


def test_fit_missing_values_reported_in_json(
    capsys: pytest.CaptureFixture[str], sleep: pd.DataFrame, tmp_path: Path
) -> None:
    df = sleep.copy()
    df.loc[[0, 5], "Reaction"] = np.nan
    path = tmp_path / "sleep_na.csv"
    df.to_csv(path, index=False)
    doc = fit_json(capsys, str(path), FORMULA)
    assert doc["nobs"] == 178
    assert doc["n_dropped"] == 2
    assert any("missing values" in m for m in doc["messages"])


def test_fit_warnings_go_to_stderr(
    capsys: pytest.CaptureFixture[str], sleep: pd.DataFrame, tmp_path: Path
) -> None:
    df = sleep.copy()
    df["Days2"] = 2 * df["Days"]
    path = tmp_path / "sleep_rd.csv"
    df.to_csv(path, index=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing may escape as a Python warning
        code, out, err = run_cli(
            capsys, "fit", str(path), "Reaction ~ Days + Days2 + (1 | Subject)"
        )
    assert code == 0
    assert "mixedmodels: warning:" in err
    assert "rank deficient" in err
    assert "Fixed effects:" in out
    assert "Traceback" not in err


# ---------------------------------------------------------------------------------------------
# errors


def test_error_missing_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    missing = tmp_path / "nope.csv"
    code, out, err = run_cli(capsys, "fit", str(missing), FORMULA)
    assert code == 2
    assert out == ""
    assert err.startswith("mixedmodels: error: ")
    assert "no such file" in err and "nope.csv" in err


def test_error_bad_formula(capsys: pytest.CaptureFixture[str], sleep_csv: Path) -> None:
    code, out, err = run_cli(capsys, "fit", str(sleep_csv), "Reaction ~ Days + (Days | Subject")
    assert code == 2
    assert out == ""
    assert err.startswith("mixedmodels: error: ")
    assert "(at position 18)" in err
    assert "  Reaction ~ Days + (Days | Subject\n" in err
    assert "\n  " + " " * 18 + "^" in err
    assert "Traceback" not in err


def test_error_unknown_column(capsys: pytest.CaptureFixture[str], sleep_csv: Path) -> None:
    code, _, err = run_cli(capsys, "fit", str(sleep_csv), "Reaction ~ Foo + (1 | Subject)")
    assert code == 2
    assert err.startswith("mixedmodels: error: ")
    assert "'Foo'" in err


def test_error_unknown_weights_column(capsys: pytest.CaptureFixture[str], sleep_csv: Path) -> None:
    code, _, err = run_cli(capsys, "fit", str(sleep_csv), FORMULA, "--weights", "nope")
    assert code == 2
    assert err.startswith("mixedmodels: error: ") and "'nope'" in err


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("garbage.csv", bytes(range(256)) * 8, "cannot read"),
        ("garbage.csv.gz", b"this is not gzip data", "cannot read"),
        ("empty.csv", b"", "cannot read"),
        ("garbage.parquet", b"PAR1 not really parquet", "cannot read"),
        ("data.xlsx", b"whatever", "supported file types"),
    ],
)
def test_error_unreadable_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, name: str, content: bytes, expected: str
) -> None:
    if name.endswith(".parquet"):
        pytest.importorskip("pyarrow")
    path = tmp_path / name
    path.write_bytes(content)
    code, out, err = run_cli(capsys, "fit", str(path), FORMULA)
    assert code == 2
    assert out == ""
    assert err.startswith("mixedmodels: error: ")
    assert expected in err
    assert "Traceback" not in err


def test_error_gzip_csv_with_broken_content(capsys: pytest.CaptureFixture[str], tmp_path: Path):
    path = tmp_path / "broken.csv.gz"
    path.write_bytes(gzip.compress(b"a,b\n1,2\n")[:-6])  # truncated stream
    code, _, err = run_cli(capsys, "fit", str(path), FORMULA)
    assert code == 2
    assert err.startswith("mixedmodels: error: ")


def test_error_parquet_without_pyarrow(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "sleep.parquet"
    path.write_bytes(b"PAR1")
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # makes `import pyarrow` fail
    code, _, err = run_cli(capsys, "fit", str(path), FORMULA)
    assert code == 2
    assert err.startswith("mixedmodels: error: ")
    assert 'pip install "mixedmodels[parquet]"' in err


def test_error_cannot_write_out(
    capsys: pytest.CaptureFixture[str], sleep_csv: Path, tmp_path: Path
) -> None:
    target = tmp_path / "no" / "such" / "dir" / "out.txt"
    code, _, err = run_cli(capsys, "fit", str(sleep_csv), FORMULA, "--out", str(target))
    assert code == 2
    assert err.startswith("mixedmodels: error: cannot write")


def test_usage_error_exit_code(capsys: pytest.CaptureFixture[str], sleep_csv: Path) -> None:
    code, _, err = run_cli(capsys, "fit", str(sleep_csv), FORMULA, "--format", "xml")
    assert code == 2
    assert "invalid choice" in err


# ---------------------------------------------------------------------------------------------
# datasets


def test_datasets_listing(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "datasets")
    assert code == 0
    lines = out.splitlines()
    assert [line.split()[0] for line in lines] == mm.datasets.names()
    sleep_line = next(line for line in lines if line.split()[0] == "sleepstudy")
    assert sleep_line.split()[1:] == ["180", "rows"]


def test_datasets_describe(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "datasets", "sleepstudy")
    assert code == 0
    assert out.rstrip("\n") == mm.datasets.describe("sleepstudy")


def test_datasets_unknown_name(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "datasets", "nosuchdata")
    assert code == 2
    assert out == ""
    assert err.startswith("mixedmodels: error: ") and "nosuchdata" in err


@pytest.fixture
def cbpp_parquet_or_csv(tmp_path: Path) -> Path:
    df = mm.datasets.load("cbpp")
    df["period"] = df["period"].astype(str).radd("p")  # keep it a factor through the CSV
    path = tmp_path / "cbpp.csv"
    df.to_csv(path, index=False)
    return path


GLMM_FORMULA = "cbind(incidence, size - incidence) ~ period + (1 | herd)"


def test_fit_family_binomial_matches_glmer(
    capsys: pytest.CaptureFixture[str], cbpp_parquet_or_csv: Path
) -> None:
    code, out, err = run_cli(
        capsys, "fit", str(cbpp_parquet_or_csv), GLMM_FORMULA, "--family", "binomial"
    )
    assert code == 0, err
    df = pd.read_csv(cbpp_parquet_or_csv)
    fit = mm.glmer(GLMM_FORMULA, df, "binomial")
    assert "Generalized linear mixed model fit by maximum likelihood" in out
    assert f"{fit.aic:.1f}" in out
    doc = fit_json(capsys, str(cbpp_parquet_or_csv), GLMM_FORMULA, "--family", "binomial")
    assert doc["family"] == "binomial" and doc["link"] == "logit"
    assert doc["loglik"] == pytest.approx(fit.loglik, rel=1e-10)
    assert doc["reml_criterion"] is None
    assert doc["fixef"]["periodp4"] == pytest.approx(fit.fixef["periodp4"], rel=1e-8)


def test_fit_markdown_report(
    capsys: pytest.CaptureFixture[str], sleep_csv: Path, reml_fit: mm.LmerResult
) -> None:
    code, out, _ = run_cli(capsys, "fit", str(sleep_csv), FORMULA, "--format", "markdown")
    assert code == 0
    assert out.startswith("## Linear mixed model fit by REML\n")
    assert "| term | Estimate | Std. Error | df | t value | Pr(>\\|t\\|) |" in out
    days = reml_fit.coef_table().loc["Days"]
    assert f"| Days | {days['Estimate']:.5g} | {days['Std. Error']:.5g} |" in out
    assert "| Subject | (Intercept) |  |" in out
    assert f"| REML criterion | {reml_fit.reml_criterion:.8g} |" in out


def test_fit_family_errors(
    capsys: pytest.CaptureFixture[str], cbpp_parquet_or_csv: Path, sleep_csv: Path
) -> None:
    code, _, err = run_cli(
        capsys, "fit", str(cbpp_parquet_or_csv), GLMM_FORMULA, "--family", "bogus"
    )
    assert code == 2 and "unknown family 'bogus'" in err
    code, _, err = run_cli(
        capsys, "fit", str(cbpp_parquet_or_csv), GLMM_FORMULA, "--family", "binomial", "--ml"
    )
    assert code == 2 and "--ml applies to linear mixed models" in err
    code, _, err = run_cli(capsys, "fit", str(sleep_csv), FORMULA, "--family", "binomial")
    assert code == 2 and "error:" in err


# ---------------------------------------------------------------------------------------------
# options that do not apply, progress, warnings of the output


def test_nagq_needs_a_glmm_family(
    capsys: pytest.CaptureFixture[str], sleep_csv: Path, cbpp_parquet_or_csv: Path
) -> None:
    code, out, err = run_cli(capsys, "fit", str(sleep_csv), FORMULA, "--nagq", "5")
    assert code == 2 and out == ""
    assert err.startswith("mixedmodels: error: --nagq 5 applies to generalized linear mixed")
    assert "Traceback" not in err
    code, _, err = run_cli(
        capsys, "fit", str(sleep_csv), FORMULA, "--family", "gaussian", "--nagq", "1"
    )
    assert code == 2 and "--nagq 1 applies to generalized" in err
    # with a GLMM family it is used: a different approximation, a different log-likelihood
    laplace = fit_json(capsys, str(cbpp_parquet_or_csv), GLMM_FORMULA, "--family", "binomial")
    agq = fit_json(
        capsys, str(cbpp_parquet_or_csv), GLMM_FORMULA, "--family", "binomial", "--nagq", "5"
    )
    assert agq["loglik"] != pytest.approx(laplace["loglik"], rel=1e-8)


def test_no_progress_flag(
    monkeypatch: pytest.MonkeyPatch, sleep_csv: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # make every fit "long" (shown at once) and stderr a terminal, with the plain indicator;
    # and sleepstudy not "small" (a small model's search is one compiled call, without progress)
    import mixedmodels.lmm as lmm
    from mixedmodels._progress import FitProgress
    from mixedmodels.linalg.fast_lmm import FastObjective

    monkeypatch.setattr(FastObjective, "small_rest", 0)

    monkeypatch.setattr(
        lmm, "FitProgress", lambda desc, enabled=True: FitProgress(desc, enabled, delay=0.0)
    )
    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)

    def run(*extra: str) -> str:
        err = io.StringIO()
        err.isatty = lambda: True  # type: ignore[method-assign]
        monkeypatch.setattr(sys, "stderr", err)
        assert main(["fit", str(sleep_csv), FORMULA, *extra]) == 0
        return err.getvalue()

    shown = run()
    assert "lmer: " in shown and " evaluations, objective " in shown
    assert run("--no-progress") == ""
    assert "Fixed effects:" in capsys.readouterr().out


def test_warnings_of_the_output_are_reported_like_those_of_the_fit(
    capsys: pytest.CaptureFixture[str], sleep_csv: Path
) -> None:
    # two intercept terms on one factor: the fit converges, but the Hessian of the Satterthwaite
    # df (computed by the summary, not by the fit) has a negative eigenvalue
    formula = "Reaction ~ Days + (1 | Subject) + (1 | Subject)"
    for fmt in ("text", "markdown"):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # nothing may escape as a Python warning
            code, out, err = run_cli(capsys, "fit", str(sleep_csv), formula, "--format", fmt)
        assert code == 0, err
        assert "mixedmodels: warning: Model failed to converge" in err
        assert "ConvergenceWarning" not in err and "results.py" not in err
        assert "Days" in out


def test_warnings_of_the_json_output_are_listed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], sleep_csv: Path
) -> None:
    import mixedmodels.cli as cli

    original = cli.result_to_dict

    def warning_result_to_dict(*args: object, **kwargs: object) -> dict:
        warnings.warn("something computed for the output went wrong", UserWarning, stacklevel=1)
        return original(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(cli, "result_to_dict", warning_result_to_dict)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        code, out, err = run_cli(capsys, "fit", str(sleep_csv), FORMULA, "--format", "json")
    assert code == 0, err
    assert err == "mixedmodels: warning: something computed for the output went wrong\n"
    assert json.loads(out)["warnings"] == ["something computed for the output went wrong"]
