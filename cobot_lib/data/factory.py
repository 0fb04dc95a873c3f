"""``load_dataset``: one call from a dataset folder to a dataset, whatever its format.

The format is the ``format`` argument, else ``format`` in <root>/dataset.json, else "folder":

* "folder": ``FolderDataset`` (images/, masks/, splits/);
* "coco": ``CocoDataset`` over <root>/annotations.json (or dataset.json's "annotations") with
  images under <root>/images (or "image_dir"), restricted to the split's names;
* "nifti": volumes under images/ and masks/ with splits of cases, sliced once into
  <root>/slices (``nifti_folder_to_slices``) and then read as a folder dataset.

dataset.json may also set the defaults "min_area" and "intensity" for its set.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .base import BoxPromptDataset
from .coco import CocoDataset
from .folder import FolderDataset
from .layout import FORMATS, read_dataset_json, read_split
from .nifti import nifti_folder_to_slices

__all__ = ["load_dataset"]


def load_dataset(
    root: str | os.PathLike,
    split: str | None,
    image_size: int,
    format: str | None = None,
    jitter: float | None = None,
    **kw: Any,
) -> BoxPromptDataset:
    """The dataset at ``root`` for ``split`` at model side ``image_size``.

    Keyword arguments go to the dataset (train, jitter_px, seed, min_area, max_instances,
    intensity, prompt, points, negative_points); ``jitter`` is an alias of ``jitter_px`` (the
    training config's name).
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder not found: {root}")
    info = read_dataset_json(root)
    fmt = format or info.get("format", "folder")
    if fmt not in FORMATS:
        raise ValueError(f"unknown dataset format {fmt!r}; expected one of {FORMATS}")
    if jitter is not None:
        if "jitter_px" in kw:
            raise TypeError("give jitter or jitter_px, not both")
        kw["jitter_px"] = jitter
    for key in ("min_area", "intensity"):
        if key in info:
            kw.setdefault(key, info[key])
    if fmt == "folder":
        return FolderDataset(root, split, image_size, **kw)
    if fmt == "coco":
        names = read_split(root, split) if split is not None else None
        return CocoDataset(
            root / info.get("annotations", "annotations.json"),
            root / info.get("image_dir", "images"),
            image_size, names=names, **kw,
        )  # fmt: skip
    return FolderDataset(nifti_folder_to_slices(root), split, image_size, **kw)
