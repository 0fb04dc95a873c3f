"""The benchmark panel of notebook 05 (no browser, no training).

Oracles: ``report.comparisons`` over the same rows (the panel shows the report's numbers),
``scipy.stats.ttest_rel`` / ``ttest_1samp`` for the paired 95% intervals, and the grid's own
points for which run a missing seed needs. The results rows are hand-made with arbitrary scores.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from cobot_lib.experiments.benchmark.grid import KEY, BenchmarkPoint, load_grid
from cobot_lib.experiments.benchmark.report import comparisons
from cobot_lib.notebook.benchmark_panel import BenchmarkPanel

GRID = """\
domains:
  sonar: {steps: 2, lr: 1.0e-3}
seeds: [0, 1, 2]
equivalence_bound: 0.5
tables:
  table1:
    Adaptformer: {method: adaptformer}
    +CoS: {method: adaptformer, cobot: true, relation: "off", head: none}
    +CoS+RM+HL: {method: adaptformer, cobot: true}
  table4:
    Freeze: {method: freeze}
    LoRA: {method: lora}
"""
#: mIoU (sonar's metric) per seed of each row; DSC is set apart so a wrong metric shows.
MIOU = {
    "Adaptformer": [0.500, 0.520, 0.550],
    "+CoS": [0.531, 0.556, 0.579],
    "+CoS+RM+HL": [0.505, 0.517, 0.556],
    "Freeze": [0.300],
    "LoRA": [0.401, 0.452, 0.433],
}


@pytest.fixture
def grid(tmp_path):
    path = tmp_path / "grid.yaml"
    path.write_text(GRID)
    return load_grid(path)


def stored(grid) -> list[dict]:
    """One results row per grid point (Freeze: one), with the MIOU scores."""
    rows = []
    for table in grid.tables.values():
        for name, spec in table.items():
            for seed, miou in zip(grid.seeds, MIOU[name], strict=False):
                point = BenchmarkPoint.of("sonar", seed, grid.domains["sonar"], **spec)
                rows.append({**point.columns(), "miou": miou, "mdsc": miou + 0.2, "seconds": 30.0})
    return rows


def refuse(point):
    raise AssertionError(f"{point.label()} seed {point.seed} would be trained")


def test_all_stored_shows_the_reports_numbers_without_training(grid):
    rows = stored(grid)
    panel = BenchmarkPanel(rows, grid, table="table1", row="+CoS", runner=refuse)
    assert len(panel.shown) == 1  # shown at construction: everything is stored
    entry = panel.run()
    assert panel.last_error is None and len(panel.shown) == 1  # the same comparison, once
    line = panel.summary().iloc[-1]
    report = comparisons(rows, grid).set_index(["domain", "table", "grid_row"])
    expected = report.loc[("sonar", "table1", "+CoS")]
    for column in ("d", "low", "high", "verdict"):
        assert line[column] == expected[column], column
    row, ref = (100 * np.array(MIOU[n]) for n in ("+CoS", "Adaptformer"))
    interval = stats.ttest_rel(row, ref).confidence_interval(0.95)
    assert (line["low"], line["high"]) == pytest.approx((interval.low, interval.high))
    assert line["d"] == pytest.approx((row - ref).mean()) and line["low"] > 0
    assert line["row mean"] == pytest.approx(row.mean()) and line["metric"] == "mIoU"
    assert (line["stored"], line["trained"], line["seeds"]) == (6, 0, 3)
    assert len(panel.rows) == len(rows) and entry["verdict"] == line["verdict"]
    seeds, means = panel.figure.data
    assert list(seeds.x) == ["Adaptformer", "+CoS", None] * 3
    assert [y for y in seeds.y if y is not None] == pytest.approx(np.ravel([ref, row], "F"))
    assert list(means.y) == pytest.approx([ref.mean(), row.mean()])
    assert "+CoS vs Adaptformer" in panel.figure.layout.title.text
    assert f"[{line['low']:+.2f}, {line['high']:+.2f}]" in panel.figure.layout.title.text
    assert "+CoS" in panel.summary_table.value and "95% interval" in panel.summary_table.value


def test_a_missing_seed_is_trained_and_added(grid):
    rows = stored(grid)
    spec = grid.tables["table1"]["+CoS+RM+HL"]
    wanted = BenchmarkPoint.of("sonar", 1, grid.domains["sonar"], **spec)
    missing = next(r for r in rows if {k: r[k] for k in KEY} == wanted.columns())
    rows.remove(missing)
    calls = []

    def runner(point):
        calls.append(point)
        return {**missing, "miou": 0.6}

    panel = BenchmarkPanel(rows, grid, row="+CoS+RM+HL", runner=runner)
    assert calls == [] and panel.shown == {}  # not all stored: nothing shown, nothing trained
    panel.button.click()
    assert panel.last_error is None, panel.last_error
    assert calls == [wanted]
    assert len(panel.rows) == len(rows) + 1 and panel.rows[-1]["miou"] == 0.6
    assert missing not in rows  # the caller's list is not changed
    line = panel.summary().iloc[-1]
    assert (line["stored"], line["trained"]) == (5, 1)
    full = [0.505, 0.6, 0.556]
    assert line["d"] == pytest.approx(100 * (np.mean(full) - np.mean(MIOU["Adaptformer"])))
    panel.button.click()  # now stored
    assert calls == [wanted] and panel.summary().iloc[-1]["trained"] == 0


def test_the_table_choice_sets_the_rows(grid):
    panel = BenchmarkPanel([], grid, show_initial=False)
    assert panel.table.options == (("Table 1 · table1", "table1"), ("Table 4 · table4", "table4"))
    assert panel.row.options == ("+CoS", "+CoS+RM+HL") and panel.row.value == "+CoS+RM+HL"
    panel.table.value = "table4"
    assert panel.row.options == ("LoRA",) and panel.row.value == "LoRA"
    assert [p.label() for p in panel.points("Freeze")] == ["Freeze (zero-shot)"]


def test_a_failing_run_is_shown_not_raised(grid):
    def broken(point):
        raise RuntimeError("domain folder is read-only")

    panel = BenchmarkPanel([], grid, runner=broken)
    panel.button.click()
    assert isinstance(panel.last_error, RuntimeError)
    assert "domain folder is read-only" in panel.status.value and "error" in panel.status.value
    assert not panel.button.disabled and panel.shown == {} and panel.rows == []
    with pytest.raises(RuntimeError, match="read-only"):
        panel.run()  # called directly, the error is the caller's


def test_freeze_runs_once_and_pairs_with_every_seed(grid):
    rows = stored(grid)
    freeze = next(r for r in rows if r["method"] == "freeze")
    rows.remove(freeze)
    calls = []
    panel = BenchmarkPanel(rows, grid, table="table4", runner=lambda p: calls.append(p) or freeze)
    panel.run()
    assert [(p.peft.method, p.seed) for p in calls] == [("freeze", grid.seeds[0])]
    line = panel.summary().iloc[-1]
    assert (line["stored"], line["trained"]) == (3, 1)
    lora = 100 * np.array(MIOU["LoRA"])
    interval = stats.ttest_1samp(lora - 100 * MIOU["Freeze"][0], 0).confidence_interval(0.95)
    assert (line["low"], line["high"]) == pytest.approx((interval.low, interval.high))
    report = comparisons(panel.rows, grid).set_index(["table", "grid_row"])
    numbers = ["d", "low", "high"]
    assert line[numbers].tolist() == report.loc[("table4", "LoRA"), numbers].tolist()
    assert list(panel.figure.data[0].y[::3]) == pytest.approx([100 * MIOU["Freeze"][0]] * 3)


def test_one_seed_has_no_interval_and_bad_choices_are_named(grid):
    panel = BenchmarkPanel(stored(grid), grid, row="+CoS", seeds=1, runner=refuse)
    line = panel.summary().iloc[-1]
    assert line["seeds"] == 1 and np.isnan(line["low"]) and "no interval" in line["verdict"]
    assert "d = +3.10 points: one seed: no interval" in panel.figure.layout.title.text
    bad_choices = (({"domain": "mri"}, "domain='mri'"), ({"table": "table9"}, "table9"),
                   ({"row": "Adaptformer"}, "compares"), ({"seeds": 4}, "seeds=4"))  # fmt: skip
    for bad, match in bad_choices:
        with pytest.raises(ValueError, match=match):
            BenchmarkPanel([], grid, **bad)


def test_the_panel_opens_over_the_real_grid_without_results():
    grid = load_grid("configs/benchmark/grid.yaml")
    panel = BenchmarkPanel([], grid, runner=refuse)
    assert panel.shown == {} and "click Run" in panel.status.value
    assert len(panel.table.options) == len(grid.tables) and panel.seeds.value == len(grid.seeds)
    assert panel.row.value == "+CoS+RM+HL"
