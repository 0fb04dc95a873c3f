"""Medical Segmentation Decathlon tasks (the paper's "SPLEN" and "MOMO", medical, DSC) -> layout.

Source: Antonelli et al., "The Medical Segmentation Decathlon", Nature Communications 13:4128,
2022; http://medicaldecathlon.com (CC BY-SA 4.0). SPLEN is Task09_Spleen (CT, label 1 =
spleen). The paper names "MOMO" only as an MSD set; which task it is cannot be read from the
paper, so this script does not guess: choose it with ``--task`` (MOMO's name suggests a
multi-modal MR task such as Task05_Prostate, an assumption to state with any result).

Download: the task archives are mirrored by MONAI on AWS and verified here by the MD5 values
MONAI's ``DecathlonDataset`` uses (``--download``); or fetch them from medicaldecathlon.com by
hand and give the extracted ``TaskXX_Name`` folder as ``--source``. Its layout:

    TaskXX_Name/dataset.json, imagesTr/<case>.nii.gz, labelsTr/<case>.nii.gz

Conversion (MedSAM's preprocessing): CT is windowed at level 40 / width 400 HU (``--window``
to change it, e.g. -600 1500 for lung), MR normalised to its 0.5-99.5 percentiles; 4-D
multi-modal volumes use modality ``--channel`` (default 0, e.g. T2 for Prostate); RAS+
orientation; axial foreground slices; each label value of a slice is one instance; 3-D
components < 1000 voxels and 2-D ones < 100 pixels removed (``--min-voxels-3d``,
``--min-pixels-2d``). Only the labelled training cases
(imagesTr) are used; macOS "._" files are ignored. Splits by case, 70/10/20, seeded.

    python data_scripts/prepare_msd.py --task Task09_Spleen --download /data/raw/msd \
        --out data/spleen
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from cobot_lib.data.convert import Volume, convert_volumes, summary
from cobot_lib.data.demo import data_dir
from cobot_lib.data.download import download, extract

MIRROR = "https://msd-for-monai.s3-us-west-2.amazonaws.com/"
MD5 = {
    "Task01_BrainTumour": "240a19d752f0d9e9101544901065d872",
    "Task02_Heart": "06ee59366e1e5124267b774dbd654057",
    "Task03_Liver": "a90ec6c4aa7f6a3d087205e23d4e6397",
    "Task04_Hippocampus": "9d24dba78a72977dbd1d2e110310f31b",
    "Task05_Prostate": "35138f08b1efaef89d7424d2bcc928db",
    "Task06_Lung": "8afd997733c7fc0432f71255ba4e52dc",
    "Task07_Pancreas": "4f7080cfca169fa8066d17ce6eb061e4",
    "Task08_HepaticVessel": "641d79e80ec66453921d997fbf12a29c",
    "Task09_Spleen": "410d4a301da4e5b2f6f86ec3ddba524e",
    "Task10_Colon": "bad7a188931dc2f6acf72b08eb6202d0",
}


def fetch(task: str, raw: Path) -> Path:
    """Download and extract one task archive (MD5-verified); returns the task folder."""
    archive = download(MIRROR + f"{task}.tar", Path(raw) / f"{task}.tar", md5=MD5[task])
    if not (Path(raw) / task / "dataset.json").is_file():
        extract(archive, raw)
    return Path(raw) / task


def task_info(source: Path) -> dict:
    """The task's own dataset.json (name, modality, labels)."""
    path = Path(source) / "dataset.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: give the extracted TaskXX_Name folder")
    return json.loads(path.read_text())


def convert(
    source: Path,
    out: Path,
    seed: int = 0,
    window: tuple[float, float] = (40.0, 400.0),
    channel: int = 0,
    min_voxels_3d: int = 1000,
    min_pixels_2d: int = 100,
) -> dict[str, list[str]]:
    source = Path(source)
    meta = task_info(source)
    modalities = [str(v).upper() for v in dict(meta.get("modality", {})).values()]
    if not modalities:
        raise ValueError(f"{source / 'dataset.json'} names no modality")
    modality = "ct" if modalities[min(channel, len(modalities) - 1)] == "CT" else "mr"
    cases = []
    for img in sorted((source / "imagesTr").glob("*.nii.gz")):
        if img.name.startswith("._"):
            continue
        label = source / "labelsTr" / img.name
        if not label.is_file():
            raise FileNotFoundError(f"label for {img.name} not found: {label}")
        case = img.name[: -len(".nii.gz")]
        cases.append(Volume(case, img, label, channel=channel if len(modalities) > 1 else None))
    if not cases:
        raise FileNotFoundError(f"no training volumes in {source / 'imagesTr'}")
    task = source.name
    info = {
        "name": f"MSD {task}", "domain": "medical", "metric": "dsc",
        "paper_name": "SPLEN" if task == "Task09_Spleen" else "MOMO (task chosen by the user)",
        "classes": meta.get("labels", {}), "msd_modality": meta.get("modality", {}),
        "channel": channel,
    }  # fmt: skip
    return convert_volumes(
        out, cases, info, modality, window, seed=seed,
        min_voxels_3d=min_voxels_3d, min_pixels_2d=min_pixels_2d,
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--task", choices=sorted(MD5), required=True)
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--source", type=Path, help="the extracted TaskXX_Name folder")
    where.add_argument("--download", type=Path, metavar="RAW", help="fetch into RAW first")
    p.add_argument("--out", type=Path, default=None, help="default <data>/msd_<task>")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--window", type=float, nargs=2, default=(40.0, 400.0), metavar=("LEVEL", "WIDTH")
    )
    p.add_argument("--channel", type=int, default=0)
    p.add_argument("--min-voxels-3d", type=int, default=1000)
    p.add_argument("--min-pixels-2d", type=int, default=100)
    a = p.parse_args(argv)
    source = fetch(a.task, a.download) if a.download else a.source
    if source.name != a.task:
        p.error(f"--source {source} is not the {a.task} folder")
    out = a.out or data_dir() / f"msd_{a.task.lower()}"
    splits = convert(source, out, a.seed, tuple(a.window), a.channel, a.min_voxels_3d,
                     a.min_pixels_2d)  # fmt: skip
    print(summary(a.task, splits, out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
