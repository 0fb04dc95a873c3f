"""BUSI, breast ultrasound images (the paper's "BRAST", medical, DSC) -> project layout.

Source: Al-Dhabyani, Gomaa, Khaled and Fahmy, "Dataset of breast ultrasound images", Data in
Brief 28:104863, 2020; https://scholar.cu.edu.eg/?q=afahmy/pages/dataset (CC0 on the mirror
https://www.kaggle.com/datasets/aryashah2k/breast-ultrasound-images-dataset).

Fetch by hand (the host requires a browser and publishes no checksum): download
``Dataset_BUSI_with_GT.zip`` and extract it:

    Dataset_BUSI_with_GT/benign/benign (1).png, benign (1)_mask.png[, benign (1)_mask_1.png ...]
    Dataset_BUSI_with_GT/malignant/...   Dataset_BUSI_with_GT/normal/...

Conversion: every ``_mask*.png`` of an image (0/255) is one lesion instance; lesions that
overlap are kept apart (TIFF mask stack). Names become ``benign_1`` etc. The 133 "normal"
images have empty masks and are left out (counted in dataset.json: a box prompt needs a
lesion). Splits: 70/10/20 train/val/test, seeded and stratified by class (benign, malignant).

    python data_scripts/prepare_busi.py --source /data/raw/Dataset_BUSI_with_GT --out data/busi
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from cobot_lib.data.convert import Pair, convert_pairs, safe_name, summary
from cobot_lib.data.demo import data_dir
from cobot_lib.data.layout import split_groups

NAME = "busi"
INFO = {"name": "BUSI", "domain": "medical", "metric": "dsc", "paper_name": "BRAST"}
CLASSES = ("benign", "malignant", "normal")
FRACTIONS = {"train": 0.7, "val": 0.1, "test": 0.2}
_MASK = re.compile(r"^(?P<image>.+)_mask(_\d+)?$")


def find_pairs(source: Path) -> list[Pair]:
    """Every image with its mask files, from the official folder structure."""
    source = Path(source)
    pairs = []
    for cls in CLASSES:
        folder = source / cls
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder} not found: extract Dataset_BUSI_with_GT.zip")
        files = sorted(folder.glob("*.png"))
        masks: dict[str, list[Path]] = {}
        for f in files:
            m = _MASK.match(f.stem)
            if m:
                masks.setdefault(m["image"], []).append(f)
        for f in files:
            if _MASK.match(f.stem):
                continue
            if f.stem not in masks:
                raise FileNotFoundError(f"no mask file for {f} (expected '{f.stem}_mask.png')")
            pairs.append(Pair(safe_name(f.stem), f, masks[f.stem], group=cls))
    return pairs


def convert(source: Path, out: Path, seed: int = 0) -> dict[str, list[str]]:
    """``source`` is the extracted Dataset_BUSI_with_GT folder."""
    pairs = find_pairs(source)
    for cls in CLASSES:  # stratified: one seeded split per class
        names = [p.name for p in pairs if p.group == cls]
        where = {n: s for s, ns in split_groups(names, FRACTIONS, seed).items() for n in ns}
        for p in pairs:
            if p.group == cls:
                p.split, p.group = where[p.name], None
    return convert_pairs(out, pairs, {**INFO, "classes": list(CLASSES[:2])}, seed=seed)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--source", type=Path, required=True)
    p.add_argument("--out", type=Path, default=data_dir() / NAME)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    print(summary(NAME, convert(a.source, a.out, a.seed), a.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
