"""The ``mixedmodels`` command line.

Commands
--------
``mixedmodels demo [--ml]``
    Fit ``Reaction ~ Days + (Days | Subject)`` to the shipped sleepstudy data and print the
    summary.
``mixedmodels fit DATA FORMULA [--ml] [--weights COL] [--offset COL] [--ddf DDF]
[--family F] [--link L] [--nagq N] [--format text|json|markdown] [--out FILE] [--no-progress]``
    Fit a linear mixed model (or, with ``--family`` other than gaussian, a generalized linear
    mixed model; ``--nagq`` sets its quadrature points and applies to GLMMs only) to a CSV
    (``.csv``, ``.csv.gz``, ``.tsv``, ``.tsv.gz``) or Parquet (``.parquet``, ``.pq``) file and
    print or write its summary, as text, JSON or a Markdown report. A progress indicator is
    shown on stderr for long fits when stderr is a terminal; ``--no-progress`` turns it off.
``mixedmodels datasets [NAME]``
    List the shipped data sets with their number of rows, or describe one of them.

Bad input (a missing or unreadable file, a malformed formula, an unknown column, options that do
not fit together, ...) is reported as ``mixedmodels: error: <message>`` on stderr with exit code
2; warnings raised by the fit or while computing the output (singular fit, rank deficiency,
convergence) as ``mixedmodels: warning: <message>``, and listed under ``"warnings"`` in the JSON
output.

The module imports only the standard library at import time; pandas and the model code are
imported by the commands that need them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
import warnings
import zlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["main"]

PROG = "mixedmodels"
EXIT_OK = 0
EXIT_BAD_INPUT = 2

DEMO_FORMULA = "Reaction ~ Days + (Days | Subject)"

_CSV_SUFFIXES = {".csv": ",", ".csv.gz": ",", ".tsv": "\t", ".tsv.gz": "\t"}
_PARQUET_SUFFIXES = (".parquet", ".pq")


class CliError(Exception):
    """Bad input reported to the user as ``mixedmodels: error: <message>`` (exit code 2)."""


# ---------------------------------------------------------------------------------------------
# helpers


def _make_unique(names: list[str]) -> list[str]:
    from mixedmodels.results import _make_unique as make_unique

    return make_unique(names)


def _error(message: str) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return EXIT_BAD_INPUT


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mixedmodels")
    except PackageNotFoundError:  # pragma: no cover - running from a bare source tree
        from mixedmodels import __version__

        return __version__


class _VersionAction(argparse.Action):
    """``--version``, resolving the version only when asked."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> NoReturn:
        print(f"{PROG} {_version()}")
        parser.exit()


def _data_format(path: Path) -> tuple[str, str]:
    """Classify a data file by its name: ``("csv", separator)`` or ``("parquet", "")``.

    Returns the kind and, for delimited text, the separator. The name without the suffix is
    used as the data set's name in the summary.
    """
    name = path.name.lower()
    for suffix, sep in _CSV_SUFFIXES.items():
        if name.endswith(suffix):
            return "csv", sep
    if name.endswith(_PARQUET_SUFFIXES):
        return "parquet", ""
    supported = ", ".join([*_CSV_SUFFIXES, *_PARQUET_SUFFIXES])
    raise CliError(f"cannot tell the format of {str(path)!r}; supported file types: {supported}")


def _stem(path: Path) -> str:
    """The file name without its data suffix (``sleep.csv.gz`` -> ``sleep``)."""
    name = path.name
    for suffix in (*_CSV_SUFFIXES, *_PARQUET_SUFFIXES):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)] or name
    return name


def read_data(path: str | Path) -> pd.DataFrame:
    """Read a CSV, TSV (optionally gzip-compressed) or Parquet file into a DataFrame.

    Parameters
    ----------
    path
        The file. Its name decides the format: ``.csv``, ``.csv.gz``, ``.tsv``, ``.tsv.gz``,
        ``.parquet`` or ``.pq``.

    Returns
    -------
    pandas.DataFrame
        The data, with ``attrs["name"]`` set to the file name without its suffix (shown as
        ``Data:`` in the summary).

    Raises
    ------
    CliError
        If the file does not exist, has an unsupported name, cannot be parsed, or is a Parquet
        file and pyarrow is not installed.
    """
    import pandas as pd

    path = Path(path)
    if not path.exists():
        raise CliError(f"no such file: {str(path)!r}")
    if not path.is_file():
        raise CliError(f"not a file: {str(path)!r}")
    kind, sep = _data_format(path)
    if kind == "parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise CliError(
                f"reading Parquet files such as {str(path)!r} needs pyarrow; install it with: "
                'pip install "mixedmodels[parquet]"'
            ) from None
    try:
        if kind == "parquet":
            df = pd.read_parquet(path, engine="pyarrow")
        else:
            df = pd.read_csv(path, sep=sep, compression="infer")
    except (OSError, EOFError, ValueError, zlib.error) as exc:
        # OSError: permissions, not gzip data; EOFError, zlib.error: truncated or corrupt gzip
        # data; ValueError: pandas' ParserError and EmptyDataError, UnicodeDecodeError,
        # pyarrow's ArrowInvalid.
        what = "a Parquet" if kind == "parquet" else "a delimited text"
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CliError(f"cannot read {str(path)!r} as {what} file: {detail}") from None
    if df.shape[1] == 0:
        raise CliError(f"{str(path)!r} has no columns")
    df.attrs["name"] = _stem(path)
    return df


def _finite(value: Any) -> Any:
    """Convert numpy scalars to Python values and NaN / infinities (and pandas' NA) to ``None``."""
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        value = value.item()  # numpy scalar -> Python scalar
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, int | str | bool):
        return value
    try:
        import pandas as pd

        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return value


def _clean(obj: Any) -> Any:
    """Recursively apply :func:`_finite` to a structure of dicts, lists and scalars."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    return _finite(obj)


def result_to_dict(
    fit: Any, *, data: str | None = None, fit_warnings: Sequence[str] = ()
) -> dict[str, Any]:
    """The JSON document written by ``mixedmodels fit --format json``.

    Parameters
    ----------
    fit
        The fitted model.
    data
        The data file, recorded as ``"data"``.
    fit_warnings
        Warnings raised while fitting, recorded as ``"warnings"``.

    Returns
    -------
    dict
        Plain Python values only; every float is finite (NaN and infinities become ``None``).
    """
    from mixedmodels.results_glmm import GlmerResult

    vcov = fit.vcov
    opt = fit.optinfo
    glmm = isinstance(fit, GlmerResult)
    doc: dict[str, Any] = {
        "formula": fit.formula,
        "data": data,
        "family": fit.family.name if glmm else "gaussian",
        "link": fit.family.link.name if glmm else "identity",
        "reml": fit.reml,
        "nobs": int(fit.nobs),
        "n_dropped": int(fit.n_dropped),
        "ngroups": {k: int(v) for k, v in fit.ngroups.items()},
        # two terms on one factor repeat lme4's theta names; keep every value
        "theta": dict(zip(_make_unique(fit.theta_names), fit.theta.tolist(), strict=True)),
        "fixef": fit.fixef.to_dict(),
        "std_errors": fit.std_errors.to_dict(),
        "vcov": {"names": list(vcov.columns), "matrix": vcov.to_numpy().tolist()},
        "sigma": fit.sigma,
        "loglik": fit.loglik,
        "aic": fit.aic,
        "bic": fit.bic,
        "deviance": fit.deviance,
        "reml_criterion": None if glmm else fit.reml_criterion,
        "is_singular": bool(fit.is_singular),
        "varcorr": fit.varcorr.to_frame().to_dict(orient="records"),
        "optimizer": {
            "optimizer": opt.optimizer,
            "feval": int(opt.feval),
            "return_code": int(opt.return_code),
            "message": opt.message,
            "elapsed": opt.elapsed,
        },
        "messages": list(fit.design.messages),
        "warnings": list(fit_warnings),
    }
    cleaned: dict[str, Any] = _clean(doc)
    return cleaned


def _fit(
    formula: str, data: pd.DataFrame, family: str = "gaussian", **kwargs: Any
) -> tuple[Any, list[str]]:
    """Fit with :func:`mixedmodels.lmer` (or :func:`mixedmodels.glmer` for another family),
    printing the library's warnings to stderr.

    Warnings of the ``UserWarning`` family (singular fit, rank deficiency, convergence) are
    printed as ``mixedmodels: warning: <message>`` and returned; any other warning (from a
    dependency) is passed on to Python's warning machinery unchanged.
    """
    import mixedmodels as mm

    messages: list[str] = []
    with _reported_warnings(messages):
        if family == "gaussian" and kwargs.get("link") in (None, "identity"):
            kwargs.pop("link", None)
            kwargs.pop("nAGQ", None)
            fit = mm.lmer(formula, data, **kwargs)
        else:
            kwargs.pop("reml", None)
            fit = mm.glmer(formula, data, family, **kwargs)
    return fit, messages


@contextlib.contextmanager
def _reported_warnings(messages: list[str]) -> Iterator[None]:
    """Catch the warnings raised in the block and report them in the CLI's format.

    Warnings of the ``UserWarning`` family (singular fit, rank deficiency, convergence) are
    printed as ``mixedmodels: warning: <message>`` and appended to ``messages`` (a message
    already there is neither printed nor added again); any other warning (from a dependency)
    is passed on to Python's warning machinery unchanged.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    # outside the block: the caller's filters apply to the warnings passed on
    for w in caught:
        if issubclass(w.category, UserWarning):
            text = str(w.message)
            if text in messages:
                continue
            messages.append(text)
            print(f"{PROG}: warning: {text}", file=sys.stderr)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)


def _emit(text: str, out: str | None = None) -> None:
    """Print ``text`` or write it to the file ``out``, ending with exactly one newline."""
    text = text.rstrip("\n") + "\n"
    if out is None:
        sys.stdout.write(text)
        return
    try:
        Path(out).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise CliError(f"cannot write {out!r}: {exc.strerror or exc}") from None


# ---------------------------------------------------------------------------------------------
# commands


_DDF_ARG: dict[str, Any] = {
    "choices": ["satterthwaite", "kenward-roger", "none"],
    "default": "satterthwaite",
    "help": "denominator df for the t-tests of the summary (default satterthwaite; "
    "none gives lme4's table without p-values)",
}


def _cmd_demo(args: argparse.Namespace) -> int:
    import mixedmodels as mm

    data = mm.datasets.load("sleepstudy")
    fit, _ = _fit(DEMO_FORMULA, data, reml=not args.ml)
    _emit(str(fit.summary(ddf=args.ddf)))
    return EXIT_OK


#: what ``mixedmodels compile`` fits: a model of each kind whose compiled kernels are made on
#: its first fit (data set, formula, family)
_COMPILE_MODELS = (
    ("sleepstudy", "Reaction ~ Days + (Days | Subject)", "gaussian"),
    ("sleepstudy", "Reaction ~ Days + (1 | Subject)", "gaussian"),
    ("Penicillin", "diameter ~ 1 + (1 | plate) + (1 | sample)", "gaussian"),
    ("cbpp", "cbind(incidence, size - incidence) ~ period + (1 | herd)", "binomial"),
    ("grouseticks", "TICKS ~ YEAR + (1 | BROOD)", "poisson"),
)


def _cmd_compile(args: argparse.Namespace) -> int:
    import time

    import mixedmodels as mm

    total = time.perf_counter()
    for name, formula, family in _COMPILE_MODELS:
        data = mm.datasets.load(name)
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if family == "gaussian":
                mm.lmer(formula, data, progress=False)
            else:
                mm.glmer(formula, data, family, progress=False)
        _emit(f"{formula} ({family}, {name}): {time.perf_counter() - t0:.1f} s")
    _emit(
        f"compiled and cached in {time.perf_counter() - total:.1f} s; later processes load "
        "the kernels from numba's cache"
    )
    return EXIT_OK


def _cmd_fit(args: argparse.Namespace) -> int:
    from mixedmodels.families import get_family

    family = get_family(args.family, args.link)  # unknown names raise a clear error
    glmm = family.name != "gaussian" or family.link.name != "identity"
    if args.ml and glmm:
        raise CliError("--ml applies to linear mixed models; GLMMs are always fitted by ML")
    if args.nagq is not None and not glmm:
        raise CliError(
            f"--nagq {args.nagq} applies to generalized linear mixed models only (a --family "
            f"other than gaussian, or a --link other than identity); a linear mixed model is "
            f"fitted exactly: drop --nagq, or give --family"
        )
    data = read_data(args.data)
    fit, fit_warnings = _fit(
        args.formula,
        data,
        args.family.lower() if not glmm else args.family,
        reml=not args.ml,
        weights=args.weights,
        offset=args.offset,
        link=args.link,
        nAGQ=1 if args.nagq is None else args.nagq,
        progress=args.progress,
    )
    # the output may compute more (the Satterthwaite df, ...) and warn: same treatment as the fit
    doc: dict[str, Any] | None = None
    text = ""
    with _reported_warnings(fit_warnings):
        if args.format == "json":
            doc = result_to_dict(fit, data=args.data)
        elif args.format == "markdown":
            from mixedmodels.display.markdown import to_markdown

            text = to_markdown(fit, ddf=args.ddf, data_name=args.data)
        else:
            text = str(fit.summary() if glmm else fit.summary(ddf=args.ddf))
    if doc is not None:
        doc["warnings"] = list(fit_warnings)  # those of the fit and of the output
        text = json.dumps(doc, indent=2, allow_nan=False)
    _emit(text, args.out)
    return EXIT_OK


def _cmd_datasets(args: argparse.Namespace) -> int:
    from mixedmodels import datasets

    if args.name is not None:
        print(datasets.describe(args.name))
        return EXIT_OK
    names = datasets.names()
    rows = [(name, int(datasets.metadata(name)["nrow"])) for name in names]
    width = max(len(name) for name, _ in rows)
    nwidth = max(len(str(n)) for _, n in rows)
    for name, nrow in rows:
        print(f"{name:<{width}}  {nrow:>{nwidth}} rows")
    return EXIT_OK


# ---------------------------------------------------------------------------------------------
# parser and entry point


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``mixedmodels`` command."""
    parser = argparse.ArgumentParser(
        prog=PROG, description="Linear mixed-effects models with lme4's formulas and results."
    )
    parser.add_argument("--version", action=_VersionAction, help="show the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    demo = sub.add_parser(
        "demo", help="fit the sleepstudy example", description=f"Fit {DEMO_FORMULA} to sleepstudy."
    )
    demo.add_argument("--ml", action="store_true", help="maximum likelihood instead of REML")
    demo.add_argument("--ddf", **_DDF_ARG)
    demo.set_defaults(func=_cmd_demo)

    fit = sub.add_parser(
        "fit",
        help="fit a model to a data file",
        description="Fit a linear (or, with --family, generalized linear) mixed model to a "
        "CSV/TSV (optionally .gz) or Parquet file.",
    )
    fit.add_argument("data", metavar="DATA", help="a .csv, .csv.gz, .tsv, .parquet or .pq file")
    fit.add_argument("formula", metavar="FORMULA", help='e.g. "y ~ x + (1 | g)"')
    fit.add_argument("--ml", action="store_true", help="maximum likelihood instead of REML")
    fit.add_argument("--weights", metavar="COL", help="column of prior weights")
    fit.add_argument("--offset", metavar="COL", help="column added to the linear predictor")
    fit.add_argument("--ddf", **_DDF_ARG)
    fit.add_argument(
        "--family",
        default="gaussian",
        metavar="F",
        help="response distribution: gaussian (default, a linear mixed model), binomial, "
        "poisson, Gamma or inverse.gaussian (a GLMM)",
    )
    fit.add_argument("--link", metavar="L", help="link function (default: the family's)")
    fit.add_argument(
        "--nagq",
        type=int,
        default=None,
        metavar="N",
        help="GLMM quadrature points (default 1, the Laplace approximation); only with a "
        "--family other than gaussian",
    )
    fit.add_argument(
        "--format",
        choices=("text", "json", "markdown"),
        default="text",
        help="output format (text)",
    )
    fit.add_argument("--out", metavar="FILE", help="write the output to FILE instead of stdout")
    fit.add_argument(
        "--no-progress",
        dest="progress",
        action="store_false",
        help="never show the progress indicator of long fits (it is shown on stderr only when "
        "stderr is a terminal)",
    )
    fit.set_defaults(func=_cmd_fit)

    comp = sub.add_parser(
        "compile",
        help="compile the kernels of the common models now (once after installing)",
        description="Fit a model of each common kind (lmer with one and with two "
        "random-effects terms, binomial and Poisson glmer) so that their compiled kernels "
        "are made and cached now rather than on a first fit: for instance when building a "
        "container image.",
    )
    comp.set_defaults(func=_cmd_compile)

    ds = sub.add_parser(
        "datasets",
        help="list or describe the shipped data sets",
        description="List the shipped data sets, or describe one.",
    )
    ds.add_argument("name", metavar="NAME", nargs="?", help="describe this data set")
    ds.set_defaults(func=_cmd_datasets)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``mixedmodels`` command line.

    Parameters
    ----------
    argv
        The arguments (without the program name); ``sys.argv[1:]`` by default.

    Returns
    -------
    int
        The exit status: 0 on success, 2 on bad input (usage errors included).
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version and usage errors
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    func: Callable[[argparse.Namespace], int] = args.func
    from mixedmodels.errors import MixedModelError

    try:
        return func(args)
    except (CliError, MixedModelError) as exc:
        return _error(str(exc))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
