"""Figure geometry of viz.heatmap_grid, read back from plotly's own layout (axis domains)."""

from __future__ import annotations

import numpy as np
import pytest

from cobot_lib.notebook import viz


@pytest.mark.parametrize("cols", [2, 3, 4])
def test_own_colour_bars_sit_in_the_gaps(cols):
    rng = np.random.default_rng(0)
    fig = viz.heatmap_grid({f"m{i}": rng.normal(size=(4, 4)) for i in range(cols)})
    width_px = fig.layout.width or 700  # plotly's default figure width
    bar_px = 12 + 45  # the bar and room for its tick labels
    for i, trace in enumerate(fig.data):
        assert trace.showscale
        bar = trace.colorbar
        own = fig.layout[f"xaxis{i + 1 if i else ''}"].domain
        assert bar.x >= own[1]  # right of its own matrix
        if i + 1 < cols:  # and clear of the next one
            nxt = fig.layout[f"xaxis{i + 2}"].domain
            assert bar.x + bar_px / width_px <= nxt[0], (i, bar.x, nxt)


def test_shared_scale_has_one_range_and_one_bar():
    fig = viz.heatmap_grid({"a": np.zeros((2, 2)), "b": np.full((2, 2), 3.0)}, shared_scale=True)
    assert [t.showscale for t in fig.data] == [True, False]
    assert {(t.zmin, t.zmax) for t in fig.data} == {(0.0, 3.0)}
