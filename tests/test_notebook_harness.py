"""The notebook code that moved into cobot_lib/notebook (issue 17): parameter checks, 04's and
06's and 07's harnesses, 03's stage trace, 05's verdict re-check and re-run tolerance, the overlays.

Oracles: closed forms (alpha blending, the model spec's shapes), hashlib on a changed weight,
numpy's standard deviation over rows picked with plain pandas, a tampered table that must fail.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cobot_lib.backbone.prompting import predict_masks
from cobot_lib.backbone.sam import SAM_SPECS, build_sam, input_size
from cobot_lib.data.synthetic import SyntheticShapes
from cobot_lib.notebook import viz
from cobot_lib.notebook.anatomy import trace_stages
from cobot_lib.notebook.finetune import missing_weights, weight_fingerprints
from cobot_lib.notebook.parameter_space import (
    fold_into_plain,
    fresh_model,
    frozen_unchanged,
    orthogonality_gap,
    row_spread,
    train_recorded,
    train_short,
)
from cobot_lib.notebook.params import (
    ParameterError,
    check_finetune,
    check_hamilton,
    check_parameter_space,
)
from cobot_lib.peft import apply_peft, peft_config_of, relation_of

ROOT = Path(__file__).resolve().parents[1]
FINETUNE = {
    "model_type": "tiny", "checkpoint": "random", "dataset": "demo:nuclei", "method": "lora",
    "cobot": True, "coefficient_sets": "dual", "relation": "learnable", "head": "hypercomplex",
    "rank": None, "epochs": 1, "max_steps": None, "lr": 1e-4, "weight_decay": 0.0,
    "box_jitter_px": 1.0, "seed": 0, "device": "cpu", "amp": "auto", "val_split": "val",
    "val_every_steps": None, "patience": None, "prompt": "box", "points": 1, "negative_points": 0,
    "eval_every_epoch": True, "expect_gain": True, "num_overlays": 1, "output_dir": "runs/x",
    "metrics_path": "",
}  # fmt: skip


# --- parameter checks ---------------------------------------------------------------------------


def test_finetune_run_resolves_rank_name_and_metrics_path():
    run = check_finetune({**FINETUNE, "relation": "off"})
    assert run.rank == 4 and run.name == "lora (V=4) + COBOT [relation=off]"
    assert run.metrics_path == Path("runs/x/metrics.json")
    assert run.model_label == "tiny SAM, RANDOM INIT (not pretrained)"
    assert check_finetune({**FINETUNE, "method": "freeze", "cobot": False}).rank is None


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"method": "decoder", "rank": 8}, "cobot must be False and rank None"),
        ({"cobot": False, "head": "linear"}, "only apply with cobot=True"),
        ({"model_type": "vit_b", "checkpoint": "foundation"}, "pretrained tiny model"),
        ({"device": "gpu"}, "'cpu' or 'auto' or 'cuda' or 'cuda:N'"),
    ],
)
def test_finetune_combinations_fail_with_one_clear_error(change, words):
    with pytest.raises(ParameterError, match=words.replace("(", r"\(")):
        check_finetune({**FINETUNE, **change})


def test_missing_foundation_file_is_named(monkeypatch, tmp_path):
    monkeypatch.setenv("COBOT_FOUNDATION", str(tmp_path / "none.safetensors"))
    params = {"model_type": "tiny", "checkpoint": "foundation", "dataset": "synthetic",
              "method": "lora", "rank": 4, "steps": 1, "lr": 1e-3, "box_jitter_px": 0.0,
              "grad_images": 1, "top_k": 2, "seed": 0, "device": "cpu",
              "output_dir": "x"}  # fmt: skip
    with pytest.raises((FileNotFoundError, ValueError), match="none.safetensors"):
        check_parameter_space(params)


def test_hamilton_axis_must_be_three_numbers_not_all_zero():
    good = {"n_checks": 10, "rotation_axis": [1, 0, 0], "initial_angle": 0, "layer_width": 8,
            "widths": [4], "init_trials": 2, "seed": 0}  # fmt: skip
    assert check_hamilton(good)["rotation_axis"] == [1, 0, 0]
    for axis in ([0, 0, 0], [1, 2], [1, True, 0]):
        with pytest.raises(ParameterError, match="three numbers, not all zero"):
            check_hamilton({**good, "rotation_axis": axis})


# --- 04: fingerprints, overlays ------------------------------------------------------------------


def test_fingerprints_see_one_changed_weight():
    torch.manual_seed(0)
    plain = weight_fingerprints(build_sam("tiny"))
    torch.manual_seed(0)  # the same seed: the same plain weights
    sam = build_sam("tiny")
    apply_peft(sam, "lora", cobot=True)
    assert not missing_weights(plain, sam)  # the adapted model holds every plain weight
    before = weight_fingerprints(sam, trainable=False)
    with torch.no_grad():
        sam.image_encoder.blocks[3].mlp.lin1.weight[0, 0] += 1e-6
    after = weight_fingerprints(sam, trainable=False)
    assert [n for n in before if before[n] != after[n]] == [
        "image_encoder.blocks.3.mlp.lin1.weight"
    ]
    assert sum(missing_weights(plain, sam).values()) == 1


def test_overlay_blends_each_mask_with_its_colour():
    rgb = np.full((4, 4, 3), 0.2)
    masks = np.zeros((2, 4, 4), bool)
    masks[0, 0, 0] = masks[1, 3, 3] = True
    out = viz.overlay(rgb, masks, alpha=0.5)
    assert np.allclose(out[0, 0], 0.5 * 0.2 + 0.5 * viz.PALETTE[0])
    assert np.allclose(out[3, 3], 0.5 * 0.2 + 0.5 * viz.PALETTE[1])
    assert np.allclose(out[1, 1], 0.2) and np.allclose(rgb, 0.2)  # input untouched


def test_cube_figure_draws_the_turned_corners():
    rotation = np.array([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]])  # a quarter turn about z
    fig = viz.cube_rotation_figure(lambda p: p @ rotation.T, [0, 0, 1], 90, [0.7, 0, 0, 0.7])
    x, y, z = (np.array(fig.data[1][c], dtype=float) for c in "xyz")
    drawn = {tuple(np.round(p, 9)) for p in np.stack([x, y, z], 1)[~np.isnan(x)]}
    assert drawn == {tuple(np.round(p, 9)) for p in viz.CUBE @ rotation.T}


# --- 03: the stage trace -------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "V"), [("lora", 4), ("adaptformer", 16)])
def test_trace_stages_shapes_and_composition(method, V):
    stages, error = trace_stages(method)
    D = SAM_SPECS["tiny"].embed_dim
    down = [s for s in stages if s[0].startswith("A")][0]
    up = [s for s in stages if s[0].startswith("B")][0]
    assert down[1][-1] == D and down[2][-1] == V and up[1][-1] == V and up[2][-1] == D
    assert error < 1e-5


# --- 06: recorded runs ---------------------------------------------------------------------------


def test_train_recorded_logs_every_step(tmp_path):
    params = {"model_type": "tiny", "checkpoint": "random", "dataset": "synthetic",
              "method": "lora", "rank": 4, "steps": 2, "lr": 1e-3, "box_jitter_px": 0.0,
              "seed": 0, "device": "cpu", "output_dir": str(tmp_path)}  # fmt: skip
    data = SyntheticShapes(2, input_size("tiny"), seed=1), SyntheticShapes(1, 256, train=False)
    run = train_recorded(params, "off", *data)
    assert len(run.loss) == 2 and all(len(v) == 2 for v in run.log.values())
    assert all(np.array_equal(S, np.eye(24)) for S in run.log["S"])  # RM off: S stays I
    assert frozen_unchanged(run) and len(run.views_after) == 24


@pytest.mark.parametrize("method", ["lora", "adaptformer"])
def test_fold_into_plain_computes_the_same_masks(tiny_sam, tiny_batch, method):
    """07's reparametrisation: the plain method with A' = W diag(lambda) A gives the same masks;
    folding diag(lambda) without W does not (so the comparison can fail)."""
    apply_peft(tiny_sam, method, cobot=True)
    gen = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for name, p in tiny_sam.named_parameters():
            if p.requires_grad and not name.startswith("mask_decoder"):
                p.add_(0.1 * torch.randn(p.shape, generator=gen))
    tiny_sam.eval()
    plain, wrong = fold_into_plain(tiny_sam), fold_into_plain(tiny_sam, with_head=False)
    assert peft_config_of(plain).cobot is None and peft_config_of(plain).method == method
    with torch.no_grad():
        out = [torch.cat(predict_masks(m.eval(), *tiny_batch)) for m in (tiny_sam, plain, wrong)]
    torch.testing.assert_close(out[1], out[0], atol=1e-4, rtol=1e-4)
    assert (out[2] - out[0]).abs().max() > 1e-2


def test_row_spread_is_max_minus_min_of_each_row_of_s_minus_i():
    S = np.eye(3) + np.array([[0.1, 0.1, 0.1], [0.0, 0.2, -0.2], [0.0, 0.0, 0.0]])
    spread, mean = row_spread(S)
    np.testing.assert_allclose(spread, [0.0, 0.4, 0.0], atol=1e-15)
    np.testing.assert_allclose(mean, [0.1, 0.0, 0.0], atol=1e-15)


def test_fresh_model_switches_and_train_short_records_S(tmp_path):
    params = {"model_type": "tiny", "checkpoint": "random", "dataset": "synthetic",
              "method": "lora", "rank": 4, "steps": 2, "lr": 1e-2, "box_jitter_px": 0.0,
              "seed": 0, "device": "cpu", "output_dir": str(tmp_path)}  # fmt: skip
    plain = fresh_model(params, cobot=False, down_init_scale=2.0)
    assert peft_config_of(plain).cobot is None and peft_config_of(plain).down_init_scale == 2.0
    sam = fresh_model(params, base_init="perturbed")
    c = relation_of(sam).c.detach()
    assert peft_config_of(sam).cobot.base_init == "perturbed" and not torch.equal(
        c, torch.ones_like(c)
    )
    items = list(SyntheticShapes(2, input_size("tiny"), seed=1))
    history = train_short(sam, items, 2, 1e-2)
    assert len(history) == 3 and np.array_equal(history[0], np.eye(24))
    assert not np.array_equal(history[-1], history[0])  # S trained


def test_orthogonality_gap_of_a_matrix_and_of_quaternion_weights():
    q = torch.tensor([[[0.6, 0.0, 0.8, 0.0]]], dtype=torch.float64)  # a unit quaternion
    assert orthogonality_gap(q) < 1e-12
    assert orthogonality_gap(2 * torch.eye(3)) == pytest.approx(3.0)  # 4 I - I
