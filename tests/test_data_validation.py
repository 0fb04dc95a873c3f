"""Checking a dataset before any work: every bad file at once, cached, outside the data folder;
the NIfTI slice cache keyed by its sources and settings."""

from __future__ import annotations

import json
import os
import time

import nibabel as nib
import numpy as np
import pytest
import tifffile
from bad_inputs import (
    box_mask,
    coco_set,
    config_yaml,
    edit_coco,
    float_tiff,
    folder_set,
    image,
    steps_logged,
    tree,
    truncate,
)
from PIL import Image

from cobot_lib.data import __main__ as data_cli
from cobot_lib.data import load_dataset
from cobot_lib.data.nifti import nifti_folder_to_slices, slice_cache_dir
from cobot_lib.data.validation import (
    MAX_CACHE_FILES,
    DatasetError,
    require_valid_dataset,
    validate_dataset,
    validation_cache_path,
)
from cobot_lib.engine import trainer as train_cli


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("COBOT_CACHE", str(tmp_path / "cache"))


def _five_bad_files(root):
    folder_set(root, {"train": ["a", "b", "c", "d"], "test": ["e", "f"]})
    truncate(root / "images" / "a.png")
    (root / "images" / "b.png").unlink()
    float_tiff(root / "images" / "b.tif", np.nan)
    Image.fromarray(np.stack([box_mask()] * 2 + [box_mask() * 2], -1)).save(
        root / "masks" / "c.png"
    )
    Image.fromarray(image(3, 32, 40)).save(root / "images" / "d.png")  # mask is 32 x 32
    (root / "masks" / "e.png").unlink()
    return root


def test_every_bad_file_is_reported_at_once(tmp_path):
    root = _five_bad_files(tmp_path / "data")
    report = validate_dataset(root, ["train", "test"])
    bad = {os.path.basename(p.path): p.message for p in report.problems}
    assert set(bad) == {"a.png", "b.tif", "c.png", "d.png", "masks"}, bad
    assert "could not read image" in bad["a.png"] and "truncated" in bad["a.png"]
    assert "1 NaN or infinite pixel values" in bad["b.tif"]
    assert "colour-coded" in bad["c.png"]
    assert "is 32x40 but its mask" in bad["d.png"]
    assert "split 'test' lists 'e'" in bad["masks"]
    with pytest.raises(DatasetError) as info:
        require_valid_dataset(root, ["train", "test"])
    for name in ("a.png", "b.tif", "c.png", "d.png", "'e'"):
        assert name in str(info.value)


def test_a_second_check_decodes_nothing_and_a_changed_file_is_checked_again(tmp_path):
    root = folder_set(tmp_path / "data")
    before = tree(root)
    first = validate_dataset(root)
    assert first.ok and first.files == first.decoded == 6
    start = time.perf_counter()
    second = validate_dataset(root)
    assert second.ok and second.decoded == 0 and time.perf_counter() - start < 1.0
    truncate(root / "images" / "b.png")
    third = validate_dataset(root)
    assert third.decoded == 1 and [os.path.basename(p.path) for p in third.problems] == ["b.png"]
    assert validate_dataset(root).decoded == 0  # a bad result is cached too, and still reported
    assert not validate_dataset(root).ok
    # the cache lives outside the data folder, which the checks never write to
    assert validation_cache_path(root).is_relative_to(tmp_path / "cache")
    assert set(tree(root)) == set(before)


def test_coco_sizes_segmentations_and_references_are_checked(tmp_path):
    root = coco_set(tmp_path / "coco")

    def edit(data):
        data["images"][0]["height"] = 40  # the file is 32 x 32
        data["annotations"][1]["segmentation"] = {"size": [9, 9], "counts": "abc"}
        data["annotations"][2]["image_id"] = 99
        data["annotations"].append({"id": 9, "image_id": 1, "category_id": "cell",
                                    "segmentation": [[1, 1, 5, 1, 5, 5]]})  # fmt: skip

    edit_coco(root, edit)
    text = "\n".join(p.message for p in validate_dataset(root, ["train", "test"]).problems)
    assert (
        f"image {root / 'images' / 'a.png'} is 32x32 but {root / 'annotations.json'} says 40x32"
        in text
    )
    assert "bad segmentation in annotation 2" in text
    assert "annotation 3 refers to image_id 99" in text
    assert "annotation 9 has category_id='cell'" in text


def _volumes(root, nan=False, seed=0):
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for case in ("c1", "c2"):
        rng = np.random.default_rng(int(case[1]) + 10 * seed)
        vol = rng.normal(100, 20, (12, 10, 4)).astype(np.float32)
        if nan and case == "c2":
            vol[1, 1, 1] = np.nan
        label = np.zeros(vol.shape, np.uint8)
        label[2:8, 2:7, 1:3] = 1
        nib.save(nib.Nifti1Image(vol, np.eye(4)), str(root / "images" / f"{case}.nii.gz"))
        nib.save(nib.Nifti1Image(label, np.eye(4)), str(root / "masks" / f"{case}.nii.gz"))
    (root / "splits").mkdir(exist_ok=True)
    (root / "splits" / "train.txt").write_text("c1\n")
    (root / "splits" / "test.txt").write_text("c2\n")
    settings = {"format": "nifti", "modality": "mr", "min_voxels_3d": 1, "min_pixels_2d": 1}
    (root / "dataset.json").write_text(json.dumps(settings))
    return root


def test_nifti_cases_are_checked(tmp_path):
    root = _volumes(tmp_path / "vols", nan=True)
    nib.save(nib.Nifti1Image(np.zeros((5, 5, 4), np.uint8), np.eye(4)),
             str(root / "masks" / "c1.nii.gz"))  # fmt: skip
    problems = validate_dataset(root).problems
    text = "\n".join(p.message for p in problems)
    assert len(problems) == 2 and "c1.nii.gz has shape (5, 5, 4)" in text
    assert f"volume {root / 'images' / 'c2.nii.gz'} holds 1 NaN or infinite voxels" in text


def test_slice_cache_is_outside_the_data_and_follows_its_sources(tmp_path):
    root = _volumes(tmp_path / "vols")
    before = tree(root)
    out = nifti_folder_to_slices(root)
    assert out == slice_cache_dir(root) and out.is_relative_to(tmp_path / "cache")
    assert tree(root) == before  # nothing written into the user's folder
    first = tree(out)
    assert nifti_folder_to_slices(root) == out and tree(out) == first  # reused
    pixels = np.asarray(Image.open(out / "images" / "c1_z0001.png"))
    _volumes(root, seed=1)  # other volumes (new contents, sizes and times)
    nifti_folder_to_slices(root)
    assert not np.array_equal(np.asarray(Image.open(out / "images" / "c1_z0001.png")), pixels)
    settings = json.loads((root / "dataset.json").read_text())
    (root / "dataset.json").write_text(json.dumps({**settings, "min_pixels_2d": 1000}))
    with pytest.raises(ValueError, match=r"no foreground slice for split\(s\) \['train', 'test'\]"):
        load_dataset(root, "train", 64)  # the new settings keep no slice (1000 px each)
    (root / "dataset.json").write_text(json.dumps({**settings, "min_pixels_2d": 20}))
    assert len(load_dataset(root, "train", 64)) == 2  # 30-px slices z1, z2 of c1 (rebuilt)
    assert json.loads((out / "sources.json").read_text())["settings"]["min_pixels_2d"] == 20


def test_slices_are_not_written_over_a_folder_they_did_not_make(tmp_path):
    root = _volumes(tmp_path / "vols")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError, match="not slices made by nifti_folder_to_slices"):
        nifti_folder_to_slices(root, mine)
    assert (mine / "keep.txt").read_text() == "x"


def test_cli_lists_problems_and_sets_the_exit_status(tmp_path, capsys):
    good = folder_set(tmp_path / "good")
    assert data_cli.main(["check", str(good), "--quiet"]) == 0
    assert "no problems" in capsys.readouterr().out
    bad = _five_bad_files(tmp_path / "bad")
    assert data_cli.main(["check", str(bad), "--split", "train", "--quiet"]) == 1
    out = capsys.readouterr().out
    assert "4 problem(s)" in out and out.count("\n  - ") == 4  # split 'test' not asked for
    assert data_cli.main(["check", "demo:nothing", "--quiet"]) == 2


def test_training_stops_on_a_bad_file_before_the_first_step(tmp_path, capsys):
    root = folder_set(tmp_path / "data")
    tifffile.imwrite(root / "masks" / "c.tif", box_mask())
    (root / "masks" / "c.png").unlink()
    float_tiff(root / "images" / "b.tif", np.inf)
    (root / "images" / "b.png").unlink()
    before = tree(root)
    config = config_yaml(tmp_path / "c.yaml", root, tmp_path / "run")
    assert train_cli.main([str(config)]) == 2
    err = capsys.readouterr().err
    assert str(root / "images" / "b.tif") in err and "Traceback" not in err
    assert steps_logged(tmp_path / "run") == 0 and tree(root) == before


def test_the_cache_folder_keeps_at_most_max_cache_files(tmp_path):
    folder = validation_cache_path(tmp_path).parent
    folder.mkdir(parents=True)
    for k in range(MAX_CACHE_FILES + 5):
        old = folder / f"old-{k}.json"
        old.write_text("{}")
        os.utime(old, (1_000_000 + k, 1_000_000 + k))
    root = folder_set(tmp_path / "data")
    validate_dataset(root)
    kept = sorted(p.name for p in folder.glob("*.json"))
    assert len(kept) == MAX_CACHE_FILES and validation_cache_path(root).name in kept
    assert "old-0.json" not in kept and f"old-{MAX_CACHE_FILES + 4}.json" in kept  # oldest go
