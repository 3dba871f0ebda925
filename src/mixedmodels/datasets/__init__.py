"""Example data sets shipped with mixedmodels.

The data sets are the classic examples of the R packages lme4 and nlme (``sleepstudy``,
``Penicillin``, ``InstEval``, ...), exported once by ``tools/export_datasets.R`` and stored inside
this package as a gzip-compressed CSV file plus a JSON metadata file each. Column names, factor
levels and their order are exactly those of R, so models fitted here can be compared directly with
lme4's results.

Examples
--------
>>> from mixedmodels import datasets
>>> sleep = datasets.load("sleepstudy")
>>> sleep.shape
(180, 3)
>>> list(sleep["Subject"].cat.categories[:3])
['308', '309', '310']
"""

from __future__ import annotations

import gzip
import io
import json
from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any

import numpy as np
import pandas as pd

from mixedmodels.errors import DataError

__all__ = ["describe", "load", "metadata", "names"]

_DATA_PACKAGE = __name__
_DATA_DIR = "data"
_KINDS = ("factor", "ordered", "integer", "numeric", "logical")


def _data_dir() -> Traversable:
    """Return the traversable resource directory holding the data files."""
    return resources.files(_DATA_PACKAGE).joinpath(_DATA_DIR)


@cache
def _index() -> dict[str, str]:
    """Map lower-cased data set names to their canonical (R) spelling."""
    found: dict[str, str] = {}
    for entry in _data_dir().iterdir():
        fname = entry.name
        if fname.endswith(".json"):
            canonical = fname[: -len(".json")]
            found[canonical.lower()] = canonical
    return dict(sorted(found.items(), key=lambda kv: kv[0]))


def names() -> list[str]:
    """List the names of the shipped data sets.

    Returns
    -------
    list of str
        Canonical names (R's spelling, e.g. ``"InstEval"``), sorted case-insensitively.
    """
    return list(_index().values())


def _canonical(name: str) -> str:
    """Resolve a case-insensitive data set name to its canonical spelling."""
    if not isinstance(name, str):
        raise TypeError(f"data set name must be a string, not {type(name).__name__}")
    try:
        return _index()[name.lower()]
    except KeyError:
        available = ", ".join(names())
        raise DataError(
            f"unknown data set {name!r}; available data sets are: {available}"
        ) from None


@cache
def _read_metadata(canonical: str) -> dict[str, Any]:
    text = _data_dir().joinpath(f"{canonical}.json").read_text(encoding="utf-8")
    meta: dict[str, Any] = json.loads(text)
    return meta


def metadata(name: str) -> dict[str, Any]:
    """Return the metadata recorded for a data set.

    Parameters
    ----------
    name
        Data set name, case-insensitive.

    Returns
    -------
    dict
        A fresh copy of the parsed JSON metadata: ``name``, ``title``, ``description``,
        ``source``, ``nrow``, ``columns`` (name, kind and, for factors, levels) and ``check``
        (column sums and level counts computed in R).

    Raises
    ------
    ValueError
        If no data set of that name is shipped.
    """
    meta = _read_metadata(_canonical(name))
    copied: dict[str, Any] = json.loads(json.dumps(meta))
    return copied


def load(name: str) -> pd.DataFrame:
    """Load a shipped data set as a pandas DataFrame.

    Parameters
    ----------
    name
        Data set name, case-insensitive (``"sleepstudy"``, ``"penicillin"``, ...); see
        :func:`names`.

    Returns
    -------
    pandas.DataFrame
        One column per R column, with R's names. R factors become pandas ``Categorical``
        columns with R's level order (``ordered=True`` for R's ordered factors), R integers become
        ``int64``, doubles ``float64`` and logicals ``bool``. Integer or logical columns with
        missing values fall back to pandas' nullable ``Int64`` / ``boolean`` dtypes.
        ``df.attrs["name"]`` holds the canonical data set name.

    Raises
    ------
    ValueError
        If no data set of that name is shipped (the message lists the available names).
    """
    canonical = _canonical(name)
    meta = _read_metadata(canonical)
    columns = meta["columns"]
    raw_bytes = _data_dir().joinpath(f"{canonical}.csv.gz").read_bytes()
    text = gzip.decompress(raw_bytes).decode("utf-8")
    # Read every column as text first: factor labels such as "308" or "NA" must stay strings, and
    # only an empty field means a missing value.
    raw = pd.read_csv(
        io.StringIO(text),
        dtype=str,
        keep_default_na=False,
        na_values=[""],
    )
    expected = [col["name"] for col in columns]
    if list(raw.columns) != expected:
        raise DataError(
            f"data file of {canonical!r} has columns {list(raw.columns)}, metadata lists {expected}"
        )
    out: dict[str, Any] = {}
    for col in columns:
        out[col["name"]] = _convert(raw[col["name"]], col, canonical)
    df = pd.DataFrame(out)
    df.attrs["name"] = canonical
    return df


def _convert(values: pd.Series, col: dict[str, Any], dataset: str) -> Any:
    """Convert one text column to the dtype its metadata kind calls for."""
    kind = col["kind"]
    missing = values.isna()
    if kind in ("factor", "ordered"):
        levels = list(col["levels"])
        cat = pd.Categorical(values, categories=levels, ordered=(kind == "ordered"))
        unknown = pd.isna(cat) & ~missing.to_numpy()
        if unknown.any():
            bad = sorted(set(values[unknown]))[:5]
            raise DataError(
                f"column {col['name']!r} of {dataset!r} has values not among its levels: {bad}"
            )
        return cat
    if kind == "numeric":
        # float() on each string is correctly rounded, so every value is the exact double R
        # had (the exporter writes the shortest string that round-trips under such a parser).
        return np.array([float(v) for v in values.to_numpy(dtype=object, na_value=np.nan)])
    if kind == "integer":
        if missing.any():
            return pd.array(pd.to_numeric(values), dtype="Int64")
        return pd.to_numeric(values).astype(np.int64).to_numpy()
    if kind == "logical":
        mapped = values.map({"TRUE": True, "FALSE": False})
        if missing.any():
            return pd.array(mapped, dtype="boolean")
        return mapped.astype(bool).to_numpy()
    raise DataError(
        f"column {col['name']!r} of {dataset!r} has unknown kind {kind!r}; expected one of {_KINDS}"
    )


def describe(name: str) -> str:
    """Describe a shipped data set in words.

    Parameters
    ----------
    name
        Data set name, case-insensitive.

    Returns
    -------
    str
        The title, the description, the source and one line per column giving its kind and, for
        factors, the number of levels and the first few of them.

    Raises
    ------
    ValueError
        If no data set of that name is shipped.
    """
    meta = _read_metadata(_canonical(name))
    source = meta.get("source", {})
    lines = [f"{meta['name']}: {meta['title']}", ""]
    lines.append(meta["description"])
    lines.append("")
    if source:
        lines.append(
            f"Source: R package {source.get('package')} {source.get('version')}. "
            f"{source.get('reference', '')}".rstrip()
        )
        lines.append("")
    lines.append(f"{meta['nrow']} rows, {len(meta['columns'])} columns:")
    width = max(len(col["name"]) for col in meta["columns"])
    for col in meta["columns"]:
        desc = col["kind"]
        if "levels" in col:
            levels = col["levels"]
            sep = " < " if col["kind"] == "ordered" else ", "
            shown = sep.join(levels[:6]) + (f"{sep}..." if len(levels) > 6 else "")
            desc = f"{desc}, {len(levels)} levels: {shown}"
        lines.append(f"  {col['name']:<{width}}  {desc}")
    return "\n".join(lines)
