"""SAM input transforms, their inverse, tight boxes and jitter, against independent oracles.

Oracles: segment_anything's own ``ResizeLongestSide``, ``batched_mask_to_box`` and
``Sam.postprocess_masks``; torch's ``nearest-exact`` interpolation; Pillow's bilinear resize;
closed forms written out by hand.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from segment_anything.modeling import Sam
from segment_anything.utils.amg import batched_mask_to_box
from segment_anything.utils.transforms import ResizeLongestSide

from cobot_lib.backbone.sam import PIXEL_MEAN, PIXEL_STD
from cobot_lib.data.transforms import (
    item_rng,
    jitter_boxes,
    logits_to_original,
    map_boxes,
    masks_to_original,
    prepare_image,
    preprocess_shape,
    resize_labels,
    resize_masks,
    tight_boxes,
    to_rgb,
    to_uint8_range,
)

sizes = st.integers(1, 400)
FAST = settings(max_examples=40, deadline=None)


@FAST
@given(h=sizes, w=sizes, s=st.sampled_from([64, 256, 1024]))
def test_preprocess_shape_is_sams(h, w, s):
    ref = ResizeLongestSide.get_preprocess_shape(h, w, s)
    assert preprocess_shape(h, w, s) == (max(1, ref[0]), max(1, ref[1]))  # SAM's 0 -> 1 px


def test_box_closed_form_after_resize_and_pad():
    # 100 x 200 image, S = 256: scale 1.28 on both axes, input size (128, 256), pad below.
    box = np.array([[50, 20, 149, 79]], dtype=np.float32)
    out = map_boxes(box, (100, 200), preprocess_shape(100, 200, 256))
    assert preprocess_shape(100, 200, 256) == (128, 256)
    np.testing.assert_allclose(out, [[64.0, 25.6, 190.72, 101.12]], rtol=1e-6)


@FAST
@given(
    h=sizes, w=sizes, s=st.sampled_from([256, 1024]),
    box=st.lists(st.floats(0, 1), min_size=4, max_size=4),
)  # fmt: skip
def test_map_boxes_matches_segment_anything(h, w, s, box):
    b = np.array([box], dtype=np.float64) * [w - 1, h - 1, w - 1, h - 1]
    ours = map_boxes(b, (h, w), preprocess_shape(h, w, s))
    ref = ResizeLongestSide(s).apply_boxes(b, (h, w))
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-4)


def test_mapped_box_lands_on_the_resized_object():
    """A rectangle drawn in the original lands under its mapped box in the padded image."""
    h, w, s = 90, 150, 256
    img = np.zeros((h, w), np.uint8)
    img[30:60, 40:100] = 255  # rows 30..59, cols 40..99
    pixels, (ih, iw) = prepare_image(img, s)
    box = map_boxes(np.array([[40, 30, 100, 60]]), (h, w), (ih, iw))[0]  # continuous edges
    bright = pixels[0] > 0  # normalised 255 > 0, normalised 0 < 0, padding == 0
    ys, xs = np.nonzero(bright.numpy())
    assert abs(xs.min() - box[0]) <= 1 and abs(xs.max() + 1 - box[2]) <= 1
    assert abs(ys.min() - box[1]) <= 1 and abs(ys.max() + 1 - box[3]) <= 1


def test_prepare_image_normalises_and_zero_pads():
    img = np.full((40, 80, 3), (10, 120, 250), np.uint8)
    x, (h, w) = prepare_image(img, 64)
    assert x.shape == (3, 64, 64) and x.dtype == torch.float32 and (h, w) == (32, 64)
    expect = (np.array([10, 120, 250]) - np.array(PIXEL_MEAN)) / np.array(PIXEL_STD)
    np.testing.assert_allclose(x[:, :h, :w].mean(dim=(1, 2)), expect, rtol=1e-5)
    assert torch.all(x[:, h:, :] == 0)


def test_prepare_image_resize_matches_pillow_bilinear():
    """SAM's predictor resizes with Pillow (bilinear, antialiased); we use torch's antialias."""
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (300, 200, 3), dtype=np.uint8)
    x, (h, w) = prepare_image(img, 128)
    ours = x[:, :h, :w] * torch.tensor(PIXEL_STD)[:, None, None]
    ours = (ours + torch.tensor(PIXEL_MEAN)[:, None, None]).permute(1, 2, 0).numpy()
    pil = np.asarray(Image.fromarray(img).resize((w, h), Image.BILINEAR)).astype(np.float32)
    assert np.abs(ours - pil).max() <= 1.5  # Pillow rounds to uint8


def test_to_uint8_range_per_dtype():
    u16 = np.linspace(1000, 3000, 10001).astype(np.uint16).reshape(73, 137)
    lo, hi = np.percentile(u16.astype(np.float32), (0.5, 99.5))
    out = to_uint8_range(u16)
    assert out.min() == 0 and out.max() == pytest.approx(255)
    np.testing.assert_allclose(out, (np.clip(u16, lo, hi) - lo) / (hi - lo) * 255, atol=1e-3)
    mm = to_uint8_range(u16, "minmax")
    np.testing.assert_allclose(mm, (u16.astype(np.float64) - 1000) / 2000 * 255, atol=1e-3)
    np.testing.assert_array_equal(to_uint8_range(np.array([[0, 7, 255]], np.uint8)), [[0, 7, 255]])
    np.testing.assert_allclose(to_uint8_range(np.array([[0.0, 0.5, 1.0]])), [[0, 127.5, 255]])
    assert (to_uint8_range(np.full((4, 4), 9, np.uint16)) == 0).all()
    with pytest.raises(ValueError, match="NaN"):
        to_uint8_range(np.array([[np.nan, 1.0]]))
    with pytest.raises(ValueError, match="intensity"):
        to_uint8_range(u16, "zscore")


def test_to_rgb_shapes():
    grey = np.arange(6, dtype=np.uint8).reshape(2, 3)
    assert to_rgb(grey).shape == (2, 3, 3) and (to_rgb(grey)[:, :, 2] == grey).all()
    assert to_rgb(grey[:, :, None]).shape == (2, 3, 3)
    assert to_rgb(np.zeros((2, 3, 4))).shape == (2, 3, 3)
    with pytest.raises(ValueError, match="shape"):
        to_rgb(np.zeros((2, 3, 2)))


@FAST
@given(h=st.integers(1, 60), w=st.integers(1, 60), oh=st.integers(1, 90), ow=st.integers(1, 90))
def test_resize_labels_is_torch_nearest_exact(h, w, oh, ow):
    lab = np.random.default_rng(h * 1000 + w).integers(0, 9, (h, w))
    ref = F.interpolate(torch.tensor(lab, dtype=torch.float64)[None, None], (oh, ow),
                        mode="nearest-exact")[0, 0].numpy()  # fmt: skip
    # torch works in floating point; compare away from exact ties (a centre on a pixel border)
    rows = (2 * np.arange(oh) + 1) * h % (2 * oh) != 0
    cols = (2 * np.arange(ow) + 1) * w % (2 * ow) != 0
    ours = resize_labels(lab, (oh, ow))
    np.testing.assert_array_equal(ours[rows][:, cols], ref[rows][:, cols])


@FAST
@given(h=st.integers(20, 300), w=st.integers(20, 300), y=st.floats(0, 1), x=st.floats(0, 1))
def test_resize_masks_never_loses_an_instance(h, w, y, x):
    m = np.zeros((1, h, w), bool)
    m[0, int(y * (h - 1)), int(x * (w - 1))] = True
    out = resize_masks(m, preprocess_shape(h, w, 16))
    assert out.sum() >= 1


def test_tight_boxes_match_segment_anything():
    rng = np.random.default_rng(3)
    masks = rng.random((6, 37, 51)) > 0.97
    masks[0] = False
    masks[0, 5, 9] = True  # a single pixel: box (9, 5, 9, 5)
    ref = batched_mask_to_box(torch.from_numpy(masks)).numpy()
    np.testing.assert_array_equal(tight_boxes(masks), ref)
    assert tight_boxes(masks)[0].tolist() == [9, 5, 9, 5]
    with pytest.raises(ValueError, match="empty"):
        tight_boxes(np.zeros((1, 4, 4), bool))


@FAST
@given(h=st.integers(1, 300), w=st.integers(1, 300), s=st.sampled_from([64, 256]))
def test_masks_come_back_to_the_original_size_exactly(h, w, s):
    full = np.ones((1, h, w), bool)
    ih, iw = preprocess_shape(h, w, s)
    padded = torch.zeros(1, s, s)
    padded[:, :ih, :iw] = torch.from_numpy(resize_masks(full, (ih, iw))).float()
    back = masks_to_original(padded, (ih, iw), (h, w))
    assert back.shape == (1, h, w) and bool(back.all())  # padding never leaks back in


@FAST
@given(h=st.integers(1, 64), w=st.integers(1, 64), seed=st.integers(0, 99))
def test_round_trip_is_identity_for_whole_multiples(h, w, seed):
    k = 4
    s = k * max(h, w)
    masks = np.random.default_rng(seed).random((3, h, w)) > 0.5
    ih, iw = preprocess_shape(h, w, s)
    assert (ih, iw) == (k * h, k * w)
    padded = torch.zeros(3, s, s)
    padded[:, :ih, :iw] = torch.from_numpy(resize_masks(masks, (ih, iw))).float()
    np.testing.assert_array_equal(masks_to_original(padded, (ih, iw), (h, w)).numpy(), masks)


def test_logits_to_original_is_sams_postprocess():
    s, original = 256, (173, 301)
    ih, iw = preprocess_shape(*original, s)
    logits = torch.randn(3, 1, s // 4, s // 4)
    fake_sam = SimpleNamespace(image_encoder=SimpleNamespace(img_size=s))
    ref = Sam.postprocess_masks(fake_sam, logits, (ih, iw), original)[:, 0]
    ours = logits_to_original(logits, (ih, iw), original, s)
    assert ours.shape == (3, *original)
    torch.testing.assert_close(ours, ref)


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 5), max_px=st.integers(0, 60), seed=st.integers(0, 2**31),
    h=st.integers(1, 200), w=st.integers(1, 200),
)  # fmt: skip
def test_jitter_moves_each_side_outwards_by_an_integer_within_bounds(n, max_px, seed, h, w):
    rng = np.random.default_rng(seed)
    x0 = rng.integers(0, w, n)
    y0 = rng.integers(0, h, n)
    boxes = np.stack([x0, y0, rng.integers(x0, w), rng.integers(y0, h)], 1).astype(np.float32)
    out = jitter_boxes(boxes, max_px, (h, w), np.random.default_rng(seed))
    move = (out - boxes) * np.array([-1, -1, 1, 1])  # outward distance per side
    assert (move >= 0).all() and (move <= max_px).all()
    assert (move == np.round(move)).all()
    assert (out[:, [0, 1]] >= 0).all() and (out[:, 2] <= w - 1).all() and (out[:, 3] <= h - 1).all()
    # unclipped sides moved by exactly the drawn integer; clipped ones stopped at the border
    draw = np.random.default_rng(seed).integers(0, max_px + 1, size=boxes.shape)
    limit = np.stack([boxes[:, 0], boxes[:, 1], w - 1 - boxes[:, 2], h - 1 - boxes[:, 3]], 1)
    np.testing.assert_array_equal(move, np.minimum(draw, limit))


def test_jitter_scale_and_errors():
    box = np.array([[100, 100, 120, 120]], np.float32)
    out = jitter_boxes(box, 50, (1000, 1000), np.random.default_rng(0), scale=0.5)
    move = (out - box) * np.array([-1, -1, 1, 1])
    assert (move <= 25).all() and (move * 2 == np.round(move * 2)).all()
    with pytest.raises(ValueError, match=">= 0"):
        jitter_boxes(box, -1, (10, 10), np.random.default_rng(0))


def test_item_rng_is_a_function_of_seed_epoch_index():
    a = item_rng(7, 2, 11).integers(0, 1000, 8)
    np.testing.assert_array_equal(a, item_rng(7, 2, 11).integers(0, 1000, 8))
    assert not np.array_equal(a, item_rng(7, 3, 11).integers(0, 1000, 8))
    assert not np.array_equal(a, item_rng(7, 2, 12).integers(0, 1000, 8))
