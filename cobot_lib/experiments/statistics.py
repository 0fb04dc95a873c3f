"""Paired, seed-matched comparisons with 95% t-intervals and a verdict per row (issue 15).

Runs with the same seed see the same images, in the same order, with the same box jitter and
dropout draws, so the benchmark compares a row with its reference *seed by seed*:
d_s = row_s - reference_s (in points, i.e. percent), over the seeds both have. With n seeds,
mean d, sample standard deviation s (ddof 1) and se = s / sqrt(n), the two-sided interval is

    d +- t_{(1 + c) / 2, n - 1} * se          (c = 0.95: the 97.5% quantile of Student's t)

and the two-sided p-value of "no difference" is 2 * P(T_{n-1} > |d| / se).

Verdict of a row, from its interval [low, high] and an equivalence bound x > 0 (points):

* "better" when low > 0, "worse" when high < 0 (the interval excludes zero);
* otherwise "no difference larger than +-x points" when -x < low and high < x (the whole
  interval lies inside the bound: with a 95% interval this is a two one-sided tests procedure
  at 2.5% each, slightly conservative);
* otherwise "undecided" (the interval holds zero and reaches beyond the bound: more seeds, or a
  lower seed-to-seed spread, would be needed).

Multiplicity. A table compares m rows with their references. Each 95% interval alone errs 5% of
the time; among m comparisons whose true differences are all zero, the chance that at least one
says "better" or "worse" is up to 1 - 0.95^m (independent) and at most 5 m % (Bonferroni). Two
readings keep it at 5% for the whole table: Bonferroni intervals (each at 1 - 0.05 / m; their
verdicts, ``family_verdict``) and Holm's step-down adjustment of the p-values (``holm``), which
rejects at least what Bonferroni rejects. ``compare`` reports both beside the per-row verdict.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

__all__ = [
    "Interval",
    "paired_differences",
    "t_interval",
    "verdict",
    "holm",
    "compare",
    "multiplicity_note",
]


@dataclass(frozen=True)
class Interval:
    """A mean difference with its t-interval: n seeds, mean, sd (ddof 1), se, [low, high], p."""

    n: int
    mean: float
    sd: float
    se: float
    low: float
    high: float
    p: float
    confidence: float

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


def paired_differences(
    row: Mapping[int, float] | pd.Series, reference: Mapping[int, float] | pd.Series
) -> np.ndarray:
    """row[s] - reference[s] for every seed s both hold, in seed order.

    A seed in only one of them is left out (it has no partner); no common seed is a ValueError.
    """
    row, reference = pd.Series(row, dtype=float), pd.Series(reference, dtype=float)
    for name, series in (("row", row), ("reference", reference)):
        if series.index.has_duplicates:
            raise ValueError(f"{name} holds a seed twice: {sorted(series.index)}")
    common = sorted(set(row.index) & set(reference.index))
    if not common:
        raise ValueError(
            f"no seed in common: row has {sorted(row.index)}, reference {sorted(reference.index)}"
        )
    return (row[common] - reference[common]).to_numpy(dtype=float)


def t_interval(differences: Sequence[float], confidence: float = 0.95) -> Interval:
    """Student's t interval of the mean of ``differences`` (at least 2 finite values)."""
    d = np.asarray(differences, dtype=float)
    if d.ndim != 1 or len(d) < 2 or not np.isfinite(d).all():
        raise ValueError(f"need at least 2 finite paired differences, got {d.tolist()}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    n, mean, sd = len(d), float(d.mean()), float(d.std(ddof=1))
    se = sd / math.sqrt(n)
    q = float(stats.t.ppf((1 + confidence) / 2, n - 1))
    if se == 0:  # every seed gave the same difference
        p = 1.0 if mean == 0 else 0.0
    else:
        p = float(2 * stats.t.sf(abs(mean) / se, n - 1))
    return Interval(n, mean, sd, se, mean - q * se, mean + q * se, p, confidence)


def verdict(interval: Interval, bound: float) -> str:
    """The row's verdict: better, worse, no difference larger than +-x points, or undecided."""
    if not bound > 0:
        raise ValueError(f"the equivalence bound must be > 0 points, got {bound}")
    if interval.low > 0:
        return "better"
    if interval.high < 0:
        return "worse"
    if -bound < interval.low and interval.high < bound:
        return f"no difference larger than +-{bound:g} points"
    return "undecided"


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error control), in the input order.

    Sorted ascending, p_(k) becomes max_{j <= k} min(1, (m - j + 1) p_(j)).
    """
    p = np.asarray(pvalues, dtype=float)
    m = len(p)
    order = np.argsort(p, kind="stable")
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    adjusted = np.empty(m)
    adjusted[order] = np.maximum.accumulate(scaled)
    return adjusted


def compare(
    scores: pd.DataFrame,
    reference: str,
    bound: float,
    confidence: float = 0.95,
    family: int | None = None,
) -> pd.DataFrame:
    """Every row of ``scores`` (index: row name, columns: seeds, values in points) against the
    row ``reference``, seed by seed.

    Columns: row, n, d (mean difference), sd, se, low, high, half_width, p, verdict; then the
    table-wide reading for ``family`` comparisons (default: the rows compared here): p_holm,
    low_bonf, high_bonf and family_verdict (the verdict of the Bonferroni interval at
    1 - (1 - confidence) / family).
    """
    if reference not in scores.index:
        raise ValueError(f"reference row {reference!r} not in {list(scores.index)}")
    others = [r for r in scores.index if r != reference]
    m = family or len(others)
    if m < len(others):
        raise ValueError(f"family={family} is smaller than the {len(others)} rows compared")
    wide = 1 - (1 - confidence) / m
    out = []
    for name in others:
        d = paired_differences(scores.loc[name].dropna(), scores.loc[reference].dropna())
        one, both = t_interval(d, confidence), t_interval(d, wide)
        out.append({
            "row": name, "n": one.n, "d": one.mean, "sd": one.sd, "se": one.se,
            "low": one.low, "high": one.high, "half_width": one.half_width, "p": one.p,
            "verdict": verdict(one, bound), "low_bonf": both.low, "high_bonf": both.high,
            "family_verdict": verdict(both, bound),
        })  # fmt: skip
    table = pd.DataFrame(out)
    if not table.empty:
        # comparisons of the family not given here count as p = 1: the largest Holm factors
        # then fall on these rows, the most conservative reading
        p = table["p"].to_numpy()
        adjusted = holm(np.append(p, np.ones(m - len(p))))[: len(p)]
        table.insert(table.columns.get_loc("verdict"), "p_holm", adjusted)
    return table


def multiplicity_note(m: int, confidence: float = 0.95) -> str:
    """One paragraph on how m comparisons affect the reading of a table's verdicts."""
    if m < 1:
        raise ValueError(f"a table makes at least one comparison, got {m}")
    alpha = 1 - confidence
    anyone = 1 - confidence**m
    return (
        f"This table makes {m} paired comparisons, each read from a {confidence:.0%} interval. "
        f"If no row truly differed from its reference, the chance that at least one verdict "
        f"still said 'better' or 'worse' would be {anyone:.0%} for independent comparisons "
        f"(at most {min(1.0, m * alpha):.0%}). The family-wise columns hold that chance at "
        f"{alpha:.0%} for the whole table: Bonferroni intervals at {1 - alpha / m:.2%} each "
        f"(family_verdict) and Holm-adjusted p-values (p_holm <= {alpha:g} is a decided "
        f"difference)."
    )
