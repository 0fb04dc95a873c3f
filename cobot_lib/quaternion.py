"""Quaternions and the quaternion (hyper-complex) linear layer (Sec. 4.3, Eq. 20).

A quaternion h = a0 + a1 j1 + a2 j2 + a3 j3 is stored as a tensor whose last dimension is 4.
A quaternion linear map of V/4 inputs to V/4 outputs has V/4 x V/4 quaternion weights; its real
V x V matrix is made of 4 x 4 blocks, each the left-multiplication matrix of one weight, so each
block's 16 entries share 4 parameters (a quarter of a dense layer's V^2).
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["left_matrix", "QuaternionLinear"]


def left_matrix(q: torch.Tensor) -> torch.Tensor:
    """Real 4x4 matrix L(q) with L(q) @ p == q (x) p (Hamilton product), for q of shape (..., 4)."""
    if q.shape[-1] != 4:
        raise ValueError(f"a quaternion tensor needs last dimension 4, got shape {tuple(q.shape)}")
    a, b, c, d = q.unbind(-1)
    rows = [
        torch.stack([a, -b, -c, -d], -1),
        torch.stack([b, a, -d, c], -1),
        torch.stack([c, d, a, -b], -1),
        torch.stack([d, -c, b, a], -1),
    ]
    return torch.stack(rows, -2)


class QuaternionLinear(nn.Module):
    """A V -> V (in general 4n -> 4m) real linear map built from quaternion weights, no bias.

    ``weight`` has shape (out/4, in/4, 4) (r, i, j, k parts). ``init``:
      - "paper": each weight a uniform random unit quaternion scaled by 1/sqrt(in/4), so that
        each 4x4 block is a scaled rotation (orthogonal); for in = out = 4 the matrix is exactly
        orthogonal (the paper's "weights on the unit sphere").
      - "official": real part 0, imaginary parts ~ U(0, 1) (the authors' released code).
    """

    def __init__(self, in_features: int, out_features: int | None = None, init: str = "paper"):
        super().__init__()
        out_features = in_features if out_features is None else out_features
        for name, value in (("in_features", in_features), ("out_features", out_features)):
            if value <= 0 or value % 4:
                raise ValueError(
                    f"QuaternionLinear: {name}={value} must be a positive multiple of 4 "
                    "(one real dimension per quaternion part)"
                )
        if init not in ("paper", "official"):
            raise ValueError(f"QuaternionLinear: init must be 'paper' or 'official', got {init!r}")
        self.in_features, self.out_features, self.init = in_features, out_features, init
        self.weight = nn.Parameter(torch.empty(out_features // 4, in_features // 4, 4))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            if self.init == "paper":
                q = torch.randn_like(self.weight)
                q /= q.norm(dim=-1, keepdim=True)
                self.weight.copy_(q / math.sqrt(self.in_features // 4))
            else:
                self.weight.zero_()
                self.weight[..., 1:].uniform_(0.0, 1.0)

    def matrix(self) -> torch.Tensor:
        """The real (out, in) matrix: block (o, i) is left_matrix(weight[o, i])."""
        blocks = left_matrix(self.weight)  # (O, I, 4, 4)
        o, i = blocks.shape[:2]
        return blocks.permute(0, 2, 1, 3).reshape(4 * o, 4 * i)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.matrix().T.to(x.dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, init={self.init}"
