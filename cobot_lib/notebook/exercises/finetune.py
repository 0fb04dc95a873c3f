"""Solutions to the exercises of notebook 04 (fine-tuning)."""

from __future__ import annotations

import torch

from ...backbone.sam import SAM_SPECS, build_sam, input_size
from ...data.synthetic import SyntheticShapes
from ...experiments.analysis import loss_gradients
from ...peft import apply_peft


def exercise_1() -> str:
    """Adaptformer + COBOT on the tiny model (L = 12, D = 128, V = 16, M = 12) trains
    L (2D + DV + V + VD + D) + 2MV + M² + MV²/4 = 53,952 + 1,296 = 55,248 encoder parameters."""
    L, D, V, M = SAM_SPECS["tiny"].depth, SAM_SPECS["tiny"].embed_dim, 16, 12
    predicted = L * (2 * D + D * V + V + V * D + D) + 2 * M * V + M * M + M * V * V // 4
    summary = apply_peft(build_sam("tiny"), "adaptformer", cobot=True)
    assert summary.image_encoder == predicted == 55_248
    return "55,248 = 53,952 (Adaptformer) + 1,296 (COBOT), as notebook 03 counts"


def exercise_2() -> str:
    """At the first step B = 0, so every down map A and COBOT's coefficients get exactly zero
    gradient (they act only through B); B itself gets a non-zero one."""
    torch.manual_seed(0)
    sam = build_sam("tiny")
    apply_peft(sam, "lora", cobot=True)
    items = [SyntheticShapes(1, input_size("tiny"), seed=1, train=False)[0]]
    loss_gradients(sam, items)
    encoder = sam.image_encoder.named_parameters()
    grads = {n: p.grad for n, p in encoder if p.requires_grad}  # the decoder trains as well
    zero = sorted(n for n, g in grads.items() if g is None or not g.any())
    assert all(".lora_a_" in n or "cobot" in n for n in zero), zero
    assert any(".lora_a_" in n for n in zero) and any("cobot" in n for n in zero)
    assert all(grads[n].any() for n in grads if ".lora_b_" in n)
    a = sum(".lora_a_" in n for n in grads)
    assert sum(".lora_a_" in n for n in zero) == a  # every A
    return f"{len(zero)} encoder tensors get zero gradient at step 1: all {a} A and COBOT's"
