"""Writing predicted masks: label images, overlays and one COCO RLE file, streamed.

* ``label_image``: objects (N, H, W) painted in order into one label image (0 background,
  object k gets ``values[k]``); where objects overlap the later one wins, so callers order
  them (prompt order; automatic masks largest first, so small ones stay visible). The COCO
  file keeps every object's full mask, overlaps included.
* ``overlay``: the image in grey or colour with each object tinted, its box outlined and its
  points marked (green inside, red outside), as an RGB uint8 array.
* ``CocoWriter``: a COCO results file (``images``, ``annotations`` with RLE ``segmentation``
  from pycocotools, ``area``, ``bbox`` [x, y, w, h], ``score``, ``categories``) written
  without holding the predictions: records go to two temporary JSON-lines files as they come
  and are joined into the final JSON on ``close`` (atomic), so memory stays flat over any
  number of images.
* ``PredictionWriter``: all of the above for a stream of predictions (one 2-D image or volume
  slice at a time), in the layout ``cobot_lib.predict`` documents; a volume's slices are
  gathered into one label volume and written when the next file starts.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils
from tqdm.auto import tqdm

from ..files import atomic_write
from .inputs import InputFile, write_volume_labels
from .layout import write_image
from .prompt_file import ObjectPrompt
from .transforms import to_rgb, to_uint8_range

__all__ = [
    "PALETTE",
    "label_image",
    "write_label_image",
    "overlay",
    "CocoWriter",
    "PredictionWriter",
    "read_coco_masks",
]

PALETTE = np.array(
    [[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
     [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212]],
    dtype=np.float32,
)  # fmt: skip


def label_image(masks: np.ndarray, values: Sequence[int] | None = None) -> np.ndarray:
    """(H, W) uint8 or uint16 labels from bool masks (N, H, W); later objects paint over."""
    masks = np.asarray(masks, dtype=bool)
    values = list(range(1, len(masks) + 1)) if values is None else list(values)
    if len(values) != len(masks) or any(not 1 <= v < 2**16 for v in values):
        raise ValueError(f"need {len(masks)} label values in 1..65535, got {values}")
    dtype = np.uint8 if max(values, default=0) < 256 else np.uint16
    out = np.zeros(masks.shape[1:], dtype=dtype)
    for v, m in zip(values, masks, strict=True):
        out[m] = v
    return out


def write_label_image(stem: str | os.PathLike, label: np.ndarray, fmt: str = "png") -> Path:
    """STEM.png or STEM.tif holding a label image (lossless)."""
    if fmt not in ("png", "tif"):
        raise ValueError(f"mask format must be png or tif, got {fmt!r}")
    stem = Path(stem)
    return write_image(stem.with_name(f"{stem.name}.{fmt}"), label)


def _display(image: np.ndarray) -> np.ndarray:
    """Any image (H, W[, C]) as float RGB in [0, 255], scaled as the model sees it."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    rgb = to_rgb(image if image.ndim == 2 else image[:, :, :3])
    return to_uint8_range(rgb, "percentile")


def overlay(
    image: np.ndarray,
    masks: np.ndarray,
    boxes: Sequence[Sequence[float] | None] = (),
    points: Sequence[Sequence[Sequence[float]]] = (),
    point_labels: Sequence[Sequence[int]] = (),
    alpha: float = 0.45,
) -> np.ndarray:
    """RGB uint8 (H, W, 3): the image with each mask tinted, boxes outlined, points marked."""
    out = _display(image).astype(np.float32)
    h, w = out.shape[:2]
    for k, m in enumerate(np.asarray(masks, dtype=bool)):
        out[m] = (1 - alpha) * out[m] + alpha * PALETTE[k % len(PALETTE)]
    for k, box in enumerate(boxes):
        if box is None:
            continue
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        x0, x1 = np.clip([x0, x1], 0, w - 1)
        y0, y1 = np.clip([y0, y1], 0, h - 1)
        colour = PALETTE[k % len(PALETTE)]
        out[y0, x0 : x1 + 1] = out[y1, x0 : x1 + 1] = colour
        out[y0 : y1 + 1, x0] = out[y0 : y1 + 1, x1] = colour
    r = max(1, min(h, w) // 128)
    for pts, labs in zip(points, point_labels, strict=False):
        for (x, y), lab in zip(pts, labs, strict=True):
            cx, cy = int(np.clip(round(x), 0, w - 1)), int(np.clip(round(y), 0, h - 1))
            colour = (0, 255, 0) if lab == 1 else (255, 0, 0)
            out[max(0, cy - r) : cy + r + 1, max(0, cx - r) : cx + r + 1] = colour
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


class CocoWriter:
    """Stream predictions into a COCO results JSON at ``path`` (see the module docstring)."""

    def __init__(self, path: str | os.PathLike, category: str = "object") -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._images_path = self.path.with_name(f".{self.path.name}.images.jsonl")
        self._anns_path = self.path.with_name(f".{self.path.name}.annotations.jsonl")
        self._images = open(self._images_path, "w")
        self._anns = open(self._anns_path, "w")
        self.category = category
        self.n_images = self.n_annotations = 0

    def add(
        self,
        file_name: str,
        size: tuple[int, int],
        masks: np.ndarray,
        scores: Sequence[float],
        labels: Sequence[int] | None = None,
        slice_index: int | None = None,
    ) -> int:
        """Record one (H, W) image (or volume slice) and its objects (N, H, W); returns its id."""
        masks = np.asarray(masks, dtype=bool)
        h, w = size
        if masks.ndim != 3 or masks.shape[1:] != (h, w):
            raise ValueError(f"{file_name}: masks {masks.shape} do not match size {(h, w)}")
        self.n_images += 1
        image_id = self.n_images
        record: dict[str, Any] = {"id": image_id, "file_name": file_name, "height": int(h),
                                  "width": int(w)}  # fmt: skip
        if slice_index is not None:
            record["slice"] = int(slice_index)
        self._images.write(json.dumps(record) + "\n")
        if len(masks):
            rles = mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))
            areas, bboxes = mask_utils.area(rles), mask_utils.toBbox(rles)
            for k, rle in enumerate(rles):
                self.n_annotations += 1
                ann = {
                    "id": self.n_annotations,
                    "image_id": image_id,
                    "category_id": 1,
                    "segmentation": {"size": [int(h), int(w)], "counts": rle["counts"].decode()},
                    "area": int(areas[k]),
                    "bbox": [float(v) for v in bboxes[k]],
                    "score": float(scores[k]),
                    "iscrowd": 0,
                }
                if labels is not None:
                    ann["label"] = int(labels[k])
                self._anns.write(json.dumps(ann) + "\n")
        return image_id

    def close(self) -> Path:
        """Join the records into the final JSON (atomically) and remove the temporary files."""
        self._images.close()
        self._anns.close()

        def write(tmp: Path) -> None:
            with open(tmp, "w") as out:
                out.write('{"images": [')
                _copy_lines(self._images_path, out)
                out.write('],\n"annotations": [')
                _copy_lines(self._anns_path, out)
                out.write("],\n")
                out.write(f'"categories": [{{"id": 1, "name": {json.dumps(self.category)}}}]}}\n')

        try:
            return atomic_write(self.path, write)
        finally:
            self._images_path.unlink(missing_ok=True)
            self._anns_path.unlink(missing_ok=True)


def _copy_lines(source: Path, out: Any) -> None:
    """JSON lines of ``source`` as comma-separated array elements, one line at a time."""
    with open(source) as handle:
        for i, line in enumerate(handle):
            out.write(("," if i else "") + "\n" + line.rstrip("\n"))


class PredictionWriter:
    """Write each prediction at once: OUT/masks, OUT/overlays, OUT/predictions.json.

    ``add`` takes the file, the slice (None for a 2-D image), the image, the masks (N, H, W),
    their scores and the objects that prompted them (None in automatic mode: values 1..N).
    """

    def __init__(
        self,
        out: str | os.PathLike,
        mask_format: str = "png",
        overlays: bool = True,
        coco: bool = True,
        total: int | None = None,
        progress: bool = False,
    ) -> None:
        if mask_format not in ("png", "tif"):
            raise ValueError(f"mask format must be png or tif, got {mask_format!r}")
        self.out, self.mask_format, self.overlays = Path(out), mask_format, overlays
        self.coco = CocoWriter(self.out / "predictions.json") if coco else None
        self.bar = tqdm(total=total, desc="predict", unit="file", disable=not progress)
        self.current: InputFile | None = None
        self.volume: np.ndarray | None = None
        self.objects = 0

    def _file_done(self) -> None:
        if self.current is None:
            return
        if self.volume is not None:
            path = self.out / "masks" / f"{self.current.stem}.nii.gz"
            write_volume_labels(path, self.volume, self.current)
            self.volume = None
        self.bar.update(1)

    def add(
        self,
        file: InputFile,
        slice_index: int | None,
        image: np.ndarray,
        masks: np.ndarray,
        scores: Sequence[float],
        objects: Sequence[ObjectPrompt] | None = None,
    ) -> None:
        if file is not self.current:
            self._file_done()
            self.current = file
            if file.kind == "volume":
                self.volume = np.zeros((file.slices, *file.slice_size), np.uint16)
        values = [o.label or k + 1 for k, o in enumerate(objects)] if objects else None
        label = label_image(masks, values)
        if self.volume is not None:
            self.volume[slice_index] = label
        else:
            write_label_image(self.out / "masks" / file.stem, label, self.mask_format)
        if self.overlays:
            objs = objects or []
            picture = overlay(image, masks, [o.box for o in objs], [o.points for o in objs],
                              [o.labels for o in objs])  # fmt: skip
            name = file.stem if slice_index is None else f"{file.stem}_z{slice_index:04d}"
            write_image(self.out / "overlays" / f"{name}.png", picture)
        if self.coco is not None:
            self.coco.add(file.name, image.shape[:2], masks, scores, values, slice_index)
        self.objects += len(masks)

    def close(self) -> None:
        """Finish the last file and the COCO file."""
        self._file_done()
        self.current = None
        self.bar.close()
        if self.coco is not None:
            self.coco.close()


def read_coco_masks(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """A COCO results file's masks back as {image file name: bool (N, H, W)}, objects in the
    file's order (``CocoWriter`` writes them in prediction order); an image without objects
    gets (0, H, W). A volume's slices are keyed ``NAME:zK`` (K: the slice index)."""
    coco = json.loads(Path(path).read_text())

    def key(im: dict[str, Any]) -> str:
        return im["file_name"] + (f":z{im['slice']}" if "slice" in im else "")

    images = {im["id"]: im for im in coco["images"]}
    found: dict[str, list[np.ndarray]] = {key(im): [] for im in images.values()}
    for ann in coco["annotations"]:
        found[key(images[ann["image_id"]])].append(mask_utils.decode(ann["segmentation"]) > 0)
    return {
        key(im): np.stack(found[key(im)]) if found[key(im)] else
        np.zeros((0, im["height"], im["width"]), bool)
        for im in images.values()
    }  # fmt: skip
