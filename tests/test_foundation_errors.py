"""The helpers of benchmarks/foundation_errors.py against closed forms."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

_PATH = Path(__file__).parents[1] / "benchmarks" / "foundation_errors.py"
_SPEC = importlib.util.spec_from_file_location("foundation_errors", _PATH)
errors = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(errors)


def test_a_square_on_the_logit_grid_loses_only_its_four_corner_pixels():
    mask = np.zeros((256, 256), bool)
    mask[64:128, 32:96] = True  # edges on multiples of 4: each 4x4 cell is all in or all out
    # Bilinear upsampling (align_corners=False) puts an edge pixel of the square at 5/8 of the
    # way into its cell, so it keeps 0.625 > 1/2, but a corner pixel gets 0.625^2 = 0.39 < 1/2.
    assert errors.resolution_bound(mask) == pytest.approx(1 - 4 / 64**2)


def test_a_one_pixel_object_is_out_of_reach_of_64x64_logits():
    mask = np.zeros((256, 256), bool)
    mask[100, 100] = True  # area-averaged to 1/16, never above 1/2 after upsampling
    assert errors.resolution_bound(mask) == 0.0


def test_edge_contrast_of_a_flat_square_is_the_colour_difference():
    image = np.full((3, 64, 64), 0.2, np.float32)
    mask = np.zeros((64, 64), bool)
    mask[20:40, 20:40] = True
    image[:, mask] = np.array([0.5, 0.1, 0.3], np.float32)[:, None]
    assert errors.edge_contrast(image, mask) == pytest.approx(0.3, rel=1e-5)


def test_breakdown_shares_of_the_loss_add_up_to_one():
    rng = np.random.default_rng(0)
    iou, area = rng.uniform(0, 1, 50), rng.uniform(0, 10_000, 50)
    rows = errors.breakdown(iou, area, errors.AREA_BINS)
    counts = [int(r.split("|")[2]) for r in rows]
    shares = [float(r.split("|")[4]) for r in rows]
    assert sum(counts) == 50
    assert sum(shares) == pytest.approx(1.0, abs=0.03)  # two decimals per row
