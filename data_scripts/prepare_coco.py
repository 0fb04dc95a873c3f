"""COCO 2017 instances (the paper's "COCO", natural images, mIoU) -> project layout.

Source: Lin et al., "Microsoft COCO: Common Objects in Context", ECCV 2014;
https://cocodataset.org (annotations CC BY 4.0; images under their Flickr licences).
Downloaded here from the official host, each archive verified by its MD5 (the values the
COCO download page's files have carried since 2017, recorded in torchvision, mmdetection and
PaddleDetection):

    http://images.cocodataset.org/zips/train2017.zip                    (18 GB)
    http://images.cocodataset.org/zips/val2017.zip                      (778 MB)
    http://images.cocodataset.org/annotations/annotations_trainval2017.zip

Conversion: ``annotations/instances_{train,val}2017.json`` are merged into
<out>/annotations.json (polygons and RLE kept as they are; crowd regions are skipped by the
loader); images are symlinked (``--copy`` to copy) as <out>/images/<id>.jpg.
Splits (the paper does not give its own): val2017 is the test split; train2017 is split into
train and val (5% of images, seeded). ``--train-limit`` / ``--test-limit`` keep a seeded random
subset of images, e.g. for a GPU budget smaller than all 118k training images.

    python data_scripts/prepare_coco.py --download /data/raw/coco --out data/coco
    python data_scripts/prepare_coco.py --source /data/raw/coco --out data/coco --train-limit 5000
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cobot_lib.data.convert import CocoSource, convert_coco, summary
from cobot_lib.data.demo import data_dir
from cobot_lib.data.download import download, extract

NAME = "coco"
INFO = {"name": "COCO 2017", "domain": "natural", "metric": "miou", "paper_name": "COCO"}
FILES = {
    "train2017.zip": ("http://images.cocodataset.org/zips/train2017.zip",
                      "cced6f7f71b7629ddf16f17bbcfab6b2"),
    "val2017.zip": ("http://images.cocodataset.org/zips/val2017.zip",
                    "442b8da7639aecaf257c1dceb8ba8c80"),
    "annotations_trainval2017.zip": (
        "http://images.cocodataset.org/annotations/annotations_trainval2017.zip",
        "f4bbac642086de4f52a3fdda2de5fa2c"),
}  # fmt: skip


def fetch(raw: Path) -> Path:
    """Download and extract the three archives into ``raw`` (verified by MD5)."""
    for fname, (url, md5) in FILES.items():
        archive = download(url, raw / fname, md5=md5)
        marker = raw / f".{fname}.extracted"
        if not marker.is_file():
            extract(archive, raw)
            marker.touch()
    return raw


def convert(
    source: Path,
    out: Path,
    seed: int = 0,
    train_limit: int | None = None,
    test_limit: int | None = None,
    copy: bool = False,
) -> dict[str, list[str]]:
    """``source`` holds annotations/, train2017/ and val2017/ as extracted from the archives."""
    source = Path(source)
    sources = [
        CocoSource(source / "annotations" / "instances_train2017.json", source / "train2017",
                   split=None, limit=train_limit),
        CocoSource(source / "annotations" / "instances_val2017.json", source / "val2017",
                   split="test", limit=test_limit),
    ]  # fmt: skip
    return convert_coco(out, sources, INFO, fractions={"train": 0.95, "val": 0.05}, seed=seed,
                        image_mode="copy" if copy else "symlink")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--source", type=Path, help="extracted official download")
    where.add_argument("--download", type=Path, metavar="RAW", help="fetch into RAW first")
    p.add_argument("--out", type=Path, default=data_dir() / NAME)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train-limit", type=int, default=None)
    p.add_argument("--test-limit", type=int, default=None)
    p.add_argument("--copy", action="store_true", help="copy images instead of symlinking")
    a = p.parse_args(argv)
    source = fetch(a.download) if a.download else a.source
    splits = convert(source, a.out, a.seed, a.train_limit, a.test_limit, a.copy)
    print(summary(NAME, splits, a.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
