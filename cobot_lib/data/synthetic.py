"""Seeded synthetic shapes: the pretraining data of the tiny foundation SAM, and test fixtures.

Each image holds several instances (ellipses, star-shaped polygons, smooth blobs) with solid,
gradient or textured fills, drawn over a textured background with unlabelled clutter, at a
random contrast, then blurred and noised. Later shapes occlude earlier ones, so an instance's
mask is its *visible* part and its box is the tight box of that mask. Half the images are grey
(like fluorescence or MRI), half colour.

Everything is a pure function of ``(seed, index)`` (``numpy.random.default_rng([seed, index])``),
so a held-out set is just another seed, and an item is the same whichever worker draws it.
Items follow the data contract of ``cobot_lib.data``: one image with all its instances, already
at the model's side S (no resize, no padding), normalised with SAM's pixel mean and std.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage
from skimage.draw import polygon as draw_polygon

from ..backbone.sam import PIXEL_MEAN, PIXEL_STD
from .base import check_prompt
from .points import sample_points
from .transforms import item_rng, jitter_boxes, tight_boxes

__all__ = ["render_shapes", "SyntheticShapes"]

_MEAN = np.asarray(PIXEL_MEAN, dtype=np.float32)[:, None, None]
_STD = np.asarray(PIXEL_STD, dtype=np.float32)[:, None, None]


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Zero-mean, unit-range smooth noise (size, size) from a cells x cells grid (bilinear)."""
    grid = rng.standard_normal((cells + 1, cells + 1)).astype(np.float32)
    out = ndimage.zoom(grid, size / (cells + 1), order=1, mode="nearest", grid_mode=True)
    out = out[:size, :size]
    return out / (np.abs(out).max() + 1e-6)


def _colour(rng: np.random.Generator, grey: bool) -> np.ndarray:
    c = rng.uniform(0, 1, 3).astype(np.float32)
    return np.full(3, c[0], np.float32) if grey else c


def _fill(rng: np.random.Generator, size: int, base: np.ndarray, grey: bool) -> np.ndarray:
    """A (3, size, size) fill: solid, linear gradient or textured around the colour ``base``."""
    kind = rng.integers(3)
    if kind == 0:
        return np.broadcast_to(base[:, None, None], (3, size, size))
    if kind == 1:
        ang = rng.uniform(0, 2 * np.pi)
        ramp = (
            np.cos(ang) * np.linspace(-1, 1, size)[None, :]
            + np.sin(ang) * np.linspace(-1, 1, size)[:, None]
        )
        return base[:, None, None] + rng.uniform(0.05, 0.25) * ramp[None].astype(np.float32)
    tex = _smooth_noise(rng, size, int(rng.choice([8, 16, 32, 64])))
    amp = rng.uniform(0.05, 0.25)
    if grey:
        return base[:, None, None] + amp * tex[None]
    return base[:, None, None] + amp * tex[None] * rng.uniform(0.3, 1, 3)[:, None, None]


def _shape_mask(rng: np.random.Generator, size: int, scale: float) -> np.ndarray:
    """One random ellipse, star-shaped polygon or smooth blob as a boolean (size, size) mask.

    The shape is evaluated only in a window around its centre (its extent is at most
    1.7 x its radius), which keeps an image at a few milliseconds.
    """
    cy, cx = rng.uniform(0.05, 0.95, 2) * size
    radius = rng.uniform(14, 64) * scale
    kind = rng.integers(3)
    mask = np.zeros((size, size), dtype=bool)
    if kind == 1:  # star-shaped polygon (convex when the radii are equal)
        k = int(rng.integers(3, 10))
        ang = np.sort(rng.uniform(0, 2 * np.pi, k))
        rad = radius * rng.uniform(0.5, 1.0, k)
        rr, cc = draw_polygon(cy + rad * np.sin(ang), cx + rad * np.cos(ang), shape=mask.shape)
        mask[rr, cc] = True
        return mask
    reach = 1.7 * radius + 2
    y0, y1 = max(int(cy - reach), 0), min(int(cy + reach) + 1, size)
    x0, x1 = max(int(cx - reach), 0), min(int(cx + reach) + 1, size)
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    dy, dx = yy - cy, xx - cx
    if kind == 0:  # ellipse
        a, b = radius, radius * rng.uniform(0.35, 1.0)
        t = rng.uniform(0, np.pi)
        u = dx * np.cos(t) + dy * np.sin(t)
        v = -dx * np.sin(t) + dy * np.cos(t)
        mask[y0:y1, x0:x1] = (u / a) ** 2 + (v / b) ** 2 <= 1
        return mask
    # smooth blob: radius a low-order Fourier series of the angle (at most 1.64 x radius)
    theta = np.arctan2(dy, dx)
    r = np.ones_like(theta)
    for harmonic in range(2, 6):
        amp = rng.uniform(0, 0.5 / harmonic)
        r += amp * np.cos(harmonic * theta + rng.uniform(0, 2 * np.pi))
    mask[y0:y1, x0:x1] = np.hypot(dy, dx) <= radius * r
    return mask


def render_shapes(
    seed: int, index: int, size: int = 256, max_instances: int = 8
) -> tuple[np.ndarray, np.ndarray]:
    """Image (3, size, size) float32 in [0, 1] and visible instance masks (N, size, size) bool.

    Deterministic in (seed, index). Every returned mask has at least 150 visible pixels (scaled
    with size) and at least half of its shape visible; N >= 1.
    """
    if size < 32:
        raise ValueError(f"image size must be >= 32 pixels, got {size}")
    rng = np.random.default_rng([seed, index])
    scale = size / 256
    grey = bool(rng.random() < 0.5)
    bg_base = _colour(rng, grey)
    image = _fill(rng, size, bg_base, grey).copy()
    for _ in range(int(rng.integers(0, 12))):  # unlabelled clutter, under the shapes
        m = _shape_mask(rng, size, scale * 0.15)
        image[:, m] = _colour(rng, grey)[:, None]

    visible: list[np.ndarray] = []
    shapes: list[np.ndarray] = []
    target = int(rng.integers(1, max_instances + 1))
    attempts = 0
    while len(shapes) < target and attempts < 4 * target:
        attempts += 1
        m = _shape_mask(rng, size, scale)
        if m.sum() < 200 * scale**2:
            continue
        contrast = rng.uniform(0.12, 0.6) * rng.choice([-1, 1])
        base = np.clip(bg_base + contrast + rng.normal(0, 0.1, 3).astype(np.float32), 0, 1)
        if grey:
            base = np.full(3, base[0], np.float32)
        fill = _fill(rng, size, base.astype(np.float32), grey)
        image[:, m] = fill[:, m]
        for v in visible:
            v &= ~m  # the new shape occludes every earlier one
        visible.append(m.copy())
        shapes.append(m)
    keep = [
        v
        for v, s in zip(visible, shapes, strict=True)
        if v.sum() >= 150 * scale**2 and v.sum() >= 0.5 * s.sum()
    ]
    if not keep:  # the last shape is never occluded
        keep = [visible[-1]]
    blur = rng.uniform(0, 1.5)
    if blur > 0.3:
        image = ndimage.gaussian_filter(image, sigma=(0, blur, blur))
    image = image + rng.normal(0, rng.uniform(0, 0.06), image.shape).astype(np.float32)
    return np.clip(image, 0, 1).astype(np.float32), np.stack(keep)


class SyntheticShapes(torch.utils.data.Dataset):
    """``num_images`` synthetic images in the project's item format, deterministic per index.

    Boxes are ``transforms.tight_boxes`` of the visible masks. In training mode each side moves
    outwards by a random 0..``jitter_px`` pixels (``transforms.jitter_boxes``, seeded by
    ``item_rng(seed, epoch, index)``; ``set_epoch`` draws fresh jitter); in eval mode, tight.
    With ``prompt`` "point" or "box+point" the items also carry point prompts drawn from the
    masks with the same generator (``points.sample_points``), as ``BoxPromptDataset`` does.
    """

    def __init__(
        self,
        num_images: int,
        image_size: int = 256,
        seed: int = 0,
        train: bool = True,
        jitter_px: float = 8.0,
        max_instances: int = 8,
        prompt: str = "box",
        points: int = 1,
        negative_points: int = 0,
    ) -> None:
        if num_images < 1:
            raise ValueError(f"num_images must be >= 1, got {num_images}")
        check_prompt(prompt, points, negative_points)
        self.prompt, self.points, self.negative_points = prompt, points, negative_points
        self.num_images, self.image_size, self.seed = num_images, image_size, seed
        self.train, self.jitter_px, self.max_instances = train, jitter_px, max_instances
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_images

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.num_images:
            raise IndexError(f"index {index} out of range for {self.num_images} images")
        s = self.image_size
        image, masks = render_shapes(self.seed, index, s, self.max_instances)
        boxes = tight_boxes(masks)
        rng = item_rng(self.seed, self.epoch, index)
        if self.train and self.jitter_px > 0:
            boxes = jitter_boxes(boxes, self.jitter_px, (s, s), rng)
        pixels = (image * 255.0 - _MEAN) / _STD
        item = {
            "image": torch.from_numpy(pixels.astype(np.float32)),
            "masks": torch.from_numpy(masks.astype(np.float32)),
            "boxes": torch.from_numpy(boxes),
            "prompt": self.prompt,
            "original_size": (s, s),
            "input_size": (s, s),
            "name": f"synthetic_s{self.seed}_{index:06d}",
        }
        if self.prompt != "box":
            points, labels = sample_points(masks, self.points, self.negative_points, rng)
            item["points"] = torch.from_numpy(points)
            item["point_labels"] = torch.from_numpy(labels)
        return item
