"""Pure-Python re-implementations of R's printing primitives.

The functions in this module reproduce, character for character, the text that
R (>= 4.0, tested against R 4.2 and lme4 1.1-31) writes for

* ``format()`` of numeric vectors (R's C-level ``formatReal`` / ``formatInteger``),
* ``round()``, ``signif()`` and ``zapsmall()``,
* ``format.pval()``, ``abbreviate()``,
* ``print()`` of named vectors and of character matrices (including R's line
  and column wrapping at ``getOption("width")``),
* ``printCoefmat()`` (the coefficient tables of ``summary.lm`` and of lme4's
  ``summary.merMod``),
* lme4's random-effects table (``formatVC()`` printed with ``quote = FALSE``),
* ``cat(..., fill = TRUE)``.

Only numpy is used.  Missing values follow R: R's ``NA_real_`` is a NaN with a
particular payload; it is exported here as :data:`NA_real`.  In every numeric
input ``None``, masked entries of a :class:`numpy.ma.MaskedArray` and NaNs
carrying R's NA payload are treated as ``NA`` (printed as ``"NA"``); any other
NaN is R's ``NaN`` (printed as ``"NaN"``).

Notes
-----
R's ``formatReal`` decides, per element, how many significant digits (at most
``digits``) are needed, using 80-bit ``long double`` arithmetic on x86-64.  That
arithmetic is emulated exactly here with rational numbers, so results do not
depend on the platform's ``long double``.
"""

from __future__ import annotations

import math
import re
import struct
import unicodedata
from collections.abc import Iterable, Sequence
from fractions import Fraction
from typing import Any

import numpy as np

__all__ = [
    "SIGNIF_LEGEND",
    "NA_real",
    "abbreviate",
    "cat_fill",
    "format_num",
    "format_pval",
    "format_varcorr",
    "is_na",
    "print_coefmat",
    "print_matrix",
    "print_named",
    "print_named_numeric",
    "r_round",
    "signif",
    "strwrap",
    "zapsmall",
]

# ---------------------------------------------------------------------------
# Missing values
# ---------------------------------------------------------------------------

_NA_BITS = 0x7FF00000000007A2
#: R's ``NA_real_``: a NaN whose low word is 1954.
NA_real: float = struct.unpack("<d", struct.pack("<Q", _NA_BITS))[0]

_DBL_EPS = float(np.finfo(np.float64).eps)

#: The legend printed under a coefficient table (``useFancyQuotes = FALSE``).
SIGNIF_LEGEND = "0 '***' 0.001 '**' 0.01 '*' 0.05 '.' 0.1 ' ' 1"
#: The legend as R prints it in a UTF-8 locale (``useFancyQuotes = TRUE``, R's default there).
SIGNIF_LEGEND_FANCY = (
    "0 \u2018***\u2019 0.001 \u2018**\u2019 0.01 \u2018*\u2019 0.05 "
    "\u2018.\u2019 0.1 \u2018 \u2019 1"
)


def is_na(value: Any) -> bool:
    """Return True if *value* is R's ``NA`` (not merely ``NaN``).

    Parameters
    ----------
    value
        ``None``, :data:`numpy.ma.masked` or a float.  A float is NA when it
        is a NaN carrying R's NA payload (the low 32 bits equal 1954).

    Returns
    -------
    bool
    """
    if value is None or value is np.ma.masked:
        return True
    try:
        v = float(value)
    except (TypeError, ValueError):
        return False
    if not math.isnan(v):
        return False
    bits = struct.unpack("<Q", struct.pack("<d", v))[0]
    return (bits & 0xFFFFFFFF) == 1954


def _flatten(x: Any) -> tuple[list[float], list[bool], bool]:
    """Flatten numeric input into floats, an NA mask and an "is integer" flag."""
    if isinstance(x, np.ma.MaskedArray):
        mask = np.ma.getmaskarray(x).ravel().tolist()
        data = np.asarray(x.data)
        is_int = data.dtype.kind in "iu"
        flat = data.ravel().astype(np.float64).tolist()
        na_mask = [bool(m) or is_na(v) for m, v in zip(mask, flat, strict=True)]
        return [0.0 if n else float(v) for n, v in zip(na_mask, flat, strict=True)], na_mask, is_int
    if isinstance(x, np.ndarray):
        if x.dtype.kind in "iub":
            return x.ravel().astype(np.float64).tolist(), [False] * x.size, x.dtype.kind != "b"
        if x.dtype.kind == "f":
            flat = x.ravel().astype(np.float64).tolist()
            flags = [is_na(v) for v in flat] if np.isnan(x).any() else [False] * len(flat)
            return flat, flags, False
        items = x.ravel().tolist()
    elif isinstance(x, (int, float, np.number)) or x is None:
        items = [x]
    else:
        items = list(np.asarray(x, dtype=object).ravel().tolist())
    vals: list[float] = []
    na: list[bool] = []
    is_int = len(items) > 0
    for item in items:
        if is_na(item):
            vals.append(0.0)
            na.append(True)
            continue
        if not (isinstance(item, (int, np.integer)) and not isinstance(item, (bool, np.bool_))):
            is_int = False
        vals.append(float(item))
        na.append(False)
    if all(na):
        is_int = False
    return vals, na, is_int


def _shape_of(x: Any) -> tuple[int, ...] | None:
    if isinstance(x, np.ndarray):
        return x.shape
    if isinstance(x, (int, float, np.number)) or x is None:
        return None
    return np.asarray(x, dtype=object).shape


# ---------------------------------------------------------------------------
# String widths
# ---------------------------------------------------------------------------


def _strwidth(s: str) -> int:
    """Display width of *s* as R's ``Rstrwid`` computes it (wide CJK = 2)."""
    if s.isascii():
        return len(s)
    width = 0
    for ch in s:
        if unicodedata.combining(ch) or unicodedata.category(ch) in ("Mn", "Me", "Cf"):
            continue
        width += 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
    return width


def _pad(s: str, w: int, right: bool) -> str:
    gap = w - _strwidth(s)
    if gap <= 0:
        return s
    return " " * gap + s if right else s + " " * gap


# ---------------------------------------------------------------------------
# x87 long double emulation (R's formatReal uses long double on x86-64)
# ---------------------------------------------------------------------------

_KP_MAX = 27
_LD_MANT = 64


def _ld(q: Fraction) -> Fraction:
    """Round a rational to the nearest 80-bit long double (ties to even)."""
    if q == 0:
        return q
    sign = -1 if q < 0 else 1
    num, den = abs(q.numerator), q.denominator
    e = num.bit_length() - den.bit_length()
    if (num << max(0, -e)) < (den << max(0, e)):
        e -= 1
    shift = _LD_MANT - 1 - e
    if shift >= 0:
        n2, d2 = num << shift, den
    else:
        n2, d2 = num, den << -shift
    m, rem = divmod(n2, d2)
    if 2 * rem > d2 or (2 * rem == d2 and m & 1):
        m += 1
    if shift >= 0:
        return Fraction(sign * m, 1 << shift)
    return Fraction(sign * (m << -shift))


def _rint_even(q: Fraction) -> int:
    """Round a rational to the nearest integer, ties to even (nearbyintl)."""
    fl = q.numerator // q.denominator
    diff = q - fl
    if diff > Fraction(1, 2) or (diff == Fraction(1, 2) and fl % 2 == 1):
        return fl + 1
    return fl


def _powl10(k: int) -> Fraction:
    """``powl(10, k)`` assuming a correctly rounded long double result."""
    return _ld(Fraction(10) ** k)


def _scientific(x: float, digits: int) -> tuple[int, int, int, bool]:
    """R's ``scientific()``: (neg, kpower, nsig, roundingwidens) for one finite x."""
    if x == 0.0:
        return 0, 0, 1, False
    neg = 1 if x < 0 else 0
    r = -x if neg else x
    if digits >= 16:
        # format_via_sprintf
        buff = f"{r:#.{digits - 1}e}"
        kpower = int(buff[digits + 1 :].lstrip("e"))
        i = digits
        while i >= 2 and buff[i] == "0":
            i -= 1
        return neg, kpower, i, False
    kp = math.floor(math.log10(r)) - digits + 1
    rf = Fraction(r)
    if abs(kp) <= _KP_MAX:
        if kp > 0:
            r_prec = _ld(rf / (10**kp))
        elif kp < 0:
            r_prec = _ld(rf * (10**-kp))
        else:
            r_prec = rf
    else:
        r_prec = _ld(rf / _powl10(kp))
    if r_prec < 10 ** (digits - 1):
        r_prec = _ld(r_prec * 10)
        kp -= 1
    alpha = float(_rint_even(r_prec))
    nsig = digits
    for _ in range(digits):
        alpha /= 10.0
        if alpha == math.floor(alpha):
            nsig -= 1
        else:
            break
    if nsig == 0 and digits > 0:
        nsig = 1
        kp += 1
    kpower = kp + digits - 1
    rgt = min(max(digits - kpower, 0), _KP_MAX)
    fuzz = 0.5 / float(10**rgt)
    widens = 0 < kpower <= _KP_MAX and rf < _ld(Fraction(10**kpower) - Fraction(fuzz))
    return neg, kpower, nsig, bool(widens)


def _format_real_info(
    vals: Sequence[float], na: Sequence[bool], digits: int, nsmall: int = 0, na_width: int = 2
) -> tuple[int, int, int]:
    """R's ``formatReal``: common field width ``w``, decimals ``d``, exponent flag ``e``."""
    naflag = nanflag = posinf = neginf = False
    neg = 0
    mxl = rgt = mxsl = mxns = None
    mnl = None
    for v, isna in zip(vals, na, strict=True):
        if isna:
            naflag = True
            continue
        if not math.isfinite(v):
            if math.isnan(v):
                nanflag = True
            elif v > 0:
                posinf = True
            else:
                neginf = True
            continue
        neg_i, kpower, nsig, widens = _scientific(v, digits)
        left = kpower + 1
        if widens:
            left -= 1
        sleft = neg_i + (1 if left <= 0 else left)
        right = nsig - left
        if neg_i:
            neg = 1
        rgt = right if rgt is None else max(rgt, right)
        mxl = left if mxl is None else max(mxl, left)
        mnl = left if mnl is None else min(mnl, left)
        mxsl = sleft if mxsl is None else max(mxsl, sleft)
        mxns = nsig if mxns is None else max(mxns, nsig)
    if mxns is None:
        w = d = e = 0
    else:
        assert mxl is not None and mnl is not None and rgt is not None and mxsl is not None
        if digits == 0:
            rgt = 0
        if mxl < 0:
            mxsl = 1 + neg
        rgt = max(rgt, 0)
        w_fixed = mxsl + rgt + (rgt != 0)
        e = 2 if (mxl > 100 or mnl <= -99) else 1
        d = mxns - 1
        w = neg + (d > 0) + d + 4 + e
        if w_fixed <= w:  # R_print.scipen == 0
            e = 0
            if nsmall > rgt:
                rgt = nsmall
                w_fixed = mxsl + rgt + (rgt != 0)
            d = rgt
            w = w_fixed
    if naflag:
        w = max(w, na_width)
    if nanflag:
        w = max(w, 3)
    if posinf:
        w = max(w, 3)
    if neginf:
        w = max(w, 4)
    return w, d, e


def _encode_real(x: float, isna: bool, w: int, d: int, e: int, na: str = "NA") -> str:
    """R's ``EncodeReal0``."""
    if isna:
        return na.rjust(w)
    if math.isnan(x):
        return "NaN".rjust(w)
    if math.isinf(x):
        return ("Inf" if x > 0 else "-Inf").rjust(w)
    if x == 0.0:
        x = 0.0
    if e:
        return f"{x:{w}.{d}e}"
    return f"{x:{w}.{d}f}"


def _index_width(n: int) -> int:
    return int(math.log10(n + 0.5) + 1)


def _format_int_info(vals: Sequence[float], na: Sequence[bool], na_width: int = 2) -> int:
    """R's ``formatInteger`` field width."""
    finite = [int(v) for v, n in zip(vals, na, strict=True) if not n]
    w = na_width if any(na) else 1
    if finite:
        xmin, xmax = min(finite), max(finite)
        if xmin < 0:
            w = max(w, _index_width(-xmin) + 1)
        if xmax > 0:
            w = max(w, _index_width(xmax))
    return w


def _drop0trailing(strings: list[str]) -> list[str]:
    """The ``drop0trailing`` step of R's ``prettyNum`` (decimal mark ".")."""
    out = []
    for s in strings:
        parts = s.split(".")
        if len(parts) > 2:
            parts = [".".join(parts[:-1]), parts[-1]]
        before = parts[0]
        if len(parts) == 1:
            out.append(s)
            continue
        after = parts[1]
        if "e" in after:
            after = re.sub(r"e[+-]0+$", "", after)
        else:
            after = re.sub(r"0+$", "", after)
        out.append(before + ("." + after if after else ""))
    return out


def format_num(
    x: Any,
    digits: int = 7,
    nsmall: int = 0,
    width: int | None = None,
    na: str = "NA",
    drop0trailing: bool = False,
) -> list[str]:
    """Format numbers as R's ``format()`` does for a numeric vector.

    All finite elements share one format (fixed or scientific, chosen as R's
    ``formatReal`` does with ``scipen = 0``) and the results are
    right-justified to a common width.

    Parameters
    ----------
    x : array_like
        Numbers; any shape (the result is flattened in C order).  ``None``,
        masked entries and :data:`NA_real` are ``NA``; other NaNs are ``NaN``.
        Integer arrays (or sequences of Python ints) are formatted as R
        formats integer vectors (never in scientific notation).
    digits : int, default 7
        Number of significant digits (R's ``digits``, 1..22).
    nsmall : int, default 0
        Minimum number of digits after the decimal point in fixed notation.
    width : int, optional
        Minimum field width.
    na : str, default "NA"
        Text for missing values.
    drop0trailing : bool, default False
        Drop trailing zeros of the decimal part, as ``prettyNum`` does.

    Returns
    -------
    list of str

    Examples
    --------
    >>> format_num([1, 10, 100.5])
    ['  1.0', ' 10.0', '100.5']
    >>> format_num([1e10, 1e-10])
    ['1e+10', '1e-10']
    >>> format_num([0.5, None, float("nan")])
    ['0.5', ' NA', 'NaN']
    """
    vals, namask, is_int = _flatten(x)
    if not vals:
        return []
    if not 1 <= digits <= 22:
        raise ValueError("digits must be between 1 and 22")
    if not 0 <= nsmall <= 20:
        raise ValueError("nsmall must be between 0 and 20")
    na_width = _strwidth(na)
    if is_int:
        w = max(_format_int_info(vals, namask, na_width), width or 0)
        return [na.rjust(w) if n else f"{int(v):{w}d}" for v, n in zip(vals, namask, strict=True)]
    w, d, e = _format_real_info(vals, namask, digits, nsmall, na_width)
    w = max(w, width or 0)
    res = [_encode_real(v, n, w, d, e, na) for v, n in zip(vals, namask, strict=True)]
    if drop0trailing:
        res = _drop0trailing(res)
    return res


# ---------------------------------------------------------------------------
# round / signif / zapsmall
# ---------------------------------------------------------------------------

_M_LOG10_2 = 0.301029995663981195213738894724
_MAX10E = 308
_DBL_DIG = 15


def _pow_di(x: float, n: int) -> float:
    """R's ``R_pow_di`` (repeated squaring in double precision)."""
    xn = 1.0
    if n != 0:
        neg = n < 0
        n = -n if neg else n
        while True:
            if n & 1:
                xn *= x
            n >>= 1
            if n:
                x *= x
            else:
                break
        if neg:
            xn = 1.0 / xn
    return xn


def _logb(x: float) -> float:
    return float(math.frexp(x)[1] - 1)


def _fround(x: float, digits: float) -> float:
    """R >= 4.0.0 ``fround`` (the C code behind ``round(x, digits)``)."""
    if math.isnan(x) or math.isnan(digits):
        return x if math.isnan(x) else x + digits
    if math.isinf(x):
        return x
    if digits > _MAX10E + _DBL_DIG or x == 0.0:
        return x
    if digits < -_MAX10E:
        return 0.0
    if digits == 0.0:
        return float(np.rint(x))
    dig = math.floor(digits + 0.5)
    sgn = 1.0
    if x < 0.0:
        sgn = -1.0
        x = -x
    l10x = _M_LOG10_2 * (0.5 + _logb(x))
    if l10x + dig > _DBL_DIG:
        return sgn * x
    if dig <= _MAX10E:
        pow10 = _pow_di(10.0, dig)
        x10 = x * pow10
        i10 = math.floor(x10)
        xd = i10 / pow10
        xu = math.ceil(x10) / pow10
    else:
        e10 = dig - _MAX10E
        p10 = _pow_di(10.0, e10)
        pow10 = _pow_di(10.0, _MAX10E)
        x10 = (x * pow10) * p10
        i10 = math.floor(x10)
        xd = i10 / pow10 / p10
        xu = math.ceil(x10) / pow10 / p10
    du = xu - x
    dd = x - xd
    return sgn * (xu if (du < dd or (math.fmod(i10, 2.0) == 1 and du == dd)) else xd)


def _fprec(x: float, digits: float) -> float:
    """R's ``fprec`` (the C code behind ``signif(x, digits)``)."""
    max_digits = 22
    if math.isnan(x) or math.isnan(digits):
        return x if math.isnan(x) else x + digits
    if math.isinf(x):
        return x
    if math.isinf(digits):
        if digits > 0:
            return x
        digits = 1.0
    if x == 0:
        return x
    dig = math.floor(abs(digits) + 0.5) * (1 if digits >= 0 else -1)
    if dig > max_digits:
        return x
    dig = max(dig, 1)
    sgn = 1.0
    if x < 0.0:
        sgn = -1.0
        x = -x
    l10 = math.log10(x)
    e10 = int(dig - 1 - math.floor(l10))
    if abs(l10) < _MAX10E - 2:
        p10 = 1.0
        if e10 > _MAX10E:
            p10 = _pow_di(10.0, e10 - _MAX10E)
            e10 = _MAX10E
        if e10 > 0:
            pow10 = _pow_di(10.0, e10)
            return sgn * (float(np.rint((x * pow10) * p10)) / pow10) / p10
        pow10 = _pow_di(10.0, -e10)
        return sgn * (float(np.rint(x / pow10)) * pow10)
    do_round = _MAX10E - l10 >= _pow_di(10.0, -dig)
    e2 = dig + (1 if e10 > 0 else -1) * max_digits
    p10 = _pow_di(10.0, e2)
    x *= p10
    big_p10 = _pow_di(10.0, e10 - e2)
    x *= big_p10
    if do_round:
        x += 0.5
    x = math.floor(x) / p10
    return sgn * x / big_p10


def _vectorise(x: Any, fun: Any) -> Any:
    vals, na, _ = _flatten(x)
    out = [NA_real if n else fun(v) for v, n in zip(vals, na, strict=True)]
    shape = _shape_of(x)
    if shape is None:
        return out[0]
    return np.array(out, dtype=np.float64).reshape(shape)


def r_round(x: Any, digits: float = 0) -> Any:
    """Round as R (>= 4.0.0) ``round(x, digits)`` does.

    R 4's algorithm picks, of the two decimal candidates just below and above
    ``x``, the one closer to ``x`` in double precision (ties to even), so
    ``r_round(0.15, 1) == 0.1`` and ``r_round(2.675, 2) == 2.67``.

    Parameters
    ----------
    x : float or array_like
        Values (NA and NaN are passed through).
    digits : float, default 0
        Number of decimal places (may be negative).

    Returns
    -------
    float or numpy.ndarray
        A float for scalar input, otherwise an array of the input's shape.
    """
    return _vectorise(x, lambda v: _fround(v, float(digits)))


def signif(x: Any, digits: int = 6) -> Any:
    """Round to *digits* significant digits as R's ``signif()``.

    Parameters
    ----------
    x : float or array_like
    digits : int, default 6

    Returns
    -------
    float or numpy.ndarray
    """
    return _vectorise(x, lambda v: _fprec(v, float(digits)))


def zapsmall(x: Any, digits: int = 7) -> Any:
    """R's ``zapsmall()``: round values that are tiny relative to the largest.

    Parameters
    ----------
    x : array_like
    digits : int, default 7

    Returns
    -------
    numpy.ndarray (or float for scalar input)
    """
    vals, na, _ = _flatten(x)
    # R's is.na() is also TRUE for NaN
    finite = [abs(v) for v, n in zip(vals, na, strict=True) if not n and not math.isnan(v)]
    if not finite:
        return _vectorise(x, lambda v: v)
    mx = max(finite)
    if mx > 0:
        dig = max(0.0, digits - math.log10(mx))
    else:
        dig = float(digits)
    return r_round(x, dig)


# ---------------------------------------------------------------------------
# format.pval
# ---------------------------------------------------------------------------


def format_pval(pv: Any, digits: int, eps: float = _DBL_EPS, na_form: str = "NA") -> list[str]:
    """R's ``format.pval()``.

    Parameters
    ----------
    pv : array_like
        P-values.
    digits : int
        Significant digits (R's default is ``max(1, getOption("digits") - 2)``).
    eps : float, default ``.Machine$double.eps``
        Values below ``eps`` are shown as ``"<eps"`` (e.g. ``"< 2e-16"``).
    na_form : str, default "NA"

    Returns
    -------
    list of str
    """
    vals, na, _ = _flatten(pv)
    na = [n or math.isnan(v) for v, n in zip(vals, na, strict=True)]
    idx_ok = [i for i, n in enumerate(na) if not n]
    ok_vals = [vals[i] for i in idx_ok]
    is0 = [v < eps for v in ok_vals]
    r = [""] * len(ok_vals)
    rr: list[str] = []
    if not all(is0):
        sub = [v for v, z in zip(ok_vals, is0, strict=True) if not z]
        expo = [
            math.floor(math.log10(v if v > 0 else 1e-50)) if not math.isnan(v) else None
            for v in sub
        ]
        fixp = [e is not None and (e >= -3 or (e == -4 and digits > 1)) for e in expo]
        rr = [""] * len(sub)
        for flag in (True, False):
            pos = [i for i, f in enumerate(fixp) if f == flag]
            if pos:
                formatted = format_num([sub[i] for i in pos], digits=digits)
                for i, s in zip(pos, formatted, strict=True):
                    rr[i] = s
        it = iter(rr)
        r = [r_i if z else next(it) for r_i, z in zip(r, is0, strict=True)]
    if any(is0):
        dig = max(1, digits - 2)
        if not all(is0):
            nc = max(_strwidth(s) for s in rr)
            if dig > 1 and dig + 6 > nc:
                dig = max(1, nc - 7)
            sep = "" if (dig == 1 and nc <= 6) else " "
        else:
            sep = "" if dig == 1 else " "
        txt = "<" + sep + format_num([eps], digits=dig)[0]
        r = [txt if z else s for s, z in zip(r, is0, strict=True)]
    out = [na_form] * len(vals)
    for i, s in zip(idx_ok, r, strict=True):
        out[i] = s
    return out


# ---------------------------------------------------------------------------
# abbreviate
# ---------------------------------------------------------------------------

_C_SPACE = " \t\n\v\f\r"
_W_VOWELS = frozenset(
    chr(c)
    for c in (
        0x61, 0x65, 0x69, 0x6F, 0x75, 0xE0, 0xE1, 0x2E, 0xE3, 0xE4, 0xE5, 0xE8, 0xE9,
        0xEA, 0xEB, 0xEC, 0xED, 0xEE, 0xEF, 0xF2, 0xF3, 0xF4, 0xF5, 0xF6, 0xF8, 0xF9,
        0xFA, 0xFB, 0xFC, 0x101, 0x103, 0x105, 0x113, 0x115, 0x117, 0x118, 0x11B,
        0x129, 0x12B, 0x12D, 0x12F, 0x131, 0x14D, 0x14F, 0x151, 0x169, 0x16B, 0x16D,
        0x16F, 0x171, 0x173,
    )
)  # fmt: skip


def _stripchars(text: str, minlen: int) -> str:
    """R's C-level ``stripchars`` (abbreviate with ``use.classes = TRUE``)."""
    ascii_only = text.isascii()
    if ascii_only:

        def isspace(c: str) -> bool:
            return c in _C_SPACE

        def isvowel(c: str) -> bool:
            return c in "aeiou"
    else:

        def isspace(c: str) -> bool:
            return c.isspace()

        def isvowel(c: str) -> bool:
            return c in _W_VOWELS

    def islower(c: str) -> bool:
        return "a" <= c <= "z"

    s = list(text)
    nspace = 0

    def at(k: int) -> str:
        return s[k] if k < len(s) else "\0"

    def firstchar(i: int) -> bool:
        return isspace(s[i - 1])

    def lastchar(i: int) -> bool:
        nxt = at(i + 1)
        return not isspace(s[i - 1]) and (nxt == "\0" or isspace(nxt))

    def done() -> bool:
        return len(s) - nspace <= minlen

    def finish() -> str:
        upper = len(s)
        if upper > minlen:
            for i in range(upper - 1, 0, -1):
                if isspace(s[i]):
                    del s[i]
        return "".join(s)

    if len(s) < minlen:
        return finish()
    trailing = True
    for i in range(len(s) - 1, 0, -1):
        if isspace(s[i]):
            if trailing:
                del s[i:]
            else:
                nspace += 1
        else:
            trailing = False
        if done():
            return finish()

    passes = (
        lambda i: isvowel(s[i]) and lastchar(i),
        lambda i: isvowel(s[i]) and not firstchar(i),
        lambda i: islower(s[i]) and lastchar(i),
        lambda i: islower(s[i]) and not firstchar(i),
        lambda i: not firstchar(i) and not isspace(s[i]),
    )
    for cond in passes:
        for i in range(len(s) - 1, 0, -1):
            if cond(i):
                del s[i]
            if done():
                return finish()
    return finish()


def _abbrev_internal(text: str, minlen: int) -> str:
    if len(text) > minlen:
        return _stripchars(text, minlen)
    return text


def _duplicated(x: Sequence[str]) -> list[bool]:
    seen: set[str] = set()
    out = []
    for v in x:
        out.append(v in seen)
        seen.add(v)
    return out


def abbreviate(names: Iterable[str], minlength: int = 4, strict: bool = False) -> list[str]:
    """R's ``abbreviate()`` with ``method = "left.kept"`` and ``use.classes = TRUE``.

    Characters are dropped from the end: first lower-case vowels, then other
    lower-case letters, then anything but the first letter of each word, until
    ``minlength`` characters remain.  Unless ``strict``, ``minlength`` is
    increased for names whose abbreviations would collide.

    Parameters
    ----------
    names : iterable of str
    minlength : int, default 4
    strict : bool, default False

    Returns
    -------
    list of str

    Examples
    --------
    >>> abbreviate(["(Intercept)", "Days"], minlength=6)
    ['(Intr)', 'Days']
    """
    names = [str(n) for n in names]
    if minlength <= 0:
        return [""] * len(names)
    names_arg = [re.sub(r"^ +", "", re.sub(r" +$", "", n)) for n in names]
    pos: dict[str, int] = {}
    uniq: list[str] = []
    for n in names_arg:
        if n not in pos:
            pos[n] = len(uniq)
            uniq.append(n)
    x = list(uniq)
    if strict:
        x = [_abbrev_internal(s, minlength) for s in x]
    else:
        dup2 = [True] * len(uniq)
        these = list(uniq)
        while True:
            ans = iter([_abbrev_internal(s, minlength) for s in these])
            x = [next(ans) if d else xi for xi, d in zip(x, dup2, strict=True)]
            dup2 = _duplicated(x)
            if not any(dup2):
                break
            minlength += 1
            dupvals = {xi for xi, d in zip(x, dup2, strict=True) if d}
            dup2 = [d or xi in dupvals for xi, d in zip(x, dup2, strict=True)]
            these = [u for u, d in zip(uniq, dup2, strict=True) if d]
    return [x[pos[n]] for n in names_arg]


# ---------------------------------------------------------------------------
# print() of named vectors and character matrices
# ---------------------------------------------------------------------------


def _print_named_vector(
    values: list[str], names: list[str], w: int, width: int, gap: int = 1
) -> str:
    """R's ``PRINT_N_VECTOR`` layout, *values* already padded to width ``w``."""
    n = len(values)
    if n == 0:
        return "named character(0)\n"
    wn = max(_strwidth(s) for s in names)
    w = max(w, wn)
    nperline = max(width // (w + gap), 1)
    lines = []
    for start in range(0, n, nperline):
        stop = min(start + nperline, n)
        lines.append("".join(_pad(names[k], w, True) + " " * gap for k in range(start, stop)))
        lines.append("".join(_pad(values[k], w, True) + " " * gap for k in range(start, stop)))
    return "\n".join(lines) + "\n"


def _check_names(names: Sequence[str] | None, n: int) -> list[str]:
    if names is None:
        raise ValueError("names are required")
    names = ["<NA>" if nm is None else str(nm) for nm in names]
    if len(names) != n:
        raise ValueError("names must have the same length as the values")
    return names


def print_named(
    values: Sequence[str],
    names: Sequence[str],
    right: bool = True,
    width: int = 80,
    gap: int = 1,
) -> str:
    """Text of ``print(named_character_vector, quote = FALSE)``.

    This is how lme4 prints its ``AIC BIC logLik deviance df.resid`` table.
    Names and values share one column width; entries are followed by a
    space and wrapped into as many lines as ``width`` requires.

    Parameters
    ----------
    values : sequence of str
        Already formatted values (``None`` prints as ``<NA>``).
    names : sequence of str
    right : bool, default True
        R right-justifies named character vectors regardless of its
        ``right`` argument; ``right=False`` left-justifies the values
        (not something R's ``print`` does).
    width : int, default 80
        ``getOption("width")``.
    gap : int, default 1
        ``print.gap``: spaces after each column (lme4's ``print(fit)`` uses 2).

    Returns
    -------
    str
        The printed lines, each ending in a newline.
    """
    vals = ["<NA>" if v is None else str(v) for v in values]
    names = _check_names(names, len(vals))
    w = max((_strwidth(v) for v in vals), default=0)
    if not right:
        w = max(w, max((_strwidth(s) for s in names), default=0))
        vals = [_pad(v, w, False) for v in vals]
    return _print_named_vector(vals, names, w, width, gap)


def print_named_numeric(x: Any, names: Sequence[str], digits: int = 7, width: int = 80) -> str:
    """Text of ``print(named_numeric_vector, digits = digits)``.

    Used for the ``Scaled residuals`` / ``Residuals`` quantiles of
    ``summary()`` output (after :func:`zapsmall`).

    Parameters
    ----------
    x : array_like
        Numbers.
    names : sequence of str
    digits : int, default 7
    width : int, default 80

    Returns
    -------
    str
    """
    vals, na, is_int = _flatten(x)
    names = _check_names(names, len(vals))
    if is_int:
        w = _format_int_info(vals, na)
        wn = max((_strwidth(s) for s in names), default=0)
        w = max(w, wn)
        enc = ["NA".rjust(w) if n else f"{int(v):{w}d}" for v, n in zip(vals, na, strict=True)]
        return _print_named_vector(enc, names, w, width)
    w, d, e = _format_real_info(vals, na, digits)
    wn = max((_strwidth(s) for s in names), default=0)
    w = max(w, wn)
    enc = [_encode_real(v, n, w, d, e) for v, n in zip(vals, na, strict=True)]
    return _print_named_vector(enc, names, w, width)


def print_matrix(
    cells: Any,
    rownames: Sequence[str] | None,
    colnames: Sequence[str] | None,
    right: bool = False,
    width: int = 80,
) -> str:
    """Text of ``print(character_matrix, quote = FALSE, right = right)``.

    Parameters
    ----------
    cells : 2-D array_like of str
        The matrix (``None`` prints as ``<NA>``).
    rownames, colnames : sequence of str or None
        Dimnames; ``None`` gives R's ``[1,]`` / ``[,1]`` labels.  Row names
        that are all ``""`` (as in lme4's random-effects table) take no space.
    right : bool, default False
        Right-justify entries and column labels.
    width : int, default 80
        ``getOption("width")``; wider matrices are printed in column blocks.

    Returns
    -------
    str
    """
    arr = np.asarray(cells, dtype=object)
    if arr.ndim != 2:
        raise ValueError("cells must be 2-dimensional")
    nr, nc = arr.shape
    x = [["<NA>" if arr[i, j] is None else str(arr[i, j]) for j in range(nc)] for i in range(nr)]
    gap = 1
    if nr == 0 and nc == 0:
        return "<0 x 0 matrix>\n"
    if rownames is not None:
        rl = ["<NA>" if r is None else str(r) for r in rownames]
        if len(rl) < nr:
            raise ValueError("too few row labels")
        rlabw = max((_strwidth(s) for s in rl[:nr]), default=0)
    else:
        rl = None
        rlabw = _index_width(nr + 1) + 3
    if colnames is not None:
        cl = ["<NA>" if c is None else str(c) for c in colnames]
        if len(cl) < nc:
            raise ValueError("too few column labels")
    else:
        cl = None
    w = []
    for j in range(nc):
        wj = max((_strwidth(x[i][j]) for i in range(nr)), default=0)
        clabw = _strwidth(cl[j]) if cl is not None else _index_width(j + 1) + 3
        w.append(max(wj, clabw))

    def row_label(i: int) -> str:
        if rl is not None:
            return _pad(rl[i], rlabw, False)
        lab = f"[{i + 1},]"
        return " " * (rlabw - 3 - _index_width(i + 1)) + lab

    def col_label(j: int) -> str:
        if cl is None:
            lab = f"[,{j + 1}]"
            return " " * gap + lab + " " * (w[j] - _index_width(j + 1) - 3)
        lab = cl[j]
        if right:
            return " " * (gap + w[j] - _strwidth(lab)) + lab
        return " " * gap + lab + " " * (w[j] - _strwidth(lab))

    out: list[str] = []
    if nc == 0:
        out.append(" " * rlabw)
        for i in range(nr):
            out.append("\n" + row_label(i))
        out.append("\n")
        return "".join(out)
    jmin = jmax = 0
    while jmin < nc:
        tot = rlabw
        while True:
            tot += w[jmax] + gap
            jmax += 1
            if not (jmax < nc and tot + w[jmax] + gap < width):
                break
        out.append(" " * rlabw)
        out.extend(col_label(j) for j in range(jmin, jmax))
        for i in range(nr):
            out.append("\n" + row_label(i))
            out.extend(" " * gap + _pad(x[i][j], w[j], right) for j in range(jmin, jmax))
        out.append("\n")
        jmin = jmax
    return "".join(out)


# ---------------------------------------------------------------------------
# cat(fill = TRUE) and strwrap
# ---------------------------------------------------------------------------


def cat_fill(parts: Sequence[str | Sequence[str]], width: int = 80, sep: str = " ") -> str:
    """Text written by ``cat(..., sep = sep, fill = width)``.

    Parameters
    ----------
    parts : sequence
        The arguments of ``cat``: strings, or sequences of strings (character
        vectors).  Numbers must be formatted by the caller.
    width : int, default 80
        The fill width (``fill = TRUE`` means ``getOption("width")``).
    sep : str, default " "

    Returns
    -------
    str
        Includes the final newline that ``fill`` adds.  As in R, a line is
        broken *after* the separator, so wrapped lines keep a trailing space.

    Examples
    --------
    >>> cat_fill(["Number of obs: 180, groups: ", "Subject, 18"])
    'Number of obs: 180, groups:  Subject, 18\\n'
    """
    out: list[str] = []
    cur = 0
    sepw = _strwidth(sep)

    def nbytes(s: str) -> int:
        return len(s.encode("utf-8"))

    for iobj, obj in enumerate(parts):
        items = [obj] if isinstance(obj, str) else [str(o) for o in obj]
        if iobj != 0:
            out.append(sep)
        if not items:
            continue
        p = items[0]
        w = nbytes(p)
        if iobj > 0 and cur + w + sepw > width:
            out.append("\n")
            cur = 0
        for i in range(len(items)):
            out.append(p)
            cur += w + sepw
            if i < len(items) - 1:
                out.append(sep)
                p = items[i + 1]
                w = nbytes(p)
                if cur + w + sepw > width:
                    out.append("\n")
                    cur = 0
    out.append("\n")
    return "".join(out)


def strwrap(text: str, width: int, prefix: str = "", initial: str | None = None) -> list[str]:
    """A minimal R ``strwrap()`` for a single paragraph of single-spaced words.

    Parameters
    ----------
    text : str
    width : int
    prefix : str, default ""
    initial : str, optional
        Defaults to *prefix*.

    Returns
    -------
    list of str
    """
    if initial is None:
        initial = prefix
    words = [wd for wd in re.split(r"[ \t\n]", text) if wd]
    if not words:
        return [initial]
    nc = [_strwidth(wd) for wd in words]
    lines: list[str] = []
    start = 0
    max_len = width - _strwidth(initial)
    first = True
    while start < len(words):
        total = 0
        k = 0
        for j in range(start, len(words)):
            total += nc[j] + 1
            if total <= max_len:
                k += 1
            else:
                break
        k = max(k, 1)
        lines.append((initial if first else prefix) + " ".join(words[start : start + k]))
        if first:
            first = False
            max_len = width - _strwidth(prefix)
        start += k
    return lines


# ---------------------------------------------------------------------------
# printCoefmat
# ---------------------------------------------------------------------------


def _symnum_stars(p: float, isna: bool) -> str:
    if isna or math.isnan(p):
        return ""
    for cut, sym in ((0.001, "***"), (0.01, "**"), (0.05, "*"), (0.1, ".")):
        if p <= cut:
            return sym
    return " "


def _parse_r_number(s: str) -> float | None:
    try:
        return float(s)
    except ValueError:
        return None


def print_coefmat(
    estimates: Any,
    rownames: Sequence[str] | None,
    colnames: Sequence[str] | None,
    digits: int = 5,
    signif_stars: bool = True,
    signif_legend: bool | None = None,
    dig_tst: int | None = None,
    cs_ind: Sequence[int] | None = None,
    tst_ind: int | Sequence[int] | None = None,
    zap_ind: Sequence[int] = (),
    has_pvalue: bool | None = None,
    p_values: bool | None = None,
    eps_pvalue: float = _DBL_EPS,
    na_print: str = "NA",
    width: int = 80,
    fancy_quotes: bool = True,
) -> str:
    """Text of R's ``printCoefmat()``.

    ``fancy_quotes`` gives the significance legend R's curly quotes, as R prints it in a UTF-8
    locale (``useFancyQuotes = TRUE``); ``False`` gives the ASCII quotes of other locales.

    ``summary.lm`` calls it with ``digits = max(3, getOption("digits") - 3)``
    (i.e. 4) and lme4's ``summary.merMod`` with ``digits = 4``.

    Parameters
    ----------
    estimates : 2-D array_like
        The coefficient matrix (e.g. Estimate, Std. Error, t value, Pr(>|t|)).
        NA entries (``None``/masked/:data:`NA_real`) print as *na_print*.
    rownames, colnames : sequence of str or None
    digits : int, default 5
        R's default is ``max(3, getOption("digits") - 2)``.
    signif_stars : bool, default True
    signif_legend : bool, optional
        Defaults to *signif_stars*.
    dig_tst : int, optional
        Digits for test statistics; default ``max(1, min(5, digits - 1))``.
    cs_ind : sequence of int, optional
        Zero-based indices of the coefficient/standard-error columns, formatted
        jointly.  Default (as in R): all columns before the test-statistic
        column, so an lmerTest ``df`` column is formatted with them.
    tst_ind : int or sequence of int, optional
        Zero-based index of the test-statistic column(s); default: the column
        after *cs_ind* (R's ``k + 1``).
    zap_ind : sequence of int
        Zero-based columns passed through :func:`zapsmall` first.
    has_pvalue : bool, optional
        Whether the last column is a p-value; default: at least 4 columns and
        the last column name starts with ``"Pr("`` or ``"p-v"``.
    p_values : bool, optional
        Whether to show p-values (default *has_pvalue*).
    eps_pvalue : float
    na_print : str, default "NA"
    width : int, default 80

    Returns
    -------
    str
        The table and, if stars are shown, the ``---``/``Signif. codes`` legend.
    """
    arr = estimates
    if isinstance(arr, np.ma.MaskedArray):
        mask = np.ma.getmaskarray(arr)
        data = np.asarray(arr.data, dtype=np.float64)
        nrow, ncol = data.shape
        vals = [
            [NA_real if mask[i, j] else float(data[i, j]) for j in range(ncol)] for i in range(nrow)
        ]
    else:
        obj = np.asarray(arr, dtype=object)
        if obj.ndim != 2:
            raise ValueError("'estimates' must be a 2-D coefficient matrix")
        nrow, ncol = obj.shape
        vals = [
            [NA_real if is_na(obj[i, j]) else float(obj[i, j]) for j in range(ncol)]
            for i in range(nrow)
        ]
    cn = list(colnames) if colnames is not None else None
    nc = ncol
    if has_pvalue is None:
        has_pvalue = nc >= 4 and cn is not None and cn[nc - 1][:3] in ("Pr(", "p-v")
    if p_values is None:
        p_values = has_pvalue
    elif p_values and not has_pvalue:
        raise ValueError("'p_values' is True, but 'has_pvalue' is not")
    if has_pvalue and not p_values:
        vals = [row[:-1] for row in vals]
        if cn is not None:
            cn = cn[:-1]
        nc -= 1
        has_pvalue = False
    if tst_ind is None:
        k = nc - int(has_pvalue) - 1
        tst = [k] if k >= 0 else []
    else:
        tst = [tst_ind] if isinstance(tst_ind, (int, np.integer)) else list(tst_ind)
        k = nc - int(has_pvalue) - len(tst)
    cs = list(range(k)) if cs_ind is None else list(cs_ind)
    if cs_ind is not None and len(cs) > k:
        raise ValueError("wrong k / cs_ind")
    if dig_tst is None:
        dig_tst = max(1, min(5, digits - 1))
    if signif_legend is None:
        signif_legend = signif_stars

    cols = [[vals[i][j] for i in range(nrow)] for j in range(nc)]
    ina = [[is_na(v) or math.isnan(v) for v in col] for col in cols]
    inan = [[math.isnan(v) and not is_na(v) for v in col] for col in cols]
    cf = [[""] * nrow for _ in range(nc)]

    for j in zap_ind:
        cols[j] = list(np.asarray(zapsmall(cols[j], digits), dtype=np.float64))

    if cs:
        coef_se = [v for j in cs for v in cols[j]]
        acs = [abs(v) for v in coef_se if not math.isnan(v)]
        fin = [a for a in acs if math.isfinite(a)]
        if fin:
            nz = [a for a in fin if a != 0]
            if nz:
                digmin = [1 + math.floor(math.log10(min(nz))), 1 + math.floor(math.log10(max(nz)))]
            else:
                digmin = [1]
            rdig = max(1, *(digits - dm for dm in digmin))
            rounded = [NA_real if is_na(v) else _fround(v, rdig) for v in coef_se]
            formatted = format_num(rounded, digits=digits)
            it = iter(formatted)
            for j in cs:
                for i in range(nrow):
                    cf[j][i] = next(it)
    if tst:
        tvals = [v for j in tst for v in cols[j]]
        rounded = [NA_real if is_na(v) else _fround(v, dig_tst) for v in tvals]
        it = iter(format_num(rounded, digits=digits))
        for j in tst:
            for i in range(nrow):
                cf[j][i] = next(it)
    special = set(cs) | set(tst) | ({nc - 1} if has_pvalue else set())
    for j in range(nc):
        if j not in special:
            cf[j] = format_num(cols[j], digits=digits)

    # entries that became (non)zero by rounding are reformatted with fewer digits
    ok_cols = [j for j in range(nc - (1 if has_pvalue else 0)) if j not in tst]
    fix_pos: list[tuple[int, int]] = []
    for j in ok_cols:
        for i in range(nrow):
            if ina[j][i]:
                continue
            v = cols[j][i]
            parsed = _parse_r_number(cf[j][i])
            if parsed is None:
                continue
            if (v == 0) != (parsed == 0):
                fix_pos.append((j, i))
    if fix_pos:
        refmt = format_num([cols[j][i] for j, i in fix_pos], digits=max(1, digits - 1))
        for (j, i), s in zip(fix_pos, refmt, strict=True):
            cf[j][i] = s
    for j in range(nc):
        for i in range(nrow):
            if ina[j][i]:
                cf[j][i] = na_print
            if inan[j][i]:
                cf[j][i] = "NaN"

    show_stars = False
    stars: list[str] = []
    if p_values:
        pcol = cols[nc - 1]
        okp = [not ina[nc - 1][i] for i in range(nrow)]
        if any(okp):
            pv_ok = [pcol[i] for i in range(nrow) if okp[i]]
            it = iter(format_pval(pv_ok, digits=dig_tst, eps=eps_pvalue))
            for i in range(nrow):
                if okp[i]:
                    cf[nc - 1][i] = next(it)
            show_stars = signif_stars and any(p < 0.1 for p in pv_ok)
            if show_stars:
                raw = [_symnum_stars(pcol[i], ina[nc - 1][i]) for i in range(nrow)]
                sw = max(len(s) for s in raw)
                stars = [s.ljust(sw) for s in raw]
    cells = [[cf[j][i] for j in range(nc)] for i in range(nrow)]
    names_out = list(cn) if cn is not None else None
    if show_stars:
        cells = [[*row, stars[i]] for i, row in enumerate(cells)]
        if names_out is not None:
            names_out.append("")
    shape_cells = np.empty((nrow, len(cells[0]) if cells else nc), dtype=object)
    for i, row in enumerate(cells):
        for j, c in enumerate(row):
            shape_cells[i, j] = c
    text = print_matrix(shape_cells, rownames, names_out, right=True, width=width)
    if show_stars and signif_legend:
        legend = SIGNIF_LEGEND_FANCY if fancy_quotes else SIGNIF_LEGEND
        sleg: list[str] = [legend]
        if width < _strwidth(legend):
            sleg = strwrap(legend, width - 2, prefix="  ")
        # R widens the fill by the legend's extra bytes, because cat() counts bytes
        extra = max(len(s.encode("utf-8")) - len(s) for s in sleg)
        text += cat_fill(["---\nSignif. codes:  ", *sleg], width=width + 4 + extra, sep="")
    return text


# ---------------------------------------------------------------------------
# lme4's random-effects table
# ---------------------------------------------------------------------------


def _format_vc_cells(
    groups: Sequence[str],
    names: Sequence[Sequence[str]],
    sds: Sequence[Any],
    corrs: Sequence[Any],
    digits: int,
    comp: Sequence[str],
    use_scale: bool,
    residual_sd: float | None,
) -> tuple[list[list[str]], list[str]]:
    """lme4's ``formatVC``: the character matrix and its column names."""
    avail = ("Variance", "Std.Dev.")
    use_c: list[str] = []
    for c in comp:
        matches = [a for a in avail if a.startswith(c)]
        if len(matches) != 1:
            raise ValueError(f"Illegal 'comp': {c}")
        use_c.append(matches[0])
    if not use_c:
        raise ValueError("Must *either* show variances or standard deviations")
    colnms = ["Groups", "Name", *use_c]
    std_list = [np.atleast_1d(np.asarray(s, dtype=np.float64)).ravel().tolist() for s in sds]
    grp_labels = [str(g) for g in groups]
    name_list = [[str(n) for n in nm] for nm in names]
    if use_scale:
        if residual_sd is None:
            raise ValueError("residual_sd is required when use_scale is True")
        std_list.append([float(residual_sd)])
        grp_labels.append("Residual")
        name_list.append([""])
    lens = [len(s) for s in std_list]
    nr = sum(lens)
    cells = [[""] * len(colnms) for _ in range(nr)]
    row = 0
    for g, nm, ln in zip(grp_labels, name_list, lens, strict=True):
        cells[row][0] = g
        for k in range(ln):
            cells[row + k][1] = nm[k] if k < len(nm) else ""
        row += ln
    flat_sd = [v for s in std_list for v in s]
    for ci, c in enumerate(use_c):
        col = [v * v for v in flat_sd] if c == "Variance" else flat_sd
        for i, s in enumerate(format_num(col, digits=digits)):
            cells[i][2 + ci] = s
    n_terms = len(sds)
    if any(ln > 1 for ln in lens):
        maxlen = max(lens)
        dig = max(2, digits - 2)
        corr_rows: list[list[str]] = []
        for t in range(n_terms):
            p = lens[t]
            cm = corrs[t] if t < len(corrs) else None
            if cm is None:
                cm_arr = np.eye(p)
            else:
                cm_arr = np.asarray(cm, dtype=np.float64).reshape(p, p)
            # format(round(x, dig), nsmall = dig) over the whole matrix (column-major)
            flat = [cm_arr[i, j] for j in range(p) for i in range(p)]
            fmt = format_num(r_round(np.array(flat), dig), nsmall=dig)
            cc = [[""] * p for _ in range(p)]
            for j in range(p):
                for i in range(p):
                    if i > j:
                        cc[i][j] = fmt[j * p + i]
            for i in range(p):
                corr_rows.append(cc[i] + [""] * (maxlen - p))
        corr_rows = [r[: maxlen - 1] for r in corr_rows]
        while len(corr_rows) < nr:
            corr_rows.append([""] * (maxlen - 1))
        cells = [cells[i] + corr_rows[i] for i in range(nr)]
        colnms = colnms + (["Corr"] + [""] * (maxlen - 2) if maxlen - 1 > 0 else [])
    return cells, colnms


def format_varcorr(
    groups: Sequence[str],
    names: Sequence[Sequence[str]],
    sds: Sequence[Any],
    corrs: Sequence[Any],
    digits: int = 4,
    comp: Sequence[str] = ("Variance", "Std.Dev."),
    use_scale: bool = True,
    residual_sd: float | None = None,
    width: int = 80,
) -> str:
    """lme4's random-effects table: ``print(formatVC(varcor, ...), quote = FALSE)``.

    Parameters
    ----------
    groups : sequence of str
        Group label of each random-effects term (``names(VarCorr(m))``).
    names : sequence of sequence of str
        Effect names per term (e.g. ``["(Intercept)", "Days"]``).
    sds : sequence of array_like
        Standard deviations per term.
    corrs : sequence of 2-D array_like or None
        Correlation matrix per term (``None`` for terms with one effect).
    digits : int, default 4
        ``summary()`` uses 4 (``max(3, getOption("digits") - 3)``);
        ``print(VarCorr(m))`` uses 5 (``max(3, getOption("digits") - 2)``).
    comp : sequence of str, default ("Variance", "Std.Dev.")
        Columns to show: ``("Variance", "Std.Dev.")`` as ``summary()`` does,
        ``("Std.Dev.",)`` as ``print(VarCorr(m))`` does, or ``("Variance",)``.
    use_scale : bool, default True
        Whether to add the ``Residual`` row.
    residual_sd : float, optional
        Residual standard deviation (``sigma(m)``), needed when *use_scale*.
    width : int, default 80

    Returns
    -------
    str
        The table, starting with `` Groups   Name ...``.
    """
    cells, colnms = _format_vc_cells(
        groups, names, sds, corrs, digits, comp, use_scale, residual_sd
    )
    nr = len(cells)
    arr = np.empty((nr, len(colnms)), dtype=object)
    for i in range(nr):
        for j in range(len(colnms)):
            arr[i, j] = cells[i][j]
    return print_matrix(arr, [""] * nr, colnms, right=False, width=width)
