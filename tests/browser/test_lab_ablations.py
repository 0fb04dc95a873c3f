"""Notebook 05 in a real browser: the benchmark panel loads another row and redraws when a
reader asks.

Runs the notebook down to the cell that builds the panel (outputs cleared first), picks another
domain and another row in the panel, clicks "Run" (every seed is stored, so it loads them), and
checks that the plotly figure and the comparisons table in the page changed. Fails when
ipywidgets do not render (no panel).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from lab_harness import (
    assert_loopback_only,
    button,
    choose,
    code_cells,
    plot_signatures,
    table_text,
    wait_changed,
)

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = "notebooks/05_ablations.ipynb"
PANEL_CELL = "BenchmarkPanel("  # text in the source of the code cell that shows the panel
DOMAIN, ROW = "domain", "row"  # widget descriptions in cobot_lib/notebook/benchmark_panel.py


def test_benchmark_panel_loads_from_the_browser(notebook, lab, screenshot):
    ui = notebook(NOTEBOOK)
    cells = code_cells(ROOT / NOTEBOOK, until=PANEL_CELL)
    ui.run_through(cells, timeout_ms=150_000)
    panel = ui.output(cells[-1])
    run = button(panel, "Run")
    run.wait_for(state="visible", timeout=30_000)  # no widget manager: never appears
    panel.scroll_into_view_if_needed()
    figure_before, table_before = plot_signatures(panel), table_text(panel)
    screenshot(panel, "05_benchmark_panel_before.png")

    domain = choose(panel, DOMAIN)
    chosen = choose(panel, ROW)
    run.click()

    figure_after = wait_changed(
        lambda: plot_signatures(panel), figure_before, "the panel's plotly figure", 120
    )
    table_after = wait_changed(lambda: table_text(panel), table_before, "the results table", 30)
    assert figure_after and table_after
    assert chosen in table_after and domain in table_after, (chosen, domain, table_after)
    ui.wait_kernel_idle()
    ui.assert_no_errors()
    panel.page.wait_for_timeout(500)
    screenshot(panel, "05_benchmark_panel.png")
    assert_loopback_only(lab)
