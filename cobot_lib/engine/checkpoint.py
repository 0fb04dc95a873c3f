"""Training checkpoints: everything needed to continue a run exactly, written atomically.

A checkpoint is one file (``checkpoint.pt``) holding the adapter weights (the tensors
``peft.adapter_state_dict`` selects: what the PEFT variant trains or adds), the optimiser and
grad-scaler state, the RNG states of Python, NumPy and torch (CPU and CUDA), the position in the
run (epoch, step within the epoch, global step), the config and its fingerprint, and the history
logged so far. It is written to a temporary file in the same directory, flushed to disk and then
renamed over the old one (``os.replace`` is atomic on POSIX and Windows), so a crash or a kill
at any moment leaves either the previous checkpoint or the new one, never a torn file.

The fingerprint is a hash of every config value that decides the trained weights (model, PEFT
variant, data, optimiser, seed; not output paths, progress bars, max_steps or the device):
``find_resume`` refuses a checkpoint whose fingerprint differs and names the keys that changed.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..files import atomic_write
from ..peft import adapter_state_dict
from .config import ConfigError, TrainConfig, config_from_dict

__all__ = [
    "CHECKPOINT_NAME",
    "atomic_save",
    "load_checkpoint",
    "capture_rng",
    "restore_rng",
    "CheckpointError",
    "fingerprint",
    "fingerprint_diff",
    "find_resume",
    "training_state",
    "restore_training_state",
]

CHECKPOINT_NAME = "checkpoint.pt"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint that cannot be used (missing, unreadable, or from another configuration)."""


def atomic_save(payload: dict[str, Any], path: str | os.PathLike) -> Path:
    """``torch.save(payload)`` to ``path`` via a temporary file and an atomic rename."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            torch.save({"format_version": FORMAT_VERSION, **payload}, handle)

    return atomic_write(path, write, durable=True)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """The payload of a checkpoint written by ``atomic_save`` (on the CPU)."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise CheckpointError(f"could not read checkpoint {path}: {exc}") from exc
    if not isinstance(payload, dict) or payload.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} is not a cobot_lib training checkpoint (format_version {FORMAT_VERSION})"
        )
    return payload


def capture_rng() -> dict[str, Any]:
    """The state of every random generator the training loop draws from."""
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.random.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Put back the generators saved by ``capture_rng``."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.random.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


#: Keys that decide the result (resuming under different ones is refused).
_RESULT_KEYS = ("domain", "model", "peft", "data", "optim", "runtime.seed")
_IGNORED = ("data.num_workers",)


def _result_items(config: TrainConfig) -> dict[str, Any]:
    flat: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{prefix}{k}.")
        else:
            flat[prefix[:-1]] = list(node) if isinstance(node, tuple) else node

    walk(config.to_dict(), "")
    flat.update(
        {
            "optim.lr": config.lr,
            "optim.weight_decay": config.weight_decay,
            "optim.epochs": config.epochs,
        }
    )
    return {
        k: v for k, v in sorted(flat.items()) if k.startswith(_RESULT_KEYS) and k not in _IGNORED
    }


def fingerprint(config: TrainConfig) -> str:
    """A short hash of everything that decides the trained weights (not paths to outputs,
    progress bars, workers, max_steps or the device)."""
    text = json.dumps(_result_items(config), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def fingerprint_diff(old: dict[str, Any], config: TrainConfig) -> list[str]:
    """'key: old -> new' for each result-deciding key that differs from a saved config dict."""
    new = _result_items(config)
    try:
        before = _result_items(config_from_dict(old, "<checkpoint>"))
    except ConfigError as exc:
        return [f"the checkpoint's config no longer loads: {exc}"]
    keys = sorted(set(new) | set(before))
    return [
        f"{k}: {before.get(k)!r} -> {new.get(k)!r}" for k in keys if before.get(k) != new.get(k)
    ]


def find_resume(config: TrainConfig, world_size: int) -> dict[str, Any] | None:
    """The checkpoint ``runtime.resume`` points at (None to start fresh), checked to belong to
    this configuration and, when it stopped mid-epoch, to the same number of processes."""
    mode = config.runtime.resume
    if mode == "never":
        return None
    path = config.run_dir / CHECKPOINT_NAME if mode == "auto" else Path(mode)
    if mode == "auto" and not path.is_file():
        return None
    payload = load_checkpoint(path)
    if payload["fingerprint"] != fingerprint(config):
        diff = fingerprint_diff(payload["config"], config)
        raise CheckpointError(
            f"cannot resume from {path}: it belongs to another configuration "
            f"({'; '.join(diff) or 'fingerprint differs'}); use another output_dir or "
            "runtime.resume=never to start over"
        )
    if payload["step_in_epoch"] and payload["world_size"] != world_size:
        raise CheckpointError(
            f"{path} stopped mid-epoch with {payload['world_size']} processes; resume it "
            f"with the same number (now {world_size})"
        )
    payload["path"] = path
    return payload


def training_state(
    sam: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    position: tuple[int, int, int],
    world_size: int,
    config: TrainConfig,
    history: list[dict],
) -> dict[str, Any]:
    """The checkpoint payload: adapter tensors, optimiser + scaler, RNG, position, config."""
    epoch, step, global_step = position
    return {
        "adapter": {k: v.detach().cpu().clone() for k, v in adapter_state_dict(sam).items()},
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict(),
        "rng": capture_rng(),
        "epoch": epoch,
        "step_in_epoch": step,
        "global_step": global_step,
        "world_size": world_size,
        "config": config.to_dict(),
        "fingerprint": fingerprint(config),
        "history": history,
    }


def restore_training_state(
    payload: dict[str, Any],
    sam: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None,
    scaler: torch.amp.GradScaler,
) -> None:
    """Load a payload's adapter, optimiser and scaler state (the RNG is restored separately,
    right before training continues)."""
    if set(payload["adapter"]) != set(adapter_state_dict(sam)):
        raise CheckpointError(f"{payload['path']} holds other adapter tensors than this model")
    sam.load_state_dict(payload["adapter"], strict=False)
    if optimizer is not None:
        optimizer.load_state_dict(payload["optimizer"])
    scaler.load_state_dict(payload["scaler"])
