"""Prompt files for ``python -m cobot_lib.predict``: boxes and/or points per image, JSON or CSV.

Coordinates are in ORIGINAL image pixels, x to the right, y down: pixel (x, y) is column x,
row y, the convention of SAM and of ``transforms.tight_boxes`` (a one-pixel object at (3, 5)
has the box (3, 5, 3, 5)). Values may be fractional and must lie in [0, W] x [0, H]. Predict
maps them to the model's frame as training maps boxes (``transforms.map_boxes`` /
``map_points``).

Every *object* is one mask to predict and holds a box, points, or both:

JSON (``.json``)::

    {"images": {
        "cells_01.png": [
            {"box": [x0, y0, x1, y1]},                              # a box
            {"points": [[x, y], [x, y]], "labels": [1, 0]},         # 1 inside, 0 outside
            {"bbox": [x, y, w, h], "points": [[x, y]]},             # COCO box + a point
            {"box": [...], "label": 7}                              # value in the mask file
        ],
        "brain.nii.gz": [{"slice": 90, "box": [...]}]               # volumes: axial slice k
    }}

``labels`` default to all 1. ``bbox`` is COCO's [x, y, width, height], read as the box
(x, y, x + width, y + height). A COCO instances file (``{"images": [{"id", "file_name"}],
"annotations": [{"image_id", "bbox"}]}``) is read too: one box object per annotation.

CSV (``.csv``, a header row; one row per box and/or point)::

    image,slice,object,x0,y0,x1,y1,x,y,point_label
    cells_01.png,,1,10,12,40,38,,,
    cells_01.png,,1,,,,,25,25,1
    cells_01.png,,2,,,,,70,20,1

Only ``image`` is required; rows with the same (image, slice, object) form one object (at most
one box); a row without ``object`` is an object of its own; ``point_label`` defaults to 1.

Image keys are file names in the input folder, or their stems (``cells_01``). For a NIfTI
volume, ``slice`` is required and indexes the axial slices of the volume in RAS+ orientation,
and x, y are pixels of that slice as ``nifti.axial_slice`` shows it (anterior up), i.e. of
the PNG slices that ``nifti_to_slices`` writes. ``label`` (JSON) is the object's value in the
written mask (default: its position among the objects of its image or slice, 1, 2, ...).

Reading checks the structure and names the file and the entry of every problem; bounds need
the image sizes and are checked by ``check_bounds``.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "ObjectPrompt",
    "PromptFileError",
    "read_prompt_file",
    "check_bounds",
    "prompts_from_dataset",
    "write_prompt_json",
]


class PromptFileError(ValueError):
    """A problem in a prompt file; the message names the file and the entry."""


@dataclass(frozen=True)
class ObjectPrompt:
    """One object to segment: a box (x0, y0, x1, y1) and/or points with labels 1 / 0."""

    box: tuple[float, float, float, float] | None = None
    points: tuple[tuple[float, float], ...] = ()
    labels: tuple[int, ...] = ()
    slice: int | None = None
    label: int | None = None
    where: str = field(default="", compare=False)

    @property
    def kind(self) -> str:
        """ "box", "point" or "box+point" (objects of one kind share a decoder call)."""
        if self.box is not None and self.points:
            return "box+point"
        return "box" if self.box is not None else "point"


def _number(value: Any, where: str, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise PromptFileError(f"{where}: {what} must be a finite number, got {value!r}")
    return float(value)


def _box(value: Any, where: str, coco: bool = False) -> tuple[float, float, float, float]:
    name = "bbox [x, y, w, h]" if coco else "box [x0, y0, x1, y1]"
    if not isinstance(value, list | tuple) or len(value) != 4:
        raise PromptFileError(f"{where}: {name} must be 4 numbers, got {value!r}")
    a, b, c, d = (_number(v, where, name) for v in value)
    if coco:
        if c < 0 or d < 0:
            raise PromptFileError(f"{where}: bbox width and height must be >= 0, got {value}")
        c, d = a + c, b + d
    if c < a or d < b:
        raise PromptFileError(f"{where}: box {value} has x1 < x0 or y1 < y0 (expected xyxy)")
    return a, b, c, d


def _object(entry: Any, where: str) -> ObjectPrompt:
    if not isinstance(entry, Mapping):
        raise PromptFileError(f"{where}: an object must be a mapping, got {entry!r}")
    unknown = set(entry) - {"box", "bbox", "points", "labels", "slice", "label"}
    if unknown:
        raise PromptFileError(
            f"{where}: unknown keys {sorted(unknown)}; an object has box or bbox, points, "
            "labels, slice, label"
        )
    if "box" in entry and "bbox" in entry:
        raise PromptFileError(f"{where}: give box (xyxy) or bbox (COCO xywh), not both")
    box = None
    if "box" in entry:
        box = _box(entry["box"], where)
    elif "bbox" in entry:
        box = _box(entry["bbox"], where, coco=True)
    raw = entry.get("points", [])
    if not isinstance(raw, list | tuple) or any(
        not isinstance(p, list | tuple) or len(p) != 2 for p in raw
    ):
        raise PromptFileError(f"{where}: points must be a list of [x, y] pairs, got {raw!r}")
    points = tuple((_number(x, where, "x"), _number(y, where, "y")) for x, y in raw)
    labels = entry.get("labels", [1] * len(points))
    if not isinstance(labels, list | tuple) or len(labels) != len(points):
        raise PromptFileError(
            f"{where}: labels must be a list of {len(points)} values (one per point), "
            f"got {labels!r}"
        )
    if any(v not in (0, 1) or isinstance(v, bool) for v in labels):
        raise PromptFileError(f"{where}: point labels must be 1 (inside) or 0 (outside)")
    if box is None and not points:
        raise PromptFileError(f"{where}: an object needs a box, a bbox or points")
    if points and 1 not in labels and box is None:
        raise PromptFileError(f"{where}: points without a box need at least one label-1 point")
    slice_ = entry.get("slice")
    if slice_ is not None and (isinstance(slice_, bool) or not isinstance(slice_, int)
                               or slice_ < 0):  # fmt: skip
        raise PromptFileError(f"{where}: slice must be an integer >= 0, got {slice_!r}")
    label = entry.get("label")
    if label is not None and (isinstance(label, bool) or not isinstance(label, int)
                              or not 1 <= label < 2**16):  # fmt: skip
        raise PromptFileError(f"{where}: label must be an integer in 1..65535, got {label!r}")
    return ObjectPrompt(box, points, tuple(int(v) for v in labels), slice_, label, where)


def _read_json(path: Path) -> dict[str, list[ObjectPrompt]]:
    try:
        data = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PromptFileError(f"prompt file {path} is not valid JSON: {exc}") from exc
    if not isinstance(data, Mapping) or "images" not in data:
        raise PromptFileError(
            f"prompt file {path} must be a JSON object with an 'images' key (see "
            "cobot_lib.data.prompt_file for the format)"
        )
    if isinstance(data["images"], list):  # a COCO instances file
        return _read_coco(data, path)
    if not isinstance(data["images"], Mapping):
        raise PromptFileError(f"{path}: 'images' must map image names to lists of objects")
    out: dict[str, list[ObjectPrompt]] = {}
    for key, entries in data["images"].items():
        if not isinstance(entries, list):
            raise PromptFileError(f"{path}: images[{key!r}] must be a list of objects")
        out[str(key)] = [_object(e, f"{path}: images[{key!r}][{i}]") for i, e in
                         enumerate(entries)]  # fmt: skip
    return out


def _read_coco(data: Mapping, path: Path) -> dict[str, list[ObjectPrompt]]:
    try:
        names = {img["id"]: str(img["file_name"]) for img in data["images"]}
    except (KeyError, TypeError) as exc:
        raise PromptFileError(f"{path}: COCO images need 'id' and 'file_name' ({exc})") from exc
    out: dict[str, list[ObjectPrompt]] = {n: [] for n in names.values()}
    for i, ann in enumerate(data.get("annotations", [])):
        where = f"{path}: annotations[{i}]"
        if not isinstance(ann, Mapping) or ann.get("image_id") not in names or "bbox" not in ann:
            raise PromptFileError(f"{where}: needs an 'image_id' of the images list and a 'bbox'")
        out[names[ann["image_id"]]].append(
            ObjectPrompt(box=_box(ann["bbox"], where, coco=True), where=where)
        )
    return out


_CSV_COLUMNS = ("image", "slice", "object", "x0", "y0", "x1", "y1", "x", "y", "point_label")


def _cell(row: Mapping[str, str], col: str, where: str) -> float | None:
    """A CSV cell as a number (None when empty)."""
    text = row.get(col, "")
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        raise PromptFileError(f"{where}: {col}={text!r} is not a number") from None


def _read_csv(path: Path) -> dict[str, list[ObjectPrompt]]:
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        header = [h.strip() for h in (reader.fieldnames or [])]
        if "image" not in header:
            raise PromptFileError(f"{path}: the first row must be a header with an 'image' column")
        unknown = set(header) - set(_CSV_COLUMNS)
        if unknown:
            raise PromptFileError(
                f"{path}: unknown columns {sorted(unknown)}; expected some of {_CSV_COLUMNS}"
            )
        groups: dict[tuple, dict[str, Any]] = {}
        for line, row in enumerate(reader, start=2):
            row = {k.strip(): (v or "").strip() for k, v in row.items() if k is not None}
            where = f"{path} line {line}"
            image = row.get("image", "")
            if not image:
                raise PromptFileError(f"{where}: the image column is empty")

            slice_ = int(_cell(row, "slice", where)) if row.get("slice") else None
            key = (image, slice_, row.get("object") or f"row {line}")
            entry = groups.setdefault(key, {"where": where, "points": [], "labels": []})
            if slice_ is not None:
                entry["slice"] = slice_
            box = [_cell(row, c, where) for c in ("x0", "y0", "x1", "y1")]
            if any(v is not None for v in box):
                if any(v is None for v in box) or "box" in entry:
                    raise PromptFileError(
                        f"{where}: a box needs all of x0, y0, x1, y1, and an object has one box"
                    )
                entry["box"] = box
            point = [_cell(row, "x", where), _cell(row, "y", where)]
            if any(v is not None for v in point):
                if any(v is None for v in point):
                    raise PromptFileError(f"{where}: a point needs both x and y")
                label = _cell(row, "point_label", where)
                entry["points"].append(point)
                entry["labels"].append(1 if label is None else int(label))
            if "box" not in entry and not entry["points"]:
                raise PromptFileError(f"{where}: the row has neither a box nor a point")
    out: dict[str, list[ObjectPrompt]] = {}
    for (image, _, _), entry in groups.items():
        where = entry.pop("where")
        out.setdefault(image, []).append(_object(entry, where))
    return out


def read_prompt_file(path: str | os.PathLike) -> dict[str, list[ObjectPrompt]]:
    """{image key: objects} from a JSON or CSV prompt file (see the module docstring).

    Raises FileNotFoundError for a missing file and PromptFileError (a ValueError) naming the
    file and entry for anything malformed, including a file with no objects at all.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"prompt file not found: {path}")
    suffix = path.suffix.lower()
    if not path.read_bytes().strip():
        raise PromptFileError(
            f"prompt file {path} is empty; give at least one box or point, or run predict "
            "without --prompts for automatic (unprompted) masks"
        )
    if suffix == ".json":
        table = _read_json(path)
    elif suffix == ".csv":
        table = _read_csv(path)
    else:
        raise PromptFileError(f"prompt file {path} must end in .json or .csv")
    if not any(table.values()):
        raise PromptFileError(
            f"prompt file {path} holds no objects; give at least one box or point, or run "
            "predict without --prompts for automatic (unprompted) masks"
        )
    return table


def check_bounds(objects: Iterable[ObjectPrompt], size: tuple[int, int], image: str) -> None:
    """Every coordinate inside [0, W] x [0, H] of an (H, W) image, else a PromptFileError."""
    h, w = size
    for obj in objects:
        xs = [p[0] for p in obj.points] + ([obj.box[0], obj.box[2]] if obj.box else [])
        ys = [p[1] for p in obj.points] + ([obj.box[1], obj.box[3]] if obj.box else [])
        if min(xs) < 0 or max(xs) > w or min(ys) < 0 or max(ys) > h:
            raise PromptFileError(
                f"{obj.where}: prompt outside image {image} ({w} x {h} pixels, W x H): x in "
                f"[{min(xs):g}, {max(xs):g}], y in [{min(ys):g}, {max(ys):g}]; coordinates are "
                "original-image pixels in [0, W] x [0, H]"
            )


def prompts_from_dataset(dataset: Any) -> dict[str, list[dict[str, Any]]]:
    """The prompts an evaluation set gives the model, as prompt-file objects in original pixels.

    Each item's prompts (its "prompt" kind: tight boxes and/or sampled points, in the input
    frame) are mapped back to original pixels with the inverse of ``map_boxes`` /
    ``map_points`` (in float64), so predict, which maps them forward again, gives the model
    exactly the prompts that ``evaluate_model`` gives it (fractional coordinates where the
    resize is not a whole-pixel map). Keys are the item names.
    """
    out: dict[str, list[dict[str, Any]]] = {}
    for i in range(len(dataset)):
        item = dataset[i]
        (h, w), (h0, w0) = item["input_size"], item["original_size"]
        scale = np.array([w0 / w, h0 / h])
        kind = item.get("prompt", "box")
        objects = [{} for _ in range(len(item["boxes"]))]
        if "box" in kind:
            boxes = np.asarray(item["boxes"], np.float64).reshape(-1, 2, 2) * scale
            for obj, box in zip(objects, boxes.reshape(-1, 4), strict=True):
                obj["box"] = [float(v) for v in box]
        if "point" in kind:
            pts = np.asarray(item["points"], np.float64) * scale
            for obj, p, lab in zip(objects, pts, np.asarray(item["point_labels"]), strict=True):
                keep = lab >= 0  # padding is the predictor's business
                obj["points"] = [[float(x), float(y)] for x, y in p[keep]]
                obj["labels"] = [int(v) for v in lab[keep]]
        out[str(item["name"])] = objects
    return out


def write_prompt_json(path: str | os.PathLike, table: Mapping[str, list[dict[str, Any]]]) -> Path:
    """Write {image: objects} as a JSON prompt file (floats round-trip exactly)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"images": dict(table)}, indent=1))
    return path
