"""cobot_lib.algebra.quaternion against independent oracles.

Oracles: scipy.spatial.transform.Rotation (composition, apply, matrices, rotation vectors; it
stores quaternions scalar-LAST, x y z w), the basis rules of the quaternions, the norm's
multiplicativity, and Parcollet et al.'s block form of a quaternion layer assembled with
numpy.block.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.spatial.transform import Rotation

from cobot_lib.algebra.quaternion import (
    QuaternionLinear,
    conjugate,
    from_axis_angle,
    hamilton_product,
    inverse,
    left_matrix,
    matrix,
    norm,
    normalize,
    random_unit_quaternions,
    right_matrix,
    rotate,
    rotation_matrix,
)

SETTINGS = settings(max_examples=40, deadline=None)
ONE, J1, J2, J3 = torch.eye(4, dtype=torch.float64)
quats = arrays(np.float64, 4, elements=st.floats(-10, 10, allow_nan=False))


def to_xyzw(q: torch.Tensor) -> np.ndarray:
    """Ours (w, x, y, z) -> scipy's scalar-last (x, y, z, w)."""
    return q.numpy()[..., [1, 2, 3, 0]]


def units(n: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return random_unit_quaternions((n,), generator=gen, dtype=torch.float64)


def same_rotation(q_xyzw: np.ndarray, r: Rotation) -> None:
    """q and -q are the same rotation: compare after aligning the sign."""
    expected = r.as_quat()
    sign = np.sign(np.sum(q_xyzw * expected, axis=-1, keepdims=True))
    np.testing.assert_allclose(q_xyzw * sign, expected, atol=1e-12)


# ---- basis rules ----------------------------------------------------------------------


def test_basis_rules():
    hp = hamilton_product
    for j in (J1, J2, J3):
        torch.testing.assert_close(hp(j, j), -ONE)  # j1^2 = j2^2 = j3^2 = -1
    torch.testing.assert_close(hp(hp(J1, J2), J3), -ONE)  # j1 j2 j3 = -1
    torch.testing.assert_close(hp(J1, J2), J3)
    torch.testing.assert_close(hp(J2, J1), -J3)  # not commutative
    torch.testing.assert_close(hp(J2, J3), J1)
    torch.testing.assert_close(hp(J3, J1), J2)
    torch.testing.assert_close(hp(ONE, J2), J2)


# ---- against scipy's rotations ------------------------------------------------------


def test_hamilton_product_composes_rotations_like_scipy():
    p, q = units(200, 1), units(200, 2)
    # scipy: (R_p * R_q) applies R_q first, then R_p -- the rotation of the product p q.
    expected = Rotation.from_quat(to_xyzw(p)) * Rotation.from_quat(to_xyzw(q))
    same_rotation(to_xyzw(hamilton_product(p, q)), expected)


def test_rotate_and_rotation_matrix_match_scipy():
    q = units(100, 3)
    v = torch.randn(100, 3, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    r = Rotation.from_quat(to_xyzw(q))
    np.testing.assert_allclose(rotate(v, q).numpy(), r.apply(v.numpy()), atol=1e-12)
    np.testing.assert_allclose(rotation_matrix(q).numpy(), r.as_matrix(), atol=1e-12)


def test_from_axis_angle_matches_scipy_rotvec():
    gen = torch.Generator().manual_seed(5)
    axis = torch.randn(50, 3, generator=gen, dtype=torch.float64)
    angle = torch.rand(50, generator=gen, dtype=torch.float64) * 2 * math.pi - math.pi
    unit_axis = axis / axis.norm(dim=-1, keepdim=True)
    expected = Rotation.from_rotvec((unit_axis * angle[:, None]).numpy())
    same_rotation(to_xyzw(from_axis_angle(axis, angle)), expected)
    # a scalar angle broadcasts over many axes
    assert from_axis_angle(axis, 0.3).shape == (50, 4)


def test_random_unit_quaternions_are_unit_and_uniform():
    q = units(40_000, 6)
    torch.testing.assert_close(norm(q), torch.ones(40_000, dtype=torch.float64))
    # uniform on S^3: E[q_a^2] = 1/4 for each part (sd of the mean ~ 0.001)
    np.testing.assert_allclose((q**2).mean(0).numpy(), 0.25, atol=0.006)


# ---- algebra (property-based) -------------------------------------------------------


@SETTINGS
@given(p=quats, q=quats, r=quats)
def test_associative_and_norm_multiplicative(p, q, r):
    p, q, r = (torch.from_numpy(x) for x in (p, q, r))
    hp = hamilton_product
    scale = 1 + float(norm(p) * norm(q) * norm(r))
    torch.testing.assert_close(hp(hp(p, q), r), hp(p, hp(q, r)), rtol=0, atol=1e-12 * scale)
    torch.testing.assert_close(norm(hp(p, q)), norm(p) * norm(q), rtol=1e-12, atol=1e-12)
    # (p q)* = q* p*, and the matrices act as the product does
    torch.testing.assert_close(conjugate(hp(p, q)), hp(conjugate(q), conjugate(p)))
    torch.testing.assert_close(left_matrix(p) @ q, hp(p, q))
    torch.testing.assert_close(right_matrix(q) @ p, hp(p, q))
    torch.testing.assert_close(matrix(p).T @ matrix(p), norm(p) ** 2 * torch.eye(4).double())


@SETTINGS
@given(q=quats.filter(lambda x: np.linalg.norm(x) > 1e-3))
def test_inverse_and_normalize(q):
    q = torch.from_numpy(q)
    torch.testing.assert_close(hamilton_product(q, inverse(q)), ONE)
    torch.testing.assert_close(hamilton_product(inverse(q), q), ONE)
    assert abs(float(norm(normalize(q))) - 1) < 1e-12


def test_broadcasting_equals_a_loop():
    p, q = units(5, 7).reshape(5, 1, 4), units(3, 8).reshape(1, 3, 4)
    out = hamilton_product(p, q)
    assert out.shape == (5, 3, 4)
    for a in range(5):
        for b in range(3):
            torch.testing.assert_close(out[a, b], hamilton_product(p[a, 0], q[0, b]))


def test_non_commutative_by_twice_the_cross_product():
    p, q = units(10, 9), units(10, 10)
    diff = hamilton_product(p, q) - hamilton_product(q, p)
    cross = np.cross(p[:, 1:].numpy(), q[:, 1:].numpy())
    np.testing.assert_allclose(diff[:, 0].numpy(), 0, atol=1e-12)
    np.testing.assert_allclose(diff[:, 1:].numpy(), 2 * cross, atol=1e-12)


# ---- the quaternion linear layer ----------------------------------------------------


def parcollet_matrix(weight: np.ndarray) -> np.ndarray:
    """W = [[r,-i,-j,-k],[i,r,-k,j],[j,k,r,-i],[k,-j,i,r]] with r, i, j, k each (O, I):
    component-major layout (row a*O + o, column b*I + i)."""
    r, i, j, k = (weight[..., n] for n in range(4))
    return np.block([[r, -i, -j, -k], [i, r, -k, j], [j, k, r, -i], [k, -j, i, r]])


@pytest.mark.parametrize(
    "init, fan_in, fan_out",
    [(i, n, m) for i in ("paper", "official") for n, m in ((4, 4), (16, 16), (8, 12))]
    + [("orthogonal", 4, 4), ("orthogonal", 16, 16)],
)
def test_layer_matrix_is_the_parcollet_block_matrix(init, fan_in, fan_out):
    layer = QuaternionLinear(fan_in, fan_out, init=init).double()
    ours = layer.matrix().detach().numpy()
    o_count, i_count = fan_out // 4, fan_in // 4
    # ours is quaternion-major (row 4 o + a, column 4 i + b): permute to component-major
    rows = [4 * o + a for a in range(4) for o in range(o_count)]
    cols = [4 * i + b for b in range(4) for i in range(i_count)]
    expected = parcollet_matrix(layer.weight.detach().numpy())
    np.testing.assert_array_equal(ours[np.ix_(rows, cols)], expected)


def test_layer_forward_is_a_sum_of_hamilton_products():
    layer = QuaternionLinear(12, 8).double()
    x = torch.randn(5, 12, dtype=torch.float64)
    xq = x.reshape(5, 3, 4)
    expected = torch.stack(
        [sum(hamilton_product(layer.weight[o, i], xq[:, i]) for i in range(3)) for o in range(2)],
        dim=1,
    ).reshape(5, 8)
    torch.testing.assert_close(layer(x), expected)


@pytest.mark.parametrize("v", [4, 16, 64])
def test_layer_has_a_quarter_of_the_parameters(v):
    layer = QuaternionLinear(v)
    assert sum(p.numel() for p in layer.parameters()) == v * v // 4
    assert sum(p.numel() for p in torch.nn.Linear(v, v, bias=False).parameters()) == v * v


def test_paper_init_is_orthogonal_blockwise():
    torch.manual_seed(11)
    w4 = QuaternionLinear(4).double().matrix().detach()
    torch.testing.assert_close(w4.T @ w4, torch.eye(4, dtype=torch.float64))  # exactly orthogonal
    w = QuaternionLinear(16).double().matrix().detach()
    gram = w.T @ w
    for i in range(4):  # each input quaternion's 4 columns stay orthonormal
        torch.testing.assert_close(
            gram[4 * i : 4 * i + 4, 4 * i : 4 * i + 4], torch.eye(4).double()
        )
    assert float((gram - torch.eye(16, dtype=torch.float64)).abs().max()) > 1e-3  # not overall


def test_official_init_is_pure_imaginary_in_unit_box():
    weight = QuaternionLinear(16, init="official").weight.detach()
    assert bool((weight[..., 0] == 0).all())
    assert bool(((weight[..., 1:] >= 0) & (weight[..., 1:] <= 1)).all())


# ---- bad input ----------------------------------------------------------------------


def test_bad_input_is_named():
    with pytest.raises(ValueError, match=r"last dimension 4, got shape \(2, 3\)"):
        hamilton_product(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match=r"last dimension 4, got shape \(5,\)"):
        norm(torch.zeros(5))
    with pytest.raises(TypeError, match=r"torch.float32 and torch.float64"):
        hamilton_product(torch.zeros(4), torch.zeros(4, dtype=torch.float64))
    with pytest.raises(TypeError, match=r"floating-point tensor, got torch.int64"):
        conjugate(torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"3-D vector tensor needs last dimension 3"):
        rotate(torch.zeros(4), torch.zeros(4))
    with pytest.raises(ValueError, match=r"zero quaternion"):
        normalize(torch.zeros(4))
    with pytest.raises(ValueError, match=r"axis must be non-zero"):
        from_axis_angle(torch.zeros(3), 1.0)
    with pytest.raises(ValueError, match=r"in_features=6 must be a positive multiple of 4"):
        QuaternionLinear(6)
    with pytest.raises(
        ValueError, match=r"init must be 'paper', 'official' or 'orthogonal', got 'xavier'"
    ):
        QuaternionLinear(8, init="xavier")
