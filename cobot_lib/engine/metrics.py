"""Segmentation metrics of the paper: DSC (medical) and IoU / mIoU (natural, remote sensing).

Both are computed per instance on binary masks; an instance whose prediction and ground truth
are both empty scores 1 (nothing to find, nothing found).
"""

from __future__ import annotations

import torch

__all__ = ["dice_score", "iou_score"]


def _flat_bool(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if pred.shape != target.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ")
    return pred.flatten(1).bool(), target.flatten(1).bool()


def dice_score(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-instance DSC = 2|P∩G| / (|P|+|G|) for binary masks of shape (N, ...)."""
    p, g = _flat_bool(pred, target)
    inter = (p & g).sum(1).double()
    total = (p.sum(1) + g.sum(1)).double()
    return torch.where(total > 0, 2 * inter / total.clamp(min=1), torch.ones_like(total))


def iou_score(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-instance IoU = |P∩G| / |P∪G| for binary masks of shape (N, ...)."""
    p, g = _flat_bool(pred, target)
    inter = (p & g).sum(1).double()
    union = (p | g).sum(1).double()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))
