"""The walkthrough: execute every notebook with its default parameters, export HTML, summarise.

    python -m cobot_lib.walkthrough [--out runs/walkthrough] [--only 01,02] [--skip-html]
                                    [--jobs N] [--book runs/book | --skip-book]

This is what the README's ``python3 workbook.py run`` does after the set-up and the tiny
foundation model. For each ``notebooks/NN_*.ipynb`` in reading order it

1. executes the notebook with papermill and its *default* parameters (nothing is injected), with
   the notebook's own folder as working directory (as JupyterLab and nbval run it), writing the
   executed copy to ``<out>/NN_*.ipynb``;
2. exports that copy to ``<out>/NN_*.html``; plotly figures, stored as plotly mime bundles (small,
   interactive in JupyterLab, but dropped by nbconvert), are rendered as plotly divs that load
   ``<out>/plotly.min.js`` (written once), so the HTML files work offline;
3. reports progress: which notebook, time elapsed, and an estimate of the time remaining (each
   notebook's expected time is the duration stored in its committed outputs, scaled by how much
   slower or faster the notebooks finished so far ran than their stored durations); while a
   notebook runs, a heartbeat line every ``--heartbeat`` seconds names the cell being executed.

At the end it writes ``<out>/summary.md`` and ``<out>/summary.csv`` (notebook, status, seconds,
output paths, error), builds the HTML book of the executed notebooks (``--book``, default
``runs/book``; ``cobot_lib.notebook.book``: offline, navigation, interactive figures where
JavaScript runs and static pictures where not) and says how to work interactively
(``jupyter lab notebooks/``). Appendix notebooks (``A1_*.ipynb``) run after the numbered ones.

Notebooks are independent, so ``--jobs N`` runs N at once in worker processes (default: one per
free CPU, each kernel with one torch thread; ``choose_jobs``); progress lines say which started
and finished, and the summary keeps reading order.

A failing notebook does not stop the walkthrough: the failure (notebook, cell, error) is
reported at once and in the summary, its executed copy and HTML still show the traceback, the
remaining notebooks run, and the exit status is 1. (Later notebooks do not depend on earlier
ones' outputs, so the rest of the walkthrough stays meaningful.) Bad arguments exit with 2;
Ctrl-C writes the summary of what ran and exits with 130.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path

import nbformat

from ..machine import available_cpus, busy_cpus, choose_threads
from .book import BookError, build_book
from .execution import NotebookResult, fmt_seconds, run_one, say, shown

__all__ = [
    "NotebookResult",
    "WalkthroughError",
    "choose_jobs",
    "discover",
    "estimate_remaining",
    "expected_seconds",
    "main",
    "run",
    "run_one",
]

REPO = Path(__file__).resolve().parents[2]
DEFAULT_SECONDS = 60.0  # expected time of a notebook with no stored duration and nothing measured
PRIOR_SECONDS = 60.0  # how much measured time it takes to trust the measured speed-up


class WalkthroughError(ValueError):
    """Bad arguments: a missing folder, no notebooks, an --only that selects nothing."""


# --- which notebooks, and how long they should take -------------------------------------------


def discover(folder: Path, only: Sequence[str] = ()) -> list[Path]:
    """The numbered notebooks ``NN_*.ipynb`` of ``folder`` in reading order, then the
    appendices ``A1_*.ipynb``.

    ``only`` selects by number ("01", "1"), appendix label ("A1") or file stem; a selector that
    matches nothing is an error naming it and the notebooks that exist.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise WalkthroughError(f"notebook folder {folder} does not exist")
    numbered = sorted(p for p in folder.glob("[0-9]*.ipynb") if p.is_file())
    found = numbered + sorted(p for p in folder.glob("[A-Z][0-9]*_*.ipynb") if p.is_file())
    if not found:
        raise WalkthroughError(f"no numbered notebooks (NN_name.ipynb) in {folder}")
    if not only:
        return found

    def number(text: str) -> str:
        return text.split("_", 1)[0].lstrip("0") or "0"

    chosen: list[Path] = []
    for sel in only:
        hits = [
            p
            for p in found
            if sel in (p.stem, p.stem.split("_", 1)[0])
            or (sel.isdigit() and number(sel) == number(p.stem))
        ]
        if not hits:
            names = ", ".join(p.stem for p in found)
            raise WalkthroughError(
                f"--only {sel!r} matches no notebook in {folder} (there are: {names})"
            )
        chosen += [p for p in hits if p not in chosen]
    return [p for p in found if p in chosen]


def _parse_time(value: object) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def expected_seconds(path: Path) -> float | None:
    """How long the stored run of a notebook took, from its metadata, or None if unknown.

    papermill stores ``metadata.papermill.duration``; nbclient (``nbconvert --execute``) stores
    per-cell ``execution`` timestamps, whose span is used instead.
    """
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception:  # an unreadable notebook fails later, with papermill's message
        return None
    duration = nb.metadata.get("papermill", {}).get("duration")
    if isinstance(duration, (int, float)) and duration > 0:
        return float(duration)
    starts, ends = [], []
    for cell in nb.cells:
        timing = cell.get("metadata", {}).get("execution", {})
        start = _parse_time(timing.get("iopub.execute_input") or timing.get("shell.execute_reply"))
        end = _parse_time(timing.get("shell.execute_reply"))
        if start and end:
            starts.append(start)
            ends.append(end)
    if starts:
        span = (max(ends) - min(starts)).total_seconds()
        return span if span > 0 else None
    return None


def estimate_remaining(
    done: Sequence[tuple[float | None, float]], pending: Sequence[float | None]
) -> float:
    """Seconds still to go for the ``pending`` notebooks (their expected seconds or None).

    ``done`` holds (expected, actual) seconds of the finished ones. The stored durations are
    scaled by (sum(actual) + PRIOR) / (sum(expected) + PRIOR) over the finished notebooks that
    had one: this machine's speed and load relative to the run that stored them, shrunk towards
    1 until about PRIOR seconds have been measured (a 4 s notebook that took 7 s because of the
    kernel's start says little about a 40 s one). A pending notebook with no stored duration
    counts as the mean actual time so far (or DEFAULT_SECONDS before any).
    """
    pairs = [(e, a) for e, a in done if e]
    scale = (sum(a for _, a in pairs) + PRIOR_SECONDS) / (sum(e for e, _ in pairs) + PRIOR_SECONDS)
    unknown = sum(a for _, a in done) / len(done) if done else DEFAULT_SECONDS
    return sum(e * scale if e else unknown for e in pending)


# --- the walkthrough ----------------------------------------------------------------------------


def write_summary(results: Sequence[NotebookResult], out: Path, total: float) -> None:
    """``summary.csv`` and ``summary.md`` in ``out``."""
    columns = ["notebook", "status", "seconds", "executed", "html", "error"]
    with (out / "summary.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for r in results:
            writer.writerow([r.notebook, r.status, f"{r.seconds:.1f}", r.executed, r.html, r.error])
    ok = sum(r.status == "ok" for r in results)
    lines = [
        "# Walkthrough summary",
        "",
        f"{ok} of {len(results)} notebooks ran without error in {fmt_seconds(total)} "
        f"({dt.datetime.now().astimezone().isoformat(timespec='seconds')}).",
        "",
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * len(columns),
    ]
    for r in results:
        cells = [r.notebook, r.status, f"{r.seconds:.1f}", r.executed, r.html, r.error]
        lines.append(
            "| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |"
        )
    (out / "summary.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def choose_jobs(requested: int | None, count: int) -> tuple[int, int]:
    """(notebooks run at once, torch threads per notebook kernel).

    By default as many notebooks as there are free CPUs (``cobot_lib.machine``: affinity, cgroup
    quota, minus what other processes keep busy), each kernel with one thread: on 2 free cores
    two notebooks with one thread each finish sooner than one after the other with two, and
    never oversubscribe. ``$COBOT_THREADS`` / ``$OMP_NUM_THREADS``, when set, are the whole run's
    thread budget and are shared among the jobs.
    """
    if requested is not None and requested < 1:
        raise WalkthroughError(f"--jobs {requested}: expected a positive whole number")
    budget = choose_threads()
    free = max(1, available_cpus() - round(busy_cpus()))
    jobs = max(1, min(count, requested or min(free, budget)))
    return jobs, max(1, budget // jobs)


def _announce(i: int, n: int, path: Path, t0: float, remaining: float | None = None) -> None:
    """The '[i/n] name: starting' line (``t0``: the walkthrough's start, wall-clock seconds)."""
    estimate = "" if remaining is None else f", estimated remaining ~{fmt_seconds(remaining)}"
    say(f"[{i + 1}/{n}] {path.name}: starting (elapsed {fmt_seconds(time.time() - t0)}{estimate})")


def _run_numbered(
    i: int, n: int, path: Path, out: Path, html: bool, heartbeat: float, t0: float
) -> NotebookResult:
    """A worker process's job: announce notebook ``i`` of ``n``, then ``run_one``."""
    _announce(i, n, path, t0)
    return run_one(path, out, html, heartbeat)


def run(
    notebooks: Sequence[Path],
    out: Path,
    html: bool = True,
    heartbeat: float = 30.0,
    jobs: int = 1,
) -> list[NotebookResult]:
    """Execute, export and summarise ``notebooks`` into ``out``; progress goes to stdout.

    ``jobs`` > 1 runs that many notebooks at once in worker processes, longest expected first
    (the shortest overall time for independent jobs of known length); the summary keeps reading
    order. The caller sets the kernels' threads (``main`` does, through ``$COBOT_THREADS``).
    """
    out.mkdir(parents=True, exist_ok=True)
    expected = [expected_seconds(p) for p in notebooks]
    start, t0 = time.perf_counter(), time.time()
    done: list[tuple[float | None, float]] = []
    results: dict[int, NotebookResult] = {}
    n = len(notebooks)
    at_once = f", {jobs} at a time" if jobs > 1 else ""
    say(
        f"{n} notebooks -> {shown(out)}; estimated "
        f"{fmt_seconds(estimate_remaining([], expected) / jobs)} (from their stored run times"
        f"{at_once})"
    )

    def finished(i: int, result: NotebookResult) -> None:
        results[i] = result
        done.append((expected[i], result.seconds))
        pending = [expected[j] for j in range(n) if j not in results]
        left = estimate_remaining(done, pending) / jobs
        tail = f"estimated remaining ~{fmt_seconds(left)}" if pending else "last one"
        name = notebooks[i].name
        if result.status == "ok":
            say(f"[{i + 1}/{n}] {name}: ok in {fmt_seconds(result.seconds)}; {tail}")
            return
        say(f"[{i + 1}/{n}] {name}: FAILED after {fmt_seconds(result.seconds)} "
            f"at {result.error}; {tail}")  # fmt: skip
        if result.executed:
            more = "; continuing with the rest" if pending else ""
            say(f"    the traceback is in {result.executed}{more}")

    try:
        if jobs == 1:
            for i, path in enumerate(notebooks):
                _announce(i, n, path, t0, estimate_remaining(done, expected[i:]))
                finished(i, run_one(path, out, html, heartbeat))
        else:
            _run_parallel(notebooks, out, html, heartbeat, jobs, expected, t0, finished)
    except KeyboardInterrupt:
        say("interrupted; the summary lists what ran")
    ordered = [results.get(i, NotebookResult(p.stem, status="interrupted"))
               for i, p in enumerate(notebooks)]  # fmt: skip
    write_summary(ordered, out, time.perf_counter() - start)
    return ordered


def _run_parallel(
    notebooks: Sequence[Path],
    out: Path,
    html: bool,
    heartbeat: float,
    jobs: int,
    expected: Sequence[float | None],
    t0: float,
    finished: Callable[[int, NotebookResult], None],
) -> None:
    """``run``'s parallel branch: a pool of ``jobs`` spawned workers, longest notebook first."""
    n = len(notebooks)
    order = sorted(range(n), key=lambda i: -(expected[i] or DEFAULT_SECONDS))
    pool = ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"))
    futures: dict[Future, int] = {
        pool.submit(_run_numbered, i, n, notebooks[i], out, html, heartbeat, t0): i for i in order
    }
    try:
        pending = set(futures)
        while pending:
            ready, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in sorted(ready, key=futures.__getitem__):
                i = futures[future]
                try:
                    result = future.result()
                except Exception as err:  # the worker died (killed, out of memory)
                    error = f"worker: {type(err).__name__}: {err}"
                    result = NotebookResult(notebooks[i].stem, "failed", error=error)
                finished(i, result)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def _jupyter_hint() -> str:
    jupyter = Path(sys.executable).parent / "jupyter"
    return f"{shown(jupyter) if jupyter.is_file() else 'jupyter'} lab notebooks/"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cobot_lib.walkthrough",
        description="Execute the numbered notebooks with their default parameters, export HTML "
        "and write a summary table. A failing notebook is reported and the rest still run; "
        "the exit status is then 1.",
    )
    parser.add_argument("--out", default="runs/walkthrough", help="output folder")
    parser.add_argument("--only", default="", help="comma-separated numbers or stems, e.g. 01,02")
    parser.add_argument("--skip-html", action="store_true", help="do not export HTML")
    parser.add_argument(
        "--notebooks", default=str(REPO / "notebooks"), help="folder of NN_*.ipynb notebooks"
    )
    parser.add_argument(
        "--heartbeat", type=float, default=30.0, help="seconds between progress lines (0: none)"
    )
    parser.add_argument(
        "--jobs", type=int, help="notebooks at once (default: the free CPUs, one thread each)"
    )
    parser.add_argument("--book", default="runs/book", help="folder of the HTML book (replaced)")
    parser.add_argument("--skip-book", action="store_true", help="do not build the HTML book")
    args = parser.parse_args(argv)
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    try:
        notebooks = discover(Path(args.notebooks), only)
    except WalkthroughError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        jobs, threads = choose_jobs(args.jobs, len(notebooks))
    except (WalkthroughError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = Path(args.out)
    start = time.perf_counter()
    kernels = {"COBOT_THREADS": str(threads)} if jobs > 1 else {}
    saved = {k: os.environ.get(k) for k in kernels}
    os.environ.update(kernels)  # the kernels inherit it through the workers
    try:
        results = run(notebooks, out, html=not args.skip_html, heartbeat=args.heartbeat, jobs=jobs)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    failed = [r for r in results if r.status != "ok"]
    say(f"done in {fmt_seconds(time.perf_counter() - start)}; summary: {shown(out / 'summary.md')}")
    for line in (out / "summary.md").read_text(encoding="utf-8").splitlines()[4:]:
        print(line)
    if failed:
        say(
            f"{len(failed)} notebook(s) FAILED: "
            + "; ".join(f"{r.notebook} at {r.error}" for r in failed)
        )
    interrupted = any(r.status == "interrupted" for r in results)
    book_failed = False
    if not (args.skip_book or interrupted):
        book_failed = not _book(results, Path(args.book))
    say(f"to work interactively: {_jupyter_hint()}")
    if interrupted:
        return 130
    return 1 if failed or book_failed else 0


def _book(results: Sequence[NotebookResult], folder: Path) -> bool:
    """Build the book of every executed copy (a failed notebook shows its traceback there)."""
    executed = [Path(r.executed) for r in results if r.executed]
    if not executed:
        return True
    say(f"building the book of {len(executed)} executed notebooks -> {shown(folder)}")
    try:
        book = build_book(executed, folder)
    except BookError as err:
        say(f"the book FAILED: {err}")
        return False
    say(f"book: {shown(book.index)} ({book.figures} figures, {book.seconds:.0f} s); "
        "open it in a browser")  # fmt: skip
    return True


if __name__ == "__main__":
    sys.exit(main())
