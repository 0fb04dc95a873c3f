"""Solutions to the exercises of notebook 02 (the Hamilton product)."""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from ...algebra.quaternion import QuaternionLinear, from_axis_angle, hamilton_product, rotate

ONE, J1, J2, J3 = torch.eye(4, dtype=torch.float64)


def exercise_1() -> str:
    """j2 j3 = j1 and j3 j2 = -j1 (the cyclic rule i j = k, read from j2 on)."""
    assert torch.equal(hamilton_product(J2, J3), J1)
    assert torch.equal(hamilton_product(J3, J2), -J1)
    return "j2 j3 = j1, j3 j2 = -j1"


def exercise_2() -> str:
    """A quarter turn about z: q = (cos 45°, 0, 0, sin 45°) maps (1, 0, 0) to (0, 1, 0)."""
    q = torch.tensor([math.cos(math.pi / 4), 0.0, 0.0, math.sin(math.pi / 4)], dtype=torch.float64)
    assert torch.allclose(from_axis_angle(torch.tensor([0.0, 0.0, 1.0]), math.pi / 2).double(), q)
    x = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    assert torch.allclose(rotate(x, q), torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64))
    assert torch.allclose(rotate(x, -q), rotate(x, q))  # q and -q: the same rotation
    scipy_q = Rotation.from_euler("z", 90, degrees=True).as_quat()  # scalar last
    assert np.allclose(scipy_q[[3, 0, 1, 2]], q.numpy())
    return "q = (0.707, 0, 0, 0.707): (1, 0, 0) -> (0, 1, 0); -q turns it the same way"


def exercise_3() -> str:
    """For V = 8 the unit-sphere init gives E ||W^T W - I||_F^2 = V - 4 = 4."""
    torch.manual_seed(0)
    values = []
    for _ in range(400):
        w = QuaternionLinear(8).matrix().detach().double()
        values.append(float(((w.T @ w - torch.eye(8, dtype=torch.float64)) ** 2).sum()))
    mean, sem = np.mean(values), np.std(values, ddof=1) / math.sqrt(len(values))
    assert abs(mean - 4) < 4 * sem, (mean, sem)
    return f"mean ||W^T W - I||^2 over 400 draws = {mean:.2f} ≈ V - 4 = 4"
