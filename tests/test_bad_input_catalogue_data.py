"""The bad-input catalogue, part 1: dataset files (folder, COCO, NIfTI) given to ``train``.

Each case builds a small user world under tmp_path/user (a dataset and a config), breaks one
thing, runs ``python -m cobot_lib.train`` in-process and checks, through
``bad_inputs.check_refusal``: exit status 2 with a message naming the culprit file (no
traceback), no training step, and every user file as it was. Parts 2 and 3 cover configs,
checkpoints, adapters and numerics, and notebooks and sweeps.
"""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import tifffile
from bad_inputs import (
    Refusal,
    box_mask,
    check_refusal,
    coco_set,
    config_yaml,
    edit_coco,
    float_tiff,
    folder_set,
    image,
    registry,
    truncate,
)
from PIL import Image

from cobot_lib.engine import trainer as train_cli

CASES, case = registry()


def _train(user, root, out, extra: str = "", *overrides: str) -> callable:
    config = config_yaml(user / "config.yaml", root, out, extra)
    return lambda: train_cli.main([str(config), *overrides])


def _folder(user, out, break_it, *overrides: str) -> Refusal:
    """A folder dataset broken by ``break_it(root)`` (which returns the culprits)."""
    root = folder_set(user / "data")
    culprits = break_it(root)
    return Refusal(_train(user, root, out, "", *overrides), culprits)


# ---- images -----------------------------------------------------------------------------------
@case
def image_truncated(user, out):
    return _folder(user, out, lambda r: [truncate(r / "images" / "a.png"), "truncated"])


@case
def image_not_an_image(user, out):
    def broken(root):
        (root / "images" / "a.png").write_text("<html>not a picture</html>")
        return [root / "images" / "a.png", "corrupt or not an image"]

    return _folder(user, out, broken)


@case
def image_empty_file(user, out):
    def broken(root):
        (root / "images" / "b.png").write_bytes(b"")
        return [root / "images" / "b.png"]

    return _folder(user, out, broken)


@case
def image_nan_pixel(user, out):
    def broken(root):
        (root / "images" / "a.png").unlink()
        return [float_tiff(root / "images" / "a.tif", np.nan), "NaN or infinite pixel"]

    return _folder(user, out, broken)


@case
def image_inf_pixel(user, out):
    def broken(root):
        (root / "images" / "c.png").unlink()
        return [float_tiff(root / "images" / "c.tif", np.inf), "NaN or infinite pixel"]

    return _folder(user, out, broken)


@case
def image_unsupported_extension(user, out):
    def broken(root):
        (root / "images" / "a.png").rename(root / "images" / "a.bmp")
        return ["split 'train' lists 'a'", "looked for a.{png,tif,tiff,jpg,jpeg}"]

    return _folder(user, out, broken)


@case
def image_two_files_for_one_name(user, out):
    def broken(root):
        tifffile.imwrite(root / "images" / "a.tif", image(0))
        return ["two files for name 'a'", "a.png and a.tif"]

    return _folder(user, out, broken)


@case
def image_with_five_channels(user, out):
    def broken(root):
        (root / "images" / "b.png").unlink()
        tifffile.imwrite(root / "images" / "b.tif", np.zeros((5, 32, 32), np.uint8))
        return [root / "images" / "b.tif", "(5, 32, 32)"]

    return _folder(user, out, broken)


@case
def image_and_mask_sizes_differ(user, out):
    def broken(root):
        Image.fromarray(image(1, 32, 40)).save(root / "images" / "b.png")
        return [root / "masks" / "b.png", "is 32x40 but its mask"]

    return _folder(user, out, broken)


# ---- masks ------------------------------------------------------------------------------------
@case
def mask_colour_coded(user, out):
    def broken(root):
        rgb = np.stack([box_mask(), box_mask(), box_mask() * 3], -1)
        Image.fromarray(rgb).save(root / "masks" / "a.png")
        return [root / "masks" / "a.png", "colour-coded"]

    return _folder(user, out, broken)


@case
def mask_fractional_values(user, out):
    def broken(root):
        (root / "masks" / "b.png").unlink()
        tifffile.imwrite(root / "masks" / "b.tif", box_mask().astype(np.float32) * 0.5)
        return [root / "masks" / "b.tif", "non-integer"]

    return _folder(user, out, broken)


@case
def mask_negative_labels(user, out):
    def broken(root):
        (root / "masks" / "c.png").unlink()
        tifffile.imwrite(root / "masks" / "c.tif", box_mask().astype(np.int16) - 1)
        return [root / "masks" / "c.tif", "negative labels"]

    return _folder(user, out, broken)


@case
def mask_stack_not_binary(user, out):
    def broken(root):
        (root / "masks" / "a.png").unlink()
        tifffile.imwrite(root / "masks" / "a.tif", np.stack([box_mask()] * 2))  # values 0..2
        return [root / "masks" / "a.tif", "binary pages"]

    return _folder(user, out, broken)


@case
def mask_missing(user, out):
    def broken(root):
        (root / "masks" / "c.png").unlink()
        return ["split 'test' lists 'c'", root / "masks"]

    return _folder(user, out, broken)


@case
def mask_truncated(user, out):
    return _folder(user, out, lambda r: [truncate(r / "masks" / "b.png", 0.3)])


# ---- split files and dataset.json -------------------------------------------------------------
@case
def split_not_utf8(user, out):
    def broken(root):
        (root / "splits" / "train.txt").write_bytes("a\nb\xe9\n".encode("latin-1"))
        return [root / "splits" / "train.txt", "not UTF-8"]

    return _folder(user, out, broken)


@case
def split_empty(user, out):
    def broken(root):
        (root / "splits" / "test.txt").write_text("# nothing yet\n\n")
        return [root / "splits" / "test.txt", "lists no names"]

    return _folder(user, out, broken)


@case
def split_lists_a_name_twice(user, out):
    def broken(root):
        (root / "splits" / "train.txt").write_text("a\nb\na\n")
        return [root / "splits" / "train.txt", "twice"]

    return _folder(user, out, broken)


@case
def split_file_missing(user, out):
    return _folder(user, out, lambda r: [r / "splits" / "val.txt"], "data.eval_split=val")


@case
def dataset_json_invalid(user, out):
    def broken(root):
        (root / "dataset.json").write_text('{"name": "toy",}')
        return [root / "dataset.json", "not valid JSON"]

    return _folder(user, out, broken)


@case
def dataset_json_not_utf8(user, out):
    def broken(root):
        (root / "dataset.json").write_bytes(b'{"name": "\xff"}')
        return [root / "dataset.json", "not UTF-8"]

    return _folder(user, out, broken)


@case
def dataset_json_not_an_object(user, out):
    def broken(root):
        (root / "dataset.json").write_text('["folder"]')
        return [root / "dataset.json", "JSON object"]

    return _folder(user, out, broken)


@case
def dataset_json_unknown_format(user, out):
    def broken(root):
        (root / "dataset.json").write_text('{"format": "hdf5"}')
        return [root / "dataset.json", "format='hdf5'"]

    return _folder(user, out, broken)


@case
def dataset_json_bad_min_area(user, out):
    def broken(root):
        (root / "dataset.json").write_text('{"min_area": 0}')
        return [root / "dataset.json", "min_area=0"]

    return _folder(user, out, broken)


@case
def dataset_json_bad_intensity(user, out):
    def broken(root):
        (root / "dataset.json").write_text('{"intensity": "zscore"}')
        return [root / "dataset.json", "intensity='zscore'"]

    return _folder(user, out, broken)


@case
def data_root_missing(user, out):
    return Refusal(_train(user, user / "no_such_set", out), [user / "no_such_set", "not found"])


# ---- COCO -------------------------------------------------------------------------------------
def _coco(user, out, edit) -> Refusal:
    root = coco_set(user / "coco")
    culprits = edit(root)
    return Refusal(_train(user, root, out), culprits)


@case
def coco_size_disagrees_with_the_file(user, out):
    def broken(root):
        edit_coco(root, lambda d: d["images"][1].update(width=48))
        return [root / "images" / "b.png", "says 32x48"]

    return _coco(user, out, broken)


@case
def coco_not_json(user, out):
    def broken(root):
        (root / "annotations.json").write_text("images: []")
        return [root / "annotations.json", "not a COCO JSON file"]

    return _coco(user, out, broken)


@case
def coco_annotation_of_an_unknown_image(user, out):
    def broken(root):
        edit_coco(root, lambda d: d["annotations"][0].update(image_id=42))
        return [root / "annotations.json", "annotation 1 refers to image_id 42"]

    return _coco(user, out, broken)


@case
def coco_bad_segmentation(user, out):
    def broken(root):
        edit_coco(root, lambda d: d["annotations"][2].update(segmentation={"size": [32, 32]}))
        return [root / "annotations.json", "annotation 3"]

    return _coco(user, out, broken)


@case
def coco_category_not_an_integer(user, out):
    def broken(root):
        edit_coco(root, lambda d: d["annotations"][1].update(category_id="nucleus"))
        return [root / "annotations.json", "category_id='nucleus'"]

    return _coco(user, out, broken)


@case
def coco_image_file_missing(user, out):
    def broken(root):
        (root / "images" / "c.png").unlink()
        return [root / "images" / "c.png", "not found"]

    return _coco(user, out, broken)


@case
def coco_image_without_height(user, out):
    def broken(root):
        edit_coco(root, lambda d: d["images"][0].pop("height"))
        return [root / "annotations.json", "height=None"]

    return _coco(user, out, broken)


# ---- NIfTI volumes ----------------------------------------------------------------------------
def _nifti(user, out, break_it) -> Refusal:
    root = user / "vols"
    for sub in ("images", "masks", "splits"):
        (root / sub).mkdir(parents=True)
    for case_name in ("c1", "c2"):
        volume = np.random.default_rng(len(case_name)).normal(size=(12, 10, 4)).astype(np.float32)
        label = np.zeros(volume.shape, np.uint8)
        label[2:8, 2:7, 1:3] = 1
        nib.save(nib.Nifti1Image(volume, np.eye(4)), str(root / "images" / f"{case_name}.nii.gz"))
        nib.save(nib.Nifti1Image(label, np.eye(4)), str(root / "masks" / f"{case_name}.nii.gz"))
    (root / "splits" / "train.txt").write_text("c1\n")
    (root / "splits" / "test.txt").write_text("c2\n")
    settings = {"format": "nifti", "modality": "mr", "min_voxels_3d": 1, "min_pixels_2d": 1}
    (root / "dataset.json").write_text(json.dumps(settings))
    culprits = break_it(root)
    return Refusal(_train(user, root, out), culprits)


def _save(root, where, array):
    nib.save(nib.Nifti1Image(array, np.eye(4)), str(root / where))
    return root / where


@case
def nifti_label_on_another_grid(user, out):
    def broken(root):
        _save(root, "masks/c1.nii.gz", np.zeros((6, 10, 4), np.uint8))
        return [root / "masks" / "c1.nii.gz", "has shape (6, 10, 4)"]

    return _nifti(user, out, broken)


@case
def nifti_nan_voxels(user, out):
    def broken(root):
        volume = np.ones((12, 10, 4), np.float32)
        volume[3, 3, 3] = np.nan
        return [_save(root, "images/c2.nii.gz", volume), "NaN or infinite voxels"]

    return _nifti(user, out, broken)


@case
def nifti_probability_label(user, out):
    def broken(root):
        label = np.full((12, 10, 4), 0.4, np.float32)
        return [_save(root, "masks/c2.nii.gz", label), "non-integer"]

    return _nifti(user, out, broken)


@case
def nifti_not_a_volume(user, out):
    def broken(root):
        (root / "images" / "c1.nii.gz").write_bytes(b"\x1f\x8b garbage")
        return [root / "images" / "c1.nii.gz"]

    return _nifti(user, out, broken)


@case
def nifti_label_volume_missing(user, out):
    def broken(root):
        (root / "masks" / "c2.nii.gz").unlink()
        return ["label volume for case 'c2'", root / "masks"]

    return _nifti(user, out, broken)


@case
def nifti_bad_window(user, out):
    def broken(root):
        (root / "dataset.json").write_text('{"format": "nifti", "window": [40, 0]}')
        return [root / "dataset.json", "window=[40, 0]"]

    return _nifti(user, out, broken)


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_dataset_file(name, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COBOT_CACHE", str(tmp_path / "cache"))
    check_refusal(CASES[name], tmp_path, capsys)
