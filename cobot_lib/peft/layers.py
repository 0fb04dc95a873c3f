"""The two PEFT baselines as wrappers around SAM's own modules (METHOD.md section 1).

Each wrapper keeps the frozen original as a child (``qkv`` / ``mlp``) and adds a down map A and
an up map B; an optional ``CobotBridge`` sits between them. ``unload`` puts the original child
back, so the frozen model is never edited beyond swapping these modules.

Both wrappers fold the bridge into the down map's weight (``CobotBridge.fold``: W diag(lambda) A,
a V x D product per pass) rather than running it on every token, so COBOT adds almost nothing to
a training step; LoRA runs q and v through one down and one up matmul.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .cobot import CobotBridge

__all__ = ["LoRAQKV", "AdaptformerMLP"]


def _lora_pair(
    dim: int, rank: int, like: nn.Linear, down_scale: float = 1.0
) -> tuple[nn.Linear, nn.Linear]:
    """A (kaiming-uniform, times ``down_scale``) and B (zeros), no biases, on the device and
    dtype of ``like``."""
    kw = {"device": like.weight.device, "dtype": like.weight.dtype}
    down = nn.Linear(dim, rank, bias=False, **kw)
    up = nn.Linear(rank, dim, bias=False, **kw)
    nn.init.kaiming_uniform_(down.weight, a=math.sqrt(5))
    with torch.no_grad():
        down.weight.mul_(down_scale)
    nn.init.zeros_(up.weight)
    return down, up


class LoRAQKV(nn.Module):
    """SAM's fused qkv projection with LoRA on q and v: q += B_q A_q x, v += B_v A_v x.

    With COBOT, the low-rank path becomes B W((lambda_MC + lambda_LM) * A x) (Eq. 21, one
    linear branch). ``down_scale`` multiplies A at initialisation (PeftConfig.down_init_scale).
    """

    def __init__(
        self,
        qkv: nn.Linear,
        rank: int,
        cobot_q: CobotBridge | None = None,
        cobot_v: CobotBridge | None = None,
        down_scale: float = 1.0,
    ):
        super().__init__()
        if qkv.out_features != 3 * qkv.in_features:
            raise ValueError(
                f"expected a fused qkv Linear(D, 3D), got Linear({qkv.in_features}, "
                f"{qkv.out_features})"
            )
        self.qkv = qkv
        self.dim, self.rank = qkv.in_features, rank
        self.lora_a_q, self.lora_b_q = _lora_pair(self.dim, rank, qkv, down_scale)
        self.lora_a_v, self.lora_b_v = _lora_pair(self.dim, rank, qkv, down_scale)
        self.cobot_q, self.cobot_v = cobot_q, cobot_v

    def down_weight(self, which: str) -> torch.Tensor:
        """A of q or v, (V, D); W diag(lambda) A under COBOT."""
        down = getattr(self, f"lora_a_{which}").weight
        bridge = getattr(self, f"cobot_{which}")
        return down if bridge is None else bridge.fold(down)

    def delta_weight(self, which: str) -> torch.Tensor:
        """The (D, D) update B M A of q or v, with M = W diag(lambda) under COBOT, else I."""
        return getattr(self, f"lora_b_{which}").weight @ self.down_weight(which)

    def _up_block(self) -> torch.Tensor:
        """[B_q 0; 0 0; 0 B_v], (3D, 2V): one up matmul writes q's and v's updates, k's stay 0."""
        b_q, b_v = self.lora_b_q.weight, self.lora_b_v.weight
        zeros = b_q.new_zeros(self.dim, self.rank)
        return torch.cat(
            [
                torch.cat([b_q, zeros], 1),
                b_q.new_zeros(self.dim, 2 * self.rank),
                torch.cat([zeros, b_v], 1),
            ]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.linear(x, torch.cat([self.down_weight("q"), self.down_weight("v")]))  # (..., 2V)
        return self.qkv(x) + F.linear(h, self._up_block())


class AdaptformerMLP(nn.Module):
    """SAM's block MLP with a parallel Adaptformer branch.

        out = MLP(x) + s * B(dropout(ReLU(A(LN(x)))))

    x is the MLP's input (the block's ``norm2`` output). LN has affine parameters, A and B have
    biases; B and both biases start at zero, so the block is unchanged at initialisation. With
    COBOT the bridge acts after A and before the ReLU (the folded form; the paper's Eq. 21 sums
    two branches, which before a ReLU is another function). ``down_scale`` multiplies A's
    weight at initialisation (PeftConfig.down_init_scale).
    """

    def __init__(
        self,
        mlp: nn.Module,
        dim: int,
        rank: int,
        scale: float = 1.0,
        dropout: float = 0.1,
        cobot: CobotBridge | None = None,
        down_scale: float = 1.0,
    ):
        super().__init__()
        like = next(mlp.parameters())
        kw = {"device": like.device, "dtype": like.dtype}
        self.mlp = mlp
        self.dim, self.rank, self.scale = dim, rank, scale
        self.adapter_norm = nn.LayerNorm(dim, **kw)
        self.adapter_down = nn.Linear(dim, rank, **kw)
        self.adapter_up = nn.Linear(rank, dim, **kw)
        self.adapter_dropout = nn.Dropout(dropout)
        nn.init.kaiming_uniform_(self.adapter_down.weight, a=math.sqrt(5))
        with torch.no_grad():
            self.adapter_down.weight.mul_(down_scale)
        nn.init.zeros_(self.adapter_down.bias)
        nn.init.zeros_(self.adapter_up.weight)
        nn.init.zeros_(self.adapter_up.bias)
        self.cobot = cobot

    def down_weight_and_bias(self) -> tuple[torch.Tensor, torch.Tensor]:
        """A's weight (V, D) and bias (V,), with the COBOT bridge folded in when there is one."""
        weight, bias = self.adapter_down.weight, self.adapter_down.bias
        if self.cobot is None:
            return weight, bias
        return self.cobot.fold(weight), self.cobot.fold(bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.linear(self.adapter_norm(x), *self.down_weight_and_bias())
        h = self.adapter_up(self.adapter_dropout(torch.relu(h)))
        return self.mlp(x) + self.scale * h
