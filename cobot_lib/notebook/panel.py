"""The ablation panel of notebook 05: pick a configuration, click "Run", watch the bars move.

    from cobot_lib.notebook.panel import AblationPanel
    panel = AblationPanel(read_results("docs/results/ablations_demo.csv"))
    panel            # displays: switches, "Run", a plotly FigureWidget and a results table

The switches are those of Tables 1-3 and Fig. 5 (``AblationSpec``): base method, COBOT on/off,
CoS (dual coefficient sets) on/off, RM learnable/fixed/off, head hypercomplex/linear/none, the
hidden size V, the number of seeds and the dataset. "Run" takes each seed's row from the results
table when it is there and otherwise trains it in this process (``ablations.run_or_load``), then
adds the configuration to the figure (mean ± std over seeds, one dot per seed) and to the table.
The widgets only read values and draw; all the work is in ``cobot_lib.ablations``. Without a
kernel (a repository page, the book) the output is a static picture of the initial figure.
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable
from dataclasses import replace

import ipywidgets as widgets
import pandas as pd
import plotly.graph_objects as go

from ..experiments.ablations import (
    COLUMNS,
    DATASETS,
    GRID_STEPS,
    RANKS,
    AblationSpec,
    find_row,
    run_or_load,
)
from ..peft.config import COBOT_CHOICES, DEFAULT_RANK, PEFT_METHODS
from .static import widget_bundle

__all__ = ["AblationPanel"]

_LABEL = {"description_width": "initial"}
_METRIC = {"miou": "mIoU", "mdsc": "DSC"}


class AblationPanel:
    """Widgets around ``run_or_load``; ``panel.widget`` is the displayed box.

    table: the stored results (rows of ``ablations.COLUMNS``); rows run here are added to
    ``panel.results`` (never written to disk). steps / checkpoint: the schedule and starting
    model of the runs (rows are reused only for the same ones). runner: ``run_or_load`` or a
    stand-in with its signature (tests).
    """

    def __init__(
        self,
        table: pd.DataFrame | None = None,
        *,
        steps: int = GRID_STEPS,
        checkpoint: str = "foundation",
        seeds: int = 1,
        dataset: str = "demo:nuclei",
        show_initial: bool = True,
        runner: Callable[..., dict] = run_or_load,
    ):
        AblationSpec(dataset=dataset, steps=steps, checkpoint=checkpoint)  # checks the values
        full = AblationSpec()  # the widgets start at the paper's full COBOT on Adaptformer
        self.steps, self.checkpoint, self.runner = steps, checkpoint, runner
        self.results = (table if table is not None else pd.DataFrame(columns=COLUMNS)).copy()
        self.shown: dict[tuple, dict] = {}  # configuration -> {"spec", "values", "sources", ...}
        self.last_error: BaseException | None = None

        def toggles(description: str, options: tuple[str, ...], value: str):
            return widgets.ToggleButtons(description=description, options=options, value=value,
                                         style={**_LABEL, "button_width": "125px"})  # fmt: skip

        self.method = widgets.Dropdown(description="base method", options=sorted(PEFT_METHODS),
                                       value=full.method, style=_LABEL,
                                       layout={"width": "230px"})  # fmt: skip
        narrow = {"width": "130px"}
        self.cobot = widgets.Checkbox(description="COBOT", value=True, indent=False, layout=narrow)
        self.cos = widgets.Checkbox(description="CoS", value=True, indent=False, layout=narrow)
        self.relation = toggles("RM", COBOT_CHOICES["relation"], full.relation)
        self.head = toggles("head", COBOT_CHOICES["head"], full.head)
        self.rank = widgets.Dropdown(description="V", options=[(str(v), v) for v in RANKS],
                                     value=full.rank, style=_LABEL,
                                     layout={"width": "90px"})  # fmt: skip
        self.seeds = widgets.BoundedIntText(description="seeds", value=seeds, min=1, max=10,
                                            style=_LABEL, layout={"width": "120px"})  # fmt: skip
        self.dataset = widgets.Dropdown(description="dataset", options=list(DATASETS),
                                        value=dataset, style=_LABEL,
                                        layout={"width": "220px"})  # fmt: skip
        self.button = widgets.Button(description="Run", button_style="primary",
                                     tooltip="run or load the chosen configuration")  # fmt: skip
        self.status = widgets.HTML()
        self.table = widgets.HTML()
        self.figure = go.FigureWidget(
            data=[
                go.Bar(name="mean ± std over seeds", x=[], y=[], marker_color=[],
                       error_y={"type": "data", "array": [], "visible": True}),
                go.Scatter(name="one seed", x=[], y=[], mode="markers",
                           marker={"color": "black", "size": 7, "symbol": "circle-open"}),
            ],
            layout={"height": 380, "margin": {"t": 40, "b": 120}, "showlegend": True,
                    "title": "Ablations: score per configuration (%)",
                    "yaxis": {"title": "mIoU (nuclei) / DSC (mri), %"}},
        )  # fmt: skip
        self.method.observe(self._method_changed, "value")
        self.cobot.observe(self._cobot_changed, "value")
        self.button.on_click(self._clicked)
        controls = widgets.VBox([
            widgets.HBox([self.method, self.dataset, self.rank, self.seeds]),
            widgets.HBox([self.cobot, self.cos]),
            self.relation,
            self.head,
            widgets.HBox([self.button, self.status]),
        ])  # fmt: skip
        self.widget = widgets.VBox([controls, self.figure, self.table])
        self._render_table()
        if show_initial:
            self.show_stored()

    # ---- what the widgets say ------------------------------------------------------------
    def spec(self, seed: int = 0) -> AblationSpec:
        """The configuration the widgets show, for one seed."""
        dual, single = COBOT_CHOICES["coefficient_sets"]
        return AblationSpec.of(
            method=self.method.value,
            cobot=self.cobot.value,
            coefficient_sets=dual if self.cos.value else single,
            relation=self.relation.value,
            head=self.head.value,
            rank=self.rank.value,
            dataset=self.dataset.value,
            seed=seed,
            steps=self.steps,
            checkpoint=self.checkpoint,
        )

    def _method_changed(self, change: dict) -> None:
        self.rank.value = DEFAULT_RANK[change["new"]]

    def _cobot_changed(self, change: dict) -> None:
        for switch in (self.cos, self.relation, self.head):
            switch.disabled = not change["new"]

    # ---- running -------------------------------------------------------------------------
    def _clicked(self, _button=None) -> None:
        try:
            self.run()
        except Exception as exc:  # shown in the panel: a widget callback has no traceback cell
            self.last_error = exc
            self.status.value = f"<b style='color:#b00'>error:</b> {html.escape(str(exc))}"

    def run(self) -> list[dict]:
        """Run or load every seed of the chosen configuration, then redraw; returns the rows."""
        self.last_error = None
        self.button.disabled = True
        rows, start = [], time.perf_counter()
        try:
            n = self.seeds.value
            for seed in range(n):
                spec = self.spec(seed)
                self._say(f"{spec.label()} on {spec.dataset}: seed {seed + 1}/{n}…")
                progress = self._progress(spec, seed, n)
                row = self.runner(spec, self.results, callbacks=[progress])
                rows.append(row)
                if row["source"] == "run":
                    new = pd.DataFrame([{k: row[k] for k in COLUMNS}], columns=COLUMNS)
                    self.results = pd.concat([self.results, new], ignore_index=True)
            self._add(self.spec(0), rows)
            ran = sum(r["source"] == "run" for r in rows)
            took = time.perf_counter() - start
            self._say(f"{self.spec(0).label()} on {self.dataset.value}: {len(rows) - ran} "
                      f"seed(s) from the table, {ran} trained ({took:.0f} s)")  # fmt: skip
        finally:
            self.button.disabled = False
        return rows

    def show_stored(self) -> bool:
        """Show the widgets' configuration if the table holds all its seeds (no training)."""
        rows = [find_row(self.results, self.spec(seed)) for seed in range(self.seeds.value)]
        if any(r is None for r in rows):
            self._say("choose a configuration and click Run")
            return False
        self._add(self.spec(0), [{**r, "source": "table"} for r in rows])
        self._say("stored result shown; change a switch and click Run")
        return True

    def _progress(self, spec: AblationSpec, seed: int, n: int) -> Callable[[dict], None]:
        def report(record: dict) -> None:
            if record.get("event") == "step" and record["global_step"] % 8 == 0:
                step, loss = record["global_step"], record["loss"]
                self._say(f"{spec.label()} on {spec.dataset}: seed {seed + 1}/{n}, "
                          f"step {step}/{spec.steps}, loss {loss:.3f}")  # fmt: skip

        return report

    def _say(self, text: str) -> None:
        self.status.value = html.escape(text)

    # ---- drawing -------------------------------------------------------------------------
    def _add(self, spec: AblationSpec, rows: list[dict]) -> None:
        key = replace(spec, seed=0).key()  # the configuration, whatever the seed
        values = [100.0 * float(r[spec.metric]) for r in rows]
        self.shown.pop(key, None)  # re-shown configurations move to the end
        self.shown[key] = {"spec": spec, "values": values, "seeds": [int(r["seed"]) for r in rows],
                           "sources": sorted({r["source"] for r in rows}),
                           "params": int(rows[0]["params"]),
                           "seconds": sum(float(r["seconds"]) for r in rows)}  # fmt: skip
        self._render_figure()
        self._render_table()

    def summary(self) -> pd.DataFrame:
        """One row per configuration shown (the table under the figure)."""
        out = []
        for entry in self.shown.values():
            spec, values = entry["spec"], pd.Series(entry["values"], dtype=float)
            std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
            cos = "on" if spec.coefficient_sets == "dual" else "off"
            out.append({
                "configuration": spec.label(),
                "COBOT": "on" if spec.cobot else "off", "CoS": cos if spec.cobot else "-",
                "RM": spec.relation, "head": spec.head, "V": spec.rank, "dataset": spec.dataset,
                "metric": _METRIC[spec.metric],
                "score (%)": f"{values.mean():.2f} ± {std:.2f}",
                "seeds": len(values), "encoder params": entry["params"],
                "from": "+".join(entry["sources"]), "seconds": round(entry["seconds"], 1),
            })  # fmt: skip
        return pd.DataFrame(out)

    def _render_table(self) -> None:
        frame = self.summary()
        if frame.empty:
            self.table.value = "<i>no configuration shown yet</i>"
            return
        style = ("<style>.ablation-table {border-collapse: collapse; font-size: 12px}"
                 ".ablation-table td, .ablation-table th {padding: 2px 8px; text-align: left;"
                 " white-space: nowrap}"
                 "</style>")  # fmt: skip
        self.table.value = style + frame.to_html(index=False, border=0, classes="ablation-table")

    def _render_figure(self) -> None:
        entries = list(self.shown.values())
        names = [f"{e['spec'].label()}<br>{e['spec'].dataset}" for e in entries]
        means, stds = [], []
        for e in entries:
            values = pd.Series(e["values"], dtype=float)
            means.append(float(values.mean()))
            stds.append(float(values.std(ddof=1)) if len(values) > 1 else 0.0)
        colours = ["#b0b7c3"] * (len(entries) - 1) + ["#f58518"]  # the latest in orange
        dots_x = [n for n, e in zip(names, entries, strict=True) for _ in e["values"]]
        dots_y = [v for e in entries for v in e["values"]]
        with self.figure.batch_update():
            bars, dots = self.figure.data
            bars.x, bars.y, bars.marker.color = names, means, colours
            bars.error_y.array = stds
            dots.x, dots.y = dots_x, dots_y
            # bars start at 0; zoom to the values so that differences of a point are visible
            low = min(min(dots_y), *(m - s for m, s in zip(means, stds, strict=True)))
            high = max(max(dots_y), *(m + s for m, s in zip(means, stds, strict=True)))
            pad = max(1.0, 0.15 * (high - low))
            self.figure.layout.yaxis.range = [max(0.0, low - pad), min(100.0, high + pad)]

    def _repr_mimebundle_(self, **kwargs) -> dict:
        """The live widgets in JupyterLab; a static picture of the figure everywhere else."""
        return widget_bundle(self.widget, go.Figure(self.figure), "ablation panel")
