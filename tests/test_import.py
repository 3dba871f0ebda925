"""What ``import mixedmodels`` and a first fit load: scipy.stats (most of a second to import)
only where a result needs more than scipy.special's distribution functions, numba only at a
fit."""

from __future__ import annotations

import subprocess
import sys


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys\nprint(' '.join(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        check=True,
    )
    return set(out.stdout.split())


def test_import_loads_neither_scipy_stats_nor_numba():
    mods = _modules_after("import mixedmodels")
    assert "scipy.stats" not in mods
    assert "numba" not in mods


def test_a_fit_its_print_and_summary_do_not_load_scipy_stats():
    mods = _modules_after(
        "import mixedmodels as mm\n"
        "fit = mm.lmer('Reaction ~ Days + (Days | Subject)', mm.datasets.load('sleepstudy'))\n"
        "str(fit)\n"
        "str(fit.summary())\n"
        "str(fit.summary(ddf='kenward-roger'))\n"
        "g = mm.glmer('cbind(incidence, size - incidence) ~ period + (1 | herd)',\n"
        "             mm.datasets.load('cbpp'), 'binomial')\n"
        "str(g)\n"
    )
    assert "scipy.stats" not in mods
