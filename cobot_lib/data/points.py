"""Point prompts drawn from ground-truth masks, seeded, as interactive SAM fine-tuning does it.

SAM's own training (Kirillov et al. 2023, Sec. 3 and appendix A) starts an interaction with a
foreground point drawn uniformly from the object's mask; micro-sam's
``PointAndBoxPromptGenerator`` adds background ("negative") points drawn from a band around the
object: inside its box widened by a margin, outside its dilated mask, so a negative point is
near the object but never on its blurry border. This module does the same, in our own words:

* positives: ``n_positive`` pixels drawn uniformly from the mask, without replacement (with
  replacement when the mask has fewer pixels);
* negatives: ``n_negative`` pixels drawn uniformly, without replacement, from the pixels within
  ``margin`` of the object's tight box that are farther than ``gap`` pixels from the mask
  (chessboard distance); if that band is empty, from every pixel off the mask; if the mask
  covers the whole frame, the missing points are padding (label -1, SAM's "not a point").

Coordinates are (x, y) pixel indices of the frame the masks are in (the model's input frame in
the datasets); SAM's prompt encoder adds 0.5 to reach the pixel centre. All randomness comes
from the ``rng`` given (``transforms.item_rng(seed, epoch, index)`` in the datasets), so an item
is reproducible, and evaluation scores every run on the same prompts.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["POSITIVE", "NEGATIVE", "PADDING", "sample_points"]

POSITIVE, NEGATIVE, PADDING = 1, 0, -1


def _negatives(
    mask: np.ndarray, n: int, rng: np.random.Generator, margin: int, gap: int
) -> np.ndarray:
    """(k, 2) xy background points near the object, k <= n (fewer only if the frame is full)."""
    h, w = mask.shape
    ys, xs = np.nonzero(mask)
    y0, y1 = max(0, ys.min() - margin), min(h, ys.max() + margin + 1)
    x0, x1 = max(0, xs.min() - margin), min(w, xs.max() + margin + 1)
    window = mask[y0:y1, x0:x1]
    near = ndimage.binary_dilation(window, np.ones((3, 3), bool), iterations=gap) if gap else window
    cy, cx = np.nonzero(~near)
    cy, cx = cy + y0, cx + x0
    if cy.size == 0:  # no band (object fills its neighbourhood): anywhere off the mask
        cy, cx = np.nonzero(~mask)
    pick = rng.choice(cy.size, size=min(n, cy.size), replace=False)
    return np.stack([cx[pick], cy[pick]], axis=1)


def sample_points(
    masks: np.ndarray,
    n_positive: int,
    n_negative: int,
    rng: np.random.Generator,
    margin: int = 8,
    gap: int = 2,
) -> tuple[np.ndarray, np.ndarray]:
    """Point prompts for each binary mask (N, H, W): (coords float32 (N, P, 2) xy, labels int64
    (N, P)) with P = n_positive + n_negative, positives first (labels 1, then 0, -1 padding).

    Every mask must be non-empty. ``margin`` widens the box the negatives come from; ``gap``
    keeps them that many pixels off the mask.
    """
    masks = np.asarray(masks, dtype=bool)
    if masks.ndim != 3:
        raise ValueError(f"masks must have shape (N, H, W), got {masks.shape}")
    if n_positive < 1 or n_negative < 0:
        raise ValueError(
            f"need n_positive >= 1 and n_negative >= 0, got {n_positive} and {n_negative}"
        )
    p = n_positive + n_negative
    coords = np.zeros((len(masks), p, 2), np.float32)
    labels = np.full((len(masks), p), PADDING, np.int64)
    for i, mask in enumerate(masks):
        ys, xs = np.nonzero(mask)
        if ys.size == 0:
            raise ValueError(f"mask {i} is empty; an empty mask has no point prompt")
        pick = rng.choice(ys.size, size=n_positive, replace=ys.size < n_positive)
        coords[i, :n_positive] = np.stack([xs[pick], ys[pick]], axis=1)
        labels[i, :n_positive] = POSITIVE
        if n_negative:
            neg = _negatives(mask, n_negative, rng, margin, gap)
            coords[i, n_positive : n_positive + len(neg)] = neg
            labels[i, n_positive : n_positive + len(neg)] = NEGATIVE
    return coords, labels
