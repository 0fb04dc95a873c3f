"""COBOT's fast path: bridge matrices built once per encoder pass and folded into A.

Oracles: the bridge written out token by token with the Hamilton product and lambda_LM = S c
(closed form of Eqs. 15-17); the same model with the pass hooks removed (the matrices computed
on demand); gradients of both routes; and a deep copy that must not share the pass state.
"""

from __future__ import annotations

import copy

import pytest
import torch
from test_peft_behaviour import randomise_adapters

from cobot_lib import apply_peft, unload
from cobot_lib.algebra.quaternion import hamilton_product
from cobot_lib.backbone.prompting import predict_masks
from cobot_lib.peft import cobot_bridges, relation_of

HEADS = [{}, {"head": "linear"}, {"head": "none", "coefficient_sets": "single"}]


def _bridge_by_hand(bridge, relation, h: torch.Tensor) -> torch.Tensor:
    """W((lambda_MC + lambda_LM) * h), lambda_LM = S c, W applied one quaternion at a time."""
    lam = relation.S[bridge.index] @ relation.c
    if bridge.lambda_mc is not None:
        lam = lam + bridge.lambda_mc
    h = h * lam
    if bridge.head is None:
        return h
    if isinstance(bridge.head, torch.nn.Linear):
        return h @ bridge.head.weight.T
    w = bridge.head.weight  # (O, I, 4)
    parts = h.unflatten(-1, (-1, 4))  # (..., I, 4)
    out = hamilton_product(w, parts.unsqueeze(-3)).sum(-2)  # sum_i w[o, i] (x) h_i
    return out.flatten(-2)


@pytest.mark.parametrize("cobot", HEADS)
def test_pass_matrices_equal_the_bridge_written_out(tiny_sam, cobot):
    apply_peft(tiny_sam, "lora", cobot=cobot)
    randomise_adapters(tiny_sam)
    relation = relation_of(tiny_sam)
    matrices = relation.bridge_matrices()
    h = torch.randn(7, relation.rank, dtype=torch.float32)
    for bridge in cobot_bridges(tiny_sam):
        expected = _bridge_by_hand(bridge, relation, h)
        torch.testing.assert_close(h @ matrices[bridge.index].T, expected, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(bridge(h), expected, atol=1e-5, rtol=1e-5)


def _loss_and_grads(sam, batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    sam.zero_grad(set_to_none=True)
    loss = sum(o.sigmoid().square().mean() for o in predict_masks(sam.train(), *batch))
    loss.backward()
    grads = {n: p.grad.clone() for n, p in sam.named_parameters() if p.grad is not None}
    return loss.detach(), grads


@pytest.mark.parametrize("method", ["lora", "adaptformer"])
@pytest.mark.parametrize("cobot", HEADS[:2])
def test_per_pass_route_matches_per_bridge_route(tiny_sam, tiny_batch, method, cobot):
    """Same loss and gradients with the pass hooks (one batched computation per pass) and
    without them (every bridge computes the matrices on demand)."""
    apply_peft(tiny_sam, method, cobot=cobot, adaptformer_dropout=0.0)
    randomise_adapters(tiny_sam)
    fast_loss, fast_grads = _loss_and_grads(tiny_sam, tiny_batch)
    relation = relation_of(tiny_sam)
    relation.remove_hooks()
    slow_loss, slow_grads = _loss_and_grads(tiny_sam, tiny_batch)
    torch.testing.assert_close(fast_loss, slow_loss, atol=1e-6, rtol=1e-5)
    assert fast_grads.keys() == slow_grads.keys()
    assert any("cobot_relation.S" in n for n in fast_grads)
    for name in fast_grads:
        torch.testing.assert_close(fast_grads[name], slow_grads[name], atol=1e-6, rtol=1e-4)


def test_pass_state_exists_only_during_a_pass(tiny_sam, tiny_batch):
    apply_peft(tiny_sam, "lora", cobot=True)
    relation = relation_of(tiny_sam)
    seen = []
    block = tiny_sam.image_encoder.blocks[5]
    handle = block.register_forward_pre_hook(lambda m, a: seen.append(relation.pass_matrices()))
    predict_masks(tiny_sam, *tiny_batch)
    handle.remove()
    assert seen[0] is not None and len(seen[0]) == 24 and seen[0][0].shape == (4, 4)
    assert relation.pass_matrices() is None

    def fail(module, args):
        raise RuntimeError("boom")

    handle = block.register_forward_pre_hook(fail)
    with pytest.raises(RuntimeError, match="boom"):
        predict_masks(tiny_sam, *tiny_batch)
    handle.remove()
    assert relation.pass_matrices() is None  # cleared even when the pass raised


def test_the_pass_follows_parameter_updates(tiny_sam, tiny_batch):
    """An optimiser step between passes is seen by the next pass (nothing stale is kept)."""
    apply_peft(tiny_sam, "adaptformer", cobot=True, adaptformer_dropout=0.0)
    randomise_adapters(tiny_sam)
    before = torch.cat(predict_masks(tiny_sam, *tiny_batch)).detach()
    with torch.no_grad():
        relation_of(tiny_sam).c.mul_(3.0)
    after = torch.cat(predict_masks(tiny_sam, *tiny_batch)).detach()
    relation_of(tiny_sam).remove_hooks()
    torch.testing.assert_close(torch.cat(predict_masks(tiny_sam, *tiny_batch)), after)
    assert not torch.allclose(before, after)


def test_deep_copy_has_its_own_pass_and_hooks(tiny_sam, tiny_batch):
    apply_peft(tiny_sam, "lora", cobot=True)
    randomise_adapters(tiny_sam)
    expected = torch.cat(predict_masks(tiny_sam, *tiny_batch)).detach()
    twin = copy.deepcopy(tiny_sam)
    assert relation_of(twin)._bridges[0] is cobot_bridges(twin)[0]
    with torch.no_grad():
        relation_of(twin).S.add_(0.5)
    changed = torch.cat(predict_masks(twin, *tiny_batch)).detach()
    assert not torch.allclose(changed, expected)
    unload(twin)  # removes the twin's hooks only
    torch.testing.assert_close(torch.cat(predict_masks(tiny_sam, *tiny_batch)), expected)


@pytest.mark.parametrize("training", [False, True])
def test_injected_modules_follow_the_model_mode(tiny_sam, training):
    """An eval-mode SAM stays deterministic after apply_peft (Adaptformer's dropout is off)."""
    tiny_sam.train(training)
    apply_peft(tiny_sam, "adaptformer", cobot=True)
    assert {m.training for m in tiny_sam.image_encoder.modules()} == {training}
