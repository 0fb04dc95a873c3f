"""The benchmark panel of notebook 05: pick a domain, a table and a row of the powered grid, click
"Run", read the row against its table's reference, seed by seed (issue 15).

    from cobot_lib.notebook.benchmark_panel import BenchmarkPanel
    grid = load_grid("configs/benchmark/grid.yaml")
    panel = BenchmarkPanel(read_rows("docs/results/benchmark"), grid)
    panel            # displays: the choices, "Run", a paired dot plot and a table of comparisons

"Run" takes each needed run (the row and its table's first row, the reference, for the first n
of the grid's seeds; Freeze once, standing for every seed) from the stored results when they hold
it, and otherwise trains it in this process (``grid.run_point``, ~30 s a run on one thread); runs
made here are added to ``panel.rows``, never written to disk. The statistics are the report's
(``report.seed_scores``, then ``statistics``: d_s = row_s - reference_s, its 95% t-interval, the
verdict with the grid's equivalence bound), so with every seed stored they equal
``report.comparisons``. The widgets only read values and draw; without a kernel (a repository
page, the book) the output is a static picture of the initial figure.
"""

from __future__ import annotations

import html
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import ipywidgets as widgets
import pandas as pd
import plotly.graph_objects as go

from ..data.benchmark_sets import ensure_benchmark_domain
from ..experiments.benchmark.grid import KEY, BenchmarkPoint, Grid, index_rows, key_of, run_point
from ..experiments.benchmark.report import (
    METRIC_NAMES,
    SECTIONS,
    metric_of,
    section_of,
    seed_scores,
)
from ..experiments.statistics import paired_differences, t_interval, verdict
from .static import widget_bundle

__all__ = ["BenchmarkPanel", "run_here"]

_LABEL = {"description_width": "initial"}


def run_here(point: BenchmarkPoint) -> dict[str, Any]:
    """Train and score ``point`` in this process on its domain (rendered first when missing)."""
    return run_point(point, ensure_benchmark_domain(point.domain))


def _table_label(table: str) -> str:
    """'Table 1 · table1', 'Fig. 5 · fig5_v8' (the paper's table the grid table belongs to)."""
    section = SECTIONS.get(section_of(table))
    return f"{section.split(' (')[0]} · {table}" if section else table


def _checked(
    grid: Grid, domain: str | None, table: str, row: str | None, seeds: int | None
) -> tuple[str, str, int]:
    """The panel's first choice with its defaults filled in; a ValueError naming a bad one."""
    domain = domain if domain is not None else next(iter(grid.domains))
    if domain not in grid.domains:
        raise ValueError(f"domain={domain!r}; the grid has {list(grid.domains)}")
    if table not in grid.tables:
        raise ValueError(f"table={table!r}; the grid has {list(grid.tables)}")
    reference, *names = grid.tables[table]
    row = row if row is not None else names[-1]
    if row not in names:
        raise ValueError(f"row={row!r}; table {table!r} compares {names} with {reference!r}")
    own = grid.seeds_of(domain)
    seeds = seeds if seeds is not None else len(own)
    if isinstance(seeds, bool) or not isinstance(seeds, int) or not 1 <= seeds <= len(own):
        raise ValueError(f"seeds={seeds!r}; expected 1..{len(own)} ({domain}'s seeds {own})")
    return domain, row, seeds


class BenchmarkPanel:
    """Widgets around the grid's runs and the report's statistics; ``panel.widget`` is displayed.

    rows: the stored results rows (``runner.read_rows``; copied). grid: the ``Grid`` they belong
    to. domain / table / row / seeds: the first choice (default: the first domain, the table's
    last row, every seed). runner: point -> results row (default ``run_here``; tests pass a
    stand-in). Attributes: ``rows`` (stored + made here), ``shown`` (the comparisons drawn),
    ``last_error`` (the exception of the last click, None when it went well).
    """

    def __init__(
        self,
        rows: Sequence[Mapping[str, Any]],
        grid: Grid,
        *,
        domain: str | None = None,
        table: str = "table1",
        row: str | None = None,
        seeds: int | None = None,
        runner: Callable[[BenchmarkPoint], Mapping[str, Any]] | None = None,
        show_initial: bool = True,
    ):
        domain, row, seeds = _checked(grid, domain, table, row, seeds)
        names = list(grid.tables[table])[1:]
        self.grid, self.runner = grid, runner or run_here
        self.rows = [dict(r) for r in rows]
        self._index = index_rows(self.rows)
        self.shown: dict[tuple, dict[str, Any]] = {}  # (domain, table, row, seeds) -> comparison
        self.last_error: BaseException | None = None

        self.domain = widgets.Dropdown(description="domain", options=list(grid.domains),
                                       value=domain, style=_LABEL,
                                       layout={"width": "170px"})  # fmt: skip
        self.table = widgets.Dropdown(
            description="table", options=[(_table_label(t), t) for t in grid.tables], value=table,
            style=_LABEL, layout={"width": "290px"})  # fmt: skip
        self.row = widgets.Dropdown(description="row", options=names, value=row, style=_LABEL,
                                    layout={"width": "300px"})  # fmt: skip
        self.seeds = widgets.BoundedIntText(description="seeds", value=seeds, min=1,
                                            max=len(grid.seeds_of(domain)), style=_LABEL,
                                            layout={"width": "110px"})  # fmt: skip
        self.button = widgets.Button(description="Run", button_style="primary",
                                     tooltip="load stored runs, train missing ones")  # fmt: skip
        self.status = widgets.HTML()
        self.summary_table = widgets.HTML()
        self.figure = go.FigureWidget(
            data=[go.Scatter(name="one seed (row and reference)", x=[], y=[], text=[],
                             mode="lines+markers", line={"color": "#b0b7c3"},
                             marker={"color": "black", "size": 7},
                             hovertemplate="%{text}: %{y:.2f}<extra></extra>"),
                  go.Scatter(name="mean over seeds", x=[], y=[], mode="markers",
                             marker={"color": "#f58518", "size": 13, "symbol": "diamond"})],
            layout={"height": 420, "margin": {"t": 90}, "showlegend": True,
                    "title": "Benchmark: choose a row and click Run",
                    "yaxis": {"title": "score (%)"}},
        )  # fmt: skip
        self.table.observe(self._table_changed, "value")
        self.domain.observe(self._domain_changed, "value")
        self.button.on_click(self._clicked)
        choices = widgets.HBox([self.domain, self.table, self.row, self.seeds])
        self.widget = widgets.VBox([choices, widgets.HBox([self.button, self.status]),
                                    self.figure, self.summary_table])  # fmt: skip
        self._render_table()
        if show_initial:
            self.show_stored()

    # ---- what the widgets say ------------------------------------------------------------
    def _table_changed(self, change: dict) -> None:
        names = list(self.grid.tables[change["new"]])[1:]
        keep = self.row.value if self.row.value in names else names[-1]
        self.row.options = names
        self.row.value = keep

    def _domain_changed(self, change: dict) -> None:
        most = len(self.grid.seeds_of(change["new"]))  # a domain may run more seeds
        self.seeds.max = most
        self.seeds.value = most

    def points(self, name: str) -> list[BenchmarkPoint]:
        """The runs row ``name`` of the chosen table needs: one per chosen seed (Freeze: one)."""
        spec = self.grid.tables[self.table.value][name]
        seeds = self.grid.seeds_of(self.domain.value)[: self.seeds.value]
        protocol = self.grid.domains[self.domain.value]
        runs = seeds[:1] if spec["method"] == "freeze" else seeds
        return [BenchmarkPoint.of(self.domain.value, s, protocol, **spec) for s in runs]

    # ---- running -------------------------------------------------------------------------
    def _clicked(self, _button=None) -> None:
        try:
            self.run()
        except Exception as exc:  # shown in the panel: a widget callback has no traceback cell
            self.last_error = exc
            self.status.value = f"<b style='color:#b00'>error:</b> {html.escape(str(exc))}"

    def run(self) -> dict[str, Any]:
        """Load or train every run of the chosen row and its reference, then draw the comparison
        (returned). Runs trained before an error stay in ``rows``."""
        self.last_error = None
        self.button.disabled = True
        try:
            return self._compare(train=True)
        finally:
            self.button.disabled = False

    def show_stored(self) -> bool:
        """Draw the chosen comparison if the stored rows hold all its runs (nothing trained)."""
        if self._compare(train=False) is None:
            self._say("not all seeds of this choice are stored: click Run to train the rest")
            return False
        return True

    def _compare(self, train: bool) -> dict[str, Any] | None:
        start = time.perf_counter()
        reference = list(self.grid.tables[self.table.value])[0]
        names = (self.row.value, reference)
        needed = {key_of(p.columns()): p for n in names for p in self.points(n)}
        todo = [p for key, p in needed.items() if key not in self._index]
        if todo and not train:
            return None
        stored = len(needed) - len(todo)
        for number, point in enumerate(todo, 1):
            self._say(f"training {point.label()} on {point.domain}, seed {point.seed} "
                      f"({number} of {len(todo)} to train, ~30 s each)…")  # fmt: skip
            made = dict(self.runner(point))
            if {k: made.get(k) for k in KEY} != point.columns():
                raise ValueError(f"the runner returned {made}, not the run {point.columns()}")
            self.rows.append(made)
            self._index[key_of(made)] = made
        entry = self._statistics(self.row.value, reference)
        entry.update(stored=stored, trained=len(todo), seconds=time.perf_counter() - start)
        key = (entry["domain"], entry["table"], entry["row"], entry["seeds"])
        self.shown.pop(key, None)  # a comparison shown again moves to the end
        self.shown[key] = entry
        self._render_figure(entry)
        self._render_table()
        self._say(f"{entry['row']} vs {entry['vs']} on {entry['domain']}: {stored} run(s) "
                  f"stored, {len(todo)} trained ({entry['seconds']:.0f} s)")  # fmt: skip
        return entry

    def _statistics(self, name: str, reference: str) -> dict[str, Any]:
        """Scores per seed (``report.seed_scores``), d, its 95% interval and the verdict."""
        domain, table = self.domain.value, self.table.value
        seeds = list(self.grid.seeds_of(domain)[: self.seeds.value])
        specs = self.grid.tables[table]
        row, ref = (seed_scores(self._index, self.grid, domain, specs[n])[seeds]
                    for n in (name, reference))  # fmt: skip
        d = paired_differences(row, ref)
        low = high = math.nan
        judged = "one seed: no interval (it needs 2)"
        if len(d) >= 2:
            interval = t_interval(d)
            low, high = interval.low, interval.high
            judged = verdict(interval, self.grid.equivalence_bound)
        return {"domain": domain, "metric": METRIC_NAMES[metric_of(domain)], "table": table,
                "row": name, "vs": reference, "seeds": len(seeds), "row mean": float(row.mean()),
                "ref mean": float(ref.mean()), "d": float(d.mean()), "low": low, "high": high,
                "verdict": judged, "scores": row, "ref scores": ref}  # fmt: skip

    def _say(self, text: str) -> None:
        self.status.value = html.escape(text)

    # ---- drawing -------------------------------------------------------------------------
    def summary(self) -> pd.DataFrame:
        """One row per comparison shown (the table under the figure); scores in points."""
        hidden = ("scores", "ref scores")
        return pd.DataFrame([{k: v for k, v in e.items() if k not in hidden}
                             for e in self.shown.values()])  # fmt: skip

    def _render_table(self) -> None:
        frame = self.summary()
        if frame.empty:
            self.summary_table.value = "<i>no comparison shown yet</i>"
            return
        interval = [f"[{lo:+.2f}, {hi:+.2f}]" if not math.isnan(lo) else "—"
                    for lo, hi in zip(frame["low"], frame["high"], strict=True)]  # fmt: skip
        frame = frame.drop(columns=["low", "high"])
        frame.insert(frame.columns.get_loc("d") + 1, "95% interval", interval)
        frame["d"] = [f"{d:+.2f}" for d in frame["d"]]
        frame["seconds"] = frame["seconds"].round(1)
        style = ("<style>.benchmark-table {border-collapse: collapse; font-size: 12px}"
                 ".benchmark-table td, .benchmark-table th {padding: 2px 8px; text-align: left;"
                 " white-space: nowrap}</style>")  # fmt: skip
        self.summary_table.value = style + frame.to_html(
            index=False, border=0, float_format="%.2f", classes="benchmark-table")  # fmt: skip

    def _render_figure(self, entry: Mapping[str, Any]) -> None:
        """A paired dot plot: per seed the reference's and the row's score joined by a line."""
        ref, row, vs, name = entry["ref scores"], entry["scores"], entry["vs"], entry["row"]
        xs, ys, text = [], [], []
        for seed in row.index:
            xs += [vs, name, None]
            ys += [float(ref[seed]), float(row[seed]), None]
            text += [f"seed {seed}", f"seed {seed}", ""]
        interval = (f" [{entry['low']:+.2f}, {entry['high']:+.2f}]"
                    if not math.isnan(entry["low"]) else "")  # fmt: skip
        title = (f"{name} vs {vs} · {entry['domain']} ({entry['table']}, {entry['seeds']} seeds)"
                 f"<br>d = {entry['d']:+.2f}{interval} points: {entry['verdict']}")  # fmt: skip
        with self.figure.batch_update():
            seeds, means = self.figure.data
            seeds.x, seeds.y, seeds.text = xs, ys, text
            means.x, means.y = [vs, name], [entry["ref mean"], entry["row mean"]]
            self.figure.layout.title = title
            self.figure.layout.yaxis.title = f"{entry['metric']} (%)"

    def _repr_mimebundle_(self, **kwargs) -> dict:
        """The live widgets in JupyterLab; a static picture of the figure everywhere else."""
        return widget_bundle(self.widget, go.Figure(self.figure), "benchmark panel")
