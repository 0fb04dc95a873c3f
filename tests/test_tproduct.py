"""cobot_lib.algebra.tproduct against independent oracles.

Oracles: a numpy loop over the circular convolution of the frontal slices (the T-product written
from its definition, not from bcirc), numpy's FFT, scipy.linalg.circulant for the block structure,
the DFT matrix (the transform form), and algebraic identities (associativity, identity, transpose).
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cobot_lib.algebra.tproduct import (
    bcirc,
    check_invertible,
    dft_matrix,
    facewise_product,
    fold,
    mode3_product,
    t_identity,
    t_product,
    t_product_fft,
    t_transpose,
    transform_identity,
    transform_product,
    unfold,
)

SETTINGS = settings(max_examples=30, deadline=None)


def rand(*shape: int, seed: int = 0, dtype=torch.float64) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def circular_convolution(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """C^(k) = sum_j A^((k - j) mod n3) B^(j): the T-product from its definition, in numpy."""
    n1, _, n3 = a.shape
    out = np.zeros((n1, b.shape[1], n3), dtype=np.result_type(a, b))
    for k in range(n3):
        for j in range(n3):
            out[:, :, k] += a[:, :, (k - j) % n3] @ b[:, :, j]
    return out


def random_invertible(n: int, seed: int) -> torch.Tensor:
    """A dense, well-conditioned random S (every slice mixes with every other)."""
    return rand(n, n, seed=seed) + 2 * torch.eye(n, dtype=torch.float64) * n**0.5


# ---- structure -----------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(3, 4, 5), (2, 2, 1), (1, 3, 7)])
def test_unfold_stacks_slices_and_fold_inverts_it(shape):
    a = rand(*shape)
    expected = np.concatenate([a[:, :, k].numpy() for k in range(shape[2])], axis=0)  # Eq. 12
    np.testing.assert_array_equal(unfold(a).numpy(), expected)
    torch.testing.assert_close(fold(unfold(a), shape[2]), a, rtol=0, atol=0)  # Eq. 13


def test_bcirc_of_a_tube_is_scipy_circulant():
    a = rand(1, 1, 6)
    np.testing.assert_array_equal(bcirc(a).numpy(), scipy.linalg.circulant(a[0, 0].numpy()))


def test_bcirc_blocks_are_circulant_in_the_slices():
    a = rand(2, 3, 4)
    m = bcirc(a).numpy()
    assert m.shape == (8, 12)
    for i in range(4):
        for j in range(4):
            block = m[2 * i : 2 * i + 2, 3 * j : 3 * j + 3]
            np.testing.assert_array_equal(block, a[:, :, (i - j) % 4].numpy())


# ---- the three forms of the T-product ----------------------------------------------


@pytest.mark.parametrize("n1,n2,l_,n3", [(3, 4, 2, 5), (1, 1, 1, 1), (4, 2, 3, 8), (2, 5, 1, 3)])
def test_t_product_equals_circular_convolution_of_slices(n1, n2, l_, n3):
    a, b = rand(n1, n2, n3, seed=1), rand(n2, l_, n3, seed=2)
    expected = circular_convolution(a.numpy(), b.numpy())
    np.testing.assert_allclose(t_product(a, b).numpy(), expected, rtol=1e-12, atol=1e-12)


def test_fft_form_matches_numpy_fft():
    a, b = rand(3, 4, 6, seed=3), rand(4, 2, 6, seed=4)
    fa, fb = np.fft.fft(a.numpy(), axis=2), np.fft.fft(b.numpy(), axis=2)
    expected = np.fft.ifft(np.einsum("ijk,jlk->ilk", fa, fb), axis=2).real
    np.testing.assert_allclose(t_product_fft(a, b).numpy(), expected, rtol=1e-12, atol=1e-12)


@SETTINGS
@given(
    n1=st.integers(1, 4),
    n2=st.integers(1, 4),
    l_=st.integers(1, 4),
    n3=st.integers(1, 9),
    seed=st.integers(0, 2**31 - 1),
)
def test_bcirc_fft_and_dft_transform_forms_agree(n1, n2, l_, n3, seed):
    a, b = rand(n1, n2, n3, seed=seed), rand(n2, l_, n3, seed=seed + 1)
    c = t_product(a, b)
    torch.testing.assert_close(t_product_fft(a, b), c, rtol=1e-10, atol=1e-10)
    via_dft = transform_product(a, b, dft_matrix(n3))  # Eq. 14 with S = F
    assert via_dft.is_complex()
    torch.testing.assert_close(via_dft.real, c, rtol=1e-10, atol=1e-10)
    assert float(via_dft.imag.abs().max()) < 1e-10


def test_dft_matrix_is_numpy_fft():
    x = rand(7, seed=5).numpy()
    np.testing.assert_allclose(dft_matrix(7).numpy() @ x, np.fft.fft(x), atol=1e-12)


@SETTINGS
@given(n=st.integers(1, 4), n3=st.integers(1, 7), seed=st.integers(0, 2**31 - 1))
def test_t_product_associative_with_identity_and_transpose(n, n3, seed):
    a, b, c = (rand(n, n, n3, seed=seed + i) for i in range(3))
    torch.testing.assert_close(
        t_product(t_product(a, b), c), t_product(a, t_product(b, c)), rtol=1e-9, atol=1e-9
    )
    eye = t_identity(n, n3)
    torch.testing.assert_close(t_product(a, eye), a, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(t_product(eye, a), a, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(bcirc(t_transpose(a)), bcirc(a).T, rtol=0, atol=0)
    torch.testing.assert_close(
        t_transpose(t_product(a, b)),
        t_product(t_transpose(b), t_transpose(a)),
        rtol=1e-10,
        atol=1e-10,
    )


# ---- the transform product with an arbitrary invertible S (Eqs. 14-16) --------------


@SETTINGS
@given(n=st.integers(1, 4), n3=st.integers(1, 7), seed=st.integers(0, 2**31 - 1))
def test_transform_product_associative_with_identity(n, n3, seed):
    s = random_invertible(n3, seed)
    a, b, c = (rand(n, n, n3, seed=seed + 10 + i) for i in range(3))
    left = transform_product(transform_product(a, b, s), c, s)
    right = transform_product(a, transform_product(b, c, s), s)
    torch.testing.assert_close(left, right, rtol=1e-8, atol=1e-8)
    eye = transform_identity(n, s)
    torch.testing.assert_close(transform_product(a, eye, s), a, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(transform_product(eye, a, s), a, rtol=1e-9, atol=1e-9)


def test_transform_product_by_hand_numpy():
    """Eqs. 15, 14, 16 step by step in numpy (np.linalg.inv for S^-1)."""
    s = random_invertible(5, 7)
    a, b = rand(3, 2, 5, seed=8), rand(2, 4, 5, seed=9)
    sn = s.numpy()
    a_bar = np.einsum("ijk,mk->ijm", a.numpy(), sn)
    b_bar = np.einsum("ijk,mk->ijm", b.numpy(), sn)
    c_bar = np.stack([a_bar[:, :, k] @ b_bar[:, :, k] for k in range(5)], axis=2)
    expected = np.einsum("ijk,mk->ijm", c_bar, np.linalg.inv(sn))
    np.testing.assert_allclose(transform_product(a, b, s).numpy(), expected, atol=1e-10)


def test_identity_transform_is_the_facewise_product():
    a, b = rand(3, 2, 4, seed=1), rand(2, 5, 4, seed=2)
    expected = torch.stack([a[:, :, k] @ b[:, :, k] for k in range(4)], dim=2)
    torch.testing.assert_close(facewise_product(a, b), expected)
    torch.testing.assert_close(transform_product(a, b, torch.eye(4, dtype=a.dtype)), expected)


def test_dft_identity_is_the_t_identity():
    torch.testing.assert_close(
        transform_identity(3, dft_matrix(6)).real, t_identity(3, 6), rtol=0, atol=1e-12
    )


def test_autograd_through_all_forms():
    a = rand(2, 3, 4, seed=1).requires_grad_()
    b = rand(3, 2, 4, seed=2).requires_grad_()
    s = random_invertible(4, 3).requires_grad_()
    assert torch.autograd.gradcheck(t_product, (a, b))
    assert torch.autograd.gradcheck(t_product_fft, (a, b))
    assert torch.autograd.gradcheck(transform_product, (a, b, s))
    assert torch.autograd.gradcheck(mode3_product, (a, s))


# ---- mode-3 product -------------------------------------------------------------------


@SETTINGS
@given(
    shape=st.tuples(st.integers(1, 4), st.integers(1, 4), st.integers(1, 5)),
    p=st.integers(1, 5),
    alpha=st.floats(-3, 3),
    beta=st.floats(-3, 3),
    seed=st.integers(0, 2**31 - 1),
)
def test_mode3_product_is_linear_and_matches_tensordot(shape, p, alpha, beta, seed):
    t1, t2 = rand(*shape, seed=seed), rand(*shape, seed=seed + 1)
    s, s2 = rand(p, shape[2], seed=seed + 2), rand(3, p, seed=seed + 3)
    expected = np.tensordot(t1.numpy(), s.numpy(), axes=([2], [1]))
    np.testing.assert_allclose(mode3_product(t1, s).numpy(), expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(
        mode3_product(alpha * t1 + beta * t2, s),
        alpha * mode3_product(t1, s) + beta * mode3_product(t2, s),
    )
    # (T x3 S) x3 S2 = T x3 (S2 S): transforms compose as matrices do
    torch.testing.assert_close(mode3_product(mode3_product(t1, s), s2), mode3_product(t1, s2 @ s))


# ---- bad input ----------------------------------------------------------------------


def test_shape_and_dtype_mismatches_are_named():
    a = rand(3, 4, 5)
    with pytest.raises(ValueError, match=r"n2=4 must equal B's first dimension 3"):
        t_product(a, rand(3, 2, 5))
    with pytest.raises(ValueError, match=r"n3=5 frontal slices and B has 6"):
        t_product_fft(a, rand(4, 2, 6))
    with pytest.raises(TypeError, match=r"torch.float64 and B is torch.float32"):
        t_product(a, rand(4, 2, 5, dtype=torch.float32))
    with pytest.raises(ValueError, match=r"third-order tensor.*\(3, 4\)"):
        t_product(rand(3, 4), rand(4, 2, 5))
    with pytest.raises(ValueError, match=r"n3=4 must be a positive int dividing the 10 rows"):
        fold(rand(10, 2), 4)


def test_bad_transforms_are_named():
    a, b = rand(3, 4, 5), rand(4, 2, 5)
    with pytest.raises(ValueError, match=r"square.*\(5, 4\)"):
        transform_product(a, b, rand(5, 4))
    with pytest.raises(ValueError, match=r"S is \(4, 4\) but the tensors have n3=5"):
        transform_product(a, b, rand(4, 4))
    singular = rand(5, 5)
    singular[4] = singular[0] + singular[1]  # rank 4
    with pytest.raises(ValueError, match=r"singular or too ill-conditioned.*cond\(S\) = "):
        transform_product(a, b, singular)
    with pytest.raises(ValueError, match=r"cond\(S\) = inf"):
        check_invertible(torch.zeros(5, 5, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"non-finite"):
        check_invertible(torch.full((5, 5), float("nan")))
    with pytest.raises(TypeError, match=r"float64 and S is torch.complex64"):
        transform_product(a, b, dft_matrix(5, dtype=torch.complex64))
