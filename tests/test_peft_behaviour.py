"""PEFT behaviour: identity at init, gradients, the relation-matrix path, merge, save/load."""

from __future__ import annotations

import pytest
import torch

from cobot_lib import apply_peft, build_sam, load_adapter, merge, save_adapter, unload
from cobot_lib.backbone.prompting import predict_masks
from cobot_lib.peft import LoRAQKV, cobot_bridges, relation_of

VARIANTS = [
    ("lora", None),
    ("lora", {}),
    ("adaptformer", None),
    ("adaptformer", {}),
    ("adaptformer", {"relation": "fixed", "head": "linear"}),
    ("lora", {"coefficient_sets": "single", "relation": "off", "head": "none"}),
    ("lora", {"head_init": "official"}),
]


def masks(sam, batch):
    with torch.no_grad():
        return torch.cat(predict_masks(sam.eval(), *batch))


def randomise_adapters(sam, scale=0.05):
    """Give every injected tensor non-trivial values (B is zero at init)."""
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, p in sam.named_parameters():
            if p.requires_grad and not name.startswith("mask_decoder"):
                p.add_(scale * torch.randn(p.shape, generator=gen))


@pytest.mark.parametrize(
    "method, cobot", VARIANTS + [("freeze", None), ("decoder", None), ("full", None)]
)
def test_initialisation_leaves_masks_unchanged(tiny_sam, tiny_batch, method, cobot):
    before = masks(tiny_sam, tiny_batch)
    apply_peft(tiny_sam, method, cobot=cobot)
    assert torch.equal(masks(tiny_sam, tiny_batch), before)


@pytest.mark.parametrize("cobot", [{}, {"head_init": "official"}, {"head": "linear"}])
def test_every_cobot_parameter_gets_a_gradient(tiny_sam, tiny_batch, cobot):
    apply_peft(tiny_sam, "lora", cobot=cobot)
    randomise_adapters(tiny_sam)  # B != 0, as after the first optimiser step
    tiny_sam.train()
    loss = sum(o.sigmoid().mean() for o in predict_masks(tiny_sam, *tiny_batch))
    loss.backward()
    cobot_params = {n: p for n, p in tiny_sam.named_parameters() if "cobot" in n}
    assert len(cobot_params) == 2 + 24 * 2  # c, S, and lambda_MC + W per module
    for name, p in cobot_params.items():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    # frozen backbone: no gradient at all
    assert tiny_sam.image_encoder.blocks[0].attn.qkv.qkv.weight.grad is None


def _last_block_training(sam, relation: str, steps: int = 4) -> torch.Tensor:
    """Train on a loss that reads only the last block's output (its input held fixed).

    Returns how much the first module's coefficients (lambda_MC_1 and c_1) moved.
    """
    apply_peft(sam, "lora", cobot={"relation": relation})
    enc = sam.image_encoder
    with torch.no_grad():
        x = enc.patch_embed(torch.randn(1, 3, 256, 256)) + enc.pos_embed
        for block in enc.blocks[:-1]:
            x = block(x)
    first = cobot_bridges(sam)[0]
    before = torch.cat([first.lambda_mc, relation_of(sam).c[0]]).detach().clone()
    params = [p for p in sam.image_encoder.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=1e-2)
    target = torch.randn_like(x)
    for _ in range(steps):
        opt.zero_grad()
        loss = (enc.blocks[-1](x) - target).pow(2).mean()
        loss.backward()
        opt.step()
    return (torch.cat([first.lambda_mc, relation_of(sam).c[0]]) - before).abs().max()


def test_relation_matrix_carries_last_block_loss_to_first_block(tiny_sam):
    assert _last_block_training(tiny_sam, "learnable") > 1e-4


def test_without_relation_matrix_first_block_is_unreached(tiny_sam):
    assert _last_block_training(tiny_sam, "off") == 0


@pytest.mark.parametrize(
    "method, cobot",
    [
        ("lora", None),
        ("lora", {}),
        ("adaptformer", {}),
        ("lora", {"relation": "fixed", "head": "linear"}),
    ],
)
def test_merge_matches_unmerged(tiny_sam, tiny_batch, method, cobot):
    apply_peft(tiny_sam, method, cobot=cobot)
    randomise_adapters(tiny_sam)
    unmerged = masks(tiny_sam, tiny_batch)
    merge(tiny_sam)
    torch.testing.assert_close(masks(tiny_sam, tiny_batch), unmerged, atol=1e-5, rtol=1e-5)
    if method == "lora":  # a plain segment_anything Sam again
        own = [
            type(m).__name__
            for m in tiny_sam.modules()
            if type(m).__module__.startswith("cobot_lib")
        ]
        assert own == []
        assert not hasattr(tiny_sam, "peft_config")


def test_lora_delta_matches_dense_formula(tiny_sam):
    """Second formulation: the module's update equals B_q W diag(l) A_q computed by hand."""
    apply_peft(tiny_sam, "lora", cobot={})
    randomise_adapters(tiny_sam)
    wrapper: LoRAQKV = tiny_sam.image_encoder.blocks[3].attn.qkv
    bridge = wrapper.cobot_q
    lam = bridge.lambda_mc + relation_of(tiny_sam).S[bridge.index] @ relation_of(tiny_sam).c
    x = torch.randn(5, wrapper.dim)
    expected_q = x @ wrapper.qkv.weight[: wrapper.dim].T + wrapper.qkv.bias[: wrapper.dim]
    expected_q = (
        expected_q
        + ((x @ wrapper.lora_a_q.weight.T) * lam)
        @ bridge.head.matrix().T
        @ wrapper.lora_b_q.weight.T
    )
    torch.testing.assert_close(wrapper(x)[:, : wrapper.dim], expected_q, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("method, cobot", VARIANTS[:5] + [("decoder", None)])
def test_save_load_round_trip(tiny_sam, tiny_batch, tmp_path, method, cobot):
    apply_peft(tiny_sam, method, cobot=cobot)
    randomise_adapters(tiny_sam)
    with torch.no_grad():
        for p in tiny_sam.mask_decoder.parameters():
            p.add_(0.01)
    expected = masks(tiny_sam, tiny_batch)
    save_adapter(tiny_sam, tmp_path / "adapter")
    fresh = build_sam("tiny")
    fresh.load_state_dict(unload(tiny_sam).state_dict(), strict=True)  # same frozen backbone
    load_adapter(fresh, tmp_path / "adapter")
    assert torch.equal(masks(fresh, tiny_batch), expected)


def test_adapter_file_is_small_without_decoder(tmp_path):
    sam = build_sam("vit_b")
    apply_peft(sam, "lora", cobot=True, train_decoder=False)
    save_adapter(sam, tmp_path)
    size = (tmp_path / "adapter_model.safetensors").stat().st_size
    assert size < 148_320 * 4 + 20_000  # fp32 tensors plus the safetensors header


@pytest.mark.parametrize("dtype", [torch.bfloat16])
def test_autocast_forward_runs(tiny_sam, tiny_batch, dtype):
    apply_peft(tiny_sam, "adaptformer", cobot=True)
    randomise_adapters(tiny_sam)
    with torch.autocast("cpu", dtype=dtype):
        out = predict_masks(tiny_sam, *tiny_batch)
    reference = predict_masks(tiny_sam, *tiny_batch)
    for a, b in zip(out, reference, strict=True):
        assert torch.isfinite(a).all()
        assert (a.float().sigmoid() - b.sigmoid()).abs().mean() < 0.05


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_forward_backward(tiny_batch):
    sam = build_sam("tiny").cuda()
    apply_peft(sam, "lora", cobot=True)
    images, boxes = tiny_batch
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = predict_masks(sam, images.cuda(), [b.cuda() for b in boxes])
    sum(o.float().mean() for o in out).backward()
    assert relation_of(sam).S.grad is not None
