"""cobot_lib.experiments.sweep and its local executor (launch): grids, slugs, bad grids, tables,
resumable sweeps."""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from cobot_lib.experiments.cli import main
from cobot_lib.experiments.launch import run_sweep
from cobot_lib.experiments.sweep import (
    NOTEBOOK,
    Sweep,
    SweepError,
    collect,
    expand_grid,
    find_run,
    load_results,
    load_sweep,
    run_slug,
)
from cobot_lib.experiments.tables import results_markdown, row_config, summarise, variant_label

REPO = Path(__file__).resolve().parents[1]
TIMING = ["seconds", "train_seconds"]


# ---- grid expansion ------------------------------------------------------------------------
def test_product_first_key_slowest_with_fixed() -> None:
    runs = expand_grid({"method": ["lora", "adaptformer"], "seed": [0, 1, 2]}, {"epochs": 3})
    assert runs == [
        {"epochs": 3, "method": m, "seed": s} for m in ("lora", "adaptformer") for s in (0, 1, 2)
    ]


def test_list_of_grids_is_the_union_without_duplicates() -> None:
    runs = expand_grid(
        [
            {"method": ["freeze"], "cobot": [False]},
            {"method": ["lora", "freeze"], "cobot": [False]},  # freeze/False again
            {"method": ["lora"], "cobot": [True]},
        ]
    )
    assert runs == [
        {"method": "freeze", "cobot": False},
        {"method": "lora", "cobot": False},
        {"method": "lora", "cobot": True},
    ]


@pytest.mark.parametrize(
    ("grid", "fixed", "message"),
    [
        ({"seed": 0}, {}, "seed must be a non-empty list"),
        ({"seed": []}, {}, "seed must be a non-empty list"),
        ({"seed": [0]}, {"seed": 1}, "seed is also under 'fixed'"),
        ([], {}, "the grid is empty"),
        (["seed"], {}, "grid entry 0 must be a non-empty mapping"),
    ],
)
def test_malformed_grids(grid, fixed, message) -> None:
    with pytest.raises(SweepError, match=message):
        expand_grid(grid, fixed)


# ---- slugs ----------------------------------------------------------------------------------
PARAMS = {"dataset": "demo:nuclei", "method": "lora", "cobot": True, "seed": 2, "lr": 0.001}


def test_slug_ignores_order_and_is_readable() -> None:
    reordered = dict(reversed(list(PARAMS.items())))
    assert run_slug(reordered) == run_slug(PARAMS)
    assert run_slug(PARAMS).startswith("nuclei-lora-cobot-lr0.001-s2-")


def test_slug_is_pinned_and_the_same_in_another_process() -> None:
    # pinned: a change of the hashing would orphan every finished run of every sweep
    canonical = '{"cobot":true,"dataset":"demo:nuclei","lr":0.001,"method":"lora","seed":2}'
    digest = hashlib.sha256(canonical.encode()).hexdigest()[:10]
    assert run_slug(PARAMS) == f"nuclei-lora-cobot-lr0.001-s2-{digest}"
    assert digest == "16e521fc13"
    code = "from cobot_lib.experiments.sweep import run_slug; import json, sys; "
    code += "print(run_slug(json.loads(sys.argv[1])))"
    out = subprocess.run(
        [sys.executable, "-c", code, json.dumps(dict(reversed(list(PARAMS.items()))))],
        capture_output=True, text=True, check=True, env={**os.environ, "PYTHONHASHSEED": "123"},
    ).stdout.strip()  # fmt: skip
    assert out == run_slug(PARAMS)


def test_slugs_differ_for_every_run_of_the_shipped_grids() -> None:
    for path in sorted((REPO / "configs" / "sweeps").glob("*.yaml")):
        sweep = load_sweep(path)
        slugs = [run_slug(r) for r in sweep.runs]
        assert len(set(slugs)) == len(slugs) == len(sweep.runs) > 0, path
        assert run_slug({**sweep.runs[0], "seed": 99}) not in slugs


# ---- bad grid files: a clear error before anything runs --------------------------------------
def _grid_file(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"grid": {"methd": ["lora"]}}, "unknown parameter(s) ['methd'] for 04_finetune.ipynb"),
        ({"fixed": {"epochs": "ten"}, "grid": {"seed": [0]}}, "epochs='ten' (str) has the wrong"),
        ({"grid": {"cobot": ["yes"]}}, "cobot='yes' (str) has the wrong type"),
        ({"grid": {"seed": [0], "output_dir": ["x"]}}, "set by the sweep for each run"),
        ({"grids": {"seed": [0]}}, "unknown key(s) ['grids']"),
        ({"fixed": {"seed": 0}}, "no 'grid'"),
    ],
)
def test_bad_grid_fails_before_running(tmp_path: Path, capsys, data: dict, message: str) -> None:
    out = tmp_path / "out"
    assert main([str(_grid_file(tmp_path, data)), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert not out.exists()


def test_the_default_notebook_is_the_repositorys() -> None:
    assert NOTEBOOK == REPO / "notebooks" / "04_finetune.ipynb" and NOTEBOOK.is_file()


def test_shipped_methods_grid() -> None:
    sweep = load_sweep(REPO / "configs" / "sweeps" / "methods_demo.yaml")
    runs = pd.DataFrame(sweep.runs)
    assert set(runs["dataset"]) == {"demo:nuclei", "demo:mri"}
    assert sorted(set(runs["seed"])) == [0, 1, 2]
    variants = set(zip(runs["method"], runs["cobot"], strict=True))
    assert {("freeze", False), ("lora", False), ("lora", True), ("adaptformer", False),
            ("adaptformer", True)} <= variants  # fmt: skip
    assert len(runs) == len(variants) * 2 * 3  # every variant on both sets with 3 seeds


# ---- tables ---------------------------------------------------------------------------------
def _fake_runs() -> pd.DataFrame:
    rows = []
    for method, cobot, base in (("freeze", False, 0.30), ("lora", True, 0.60)):
        for seed, noise in enumerate((0.00, 0.02, 0.07)):
            rows.append({
                "run": f"{method}{seed}", "dataset": "demo:mri", "method": method, "cobot": cobot,
                "coefficient_sets": "dual", "relation": "learnable", "head": "hypercomplex",
                "rank": 4 if method == "lora" else None, "seed": seed, "lr": 0.001,
                "miou": base + noise, "mdsc": base + 2 * noise, "zero_shot_miou": 0.3,
                "zero_shot_mdsc": 0.3, "seconds": 10.0 + seed, "train_seconds": 9.0,
                "trainable_params": 100 if cobot else 0, "image_encoder_params": 10,
            })  # fmt: skip
    return pd.DataFrame(rows)


def test_summary_is_mean_and_sample_std_over_seeds() -> None:
    summary = summarise(_fake_runs()).set_index("variant")
    lora = summary.loc["LoRA+CoS+RM+HL V=4"]
    values = [0.60, 0.62, 0.67]
    assert lora["n_seeds"] == 3 and lora["seeds"] == "0 1 2"
    assert lora["miou_mean"] == pytest.approx(statistics.mean(values))
    assert lora["miou_std"] == pytest.approx(statistics.stdev(values))
    assert pd.isna(summary.loc["Freeze (zero-shot)", "rank"])
    md = results_markdown(_fake_runs(), "t")
    cell = f"{100 * statistics.mean(values):.1f} ± {100 * statistics.stdev(values):.1f}"
    assert f"| LoRA+CoS+RM+HL V=4 | {cell} |" in md
    assert "| LoRA+CoS+RM+HL V=4 | demo:mri | +30.0 | +30.0 | yes (3/3 seeds) |" in md
    # a row names its PeftConfig: switches of a plain row and an empty rank are not part of it
    plain = {"method": "adaptformer", "cobot": False, "relation": "off", "rank": float("nan")}
    assert variant_label(row_config(plain)) == "Adaptformer V=16"
    row = {"method": "adaptformer", "cobot": True, "relation": "fixed", "head": "linear", "rank": 8}
    assert variant_label(row_config(row)) == "Adaptformer+CoS+RM(fixed)+Linear V=8"


# ---- a real sweep: resumable, complete, identical ---------------------------------------------
TINY = {
    "checkpoint": "random", "epochs": 1, "max_steps": 2, "num_overlays": 0,
    "eval_every_epoch": False, "expect_gain": False,
}  # fmt: skip


@pytest.mark.slow
def test_sweep_resumes_only_missing_runs(tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    sweep = Sweep.from_dict({"name": "t", "fixed": TINY,
                             "grid": {"method": ["lora"], "cobot": [False, True]}})  # fmt: skip
    df1, outcomes = run_sweep(sweep, out, jobs=2, log=lambda _: None)  # two kernels at once
    assert [o["status"] for o in outcomes] == ["ran", "ran"], outcomes
    assert len(df1) == 2 and set(df1["cobot"]) == {False, True}
    for run in sweep.runs:
        assert find_run(out, run)["steps"] == 2
    # simulate a sweep killed during run 1: its metrics are missing, run 0 is finished
    victim, kept = (out / "runs" / run_slug(r) for r in reversed(sweep.runs))
    (victim / "metrics.json").unlink()
    kept_nb = kept / "04_finetune.ipynb"
    stamp = kept_nb.stat().st_mtime_ns
    assert len(collect(out, [run_slug(r) for r in sweep.runs])) == 1
    df2, outcomes = run_sweep(sweep, out, log=lambda _: None)
    assert [o["status"] for o in outcomes] == ["done", "ran"]
    assert kept_nb.stat().st_mtime_ns == stamp  # the finished run was not executed again
    pd.testing.assert_frame_equal(df1.drop(columns=TIMING), df2.drop(columns=TIMING))
    # the CSV written by the sweep reads back as the same table
    pd.testing.assert_frame_equal(load_results(out), df2)
    # a half-written metrics file does not count as done
    (victim / "metrics.json").write_text('{"miou": 0.5, "md')
    assert find_run(out, sweep.runs[1]) is None


@pytest.mark.slow
def test_a_failing_run_is_reported_and_the_rest_still_runs(tmp_path: Path, capsys) -> None:
    grid = _grid_file(tmp_path, {"fixed": {**TINY, "method": "freeze", "cobot": False},
                                 "grid": {"head": ["hypercomplex", "none"]}})  # fmt: skip
    out = tmp_path / "out"
    assert main([str(grid), "--out", str(out), "--jobs", "2"]) == 1  # head=none needs cobot
    text = capsys.readouterr().out
    assert "1 of 2 runs in the table" in text and "FAILED" in text
    errors = list(out.glob("runs/*/error.txt"))
    assert len(errors) == 1 and "ParameterError" in errors[0].read_text()
    assert "only apply with cobot=True" in errors[0].read_text()
    assert len(load_results(out)) == 1
