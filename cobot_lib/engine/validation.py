"""Model selection on the validation split: keep the best adapter, stop early, say what happened.

The trainer asks a ``Validator`` when to score the validation split and hands it each score:

1. before the first step, the zero-shot model (every adapter starts as the identity, so this is
   the frozen foundation model; for ``decoder`` and ``full`` the untrained weights);
2. after every epoch, or every ``validation.every_steps`` optimiser steps, and once more at the
   end if the last step was not scored;
3. the best score so far (by the run's metric: mIoU, or mean DSC for ``domain: medical``) marks
   the adapter to keep; a score counts as better only when it beats the best by more than
   ``min_delta``; after ``patience`` scores in a row without that, training stops early.

At the end the model holds the best weights (the zero-shot ones when nothing beat them) and one
line compares zero-shot, best and final validation scores; when adaptation never beat zero-shot
a warning says so and what to try.

``Validator`` holds the rules and the state; ``ModelSelection`` runs it inside a training run
(the trainer calls ``start``, ``due`` / ``run`` and ``finish``): it scores the split with the
random state saved and restored (so validation never changes what is trained), keeps the best
adapter's tensors in memory and in RUN_DIR/adapter (with ``selection.json`` naming its step),
and restores them at the end.

All state is rebuilt from the run's history records (``event: "val"`` and ``"early_stop"``), so
a resumed run continues selection exactly where it stopped and an early-stopped run stays
stopped. A best model is written to RUN_DIR/adapter only after the checkpoint that records it,
so a resumed run finds it there, or, if that write was cut, holds it as its current weights.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from segment_anything.modeling import Sam

from ..files import atomic_write
from ..peft import adapter_state_dict
from ..peft.io import WEIGHTS_NAME
from . import distributed as dist
from .config import ConfigError

__all__ = [
    "METRIC_KEYS",
    "VALIDATION_FIELDS",
    "Validator",
    "ValidationSummary",
    "ModelSelection",
    "validation_fields",
]

#: the run's metric (``TrainConfig.metric``) -> its key in ``EvalResult.summary()``
METRIC_KEYS = {"miou": "miou", "dsc": "mdsc"}
_NAMES = {"miou": "mIoU", "mdsc": "mean DSC"}


#: the flat keys a run's metrics record gets (notebook 04's metrics JSON, sweep tables)
VALIDATION_FIELDS = ("val_metric", "val_zero_shot", "val_best", "val_best_epoch", "val_best_step",
                     "val_final", "val_best_trained", "val_count", "early_stopped",
                     "beat_zero_shot")  # fmt: skip


@dataclass(frozen=True)
class ValidationSummary:
    """What model selection did (all scores are fractions in [0, 1] of ``metric``)."""

    metric: str
    zero_shot: float | None
    best: float | None
    best_epoch: int | None  # 0 = the zero-shot model
    best_step: int | None
    final: float | None
    best_trained: float | None  # the best score after at least one step
    validations: int
    early_stopped: bool
    beat_zero_shot: bool | None  # None when zero-shot was not scored

    def to_dict(self) -> dict[str, Any]:
        """The summary under the flat keys of ``VALIDATION_FIELDS``."""
        return {
            "val_metric": self.metric,
            "val_zero_shot": self.zero_shot,
            "val_best": self.best,
            "val_best_epoch": self.best_epoch,
            "val_best_step": self.best_step,
            "val_final": self.final,
            "val_best_trained": self.best_trained,
            "val_count": self.validations,
            "early_stopped": self.early_stopped,
            "beat_zero_shot": self.beat_zero_shot,
        }

    def line(self, split: str) -> str:
        """One line: zero-shot, best (where) and final validation scores."""
        name = _NAMES.get(self.metric, self.metric)

        def pct(x: float | None) -> str:
            return "not scored" if x is None else f"{100 * x:.1f}%"

        where = "the zero-shot model" if self.best_epoch == 0 else (
            f"epoch {self.best_epoch}, step {self.best_step}")  # fmt: skip
        stop = "; stopped early" if self.early_stopped else ""
        return (
            f"validation {name} on {split!r}: zero-shot {pct(self.zero_shot)}, best "
            f"{pct(self.best)} ({where}), final {pct(self.final)}{stop}; kept: {where}"
        )

    def warning(self, lr: float, epochs: int) -> str | None:
        """The plain warning when adaptation never beat zero-shot (None otherwise)."""
        if self.beat_zero_shot is not False:
            return None
        trained = "n/a" if self.best_trained is None else f"{100 * self.best_trained:.1f}%"
        return (
            f"warning: adaptation never beat the zero-shot model on validation "
            f"(zero-shot {100 * self.zero_shot:.1f}%, best after training {trained}); the kept "
            f"adapter is the untrained one, so the model "
            f"predicts exactly what the zero-shot model does. Try a lower learning rate "
            f"(optim.lr={lr:g}, e.g. {lr / 10:g}), fewer epochs (optim.epochs={epochs}), "
            f"or more training data."
        )


class Validator:
    """When to validate, what the best score is, and whether to stop (see the module docstring).

    Args:
        metric: the key of ``EvalResult.summary()`` to maximise ("miou" or "mdsc").
        every_steps: validate every this many optimiser steps; None: after every epoch.
        patience: stop after this many validations in a row without improvement; None: never.
        min_delta: an improvement must exceed the best by more than this.
    """

    def __init__(
        self,
        metric: str,
        every_steps: int | None = None,
        patience: int | None = None,
        min_delta: float = 0.0,
    ) -> None:
        if metric not in _NAMES:
            raise ValueError(f"metric must be one of {list(_NAMES)}, got {metric!r}")
        self.metric, self.every_steps = metric, every_steps
        self.patience, self.min_delta = patience, min_delta
        self.records: list[dict[str, Any]] = []
        self.best: dict[str, Any] | None = None
        self.bad = 0  # validations since the last improvement
        self.stopped = False

    # ---- state ---------------------------------------------------------------------------
    def restore(self, history: list[dict[str, Any]]) -> None:
        """Rebuild the state from a resumed run's history records."""
        self.records, self.best, self.bad, self.stopped = [], None, 0, False
        for record in history:
            if record.get("event") == "val":
                self._update(record)
            elif record.get("event") == "early_stop":
                self.stopped = True

    def _update(self, record: dict[str, Any]) -> bool:
        score = record[self.metric]
        improved = self.best is None or score > self.best[self.metric] + self.min_delta
        if improved:
            self.best, self.bad = record, 0
        else:
            self.bad += 1
        self.records.append(record)
        return improved

    @property
    def last_step(self) -> int | None:
        return self.records[-1]["global_step"] if self.records else None

    # ---- decisions -----------------------------------------------------------------------
    def due(self, global_step: int, end_of_epoch: bool) -> bool:
        """Whether to validate now (after ``global_step`` steps; at an epoch's end or not)."""
        if self.every_steps is None:
            return end_of_epoch
        return global_step % self.every_steps == 0

    def observe(self, summary: dict[str, Any], epoch: int, global_step: int) -> dict[str, Any]:
        """Record one validation; returns its history record ("improved" says if it is best)."""
        if self.metric not in summary:
            raise KeyError(f"validation summary has no {self.metric!r}: {sorted(summary)}")
        record = {"event": "val", "epoch": epoch, "global_step": global_step, **summary}
        record["improved"] = self._update(dict(record))
        if self.patience is not None and self.bad >= self.patience:
            self.stopped = True
        return record

    def summary(self) -> ValidationSummary:
        zero = next((r[self.metric] for r in self.records if r["global_step"] == 0), None)
        trained = [r[self.metric] for r in self.records if r["global_step"] > 0]
        best = self.best
        beat = None
        if zero is not None:
            beat = bool(best is not None and best["global_step"] > 0)
        return ValidationSummary(
            metric=self.metric,
            zero_shot=zero,
            best=None if best is None else best[self.metric],
            best_epoch=None if best is None else best["epoch"],
            best_step=None if best is None else best["global_step"],
            final=trained[-1] if trained else None,
            best_trained=max(trained) if trained else None,
            validations=len(self.records),
            early_stopped=self.stopped,
            beat_zero_shot=beat,
        )


def validation_fields(summary: ValidationSummary | None) -> dict[str, Any]:
    """``summary.to_dict()``, or every ``VALIDATION_FIELDS`` key set to None for a run without
    validation, so that every metrics record has the same columns."""
    return summary.to_dict() if summary is not None else dict.fromkeys(VALIDATION_FIELDS)


class ModelSelection:
    """A ``Validator`` at work in one training run (see the module docstring).

    Args:
        validator: the rules (metric, every_steps, patience, min_delta).
        sam: the model being trained (its adapter tensors are what is kept).
        score: scores the validation split now, returning ``EvalResult.summary()``.
        run_dir: RUN_DIR; the best adapter goes to RUN_DIR/adapter.
        log: writes a history record (the trainer's ``_log``).
        save: writes the training checkpoint at a position (epoch, step in epoch).
        device: the training device (its random state is restored after scoring).
    """

    def __init__(
        self,
        validator: Validator,
        sam: Sam,
        score: Callable[[], dict[str, Any]],
        run_dir: Path,
        log: Callable[[dict], None],
        save: Callable[[int, int, int], object],
        write_adapter: Callable[[Path], None],
        device: torch.device,
    ) -> None:
        self.validator, self.sam, self.score = validator, sam, score
        self.run_dir, self.log, self.save, self.device = Path(run_dir), log, save, device
        self.write_adapter = write_adapter
        self.best_state: dict[str, torch.Tensor] | None = None
        self.summary: ValidationSummary | None = None

    @property
    def stopped(self) -> bool:
        return self.validator.stopped

    def due(self, global_step: int, end_of_epoch: bool) -> bool:
        return self.validator.due(global_step, end_of_epoch)

    def _snapshot(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu().clone() for k, v in adapter_state_dict(self.sam).items()}

    def _write_best(self) -> None:
        if not dist.is_main():
            return
        record, directory = self.validator.best, self.run_dir / "adapter"
        self.write_adapter(directory)
        where = {k: record[k] for k in ("epoch", "global_step", self.validator.metric)}
        text = json.dumps(where, indent=1)
        atomic_write(directory / "selection.json", lambda tmp: tmp.write_text(text))

    def run(self, epoch: int, global_step: int, position: tuple[int, int]) -> bool:
        """Validate now (after ``global_step`` steps; ``position`` = (epoch, step in epoch) for
        the checkpoint); keeps the adapter if it is the best. Returns whether to stop."""
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):  # training randomness stays untouched
            summary = self.score()
        record = self.validator.observe(summary, epoch, global_step)
        self.log(record)
        if self.validator.stopped:
            self.log({"event": "early_stop", "epoch": epoch, "global_step": global_step,
                      "patience": self.validator.patience})  # fmt: skip
        if record["improved"]:
            self.best_state = self._snapshot()
            if global_step > 0:
                self.save(*position, global_step)
            self._write_best()
        return self.validator.stopped

    def start(self, history: list[dict], global_step: int) -> None:
        """A fresh run scores the zero-shot model; a resumed one rebuilds its state."""
        self.validator.restore(history)
        best = self.validator.best
        if best is None:
            if global_step == 0:
                self.run(0, 0, (0, 0))
            return
        if best["global_step"] == global_step:  # the checkpoint's weights are the best ones
            self.best_state = self._snapshot()
            return
        directory = self.run_dir / "adapter"
        try:
            saved = json.loads((directory / "selection.json").read_text())["global_step"]
        except (OSError, ValueError, KeyError):
            saved = None
        if saved != best["global_step"]:
            raise ConfigError(
                f"cannot resume model selection: the history's best model is from step "
                f"{best['global_step']}, but {directory} holds step {saved}; start over with "
                "runtime.resume=never"
            )
        self.best_state = load_file(str(directory / WEIGHTS_NAME))

    def finish(self, position: tuple[int, int, int], split: str, lr: float, epochs: int) -> None:
        """Score the last model if it was not, put the best weights back, print the line."""
        epoch, step, global_step = position
        if self.validator.last_step != global_step:
            self.run(epoch + (1 if step else 0), global_step, (epoch, step))
            self.save(epoch, step, global_step)
        if self.best_state is not None:
            self.sam.load_state_dict(self.best_state, strict=False)
        self.summary = self.validator.summary()
        if dist.is_main():
            print(self.summary.line(split), flush=True)
            warning = self.summary.warning(lr, epochs)
            if warning:
                print(warning, file=sys.stderr, flush=True)
