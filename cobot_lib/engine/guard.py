"""The divergence guard: stop a run whose loss blows up, and never keep a checkpoint from after
the trouble began.

Each optimiser step's loss (the global-batch mean, identical on every process) is judged before
its gradients are applied:

* a non-finite loss (NaN, inf) stops the run at once;
* a loss above ``factor`` times the *reference* stops it too (``runtime.divergence_factor``,
  default 20; null turns this test off). The reference is the running median of the last
  ``window`` finite, non-zero losses; while fewer than ``WARMUP`` are known it is their maximum,
  so a learning rate that blows the loss up at the second step is caught there and cannot fill
  the window with huge losses first. One hard image does not stop a run (the median is robust
  to it); a loss that grows by orders of magnitude does;
* a loss above ``sqrt(factor)`` times the reference (4.5x for the default) is *elevated*: the
  run goes on, but no checkpoint is written until a step's loss is back below that level. The
  "trouble" begins at the first elevated (or stopping) step; a checkpoint written after it
  would hold weights that the trouble may already have changed, so the checkpoint the run keeps
  is always one written before.

Before a checkpoint is written, every trainable weight and optimiser state is checked to be
finite (``check_finite``): an update from an infinite gradient can damage the weights while the
loss of that step still looked fine, and such a state is never written.

The message of a stop names the step, the samples of the batch and the kept checkpoint; resuming
(``runtime.resume=auto``) continues from that checkpoint, whose weights are finite.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "WARMUP",
    "DivergenceError",
    "NonFiniteLossError",
    "DivergenceGuard",
    "optimizer_tensors",
]

#: losses needed before the ratio test judges (the first steps of a run set the scale)
WARMUP = 5


class DivergenceError(RuntimeError):
    """The run diverged (loss non-finite or far above its running median, or weights became
    non-finite); the message names the step, the samples and the kept checkpoint."""


class NonFiniteLossError(DivergenceError):
    """The loss became NaN or infinite."""


class DivergenceGuard:
    """Judges each step's loss and says when a checkpoint may be written.

    Args:
        factor: stop when a loss exceeds ``factor`` x the running median (> 1); None: only
            non-finite losses and weights stop the run.
        window: how many recent losses the median is taken over.
    """

    def __init__(self, factor: float | None = 20.0, window: int = 50) -> None:
        if factor is not None and not factor > 1:
            raise ValueError(f"runtime.divergence_factor must be > 1 or null, got {factor!r}")
        if window < 1:
            raise ValueError(f"runtime.divergence_window must be >= 1, got {window!r}")
        self.factor, self.window = factor, window
        self.alert = math.sqrt(factor) if factor is not None else None
        self.losses: deque[float] = deque(maxlen=window)
        self.trouble_since: int | None = None  # global step of the first elevated loss
        self.trouble_note = ""
        self.kept: tuple[str, int] | None = None  # (path, global step) of the kept checkpoint

    # ---- state kept in checkpoints ---------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"losses": list(self.losses), "trouble_since": self.trouble_since,
                "trouble_note": self.trouble_note}  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.losses = deque((float(x) for x in state.get("losses", [])), maxlen=self.window)
        self.trouble_since = state.get("trouble_since")
        self.trouble_note = str(state.get("trouble_note", ""))

    def saved(self, path: str | Path, global_step: int) -> None:
        """Record the checkpoint that a stop would name as the one to resume from."""
        self.kept = (str(path), int(global_step))

    def may_save(self) -> bool:
        """Whether a checkpoint written now is before any trouble (no elevated loss pending)."""
        return self.trouble_since is None

    # ---- judging ---------------------------------------------------------------------------
    def reference(self) -> float | None:
        """What a loss is compared with: the running median, the maximum while fewer than
        WARMUP (or ``window``) losses are known, None before the first."""
        if not self.losses:
            return None
        if len(self.losses) < min(WARMUP, self.window):
            return max(self.losses)
        return float(np.median(self.losses))

    def check_loss(
        self, loss: float, global_step: int, where: str, samples: Callable[[], list[str]]
    ) -> None:
        """Judge the loss of (1-based) ``global_step`` before its update is applied.

        ``where`` says "epoch E, step S (global step G)"; ``samples()`` gives the names of the
        batch (on every process: it may gather across processes, and is called on all of them
        alike because the loss is the global mean). Raises DivergenceError to stop the run.
        """
        if not math.isfinite(loss):
            raise NonFiniteLossError(
                f"non-finite loss ({loss}) at {where} on sample(s) {samples()}; stopped before "
                f"applying it. {self._kept_text(global_step)}"
            )
        reference = self.reference()
        ratio = loss / reference if reference else 0.0
        if self.factor is not None and ratio > self.factor:
            began = (f"; it first rose above {self.alert:.1f}x the median at global step "
                     f"{self.trouble_since} ({self.trouble_note})"
                     if self.trouble_since is not None else "")  # fmt: skip
            what = "median" if len(self.losses) >= min(WARMUP, self.window) else "maximum"
            raise DivergenceError(
                f"loss {loss:.6g} at {where} on sample(s) {samples()} is {ratio:.3g}x the "
                f"running {what} {reference:.4g} of the last {len(self.losses)} steps "
                f"(runtime.divergence_factor={self.factor:g}){began}; stopped before applying "
                f"it. {self._kept_text(self.trouble_since or global_step)}"
            )
        if self.alert is not None and ratio > self.alert:
            if self.trouble_since is None:
                self.trouble_since = global_step
                self.trouble_note = f"loss {loss:.4g}, {ratio:.3g}x, sample(s) {samples()}"
        else:
            self.trouble_since, self.trouble_note = None, ""
        if loss > 0:  # a step without instances has loss 0 and says nothing about the scale
            self.losses.append(float(loss))

    def check_finite(self, tensors: Iterable[tuple[str, torch.Tensor]], global_step: int) -> None:
        """Raise DivergenceError if any tensor (trainable weights, optimiser state) is not
        finite after ``global_step``; called before a checkpoint is written."""
        bad = [name for name, t in tensors if t.is_floating_point() and not torch.isfinite(t).all()]
        if bad:
            raise DivergenceError(
                f"after global step {global_step} {len(bad)} tensors hold NaN or inf values "
                f"(first: {bad[:3]}), although the loss was finite; stopped without writing a "
                f"checkpoint. {self._kept_text(global_step + 1)}"
            )

    def _kept_text(self, trouble_step: int) -> str:
        if self.kept is None:
            return "No checkpoint was written before the trouble (none is kept)."
        path, step = self.kept
        return (
            f"Kept checkpoint: {path} (after global step {step}, written before step "
            f"{trouble_step}); `runtime.resume=auto` continues from it once the cause is fixed "
            "(e.g. a lower optim.lr, or optim.grad_clip)"
        )


def optimizer_tensors(optimizer: torch.optim.Optimizer | None) -> list[tuple[str, torch.Tensor]]:
    """(name, tensor) of every state tensor of ``optimizer`` (for ``check_finite``)."""
    if optimizer is None:
        return []
    out = []
    for i, state in enumerate(optimizer.state.values()):
        out += [(f"optimizer.{i}.{k}", v) for k, v in state.items() if isinstance(v, torch.Tensor)]
    return out
