"""Run a sweep's missing runs with an executor (the command line: ``experiments.cli``).

The order is the same for every executor, and everything that can be wrong is found before
anything starts: the grid and its paths (``sweep.load_sweep``, ``sweep.check_inputs``), the
resources (``Resources.check``), then each run's estimated time (``estimate``) against the time
limit. Runs whose ``metrics.json`` exists are skipped. With ``local`` the rest run as processes of
this machine (``--jobs`` at a time); with ``slurm`` / ``submitit-local`` they are submitted through
submitit as one job array, one job per run (``point.PointJob``: notebook 04 on one device, or
torchrun on several GPUs), pickles and logs in ``OUT/jobs/<job id>/``, and each run's folder gets
``job.json`` (job id, log paths, command, resources). The sweep then waits and reports each job as
it ends; a failed one with its error, its log files and the partly executed notebook. Every job
writes into the same ``OUT/runs/``, so the table (written at the end, and by every later call)
holds the runs of all nodes. ``OUT`` must be on a file system the cluster's nodes share.

Resubmission: the same command again runs only what has no metrics, like a local sweep; a run
whose SLURM job (from its ``job.json``) is still pending or running is reported, not resubmitted.
With ``--no-wait`` the command submits and returns; Ctrl-C while waiting leaves SLURM jobs
running (``submitit-local`` jobs are cancelled).
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import json
import shutil
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import submitit
from submitit.helpers import as_completed

from ..engine.config import ConfigError
from ..files import remove_orphans
from .estimate import STEP_TIMES, Estimate, StepTimes, estimate_run
from .inputs import check_inputs
from .point import PointJob
from .resources import Resources, SweepError, format_time
from .sweep import Sweep, collect, find_run, load_sweep, run_slug
from .tables import write_tables

__all__ = ["Planned", "plan_sweep", "make_executor", "submit", "wait_for", "run_sweep"]

#: SLURM states of a job that has not ended
ACTIVE = ("PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "RESIZING", "SUSPENDED")


@dataclass(frozen=True)
class Planned:
    """One run of the sweep: its job, its state now and its estimate."""

    point: PointJob
    state: str  # "done", "to run", or "in flight: job <id> <STATE>"
    estimate: Estimate


def _slurm_jobs_in_flight(points: list[PointJob]) -> dict[str, str]:
    """{slug: "job <id> <STATE>"} for points whose SLURM job (their job.json) has not ended.

    One ``sacct`` call for all of them, through submitit's watcher.
    """
    records = {}
    for point in points:
        try:
            info = json.loads((point.run_dir / "job.json").read_text())
        except (OSError, ValueError):
            continue
        if info.get("executor") == "slurm":
            records[point.slug] = str(info["job_id"])
    if not records or shutil.which("sacct") is None:
        return {}
    watcher = submitit.SlurmJob.watcher
    for job_id in records.values():
        watcher.register_job(job_id)
    watcher.update()
    states = {slug: watcher.get_state(job_id, mode="cache") for slug, job_id in records.items()}
    return {
        slug: f"job {records[slug]} {state}"
        for slug, state in states.items()
        if state.split()[0] in ACTIVE
    }


def plan_sweep(
    sweep: Sweep, out: Path, resources: Resources, times: StepTimes, kernel: str = "python3"
) -> list[Planned]:
    """Check everything (one SweepError) and return every run with its state and estimate."""
    check_inputs(sweep.name, sweep.filled(), sweep.paths)
    devices = {str(sweep.value(run, "device")).split(":")[0] for run in sweep.runs}
    resources.check(devices, sweep.name)
    threads = None if resources.executor == "local" else resources.threads
    points = [
        PointJob(params=run, out_dir=str(out.resolve()), defaults=sweep.defaults,
                 notebook=str(sweep.notebook), processes=resources.processes, threads=threads,
                 kernel=kernel)
        for run in sweep.runs
    ]  # fmt: skip
    if resources.processes > 1:  # torchrun points: their training configs must be valid
        for point in points:
            try:
                point.train_config()
            except ConfigError as exc:
                raise SweepError(f"{point.slug} cannot run with torchrun: {exc}") from None
    done = {p.slug for p in points if find_run(out, p.params) is not None}
    flying = {}
    if resources.executor == "slurm":
        flying = _slurm_jobs_in_flight([p for p in points if p.slug not in done])
    planned = []
    for point in points:
        state = "done" if point.slug in done else "to run"
        if point.slug in flying:
            state = f"in flight: {flying[point.slug]}"
        estimate = estimate_run(sweep, point.params, resources.processes, times)
        planned.append(Planned(point, state, estimate))
    if resources.executor != "local":
        timed = [p for p in planned if p.state == "to run" and p.estimate.minutes is not None]
        longest = max(timed, key=lambda p: p.estimate.minutes, default=None)
        if longest is not None and longest.estimate.minutes > resources.time:
            source = "the benchmark" if longest.estimate.measured else "the FALLBACK estimate"
            raise SweepError(
                f"resources.time={format_time(resources.time)} is shorter than the estimated "
                f"run time of {longest.point.slug}: {format_time(longest.estimate.minutes)} "
                f"({longest.estimate.steps:,} steps, from {source}; see "
                f"cobot_lib.experiments.estimate); raise --time to at least "
                f"{format_time(1.2 * longest.estimate.minutes)}, lower epochs / max_steps, or "
                f"give measured step times with --step-times FILE"
            )
    return planned


def _require_slurm() -> None:
    if shutil.which("sbatch") is None or shutil.which("srun") is None:
        raise SweepError(
            "the slurm executor needs sbatch and srun on the PATH (run on the cluster's login "
            "node), or use --executor local"
        )


def _mem(gb: float) -> str:
    return f"{int(gb)}GB" if gb == int(gb) else f"{int(gb * 1024)}MB"


def make_executor(resources: Resources, folder: Path, name: str) -> submitit.Executor:
    """submitit's SlurmExecutor or LocalExecutor, set up with the sweep's resources."""
    if resources.executor == "slurm":
        _require_slurm()
        executor = submitit.SlurmExecutor(folder=folder, max_num_timeout=0)
        params: dict[str, Any] = {
            "job_name": f"cobot-{name}", "partition": resources.partition,
            "time": resources.time, "nodes": 1, "ntasks_per_node": 1,
            "cpus_per_task": resources.cpus_per_run,
            "array_parallelism": resources.array_parallelism,
        }  # fmt: skip
        if resources.gpus_per_run:
            params["gpus_per_node"] = resources.gpus_per_run
        if resources.mem_gb:
            params["mem"] = _mem(resources.mem_gb)
        if resources.setup:
            params["setup"] = list(resources.setup)
        if resources.slurm_extra:
            params["additional_parameters"] = dict(resources.slurm_extra)
        executor.update_parameters(**params)
        return executor
    executor = submitit.LocalExecutor(folder=folder, max_num_timeout=0)
    executor.update_parameters(timeout_min=resources.time, gpus_per_node=resources.gpus_per_run,
                               tasks_per_node=1, setup=list(resources.setup))  # fmt: skip
    return executor


def submit(
    points: list[PointJob], out: Path, resources: Resources, name: str
) -> list[tuple[PointJob, submitit.Job]]:
    """Submit ``points`` as one job array; each run's folder gets its ``job.json``."""
    folder = out.resolve() / "jobs" / "%j"
    executor = make_executor(resources, folder, name)
    for point in points:
        point.prepare()
        (point.run_dir / "error.txt").unlink(missing_ok=True)  # a previous attempt's
    try:
        jobs = executor.submit_array(points)
    except Exception as exc:  # sbatch refused (unknown partition, account, limits...)
        raise SweepError(
            f"{resources.executor} refused the {len(points)} job(s), nothing was submitted: "
            f"{str(exc).strip()}"
        ) from exc
    stamp = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    for point, job in zip(points, jobs, strict=True):
        record = {
            "executor": resources.executor, "job_id": job.job_id, "folder": str(folder),
            "stdout": str(job.paths.stdout), "stderr": str(job.paths.stderr),
            "submitted": stamp, "command": point.command(),
            "resources": dataclasses.asdict(resources),
        }  # fmt: skip
        (point.run_dir / "job.json").write_text(json.dumps(record, indent=1))
    return list(zip(points, jobs, strict=True))


def _ended(point: PointJob, job: submitit.Job) -> dict[str, Any]:
    """The outcome of an ended job, from its result or, failing that, the run's own files."""
    logs = [str(job.paths.stdout), str(job.paths.stderr)]
    try:
        return {**job.result(), "logs": logs}
    except Exception as exc:  # the point failed, the job was killed, timed out, ...
        if find_run(point.out_dir, point.params) is not None:
            return {"slug": point.slug, "status": "ran", "seconds": None, "error": None,
                    "logs": logs}  # fmt: skip
        saved = point.run_dir / "error.txt"
        error = saved.read_text().strip() if saved.is_file() else str(exc).strip()
        notebook = str(point.run_dir / Path(point.notebook).name)
        first = error.splitlines()[0] if error else type(exc).__name__
        return {"slug": point.slug, "status": "failed", "seconds": None, "error": first,
                "logs": logs, "notebook": notebook}  # fmt: skip


def wait_for(
    submitted: list[tuple[PointJob, submitit.Job]], report: Callable[[dict], None],
    poll_seconds: float = 30.0,
) -> list[dict[str, Any]]:  # fmt: skip
    """Wait for every job; ``report`` each outcome as its job ends; returns them in order."""
    by_job = {id(job): point for point, job in submitted}
    outcomes = {}
    for job in as_completed([job for _, job in submitted], poll_frequency=poll_seconds):
        outcome = _ended(by_job[id(job)], job)
        outcomes[id(job)] = outcome
        report(outcome)
    return [outcomes[id(job)] for _, job in submitted]


def _reporter(log: Callable[[str], None], total: int) -> Callable[[dict], None]:
    count = [0]

    def report(o: dict[str, Any]) -> None:
        count[0] += 1
        seconds = f" in {o['seconds']:.1f} s" if o.get("seconds") is not None else ""
        text = {"done": "already done, skipped", "ran": f"ran{seconds}",
                "in flight": f"still queued or running ({o['error']}), not resubmitted",
                "failed": f"FAILED{seconds}: {o['error']}"}[o["status"]]  # fmt: skip
        if o["status"] == "failed":
            where = o.get("logs", []) + ([o["notebook"]] if "notebook" in o else [])
            text += ("; see " + ", ".join(where)) if where else ""
        log(f"[{count[0]}/{total}] {o['slug']}: {text}")

    return report


def run_sweep(
    sweep: Sweep | dict | str,
    out_dir: str | Path | None = None,
    jobs: int = 1,
    kernel: str = "python3",
    log: Callable[[str], None] | None = None,
    resources: Resources | None = None,
    step_times: str | Path | None = STEP_TIMES,
    wait: bool = True,
    poll_seconds: float | None = None,
) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """Run every missing run of ``sweep``; write and return the table and the run outcomes.

    ``resources``: the executor and each job's share (default: the grid file's). ``log`` gets
    one line per run (default: print, flushed). Outcomes: {slug, status ("done", "ran",
    "failed", "in flight"), seconds, error} plus ``logs`` (and ``notebook``) for cluster jobs.
    ``poll_seconds``: how often job states are read (default 1 s for submitit-local, 30 s for
    SLURM, whose ``sacct`` should not be hammered).
    """
    log = log or functools.partial(print, flush=True)
    if not isinstance(sweep, Sweep):
        sweep = Sweep.from_dict(sweep) if isinstance(sweep, dict) else load_sweep(sweep)
    resources = resources or sweep.resources
    if jobs < 1:
        raise SweepError(f"jobs must be >= 1, got {jobs}")
    if jobs > 1 and resources.executor != "local":
        raise SweepError(f"--jobs applies to the local executor; {resources.executor} runs "
                         f"array_parallelism jobs at a time (--array-parallelism)")  # fmt: skip
    if jobs > 1 and resources.gpus_per_run > 1:
        raise SweepError("runs on several GPUs take all of this machine's GPUs: use --jobs 1")
    out = Path(out_dir or Path("runs") / "sweeps" / sweep.name)
    planned = plan_sweep(sweep, out, resources, StepTimes.load(step_times), kernel)
    if resources.executor == "slurm":
        _require_slurm()
    out.mkdir(parents=True, exist_ok=True)
    remove_orphans(out)  # the tables of a sweep killed while writing them
    report = _reporter(log, len(planned))
    outcomes: list[dict[str, Any]] = []
    if resources.executor == "local":
        points = [p.point for p in planned]
        if jobs == 1:
            for point in points:
                outcomes.append(point.run())
                report(outcomes[-1])
        else:
            with ProcessPoolExecutor(max_workers=jobs) as pool:
                for outcome in pool.map(PointJob.run, points):
                    outcomes.append(outcome)
                    report(outcome)
    else:
        for p in planned:
            if p.state != "to run":
                status = "done" if p.state == "done" else "in flight"
                outcomes.append({"slug": p.point.slug, "status": status, "seconds": 0.0,
                                 "error": p.state.removeprefix("in flight: ")})  # fmt: skip
                report(outcomes[-1])
        todo = [p.point for p in planned if p.state == "to run"]
        submitted = submit(todo, out, resources, sweep.name) if todo else []
        if submitted:
            ids = sorted({str(job.job_id).split("_")[0] for _, job in submitted})
            log(f"submitted {len(submitted)} job(s) ({resources.executor}, job id(s) "
                f"{', '.join(ids)}); logs in {out.resolve() / 'jobs'}")  # fmt: skip
        if submitted and wait:
            try:
                poll = poll_seconds or (1.0 if resources.executor == "submitit-local" else 30.0)
                outcomes += wait_for(submitted, report, poll)
            except KeyboardInterrupt:
                if resources.executor == "submitit-local":
                    for _, job in submitted:
                        job.cancel(check=False)
                    log("interrupted: the submitit-local jobs were cancelled")
                else:
                    log("interrupted: the SLURM jobs keep running; run the same command again "
                        "to wait for them and collect the table")  # fmt: skip
                raise
        elif submitted:
            log("not waiting (--no-wait): run the same command again to collect the table")
    df = collect(out, [run_slug(r) for r in sweep.runs])
    if len(df):
        write_tables(df, out, title=sweep.name, description=sweep.description)
    return df, outcomes
