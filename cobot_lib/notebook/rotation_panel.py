"""The rotation slider of notebook 02: an "angle" slider that turns a cube by v -> q v q*.

    panel = RotationPanel(axis=[1, 1, 0], initial_angle=30)
    panel          # JupyterLab: the slider and a live 3-D figure; elsewhere: a static picture

Moving the slider (by hand or ``panel.slider.value = 120``) redraws the figure in place; what
was drawn last is kept in ``panel.drawn`` (angle, figure data) so that a notebook can check the
picture without a browser. The cube is turned with ``algebra.quaternion.rotate`` (the Hamilton
product), the same function the notebook checks against Rodrigues' formula and scipy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import ipywidgets as widgets
import numpy as np
import plotly.graph_objects as go
import torch

from ..algebra.quaternion import from_axis_angle, rotate
from .static import widget_bundle
from .viz import cube_rotation_figure

__all__ = ["RotationPanel"]


class RotationPanel:
    """A slider (0-360 degrees) and a 3-D figure of the cube turned about ``axis``."""

    def __init__(self, axis: Sequence[float], initial_angle: int = 30, step: int = 5):
        if len(axis) != 3 or math.hypot(*axis) == 0:
            raise ValueError(f"axis must be three numbers, not all zero; got {list(axis)!r}")
        self.axis = torch.tensor([float(a) for a in axis], dtype=torch.float64)
        self.initial_angle = initial_angle
        self.slider = widgets.IntSlider(
            value=initial_angle, min=0, max=360, step=step, description="angle",
            continuous_update=False,
        )  # fmt: skip
        self.figure = go.FigureWidget(self.figure_at(initial_angle))
        self.drawn: dict = {}
        self.slider.observe(self._redraw, names="value")
        self._redraw({"new": initial_angle})
        self.widget = widgets.VBox([self.slider, self.figure])

    def quaternion(self, angle_deg: float) -> torch.Tensor:
        """The unit quaternion cos(θ/2) + sin(θ/2) u of a turn by ``angle_deg`` about the axis."""
        return from_axis_angle(self.axis, math.radians(angle_deg))

    def figure_at(self, angle_deg: float) -> go.Figure:
        """The figure the slider shows at ``angle_deg`` (a plain plotly Figure)."""
        q = self.quaternion(angle_deg)

        def turn(points: np.ndarray) -> np.ndarray:
            return rotate(torch.as_tensor(points, dtype=torch.float64), q).numpy()

        return cube_rotation_figure(turn, self.axis.tolist(), angle_deg, q.tolist())

    def _redraw(self, change: dict) -> None:
        fresh = self.figure_at(change["new"])
        with self.figure.batch_update():
            for trace, new in zip(self.figure.data, fresh.data, strict=True):
                trace.update(x=new.x, y=new.y, z=new.z, name=new.name)
            self.figure.layout.title = fresh.layout.title
        self.drawn = {"angle": change["new"], "data": self.figure.to_dict()["data"]}

    def _repr_mimebundle_(self, **kwargs) -> dict:
        return widget_bundle(self.widget, self.figure_at(self.initial_angle), "rotation slider")
