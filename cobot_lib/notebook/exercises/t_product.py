"""Solutions to the exercises of notebook 01 (the T-product)."""

from __future__ import annotations

import numpy as np
import scipy.linalg
import torch

from ...algebra.tproduct import bcirc, t_identity, t_product, t_product_fft
from ...peft import RelationMatrix


def _rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def exercise_1() -> str:
    """Only slice 2 of A (n3 = 4) is non-zero: bcirc(A) = P ⊗ A2, P the cyclic down-shift."""
    a2 = _rand(3, 2)
    A = torch.zeros(3, 2, 4, dtype=torch.float64)
    A[:, :, 1] = a2
    shift = torch.from_numpy(scipy.linalg.circulant([0.0, 1.0, 0.0, 0.0]))  # first column e_2
    assert torch.equal(bcirc(A), torch.kron(shift, a2))
    return "bcirc(A) = P ⊗ A2 with P the cyclic shift: every block row holds A2 once, shifted"


def exercise_2() -> str:
    """Tubes (1 x 1 x n) commute under the T-product; 2 x 2 x n tensors in general do not."""
    a, b = _rand(1, 1, 5, seed=1), _rand(1, 1, 5, seed=2)
    conv = np.real(np.fft.ifft(np.fft.fft(a.flatten().numpy()) * np.fft.fft(b.flatten().numpy())))
    assert torch.allclose(t_product(a, b), t_product(b, a), atol=1e-12)
    assert np.allclose(t_product(a, b).flatten().numpy(), conv, atol=1e-12)  # circular conv.
    P, Q = _rand(2, 2, 5, seed=3), _rand(2, 2, 5, seed=4)
    assert not torch.allclose(t_product(P, Q), t_product(Q, P), atol=1e-6)
    return "tubes commute (circular convolution is commutative); 2 x 2 x n tensors do not"


def exercise_3() -> str:
    """At S = I, L = Σ (λ_LM - 1)² gives ∂L/∂S[m, k] = 2 Σ_v (c_mv - 1) c_kv."""
    rel = RelationMatrix(num_modules=5, rank=4, relation="learnable")
    c = 1 + 0.5 * _rand(5, 4, seed=5).float()
    with torch.no_grad():
        rel.c.copy_(c)
    (rel.cross_block_coefficients() - 1).pow(2).sum().backward()
    predicted = 2 * (c - 1) @ c.T
    assert torch.allclose(rel.S.grad, predicted, atol=1e-5)
    return "dL/dS = 2 (c - 1) c^T at S = I: row m scales with module m's error, column k with c_k"


def exercise_4() -> str:
    """The T-inverse: invert every Fourier slice; A * inv(A) = inv(A) * A = I (the identity)."""
    A = _rand(3, 3, 6, seed=6) + 3 * t_identity(3, 6).double()
    inverse = torch.fft.ifft(torch.linalg.inv(torch.fft.fft(A, dim=2).permute(2, 0, 1)).permute(
        1, 2, 0), dim=2).real  # fmt: skip
    eye = t_identity(3, 6).double()
    assert torch.allclose(t_product(A, inverse), eye, atol=1e-10)
    assert torch.allclose(t_product_fft(inverse, A), eye, atol=1e-10)
    assert torch.allclose(torch.linalg.inv(bcirc(A)), bcirc(inverse), atol=1e-10)
    return "inv(A): invert each FFT slice, transform back; bcirc(inv(A)) = bcirc(A)^-1"
