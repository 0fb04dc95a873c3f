"""Solutions to the exercises of appendix A1 (what the FFT buys)."""

from __future__ import annotations

import torch

from ...algebra.tproduct import bcirc, t_product, t_product_fft


def exercise_1() -> str:
    """bcirc of an n x n x n3 tensor (float64) holds (n n3)² numbers: n = 16, n3 = 1024 -> 2 GiB."""
    n, n3 = 16, 1024
    small = bcirc(torch.zeros(n, n, 8, dtype=torch.float64))  # measure the shape rule at n3 = 8
    assert small.numel() == (n * 8) ** 2
    gib = (n * n3) ** 2 * 8 / 2**30
    assert gib == 2.0
    return "2 GiB for bcirc alone (the FFT form stores 3 tensors of n² n3 numbers: 6 MiB)"


def exercise_2() -> str:
    """Real A and B: the FFT form's inverse transform is real up to rounding (the slices of a
    real tensor's FFT come in conjugate pairs), and equals the bcirc form."""
    gen = torch.Generator().manual_seed(0)
    A, B = (torch.randn(4, 4, 9, generator=gen, dtype=torch.float64) for _ in range(2))
    spectrum = torch.fft.fft(A, dim=2)
    assert torch.allclose(spectrum[:, :, 1:], spectrum[:, :, 1:].flip(2).conj(), atol=1e-12)
    product = torch.einsum("ijk,jlk->ilk", spectrum, torch.fft.fft(B, dim=2))  # slice by slice
    full = torch.fft.ifft(product, dim=2)
    assert float(full.imag.abs().max()) < 1e-12
    assert torch.allclose(full.real, t_product(A, B), atol=1e-10)
    assert torch.allclose(t_product_fft(A, B), t_product(A, B), atol=1e-10)
    return "imaginary part < 1e-12; FFT form == bcirc form"
