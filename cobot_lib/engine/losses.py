"""The training loss of SAM-COBOT: binary cross-entropy plus binary Dice (Eq. 22)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["dice_loss", "bce_dice_loss"]


def dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """Mean over instances of 1 - soft Dice, for logits and {0,1} targets of shape (N, ...)."""
    prob = torch.sigmoid(logits).flatten(1)
    target = target.flatten(1).to(prob.dtype)
    inter = (prob * target).sum(1)
    dice = (2 * inter + eps) / (prob.sum(1) + target.sum(1) + eps)
    return (1 - dice).mean()


def bce_dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L = BCE(sigmoid(logits), target) + Dice loss (Eq. 22), both averaged over instances."""
    if logits.shape != target.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and target {tuple(target.shape)} differ")
    logits = logits.float()
    bce = F.binary_cross_entropy_with_logits(logits, target.to(logits.dtype))
    return bce + dice_loss(logits, target)
