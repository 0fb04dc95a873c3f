"""Training checkpoints: everything needed to continue a run exactly, in a format that holds data
only, written atomically.

A checkpoint is one safetensors file (``checkpoint.safetensors``). Its tensors are the adapter
weights (what ``peft.adapter_state_dict`` selects: what the PEFT variant trains or adds), the
optimiser's state tensors and torch's RNG states (CPU and CUDA); its header's metadata holds one
JSON document with everything else: the position in the run (epoch, step within the epoch,
global step), the optimiser's hyper-parameters and scalars, the grad scaler, the Python and NumPy
RNG states, the config and its fingerprint, the history logged so far and the divergence guard's
state. Reading it parses JSON and copies tensor bytes: no file a user hands over can run code
(a pickle, as ``torch.save`` writes, could). ``checkpoint.pt`` files of earlier versions were
pickles; they are refused by name and never opened.

The file is written to a temporary file beside it, flushed to disk and renamed over the old one
(``files.atomic_write``), so a crash or a kill at any moment leaves the previous checkpoint or
the new one, never a torn file.

The fingerprint is a hash of every config value that decides the trained weights (model, PEFT
variant, data, optimiser, seed; not output paths, progress bars, max_steps, the device or the
divergence guard): ``find_resume`` refuses a checkpoint whose fingerprint differs and names the
keys that changed.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..files import atomic_write
from ..peft import adapter_state_dict
from .config import ConfigError, TrainConfig, config_from_dict

__all__ = [
    "CHECKPOINT_NAME",
    "LEGACY_CHECKPOINT_NAME",
    "atomic_save",
    "load_checkpoint",
    "capture_rng",
    "restore_rng",
    "CheckpointError",
    "fingerprint",
    "fingerprint_diff",
    "result_items",
    "find_resume",
    "training_state",
    "restore_training_state",
]

CHECKPOINT_NAME = "checkpoint.safetensors"
LEGACY_CHECKPOINT_NAME = "checkpoint.pt"  # pickles of earlier versions: refused, never read
FORMAT_VERSION = 2
_META_KEY = "cobot_lib.checkpoint"
#: what every checkpoint's JSON holds (besides "format_version")
_REQUIRED = {
    "epoch": int,
    "step_in_epoch": int,
    "global_step": int,
    "world_size": int,
    "config": dict,
    "fingerprint": str,
    "history": list,
    "optimizer": dict,
    "scaler": dict,
    "rng": dict,
    "adapter_keys": list,
}


class CheckpointError(ValueError):
    """A checkpoint that cannot be used (missing, unreadable, or from another configuration)."""


# ---- writing ---------------------------------------------------------------------------------


def _split_optimizer(state: Mapping[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """An optimiser state_dict as (tensors "optimizer/<param>/<name>", JSON-able rest)."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, per_param in state["state"].items():
        for name, value in per_param.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer/{index}/{name}"] = value
            elif value is None or isinstance(value, bool | int | float | str):
                scalars.setdefault(str(index), {})[name] = value
            else:
                raise TypeError(f"optimizer state {index}.{name} is a {type(value).__name__}")
    groups = [{k: list(v) if isinstance(v, tuple) else v for k, v in g.items()}
              for g in state["param_groups"]]  # fmt: skip
    return tensors, {"param_groups": groups, "scalars": scalars}


def atomic_save(payload: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Write a ``training_state`` payload to ``path`` (safetensors + JSON) atomically."""
    payload = dict(payload)
    adapter = payload.pop("adapter")
    rng = dict(payload.pop("rng"))
    tensors = {f"adapter/{k}": v for k, v in adapter.items()}
    optim_tensors, optim_meta = _split_optimizer(payload.pop("optimizer"))
    tensors.update(optim_tensors)
    tensors["rng/torch"] = rng.pop("torch")
    for i, state in enumerate(rng.pop("cuda", [])):
        tensors[f"rng/cuda/{i}"] = state
    kind, keys, pos, has_gauss, cached = rng.pop("numpy")
    meta = {
        "format_version": FORMAT_VERSION,
        **payload,
        "optimizer": optim_meta,
        "rng": {
            "python": [rng["python"][0], list(rng["python"][1]), rng["python"][2]],
            "numpy": [kind, np.asarray(keys).tolist(), int(pos), int(has_gauss), float(cached)],
            "cuda_devices": sum(k.startswith("rng/cuda/") for k in tensors),
        },
        "adapter_keys": sorted(adapter),
    }
    text = json.dumps(meta, default=_plain, sort_keys=True)
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}

    def write(tmp: Path) -> None:
        save_file(tensors, str(tmp), metadata={_META_KEY: text})

    return atomic_write(path, write, durable=True)


def _plain(value: Any) -> Any:
    """JSON for the few non-JSON values a config or history holds (tuples are lists already)."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} {value!r} cannot be stored in a checkpoint")


# ---- reading ---------------------------------------------------------------------------------


def _refuse_legacy(path: Path) -> None:
    if path.name == LEGACY_CHECKPOINT_NAME or path.suffix in (".pt", ".pth", ".pkl", ".pickle"):
        raise CheckpointError(
            f"{path} is a pickle-format checkpoint (from an earlier version or another tool); it "
            "is not opened, because a pickle can run code. Training checkpoints are "
            f"{CHECKPOINT_NAME} files now: start the run over (runtime.resume=never) or give "
            "runtime.resume the path of a checkpoint.safetensors"
        )


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """The payload of a checkpoint written by ``atomic_save`` (tensors on the CPU).

    ``path`` is the file or the run folder holding it. Raises CheckpointError naming the file
    when it is missing, is not a safetensors file of this project, or lacks an entry.
    """
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    _refuse_legacy(path)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            header = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(
            f"could not read checkpoint {path} (not a {CHECKPOINT_NAME} file, or damaged): {exc}"
        ) from exc
    if _META_KEY not in header:
        raise CheckpointError(
            f"{path} is a safetensors file but not a cobot_lib training checkpoint"
        )
    try:
        meta = json.loads(header[_META_KEY])
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"checkpoint {path} has a damaged header: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("format_version") != FORMAT_VERSION:
        version = meta.get("format_version") if isinstance(meta, dict) else None
        raise CheckpointError(
            f"{path} has checkpoint format {version!r}; this version reads {FORMAT_VERSION}"
        )
    missing = [k for k in _REQUIRED if k not in meta]
    wrong = [k for k, kind in _REQUIRED.items() if k in meta and not isinstance(meta[k], kind)]
    lost = [k for k in meta.get("adapter_keys", []) if f"adapter/{k}" not in tensors]
    if "rng/torch" not in tensors:
        lost.append("rng/torch")
    if missing or wrong or lost:
        raise CheckpointError(
            f"checkpoint {path} is incomplete: missing entries {missing + lost}, entries of the "
            f"wrong type {wrong}; it cannot be resumed (start over with runtime.resume=never)"
        )
    try:
        return _payload(meta, tensors, path)
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise CheckpointError(f"checkpoint {path} holds a malformed entry: {exc!r}") from exc


def _payload(meta: dict[str, Any], tensors: dict[str, torch.Tensor], path: Path) -> dict[str, Any]:
    """The ``training_state`` form of a checkpoint's JSON and tensors."""
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer/"):
            _, index, name = key.split("/", 2)
            state.setdefault(int(index), {})[name] = value
    for index, values in meta["optimizer"]["scalars"].items():
        state.setdefault(int(index), {}).update(values)
    groups = [{k: tuple(v) if k == "betas" else v for k, v in g.items()}
              for g in meta["optimizer"]["param_groups"]]  # fmt: skip
    python, numpy_state = meta["rng"]["python"], meta["rng"]["numpy"]
    rng = {
        "python": (int(python[0]), tuple(int(x) for x in python[1]), python[2]),
        "numpy": (str(numpy_state[0]), np.asarray(numpy_state[1], dtype=np.uint32),
                  int(numpy_state[2]), int(numpy_state[3]), float(numpy_state[4])),
        "torch": tensors["rng/torch"],
    }  # fmt: skip
    cuda = [tensors[f"rng/cuda/{i}"] for i in range(int(meta["rng"].get("cuda_devices", 0)))]
    if cuda:
        rng["cuda"] = cuda
    return {
        **{k: v for k, v in meta.items() if k not in ("optimizer", "rng", "adapter_keys")},
        "adapter": {k: tensors[f"adapter/{k}"] for k in meta["adapter_keys"]},
        "optimizer": {"state": state, "param_groups": groups},
        "rng": rng,
        "path": path,
    }


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


# ---- which configuration a checkpoint belongs to ---------------------------------------------

#: Keys that decide the result (resuming under different ones is refused).
_RESULT_KEYS = ("domain", "model", "peft", "data", "optim", "runtime.seed")
_IGNORED = ("data.num_workers",)
#: Keys left out at these values, so runs made before the keys existed keep their fingerprint.
_OMITTED_AT = {"optim.schedule": "constant", "optim.decay_steps": None}


def result_items(config: TrainConfig) -> dict[str, Any]:
    """{dotted key: value} of every config value that decides the trained weights."""
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
        k: v
        for k, v in sorted(flat.items())
        if k.startswith(_RESULT_KEYS)
        and k not in _IGNORED
        and not (k in _OMITTED_AT and v == _OMITTED_AT[k])
    }


def fingerprint(config: TrainConfig) -> str:
    """A short hash of everything that decides the trained weights (not paths to outputs,
    progress bars, workers, max_steps, the device or the divergence guard)."""
    text = json.dumps(result_items(config), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def fingerprint_diff(
    old: dict[str, Any], config: TrainConfig, ignore: tuple[str, ...] = ()
) -> list[str]:
    """'key: old -> new' for each result-deciding key (but ``ignore``) that differs from a saved
    config dict."""
    new = result_items(config)
    try:
        before = result_items(config_from_dict(old, "<checkpoint>"))
    except ConfigError as exc:
        return [f"the saved config no longer loads: {exc}"]
    keys = sorted((set(new) | set(before)) - set(ignore))
    return [
        f"{k}: {before.get(k)!r} -> {new.get(k)!r}" for k in keys if before.get(k) != new.get(k)
    ]


def find_resume(config: TrainConfig, world_size: int) -> dict[str, Any] | None:
    """The checkpoint ``runtime.resume`` points at (None to start fresh), checked to belong to
    this configuration and, when it stopped mid-epoch, to the same number of processes.

    Under ``auto`` a pickle-format ``checkpoint.pt`` in the run folder is refused by name,
    without being opened.
    """
    mode = config.runtime.resume
    if mode == "never":
        return None
    if mode == "auto":
        legacy = config.run_dir / LEGACY_CHECKPOINT_NAME
        if legacy.exists():
            _refuse_legacy(legacy)
        path = config.run_dir / CHECKPOINT_NAME
        if not path.is_file():
            return None
    else:
        path = Path(mode)
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
    return payload


def training_state(
    sam: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    position: tuple[int, int, int],
    world_size: int,
    config: TrainConfig,
    history: list[dict],
    guard: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The checkpoint payload: adapter tensors, optimiser + scaler, RNG, position, config, and
    the divergence guard's state (``guard.DivergenceGuard.state_dict``)."""
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
        "guard": guard or {},
    }


def restore_training_state(
    payload: dict[str, Any],
    sam: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None,
    scaler: torch.amp.GradScaler,
) -> None:
    """Load a payload's adapter, optimiser and scaler state (the RNG is restored separately,
    right before training continues)."""
    where = payload.get("path", "the checkpoint")
    expected = adapter_state_dict(sam)
    if set(payload["adapter"]) != set(expected):
        missing = sorted(set(expected) - set(payload["adapter"]))
        extra = sorted(set(payload["adapter"]) - set(expected))
        raise CheckpointError(
            f"{where} holds other adapter tensors than this model: missing {missing[:3]}, "
            f"unexpected {extra[:3]}"
        )
    wrong = [k for k, v in expected.items() if payload["adapter"][k].shape != v.shape]
    if wrong:
        raise CheckpointError(f"{where} holds adapter tensors of other shapes: {wrong[:3]}")
    sam.load_state_dict(payload["adapter"], strict=False)
    try:
        if optimizer is not None:
            optimizer.load_state_dict(payload["optimizer"])
        scaler.load_state_dict(payload["scaler"])
    except (KeyError, ValueError, RuntimeError) as exc:
        raise CheckpointError(
            f"{where}: the optimiser state does not fit this model: {exc}"
        ) from exc
