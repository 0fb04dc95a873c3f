"""Synthetic shapes (determinism, the data contract, box/mask consistency) and the pretraining
script (quick mode, atomic save, schedule, balanced BCE).

Oracles: torchvision's ``masks_to_boxes`` (same inclusive-max xyxy convention) for the tight box,
SAM's pixel mean/std undone by hand for the value range, and set algebra for occlusion.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file
from torchvision.ops import masks_to_boxes

from cobot_lib.backbone.foundation import FOUNDATION_RECIPE, read_card, sha256_of, verify_foundation
from cobot_lib.backbone.sam import PIXEL_MEAN, PIXEL_STD, build_sam
from cobot_lib.data.synthetic import SyntheticShapes, render_shapes
from cobot_lib.engine.muon import Muon


def test_same_seed_and_index_give_the_same_item():
    a, b = SyntheticShapes(5, seed=3)[4], SyntheticShapes(5, seed=3)[4]
    for key in ("image", "masks", "boxes"):
        assert torch.equal(a[key], b[key])
    assert a["name"] == b["name"]


def test_other_seed_or_index_gives_another_image():
    ref = SyntheticShapes(5, seed=3)[4]["image"]
    assert not torch.equal(ref, SyntheticShapes(5, seed=4)[4]["image"])
    assert not torch.equal(ref, SyntheticShapes(5, seed=3)[3]["image"])


def test_item_follows_the_data_contract():
    item = SyntheticShapes(3, image_size=128, seed=1, train=False)[2]
    n = item["masks"].shape[0]
    assert item["image"].shape == (3, 128, 128) and item["image"].dtype == torch.float32
    assert item["masks"].shape == (n, 128, 128) and item["masks"].dtype == torch.float32
    assert item["boxes"].shape == (n, 4) and item["boxes"].dtype == torch.float32
    assert set(item["masks"].unique().tolist()) <= {0.0, 1.0}
    assert item["original_size"] == (128, 128) and item["input_size"] == (128, 128)
    mean = torch.tensor(PIXEL_MEAN)[:, None, None]
    std = torch.tensor(PIXEL_STD)[:, None, None]
    raw = item["image"] * std + mean
    assert raw.min() >= -1e-3 and raw.max() <= 255 + 1e-3


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31), index=st.integers(0, 10**6))
def test_eval_boxes_are_the_tight_boxes_of_disjoint_non_empty_masks(seed, index):
    item = SyntheticShapes(index + 1, seed=seed, train=False)[index]
    masks = item["masks"]
    assert masks.shape[0] >= 1
    assert (masks.flatten(1).sum(1) >= 150).all()
    assert masks.sum(0).max() <= 1  # occlusion: a pixel belongs to at most one instance
    torch.testing.assert_close(item["boxes"], masks_to_boxes(masks.bool()), rtol=0, atol=0)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31), index=st.integers(0, 1000), jitter=st.integers(1, 40))
def test_training_jitter_widens_each_side_by_at_most_the_limit(seed, index, jitter):
    train = SyntheticShapes(index + 1, seed=seed, train=True, jitter_px=jitter)[index]
    tight = masks_to_boxes(train["masks"].bool())
    moved = (train["boxes"] - tight) * torch.tensor([-1.0, -1.0, 1.0, 1.0])
    assert (moved >= 0).all() and (moved <= jitter + 1e-4).all()
    assert train["boxes"].min() >= 0 and train["boxes"].max() <= 255


def test_set_epoch_redraws_the_jitter_only():
    ds = SyntheticShapes(2, seed=0, train=True, jitter_px=20)
    first = ds[1]
    ds.set_epoch(1)
    second = ds[1]
    assert torch.equal(first["masks"], second["masks"])
    assert not torch.equal(first["boxes"], second["boxes"])


def test_render_shapes_is_a_pure_function():
    a_img, a_masks = render_shapes(7, 11, size=96)
    b_img, b_masks = render_shapes(7, 11, size=96)
    np.testing.assert_array_equal(a_img, b_img)
    np.testing.assert_array_equal(a_masks, b_masks)
    assert a_img.shape == (3, 96, 96) and a_masks.dtype == bool


def test_bad_input_is_rejected_with_the_value():
    with pytest.raises(ValueError, match="32"):
        render_shapes(0, 0, size=16)
    with pytest.raises(ValueError, match="num_images"):
        SyntheticShapes(0)
    with pytest.raises(IndexError, match="5"):
        SyntheticShapes(5)[5]


# --- data_scripts/pretrain_tiny_sam.py -------------------------------------------------------

_SPEC = importlib.util.spec_from_file_location(
    "pretrain_tiny_sam", Path(__file__).parents[1] / "data_scripts" / "pretrain_tiny_sam.py"
)
pretrain = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(pretrain)


def test_pretrain_quick_mode_writes_weights_and_card_and_then_skips(tmp_path, capsys):
    out = tmp_path / "cache" / "tiny.safetensors"
    assert pretrain.main(["--quick", "--steps", "2", "--out", str(out), "--seed", "3"]) == 0
    assert sorted(p.name for p in out.parent.iterdir()) == ["tiny.json", "tiny.safetensors"]
    card = verify_foundation(out)  # recipe, keys and SHA-256 all check out
    assert card["steps"] == 2 and card["seed"] == 3 and card["recipe"] == FOUNDATION_RECIPE
    assert 0.0 <= card["held_out_miou"] <= 1.0 and card["held_out_instances"] > 0
    assert card["torch_version"] == str(torch.__version__)
    assert card["command"].endswith(f"--quick --steps 2 --out {out} --seed 3")
    assert card["newton_schulz_dtype"] == "auto"
    sam = build_sam("tiny", out)  # the library's loader accepts it
    stored = load_file(out)
    for name, value in sam.state_dict().items():
        assert torch.equal(value, stored[name])
    assert "held-out synthetic mIoU" in capsys.readouterr().out
    stamp = out.stat().st_mtime_ns
    assert pretrain.main(["--quick", "--out", str(out)]) == 0  # present: not retrained
    assert out.stat().st_mtime_ns == stamp and "exists" in capsys.readouterr().out


def test_pretraining_smoke_loss_falls(tmp_path):
    """Tens of steps of the real recipe (Eq. 22 alone: the fading balanced-BCE term is off, so a
    falling loss is learning, not the term's weight going to zero)."""
    out = tmp_path / "smoke.safetensors"
    argv = ["--steps", "40", "--batch-size", "2", "--eval-images", "2", "--aux-fraction", "0"]
    assert pretrain.main([*argv, "--out", str(out), "--threads", "1"]) == 0
    card = read_card(out)
    assert card["loss_last_10"] < 0.8 * card["loss_first_10"], card


def test_pretrain_rejects_a_pickle_output_name(tmp_path, capsys):
    with pytest.raises(SystemExit):
        pretrain.parse_args(["--out", str(tmp_path / "model.pt")])
    assert "--out must end in .safetensors" in capsys.readouterr().err


def test_save_model_keeps_the_old_files_when_writing_fails(tmp_path, monkeypatch):
    out = tmp_path / "m.safetensors"
    meta = {"recipe": 3, "held_out_miou": 0.5, "held_out_instances": 1, "steps": 1, "seed": 0}
    first = pretrain.save_model({"model": {"a": torch.ones(2)}, "meta": meta}, out, "cmd")

    def broken_save(tensors, path):
        Path(path).write_bytes(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(pretrain, "save_file", broken_save)
    with pytest.raises(OSError, match="disk full"):
        pretrain.save_model({"model": {"a": torch.zeros(2)}, "meta": meta}, out, "cmd")
    assert torch.equal(load_file(out)["a"], torch.ones(2))
    assert read_card(out)["sha256"] == first["sha256"] == sha256_of(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.safetensors"]


def test_lr_schedule_is_linear_warmup_then_half_cosine():
    assert pretrain.lr_factor(0.0, 0.1) == 0.0
    assert pretrain.lr_factor(0.05, 0.1) == pytest.approx(0.5)
    assert pretrain.lr_factor(0.1, 0.1) == pytest.approx(1.0)
    assert pretrain.lr_factor(0.55, 0.1) == pytest.approx(0.5)  # cos(pi / 2) midway
    assert pretrain.lr_factor(1.0, 0.1) == pytest.approx(0.0, abs=1e-12)


def test_balanced_bce_equals_class_weighted_bce():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 1, 8, 8, generator=gen)
    target = (torch.rand(3, 1, 8, 8, generator=gen) < 0.2).float()
    expected = []
    for lg, t in zip(logits, target, strict=True):
        w = torch.where(t > 0, 0.5 / t.sum(), 0.5 / (1 - t).sum())  # each class half the weight
        expected.append(F.binary_cross_entropy_with_logits(lg, t, weight=w, reduction="sum"))
    got = pretrain.balanced_bce(logits, target)
    torch.testing.assert_close(got, torch.stack(expected).mean())


def test_pretrain_rejects_bad_budgets():
    with pytest.raises(SystemExit):
        pretrain.parse_args(["--steps", "0"])
    with pytest.raises(SystemExit):
        pretrain.parse_args(["--minutes", "-1"])


@pytest.mark.parametrize("optimizer", ["muon", "adamw"])
def test_every_parameter_is_trained_by_exactly_one_optimizer(optimizer):
    sam = build_sam("tiny")
    optimizers = pretrain.make_optimizers(sam, pretrain.parse_args(["--optimizer", optimizer]))
    owned = [id(p) for opt in optimizers for g in opt.param_groups for p in g["params"]]
    assert sorted(owned) == sorted(id(p) for p in sam.parameters())  # each one exactly once
    muon = [o for o in optimizers if isinstance(o, Muon)]
    if optimizer == "adamw":
        assert muon == [] and len(optimizers) == 1
        return
    (muon,) = muon
    in_muon = {id(p) for g in muon.param_groups for p in g["params"]}
    linear_layers = [m for m in sam.modules() if isinstance(m, torch.nn.Linear)]
    assert len(in_muon) == len(linear_layers)  # one matrix per Linear layer...
    assert all(p.ndim == 2 for p in muon.param_groups[0]["params"])  # ...and nothing else:
    not_matrices = (torch.nn.Embedding, torch.nn.Conv2d, torch.nn.ConvTranspose2d)
    for module in sam.modules():  # no embedding table, convolution kernel or bias
        for p in module.parameters(recurse=False):
            assert id(p) not in in_muon or (module.__class__ is torch.nn.Linear and p.ndim == 2)
        if isinstance(module, not_matrices):
            assert id(module.weight) not in in_muon
    encoder = sam.image_encoder  # nor a position table
    assert id(encoder.pos_embed) not in in_muon
    assert not any(id(b.attn.rel_pos_h) in in_muon for b in encoder.blocks)
