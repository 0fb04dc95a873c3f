"""Sweeps beyond one machine (issue 20): submitit's SLURM executor against a fake ``sbatch``,
submitit's local executor with real subprocess jobs, the checks before anything is submitted,
the cost estimate and the paper's grids."""

from __future__ import annotations

import datetime
import json
import os
import signal
import stat
import sys
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest
import submitit
import yaml
from torch.distributed.run import get_args_parser

from cobot_lib.engine.config import PAPER_DEFAULTS, load_config
from cobot_lib.experiments.cli import main
from cobot_lib.experiments.estimate import StepTimes, estimate_run
from cobot_lib.experiments.launch import plan_sweep, run_sweep, submit, wait_for
from cobot_lib.experiments.point import PointJob
from cobot_lib.experiments.resources import Resources, SweepError, parse_time
from cobot_lib.experiments.sweep import Sweep, find_run, load_results, load_sweep, run_slug

REPO = Path(__file__).resolve().parents[1]
TIMING = ["seconds", "train_seconds"]
TINY = {
    "checkpoint": "random", "epochs": 1, "max_steps": 2, "num_overlays": 0,
    "eval_every_epoch": False, "expect_gain": False, "method": "lora",
}  # fmt: skip


def _dataset(root: Path, n_train: int = 40, n_test: int = 10) -> Path:
    """A prepared-looking dataset folder: only its split files (what the checks and the
    estimate read; nothing here is trained on)."""
    (root / "splits").mkdir(parents=True)
    (root / "splits" / "train.txt").write_text("\n".join(f"a{i}" for i in range(n_train)))
    (root / "splits" / "test.txt").write_text("\n".join(f"b{i}" for i in range(n_test)))
    return root


def _write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture
def fake_slurm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``sbatch`` (keeps each script, answers job 4242), ``srun`` and ``sacct`` (prints
    ``sacct.txt``) on the PATH; returns the folder they write to."""
    bin_dir, state = tmp_path / "bin", tmp_path / "slurm"
    bin_dir.mkdir()
    state.mkdir()
    scripts = {
        "sbatch": f"if [ -f {state}/refuse.txt ]; then cat {state}/refuse.txt >&2; exit 1; fi\n"
        f'n=$(ls {state} | grep -c "^sbatch_"); cp "$1" {state}/sbatch_$n.sh\n'
        'echo "Submitted batch job 4242"',
        "srun": "exit 1",
        "sacct": f"cat {state}/sacct.txt 2>/dev/null || echo 'JobID|State|NodeList'",
    }
    for name, body in scripts.items():
        path = bin_dir / name
        path.write_text("#!/bin/bash\n" + body + "\n")
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    submitit.SlurmJob.watcher.clear()
    return state


def _sbatch_scripts(state: Path) -> list[str]:
    return [p.read_text() for p in sorted(state.glob("sbatch_*.sh"))]


def _flags(script: str) -> dict[str, str]:
    pairs = [ln.removeprefix("#SBATCH --").split("=", 1) for ln in script.splitlines()
             if ln.startswith("#SBATCH --")]  # fmt: skip
    return {p[0]: p[1] if len(p) > 1 else "" for p in pairs}


def _multi_gpu_grid(tmp_path: Path) -> tuple[Path, list[str]]:
    data = tmp_path / "data"
    _dataset(data / "set1")
    (tmp_path / "sam_vit_b.pth").write_bytes(b"")
    grid = _write(tmp_path / "grid.yaml", {
        "name": "mg",
        "paths": {"data_dir": "???", "ckpt": "???"},
        "fixed": {"model_type": "vit_b", "checkpoint": "{ckpt}", "dataset": "{data_dir}/set1",
                  "device": "cuda", "epochs": 2, "method": "lora"},
        "grid": {"cobot": [False, True]},
        "resources": {"executor": "slurm", "partition": "gpu", "gpus_per_run": 4,
                      "cpus_per_run": 32, "mem_gb": 128, "time": "02:00:00",
                      "array_parallelism": 1, "setup": ["module load cuda/12.4"],
                      "slurm_extra": {"account": "vision"}},
    })  # fmt: skip
    sets = ["--set", f"data_dir={data}", "--set", f"ckpt={tmp_path / 'sam_vit_b.pth'}"]
    return grid, sets


# ---- the sbatch script of a multi-GPU point, without a cluster --------------------------------
def test_sbatch_script_and_torchrun_line_of_a_multi_gpu_point(tmp_path, fake_slurm) -> None:
    grid, sets = _multi_gpu_grid(tmp_path)
    out = tmp_path / "out"
    assert main([str(grid), "--out", str(out), *sets, "--no-wait"]) == 0
    scripts = _sbatch_scripts(fake_slurm)
    assert len(scripts) == 1  # the two points are one job array
    flags = _flags(scripts[0])
    expected = {"partition": "gpu", "nodes": "1", "ntasks-per-node": "1", "gpus-per-node": "4",
                "cpus-per-task": "32", "mem": "128GB", "time": "120", "array": "0-1%1",
                "account": "vision", "job-name": "cobot-mg"}  # fmt: skip
    assert {k: flags.get(k) for k in expected} == expected
    lines = scripts[0].splitlines()
    command = next(ln for ln in lines if ln.startswith("srun "))
    assert lines.index("module load cuda/12.4") < lines.index(command)
    assert command.endswith(f"-u -m submitit.core._submit {out.resolve() / 'jobs' / '%j'}")
    sweep = load_sweep(grid, dict(s.split("=", 1) for s in sets[1::2]))
    for index, run in enumerate(sweep.runs):
        run_dir = out.resolve() / "runs" / run_slug(run)
        record = json.loads((run_dir / "job.json").read_text())
        assert record["job_id"] == f"4242_{index}"
        config = run_dir / "train_config.yaml"
        torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes=1",
                    "--nproc_per_node=4", "-m", "cobot_lib.train", str(config)]  # fmt: skip
        assert record["command"] == torchrun
        # what submitit will unpickle and call in the job: the same point and command
        job = submitit.SlurmJob(folder=record["folder"], job_id=record["job_id"])
        point = job.submission().function
        assert isinstance(point, PointJob) and point.params == run
        assert point.command() == torchrun and point.threads == 8  # 32 CPUs / 4 processes
        # torch's own torchrun parser reads the line as 4 processes running the module
        args = get_args_parser().parse_args(torchrun[3:])
        assert (args.nproc_per_node, args.standalone, args.module) == ("4", True, True)
        assert (args.training_script, args.training_script_args) == (
            "cobot_lib.train", [str(config)])  # fmt: skip
        cfg = load_config(config)
        assert cfg.optim.batch_size == 4 and cfg.runtime.device == "cuda"
        assert cfg.model.type == "vit_b" and (cfg.peft.cobot is not None) == run["cobot"]
        assert cfg.data.root == str(tmp_path / "data" / "set1") and cfg.epochs == 2


def test_resubmission_skips_jobs_still_queued(tmp_path, fake_slurm, capsys) -> None:
    grid, sets = _multi_gpu_grid(tmp_path)
    out = tmp_path / "out"
    assert main([str(grid), "--out", str(out), *sets, "--no-wait"]) == 0
    # both still in the queue: nothing is submitted again
    (fake_slurm / "sacct.txt").write_text(
        "JobID|State|NodeList\n4242_0|RUNNING|n1\n4242_1|PENDING|\n"
    )
    submitit.SlurmJob.watcher.clear()
    assert main([str(grid), "--out", str(out), *sets, "--no-wait"]) == 0
    assert len(_sbatch_scripts(fake_slurm)) == 1
    assert capsys.readouterr().out.count("still queued or running") == 2
    # the first one failed: only it is submitted again, as a single job
    (fake_slurm / "sacct.txt").write_text(
        "JobID|State|NodeList\n4242_0|FAILED|n1\n4242_1|RUNNING|n2\n"
    )
    submitit.SlurmJob.watcher.clear()
    assert main([str(grid), "--out", str(out), *sets, "--no-wait"]) == 0
    scripts = _sbatch_scripts(fake_slurm)
    assert len(scripts) == 2 and "array" not in _flags(scripts[1])


def test_a_refused_submission_is_one_clear_error(tmp_path, fake_slurm, capsys) -> None:
    grid, sets = _multi_gpu_grid(tmp_path)
    (fake_slurm / "refuse.txt").write_text("sbatch: error: invalid partition specified: gpu")
    assert main([str(grid), "--out", str(tmp_path / "out"), *sets, "--no-wait"]) == 2
    err = capsys.readouterr().err
    message = "error: slurm refused the 2 job(s), nothing was submitted: sbatch: error: invalid"
    assert message in err and not list((tmp_path / "out").glob("runs/*/job.json"))


# ---- bad input: one clear error, nothing submitted --------------------------------------------
@pytest.mark.parametrize(
    ("change", "args", "message"),
    [
        ({}, ["--executor", "pbs"], "resources.executor='pbs'; expected one of"),
        ({"resources": {"partition": None}}, [], "the slurm executor needs a partition"),
        ({"resources": {"partition": "???"}}, [], "the slurm executor needs a partition"),
        ({"fixed": {"dataset": "{data_dir}/no_such_set"}}, [], "no_such_set' does not exist"),
        ({"fixed": {"dataset": "{data_dir}"}}, [], "has no splits/train.txt"),
        ({"fixed": {"dataset": "demo:cells"}}, [], "'demo:cells' is not a demo set"),
        ({"fixed": {"checkpoint": "/no/sam.pth"}}, [], "checkpoint '/no/sam.pth' (tiny) is not"),
        ({}, ["--time", "5"], "resources.time=00:05:00 is shorter than the estimated run time"),
        ({}, ["--time", "soon"], "resources.time='soon': expected minutes"),
        ({}, ["--gpus-per-run", "2"], "every run needs device 'cuda' or 'auto'"),
        ({"fixed": {"device": "cuda"}}, [], "gives the jobs no GPU"),
        ({}, ["--set", "data_dri=/x"], "has no path 'data_dri'"),
        ({"paths": {"data_dir": "???"}}, ["--no-set"], "paths.data_dir is not set ('???')"),
        ({}, ["--jobs", "2"], "--jobs applies to the local executor"),
        (
            {"fixed": {"device": "auto", "method": "decoder", "cobot": True}},
            ["--executor", "local", "--gpus-per-run", "2"],
            "cannot run with torchrun: peft.method='decoder' takes no rank and no COBOT",
        ),
    ],
)
def test_bad_input_fails_before_anything_is_submitted(
    tmp_path, fake_slurm, capsys, change, args, message
) -> None:
    data = tmp_path / "data"
    _dataset(data / "big", n_train=1000, n_test=100)  # 8 epochs: ~13 min by the fallback
    spec = {"name": "bad", "paths": {"data_dir": str(data)},
            "fixed": {**TINY, "dataset": "{data_dir}/big", "epochs": 8, "max_steps": None},
            "grid": {"seed": [0, 1]},
            "resources": {"executor": "slurm", "partition": "gpu", "time": 60}}  # fmt: skip
    for key, value in change.items():
        spec[key] = {**spec[key], **value}
    sets = [] if args == ["--no-set"] else ["--set", f"data_dir={data}"]
    args = [] if args == ["--no-set"] else args
    out, grid = tmp_path / "out", _write(tmp_path / "g.yaml", spec)
    assert main([str(grid), "--out", str(out), "--no-wait", *sets, *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err, err
    assert not out.exists() and _sbatch_scripts(fake_slurm) == []


def test_slurm_without_sbatch_is_one_clear_error(tmp_path, monkeypatch, capsys) -> None:
    grid, sets = _multi_gpu_grid(tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no sbatch, no srun
    out = tmp_path / "out"
    assert main([str(grid), "--out", str(out), *sets]) == 2
    assert "the slurm executor needs sbatch and srun on the PATH" in capsys.readouterr().err
    assert not out.exists()


def test_time_limits_read_like_slurm() -> None:
    minutes = lambda **kw: datetime.timedelta(**kw).total_seconds() / 60  # noqa: E731
    assert parse_time("1-06:00:00") == minutes(days=1, hours=6)
    assert parse_time("12:00:00") == parse_time("12:00") == parse_time(720) == minutes(hours=12)
    assert parse_time("0:00:30") == 1  # rounded up: a limit is never shortened
    for bad in ("soon", 0, "-1", True, "1:2:3:4"):
        with pytest.raises(SweepError, match="resources.time"):
            parse_time(bad)


# ---- the estimate and the dry run -----------------------------------------------------------
def test_estimate_uses_the_benchmark_and_scales_with_epochs_and_gpus(tmp_path) -> None:
    root = _dataset(tmp_path / "set", n_train=90, n_test=30)
    bench = tmp_path / "results_gpu.json"
    bench.write_text(json.dumps({"device": "H100", "train_step_seconds": {"vit_b": {
        "lora+cobot": 0.25}}, "eval_image_seconds": {"vit_b": 0.125}}))  # fmt: skip
    times = StepTimes.load(bench)
    fixed = {"model_type": "vit_b", "dataset": str(root), "method": "lora", "cobot": True}
    grid = {"epochs": [1, 2], "eval_every_epoch": [False, True]}
    sweep = Sweep.from_dict({"fixed": fixed, "grid": grid})
    est = {(r["epochs"], r["eval_every_epoch"], g): estimate_run(sweep, r, g, times)
           for r in sweep.runs for g in (1, 3)}  # fmt: skip
    assert all(e.measured for e in est.values())
    # one more epoch costs the training set's steps (90 on one GPU, 30 on three)...
    assert est[2, False, 1].seconds - est[1, False, 1].seconds == pytest.approx(90 * 0.25)
    assert est[2, False, 3].seconds - est[1, False, 3].seconds == pytest.approx(30 * 0.25)
    assert est[2, False, 3].steps == 60
    # ...and with eval_every_epoch one more pass over the 30 test images
    extra = est[2, True, 1].seconds - est[1, True, 1].seconds
    assert extra - 90 * 0.25 == pytest.approx(30 * 0.125)
    # without the file: the fallback, and the dry run says so
    assert not estimate_run(sweep, sweep.runs[0], 1, StepTimes.load(tmp_path / "none")).measured


def test_dry_run_of_the_paper_table4(tmp_path, capsys) -> None:
    data = tmp_path / "data"
    for name in ("coco", "trashcan", "nwpu", "ssdd", "sonar", "abdomenct1k",
                 "msd_task09_spleen", "momo", "busi", "segrap"):  # fmt: skip
        _dataset(data / name, n_train=20, n_test=5)
    (tmp_path / "vit_b.pth").write_bytes(b"")
    out = tmp_path / "out"
    args = [str(REPO / "configs/sweeps/paper_table4.yaml"), "--out", str(out), "--dry-run",
            "--set", f"data_dir={data}", "--set", f"sam_checkpoint={tmp_path / 'vit_b.pth'}",
            "--partition", "gpu", "--step-times", str(tmp_path / "none.json")]  # fmt: skip
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "one job per run with 1 GPU(s), 8 CPU(s), 64 GB, time limit 24:00:00" in text
    assert "180 runs: 0 done, 180 to run" in text and "GPU-hours" in text
    assert "180 from the FALLBACK estimate" in text
    assert text.count("to run ") == 180 and not out.exists()


# ---- the paper's grids ------------------------------------------------------------------------
PAPER_SETS = {  # folder (each prepare script's NAME) -> the paper's domain (its dataset.json)
    "coco": "natural", "trashcan": "natural", "nwpu": "remote_sensing", "ssdd": "remote_sensing",
    "sonar": "remote_sensing", "abdomenct1k": "medical", "msd_task09_spleen": "medical",
    "momo": "medical", "busi": "medical", "segrap": "medical",
}  # fmt: skip


@pytest.mark.parametrize(
    ("name", "model", "variants", "sets"),
    [
        ("paper_table4", "vit_b", {("freeze", False), ("decoder", False), ("lora", False),
         ("lora", True), ("adaptformer", False), ("adaptformer", True)}, set(PAPER_SETS)),
        ("paper_table5", "vit_l", {("lora", False), ("lora", True), ("adaptformer", False),
         ("adaptformer", True)}, {"ssdd", "abdomenct1k"}),
    ],
)  # fmt: skip
def test_paper_grids_follow_the_protocol(name, model, variants, sets) -> None:
    sweep = load_sweep(REPO / "configs" / "sweeps" / f"{name}.yaml")
    runs = pd.DataFrame(sweep.filled())
    runs["set"] = runs["dataset"].str.removeprefix("{data_dir}/")
    assert set(runs["set"]) == sets and set(runs["model_type"]) == {model}
    assert set(zip(runs["method"], runs["cobot"], strict=True)) == variants
    assert len(runs) == len(variants) * len(sets) * 3 and sorted(set(runs["seed"])) == [0, 1, 2]
    for row in runs.itertuples():  # Sec. 5.1 per domain
        paper = PAPER_DEFAULTS[PAPER_SETS[row.set]]
        assert (row.lr, row.weight_decay, row.epochs) == (
            paper["lr"], paper["weight_decay"], paper["epochs"])  # fmt: skip
    assert set(runs["box_jitter_px"]) == {50.0} and set(runs["device"]) == {"cuda"}
    assert set(runs["checkpoint"]) == {"{sam_checkpoint}"}
    assert sweep.resources.executor == "slurm" and sweep.resources.gpus_per_run == 1


# ---- real jobs: submitit's local executor against the local executor ----------------------------
@pytest.mark.slow
def test_submitit_jobs_give_the_local_table_and_a_resubmission_runs_only_the_killed_one(
    tmp_path, monkeypatch, capsys
) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the local kernels' threads; the jobs get 1 CPU
    spec = {"name": "t", "fixed": TINY,
            "grid": [{"cobot": [False, True]}, {"cobot": [False], "head": ["none"]}]}  # fmt: skip
    grid = _write(tmp_path / "t.yaml", spec)  # the third run fails: head=none needs COBOT
    local = tmp_path / "local"
    assert main([str(grid), "--out", str(local), "--jobs", "2"]) == 1
    sweep = load_sweep(grid)
    resources = Resources(executor="submitit-local", cpus_per_run=1, time=20)
    out = tmp_path / "cluster"
    planned = plan_sweep(sweep, out, resources, StepTimes.load(None))
    submitted = submit([p.point for p in planned], out, resources, sweep.name)
    victim, victim_job = submitted[1]
    deadline = time.time() + 120
    while not (victim.run_dir / "04_finetune.ipynb").exists():  # papermill has started
        assert time.time() < deadline and victim_job.state == "RUNNING", victim_job.state
        time.sleep(0.2)
    # kill one job in the middle of its notebook, as a lost node does (SLURM kills the job's
    # whole cgroup): SIGKILL to the job's process and everything it started (a submitit local
    # job's id is its pid). submitit's cancel() sends SIGINT to the job alone, and its Jupyter
    # kernel then finished the cell in flight and wrote a complete run (seen twice in full-suite
    # runs), so the "killed" job sometimes counted as ran.
    job = psutil.Process(int(victim_job.job_id))
    for process in [*job.children(recursive=True), job]:
        process.send_signal(signal.SIGKILL)
    outcomes = wait_for(submitted, lambda _: None, poll_seconds=0.5)
    assert [o["status"] for o in outcomes] == ["ran", "failed", "failed"], outcomes
    assert find_run(out, victim.params) is None
    assert "ParameterError" in outcomes[2]["error"] and "only apply with cobot=True" in (
        outcomes[2]["error"])  # fmt: skip
    for o in outcomes[1:]:  # failures come with their logs and the partly executed notebook
        assert all(Path(p).is_file() for p in o["logs"]) and Path(o["notebook"]).is_file()
    assert "PointFailed" in Path(outcomes[2]["logs"][1]).read_text()
    kept = submitted[0][0].run_dir / "04_finetune.ipynb"
    stamp = kept.stat().st_mtime_ns
    capsys.readouterr()
    # resubmission: the finished run is skipped, the killed one runs, the bad one fails again
    code = main([str(grid), "--out", str(out), "--executor", "submitit-local", "--time", "20"])
    text = capsys.readouterr()
    assert code == 1 and "already done, skipped" in text.out and "1 ran now, 1 failed" in text.out
    assert "(logs: " in text.err and "_log.err" in text.err
    assert kept.stat().st_mtime_ns == stamp
    cluster, by_local = load_results(out), load_results(local)
    assert len(cluster) == 2
    pd.testing.assert_frame_equal(cluster.drop(columns=TIMING), by_local.drop(columns=TIMING))


@pytest.mark.slow
def test_a_torchrun_point_gives_the_notebooks_row_with_its_batch(tmp_path, monkeypatch) -> None:
    """A 2-process point (torchrun, gloo on the CPU: device 'auto' without CUDA) beside the
    notebook's run of the same parameters: same columns and zero-shot scores, batch 2."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    sweep = Sweep.from_dict({"name": "tr", "fixed": {**TINY, "device": "auto", "max_steps": 4},
                             "grid": {"cobot": [True]}})  # fmt: skip
    notebook_run, _ = run_sweep(sweep, tmp_path / "nb", log=lambda _: None)
    two = Resources(executor="local", gpus_per_run=2)
    torchrun_run, outcomes = run_sweep(sweep, tmp_path / "tr", log=lambda _: None, resources=two)
    assert [o["status"] for o in outcomes] == ["ran"], outcomes
    row, nb = torchrun_run.iloc[0], notebook_run.iloc[0]
    assert set(torchrun_run.columns) == set(notebook_run.columns) | {"batch_size"}
    assert row["batch_size"] == 2 and row["steps"] == 4 and 0 <= row["miou"] <= 1
    same = ["zero_shot_miou", "zero_shot_mdsc", "n_instances", "n_images", "trainable_params",
            "image_encoder_params", "rank", "dataset", "method", "cobot", "seed"]  # fmt: skip
    pd.testing.assert_series_equal(row[same], nb[same], check_names=False)
