"""Bad data on disk: handled correctly, or a clear error naming the file; never a wrong label."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from PIL import Image

from cobot_lib.data import FolderDataset, read_split, write_splits
from cobot_lib.data.readers import read_image, read_mask

S = 64


def _setup(root, images: dict, masks: dict, split=None):
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(exist_ok=True)
    for fname, arr in images.items():
        Image.fromarray(arr).save(root / "images" / fname)
    for fname, arr in masks.items():
        if fname.endswith((".tif", ".tiff")):
            tifffile.imwrite(root / "masks" / fname, arr)
        else:
            Image.fromarray(arr).save(root / "masks" / fname)
    names = split or sorted(
        {f.rsplit(".", 1)[0] for f in images} | {f.rsplit(".", 1)[0] for f in masks}
    )
    write_splits(root, {"train": names}, overwrite=True)


def _img(h=32, w=32):
    return np.random.default_rng(0).integers(0, 256, (h, w), dtype=np.uint8)


def _box_mask(h=32, w=32, value=1):
    m = np.zeros((h, w), np.uint8)
    m[8:20, 10:25] = value
    return m


def test_missing_image_or_mask_names_the_file(tmp_path):
    _setup(tmp_path, {"a.png": _img()}, {"a.png": _box_mask()}, split=["a", "ghost"])
    with pytest.raises(FileNotFoundError, match="image for 'ghost'.*images"):
        FolderDataset(tmp_path, "train", S)
    _setup(tmp_path, {"a.png": _img(), "b.png": _img()}, {"a.png": _box_mask()}, split=["a", "b"])
    with pytest.raises(FileNotFoundError, match="mask for 'b'"):
        FolderDataset(tmp_path, "train", S)
    with pytest.raises(FileNotFoundError, match="split file not found.*val.txt"):
        FolderDataset(tmp_path, "val", S)
    with pytest.raises(FileNotFoundError, match="dataset folder not found"):
        FolderDataset(tmp_path / "nope", "train", S)


def test_image_and_mask_of_different_sizes(tmp_path):
    _setup(tmp_path, {"a.png": _img(32, 40)}, {"a.png": _box_mask(32, 32)})
    with pytest.raises(ValueError, match=r"a\.png is 32x40 but its mask .*a\.png is 32x32"):
        FolderDataset(tmp_path, "train", S)


def test_empty_masks_are_skipped_and_counted(tmp_path):
    _setup(
        tmp_path,
        {"a.png": _img(), "empty.png": _img(), "tiny.png": _img()},
        {"a.png": _box_mask(), "empty.png": np.zeros((32, 32), np.uint8),
         "tiny.png": _box_mask() * 0 + np.pad(np.ones((1, 1), np.uint8), ((3, 28), (3, 28)))},
    )  # fmt: skip
    ds = FolderDataset(tmp_path, "train", S, min_area=2)
    assert ds.names == ["a"]
    assert ds.skipped["images_without_instances"] == 2
    assert ds.skipped["instances_below_min_area"] == 1
    assert "skipped" in ds.describe() and "images_without_instances=2" in ds.describe()


def test_corrupted_image_names_the_file(tmp_path):
    _setup(tmp_path, {"a.png": _img()}, {"a.png": _box_mask()})
    (tmp_path / "images" / "a.png").write_bytes(b"not a png at all")
    with pytest.raises(ValueError, match=r"could not read image .*a\.png"):
        FolderDataset(tmp_path, "train", S)
    # a truncated file keeps a valid header, so it fails when the pixels are read
    good = tmp_path / "good.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (32, 32), np.uint8)).save(good)
    (tmp_path / "images" / "a.png").write_bytes(good.read_bytes()[:-200])
    ds = FolderDataset(tmp_path, "train", S)
    with pytest.raises(ValueError, match=r"could not read image .*a\.png"):
        ds[0]


def test_binary_mask_saved_as_0_255_becomes_one_instance_labelled_1(tmp_path):
    _setup(tmp_path, {"a.png": _img()}, {"a.png": _box_mask(value=255)})
    item = FolderDataset(tmp_path, "train", S)[0]
    assert item["labels"].tolist() == [1]
    assert set(item["masks"].unique().tolist()) == {0.0, 1.0}
    assert item["masks"].sum() == 12 * 15 * 4  # 12 x 15 pixels, scaled 2x on each side


def test_single_instance_label_image_keeps_its_label(tmp_path):
    _setup(tmp_path, {"a.png": _img()}, {"a.png": _box_mask(value=7)})
    item = FolderDataset(tmp_path, "train", S)[0]
    assert item["labels"].tolist() == [7] and item["masks"].shape[0] == 1


def test_label_image_with_255_among_other_labels_is_not_binarised(tmp_path):
    m = _box_mask(value=255)
    m[25:30, 2:6] = 3
    _setup(tmp_path, {"a.png": _img()}, {"a.png": m})
    assert FolderDataset(tmp_path, "train", S)[0]["labels"].tolist() == [3, 255]


@pytest.mark.parametrize(
    "fname, arr, message",
    [
        ("a.png", np.stack([_box_mask(), _box_mask() * 2, _box_mask()], -1), "colour-coded"),
        ("a.tif", _box_mask().astype(np.float32) * 0.5, "non-integer"),
        ("a.tif", _box_mask().astype(np.int16) - 1, "negative"),
        ("a.tif", np.stack([_box_mask(), _box_mask() * 3]), "binary pages"),
    ],
)
def test_masks_that_cannot_be_label_images_are_refused(tmp_path, fname, arr, message):
    _setup(tmp_path, {"a.png": _img()}, {fname: arr})
    with pytest.raises(ValueError, match=f"{message}"):
        FolderDataset(tmp_path, "train", S)
    with pytest.raises(ValueError, match=fname.replace(".", r"\.")):
        read_mask(tmp_path / "masks" / fname)


def test_jpeg_masks_and_duplicate_names_are_refused(tmp_path):
    (tmp_path / "m.jpg").write_bytes(b"")
    with pytest.raises(ValueError, match="extension"):
        read_mask(tmp_path / "m.jpg")
    _setup(tmp_path, {"a.png": _img(), "a.jpg": _img()}, {"a.png": _box_mask()})
    with pytest.raises(ValueError, match="two files for name 'a'"):
        FolderDataset(tmp_path, "train", S)


def test_split_files_are_fixed_and_disjoint(tmp_path):
    write_splits(tmp_path, {"train": ["a", "b"], "test": ["c"]})
    write_splits(tmp_path, {"train": ["a", "b"], "test": ["c"]})  # same content: fine
    with pytest.raises(FileExistsError, match="fixed once written"):
        write_splits(tmp_path, {"train": ["a"], "test": ["b", "c"]})
    with pytest.raises(ValueError, match="both split"):
        write_splits(tmp_path / "x", {"train": ["a"], "test": ["a"]})
    (tmp_path / "splits" / "dup.txt").write_text("a\n# comment\n\na\n")
    with pytest.raises(ValueError, match="twice"):
        read_split(tmp_path, "dup")


def test_read_image_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="image file not found"):
        read_image(tmp_path / "x.png")
    tifffile.imwrite(tmp_path / "odd.tif", np.zeros((2, 5, 6, 7), np.uint8))
    with pytest.raises(ValueError, match="odd.tif"):
        read_image(tmp_path / "odd.tif")
