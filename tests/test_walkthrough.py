"""The walkthrough (python -m cobot_lib.walkthrough) on two tiny notebooks, one of which fails.

Oracles: the executed notebooks' own outputs (computed by a real kernel), nbformat's reader, the
csv module, and hand-computed estimates.
"""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from cobot_lib.notebook.walkthrough import (
    choose_jobs,
    discover,
    estimate_remaining,
    expected_seconds,
    main,
)

KERNEL = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}


def _write(path: Path, cells: list) -> None:
    nb = new_notebook(cells=cells, metadata=KERNEL)
    nbformat.write(nb, path)


@pytest.fixture(scope="module")
def notebooks(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("notebooks")
    params = new_code_cell("x = 6")
    params.metadata["tags"] = ["parameters"]
    _write(
        folder / "01_ok.ipynb",
        [
            new_markdown_cell("# ok"),
            params,
            new_code_cell("import os\nprint('answer', x * 7)\nprint('cwd', os.getcwd())"),
            new_code_cell(
                "import plotly.graph_objects as go\nimport plotly.io as pio\n"
                "pio.renderers.default = 'plotly_mimetype'\n"
                "go.Figure(go.Bar(y=[3, 1, 2])).show()"
            ),
        ],
    )
    _write(
        folder / "02_fails.ipynb",
        [
            new_code_cell("y = 1"),
            new_code_cell("raise ValueError('deliberate failure 1234')"),
            new_code_cell("print('never printed')"),
        ],
    )
    _write(folder / "scratch.ipynb", [new_code_cell("raise RuntimeError('not numbered')")])
    return folder


@pytest.fixture(scope="module")
def walk(notebooks, tmp_path_factory):
    out = tmp_path_factory.mktemp("out") / "walk"
    proc = subprocess.run(
        [sys.executable, "-m", "cobot_lib.walkthrough", "--notebooks", str(notebooks)]
        + ["--out", str(out), "--heartbeat", "0", "--book", str(out.parent / "book")]
        + ["--jobs", "2"],  # both at once, in worker processes
        capture_output=True,
        text=True,
        timeout=300,
    )
    return proc, out


def test_failure_gives_exit_status_1_after_running_the_rest(walk):
    proc, _ = walk
    assert proc.returncode == 1, proc.stdout + proc.stderr


def test_progress_messages(walk):
    text = walk[0].stdout
    assert "2 notebooks ->" in text
    assert "[1/2] 01_ok.ipynb: starting (elapsed" in text
    assert "[1/2] 01_ok.ipynb: ok in" in text
    assert "estimated remaining ~" in text
    assert "[2/2] 02_fails.ipynb: starting" in text
    # the failure names the notebook, the cell (2nd of the file) and the error
    assert "[2/2] 02_fails.ipynb: FAILED after" in text
    assert "cell 2 (In [2]): ValueError: deliberate failure 1234" in text
    assert "jupyter lab notebooks/" in text
    assert "scratch" not in text


def test_summary_tables(walk):
    _, out = walk
    rows = list(csv.DictReader((out / "summary.csv").open()))
    assert [r["notebook"] for r in rows] == ["01_ok", "02_fails"]
    assert [r["status"] for r in rows] == ["ok", "failed"]
    assert all(float(r["seconds"]) > 0 for r in rows)
    assert rows[0]["error"] == ""
    assert "ValueError: deliberate failure 1234" in rows[1]["error"]
    for r in rows:
        assert Path(r["executed"]).is_file() and Path(r["html"]).is_file()
    md = (out / "summary.md").read_text()
    assert "1 of 2 notebooks ran without error" in md
    assert md.count("\n| 0") == 2 and "| 02_fails | failed |" in md


def test_executed_notebooks_hold_kernel_outputs(walk, notebooks):
    _, out = walk
    ok = nbformat.read(out / "01_ok.ipynb", as_version=4)
    text = "".join(o.get("text", "") for c in ok.cells for o in c.get("outputs", []))
    assert "answer 42" in text
    assert f"cwd {notebooks.resolve()}" in text  # run in the notebook's folder, like nbval
    failed = nbformat.read(out / "02_fails.ipynb", as_version=4)
    by_source = {c.source: c.get("outputs", []) for c in failed.cells if c.cell_type == "code"}
    assert by_source["print('never printed')"] == []  # nothing after the failing cell ran
    assert by_source["raise ValueError('deliberate failure 1234')"][0].ename == "ValueError"
    assert expected_seconds(out / "01_ok.ipynb") == ok.metadata.papermill.duration


def test_html_export_with_figures(walk):
    _, out = walk
    html = (out / "01_ok.html").read_text()
    assert "answer 42" in html
    assert "Plotly.newPlot" in html and '<script src="plotly.min.js">' in html
    assert (out / "plotly.min.js").stat().st_size > 1_000_000
    assert "deliberate failure 1234" in (out / "02_fails.html").read_text()


def test_only_and_skip_html(notebooks, tmp_path, capsys):
    assert main(["--notebooks", str(notebooks), "--out", str(tmp_path), "--only", "1"]
                + ["--skip-html", "--skip-book", "--heartbeat", "0"]) == 0  # fmt: skip
    rows = list(csv.DictReader((tmp_path / "summary.csv").open()))
    assert [(r["notebook"], r["status"], r["html"]) for r in rows] == [("01_ok", "ok", "")]
    assert not list(tmp_path.glob("*.html"))
    assert main(["--notebooks", str(notebooks), "--out", str(tmp_path), "--only", "07"]) == 2
    err = capsys.readouterr().err
    assert "'07' matches no notebook" in err and "01_ok, 02_fails" in err


def test_book_of_every_executed_copy(walk):
    """The book is built after the notebooks, from the executed copies (the failed one too)."""
    proc, out = walk
    book = out.parent / "book"
    index = (book / "index.html").read_text()
    assert "01_ok.html" in index and "02_fails.html" in index
    assert "answer 42" in (book / "01_ok.html").read_text()
    assert "deliberate failure 1234" in (book / "02_fails.html").read_text()
    assert f"book: {book / 'index.html'}" in proc.stdout


def test_one_at_a_time_gives_the_same_rows_as_in_parallel(walk, notebooks, tmp_path, capsys):
    """--jobs 1 runs in this process, in reading order; the rows match the parallel run's."""
    assert main(["--notebooks", str(notebooks), "--out", str(tmp_path), "--jobs", "1"]
                + ["--skip-html", "--skip-book", "--heartbeat", "0"]) == 1  # fmt: skip
    text = capsys.readouterr().out
    assert text.index("[1/2] 01_ok.ipynb: ok in") < text.index("[2/2] 02_fails.ipynb: starting")
    rows = list(csv.DictReader((tmp_path / "summary.csv").open()))
    parallel = list(csv.DictReader((walk[1] / "summary.csv").open()))
    assert [(r["notebook"], r["status"]) for r in rows] == [
        (r["notebook"], r["status"]) for r in parallel
    ]


def test_jobs_share_the_thread_budget(monkeypatch, capsys, notebooks, tmp_path):
    monkeypatch.setenv("COBOT_THREADS", "4")
    assert choose_jobs(2, 5) == (2, 2)  # 4 threads for the run: 2 kernels x 2 threads
    assert choose_jobs(3, 2) == (2, 2)  # never more jobs than notebooks
    monkeypatch.setenv("COBOT_THREADS", "1")
    assert choose_jobs(None, 5)[1] == 1
    assert main(["--notebooks", str(notebooks), "--out", str(tmp_path), "--jobs", "0"]) == 2
    assert "--jobs 0: expected a positive whole number" in capsys.readouterr().err


def test_appendix_runs_after_the_numbered_notebooks(tmp_path):
    for name in ("A1_extra", "02_b", "01_a"):
        _write(tmp_path / f"{name}.ipynb", [new_code_cell("1")])
    assert [p.stem for p in discover(tmp_path)] == ["01_a", "02_b", "A1_extra"]
    assert [p.stem for p in discover(tmp_path, ["A1", "1"])] == ["01_a", "A1_extra"]


def test_bad_folder(tmp_path, capsys):
    assert main(["--notebooks", str(tmp_path / "nope"), "--out", str(tmp_path)]) == 2
    assert "nope does not exist" in capsys.readouterr().err
    assert main(["--notebooks", str(tmp_path), "--out", str(tmp_path)]) == 2
    assert "no numbered notebooks" in capsys.readouterr().err


def test_estimate_remaining_scales_stored_durations():
    assert estimate_remaining([], [10.0, None]) == 10.0 + 60.0  # nothing measured yet
    # 01 stored 10 s and took 20 s: scale (20 + 60) / (10 + 60) = 8/7 (60 s prior towards 1);
    # a pending notebook without a stored duration counts as the mean actual time (20 s)
    got = estimate_remaining([(10.0, 20.0)], [5.0, None, 30.0])
    assert got == pytest.approx(35.0 * 8 / 7 + 20.0)
    # a finished notebook without a stored duration does not change the scale
    assert estimate_remaining([(10.0, 5.0), (None, 13.0)], [7.0]) == pytest.approx(7.0 * 65 / 70)
    # after long measured runs the scale approaches actual / expected
    assert estimate_remaining([(1000.0, 2000.0)], [100.0]) == pytest.approx(100.0 * 2060 / 1060)
    assert estimate_remaining([(10.0, 5.0)], []) == 0.0


def test_expected_seconds_from_nbclient_timestamps(tmp_path):
    cell = new_code_cell("1")
    cell.metadata["execution"] = {
        "iopub.execute_input": "2024-01-01T10:00:00.000000Z",
        "shell.execute_reply": "2024-01-01T10:00:02.500000Z",
    }
    later = new_code_cell("2")
    later.metadata["execution"] = {
        "iopub.execute_input": "2024-01-01T10:00:03.000000Z",
        "shell.execute_reply": "2024-01-01T10:00:12.500000Z",
    }
    _write(tmp_path / "01_t.ipynb", [cell, later])
    assert expected_seconds(tmp_path / "01_t.ipynb") == 12.5
    _write(tmp_path / "02_none.ipynb", [new_code_cell("1")])
    assert expected_seconds(tmp_path / "02_none.ipynb") is None


def test_ctrl_c_writes_the_summary_and_exits_130(notebooks, tmp_path, monkeypatch):
    import cobot_lib.notebook.walkthrough as wt

    calls = []

    def fake_run_one(path, out, html=True, heartbeat=30.0):
        calls.append(path.name)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return wt.NotebookResult(path.stem, "ok", 1.5, "x.ipynb", "x.html")

    monkeypatch.setattr(wt, "run_one", fake_run_one)
    assert main(["--notebooks", str(notebooks), "--out", str(tmp_path), "--jobs", "1"]) == 130
    rows = list(csv.DictReader((tmp_path / "summary.csv").open()))
    assert [(r["notebook"], r["status"]) for r in rows] == [
        ("01_ok", "ok"),
        ("02_fails", "interrupted"),
    ]
