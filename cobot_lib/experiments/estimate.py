"""How long each run of a sweep will take, and what the sweep costs in GPU-hours.

Step times come from the GPU benchmark's JSON where it has them (``STEP_TIMES``,
``benchmarks/results_gpu.json``, written by ``benchmarks/bench_gpu.py``; another file with
``--step-times``)::

    {
      "device": "NVIDIA H100 80GB HBM3",          # what the numbers were measured on
      "amp": "bf16",                               # the precision of the numbers
      "train_step_seconds": {                      # one Adam step on one image, one GPU, median
        "vit_b": {"decoder": 0.05, "lora": 0.12, "lora+cobot": 0.12, "adaptformer": 0.12,
                  "adaptformer+cobot": 0.13, "full": 0.16},
        "vit_l": {...}
      },
      "eval_image_seconds": {"vit_b": 0.04, "vit_l": 0.11}   # one image scored, no grad, median
    }

Variant names: the method, plus ``+cobot`` for a run with COBOT (as ``bench_cpu.py``). Anything
the file lacks comes from ``FALLBACK``: NOT measured by this project, an order-of-magnitude
guess for one A100-class GPU. It starts from the SAM paper's ~0.15 s per ViT-H image-encoder pass
on an A100 (Kirillov et al. 2023, Sec. 3), scales it by encoder size (ViT-B 89M, ViT-L 308M,
ViT-H 636M parameters), takes a training step as 2.3 forward passes (``bench_cpu.py``'s
vit_b ratio, 2.26) and doubles everything for data loading and scoring at one image per step.
The tiny model's numbers are ``bench_cpu.py``'s (one thread of a shared 2-core Xeon). Methods
scale the step by ``FALLBACK_METHOD_FACTOR`` (decoder: no encoder backward pass). Every estimate
says which source it came from.

A run's estimate (``estimate_run``): ``STARTUP_SECONDS`` (kernel, imports, model load) + its
Adam steps x the step time + the images it scores x the evaluation time. Steps: epochs x
ceil(training images / processes), at most ``max_steps``; Freeze trains none. Scored images:
the notebook scores the test split three times (zero-shot, at initialisation, final) plus once
per epoch with ``eval_every_epoch``; a torchrun point twice (zero-shot, final) plus per epoch.
With ``val_split`` (model selection) a training run also scores the validation split for the
zero-shot model, after every epoch (or every ``val_every_steps`` steps) and once more (the
notebook's check of the kept model; early stopping is not foreseen).
Image counts are the lines of the dataset's ``splits/*.txt`` (a NIfTI set lists cases, not
slices: its estimate is too low); a demo set that is not built yet has no estimate.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..data.demo import DEMO_NAMES, demo_root
from ..data.layout import read_split
from .sweep import Sweep, SweepError

__all__ = [
    "STEP_TIMES",
    "FALLBACK",
    "FALLBACK_METHOD_FACTOR",
    "STARTUP_SECONDS",
    "StepTimes",
    "Estimate",
    "split_size",
    "estimate_run",
]

STEP_TIMES = Path(__file__).resolve().parents[2] / "benchmarks" / "results_gpu.json"
#: seconds per training step / per scored image when the benchmark has no number (see above)
FALLBACK = {
    "train_step_seconds": {"tiny": 0.09, "vit_b": 0.10, "vit_l": 0.34, "vit_h": 0.70},
    "eval_image_seconds": {"tiny": 0.03, "vit_b": 0.05, "vit_l": 0.15, "vit_h": 0.30},
}
FALLBACK_METHOD_FACTOR = {"decoder": 0.5, "full": 1.3}  # others 1.0
STARTUP_SECONDS = 60.0


@dataclass(frozen=True)
class StepTimes:
    """Measured step times (the benchmark's JSON, possibly empty) with the fallback behind."""

    train: dict[str, dict[str, float]]
    evaluation: dict[str, float]
    source: str  # "path (device)" or "" when no file was read

    @classmethod
    def load(cls, path: str | os.PathLike | None = STEP_TIMES) -> StepTimes:
        """The file's numbers; a missing file gives none (the fallback); a broken one raises."""
        if path is None or not Path(path).is_file():
            return cls({}, {}, "")
        try:
            data = json.loads(Path(path).read_text())
            train = {m: {v: float(s) for v, s in d.items()}
                     for m, d in data.get("train_step_seconds", {}).items()}  # fmt: skip
            evaluation = {m: float(s) for m, s in data.get("eval_image_seconds", {}).items()}
        except (ValueError, AttributeError, TypeError) as exc:
            raise SweepError(
                f"{path}: not a step-time file ({exc}); expected train_step_seconds "
                f"{{model: {{variant: seconds}}}} and eval_image_seconds {{model: seconds}}"
            ) from None
        return cls(train, evaluation, f"{path} ({data.get('device', 'device not named')})")

    def step(self, model_type: str, method: str, cobot: bool) -> tuple[float | None, bool]:
        """(seconds per training step, measured?) for one variant; None for an unknown model."""
        variant = method + ("+cobot" if cobot else "")
        if variant in self.train.get(model_type, {}):
            return self.train[model_type][variant], True
        base = FALLBACK["train_step_seconds"].get(model_type)
        return (None if base is None else base * FALLBACK_METHOD_FACTOR.get(method, 1.0)), False

    def eval_image(self, model_type: str) -> tuple[float | None, bool]:
        """(seconds per scored image, measured?)."""
        if model_type in self.evaluation:
            return self.evaluation[model_type], True
        return FALLBACK["eval_image_seconds"].get(model_type), False


@dataclass(frozen=True)
class Estimate:
    """One run: Adam steps, wall-clock seconds (None: unknown) and where the numbers came from."""

    steps: int | None
    seconds: float | None
    measured: bool  # every time used came from the benchmark file
    note: str = ""

    @property
    def minutes(self) -> float | None:
        return None if self.seconds is None else self.seconds / 60


def split_size(dataset: str, split: str) -> int | None:
    """Names in the dataset's split file, or None (a demo set not built yet, no such file)."""
    if dataset.startswith("demo:"):
        name = dataset.split(":", 1)[1]
        if name not in DEMO_NAMES:
            return None
        root = demo_root(name)
    else:
        root = Path(dataset)
    try:
        return len(read_split(root, split))
    except (FileNotFoundError, ValueError):
        return None


def estimate_run(sweep: Sweep, run: dict[str, Any], processes: int, times: StepTimes) -> Estimate:
    """The wall-clock estimate of one run on ``processes`` GPUs (see the module docstring)."""

    def value(key: str) -> Any:
        return sweep.value(run, key)

    dataset, model = str(value("dataset")), str(value("model_type"))
    method, epochs = str(value("method")), int(value("epochs"))
    n_train, n_test = split_size(dataset, "train"), split_size(dataset, "test")
    if n_test is None or (n_train is None and method != "freeze"):
        return Estimate(None, None, False, f"{dataset}: image count unknown (not prepared yet?)")
    step_s, step_measured = times.step(model, method, bool(value("cobot")))
    eval_s, eval_measured = times.eval_image(model)
    if step_s is None or eval_s is None:
        return Estimate(None, None, False, f"no step time for model_type {model!r}")
    steps = 0 if method == "freeze" else epochs * math.ceil((n_train or 0) / processes)
    if value("max_steps") is not None:
        steps = min(steps, int(value("max_steps")))
    per_epoch = epochs if value("eval_every_epoch") else 0
    if processes == 1:
        scored = (3 + per_epoch) * n_test
    else:
        scored = n_test + (1 + per_epoch) * math.ceil(n_test / processes)
    val_split, every = value("val_split"), value("val_every_steps")
    if steps and val_split is not None:  # model selection: zero-shot, then per epoch or N steps
        passes = 2 + (epochs if every is None else steps // int(every))  # + the notebook's check
        scored += passes * math.ceil((split_size(dataset, str(val_split)) or 0) / processes)
    seconds = STARTUP_SECONDS + steps * step_s + scored * eval_s
    return Estimate(steps, seconds, step_measured and eval_measured)
