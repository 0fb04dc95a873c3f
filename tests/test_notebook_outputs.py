"""What every stored notebook must hold for a reader without a kernel (issue 17, issue 12).

Read from the committed .ipynb files with nbformat (no kernel): each plotly figure and each
widget output also carries a static image; no code cell is longer than 25 lines (or its first
line says why); the first code cell sets torch's threads; the checked cells print rounded facts;
the stored outputs come from the default parameters; every notebook ends with a summary and
2-4 exercises whose solutions exist (tests/test_exercises.py runs them).
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

from cobot_lib.notebook.exercises import solutions
from cobot_lib.notebook.static import PLOTLY_MIME, STATIC_MIMES, WIDGET_MIME, outputs_without_static

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9A-Z][0-9]_*.ipynb"))
IDS = [p.stem for p in NOTEBOOKS]
MAX_LINES = 25
LONG_CELL_REASON = "# long cell:"  # a first line starting so says why a cell is longer
CHECKED = "# NBVAL_CHECK_OUTPUT"
RAW_FLOAT = re.compile(r"\d\.\d{7,}")  # more digits than any rounded fact prints


def _read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def _code(nb) -> list:
    return [c for c in nb.cells if c.cell_type == "code"]


def test_every_notebook_is_here():
    assert [p.stem[:2] for p in NOTEBOOKS] == ["01", "02", "03", "04", "05", "06", "07", "A1"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_no_figure_or_widget_without_a_static_image(path):
    assert outputs_without_static(_read(path)) == []


def test_the_static_image_check_counts_real_figures():
    """Not vacuous: the stored notebooks hold figures, and every one has a picture."""
    figures = widgets = 0
    for path in NOTEBOOKS:
        for cell in _code(_read(path)):
            for output in cell.get("outputs", []):
                data = output.get("data", {})
                figures += PLOTLY_MIME in data
                widgets += WIDGET_MIME in data
                if PLOTLY_MIME in data or WIDGET_MIME in data:
                    assert any(m in data for m in STATIC_MIMES)
    assert figures >= 30 and widgets == 2  # 02's rotation slider and 05's ablation panel


def test_outputs_without_static_finds_a_bare_figure():
    """The check itself: a plotly output or a widget without a picture is reported."""
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("fig")
    cell.outputs = [
        nbformat.v4.new_output("display_data", data={PLOTLY_MIME: {"data": []}}),
        nbformat.v4.new_output("display_data", data={PLOTLY_MIME: {}, "image/png": "iVBO"}),
        nbformat.v4.new_output("display_data", data={WIDGET_MIME: {"model_id": "x"}}),
    ]
    nb.cells = [nbformat.v4.new_markdown_cell("# t"), cell]
    assert outputs_without_static(nb) == [
        "cell 1, output 0: plotly figure without a static image",
        "cell 1, output 2: widget without a static image",
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_longest_code_cell(path):
    long = [
        (i, len(c.source.splitlines()))
        for i, c in enumerate(_read(path).cells)
        if c.cell_type == "code"
        and len(c.source.splitlines()) > MAX_LINES
        and not c.source.startswith(LONG_CELL_REASON)
    ]
    assert long == [], f"cells longer than {MAX_LINES} lines (index, lines): {long}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_first_code_cell_sets_threads_and_then_the_parameters(path):
    code = _code(_read(path))
    assert "from cobot_lib.machine import set_threads" in code[0].source
    assert "set_threads()" in code[0].source
    assert code[1].metadata.get("tags") == ["parameters"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_checked_cells_print_rounded_facts(path):
    """nbval compares these outputs on other machines: text only, no last-bit floats."""
    for i, cell in enumerate(_code(_read(path))):
        if not cell.source.startswith(CHECKED):
            continue
        for output in cell.get("outputs", []):
            assert output.output_type == "stream", (i, output.output_type)
            assert not RAW_FLOAT.search(output.text), (i, RAW_FLOAT.search(output.text))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_stored_outputs_come_from_the_default_parameters(path):
    nb = _read(path)
    assert nb.metadata.papermill.get("parameters") == {}
    assert not nb.metadata.papermill.get("exception")
    assert all(c.execution_count for c in _code(nb) if c.source.strip())
    errors = [o for c in _code(nb) for o in c.get("outputs", []) if o.output_type == "error"]
    assert errors == []
    assert "widgets" not in nb.metadata  # nbclient's widget state (5 MB of plotly.js) is dropped


def _exercise_items(text: str) -> list[int]:
    return [int(n) for n in re.findall(r"^(\d+)\. ", text, flags=re.M)]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_ends_with_a_summary_and_exercises_that_have_solutions(path):
    markdown = [c.source for c in _read(path).cells[-2:]]
    assert markdown[0].startswith("## Summary") and len(markdown[0].splitlines()) >= 3
    assert markdown[1].startswith("## Exercises")
    items = _exercise_items(markdown[1])
    assert 2 <= len(items) <= 4 and items == list(range(1, len(items) + 1)), items
    module = path.stem.split("_", 1)[1]
    assert f"cobot_lib/notebook/exercises/{module}.py" in markdown[1]
    assert len(solutions(path.stem)) == len(items)  # one solution per exercise, in order
