"""The benchmark runner: resumable across interruptions, results with their provenance.

A two-point grid (Freeze and Lightweight, one step) on a tiny prepared ct domain (one image per
split): each run takes well under a second, the whole file a few seconds.
"""

import json

import pandas as pd
import pytest

from cobot_lib.data.domains import write_domain
from cobot_lib.experiments.benchmark import cli, runner
from cobot_lib.experiments.benchmark.grid import KEY, load_grid
from cobot_lib.machine import cpu_name

GRID = """\
domains:
  ct: {steps: 1, lr: 1.0e-3}
seeds: [0, 1]
equivalence_bound: 0.5
tables:
  table4: {Freeze: {method: freeze}, Lightweight: {method: decoder}}
"""


@pytest.fixture
def setup(tmp_path, monkeypatch):
    """(grid path, data folder, results folder, the points run_point was called with)."""
    write_domain("ct", tmp_path / "data" / "ct", sizes=(1, 1, 1))
    (tmp_path / "grid.yaml").write_text(GRID)
    calls = []

    def spy(point, root, *args):
        calls.append((point.peft.method, point.seed))
        return real(point, root, *args)

    real = runner.run_point
    monkeypatch.setattr(runner, "run_point", spy)
    return tmp_path / "grid.yaml", tmp_path / "data", tmp_path / "out", calls


def _run(grid, data, out, *extra):
    argv = ["run", "--grid", str(grid), "--data", str(data), "--out", str(out), "--jobs", "1"]
    return cli.main([*argv, *extra])


def test_an_interrupted_grid_reruns_only_what_is_missing(setup):
    grid, data, out, calls = setup
    assert _run(grid, data, out, "--seeds", "1") == 0
    assert sorted(calls) == [("decoder", 0), ("freeze", 0)]
    lines = (out / "results.jsonl").read_text().splitlines()
    first = [json.loads(line) for line in lines]
    csv = pd.read_csv(out / "results.csv")
    assert len(first) == len(csv) == 2 and list(csv["method"]) == [r["method"] for r in first]
    for row in first:  # provenance on every row
        assert row["command"].startswith("python -m cobot_lib.experiments.benchmark run --grid")
        assert row["command"].endswith("--seeds 1") and row["cpu"] == cpu_name()
        assert row["threads"] == 1 and row["torch"] and row["commit"]
    kept = next(r for r in first if r["method"] == "freeze")
    lost = next(r for r in first if r["method"] == "decoder")
    # an interruption that lost the decoder's row
    (out / "results.jsonl").write_text(json.dumps(kept) + "\n")
    calls.clear()
    assert _run(grid, data, out, "--seeds", "1") == 0
    assert calls == [("decoder", 0)]  # only the missing point ran again
    again = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert again[0] == kept  # the kept row untouched
    assert (again[1]["miou"], again[1]["mdsc"]) == (lost["miou"], lost["mdsc"])  # seeded
    assert len(pd.read_csv(out / "results.csv")) == 2
    calls.clear()
    assert _run(grid, data, out, "--seeds", "1") == 0 and calls == []  # nothing left to run


def test_more_seeds_run_only_the_new_points(setup):
    grid, data, out, calls = setup
    assert _run(grid, data, out, "--seeds", "1") == 0
    calls.clear()
    assert _run(grid, data, out) == 0
    assert calls == [("decoder", 1)]  # Freeze runs once per domain (first seed only)
    rows = runner.read_rows(out)
    assert len({tuple(r[k] for k in KEY) for r in rows}) == len(rows) == 3
    report = out.parent / "report.md"
    argv = ["report", "--grid", str(grid), "--results", str(out), "--out", str(report)]
    assert cli.main(argv) == 0
    text = report.read_text()
    assert "from 3 runs" in text and "| Lightweight | Freeze | 2 |" in text  # seeds 0 and 1


def test_select_points_and_bad_inputs(tmp_path):
    (tmp_path / "grid.yaml").write_text(GRID)
    grid = load_grid(tmp_path / "grid.yaml")
    assert len(runner.select_points(grid)) == 3  # Freeze once + Lightweight x 2 seeds
    assert len(runner.select_points(grid, ["ct"], seeds=1)) == 2
    with pytest.raises(ValueError, match=r"domain\(s\) \['sonar'\] not in the grid"):
        runner.select_points(grid, ["sonar"])
    with pytest.raises(ValueError, match="seeds=3"):
        runner.select_points(grid, seeds=3)
    with pytest.raises(ValueError, match="jobs must be"):
        runner.run_grid([], tmp_path / "out", jobs=0)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "results.jsonl").write_text('{"domain": "ct"}\n')
    with pytest.raises(ValueError, match=r"results.jsonl:1 lacks the columns \['seed'"):
        runner.read_rows(tmp_path / "out")
    (tmp_path / "out" / "results.jsonl").write_text("not json\n")
    with pytest.raises(ValueError, match="results.jsonl:1 is not a JSON line"):
        runner.read_rows(tmp_path / "out")


def test_report_without_results_says_how_to_make_them(tmp_path, capsys):
    (tmp_path / "grid.yaml").write_text(GRID)
    argv = ["report", "--grid", str(tmp_path / "grid.yaml"), "--results", str(tmp_path)]
    assert cli.main([*argv, "--out", str(tmp_path / "r.md")]) == 2
    assert "no results in" in capsys.readouterr().err and not (tmp_path / "r.md").exists()


@pytest.mark.slow
def test_a_spawned_worker_gives_the_in_process_row(tmp_path):
    """The process pool path (one point, so one worker): the same row as in this process."""
    write_domain("ct", tmp_path / "ct", sizes=(1, 1, 1))
    (tmp_path / "grid.yaml").write_text(GRID)
    points = runner.select_points(load_grid(tmp_path / "grid.yaml"), seeds=1)[1:]
    pooled = runner.run_grid(points, tmp_path / "a", jobs=2, data=tmp_path, log=lambda _: None)
    local = runner.run_grid(points, tmp_path / "b", jobs=1, data=tmp_path, log=lambda _: None)
    assert len(pooled) == len(local) == 1
    assert (pooled[0]["miou"], pooled[0]["mdsc"]) == (local[0]["miou"], local[0]["mdsc"])
