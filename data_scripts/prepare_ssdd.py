"""SSDD, the SAR Ship Detection Dataset (the paper's "SSDD", remote sensing, mIoU) -> layout.

Source: Zhang et al., "SAR Ship Detection Dataset (SSDD): Official Release and Comprehensive
Data Analysis", Remote Sensing 13(18):3690, 2021; https://github.com/TianwenZhang0825/Official-SSDD
(the README links the files on Google Drive and Baidu Pan). 1,160 SAR images, 2,456 ships;
the polygon-segmentation labels ("PSeg-SSDD") come as COCO JSON.

Fetch by hand (no direct link or checksum is published): download Official-SSDD and give this
script the images folder and the COCO JSON file(s) of the polygon-segmentation release:

    --images <folder of the .jpg images>  --train-json <train COCO json> --test-json <test json>

or a single ``--json`` with every image, in which case the official split rule of Zhang et
al. (2021) is applied: images whose number ends in 1 or 9 form the test set.

Conversion: COCO JSON kept (polygons); images copied. Splits: the official test set is the
test split; the official training images are split into train and val (10%, seeded).

    python data_scripts/prepare_ssdd.py --images /data/raw/ssdd/JPEGImages \
        --train-json /data/raw/ssdd/train.json --test-json /data/raw/ssdd/test.json --out data/ssdd
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


def is_official_test(file_name: str) -> bool:
    """Zhang et al. (2021): the test set is the images whose number ends in 1 or 9."""
    digits = re.findall(r"\d+", Path(file_name).stem)
    if not digits:
        raise ValueError(f"SSDD image {file_name!r} has no number in its name")
    return digits[-1][-1] in "19"


def _split_json(path: Path, tmp: Path) -> tuple[Path, Path]:
    data = json.loads(Path(path).read_text())
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
    images: Path,
    out: Path,
    train_json: Path | None = None,
    test_json: Path | None = None,
    json_all: Path | None = None,
    seed: int = 0,
) -> dict[str, list[str]]:
    """Either ``train_json`` and ``test_json`` (official split files) or ``json_all``."""
    if (json_all is None) == (train_json is None or test_json is None):
        raise ValueError("give either train_json and test_json, or json_all")
    with tempfile.TemporaryDirectory() as tmp:
        if json_all is not None:
            train_json, test_json = _split_json(Path(json_all), Path(tmp))
        sources = [CocoSource(Path(train_json), Path(images), split=None),
                   CocoSource(Path(test_json), Path(images), split="test")]  # fmt: skip
        return convert_coco(out, sources, INFO, fractions={"train": 0.9, "val": 0.1}, seed=seed,
                            image_mode="copy")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=Path, required=True)
    p.add_argument("--train-json", type=Path)
    p.add_argument("--test-json", type=Path)
    p.add_argument("--json", type=Path, dest="json_all", help="one file; official split rule")
    p.add_argument("--out", type=Path, default=data_dir() / NAME)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    splits = convert(a.images, a.out, a.train_json, a.test_json, a.json_all, a.seed)
    print(summary(NAME, splits, a.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
