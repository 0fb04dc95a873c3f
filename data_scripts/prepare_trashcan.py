"""TrashCan 1.0 (the paper's "TRCAN", natural underwater images, mIoU) -> project layout.

Source: Hong, Fulton and Sattar, "TrashCan: A Semantically-Segmented Dataset towards Visual
Detection of Marine Debris", arXiv:2007.08097, 2020; Data Repository for the University of
Minnesota, https://conservancy.umn.edu/handle/11299/214865 (DOI 10.13020/g1gx-y834).

Fetch by hand (no checksum is published, so this script does not download it): open the page
above, download ``dataset.zip`` and extract it. It holds two labelings of the same 7,212
images; the paper does not say which it used, this script takes the instance version by
default (``--version material`` for the other):

    dataset/instance_version/instances_train_trashcan.json   + train/*.jpg
    dataset/instance_version/instances_val_trashcan.json     + val/*.jpg

Conversion: COCO JSON kept (polygons), merged into <out>/annotations.json; images copied.
Splits: the official val set is the test split; the official train set is split into train
and val (10% of images, seeded).

    python data_scripts/prepare_trashcan.py --source /data/raw/trashcan/dataset --out data/trashcan
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cobot_lib.data.convert import CocoSource, convert_coco, summary
from cobot_lib.data.demo import data_dir

NAME = "trashcan"
INFO = {"name": "TrashCan 1.0", "domain": "natural", "metric": "miou", "paper_name": "TRCAN"}


def convert(
    source: Path, out: Path, seed: int = 0, version: str = "instance"
) -> dict[str, list[str]]:
    """``source`` is the extracted ``dataset`` folder."""
    if version not in ("instance", "material"):
        raise ValueError(f"version must be 'instance' or 'material', got {version!r}")
    root = Path(source) / f"{version}_version"
    if not root.is_dir():
        raise FileNotFoundError(
            f"{root} not found: extract dataset.zip from "
            "https://conservancy.umn.edu/handle/11299/214865 and give its dataset/ folder"
        )
    sources = [
        CocoSource(root / "instances_train_trashcan.json", root / "train", split=None),
        CocoSource(root / "instances_val_trashcan.json", root / "val", split="test"),
    ]
    info = {**INFO, "version": version}
    return convert_coco(out, sources, info, fractions={"train": 0.9, "val": 0.1}, seed=seed,
                        image_mode="copy")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--source", type=Path, required=True, help="the extracted dataset/ folder")
    p.add_argument("--out", type=Path, default=data_dir() / NAME)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--version", choices=["instance", "material"], default="instance")
    a = p.parse_args(argv)
    print(summary(NAME, convert(a.source, a.out, a.seed, a.version), a.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
