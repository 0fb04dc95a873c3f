"""Notebook 05 in a real browser: the ablation panel reruns and redraws when a reader asks.

Runs the notebook down to the cell that builds the panel (outputs cleared first), flips a switch
and changes a value in the panel, clicks "Run", and checks that the plotly figure and the
results table in the page changed. Fails when ipywidgets do not render (no panel).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from lab_harness import (
    assert_loopback_only,
    button,
    choose,
    code_cells,
    flip,
    plot_signatures,
    table_text,
    wait_changed,
)

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = "notebooks/05_ablations.ipynb"
PANEL_CELL = "AblationPanel("  # text in the source of the code cell that shows the panel
SWITCH, VALUE = "CoS", "V"  # widget descriptions in cobot_lib/notebook/panel.py


def test_ablation_panel_reruns_from_the_browser(notebook, lab, screenshot):
    ui = notebook(NOTEBOOK)
    cells = code_cells(ROOT / NOTEBOOK, until=PANEL_CELL)
    ui.run_through(cells, timeout_ms=150_000)
    panel = ui.output(cells[-1])
    run = button(panel, "Run")
    run.wait_for(state="visible", timeout=30_000)  # no widget manager: never appears
    panel.scroll_into_view_if_needed()
    figure_before, table_before = plot_signatures(panel), table_text(panel)
    screenshot(panel, "05_ablation_panel_before.png")

    flip(panel, SWITCH)
    chosen = choose(panel, VALUE)
    run.click()

    figure_after = wait_changed(
        lambda: plot_signatures(panel), figure_before, "the panel's plotly figure", 120
    )
    table_after = wait_changed(lambda: table_text(panel), table_before, "the results table", 30)
    assert figure_after and table_after
    assert chosen in table_after, f"the table does not show the chosen {VALUE}={chosen}"
    ui.wait_kernel_idle()
    ui.assert_no_errors()
    panel.page.wait_for_timeout(500)
    screenshot(panel, "05_ablation_panel.png")
    assert_loopback_only(lab)
