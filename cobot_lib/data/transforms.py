"""SAM's input convention, its exact inverse, tight boxes and seeded box jitter.

A SAM takes a square S x S image (S = 1024 for the released models, 256 for the tiny one): the
longest side is resized to S (``ResizeLongestSide``), pixels are normalised with SAM's mean and
std, and the image is zero-padded at the bottom and right. Everything here follows
``segment_anything`` so that a box or mask means the same thing in this project as in SAM:

* ``preprocess_shape`` is ``ResizeLongestSide.get_preprocess_shape`` (round half up);
* images are resized bilinearly with antialiasing, label masks by nearest neighbour with pixel
  centres aligned (torch's ``nearest-exact``), so label values are never mixed;
* ``map_boxes`` / ``map_points`` are ``ResizeLongestSide.apply_boxes`` / ``apply_coords`` (x
  scaled by w'/w, y by h'/h; the same map for both, so a point inside a box stays inside it);
* ``logits_to_original`` is ``Sam.postprocess_masks``: upsample to S, crop the padding, resize
  to the original size.

Intensities. uint8 and bool images are used as they are; float images already in [0, 1] are
multiplied by 255; every other image (16-bit, integer, other floats) is stretched per image to
0..255 between its 0.5 and 99.5 percentiles (``intensity="percentile"``, robust to a few hot
pixels, as MedSAM does for non-CT data) or between its min and max (``intensity="minmax"``).

Box jitter (Sec. 5.1: "a random perturbation to each bounding box, varying between 0 and 50
pixels"). Each side of the tight box moves *outwards* by an independent random integer
0..max_px, drawn in ORIGINAL-image pixels (so 50 px means the same on a 256 px tile and a
4000 px scene whatever the model's S), then mapped to the input frame and clipped to the image.
Outwards, as in MedSAM's training code, so that the prompt always encloses its object. The
random numbers come from ``item_rng(seed, epoch, index)``, so an item is reproducible whichever
worker or process draws it.

Boxes are xyxy with inclusive pixel indices (the box of a one-pixel mask at (x, y) is
(x, y, x, y)), the convention of SAM's ``batched_mask_to_box``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..backbone.sam import PIXEL_MEAN, PIXEL_STD

__all__ = [
    "preprocess_shape",
    "percentiles",
    "to_uint8_range",
    "to_rgb",
    "prepare_image",
    "nearest_indices",
    "resize_labels",
    "resize_masks",
    "pad_masks",
    "map_boxes",
    "map_points",
    "tight_boxes",
    "item_rng",
    "jitter_boxes",
    "crop_to_input",
    "masks_to_original",
    "logits_to_original",
]

_MEAN = torch.tensor(PIXEL_MEAN, dtype=torch.float32)[:, None, None]
_STD = torch.tensor(PIXEL_STD, dtype=torch.float32)[:, None, None]
INTENSITY_MODES = ("percentile", "minmax")


def preprocess_shape(height: int, width: int, long_side: int) -> tuple[int, int]:
    """(h, w) after resizing the longest side to ``long_side`` (SAM's rounding: half up).

    A side that SAM would round to 0 (aspect ratio beyond 2 * long_side) is kept at 1 pixel.
    """
    if height < 1 or width < 1:
        raise ValueError(f"image size must be positive, got {(height, width)}")
    scale = long_side / max(height, width)
    return max(1, int(height * scale + 0.5)), max(1, int(width * scale + 0.5))


def to_uint8_range(image: np.ndarray, intensity: str = "percentile") -> np.ndarray:
    """The image as float32 in [0, 255] (see the module docstring for the rule per dtype)."""
    if intensity not in INTENSITY_MODES:
        raise ValueError(f"intensity must be one of {INTENSITY_MODES}, got {intensity!r}")
    if image.dtype == np.bool_:
        return image.astype(np.float32) * 255.0
    if image.dtype == np.uint8:
        return image.astype(np.float32)
    if not np.issubdtype(image.dtype, np.number) or np.iscomplexobj(image):
        raise ValueError(f"image must hold real numbers, got dtype {image.dtype}")
    x = image.astype(np.float32)
    if not np.isfinite(x).all():
        raise ValueError("image holds NaN or infinite values")
    if np.issubdtype(image.dtype, np.floating) and x.min() >= 0 and x.max() <= 1:
        return x * 255.0
    if intensity == "percentile":
        lo, hi = percentiles(image, (0.5, 99.5))
    else:
        lo, hi = float(x.min()), float(x.max())
    if hi <= lo:  # a constant image carries no contrast
        return np.zeros_like(x)
    return ((np.clip(x, lo, hi) - lo) * (255.0 / (hi - lo))).astype(np.float32)


def percentiles(x: np.ndarray, qs: tuple[float, ...]) -> tuple[float, ...]:
    """``np.percentile(x, qs)`` (linear interpolation); for small-range integers via a histogram.

    A 16-bit image has at most 65536 distinct values, so counting them and reading the order
    statistics off the cumulative counts is exact and several times faster than a partition.
    """
    x = np.asarray(x)
    if np.issubdtype(x.dtype, np.integer) and x.dtype.itemsize <= 2 and x.size:
        lo = int(x.min())
        counts = np.bincount(x.ravel().astype(np.int64) - lo)
        cum = np.cumsum(counts)
        out = []
        for q in qs:
            pos = q / 100.0 * (x.size - 1)
            k = int(np.floor(pos))
            a = np.searchsorted(cum, k + 1)  # value index of the k-th smallest (0-based)
            b = np.searchsorted(cum, min(k + 2, x.size))
            out.append(lo + a + (pos - k) * (b - a))
        return tuple(float(v) for v in out)
    return tuple(float(v) for v in np.percentile(x.astype(np.float64), qs))


def to_rgb(image: np.ndarray) -> np.ndarray:
    """(H, W, 3): grey (H, W) or (H, W, 1) repeated, alpha of (H, W, 4) dropped."""
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim == 3 and image.shape[2] == 1:
        return np.repeat(image, 3, axis=2)
    if image.ndim == 3 and image.shape[2] in (3, 4):
        return image[:, :, :3]
    raise ValueError(
        f"image must be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got shape {image.shape}"
    )


def prepare_image(
    image: np.ndarray, image_size: int, intensity: str = "percentile"
) -> tuple[torch.Tensor, tuple[int, int]]:
    """SAM's input, float32 (3, S, S) normalised and zero-padded, and its (h, w) before padding.

    Padding comes after normalisation, as in ``Sam.preprocess``, so padded pixels are exactly 0.
    """
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    to_rgb(image[:1, :1])  # validates the shape
    x = to_uint8_range(image if image.ndim == 2 else image[:, :, :3], intensity)
    h0, w0 = x.shape[:2]
    h, w = preprocess_shape(h0, w0, image_size)
    # grey stays one channel until the end: resizing it costs a third of a colour image
    t = torch.from_numpy(x[None] if x.ndim == 2 else np.ascontiguousarray(x.transpose(2, 0, 1)))
    if (h, w) != (h0, w0):
        t = F.interpolate(
            t[None], size=(h, w), mode="bilinear", align_corners=False, antialias=True
        )[0]
    out = torch.zeros((3, image_size, image_size), dtype=torch.float32)
    out[:, :h, :w] = (t - _MEAN) / _STD
    return out, (h, w)


def nearest_indices(n_out: int, n_in: int) -> np.ndarray:
    """Source index of each of ``n_out`` output pixels: floor((i + 0.5) * n_in / n_out).

    Pixel centres aligned; the rule of torch's ``nearest-exact`` and of PIL's NEAREST, computed
    in exact integer arithmetic (a centre exactly on a pixel border goes to the later pixel).
    """
    idx = ((2 * np.arange(n_out, dtype=np.int64) + 1) * n_in) // (2 * n_out)
    return np.minimum(idx, n_in - 1)


def resize_labels(labels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a label image (..., H, W) to (..., h, w), any dtype."""
    h, w = size
    rows = nearest_indices(h, labels.shape[-2])
    cols = nearest_indices(w, labels.shape[-1])
    return labels[..., rows[:, None], cols[None, :]]


def resize_masks(masks: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Binary masks (N, H, W) resized to (N, h, w) by nearest neighbour; never emptied.

    A small instance can fall between the sampled pixels when shrinking; such a mask is instead
    resized by "any" pooling (an output pixel is set when an input pixel maps into it), so
    every non-empty instance keeps at least one pixel and its prompt still has a target.
    """
    masks = np.asarray(masks, dtype=bool)
    out = resize_labels(masks, size)
    lost = np.flatnonzero(masks.any(axis=(1, 2)) & ~out.any(axis=(1, 2)))
    if lost.size:
        h, w = size
        for i in lost:
            ys, xs = np.nonzero(masks[i])
            oy = np.minimum((ys * h) // masks.shape[1], h - 1)
            ox = np.minimum((xs * w) // masks.shape[2], w - 1)
            out[i, oy, ox] = True
    return out


def pad_masks(masks: np.ndarray, image_size: int) -> torch.Tensor:
    """(N, h, w) binary masks as float32 (N, S, S), zero-padded at the bottom and right."""
    n, h, w = masks.shape
    out = torch.zeros((n, image_size, image_size), dtype=torch.float32)
    out[:, :h, :w] = torch.from_numpy(np.ascontiguousarray(masks, dtype=np.float32))
    return out


def map_boxes(
    boxes: np.ndarray, original_size: tuple[int, int], input_size: tuple[int, int]
) -> np.ndarray:
    """xyxy boxes from the original (H, W) frame to the resized (h, w) frame (SAM's apply_boxes).

    Padding is at the bottom and right, so it does not move a box. Swapping the two sizes gives
    the inverse map (input frame back to original pixels).
    """
    return map_points(np.asarray(boxes, dtype=np.float64).reshape(-1, 2, 2), original_size,
                      input_size).reshape(-1, 4)  # fmt: skip


def map_points(
    points: np.ndarray, original_size: tuple[int, int], input_size: tuple[int, int]
) -> np.ndarray:
    """xy points (..., 2) from the original (H, W) frame to the resized (h, w) frame, float32
    (SAM's ``ResizeLongestSide.apply_coords``); swapping the sizes gives the inverse map."""
    (h0, w0), (h, w) = original_size, input_size
    scale = np.array([w / w0, h / h0], dtype=np.float64)
    return (np.asarray(points, dtype=np.float64) * scale).astype(np.float32)


def tight_boxes(masks: np.ndarray) -> np.ndarray:
    """xyxy boxes (N, 4) of binary masks (N, H, W): first and last foreground column and row."""
    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise ValueError(f"masks must have shape (N, H, W), got {masks.shape}")
    rows, cols = masks.any(axis=2), masks.any(axis=1)  # (N, H), (N, W)
    empty = np.flatnonzero(~rows.any(axis=1))
    if empty.size:
        raise ValueError(f"mask {int(empty[0])} is empty; an empty mask has no box")
    h, w = masks.shape[1:]
    y0, x0 = rows.argmax(axis=1), cols.argmax(axis=1)
    y1, x1 = h - 1 - rows[:, ::-1].argmax(axis=1), w - 1 - cols[:, ::-1].argmax(axis=1)
    return np.stack([x0, y0, x1, y1], axis=1).astype(np.float32)


def item_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator of one item's randomness: a pure function of (seed, epoch, index)."""
    return np.random.default_rng([int(seed), int(epoch), int(index)])


def jitter_boxes(
    boxes: np.ndarray,
    max_px: float,
    size: tuple[int, int],
    rng: np.random.Generator,
    scale: float = 1.0,
) -> np.ndarray:
    """Move each side of each xyxy box outwards by a random integer 0..floor(max_px), clipped.

    The integers are in original pixels and multiplied by ``scale`` (input pixels per original
    pixel) before they are applied; ``size`` = (h, w) is the frame of ``boxes``, to which the
    result is clipped (0..w-1, 0..h-1).
    """
    if max_px < 0:
        raise ValueError(f"box jitter must be >= 0 pixels, got {max_px}")
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    shift = rng.integers(0, int(np.floor(max_px)) + 1, size=boxes.shape).astype(np.float32)
    out = boxes + shift * np.float32(scale) * np.array([-1, -1, 1, 1], dtype=np.float32)
    h, w = size
    out[:, 0::2] = out[:, 0::2].clip(0, w - 1)
    out[:, 1::2] = out[:, 1::2].clip(0, h - 1)
    return out


def crop_to_input(x: torch.Tensor, input_size: tuple[int, int]) -> torch.Tensor:
    """The unpadded part (..., h, w) of a (..., S, S) tensor."""
    h, w = input_size
    if x.shape[-2] < h or x.shape[-1] < w:
        raise ValueError(f"tensor of shape {tuple(x.shape)} is smaller than input size {(h, w)}")
    return x[..., :h, :w]


def masks_to_original(
    masks: torch.Tensor | np.ndarray,
    input_size: tuple[int, int],
    original_size: tuple[int, int],
) -> torch.Tensor:
    """Binary masks (N, S, S) in the padded frame back to bool (N, H, W) at the original size.

    Crops the padding, then nearest-neighbour resizes to (H, W): exactly the original size, and
    the identity round trip for masks made by ``resize_masks`` when S is a whole multiple of
    the original longest side.
    """
    x = crop_to_input(torch.as_tensor(np.asarray(masks)) > 0.5, input_size)
    return torch.from_numpy(resize_labels(x.numpy(), tuple(original_size)))


def logits_to_original(
    logits: torch.Tensor,
    input_size: tuple[int, int],
    original_size: tuple[int, int],
    image_size: int,
) -> torch.Tensor:
    """Mask-decoder logits (N, 1, s, s) or (N, s, s) to (N, H, W) at the original size.

    ``Sam.postprocess_masks``: bilinear upsampling to (S, S), crop to ``input_size``, bilinear
    resize to ``original_size``. Threshold the result at 0 for a mask.
    """
    x = logits[:, None] if logits.dim() == 3 else logits
    if x.dim() != 4 or x.shape[1] != 1:
        raise ValueError(f"logits must be (N, 1, s, s) or (N, s, s), got {tuple(logits.shape)}")
    x = F.interpolate(x.float(), (image_size, image_size), mode="bilinear", align_corners=False)
    x = crop_to_input(x, input_size)
    x = F.interpolate(x, tuple(original_size), mode="bilinear", align_corners=False)
    return x[:, 0]
