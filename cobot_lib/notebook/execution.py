"""Executing one notebook: papermill with its default parameters, then an offline HTML copy.

``run_one`` is the walkthrough's unit of work (``cobot_lib.notebook.walkthrough`` runs many, one
after the other or in parallel worker processes); it never raises for a failed notebook, so one
broken notebook is a row of the summary and the rest still run.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat

__all__ = ["NotebookResult", "export_html", "execute", "fmt_seconds", "run_one", "say", "shown"]

PLOTLY_MIME = "application/vnd.plotly.v1+json"
PLOTLY_JS = "plotly.min.js"


def say(message: str) -> None:
    print(f"[walkthrough] {message}", flush=True)


def fmt_seconds(seconds: float) -> str:
    """12.3 -> '12 s', 754 -> '12 min 34 s'."""
    seconds = max(0, round(seconds))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


def shown(path: Path) -> str:
    """``path`` relative to the working directory when it lies below it (shorter messages)."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


@dataclass
class NotebookResult:
    """One row of the summary."""

    notebook: str
    status: str = "not run"  # ok | failed | interrupted
    seconds: float = 0.0
    executed: str = ""
    html: str = ""
    error: str = ""


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


def run_one(path: Path, out: Path, html: bool = True, heartbeat: float = 30.0) -> NotebookResult:
    """Execute one notebook into ``out`` and export its HTML; never raises for a failed notebook."""
    result = NotebookResult(path.stem)
    executed = out / path.name
    t0 = time.perf_counter()
    result.error = execute(path, executed, heartbeat)
    result.seconds = time.perf_counter() - t0
    result.status = "failed" if result.error else "ok"
    if executed.is_file():
        result.executed = shown(executed)
        if html:
            try:
                export_html(executed, out / f"{path.stem}.html")
                result.html = shown(out / f"{path.stem}.html")
            except Exception as err:  # the notebook ran; a failed export is reported, not fatal
                result.error += f"{'; ' if result.error else ''}HTML export: {err}"
                result.status = "failed"
    return result
