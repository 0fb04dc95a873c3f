"""The sweep's command line: ``python -m cobot_lib.sweep`` (the shim calls ``main``).

    python -m cobot_lib.sweep GRID.yaml [--out DIR] [--set NAME=PATH ...] [--dry-run]
        [--executor local|slurm|submitit-local] [--partition P] [--gpus-per-run N]
        [--cpus-per-run N] [--mem-gb N] [--time T] [--array-parallelism N] [--no-wait]
        [--jobs N] [--threads N] [--step-times FILE] [--export PREFIX] [--note TEXT]

``--dry-run`` checks everything the real call checks, then prints every run (done, to run, in
flight), the resources of each job, the command a job executes and the estimated GPU-hours
(``describe_plan``); it submits and writes nothing. Exit codes: 0 done, 1 some run failed,
2 bad input (one message, nothing started).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from .estimate import STEP_TIMES, StepTimes
from .launch import Planned, plan_sweep, run_sweep
from .resources import Resources, SweepError
from .sweep import load_sweep
from .tables import export

__all__ = ["describe_plan", "main"]


def describe_plan(planned: list[Planned], resources: Resources, times: StepTimes) -> list[str]:
    """The dry run's lines: every job, the resources, the estimated cost."""
    lines = [resources.describe()]
    first = planned[0].point
    what = "papermill notebook" if first.processes == 1 else "torchrun"
    lines.append(f"each run executes ({what}): {' '.join(first.command())}")
    lines.append(f"{'state':<10} {'estimate':>10} {'steps':>10}  run")
    for p in planned:
        est = p.estimate
        hours = "?" if est.seconds is None else f"{est.seconds / 3600:.2f} h"
        steps = "?" if est.steps is None else f"{est.steps:,}"
        lines.append(f"{p.state:<10} {hours:>10} {steps:>10}  {p.point.slug}  {est.note}".rstrip())
    todo = [p for p in planned if p.state == "to run"]
    known = [p for p in todo if p.estimate.seconds is not None]
    unit = "GPU-hours" if resources.gpus_per_run else "CPU job-hours"
    cost = sum(p.estimate.seconds for p in known) * max(1, resources.gpus_per_run) / 3600
    n_done = sum(p.state == "done" for p in planned)
    lines.append(f"{len(planned)} runs: {n_done} done, {len(todo)} to run, "
                 f"{len(planned) - n_done - len(todo)} in flight")  # fmt: skip
    if todo:
        measured = sum(p.estimate.measured for p in known)
        source = times.source or f"{STEP_TIMES} not found"
        lines.append(
            f"estimated cost of the runs to run: {cost:.1f} {unit} ({len(known)} of {len(todo)} "
            f"estimated; {measured} from measured step times [{source}], "
            f"{len(known) - measured} from the FALLBACK estimate, which is a guess, not a "
            f"measurement: cobot_lib.experiments.estimate)"
        )
    return lines


def _settings(pairs: list[str]) -> dict[str, str]:
    out = {}
    for text in pairs:
        name, sep, value = text.partition("=")
        if not sep or not name.strip():
            raise SweepError(f"--set {text!r}: expected NAME=PATH, e.g. --set data_dir=/data")
        out[name.strip()] = value
    return out


def main(argv: list[str] | None = None) -> int:
    """CLI: run a grid of 04_finetune here or on SLURM, skip finished runs, write the tables."""
    parser = argparse.ArgumentParser(prog="python -m cobot_lib.sweep", description=main.__doc__)
    parser.add_argument("grid", help="grid YAML, e.g. configs/sweeps/methods_demo.yaml")
    parser.add_argument("--out", help="output folder (default runs/sweeps/<name>)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="a path of the grid's 'paths' section (repeatable)",
    )
    parser.add_argument("--executor", help="local (default), slurm or submitit-local")
    parser.add_argument("--partition", help="SLURM partition (slurm)")
    parser.add_argument("--gpus-per-run", type=int, help="GPUs per run; > 1: torchrun")
    parser.add_argument("--cpus-per-run", type=int, help="CPUs per run's job")
    parser.add_argument("--mem-gb", type=float, help="memory per run's job, GB")
    parser.add_argument("--time", help="time limit per job: minutes or [D-]HH:MM:SS")
    parser.add_argument("--array-parallelism", type=int, help="jobs running at once (slurm)")
    parser.add_argument("--no-wait", action="store_true", help="submit and return (slurm)")
    parser.add_argument("--jobs", type=int, default=1, help="local runs at a time (default 1)")
    parser.add_argument("--threads", type=int, help="set OMP_NUM_THREADS for the kernels (local)")
    parser.add_argument("--kernel", default="python3", help="Jupyter kernel (default python3)")
    parser.add_argument("--step-times", default=str(STEP_TIMES), help="GPU step times (JSON)")
    parser.add_argument("--dry-run", action="store_true", help="list jobs and cost, run nothing")
    parser.add_argument("--export", metavar="PREFIX", help="also write PREFIX.md and PREFIX.csv")
    parser.add_argument("--note", default="", help="conditions to state in the exported .md")
    args = parser.parse_args(argv)
    try:
        sweep = load_sweep(args.grid, _settings(args.set))
        resources = sweep.resources.replace(
            "the command line", executor=args.executor, partition=args.partition,
            gpus_per_run=args.gpus_per_run, cpus_per_run=args.cpus_per_run, mem_gb=args.mem_gb,
            time=args.time, array_parallelism=args.array_parallelism,
        )  # fmt: skip
        out = Path(args.out or Path("runs") / "sweeps" / sweep.name)
        if args.dry_run:
            times = StepTimes.load(args.step_times)
            planned = plan_sweep(sweep, out, resources, times, args.kernel)
            print(f"sweep {sweep.name}: {len(planned)} runs in {out}")
            print("\n".join(describe_plan(planned, resources, times)))
            return 0
        if args.threads is not None:
            os.environ["OMP_NUM_THREADS"] = str(args.threads)
        start = time.perf_counter()
        df, outcomes = run_sweep(sweep, out, jobs=args.jobs, kernel=args.kernel,
                                 resources=resources, step_times=args.step_times,
                                 wait=not args.no_wait)  # fmt: skip
    except (SweepError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    failed = [o for o in outcomes if o["status"] == "failed"]
    print(f"{len(df)} of {len(sweep.runs)} runs in the table ({out / 'results.md'}); "
          f"{sum(o['status'] == 'ran' for o in outcomes)} ran now, {len(failed)} failed, "
          f"{time.perf_counter() - start:.0f} s")  # fmt: skip
    for o in failed:
        print(f"failed: {o['slug']}: {o['error']}" + (f" (logs: {', '.join(o['logs'])})"
              if o.get("logs") else ""), file=sys.stderr)  # fmt: skip
    if args.export and len(df):
        for written in export(df, args.export, sweep, args.grid, args.note):
            print(f"wrote {written}")
    return 1 if failed else 0
