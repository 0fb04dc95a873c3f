"""Reading images and instance masks from disk, with errors that name the file.

Images: PNG and JPEG through Pillow (8 and 16 bit, grey, palette, RGB, RGBA), TIFF through
tifffile (any bit depth, (H, W), (H, W, C) or channels-first (C, H, W) with C in 1, 3, 4).
The pixels come back in their stored dtype; ``transforms.to_uint8_range`` scales them.

Masks are one of two things:

* a label image (H, W): 0 is background and every other value is one instance (a binary mask
  is the label image of one instance). A mask whose values are exactly {0, 255} (or {255}) is
  a binary mask saved as 0/255 and becomes label 1. For a label image whose only instance
  happens to carry the value 255 this gives the same single instance, so nothing is lost;
  colour-coded (RGB) masks whose channels differ, lossy JPEG masks, negative or fractional
  labels are refused rather than guessed at.
* a stack (N, H, W) of binary masks in a multi-page TIFF, for instances that overlap (COCO
  style); each page must hold {0, 1} or {0, 255}; instance i has label i + 1.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
from PIL import Image

__all__ = [
    "IMAGE_EXTS",
    "MASK_EXTS",
    "read_image",
    "image_hw",
    "read_mask",
    "mask_instances",
    "inspect_image",
    "inspect_mask",
]

IMAGE_EXTS = ("png", "tif", "tiff", "jpg", "jpeg")
MASK_EXTS = ("png", "tif", "tiff")
_TIFF = ("tif", "tiff")


def _ext(path: Path) -> str:
    return path.suffix.lower().lstrip(".")


def _require(path: str | os.PathLike, exts: tuple[str, ...], what: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} file not found: {path}")
    if _ext(path) not in exts:
        raise ValueError(f"{what} {path} has extension {path.suffix!r}; expected one of {exts}")
    return path


def _channels_last(arr: np.ndarray, path: Path) -> np.ndarray:
    """(H, W) or (H, W, C); a channels-first TIFF (C, H, W) with C in 1, 3, 4 is transposed."""
    arr = np.squeeze(arr) if arr.ndim > 3 else arr
    if arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (1, 3, 4)):
        return arr
    if arr.ndim == 3 and arr.shape[0] in (1, 3, 4):
        return np.moveaxis(arr, 0, -1)
    raise ValueError(
        f"image {path} has shape {arr.shape}; expected (H, W), (H, W, C) or (C, H, W), C in 1, 3, 4"
    )


def _pil_array(path: Path, as_labels: bool) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            if mode == "P" and not as_labels:
                im = im.convert("RGBA" if "transparency" in im.info else "RGB")
            elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
                im = im.convert("RGB")
            elif mode == "LA":
                im = im.getchannel("L")
            elif mode == "PA":
                im = im.getchannel("P") if as_labels else im.convert("RGB")
            arr = np.asarray(im)
    if arr.dtype == np.int32 and mode.startswith("I") and arr.min() >= 0 and arr.max() < 2**16:
        arr = arr.astype(np.uint16)  # Pillow widens 16-bit PNGs to 32 bit
    return arr


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Pixels of an image file, (H, W) or (H, W, C), in their stored dtype."""
    path = _require(path, IMAGE_EXTS, "image")
    try:
        arr = tifffile.imread(path) if _ext(path) in _TIFF else _pil_array(path, False)
    except Exception as exc:  # every decoder raises its own types for a corrupt file
        raise ValueError(f"could not read image {path} (corrupt or not an image?): {exc}") from exc
    return _channels_last(np.asarray(arr), path)


def image_hw(path: str | os.PathLike) -> tuple[int, int]:
    """(H, W) of an image file from its header, without decoding the pixels."""
    path = _require(path, IMAGE_EXTS, "image")
    try:
        if _ext(path) in _TIFF:
            with tifffile.TiffFile(path) as tif:
                shape = tuple(tif.series[0].shape)
        else:
            with Image.open(path) as im:
                shape = (im.size[1], im.size[0])
    except Exception as exc:
        raise ValueError(f"could not read image {path} (corrupt or not an image?): {exc}") from exc
    if len(shape) == 2:
        return int(shape[0]), int(shape[1])
    if len(shape) == 3 and shape[2] in (1, 3, 4):
        return int(shape[0]), int(shape[1])
    if len(shape) == 3 and shape[0] in (1, 3, 4):
        return int(shape[1]), int(shape[2])
    raise ValueError(f"image {path} has shape {shape}; expected (H, W), (H, W, C) or (C, H, W)")


def _as_labels(arr: np.ndarray, path: Path) -> np.ndarray:
    """A 2-D integer label image from a decoded mask; refuses what cannot be a label image."""
    if arr.ndim == 3 and arr.shape[2] in (3, 4):
        rgb = arr[:, :, :3]
        if not ((rgb == rgb[:, :, :1]).all()):
            raise ValueError(
                f"mask {path} is colour-coded (its RGB channels differ); save instance labels "
                "as a single-channel label image"
            )
        arr = rgb[:, :, 0]
    if arr.ndim != 2:
        raise ValueError(f"mask {path} has shape {arr.shape}; expected (H, W) labels")
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8)
    if np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all() or (arr != np.round(arr)).any():
            raise ValueError(
                f"mask {path} holds non-integer values; a mask must hold integer labels "
                "(threshold probability maps before saving them)"
            )
        arr = arr.astype(np.int64)
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"mask {path} has dtype {arr.dtype}; expected integer labels")
    if arr.size and arr.min() < 0:
        raise ValueError(f"mask {path} holds negative labels (min {arr.min()})")
    if arr.size and arr.max() == 255:
        present = np.flatnonzero(np.bincount(arr.ravel().astype(np.int64, copy=False)))
        if set(present.tolist()) <= {0, 255}:
            return (arr == 255).astype(np.uint8)  # a binary mask stored as 0/255
    return arr


def _as_stack(arr: np.ndarray, path: Path) -> np.ndarray:
    values = set(np.unique(arr).tolist())
    if not (values <= {0, 1} or values <= {0, 255}):
        raise ValueError(
            f"mask stack {path} (shape {arr.shape}) must hold binary pages ({{0, 1}} or "
            f"{{0, 255}}), found values {sorted(values)[:8]}"
        )
    return arr > 0


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """A label image (H, W) of non-negative integers, or a bool stack (N, H, W) from a TIFF."""
    path = _require(path, MASK_EXTS, "mask")
    try:
        if _ext(path) in _TIFF:
            arr = np.asarray(tifffile.imread(path))
        else:
            arr = _pil_array(path, True)
    except Exception as exc:
        raise ValueError(f"could not read mask {path} (corrupt or not an image?): {exc}") from exc
    if arr.ndim == 3 and _ext(path) in _TIFF and not (arr.shape[2] in (3, 4) and arr.shape[0] > 4):
        return _as_stack(arr, path)
    return _as_labels(arr, path)


def mask_instances(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(label values (K,), areas (K,)) of the instances of a label image or a stack."""
    if mask.ndim == 3:  # a stack; empty pages are absent structures, not instances
        areas = mask.reshape(mask.shape[0], -1).sum(axis=1)
        present = np.flatnonzero(areas)
        return present + 1, areas[present]
    counts = np.bincount(mask.ravel()) if mask.dtype.itemsize <= 2 else None
    if counts is not None:
        values = np.flatnonzero(counts)
        values = values[values > 0]
        return values, counts[values]
    values, areas = np.unique(mask, return_counts=True)
    keep = values > 0
    return values[keep], areas[keep]


def inspect_image(path: str | os.PathLike) -> dict[str, Any]:
    """{"hw": [H, W]} of an image that decodes completely, is not empty, and holds integer
    or finite float pixels; ValueError naming the file otherwise."""
    pixels = read_image(path)
    h, w = pixels.shape[:2]
    if h == 0 or w == 0:
        raise ValueError(f"image {path} is empty ({h} x {w} pixels)")
    if pixels.dtype.kind not in "biuf":
        raise ValueError(f"image {path} has pixel type {pixels.dtype}; expected integers or floats")
    if pixels.dtype.kind == "f":
        bad = int(np.count_nonzero(~np.isfinite(pixels)))
        if bad:
            raise ValueError(f"image {path} holds {bad} NaN or infinite pixel values")
    return {"hw": [int(h), int(w)]}


def inspect_mask(path: str | os.PathLike) -> dict[str, Any]:
    """{"hw": [H, W], "instances": K} of a mask that ``read_mask`` accepts."""
    labels = read_mask(path)
    values, _ = mask_instances(labels)
    return {"hw": [int(s) for s in labels.shape[-2:]], "instances": int(len(values))}
