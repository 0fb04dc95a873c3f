"""ONNX export (cobot_lib.export): onnxruntime against PyTorch on a real photograph.

Oracles: the PyTorch model as the user has it (unmerged, COBOT hooks and all) for the whole
pipeline, and segment_anything's own ``SamOnnxModel`` run eagerly for the decoder's crop. The
logits are made large enough (decoder output layers scaled up) that 1e-4 is a real bound.
"""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import onnx
import pytest
import torch
from segment_anything.utils.onnx import SamOnnxModel
from skimage.data import chelsea

from cobot_lib import apply_peft, build_sam, save_adapter
from cobot_lib.engine.export import (
    ENCODER_FILE,
    ImageEncoderOnnx,
    MaskDecoderOnnx,
    check_export,
    example_inputs,
    export_onnx,
    main,
    session,
)
from cobot_lib.peft import adapter_state_dict, peft_config_of, relation_of

TOLERANCE = 1e-4


def trained_like(sam, method, cobot):
    """Apply PEFT and give every trained tensor non-trivial values; scale the decoder's output
    layers so that mask logits reach several units (random SAM logits are ~0.1)."""
    apply_peft(sam, method, cobot=cobot)
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in sam.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn(p.shape, generator=gen))
        for mlp in sam.mask_decoder.output_hypernetworks_mlps:
            mlp.layers[-1].weight.mul_(30)
    return sam.eval()


def _assert_close(diffs):
    logit = diffs["low_res_masks_max_abs_logit"]
    assert logit > 1.0
    for name in ("image_embeddings", "low_res_masks", "iou_predictions"):
        assert diffs[name] <= TOLERANCE, (name, diffs)
    # "masks" are those logits resampled (bilinear) to the image size; torch and onnxruntime
    # round the sampling positions differently (~1e-5 px), so that difference scales with the
    # logits' slope, which is at most about their size per pixel
    assert diffs["masks"] <= TOLERANCE * logit, diffs


@pytest.mark.parametrize("method", ["lora", "adaptformer"])
def test_cobot_model_exports_and_matches_pytorch(tmp_path, method):
    sam = trained_like(build_sam("tiny"), method, cobot=True)
    before = {k: v.clone() for k, v in adapter_state_dict(sam).items()}
    paths = export_onnx(sam, tmp_path)
    # the user's model is untouched: still unmerged, COBOT hooks still there
    assert peft_config_of(sam).cobot is not None and relation_of(sam) is not None
    assert all(torch.equal(v, adapter_state_dict(sam)[k]) for k, v in before.items())
    landscape = chelsea()  # 300 x 451: the encoder pads the height
    portrait = np.ascontiguousarray(landscape.transpose(1, 0, 2))
    for image in (landscape, portrait):
        _assert_close(check_export(sam, paths, image))
    again = export_onnx(sam, tmp_path / "again")  # deterministic: the same bytes
    assert all(paths[k].read_bytes() == again[k].read_bytes() for k in paths)
    ops = Counter(n.op_type for n in onnx.load(str(paths["encoder"])).graph.node)
    # SAM's encoder has no ReLU: each one is an Adaptformer branch, kept as plain operators
    assert ops["Relu"] == (12 if method == "adaptformer" else 0)


def test_decoder_crop_follows_the_original_image_size(tmp_path):
    """Upstream's crop is frozen at the example size when traced; ours must follow the input."""
    sam = trained_like(build_sam("tiny"), "lora", cobot=None)
    paths = export_onnx(sam, tmp_path, multimask=True)
    decoder = session(paths["decoder"])
    upstream = SamOnnxModel(sam, return_single_mask=False)  # eager: its int() crop is right
    with torch.no_grad():  # the embedding of the photograph
        embedding = ImageEncoderOnnx(sam)(torch.from_numpy(example_inputs(sam)[0]))
    for size in ((1500, 2250), (300, 451), (512, 341), (64, 1000)):
        _, prompts = example_inputs(sam, np.zeros((*size, 3), np.uint8), (5, 5, 40, 60))
        ref = upstream(embedding, *(torch.from_numpy(v) for v in prompts.values()))
        mine = MaskDecoderOnnx(sam, return_single_mask=False)(
            embedding, *(torch.from_numpy(v) for v in prompts.values())
        )
        got = decoder.run(None, {"image_embeddings": embedding.numpy(), **prompts})
        assert got[0].shape == (1, 4, *size)
        logit = float(ref[2].abs().max())
        assert logit > 1.0
        for r, m, g, bound in zip(ref, mine, got, (logit, 1, 1), strict=True):
            assert torch.equal(r, m)
            assert np.abs(g - r.numpy()).max() <= TOLERANCE * bound


def test_cli_exports_an_adapter(tmp_path, capsys):
    sam = trained_like(build_sam("tiny"), "lora", cobot=True)
    torch.save(build_sam("tiny").state_dict(), tmp_path / "sam.pth")
    save_adapter(sam, tmp_path / "adapter")
    argv = [
        str(tmp_path / "onnx"),
        "--model-type",
        "tiny",
        "--checkpoint",
        str(tmp_path / "sam.pth"),
    ]
    assert main([*argv, "--adapter", str(tmp_path / "adapter")]) == 0
    meta = json.loads((tmp_path / "onnx" / "export.json").read_text())
    assert meta["peft"]["method"] == "lora" and meta["image_size"] == 256
    _assert_close(meta["onnxruntime_vs_torch_max_abs_diff"])
    assert "onnxruntime vs PyTorch" in capsys.readouterr().out


def test_cli_bad_inputs_fail_before_work(tmp_path, capsys):
    out = tmp_path / "onnx"
    assert main([str(out), "--model-type", "tiny", "--checkpoint", str(tmp_path / "no.pth")]) == 2
    assert "no.pth does not exist" in capsys.readouterr().err
    assert main([str(out), "--model-type", "tiny", "--adapter", str(tmp_path / "none")]) == 2
    assert "no adapter config" in capsys.readouterr().err
    assert not out.exists()
    (tmp_path / "file").write_text("x")
    assert main([str(tmp_path / "file"), "--model-type", "tiny"]) == 2
    assert "is not a directory" in capsys.readouterr().err
    out.mkdir()
    (out / ENCODER_FILE).write_text("keep me")
    assert main([str(out), "--model-type", "tiny"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (out / ENCODER_FILE).read_text() == "keep me"
    with pytest.raises(SystemExit):
        main([str(out), "--model-type", "vit_z"])


@pytest.mark.slow
def test_vit_b_random_weights_export_matches_pytorch(tmp_path):
    """ViT-B at 1024 px (random weights): 2-3 minutes on one thread (export ~75 s)."""
    torch.set_num_threads(1)
    sam = trained_like(build_sam("vit_b"), "lora", cobot=True)
    paths = export_onnx(sam, tmp_path)
    _assert_close(check_export(sam, paths))
