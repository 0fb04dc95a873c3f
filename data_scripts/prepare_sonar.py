"""Marine debris forward-looking sonar (the paper's "SONAR", remote sensing, mIoU) -> layout.

Source: Singh and Valdenegro-Toro, "The Marine Debris Dataset for Forward-Looking Sonar
Semantic Segmentation", ICCV Workshops 2021;
https://github.com/mvaldenegro/marine-debris-fls-datasets (folder
``md_fls_dataset/data/watertank-segmentation``): 1,868 ARIS Explorer 3000 sonar frames
(``Images/marine-debris-aris3k-<n>.png``) with per-pixel class masks (``Masks/<same>.png``),
values 0 background, 1 bottle, 2 can, 3 chain, 4 drink-carton, 5 hook, 6 propeller,
7 shampoo-bottle, 8 standing-bottle, 9 tire, 10 valve, 11 wall.

Fetch by hand (a git branch has no fixed checksum):
    git clone --depth 1 https://github.com/mvaldenegro/marine-debris-fls-datasets
and give ``.../md_fls_dataset/data/watertank-segmentation`` as ``--source``.

Conversion: the masks are semantic, so each connected component (8-connected) of each object
class becomes one instance (``--per-class`` keeps one instance per class and frame instead);
the tank wall (class 11) is background unless ``--include-wall``. Frames without debris are
left out. Splits: no official split; frames are split 70/10/20 (seeded). Consecutive frames
are near duplicates: ``--block N`` keeps runs of N consecutive frame numbers in one split.

    python data_scripts/prepare_sonar.py --source /data/raw/watertank-segmentation --out data/sonar
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage

from cobot_lib.data.convert import Pair, convert_pairs, summary
from cobot_lib.data.demo import data_dir

NAME = "sonar"
INFO = {"name": "Marine debris FLS (watertank segmentation)", "domain": "remote_sensing",
        "metric": "miou", "paper_name": "SONAR"}  # fmt: skip
CLASSES = {
    1: "bottle", 2: "can", 3: "chain", 4: "drink-carton", 5: "hook", 6: "propeller",
    7: "shampoo-bottle", 8: "standing-bottle", 9: "tire", 10: "valve", 11: "wall",
}  # fmt: skip
WALL = 11


def instances(class_map: np.ndarray, per_class: bool = False, include_wall: bool = False):
    """Binary instance masks (N, H, W) from a class map: components per class (or whole classes)."""
    if class_map.ndim != 2:
        raise ValueError(f"expected a 2-D class map, got shape {class_map.shape}")
    unknown = set(np.unique(class_map).tolist()) - {0, *CLASSES}
    if unknown:
        raise ValueError(f"class map holds values {sorted(unknown)} outside 0..11")
    out = []
    for c in sorted(CLASSES):
        if c == WALL and not include_wall:
            continue
        m = class_map == c
        if not m.any():
            continue
        if per_class:
            out.append(m)
            continue
        comps, n = ndimage.label(m, structure=np.ones((3, 3), bool))
        out.extend(comps == k for k in range(1, n + 1))
    return np.stack(out) if out else np.zeros((0, *class_map.shape), bool)


def _frame(name: str) -> int:
    digits = re.findall(r"\d+", name)
    return int(digits[-1]) if digits else 0


def convert(
    source: Path,
    out: Path,
    seed: int = 0,
    per_class: bool = False,
    include_wall: bool = False,
    block: int = 1,
) -> dict[str, list[str]]:
    """``source`` holds Images/ and Masks/ of the watertank-segmentation release."""
    source = Path(source)
    images, masks = source / "Images", source / "Masks"
    if not images.is_dir() or not masks.is_dir():
        raise FileNotFoundError(f"{source} must hold Images/ and Masks/ (see the docstring)")
    pairs = []
    for img in sorted(images.glob("*.png")):
        mask = masks / img.name
        if not mask.is_file():
            raise FileNotFoundError(f"mask for {img.name} not found: {mask}")
        group = f"block{_frame(img.stem) // block}" if block > 1 else None
        pairs.append(Pair(img.stem, img, mask, group=group))
    info = {**INFO, "classes": CLASSES, "per_class": per_class, "include_wall": include_wall}
    return convert_pairs(
        out, pairs, info, seed=seed,
        mask_fn=lambda m: instances(m, per_class, include_wall),
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--source", type=Path, required=True)
    p.add_argument("--out", type=Path, default=data_dir() / NAME)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--per-class", action="store_true")
    p.add_argument("--include-wall", action="store_true")
    p.add_argument("--block", type=int, default=1, help="consecutive frames kept together")
    a = p.parse_args(argv)
    splits = convert(a.source, a.out, a.seed, a.per_class, a.include_wall, a.block)
    print(summary(NAME, splits, a.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
