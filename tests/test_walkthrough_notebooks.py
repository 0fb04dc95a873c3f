"""The run command's path through the notebooks: ``python -m cobot_lib.walkthrough`` (papermill
with the default parameters, two notebooks at a time, HTML export, the book).

Every notebook is already executed, cell by cell with its default parameters, by nbval
(``pytest notebooks``, which also compares the checked outputs), and papermill's parameter
injection with changed values by tests/test_notebook_04.py and test_notebook_03_06_07.py. So
this test walks three short notebooks (01, 02 and the appendix A1: about 50 CPU-seconds), not
all eight again: that cost 144 s of the suite's 20 minutes (issue 12) and checked each notebook
a second time for nothing new.
Oracles: the walkthrough's exit status, papermill's own metadata in each executed copy, and the
kernel's outputs (no error output anywhere).
"""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p.stem for p in (REPO / "notebooks").glob("[0-9A-Z][0-9]_*.ipynb"))
WALKED = [n for n in NOTEBOOKS if n[:2] in ("01", "02", "A1")]


@pytest.fixture(scope="module")
def walked(tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    out = tmp_path_factory.mktemp("walkthrough")
    proc = subprocess.run(
        [sys.executable, "-m", "cobot_lib.walkthrough", "--out", str(out), "--heartbeat", "0"]
        + ["--book", str(out / "book"), "--jobs", "2"]  # not left to the load of the moment
        + ["--only", ",".join(n[:2] for n in WALKED)],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=REPO,
    )
    return proc, out


def test_all_notebooks_are_found():
    assert [n[:2] for n in NOTEBOOKS] == ["01", "02", "03", "04", "05", "06", "07", "A1"]


def test_walkthrough_runs_every_notebook_without_error(walked):
    proc, out = walked
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    rows = list(csv.DictReader((out / "summary.csv").open()))
    assert [r["notebook"] for r in rows] == WALKED
    assert {r["status"] for r in rows} == {"ok"}, rows


@pytest.mark.parametrize("stem", WALKED)
def test_executed_copy_is_complete(walked, stem):
    _, out = walked
    nb = nbformat.read(out / f"{stem}.ipynb", as_version=4)
    assert not nb.metadata.papermill.get("exception")  # None (or absent) when nothing raised
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code if c.source.strip())
    errors = [o for c in code for o in c.get("outputs", []) if o.output_type == "error"]
    assert errors == []
    assert (out / f"{stem}.html").stat().st_size > 10_000
    assert (out / "book" / f"{stem}.html").stat().st_size > 10_000  # its page in the book
