"""Solutions to the exercises of notebook 03 (COBOT's anatomy)."""

from __future__ import annotations

import torch

from ...backbone.sam import build_sam
from ...peft import apply_peft, relation_of


def _cobot_params(groups: dict[str, int]) -> int:
    return sum(n for g, n in groups.items() if g.startswith("cobot"))


def exercise_1() -> str:
    """LoRA + COBOT on ViT-L (24 blocks, V = 4, M = 48): 2MV + M² + MV²/4 = 2,880."""
    M, V = 48, 4
    predicted = 2 * M * V + M * M + M * V * V // 4
    with torch.device("meta"):  # shapes only: no memory for ViT-L's weights
        summary = apply_peft(build_sam("vit_l"), "lora", cobot=True)
    assert _cobot_params(summary.groups) == predicted == 2880
    return "2,880 parameters: 384 coefficients, 2,304 in S, 192 in the heads"


def exercise_2() -> str:
    """A fixed (row-stochastic) S with c = 1 gives λ_LM = S 1 = 1: the same start as S = I."""
    sam = build_sam("tiny")
    apply_peft(sam, "lora", cobot={"relation": "fixed", "seed": 3})
    lam = relation_of(sam).cross_block_coefficients()
    assert torch.allclose(lam, torch.ones_like(lam), atol=1e-6)
    return "λ_LM = 1 for every module: rows of a fixed S sum to 1"


def exercise_3() -> str:
    """Adaptformer + COBOT on the tiny model with V = 32 (M = 12): 768 + 144 + 3,072 = 3,984."""
    M, V = 12, 32
    summary = apply_peft(build_sam("tiny"), "adaptformer", rank=V, cobot=True)
    assert _cobot_params(summary.groups) == 2 * M * V + M * M + M * V * V // 4 == 3984
    return "3,984: the quaternion heads (3,072) grow with V², S (144) does not change"
