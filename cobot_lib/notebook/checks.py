"""The checks a notebook asserts about its results, with messages that say which key failed.

A bare ``assert FINAL == ZERO, (FINAL, ZERO)`` prints two dicts and leaves the reader to find
the difference; these name it:

    check_same(FINAL, ZERO, "scores without a training step", ("final", "zero-shot"))
    check_gain(FINAL, ZERO, keys=("miou", "mdsc"))
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from ..experiments.benchmark import Grid, index_rows
from ..experiments.benchmark.report import seed_scores
from ..peft import differing_keys

__all__ = ["check_same", "check_gain", "check_intervals"]


def check_same(
    got: Mapping[str, Any], expected: Mapping[str, Any], what: str, names: tuple[str, str]
) -> None:
    """AssertionError naming every key whose value differs (nested keys dotted)."""
    if dict(got) != dict(expected):
        raise AssertionError(f"{what} differ: {differing_keys(got, expected, names)}")


def check_gain(
    final: Mapping[str, float],
    baseline: Mapping[str, float],
    keys: Sequence[str] = ("miou", "mdsc"),
    names: tuple[str, str] = ("adapted", "zero-shot"),
) -> None:
    """AssertionError naming each of ``keys`` where ``final`` is not above ``baseline``."""
    missing = [k for k in keys if k not in final or k not in baseline]
    if missing:
        raise AssertionError(f"scores lack {missing} (have {sorted(final)} and {sorted(baseline)})")
    worse = [
        f"{k}: {final[k]:.4f} ({names[0]}) <= {baseline[k]:.4f} ({names[1]})"
        for k in keys
        if not final[k] > baseline[k]
    ]
    if worse:
        raise AssertionError(f"{names[0]} does not beat {names[1]} on: " + "; ".join(worse))


def check_intervals(
    table: pd.DataFrame, rows: Sequence[Mapping[str, Any]], grid: Grid, tol: float = 1e-9
) -> int:
    """Recompute every paired difference, 95% interval and p-value of ``table`` (the rows of
    ``benchmark.report.comparisons``) from the raw results ``rows`` with scipy's own tests
    (``ttest_rel``), an oracle independent of
    ``experiments.statistics``. Returns how many were checked; AssertionError naming the first
    comparison that differs."""
    index = index_rows(rows)
    checked = 0
    for _, r in table[table["n"] >= 2].iterrows():
        specs = grid.tables[r["table"]]
        row = seed_scores(index, grid, r["domain"], specs[r["grid_row"]])
        ref = seed_scores(index, grid, r["domain"], next(iter(specs.values())))
        seeds = sorted(set(row.index) & set(ref.index))
        a, b = row[seeds].to_numpy(), ref[seeds].to_numpy()
        test = stats.ttest_rel(a, b)  # against Freeze b is constant: a one-sample test of a - b
        ci = test.confidence_interval(0.95)
        ours = (r["d"], r["low"], r["high"], r["p"])
        theirs = (float(np.mean(a - b)), float(ci.low), float(ci.high), float(test.pvalue))
        close = [
            math.isclose(x, y, rel_tol=tol, abs_tol=tol) for x, y in zip(ours, theirs, strict=True)
        ]
        if not all(close):
            raise AssertionError(f"{r['domain']} / {r['table']} / {r['grid_row']}: d, low, high, "
                                 f"p = {ours}, scipy says {theirs}")  # fmt: skip
        checked += 1
    return checked
