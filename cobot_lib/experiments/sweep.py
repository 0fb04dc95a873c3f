"""Papermill sweeps: run ``notebooks/04_finetune.ipynb`` over a grid and collect one table.

    python -m cobot_lib.sweep configs/sweeps/methods_demo.yaml [--out runs/sweeps/NAME]
        [--jobs 1] [--threads 1] [--dry-run] [--export docs/results/NAME]

A grid file (YAML; ``relation: off`` stays a string, as in the training configs)::

    name: methods_demo            # default --out is runs/sweeps/<name>
    description: one line for the table's header
    notebook: notebooks/04_finetune.ipynb     # optional (this is the default)
    fixed: {epochs: 8, lr: 1.0e-4}            # parameters of every run
    grid:                                     # a mapping of lists, or a list of such mappings
      - {method: [freeze], cobot: [false], dataset: [demo:nuclei, demo:mri], seed: [0, 1, 2]}
      - {method: [lora, adaptformer], cobot: [false, true], dataset: [...], seed: [0, 1, 2]}

Each mapping of ``grid`` is a cartesian product (first key slowest); a list of mappings is the
union of their products (scikit-learn's ``ParameterGrid`` semantics), duplicates dropped. Every
name must be a parameter of the notebook (papermill's parameters cell) and every value must have
the type of its default there; both are checked before anything runs. ``output_dir`` and
``metrics_path`` are the sweep's: each run gets ``OUT/runs/<slug>/`` holding the executed
notebook, ``params.json``, ``metrics.json`` and the trainer's files (``train/``).

The slug (``run_slug``) is a readable prefix plus the first 10 hex digits of the SHA-256 of the
run's explicit parameters as canonical JSON, so it depends on the parameters only (not on their
order, the grid, the machine or the date). A run is *done* when its ``metrics.json`` exists and
parses; the notebook writes it atomically in its last cell, so a run killed anywhere has none
and a restarted sweep runs exactly the missing ones. (A changed notebook default or library code
is not detected: use another ``--out`` then.)

Tables (written to OUT after every sweep; ``load_results`` reads them back):
- ``results.csv``, one row per run: ``run`` (the slug); the notebook's parameters ``model_type,
  checkpoint, dataset, method, cobot, coefficient_sets, relation, head, rank, epochs,
  max_steps, lr, weight_decay, box_jitter_px, seed, device, amp, eval_every_epoch, expect_gain,
  num_overlays`` (``rank`` resolved: LoRA 4, Adaptformer 16, empty for freeze/decoder/full);
  the results ``miou, mdsc`` (mean IoU and mean DSC over instances, fractions in [0, 1]),
  ``n_instances, n_images, zero_shot_miou, zero_shot_mdsc`` (the frozen foundation model),
  ``seconds`` (training + final evaluation, wall clock), ``train_seconds, steps, final_loss,
  trainable_params, image_encoder_params`` (Table 4's count), ``device_name, torch_threads,
  torch_version``.
- ``summary.csv`` (``summarise(df)``), one row per configuration: ``dataset, method, cobot,
  coefficient_sets, relation, head, rank`` and any other parameter that varies (not the seed,
  device, amp or display options), ``variant`` (a readable name), ``n_seeds, seeds, miou_mean,
  miou_std, mdsc_mean, mdsc_std, seconds_mean, seconds_std, zero_shot_miou_mean,
  zero_shot_mdsc_mean, trainable_params, image_encoder_params`` (std: sample, ddof=1, as
  ``evaluate.mean_std``).
- ``results.md``: the paper's layout (rows: variants, columns: datasets, cells "mean ± std" in
  %, ``evaluate.seed_table``) for mIoU and mean DSC, seconds per run, and each variant against
  Freeze (the zero-shot row) where the sweep has one.
"""

from __future__ import annotations

import argparse
import ast
import functools
import hashlib
import itertools
import json
import os
import re
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ..engine.config import parse_yaml
from ..files import remove_orphans
from .tables import export, summarise, tidy, write_tables

__all__ = [
    "NOTEBOOK",
    "RESERVED",
    "SweepError",
    "Sweep",
    "notebook_parameters",
    "expand_grid",
    "run_slug",
    "load_sweep",
    "run_one",
    "run_sweep",
    "collect",
    "load_results",
    "summarise",
    "find_run",
    "main",
]

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "04_finetune.ipynb"
RESERVED = ("output_dir", "metrics_path")  # set by the sweep for each run
_TOP_KEYS = ("name", "description", "notebook", "fixed", "grid")
#: parameters shown in a slug, in this order (the hash covers all of them)
_SLUG_KEYS = ("dataset", "method", "cobot", "coefficient_sets", "relation", "head", "rank",
              "epochs", "lr", "seed")  # fmt: skip


class SweepError(ValueError):
    """A bad grid file or sweep request, reported before any run starts."""


def notebook_parameters(notebook: str | os.PathLike = NOTEBOOK) -> dict[str, Any]:
    """{name: default value} of the notebook's ``parameters`` cell (papermill's inspection)."""
    import papermill

    path = Path(notebook)
    if not path.is_file():
        raise SweepError(f"notebook not found: {path}")
    found = papermill.inspect_notebook(str(path))
    if not found:
        raise SweepError(f"{path} has no cell tagged 'parameters'")
    out = {}
    for name, info in found.items():
        try:
            out[name] = ast.literal_eval(info["default"])
        except (ValueError, SyntaxError):
            out[name] = None  # not a literal: no type check for it
    return out


def _check_value(name: str, value: Any, default: Any, where: str) -> Any:
    """The value with the type of the notebook's default (int -> float and '1e-3' -> 0.001 ok)."""
    if default is None:
        return value
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, float):
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        ok = isinstance(value, float)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise SweepError(
            f"{where}: {name}={value!r} ({type(value).__name__}) has the wrong type; the "
            f"notebook's default is {default!r} ({type(default).__name__})"
        )
    return value


def expand_grid(
    grid: dict[str, list] | list[dict[str, list]], fixed: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """All runs of ``grid`` (a mapping of lists, or a list of them: union), each with ``fixed``.

    Order: the mappings in turn, each a cartesian product with its first key slowest; a run
    already listed is dropped.
    """
    fixed = dict(fixed or {})
    parts = [grid] if isinstance(grid, dict) else list(grid)
    if not parts:
        raise SweepError("the grid is empty")
    runs = []
    for i, part in enumerate(parts):
        if not isinstance(part, dict) or not part:
            raise SweepError(f"grid entry {i} must be a non-empty mapping of lists, got {part!r}")
        for key, values in part.items():
            if not isinstance(values, list) or not values:
                raise SweepError(
                    f"grid entry {i}: {key} must be a non-empty list (put single values under "
                    f"'fixed'), got {values!r}"
                )
            if key in fixed:
                raise SweepError(f"grid entry {i}: {key} is also under 'fixed'; keep one")
        for combo in itertools.product(*part.values()):
            runs.append({**fixed, **dict(zip(part, combo, strict=True))})
    return _dedupe(runs)


def _dedupe(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: set[str] = set()
    out = []
    for run in runs:
        key = _canonical(run)
        if key not in seen:
            seen.add(key)
            out.append(run)
    return out


def _canonical(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True, separators=(",", ":"), allow_nan=False)


def _short(value: Any) -> str:
    text = str(value).split(":")[-1].rstrip("/").split("/")[-1] if isinstance(value, str) else (
        f"{value:g}" if isinstance(value, float) else str(value))  # fmt: skip
    return re.sub(r"[^A-Za-z0-9.]+", "", text)[:16]


def run_slug(params: dict[str, Any]) -> str:
    """A stable, readable, unique name for one run, e.g. ``nuclei-lora-cobot-s0-1a2b3c4d5e``."""
    parts = []
    for key in _SLUG_KEYS:
        if key not in params or params[key] is None:
            continue
        value = params[key]
        if key == "cobot":
            parts.append("cobot" if value else "plain")
        elif key in ("rank", "epochs", "lr", "seed"):
            parts.append({"rank": "r", "epochs": "e", "lr": "lr", "seed": "s"}[key] + _short(value))
        else:
            parts.append(_short(value))
    digest = hashlib.sha256(_canonical(params).encode()).hexdigest()[:10]
    return "-".join([p for p in parts if p] + [digest])


@dataclass
class Sweep:
    """A checked grid: its runs (parameter dicts) and where they came from."""

    name: str
    runs: list[dict[str, Any]]
    notebook: Path = NOTEBOOK
    description: str = ""
    fixed: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "<dict>", name: str = "sweep") -> Sweep:
        """Check a grid (keys, names, types) against the notebook; raises SweepError."""
        if not isinstance(data, dict):
            raise SweepError(f"{source} must hold a mapping, got {type(data).__name__}")
        unknown = [k for k in data if k not in _TOP_KEYS]
        if unknown:
            raise SweepError(f"{source}: unknown key(s) {unknown}; expected {list(_TOP_KEYS)}")
        if "grid" not in data:
            raise SweepError(f"{source}: no 'grid' (a mapping of parameter lists)")
        notebook = Path(data.get("notebook") or NOTEBOOK)
        fixed = data.get("fixed") or {}
        if not isinstance(fixed, dict):
            raise SweepError(f"{source}: 'fixed' must be a mapping, got {fixed!r}")
        try:
            defaults = notebook_parameters(notebook)
            runs = expand_grid(data["grid"], fixed)
        except SweepError as exc:  # say which grid file
            raise SweepError(f"{source}: {exc}") from None
        names = list(dict.fromkeys(k for run in runs for k in run))
        bad = [n for n in names if n not in defaults]
        if bad:
            raise SweepError(
                f"{source}: unknown parameter(s) {bad} for {notebook.name}; its parameters are "
                f"{[k for k in defaults if k not in RESERVED]}"
            )
        reserved = [n for n in names if n in RESERVED]
        if reserved:
            raise SweepError(f"{source}: {reserved} are set by the sweep for each run; remove them")
        checked = [
            {k: _check_value(k, v, defaults[k], source) for k, v in run.items()} for run in runs
        ]
        return cls(
            name=str(data.get("name") or name),
            runs=_dedupe(checked),
            notebook=notebook,
            description=str(data.get("description") or ""),
            fixed={k: _check_value(k, v, defaults[k], source) for k, v in fixed.items()},
        )


def load_sweep(path: str | os.PathLike) -> Sweep:
    """Read and check a grid file (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise SweepError(f"grid file not found: {path}")
    try:
        data = parse_yaml(path.read_text())
    except Exception as exc:  # yaml.YAMLError and friends
        raise SweepError(f"{path} is not valid YAML: {exc}") from exc
    return Sweep.from_dict(data, str(path), name=path.stem)


def _read_metrics(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and "miou" in data else None


def find_run(out_dir: str | os.PathLike, params: dict[str, Any]) -> dict[str, Any] | None:
    """The metrics of the run with these explicit parameters in ``out_dir``, or None."""
    return _read_metrics(Path(out_dir) / "runs" / run_slug(params) / "metrics.json")


def run_one(
    params: dict[str, Any],
    out_dir: str | os.PathLike,
    notebook: str | os.PathLike = NOTEBOOK,
    kernel: str = "python3",
) -> dict[str, Any]:
    """Execute the notebook for one run (unless done); returns {slug, status, seconds, error}.

    status: "done" (skipped), "ran" or "failed" (the error, cell index included, is also written
    to the run's ``error.txt``; the partly executed notebook stays beside it).
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    slug = run_slug(params)
    run_dir = Path(out_dir).resolve() / "runs" / slug
    metrics = run_dir / "metrics.json"
    if _read_metrics(metrics) is not None:
        return {"slug": slug, "status": "done", "seconds": 0.0, "error": None}
    run_dir.mkdir(parents=True, exist_ok=True)
    remove_orphans(run_dir)  # e.g. metrics.json of a run killed while writing it
    (run_dir / "params.json").write_text(json.dumps(params, indent=1))
    notebook = Path(notebook)
    full = {**params, "output_dir": str(run_dir / "train"), "metrics_path": str(metrics)}
    start, error = time.perf_counter(), None
    try:
        papermill.execute_notebook(
            str(notebook), str(run_dir / notebook.name), parameters=full, kernel_name=kernel,
            progress_bar=False, cwd=os.getcwd(),
        )  # fmt: skip
    except PapermillExecutionError as exc:
        error = f"cell {exc.cell_index}: {exc.ename}: {exc.evalue}"
    except Exception as exc:  # kernel died, timeout, ...
        error = f"{type(exc).__name__}: {exc}"
    if error is None and _read_metrics(metrics) is None:
        error = f"the notebook finished without writing {metrics}"
    seconds = time.perf_counter() - start
    if error is not None:
        (run_dir / "error.txt").write_text(error + "\n")
        return {"slug": slug, "status": "failed", "seconds": seconds, "error": error}
    (run_dir / "error.txt").unlink(missing_ok=True)
    return {"slug": slug, "status": "ran", "seconds": seconds, "error": None}


def _run_job(args: tuple) -> dict[str, Any]:
    return run_one(*args)


def collect(out_dir: str | os.PathLike, slugs: list[str] | None = None) -> pd.DataFrame:
    """One row per finished run under ``out_dir/runs`` (only ``slugs`` if given), sorted."""
    root = Path(out_dir) / "runs"
    names = slugs if slugs is not None else sorted(p.name for p in root.glob("*") if p.is_dir())
    rows = []
    for slug in names:
        data = _read_metrics(root / slug / "metrics.json")
        if data is not None:
            rows.append({"run": slug, **data})
    return tidy(pd.DataFrame(rows))


def load_results(path: str | os.PathLike) -> pd.DataFrame:
    """The per-run table of a sweep: ``path`` is its output folder or a ``results.csv``.

    Columns as in the module docstring; ``rank`` and ``max_steps`` are nullable integers.
    """
    path = Path(path)
    csv = path / "results.csv" if path.is_dir() else path
    if not csv.is_file():
        raise FileNotFoundError(
            f"no sweep table at {csv}; run `python -m cobot_lib.sweep GRID.yaml --out {path}`"
        )
    # floats must read back exactly (pandas 3 does by default and deprecates the option)
    exact = {} if int(pd.__version__.split(".")[0]) >= 3 else {"float_precision": "round_trip"}
    try:  # a CSV parser builds strings and numbers only: nothing in the file can run
        return tidy(pd.read_csv(csv, encoding="utf-8", **exact))
    except (ValueError, TypeError, pd.errors.ParserError) as exc:  # incl. not UTF-8, empty
        raise SweepError(f"{csv} is not a sweep table (UTF-8 CSV of runs): {exc}") from exc


def run_sweep(
    sweep: Sweep | dict | str | os.PathLike,
    out_dir: str | os.PathLike | None = None,
    jobs: int = 1,
    kernel: str = "python3",
    log=None,
) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """Run every missing run of ``sweep``; write and return the table and the run outcomes.

    ``log`` gets one line per run (default: print, flushed).
    """
    log = log or functools.partial(print, flush=True)
    if not isinstance(sweep, Sweep):
        sweep = Sweep.from_dict(sweep) if isinstance(sweep, dict) else load_sweep(sweep)
    if jobs < 1:
        raise SweepError(f"jobs must be >= 1, got {jobs}")
    out = Path(out_dir or Path("runs") / "sweeps" / sweep.name)
    out.mkdir(parents=True, exist_ok=True)
    remove_orphans(out)  # the tables of a sweep killed while writing them
    jobs_args = [(run, out, sweep.notebook, kernel) for run in sweep.runs]
    outcomes: list[dict[str, Any]] = []
    n = len(jobs_args)

    def report(i: int, o: dict[str, Any]) -> None:
        outcomes.append(o)
        text = {
            "done": "already done, skipped",
            "ran": f"ran in {o['seconds']:.1f} s",
            "failed": f"FAILED after {o['seconds']:.1f} s: {o['error']}",
        }[o["status"]]
        log(f"[{len(outcomes)}/{n}] {o['slug']}: {text}")

    if jobs == 1:
        for i, a in enumerate(jobs_args):
            report(i, run_one(*a))
    else:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            for i, o in enumerate(pool.map(_run_job, jobs_args)):
                report(i, o)
    df = collect(out, [run_slug(r) for r in sweep.runs])
    if len(df):
        write_tables(df, out, title=sweep.name, description=sweep.description)
    return df, outcomes


def main(argv: list[str] | None = None) -> int:
    """CLI: run a grid of 04_finetune through papermill, skip finished runs, write the tables."""
    parser = argparse.ArgumentParser(prog="python -m cobot_lib.sweep", description=main.__doc__)
    parser.add_argument("grid", help="grid YAML, e.g. configs/sweeps/methods_demo.yaml")
    parser.add_argument("--out", help="output folder (default runs/sweeps/<name>)")
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time (default 1)")
    parser.add_argument("--threads", type=int, help="set OMP_NUM_THREADS for the kernels")
    parser.add_argument("--kernel", default="python3", help="Jupyter kernel (default python3)")
    parser.add_argument("--dry-run", action="store_true", help="list the runs, run nothing")
    parser.add_argument("--export", metavar="PREFIX", help="also write PREFIX.md and PREFIX.csv")
    parser.add_argument("--note", default="", help="conditions to state in the exported .md")
    args = parser.parse_args(argv)
    try:
        sweep = load_sweep(args.grid)
        out = Path(args.out or Path("runs") / "sweeps" / sweep.name)
        if args.dry_run:
            for run in sweep.runs:
                state = "done" if find_run(out, run) is not None else "to run"
                print(f"{run_slug(run)}  {state}")
            print(f"{len(sweep.runs)} runs in {out}")
            return 0
        if args.threads is not None:
            os.environ["OMP_NUM_THREADS"] = str(args.threads)
        start = time.perf_counter()
        df, outcomes = run_sweep(sweep, out, jobs=args.jobs, kernel=args.kernel)
    except (SweepError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    failed = [o for o in outcomes if o["status"] == "failed"]
    print(f"{len(df)} of {len(sweep.runs)} runs in the table ({out / 'results.md'}); "
          f"{sum(o['status'] == 'ran' for o in outcomes)} ran now, {len(failed)} failed, "
          f"{time.perf_counter() - start:.0f} s")  # fmt: skip
    if args.export and len(df):
        for written in export(df, args.export, sweep, args.grid, args.note):
            print(f"wrote {written}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
