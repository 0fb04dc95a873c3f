"""The authors' checkpoints in and out (cobot_lib.peft.official).

Oracle: the authors' forward pass written out here from their code
(SJTU-DeepVisionLab/SAM-COBOT, remote/model/model_proxy_SAM_box.py and quaternion_ops.py):
``CP = (FacT_c @ FacT_p)[..., idx]``, ``FacT_d(a(x).mul(CP) + gamma[:4] * a(x))`` and the
quaternion kernel assembled by ``torch.cat`` and applied as ``input @ kernel``. Checkpoints in
their layout are built here by hand under their key names and run through that formula on a
plain segment_anything SAM; the converted model must give the same image embeddings.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cobot_lib import apply_peft, build_sam
from cobot_lib.peft import adapter_state_dict, peft_config_of, save_adapter
from cobot_lib.peft.official import (
    check_convertible,
    load_official,
    main,
    official_state_dict,
    read_official,
    save_official,
)

# (method, cobot, head): what the authors' code can save
VARIANTS = [
    ("lora", False, None),  # _LoRA_qkv
    ("lora", True, "hypercomplex"),  # _LoRA_qkv_relation_add with QuaternionLinear
    ("lora", True, "linear"),  # medical LORA_relation: FacT_d = nn.Linear
    ("adaptformer", False, None),  # Adapter
    ("adaptformer", True, "hypercomplex"),  # Adapter_relation
]


def their_quaternion_linear(x, r, i, j, k):
    """quaternion_ops.QuaternionLinearFunction.forward, bias None."""
    cat_kernels_4_r = torch.cat([r, -i, -j, -k], dim=0)
    cat_kernels_4_i = torch.cat([i, r, -k, j], dim=0)
    cat_kernels_4_j = torch.cat([j, k, r, -i], dim=0)
    cat_kernels_4_k = torch.cat([k, -j, i, r], dim=0)
    kernel = torch.cat([cat_kernels_4_r, cat_kernels_4_i, cat_kernels_4_j, cat_kernels_4_k], 1)
    return torch.matmul(x, kernel)


def their_fact_d(state, key):
    if f"{key}.weight" in state:  # nn.Linear
        return lambda x: F.linear(x, state[f"{key}.weight"])
    parts = [state[f"{key}.{c}_weight"] for c in "rijk"]
    return lambda x: their_quaternion_linear(x, *parts)


class TheirLoRA(nn.Module):
    """_LoRA_qkv and _LoRA_qkv_relation_add.forward."""

    def __init__(self, state, p, idx):
        super().__init__()
        self.s, self.p, self.idx = state, p, idx

    def forward(self, x):
        s, p = self.s, self.p
        qkv = F.linear(x, s[p + "qkv.weight"], s[p + "qkv.bias"])
        dim = x.shape[-1]
        a_q, a_v = F.linear(x, s[p + "linear_a_q.weight"]), F.linear(x, s[p + "linear_a_v.weight"])
        if p + "FacT_c" in s:
            cp = (s[p + "FacT_c"] @ s[p + "FacT_p"])[..., self.idx : self.idx + 2]
            gamma = s[p + "gamma"]
            a_q = their_fact_d(s, p + "FacT_d1")(a_q.mul(cp[:, :, 0]) + gamma[:4] * a_q)
            a_v = their_fact_d(s, p + "FacT_d2")(a_v.mul(cp[:, :, 1]) + gamma[-4:] * a_v)
        qkv[..., :dim] += F.linear(a_q, s[p + "linear_b_q.weight"])
        qkv[..., -dim:] += F.linear(a_v, s[p + "linear_b_v.weight"])
        return qkv


class TheirAdapter(nn.Module):
    """Adapter and Adapter_relation.forward in eval mode (scale 1.0, LayerNorm "in")."""

    def __init__(self, state, p, idx, mlp):
        super().__init__()
        self.s, self.p, self.idx, self.mlp = state, p, idx, mlp

    def forward(self, x):
        s, p = self.s, self.p
        residual = self.mlp(x)
        norm = p + "adapter_layer_norm_before."
        x = F.layer_norm(x, x.shape[-1:], s[norm + "weight"], s[norm + "bias"])
        down = F.linear(x, s[p + "down_proj.weight"], s[p + "down_proj.bias"])
        if p + "FacT_c" in s:
            cp = (s[p + "FacT_c"] @ s[p + "FacT_p"])[..., self.idx]
            down = their_fact_d(s, p + "FacT_d1")(down.mul(cp) + s[p + "gamma"] * down)
        up = F.linear(torch.relu(down), s[p + "up_proj.weight"], s[p + "up_proj.bias"])
        return up * 1.0 + residual


def their_embeddings(state, images, adapters=True):
    """Image embeddings of their model: a plain SAM with their modules swapped in."""
    sam = build_sam("tiny")
    names = sam.state_dict().keys()
    plain = {k.replace(".attn.qkv.qkv.", ".attn.qkv.").replace(".mlp.mlp.", ".mlp."): v
             for k, v in state.items()}  # fmt: skip
    sam.load_state_dict({k: v for k, v in plain.items() if k in names})
    for i, blk in enumerate(sam.image_encoder.blocks if adapters else []):
        if f"image_encoder.blocks.{i}.attn.qkv.linear_a_q.weight" in state:
            blk.attn.qkv = TheirLoRA(state, f"image_encoder.blocks.{i}.attn.qkv.", 2 * i)
        else:
            blk.mlp = TheirAdapter(state, f"image_encoder.blocks.{i}.mlp.", i, blk.mlp)
    with torch.no_grad():
        return sam.image_encoder(images)


def their_checkpoint(method, cobot, head, base=None):
    """A checkpoint as their code saves it (medical: sam.state_dict()): the frozen weights of
    ``base`` (default: a random tiny SAM) and random trained adapter values."""
    gen = torch.Generator().manual_seed(0)
    rnd = lambda *shape: torch.randn(*shape, generator=gen)  # noqa: E731
    state = build_sam("tiny").state_dict() if base is None else base
    dim, rank = 128, (4 if method == "lora" else 16)
    modules = 24 if method == "lora" else 12
    fact_c, fact_p = (
        1 + 0.3 * rnd(1, rank, modules),
        torch.eye(modules) + 0.2 * rnd(modules, modules),
    )
    out = {}
    for key, value in state.items():
        block = key.split(".")[2] if key.startswith("image_encoder.blocks.") else None
        if block is not None and method == "lora" and ".attn.qkv." in key:
            key = key.replace(".attn.qkv.", ".attn.qkv.qkv.")
        if block is not None and method == "adaptformer" and ".mlp." in key:
            key = key.replace(".mlp.", ".mlp.mlp.")
        out[key] = value
    heads = ("FacT_d1", "FacT_d2") if method == "lora" else ("FacT_d1",)
    for i in range(12):
        if method == "lora":
            p = f"image_encoder.blocks.{i}.attn.qkv."
            for w in "qv":
                out[f"{p}linear_a_{w}.weight"] = 0.1 * rnd(rank, dim)
                out[f"{p}linear_b_{w}.weight"] = 0.1 * rnd(dim, rank)
        else:
            p = f"image_encoder.blocks.{i}.mlp."
            out[p + "adapter_layer_norm_before.weight"] = 1 + 0.1 * rnd(dim)
            out[p + "adapter_layer_norm_before.bias"] = 0.1 * rnd(dim)
            out[p + "down_proj.weight"], out[p + "down_proj.bias"] = 0.1 * rnd(rank, dim), rnd(rank)
            out[p + "up_proj.weight"], out[p + "up_proj.bias"] = 0.1 * rnd(dim, rank), rnd(dim)
        if cobot:
            out[p + "FacT_c"], out[p + "FacT_p"] = fact_c, fact_p
            out[p + "gamma"] = 1 + 0.3 * rnd(8 if method == "lora" else 16)
            for name in heads:
                if head == "linear":
                    out[f"{p}{name}.weight"] = 0.5 * rnd(rank, rank)
                else:
                    for c in "rijk":
                        out[f"{p}{name}.{c}_weight"] = 0.5 * rnd(rank // 4, rank // 4)
    return out


@pytest.fixture
def images():
    return torch.randn(2, 3, 256, 256, generator=torch.Generator().manual_seed(7))


def _relative_error(a, b):
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("method, cobot, head", VARIANTS)
def test_their_checkpoint_gives_their_embeddings(method, cobot, head, images):
    state = their_checkpoint(method, cobot, head)
    expected = their_embeddings(state, images)
    sam = load_official(build_sam("tiny"), state)
    with torch.no_grad():
        got = sam.image_encoder(images)
    assert _relative_error(got, expected) <= 1e-5
    plain = their_embeddings(state, images, adapters=False)
    assert _relative_error(plain, expected) > 1e-2  # the adapters do change the embeddings
    assert peft_config_of(sam).method == method and (peft_config_of(sam).cobot is not None) == cobot


def _ours(method, cobot, head):
    sam = build_sam("tiny")
    config = {"head": head} if cobot else None
    apply_peft(sam, method, cobot=config, adaptformer_dropout=0.1)
    gen = torch.Generator().manual_seed(11)
    with torch.no_grad():
        for p in sam.parameters():
            if p.requires_grad:
                p.add_(0.1 * torch.randn(p.shape, generator=gen))
    return sam.eval()


@pytest.mark.parametrize("layout", ["medical", "remote"])
@pytest.mark.parametrize("method, cobot, head", VARIANTS)
def test_round_trip_ours_theirs_ours_is_exact(method, cobot, head, layout, tmp_path, images):
    sam = _ours(method, cobot, head)
    path = save_official(sam, tmp_path / "theirs.pth", layout)
    raw = torch.load(path, weights_only=True)
    assert ("state_dict" in raw) == (layout == "remote")
    back = load_official(build_sam("tiny"), read_official(path))
    mine, theirs = adapter_state_dict(sam), adapter_state_dict(back)
    assert mine.keys() == theirs.keys()
    assert all(torch.equal(mine[k], theirs[k]) for k in mine)
    assert all(torch.equal(t, back.state_dict()[k]) for k, t in sam.state_dict().items())
    config = peft_config_of(sam)
    if cobot:  # head_init (how weights were drawn) is not stored in their files
        config = config.with_(cobot=dataclasses.replace(config.cobot, head_init="official"))
    assert peft_config_of(back) == config
    with torch.no_grad():  # and their formula on what we wrote equals our model
        ours = sam.image_encoder(images)
    assert _relative_error(their_embeddings(official_state_dict(sam), images), ours) <= 1e-5


@pytest.mark.parametrize(
    "config, pattern",
    [
        ({"coefficient_sets": "single"}, "coefficient_sets='dual' only"),
        ({"relation": "fixed"}, "relation='learnable' only"),
        ({"head": "none"}, "always has a FacT_d head"),
    ],
)
def test_variants_their_code_lacks_are_refused(config, pattern):
    sam = build_sam("tiny")
    apply_peft(sam, "lora", cobot=config)
    with pytest.raises(ValueError, match=pattern):
        official_state_dict(sam)


def test_rank_and_method_their_code_lacks_are_refused():
    sam = build_sam("tiny")
    apply_peft(sam, "lora", rank=8, cobot=True)
    with pytest.raises(ValueError, match="rank 4 .* got 8"):
        official_state_dict(sam)
    with pytest.raises(ValueError, match="method 'decoder' cannot be converted"):
        check_convertible(apply_peft(build_sam("tiny"), "decoder").config)
    with pytest.raises(ValueError, match="scale 1.0, got 0.5"):
        check_convertible(
            apply_peft(build_sam("tiny"), "adaptformer", adaptformer_scale=0.5).config
        )


def _edit(state, **changes):
    out = {k: v for k, v in state.items() if k not in changes or changes[k] is not None}
    out.update({k: v for k, v in changes.items() if v is not None})
    return out


P = "image_encoder.blocks.3.attn.qkv."


@pytest.mark.parametrize(
    "change, pattern",
    [
        ({f"{P}gamma": None}, f"no key '{P}gamma'"),
        ({f"{P}FacT_d2.j_weight": None}, f"no key '{P}FacT_d2.j_weight'"),
        ({f"{P}FacT_p": torch.eye(24) * 2}, f"{P}FacT_p differs from block 0's"),
        ({f"{P}gamma": torch.ones(16)}, r"gamma has shape \(16,\), expected \(8,\)"),
        ({f"{P}linear_a_q.weight": torch.ones(4, 96)}, r"lora_a_q.weight \(4, 96\) .*\(4, 128\)"),
        ({f"{P}extra": torch.ones(1)}, f"unexpected .*{P}extra"),
    ],
)
def test_bad_checkpoints_name_the_key_and_leave_the_model(change, pattern):
    state = _edit(their_checkpoint("lora", True, "hypercomplex"), **change)
    sam = build_sam("tiny")
    before = {k: v.clone() for k, v in sam.state_dict().items()}
    with pytest.raises(ValueError, match=pattern):
        load_official(sam, state)
    assert peft_config_of(sam) is None
    assert all(torch.equal(v, sam.state_dict()[k]) for k, v in before.items())


def test_unknown_layout_and_other_backbone():
    plain = build_sam("tiny").state_dict()
    with pytest.raises(ValueError, match="unknown checkpoint layout: no LoRA or Adapter keys"):
        load_official(build_sam("tiny"), plain)
    mobile = {"image_encoder.layers.1.blocks.0.attn.qkv.linear_a_q.weight": torch.ones(4, 8)}
    with pytest.raises(ValueError, match="MobileSAM"):
        load_official(build_sam("tiny"), mobile)
    state = their_checkpoint("adaptformer", True, "hypercomplex")
    fewer = {k: v for k, v in state.items() if not k.startswith("image_encoder.blocks.11.")}
    with pytest.raises(ValueError, match="11 encoder blocks, this SAM has 12"):
        load_official(build_sam("tiny"), fewer)
    state = {k: v for k, v in state.items() if ".FacT_d1." not in k}
    with pytest.raises(ValueError, match="neither .*FacT_d1.r_weight"):
        load_official(build_sam("tiny"), state)


def test_unreadable_and_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        read_official(tmp_path / "none.pth")
    (tmp_path / "bad.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="could not read"):
        read_official(tmp_path / "bad.pth")
    torch.save({"state_dict": {"a": 1}}, tmp_path / "odd.pth")
    with pytest.raises(ValueError, match="not a state dict"):
        read_official(tmp_path / "odd.pth")


def test_cli_import_then_export(tmp_path, capsys):
    sam_path, base = tmp_path / "sam.pth", build_sam("tiny").state_dict()
    torch.save(base, sam_path)
    theirs = their_checkpoint("adaptformer", True, "hypercomplex", base)
    their_path = tmp_path / "theirs.pth"
    torch.save({"state_dict": {f"sam.{k}": v for k, v in theirs.items()}}, their_path)
    args = ["--model-type", "tiny", "--sam-checkpoint", str(sam_path)]
    assert main(["import", str(their_path), str(tmp_path / "ad"), *args]) == 0
    assert "0 of" in capsys.readouterr().out  # frozen weights equal the given SAM's
    assert main(["import", str(their_path), str(tmp_path / "ad"), *args]) == 2
    assert "already holds an adapter" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "ad"), str(tmp_path / "back.pth"), *args]) == 0
    back = read_official(tmp_path / "back.pth")
    assert back.keys() == theirs.keys()
    assert all(torch.equal(back[k], theirs[k]) for k in theirs)
    assert main(["export", str(tmp_path / "ad"), str(tmp_path / "back.pth"), *args]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err


def test_cli_refuses_an_unconvertible_adapter_before_work(tmp_path, capsys):
    sam = build_sam("tiny")
    apply_peft(sam, "lora", cobot={"head": "none"})
    save_adapter(sam, tmp_path / "ad")
    argv = ["export", str(tmp_path / "ad"), str(tmp_path / "o.pth"), "--model-type", "tiny"]
    assert main([*argv, "--sam-checkpoint", str(tmp_path / "missing.pth")]) == 2
    assert "always has a FacT_d head" in capsys.readouterr().err
    assert not (tmp_path / "o.pth").exists()
