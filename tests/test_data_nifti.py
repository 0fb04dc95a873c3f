"""NIfTI volumes to 2-D slices: windowing, percentiles, orientation, small objects, errors.

Oracles: closed forms for the CT window and the MR percentiles (numpy), nibabel's orientation
machinery (``ornt_transform``/``apply_orientation``/``inv_ornt_aff``) to store the same anatomy
in another orientation, and slices written out by hand from the RAS+ array.
"""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import tifffile
from nibabel import orientations as ornt
from PIL import Image

from cobot_lib.data import FolderDataset, load_dataset, nifti_to_slices, write_splits
from cobot_lib.data.nifti import ct_window, mr_normalise, remove_small_components

S = 64
AFFINE = np.diag([0.8, 0.7, 2.5, 1.0])


def _volume(seed: int = 0, shape=(30, 24, 10)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ct = rng.normal(40, 300, shape).astype(np.float32)
    lab = np.zeros(shape, np.uint8)
    lab[5:20, 4:15, 2:7] = 1  # 15 x 11 x 5 voxels
    lab[22:28, 16:22, 4:9] = 3
    lab[0, 0, 0] = 1  # a lone voxel: a small 3-D component, removed
    lab[5:7, 4, 1] = 1  # joins the block in 3-D, but only 2 pixels in slice 1: removed in 2-D
    return ct, lab


def _save(arr, path, affine=AFFINE):
    nib.save(nib.Nifti1Image(arr, affine), str(path))
    return path


def _reorient(arr: np.ndarray, affine: np.ndarray, code: str) -> tuple[np.ndarray, np.ndarray]:
    """The same anatomy stored with axis codes ``code`` (e.g. "LPS", "SAR")."""
    start = ornt.io_orientation(affine)
    target = ornt.axcodes2ornt(tuple(code))
    transform = ornt.ornt_transform(start, target)
    data = ornt.apply_orientation(arr, transform)
    return data, affine @ ornt.inv_ornt_aff(transform, arr.shape)


def _read_slices(root, names):
    images = [np.asarray(Image.open(root / "images" / f"{n}.png")) for n in names]
    masks = [np.asarray(Image.open(root / "masks" / f"{n}.png")) for n in names]
    return images, masks


def test_ct_window_and_mr_percentiles_closed_form():
    x = np.array([-1000.0, -160.0, 40.0, 240.0, 3000.0])
    np.testing.assert_array_equal(ct_window(x, 40, 400), [0, 0, 128, 255, 255])
    vol = np.concatenate([np.zeros(100), np.linspace(1, 1000, 1000)]).astype(np.float32)
    lo, hi = np.percentile(vol[vol != 0], (0.5, 99.5))
    ref = np.round((np.clip(vol, lo, hi) - lo) / (hi - lo) * 255)
    ref[vol == 0] = 0
    np.testing.assert_array_equal(mr_normalise(vol), ref.astype(np.uint8))
    with pytest.raises(ValueError, match="width"):
        ct_window(x, 40, 0)


def test_slices_match_the_hand_made_ras_slices(tmp_path):
    ct, lab = _volume()
    img_p, lab_p = _save(ct, tmp_path / "ct.nii.gz"), _save(lab, tmp_path / "lab.nii.gz")
    out = tmp_path / "out"
    names = nifti_to_slices(img_p, lab_p, out, "case1", "ct", (40, 400), min_voxels_3d=10,
                            min_pixels_2d=5)  # fmt: skip
    assert names == [f"case1_z{k:04d}" for k in range(2, 9)]  # slices 0, 1, 9: no foreground
    images, masks = _read_slices(out, names)
    for k, img, m in zip(range(2, 9), images, masks, strict=True):
        assert img.shape == m.shape == (24, 30)  # rows = y (anterior up), cols = x
        np.testing.assert_array_equal(m, np.flipud(lab[:, :, k].T))
        np.testing.assert_array_equal(img, np.flipud(ct_window(ct[:, :, k], 40, 400).T))


@pytest.mark.parametrize("code", ["LPS", "SAR", "PIL"])
def test_another_orientation_gives_the_same_slices(tmp_path, code):
    ct, lab = _volume(1)
    ras = tmp_path / "ras"
    names = nifti_to_slices(_save(ct, tmp_path / "c.nii.gz"), _save(lab, tmp_path / "l.nii.gz"),
                            ras, "v", min_voxels_3d=10, min_pixels_2d=5)  # fmt: skip
    ct2, aff2 = _reorient(ct, AFFINE, code)
    lab2, _ = _reorient(lab, AFFINE, code)
    assert ct2.shape != ct.shape or code == "LPS"
    other = tmp_path / "other"
    names2 = nifti_to_slices(_save(ct2, tmp_path / "c2.nii.gz", aff2),
                             _save(lab2, tmp_path / "l2.nii.gz", aff2), other, "v",
                             min_voxels_3d=10, min_pixels_2d=5)  # fmt: skip
    assert names2 == names
    for a, b in zip(_read_slices(ras, names), _read_slices(other, names), strict=True):
        for x, y in zip(a, b, strict=True):
            np.testing.assert_array_equal(x, y)


def test_small_components_closed_form():
    m = np.zeros((10, 10), bool)
    m[1:4, 1:4] = True  # 9 px
    m[8, 8] = True  # 1 px
    m[6, 0:2] = True  # 2 px
    m[5, 5] = m[4, 4] = True  # 2 px touching diagonally (8-connected) and the 9 px block
    expect = m.copy()
    expect[8, 8] = expect[6, 0:2] = False
    np.testing.assert_array_equal(remove_small_components(m, 3), expect)
    np.testing.assert_array_equal(remove_small_components(m, 1), m)


def test_label_list_overlapping_structures_and_label_values(tmp_path):
    ct, _ = _volume()
    a = np.zeros(ct.shape, np.uint8)
    b = np.zeros(ct.shape, np.uint8)
    a[5:20, 4:15, 3:5] = 1
    b[10:25, 8:20, 3:5] = 1  # overlaps a
    paths = [_save(a, tmp_path / "a.nii.gz"), _save(b, tmp_path / "b.nii.gz")]
    names = nifti_to_slices(_save(ct, tmp_path / "ct.nii.gz"), paths, tmp_path / "o", "p",
                            min_voxels_3d=1, min_pixels_2d=1)  # fmt: skip
    assert names == ["p_z0003", "p_z0004"]
    stack = tifffile.imread(tmp_path / "o" / "masks" / "p_z0003.tif")
    np.testing.assert_array_equal(stack[0], np.flipud(a[:, :, 3].T))
    np.testing.assert_array_equal(stack[1], np.flipud(b[:, :, 3].T))
    _, lab = _volume()
    only3 = nifti_to_slices(_save(ct, tmp_path / "ct.nii.gz"), _save(lab, tmp_path / "l.nii.gz"),
                            tmp_path / "o3", "q", label_values=[3], min_voxels_3d=1,
                            min_pixels_2d=1)  # fmt: skip
    assert only3 == [f"q_z{k:04d}" for k in range(4, 9)]


def test_folder_of_volumes_through_load_dataset(tmp_path, monkeypatch):
    monkeypatch.setenv("COBOT_CACHE", str(tmp_path / "cache"))  # the slices are kept there
    for sub in ("images", "masks"):
        (tmp_path / sub).mkdir()
    for case in ("c1", "c2", "c3"):
        ct, lab = _volume(int(case[1]))
        _save(ct, tmp_path / "images" / f"{case}.nii.gz")
        _save(lab, tmp_path / "masks" / f"{case}.nii.gz")
    write_splits(tmp_path, {"train": ["c1", "c2"], "test": ["c3"]})
    (tmp_path / "dataset.json").write_text(json.dumps({
        "name": "v", "domain": "medical", "metric": "dsc", "format": "nifti", "modality": "ct",
        "window": [40, 400], "min_voxels_3d": 10, "min_pixels_2d": 5}))  # fmt: skip
    train = load_dataset(tmp_path, "train", S)
    test = load_dataset(tmp_path, "test", S)
    assert isinstance(train, FolderDataset) and len(train) == 14 and len(test) == 7
    assert {n.split("_")[0] for n in train.names} == {"c1", "c2"}
    assert set(train[0]["labels"].tolist()) <= {1, 3}


def test_nifti_errors_name_the_file(tmp_path):
    ct, lab = _volume()
    img_p = _save(ct, tmp_path / "ct.nii.gz")
    with pytest.raises(FileNotFoundError, match="missing.nii.gz"):
        nifti_to_slices(tmp_path / "missing.nii.gz", img_p, tmp_path / "o", "x")
    _save(lab[:, :, :5], tmp_path / "short.nii.gz")
    with pytest.raises(ValueError, match=r"short\.nii\.gz has shape .*/ct\.nii\.gz"):
        nifti_to_slices(img_p, tmp_path / "short.nii.gz", tmp_path / "o", "x")
    _save(lab, tmp_path / "moved.nii.gz", AFFINE + np.array([[0, 0, 0, 5.0]] + [[0] * 4] * 3))
    with pytest.raises(ValueError, match=r"moved\.nii\.gz and image .*different affines"):
        nifti_to_slices(img_p, tmp_path / "moved.nii.gz", tmp_path / "o", "x")
    _save(lab.astype(np.float32) * 0.5, tmp_path / "prob.nii.gz")
    with pytest.raises(ValueError, match=r"prob\.nii\.gz holds non-integer"):
        nifti_to_slices(img_p, tmp_path / "prob.nii.gz", tmp_path / "o", "x")
    _save(np.stack([ct, ct], -1), tmp_path / "4d.nii.gz")
    with pytest.raises(ValueError, match=r"4d\.nii\.gz is 4-D"):
        nifti_to_slices(tmp_path / "4d.nii.gz", img_p, tmp_path / "o", "x")
    (tmp_path / "junk.nii.gz").write_bytes(b"garbage")
    with pytest.raises(ValueError, match=r"junk\.nii\.gz"):
        nifti_to_slices(tmp_path / "junk.nii.gz", img_p, tmp_path / "o", "x")
