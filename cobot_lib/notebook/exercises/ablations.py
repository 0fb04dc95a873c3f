"""Solutions to the exercises of notebook 05 (ablations), on the stored grid."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from ...experiments.ablation_report import TABLE1, table_comparison
from ...experiments.ablations import GRID_STEPS, read_results

GRID = "docs/results/ablations_demo.csv"


def _paired(dataset: str):
    table = read_results(GRID)
    grid = table[(table["steps"] == GRID_STEPS) & (table["checkpoint"] == "foundation")]
    metric = "mdsc" if dataset == "demo:mri" else "miou"
    by_seed = {}
    for name in ("Adaptformer", "+CoS+RM+HL"):
        spec = replace(TABLE1[name], dataset=dataset, steps=GRID_STEPS)
        rows = grid[(grid["method"] == spec.method) & (grid["dataset"] == dataset)
                    & (grid["cobot"].astype(str).str.lower() == str(spec.cobot).lower())
                    & (grid["rank"] == spec.rank)]  # fmt: skip
        if spec.cobot:
            for switch in ("coefficient_sets", "relation", "head"):
                rows = rows[rows[switch] == getattr(spec, switch)]
        by_seed[name] = rows.set_index("seed")[metric] * 100
    return grid, (by_seed["+CoS+RM+HL"] - by_seed["Adaptformer"]).dropna()


def exercise_1() -> str:
    """d and se of full COBOT vs Adaptformer on demo:nuclei, by hand, equal the table's."""
    grid, diff = _paired("demo:nuclei")
    d, se = diff.mean(), diff.std(ddof=1) / math.sqrt(len(diff))
    row = table_comparison(grid, 1).query("dataset == 'demo:nuclei' and row == '+CoS+RM+HL'")
    assert np.isclose(row["d"].item(), d) and np.isclose(row["se"].item(), se)
    return f"d = {d:+.2f} points, se = {se:.2f} over {len(diff)} seeds (as the table says)"


def exercise_2() -> str:
    """Seeds needed before that d is beyond 2 se, if the spread stays: n > (2 sd / d)²."""
    _, diff = _paired("demo:nuclei")
    d, sd = diff.mean(), diff.std(ddof=1)
    needed = math.floor((2 * sd / d) ** 2) + 1
    assert abs(d) > 2 * sd / math.sqrt(needed) and abs(d) <= 2 * sd / math.sqrt(needed - 1)
    return f"about {needed} seeds (sd of the paired differences {sd:.2f}, d {d:+.2f})"
