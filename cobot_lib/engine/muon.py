"""Muon with a choosable Newton-Schulz precision, so that no CPU path depends on native bfloat16.

Muon (Jordan et al., 2024) replaces the momentum of a weight matrix by its nearest
semi-orthogonal matrix, computed with five steps of a quintic Newton-Schulz iteration, so that
every direction of the update moves at the same rate. ``torch.optim.Muon`` always runs that
iteration in bfloat16: fast on a GPU or on a CPU with native bf16 (AVX512-BF16 / AMX), but on a
CPU with AVX2 only a bf16 matmul is emulated and about 34x slower than fp32, which turned the
tiny SAM's 14-minute pretraining into 2.4 hours there.

This class is the same algorithm with one more argument, ``ns_dtype``: ``None`` (the default)
means bfloat16 on CUDA and float32 everywhere else. With ``ns_dtype=torch.bfloat16`` it takes
exactly the steps of ``torch.optim.Muon`` (the tests compare them bit for bit), which is how
the shipped foundation model was built.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import Tensor

__all__ = ["Muon", "newton_schulz", "newton_schulz_dtype"]

NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)  # Keller Jordan's quintic, as torch.optim.Muon
NS_STEPS = 5
EPS = 1e-7
LR_ADJUSTMENTS = ("original", "match_rms_adamw")


def newton_schulz_dtype(device: torch.device, requested: torch.dtype | None = None) -> torch.dtype:
    """The precision of the iteration: ``requested``, else bf16 on CUDA and fp32 elsewhere."""
    if requested is not None:
        return requested
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def newton_schulz(g: Tensor, dtype: torch.dtype, steps: int = NS_STEPS, eps: float = EPS) -> Tensor:
    """Approximately U V^T for g = U S V^T (singular values land in about [0.7, 1.2]).

    X <- a X + (b A + c A^2) X with A = X X^T, started from g / ||g||_F, in ``dtype``; the wide
    orientation keeps A the smaller Gram matrix.
    """
    a, b, c = NS_COEFFICIENTS
    x = g.to(dtype)
    tall = g.size(0) > g.size(1)
    if tall:
        x = x.T
    x.div_(x.norm().clamp(min=eps))
    for _ in range(steps):
        gram = x @ x.T
        x = torch.addmm(x, torch.addmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return x.T if tall else x


class Muon(torch.optim.Optimizer):
    """Muon for 2-D weight matrices (momentum, Nesterov, decoupled weight decay).

    adjust_lr_fn: "original" scales the step by sqrt(max(1, rows / cols)); "match_rms_adamw"
    by 0.2 sqrt(max(rows, cols)), which puts the learning rate on AdamW's scale.
    ns_dtype: precision of the Newton-Schulz iteration (module docstring).
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict],
        lr: float = 1e-3,
        weight_decay: float = 0.1,
        momentum: float = 0.95,
        nesterov: bool = True,
        adjust_lr_fn: str = "original",
        ns_dtype: torch.dtype | None = None,
    ) -> None:
        if lr < 0 or momentum < 0 or weight_decay < 0:
            raise ValueError(
                f"Muon needs lr, momentum and weight_decay >= 0, got {lr}, {momentum}, "
                f"{weight_decay}"
            )
        if adjust_lr_fn not in LR_ADJUSTMENTS:
            raise ValueError(f"adjust_lr_fn={adjust_lr_fn!r}; expected one of {LR_ADJUSTMENTS}")
        defaults = dict(
            lr=lr,
            weight_decay=weight_decay,
            momentum=momentum,
            nesterov=nesterov,
            adjust_lr_fn=adjust_lr_fn,
            ns_dtype=ns_dtype,
        )
        super().__init__(params, defaults)
        for group in self.param_groups:
            for p in group["params"]:
                if p.ndim != 2:
                    raise ValueError(f"Muon trains 2-D matrices only, got shape {tuple(p.shape)}")

    @staticmethod
    def lr_scale(shape: torch.Size, adjust_lr_fn: str) -> float:
        rows, cols = shape[:2]
        if adjust_lr_fn == "match_rms_adamw":
            return 0.2 * math.sqrt(max(rows, cols))
        return math.sqrt(max(1, rows / cols))

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, momentum = group["lr"], group["momentum"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p.grad)
                buf = state["momentum_buffer"]
                buf.lerp_(p.grad, 1 - momentum)
                update = p.grad.lerp(buf, momentum) if group["nesterov"] else buf
                dtype = newton_schulz_dtype(p.device, group["ns_dtype"])
                update = newton_schulz(update, dtype)
                p.mul_(1 - lr * group["weight_decay"])
                p.add_(update, alpha=-lr * self.lr_scale(p.shape, group["adjust_lr_fn"]))
        return loss
