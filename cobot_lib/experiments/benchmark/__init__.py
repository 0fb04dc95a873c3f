"""The powered miniature benchmark (issue 15): Tables 1-3, Fig. 5 and Table 4's rows on the
synthetic domains (``data.domains``) and Table 4 on the two real demo sets
(``data.benchmark_sets``), 5 or more seeds, paired 95% t-intervals.

    python -m cobot_lib.experiments.benchmark run --out docs/results/benchmark --jobs 2
    python -m cobot_lib.experiments.benchmark report --results docs/results/benchmark \
        --out docs/results/benchmark.md

``grid``: the grid file, one point (a PeftConfig on a domain with a seed), one run;
``runner``: the whole grid in worker processes, resumable; ``report``: the tables with
intervals, verdicts and the paper's numbers; ``cli``: the command line.
"""

from .grid import (
    KEY,
    ROW_KEYS,
    BenchmarkPoint,
    DomainProtocol,
    Grid,
    index_rows,
    key_of,
    load_grid,
    point_config,
    run_point,
)
from .paper import PAPER_TABLE4
from .report import comparisons, forest_data, markdown_report
from .runner import JSONL, read_rows, run_grid, select_points

__all__ = [
    "KEY",
    "ROW_KEYS",
    "BenchmarkPoint",
    "DomainProtocol",
    "Grid",
    "index_rows",
    "key_of",
    "load_grid",
    "point_config",
    "run_point",
    "JSONL",
    "read_rows",
    "run_grid",
    "select_points",
    "PAPER_TABLE4",
    "comparisons",
    "forest_data",
    "markdown_report",
]
