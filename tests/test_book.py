"""The HTML book (cobot_lib.notebook.book): figure blocks, output rewriting, the offline check,
and one real Sphinx build of two small notebooks.

Oracles: Python's HTML parser and json module on the produced HTML, the files Sphinx writes.
tests/browser/test_book_pages.py opens the book of the real notebooks in Chromium.
"""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from cobot_lib.notebook.book import (
    BookError,
    build_book,
    figure_html,
    prepare_notebook,
    remote_resources,
)
from cobot_lib.notebook.static import PLOTLY_MIME, WIDGET_MIME

FIGURE = {"data": [{"type": "bar", "y": [1, 2], "name": "</script><b>x</b>"}], "layout": {}}


class _Scripts(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[str] = []
        self.images: list[dict] = []
        self._in = False

    def handle_starttag(self, tag, attrs):
        self._in = tag == "script"
        if tag == "img":
            self.images.append(dict(attrs))

    def handle_data(self, data):
        if self._in:
            self.scripts.append(data)

    def handle_endtag(self, tag):
        self._in = False


def test_figure_html_holds_the_picture_and_the_exact_figure():
    parser = _Scripts()
    parser.feed(figure_html(FIGURE, ("image/png", "iVBORw0KGgo=")))
    assert json.loads(parser.scripts[0]) == FIGURE  # "</script>" in the data cannot end it early
    assert parser.images[0]["src"] == "data:image/png;base64,iVBORw0KGgo="
    assert "cobot-figure-static" in parser.images[0]["class"]


def test_prepare_notebook_rewrites_figures_and_widgets():
    cell = new_code_cell("x")
    cell.outputs = [
        new_output("display_data", data={PLOTLY_MIME: FIGURE, "image/png": "AAA"}),
        new_output(
            "display_data",
            data={WIDGET_MIME: {"model_id": "m"}, "image/png": "BBB", "text/plain": "VBox()"},
        ),  # fmt: skip
        new_output("stream", name="stdout", text="hello"),
    ]
    nb = new_notebook(cells=[cell], metadata={"widgets": {"state": {}}})
    assert prepare_notebook(nb) == 1
    figure, widget, stream = nb.cells[0].outputs
    assert set(figure.data) == {"text/html", "text/plain"} and "AAA" in figure.data["text/html"]
    assert set(widget.data) == {"image/png", "text/plain"}  # the picture, not the live widget
    assert stream.text == "hello" and "widgets" not in nb.metadata


def test_remote_resources_finds_loads_not_links(tmp_path):
    (tmp_path / "a.html").write_text(
        '<script src="https://cdn.example/x.js"></script><script src="_static/ok.js"></script>'
        '<link rel="stylesheet" href="//fonts.example/f.css"><a href="https://example.org">a</a>'
        '<img src="data:image/png;base64,AA"><div style="background: url(http://x/y.png)"></div>'
    )
    (tmp_path / "s.css").write_text("@import 'https://x/y.css'; .a { src: url(fonts/a.woff) }")
    assert remote_resources(tmp_path) == [
        "a.html: https://cdn.example/x.js",
        "a.html: //fonts.example/f.css",
        "a.html: http://x/y.png",
        "s.css: https://x/y.css",
    ]


def test_no_notebooks_is_an_error(tmp_path):
    with pytest.raises(BookError, match="missing"):
        build_book([tmp_path / "nope.ipynb"], tmp_path / "book")


def _notebook(path: Path, title: str, outputs: list) -> None:
    cell = new_code_cell("print(1)")
    cell.outputs = outputs
    nb = new_notebook(cells=[new_markdown_cell(f"# {title}\n\nSome math: $\\lambda^{{LM}}_m$."),
                             cell, new_markdown_cell("## Summary\n\nDone.")])  # fmt: skip
    nbformat.write(nb, path)


@pytest.mark.slow
def test_build_two_pages_offline(tmp_path):
    _notebook(tmp_path / "01_first.ipynb", "01 · First", [
        new_output("display_data", data={PLOTLY_MIME: FIGURE, "image/png": "iVBORw0KGgo="}),
    ])  # fmt: skip
    _notebook(tmp_path / "A1_extra.ipynb", "A1 · Extra", [new_output("stream", text="hi\n")])
    result = build_book([tmp_path / "01_first.ipynb", tmp_path / "A1_extra.ipynb"],
                        tmp_path / "book")  # fmt: skip
    book = tmp_path / "book"
    index = (book / "index.html").read_text()
    assert result.pages == ["01_first", "A1_extra"] and result.figures == 1
    assert "01_first.html" in index and "A1_extra.html" in index and "Appendix" in index
    first = (book / "01_first.html").read_text()
    assert 'class="cobot-figure"' in first and "A1_extra.html" in first  # the "next" link
    assert re.search(r'<script src="_static/plotly\.min\.js', first)
    assert (book / "_static" / "plotly.min.js").stat().st_size > 1_000_000
    assert (book / "_static" / "mathjax" / "tex-chtml.js").is_file()
    assert remote_resources(book) == []
