"""Point prompts (issue 18): sampling rules, the transform SAM uses, the prompt encoder path
against segment_anything's own SamPredictor, and point-prompted training and evaluation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage
from segment_anything import SamPredictor
from segment_anything.utils.transforms import ResizeLongestSide

from cobot_lib.backbone.prompting import Prompts, decode_prompts
from cobot_lib.data.base import build_item
from cobot_lib.data.points import NEGATIVE, PADDING, POSITIVE, sample_points
from cobot_lib.data.synthetic import SyntheticShapes
from cobot_lib.data.transforms import item_rng, logits_to_original, map_boxes, map_points
from cobot_lib.engine.config import ConfigError, load_config
from cobot_lib.engine.evaluation import evaluate_model
from cobot_lib.engine.runtime import item_prompts

pytestmark = pytest.mark.usefixtures("one_thread")


def _masks():
    masks = np.zeros((3, 40, 50), bool)
    masks[0, 5:15, 5:20] = True
    masks[1, 20:38, 25:45] = True
    masks[2, 30, 2] = True  # one pixel
    return masks


def test_points_fall_where_the_rules_say():
    masks = _masks()
    coords, labels = sample_points(masks, 3, 4, np.random.default_rng(0), margin=6, gap=2)
    assert coords.shape == (3, 7, 2) and labels.shape == (3, 7)
    assert (labels[:, :3] == POSITIVE).all() and (labels[:, 3:] == NEGATIVE).all()
    for mask, pts, labs in zip(masks, coords.astype(int), labels, strict=True):
        inside = mask[pts[:, 1], pts[:, 0]]
        assert inside[labs == POSITIVE].all() and not inside[labs == NEGATIVE].any()
        near = ndimage.binary_dilation(mask, np.ones((3, 3)), iterations=2)
        assert not near[pts[labs == NEGATIVE, 1], pts[labs == NEGATIVE, 0]].any()
        ys, xs = np.nonzero(mask)
        neg = pts[labs == NEGATIVE]
        assert (neg[:, 0] >= xs.min() - 6).all() and (neg[:, 0] <= xs.max() + 6).all()
        assert (neg[:, 1] >= ys.min() - 6).all() and (neg[:, 1] <= ys.max() + 6).all()
    # three positives on a one-pixel object: the same pixel, drawn with replacement
    assert (coords[2, :3] == [2, 30]).all()


def test_points_are_seeded_and_uniform():
    masks = _masks()[:1]
    a = sample_points(masks, 2, 1, np.random.default_rng(5))
    b = sample_points(masks, 2, 1, np.random.default_rng(5))
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    # uniform over the mask: mean of many single draws ~ the mask's centroid
    rng = np.random.default_rng(1)
    draws = np.array([sample_points(masks, 1, 0, rng)[0][0, 0] for _ in range(2000)])
    centroid = np.argwhere(masks[0])[:, ::-1].mean(0)
    assert np.allclose(draws.mean(0), centroid, atol=0.3)


def test_a_full_frame_mask_gets_padding_instead_of_negatives():
    coords, labels = sample_points(np.ones((1, 6, 6), bool), 1, 2, np.random.default_rng(0))
    assert labels.tolist() == [[POSITIVE, PADDING, PADDING]]
    with pytest.raises(ValueError, match="mask 0 is empty"):
        sample_points(np.zeros((1, 4, 4), bool), 1, 0, np.random.default_rng(0))


def test_map_points_is_sams_apply_coords():
    rng = np.random.default_rng(2)
    pts = rng.uniform(0, 300, (5, 2, 2))
    original, long_side = (217, 300), 256
    t = ResizeLongestSide(long_side)
    h, w = t.get_preprocess_shape(*original, long_side)
    np.testing.assert_allclose(
        map_points(pts, original, (h, w)), t.apply_coords(pts.copy(), original), rtol=1e-6
    )
    boxes = rng.uniform(0, 200, (4, 4))
    np.testing.assert_allclose(
        map_boxes(boxes, original, (h, w)), t.apply_boxes(boxes.copy(), original), rtol=1e-6
    )


def test_point_prompts_match_sam_predictor(tiny_sam):
    """Our point (and point + box) path gives SamPredictor.predict's single-mask logits."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (90, 140, 3)).astype(np.uint8)
    predictor = SamPredictor(tiny_sam)
    predictor.set_image(image)
    pts = np.array([[30.0, 40.0], [100.0, 20.0], [60.0, 70.0]])
    labs = np.array([1, 0, 1])
    box = np.array([10.0, 5.0, 120.0, 80.0])
    for use_box in (False, True):
        expected, iou, _ = predictor.predict(
            point_coords=pts, point_labels=labs, box=box if use_box else None,
            multimask_output=False, return_logits=True,
        )  # fmt: skip
        prompts = Prompts(
            torch.from_numpy(map_boxes(box, (90, 140), predictor.input_size)) if use_box else None,
            torch.from_numpy(map_points(pts[None], (90, 140), predictor.input_size)),
            torch.from_numpy(labs[None]),
        )
        with torch.no_grad():
            low, ours_iou = decode_prompts(tiny_sam, predictor.features[0], prompts)
            ours = logits_to_original(low, predictor.input_size, (90, 140), 256)
        np.testing.assert_allclose(ours.numpy(), expected, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(ours_iou[:, 0].numpy(), iou, rtol=1e-4, atol=1e-5)


def test_items_carry_points_for_their_prompt_kind():
    image = np.zeros((40, 50), np.uint8)
    masks = _masks()
    item = build_item(image, masks, [1, 2, 3], "x", 100, rng=item_rng(0, 0, 0), prompt="point",
                      n_points=2, n_negative=1)  # fmt: skip
    assert item["points"].shape == (3, 3, 2) and item["prompt"] == "point"
    prompts = item_prompts(item)
    assert prompts.boxes is None and prompts.points.shape == (3, 3, 2)
    # points lie on the resized masks (S = 100, so the 50 px wide image is scaled 2x)
    small = item["masks"].numpy() > 0.5
    for k, (pts, labs) in enumerate(zip(item["points"].long(), item["point_labels"],
                                        strict=True)):  # fmt: skip
        assert small[k, pts[labs == 1, 1], pts[labs == 1, 0]].all()
    both = item_prompts({**item, "prompt": "box+point"})
    assert both.boxes is not None and both.points is not None
    with pytest.raises(ValueError, match="need a seeded rng"):
        build_item(image, masks, [1, 2, 3], "x", 100, prompt="point")


def test_evaluation_points_are_fixed_and_training_points_change_per_epoch():
    ev = SyntheticShapes(2, 64, seed=4, train=False, prompt="point", negative_points=1)
    assert torch.equal(ev[0]["points"], ev[0]["points"])
    tr = SyntheticShapes(2, 64, seed=4, train=True, prompt="point")
    first = tr[0]["points"].clone()
    tr.set_epoch(1)
    assert not torch.equal(tr[0]["points"], first)
    tr.set_epoch(0)
    assert torch.equal(tr[0]["points"], first)


def test_point_prompted_evaluation_differs_from_box_and_config_checks(tiny_sam):
    boxes = evaluate_model(tiny_sam, SyntheticShapes(2, 256, seed=2, train=False, max_instances=3))
    points = evaluate_model(
        tiny_sam, SyntheticShapes(2, 256, seed=2, train=False, max_instances=3, prompt="point")
    )
    assert len(points.rows) == len(boxes.rows)
    assert [r["dsc"] for r in points.rows] != [r["dsc"] for r in boxes.rows]
    bad = {
        "data.prompt=dots": "data.prompt='dots'",
        "data.points=0": "data.points must be a positive integer",
        "data.negative_points=-1": "data.negative_points must be >= 0",
    }
    for override, message in bad.items():
        with pytest.raises(ConfigError, match=message):
            load_config({}, [override])
