"""cobot_lib.machine: usable CPUs, the thread policy and its override, and the benchmark scripts
that measure it (smoke runs: seconds, on the CPU)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cobot_lib import machine
from cobot_lib.experiments.estimate import StepTimes

BENCH = Path(__file__).parents[1] / "benchmarks"


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def testcgroup_cpu_quota_caps_the_usable_cpus(tmp_path, monkeypatch):
    (tmp_path / "cpu.max").write_text("150000 100000\n")  # 1.5 CPUs of quota
    assert machine.cgroup_cpu_quota(tmp_path) == pytest.approx(1.5)
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert machine.cgroup_cpu_quota(tmp_path) is None
    monkeypatch.setattr(machine, "cgroup_cpu_quota", lambda: 1.5)
    assert machine.available_cpus() == 1


def test_usable_cpus_follow_the_affinity_mask():
    assert machine.available_cpus() <= len(os.sched_getaffinity(0))
    script = "from cobot_lib.machine import available_cpus; print(available_cpus())"
    done = subprocess.run(
        ["taskset", "-c", "0", sys.executable, "-c", script], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "1"


def test_a_busy_competitor_is_seen_and_takes_a_thread(monkeypatch):
    monkeypatch.delenv("COBOT_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        assert machine.busy_cpus(0.5) >= 0.7
        assert machine.choose_threads() <= max(1, machine.available_cpus() - 1)
    finally:
        busy.kill()
        busy.wait()


def test_the_user_overrides_the_policy(monkeypatch):
    monkeypatch.setenv("COBOT_THREADS", "3")
    assert machine.choose_threads() == 3
    assert machine.choose_threads(1) == 1  # an explicit option wins over the environment
    before = torch.get_num_threads()
    try:
        assert machine.set_threads(2) == 2 and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    for bad in ("0", "two", "-1"):
        monkeypatch.setenv("COBOT_THREADS", bad)
        with pytest.raises(ValueError, match=f"COBOT_THREADS='{bad}'"):
            machine.choose_threads()
    with pytest.raises(ValueError, match="positive whole number"):
        machine.choose_threads(0)


def test_a_launchers_allotment_is_kept_unless_the_user_says_otherwise(monkeypatch):
    """A scheduler that gives a job 1 CPU says so with OMP_NUM_THREADS; the job must not take
    the machine's free CPUs instead (a sweep's submitit job once ran 2 threads on 1 CPU)."""
    monkeypatch.delenv("COBOT_THREADS", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert machine.choose_threads() == 1
    monkeypatch.setenv("COBOT_THREADS", "2")
    assert machine.choose_threads() == 2  # the user's own setting wins
    monkeypatch.delenv("COBOT_THREADS")
    monkeypatch.setenv("OMP_NUM_THREADS", "many")
    with pytest.raises(ValueError, match="OMP_NUM_THREADS='many'"):
        machine.choose_threads()


def test_thread_benchmark_worker_times_real_pretraining_steps():
    bench = _script("bench_threads")
    for optimizer, ns in (("muon", "float32"), ("adamw", "auto")):
        result = bench.worker("1", 1, optimizer, ns)
        assert result["threads"] == 1 and result["median_ms"] > 0


@pytest.mark.slow
def test_gpu_benchmark_smoke_runs_on_the_cpu(tmp_path):
    out = tmp_path / "gpu"
    done = subprocess.run(
        [sys.executable, str(BENCH / "bench_gpu.py"), "--smoke", "--out", str(out)],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows = json.loads(out.with_suffix(".json").read_text())["rows"]
    trained = {r["method"] for r in rows if r["method"] != "inference"}
    assert trained == {"decoder", "lora", "lora+cobot", "adaptformer", "adaptformer+cobot"}
    assert all(r["step_s"] > 0 for r in rows if r["method"] != "inference")
    assert "merged LoRA+COBOT" in out.with_suffix(".md").read_text()
    times = StepTimes.load(out.with_suffix(".json"))  # the sweep's estimate reads the file
    seconds, measured = times.step("tiny", "lora", cobot=True)
    assert measured and seconds == next(r["step_s"] for r in rows if r["method"] == "lora+cobot")
