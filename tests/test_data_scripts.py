"""The data_scripts converters on tiny files made here in each dataset's official format.

CI has no internet, so nothing is downloaded: each test writes a few files laid out as the
official release is, runs the script's ``convert``, and checks the project layout it wrote
(disjoint splits covering every image, a loadable dataset, the expected instances). SSDD,
SegRap2023, the sonar set and AbdomenCT-1K's bad-case handling are tested on reconstructed
official trees in test_data_scripts_real_layouts.py.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from cobot_lib.data import load_dataset, read_split
from cobot_lib.data.download import ChecksumError, download, verify_file
from cobot_lib.data.layout import read_dataset_json

SCRIPTS = Path(__file__).resolve().parents[1] / "data_scripts"
S = 64


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _check_layout(out: Path, splits: dict[str, list[str]]) -> dict:
    """Splits on disk = returned, disjoint, covering every image; each split loads."""
    info = read_dataset_json(out)
    assert info["domain"] in ("medical", "natural", "remote_sensing") and info["metric"]
    seen: set[str] = set()
    for split, names in splits.items():
        assert read_split(out, split) == names
        assert not seen & set(names), f"split {split} overlaps another"
        seen |= set(names)
    stems = {p.name.rsplit(".", 1)[0] for p in (out / "images").iterdir()}
    assert seen == stems
    for split, names in splits.items():
        if names:
            ds = load_dataset(out, split, S)
            assert len(ds) <= len(names) and ds.num_instances >= len(ds)
            if len(ds):
                assert ds[0]["image"].shape == (3, S, S)
    return info


def _jpeg(path: Path, h: int = 40, w: int = 50, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)


def _coco_json(path: Path, files: list[str], h: int = 40, w: int = 50, crowd: bool = False):
    images, anns = [], []
    for i, f in enumerate(files, start=1):
        images.append({"id": i, "file_name": f, "height": h, "width": w})
        m = np.zeros((h, w), np.uint8)
        m[5 + i % 7 : 20 + i % 7, 10:30] = 1
        rle = mask_utils.encode(np.asfortranarray(m))
        anns.append(
            {
                "id": 2 * i,
                "image_id": i,
                "category_id": 1,
                "iscrowd": 0,
                "segmentation": {"size": [h, w], "counts": rle["counts"].decode()},
            }
        )
        anns.append({"id": 2 * i + 1, "image_id": i, "category_id": 2, "iscrowd": int(crowd),
                     "segmentation": [[30, 25, 45, 25, 45, 38, 30, 38]]})  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    cats = [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))


def test_prepare_coco(tmp_path):
    src = tmp_path / "raw"
    train = [f"{i:012d}.jpg" for i in range(1, 21)]
    val = [f"{i:012d}.jpg" for i in range(100, 104)]
    for f in train:
        _jpeg(src / "train2017" / f)
    for f in val:
        _jpeg(src / "val2017" / f)
    _coco_json(src / "annotations" / "instances_train2017.json", train, crowd=True)
    _coco_json(src / "annotations" / "instances_val2017.json", val)
    mod = _script("prepare_coco")
    splits = mod.convert(src, tmp_path / "out", seed=0)
    info = _check_layout(tmp_path / "out", splits)
    assert info["format"] == "coco" and info["paper_name"] == "COCO"
    assert splits["test"] == [f"{i:012d}" for i in range(100, 104)]
    assert len(splits["val"]) == 1 and len(splits["train"]) == 19
    assert (tmp_path / "out" / "images" / f"{val[0]}").is_symlink()
    ds = load_dataset(tmp_path / "out", "train", S)
    assert ds.skipped["crowd_annotations"] == 19 and ds.num_instances == 19
    limited = mod.convert(src, tmp_path / "out2", seed=0, train_limit=5, copy=True)
    assert len(limited["train"]) + len(limited["val"]) == 5
    again = mod.convert(src, tmp_path / "out3", seed=0)
    assert again == splits  # seeded: the same split from the same seed


def test_prepare_trashcan_and_nwpu(tmp_path):
    root = tmp_path / "dataset" / "instance_version"
    for split, n in (("train", 10), ("val", 3)):
        files = [f"vid_{split}_{i}.jpg" for i in range(n)]
        for f in files:
            _jpeg(root / split / f)
        _coco_json(root / f"instances_{split}_trashcan.json", files)
    splits = _script("prepare_trashcan").convert(tmp_path / "dataset", tmp_path / "trash")
    _check_layout(tmp_path / "trash", splits)
    assert len(splits["test"]) == 3 and len(splits["val"]) == 1
    with pytest.raises(FileNotFoundError, match="conservancy"):
        _script("prepare_trashcan").convert(tmp_path / "nope", tmp_path / "x")

    nwpu = tmp_path / "NWPU VHR-10_dataset_coco"
    files = [f"{i:03d}.jpg" for i in range(1, 11)]
    for f in files:
        _jpeg(nwpu / "positive image set" / f)
    _coco_json(nwpu / "annotations.json", files)
    splits = _script("prepare_nwpu").convert(nwpu, tmp_path / "nwpu")
    _check_layout(tmp_path / "nwpu", splits)
    assert [len(splits[s]) for s in ("train", "val", "test")] == [7, 1, 2]


def test_prepare_busi_instances_and_stratified_splits(tmp_path):
    src = tmp_path / "Dataset_BUSI_with_GT"
    for cls, n in (("benign", 10), ("malignant", 10), ("normal", 3)):
        (src / cls).mkdir(parents=True)
        for i in range(1, n + 1):
            Image.fromarray(np.full((30, 40, 3), i, np.uint8)).save(src / cls / f"{cls} ({i}).png")
            m = np.zeros((30, 40), np.uint8)
            if cls != "normal":
                m[5:15, 5:20] = 255
            Image.fromarray(m).save(src / cls / f"{cls} ({i})_mask.png")
            if cls == "benign" and i == 1:
                m2 = np.zeros((30, 40, 3), np.uint8)
                m2[10:25, 15:35] = 255  # a second lesion, overlapping the first
                Image.fromarray(m2).save(src / cls / f"{cls} ({i})_mask_1.png")
    splits = _script("prepare_busi").convert(src, tmp_path / "out")
    info = _check_layout(tmp_path / "out", splits)
    assert info["left_out_empty"] == 3
    for cls in ("benign", "malignant"):
        assert [sum(n.startswith(cls) for n in splits[s]) for s in ("train", "val", "test")] == [
            7, 1, 2]  # fmt: skip
    assert (tmp_path / "out" / "masks" / "benign_1.tif").is_file()  # overlap -> stack
    ds = load_dataset(tmp_path / "out", None, S)
    assert ds.num_instances == 21 and ds[ds.names.index("benign_1")]["masks"].shape[0] == 2
    (src / "malignant" / "malignant (3)_mask.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"malignant \(3\)\.png"):
        _script("prepare_busi").convert(src, tmp_path / "out2")


def _volume(path: Path, data: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, np.diag([1.0, 1.0, 2.0, 1.0])), str(path))
    return path


def _ct_and_labels(seed: int, shape=(24, 20, 6)):
    rng = np.random.default_rng(seed)
    ct = rng.normal(0, 200, shape).astype(np.float32)
    lab = np.zeros(shape, np.uint8)
    lab[4:14, 3:12, 1:4] = 1
    lab[15:22, 12:18, 2:5] = 3
    return ct, lab


SMALL = {"min_voxels_3d": 5, "min_pixels_2d": 3}


def test_prepare_abdomenct1k_splits_by_case(tmp_path):
    for i in range(1, 12):
        ct, lab = _ct_and_labels(i)
        _volume(tmp_path / f"Part{1 + i % 2}" / f"Case_{i:05d}_0000.nii.gz", ct)
        if i != 11:  # case 11 has no mask: left out
            _volume(tmp_path / "Mask" / f"Case_{i:05d}.nii.gz", lab)
    mod = _script("prepare_abdomenct1k")
    splits = mod.convert([tmp_path / "Part1", tmp_path / "Part2"], tmp_path / "Mask",
                         tmp_path / "out", **SMALL)  # fmt: skip
    info = _check_layout(tmp_path / "out", splits)
    cases = {s: {n.rsplit("_z", 1)[0] for n in v} for s, v in splits.items()}
    assert [len(cases[s]) for s in ("train", "val", "test")] == [7, 1, 2]
    assert info["cases"] == {s: sorted(c) for s, c in cases.items()} and info["window"] == [40, 400]
    assert len(splits["train"]) == 7 * 4  # foreground in slices 1..4 of every case
    sub = mod.convert(
        [tmp_path / "Part1"], tmp_path / "Mask", tmp_path / "o2", max_cases=3, **SMALL
    )
    assert len({n.rsplit("_z", 1)[0] for v in sub.values() for n in v}) == 3


def test_prepare_msd_ct_and_multimodal_mr(tmp_path):
    task = tmp_path / "Task09_Spleen"
    (task / "dataset.json").parent.mkdir(parents=True)
    meta = {"modality": {"0": "CT"}, "labels": {"0": "background", "1": "spleen"}}
    (task / "dataset.json").write_text(json.dumps(meta))
    for i in range(5):
        ct, lab = _ct_and_labels(i)
        _volume(task / "imagesTr" / f"spleen_{i}.nii.gz", ct)
        _volume(task / "labelsTr" / f"spleen_{i}.nii.gz", (lab == 1).astype(np.uint8))
    (task / "imagesTr" / "._spleen_0.nii.gz").write_bytes(b"macOS resource fork")
    mod = _script("prepare_msd")
    splits = mod.convert(task, tmp_path / "spleen", **SMALL)
    info = _check_layout(tmp_path / "spleen", splits)
    assert info["paper_name"] == "SPLEN" and info["modality"] == "ct"

    mr = tmp_path / "Task05_Prostate"
    (mr / "dataset.json").parent.mkdir(parents=True)
    (mr / "dataset.json").write_text(json.dumps({"modality": {"0": "T2", "1": "ADC"}}))
    for i in range(4):
        t2, lab = _ct_and_labels(10 + i)
        _volume(mr / "imagesTr" / f"prostate_{i}.nii.gz", np.stack([np.abs(t2), -np.abs(t2)], -1))
        _volume(mr / "labelsTr" / f"prostate_{i}.nii.gz", lab)
    splits = mod.convert(mr, tmp_path / "prostate", channel=0, **SMALL)
    info = _check_layout(tmp_path / "prostate", splits)
    assert info["modality"] == "mr" and "window" not in info
    assert info["paper_name"].startswith("MOMO")
    with pytest.raises(FileNotFoundError, match="dataset.json"):
        mod.convert(tmp_path, tmp_path / "x")


# --- checksums and downloads (offline) ---------------------------------------------------
# Known-answer vectors for the message "abc": FIPS 180-2 (SHA-256) and RFC 1321 (MD5).
ABC_SHA256 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
ABC_MD5 = "900150983cd24fb0d6963f7d28e17f72"


def test_verify_file_known_answers(tmp_path):
    f = tmp_path / "abc.bin"
    f.write_bytes(b"abc")
    assert verify_file(f, sha256=ABC_SHA256) == "sha256"
    assert verify_file(f, md5=ABC_MD5.upper()) == "md5"
    with pytest.raises(ChecksumError, match=r"abc\.bin: sha256 is ba78.*expected 0000"):
        verify_file(f, sha256="0" * 64)
    with pytest.raises(ValueError, match="no checksum"):
        verify_file(f)
    with pytest.raises(FileNotFoundError):
        verify_file(tmp_path / "none", md5=ABC_MD5)


def test_download_verifies_before_keeping(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"abc")
    dest = download(src.as_uri(), tmp_path / "got" / "abc.bin", sha256=ABC_SHA256, progress=False)
    assert dest.read_bytes() == b"abc"
    with pytest.raises(ChecksumError):
        download(src.as_uri(), tmp_path / "bad.bin", md5="0" * 32, progress=False)
    assert not (tmp_path / "bad.bin").exists() and not (tmp_path / "bad.bin.part").exists()
    with pytest.raises(ValueError, match="without a checksum"):
        download(src.as_uri(), tmp_path / "x.bin")


def test_fetch_sam_checkpoints_verify(tmp_path, monkeypatch):
    mod = _script("fetch_sam_checkpoints")
    assert (
        mod.url("vit_b") == "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth"
    )
    for info in mod.CHECKPOINTS.values():  # the file name carries the start of the MD5
        assert info["file"].rsplit("_", 1)[1][:6] == info["md5"][:6]
        assert len(info["sha256"]) == 64 and len(info["md5"]) == 32
    small = tmp_path / "sam_vit_b_01ec64.pth"
    small.write_bytes(b"abc")
    with pytest.raises(ChecksumError, match="sam_vit_b_01ec64.pth"):
        mod.verify(small, "vit_b")
    monkeypatch.setitem(mod.CHECKPOINTS, "vit_b", {**mod.CHECKPOINTS["vit_b"],
                        "sha256": ABC_SHA256, "md5": ABC_MD5})  # fmt: skip
    assert mod.verify(small, "vit_b") == small
    assert mod.main(["--verify-only", str(small)]) == 0
    with pytest.raises(ValueError, match="unknown SAM model"):
        mod.verify(small, "vit_x")
    assert hashlib.sha256(b"abc").hexdigest() == ABC_SHA256  # the vector itself
