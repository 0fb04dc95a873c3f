"""Marine debris forward-looking sonar (the paper's "SONAR", remote sensing, mIoU) -> layout.

Source: Singh and Valdenegro-Toro, "The Marine Debris Dataset for Forward-Looking Sonar
Semantic Segmentation", ICCV Workshops 2021;
https://github.com/mvaldenegro/marine-debris-fls-datasets, folder
``md_fls_dataset/data/watertank-segmentation``: 1,868 ARIS Explorer 3000 frames,

    Images/marine-debris-aris3k-<n>.png          the sonar frame (480 x 320, grey)
    Masks/marine-debris-aris3k-<n>.png           class map 0..11 (written with three equal
                                                 channels by Labelling/Scripts/genMasks_int.py)
    BoxAnnotations/marine-debris-aris3k-<n>.xml  one <object> per object: <name> (Bottle, Can,
                                                 ..., Wall) and <bndbox> x, y, w, h in pixels

classes 1 bottle, 2 can, 3 chain, 4 drink-carton, 5 hook, 6 propeller, 7 shampoo-bottle,
8 standing-bottle, 9 tire, 10 valve, 11 wall. Fetch by hand (a git branch has no checksum):
``git clone --depth 1 https://github.com/mvaldenegro/marine-debris-fls-datasets`` and give
``.../md_fls_dataset/data/watertank-segmentation`` as ``--source``.

Protocol: SAM-COBOT follows SonarSAM (Wang et al., "When SAM Meets Sonar Images",
arXiv:2306.14109; https://github.com/wangsssky/SonarSAM) for this set. As in SonarSAM's
box-prompt loader (``dataloader/data_loader.py``, ``SAM_DebrisDataset``) each box of
BoxAnnotations is one instance whose mask is the pixels of the box's class inside the box, and
the Wall boxes are kept (``--drop-wall`` leaves them out). The split is SonarSAM's published
one (``dataset/marine_debris/{train,val,test}.txt``: 1,120 / 374 / 374 frames), shipped in
``data_scripts/splits/sonarsam`` (Apache-2.0, see its README); ``--split-lists`` reads the three
files from another folder. ``--instances components`` makes each 8-connected component of each
class of the mask an instance instead (no boxes). Instances under ``--min-pixels`` (default 1:
only boxes with no pixel of their class) are dropped and counted; frames left without an
instance are left out. dataset.json records each image's instance classes.

    python data_scripts/prepare_sonar.py --source /raw/watertank-segmentation --out data/sonar
"""

from __future__ import annotations

import argparse
import sys
import xml.etree.ElementTree as ET
from functools import partial
from pathlib import Path
from typing import NamedTuple

import numpy as np
from scipy import ndimage

from cobot_lib.data.convert import Pair, convert_pairs, summary
from cobot_lib.data.demo import data_dir
from cobot_lib.data.layout import read_dataset_json
from cobot_lib.data.readers import read_mask

NAME = "sonar"
INFO = {"name": "Marine debris FLS (watertank segmentation)", "domain": "remote_sensing",
        "metric": "miou", "paper_name": "SONAR"}  # fmt: skip
CLASSES = {
    1: "bottle", 2: "can", 3: "chain", 4: "drink-carton", 5: "hook", 6: "propeller",
    7: "shampoo-bottle", 8: "standing-bottle", 9: "tire", 10: "valve", 11: "wall",
}  # fmt: skip
CLASS_ID = {n: k for k, n in CLASSES.items()}
WALL = 11
SONARSAM_SPLITS = Path(__file__).resolve().parent / "splits" / "sonarsam"
SPLITS = ("train", "val", "test")


class Box(NamedTuple):
    """One annotated object: its class and its box (x, y, w, h) in pixels."""

    cls: int
    x: int
    y: int
    w: int
    h: int


def read_boxes(path: Path) -> list[Box]:
    """The <object> boxes of a BoxAnnotations XML file (class names matched case-blind)."""
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as exc:
        raise ValueError(f"could not read box annotations {path}: {exc}") from exc
    boxes = []
    for obj in root.iter("object"):
        name = (obj.findtext("name") or "").strip().lower()
        if name not in CLASS_ID:
            raise ValueError(f"{path}: unknown class {name!r}; expected one of {list(CLASS_ID)}")
        bb = obj.find("bndbox")
        try:
            x, y, w, h = (int(float(bb.findtext(k))) for k in "xywh")
        except (AttributeError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}: a {name} box lacks integer x, y, w, h") from exc
        boxes.append(Box(CLASS_ID[name], x, y, w, h))
    return boxes


def read_lists(folder: Path) -> dict[str, list[str]]:
    """Frame names per split from <folder>/{train,val,test}.txt (disjoint)."""
    folder = Path(folder)
    lists = {}
    for split in SPLITS:
        path = folder / f"{split}.txt"
        if not path.is_file():
            raise FileNotFoundError(f"split list {path} not found (need train/val/test.txt)")
        lists[split] = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
    seen: dict[str, str] = {}
    for split, names in lists.items():
        for n in names:
            if n in seen:
                raise ValueError(f"frame {n} is in both {seen[n]}.txt and {split}.txt of {folder}")
            seen[n] = split
    return lists


def instances(
    class_map: np.ndarray,
    boxes: list[Box] | None,
    include_wall: bool = True,
    min_pixels: int = 1,
) -> tuple[np.ndarray, list[int], int]:
    """(binary masks (N, H, W), class of each, number dropped for size) from a class map.

    With ``boxes`` (SonarSAM): one instance per box, the box's class pixels inside the box.
    With ``boxes=None``: one instance per 8-connected component of each class. Instances with
    fewer than ``min_pixels`` pixels (and always empty ones) are dropped.
    """
    if class_map.ndim != 2:
        raise ValueError(f"expected a 2-D class map, got shape {class_map.shape}")
    unknown = set(np.unique(class_map).tolist()) - {0, *CLASSES}
    if unknown:
        raise ValueError(f"class map holds values {sorted(unknown)} outside 0..11")
    masks, classes = [], []
    if boxes is not None:
        for b in boxes:
            m = np.zeros(class_map.shape, bool)
            window = (slice(max(b.y, 0), b.y + b.h), slice(max(b.x, 0), b.x + b.w))
            m[window] = class_map[window] == b.cls
            masks.append(m)
            classes.append(b.cls)
    else:
        for c in sorted(CLASSES):
            comps, n = ndimage.label(class_map == c, structure=np.ones((3, 3), bool))
            masks.extend(comps == k for k in range(1, n + 1))
            classes.extend([c] * n)
    wanted = [i for i, c in enumerate(classes) if include_wall or c != WALL]
    keep = [i for i in wanted if masks[i].sum() >= max(min_pixels, 1)]
    dropped = len(wanted) - len(keep)
    if not keep:
        return np.zeros((0, *class_map.shape), bool), [], dropped
    return np.stack([masks[i] for i in keep]), [classes[i] for i in keep], dropped


def _frame_masks(
    mask: Path, boxes: list[Box] | None, include_wall: bool, min_pixels: int
) -> np.ndarray:
    """The instance masks of one frame, built when the frame is written."""
    return instances(read_mask(mask), boxes, include_wall, min_pixels)[0]


def convert(
    source: Path,
    out: Path,
    split_lists: Path = SONARSAM_SPLITS,
    include_wall: bool = True,
    use_boxes: bool = True,
    min_pixels: int = 1,
) -> dict[str, list[str]]:
    """``source`` holds Images/, Masks/ and BoxAnnotations/ of the watertank-segmentation set."""
    source = Path(source)
    folders = {k: source / k for k in ("Images", "Masks", "BoxAnnotations")}
    if not all(f.is_dir() for f in folders.values()):
        raise FileNotFoundError(f"{source} must hold Images/, Masks/, BoxAnnotations/")
    lists = read_lists(split_lists)
    listed = {n: s for s, names in lists.items() for n in names}
    files = {n: (folders["Images"] / f"{n}.png", folders["Masks"] / f"{n}.png",
                 folders["BoxAnnotations"] / f"{n}.xml") for n in sorted(listed)}  # fmt: skip
    missing = [str(p) for trio in files.values() for p in trio if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} listed files missing, e.g. {missing[:3]}")
    pairs, kept_classes, dropped = [], {}, 0
    for n, (image, mask, xml) in files.items():
        boxes = read_boxes(xml) if use_boxes else None
        _, kept_classes[n], d = instances(read_mask(mask), boxes, include_wall, min_pixels)
        dropped += d
        build = partial(_frame_masks, mask, boxes, include_wall, min_pixels)
        pairs.append(Pair(n, image, build, split=listed[n]))
    on_disk = {p.stem for p in folders["Images"].glob("*.png")}
    info = {
        **INFO, "classes": CLASSES, "include_wall": include_wall,
        "instances": "boxes (SonarSAM)" if use_boxes else "connected components",
        "split_source": str(split_lists), "min_pixels": min_pixels,
        "dropped_small_instances": dropped, "not_in_split_lists": len(on_disk - set(files)),
        "instance_classes": {n: c for n, c in kept_classes.items() if c},
    }  # fmt: skip
    return convert_pairs(out, pairs, info)


def instance_counts(out: Path, splits: dict[str, list[str]]) -> dict[str, int]:
    """Instances per split, from the classes dataset.json records per image."""
    per_image = read_dataset_json(out).get("instance_classes", {})
    return {s: sum(len(per_image.get(n, [])) for n in names) for s, names in splits.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--source", type=Path, required=True, help="watertank-segmentation folder")
    p.add_argument("--out", type=Path, default=data_dir() / NAME)
    p.add_argument("--split-lists", type=Path, default=SONARSAM_SPLITS,
                   help="folder of train.txt, val.txt, test.txt (default: SonarSAM's)")  # fmt: skip
    p.add_argument("--drop-wall", action="store_true", help="leave the tank wall out")
    p.add_argument("--instances", choices=("boxes", "components"), default="boxes")
    p.add_argument("--min-pixels", type=int, default=1)
    a = p.parse_args(argv)
    splits = convert(a.source, a.out, a.split_lists, not a.drop_wall,
                     a.instances == "boxes", a.min_pixels)  # fmt: skip
    print(summary(NAME, splits, a.out))
    print("instances: " + ", ".join(f"{s} {k}" for s, k in instance_counts(a.out, splits).items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
