"""The converters of SegRap2023, SSDD, the marine-debris sonar set and AbdomenCT-1K on trees laid
out as the official downloads are.

Nothing is downloaded: each test rebuilds the released folder structure in tmp_path, with tiny
files in the released formats, from the documents cited next to it. These tests fail if a
script goes back to its earlier assumptions (one image folder for both SSDD splits, every
.nii.gz of a SegRap case as a structure, one-hot values as classes, MedSAM's size filters on
head-and-neck organs, a random sonar split without the wall, a whole conversion stopped by
one bad case).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from cobot_lib.data import load_dataset, read_split
from cobot_lib.data.layout import read_dataset_json
from cobot_lib.data.readers import read_mask

SCRIPTS = Path(__file__).resolve().parents[1] / "data_scripts"
S = 64
TINY = {"min_voxels_3d": 1, "min_pixels_2d": 1}


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _nii(path: Path, data: np.ndarray, affine: np.ndarray | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    aff = np.diag([1.0, 1.0, 2.0, 1.0]) if affine is None else affine
    nib.save(nib.Nifti1Image(data, aff), str(path))
    return path


def _ct(shape: tuple[int, ...], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 200, shape).astype(np.float32)


def _masks_of(out: Path) -> dict[str, np.ndarray]:
    """Every mask file of a converted set, decoded to a (pages, H, W) or (H, W) array."""
    return {p.name: read_mask(p) for p in sorted((out / "masks").iterdir())}


# --- SegRap2023 ------------------------------------------------------------------------------
# Layout: HiLab-git/SegRap2023 Tutorial/nnunet_baseline.ipynb (SegRap2023_Training_Set_120cases/
# <case>/image.nii.gz and image_contrast.nii.gz; one-hot labels "labelsTr"),
# Tutorial/preprocessing.py (one-hot volume <onehot>/Task001_OARs/<case>.nii.gz). Public loaders
# read the per-structure files in the case folders next to the CTs, 45 OARs plus GTVp.nii.gz and
# GTVnd.nii.gz, and the one-hot release as SegRap2023_Training_Set_120cases_OneHot_Labels/
# {Task001,Task002}/<case>.nii.gz (e.g. the nnU-Net converters and dataset sources indexed in
# docs/DATASETS.md). The 54 sub-label names below are those a public loader records for the
# one-hot Task001 volume ("..._OverLap_..." = the voxels two organs share).
SUBLABEL_NAMES = [
    "Brain", "BrainStem", "Chiasm", "TemporalLobe_L", "TemporalLobe_R",
    "TemporalLobe_Hippocampus_OverLap_L", "TemporalLobe_Hippocampus_OverLap_R",
    "Hippocampus_L", "Hippocampus_R", "Eye_L", "Eye_R", "Lens_L", "Lens_R", "OpticNerve_L",
    "OpticNerve_R", "MiddleEar_L", "MiddleEar_R", "IAC_L", "IAC_R",
    "MiddleEar_TympanicCavity_OverLap_L", "MiddleEar_TympanicCavity_OverLap_R",
    "TympanicCavity_L", "TympanicCavity_R", "MiddleEar_VestibulSemi_OverLap_L",
    "MiddleEar_VestibulSemi_OverLap_R", "VestibulSemi_L", "VestibulSemi_R", "Cochlea_L",
    "Cochlea_R", "MiddleEar_ETbone_OverLap_L", "MiddleEar_ETbone_OverLap_R", "ETbone_L",
    "ETbone_R", "Pituitary", "OralCavity", "Mandible_L", "Mandible_R", "Submandibular_L",
    "Submandibular_R", "Parotid_L", "Parotid_R", "Mastoid_L", "Mastoid_R", "TMjoint_L",
    "TMjoint_R", "SpinalCord", "Esophagus", "Larynx", "Larynx_Glottic", "Larynx_Supraglot",
    "Larynx_PharynxConst_OverLap", "PharynxConst", "Thyroid", "Trachea",
]  # fmt: skip
# Anatomical containment (a second formulation of the challenge's table): a parent organ also
# covers the voxels of the organs inside it.
INSIDE = {"Brain": ["BrainStem", "Chiasm", "TemporalLobe_L", "TemporalLobe_R", "Hippocampus_L",
                    "Hippocampus_R"],
          "Eye_L": ["Lens_L"], "Eye_R": ["Lens_R"], "MiddleEar_L": ["IAC_L", "Cochlea_L"],
          "MiddleEar_R": ["IAC_R", "Cochlea_R"], "Larynx": ["Larynx_Glottic",
                                                            "Larynx_Supraglot"]}  # fmt: skip


def _organ_sublabels() -> dict[str, set[int]]:
    """Organ -> its sub-labels, from the sub-label names and the containment above."""
    own: dict[str, set[int]] = {}
    for k, name in enumerate(SUBLABEL_NAMES, start=1):
        m = re.fullmatch(r"(.+?)_(.+?)_OverLap(_[LR])?", name)
        for organ in [m[1] + (m[3] or ""), m[2] + (m[3] or "")] if m else [name]:
            own.setdefault(organ, set()).add(k)

    def full(organ: str) -> set[int]:
        return own[organ].union(*(full(c) for c in INSIDE.get(organ, [])))

    return {organ: full(organ) for organ in own}


def _segrap_release(root: Path, n_cases: int = 3, grid: tuple = (6, 3, 3)) -> Path:
    """SegRap2023_Training_Set_120cases with structure files, and the one-hot release."""
    shape = (3 * grid[0] + 1, 3 * grid[1] + 1, 3 * grid[2] + 1)
    onehot = np.zeros(shape, np.uint8)  # sub-label j in the j-th 2x2x2 cube
    for j in range(54):
        i, r = divmod(j, grid[1] * grid[2])
        y, z = divmod(r, grid[2])
        onehot[3 * i + 1 : 3 * i + 3, 3 * y + 1 : 3 * y + 3, 3 * z + 1 : 3 * z + 3] = j + 1
    gtv = np.zeros(shape, np.uint8)
    gtv[2:6, 2:5, 2:5], gtv[9:12, 4:7, 5:8] = 1, 2
    cases = root / "SegRap2023_Training_Set_120cases"
    for c in range(n_cases):
        case = cases / f"segrap_{c:04d}"
        _nii(case / "image.nii.gz", _ct(shape, c))
        _nii(case / "image_contrast.nii.gz", _ct(shape, c) + 50)
        for organ, subs in _organ_sublabels().items():
            _nii(case / f"{organ}.nii.gz", np.isin(onehot, list(subs)).astype(np.uint8))
        _nii(case / "GTVp.nii.gz", (gtv == 1).astype(np.uint8))
        _nii(case / "GTVnd.nii.gz", (gtv == 2).astype(np.uint8))
        labels = root / "SegRap2023_Training_Set_120cases_OneHot_Labels"
        _nii(labels / "Task001" / f"{case.name}.nii.gz", onehot)
        _nii(labels / "Task002" / f"{case.name}.nii.gz", gtv)
    return root


def test_segrap_structure_files_and_one_hot_release_give_the_same_45_organs(tmp_path):
    raw = _segrap_release(tmp_path / "raw")
    cases = raw / "SegRap2023_Training_Set_120cases"
    task001 = raw / "SegRap2023_Training_Set_120cases_OneHot_Labels" / "Task001"
    mod = _script("prepare_segrap")
    files = mod.convert(cases, tmp_path / "files", **TINY)
    onehot = mod.convert(cases, tmp_path / "onehot", labels=task001, **TINY)
    assert files == onehot
    organs = [n for n in _organ_sublabels() if "OverLap" not in n]
    info = read_dataset_json(tmp_path / "onehot")
    assert len(organs) == 45 and sorted(info["classes"].values()) == sorted(organs)
    assert not {"image", "image_contrast", "GTVp", "GTVnd"} & set(info["classes"].values())
    a, b = _masks_of(tmp_path / "files"), _masks_of(tmp_path / "onehot")
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    # the overlap is kept: some slice holds the lens and the eye it lies in, on their own pages
    eye, lens = (int(k) for k, v in info["classes"].items() if v in ("Eye_L", "Lens_L"))
    stacks = [m for m in b.values() if m.ndim == 3 and m.shape[0] == 45]
    assert any(m[eye - 1].any() and (m[lens - 1] & m[eye - 1]).any() for m in stacks)
    split_cases = info["cases"]
    assert sorted(sum(split_cases.values(), [])) == [f"segrap_{c:04d}" for c in range(3)]


def test_segrap_gtv_task_from_case_folders_and_one_hot(tmp_path):
    raw = _segrap_release(tmp_path / "raw", n_cases=2)
    cases = raw / "SegRap2023_Training_Set_120cases"
    mod = _script("prepare_segrap")
    files = mod.convert(cases, tmp_path / "g1", task="gtv", **TINY)
    task002 = raw / "SegRap2023_Training_Set_120cases_OneHot_Labels" / "Task002"
    onehot = mod.convert(cases, tmp_path / "g2", labels=task002, task="gtv", **TINY)
    assert files == onehot
    assert read_dataset_json(tmp_path / "g1")["classes"] == {"1": "GTVp", "2": "GTVnd"}
    masks = _masks_of(tmp_path / "g2")
    assert set().union(*(np.unique(m).tolist() for m in masks.values())) == {0, 1, 2}
    # decoding the OAR volume with the GTV table is caught, not turned into classes
    task001 = raw / "SegRap2023_Training_Set_120cases_OneHot_Labels" / "Task001"
    with pytest.warns(UserWarning, match="belong to no structure"):
        with pytest.raises(ValueError, match="no foreground slice"):
            mod.convert(cases, tmp_path / "g3", labels=task001, task="gtv", **TINY)


def test_segrap_default_filters_keep_small_head_and_neck_organs(tmp_path):
    shape = (40, 40, 8)
    onehot = np.zeros(shape, np.uint8)
    onehot[5:25, 5:25, 1:7] = 10  # an eye
    onehot[10:14, 10:14, 3:6] = 12  # its lens: 48 voxels, 16 pixels a slice
    onehot[30, 30, 4] = 28  # a one-voxel speck labelled cochlea
    root = tmp_path / "SegRap2023_Training_Set_120cases"
    labels = tmp_path / "SegRap2023_Training_Set_120cases_OneHot_Labels" / "Task001"
    for c in range(3):
        _nii(root / f"segrap_{c:04d}" / "image.nii.gz", _ct(shape, c))
        _nii(labels / f"segrap_{c:04d}.nii.gz", onehot)
    mod = _script("prepare_segrap")
    mod.convert(root, tmp_path / "default", labels=labels)
    info = read_dataset_json(tmp_path / "default")
    lens, cochlea = (int(k) for k, v in info["classes"].items() if v in ("Lens_L", "Cochlea_L"))
    pages = [m for m in _masks_of(tmp_path / "default").values() if m.ndim == 3]
    assert sum(m[lens - 1].any() for m in pages) == 3 * 3  # 3 slices of 3 cases
    assert not any(m[cochlea - 1].any() for m in pages)  # the speck is gone
    mod.convert(root, tmp_path / "medsam", labels=labels, min_voxels_3d=1000, min_pixels_2d=100)
    pages = [m for m in _masks_of(tmp_path / "medsam").values() if m.ndim == 3]
    assert not any(m[lens - 1].any() for m in pages)  # MedSAM's filters erase the lens


def test_segrap_missing_structure_file_is_named_before_any_work(tmp_path):
    raw = _segrap_release(tmp_path / "raw", n_cases=2)
    (raw / "SegRap2023_Training_Set_120cases" / "segrap_0001" / "Chiasm.nii.gz").unlink()
    with pytest.raises(FileNotFoundError, match=r"segrap_0001/Chiasm\.nii\.gz"):
        _script("prepare_segrap").convert(
            raw / "SegRap2023_Training_Set_120cases", tmp_path / "out", **TINY
        )
    assert not (tmp_path / "out").exists()


# --- SSDD ------------------------------------------------------------------------------------
# Layout of Official-SSDD-OPEN (github.com/TianwenZhang0825/Official-SSDD links the archive):
# <variant>/coco_style/annotations/{train,test,test_inshore,test_offshore}.json and
# <variant>/coco_style/images/{train,test,test_inshore,test_offshore}/, 000001.jpg ... 001160.jpg,
# 928 train and 232 test images (test = numbers ending in 1 or 9, Zhang et al. 2021), as
# documented by public copies of the release and read by public loaders (docs/DATASETS.md).
def _ssdd_coco(path: Path, files: list[str], boxes_only: bool = False) -> None:
    images, anns = [], []
    for i, f in enumerate(files, start=1):
        images.append({"id": i, "file_name": f, "height": 8, "width": 8})
        poly = [[1.0, 1.0, 6.0, 1.0, 6.0, 5.0, 1.0, 5.0]]
        anns.append({"id": i, "image_id": i, "category_id": 1, "iscrowd": 0, "area": 20.0,
                     "bbox": [1.0, 1.0, 5.0, 4.0],
                     "segmentation": [] if boxes_only else poly})  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    cats = [{"id": 1, "name": "ship", "supercategory": "ship"}]
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))


def _ssdd_release(root: Path, variant: str = "BBox_RBox_PSeg_SSDD", n: int = 1160) -> Path:
    coco = root / "Official-SSDD-OPEN" / variant / "coco_style"
    names = [f"{i:06d}.jpg" for i in range(1, n + 1)]
    test = [f for f in names if f[5] in "19"]
    parts = {
        "train": [f for f in names if f not in test],
        "test": test,
        "test_inshore": test[: len(test) // 5],
        "test_offshore": test[len(test) // 5 :],
    }
    pixels = np.full((8, 8, 3), 90, np.uint8)
    for split, files in parts.items():
        (coco / "images" / split).mkdir(parents=True)
        for f in files:
            Image.fromarray(pixels).save(coco / "images" / split / f)
        _ssdd_coco(coco / "annotations" / f"{split}.json", files, variant == "BBox_SSDD")
    return coco


def test_ssdd_coco_style_release_with_split_image_folders(tmp_path):
    coco = _ssdd_release(tmp_path / "raw")
    mod = _script("prepare_ssdd")
    splits = mod.convert(tmp_path / "out", source=coco)
    assert [len(splits[s]) for s in ("train", "val", "test")] == [835, 93, 232]
    ending = {n[-1] for n in splits["test"]}
    assert ending == {"1", "9"} and not {n[-1] for n in splits["train"] + splits["val"]} & ending
    assert read_split(tmp_path / "out", "test") == splits["test"]
    info = read_dataset_json(tmp_path / "out")
    assert info["test_follows_official_rule"] and info["format"] == "coco"
    ds = load_dataset(tmp_path / "out", "test", S)
    assert len(ds) == 232 and ds.num_instances == 232
    assert mod.main(["--source", str(coco), "--out", str(tmp_path / "cli")]) == 0


def test_ssdd_box_only_release_and_other_packagings(tmp_path):
    mod = _script("prepare_ssdd")
    boxes = _ssdd_release(tmp_path / "raw", variant="BBox_SSDD", n=20)
    with pytest.raises(ValueError, match="boxes only.*PSeg"):
        mod.convert(tmp_path / "out", source=boxes)
    with pytest.raises(FileNotFoundError, match="annotations/"):
        mod.convert(tmp_path / "out", source=boxes.parent)
    coco = _ssdd_release(tmp_path / "raw2", n=20)
    pairs = [(coco / "annotations" / f"{s}.json", coco / "images" / s) for s in ("train", "test")]
    explicit = mod.convert(tmp_path / "o1", train=pairs[0], test=pairs[1])
    assert explicit["test"] == ["000001", "000009", "000011", "000019"]
    flat = tmp_path / "flat"  # one folder and one file of every image: the official rule
    for p in (coco / "images" / "train").iterdir():
        (flat / p.name).parent.mkdir(exist_ok=True)
        (flat / p.name).write_bytes(p.read_bytes())
    for p in (coco / "images" / "test").iterdir():
        (flat / p.name).write_bytes(p.read_bytes())
    _ssdd_coco(tmp_path / "all.json", sorted(p.name for p in flat.iterdir()))
    rule = mod.convert(tmp_path / "o2", json_all=tmp_path / "all.json", images=flat)
    assert rule["test"] == explicit["test"]
    with pytest.raises(ValueError, match="exactly one"):
        mod.convert(tmp_path / "o3")


# --- marine-debris forward-looking sonar ----------------------------------------------------
# Layout: github.com/mvaldenegro/marine-debris-fls-datasets, md_fls_dataset/data/
# watertank-segmentation/{Images,Masks,BoxAnnotations}/marine-debris-aris3k-<n>.{png,png,xml};
# frames 480 x 320; masks hold the class index 0..11 in three equal channels (written with
# cv2.imwrite from a (480, 320, 3) array by Labelling/Scripts/genMasks_int.py); the XML is
# marine-debris-aris3k-1.xml's form, "COCO Format - x y w h". Split lists: SonarSAM
# (github.com/wangsssky/SonarSAM) dataset/marine_debris/{train,val,test}.txt, read by its
# dataloader/data_loader.py, which makes one box-prompt instance per box: the box's class pixels.
XML = """<?xml version="1.0" ?>
<annotation>
\t<folder>Images</folder>
\t<filename>{name}.png</filename>
\t<path>Images/{name}.png</path>
\t<source>
\t\t<database>Forward-Looking Sonar Marine Debris Datasets</database>
\t\t<annotation>COCO Format - x y w h</annotation>
\t\t<images>Watertank Dataset</images>
\t</source>
\t<size>
\t\t<width>{w}</width>
\t\t<height>{h}</height>
\t\t<depth>1</depth>
\t</size>
\t<segmented>1</segmented>
{objects}</annotation>
"""
OBJECT = """\t<object>
\t\t<name>{cls}</name>
\t\t<bndbox>
\t\t\t<x>{x}</x>
\t\t\t<y>{y}</y>
\t\t\t<w>{bw}</w>
\t\t\t<h>{bh}</h>
\t\t</bndbox>
\t</object>
"""
# (class name, class index, painted region (y0, y1, x0, x1)); the box is the region's extent
SCENE = [("Wall", 11, (1, 6, 1, 30)), ("Can", 2, (10, 16, 4, 10)), ("Can", 2, (14, 20, 8, 14)),
         ("Chain", 3, (30, 40, 15, 28))]  # fmt: skip


def _sonar_release(root: Path, frames: list[int], h: int = 48, w: int = 32) -> Path:
    src = root / "md_fls_dataset" / "data" / "watertank-segmentation"
    for sub in ("Images", "Masks", "BoxAnnotations"):
        (src / sub).mkdir(parents=True)
    for n in frames:
        name = f"marine-debris-aris3k-{n}"
        Image.fromarray(np.full((h, w), n % 200, np.uint8)).save(src / "Images" / f"{name}.png")
        cls = np.zeros((h, w), np.uint8)
        objects = ""
        for label, k, (y0, y1, x0, x1) in SCENE:
            cls[y0:y1, x0:x1] = k
            objects += OBJECT.format(cls=label, x=x0, y=y0, bw=x1 - x0, bh=y1 - y0)
        Image.fromarray(np.stack([cls] * 3, -1)).save(src / "Masks" / f"{name}.png")
        xml = XML.format(name=name, w=w, h=h, objects=objects)
        (src / "BoxAnnotations" / f"{name}.xml").write_text(xml)
    return src


def _lists(folder: Path, parts: dict[str, list[int]]) -> Path:
    folder.mkdir(parents=True)
    for split, frames in parts.items():
        text = "\n".join(f"marine-debris-aris3k-{n}" for n in frames)
        (folder / f"{split}.txt").write_text(text)
    return folder


def test_sonar_sonarsam_split_lists_and_box_instances_with_wall(tmp_path, capsys):
    src = _sonar_release(tmp_path / "raw", list(range(9)))
    parts = {"train": [0, 3, 4, 8], "val": [1, 5], "test": [2, 6]}  # frame 7 is in no list
    lists = _lists(tmp_path / "lists", parts)
    mod = _script("prepare_sonar")
    splits = mod.convert(src, tmp_path / "out", split_lists=lists)
    assert splits == {s: sorted(f"marine-debris-aris3k-{n}" for n in v) for s, v in parts.items()}
    info = read_dataset_json(tmp_path / "out")
    assert info["not_in_split_lists"] == 1 and info["dropped_small_instances"] == 0
    assert info["instance_classes"]["marine-debris-aris3k-0"] == [11, 2, 2, 3]  # wall kept
    # the first can's box also holds a corner of the second can: SonarSAM takes every pixel of
    # the box's class inside the box, so the two instances overlap and are stored as a stack
    stack = read_mask(tmp_path / "out" / "masks" / "marine-debris-aris3k-0.tif")
    painted = np.zeros((len(SCENE), 48, 32), bool)
    for i, (_, _, (y0, y1, x0, x1)) in enumerate(SCENE):
        painted[i, y0:y1, x0:x1] = True
    assert stack.shape == (4, 48, 32)
    assert np.array_equal(stack[0], painted[0]) and np.array_equal(stack[3], painted[3])
    cans = painted[1] | painted[2]
    assert np.array_equal(stack[1], cans & painted[1]) and (stack[1] & painted[2]).any()
    ds = load_dataset(tmp_path / "out", "train", S)
    assert len(ds) == 4 and ds.num_instances == 16
    cli = ["--source", str(src), "--out", str(tmp_path / "cli"), "--split-lists", str(lists)]
    assert mod.main(cli) == 0
    assert "instances: train 16, val 8, test 8" in capsys.readouterr().out
    no_wall = mod.convert(src, tmp_path / "nowall", split_lists=lists, include_wall=False)
    assert no_wall == splits
    classes = read_dataset_json(tmp_path / "nowall")["instance_classes"]
    assert all(11 not in c for c in classes.values())
    comps = mod.convert(src, tmp_path / "comp", split_lists=lists, use_boxes=False)
    comp_classes = read_dataset_json(tmp_path / "comp")["instance_classes"]
    assert comps == splits and comp_classes["marine-debris-aris3k-0"] == [2, 3, 11]
    with pytest.raises(ValueError, match="outside 0..11"):
        mod.instances(np.full((4, 4), 12), None)


def test_sonar_bad_lists_and_annotations_are_named(tmp_path):
    src = _sonar_release(tmp_path / "raw", [0, 1, 2])
    mod = _script("prepare_sonar")
    both = _lists(tmp_path / "dup", {"train": [0, 1], "val": [1], "test": [2]})
    with pytest.raises(ValueError, match="marine-debris-aris3k-1 is in both train.txt and val"):
        mod.convert(src, tmp_path / "o1", split_lists=both)
    gone = _lists(tmp_path / "gone", {"train": [0, 5], "val": [1], "test": [2]})
    with pytest.raises(FileNotFoundError, match="marine-debris-aris3k-5"):
        mod.convert(src, tmp_path / "o2", split_lists=gone)
    ok = _lists(tmp_path / "ok", {"train": [0], "val": [1], "test": [2]})
    xml = src / "BoxAnnotations" / "marine-debris-aris3k-2.xml"
    xml.write_text(xml.read_text().replace("<name>Chain</name>", "<name>Anchor</name>"))
    with pytest.raises(ValueError, match=r"aris3k-2\.xml: unknown class 'anchor'"):
        mod.convert(src, tmp_path / "o3", split_lists=ok)


# SonarSAM's lists as fetched from github.com/wangsssky/SonarSAM at commit 2619c23 (files
# dataset/marine_debris/{train,val,test}.txt); their SHA-256 pins the shipped copy to it.
SONARSAM_SHA256 = {
    "train.txt": "5cda3bef9907a54d2f15445fbec3cf80c750a94d3f6687ea66eb74e04cca8933",
    "val.txt": "4b3add1d127de29927dbbb42549a6a7bb0a9cc489239529fd0614e952712ca73",
    "test.txt": "6a7566d43ad718cac423512919e70324f7bc915361b4a8be004e5d7d234e358a",
}


def test_shipped_sonarsam_lists_cover_the_1868_frames_once(tmp_path):
    folder = SCRIPTS / "splits" / "sonarsam"
    for name, digest in SONARSAM_SHA256.items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest
    lists = _script("prepare_sonar").read_lists(folder)
    assert {s: len(v) for s, v in lists.items()} == {"train": 1120, "val": 374, "test": 374}
    frames = sorted(int(n.rsplit("-", 1)[1]) for v in lists.values() for n in v)
    assert frames == list(range(1868))  # the release's 1,868 frames, each in one split
    assert (folder / "LICENSE.txt").read_text().lstrip().startswith("Apache License")


# --- AbdomenCT-1K ----------------------------------------------------------------------------
# Layout after extracting the Zenodo archives (torch-em's abdomenct_1k loader globs the same):
# AbdomenCT-1K-ImagePart{1,2,3}/Case_<5 digits>_0000.nii.gz and Mask/Case_<5 digits>.nii.gz.
def _abdomen_case(root: Path, part: int, i: int, mask_affine: np.ndarray | None = None) -> None:
    shape = (24, 20, 6)
    lab = np.zeros(shape, np.uint8)
    lab[4:14, 3:12, 1:4], lab[15:22, 12:18, 2:5] = 1, 3
    _nii(root / f"AbdomenCT-1K-ImagePart{part}" / f"Case_{i:05d}_0000.nii.gz", _ct(shape, i))
    _nii(root / "Mask" / f"Case_{i:05d}.nii.gz", lab, mask_affine)


def test_abdomenct1k_case_with_a_mismatched_affine_is_skipped_and_reported(tmp_path):
    shifted = np.diag([1.0, 1.0, 2.0, 1.0])
    shifted[0, 3] = 0.5  # half a millimetre: the mask is not on its image's grid
    for i in range(1, 9):
        _abdomen_case(tmp_path, 1 + i % 3, i, shifted if i == 3 else None)
    mod = _script("prepare_abdomenct1k")
    parts = [tmp_path / f"AbdomenCT-1K-ImagePart{p}" for p in (1, 2, 3)]
    with pytest.warns(UserWarning, match=r"case Case_00003 skipped: .*different affines"):
        splits = mod.convert(parts, tmp_path / "Mask", tmp_path / "out", **TINY)
    info = read_dataset_json(tmp_path / "out")
    assert list(info["skipped_cases"]) == ["Case_00003"]
    converted = {n.rsplit("_z", 1)[0] for v in splits.values() for n in v}
    assert converted == {f"Case_{i:05d}" for i in range(1, 9) if i != 3}
    assert not list((tmp_path / "out" / "images").glob("Case_00003_*"))


def test_abdomenct1k_download_verifies_archives_and_asks_for_the_7z(tmp_path, monkeypatch):
    mod = _script("prepare_abdomenct1k")
    assert all(re.fullmatch(r"[0-9a-f]{64}", sha) for _, sha in mod.ARCHIVES.values())
    served = tmp_path / "zenodo"
    _abdomen_case(tmp_path / "staging", 1, 1)
    archives = {}
    for name in mod.ARCHIVES:
        path = served / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if name.endswith(".zip"):
            folder = name[: -len(".zip")]
            with zipfile.ZipFile(path, "w") as zf:
                for f in (tmp_path / "staging" / "AbdomenCT-1K-ImagePart1").iterdir():
                    zf.write(f, f"{folder}/{f.name.replace('00001', folder[-1] * 5)}")
        else:
            path.write_bytes(b"7z stand-in")
        archives[name] = (0, hashlib.sha256(path.read_bytes()).hexdigest())
    monkeypatch.setattr(mod, "ARCHIVES", archives)
    monkeypatch.setattr(mod, "ZENODO", served.as_uri() + "/{name}")
    raw = tmp_path / "raw"
    with pytest.raises(FileNotFoundError, match=r"7z x .*Mask\.7z"):
        mod.fetch(raw, progress=False)
    assert sorted(p.name for p in raw.glob("AbdomenCT-1K-ImagePart*/*.nii.gz")) == [
        "Case_11111_0000.nii.gz", "Case_22222_0000.nii.gz", "Case_33333_0000.nii.gz"]  # fmt: skip
    (raw / "Mask").mkdir()
    (raw / "Mask" / "Case_11111.nii.gz").write_bytes(b"")
    images, masks = mod.fetch(raw, progress=False)
    assert [p.name for p in images] == [f"AbdomenCT-1K-ImagePart{k}" for k in (1, 2, 3)]
    (served / "AbdomenCT-1K-ImagePart2.zip").write_bytes(b"changed on the server")
    (raw / "AbdomenCT-1K-ImagePart2.zip").unlink()
    with pytest.raises(ValueError, match="sha256"):
        mod.fetch(raw, progress=False)
