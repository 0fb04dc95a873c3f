"""Papermill sweeps: run ``notebooks/04_finetune.ipynb`` over a grid and collect one table.

    python -m cobot_lib.sweep configs/sweeps/methods_demo.yaml [--out runs/sweeps/NAME]
        [--jobs 1] [--threads 1] [--dry-run] [--export docs/results/NAME]
    python -m cobot_lib.sweep configs/sweeps/paper_table4.yaml --set data_dir=/data \
        --set sam_checkpoint=/ckpt/sam_vit_b_01ec64.pth --executor slurm --partition gpu

(Command line and dry run: ``experiments.cli``; executors: ``.launch``; cost: ``.estimate``.)

A grid file (YAML; ``relation: off`` stays a string, as in the training configs)::

    name: methods_demo            # default --out is runs/sweeps/<name>
    description: one line for the table's header
    notebook: notebooks/04_finetune.ipynb     # optional (this is the default)
    paths: {data_dir: "???"}                  # optional: placeholders, set with --set KEY=VALUE
    fixed: {epochs: 8, lr: 1.0e-4}            # parameters of every run
    grid:                                     # a mapping of lists, or a list of such mappings
      - {method: [freeze], cobot: [false], dataset: [demo:nuclei, demo:mri], seed: [0, 1, 2]}
      - {method: [lora, adaptformer], cobot: [false, true], dataset: [...], seed: [0, 1, 2]}
    resources: {executor: local}              # optional: see ``cobot_lib.experiments.resources``

Each mapping of ``grid`` is a cartesian product (first key slowest); a list of mappings is the
union of their products (scikit-learn's ``ParameterGrid`` semantics), duplicates dropped. Every
name must be a parameter of the notebook (papermill's parameters cell) and every value must have
the type of its default there (or be null: the notebook's first cells say whether a parameter
may be None); both are checked before anything runs. The shipped grids set ``val_split: null``:
their tables keep the last epoch's adapter, as the paper's protocol does, not the adapter that
scores best on the validation split (the notebook's default). ``output_dir`` and
``metrics_path`` are the sweep's: each run gets ``OUT/runs/<slug>/`` holding the executed
notebook, ``params.json``, ``metrics.json`` and the trainer's files (``train/``).

``paths`` names folders and files that differ between machines (dataset roots, SAM
checkpoints): a string value anywhere in ``fixed`` or ``grid`` may contain ``{name}``, replaced
by the path (made absolute, ``~`` expanded). ``???`` marks a path the user must set with
``--set name=VALUE``; ``check_inputs`` refuses to start while one is unset, while a dataset
folder (or its ``splits/train.txt`` / ``splits/test.txt``) is missing, or while a checkpoint
file is missing, naming each.

The slug (``run_slug``) is a readable prefix plus the first 10 hex digits of the SHA-256 of the
run's explicit parameters as canonical JSON, so it depends on the parameters only (not on their
order, the grid, the machine or the date; a path is a parameter: another ``data_dir`` gives new
slugs). A run is *done* when its ``metrics.json`` exists and parses; the notebook writes it
atomically in its last cell, so a run killed anywhere has none and a restarted sweep runs
exactly the missing ones. (A changed notebook default or library code is not detected: use
another ``--out`` then.)

Tables (written to OUT after every sweep; ``load_results`` reads them back):
- ``results.csv``, one row per run: ``run`` (the slug); the notebook's parameters ``model_type,
  checkpoint, dataset, method, cobot, coefficient_sets, relation, head, rank, epochs,
  max_steps, lr, weight_decay, box_jitter_px, seed, device, amp, val_split, val_every_steps,
  patience, prompt, points, negative_points, eval_every_epoch, expect_gain, num_overlays``
  (``rank`` resolved: LoRA 4, Adaptformer 16, empty for freeze/decoder/full);
  the results ``miou, mdsc`` (mean IoU and mean DSC over instances, fractions in [0, 1]),
  ``n_instances, n_images, zero_shot_miou, zero_shot_mdsc`` (the frozen foundation model),
  ``seconds`` (training + final evaluation, wall clock), ``train_seconds, steps, final_loss,
  trainable_params, image_encoder_params`` (Table 4's count), ``device_name, torch_threads,
  torch_version``; model selection's ``engine.validation.VALIDATION_FIELDS`` (``val_best``,
  ``val_best_epoch``, ...; empty without validation); and ``batch_size`` (images per Adam
  step) when a run used several GPUs (``cobot_lib.experiments.point``): the notebook's runs
  take one image per step.
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

import ast
import hashlib
import itertools
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ..engine.config import parse_yaml
from ..files import remove_orphans
from .inputs import resolve_paths, substitute
from .resources import Resources, SweepError
from .tables import summarise, tidy

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
    "collect",
    "load_results",
    "summarise",
    "find_run",
    "read_metrics",
]

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "04_finetune.ipynb"
RESERVED = ("output_dir", "metrics_path")  # set by the sweep for each run
_TOP_KEYS = ("name", "description", "notebook", "paths", "fixed", "grid", "resources")
#: parameters shown in a slug, in this order (the hash covers all of them)
_SLUG_KEYS = ("dataset", "method", "cobot", "coefficient_sets", "relation", "head", "rank",
              "epochs", "lr", "seed")  # fmt: skip


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
    """The value with the type of the notebook's default (int -> float and '1e-3' -> 0.001 ok).

    None (YAML null) passes: whether a parameter may be None (``val_split: null``, ``rank``) is
    the notebook's own check, in its first cells, before any work."""
    if default is None or value is None:
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
    """A checked grid: its runs (parameter dicts), where they came from, how they execute."""

    name: str
    runs: list[dict[str, Any]]
    notebook: Path = NOTEBOOK
    description: str = ""
    fixed: dict[str, Any] = field(default_factory=dict)
    resources: Resources = field(default_factory=Resources)
    paths: dict[str, str] = field(default_factory=dict)
    defaults: dict[str, Any] = field(default_factory=dict)  # the notebook's parameters

    @classmethod
    def from_dict(
        cls,
        data: dict[str, Any],
        source: str = "<dict>",
        name: str = "sweep",
        settings: dict[str, str] | None = None,
    ) -> Sweep:
        """Check a grid (keys, names, types) against the notebook; raises SweepError.

        ``settings``: values for ``paths`` (the command line's ``--set``).
        """
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
        paths = resolve_paths(data.get("paths"), dict(settings or {}), source)
        fixed = {k: substitute(v, paths, f"{source}: fixed.{k}") for k, v in fixed.items()}
        grid = data["grid"]
        parts = [grid] if isinstance(grid, dict) else grid
        if isinstance(parts, list):
            grid = [
                {k: [substitute(v, paths, f"{source}: grid.{k}") for v in values]
                 if isinstance(values, list) else values for k, values in part.items()}
                if isinstance(part, dict) else part
                for part in parts
            ]  # fmt: skip
        try:
            defaults = notebook_parameters(notebook)
            runs = expand_grid(grid, fixed)
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
            resources=Resources.from_dict(data.get("resources"), source),
            paths=paths,
            defaults=defaults,
        )

    def value(self, run: dict[str, Any], key: str) -> Any:
        """The value ``key`` takes in ``run`` (the notebook's default where the grid is silent)."""
        return run.get(key, self.defaults.get(key))

    def filled(self) -> list[dict[str, Any]]:
        """Every run with the notebook's defaults filled in."""
        return [{**self.defaults, **run} for run in self.runs]


def load_sweep(path: str | os.PathLike, settings: dict[str, str] | None = None) -> Sweep:
    """Read and check a grid file (see the module docstring); ``settings`` fill its ``paths``."""
    path = Path(path)
    if not path.is_file():
        raise SweepError(f"grid file not found: {path}")
    try:
        data = parse_yaml(path.read_text())
    except Exception as exc:  # yaml.YAMLError and friends
        raise SweepError(f"{path} is not valid YAML: {exc}") from exc
    return Sweep.from_dict(data, str(path), name=path.stem, settings=settings)


def read_metrics(path: str | os.PathLike) -> dict[str, Any] | None:
    """The run's metrics (a JSON object with ``miou``), or None if missing or not whole."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and "miou" in data else None


def find_run(out_dir: str | os.PathLike, params: dict[str, Any]) -> dict[str, Any] | None:
    """The metrics of the run with these explicit parameters in ``out_dir``, or None."""
    return read_metrics(run_directory(out_dir, params) / "metrics.json")


def run_directory(out_dir: str | os.PathLike, params: dict[str, Any]) -> Path:
    """``OUT/runs/<slug>``, absolute: everything of one run lives there."""
    return Path(out_dir).resolve() / "runs" / run_slug(params)


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

    slug, run_dir = run_slug(params), run_directory(out_dir, params)
    metrics = run_dir / "metrics.json"
    if read_metrics(metrics) is not None:
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
    if error is None and read_metrics(metrics) is None:
        error = f"the notebook finished without writing {metrics}"
    seconds = time.perf_counter() - start
    if error is not None:
        (run_dir / "error.txt").write_text(error + "\n")
        return {"slug": slug, "status": "failed", "seconds": seconds, "error": error}
    (run_dir / "error.txt").unlink(missing_ok=True)
    return {"slug": slug, "status": "ran", "seconds": seconds, "error": None}


def collect(out_dir: str | os.PathLike, slugs: list[str] | None = None) -> pd.DataFrame:
    """One row per finished run under ``out_dir/runs`` (only ``slugs`` if given), sorted.

    When some run used several GPUs (a ``batch_size`` column), the notebook's runs get their
    batch size, 1, so that the two kinds never share a row of the summary.
    """
    root = Path(out_dir) / "runs"
    names = slugs if slugs is not None else sorted(p.name for p in root.glob("*") if p.is_dir())
    rows = []
    for slug in names:
        data = read_metrics(root / slug / "metrics.json")
        if data is not None:
            rows.append({"run": slug, **data})
    if any("batch_size" in row for row in rows):
        rows = [{**row, "batch_size": row.get("batch_size", 1)} for row in rows]
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
