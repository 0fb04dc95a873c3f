"""What machine is this, and how many threads should torch use on it.

Timings in this project are quoted with the CPU they came from (``cpu_name``): on 2-core
machines of one kind the CPU can be an Intel Xeon with native bfloat16 or an AMD EPYC with AVX2
only, and the same code runs at very different speeds on them.

Thread policy (``choose_threads``). torch starts one intra-op thread per logical CPU and its
OpenMP threads spin while they wait for each other. That is fastest on an idle machine and
much slower as soon as anything else runs: on a 2-core machine beside one busy process a tiny
training step took 1,331 ms with 2 threads against 474 ms with 1. So the CLIs, the walkthrough,
the notebooks and the scripts set the thread count from the CPUs this process may really use
(its affinity mask and its cgroup CPU quota) minus the CPUs that other processes keep busy now
(from /proc/stat over a short window), at least 1. The user overrides it with
``$COBOT_THREADS`` (a number) or a command-line option, a launcher or scheduler with
``$OMP_NUM_THREADS``; README.md has the measurements behind this choice
(benchmarks/bench_threads.py).
"""

from __future__ import annotations

import math
import os
import platform
import time
from pathlib import Path

import torch

__all__ = [
    "available_cpus",
    "busy_cpus",
    "cgroup_cpu_quota",
    "choose_threads",
    "cpu_name",
    "has_native_bf16",
    "set_threads",
]


def cpu_name() -> str:
    """The CPU model (``lscpu``'s "Model name"), else the platform's processor string."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def has_native_bf16() -> bool:
    """Whether the CPU advertises bfloat16 matrix instructions (AVX512-BF16 or AMX-BF16)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def cgroup_cpu_quota(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """CPUs allowed by the cgroup (v2 ``cpu.max`` or v1 quota/period), None when unlimited."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return None if quota <= 0 else quota / period
    except (OSError, ValueError):
        return None


def available_cpus() -> int:
    """CPUs this process may use: its affinity mask, capped by the cgroup CPU quota."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    quota = cgroup_cpu_quota()
    if quota is not None:
        cpus = min(cpus, max(1, math.floor(quota)))
    return max(1, cpus)


def _cpu_times() -> tuple[float, float] | None:
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except (OSError, IndexError):
        return None
    values = [float(v) for v in fields]
    idle = values[3] + (values[4] if len(values) > 4 else 0.0)  # idle + iowait
    return sum(values), idle


def busy_cpus(window: float = 0.2) -> float:
    """How many CPUs other processes keep busy, measured over ``window`` seconds (0 if unknown).

    This process sleeps meanwhile, so what it sees busy is everyone else's work.
    """
    start = _cpu_times()
    time.sleep(window)
    end = _cpu_times()
    if start is None or end is None or end[0] <= start[0]:
        return 0.0
    busy_share = 1.0 - (end[1] - start[1]) / (end[0] - start[0])
    return max(0.0, busy_share * (os.cpu_count() or 1))


def choose_threads(requested: int | None = None) -> int:
    """The torch thread count: ``requested``, else ``$COBOT_THREADS``, else ``$OMP_NUM_THREADS``
    (what a launcher or scheduler allotted: a sweep's job with 1 CPU must not take 2), else the
    free CPUs.

    Free CPUs = available_cpus() minus the CPUs others keep busy (rounded to the nearest whole
    CPU), at least 1.
    """
    for variable in ("COBOT_THREADS", "OMP_NUM_THREADS"):
        text = os.environ.get(variable, "").strip()
        if requested is not None or not text:
            continue
        if not text.isdigit() or int(text) < 1:
            raise ValueError(f"{variable}={text!r}; expected a positive whole number")
        requested = int(text)
    if requested is not None:
        if isinstance(requested, bool) or not isinstance(requested, int) or requested < 1:
            raise ValueError(f"threads must be a positive whole number, got {requested!r}")
        return requested
    return max(1, available_cpus() - round(busy_cpus()))


def set_threads(requested: int | None = None) -> int:
    """Apply ``choose_threads`` to torch (intra-op threads) and return the number chosen."""
    threads = choose_threads(requested)
    torch.set_num_threads(threads)
    return threads
