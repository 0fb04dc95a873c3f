"""Adapter-only checkpoints: ``adapter_config.json`` + ``adapter_model.safetensors`` (as HF peft).

Only what the PEFT variant trains or adds is saved (LoRA / Adaptformer / COBOT tensors, and the
mask decoder when it trains), so a ViT-B LoRA+COBOT adapter is kilobytes (plus the decoder's
~4M if it was trained), not SAM's 375 MB. The JSON records the PeftConfig and the backbone's
shape; loading checks both and names what differs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from segment_anything.modeling import Sam

from ..files import atomic_write
from .config import PeftConfig, differing_keys
from .inject import apply_peft, is_adapter_name, peft_config_of, unload

__all__ = ["save_adapter", "load_adapter", "adapter_state_dict", "backbone_signature"]

CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"
FORMAT_VERSION = 1


def backbone_signature(sam: Sam) -> dict[str, int]:
    """The numbers that must match for an adapter to fit a backbone."""
    enc = sam.image_encoder
    return {
        "embed_dim": enc.patch_embed.proj.out_channels,
        "depth": len(enc.blocks),
        "image_size": enc.img_size,
        "prompt_embed_dim": sam.prompt_encoder.embed_dim,
    }


def _is_adapter_key(key: str, config: PeftConfig) -> bool:
    if config.method == "full":
        return True
    if key.startswith("mask_decoder."):
        return config.trains_decoder
    return is_adapter_name(key) or is_adapter_name(key, cobot=True)


def adapter_state_dict(sam: Sam) -> dict[str, torch.Tensor]:
    """The tensors an adapter checkpoint holds (parameters and buffers such as a fixed S)."""
    config = peft_config_of(sam)
    if config is None:
        raise ValueError("this SAM has no PEFT applied; nothing to save (call apply_peft first)")
    return {k: v for k, v in sam.state_dict().items() if _is_adapter_key(k, config)}


def save_adapter(sam: Sam, directory: str | os.PathLike) -> Path:
    """Write the adapter of ``sam`` to ``directory`` (created); returns the directory."""
    directory = Path(directory)
    state = {k: v.detach().cpu().contiguous() for k, v in adapter_state_dict(sam).items()}
    directory.mkdir(parents=True, exist_ok=True)
    meta = {
        "format_version": FORMAT_VERSION,
        "peft": peft_config_of(sam).to_dict(),
        "backbone": backbone_signature(sam),
    }
    for name, write in (
        (WEIGHTS_NAME, lambda p: save_file(state, str(p))),
        (CONFIG_NAME, lambda p: p.write_text(json.dumps(meta, indent=2))),
    ):
        atomic_write(directory / name, write)
    return directory


def read_adapter_config(directory: str | os.PathLike) -> tuple[PeftConfig, dict]:
    """The PeftConfig and backbone signature stored in an adapter directory."""
    path = Path(directory) / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(f"no adapter config at {path} (expected a save_adapter directory)")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
        return PeftConfig.from_dict(meta["peft"]), meta["backbone"]
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:  # incl. not UTF-8
        raise ValueError(f"{path} is not a valid adapter config: {exc}") from exc


def load_adapter(sam: Sam, directory: str | os.PathLike) -> Sam:
    """Apply the saved PEFT variant to a plain ``sam`` (or check the one it has) and load weights.

    Raises a ValueError naming the file when the backbone, the configuration or the tensors do
    not match; the model is left as it was in that case.
    """
    directory = Path(directory)
    config, backbone = read_adapter_config(directory)
    ours = backbone_signature(sam)
    if backbone != ours:
        raise ValueError(
            f"adapter {directory} was saved for a backbone {backbone}, this SAM is {ours}"
        )
    current = peft_config_of(sam)
    if current is not None and current != config:
        raise ValueError(
            f"adapter {directory} holds another PEFT variant than this SAM already has "
            f"({differing_keys(config, current, ('adapter', 'this SAM'))}); unload it first or "
            "build a fresh SAM"
        )
    weights_path = directory / WEIGHTS_NAME
    if not weights_path.is_file():
        raise FileNotFoundError(f"adapter weights missing: {weights_path}")
    try:
        state = load_file(str(weights_path))
    except Exception as exc:
        raise ValueError(f"could not read adapter weights {weights_path}: {exc}") from exc

    applied_here = current is None
    if applied_here:
        apply_peft(sam, config)
    expected = adapter_state_dict(sam)
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        if applied_here:
            unload(sam)
        raise ValueError(
            f"adapter weights {weights_path} do not fit the configuration {config}: "
            f"missing {missing[:3]}, unexpected {unexpected[:3]}, wrong shape {wrong[:3]}"
        )
    sam.load_state_dict(state, strict=False)
    return sam
