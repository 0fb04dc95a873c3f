"""The learning-rate schedule: constant (the paper's Sec. 5.1 protocol) or cosine decay to 0.

The rate of a step is a pure function of the global step, so a resumed run continues on the
same curve without any scheduler state in the checkpoint. Cosine decay (Loshchilov & Hutter,
SGDR, 2017, without restarts) ends a short run on small steps: the last weights sit near the end
of the trajectory's average instead of wherever the last full-size step of a one-image batch
threw them. The powered benchmark trains with it (docs/results/benchmark_protocol.md, 3b).
"""

from __future__ import annotations

import math

__all__ = ["SCHEDULES", "lr_factor"]

SCHEDULES = ("constant", "cosine")


def lr_factor(schedule: str, step: int, horizon: int) -> float:
    """The multiple of ``optim.lr`` used for optimiser step ``step`` (0-based).

    constant: 1. cosine: (1 + cos(pi * step / horizon)) / 2, from 1 at step 0 to 0 at
    ``horizon``, and 0 after it.
    """
    if schedule == "constant":
        return 1.0
    if schedule != "cosine":
        raise ValueError(f"schedule={schedule!r}; expected one of {list(SCHEDULES)}")
    if horizon < 1:
        raise ValueError(f"horizon must be a positive number of steps, got {horizon!r}")
    return 0.5 * (1.0 + math.cos(math.pi * min(step, horizon) / horizon))
