"""SegRap2023 (the paper's "SEGRAP", head-and-neck CT, DSC) -> project layout (axial slices).

Source: Luo et al., "SegRap2023: A Benchmark of Organs-at-Risk and Gross Tumor Volume
Segmentation for Radiotherapy Planning of Nasopharyngeal Carcinoma", Medical Image Analysis
2025 (arXiv:2312.09576); challenge https://segrap2023.grand-challenge.org/ (Task001: 45
organs at risk, Task002: GTVp and GTVnd).

Fetch by hand (access is granted after registering and accepting the data agreement on the
challenge page; no public link or checksum): the 120 training cases, one folder per case,

    <images>/segrap_0000/image.nii.gz            (non-contrast CT; image_contrast.nii.gz too)
    <labels>/segrap_0000/<Structure>.nii.gz      one binary volume per structure ("one-hot")
    or <labels>/segrap_0000.nii.gz               one label volume per case

Conversion (MedSAM's preprocessing): CT window level 40 / width 400 HU (``--contrast`` uses
the contrast-enhanced CT instead), RAS+ orientation, axial foreground slices, 3-D components
< 1000 voxels and 2-D ones < 100 pixels removed. With one-hot labels, structure i (sorted
file names, listed in dataset.json "classes") is label i + 1; structures that overlap are
kept apart (TIFF mask stacks). Splits by case, 70/10/20, seeded.

    python data_scripts/prepare_segrap.py --images /raw/SegRap2023_Training_Set_120cases \
        --labels /raw/SegRap2023_Training_Set_120cases_OneHot_Labels/Task001 --out data/segrap
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cobot_lib.data.convert import Volume, convert_volumes, summary
from cobot_lib.data.demo import data_dir

NAME = "segrap"
INFO = {"name": "SegRap2023", "domain": "medical", "metric": "dsc", "paper_name": "SEGRAP"}
WINDOW = (40.0, 400.0)


def _structures(folder: Path) -> list[str]:
    return sorted(p.name[: -len(".nii.gz")] for p in folder.glob("*.nii.gz"))


def find_cases(images: Path, labels: Path, contrast: bool = False) -> tuple[list[Volume], dict]:
    """(cases, classes) from the case folders; every case must have the same structures."""
    images, labels = Path(images), Path(labels)
    fname = "image_contrast.nii.gz" if contrast else "image.nii.gz"
    cases, structures = [], None
    for folder in sorted(p for p in images.iterdir() if p.is_dir()):
        image = folder / fname
        if not image.is_file():
            raise FileNotFoundError(f"{image} not found (case folders hold {fname})")
        if (labels / folder.name).is_dir():  # one-hot: a file per structure
            names = _structures(labels / folder.name)
            if structures is None:
                structures = names
            elif names != structures:
                raise ValueError(
                    f"{labels / folder.name} holds other structures than the first case"
                )
            label = [labels / folder.name / f"{n}.nii.gz" for n in names]
        elif (labels / f"{folder.name}.nii.gz").is_file():
            label = labels / f"{folder.name}.nii.gz"
        else:
            raise FileNotFoundError(f"no labels for case {folder.name} in {labels}")
        cases.append(Volume(folder.name, image, label))
    if not cases:
        raise FileNotFoundError(f"no case folders in {images}")
    classes = {i + 1: n for i, n in enumerate(structures)} if structures else {}
    return cases, classes


def convert(
    images: Path,
    labels: Path,
    out: Path,
    seed: int = 0,
    contrast: bool = False,
    min_voxels_3d: int = 1000,
    min_pixels_2d: int = 100,
) -> dict[str, list[str]]:
    cases, classes = find_cases(images, labels, contrast)
    info = {**INFO, "classes": classes, "contrast_ct": contrast}
    return convert_volumes(
        out, cases, info, "ct", WINDOW, seed=seed,
        min_voxels_3d=min_voxels_3d, min_pixels_2d=min_pixels_2d,
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=Path, required=True)
    p.add_argument("--labels", type=Path, required=True)
    p.add_argument("--out", type=Path, default=data_dir() / NAME)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--contrast", action="store_true", help="use image_contrast.nii.gz")
    a = p.parse_args(argv)
    print(summary(NAME, convert(a.images, a.labels, a.out, a.seed, a.contrast), a.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
