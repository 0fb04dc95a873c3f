"""The walkthrough: execute every notebook with its default parameters, export HTML, summarise.

    python -m cobot_lib.walkthrough [--out runs/walkthrough] [--only 01,02] [--skip-html]
                                    [--book runs/book | --skip-book]

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
import logging
import re
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import nbformat

from .book import BookError, build_book

__all__ = [
    "NotebookResult",
    "WalkthroughError",
    "discover",
    "estimate_remaining",
    "expected_seconds",
    "main",
    "run",
    "run_one",
]

REPO = Path(__file__).resolve().parents[2]
PLOTLY_MIME = "application/vnd.plotly.v1+json"
PLOTLY_JS = "plotly.min.js"
DEFAULT_SECONDS = 60.0  # expected time of a notebook with no stored duration and nothing measured
PRIOR_SECONDS = 60.0  # how much measured time it takes to trust the measured speed-up


class WalkthroughError(ValueError):
    """Bad arguments: a missing folder, no notebooks, an --only that selects nothing."""


def say(message: str) -> None:
    print(f"[walkthrough] {message}", flush=True)


def fmt_seconds(seconds: float) -> str:
    """12.3 -> '12 s', 754 -> '12 min 34 s'."""
    seconds = max(0, round(seconds))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


@dataclass
class NotebookResult:
    """One row of the summary."""

    notebook: str
    status: str = "not run"  # ok | failed | interrupted
    seconds: float = 0.0
    executed: str = ""
    html: str = ""
    error: str = ""


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


# --- executing one notebook -------------------------------------------------------------------


class _CellTracker(logging.Handler):
    """Remembers which cell papermill is executing (from its 'Executing Cell N' log lines)."""

    PATTERN = re.compile(r"Executing Cell (\d+)")

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.cell = 0

    def emit(self, record: logging.LogRecord) -> None:
        match = self.PATTERN.search(record.getMessage())
        if match:
            self.cell = int(match.group(1))


def _heartbeat(stop: threading.Event, every: float, name: str, cells: int, tracker, t0) -> None:
    while not stop.wait(every):
        say(
            f"  ... {name}: cell {tracker.cell}/{cells} running, "
            f"{fmt_seconds(time.perf_counter() - t0)} so far"
        )


def execute(path: Path, executed: Path, heartbeat: float = 30.0) -> str:
    """Run ``path`` with papermill into ``executed``; '' on success, else 'cell N: Error: msg'."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    logger = logging.getLogger("papermill")
    tracker = _CellTracker()
    logger.addHandler(tracker)
    old_level, old_propagate = logger.level, logger.propagate
    logger.setLevel(logging.INFO)
    logger.propagate = False  # the notebooks' own output stays in the executed copy
    cells = len(nbformat.read(path, as_version=4).cells)
    stop = threading.Event()
    beat = threading.Thread(
        target=_heartbeat,
        args=(stop, heartbeat, path.name, cells, tracker, time.perf_counter()),
        daemon=True,
    )
    if heartbeat > 0:
        beat.start()
    try:
        papermill.execute_notebook(
            str(path),
            str(executed),
            parameters={},
            cwd=str(path.parent),
            progress_bar=False,
            log_output=True,  # papermill logs "Executing Cell N" (to the tracker, not printed)
        )
        return ""
    except PapermillExecutionError as err:
        # cell_index counts every cell (markdown too) from 0, as the notebook file lists them
        return f"cell {err.cell_index + 1} (In [{err.exec_count}]): {err.ename}: {err.evalue}"
    except Exception as err:  # kernel died, timeout, unreadable notebook: still a row
        return f"cell {tracker.cell}: {type(err).__name__}: {err}"
    finally:
        stop.set()
        drop_widget_state(executed)
        logger.removeHandler(tracker)
        logger.setLevel(old_level)
        logger.propagate = old_propagate


def drop_widget_state(executed: Path) -> None:
    """Remove the widget state nbclient stores (plotly's FigureWidget puts all of plotly.js,
    about 5 MB, into it); without a kernel the widgets show their static pictures instead."""
    if not executed.is_file():
        return
    nb = nbformat.read(executed, as_version=4)
    if nb.metadata.pop("widgets", None) is not None:
        nbformat.write(nb, executed)


# --- HTML export --------------------------------------------------------------------------------

_LOADER = (
    # plotly.min.js is UMD: with require.js on the page (nbconvert's template loads it) it would
    # register as an anonymous AMD module and never define window.Plotly; hide `define` meanwhile.
    "<script>window.__cobotDefine = window.define; window.define = undefined;</script>"
    f'<script src="{PLOTLY_JS}"></script>'
    "<script>window.define = window.__cobotDefine;</script>"
)


def _plotly_to_html(nb: nbformat.NotebookNode) -> int:
    """Give every plotly mime output an HTML rendering (nbconvert has none); returns the count."""
    import plotly.io as pio

    count = 0
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if PLOTLY_MIME not in data or "text/html" in data:
                continue
            div = pio.to_html(
                dict(data[PLOTLY_MIME]),
                include_plotlyjs=False,
                full_html=False,
                validate=False,
                default_height="450px",
            )
            data["text/html"] = (_LOADER if count == 0 else "") + div
            count += 1
    return count


def export_html(executed: Path, html: Path) -> None:
    """nbconvert's HTML (lab template) of an executed notebook, figures included."""
    from nbconvert import HTMLExporter

    nb = nbformat.read(executed, as_version=4)
    if _plotly_to_html(nb):
        js = html.parent / PLOTLY_JS
        if not js.is_file():
            import plotly.offline

            js.write_text(plotly.offline.get_plotlyjs(), encoding="utf-8")
    body, _ = HTMLExporter(template_name="lab").from_notebook_node(nb)
    html.write_text(body, encoding="utf-8")


# --- the walkthrough ----------------------------------------------------------------------------


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


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


def run_one(path: Path, out: Path, html: bool = True, heartbeat: float = 30.0) -> NotebookResult:
    """Execute one notebook into ``out`` and export its HTML; never raises for a failed notebook."""
    result = NotebookResult(path.stem)
    executed = out / path.name
    t0 = time.perf_counter()
    result.error = execute(path, executed, heartbeat)
    result.seconds = time.perf_counter() - t0
    result.status = "failed" if result.error else "ok"
    if executed.is_file():
        result.executed = _shown(executed)
        if html:
            try:
                export_html(executed, out / f"{path.stem}.html")
                result.html = _shown(out / f"{path.stem}.html")
            except Exception as err:  # the notebook ran; a failed export is reported, not fatal
                result.error += f"{'; ' if result.error else ''}HTML export: {err}"
                result.status = "failed"
    return result


def run(
    notebooks: Sequence[Path], out: Path, html: bool = True, heartbeat: float = 30.0
) -> list[NotebookResult]:
    """Execute, export and summarise ``notebooks`` into ``out``; progress goes to stdout."""
    out.mkdir(parents=True, exist_ok=True)
    expected = [expected_seconds(p) for p in notebooks]
    start = time.perf_counter()
    done: list[tuple[float | None, float]] = []
    results: list[NotebookResult] = []
    n = len(notebooks)
    say(
        f"{n} notebooks -> {_shown(out)}; estimated "
        f"{fmt_seconds(estimate_remaining([], expected))} (from their stored run times)"
    )
    try:
        for i, path in enumerate(notebooks):
            say(
                f"[{i + 1}/{n}] {path.name}: starting "
                f"(elapsed {fmt_seconds(time.perf_counter() - start)}, "
                f"estimated remaining ~{fmt_seconds(estimate_remaining(done, expected[i:]))})"
            )
            result = run_one(path, out, html, heartbeat)
            done.append((expected[i], result.seconds))
            results.append(result)
            left = estimate_remaining(done, expected[i + 1 :])
            tail = f"estimated remaining ~{fmt_seconds(left)}" if i + 1 < n else "last one"
            if result.status == "ok":
                say(f"[{i + 1}/{n}] {path.name}: ok in {fmt_seconds(result.seconds)}; {tail}")
                continue
            say(
                f"[{i + 1}/{n}] {path.name}: FAILED after {fmt_seconds(result.seconds)} "
                f"at {result.error}; {tail}"
            )
            if result.executed:
                more = "; continuing with the rest" if i + 1 < n else ""
                say(f"    the traceback is in {result.executed}{more}")
    except KeyboardInterrupt:
        say("interrupted; the summary lists what ran")
        results += [NotebookResult(p.stem, status="interrupted") for p in notebooks[len(results) :]]
    write_summary(results, out, time.perf_counter() - start)
    return results


def _jupyter_hint() -> str:
    jupyter = Path(sys.executable).parent / "jupyter"
    return f"{_shown(jupyter) if jupyter.is_file() else 'jupyter'} lab notebooks/"


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
    parser.add_argument("--book", default="runs/book", help="folder of the HTML book (replaced)")
    parser.add_argument("--skip-book", action="store_true", help="do not build the HTML book")
    args = parser.parse_args(argv)
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    try:
        notebooks = discover(Path(args.notebooks), only)
    except WalkthroughError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = Path(args.out)
    start = time.perf_counter()
    results = run(notebooks, out, html=not args.skip_html, heartbeat=args.heartbeat)
    failed = [r for r in results if r.status != "ok"]
    say(
        f"done in {fmt_seconds(time.perf_counter() - start)}; summary: {_shown(out / 'summary.md')}"
    )
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
    say(f"building the book of {len(executed)} executed notebooks -> {_shown(folder)}")
    try:
        book = build_book(executed, folder)
    except BookError as err:
        say(f"the book FAILED: {err}")
        return False
    say(f"book: {_shown(book.index)} ({book.figures} figures, {book.seconds:.0f} s); "
        "open it in a browser")  # fmt: skip
    return True


if __name__ == "__main__":
    sys.exit(main())
