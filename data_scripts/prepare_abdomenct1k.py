"""AbdomenCT-1K (the paper's "ADOME", medical CT, DSC) -> project layout (axial slices).

Source: Ma et al., "AbdomenCT-1K: Is Abdominal Organ Segmentation a Solved Problem?", IEEE
TPAMI 44(10):6695-6714, 2022; https://github.com/JunMa11/AbdomenCT-1K (the README links the
image parts and the masks on Zenodo and Google Drive; CC BY-NC-SA 4.0).

Fetch by hand (several multi-GB parts, checksums not published in the repository): download
the image parts (``AbdomenCT-1K-ImagePart1/2/3``, files ``Case_00001_0000.nii.gz``) and the
masks (``Mask/Case_00001.nii.gz``; labels 1 liver, 2 kidney, 3 spleen, 4 pancreas) and extract
them. Give every image folder with ``--images`` and the mask folder with ``--masks``.

Conversion (MedSAM's preprocessing): CT window level 40 / width 400 HU, RAS+ orientation,
axial slices with foreground only, 3-D components < 1000 voxels and 2-D components < 100
pixels removed; each organ of a slice is one instance (its label value). Cases without a mask
are left out. Splits: by case (never by slice), 70/10/20 train/val/test, seeded;
``--max-cases`` keeps a seeded random subset of cases.

    python data_scripts/prepare_abdomenct1k.py --images /raw/ImagePart1 /raw/ImagePart2 \
        /raw/ImagePart3 --masks /raw/Mask --out data/abdomenct1k
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from cobot_lib.data.convert import Volume, convert_volumes, summary
from cobot_lib.data.demo import data_dir

NAME = "abdomenct1k"
INFO = {"name": "AbdomenCT-1K", "domain": "medical", "metric": "dsc", "paper_name": "ADOME",
        "classes": {1: "liver", 2: "kidney", 3: "spleen", 4: "pancreas"}}  # fmt: skip
WINDOW = (40.0, 400.0)


def find_cases(images: list[Path], masks: Path) -> list[Volume]:
    """Cases that have both an image (``<case>_0000.nii.gz``) and a mask (``<case>.nii.gz``)."""
    found: dict[str, Path] = {}
    for folder in images:
        if not Path(folder).is_dir():
            raise FileNotFoundError(f"image folder not found: {folder}")
        for f in sorted(Path(folder).glob("*_0000.nii.gz")):
            found[f.name[: -len("_0000.nii.gz")]] = f
    if not Path(masks).is_dir():
        raise FileNotFoundError(f"mask folder not found: {masks}")
    cases = [Volume(c, found[c], Path(masks) / f"{c}.nii.gz") for c in sorted(found)
             if (Path(masks) / f"{c}.nii.gz").is_file()]  # fmt: skip
    if not cases:
        raise FileNotFoundError(f"no case has both an image in {images} and a mask in {masks}")
    return cases


def convert(
    images: list[Path],
    masks: Path,
    out: Path,
    seed: int = 0,
    max_cases: int | None = None,
    min_voxels_3d: int = 1000,
    min_pixels_2d: int = 100,
) -> dict[str, list[str]]:
    cases = find_cases(images, masks)
    if max_cases is not None and max_cases < len(cases):
        pick = np.sort(np.random.default_rng(seed).permutation(len(cases))[:max_cases])
        cases = [cases[i] for i in pick]
    return convert_volumes(
        out, cases, INFO, "ct", WINDOW, seed=seed,
        min_voxels_3d=min_voxels_3d, min_pixels_2d=min_pixels_2d,
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=Path, nargs="+", required=True)
    p.add_argument("--masks", type=Path, required=True)
    p.add_argument("--out", type=Path, default=data_dir() / NAME)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-cases", type=int, default=None)
    a = p.parse_args(argv)
    print(summary(NAME, convert(a.images, a.masks, a.out, a.seed, a.max_cases), a.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
