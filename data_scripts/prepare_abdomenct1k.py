"""AbdomenCT-1K (the paper's "ADOME", medical CT, DSC) -> project layout (axial slices).

Source: Ma et al., "AbdomenCT-1K: Is Abdominal Organ Segmentation a Solved Problem?", IEEE
TPAMI 44(10):6695-6714, 2022; https://github.com/JunMa11/AbdomenCT-1K (its README leads to the
data through a usage form). The archives are on Zenodo, records 5903099 (ImagePart1), 5903846
(ImagePart2) and 5903769 (ImagePart3 and Mask.7z); their SHA-256 values below are the ones the
torch-em loader (constantinpape/torch-em, ``torch_em/data/datasets/medical/abdomenct_1k.py``)
verifies. 1,000 cases have public masks (1 liver, 2 kidney, 3 spleen, 4 pancreas).

Fetch: ``--download RAW`` fetches the four archives into RAW, verifies each against its
SHA-256 (an archive already there is verified, not fetched again) and extracts the three image
zips; Mask.7z needs the 7-Zip tool (``7z x RAW/Mask.7z -oRAW/Mask``), which the script asks
for when RAW/Mask is missing. Or fetch by hand and give the folders. The layout:

    AbdomenCT-1K-ImagePart1/Case_00001_0000.nii.gz ...   (also ImagePart2, ImagePart3)
    Mask/Case_00001.nii.gz ...

Conversion (MedSAM's preprocessing): CT window level 40 / width 400 HU, RAS+ orientation,
axial slices with foreground only, 3-D components < 1000 voxels and 2-D components < 100
pixels removed (``--min-voxels-3d``, ``--min-pixels-2d``; MedSAM's values suit these large
organs); each organ of a slice is one instance (its label value). Cases without a mask are
left out; a case whose mask does not match its image (shape, affine) is skipped, warned about
and listed in dataset.json ("skipped_cases"), and the rest converts. Splits: by case (never by
slice), 70/10/20 train/val/test, seeded; ``--max-cases`` keeps a seeded random subset.

    python data_scripts/prepare_abdomenct1k.py --download /raw/abdomenct1k --out data/abdomenct1k
    python data_scripts/prepare_abdomenct1k.py --images /raw/AbdomenCT-1K-ImagePart1 \
        /raw/AbdomenCT-1K-ImagePart2 /raw/AbdomenCT-1K-ImagePart3 --masks /raw/Mask \
        --out data/abdomenct1k
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from cobot_lib.data.convert import Volume, convert_volumes, summary
from cobot_lib.data.demo import data_dir
from cobot_lib.data.download import download, extract

NAME = "abdomenct1k"
INFO = {"name": "AbdomenCT-1K", "domain": "medical", "metric": "dsc", "paper_name": "ADOME",
        "classes": {1: "liver", 2: "kidney", 3: "spleen", 4: "pancreas"}}  # fmt: skip
WINDOW = (40.0, 400.0)
MIN_VOXELS_3D = 1000
MIN_PIXELS_2D = 100
ZENODO = "https://zenodo.org/records/{record}/files/{name}?download=1"
ARCHIVES = {  # name: (Zenodo record, SHA-256 as verified by torch-em)
    "AbdomenCT-1K-ImagePart1.zip": (
        5903099, "3d0d8edd2a8777f8807c6715f633e2fea104f16a8514572664021ed88f97cd03"),
    "AbdomenCT-1K-ImagePart2.zip": (
        5903846, "3178bd3021dfed0440c4dc269b7f3125b27b60aec96e81b210d7c4c55d0fe894"),
    "AbdomenCT-1K-ImagePart3.zip": (
        5903769, "76bf789589a13ca1aef9b9c8b771f05c165e6d2013284bbfdb4c4656d4931c30"),
    "Mask.7z": (5903769, "cefa7cab51fb0781876550b032278ca6a1ed2a8c776c8567410ea2b2a6984e50"),
}  # fmt: skip


def fetch(raw: Path, progress: bool = True) -> tuple[list[Path], Path]:
    """Download (or verify) the archives into ``raw``, extract the image zips; the folders."""
    raw = Path(raw)
    for name, (record, sha256) in ARCHIVES.items():
        archive = download(ZENODO.format(record=record, name=name), raw / name, sha256=sha256,
                           progress=progress)  # fmt: skip
        folder = raw / name[: -len(".zip")]
        if name.endswith(".zip") and not folder.is_dir():
            extract(archive, raw)
    masks = raw / "Mask"
    if not any(masks.glob("Case_*.nii.gz")):
        raise FileNotFoundError(
            f"no masks in {masks}: extract the verified {raw / 'Mask.7z'} with 7-Zip "
            f"(7z x {raw / 'Mask.7z'} -o{masks}) and run again"
        )
    return [d for d in sorted(raw.glob("AbdomenCT-1K-ImagePart*")) if d.is_dir()], masks


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
    min_voxels_3d: int = MIN_VOXELS_3D,
    min_pixels_2d: int = MIN_PIXELS_2D,
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
    p.add_argument("--images", type=Path, nargs="+", help="the extracted ImagePart folders")
    p.add_argument("--masks", type=Path, help="the extracted Mask folder")
    p.add_argument("--download", type=Path, metavar="RAW", help="fetch and verify into RAW")
    p.add_argument("--out", type=Path, default=data_dir() / NAME)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-cases", type=int, default=None)
    p.add_argument("--min-voxels-3d", type=int, default=MIN_VOXELS_3D)
    p.add_argument("--min-pixels-2d", type=int, default=MIN_PIXELS_2D)
    a = p.parse_args(argv)
    if (a.download is None) == (a.images is None or a.masks is None):
        p.error("give --download RAW, or --images and --masks")
    images, masks = fetch(a.download) if a.download else (a.images, a.masks)
    splits = convert(images, masks, a.out, a.seed, a.max_cases, a.min_voxels_3d,
                     a.min_pixels_2d)  # fmt: skip
    print(summary(NAME, splits, a.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
