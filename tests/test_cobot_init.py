"""COBOT's initialisation switches (issue 16): the base coefficients, the down-map scale control,
the head initialisations; with the gradient identity that makes the paper's c = 1 special.

Oracles: a hand-computed inner product against autograd, Q^T Q = I for orthogonality, the
plain (scale 1) draw for the scaled one, the quaternion head's matrix for the dense head's start.
"""

from __future__ import annotations

import math

import pytest
import torch

from cobot_lib import apply_peft
from cobot_lib.algebra.quaternion import QuaternionLinear, orthogonal_quaternion_weights
from cobot_lib.backbone.prompting import predict_masks
from cobot_lib.backbone.sam import build_sam
from cobot_lib.peft import cobot_bridges, relation_of
from cobot_lib.peft.cobot import base_coefficients
from cobot_lib.peft.config import BASE_PERTURBATION, CobotConfig, PeftConfig


def _backward(sam, batch) -> None:
    """A non-trivial loss through every module (B != 0, as after the first optimiser step)."""
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, p in sam.named_parameters():
            if p.requires_grad and (".lora_b" in name or ".adapter_up" in name):
                p.add_(0.05 * torch.randn(p.shape, generator=gen))
    sam.train()
    loss = sum(o.sigmoid().mean() for o in predict_masks(sam, *batch))
    loss.backward()


def _row_spread(grad_s: torch.Tensor) -> torch.Tensor:
    """max_k - min_k of every row of dL/dS, relative to the largest entry."""
    return (grad_s.amax(1) - grad_s.amin(1)) / grad_s.abs().max()


@pytest.mark.parametrize("base_init", ["ones", "perturbed"])
def test_gradient_of_S_is_the_inner_product_of_G_and_c(tiny_sam, tiny_batch, base_init):
    apply_peft(tiny_sam, "lora", cobot={"base_init": base_init})
    _backward(tiny_sam, tiny_batch)
    rel = relation_of(tiny_sam)
    # with dual sets the bridge uses lambda_MC + lambda_LM: G_m = dL/dlambda_LM_m = lambda_MC.grad
    G = [b.lambda_mc.grad.double() for b in cobot_bridges(tiny_sam)]
    c = rel.c.detach().double()
    M = rel.num_modules
    by_hand = torch.tensor([[float(G[m] @ c[k]) for k in range(M)] for m in range(M)]).double()
    torch.testing.assert_close(rel.S.grad.double(), by_hand, rtol=1e-4, atol=1e-9)
    spread = _row_spread(rel.S.grad)
    if base_init == "ones":  # every c_k = 1: each row of dL/dS is constant
        assert float(spread.max()) < 1e-5
    else:  # distinct c_k: rows are not constant
        assert float(spread.min()) > 1e-3


def test_base_init_values_and_seeds():
    ones = apply_peft_relation(CobotConfig())
    assert torch.equal(ones.c, torch.ones_like(ones.c))
    state = torch.random.get_rng_state()
    base_coefficients(24, 4, "perturbed", seed=1)
    assert torch.equal(torch.random.get_rng_state(), state)  # the global stream is untouched
    a = apply_peft_relation(CobotConfig(base_init="perturbed", seed=1))
    b = apply_peft_relation(CobotConfig(base_init="perturbed", seed=1))
    other = apply_peft_relation(CobotConfig(base_init="perturbed", seed=2))
    assert torch.equal(a.c, b.c) and not torch.equal(a.c, other.c)
    dev = (a.c - 1).flatten()
    assert abs(float(dev.mean())) < 4 * BASE_PERTURBATION / math.sqrt(dev.numel())
    assert 0.7 * BASE_PERTURBATION < float(dev.std()) < 1.3 * BASE_PERTURBATION


def apply_peft_relation(cobot: CobotConfig):
    sam = build_sam("tiny")
    apply_peft(sam, "lora", cobot=cobot)
    return relation_of(sam).requires_grad_(False)


@pytest.mark.parametrize("method", ["lora", "adaptformer"])
def test_down_init_scale_doubles_the_plain_draw(method):
    downs = {}
    for scale in (1.0, 2.0):
        torch.manual_seed(5)
        sam = build_sam("tiny")
        apply_peft(sam, method, down_init_scale=scale)
        names = (".lora_a_", ".adapter_down.weight")
        downs[scale] = [p.detach() for n, p in sam.named_parameters() if any(k in n for k in names)]
    assert len(downs[1.0]) == (24 if method == "lora" else 12)
    for one, two in zip(downs[1.0], downs[2.0], strict=True):
        assert torch.equal(two, 2 * one)


@pytest.mark.parametrize("v", [4, 8, 16])
def test_orthogonal_quaternion_head_is_exactly_orthogonal(v):
    torch.manual_seed(v)
    w = QuaternionLinear(v, init="orthogonal").double().matrix().detach()
    torch.testing.assert_close(w.T @ w, torch.eye(v, dtype=torch.float64), atol=1e-6, rtol=0)
    # the same check fails on the paper's unit-sphere init beyond V = 4 (blockwise only)
    p = QuaternionLinear(16, init="paper").double().matrix().detach()
    assert float((p.T @ p - torch.eye(16, dtype=torch.float64)).abs().max()) > 1e-2


def test_orthogonal_weights_are_quaternion_weights():
    torch.manual_seed(0)
    q = orthogonal_quaternion_weights(3, dtype=torch.float64)
    w = QuaternionLinear(12).double()
    with torch.no_grad():
        w.weight.copy_(q)
    m = w.matrix().detach()  # the block matrix built from the 3 x 3 x 4 weights
    torch.testing.assert_close(m @ m.T, torch.eye(12, dtype=torch.float64), atol=1e-6, rtol=0)


@pytest.mark.parametrize("head_init", ["paper", "orthogonal"])
def test_linear_head_can_start_where_the_quaternion_head_starts(tiny_sam, head_init):
    apply_peft(tiny_sam, "adaptformer", rank=8, cobot={"head_init": head_init, "seed": 4})
    dense = build_sam("tiny")
    cfg = {"head": "linear", "linear_init": "like_hypercomplex", "head_init": head_init, "seed": 4}
    apply_peft(dense, "adaptformer", rank=8, cobot=cfg)
    for hc, lin in zip(cobot_bridges(tiny_sam), cobot_bridges(dense), strict=True):
        assert isinstance(lin.head, torch.nn.Linear)
        assert torch.equal(lin.head.weight, hc.head.matrix())


def test_bad_init_values_are_named():
    with pytest.raises(ValueError, match=r"CobotConfig.base_init='zeros'; expected one of"):
        CobotConfig(base_init="zeros")
    with pytest.raises(ValueError, match=r"CobotConfig.head_init='unit'"):
        CobotConfig(head_init="unit")
    with pytest.raises(ValueError, match=r"linear_init='like_hypercomplex' .* head='hypercomplex'"):
        CobotConfig(linear_init="like_hypercomplex")
    for bad in (0, -1.0, float("nan"), float("inf"), True, "2"):
        with pytest.raises(ValueError, match=r"down_init_scale must be a finite number > 0"):
            PeftConfig("lora", down_init_scale=bad)
    with pytest.raises(ValueError, match=r"method 'decoder' has none"):
        PeftConfig("decoder", down_init_scale=2.0)
    with pytest.raises(ValueError, match=r"init='orthogonal' needs a square map"):
        QuaternionLinear(8, 12, init="orthogonal")
