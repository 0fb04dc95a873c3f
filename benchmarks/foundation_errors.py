"""Where the tiny foundation model loses IoU: the figures behind the README's pretraining notes.

Evaluates the cached foundation checkpoint on the held-out synthetic set that
``data_scripts/pretrain_tiny_sam.py`` reports on (the checkpoint's held-out seed and image count,
tight boxes, prediction = upsampled logits > 0) and breaks the per-instance IoU down:

- by object area, next to the most that SAM's 64 x 64 low-resolution logits allow for that
  object (its mask area-averaged to 64 x 64, upsampled bilinearly as the model's logits are,
  thresholded at 1/2): a gap at every size means under-training, not resolution;
- by edge contrast (largest per-channel difference between the mean colour inside the mask and
  in a 3-pixel ring around it, on the rendered image in [0, 1]): if the loss sat in low-contrast
  objects the data, not the model, would set the ceiling;
- by decision threshold on the logits, and the median predicted / true area: calibration.

Each bin also gives its share of the total IoU loss sum(1 - IoU). Writes
``benchmarks/results_foundation.md`` and a figure of twelve mid-sized instances
(``docs/images/foundation_errors.png``: image | overlay, green = right, red = missed,
blue = false positive, white = the box prompt).

    .venv/bin/python benchmarks/foundation_errors.py     # ~1 min on 2 cores
"""

from __future__ import annotations

import argparse
import importlib.util
import platform
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from skimage.io import imsave

from cobot_lib.backbone.foundation import load_foundation_model, verify_foundation
from cobot_lib.backbone.prompting import predict_masks
from cobot_lib.backbone.sam import PIXEL_MEAN, PIXEL_STD
from cobot_lib.data.synthetic import SyntheticShapes
from cobot_lib.engine.metrics import iou_score

HERE = Path(__file__).resolve().parent
AREA_BINS = (0, 400, 1000, 2500, 6000, np.inf)
CONTRAST_BINS = (0, 0.03, 0.06, 0.1, 0.15, 0.25, np.inf)
THRESHOLDS = (-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0)


_MEAN = torch.tensor(PIXEL_MEAN)[:, None, None]
_STD = torch.tensor(PIXEL_STD)[:, None, None]


def _pretrain_module():
    path = HERE.parent / "data_scripts" / "pretrain_tiny_sam.py"
    spec = importlib.util.spec_from_file_location("pretrain_tiny_sam", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def resolution_bound(mask: np.ndarray, low: int = 64) -> float:
    """IoU of the best mask that ``low`` x ``low`` logits can give, upsampled as SAM's are."""
    target = torch.as_tensor(mask, dtype=torch.float32)[None, None]
    coarse = F.interpolate(target, size=(low, low), mode="area")
    back = F.interpolate(coarse, size=mask.shape, mode="bilinear", align_corners=False)
    return iou_score(back[0] > 0.5, target[0] > 0.5).item()


def edge_contrast(image: np.ndarray, mask: np.ndarray, ring_px: int = 3) -> float:
    """Largest per-channel |mean inside - mean in the ring_px ring outside| of a (3,H,W) image."""
    ring = ndimage.binary_dilation(mask, iterations=ring_px) & ~mask
    if not ring.any():
        return float("nan")
    return float(np.abs(image[:, mask].mean(1) - image[:, ring].mean(1)).max())


def breakdown(iou: np.ndarray, values: np.ndarray, bins, extra: dict | None = None) -> list[str]:
    """Markdown rows: bin, instances, mean IoU, share of the IoU loss (and extra per-bin means)."""
    loss = (1 - iou).sum()
    rows = []
    for lo, hi in zip(bins[:-1], bins[1:], strict=True):
        sel = (values >= lo) & (values < hi)
        if not sel.any():
            continue
        label = f"{lo:g}-{hi:g}" if np.isfinite(hi) else f">= {lo:g}"
        cells = [label, str(int(sel.sum())), f"{iou[sel].mean():.3f}"]
        cells.append(f"{(1 - iou[sel]).sum() / loss:.2f}")
        cells += [f"{v[sel].mean():.3f}" for v in (extra or {}).values()]
        rows.append("| " + " | ".join(cells) + " |")
    return rows


def _overlay(image: np.ndarray, truth: np.ndarray, pred: np.ndarray, box) -> np.ndarray:
    rgb = (image.transpose(1, 2, 0) * 255).astype(np.uint8)
    out = rgb.copy()
    out[truth & ~pred] = (255, 0, 0)
    out[pred & ~truth] = (0, 0, 255)
    both = truth & pred
    out[both] = (out[both] * 0.5 + np.array([0, 128, 0])).astype(np.uint8)
    x0, y0, x1, y1 = (int(v) for v in box)
    out[[y0, y1], x0 : x1 + 1] = 255
    out[y0 : y1 + 1, [x0, x1]] = 255
    return np.concatenate([rgb, out], axis=1)


@torch.no_grad()
def collect(meta: dict, batch_size: int = 8) -> dict[str, np.ndarray]:
    """Per-instance IoU (at every threshold), area, edge contrast, bound; and the figure tiles.

    The images are the checkpoint's own held-out set (``meta["held_out_seed"]``, ``meta[
    "held_out_images"]``), so the mean IoU here must equal the one pretraining reported.
    """
    images = int(meta["held_out_images"])
    dataset = SyntheticShapes(images, seed=int(meta["held_out_seed"]), train=False)
    batch_of = _pretrain_module()._batch
    sam = load_foundation_model()
    rows, tiles = [], []
    for start in range(0, images, batch_size):
        batch, boxes, masks = batch_of(dataset, start, min(batch_size, images - start))
        logits_per_image = predict_masks(sam, batch, boxes)
        for k, (logits, truth) in enumerate(zip(logits_per_image, masks, strict=True)):
            rendered = ((batch[k] * _STD + _MEAN) / 255.0).numpy()  # the image in [0, 1]
            truth = truth > 0.5
            per_t = [iou_score(logits[:, 0] > t, truth) for t in THRESHOLDS]
            for j in range(len(truth)):
                m, pred = truth[j].numpy(), (logits[j, 0] > 0).numpy()
                rows.append(
                    [p[j].item() for p in per_t]
                    + [m.sum(), pred.sum(), edge_contrast(rendered, m), resolution_bound(m)]
                )
                if 1000 <= m.sum() < 6000 and len(tiles) < 12:
                    tiles.append(_overlay(rendered, m, pred, boxes[k][j].tolist()))
    table = np.asarray(rows, dtype=np.float64)
    t = len(THRESHOLDS)
    return {
        "iou_at": table[:, :t],
        "iou": table[:, THRESHOLDS.index(0.0)],
        "area": table[:, t],
        "pred_area": table[:, t + 1],
        "contrast": table[:, t + 2],
        "bound": table[:, t + 3],
        "tiles": tiles,
    }


def report(r: dict, meta: dict) -> str:
    iou = r["iou"]
    lines = [
        "# Where the tiny foundation model loses IoU (benchmarks/foundation_errors.py)",
        "",
        f"Checkpoint: {meta['steps']} steps, held-out mIoU {meta['held_out_miou']:.4f} "
        f"(recomputed here: {iou.mean():.4f} over {len(iou)} instances). "
        f"Machine: {platform.machine()}, torch {torch.__version__}.",
        "",
        "## By object area (pixels at 256 px)",
        "",
        "| area | instances | mIoU | share of IoU loss | most 64x64 logits allow |",
        "|---|---|---|---|---|",
        *breakdown(iou, r["area"], AREA_BINS, {"bound": r["bound"]}),
        "",
        "## By edge contrast (inside vs 3-px ring, rendered image in [0, 1])",
        "",
        "| contrast | instances | mIoU | share of IoU loss |",
        "|---|---|---|---|",
        *breakdown(iou, r["contrast"], CONTRAST_BINS),
        "",
        "## Calibration",
        "",
        "| logit threshold | " + " | ".join(f"{t:g}" for t in THRESHOLDS) + " |",
        "|---" * (len(THRESHOLDS) + 1) + "|",
        "| mIoU | " + " | ".join(f"{v:.4f}" for v in r["iou_at"].mean(0)) + " |",
        "",
        f"Median predicted / true area: {np.median(r['pred_area'] / r['area']):.3f}.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=HERE / "results_foundation.md")
    p.add_argument("--figure", type=Path, default=HERE.parent / "docs/images/foundation_errors.png")
    args = p.parse_args(argv)
    meta = verify_foundation()  # the model card: held-out seed and size, steps, ...
    results = collect(meta)
    text = report(results, meta)
    args.out.write_text(text)
    tiles = results["tiles"]
    if len(tiles) >= 3:
        rows = [np.concatenate(tiles[i : i + 3], 1) for i in range(0, len(tiles) - 2, 3)]
        imsave(args.figure, np.concatenate(rows, 0), check_contrast=False)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
