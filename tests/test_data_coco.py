"""CocoDataset on a tiny COCO file: polygons, compressed and uncompressed RLE, crowd, overlap.

Oracles: masks encoded from known arrays with pycocotools (decoding must give them back) and
``COCO.annToMask`` of a separately loaded COCO index for polygons.
"""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from cobot_lib.data import CocoDataset, load_dataset, write_dataset_json, write_splits

S = 64


def _rle_json(mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": rle["size"], "counts": rle["counts"].decode()}


def _uncompressed_rle(mask: np.ndarray) -> dict:
    flat = mask.astype(np.uint8).ravel(order="F")
    counts, current, run = [], 0, 0
    for v in flat:
        if v != current:
            counts.append(run)
            current, run = v, 0
        run += 1
    counts.append(run)
    return {"size": list(mask.shape), "counts": counts}


@pytest.fixture
def coco_set(tmp_path):
    h, w = 40, 60
    rle_mask = np.zeros((h, w), bool)
    rle_mask[5:25, 30:50] = True
    unc_mask = np.zeros((h, w), bool)
    unc_mask[15:35, 10:40] = True  # 600 px; overlaps the polygon below
    poly = [[8, 10, 20, 10, 20, 20, 8, 20]]  # x, y pairs; about 12 x 10 px
    anns = [
        {"id": 1, "image_id": 1, "category_id": 3, "segmentation": poly, "iscrowd": 0},
        {"id": 2, "image_id": 1, "category_id": 5, "segmentation": _rle_json(rle_mask),
         "iscrowd": 0},
        {"id": 3, "image_id": 1, "category_id": 7, "segmentation": _uncompressed_rle(unc_mask),
         "iscrowd": 0},
        {"id": 4, "image_id": 1, "category_id": 1, "segmentation": _uncompressed_rle(unc_mask),
         "iscrowd": 1},
        {"id": 5, "image_id": 2, "category_id": 1, "segmentation": _uncompressed_rle(unc_mask),
         "iscrowd": 1},
    ]  # fmt: skip
    images = [
        {"id": 1, "file_name": "sub/one.jpg", "height": h, "width": w},
        {"id": 2, "file_name": "two.png", "height": h, "width": w},
    ]
    data = {"images": images, "annotations": anns, "categories": [{"id": i} for i in (1, 3, 5, 7)]}
    (tmp_path / "images" / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (h, w, 3), np.uint8)).save(tmp_path / "images/sub/one.jpg")
    Image.fromarray(rng.integers(0, 256, (h, w), np.uint8)).save(tmp_path / "images/two.png")
    (tmp_path / "annotations.json").write_text(json.dumps(data))
    return tmp_path, {"rle": rle_mask, "unc": unc_mask}


def _reference_masks(path) -> dict[int, np.ndarray]:
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(path))
    return {a["id"]: coco.annToMask(a).astype(bool) for a in coco.dataset["annotations"]}


def test_polygons_rle_and_uncompressed_rle_decode_exactly(coco_set):
    root, truth = coco_set
    ds = CocoDataset(root / "annotations.json", root / "images", S)
    assert ds.names == ["sub/one"]  # image two holds only a crowd region
    assert ds.skipped["crowd_annotations"] == 2 and ds.skipped["images_without_instances"] == 1
    ref = _reference_masks(root / "annotations.json")
    masks = ds.original_masks(0)
    np.testing.assert_array_equal(masks[0], ref[1])  # polygon, as pycocotools rasterises it
    np.testing.assert_array_equal(masks[1], truth["rle"])
    np.testing.assert_array_equal(masks[2], truth["unc"])
    assert (masks[0] & masks[2]).any()  # overlapping instances are kept apart
    item = ds[0]
    assert item["labels"].tolist() == [3, 5, 7]  # category ids
    assert item["masks"].shape == (3, S, S) and item["original_size"] == (40, 60)
    assert ((item["masks"][0] > 0) & (item["masks"][2] > 0)).any()


def test_crowd_can_be_included_and_min_area(coco_set):
    root, _ = coco_set
    ds = CocoDataset(root / "annotations.json", root / "images", S, include_crowd=True)
    assert ds.names == ["sub/one", "two"] and ds.num_instances == 5
    big = CocoDataset(root / "annotations.json", root / "images", S, min_area=401)
    assert big.num_instances == 1  # only the 20 x 30 = 600 px region is above 400 px


def test_layout_with_splits_through_load_dataset(coco_set):
    root, _ = coco_set
    write_splits(root, {"train": ["sub/one"], "test": ["two"]})
    write_dataset_json(root, {"name": "tiny", "domain": "natural", "metric": "miou",
                              "format": "coco"})  # fmt: skip
    ds = load_dataset(root, "train", S, train=True, jitter=3, seed=1)
    assert isinstance(ds, CocoDataset) and ds.names == ["sub/one"]
    item = ds[0]
    assert item["boxes"].shape == (3, 4) and torch.isfinite(item["boxes"]).all()
    assert len(load_dataset(root, "test", S)) == 0  # crowd only -> skipped


def test_bad_coco_input(coco_set, tmp_path_factory):
    root, _ = coco_set
    with pytest.raises(FileNotFoundError, match="annotation file not found"):
        CocoDataset(root / "nope.json", root / "images", S)
    bad = tmp_path_factory.mktemp("bad")
    (bad / "a.json").write_text("{not json")
    with pytest.raises(ValueError, match="not a COCO JSON"):
        CocoDataset(bad / "a.json", root / "images", S)
    (bad / "b.json").write_text(json.dumps({"images": []}))
    with pytest.raises(ValueError, match="annotations"):
        CocoDataset(bad / "b.json", root / "images", S)
    with pytest.raises(KeyError, match="ghost"):
        CocoDataset(root / "annotations.json", root / "images", S, names=["ghost"])
    data = json.loads((root / "annotations.json").read_text())
    data["images"][0]["height"] = 41
    (bad / "c.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"c\.json image 'sub/one'.*RLE size \[40, 60\]"):
        CocoDataset(bad / "c.json", root / "images", S)
    data["annotations"] = data["annotations"][:1]  # the polygon fits any size; the file not
    (bad / "d.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"one\.jpg is 40x60 but .*d\.json says 41x60"):
        CocoDataset(bad / "d.json", root / "images", S)[0]
    (root / "images" / "two.png").unlink()
    with pytest.raises(FileNotFoundError, match="two.png"):
        CocoDataset(root / "annotations.json", root / "images", S)
