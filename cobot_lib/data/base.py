"""The item every dataset yields, the shared dataset machinery, and the collate function.

An item is ONE image with ALL its instances (the project's data contract), so that one
image-encoder pass supervises every instance of the image:

    {"image": float32 (3, S, S)   SAM-normalised, longest side resized to S, zero-padded,
     "masks": float32 (N, S, S)   in {0, 1}, same padded frame,
     "boxes": float32 (N, 4)      xyxy input pixels: tight on "masks", jittered when training,
     "labels": int64 (N,)         the instance's label value (or category id for COCO),
     "prompt": str                which prompts the model gets: "box", "point" or "box+point",
     "points": float32 (N, P, 2)  (point prompts only) xy input pixels (``points``),
     "point_labels": int64 (N, P) (point prompts only) 1 inside, 0 outside, -1 padding,
     "original_size": (H, W), "input_size": (h, w) before padding, "name": str}

``BoxPromptDataset`` holds what every loader shares: the per-instance index
(``instance_index`` of (image_idx, instance_idx) pairs, ``num_instances``), the counters of
what was skipped and why (``skipped``), seeded jitter per (seed, epoch, index) with
``set_epoch``, and ``original_masks(index)`` for evaluation at the original size. A subclass
only says how to list its images and read one (``_read``).

Point prompts (``prompt="point"`` or ``"box+point"``) are drawn on the resized masks with the
item's generator ``item_rng(seed, epoch, index)``, after the box jitter (so box-only items are
unchanged): fresh points every epoch in training, and in evaluation (epoch 0, the evaluation
set's seed, 0 unless given) the same points for every run that scores the set.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from scipy import ndimage

from .points import sample_points
from .transforms import (
    INTENSITY_MODES,
    item_rng,
    jitter_boxes,
    pad_masks,
    prepare_image,
    preprocess_shape,
    resize_labels,
    resize_masks,
    tight_boxes,
)

__all__ = [
    "PROMPTS",
    "check_prompt",
    "build_item",
    "BoxPromptDataset",
    "PerInstance",
    "collate_samples",
]

#: the prompt kinds a dataset can give the model (``data.prompt`` in a training config)
PROMPTS = ("box", "point", "box+point")


def check_prompt(prompt: str, n_points: int, n_negative: int) -> None:
    """Raise a ValueError naming the bad value of a prompt setting."""
    if prompt not in PROMPTS:
        raise ValueError(f"prompt must be one of {list(PROMPTS)}, got {prompt!r}")
    if n_points < 1 or n_negative < 0:
        raise ValueError(
            f"need at least 1 positive point and >= 0 negative points, got {n_points} and "
            f"{n_negative}"
        )


def _from_label(
    label: np.ndarray, values: np.ndarray, size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Resized binary masks (N, h, w) and their tight boxes for label values of a label image.

    The label image is resized once (nearest) and the boxes are read off ``find_objects``; an
    instance lost by the resize falls back to ``resize_masks`` (never emptied).
    """
    small_label = resize_labels(label, size)
    masks = small_label[None] == values[:, None, None]
    boxes = np.zeros((len(values), 4), np.float32)
    if len(values) and values.max() < 2**24:
        objects = ndimage.find_objects(small_label.astype(np.int32, copy=False), int(values.max()))
    else:  # pragma: no cover - label values this large are not written by this project
        objects = [None] * (int(values.max()) if len(values) else 0)
    for i, v in enumerate(values):
        sl = objects[v - 1] if 0 < v <= len(objects) else None
        if sl is None:  # lost by the resize (or out of range): the exact fallback
            masks[i] = resize_masks((label == v)[None], size)[0]
            boxes[i] = tight_boxes(masks[i : i + 1])[0]
        else:
            boxes[i] = (sl[1].start, sl[0].start, sl[1].stop - 1, sl[0].stop - 1)
    return masks, boxes


def build_item(
    image: np.ndarray,
    masks: np.ndarray,
    labels: Sequence[int],
    name: str,
    image_size: int,
    jitter_px: float = 0.0,
    rng: np.random.Generator | None = None,
    intensity: str = "percentile",
    prompt: str = "box",
    n_points: int = 1,
    n_negative: int = 0,
) -> dict[str, Any]:
    """One item from an image (H, W[, C]) and its instances.

    ``masks`` is either binary (N, H, W), one mask per entry of ``labels``, or a label image
    (H, W) from which the instances with the values ``labels`` are taken (faster: the label
    image is resized once). Boxes are tight on the resized masks; with an ``rng`` each side is
    then jittered outwards by 0..jitter_px original pixels (``transforms.jitter_boxes``). With
    point prompts, ``n_points`` positive and ``n_negative`` negative points per instance are
    then drawn from the resized masks with the same ``rng`` (``points.sample_points``).
    """
    check_prompt(prompt, n_points, n_negative)
    if prompt != "box" and rng is None:
        raise ValueError(f"{name}: point prompts need a seeded rng (transforms.item_rng)")
    masks, labels = np.asarray(masks), np.asarray(labels, dtype=np.int64).reshape(-1)
    if masks.ndim not in (2, 3) or masks.shape[-2:] != image.shape[:2]:
        raise ValueError(f"{name}: masks {masks.shape} do not match image {image.shape[:2]}")
    if masks.ndim == 3 and len(masks) != len(labels):
        raise ValueError(f"{name}: {len(masks)} masks but {len(labels)} labels")
    pixels, (h, w) = prepare_image(image, image_size, intensity)
    if masks.ndim == 2:
        small, boxes = _from_label(masks, labels, (h, w))
    else:
        small = resize_masks(masks.astype(bool, copy=False), (h, w))
        boxes = tight_boxes(small) if len(small) else np.zeros((0, 4), np.float32)
    if rng is not None and jitter_px > 0 and len(boxes):
        scale = image_size / max(image.shape[:2])  # input pixels per original pixel
        boxes = jitter_boxes(boxes, jitter_px, (h, w), rng, scale=scale)
    item = {
        "image": pixels,
        "masks": pad_masks(small, image_size),
        "boxes": torch.from_numpy(boxes),
        "labels": torch.from_numpy(labels),
        "prompt": prompt,
        "original_size": (int(image.shape[0]), int(image.shape[1])),
        "input_size": (h, w),
        "name": name,
    }
    if prompt != "box":
        points, point_labels = sample_points(small, n_points, n_negative, rng)
        item["points"] = torch.from_numpy(points)
        item["point_labels"] = torch.from_numpy(point_labels)
    return item


class BoxPromptDataset(torch.utils.data.Dataset):
    """Base of the loaders: per-image items, per-instance index, seeded jitter, skip counters.

    Args:
        image_size: the model's side S (``cobot_lib.models.input_size(model_type)``).
        train: jitter the boxes (and subsample with ``max_instances``); eval gives tight boxes.
        jitter_px: largest outward move of each box side, in original pixels (paper: 50).
        seed: with the epoch (``set_epoch``) and the index, fixes all randomness of an item.
        min_area: instances with fewer original pixels are dropped (counted in ``skipped``).
        max_instances: in training, keep a seeded random subset of at most this many instances
            per image (memory: N masks of S x S floats); None keeps all. Eval keeps all.
        intensity: "percentile" or "minmax" (``transforms.to_uint8_range``).
        prompt: "box", "point" or "box+point": what the items give the model.
        points, negative_points: per instance, with point prompts (``points.sample_points``).
    """

    def __init__(
        self,
        image_size: int,
        train: bool = False,
        jitter_px: float = 50.0,
        seed: int = 0,
        min_area: int = 1,
        max_instances: int | None = None,
        intensity: str = "percentile",
        prompt: str = "box",
        points: int = 1,
        negative_points: int = 0,
    ) -> None:
        if image_size < 16:
            raise ValueError(f"image_size must be >= 16 pixels, got {image_size}")
        if jitter_px < 0:
            raise ValueError(f"jitter_px must be >= 0 pixels, got {jitter_px}")
        if min_area < 1:
            raise ValueError(f"min_area must be >= 1 pixel, got {min_area}")
        if max_instances is not None and max_instances < 1:
            raise ValueError(f"max_instances must be >= 1 or None, got {max_instances}")
        if intensity not in INTENSITY_MODES:
            raise ValueError(f"intensity must be one of {INTENSITY_MODES}, got {intensity!r}")
        self.image_size, self.train, self.jitter_px = image_size, train, float(jitter_px)
        self.seed, self.min_area, self.max_instances = seed, min_area, max_instances
        self.intensity = intensity
        check_prompt(prompt, points, negative_points)
        self.prompt, self.points, self.negative_points = prompt, points, negative_points
        self.epoch = 0
        self.names: list[str] = []
        self.instance_labels: list[np.ndarray] = []  # kept label values per image
        self.sizes: list[tuple[int, int]] = []
        self.skipped: Counter[str] = Counter()

    # --- what a subclass provides -------------------------------------------------------
    def _read(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(image (H, W[, C]), instances): binary masks (N, H, W), one per entry of
        ``self.instance_labels[index]``, or a label image (H, W) holding those values."""
        raise NotImplementedError

    # --- index -------------------------------------------------------------------------
    def _add_image(self, name: str, size: tuple[int, int], values, areas) -> None:
        """Record one image's instances; empty images and small instances are counted."""
        values, areas = np.asarray(values), np.asarray(areas)
        small = areas < self.min_area
        self.skipped["instances_below_min_area"] += int(small.sum())
        values = values[~small]
        if values.size == 0:
            self.skipped["images_without_instances"] += 1
            return
        self.names.append(name)
        self.sizes.append((int(size[0]), int(size[1])))
        self.instance_labels.append(values)

    @property
    def num_instances(self) -> int:
        return int(sum(len(v) for v in self.instance_labels))

    @property
    def instance_index(self) -> list[tuple[int, int]]:
        """(image_idx, instance_idx) of every instance, for per-instance iteration."""
        return [(i, j) for i, v in enumerate(self.instance_labels) for j in range(len(v))]

    def set_epoch(self, epoch: int) -> None:
        """Draw fresh jitter: items depend on (seed, epoch, index)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.names)

    def _check_index(self, index: int) -> int:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        return index % len(self)

    def original_masks(self, index: int) -> np.ndarray:
        """Bool (N, H, W) masks at the original size, in the order of the eval item's masks."""
        index = self._check_index(index)
        masks = self._read(index)[1]
        if masks.ndim == 2:
            return masks[None] == self.instance_labels[index][:, None, None]
        return masks.astype(bool, copy=False)

    def __getitem__(self, index: int) -> dict[str, Any]:
        index = self._check_index(index)
        image, masks = self._read(index)
        labels = self.instance_labels[index]
        if image.shape[:2] != masks.shape[-2:]:
            raise ValueError(
                f"{self.names[index]}: image size {image.shape[:2]} differs from mask size "
                f"{masks.shape[-2:]}"
            )
        rng = item_rng(self.seed, self.epoch, index)
        if self.train and self.max_instances is not None and len(labels) > self.max_instances:
            keep = np.sort(rng.choice(len(labels), self.max_instances, replace=False))
            masks = masks if masks.ndim == 2 else masks[keep]
            labels = labels[keep]
        return build_item(
            image, masks, labels, self.names[index], self.image_size,
            self.jitter_px if self.train else 0.0, rng, self.intensity,
            self.prompt, self.points, self.negative_points,
        )  # fmt: skip

    def input_size(self, index: int) -> tuple[int, int]:
        """(h, w) of image ``index`` after resizing, without reading it."""
        h, w = self.sizes[self._check_index(index)]
        return preprocess_shape(h, w, self.image_size)

    def describe(self) -> str:
        skipped = ", ".join(f"{k}={v}" for k, v in sorted(self.skipped.items()) if v) or "none"
        return (
            f"{type(self).__name__}: {len(self)} images, {self.num_instances} instances, "
            f"S={self.image_size}, train={self.train}; skipped: {skipped}"
        )


class PerInstance(torch.utils.data.Dataset):
    """One item per instance of a ``BoxPromptDataset`` (N = 1), for per-instance iteration."""

    def __init__(self, dataset: BoxPromptDataset) -> None:
        self.dataset = dataset
        self.index = dataset.instance_index

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, k: int) -> dict[str, Any]:
        if self.dataset.train and self.dataset.max_instances is not None:
            raise ValueError("PerInstance needs every instance: build it without max_instances")
        i, j = self.index[k]
        item = dict(self.dataset[i])
        for key in ("masks", "boxes", "labels", "points", "point_labels"):
            if key in item:
                item[key] = item[key][j : j + 1]
        item["instance"] = j
        return item


def collate_samples(batch: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stack the images (B, 3, S, S); every other field becomes a list (N varies per image)."""
    if not batch:
        raise ValueError("cannot collate an empty batch")
    out: dict[str, Any] = {"image": torch.stack([torch.as_tensor(b["image"]) for b in batch])}
    for key in batch[0]:
        if key != "image":
            out[key] = [b[key] for b in batch]
    return out
