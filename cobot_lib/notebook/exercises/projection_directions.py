"""Solutions to the exercises of notebook 07 (projection directions, the reparametrisation)."""

from __future__ import annotations

import numpy as np
import torch

from ...backbone.sam import build_sam
from ...peft import apply_peft


def _randomised_lora(cobot: bool) -> torch.nn.Module:
    torch.manual_seed(0)
    sam = build_sam("tiny")
    apply_peft(sam, "lora", cobot=cobot)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in sam.named_parameters():
            if p.requires_grad and not name.startswith("mask_decoder"):
                p.add_(0.1 * torch.randn(p.shape, generator=gen))
    return sam


def exercise_1() -> str:
    """LoRA+COBOT -> LoRA: A' = W diag(lambda) A (the bridge matrix times A) gives the same
    update B A' = B W diag(lambda) A."""
    wrapper = _randomised_lora(cobot=True).image_encoder.blocks[0].attn.qkv
    bridge = wrapper.cobot_q
    folded = bridge.matrix() @ wrapper.lora_a_q.weight  # A', what a plain LoRA would hold
    by_hand = wrapper.lora_b_q.weight @ folded
    torch.testing.assert_close(wrapper.delta_weight("q"), by_hand, atol=1e-6, rtol=1e-5)
    return "A' = W diag(λ) A: a plain LoRA module with A' has exactly the same update"


def exercise_2() -> str:
    """LoRA -> LoRA+COBOT: while W diag(lambda) is invertible, A_cobot = (W diag(lambda))^-1 A
    reproduces a given plain A, so the two families coincide."""
    wrapper = _randomised_lora(cobot=True).image_encoder.blocks[0].attn.qkv
    target = torch.randn(4, wrapper.dim, generator=torch.Generator().manual_seed(2))
    bridge = wrapper.cobot_q.matrix().detach().double()
    a_cobot = torch.linalg.solve(bridge, target.double())
    torch.testing.assert_close(bridge @ a_cobot, target.double())
    return "A_cobot = (W diag(λ))^-1 A: any plain LoRA A is reached while W diag(λ) is invertible"


def exercise_3() -> str:
    """With W = I, Delta W = B diag(lambda) A = sum_v lambda_v b_v a_v^T: V rank-one terms,
    one per projection direction (column b_v of B, row a_v of A)."""
    rng = np.random.default_rng(0)
    d, v = 8, 4
    b, a, lam = rng.standard_normal((d, v)), rng.standard_normal((v, d)), rng.standard_normal(v)
    terms = sum(lam[i] * np.outer(b[:, i], a[i]) for i in range(v))
    assert np.allclose(b @ np.diag(lam) @ a, terms)
    return "ΔW = Σ_v λ_v b_v a_v^T: λ_v scales the v-th projection direction pair"
