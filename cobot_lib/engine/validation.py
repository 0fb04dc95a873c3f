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

All state is rebuilt from the run's history records (``event: "val"`` and ``"early_stop"``), so
a resumed run continues selection exactly where it stopped and an early-stopped run stays
stopped. Which records exist and what they hold is this module's business; the trainer only
writes them to ``metrics.jsonl``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = [
    "METRIC_KEYS",
    "VALIDATION_FIELDS",
    "Validator",
    "ValidationSummary",
    "validation_fields",
]

#: the run's metric (``TrainConfig.metric``) -> its key in ``EvalResult.summary()``
METRIC_KEYS = {"miou": "miou", "dsc": "mean_dsc"}
_NAMES = {"miou": "mIoU", "mean_dsc": "mean DSC"}


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
        metric: the key of ``EvalResult.summary()`` to maximise ("miou" or "mean_dsc").
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
    def zero_shot_done(self) -> bool:
        return any(r["global_step"] == 0 for r in self.records)

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
