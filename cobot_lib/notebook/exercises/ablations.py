"""Solutions to the exercises of notebook 05 (the powered benchmark), from the stored CSV alone."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

from ...experiments.benchmark import comparisons, load_grid, read_rows, report
from ...files import resolve_path

RESULTS = "docs/results/benchmark"
GRID = "configs/benchmark/grid.yaml"


def _paired(domain: str = "sonar") -> pd.DataFrame:
    """Full COBOT and plain Adaptformer (V = 16, the paper's initialisations) per seed, points."""
    runs = pd.read_csv(resolve_path(RESULTS) / "results.csv")
    runs = runs[(runs["domain"] == domain) & (runs["method"] == "adaptformer")
                & (runs["rank"] == 16) & (runs["down_init_scale"] == 1.0)]  # fmt: skip
    full = (runs["cobot"] & (runs["coefficient_sets"] == "dual")
            & (runs["relation"] == "learnable") & (runs["head"] == "hypercomplex")
            & (runs["head_init"] == "paper") & (runs["base_init"] == "ones"))  # fmt: skip
    metric = report.metric_of(domain)  # the results column: "mdsc" for ct and mri
    scores = {"cobot": runs[full].set_index("seed")[metric],
              "plain": runs[~runs["cobot"]].set_index("seed")[metric]}  # fmt: skip
    return 100 * pd.DataFrame(scores).dropna()


def exercise_1() -> str:
    """The paired d and 95% interval of +CoS+RM+HL vs Adaptformer on sonar, by pandas + scipy,
    equal Table 1's row of the notebook."""
    both = _paired("sonar")
    test = stats.ttest_rel(both["cobot"], both["plain"])
    d, ci = float((both["cobot"] - both["plain"]).mean()), test.confidence_interval(0.95)
    table = comparisons(read_rows(resolve_path(RESULTS)), load_grid(resolve_path(GRID)))
    row = table.query("domain == 'sonar' and table == 'table1' and grid_row == '+CoS+RM+HL'")
    assert np.allclose(row[["d", "low", "high"]].to_numpy()[0], [d, ci.low, ci.high])
    return f"d = {d:+.2f} points, 95% interval [{ci.low:+.2f}, {ci.high:+.2f}], {len(both)} seeds"


def exercise_2() -> str:
    """Seeds for a 95% half-width of 0.5 points at the same spread: the smallest n with
    t_{0.975, n-1} sd / sqrt(n) <= 0.5."""
    both = _paired("sonar")
    sd = float((both["cobot"] - both["plain"]).std(ddof=1))
    n = 2
    while stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n) > 0.5:
        n += 1
    z = stats.norm.ppf(0.975)  # the normal approximation asks for fewer seeds, never more
    assert n >= (z * sd / 0.5) ** 2 - 1
    return f"{n} seeds (sd of the paired differences {sd:.2f} points)"
