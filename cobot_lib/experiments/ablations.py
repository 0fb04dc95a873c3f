"""The ablation runs of Tables 1-3 and Fig. 5, in miniature: one row per (configuration,
dataset, seed), run in-process or loaded from a results table.

    spec = AblationSpec(method="adaptformer", relation="fixed", dataset="demo:mri", seed=1)
    row = run_or_load(spec, table)          # a dict with the columns of COLUMNS
    python -m cobot_lib.ablations --out docs/results/ablations_demo.csv     # the whole grid

Each row is one value of the PEFT configuration (``peft.CobotConfig``: coefficient_sets
dual|single = CoS on|off, relation learnable|fixed|off = RM, head hypercomplex|linear|none = HL;
rank = the hidden size V) trained with the demo config of its dataset
(``configs/demo/<set>/_base.yaml``) for ``steps`` optimiser steps on the CPU. A run is
deterministic: one torch thread, every random draw seeded by ``seed`` (sample order, box jitter,
dropout, adapter init, the fixed relation matrix), so re-running a row reproduces its numbers.

Metrics are fractions in [0, 1] (``miou``: mean IoU over instances, ``mdsc``: mean DSC), the
columns shared with ``cobot_lib.sweep``; ``steps`` and ``checkpoint`` say how a row was made, and
a row is reused only for the same schedule and starting model.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from ..engine.config import ConfigError, TrainConfig, load_config
from ..engine.trainer import run_experiment
from ..files import atomic_write, remove_orphans
from ..peft.config import PEFT_METHODS, CobotConfig, PeftConfig
from .tables import variant_label

__all__ = [
    "COLUMNS",
    "DATASETS",
    "GRID_STEPS",
    "RANKS",
    "AblationSpec",
    "train_config",
    "run_spec",
    "find_row",
    "select",
    "spec_of",
    "run_or_load",
    "run_grid",
    "read_results",
    "resolve_path",
]

#: The results table's columns (those of ``cobot_lib.sweep`` first).
COLUMNS = [
    "method", "cobot", "coefficient_sets", "relation", "head", "rank", "seed", "dataset",
    "miou", "mdsc", "seconds", "steps", "checkpoint", "params",
]  # fmt: skip
DATASETS = ("demo:nuclei", "demo:mri")
#: Adam steps per grid run: 2 epochs of the 36 training images of a demo set (one image per
#: step), 10-20 s per run on one contended thread, so the 84 runs of the grid take 15-30 min.
GRID_STEPS = 72
#: The hidden sizes V of Fig. 5 (and the panel's choices).
RANKS = (4, 8, 16, 32)
SWITCHES = ("coefficient_sets", "relation", "head")
_CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs" / "demo"
_KEY = ("method", "cobot", "rank", "seed", "dataset", "steps", "checkpoint")


@dataclass(frozen=True)
class AblationSpec:
    """One ablation run: the PeftConfig ``peft`` trained on ``dataset`` with ``seed`` for
    ``steps`` optimiser steps from ``checkpoint`` ("foundation": the pretrained tiny SAM;
    "random": untrained weights, only for quick tests).

    ``seed`` draws everything random in the run, COBOT's fixed relation matrix and head init
    included (``peft.cobot.seed`` is set to it). ``AblationSpec.of`` builds one from the results
    table's columns; the properties ``method`` ... ``head`` give them back ("-" for the switches
    of a plain method).
    """

    peft: PeftConfig = field(default_factory=lambda: PeftConfig("adaptformer", cobot=CobotConfig()))
    dataset: str = "demo:nuclei"
    seed: int = 0
    steps: int = GRID_STEPS
    checkpoint: str = "foundation"

    def __post_init__(self) -> None:
        if not isinstance(self.peft, PeftConfig) or self.peft.method not in PEFT_METHODS:
            raise ValueError(f"peft={self.peft!r}; expected a PeftConfig of {list(PEFT_METHODS)}")
        if self.dataset not in DATASETS:
            raise ValueError(f"dataset={self.dataset!r}; expected one of {list(DATASETS)}")
        if self.checkpoint not in ("foundation", "random"):
            raise ValueError(f"checkpoint={self.checkpoint!r}; expected 'foundation' or 'random'")
        for name in ("seed", "steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < (name == "steps"):
                least = int(name == "steps")
                raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")
        cobot = self.peft.cobot
        if cobot is not None and cobot.seed != self.seed:
            object.__setattr__(self, "peft", self.peft.with_(cobot=replace(cobot, seed=self.seed)))

    @classmethod
    def of(
        cls,
        method: str = "adaptformer",
        cobot: bool = True,
        rank: int | None = None,
        coefficient_sets: str = "dual",
        relation: str = "learnable",
        head: str = "hypercomplex",
        **run: Any,
    ) -> AblationSpec:
        """The spec of a results row's columns (the switches are ignored when ``cobot`` is
        false); ``run``: dataset, seed, steps, checkpoint. Raises ValueError for bad values."""
        switches = CobotConfig(coefficient_sets, relation, head) if cobot else None
        return cls(PeftConfig(method, rank=rank, cobot=switches), **run)

    def varied(self, **changes: Any) -> AblationSpec:
        """This spec with its PeftConfig changed: ``method`` / ``rank`` and COBOT's switches,
        e.g. ``FULL.varied(relation="off")``, ``BASE.varied(rank=8)``."""
        peft = {k: changes.pop(k) for k in ("method", "rank") if k in changes}
        cobot = self.peft.cobot
        if changes:
            if cobot is None:
                raise ValueError(f"{self.label()} has no COBOT switches to change ({changes})")
            cobot = replace(cobot, **changes)
        return replace(self, peft=self.peft.with_(cobot=cobot, **peft))

    @property
    def method(self) -> str:
        return self.peft.method

    @property
    def cobot(self) -> bool:
        return self.peft.cobot is not None

    @property
    def rank(self) -> int:
        return self.peft.rank

    @property
    def coefficient_sets(self) -> str:
        return self.peft.cobot.coefficient_sets if self.cobot else "-"

    @property
    def relation(self) -> str:
        return self.peft.cobot.relation if self.cobot else "-"

    @property
    def head(self) -> str:
        return self.peft.cobot.head if self.cobot else "-"

    @property
    def metric(self) -> str:
        """The dataset's reported metric column: ``miou`` (natural) or ``mdsc`` (medical)."""
        return "mdsc" if self.dataset == "demo:mri" else "miou"

    def label(self) -> str:
        """The configuration's name without seed and dataset: 'Adaptformer+CoS+RM+HL V=16'."""
        return variant_label(self.peft)

    def key(self) -> tuple:
        return tuple(getattr(self, k) for k in (*_KEY, *SWITCHES))


def train_config(spec: AblationSpec, output_dir: str | os.PathLike) -> TrainConfig:
    """The demo config of ``spec.dataset`` (which sets no ``peft``) running ``spec``'s
    PeftConfig for ``spec.steps`` steps with ``spec.seed``."""
    overrides = [
        f"runtime.seed={spec.seed}",
        f"runtime.max_steps={spec.steps}",
        f"optim.epochs={spec.steps}",  # max_steps ends the run; an epoch has at least one step
        "runtime.progress=false",
        "runtime.resume=never",
        "runtime.device=cpu",
        "data.val_split=null",  # the grid's protocol: the last step's adapter, no selection
        f"model.checkpoint={'foundation' if spec.checkpoint == 'foundation' else 'null'}",
        f"output_dir={Path(output_dir).as_posix()}",
    ]
    config = load_config(_base_config(spec.dataset), overrides)
    config.peft = spec.peft
    return config


def _base_config(dataset: str) -> Path:
    path = _CONFIG_DIR / dataset.split(":", 1)[1] / "_base.yaml"
    if not path.is_file():
        raise ConfigError(f"demo config {path} for dataset {dataset!r} not found")
    return path


def run_spec(spec: AblationSpec, callbacks: Sequence[Callable[[dict], None]] = ()) -> dict:
    """Train and evaluate ``spec`` in this process (one torch thread, a throw-away run folder).

    Returns the row (COLUMNS) plus ``history`` (the logged training records).
    """

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # float sums in a fixed order: the same seed gives the same row
    try:
        with tempfile.TemporaryDirectory(prefix="ablation-") as tmp:
            start = time.perf_counter()
            config = train_config(spec, Path(tmp) / "run")
            result = run_experiment(config, callbacks=callbacks)
    finally:
        torch.set_num_threads(threads)
    metrics = result["metrics"]
    row = {k: getattr(spec, k) for k in COLUMNS if hasattr(spec, k)}
    row.update(
        miou=float(metrics["miou"]),
        mdsc=float(metrics["mdsc"]),
        seconds=round(time.perf_counter() - start, 2),
        params=int(result["image_encoder_parameters"]),
    )
    return {**row, "history": result["history"]}


def _matches(table: pd.DataFrame, spec: AblationSpec, ignore: Sequence[str] = ()) -> pd.Series:
    if any(k not in table.columns for k in (*_KEY, *SWITCHES)):
        return pd.Series(False, index=table.index)
    mask = pd.Series(True, index=table.index)
    for k in (k for k in _KEY if k not in ignore):
        column = table[k]
        value = getattr(spec, k)
        if k == "cobot":
            column = column.astype(str).str.lower().isin(("true", "1"))
        elif isinstance(value, int):
            column = pd.to_numeric(column, errors="coerce")
        mask &= column == value
    if spec.cobot:  # the switches only matter when COBOT is on
        for s in SWITCHES:
            mask &= table[s].astype(str) == getattr(spec, s)
    return mask


def find_row(table: pd.DataFrame | None, spec: AblationSpec) -> dict | None:
    """The stored row of ``spec`` (same configuration, seed, dataset, steps, checkpoint) or None."""
    if table is None or table.empty:
        return None
    hits = table[_matches(table, spec)]
    return None if hits.empty else {k: hits.iloc[0][k] for k in COLUMNS if k in hits.columns}


def select(table: pd.DataFrame, spec: AblationSpec) -> pd.DataFrame:
    """The rows of ``spec``'s configuration on its dataset, schedule and checkpoint, any seed."""
    return table[_matches(table, spec, ignore=("seed",))]


def run_or_load(spec: AblationSpec, table: pd.DataFrame | None = None, **kwargs: Any) -> dict:
    """The row of ``spec`` from ``table`` when it is there (``source`` "table"), else run it
    (``source`` "run"; ``kwargs`` go to ``run_spec``)."""
    row = find_row(table, spec)
    if row is not None:
        return {**row, "source": "table"}
    return {**run_spec(spec, **kwargs), "source": "run"}


def resolve_path(path: str | os.PathLike) -> Path:
    """``path`` as given when it exists or is absolute, else relative to the repository (so a
    notebook under ``notebooks/`` finds ``docs/results/...``)."""
    path = Path(path).expanduser()
    if path.is_absolute() or path.exists():
        return path
    return _CONFIG_DIR.parents[1] / path


def read_results(path: str | os.PathLike) -> pd.DataFrame:
    """The results table at ``path`` (CSV); a clear error when it is missing or malformed."""
    path = resolve_path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"results table {path} not found; make it with "
            f"`python -m cobot_lib.ablations --out {path}`"
        )
    try:  # a CSV parser builds strings and numbers only: nothing in the file can run
        table = pd.read_csv(path, keep_default_na=False, na_values=[""], encoding="utf-8")
    except (ValueError, pd.errors.ParserError) as exc:  # incl. not UTF-8, empty
        raise ValueError(f"results table {path} is not a UTF-8 CSV table: {exc}") from exc
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"results table {path} lacks the columns {missing} (expected {COLUMNS})")
    table["cobot"] = table["cobot"].astype(str).str.lower().isin(("true", "1"))
    return table


def _write(table: pd.DataFrame, path: Path) -> None:
    # floats written with repr: they read back bit for bit
    atomic_write(path, lambda tmp: table.to_csv(tmp, index=False))


def run_grid(
    out: str | os.PathLike,
    specs: Sequence[AblationSpec],
    log: Callable[[str], None] = print,
) -> pd.DataFrame:
    """Run every spec not yet in the CSV ``out``, saving after each run (so it resumes)."""
    out = Path(out)
    remove_orphans(out.parent)  # a table write killed last time
    table = read_results(out) if out.is_file() else pd.DataFrame(columns=COLUMNS)
    todo = [s for s in specs if find_row(table, s) is None]
    log(f"{len(specs) - len(todo)} of {len(specs)} runs already in {out}; {len(todo)} to run")
    start = time.perf_counter()
    for number, spec in enumerate(todo, 1):
        row = run_spec(spec)
        row.pop("history")
        table = pd.concat([table, pd.DataFrame([row], columns=COLUMNS)], ignore_index=True)
        _write(table, out)
        done = time.perf_counter() - start
        eta = done / number * (len(todo) - number)
        log(f"[{number}/{len(todo)}] {spec.label()} {spec.dataset} seed {spec.seed}: "
            f"{spec.metric}={row[spec.metric]:.4f} ({row['seconds']:.0f} s; "
            f"~{eta / 60:.0f} min left)")  # fmt: skip
    return table


def spec_of(row: dict | pd.Series) -> AblationSpec:
    """The AblationSpec a results row was made with."""
    data = {k: row[k] for k in (*_KEY, *SWITCHES) if k in row}
    data["cobot"] = str(data["cobot"]).lower() in ("true", "1")
    for k in ("rank", "seed", "steps"):
        data[k] = int(data[k])
    return AblationSpec.of(**data)
