"""SegRap2023 (the paper's "SEGRAP", head-and-neck CT, DSC) -> project layout (axial slices).

Source: Luo et al., "SegRap2023: A Benchmark of Organs-at-Risk and Gross Tumor Volume
Segmentation for Radiotherapy Planning of Nasopharyngeal Carcinoma", Medical Image Analysis
101:103447, 2025 (arXiv:2312.09576); challenge https://segrap2023.grand-challenge.org/, code and
label tables https://github.com/HiLab-git/SegRap2023. Task001: 45 organs at risk (OARs);
Task002: the gross tumour volumes GTVp and GTVnd.

Fetch by hand (no checksum is published): the 120 training cases are linked (Google Drive,
Baidu Pan) from https://github.com/openmedlab/dataset/blob/main/SegRap2023.md and the
challenge page; the 20 validation and 60 test cases have no public labels. The archives
unpack as below: the case folders and CT names as HiLab-git/SegRap2023's
``Tutorial/nnunet_baseline.ipynb`` reads them, a one-hot volume per case and task as its
``Tutorial/preprocessing.py`` reads them, and the per-structure files as public loaders read
them (docs/DATASETS.md names them):

    SegRap2023_Training_Set_120cases/segrap_0000/image.nii.gz           non-contrast CT
                                                 image_contrast.nii.gz  contrast-enhanced CT
                                                 Brain.nii.gz ... Trachea.nii.gz  45 OARs
                                                 GTVp.nii.gz, GTVnd.nii.gz        2 GTVs
    SegRap2023_Training_Set_120cases_OneHot_Labels/Task001/segrap_0000.nii.gz  54 sub-labels
                                                   Task002/segrap_0000.nii.gz  1 GTVp, 2 GTVnd
    SegRap2023_Training_Set_120cases_Update_Labels/segrap_0000/<OAR>.nii.gz    corrected OARs

Labels (``--labels``): by default the case folders themselves, whose structure files are read
by name (so image.nii.gz is never a structure, and the GTVs are not OARs); or another folder of
per-structure case folders (the Update_Labels release); or the task's one-hot folder, one
volume per case whose 54 (Task001) sub-labels are decoded with the challenge's own table
(``SUBLABELS_OAR``, from ``Tutorial/postprocessing.py``) into the same 45 organs. Organs
overlap (the lens lies in the eye, the hippocampus in the temporal lobe and brain), so each
slice's structures are kept apart (TIFF stacks); class i is the i-th name of the task.

Conversion: CT window level 40 / width 400 HU (``--contrast`` uses the contrast-enhanced CT),
RAS+ orientation, axial foreground slices. MedSAM's 1000-voxel / 100-pixel filters would erase
lens, cochlea, chiasm and pituitary (millimetres to a centimetre across, on 3 mm slices), so
the defaults here only drop specks: 3-D components < 20 voxels and 2-D ones < 10 pixels
(``--min-voxels-3d``, ``--min-pixels-2d``). A case whose label and image disagree (shape,
affine) is skipped and reported. Splits by case, 70/10/20, seeded (the challenge's
validation and test labels are not public). Memory: a case is held as one boolean volume
per structure, 45 times the CT's voxel count in bytes (about 1.4 GB for 512 x 512 x 120).

    python data_scripts/prepare_segrap.py --images /raw/SegRap2023_Training_Set_120cases \
        --out data/segrap
    python data_scripts/prepare_segrap.py --images /raw/SegRap2023_Training_Set_120cases \
        --labels /raw/SegRap2023_Training_Set_120cases_OneHot_Labels/Task001 --out data/segrap
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from cobot_lib.data.convert import Volume, convert_volumes, summary
from cobot_lib.data.demo import data_dir

NAME = "segrap"
INFO = {"name": "SegRap2023", "domain": "medical", "metric": "dsc", "paper_name": "SEGRAP"}
WINDOW = (40.0, 400.0)
MIN_VOXELS_3D = 20
MIN_PIXELS_2D = 10
CASE = re.compile(r"segrap_\d+")

# Task001: each organ at risk and the one-hot sub-labels it is made of (HiLab-git/SegRap2023,
# Tutorial/postprocessing.py, ``segrap_subset_task001``); the order is the challenge's.
SUBLABELS_OAR: dict[str, tuple[int, ...]] = {
    "Brain": (1, 2, 3, 4, 5, 6, 7, 8, 9), "BrainStem": (2,), "Chiasm": (3,),
    "TemporalLobe_L": (4, 6), "TemporalLobe_R": (5, 7),
    "Hippocampus_L": (8, 6), "Hippocampus_R": (9, 7),
    "Eye_L": (10, 12), "Eye_R": (11, 13), "Lens_L": (12,), "Lens_R": (13,),
    "OpticNerve_L": (14,), "OpticNerve_R": (15,),
    "MiddleEar_L": (18, 16, 20, 24, 28, 30), "MiddleEar_R": (19, 17, 21, 25, 29, 31),
    "IAC_L": (18,), "IAC_R": (19,),
    "TympanicCavity_L": (22, 20), "TympanicCavity_R": (23, 21),
    "VestibulSemi_L": (26, 24), "VestibulSemi_R": (27, 25),
    "Cochlea_L": (28,), "Cochlea_R": (29,), "ETbone_L": (32, 30), "ETbone_R": (33, 31),
    "Pituitary": (34,), "OralCavity": (35,), "Mandible_L": (36,), "Mandible_R": (37,),
    "Submandibular_L": (38,), "Submandibular_R": (39,), "Parotid_L": (40,), "Parotid_R": (41,),
    "Mastoid_L": (42,), "Mastoid_R": (43,), "TMjoint_L": (44,), "TMjoint_R": (45,),
    "SpinalCord": (46,), "Esophagus": (47,), "Larynx": (48, 49, 50, 51),
    "Larynx_Glottic": (49,), "Larynx_Supraglot": (50,), "PharynxConst": (51, 52),
    "Thyroid": (53,), "Trachea": (54,),
}  # fmt: skip
# Task002 (``segrap_subset_task002``): one sub-label per tumour volume.
SUBLABELS_GTV: dict[str, tuple[int, ...]] = {"GTVp": (1,), "GTVnd": (2,)}
TASKS = {"oar": SUBLABELS_OAR, "gtv": SUBLABELS_GTV}


def _label_of(labels: Path, case: str, names: list[str]) -> Path | list[Path]:
    """The case's one-hot volume, or its per-structure files in the task's order."""
    if (labels / case).is_dir():
        return [labels / case / f"{n}.nii.gz" for n in names]
    if (labels / f"{case}.nii.gz").is_file():
        return labels / f"{case}.nii.gz"
    raise FileNotFoundError(
        f"no labels for case {case} in {labels}: expected a folder {case}/ of structure files "
        f"or a one-hot volume {case}.nii.gz"
    )


def find_cases(
    images: Path, labels: Path | None = None, task: str = "oar", contrast: bool = False
) -> list[Volume]:
    """The cases of ``images`` with their labels; every missing file is named before any work."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {sorted(TASKS)}, got {task!r}")
    images = Path(images)
    labels = Path(labels) if labels is not None else images
    for folder, what in ((images, "--images"), (labels, "--labels")):
        if not folder.is_dir():
            raise FileNotFoundError(f"{what} folder not found: {folder}")
    names = list(TASKS[task])
    fname = "image_contrast.nii.gz" if contrast else "image.nii.gz"
    cases, missing = [], []
    for folder in sorted(p for p in images.iterdir() if p.is_dir() and CASE.fullmatch(p.name)):
        label = _label_of(labels, folder.name, names)
        wanted = [folder / fname, *(label if isinstance(label, list) else [label])]
        missing += [str(p) for p in wanted if not p.is_file()]
        cases.append(Volume(folder.name, folder / fname, label))
    if not cases:
        raise FileNotFoundError(f"no case folders segrap_<n> in {images}")
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} files of the {task} task are missing, e.g. {missing[:3]} (each "
            f"case folder holds {fname} and one <Structure>.nii.gz per structure)"
        )
    return cases


def convert(
    images: Path,
    out: Path,
    labels: Path | None = None,
    task: str = "oar",
    seed: int = 0,
    contrast: bool = False,
    min_voxels_3d: int = MIN_VOXELS_3D,
    min_pixels_2d: int = MIN_PIXELS_2D,
) -> dict[str, list[str]]:
    """Convert the cases; a one-hot label volume is decoded with the task's sub-label table."""
    cases = find_cases(images, labels, task, contrast)
    table = TASKS[task]
    groups = {i + 1: sub for i, sub in enumerate(table.values())}
    kinds = {isinstance(c.label, list) for c in cases}
    if len(kinds) > 1:
        raise ValueError(f"{labels} mixes one-hot volumes and structure folders; give one kind")
    one_hot = kinds == {False}
    info = {
        **INFO, "task": task, "classes": {i + 1: n for i, n in enumerate(table)},
        "contrast_ct": contrast, "labels_from": "one-hot volumes" if one_hot else "structure files",
    }  # fmt: skip
    return convert_volumes(
        out, cases, info, "ct", WINDOW, seed=seed,
        min_voxels_3d=min_voxels_3d, min_pixels_2d=min_pixels_2d,
        label_groups=groups if one_hot else None,
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=Path, required=True, help="SegRap2023_Training_Set_120cases")
    p.add_argument("--labels", type=Path, default=None, help="default: the case folders")
    p.add_argument("--task", choices=sorted(TASKS), default="oar")
    p.add_argument("--out", type=Path, default=data_dir() / NAME)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--contrast", action="store_true", help="use image_contrast.nii.gz")
    p.add_argument("--min-voxels-3d", type=int, default=MIN_VOXELS_3D)
    p.add_argument("--min-pixels-2d", type=int, default=MIN_PIXELS_2D)
    a = p.parse_args(argv)
    splits = convert(a.images, a.out, a.labels, a.task, a.seed, a.contrast,
                     a.min_voxels_3d, a.min_pixels_2d)  # fmt: skip
    print(summary(NAME, splits, a.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
