"""The two PEFT baselines as wrappers around SAM's own modules (METHOD.md section 1).

Each wrapper keeps the frozen original as a child (``qkv`` / ``mlp``) and adds a down map A and
an up map B; an optional ``CobotBridge`` sits between them. ``unload`` puts the original child
back, so the frozen model is never edited beyond swapping these modules.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .cobot import CobotBridge

__all__ = ["LoRAQKV", "AdaptformerMLP"]


def _lora_pair(dim: int, rank: int, like: nn.Linear) -> tuple[nn.Linear, nn.Linear]:
    """A (kaiming-uniform) and B (zeros), no biases, on the device and dtype of ``like``."""
    kw = {"device": like.weight.device, "dtype": like.weight.dtype}
    down = nn.Linear(dim, rank, bias=False, **kw)
    up = nn.Linear(rank, dim, bias=False, **kw)
    nn.init.kaiming_uniform_(down.weight, a=math.sqrt(5))
    nn.init.zeros_(up.weight)
    return down, up


class LoRAQKV(nn.Module):
    """SAM's fused qkv projection with LoRA on q and v: q += B_q A_q x, v += B_v A_v x.

    With COBOT, the low-rank path becomes B W((lambda_MC + lambda_LM) * A x) (Eq. 21).
    """

    def __init__(
        self,
        qkv: nn.Linear,
        rank: int,
        cobot_q: CobotBridge | None = None,
        cobot_v: CobotBridge | None = None,
    ):
        super().__init__()
        if qkv.out_features != 3 * qkv.in_features:
            raise ValueError(
                f"expected a fused qkv Linear(D, 3D), got Linear({qkv.in_features}, "
                f"{qkv.out_features})"
            )
        self.qkv = qkv
        self.dim, self.rank = qkv.in_features, rank
        self.lora_a_q, self.lora_b_q = _lora_pair(self.dim, rank, qkv)
        self.lora_a_v, self.lora_b_v = _lora_pair(self.dim, rank, qkv)
        self.cobot_q, self.cobot_v = cobot_q, cobot_v

    @staticmethod
    def _path(x, down: nn.Linear, up: nn.Linear, bridge: CobotBridge | None) -> torch.Tensor:
        h = down(x)
        return up(bridge(h) if bridge is not None else h)

    def delta_weight(self, which: str) -> torch.Tensor:
        """The (D, D) update B M A of q or v, with M = W diag(lambda) under COBOT, else I."""
        down, up = getattr(self, f"lora_a_{which}"), getattr(self, f"lora_b_{which}")
        bridge = getattr(self, f"cobot_{which}")
        middle = bridge.matrix() if bridge is not None else None
        a = down.weight if middle is None else middle.to(down.weight.dtype) @ down.weight
        return up.weight @ a

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(x).split(self.dim, dim=-1)
        q = q + self._path(x, self.lora_a_q, self.lora_b_q, self.cobot_q)
        v = v + self._path(x, self.lora_a_v, self.lora_b_v, self.cobot_v)
        return torch.cat([q, k, v], dim=-1)


class AdaptformerMLP(nn.Module):
    """SAM's block MLP with a parallel Adaptformer branch.

        out = MLP(x) + s * B(dropout(ReLU(A(LN(x)))))

    x is the MLP's input (the block's ``norm2`` output). LN has affine parameters, A and B have
    biases; B and both biases start at zero, so the block is unchanged at initialisation. With
    COBOT the bridge acts after A and before the ReLU.
    """

    def __init__(
        self,
        mlp: nn.Module,
        dim: int,
        rank: int,
        scale: float = 1.0,
        dropout: float = 0.1,
        cobot: CobotBridge | None = None,
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
        nn.init.zeros_(self.adapter_down.bias)
        nn.init.zeros_(self.adapter_up.weight)
        nn.init.zeros_(self.adapter_up.bias)
        self.cobot = cobot

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.adapter_down(self.adapter_norm(x))
        if self.cobot is not None:
            h = self.cobot(h)
        h = self.adapter_up(self.adapter_dropout(torch.relu(h)))
        return self.mlp(x) + self.scale * h
