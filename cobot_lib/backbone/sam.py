"""SAM backbones: the real ViT-B/L/H and a tiny family for CPU teaching.

``build_sam`` builds every model from segment_anything's own modeling classes, so the PEFT code
sees the same module tree (``image_encoder.blocks[i].attn.qkv``, ``.mlp``) on a laptop and on a
GPU. Weights are only ever read from a path the user gives; nothing is downloaded.

The tiny family keeps what matters for COBOT: 12 encoder blocks (so the relation matrix has
ViT-B's 24 x 24 / 12 x 12 shape), windowed attention with global blocks at ViT-B's indexes
2, 5, 8, 11, and SAM's prompt encoder and mask decoder, at 256 px with narrow widths.
"""

from __future__ import annotations

import os
import pickle  # only for its error type: nothing here unpickles without torch's allow-list
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from safetensors.torch import load_file
from segment_anything.modeling import (
    ImageEncoderViT,
    MaskDecoder,
    PromptEncoder,
    Sam,
    TwoWayTransformer,
)

__all__ = [
    "SamSpec",
    "SAM_SPECS",
    "MODEL_TYPES",
    "build_sam",
    "input_size",
]


@dataclass(frozen=True)
class SamSpec:
    """Every number that decides a SAM's shape (segment_anything's ``_build_sam`` arguments)."""

    embed_dim: int
    depth: int
    num_heads: int
    global_attn_indexes: tuple[int, ...]
    image_size: int = 1024
    patch_size: int = 16
    window_size: int = 14
    prompt_embed_dim: int = 256
    decoder_mlp_dim: int = 2048
    decoder_heads: int = 8
    iou_head_hidden_dim: int = 256


SAM_SPECS: dict[str, SamSpec] = {
    "vit_b": SamSpec(768, 12, 12, (2, 5, 8, 11)),
    "vit_l": SamSpec(1024, 24, 16, (5, 11, 17, 23)),
    "vit_h": SamSpec(1280, 32, 16, (7, 15, 23, 31)),
    "tiny": SamSpec(
        embed_dim=128,
        depth=12,
        num_heads=4,
        global_attn_indexes=(2, 5, 8, 11),
        image_size=256,
        window_size=8,
        prompt_embed_dim=128,
        decoder_mlp_dim=512,
        decoder_heads=4,
        iou_head_hidden_dim=128,
    ),
}
MODEL_TYPES = tuple(SAM_SPECS)

PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)


def _check_model_type(model_type: str) -> SamSpec:
    if model_type not in SAM_SPECS:
        raise ValueError(f"unknown model_type {model_type!r}; expected one of {list(MODEL_TYPES)}")
    return SAM_SPECS[model_type]


def input_size(model_type: str) -> int:
    """Side of the square image the model takes (1024 for the real SAMs, 256 for tiny)."""
    return _check_model_type(model_type).image_size


def _assemble(spec: SamSpec) -> Sam:
    embedding_size = spec.image_size // spec.patch_size
    return Sam(
        image_encoder=ImageEncoderViT(
            depth=spec.depth,
            embed_dim=spec.embed_dim,
            img_size=spec.image_size,
            mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            num_heads=spec.num_heads,
            patch_size=spec.patch_size,
            qkv_bias=True,
            use_rel_pos=True,
            global_attn_indexes=spec.global_attn_indexes,
            window_size=spec.window_size,
            out_chans=spec.prompt_embed_dim,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=spec.prompt_embed_dim,
            image_embedding_size=(embedding_size, embedding_size),
            input_image_size=(spec.image_size, spec.image_size),
            mask_in_chans=16,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(
                depth=2,
                embedding_dim=spec.prompt_embed_dim,
                mlp_dim=spec.decoder_mlp_dim,
                num_heads=spec.decoder_heads,
            ),
            transformer_dim=spec.prompt_embed_dim,
            iou_head_depth=3,
            iou_head_hidden_dim=spec.iou_head_hidden_dim,
        ),
        pixel_mean=list(PIXEL_MEAN),
        pixel_std=list(PIXEL_STD),
    )


def _describe_state(state: dict[str, torch.Tensor]) -> str:
    """'embed_dim=768, depth=12' read off a state dict, to say what a checkpoint holds."""
    key = "image_encoder.patch_embed.proj.weight"
    if key not in state:
        return "no SAM image encoder"
    depth = len({k.split(".")[2] for k in state if k.startswith("image_encoder.blocks.")})
    embed = state[key].shape[0]
    size = state["image_encoder.pos_embed"].shape[1] * state[key].shape[-1]
    for name, spec in SAM_SPECS.items():
        if (spec.embed_dim, spec.depth, spec.image_size) == (embed, depth, size):
            return f"a {name} model (embed_dim={embed}, depth={depth}, image_size={size})"
    return f"an unknown SAM (embed_dim={embed}, depth={depth}, image_size={size})"


def _read_checkpoint(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A state dict from a ``.safetensors`` file or a ``.pth`` read with ``weights_only=True``
    (never unpickling code)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"SAM checkpoint not found: {path} (give the path of a .pth or .safetensors file)"
        )
    try:  # weights_only: torch's restricted unpickler builds tensors and plain containers only
        if path.suffix == ".safetensors":
            state = load_file(path)
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        lines = [ln for ln in str(exc).splitlines() if "GLOBAL" in ln or "Unsupported" in ln]
        raise ValueError(
            f"SAM checkpoint {path} is not a plain state dict of tensors ({' '.join(lines)}); it "
            "was not loaded, because loading it could run code. Use the official "
            "sam_vit_*.pth files or a file written by torch.save(model.state_dict())"
        ) from None
    except Exception as exc:  # torch and safetensors raise several types for corrupt files
        raise ValueError(f"could not read SAM checkpoint {path}: {exc}") from exc
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]  # checkpoints that also store metadata
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} is not a SAM state dict (expected a mapping of name -> tensor)")
    return state


def build_sam(model_type: str, checkpoint: str | os.PathLike | None = None) -> Sam:
    """A segment_anything ``Sam`` of the given type, in eval mode, on the CPU.

    Args:
        model_type: "vit_b", "vit_l", "vit_h" (the released SAMs) or "tiny" (256 px, ~3.7M).
        checkpoint: path to a state dict (the official ``sam_vit_*.pth`` files or a tiny
            foundation checkpoint). None gives random weights, as segment_anything does.
    Raises:
        ValueError: unknown type, unreadable file, or a checkpoint of another model type.
        FileNotFoundError: the checkpoint path does not exist.
    """
    spec = _check_model_type(model_type)
    state = _read_checkpoint(checkpoint) if checkpoint is not None else None
    sam = _assemble(spec)
    if state is not None:
        expected = sam.state_dict()
        wrong = [k for k, v in expected.items() if k not in state or state[k].shape != v.shape]
        if wrong or len(state) != len(expected):
            raise ValueError(
                f"checkpoint {checkpoint} holds {_describe_state(state)}, but model_type="
                f"{model_type!r} expects {_describe_state(expected)}; "
                f"{len(wrong)} tensors are missing or differ in shape (first: {wrong[:3]})"
            )
        sam.load_state_dict(state)
    return sam.eval()
