"""The T-product and its transform generalisation (Def. 4.1, Eqs. 6 and 11-16 of the paper).

A third-order tensor A in R^{n1 x n2 x n3} is read as n3 "frontal slices" A[:, :, k].
The T-product multiplies two such tensors through the block-circulant matrix of the
slices; under the DFT along mode 3 it becomes n3 independent matrix products. Replacing the
DFT by any invertible matrix S gives the transform product A *_S B that COBOT's relation
matrix is built on (only the mode-3 transform T x_3 S is kept, with S learned).

Everything works on torch tensors and is differentiable; indices are 0-based (slice k of the
paper's 1-based A^(k+1)).
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "mode3_product",
    "unfold",
    "fold",
    "bcirc",
    "facewise_product",
    "t_product",
    "t_product_fft",
    "t_transpose",
    "t_identity",
    "dft_matrix",
    "check_invertible",
    "inverse_mode3",
    "transform_product",
    "transform_identity",
]


def mode3_product(tensor: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """Mode-3 product ``T x_3 S`` (Eq. 15): slice m of the result is ``sum_k S[m, k] T[:, :, k]``.

    Args:
        tensor: (n1, n2, n3).
        matrix: (p, n3).
    Returns:
        (n1, n2, p). Differentiable in both arguments.
    """
    if tensor.dim() != 3:
        raise ValueError(f"mode3_product expects a 3-D tensor, got shape {tuple(tensor.shape)}")
    if matrix.dim() != 2 or matrix.shape[1] != tensor.shape[2]:
        raise ValueError(
            f"mode3_product: matrix must have shape (p, {tensor.shape[2]}) to act on mode 3 of a "
            f"tensor of shape {tuple(tensor.shape)}, got {tuple(matrix.shape)}"
        )
    return torch.einsum("ijk,mk->ijm", tensor, matrix)


# ---- checks ------------------------------------------------------------------------------


def _check_3d(name: str, tensor: torch.Tensor) -> None:
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
    if tensor.dim() != 3:
        raise ValueError(
            f"{name} must be a third-order tensor (n1, n2, n3), got shape {tuple(tensor.shape)}"
        )


def _check_pair(op: str, a: torch.Tensor, b: torch.Tensor) -> None:
    """A (n1, n2, n3) and B (n2, l, n3) of one dtype: what every product here needs."""
    _check_3d(f"{op}: A", a)
    _check_3d(f"{op}: B", b)
    if a.shape[1] != b.shape[0]:
        raise ValueError(
            f"{op}: A is {tuple(a.shape)} and B is {tuple(b.shape)}; A's n2={a.shape[1]} must "
            f"equal B's first dimension {b.shape[0]} (A in R^(n1 x n2 x n3), B in R^(n2 x l x n3))"
        )
    if a.shape[2] != b.shape[2]:
        raise ValueError(
            f"{op}: A has n3={a.shape[2]} frontal slices and B has {b.shape[2]}; they must agree"
        )
    if a.dtype != b.dtype:
        raise TypeError(f"{op}: A is {a.dtype} and B is {b.dtype}; give both the same dtype")


# ---- unfold / fold / bcirc (Eqs. 11-13) and the T-product (Eq. 6) ---------------------------


def unfold(tensor: torch.Tensor) -> torch.Tensor:
    """unfold(A) = [A^(1); A^(2); ...; A^(n3)] (Eq. 12): the frontal slices stacked vertically.

    (n1, n2, n3) -> (n1 n3, n2); rows k n1 ... (k+1) n1 - 1 are slice k.
    """
    _check_3d("unfold: tensor", tensor)
    n1, n2, n3 = tensor.shape
    return tensor.permute(2, 0, 1).reshape(n3 * n1, n2)


def fold(matrix: torch.Tensor, n3: int) -> torch.Tensor:
    """The inverse of unfold (Eq. 13): (n1 n3, n2) -> (n1, n2, n3), fold(unfold(A), n3) == A."""
    if matrix.dim() != 2:
        raise ValueError(f"fold expects a 2-D (n1*n3, n2) matrix, got shape {tuple(matrix.shape)}")
    if not isinstance(n3, int) or n3 <= 0 or matrix.shape[0] % n3:
        raise ValueError(
            f"fold: n3={n3!r} must be a positive int dividing the {matrix.shape[0]} rows of the "
            "unfolded matrix"
        )
    rows, n2 = matrix.shape
    return matrix.reshape(n3, rows // n3, n2).permute(1, 2, 0)


def bcirc(tensor: torch.Tensor) -> torch.Tensor:
    """The block-circulant matrix of the frontal slices (Def. 4.1, Eq. 11), (n1 n3, n2 n3).

    Block (i, j) is A^((i - j) mod n3): the first block column is unfold(A) and every next block
    column is the previous one shifted down by one block.
    """
    _check_3d("bcirc: tensor", tensor)
    n1, n2, n3 = tensor.shape
    k = torch.arange(n3, device=tensor.device)
    index = (k[:, None] - k[None, :]) % n3  # (block row i, block col j) -> slice (i - j) mod n3
    blocks = tensor.permute(2, 0, 1)[index]  # (n3, n3, n1, n2)
    return blocks.permute(0, 2, 1, 3).reshape(n3 * n1, n3 * n2)


def facewise_product(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The slice-by-slice matrix product (odot, Eq. 14): C[:, :, k] = A[:, :, k] @ B[:, :, k]."""
    _check_pair("facewise_product", a, b)
    return torch.einsum("ijk,jlk->ilk", a, b)


def t_product(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """A * B = fold(bcirc(A) . unfold(B)) (Def. 4.1, Eq. 6): (n1, n2, n3) x (n2, l, n3).

    Slice k of the result is sum_j A^((k - j) mod n3) B^(j), a circular convolution of the
    slices. Costs O(n1 n2 l n3^2) and builds an (n1 n3) x (n2 n3) matrix; see t_product_fft.
    """
    _check_pair("t_product", a, b)
    return fold(bcirc(a) @ unfold(b), a.shape[2])


def t_product_fft(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The T-product through the DFT along mode 3: n3 independent matrix products.

    fft(A * B) = fft(A) odot fft(B) along mode 3 (the DFT diagonalises every circulant), so the
    cost is O(n1 n2 l n3) for the products plus O((n1 n2 + n2 l + n1 l) n3 log n3) for the FFTs.
    Real inputs give a real result (the imaginary part is zero up to rounding and dropped).
    """
    _check_pair("t_product_fft", a, b)
    fa, fb = torch.fft.fft(a, dim=2), torch.fft.fft(b, dim=2)
    c = torch.fft.ifft(torch.einsum("ijk,jlk->ilk", fa, fb), dim=2)
    return c if a.is_complex() else c.real


def t_transpose(tensor: torch.Tensor) -> torch.Tensor:
    """A^T: every slice transposed, slices 2..n3 in reverse order, so bcirc(A^T) = bcirc(A)^T."""
    _check_3d("t_transpose: tensor", tensor)
    n3 = tensor.shape[2]
    order = [0, *range(n3 - 1, 0, -1)]
    return tensor.transpose(0, 1)[:, :, order]


def t_identity(n: int, n3: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """The T-product identity: slice 0 is I_n, the other n3 - 1 slices are zero."""
    if n <= 0 or n3 <= 0:
        raise ValueError(f"t_identity: n={n} and n3={n3} must be positive")
    eye = torch.zeros(n, n, n3, dtype=dtype)
    eye[:, :, 0] = torch.eye(n, dtype=dtype)
    return eye


# ---- the transform product (Eqs. 14-16) ------------------------------------------------


def dft_matrix(n: int, dtype: torch.dtype = torch.complex128) -> torch.Tensor:
    """F[m, k] = exp(-2 pi i m k / n): F x = torch.fft.fft(x), and A x_3 F = fft(A, dim=2)."""
    if n <= 0:
        raise ValueError(f"dft_matrix: n={n} must be positive")
    k = torch.arange(n, dtype=torch.float64)
    phase = -2 * math.pi * torch.outer(k, k) / n
    return torch.polar(torch.ones_like(phase), phase).to(dtype)


def _real_of(dtype: torch.dtype) -> torch.dtype:
    return {torch.complex64: torch.float32, torch.complex128: torch.float64}.get(dtype, dtype)


def check_invertible(
    s: torch.Tensor, n3: int | None = None, max_cond: float | None = None
) -> float:
    """Raise unless S is a square (n3 x n3) matrix that can be inverted reliably; return cond(S).

    ``max_cond`` defaults to 0.01 / eps of S's precision (about 8e4 in float32, 4.5e13 in
    float64): past it the inverse transform of Eq. 16 loses more than ~1% relative accuracy.
    """
    if not isinstance(s, torch.Tensor):
        raise TypeError(f"S must be a torch.Tensor, got {type(s).__name__}")
    if s.dim() != 2 or s.shape[0] != s.shape[1]:
        raise ValueError(f"S must be a square n3 x n3 matrix, got shape {tuple(s.shape)}")
    if n3 is not None and s.shape[0] != n3:
        raise ValueError(
            f"S is {tuple(s.shape)} but the tensors have n3={n3} frontal slices; S must be "
            f"({n3}, {n3})"
        )
    if not (s.is_floating_point() or s.is_complex()):
        raise TypeError(f"S must be a floating or complex tensor, got {s.dtype}")
    limit = max_cond if max_cond is not None else 0.01 / torch.finfo(_real_of(s.dtype)).eps
    with torch.no_grad():
        if not bool(torch.isfinite(s).all()):
            raise ValueError("S has non-finite entries (nan or inf); it cannot define a transform")
        sv = torch.linalg.svdvals(s.detach())
        cond = float(sv[0] / sv[-1]) if float(sv[-1]) > 0 else math.inf
    if not math.isfinite(cond) or cond > limit:
        raise ValueError(
            f"S is singular or too ill-conditioned to invert: cond(S) = {cond:.3g} > {limit:.3g} "
            "(the transform product needs an invertible S, Eq. 16)"
        )
    return cond


def _transform_dtypes(op: str, a: torch.Tensor, s: torch.Tensor) -> torch.dtype:
    """S may be complex for real tensors (the DFT) or real for complex ones, same precision."""
    if _real_of(a.dtype) != _real_of(s.dtype):
        raise TypeError(
            f"{op}: the tensors are {a.dtype} and S is {s.dtype}; use one precision "
            "(float32/complex64 or float64/complex128)"
        )
    return s.dtype if s.is_complex() else a.dtype


def inverse_mode3(tensor: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """``T x_3 S^-1`` (Eq. 16) by solving S X = T along mode 3 (no explicit inverse)."""
    n1, n2, n3 = tensor.shape
    flat = tensor.reshape(n1 * n2, n3).transpose(0, 1)  # (n3, n1 n2)
    return torch.linalg.solve(s, flat).transpose(0, 1).reshape(n1, n2, n3)


def transform_product(
    a: torch.Tensor, b: torch.Tensor, s: torch.Tensor, max_cond: float | None = None
) -> torch.Tensor:
    """A *_S B = S^-1( S(A) odot S(B) ) with S(A) = A x_3 S (Eqs. 14-16; Kernfeld et al. 2015).

    With S = dft_matrix(n3) this is the T-product (returned complex; its imaginary part is zero up
    to rounding for real A, B). Any invertible S gives an associative product with the identity
    transform_identity(n, S). A complex S with real tensors gives a complex result.
    """
    _check_pair("transform_product", a, b)
    n3 = a.shape[2]
    check_invertible(s, n3, max_cond)
    dtype = _transform_dtypes("transform_product", a, s)
    a, b, s = a.to(dtype), b.to(dtype), s.to(dtype)
    c_bar = torch.einsum("ijk,jlk->ilk", mode3_product(a, s), mode3_product(b, s))
    return inverse_mode3(c_bar, s)


def transform_identity(n: int, s: torch.Tensor) -> torch.Tensor:
    """The identity of *_S: every transformed slice is I_n, i.e. (I_n in every slice) x_3 S^-1."""
    check_invertible(s)
    if n <= 0:
        raise ValueError(f"transform_identity: n={n} must be positive")
    ones = torch.eye(n, dtype=s.dtype, device=s.device)[:, :, None].expand(n, n, s.shape[0])
    return inverse_mode3(ones.contiguous(), s)
