"""NWPU VHR-10 with instance masks (the paper's "NWPU", remote sensing, mIoU) -> project layout.

Sources:
* images: Cheng, Zhou and Han, "Learning rotation-invariant convolutional neural networks for
  object detection in VHR optical remote sensing images", TGRS 2016 (and Cheng et al. 2014,
  2016, the paper's refs [7-9]); 800 images, of which the 650 of the "positive image set"
  hold the 3,775 annotated objects of 10 classes. Distributed by the authors through Google
  Drive: https://drive.google.com/open?id=1--foZ3dV5OCsqXQXT84UeKtrAqc5CkAE
* instance masks: Su et al., "Object detection and instance segmentation in remote sensing
  imagery based on precise Mask R-CNN", IGARSS 2019, as COCO JSON:
  https://github.com/chaozhong2010/VHR-10_dataset_coco
  (file ``NWPU VHR-10_dataset_coco/annotations.json``)

Fetch by hand (Google Drive has no stable direct link or published checksum): download the
image archive and the annotations.json above, and arrange them as the mask repository does:

    <source>/positive image set/001.jpg ... 650.jpg
    <source>/annotations.json

Conversion: the COCO JSON is kept (polygons); images are copied to <out>/images.
Splits: no official split exists; images are split 70/10/20 into train/val/test (seeded).

    python data_scripts/prepare_nwpu.py --source "/data/raw/NWPU VHR-10_dataset_coco" \
        --out data/nwpu
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cobot_lib.data.convert import CocoSource, convert_coco, summary
from cobot_lib.data.demo import data_dir

NAME = "nwpu"
INFO = {"name": "NWPU VHR-10 (instance masks of Su et al.)", "domain": "remote_sensing",
        "metric": "miou", "paper_name": "NWPU"}  # fmt: skip


def convert(
    source: Path, out: Path, seed: int = 0, annotations: Path | None = None
) -> dict[str, list[str]]:
    """``source`` holds ``positive image set/`` and ``annotations.json``."""
    source = Path(source)
    images = source / "positive image set"
    if not images.is_dir():
        raise FileNotFoundError(
            f"{images} not found: see this script's docstring for what to fetch and how to "
            "arrange it"
        )
    src = CocoSource(Path(annotations) if annotations else source / "annotations.json", images)
    return convert_coco(out, [src], INFO, fractions={"train": 0.7, "val": 0.1, "test": 0.2},
                        seed=seed, image_mode="copy")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--source", type=Path, required=True)
    p.add_argument(
        "--annotations", type=Path, default=None, help="default <source>/annotations.json"
    )
    p.add_argument("--out", type=Path, default=data_dir() / NAME)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    print(summary(NAME, convert(a.source, a.out, a.seed, a.annotations), a.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
