"""``CocoDataset``: instances from a COCO JSON file (polygons, RLE and uncompressed RLE).

COCO instances may overlap, which a label image cannot hold, so COCO-format sets are read from
their JSON directly (``pycocotools`` rasterises the polygons and decodes the RLE). Crowd
annotations (``iscrowd=1``: one region covering many objects) are not instances and are
skipped and counted, unless ``include_crowd``. Each annotation's area is measured on its
rasterised mask, so ``min_area`` is exact. The image's size in the JSON must match the file.

Names are the ``file_name`` entries without their extension (they may contain "/"); a split
is a list of such names (``layout.read_split``), or None for every image in the file.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from .base import BoxPromptDataset
from .readers import read_image

__all__ = ["CocoDataset", "load_coco", "coco_name", "annotation_rle", "index_annotations"]


def coco_name(file_name: str) -> str:
    """The project name of a COCO image: its file_name without the extension."""
    stem, dot, _ = file_name.rpartition(".")
    return stem if dot else file_name


def load_coco(annotation_file: str | os.PathLike) -> COCO:
    """A ``pycocotools.COCO`` index, quietly, with a clear error for a missing or bad file."""
    path = Path(annotation_file)
    if not path.is_file():
        raise FileNotFoundError(f"COCO annotation file not found: {path}")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is not a COCO JSON file: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path} is not a COCO instances file: it holds a {type(data).__name__}")
    missing = [k for k in ("images", "annotations") if k not in data]
    if missing:
        raise ValueError(f"{path} is not a COCO instances file: it has no {missing}")
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        coco.createIndex()
    return coco


def annotation_rle(ann: dict[str, Any], h: int, w: int, where: str) -> dict[str, Any]:
    """The RLE of one annotation's segmentation on an h x w image; ValueError naming ``where``."""
    seg = ann.get("segmentation")
    if not seg:
        raise ValueError(f"{where}: annotation {ann.get('id')} has no segmentation")
    try:
        if isinstance(seg, list):  # polygons
            rle = mask_utils.merge(mask_utils.frPyObjects(seg, h, w))
        elif isinstance(seg.get("counts"), list):  # uncompressed RLE
            rle = mask_utils.frPyObjects(seg, h, w)
        elif tuple(seg.get("size", ())) != (h, w):
            raise ValueError(f"RLE size {seg.get('size')} differs from the image's {(h, w)}")
        else:
            rle = seg
        mask_utils.area(rle)  # a malformed RLE (no counts, bad string) fails here, not later
        return rle
    except Exception as exc:
        raise ValueError(f"{where}: bad segmentation in annotation {ann.get('id')}: {exc}") from exc


def index_annotations(path: str | os.PathLike) -> dict[str, Any]:
    """{"images": {name: [height, width, file_name]}, "problems": [message, ...]} of a COCO
    file: every image entry and annotation checked (a file name; positive integer sizes; a
    known image_id; an integer category_id; a segmentation that decodes on its image), every
    problem collected rather than raised. A file that is not COCO JSON raises ValueError."""
    path = Path(path)
    coco = load_coco(path)
    images, problems, sizes = {}, [], {}
    for k, img in enumerate(coco.dataset["images"]):
        name = img.get("file_name") if isinstance(img, dict) else None
        if not isinstance(name, str) or not name:
            problems.append(f"{path}: images[{k}] has no file_name")
            continue
        h, w = img.get("height"), img.get("width")
        if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (h, w)):
            problems.append(
                f"{path}: image {name!r} has height={h!r}, width={w!r}; expected positive integers"
            )
            continue
        if coco_name(name) in images:
            problems.append(f"{path}: two images are named {coco_name(name)!r}")
        images[coco_name(name)] = [h, w, name]
        sizes[img.get("id")] = (h, w, name)
    for k, ann in enumerate(coco.dataset["annotations"]):
        if not isinstance(ann, dict):
            problems.append(f"{path}: annotations[{k}] is not an object")
            continue
        ident = ann.get("id", f"#{k}")
        if ann.get("image_id") not in sizes:
            problems.append(
                f"{path}: annotation {ident} refers to image_id {ann.get('image_id')!r}, which "
                "is not a (valid) entry of 'images'"
            )
            continue
        category = ann.get("category_id", 1)
        if isinstance(category, bool) or not isinstance(category, int):
            problems.append(
                f"{path}: annotation {ident} has category_id={category!r}; expected an integer"
            )
        h, w, name = sizes[ann["image_id"]]
        try:
            annotation_rle(ann, h, w, f"{path} image {name!r}")
        except ValueError as exc:
            problems.append(str(exc))
    return {"images": images, "problems": problems}


class CocoDataset(BoxPromptDataset):
    """Images of a COCO instances file with all their (non-crowd) instances.

    Args:
        annotation_file: the COCO JSON.
        image_dir: folder that ``file_name`` is relative to.
        names: the images to use (project names, e.g. ``read_split(root, "train")``); None
            takes every image of the file.
        include_crowd: treat crowd regions as instances (default: skip and count them).
        image_size, train, jitter_px, seed, min_area, max_instances, intensity, prompt,
            points, negative_points: see ``BoxPromptDataset``. Item "labels" are the COCO
            category ids.
    """

    def __init__(
        self,
        annotation_file: str | os.PathLike,
        image_dir: str | os.PathLike,
        image_size: int,
        names: Sequence[str] | None = None,
        train: bool = False,
        jitter_px: float = 50.0,
        seed: int = 0,
        min_area: int = 1,
        max_instances: int | None = None,
        intensity: str = "percentile",
        prompt: str = "box",
        points: int = 1,
        negative_points: int = 0,
        include_crowd: bool = False,
    ) -> None:
        super().__init__(
            image_size, train, jitter_px, seed, min_area, max_instances, intensity,
            prompt, points, negative_points,
        )  # fmt: skip
        self.annotation_file, self.image_dir = Path(annotation_file), Path(image_dir)
        self.coco = load_coco(self.annotation_file)
        by_name = {coco_name(img["file_name"]): img for img in self.coco.dataset["images"]}
        if len(by_name) < len(self.coco.dataset["images"]):
            raise ValueError(f"{self.annotation_file}: two images share a name")
        if names is None:
            names = sorted(by_name)
        self.image_paths: list[Path] = []
        self.anns: list[list[dict[str, Any]]] = []
        for name in names:
            if name not in by_name:
                raise KeyError(f"image {name!r} is not in {self.annotation_file}")
            img = by_name[name]
            path = self.image_dir / img["file_name"]
            if not path.is_file():
                raise FileNotFoundError(f"image {path} of {self.annotation_file} not found")
            h, w = int(img["height"]), int(img["width"])
            kept, areas = [], []
            for ann in self.coco.imgToAnns.get(img["id"], []):
                if ann.get("iscrowd", 0) and not include_crowd:
                    self.skipped["crowd_annotations"] += 1
                    continue
                rle = annotation_rle(ann, h, w, f"{self.annotation_file} image {name!r}")
                kept.append(ann)  # the annotation itself: re-rasterised when read
                areas.append(int(mask_utils.area(rle)))
            before = len(self.names)
            self._add_image(name, (h, w), np.arange(len(kept)), np.asarray(areas, dtype=np.int64))
            if len(self.names) > before:
                self.image_paths.append(path)
                self.anns.append([kept[i] for i in self.instance_labels[-1]])
                self.instance_labels[-1] = np.array(
                    [int(a.get("category_id", 1)) for a in self.anns[-1]], dtype=np.int64
                )

    def _read(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        image = read_image(self.image_paths[index])
        h, w = self.sizes[index]
        if image.shape[:2] != (h, w):
            raise ValueError(
                f"image {self.image_paths[index]} is {image.shape[0]}x{image.shape[1]} but "
                f"{self.annotation_file} says {h}x{w} (H x W)"
            )
        where = f"{self.annotation_file} image {self.names[index]!r}"
        rles = [annotation_rle(a, h, w, where) for a in self.anns[index]]
        masks = np.moveaxis(mask_utils.decode(rles), -1, 0).astype(bool)
        return image, masks
