"""FolderDataset, load_dataset, PerInstance and collate on files in every supported format.

Expected values come from independent code: masks resized with torch's ``nearest-exact``,
boxes from segment_anything's ``batched_mask_to_box``, pixels normalised by hand.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
import torch
import torch.nn.functional as F
from PIL import Image
from segment_anything.utils.amg import batched_mask_to_box

from cobot_lib.backbone.sam import PIXEL_MEAN, PIXEL_STD
from cobot_lib.data import (
    FolderDataset,
    PerInstance,
    collate_samples,
    load_dataset,
    write_splits,
)
from cobot_lib.data.transforms import preprocess_shape

S = 64


def _labels(h: int, w: int, seed: int, k: int = 3) -> np.ndarray:
    """k disjoint rectangles labelled 1..k (sizes large enough to survive resizing)."""
    rng = np.random.default_rng(seed)
    lab = np.zeros((h, w), np.uint8)
    for v in range(1, k + 1):
        y, x = rng.integers(0, h - h // 4), rng.integers(0, w - w // 4)
        lab[y : y + h // 5, x : x + w // 5] = v
    return lab


def _write_set(root, files: dict[str, tuple[str, np.ndarray, str, np.ndarray]]) -> None:
    """files: name -> (image ext, image array, mask ext, mask array)."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for name, (iext, img, mext, mask) in files.items():
        ipath, mpath = root / "images" / f"{name}.{iext}", root / "masks" / f"{name}.{mext}"
        if iext in ("tif", "tiff"):
            tifffile.imwrite(ipath, img, photometric="rgb" if img.ndim == 3 else None)
        else:
            Image.fromarray(img).save(ipath, quality=95)
        if mext in ("tif", "tiff"):
            tifffile.imwrite(mpath, mask)
        else:
            Image.fromarray(mask).save(mpath)
    write_splits(root, {"train": sorted(files)})


def _expected(mask_stack: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Oracle masks (N, S, S) and tight boxes for original binary masks (N, H, W)."""
    h, w = mask_stack.shape[1:]
    ih, iw = preprocess_shape(h, w, S)
    small = F.interpolate(torch.from_numpy(mask_stack).float()[None], (ih, iw),
                          mode="nearest-exact")[0]  # fmt: skip
    out = torch.zeros(len(mask_stack), S, S)
    out[:, :ih, :iw] = small
    return out, batched_mask_to_box(out.bool()).float()


@pytest.fixture
def every_format(tmp_path):
    rng = np.random.default_rng(0)
    lab_a = _labels(48, 80, 1)
    lab_b = _labels(100, 60, 2, k=4).astype(np.uint16)
    stack = np.zeros((2, 50, 50), np.uint8)
    stack[0, 5:30, 5:30] = 1
    stack[1, 20:45, 20:45] = 1  # overlaps instance 0
    binary = np.zeros((40, 40), np.uint8)
    binary[10:30, 12:20] = 255
    files = {
        "rgb_png": ("png", rng.integers(0, 256, (48, 80, 3), dtype=np.uint8), "png", lab_a),
        "grey16_tif": ("tif", rng.integers(0, 60000, (100, 60), dtype=np.uint16), "tif", lab_b),
        "grey16_png": ("png", rng.integers(0, 4000, (48, 80), dtype=np.uint16), "png", lab_a),
        "jpeg_binary255": (
            "jpg",
            rng.integers(0, 256, (40, 40, 3), dtype=np.uint8),
            "png",
            binary,
        ),  # fmt: skip
        "float_overlap": ("tiff", rng.random((50, 50, 3)).astype(np.float32), "tif", stack),
        "rgba_png": ("png", rng.integers(0, 256, (48, 80, 4), dtype=np.uint8), "png", lab_a),
    }
    _write_set(tmp_path, files)
    return tmp_path, files


def _binary_stack(mask: np.ndarray) -> np.ndarray:
    if mask.ndim == 3:
        return mask.astype(bool)
    values = [v for v in np.unique(mask) if v]
    return np.stack([mask == v for v in values])


def test_every_format_loads_to_the_contract(every_format):
    root, files = every_format
    ds = FolderDataset(root, "train", S)
    assert sorted(ds.names) == sorted(files)
    for i, name in enumerate(ds.names):
        item = ds[i]
        truth = _binary_stack(files[name][3])
        masks, boxes = _expected(truth)
        assert item["image"].shape == (3, S, S) and item["image"].dtype == torch.float32
        torch.testing.assert_close(item["masks"], masks)
        torch.testing.assert_close(item["boxes"], boxes)
        assert item["original_size"] == truth.shape[1:]
        assert item["input_size"] == preprocess_shape(*truth.shape[1:], S)
        h, w = item["input_size"]
        assert torch.all(item["image"][:, h:, :] == 0) and torch.all(item["image"][:, :, w:] == 0)
        np.testing.assert_array_equal(ds.original_masks(i), truth)
    assert ds.num_instances == sum(len(_binary_stack(f[3])) for f in files.values())


def test_pixels_are_normalised_from_the_stored_values(every_format):
    root, files = every_format
    ds = FolderDataset(root, "train", S)
    i = ds.names.index("rgb_png")
    img = files["rgb_png"][1].astype(np.float32)  # 48 x 80 -> 38 x 64 (not a whole multiple)
    x = ds[i]["image"]
    ref = F.interpolate(torch.from_numpy(img).permute(2, 0, 1)[None], (38, 64), mode="bilinear",
                        antialias=True, align_corners=False)[0]  # fmt: skip
    ref = (ref - torch.tensor(PIXEL_MEAN)[:, None, None]) / torch.tensor(PIXEL_STD)[:, None, None]
    torch.testing.assert_close(x[:, :38, :64], ref)
    grey = ds[ds.names.index("grey16_png")]["image"][:, :38, :64]
    grey = grey * torch.tensor(PIXEL_STD)[:, None, None] + torch.tensor(PIXEL_MEAN)[:, None, None]
    torch.testing.assert_close(grey[0], grey[1])  # grey -> the same value in 3 channels
    torch.testing.assert_close(grey[1], grey[2])
    raw = files["grey16_png"][1].astype(np.float32)  # 16-bit: percentile stretch, then resize
    lo, hi = np.percentile(raw, (0.5, 99.5))
    stretched = torch.from_numpy((np.clip(raw, lo, hi) - lo) * (255 / (hi - lo)))[None, None]
    ref = F.interpolate(stretched, (38, 64), mode="bilinear", antialias=True, align_corners=False)
    torch.testing.assert_close(grey[0], ref[0, 0].float(), atol=1e-3, rtol=1e-4)


def test_labels_binary_255_and_single_instance(every_format):
    root, _ = every_format
    ds = FolderDataset(root, "train", S)
    item = ds[ds.names.index("jpeg_binary255")]
    assert item["labels"].tolist() == [1] and set(item["masks"].unique().tolist()) == {0.0, 1.0}
    assert ds[ds.names.index("rgb_png")]["labels"].tolist() == [1, 2, 3]
    assert ds[ds.names.index("float_overlap")]["labels"].tolist() == [1, 2]


def test_train_jitter_is_seeded_per_epoch_and_encloses_the_tight_box(every_format):
    root, _ = every_format
    tight = FolderDataset(root, "train", S)
    a = FolderDataset(root, "train", S, train=True, jitter_px=20, seed=3)
    b = FolderDataset(root, "train", S, train=True, jitter_px=20, seed=3)
    for i in range(len(a)):
        ta, tb, t0 = a[i]["boxes"], b[i]["boxes"], tight[i]["boxes"]
        torch.testing.assert_close(ta, tb)
        scale = S / max(a.sizes[i])
        move = (ta - t0) * torch.tensor([-1, -1, 1, 1])
        assert (move >= 0).all() and (move <= 20 * scale + 1e-4).all()
    first = [a[i]["boxes"] for i in range(len(a))]
    a.set_epoch(1)
    assert any(not torch.equal(x, a[i]["boxes"]) for i, x in enumerate(first))


def test_max_instances_subsamples_only_in_training(every_format):
    root, _ = every_format
    ds = FolderDataset(root, "train", S, train=True, max_instances=2, seed=1)
    i = ds.names.index("grey16_tif")
    item = ds[i]
    assert len(item["masks"]) == 2 and len(item["boxes"]) == 2
    assert set(item["labels"].tolist()) <= {1, 2, 3, 4}
    assert len(FolderDataset(root, "train", S, max_instances=2)[i]["masks"]) == 4


def test_per_instance_view_and_index(every_format):
    root, _ = every_format
    ds = FolderDataset(root, "train", S)
    view = PerInstance(ds)
    assert len(view) == ds.num_instances == len(ds.instance_index)
    for k in (0, len(view) - 1):
        i, j = ds.instance_index[k]
        item = view[k]
        torch.testing.assert_close(item["masks"][0], ds[i]["masks"][j])
        assert item["masks"].shape == (1, S, S) and item["boxes"].shape == (1, 4)


def test_collate_and_a_dataloader(every_format):
    root, _ = every_format
    ds = FolderDataset(root, "train", S)
    batch = collate_samples([ds[0], ds[1]])
    assert batch["image"].shape == (2, 3, S, S)
    assert [m.shape[0] for m in batch["masks"]] == [len(ds[0]["masks"]), len(ds[1]["masks"])]
    assert batch["name"] == [ds.names[0], ds.names[1]]
    loader = torch.utils.data.DataLoader(ds, batch_size=3, collate_fn=collate_samples)
    assert sum(len(b["name"]) for b in loader) == len(ds)
    with pytest.raises(ValueError, match="empty batch"):
        collate_samples([])


def test_load_dataset_reads_dataset_json_and_aliases(every_format):
    root, _ = every_format
    (root / "dataset.json").write_text(
        json.dumps({"name": "t", "domain": "medical", "metric": "dsc", "format": "folder"})
    )
    ds = load_dataset(root, "train", S, train=True, jitter=5.0, seed=2)
    assert isinstance(ds, FolderDataset) and ds.jitter_px == 5.0 and ds.seed == 2
    with pytest.raises(TypeError, match="not both"):
        load_dataset(root, "train", S, jitter=5.0, jitter_px=5.0)
    with pytest.raises(ValueError, match="unknown dataset format"):
        load_dataset(root, "train", S, format="hdf5")
    (root / "dataset.json").write_text(json.dumps({"domain": "space"}))
    with pytest.raises(ValueError, match="domain"):
        load_dataset(root, "train", S)
