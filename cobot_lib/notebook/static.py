"""Static pictures of plotly figures, so that a stored notebook shows its figures without a kernel.

A plotly figure is stored in a notebook as plotly's mime bundle
(``application/vnd.plotly.v1+json``): small and interactive in JupyterLab, but invisible on a
repository's web page, in nbconvert without JavaScript and in any viewer without plotly.js.
``StaticPlotlyRenderer`` (what ``viz.use_notebook_renderer()`` installs) adds a static image to
the same output, so every viewer picks what it can show: JupyterLab the interactive figure, the
others the picture.

The picture is drawn by kaleido (plotly's image export) in a headless Chromium: Debian's
``/usr/bin/chromium`` (``python3 workbook.py test`` installs it), or the browser named by
``$COBOT_CHROMIUM`` or ``$BROWSER_PATH``. Nothing is fetched: plotly.js comes from the plotly
package and MathJax is off. One browser is started per process and reused for every figure.
To keep notebooks small the PNG is reduced to a 128-colour palette (plots are flat colours), and
a figure that shows photographs (an ``image`` trace) is stored as a JPEG at most 600 px wide.

Without a browser the figure is still shown interactively and a single warning says how to get
the pictures; ``outputs_without_static`` (and tests/test_notebook_outputs.py) counts such outputs.
"""

from __future__ import annotations

import atexit
import base64
import io
import os
import shutil
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import kaleido
import plotly
from PIL import Image
from plotly.io.base_renderers import PlotlyRenderer

__all__ = [
    "PLOTLY_MIME",
    "STATIC_MIMES",
    "WIDGET_MIME",
    "StaticImageError",
    "StaticPlotlyRenderer",
    "chromium_path",
    "outputs_without_static",
    "static_image",
    "widget_bundle",
]

PLOTLY_MIME = "application/vnd.plotly.v1+json"
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
STATIC_MIMES = ("image/png", "image/jpeg", "image/svg+xml")
PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")
JPEG_QUALITY = 80
PALETTE_COLOURS = 128  # plots are flat colours; a colour scale keeps 128 steps
PHOTO_WIDTH = 600  # pixels: figures of (small) photographs are not drawn wider

_state: dict[str, Any] = {"server": False, "warned": False}


class StaticImageError(RuntimeError):
    """No static image could be drawn (no browser, or kaleido failed); says how to fix it."""


def chromium_path() -> str | None:
    """The browser kaleido drives: $COBOT_CHROMIUM, $BROWSER_PATH, Debian's, or one on PATH."""
    for variable in ("COBOT_CHROMIUM", "BROWSER_PATH"):
        chosen = os.environ.get(variable, "").strip()
        if chosen:
            return chosen if Path(chosen).is_file() else None
    if Path("/usr/bin/chromium").is_file():
        return "/usr/bin/chromium"
    return next((found for name in BROWSERS if (found := shutil.which(name))), None)


def _start_server() -> None:
    """One kaleido browser for this process, offline (local plotly.js, no MathJax)."""
    if _state["server"]:
        return
    browser = chromium_path()
    if browser is None:
        raise StaticImageError(
            "no Chromium for static figure images: install Debian's 'chromium' "
            "(`apt-get install chromium`; `python3 workbook.py test` does it as root) or set "
            "COBOT_CHROMIUM to a Chromium binary"
        )
    os.environ["BROWSER_PATH"] = browser  # what kaleido's choreographer looks up
    kaleido.start_sync_server(mathjax=False, plotlyjs=str(PLOTLY_JS), silence_warnings=True)
    atexit.register(kaleido.stop_sync_server, silence_warnings=True)
    _state["server"] = True


def _has_photo(fig: Mapping) -> bool:
    return any(trace.get("type") == "image" for trace in fig.get("data", ()))


def _shrink(png: bytes, photo: bool) -> tuple[str, bytes]:
    """(mime, bytes): a 128-colour PNG for plots, a JPEG for figures of photographs."""
    picture = Image.open(io.BytesIO(png)).convert("RGB")
    buffer = io.BytesIO()
    if photo:
        picture.save(buffer, format="JPEG", quality=JPEG_QUALITY, optimize=True)
        return "image/jpeg", buffer.getvalue()
    palette = picture.quantize(
        colors=PALETTE_COLOURS, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE
    )
    palette.save(buffer, format="PNG", optimize=True)
    return "image/png", buffer.getvalue()


def static_image(fig: Any, *, title: str | None = None) -> tuple[str, str]:
    """(mime type, base64 text) of a static picture of ``fig`` (a Figure or its dict).

    ``title`` replaces the figure's title in the picture (e.g. to say that a widget's live
    version needs a kernel). Raises StaticImageError when no picture can be drawn.
    """
    fig_dict = fig.to_plotly_json() if hasattr(fig, "to_plotly_json") else dict(fig)
    if title is not None:
        layout = dict(fig_dict.get("layout", {}))
        layout["title"] = {"text": title, "font": {"size": 13}}
        fig_dict = {**fig_dict, "layout": layout}
    _start_server()
    photo = _has_photo(fig_dict)
    width = fig_dict.get("layout", {}).get("width") or 700  # kaleido's default width
    scale = min(1.0, PHOTO_WIDTH / width) if photo else 1.0
    try:
        png = kaleido.calc_fig_sync(fig_dict, opts={"format": "png", "scale": scale})
    except Exception as err:  # a browser that fails to start or to draw: say which
        raise StaticImageError(
            f"kaleido could not draw the figure with {chromium_path()}: {err}"
        ) from err
    mime, data = _shrink(png, photo)
    return mime, base64.b64encode(data).decode("ascii")


def _static_or_warn(fig: Any, title: str | None = None) -> dict[str, str]:
    try:
        mime, data = static_image(fig, title=title)
    except StaticImageError as err:
        if not _state["warned"]:
            warnings.warn(f"figures are shown without static images: {err}", stacklevel=3)
            _state["warned"] = True
        return {}
    return {mime: data}


class StaticPlotlyRenderer(PlotlyRenderer):
    """plotly's mime bundle (interactive in JupyterLab) plus a static image of the same figure."""

    def to_mimebundle(self, fig_dict: dict) -> dict:
        bundle = super().to_mimebundle(fig_dict)
        bundle.update(_static_or_warn(bundle[PLOTLY_MIME]))
        return bundle


def widget_bundle(widget: Any, figure: Any, what: str) -> dict:
    """A widget's mime bundle plus a static picture of ``figure`` (its initial state).

    JupyterLab shows the live widget; viewers without a kernel (a repository page, nbconvert,
    the book) skip the widget and show the picture, whose title says that the live ``what``
    needs a running kernel.
    """
    bundle = dict(widget._repr_mimebundle_() or {})
    title = f"Initial state of the {what} (static picture: the live {what} needs a kernel)"
    bundle.update(_static_or_warn(figure, title=title))
    return bundle


def outputs_without_static(nb: Mapping) -> list[str]:
    """Where a notebook has a plotly figure or a widget without a static image (none is good)."""
    missing = []
    for index, cell in enumerate(nb.get("cells", [])):
        for number, output in enumerate(cell.get("outputs", [])):
            data = output.get("data", {})
            kind = "plotly figure" if PLOTLY_MIME in data else ""
            kind = kind or ("widget" if WIDGET_MIME in data else "")
            if kind and not any(mime in data for mime in STATIC_MIMES):
                missing.append(f"cell {index}, output {number}: {kind} without a static image")
    return missing
