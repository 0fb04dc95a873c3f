"""Converters from the paper's official dataset formats to the project layout (``layout``).

The ``data_scripts/prepare_*.py`` scripts only know where each dataset keeps its files; the
writing is here, shared and tested:

* ``convert_pairs``: 2-D images with label images or per-instance binary masks (BUSI, sonar);
* ``convert_coco``: COCO JSON sets (COCO, TrashCan, NWPU VHR-10, SSDD), merged into one
  <root>/annotations.json, images placed under <root>/images;
* ``convert_volumes``: NIfTI volumes sliced with ``nifti_to_slices`` (AbdomenCT-1K, MSD,
  SegRap2023), split by volume; a case whose files cannot be used (``VolumeError``: unreadable,
  or image and label on different grids) is skipped, warned about and listed in dataset.json
  ("skipped_cases"), and the other cases are converted.

Every converter writes the split files once (seeded, by group: an image, a lesion's images, a
volume) and dataset.json last, and returns the names per split.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .coco import coco_name
from .layout import (
    names_by_split,
    place_file,
    split_groups,
    write_dataset_json,
    write_image,
    write_mask,
    write_splits,
)
from .nifti import VolumeError, nifti_to_slices
from .readers import IMAGE_EXTS, image_hw, read_image, read_mask

__all__ = [
    "safe_name",
    "summary",
    "Pair",
    "convert_pairs",
    "CocoSource",
    "convert_coco",
    "Volume",
    "convert_volumes",
]


def safe_name(text: str) -> str:
    """A file-system- and split-file-safe name: runs of other characters become "_"."""
    out = re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("_.")
    if not out:
        raise ValueError(f"cannot make a name from {text!r}")
    return out


def summary(name: str, splits: Mapping[str, Sequence[str]], out: str | os.PathLike) -> str:
    """One line saying what a converter wrote, for the scripts to print."""
    counts = ", ".join(f"{s} {len(n)}" for s, n in splits.items())
    return f"{name}: {counts} images -> {out}"


def _splits(
    group_of: Mapping[str, str],
    fixed: Mapping[str, str],
    fractions: Mapping[str, float] | None,
    seed: int,
) -> dict[str, list[str]]:
    free = sorted(set(group_of.values()) - set(fixed))
    groups = split_groups(free, fractions, seed, fixed={g: s for g, s in fixed.items()})
    return names_by_split(group_of, groups)


def _finish(
    out: Path, splits: dict[str, list[str]], info: Mapping[str, Any], extra: Mapping[str, Any]
) -> dict[str, list[str]]:
    write_splits(out, splits)
    write_dataset_json(out, {**info, **extra, "counts": {s: len(n) for s, n in splits.items()}})
    return splits


@dataclass
class Pair:
    """One 2-D image and its masks: a label image, several binary masks, or an array.

    ``masks`` may also be a function of no arguments returning the array, called when the pair
    is written (instances built from annotations, without holding every image's masks at once).
    ``group`` keeps related images in one split (default: the name); ``split`` pins it.
    """

    name: str
    image: Path
    masks: Path | Sequence[Path] | np.ndarray | Callable[[], np.ndarray]
    group: str | None = None
    split: str | None = None


def _pair_masks(pair: Pair) -> np.ndarray:
    if isinstance(pair.masks, np.ndarray):
        return pair.masks
    if callable(pair.masks):
        return np.asarray(pair.masks())
    if isinstance(pair.masks, str | os.PathLike):
        return read_mask(pair.masks)
    pages = [read_mask(p) for p in pair.masks]
    shapes = {p.shape[-2:] for p in pages}
    if len(shapes) > 1:
        raise ValueError(f"masks of {pair.name} differ in size: {[str(p) for p in pair.masks]}")
    return np.stack([(p > 0) if p.ndim == 2 else p.any(0) for p in pages])


def convert_pairs(
    out: str | os.PathLike,
    pairs: Sequence[Pair],
    info: Mapping[str, Any],
    fractions: Mapping[str, float] | None = None,
    seed: int = 0,
    mask_fn: Callable[[np.ndarray], np.ndarray] | None = None,
    image_mode: str = "copy",
) -> dict[str, list[str]]:
    """Write images/ and masks/ for ``pairs``; images without any instance are left out.

    ``mask_fn`` maps the decoded mask to instances (e.g. a class map to connected components):
    it returns a label image (H, W) or binary masks (N, H, W).
    """
    out = Path(out)
    group_of, fixed, empty = {}, {}, []
    for pair in pairs:
        name = safe_name(pair.name)
        masks = _pair_masks(pair)
        if mask_fn is not None:
            masks = mask_fn(masks)
        hw = image_hw(pair.image)
        if masks.shape[-2:] != hw:
            raise ValueError(
                f"image {pair.image} is {hw[0]}x{hw[1]} but its mask of {pair.name} is "
                f"{masks.shape[-2]}x{masks.shape[-1]}"
            )
        if not masks.any():
            empty.append(name)
            continue
        ext = pair.image.suffix.lower().lstrip(".")
        if ext in IMAGE_EXTS:
            place_file(pair.image, out / "images" / f"{name}.{ext}", image_mode)
        else:  # pragma: no cover - every official set here is PNG/JPEG/TIFF
            write_image(out / "images" / f"{name}.png", read_image(pair.image))
        write_mask(out / "masks" / name, masks)
        group_of[name] = safe_name(pair.group) if pair.group else name
        if pair.split:
            fixed[group_of[name]] = pair.split
    if not group_of:
        raise ValueError(f"no image with instances among {len(pairs)} pairs")
    splits = _splits(group_of, fixed, fractions, seed)
    return _finish(out, splits, info, {"format": "folder", "left_out_empty": len(empty)})


@dataclass
class CocoSource:
    """A COCO JSON file with the folder its ``file_name`` entries are relative to."""

    annotations: Path
    images: Path
    split: str | None = None  # None: drawn with the fractions
    prefix: str = ""  # prepended to names, to keep two sources apart
    limit: int | None = None  # a seeded random subset of at most this many images


def convert_coco(
    out: str | os.PathLike,
    sources: Sequence[CocoSource],
    info: Mapping[str, Any],
    fractions: Mapping[str, float] | None = None,
    seed: int = 0,
    image_mode: str = "symlink",
) -> dict[str, list[str]]:
    """Merge COCO sources into <out>/annotations.json and <out>/images/<name>.<ext>."""
    out = Path(out)
    merged: dict[str, Any] = {"images": [], "annotations": [], "categories": []}
    categories: dict[int, dict] = {}
    group_of, fixed = {}, {}
    for k, src in enumerate(sources):
        if not Path(src.annotations).is_file():
            raise FileNotFoundError(f"COCO annotation file not found: {src.annotations}")
        data = json.loads(Path(src.annotations).read_text())
        for cat in data.get("categories", []):
            if categories.setdefault(cat["id"], cat).get("name") != cat.get("name"):
                raise ValueError(f"category {cat['id']} has two names across the sources")
        images = sorted(data["images"], key=lambda im: im["file_name"])
        if src.limit is not None and src.limit < len(images):
            pick = np.sort(np.random.default_rng([seed, k]).permutation(len(images))[: src.limit])
            images = [images[i] for i in pick]
        new_id: dict[int, int] = {}
        for img in images:
            name = safe_name(src.prefix + coco_name(img["file_name"]).replace("/", "_"))
            if name in group_of:
                raise ValueError(f"two images are named {name!r}; give the sources a prefix")
            ext = Path(img["file_name"]).suffix.lower()
            place_file(Path(src.images) / img["file_name"], out / "images" / f"{name}{ext}",
                       image_mode)  # fmt: skip
            new_id[img["id"]] = len(merged["images"]) + 1
            merged["images"].append({**img, "id": new_id[img["id"]], "file_name": name + ext})
            group_of[name] = name
            if src.split:
                fixed[name] = src.split
        for ann in data["annotations"]:
            if ann["image_id"] in new_id:
                merged["annotations"].append(
                    {**ann, "id": len(merged["annotations"]) + 1,
                     "image_id": new_id[ann["image_id"]]}
                )  # fmt: skip
    merged["categories"] = [categories[c] for c in sorted(categories)]
    out.mkdir(parents=True, exist_ok=True)
    (out / "annotations.json").write_text(json.dumps(merged))
    splits = _splits(group_of, fixed, fractions, seed)
    return _finish(out, splits, info, {"format": "coco", "annotations": "annotations.json"})


@dataclass
class Volume:
    """One NIfTI case: image volume and its label volume (or one binary volume per structure)."""

    case: str
    image: Path
    label: Path | Sequence[Path]
    split: str | None = None
    channel: int | None = None


def convert_volumes(
    out: str | os.PathLike,
    volumes: Sequence[Volume],
    info: Mapping[str, Any],
    modality: str,
    window: tuple[float, float] = (40.0, 400.0),
    fractions: Mapping[str, float] | None = None,
    seed: int = 0,
    label_values: Sequence[int] | None = None,
    min_voxels_3d: int = 1000,
    min_pixels_2d: int = 100,
    label_groups: Mapping[int, Sequence[int]] | None = None,
) -> dict[str, list[str]]:
    """Slice every volume (``nifti_to_slices``) and split by case, never by slice.

    A case raising ``VolumeError`` (e.g. a label whose affine differs from its image's) is
    skipped before any of its slices is written, with a warning; dataset.json lists it under
    "skipped_cases" with the reason. The conversion fails only when no case is left.
    """
    out = Path(out)
    group_of, fixed, skipped = {}, {}, {}
    for v in volumes:
        case = safe_name(v.case)
        label = v.label if isinstance(v.label, str | os.PathLike) else list(v.label)
        try:
            names = nifti_to_slices(
                v.image, label, out, case, modality, window, v.channel, label_values,
                min_voxels_3d, min_pixels_2d, label_groups,
            )  # fmt: skip
        except VolumeError as exc:
            skipped[case] = str(exc)
            warnings.warn(f"case {case} skipped: {exc}", stacklevel=2)
            continue
        for name in names:
            group_of[name] = case
        if v.split:
            fixed[case] = v.split
    if not group_of:
        why = f"; skipped: {skipped}" if skipped else ""
        raise ValueError(f"no foreground slice in {len(volumes)} volumes{why}")
    splits = _splits(group_of, fixed, fractions, seed)
    cases = {s: sorted({group_of[n] for n in names}) for s, names in splits.items()}
    extra = {"format": "folder", "modality": modality, "cases": cases, "skipped_cases": skipped,
             "min_voxels_3d": min_voxels_3d, "min_pixels_2d": min_pixels_2d}  # fmt: skip
    if modality == "ct":
        extra["window"] = list(window)
    return _finish(out, splits, info, extra)
