"""SSDD, the SAR Ship Detection Dataset (the paper's "SSDD", remote sensing, mIoU) -> layout.

Source: Zhang et al., "SAR Ship Detection Dataset (SSDD): Official Release and Comprehensive
Data Analysis", Remote Sensing 13(18):3690, 2021; https://github.com/TianwenZhang0825/Official-SSDD
(its README links one archive, Official-SSDD-OPEN, on Google Drive and Baidu Pan). 1,160 SAR
images; the official split puts the 232 images whose number ends in 1 or 9 in the test set.

Fetch by hand (no direct link or checksum is published) and give this script the
``coco_style`` folder of a release with polygon masks, ``BBox_RBox_PSeg_SSDD`` or
``PSeg_SSDD`` (``BBox_SSDD`` holds boxes only and is refused). Its layout (as described and
read by public loaders, see docs/DATASETS.md), train and test images in separate folders:

    Official-SSDD-OPEN/BBox_RBox_PSeg_SSDD/coco_style/annotations/train.json   928 images
                                                      annotations/test.json    232 images
                                                      images/train/000002.jpg ...
                                                      images/test/000001.jpg ...
    (also annotations/test_inshore.json, test_offshore.json and their image folders: subsets
    of the test set, not used here)

Other packagings: give ``--train-json/--train-images/--test-json/--test-images`` one by one,
or one COCO file of all images with ``--json`` and its ``--images`` folder, split by the
official rule. Conversion: the COCO polygons are kept as they are (no size filter); images
copied. Splits: the official test set is the test split; the official training images are
split into train and val (90/10, seeded), i.e. 835 / 93 / 232 images on the full release.

    python data_scripts/prepare_ssdd.py \
        --source /raw/Official-SSDD-OPEN/BBox_RBox_PSeg_SSDD/coco_style --out data/ssdd
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from pathlib import Path

from cobot_lib.data.convert import CocoSource, convert_coco, summary
from cobot_lib.data.demo import data_dir

NAME = "ssdd"
INFO = {"name": "Official-SSDD (polygon segmentation)", "domain": "remote_sensing",
        "metric": "miou", "paper_name": "SSDD"}  # fmt: skip
VAL_FRACTION = 0.1


def is_official_test(file_name: str) -> bool:
    """Zhang et al. (2021): the test set is the images whose number ends in 1 or 9."""
    digits = re.findall(r"\d+", Path(file_name).stem)
    if not digits:
        raise ValueError(f"SSDD image {file_name!r} has no number in its name")
    return digits[-1][-1] in "19"


def coco_style_sources(root: Path) -> dict[str, tuple[Path, Path]]:
    """(annotation file, image folder) per split of an official ``coco_style`` folder."""
    root = Path(root)
    out = {s: (root / "annotations" / f"{s}.json", root / "images" / s) for s in ("train", "test")}
    missing = [str(p) for pair in out.values() for p in pair if not p.exists()]
    if missing:
        raise FileNotFoundError(
            f"{root} is not an SSDD coco_style folder: {missing} not found (expected "
            "annotations/{train,test}.json and images/{train,test}/)"
        )
    return out


def _check_polygons(path: Path) -> dict:
    """The COCO file's content; refuses a file without segmentation (the BBox_SSDD release)."""
    data = json.loads(Path(path).read_text())
    anns = data.get("annotations", [])
    if anns and not any(a.get("segmentation") for a in anns):
        raise ValueError(
            f"{path} holds boxes only (no 'segmentation'); use the coco_style folder of "
            "BBox_RBox_PSeg_SSDD or PSeg_SSDD, which carry the ship polygons"
        )
    return data


def _split_json(path: Path, tmp: Path) -> tuple[Path, Path]:
    data = _check_polygons(path)
    parts = {}
    for split in ("train", "test"):
        keep = [im for im in data["images"]
                if is_official_test(im["file_name"]) == (split == "test")]  # fmt: skip
        ids = {im["id"] for im in keep}
        anns = [a for a in data["annotations"] if a["image_id"] in ids]
        parts[split] = tmp / f"{split}.json"
        parts[split].write_text(json.dumps({**data, "images": keep, "annotations": anns}))
    return parts["train"], parts["test"]


def convert(
    out: Path,
    source: Path | None = None,
    train: tuple[Path, Path] | None = None,
    test: tuple[Path, Path] | None = None,
    json_all: Path | None = None,
    images: Path | None = None,
    seed: int = 0,
) -> dict[str, list[str]]:
    """Give one of: ``source`` (a coco_style folder), ``train`` and ``test`` as (json, images),
    or ``json_all`` with its ``images`` folder (official split rule)."""
    given = [source is not None, train is not None and test is not None, json_all is not None]
    if sum(given) != 1 or (json_all is not None) != (images is not None):
        raise ValueError(
            "give exactly one of: source (coco_style folder); train and test (json, images); "
            "json_all with images"
        )
    with tempfile.TemporaryDirectory() as tmp:
        if source is not None:
            parts = coco_style_sources(source)
            train, test = parts["train"], parts["test"]
        elif json_all is not None:
            train_json, test_json = _split_json(Path(json_all), Path(tmp))
            train, test = (train_json, Path(images)), (test_json, Path(images))
        test_names = [im["file_name"] for im in _check_polygons(test[0])["images"]]
        _check_polygons(train[0])
        sources = [CocoSource(Path(train[0]), Path(train[1]), split=None),
                   CocoSource(Path(test[0]), Path(test[1]), split="test")]  # fmt: skip
        info = {**INFO, "test_follows_official_rule": all(map(is_official_test, test_names))}
        return convert_coco(out, sources, info, seed=seed, image_mode="copy",
                            fractions={"train": 1 - VAL_FRACTION, "val": VAL_FRACTION})  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--source", type=Path, help="the coco_style folder (annotations/, images/)")
    p.add_argument("--train-json", type=Path)
    p.add_argument("--train-images", type=Path)
    p.add_argument("--test-json", type=Path)
    p.add_argument("--test-images", type=Path)
    p.add_argument("--json", type=Path, dest="json_all", help="one file; official split rule")
    p.add_argument("--images", type=Path, help="the images of --json")
    p.add_argument("--out", type=Path, default=data_dir() / NAME)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    pairs = {"train": (a.train_json, a.train_images), "test": (a.test_json, a.test_images)}
    for split, pair in pairs.items():
        if (pair[0] is None) != (pair[1] is None):
            p.error(f"--{split}-json and --{split}-images go together")
    train = pairs["train"] if a.train_json else None
    test = pairs["test"] if a.test_json else None
    splits = convert(a.out, a.source, train, test, a.json_all, a.images, a.seed)
    print(summary(NAME, splits, a.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
