"""Benchmark cases: the data (shipped or simulated with a fixed seed), the model and the target.

Every case writes its data once to ``benchmarks/.data/<name>.csv`` (factor columns as text), so
that every tool (mixedmodels, lme4, the Python peers) reads exactly the same rows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
DATA = HERE / ".data"

TOOLS = ("mixedmodels", "lme4", "glmm", "mixedlm", "statsmodels", "bambi")
#: the tools of a maximum-likelihood case unless it lists its own (Bambi samples)
FIT_TOOLS = ("mixedmodels", "lme4", "glmm", "mixedlm", "statsmodels")


@dataclass
class Case:
    name: str
    description: str
    build: Callable[[], pd.DataFrame]
    formula: str
    factors: tuple[str, ...]
    family: str = "gaussian"
    reml: bool = True
    nagq: int = 1
    mode: str = "fit"  # "fit", "bootstrap" or "bayes"
    nsim: int = 0
    draws: int = 1000  # Bayesian cases: draws and tuning steps per chain, chains
    chains: int = 4
    target: str = ""
    max_repeat: int = 5
    timeout: float = 1800.0
    tools: tuple[str, ...] = FIT_TOOLS
    tool_timeout: dict[str, float] = field(default_factory=dict)
    statsmodels: dict[str, Any] | None = None  # how statsmodels' MixedLM expresses the model
    group: str = "main"

    def data_path(self) -> Path:
        path = DATA / f"{self.name}.csv"
        if not path.exists():
            DATA.mkdir(parents=True, exist_ok=True)
            df = self.build()
            tmp = path.with_suffix(".tmp")
            df.to_csv(tmp, index=False)
            tmp.replace(path)
        return path

    def spec(self, repeat: int) -> dict[str, Any]:
        return {
            "case": self.name,
            "data": str(self.data_path()),
            "factors": list(self.factors),
            "formula": self.formula,
            "family": self.family,
            "reml": self.reml,
            "nagq": self.nagq,
            "mode": self.mode,
            "nsim": self.nsim,
            "draws": self.draws,
            "chains": self.chains,
            "repeat": max(1, min(repeat, self.max_repeat)),
            "statsmodels": self.statsmodels,
        }


# -- data ---------------------------------------------------------------------------------------
def _dataset(name: str) -> Callable[[], pd.DataFrame]:
    def build() -> pd.DataFrame:
        import mixedmodels as mm

        return mm.datasets.load(name)

    return build


def _crossed(n: int, n_a: int, n_b: int, seed: int) -> Callable[[], pd.DataFrame]:
    """y = 1 + 0.5 x + a + b + e with crossed factors A (n_a levels) and B (n_b levels), every
    level present, sd(a) = 0.8, sd(b) = 0.5, sd(e) = 1."""

    def build() -> pd.DataFrame:
        rng = np.random.default_rng(seed)
        a = np.concatenate([np.arange(n_a), rng.integers(0, n_a, n - n_a)])
        b = np.concatenate([np.arange(n_b), rng.integers(0, n_b, n - n_b)])
        rng.shuffle(a)
        rng.shuffle(b)
        x = rng.standard_normal(n)
        y = (
            1.0
            + 0.5 * x
            + 0.8 * rng.standard_normal(n_a)[a]
            + 0.5 * rng.standard_normal(n_b)[b]
            + rng.standard_normal(n)
        )
        return pd.DataFrame(
            {
                "y": y,
                "x": x,
                "A": np.char.add("a", a.astype(str)),
                "B": np.char.add("b", b.astype(str)),
            }
        )

    return build


def _kb07_like(seed: int = 20261122) -> pd.DataFrame:
    """56 subjects x 32 items, fully crossed, three two-level within factors A, B, C coded
    -0.5 / +0.5 (A and B vary within subjects and items, C between items within subjects),
    random intercepts and slopes for all seven effects by subject and by item (correlated)."""
    rng = np.random.default_rng(seed)
    n_subj, n_item = 56, 32
    subj = np.repeat(np.arange(n_subj), n_item)
    item = np.tile(np.arange(n_item), n_subj)
    A = np.where((subj + item) % 2 == 0, -0.5, 0.5)
    B = np.where((subj // 2 + item // 2) % 2 == 0, -0.5, 0.5)
    C = np.where(item % 4 < 2, -0.5, 0.5)
    X = np.column_stack([np.ones_like(A), A, B, C, A * B, A * C, B * C, A * B * C])
    beta = np.array([2180.0, 68.0, -330.0, 78.0, 20.0, -12.0, 10.0, 5.0])

    def re(n: int, sds: np.ndarray, rho: float) -> np.ndarray:
        corr = np.full((8, 8), rho)
        np.fill_diagonal(corr, 1.0)
        cov = corr * np.outer(sds, sds)
        return rng.multivariate_normal(np.zeros(8), cov, size=n)

    b_subj = re(n_subj, np.array([300.0, 40.0, 60.0, 30.0, 25.0, 20.0, 20.0, 15.0]), 0.2)
    b_item = re(n_item, np.array([360.0, 50.0, 120.0, 40.0, 30.0, 25.0, 25.0, 20.0]), 0.2)
    y = (
        X @ beta
        + np.einsum("ij,ij->i", X, b_subj[subj])
        + np.einsum("ij,ij->i", X, b_item[item])
        + 650.0 * rng.standard_normal(X.shape[0])
    )
    return pd.DataFrame(
        {
            "rt": y,
            "A": A,
            "B": B,
            "C": C,
            "subj": np.char.add("s", subj.astype(str)),
            "item": np.char.add("i", item.astype(str)),
        }
    )


def _politeness(seed: int = 20261201) -> pd.DataFrame:
    """A politeness-like crossed design (the seed study's layout, simulated): 6 speakers x 7
    scenarios x 2 attitudes, random intercepts and attitude slopes by speaker and by scenario
    (see docs/examples/politeness.py for the same design)."""
    rng = np.random.default_rng(seed)
    subjects = {"F1": "F", "F2": "F", "F3": "F", "M1": "M", "M2": "M", "M3": "M"}
    rows = [
        (s, g, sc, a) for s, g in subjects.items() for sc in range(1, 8) for a in ("inf", "pol")
    ]
    d = pd.DataFrame(rows, columns=["subject", "gender", "scenario", "attitude"])
    si, ss = rng.normal(0, 25, 6), rng.normal(0, 8, 6)
    ci, cs = rng.normal(0, 15, 7), rng.normal(0, 8, 7)
    sub = d["subject"].map({s: k for k, s in enumerate(subjects)}).to_numpy()
    scen = d["scenario"].to_numpy() - 1
    pol = (d["attitude"] == "pol").to_numpy()
    d["frequency"] = (
        257.0
        - 110.0 * (d["gender"] == "M").to_numpy()
        + si[sub]
        + ci[scen]
        + pol * (-20.0 + ss[sub] + cs[scen])
        + rng.normal(0, 25, len(d))
    )
    d["scenario"] = np.char.add("s", d["scenario"].to_numpy().astype(str))
    return d


def _ratings(n: int = 10_000_000, n_users: int = 100_000, n_items: int = 5_000, seed: int = 7):
    """A ratings design: users and items with power-law activity and popularity (Zipf-like
    weights), every user and item present, y = 3.5 + user + item + noise."""

    def build() -> pd.DataFrame:
        rng = np.random.default_rng(seed)
        wu = 1.0 / np.arange(1, n_users + 1) ** 0.8
        wi = 1.0 / np.arange(1, n_items + 1) ** 1.0
        users = np.concatenate(
            [np.arange(n_users), rng.choice(n_users, n - n_users, p=wu / wu.sum())]
        )
        items = np.concatenate(
            [
                np.arange(n_items),
                rng.integers(0, n_items, n_users - n_items),
                rng.choice(n_items, n - n_users, p=wi / wi.sum()),
            ]
        )
        rng.shuffle(items)
        y = (
            3.5
            + 0.6 * rng.standard_normal(n_users)[users]
            + 0.4 * rng.standard_normal(n_items)[items]
            + 0.9 * rng.standard_normal(n)
        )
        return pd.DataFrame(
            {"y": np.round(y, 6), "user": np.char.add("u", users.astype(str)),
             "item": np.char.add("m", items.astype(str))}
        )  # fmt: skip

    return build


# -- the cases ------------------------------------------------------------------------------------
def _cases() -> dict[str, Case]:
    cases = [
        Case(
            "sleepstudy",
            "sleepstudy `Reaction ~ Days + (Days | Subject)`, REML",
            _dataset("sleepstudy"),
            "Reaction ~ Days + (Days | Subject)",
            ("Subject",),
            target="faster than every peer; >= 10x lme4",
            statsmodels={"groups": "Subject", "re_formula": "~Days"},
        ),
        Case(
            "crossed_70k",
            "simulated crossed, 70k rows, 3000 x 1100 levels, `y ~ x + (1 | A) + (1 | B)`, REML",
            _crossed(70_000, 3000, 1100, seed=11),
            "y ~ x + (1 | A) + (1 | B)",
            ("A", "B"),
            target="faster than every peer",
            max_repeat=3,
            statsmodels={"vc": ["A", "B"]},
            tool_timeout={"statsmodels": 300.0, "lme4": 900.0},
        ),
        Case(
            "insteval",
            "InstEval `y ~ 1 + service + (1 | s) + (1 | d) + (1 | dept:service)`, ML",
            _dataset("InstEval"),
            "y ~ 1 + service + (1 | s) + (1 | d) + (1 | dept:service)",
            ("s", "d", "dept", "service"),
            reml=False,
            target="faster than every peer; >= 30x lme4",
            max_repeat=3,
            tools=("mixedmodels", "lme4", "glmm", "mixedlm"),
            tool_timeout={"lme4": 900.0},
        ),
        Case(
            "kb07_maximal",
            "kb07-like, 56 subjects x 32 items, `rt ~ 1 + A*B*C + (1 + A*B*C | subj) + "
            "(1 + A*B*C | item)`, ML",
            _kb07_like,
            "rt ~ 1 + A*B*C + (1 + A*B*C | subj) + (1 + A*B*C | item)",
            ("subj", "item"),
            reml=False,
            target="faster than every peer; >= 20x lme4",
            max_repeat=3,
            tools=("mixedmodels", "lme4", "glmm", "mixedlm"),
            tool_timeout={"lme4": 1800.0, "mixedlm": 900.0, "glmm": 900.0},
        ),
        Case(
            "bootstrap_sleepstudy",
            "1000-replicate parametric bootstrap of sleepstudy `(Days | Subject)`",
            _dataset("sleepstudy"),
            "Reaction ~ Days + (Days | Subject)",
            ("Subject",),
            mode="bootstrap",
            nsim=1000,
            target="<= 5 s; faster than lme4 and the peers",
            max_repeat=3,
            tools=("mixedmodels", "lme4", "mixedlm"),
        ),
        Case(
            "glmer_cbpp",
            "glmer cbpp `cbind(incidence, size - incidence) ~ period + (1 | herd)`, binomial",
            _dataset("cbpp"),
            "cbind(incidence, size - incidence) ~ period + (1 | herd)",
            ("herd", "period"),
            family="binomial",
            target=">= 5x lme4",
            tools=("mixedmodels", "lme4", "glmm", "mixedlm"),
            group="glmm",
        ),
        Case(
            "glmer_verbagg",
            "glmer VerbAgg `r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)`, binomial",
            _dataset("VerbAgg"),
            "r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)",
            ("id", "item", "Gender", "btype", "situ", "r2"),
            family="binomial",
            target=">= 5x lme4",
            max_repeat=3,
            tools=("mixedmodels", "lme4", "glmm", "mixedlm"),
            group="glmm",
        ),
        Case(
            "bootstrap_cbpp",
            "200-replicate parametric bootstrap of the cbpp binomial GLMM",
            _dataset("cbpp"),
            "cbind(incidence, size - incidence) ~ period + (1 | herd)",
            ("herd", "period"),
            family="binomial",
            mode="bootstrap",
            nsim=200,
            target="faster than lme4",
            max_repeat=3,
            tools=("mixedmodels", "lme4"),
            group="glmm",
        ),
    ]
    cases += [
        Case(
            "bayes_sleepstudy",
            "Bayesian sleepstudy `Reaction ~ Days + (Days | Subject)`, 4 chains x 1000 draws "
            "(1000 tuning)",
            _dataset("sleepstudy"),
            "Reaction ~ Days + (Days | Subject)",
            ("Subject",),
            mode="bayes",
            target=">= 2x Bambi's ESS per second",
            max_repeat=1,
            tools=("mixedmodels", "bambi"),
            group="bayes",
        ),
        Case(
            "bayes_politeness",
            "Bayesian politeness-like crossed design `frequency ~ gender + attitude + "
            "(attitude | subject) + (attitude | scenario)`, 4 chains x 1000 draws (1000 tuning)",
            _politeness,
            "frequency ~ gender + attitude + (attitude | subject) + (attitude | scenario)",
            ("subject", "gender", "scenario", "attitude"),
            mode="bayes",
            target=">= 2x Bambi's ESS per second",
            max_repeat=1,
            tools=("mixedmodels", "bambi"),
            group="bayes",
        ),
    ]
    for n in (10_000, 100_000, 1_000_000, 10_000_000):
        cases.append(
            Case(
                f"scaling_{n:.0e}".replace("+0", "").replace("+", ""),
                f"crossed 100 x 20 levels, {n:,} rows, `y ~ x + (1 | A) + (1 | B)`, REML",
                _crossed(n, 100, 20, seed=23),
                "y ~ x + (1 | A) + (1 | B)",
                ("A", "B"),
                target="time per evaluation flat in n (within 20%)",
                max_repeat=3 if n <= 1_000_000 else 1,
                tools=(
                    ("mixedmodels", "lme4", "glmm", "mixedlm")
                    if n <= 1_000_000
                    else ("mixedmodels",)
                ),
                tool_timeout={"lme4": 600.0, "mixedlm": 600.0, "glmm": 600.0},
                group="scaling",
            )
        )  # fmt: skip
    cases.append(
        Case(
            "ratings_10m",
            "ratings, 10M rows, 100k users x 5k items (power-law), "
            "`y ~ 1 + (1 | user) + (1 | item)`, REML",
            _ratings(),
            "y ~ 1 + (1 | user) + (1 | item)",
            ("user", "item"),
            target="<= 3 min, <= 6 GiB",
            max_repeat=1,
            tools=("mixedmodels",),
            group="large",
        )
    )
    # the first fit after installing: import and fit in a fresh process with an empty
    # compilation cache, then in a new session (see drivers/ours.py)
    for key, what, data, formula, factors, family in (
        ("sleepstudy", "lmer `Reaction ~ Days + (Days | Subject)`", "sleepstudy",
         "Reaction ~ Days + (Days | Subject)", ("Subject",), "gaussian"),
        ("penicillin", "lmer `diameter ~ 1 + (1 | plate) + (1 | sample)`", "Penicillin",
         "diameter ~ 1 + (1 | plate) + (1 | sample)", ("plate", "sample"), "gaussian"),
        ("cbpp", "glmer `cbind(incidence, size - incidence) ~ period + (1 | herd)`", "cbpp",
         "cbind(incidence, size - incidence) ~ period + (1 | herd)", ("herd", "period"),
         "binomial"),
    ):  # fmt: skip
        cases.append(
            Case(
                f"first_fit_{key}",
                f"first fit after installing (empty compilation cache), {what}",
                _dataset(data),
                formula,
                factors,
                family=family,
                mode="first",
                max_repeat=1,
                tools=("mixedmodels",),
                group="first",
            )
        )
    return {c.name: c for c in cases}


CASES = _cases()
