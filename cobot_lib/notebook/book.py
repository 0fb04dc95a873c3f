"""A browsable HTML book of the executed notebooks, built offline (Sphinx + MyST-NB + book theme).

    python -m cobot_lib.notebook.book runs/walkthrough --out runs/book   # after the walkthrough

``python3 workbook.py run`` builds it after executing the notebooks: ``runs/book/index.html``
opens in any browser, with a table of contents, previous / next navigation, a search page and
each notebook's outputs as they were executed (nothing is executed again).

Figures. Each stored plotly figure carries a static image (``static.StaticPlotlyRenderer``); in
the book it becomes one HTML block holding that picture and the figure's JSON. Where JavaScript
runs, ``cobot_figures.js`` draws the interactive figure with the plotly.js of the plotly package
(copied into ``_static``) and removes the picture; where it does not, the picture stays. Widget
outputs show their static picture (the live panels need a kernel).

Offline. Nothing is fetched, at build time or when a page is read: plotly.js and MathJax (from
the ``sphinx-mathjax-offline`` package) are copied into ``_static``, MyST-NB's ipywidgets
scripts (a CDN by default) are switched off, and ``remote_resources`` lists every resource a
page would load from the network; the build fails if there is any.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import nbformat

from .static import PLOTLY_JS, PLOTLY_MIME, STATIC_MIMES, WIDGET_MIME

__all__ = ["BookError", "BookResult", "build_book", "figure_html", "main", "remote_resources"]

HERE = Path(__file__).resolve().parent
ASSETS = HERE / "book_assets"  # cobot_figures.js / .css
MATHJAX_PARTS = ("tex-chtml.js", "input/tex/extensions", "output/chtml/fonts/woff-v2")
TITLE = "SAM-COBOT workbook"

CONF = """\
# Written by cobot_lib.notebook.book; the book is rebuilt from the executed notebooks.
project = {title!r}
author = "the SAM-COBOT workbook contributors"
html_title = {title!r}
extensions = ["myst_nb"]
exclude_patterns = ["_build"]
nb_execution_mode = "off"  # the notebooks were executed by the walkthrough
nb_ipywidgets_js = {{}}  # MyST-NB would load require.js and the widget manager from a CDN
nb_output_stderr = "show"
myst_enable_extensions = ["dollarmath", "amsmath"]
html_theme = "sphinx_book_theme"
html_theme_options = {{
    "home_page_in_toc": True,
    "show_toc_level": 2,
    "use_download_button": True,
    "use_fullscreen_button": False,
}}
html_context = {{"default_mode": "light"}}  # unset, the theme logs an error on every page
html_static_path = ["_static"]
html_js_files = ["plotly.min.js", "cobot_figures.js"]
html_css_files = ["cobot_figures.css"]
html_show_sourcelink = False
html_copy_source = False
mathjax_path = "mathjax/tex-chtml.js"  # relative to _static: a local copy, no CDN
mathjax3_config = {{"options": {{"enableMenu": False}}}}  # the menu would load more files
suppress_warnings = ["mystnb.unknown_mime_type", "myst.header"]
"""


class BookError(RuntimeError):
    """The book could not be built (missing notebooks, Sphinx failed, a remote resource)."""


@dataclass
class BookResult:
    index: Path
    pages: list[str]
    seconds: float
    figures: int
    warnings: list[str] = field(default_factory=list)


# --- notebooks -> book sources ------------------------------------------------------------------


def figure_html(figure: dict, static: tuple[str, str] | None) -> str:
    """One plotly figure as HTML: its static picture, replaced by the live figure where JS runs."""
    spec = json.dumps(figure, separators=(",", ":")).replace("</", "<\\/")
    picture = ""
    if static is not None:
        mime, data = static
        picture = (
            f'<img class="cobot-figure-static" alt="static picture of the figure" '
            f'src="data:{mime};base64,{data}">'
        )
    return (
        f'<div class="cobot-figure">{picture}<div class="cobot-figure-live"></div>'
        f'<script type="application/json" class="cobot-figure-spec">{spec}</script></div>'
    )


def prepare_notebook(nb: nbformat.NotebookNode) -> int:
    """Rewrite outputs for the book in place; returns the number of figures."""
    figures = 0
    nb.metadata.pop("widgets", None)  # no widget state: the book shows the static pictures
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            data = output.get("data")
            if not data:
                continue
            if PLOTLY_MIME in data:
                static = next(((m, data[m]) for m in STATIC_MIMES if m in data), None)
                output["data"] = {"text/html": figure_html(data[PLOTLY_MIME], static),
                                  "text/plain": "<plotly figure>"}  # fmt: skip
                figures += 1
            elif WIDGET_MIME in data:
                del data[WIDGET_MIME]
                if not any(m in data for m in STATIC_MIMES):
                    data["text/plain"] = "(an interactive widget: it needs a running kernel)"
    return figures


def _title(nb: nbformat.NotebookNode, fallback: str) -> str:
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            match = re.search(r"^#\s+(.+)$", cell.source, flags=re.M)
            if match:
                return match.group(1).strip()
    return fallback


def _index(chapters: list[tuple[str, str]], appendix: list[tuple[str, str]]) -> str:
    def toctree(caption: str, entries: list[tuple[str, str]]) -> str:
        lines = "\n".join(stem for stem, _ in entries)
        return f"```{{toctree}}\n:caption: {caption}\n:maxdepth: 1\n\n{lines}\n```\n"

    text = (
        f"# {TITLE}\n\n"
        "SAM-COBOT (Peng et al., CVPR 2024) in executed notebooks: from the T-product and the "
        "Hamilton product to fine-tuning, ablations and parameter space. Each page is a "
        "notebook as `python3 workbook.py run` executed it; to change and re-run one, open "
        "`notebooks/` in JupyterLab. Figures are interactive where JavaScript runs and static "
        "pictures where it does not.\n\n" + toctree("Notebooks", chapters)
    )
    if appendix:
        text += "\n" + toctree("Appendix", appendix)
    return text


def _mathjax_source() -> Path:
    try:
        dist = importlib.metadata.distribution("sphinx-mathjax-offline")
    except importlib.metadata.PackageNotFoundError as err:
        raise BookError(
            "the book needs MathJax offline: pip install sphinx-mathjax-offline "
            "(in the 'notebooks' extra)"
        ) from err
    return Path(dist.locate_file("sphinx-mathjax-offline/static/mathjax"))


def write_sources(executed: Sequence[Path], source: Path) -> tuple[list[str], int]:
    """conf.py, index.md, the prepared notebooks and _static in ``source`` (made afresh)."""
    if source.exists():
        shutil.rmtree(source)
    static = source / "_static"
    static.mkdir(parents=True)
    chapters, appendix, figures = [], [], 0
    for path in executed:
        nb = nbformat.read(path, as_version=4)
        if not _title(nb, ""):  # Sphinx leaves a page without a heading out of the toctree
            nb.cells.insert(0, nbformat.v4.new_markdown_cell(f"# {path.stem}"))
        figures += prepare_notebook(nb)
        nbformat.write(nb, source / path.name)
        entry = (path.stem, _title(nb, path.stem))
        (appendix if path.stem[:1].isalpha() else chapters).append(entry)
    (source / "conf.py").write_text(CONF.format(title=TITLE), encoding="utf-8")
    (source / "index.md").write_text(_index(chapters, appendix), encoding="utf-8")
    shutil.copy(PLOTLY_JS, static / "plotly.min.js")
    for asset in ASSETS.iterdir():
        shutil.copy(asset, static / asset.name)
    mathjax = _mathjax_source()
    for part in MATHJAX_PARTS:
        target = static / "mathjax" / part
        target.parent.mkdir(parents=True, exist_ok=True)
        copy = shutil.copytree if (mathjax / part).is_dir() else shutil.copy
        copy(mathjax / part, target)
    return [stem for stem, _ in chapters + appendix], figures


# --- what a page would fetch from the network -------------------------------------------------

REMOTE = re.compile(r"^(https?:)?//", re.I)
CSS_URL = re.compile(r"""(?:url\(\s*['"]?|@import\s+['"])([^'")\s]+)""", re.I)
LOADING = {"script": "src", "img": "src", "iframe": "src", "source": "src", "embed": "src",
           "link": "href", "video": "src", "audio": "src"}  # fmt: skip


class _Resources(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attrs_d = dict(attrs)
        wanted = LOADING.get(tag)
        if tag == "link" and (attrs_d.get("rel") or "") in ("canonical", "alternate"):
            return  # not loaded by the browser
        if wanted and attrs_d.get(wanted):
            self.found.append(attrs_d[wanted] or "")
        self.found += CSS_URL.findall(attrs_d.get("style") or "")


def remote_resources(folder: Path) -> list[str]:
    """'file: url' for every resource a page or stylesheet of ``folder`` loads from the network
    (scripts, stylesheets, images, frames, fonts, CSS imports); links a reader may click are
    not resources."""
    found = []
    for page in sorted(folder.rglob("*.html")):
        parser = _Resources()
        parser.feed(page.read_text(encoding="utf-8", errors="replace"))
        found += [f"{page.relative_to(folder)}: {u}" for u in parser.found if REMOTE.match(u)]
    for sheet in sorted(folder.rglob("*.css")):
        urls = CSS_URL.findall(sheet.read_text(encoding="utf-8", errors="replace"))
        found += [f"{sheet.relative_to(folder)}: {u}" for u in urls if REMOTE.match(u)]
    return found


# --- the build ------------------------------------------------------------------------------------


def build_book(executed: Sequence[Path], out: Path, source: Path | None = None) -> BookResult:
    """Build the book of the ``executed`` notebooks into ``out`` (replaced); offline."""
    executed = [Path(p) for p in executed]
    missing = [str(p) for p in executed if not p.is_file()]
    if not executed or missing:
        raise BookError(f"no executed notebooks to build the book from (missing: {missing})")
    start = time.perf_counter()
    out = Path(out)
    source = Path(source) if source else out.with_name(out.name + "_source")
    pages, figures = write_sources(executed, source)
    if out.exists():
        shutil.rmtree(out)
    command = [sys.executable, "-m", "sphinx", "-b", "html", "-q", "-E", "-j", "1",
               str(source), str(out)]  # fmt: skip
    proc = subprocess.run(command, capture_output=True, text=True)
    warnings = [line for line in proc.stderr.splitlines() if "WARNING" in line]
    if proc.returncode or not (out / "index.html").is_file():
        raise BookError(f"sphinx-build failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    remote = remote_resources(out)
    if remote:
        raise BookError("the book would load from the network:\n  " + "\n  ".join(remote[:20]))
    return BookResult(out / "index.html", pages, time.perf_counter() - start, figures, warnings)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cobot_lib.notebook.book",
        description="Build the HTML book of executed notebooks (offline).",
    )
    parser.add_argument("executed", help="folder of executed NN_*.ipynb (runs/walkthrough)")
    parser.add_argument("--out", default="runs/book", help="output folder (replaced)")
    args = parser.parse_args(argv)
    folder = Path(args.executed)
    notebooks = sorted(folder.glob("[0-9]*.ipynb")) + sorted(folder.glob("[A-Z][0-9]*.ipynb"))
    try:
        result = build_book(notebooks, Path(args.out))
    except BookError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"book: {result.index} ({len(result.pages)} pages, {result.figures} figures, "
          f"{result.seconds:.1f} s)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
