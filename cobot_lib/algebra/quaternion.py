"""Quaternions and the quaternion (hyper-complex) linear layer (Sec. 4.3, Eq. 20).

A quaternion h = a0 + a1 j1 + a2 j2 + a3 j3 is stored as a tensor whose last dimension is 4,
scalar part first (a0, a1, a2, a3) -- scipy's Rotation uses the opposite, scalar-last order.
The basis obeys j1^2 = j2^2 = j3^2 = j1 j2 j3 = -1, j1 j2 = j3 = -j2 j1 (not commutative); the
Hamilton product of unit quaternions composes rotations of R^3 (v -> q v q*).

A quaternion linear map of V/4 inputs to V/4 outputs has V/4 x V/4 quaternion weights; its real
V x V matrix is made of 4 x 4 blocks, each the left-multiplication matrix of one weight, so each
block's 16 entries share 4 parameters (a quarter of a dense layer's V^2).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

__all__ = [
    "hamilton_product",
    "conjugate",
    "norm",
    "normalize",
    "inverse",
    "matrix",
    "left_matrix",
    "right_matrix",
    "block_matrix",
    "rotate",
    "rotation_matrix",
    "random_unit_quaternions",
    "orthogonal_quaternion_weights",
    "from_axis_angle",
    "QuaternionLinear",
]


def _check(name: str, q: torch.Tensor, size: int = 4) -> None:
    if not isinstance(q, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(q).__name__}")
    if q.dim() == 0 or q.shape[-1] != size:
        what = "a quaternion tensor" if size == 4 else "a 3-D vector tensor"
        raise ValueError(f"{name}: {what} needs last dimension {size}, got shape {tuple(q.shape)}")
    if not q.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {q.dtype}")


def _check_same_dtype(op: str, p: torch.Tensor, q: torch.Tensor) -> None:
    if p.dtype != q.dtype:
        raise TypeError(f"{op}: the operands are {p.dtype} and {q.dtype}; give both the same dtype")


def hamilton_product(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """p (x) q for tensors (..., 4) that broadcast: the Hamilton product (Sec. 4.3). Eq. 20 as
    printed (each bracket times j_i on the right) gives q (x) p instead (notebook 02).

    Written out from the basis rules: with p = a0 + a (vector a) and q = b0 + b,
    p q = (a0 b0 - a.b) + (a0 b + b0 a + a x b).
    """
    _check("hamilton_product: p", p)
    _check("hamilton_product: q", q)
    _check_same_dtype("hamilton_product", p, q)
    a0, a1, a2, a3 = p.unbind(-1)
    b0, b1, b2, b3 = q.unbind(-1)
    return torch.stack(
        [
            a0 * b0 - a1 * b1 - a2 * b2 - a3 * b3,
            a0 * b1 + a1 * b0 + a2 * b3 - a3 * b2,
            a0 * b2 - a1 * b3 + a2 * b0 + a3 * b1,
            a0 * b3 + a1 * b2 - a2 * b1 + a3 * b0,
        ],
        dim=-1,
    )


def conjugate(q: torch.Tensor) -> torch.Tensor:
    """q* = a0 - a1 j1 - a2 j2 - a3 j3 (so q q* = |q|^2 and (p q)* = q* p*)."""
    _check("conjugate: q", q)
    return q * q.new_tensor([1.0, -1.0, -1.0, -1.0])


def norm(q: torch.Tensor) -> torch.Tensor:
    """|q| = sqrt(a0^2 + a1^2 + a2^2 + a3^2), shape (...); |p q| = |p| |q|."""
    _check("norm: q", q)
    return torch.linalg.vector_norm(q, dim=-1)


def normalize(q: torch.Tensor) -> torch.Tensor:
    """q / |q| (a clear error for a zero quaternion, which has no direction)."""
    n = norm(q)
    if bool((n == 0).any()):
        raise ValueError("normalize: a zero quaternion cannot be scaled to unit norm")
    return q / n.unsqueeze(-1)


def inverse(q: torch.Tensor) -> torch.Tensor:
    """q^-1 = q* / |q|^2 (q q^-1 = q^-1 q = 1)."""
    n2 = norm(q) ** 2
    if bool((n2 == 0).any()):
        raise ValueError("inverse: a zero quaternion has no inverse")
    return conjugate(q) / n2.unsqueeze(-1)


# L(q)[r, c] = sign[r, c] * q[index[r, c]]: the Hamilton product's structure constants as two
# tables, read off the basis rules (the row of L(q) for output part r says which part of q meets
# which part of p, and with what sign). R(q) uses the same index with other signs.
_INDEX = torch.tensor([[0, 1, 2, 3], [1, 0, 3, 2], [2, 3, 0, 1], [3, 2, 1, 0]])
_LEFT_SIGN = torch.tensor(
    [[1.0, -1.0, -1.0, -1.0], [1.0, 1.0, -1.0, 1.0], [1.0, 1.0, 1.0, -1.0], [1.0, -1.0, 1.0, 1.0]]
)
_RIGHT_SIGN = torch.tensor(
    [[1.0, -1.0, -1.0, -1.0], [1.0, 1.0, 1.0, -1.0], [1.0, -1.0, 1.0, 1.0], [1.0, 1.0, -1.0, 1.0]]
)


def _from_tables(q: torch.Tensor, sign: torch.Tensor) -> torch.Tensor:
    """sign * q[..., index]: one gather and one product (cheap inside a training step)."""
    return q[..., _INDEX.to(q.device)] * sign.to(q.device, q.dtype)


def left_matrix(q: torch.Tensor) -> torch.Tensor:
    """Real 4x4 matrix L(q) with L(q) @ p == q (x) p (Hamilton product), for q of shape (..., 4).

    With q = (a, b, c, d): rows [a, -b, -c, -d], [b, a, -d, c], [c, d, a, -b], [d, -c, b, a].
    """
    _check("left_matrix: q", q)
    return _from_tables(q, _LEFT_SIGN)


matrix = left_matrix
"""The real 4x4 matrix of a quaternion: its left-multiplication map L(q) (alias of left_matrix).
L(q)^T L(q) = |q|^2 I, so a unit quaternion's matrix is orthogonal."""


def right_matrix(q: torch.Tensor) -> torch.Tensor:
    """Real 4x4 matrix R(q) with R(q) @ p == p (x) q; L and R commute (associativity).

    With q = (a, b, c, d): rows [a, -b, -c, -d], [b, a, d, -c], [c, -d, a, b], [d, c, -b, a].
    """
    _check("right_matrix: q", q)
    return _from_tables(q, _RIGHT_SIGN)


def block_matrix(weight: torch.Tensor) -> torch.Tensor:
    """The real (..., 4O, 4I) matrix of quaternion weights (..., O, I, 4): block (o, i) is
    L(weight[o, i]). Leading dimensions batch (COBOT builds all modules' heads in one call)."""
    _check("block_matrix: weight", weight)
    if weight.dim() < 3:
        raise ValueError(
            f"block_matrix: weight needs shape (..., O, I, 4), got {tuple(weight.shape)}"
        )
    *lead, o, i, _ = weight.shape
    blocks = left_matrix(weight)  # (..., O, I, 4, 4)
    return blocks.transpose(-3, -2).reshape(*lead, 4 * o, 4 * i)


def rotate(v: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """q v q* for 3-D vectors v (..., 3) read as pure quaternions (0, v); q (..., 4) broadcasts.

    For a unit q this is the rotation by angle 2 acos(q0) about the axis (q1, q2, q3); a
    non-unit q also scales the vector by |q|^2.
    """
    _check("rotate: v", v, size=3)
    _check("rotate: q", q)
    _check_same_dtype("rotate", v, q)
    pure = torch.cat([torch.zeros_like(v[..., :1]), v], dim=-1)
    return hamilton_product(hamilton_product(q, pure), conjugate(q))[..., 1:]


def rotation_matrix(q: torch.Tensor) -> torch.Tensor:
    """The 3x3 matrix of v -> q v q* (the lower-right block of L(q) R(q*)), shape (..., 3, 3)."""
    return (left_matrix(q) @ right_matrix(conjugate(q)))[..., 1:, 1:]


def random_unit_quaternions(
    shape: Sequence[int] | torch.Size = (),
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Quaternions uniform on the unit sphere S^3, shape (*shape, 4): normalised Gaussians.

    (A Gaussian in R^4 is rotation invariant, so its direction is uniform on S^3; the same draw
    gives uniformly distributed random rotations.)
    """
    q = torch.randn(*shape, 4, generator=generator, dtype=dtype, device=device)
    return q / torch.linalg.vector_norm(q, dim=-1, keepdim=True)


def orthogonal_quaternion_weights(
    n: int, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None
) -> torch.Tensor:
    """Quaternion weights (n, n, 4) whose real block matrix (4n x 4n) is exactly orthogonal.

    Orthogonal quaternion matrices exist at every size (the compact symplectic group Sp(n)):
    block_matrix maps quaternion matrices onto a subalgebra of real matrices that is closed
    under transposition (L(q)^T = L(q*)), so for a random quaternion matrix Y the skew part
    K = (Y_r - Y_r^T) / 2 of its real matrix Y_r lies in it, and so does exp(K), which is
    orthogonal. The weights are read back from exp(K)'s columns 0, 4, 8, ... (L(q) e_0 = q).
    Draws from torch's global generator.
    """
    if n <= 0:
        raise ValueError(f"orthogonal_quaternion_weights: n must be positive, got {n}")
    y = block_matrix(torch.randn(n, n, 4, dtype=torch.float64))
    q = torch.linalg.matrix_exp((y - y.T) / 2)
    weight = q[:, 0::4].reshape(n, 4, n).permute(0, 2, 1)
    return weight.to(dtype=dtype, device=device).contiguous()


def from_axis_angle(axis: torch.Tensor, angle: torch.Tensor | float) -> torch.Tensor:
    """The unit quaternion (cos(angle/2), sin(angle/2) axis/|axis|): rotation by `angle` (radians,
    right-hand rule) about `axis` (..., 3); angle broadcasts against axis[..., 0]."""
    _check("from_axis_angle: axis", axis, size=3)
    length = torch.linalg.vector_norm(axis, dim=-1, keepdim=True)
    if bool((length == 0).any()):
        raise ValueError("from_axis_angle: the rotation axis must be non-zero")
    half = torch.as_tensor(angle, dtype=axis.dtype, device=axis.device).unsqueeze(-1) / 2
    half, unit = torch.broadcast_tensors(half, axis / length)  # both (..., 3)
    return torch.cat([torch.cos(half[..., :1]), torch.sin(half) * unit], dim=-1)


class QuaternionLinear(nn.Module):
    """A V -> V (in general 4n -> 4m) real linear map built from quaternion weights, no bias.

    ``weight`` has shape (out/4, in/4, 4) (r, i, j, k parts); output quaternion o is
    sum_i weight[o, i] (x) x_i, with x_i = x[4i : 4i + 4]. ``init``:
      - "paper": each weight a uniform random unit quaternion scaled by 1/sqrt(in/4), so that
        each 4x4 block is a scaled rotation (orthogonal); for in = out = 4 the matrix is exactly
        orthogonal. This is this project's reading of the paper's "initialized as orthogonal
        weights" on the unit sphere (Sec. 4.3): for in = out > 4 it is orthogonal only block by
        block, not as a whole.
      - "orthogonal": an exactly orthogonal matrix at every size (in = out only), from
        ``orthogonal_quaternion_weights``.
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
        if init not in ("paper", "official", "orthogonal"):
            raise ValueError(
                f"QuaternionLinear: init must be 'paper', 'official' or 'orthogonal', got {init!r}"
            )
        if init == "orthogonal" and in_features != out_features:
            raise ValueError(
                f"QuaternionLinear: init='orthogonal' needs a square map, got in_features="
                f"{in_features}, out_features={out_features}"
            )
        self.in_features, self.out_features, self.init = in_features, out_features, init
        self.weight = nn.Parameter(torch.empty(out_features // 4, in_features // 4, 4))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            if self.init == "paper":
                q = random_unit_quaternions(
                    self.weight.shape[:-1], dtype=self.weight.dtype, device=self.weight.device
                )
                self.weight.copy_(q / math.sqrt(self.in_features // 4))
            elif self.init == "orthogonal":
                self.weight.copy_(orthogonal_quaternion_weights(self.in_features // 4))
            else:
                self.weight.zero_()
                self.weight[..., 1:].uniform_(0.0, 1.0)

    def matrix(self) -> torch.Tensor:
        """The real (out, in) matrix: block (o, i) is left_matrix(weight[o, i])."""
        return block_matrix(self.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.matrix().T.to(x.dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, init={self.init}"
