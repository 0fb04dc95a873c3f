"""Static pictures of plotly figures (cobot_lib.notebook.static), drawn by kaleido in Debian's
Chromium, offline.

Oracles: the pixels of the returned image decoded with Pillow (a known colour where the figure
draws it), plotly's own default template, the widget's own mime bundle.
"""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
import pytest
from PIL import Image

from cobot_lib.notebook import static, viz
from cobot_lib.notebook.rotation_panel import RotationPanel


def _picture(mime_and_data: tuple[str, str]) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(mime_and_data[1]))).convert("RGB"))


def test_a_red_bar_is_red_in_the_picture():
    fig = go.Figure(go.Bar(x=[0], y=[1], marker_color="#ff0000", width=[1.0]))
    fig.update_layout(width=400, height=300, margin={"l": 0, "r": 0, "t": 0, "b": 0},
                      xaxis={"visible": False, "range": [-0.5, 0.5]},
                      yaxis={"visible": False, "range": [0, 1]})  # fmt: skip
    mime, data = static.static_image(fig)
    pixels = _picture((mime, data))
    assert mime == "image/png" and pixels.shape == (300, 400, 3)
    red = (pixels[..., 0] > 240) & (pixels[..., 1] < 20) & (pixels[..., 2] < 20)
    assert red.mean() > 0.9  # the bar fills the plot area


def test_photographs_become_jpeg_and_plots_a_palette_png():
    rgb = np.random.default_rng(0).uniform(0, 1, (32, 32, 3))
    mime, data = static.static_image(viz.image_grid([[("noise", rgb)] * 3]))  # 900 x 300 px
    assert mime == "image/jpeg"
    assert Image.open(io.BytesIO(base64.b64decode(data))).size == (600, 200)  # at most 600 wide
    mime, data = static.static_image(viz.heatmap(rgb[..., 0]))
    assert mime == "image/png"
    assert (
        Image.open(io.BytesIO(base64.b64decode(data))).mode == "P"
    )  # a palette image (128 colours)


def test_renderer_stores_figure_and_picture():
    viz.use_notebook_renderer()
    bundle = pio.renderers[viz.RENDERER].to_mimebundle(viz.heatmap(np.eye(3)).to_plotly_json())
    assert set(bundle) == {static.PLOTLY_MIME, "image/png"}
    assert bundle[static.PLOTLY_MIME]["data"][0]["type"] == "heatmap"


def test_no_browser_warns_once_and_keeps_the_interactive_figure(monkeypatch, tmp_path):
    monkeypatch.setitem(static._state, "server", False)
    monkeypatch.setitem(static._state, "warned", False)
    monkeypatch.setenv("COBOT_CHROMIUM", str(tmp_path / "no-chromium"))
    with pytest.raises(static.StaticImageError, match="apt-get install chromium"):
        static.static_image(go.Figure())
    renderer = static.StaticPlotlyRenderer()
    with pytest.warns(UserWarning, match="without static images"):
        bundle = renderer.to_mimebundle(go.Figure().to_plotly_json())
    assert set(bundle) == {static.PLOTLY_MIME}
    assert set(renderer.to_mimebundle(go.Figure().to_plotly_json())) == {static.PLOTLY_MIME}


def test_compact_template_is_plotlys_look_without_unused_defaults():
    full = pio.templates["plotly"].to_plotly_json()
    compact = viz.compact_template().to_plotly_json()
    for part in ("layout", "data"):
        assert all(compact[part][k] == full[part][k] for k in compact[part])
    assert set(compact["data"]) == {"bar", "heatmap", "scatter", "scatter3d"}
    assert len(json.dumps(compact)) < 0.6 * len(json.dumps(full))


def test_rotation_panel_output_is_the_widget_plus_its_initial_picture():
    panel = RotationPanel([1, 1, 0], initial_angle=30)
    bundle = panel._repr_mimebundle_()
    assert bundle[static.WIDGET_MIME] == panel.widget._repr_mimebundle_()[static.WIDGET_MIME]
    pixels = _picture(("image/png", bundle["image/png"]))
    blue = (np.abs(pixels.astype(int) - (0x4C, 0x78, 0xA8)).sum(axis=2) < 30).mean()
    assert blue > 0.002  # the turned cube's edges (#4c78a8) are drawn
