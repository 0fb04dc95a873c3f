"""ONNX export of an adapted SAM: the image encoder and segment_anything's prompt/decoder model.

    python -m cobot_lib.export runs/onnx --model-type vit_b --checkpoint sam_vit_b_01ec64.pth \\
        --adapter runs/lora_cobot/adapter

writes ``image_encoder.onnx`` (pixels -> image embeddings), ``mask_decoder.onnx`` (embeddings +
prompts -> mask logits, segment_anything's ``SamOnnxModel``) and ``export.json``, then checks
both graphs with onnxruntime against PyTorch on a real photograph (scikit-image's "chelsea").

What is exported is a merged deep copy (``peft.merge``): LoRA and LoRA+COBOT fold into qkv, so
the graph is a plain SAM; Adaptformer+COBOT folds its bridge W diag(lambda) into A, and the
branch that cannot merge (LayerNorm, A, ReLU, B beside the MLP) is exported as ordinary
operators. The bridge matrices depend on weights only, so folding them is exact, and it keeps
COBOT's per-pass hooks and ``RelationMatrix`` (whose ``diag_embed`` the exporter cannot
translate) out of the graph. The user's model is not changed.

Exporter: torch's TorchScript exporter (``dynamo=False``), offline and deterministic. The
``torch.export`` route needs onnxscript and cannot translate ``SamOnnxModel`` (its crop by the
original image size is data-dependent). With the TorchScript exporter of torch >= 2.9 that crop
is frozen at the example size (``int(tensor)`` becomes a constant), so masks for any other aspect
ratio come out wrong; ``MaskDecoderOnnx`` crops with tensor bounds instead, which trace.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from segment_anything.modeling import Sam
from segment_anything.utils.onnx import SamOnnxModel
from segment_anything.utils.transforms import ResizeLongestSide
from skimage.data import chelsea  # a real photograph shipped inside scikit-image
from torch import nn

from ..backbone.sam import MODEL_TYPES, build_sam
from ..files import atomic_write
from ..machine import set_threads
from ..peft import load_adapter, merge, peft_config_of, read_adapter_config

try:  # the optional "export" extra
    import onnx
    import onnxruntime as ort
except ImportError:  # pragma: no cover - exercised only without the extra
    onnx = ort = None

__all__ = [
    "ENCODER_FILE",
    "DECODER_FILE",
    "ImageEncoderOnnx",
    "MaskDecoderOnnx",
    "deployable",
    "export_onnx",
    "session",
    "example_inputs",
    "check_export",
    "main",
]

ENCODER_FILE, DECODER_FILE, META_FILE = "image_encoder.onnx", "mask_decoder.onnx", "export.json"
OPSET = 17  # segment_anything's export script's default
MAX_PROTO_BYTES = 2**31  # an ONNX file holds at most 2 GiB (protobuf)
EXAMPLE_BOX = (140.0, 20.0, 360.0, 290.0)  # the cat's head in skimage.data.chelsea(), xyxy


def _require_onnx() -> None:
    if onnx is None or ort is None:
        raise ImportError(
            "ONNX export needs the packages onnx and onnxruntime: pip install 'cobot_lib[export]'"
        )


class ImageEncoderOnnx(nn.Module):
    """Pixels (1, 3, h, w), float RGB in [0, 255] resized so that the longest side is the model's
    input size S (``ResizeLongestSide``), -> image embeddings (1, C, S/16, S/16).

    It runs ``Sam.preprocess`` (normalise, pad to S x S) and the image encoder, as
    ``SamPredictor.set_torch_image`` does; h and w are dynamic axes of the graph.
    """

    def __init__(self, sam: Sam):
        super().__init__()
        self.sam = sam

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.sam.image_encoder(self.sam.preprocess(image))


class MaskDecoderOnnx(SamOnnxModel):
    """segment_anything's ``SamOnnxModel`` with a crop that stays dynamic when traced.

    Upstream crops the upscaled masks with ``int(prepadded_size[i])``, which the TorchScript
    tracer of torch >= 2.9 records as a constant of the example input; slicing with the 0-d
    tensors themselves is traced as a dynamic Slice. Same values in eager mode.
    """

    def mask_postprocessing(self, masks: torch.Tensor, orig_im_size: torch.Tensor) -> torch.Tensor:
        size = (self.img_size, self.img_size)
        masks = F.interpolate(masks, size=size, mode="bilinear", align_corners=False)
        prepadded = self.resize_longest_image_size(orig_im_size, self.img_size)
        masks = masks[..., : prepadded[0], : prepadded[1]]
        orig = orig_im_size.to(torch.int64)
        return F.interpolate(masks, size=(orig[0], orig[1]), mode="bilinear", align_corners=False)


def deployable(sam: Sam) -> Sam:
    """A merged deep copy of ``sam`` in eval mode (``sam`` itself is left as it is)."""
    if not isinstance(sam, Sam):
        raise TypeError(f"expected a segment_anything Sam, got {type(sam).__name__}")
    copied = copy.deepcopy(sam)
    if peft_config_of(copied) is not None:
        merge(copied)
    return copied.eval()


def _decoder_example(sam: Sam) -> dict[str, torch.Tensor]:
    """Example inputs of ``SamOnnxModel`` as in segment_anything's export script."""
    embed_size = sam.prompt_encoder.image_embedding_size
    size = sam.image_encoder.img_size
    gen = torch.Generator().manual_seed(0)
    return {
        "image_embeddings": torch.randn(
            1, sam.prompt_encoder.embed_dim, *embed_size, generator=gen
        ),
        "point_coords": torch.randint(0, size, (1, 5, 2), generator=gen).float(),
        "point_labels": torch.randint(0, 4, (1, 5), generator=gen).float(),
        "mask_input": torch.randn(1, 1, *[4 * e for e in embed_size], generator=gen),
        "has_mask_input": torch.tensor([1.0]),
        "orig_im_size": torch.tensor([1500.0, 2250.0]),
    }


def _export(module: nn.Module, args: tuple, path: Path, opset: int, **kwargs) -> None:
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)  # torch's notes on the exporter
        warnings.filterwarnings("ignore", message="Exporting aten::index operator")  # indices >= 0
        atomic_write(
            path,
            lambda tmp: torch.onnx.export(
                module, args, str(tmp), dynamo=False, opset_version=opset, **kwargs
            ),
        )
    onnx.checker.check_model(str(path))


def export_onnx(
    sam: Sam, out_dir: str | Path, multimask: bool = False, opset: int = OPSET
) -> dict[str, Path]:
    """Write ``image_encoder.onnx`` and ``mask_decoder.onnx`` of ``sam`` (merged) to ``out_dir``.

    Args:
        sam: a segment_anything Sam, with or without PEFT (merged on a copy first).
        multimask: decoder returns all mask tokens (else SamOnnxModel picks one mask: the first
            token for > 2 prompt points, the best-scored other token for a box or one point).
        opset: ONNX opset of both graphs.
    Returns:
        {"encoder": path, "decoder": path}
    """
    _require_onnx()
    size = sum(t.numel() * t.element_size() for t in sam.image_encoder.state_dict().values())
    if size >= MAX_PROTO_BYTES:
        raise ValueError(
            f"the image encoder's weights take {size / 2**30:.2f} GiB, more than one ONNX file "
            "can hold (2 GiB): vit_h cannot be exported this way; use vit_b or vit_l"
        )
    model = deployable(sam)
    out_dir = Path(out_dir)
    s = model.image_encoder.img_size
    paths = {"encoder": out_dir / ENCODER_FILE, "decoder": out_dir / DECODER_FILE}
    example = torch.zeros(1, 3, s, 3 * s // 4)  # padded width: the pad is traced, not skipped
    _export(
        ImageEncoderOnnx(model).eval(),
        (example,),
        paths["encoder"],
        opset,
        input_names=["image"],
        output_names=["image_embeddings"],
        dynamic_axes={"image": {2: "height", 3: "width"}},
    )
    decoder_inputs = _decoder_example(model)
    _export(
        MaskDecoderOnnx(model, return_single_mask=not multimask).eval(),
        tuple(decoder_inputs.values()),
        paths["decoder"],
        opset,
        input_names=list(decoder_inputs),
        output_names=["masks", "iou_predictions", "low_res_masks"],
        dynamic_axes={"point_coords": {1: "num_points"}, "point_labels": {1: "num_points"}},
    )
    return paths


def session(path: str | Path, threads: int = 1) -> ort.InferenceSession:
    """An onnxruntime CPU session with ``threads`` intra-op threads and one inter-op thread."""
    _require_onnx()
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def example_inputs(
    sam: Sam, image: np.ndarray | None = None, box: tuple[float, ...] = EXAMPLE_BOX
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The encoder's pixels and the decoder's prompt inputs for ``image`` (H, W, 3) uint8 RGB
    (default: scikit-image's photograph "chelsea", 300 x 451) with one xyxy ``box``, prepared
    as ``SamPredictor`` prepares them (``ResizeLongestSide``; a box is two points, labels 2, 3)."""
    image = chelsea() if image is None else image
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be (H, W, 3) uint8 RGB, got {image.shape} {image.dtype}")
    transform = ResizeLongestSide(sam.image_encoder.img_size)
    pixels = transform.apply_image(image).transpose(2, 0, 1)[None].astype(np.float32)
    corners = transform.apply_coords(np.asarray(box, np.float64).reshape(2, 2), image.shape[:2])
    embed = sam.prompt_encoder.image_embedding_size
    prompts = {
        "point_coords": corners[None].astype(np.float32),
        "point_labels": np.array([[2.0, 3.0]], np.float32),
        "mask_input": np.zeros((1, 1, 4 * embed[0], 4 * embed[1]), np.float32),
        "has_mask_input": np.zeros(1, np.float32),
        "orig_im_size": np.array(image.shape[:2], np.float32),
    }
    return pixels, prompts


def check_export(
    sam: Sam, paths: dict[str, Path], image: np.ndarray | None = None, multimask: bool = False
) -> dict[str, float]:
    """Largest absolute differences between onnxruntime (encoder -> decoder graphs) and the
    PyTorch model ``sam`` as given (unmerged if it was), on one real image and box."""
    pixels, prompts = example_inputs(sam, image)
    was_training = sam.training
    sam.eval()
    try:
        with torch.no_grad():
            embedding = ImageEncoderOnnx(sam)(torch.from_numpy(pixels))
            decoder = MaskDecoderOnnx(sam, return_single_mask=not multimask)
            ref = decoder(embedding, *(torch.from_numpy(v) for v in prompts.values()))
    finally:
        sam.train(was_training)
    got_embedding = session(paths["encoder"]).run(None, {"image": pixels})[0]
    got = session(paths["decoder"]).run(None, {"image_embeddings": got_embedding, **prompts})
    diffs = {"image_embeddings": float(np.abs(got_embedding - embedding.numpy()).max())}
    for name, r, g in zip(("masks", "iou_predictions", "low_res_masks"), ref, got, strict=True):
        if r.shape != g.shape:
            raise RuntimeError(f"ONNX {name} has shape {g.shape}, PyTorch {tuple(r.shape)}")
        diffs[name] = float(np.abs(g - r.numpy()).max())
    diffs["low_res_masks_max_abs_logit"] = float(ref[2].abs().max())
    return diffs


def _check_paths(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"--out {out_dir} exists and is not a directory")
    taken = [n for n in (ENCODER_FILE, DECODER_FILE, META_FILE) if (out_dir / n).exists()]
    if taken and not overwrite:
        raise ValueError(f"{out_dir} already holds {taken}; pass --overwrite to replace them")


def main(argv: list[str] | None = None) -> int:
    """CLI: export a SAM (optionally with a saved adapter, merged) to ONNX and check it."""
    parser = argparse.ArgumentParser(prog="python -m cobot_lib.export", description=main.__doc__)
    parser.add_argument("out", type=Path, help="output directory for the .onnx files")
    parser.add_argument("--model-type", required=True, choices=MODEL_TYPES)
    parser.add_argument("--checkpoint", type=Path, help="SAM weights (.pth); default: random")
    parser.add_argument("--adapter", type=Path, help="save_adapter directory to apply and merge")
    parser.add_argument("--multimask", action="store_true", help="decoder returns every mask")
    parser.add_argument("--opset", type=int, default=OPSET)
    parser.add_argument("--no-check", action="store_true", help="skip the onnxruntime check")
    parser.add_argument("--overwrite", action="store_true", help="replace existing .onnx files")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: cobot_lib.machine)"
    )
    args = parser.parse_args(argv)
    set_threads(args.threads)
    try:
        _require_onnx()
        _check_paths(args.out, args.overwrite)
        if args.checkpoint is not None and not args.checkpoint.is_file():
            raise FileNotFoundError(f"--checkpoint {args.checkpoint} does not exist")
        config = read_adapter_config(args.adapter)[0] if args.adapter else None
        sam = build_sam(args.model_type, args.checkpoint)
        if args.adapter:
            load_adapter(sam, args.adapter)
        paths = export_onnx(sam, args.out, args.multimask, args.opset)
        diffs = None if args.no_check else check_export(sam, paths, multimask=args.multimask)
    except (ValueError, FileNotFoundError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    meta = {
        "model_type": args.model_type,
        "image_size": sam.image_encoder.img_size,
        "peft": config.to_dict() if config else None,
        "multimask": args.multimask,
        "opset": args.opset,
        "torch": torch.__version__,
        "onnxruntime": ort.__version__,
        "onnxruntime_vs_torch_max_abs_diff": diffs,
    }
    atomic_write(args.out / META_FILE, lambda p: p.write_text(json.dumps(meta, indent=2)))
    for name, path in paths.items():
        print(f"{name}: {path} ({path.stat().st_size / 2**20:.1f} MiB)")
    if diffs:
        print("onnxruntime vs PyTorch, max |diff|: " + json.dumps(diffs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
