"""Run the benchmark grid: every point in a pool of spawned one-thread worker processes, each
finished point appended to the results at once, so an interrupted run resumes where it stopped.

    rows = run_grid(load_grid("configs/benchmark/grid.yaml"), "docs/results/benchmark", jobs=2)

The results folder holds ``results.jsonl`` (one JSON object per finished point; the source of
truth, floats exactly as computed) and ``results.csv`` (the same rows, for a spreadsheet). Both
are rewritten whole after every point through ``files.atomic_write``: a kill leaves the old
file or the new one, never a torn row. A row holds the point's ``KEY`` columns (domain, seed,
the configuration, the protocol, the split), its scores and seconds, and how it was made:
``command`` (the exact command line), ``commit`` (git, "+dirty" when tracked files differed),
``cpu`` (``machine.cpu_name``), ``torch`` (its version) and ``threads`` (1).

A point whose ``KEY`` values are already in ``results.jsonl`` is skipped; a point of a changed
protocol (steps, lr, ...) is another key and runs. The domains are rendered first when missing
(``data.benchmark_sets.ensure_benchmark_domain``), in this process, before any worker starts.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from ...data.benchmark_sets import ensure_benchmark_domain
from ...files import atomic_write, remove_orphans
from ...machine import cpu_name
from .grid import KEY, BenchmarkPoint, Grid, key_of, run_point

__all__ = [
    "JSONL",
    "CSV",
    "PROVENANCE",
    "select_points",
    "read_rows",
    "write_rows",
    "git_commit",
    "run_grid",
]

JSONL, CSV = "results.jsonl", "results.csv"
#: How a row was made (beside KEY and the scores).
PROVENANCE = ("command", "commit", "cpu", "torch", "threads")
_REPO = Path(__file__).resolve().parents[3]


def select_points(
    grid: Grid, domains: Iterable[str] | None = None, seeds: int | None = None
) -> list[BenchmarkPoint]:
    """The grid's points, restricted to ``domains`` and to each domain's first ``seeds`` seeds."""
    wanted = list(domains) if domains else list(grid.domains)
    unknown = [d for d in wanted if d not in grid.domains]
    if unknown:
        raise ValueError(f"domain(s) {unknown} not in the grid (it has {list(grid.domains)})")
    fewest = min(len(grid.seeds_of(d)) for d in wanted)
    if seeds is not None and not 1 <= seeds <= fewest:
        raise ValueError(f"seeds={seeds}: expected 1..{fewest} (the seeds of {wanted}: "
                         f"{ {d: list(grid.seeds_of(d)) for d in wanted} })")  # fmt: skip
    kept = {d: set(grid.seeds_of(d)[: seeds or len(grid.seeds_of(d))]) for d in wanted}
    return [p for p in grid.points() if p.domain in kept and p.seed in kept[p.domain]]


def read_rows(folder: str | os.PathLike) -> list[dict[str, Any]]:
    """The rows of ``folder/results.jsonl`` (none when it is missing); a file that is not UTF-8
    or a line that is not a JSON object with every KEY column is a ValueError naming the file
    (and line). JSON only: nothing in the file can run code."""
    path = Path(folder) / JSONL
    if not path.is_file():
        return []
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path} is not UTF-8 text (JSON lines): {exc}") from None
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{number} is not a JSON line: {exc}") from None
        missing = [k for k in KEY if not isinstance(row, dict) or k not in row]
        if missing:
            raise ValueError(f"{path}:{number} lacks the columns {missing} (a row holds {KEY})")
        rows.append(row)
    return rows


def write_rows(folder: str | os.PathLike, rows: Sequence[Mapping[str, Any]]) -> None:
    """``results.jsonl`` and ``results.csv`` in ``folder``, each replaced atomically."""
    folder = Path(folder)
    text = "".join(json.dumps(dict(row)) + "\n" for row in rows)
    atomic_write(folder / JSONL, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    table = pd.DataFrame(list(rows))
    atomic_write(folder / CSV, lambda tmp: table.to_csv(tmp, index=False))


def git_commit() -> str:
    """The repository's HEAD commit, with "+dirty" when tracked files differ; "unknown" when
    there is no git or no repository."""

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=_REPO, capture_output=True, text=True,
                              check=True).stdout.strip()  # fmt: skip

    try:
        head = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def _one_thread() -> None:
    """Worker initialiser: one torch thread per process (float sums in a fixed order)."""
    torch.set_num_threads(1)


def run_grid(
    points: Sequence[BenchmarkPoint],
    out: str | os.PathLike,
    jobs: int = 2,
    data: str | os.PathLike | None = None,
    command: str = "",
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Run every point of ``points`` not yet in ``out``'s results; returns all rows.

    ``jobs`` worker processes (spawned, one torch thread each; 1: in this process). ``data``:
    the folder holding ``<domain>/`` (default ``domains.domain_root``). A point that fails is
    logged and left out (a re-run retries it); a RuntimeError after the others finished says
    how many failed.
    """
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be an integer >= 1, got {jobs!r}")
    out = Path(out)
    remove_orphans(out)  # a results write killed last time
    rows = read_rows(out)
    done = {key_of(r) for r in rows}
    todo = [p for p in points if key_of(p.columns()) not in done]
    log(f"{len(points) - len(todo)} of {len(points)} points already in {out / JSONL}; "
        f"{len(todo)} to run with {jobs} process(es)")  # fmt: skip
    if not todo:
        return rows
    roots = {}
    for domain in dict.fromkeys(p.domain for p in todo):
        roots[domain] = ensure_benchmark_domain(domain, Path(data) / domain if data else None)
    made = {"command": command, "commit": git_commit(), "cpu": cpu_name(),
            "torch": torch.__version__, "threads": 1}  # fmt: skip
    start, failed = time.perf_counter(), []
    for number, (point, result) in enumerate(_results(todo, roots, jobs), 1):
        try:
            row = result()
        except Exception as exc:  # one bad point must not lose the others
            failed.append(point)
            log(f"FAILED {point.label()} on {point.domain} seed {point.seed}: {exc!r}")
            continue
        rows.append({**row, **made})
        write_rows(out, rows)
        left = (time.perf_counter() - start) / number * (len(todo) - number) / 60
        log(f"[{number}/{len(todo)}] {point.label()} {point.domain} seed {point.seed}: "
            f"mIoU {row['miou']:.4f}, DSC {row['mdsc']:.4f} ({row['seconds']:.0f} s; "
            f"~{left:.0f} min left)")  # fmt: skip
    if failed:
        raise RuntimeError(f"{len(failed)} of {len(todo)} points failed (logged above); "
                           f"re-run the same command to retry them")  # fmt: skip
    return rows


def _results(
    todo: Sequence[BenchmarkPoint], roots: Mapping[str, Path], jobs: int
) -> Iterator[tuple[BenchmarkPoint, Callable[[], dict[str, Any]]]]:
    """(point, a call returning its row or raising its error), in the order they finish."""
    if jobs == 1:  # run_point itself holds torch to one thread
        for point in todo:
            yield point, partial(run_point, point, roots[point.domain])
        return
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(jobs, mp_context=context, initializer=_one_thread) as pool:
        futures = {pool.submit(run_point, p, roots[p.domain]): p for p in todo}
        for future in as_completed(futures):
            yield futures[future], future.result
