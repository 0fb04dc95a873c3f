"""cobot_lib.experiments.analysis against independent oracles.

scipy, numpy, closed forms, autograd, merge.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import scipy.linalg
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cobot_lib import apply_peft, merge
from cobot_lib.experiments.analysis import (
    adapter_views,
    coefficient_table,
    cross_block_share,
    effective_rank,
    gradient_norms_by_block,
    loss_gradients,
    module_blocks,
    principal_angles,
    relation_gradients,
    singular_values,
    subspace_shift,
)
from cobot_lib.peft import CobotConfig, RelationMatrix, cobot_bridges, relation_of


def _random_orthogonal(n: int, rng: np.random.Generator) -> np.ndarray:
    return np.linalg.qr(rng.standard_normal((n, n)))[0]


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(4, 20),
    p=st.integers(1, 4),
    q=st.integers(1, 4),
    seed=st.integers(0, 2**31 - 1),
)
def test_principal_angles_match_scipy(n, p, q, seed):
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal((n, p)), rng.standard_normal((n, q))
    ours = principal_angles(a, b)
    theirs = np.sort(scipy.linalg.subspace_angles(a, b))
    # scipy reads angles near 0 to about sqrt(eps) (p + q > n forces an exact 0, which it
    # reports as ~3e-8); the closed-form test below checks tiny angles to 1e-12.
    np.testing.assert_allclose(ours, theirs, atol=1e-7)


@settings(max_examples=30, deadline=None)
@given(
    angles=st.lists(st.floats(1e-9, np.pi / 2), min_size=1, max_size=3),
    seed=st.integers(0, 2**31 - 1),
)
def test_principal_angles_closed_form_including_tiny_angles(angles, seed):
    """span(e_i) vs span(cos t_i e_i + sin t_i e_{k+i}), rotated at random and mixed inside
    each subspace: the principal angles are exactly the t_i (tiny ones included)."""
    rng = np.random.default_rng(seed)
    k, n = len(angles), 2 * len(angles) + 2
    t = np.asarray(angles)
    eye = np.eye(n)
    a = eye[:, :k]
    b = eye[:, :k] * np.cos(t) + eye[:, k : 2 * k] * np.sin(t)
    rot = _random_orthogonal(n, rng)
    mix_a, mix_b = rng.standard_normal((k, k)) + 3 * np.eye(k), rng.standard_normal((k, k))
    mix_b += 3 * np.eye(k)
    got = principal_angles(rot @ a @ mix_a, rot @ b @ mix_b)
    np.testing.assert_allclose(got, np.sort(t), rtol=1e-6, atol=1e-12)


def test_principal_angles_rank_and_errors():
    a = np.array([[1.0, 2.0], [0.0, 0.0], [0.0, 0.0]])  # rank 1
    assert principal_angles(a, np.eye(3)).shape == (1,)
    assert principal_angles(np.zeros((3, 2)), np.eye(3)).shape == (0,)
    with pytest.raises(ValueError, match="same space"):
        principal_angles(np.eye(3), np.eye(4))
    with pytest.raises(ValueError, match="2-D"):
        principal_angles(np.ones(3), np.eye(3))


def test_subspace_shift_is_zero_for_rescaling_and_pi_half_for_swap():
    rng = np.random.default_rng(0)
    u, v = _random_orthogonal(8, rng), _random_orthogonal(8, rng)
    w = u @ np.diag([8.0, 7, 6, 5, 4, 3, 2, 1]) @ v.T
    np.testing.assert_allclose(subspace_shift(w, 3 * w, 3), 0, atol=1e-7)
    swapped = u @ np.diag([1.0, 2, 3, 4, 5, 6, 7, 8]) @ v.T  # top-2 now the old bottom-2
    np.testing.assert_allclose(subspace_shift(w, swapped, 2), np.pi / 2, atol=1e-7)


def test_singular_values_match_numpy():
    m = torch.randn(30, 7)
    np.testing.assert_allclose(
        singular_values(m), np.linalg.svd(m.double().numpy(), compute_uv=False), rtol=1e-12
    )


def test_effective_rank_closed_forms():
    assert effective_rank(np.ones(5)) == pytest.approx(5.0)
    assert effective_rank(np.array([3.0, 0, 0])) == pytest.approx(1.0)
    assert effective_rank(np.zeros(4)) == 0.0
    p = np.array([0.5, 0.25, 0.25])  # exp(H) with H = 1.5 ln 2
    assert effective_rank(4 * p) == pytest.approx(2**1.5)
    with pytest.raises(ValueError):
        effective_rank(np.array([-1.0, 1.0]))


def _perturb(sam, scale=0.05):
    with torch.no_grad():
        for name, p in sam.named_parameters():
            if p.requires_grad and not name.startswith("mask_decoder"):
                p.add_(scale * torch.randn_like(p))


def test_lora_views_agree_with_merge(tiny_sam):
    apply_peft(tiny_sam, "lora", cobot=True)
    _perturb(tiny_sam)
    views = adapter_views(tiny_sam)
    assert [v.index for v in views] == list(range(24))
    assert [v.block for v in views] == module_blocks(tiny_sam)
    merged = merge(copy.deepcopy(tiny_sam))
    d = tiny_sam.image_encoder.blocks[0].attn.qkv.dim
    for v in views:
        rows = slice(0, d) if v.name.endswith("q") else slice(2 * d, 3 * d)
        w = merged.image_encoder.blocks[v.block].attn.qkv.weight[rows]
        torch.testing.assert_close(v.frozen + v.update, w, rtol=1e-5, atol=1e-6)
        s = np.linalg.svd(v.update.double().numpy(), compute_uv=False)  # float32 product
        assert (s[4:] < 1e-5 * s[0]).all()  # dW = B M A has rank <= V = 4


def test_adaptformer_views_agree_with_merge(tiny_sam):
    apply_peft(tiny_sam, "adaptformer", cobot=True)
    _perturb(tiny_sam)
    views = adapter_views(tiny_sam)
    assert len(views) == 12 and all(v.frozen is None for v in views)
    merged = merge(copy.deepcopy(tiny_sam))  # folds W diag(lambda) into A
    for v in views:
        mlp = merged.image_encoder.blocks[v.block].mlp
        torch.testing.assert_close(v.down, mlp.adapter_down.weight, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(v.update, mlp.adapter_up.weight @ mlp.adapter_down.weight)


def test_views_need_peft(tiny_sam):
    with pytest.raises(ValueError, match="apply_peft"):
        adapter_views(tiny_sam)


def test_coefficient_table_init_and_mixing(tiny_sam):
    apply_peft(tiny_sam, "adaptformer", cobot=True)
    np.testing.assert_array_equal(coefficient_table(tiny_sam), 2.0)  # 1 (MC) + I @ ones (LM)
    _perturb(tiny_sam)
    rel = relation_of(tiny_sam)
    mc = torch.stack([b.lambda_mc for b in cobot_bridges(tiny_sam)]).detach().double().numpy()
    expected = mc + rel.S.detach().double().numpy() @ rel.c.detach().double().numpy()
    np.testing.assert_allclose(coefficient_table(tiny_sam), expected, rtol=1e-6)


@settings(max_examples=20, deadline=None)
@given(m=st.integers(1, 6), v=st.integers(1, 5), seed=st.integers(0, 2**31 - 1))
def test_relation_gradients_match_autograd(m, v, seed):
    gen = torch.Generator().manual_seed(seed)
    rel = RelationMatrix(m, v).double()
    with torch.no_grad():
        rel.S.copy_(torch.randn(m, m, generator=gen, dtype=torch.float64))
        rel.c.copy_(torch.randn(m, v, generator=gen, dtype=torch.float64))
    G = torch.randn(m, v, generator=gen, dtype=torch.float64)
    (rel.cross_block_coefficients() * G).sum().backward()
    dc, dS = relation_gradients(rel.S, rel.c, G)
    np.testing.assert_allclose(dc, rel.c.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dS, rel.S.grad.numpy(), rtol=1e-10, atol=1e-12)


def _backward(sam, tiny_batch):
    from cobot_lib.backbone.prompting import predict_masks

    images, boxes = tiny_batch
    logits = predict_masks(sam, images[:1], boxes[:1])
    logits[0].pow(2).mean().backward()


def test_lambda_mc_gradient_is_the_relation_input_gradient(tiny_sam, tiny_batch):
    """In a real model, dual sets: c.grad == S^T G and S.grad == G c^T with G = lambda_MC.grad."""
    apply_peft(tiny_sam, "lora", cobot=True)
    _perturb(tiny_sam, 0.1)
    _backward(tiny_sam, tiny_batch)
    rel = relation_of(tiny_sam)
    G = torch.stack([b.lambda_mc.grad for b in cobot_bridges(tiny_sam)])
    dc, dS = relation_gradients(rel.S, rel.c, G)
    np.testing.assert_allclose(dc, rel.c.grad.double().numpy(), rtol=1e-4, atol=1e-9)
    np.testing.assert_allclose(dS, rel.S.grad.double().numpy(), rtol=1e-4, atol=1e-9)


def test_gradient_norms_by_block_add_up(tiny_sam, tiny_batch):
    apply_peft(tiny_sam, "adaptformer", cobot=CobotConfig())
    _perturb(tiny_sam, 0.1)
    tiny_sam.image_encoder.blocks[11].mlp.requires_grad_(False)  # block 11 gets none
    _backward(tiny_sam, tiny_batch)
    norms = gradient_norms_by_block(tiny_sam)
    assert all(v.shape == (12,) for v in norms.values())
    assert norms["adapter"][11] == 0 and norms["cobot"][11] == 0
    assert (norms["adapter"][:11] > 0).all() and (norms["base_coefficients"] > 0).all()
    everything = [
        p.grad.double().flatten()
        for n, p in tiny_sam.named_parameters()
        if p.grad is not None and n.startswith("image_encoder") and not n.endswith(".S")
    ]
    total = float(torch.cat(everything).norm())
    ours = np.sqrt(sum((v**2).sum() for v in norms.values()))
    assert ours == pytest.approx(total, rel=1e-9)


def test_cross_block_share_extremes():
    G = np.random.default_rng(0).standard_normal((5, 3))
    np.testing.assert_array_equal(cross_block_share(np.eye(5), G), 0.0)
    np.testing.assert_allclose(cross_block_share(np.ones((5, 5)) - np.eye(5), G), 1.0)
    share = cross_block_share(np.random.default_rng(1).random((5, 5)), G)
    assert ((share > 0) & (share < 1)).all()


def test_loss_gradients_average_over_items(tiny_sam, tiny_batch):
    """Linearity: the gradient of the mean loss over two items is the mean of their gradients."""
    apply_peft(tiny_sam, "lora", cobot=True)
    _perturb(tiny_sam, 0.1)
    images, boxes = tiny_batch
    items = [
        {"image": images[i], "boxes": boxes[i], "masks": (torch.rand(3, 256, 256) > 0.5).float()}
        for i in range(2)
    ]
    trainable = [p for p in tiny_sam.parameters() if p.requires_grad]

    def grads(chosen):
        loss = loss_gradients(tiny_sam, chosen)
        return loss, [p.grad.clone() if p.grad is not None else None for p in trainable]

    loss_a, ga = grads(items[:1])
    loss_b, gb = grads(items[1:])
    loss_ab, gab = grads(items)
    assert loss_ab == pytest.approx((loss_a + loss_b) / 2, rel=1e-5)
    for a, b, ab in zip(ga, gb, gab, strict=True):
        if ab is None:  # parameters the loss does not reach (e.g. the IoU head)
            assert a is None and b is None
            continue
        torch.testing.assert_close(ab, (a + b) / 2, rtol=1e-4, atol=1e-7)
    assert sum(g is not None for g in gab) > len(trainable) // 2
    with pytest.raises(ValueError):
        loss_gradients(tiny_sam, [])
