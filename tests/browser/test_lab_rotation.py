"""Notebook 02 in a real browser: dragging the "angle" slider turns the 3-D rotation figure.

Runs every cell from the Run menu (outputs cleared first, so nothing is left over from the
stored file), then drags the slider's handle as a reader would and checks that the plotly 3-D
figure next to it now draws something else. Fails when ipywidgets do not render (no slider).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from lab_harness import (
    assert_loopback_only,
    code_cells,
    labelled,
    plot_signatures,
    plot_trace_types,
    wait_changed,
)

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = "notebooks/02_hamilton_product.ipynb"
THREE_D = {"scatter3d", "mesh3d", "cone", "surface", "streamtube"}


def test_angle_slider_turns_the_3d_figure(notebook, lab, screenshot):
    ui = notebook(NOTEBOOK)
    ui.run_all(code_cells(ROOT / NOTEBOOK), timeout_ms=120_000)
    page = ui.page

    slider = labelled(page.locator(".jp-NotebookPanel"), "angle")
    slider.wait_for(state="visible", timeout=30_000)  # no widget manager: never appears
    area = page.locator(".jp-Cell-outputArea").filter(has=labelled(page, "angle")).first
    area.locator(".js-plotly-plot").first.wait_for(state="visible", timeout=30_000)
    assert plot_trace_types(area) & THREE_D, f"no 3-D trace: {plot_trace_types(area)}"
    assert page.get_by_text("WebGL is not supported").count() == 0
    readout = slider.locator(".widget-readout")
    angle_before, figure_before = readout.inner_text(), plot_signatures(area)

    handle, track = slider.locator(".noUi-handle"), slider.locator(".noUi-target")
    handle.scroll_into_view_if_needed()
    start, span = handle.bounding_box(), track.bounding_box()
    y = start["y"] + start["height"] / 2
    page.mouse.move(start["x"] + start["width"] / 2, y)
    page.mouse.down()
    page.mouse.move(start["x"] + start["width"] / 2 + span["width"] / 3, y, steps=6)
    page.mouse.up()

    assert readout.inner_text() != angle_before, "the slider did not move"
    wait_changed(
        lambda: plot_signatures(area),
        figure_before,
        "the 3-D figure",
        accept=lambda now: len(now) == len(figure_before),
    )
    page.wait_for_timeout(500)  # let WebGL finish drawing before the picture
    screenshot(area, "02_rotation_slider.png")
    assert_loopback_only(lab)
