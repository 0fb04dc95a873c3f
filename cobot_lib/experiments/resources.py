"""Where and with what a sweep's runs execute: the ``resources`` section of a grid file.

    resources:
      executor: slurm          # local | slurm | submitit-local
      partition: gpu           # slurm only, required there
      gpus_per_run: 1          # 0: CPU runs; > 1: the run is launched with torchrun inside the job
      cpus_per_run: 8
      mem_gb: 64               # null: the partition's default
      time: "12:00:00"         # the job's time limit: minutes (int) or [D-]HH:MM:SS
      array_parallelism: 32    # at most this many of the sweep's jobs run at once (slurm)
      setup: ["module load cuda", "source ~/venvs/cobot/bin/activate"]  # shell lines, per job
      slurm_extra: {account: my_lab, qos: normal}                       # more #SBATCH flags

Every key may also be given on the command line (``--executor``, ``--partition``,
``--gpus-per-run``, ``--cpus-per-run``, ``--mem-gb``, ``--time``, ``--array-parallelism``); the
command line wins. Executors:

- ``local``: the runs as processes of this machine (``--jobs`` at a time), as before;
- ``slurm``: one SLURM job per run, submitted through submitit as one job array;
- ``submitit-local``: the slurm code path (pickled jobs, logs, time limit, array) run as local
  subprocesses by submitit's ``LocalExecutor``: to try a grid file before a cluster, and in CI.

``check`` validates everything before any run starts and raises ``SweepError`` naming the key.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "EXECUTORS",
    "PLACEHOLDER",
    "SweepError",
    "Resources",
    "parse_time",
    "format_time",
]

EXECUTORS = ("local", "slurm", "submitit-local")
PLACEHOLDER = "???"  # a value the user must set (as in the training configs)
_TIME = re.compile(r"^(?:(?P<d>\d+)-)?(?P<h>\d+):(?P<m>\d{1,2})(?::(?P<s>\d{1,2}))?$")


class SweepError(ValueError):
    """A bad grid file or sweep request, reported before any run starts."""


def parse_time(value: Any, where: str = "resources.time") -> int:
    """Minutes (rounded up) from an int of minutes or a SLURM time ``[D-]HH:MM[:SS]``."""
    if isinstance(value, int) and not isinstance(value, bool):
        minutes = value
    elif isinstance(value, str) and value.strip().isdigit():
        minutes = int(value)
    elif isinstance(value, str) and (match := _TIME.match(value.strip())):
        d, h, m, s = (int(match[k] or 0) for k in ("d", "h", "m", "s"))
        minutes = (d * 24 + h) * 60 + m + (1 if s else 0)
    else:
        raise SweepError(
            f"{where}={value!r}: expected minutes (an integer) or a SLURM time such as "
            f"'12:00:00' or '1-06:00:00'"
        )
    if minutes < 1:
        raise SweepError(f"{where}={value!r} must be at least one minute")
    return minutes


def format_time(minutes: float) -> str:
    """``HH:MM:SS`` (hours may exceed 24), the way SLURM prints a limit."""
    total = round(minutes * 60)
    return f"{total // 3600:02d}:{total % 3600 // 60:02d}:{total % 60:02d}"


@dataclass(frozen=True)
class Resources:
    """The executor and what each run's job asks for (see the module docstring)."""

    executor: str = "local"
    partition: str | None = None
    gpus_per_run: int = 0
    cpus_per_run: int = 1
    mem_gb: float | None = None
    time: int = 60  # minutes
    array_parallelism: int = 32
    setup: tuple[str, ...] = ()
    slurm_extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Any, source: str = "<dict>") -> Resources:
        """Resources from a grid file's ``resources`` mapping (unchecked; see ``check``)."""
        if data is None:
            return cls()
        if not isinstance(data, dict):
            raise SweepError(f"{source}: 'resources' must be a mapping, got {data!r}")
        return cls().replace(source, **data)

    def replace(self, source: str = "<overrides>", **changes: Any) -> Resources:
        """A copy with ``changes`` (None values are ignored: "not given on the command line")."""
        names = [f.name for f in dataclasses.fields(self)]
        unknown = [k for k in changes if k not in names]
        if unknown:
            raise SweepError(f"{source}: unknown resources key(s) {unknown}; expected {names}")
        given = {k: v for k, v in changes.items() if v is not None}
        where = f"{source}: resources"
        if "time" in given:
            given["time"] = parse_time(given["time"], f"{where}.time")
        if "setup" in given:
            setup = given["setup"]
            if not isinstance(setup, list | tuple) or not all(isinstance(s, str) for s in setup):
                raise SweepError(f"{where}.setup must be a list of shell lines, got {setup!r}")
            given["setup"] = tuple(setup)
        extra = given.get("slurm_extra", {})
        if not isinstance(extra, dict) or not all(
            isinstance(v, str | int | float) and not isinstance(v, bool) for v in extra.values()
        ):
            raise SweepError(
                f"{where}.slurm_extra must map sbatch options to values (e.g. account: my_lab), "
                f"got {extra!r}"
            )
        for key, kind, low in (
            ("gpus_per_run", int, 0),
            ("cpus_per_run", int, 1),
            ("array_parallelism", int, 1),
            ("mem_gb", float, 0),
        ):
            if key not in given:
                continue
            value = given[key]
            ok = isinstance(value, int | float) if kind is float else isinstance(value, int)
            if not ok or isinstance(value, bool) or value < low or (kind is float and value == 0):
                bound = "> 0" if kind is float else f">= {low}"
                raise SweepError(f"{where}.{key}={value!r} must be a number {bound}")
        for key in ("executor", "partition"):
            if key in given and not isinstance(given[key], str):
                raise SweepError(f"{where}.{key}={given[key]!r} must be a string")
        return dataclasses.replace(self, **given)

    @property
    def processes(self) -> int:
        """Processes per run: one per GPU (torchrun) or one on the CPU."""
        return max(1, self.gpus_per_run)

    @property
    def threads(self) -> int:
        """CPU threads per process (OMP_NUM_THREADS): the run's CPUs shared by its processes."""
        return max(1, self.cpus_per_run // self.processes)

    def check(self, devices: set[str], source: str = "the sweep") -> Resources:
        """Raise SweepError for an executor, partition or device choice that cannot work.

        ``devices``: the ``device`` parameter values of the runs (``cpu``, ``cuda``, ...).
        """
        if self.executor not in EXECUTORS:
            raise SweepError(
                f"{source}: resources.executor={self.executor!r}; expected one of "
                f"{list(EXECUTORS)} (or --executor NAME)"
            )
        if self.executor == "slurm" and self.partition in (None, "", PLACEHOLDER):
            raise SweepError(
                f"{source}: the slurm executor needs a partition: set resources.partition in the "
                f"grid file or pass --partition NAME (`sinfo -s` lists them)"
            )
        if self.gpus_per_run > 1 and not devices <= {"cuda", "auto"}:
            raise SweepError(
                f"{source}: gpus_per_run={self.gpus_per_run} launches one process per GPU with "
                f"torchrun, so every run needs device 'cuda' or 'auto', got {sorted(devices)}"
            )
        if self.executor != "local" and self.gpus_per_run == 0 and devices - {"cpu"}:
            raise SweepError(
                f"{source}: gpus_per_run=0 gives the jobs no GPU, but the runs ask for device "
                f"{sorted(devices - {'cpu'})}; set resources.gpus_per_run (or --gpus-per-run)"
            )
        if self.executor != "local" and self.gpus_per_run > 0 and "cpu" in devices:
            raise SweepError(
                f"{source}: gpus_per_run={self.gpus_per_run} allocates GPUs that runs with "
                f"device 'cpu' never use; set device: cuda in the grid (or gpus_per_run: 0)"
            )
        return self

    def describe(self) -> str:
        """One line: executor and what each job gets."""
        if self.executor == "local":
            per = f"{self.processes} process(es) per run"
            if self.gpus_per_run > 1:
                per += f" (torchrun on {self.gpus_per_run} GPUs)"
            return f"executor local: {per}"
        gpus = f"{self.gpus_per_run} GPU(s)" if self.gpus_per_run else "no GPU"
        mem = f"{self.mem_gb:g} GB" if self.mem_gb else "the partition's default memory"
        where = f" on partition {self.partition}" if self.executor == "slurm" else ""
        launch = f", torchrun with {self.gpus_per_run} processes" if self.gpus_per_run > 1 else ""
        return (
            f"executor {self.executor}{where}: one job per run with {gpus}, "
            f"{self.cpus_per_run} CPU(s), {mem}, time limit {format_time(self.time)}{launch}; "
            f"at most {self.array_parallelism} jobs at a time"
        )
