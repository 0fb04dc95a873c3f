"""The benchmark's command line: ``run`` the grid (resumable), write its ``report``.

python -m cobot_lib.experiments.benchmark run [--grid configs/benchmark/grid.yaml]
    [--out docs/results/benchmark] [--jobs 2] [--only-domain D ...] [--seeds N] [--data DIR]
python -m cobot_lib.experiments.benchmark report [--results docs/results/benchmark]
    [--grid ...] [--out docs/results/benchmark.md]
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from ...files import atomic_write, resolve_path
from .grid import load_grid
from .report import markdown_report
from .runner import JSONL, read_rows, run_grid, select_points

__all__ = ["GRID", "PROGRAM", "main"]

GRID = "configs/benchmark/grid.yaml"
PROGRAM = "python -m cobot_lib.experiments.benchmark"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROGRAM, description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run every point not yet in the results")
    run.add_argument("--grid", default=GRID, help="the grid file (YAML)")
    run.add_argument("--out", default="docs/results/benchmark", help="results folder")
    run.add_argument("--jobs", type=int, default=2, help="worker processes, one thread each")
    run.add_argument("--only-domain", nargs="+", default=None, metavar="D", help="these domains")
    run.add_argument("--seeds", type=int, default=None, metavar="N", help="the first N seeds")
    run.add_argument("--data", default=None, help="folder of <domain>/ (default: data dir)")
    report = commands.add_parser("report", help="the markdown report of a results folder")
    report.add_argument("--results", default="docs/results/benchmark", help="results folder")
    report.add_argument("--grid", default=GRID, help="the grid file the results were run from")
    report.add_argument("--out", default="docs/results/benchmark.md", help="markdown file")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the grid or write the report; 2 with one line on stderr for a bad input."""
    argv = sys.argv[1:] if argv is None else argv
    args = _parser().parse_args(argv)
    command = f"{PROGRAM} {shlex.join(argv)}"
    try:
        grid = load_grid(resolve_path(args.grid))
        if args.command == "run":
            os.environ["OMP_NUM_THREADS"] = "1"  # inherited by the spawned workers
            points = select_points(grid, args.only_domain, args.seeds)
            rows = run_grid(points, args.out, args.jobs, args.data, command)
            print(f"{len(rows)} rows in {Path(args.out) / JSONL}")
            return 0
        folder = resolve_path(args.results)
        rows = read_rows(folder)
        if not rows:
            raise FileNotFoundError(f"no results in {folder / JSONL}; run `{PROGRAM} run` first")
        text = markdown_report(rows, grid, str(args.results), command)
        atomic_write(args.out, lambda tmp: tmp.write_text(text, encoding="utf-8"))
        print(f"report of {len(rows)} rows in {args.out}")
        return 0
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
