"""Solutions to the exercises of notebook 06 (the relation matrix and its dynamics)."""

from __future__ import annotations

import numpy as np
import torch

from ...backbone.sam import build_sam
from ...experiments.analysis import cross_block_share, relation_gradients
from ...peft import RelationMatrix, apply_peft, relation_of


def exercise_1() -> str:
    """With RM off, S is the identity buffer, not a parameter: it never gets a gradient."""
    sam = build_sam("tiny")
    apply_peft(sam, "lora", cobot={"relation": "off"})
    S = relation_of(sam).S
    assert not S.requires_grad and torch.equal(S, torch.eye(S.shape[0]))
    assert "image_encoder.cobot_relation.S" not in dict(sam.named_parameters())
    return "RM off: S = I is fixed (no parameter, no gradient); only c and λ_MC train"


def exercise_2() -> str:
    """For a given c and upstream gradient G = ∂L/∂λ_LM: ∂L/∂S = G c^T and ∂L/∂c = S^T G."""
    gen = torch.Generator().manual_seed(0)
    rel = RelationMatrix(num_modules=6, rank=4, relation="learnable")
    c = 1 + 0.3 * torch.randn(6, 4, generator=gen)
    G = torch.randn(6, 4, generator=gen)
    with torch.no_grad():
        rel.c.copy_(c)
        rel.S.add_(0.1 * torch.randn(6, 6, generator=gen))
    (rel.cross_block_coefficients() * G).sum().backward()  # L = <G, λ_LM>
    dc, dS = relation_gradients(rel.S.detach(), c, G)
    assert np.allclose(rel.S.grad.numpy(), (G @ c.T).numpy(), atol=1e-5)
    assert np.allclose(rel.S.grad.numpy(), dS, atol=1e-5)
    assert np.allclose(rel.c.grad.numpy(), dc, atol=1e-5)
    return "dL/dS = G c^T (an outer product), dL/dc = S^T G"


def exercise_3() -> str:
    """S = I + ε E_10 (module 1 reads c_0): c_0's cross-block share is ε|G_1| / (|G_0| + ε|G_1|),
    every other module's is 0."""
    eps, G = 0.2, np.array([[3.0, 4.0], [0.0, 10.0], [1.0, 1.0]])  # |G_0| = 5, |G_1| = 10
    S = np.eye(3)
    S[1, 0] = eps
    share = cross_block_share(S, G)
    assert np.allclose(share, [eps * 10 / (5 + eps * 10), 0.0, 0.0])
    return f"share of c_0 = 2 / (5 + 2) = {share[0]:.3f}; the others 0"


def exercise_4() -> str:
    """With c = 1 every row of dL/dS = G c^T is constant (row m = sum(G_m)); a c with distinct
    rows makes the rows vary."""
    gen = torch.Generator().manual_seed(1)
    G = torch.randn(6, 4, generator=gen, dtype=torch.float64)
    ones = torch.ones(6, 4, dtype=torch.float64)
    dS = G @ ones.T
    assert torch.allclose(dS, G.sum(1, keepdim=True).expand(6, 6))
    perturbed = ones + 0.1 * torch.randn(6, 4, generator=gen, dtype=torch.float64)
    spread = (G @ perturbed.T).amax(1) - (G @ perturbed.T).amin(1)
    assert bool((spread > 0).all())
    return "c = 1: dL/dS[m, k] = sum_v G_m[v] for every k (uniform rows); perturbed c: not"
