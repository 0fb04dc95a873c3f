"""Plotly figures shared by the notebooks (one function per kind of picture).

Every function returns a ``plotly.graph_objects.Figure`` and computes nothing the notebook
should check: the numbers are computed (and asserted) by the notebook or by ``cobot_lib``, then
drawn here. ``use_notebook_renderer()`` stores each figure as plotly's mime bundle plus a
static image (``static.StaticPlotlyRenderer``), with a compact template that keeps them small.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.colors as pc
import plotly.graph_objects as go
import plotly.io as pio
from PIL import Image
from plotly.subplots import make_subplots

from .diagram import cobot_block_diagram
from .static import StaticPlotlyRenderer

__all__ = [
    "use_notebook_renderer",
    "heatmap",
    "heatmap_grid",
    "line_chart",
    "selection_curves",
    "grouped_bars",
    "stacked_bars",
    "scatter_versus",
    "image_grid",
    "overlay",
    "cube_rotation_figure",
    "cobot_block_diagram",
    "forest_figure",
]

RENDERER = "cobot_static"
TEMPLATE = "cobot"
# One colour per instance in the overlays (RGB in [0, 1]).
PALETTE = np.array(
    [[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
     [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60]]
) / 255.0  # fmt: skip
_KEPT_TRACE_DEFAULTS = ("bar", "heatmap", "scatter", "scatter3d")
_DROPPED_LAYOUT = ("polar", "ternary", "geo", "shapedefaults", "annotationdefaults")


def compact_template() -> go.layout.Template:
    """plotly's default look, without the defaults of trace kinds the notebooks never draw.

    plotly writes the whole template into every stored figure; its own is 7 kB, this one
    about 2.5 kB, and the notebooks' figures look the same (only unused defaults are left out).
    """
    full = pio.templates["plotly"].to_plotly_json()
    layout = {k: v for k, v in full["layout"].items() if k not in _DROPPED_LAYOUT}
    data = {k: v for k, v in full["data"].items() if k in _KEPT_TRACE_DEFAULTS}
    return go.layout.Template(layout=layout, data=data)


def use_notebook_renderer() -> None:
    """Figures as plotly mime bundles plus a static image, with the compact template."""
    pio.templates[TEMPLATE] = compact_template()
    pio.templates.default = TEMPLATE
    pio.renderers[RENDERER] = StaticPlotlyRenderer()
    pio.renderers.default = RENDERER


def _array(z) -> np.ndarray:
    if hasattr(z, "detach"):
        z = z.detach().cpu().numpy()
    return np.asarray(z, dtype=float)


def heatmap(
    z,
    title: str = "",
    x: Sequence | None = None,
    y: Sequence | None = None,
    zmid: float | None = None,
    colorscale: str = "RdBu_r",
    zlabel: str = "",
    height: int = 420,
) -> go.Figure:
    """One matrix as a heatmap, row 0 at the top (as a matrix is read)."""
    fig = go.Figure(
        go.Heatmap(
            z=_array(z), x=x, y=y, zmid=zmid, colorscale=colorscale, colorbar={"title": zlabel}
        )
    )
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(title=title, height=height, margin={"t": 60, "b": 40})
    return fig


def heatmap_grid(
    matrices: Mapping[str, object],
    title: str = "",
    cols: int | None = None,
    zmid: float | None = None,
    colorscale: str = "RdBu_r",
    shared_scale: bool = False,
    height: int = 380,
) -> go.Figure:
    """Several matrices side by side (``shared_scale``: one colour range and one colour bar).

    Without a shared scale every matrix has its own colour bar, placed in the gap to the right
    of its own subplot (the gap is widened for it), so no bar covers a neighbouring matrix.
    """
    names = list(matrices)
    cols = cols or len(names)
    rows = -(-len(names) // cols)
    arrays = [_array(matrices[n]) for n in names]
    zmin = zmax = None
    if shared_scale:
        zmin, zmax = min(a.min() for a in arrays), max(a.max() for a in arrays)
    fig = make_subplots(
        rows=rows,
        cols=cols,
        subplot_titles=names,
        horizontal_spacing=0.08 if shared_scale else min(0.16, 0.5 / max(cols - 1, 1)),
    )
    for i, a in enumerate(arrays):
        r, c = divmod(i, cols)
        right_edge = fig.get_subplot(r + 1, c + 1).xaxis.domain[1]
        fig.add_trace(
            go.Heatmap(
                z=a,
                zmid=None if shared_scale else zmid,
                zmin=zmin,
                zmax=zmax,
                colorscale=colorscale,
                showscale=shared_scale is False or i == 0,
                colorbar={
                    "len": 0.9 / rows,
                    "x": 1.0 if shared_scale else right_edge + 0.01,
                    "xanchor": "left",
                    "thickness": 12,
                    "y": 1 - (r + 0.5) / rows,
                },
            ),
            row=r + 1,
            col=c + 1,
        )
        fig.update_yaxes(autorange="reversed", row=r + 1, col=c + 1)
    fig.update_layout(title=title, height=height * rows, margin={"t": 80})
    return fig


def line_chart(
    series: Mapping[str, Sequence[float]],
    x: Sequence | None = None,
    title: str = "",
    xlabel: str = "",
    ylabel: str = "",
    log_y: bool = False,
    colorscale: str | None = None,
    height: int = 420,
) -> go.Figure:
    """One line per named series (``colorscale``: colour lines in order, e.g. by block depth)."""
    fig = go.Figure()
    names = list(series)
    colors = None
    if colorscale is not None:
        colors = pc.sample_colorscale(colorscale, np.linspace(0, 1, max(len(names), 2)))
    for i, name in enumerate(names):
        y = _array(series[name])
        line = {"color": colors[i]} if colors else {}
        fig.add_trace(
            go.Scatter(
                x=x if x is not None else np.arange(len(y)), y=y, name=name, mode="lines", line=line
            )
        )
    fig.update_layout(title=title, xaxis_title=xlabel, yaxis_title=ylabel, height=height)
    if log_y:
        fig.update_yaxes(type="log")
    return fig


def selection_curves(
    series: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    kept_x: float | None,
    kept_label: str = "kept",
    title: str = "",
    xlabel: str = "",
    ylabel: str = "",
    height: int = 420,
) -> go.Figure:
    """Scores over training, one line with markers per named (x, y) series, and a dashed
    vertical line at ``kept_x`` (where the kept model was scored, e.g. the best validation)."""
    fig = go.Figure(
        [go.Scatter(x=list(x), y=_array(y), name=name, mode="lines+markers")
         for name, (x, y) in series.items()]
    )  # fmt: skip
    if kept_x is not None:
        fig.add_vline(x=kept_x, line={"dash": "dash", "color": "black"},
                      annotation_text=kept_label, annotation_position="top right")  # fmt: skip
    fig.update_layout(title=title, xaxis_title=xlabel, yaxis_title=ylabel, height=height)
    return fig


def grouped_bars(
    categories: Sequence,
    series: Mapping[str, Sequence[float]],
    title: str = "",
    xlabel: str = "",
    ylabel: str = "",
    log_y: bool = False,
    height: int = 420,
) -> go.Figure:
    """Bars per category, one colour per series (e.g. gradient norm per block, RM on vs off)."""
    fig = go.Figure([go.Bar(x=list(categories), y=_array(v), name=k) for k, v in series.items()])
    fig.update_layout(
        title=title, xaxis_title=xlabel, yaxis_title=ylabel, barmode="group", height=height
    )
    if log_y:
        fig.update_yaxes(type="log")
    return fig


def stacked_bars(
    table: Mapping[str, Mapping[str, float]],
    title: str = "",
    ylabel: str = "",
    height: int = 420,
) -> go.Figure:
    """table[bar][part] -> value, parts stacked (e.g. trainable parameters by group)."""
    bars = list(table)
    parts = list(dict.fromkeys(p for row in table.values() for p in row))
    fig = go.Figure([go.Bar(x=bars, y=[table[b].get(p, 0) for b in bars], name=p) for p in parts])
    fig.update_layout(title=title, yaxis_title=ylabel, barmode="stack", height=height)
    return fig


def scatter_versus(
    x: Sequence[float],
    y: Sequence[float],
    title: str = "",
    xlabel: str = "",
    ylabel: str = "",
    color: Sequence[float] | None = None,
    color_label: str = "",
    hover: Sequence[str] | None = None,
    limits: tuple[float, float] = (0.0, 1.0),
) -> go.Figure:
    """Paired values as points against the line y = x (above it: y is larger)."""
    marker: dict = {"size": 8}
    if color is not None:
        marker.update(color=list(color), colorscale="Viridis", colorbar={"title": color_label})
    line = {"dash": "dot", "color": "grey"}
    fig = go.Figure(
        [
            go.Scatter(x=limits, y=limits, mode="lines", line=line, name="y = x"),
            go.Scatter(
                x=list(x), y=list(y), mode="markers", marker=marker, text=hover, name="pairs"
            ),
        ]
    )
    fig.update_layout(
        title=title, xaxis_title=xlabel, yaxis_title=ylabel, height=520, width=600,
        legend={"orientation": "h", "y": -0.2},  # below the plot, clear of the colour bar
    )  # fmt: skip
    return fig


def overlay(rgb: np.ndarray, masks: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """``rgb`` (H, W, 3 in [0, 1]) with each boolean mask of ``masks`` (N, H, W) tinted."""
    out = np.array(rgb, dtype=float, copy=True)
    for k, mask in enumerate(np.asarray(masks, dtype=bool)):
        out[mask] = (1 - alpha) * out[mask] + alpha * PALETTE[k % len(PALETTE)]
    return out


def _jpeg_uri(rgb: np.ndarray, side: int) -> str:
    """A small JPEG data URI of an RGB image in [0, 1] (keeps stored notebooks small)."""
    picture = Image.fromarray((255 * np.clip(rgb, 0, 1)).astype(np.uint8))
    picture.thumbnail((side, side))
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def image_grid(
    rows: Sequence[Sequence[tuple[str, np.ndarray]]], title: str = "", side: int = 192
) -> go.Figure:
    """A grid of RGB images in [0, 1], each (subplot title, array), stored as small JPEGs."""
    cols = max(len(r) for r in rows)
    fig = make_subplots(
        rows=len(rows),
        cols=cols,
        horizontal_spacing=0.02,
        vertical_spacing=0.06,
        subplot_titles=[name for row in rows for name, _ in row],
    )
    for r, row in enumerate(rows, start=1):
        for c, (_, rgb) in enumerate(row, start=1):
            fig.add_trace(go.Image(source=_jpeg_uri(rgb, side)), row=r, col=c)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.update_annotations(font_size=11)  # the subplot titles
    fig.update_layout(
        title=title, height=300 * len(rows), width=300 * cols, margin={"t": 60, "l": 10, "r": 10}
    )
    return fig


# ---- a cube turned by a unit quaternion (notebook 02) --------------------------------------

CUBE = np.array([[x, y, z] for x in (-0.5, 0.5) for y in (-0.5, 0.5) for z in (-0.5, 0.5)])
CUBE_EDGES = [(i, j) for i in range(8) for j in range(i + 1, 8) if (CUBE[i] != CUBE[j]).sum() == 1]
BODY_AXES = 0.9 * np.eye(3)
BODY_COLOURS = ("#e45756", "#54a24b", "#f58518")


def _segments(starts: np.ndarray, ends: np.ndarray) -> list[list]:
    """x, y, z lists of separate line segments (None breaks the line between them)."""
    xyz: list[list] = [[], [], []]
    for a, b in zip(np.asarray(starts).tolist(), np.asarray(ends).tolist(), strict=True):
        for dim in range(3):
            xyz[dim] += [a[dim], b[dim], None]
    return xyz


def _line3d(xyz: list[list], name: str, color: str, width: int, dash: str = "solid"):
    x, y, z = xyz
    line = {"color": color, "width": width, "dash": dash}
    return go.Scatter3d(x=x, y=y, z=z, mode="lines", name=name, line=line)


def cube_rotation_figure(
    turn: Callable[[np.ndarray], np.ndarray],
    axis: Sequence[float],
    angle_deg: float,
    q: Sequence[float],
) -> go.Figure:
    """The unit cube before (grey) and after (blue) ``turn`` (points (N, 3) -> turned points),
    its body axes and the rotation ``axis`` (black); the title gives the angle and quaternion.

    Trace 1 is the turned cube: the endpoints of its edges are ``turn(CUBE)``.
    """
    u = np.asarray(axis, dtype=float) / np.linalg.norm(axis)
    i, j = (list(ends) for ends in zip(*CUBE_EDGES, strict=True))
    turned, body = np.asarray(turn(CUBE)), np.asarray(turn(BODY_AXES))
    traces = [
        _line3d(_segments(CUBE[i], CUBE[j]), "cube at 0°", "#b0b7c3", 3),
        _line3d(_segments(turned[i], turned[j]), f"q v q* at {angle_deg:g}°", "#4c78a8", 6),
        _line3d(_segments(-1.3 * u[None], 1.3 * u[None]), "axis u", "black", 4, "dash"),
    ]
    for k, color in enumerate(BODY_COLOURS):
        axis_k = _segments(np.zeros((1, 3)), body[k : k + 1])
        traces.append(_line3d(axis_k, f"body axis {k + 1}", color, 8))
    box = {"range": [-1.3, 1.3], "autorange": False}
    scene = {"xaxis": box, "yaxis": box, "zaxis": box, "aspectmode": "cube"}
    scene["camera"] = {"eye": {"x": 1.7, "y": -1.0, "z": 0.8}}  # the axis u seen from the side
    fig = go.Figure(traces)
    fig.update_layout(
        title=f"θ = {angle_deg:g}°,  q = ({', '.join(f'{x:+.3f}' for x in q)})",
        scene=scene,
        height=480,
        margin={"l": 0, "r": 0, "t": 50, "b": 0},
    )
    return fig


# ---- the benchmark (issue 15; data: experiments.benchmark.report.forest_data) -----------------


def forest_figure(forest: pd.DataFrame, bound: float) -> go.Figure:
    """A forest plot per domain: each row's paired difference to its reference with its 95%
    interval (points), the zero line and the equivalence bound +-``bound`` (dashed)."""
    domains = list(dict.fromkeys(forest["domain"]))
    fig = make_subplots(rows=1, cols=len(domains), subplot_titles=domains, shared_yaxes=True)
    colours = {"better": "#54a24b", "worse": "#e45756"}
    for col, domain in enumerate(domains, 1):
        part = forest[forest["domain"] == domain]
        errors = {"type": "data", "symmetric": False, "array": part["high"] - part["d"],
                  "arrayminus": part["d"] - part["low"]}  # fmt: skip
        marker = [colours.get(v, "#4c78a8") for v in part["verdict"]]
        fig.add_scatter(x=part["d"], y=part["label"], mode="markers", error_x=errors,
                        marker={"color": marker}, showlegend=False, row=1, col=col)  # fmt: skip
        for x, dash in ((0.0, "solid"), (-bound, "dash"), (bound, "dash")):
            fig.add_vline(x=x, line={"dash": dash, "color": "grey", "width": 1}, row=1, col=col)
    fig.update_xaxes(title="difference (points)", row=1, col=(len(domains) + 1) // 2)
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(title="Paired differences with 95% intervals (green better, red worse)",
                      height=max(400, 22 * forest["label"].nunique() + 120),
                      width=max(700, 360 + 180 * len(domains)))  # fmt: skip
    return fig
