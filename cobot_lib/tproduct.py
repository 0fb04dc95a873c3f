"""The T-product and its transform generalisation (Def. 4.1, Eqs. 14-16 of the paper).

A third-order tensor A in R^{n1 x n2 x n3} is read as n3 "frontal slices" A[:, :, k].
The T-product multiplies two such tensors through the block-circulant matrix of the
slices; under the DFT along mode 3 it becomes n3 independent matrix products. Replacing the
DFT by any invertible matrix S gives the transform product A *_S B that COBOT's relation
matrix is built on (only the mode-3 transform T x_3 S is kept, with S learned).
"""

from __future__ import annotations

import torch

__all__ = ["mode3_product"]


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
