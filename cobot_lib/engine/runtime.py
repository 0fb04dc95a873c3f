"""Pieces the trainer and the evaluator share: seeding, precision, activation checkpointing,
batching, the prompted forward as one module, and the image-embedding cache.

Fast paths (issue 5):
- a frozen image encoder runs under ``torch.no_grad`` (its parameters never get gradients and no
  activations are kept for it);
- for ``decoder`` and ``freeze`` the embeddings of each image are computed once and reused
  (``EmbeddingCache``): later epochs run only the prompt encoder and the mask decoder;
- ``enable_activation_checkpointing`` recomputes each encoder block in the backward pass instead
  of storing its activations (``torch.utils.checkpoint``), for ViT-L/H on small GPUs.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from segment_anything.modeling import Sam
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..backbone.foundation import load_foundation_model
from ..backbone.prompting import Prompts, decode_prompts, encode_images
from ..backbone.sam import build_sam, input_size
from ..data import load_dataset
from ..data.base import PROMPTS
from ..data.demo import ensure_demo_data
from ..data.validation import DatasetError, require_valid_dataset
from ..peft import (
    apply_peft,
    differing_keys,
    load_adapter,
    peft_config_of,
    relation_of,
    summarize,
)
from . import distributed as dist
from .config import ConfigError, TrainConfig

__all__ = [
    "seed_everything",
    "precision",
    "autocast",
    "enable_activation_checkpointing",
    "disable_activation_checkpointing",
    "encoder_trains",
    "PromptedSam",
    "item_prompts",
    "batch_prompts",
    "EmbeddingCache",
    "Indexed",
    "build_model",
    "build_datasets",
    "build_val_set",
    "check_dataset",
    "RunDatasetError",
]


class RunDatasetError(ConfigError, DatasetError):
    """The dataset ``data.root`` names has bad files: a problem of the run's configuration
    (caught as ConfigError) and of the data (caught as DatasetError); the message lists them."""


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def precision(amp: str, device: torch.device) -> tuple[torch.dtype | None, bool]:
    """(autocast dtype or None, whether a GradScaler is needed) for runtime.amp on ``device``.

    "auto": bf16 on CUDA devices that support it, else fp16 with a scaler; off on the CPU.
    """
    if device.type != "cuda" or amp == "off":
        if amp in ("bf16", "fp16") and device.type != "cuda":
            raise ValueError(f"runtime.amp={amp!r} needs a CUDA device, the run uses {device}")
        return None, False
    if amp == "auto":
        amp = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if amp == "bf16":
        return torch.bfloat16, False
    if amp == "fp16":
        return torch.float16, True
    raise ValueError(f"runtime.amp={amp!r}; expected auto, bf16, fp16 or off")


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """torch.autocast on CUDA with ``dtype``, or a no-op."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def _checkpointed(sam: Sam, plain_forward, x: torch.Tensor) -> torch.Tensor:
    if not torch.is_grad_enabled():
        return plain_forward(x)
    relation = relation_of(sam)
    if relation is None:
        return checkpoint(plain_forward, x, use_reentrant=False)
    # COBOT's bridge matrices are computed once per encoder pass; the recomputation in backward
    # runs after the pass has ended and must reuse this pass's tensors, not build new ones.
    matrices = relation.pass_matrices()

    def run(x: torch.Tensor) -> torch.Tensor:
        with relation.reusing(matrices):
            return plain_forward(x)

    return checkpoint(run, x, use_reentrant=False)


def enable_activation_checkpointing(sam: Sam) -> None:
    """Recompute every image-encoder block in backward (saves memory, ~30% more compute).

    The blocks keep their class and parameter names (only ``forward`` is wrapped per instance),
    so adapters and checkpoints are unaffected.
    """
    for block in sam.image_encoder.blocks:
        plain = type(block).forward.__get__(block)
        block.forward = lambda x, _f=plain: _checkpointed(sam, _f, x)


def disable_activation_checkpointing(sam: Sam) -> None:
    for block in sam.image_encoder.blocks:
        block.__dict__.pop("forward", None)


def encoder_trains(sam: Sam) -> bool:
    """Whether any image-encoder parameter requires a gradient."""
    return any(p.requires_grad for p in sam.image_encoder.parameters())


class PromptedSam(nn.Module):
    """Prompted SAM as one module, so DDP sees a single forward.

    forward(prompts, images=None, embeddings=None) -> low-resolution logits, one (N_i, 1, S/4,
    S/4) tensor per image; all objects of an image go through the mask decoder in one call.
    """

    def __init__(self, sam: Sam):
        super().__init__()
        self.sam = sam

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        if encoder_trains(self.sam) and torch.is_grad_enabled():
            return encode_images(self.sam, images)
        with torch.no_grad():  # frozen encoder: no gradients, no stored activations
            return encode_images(self.sam, images)

    def forward(
        self,
        prompts: Sequence[Prompts],
        images: torch.Tensor | None = None,
        embeddings: torch.Tensor | None = None,
    ) -> list[torch.Tensor]:
        if embeddings is None:
            if images is None:
                raise ValueError("PromptedSam needs images or embeddings")
            embeddings = self.embed(images)
        if len(prompts) != embeddings.shape[0]:
            raise ValueError(f"{embeddings.shape[0]} images but {len(prompts)} prompt sets")
        return [decode_prompts(self.sam, e, p)[0] for e, p in zip(embeddings, prompts, strict=True)]


def item_prompts(item: dict[str, Any]) -> Prompts:
    """The prompts an item gives the model, by its "prompt" key ("box" when absent)."""
    kind = item.get("prompt", "box")
    if kind not in PROMPTS:
        raise ValueError(f"item {item.get('name')!r} has prompt={kind!r}")
    boxes = torch.as_tensor(item["boxes"]) if "box" in kind else None
    if "point" not in kind:
        return Prompts(boxes=boxes)
    return Prompts(boxes, torch.as_tensor(item["points"]), torch.as_tensor(item["point_labels"]))


def batch_prompts(batch: dict[str, Any], device: torch.device) -> list[Prompts]:
    """``item_prompts`` of every item of a collated batch, on ``device``."""
    keys = [k for k in batch if k != "image"]
    return [
        item_prompts({k: batch[k][j] for k in keys}).to(device) for j in range(len(batch["boxes"]))
    ]


class EmbeddingCache:
    """Image embeddings by dataset index, kept on the CPU, filled on first use.

    Valid only while an index always yields the same image (box jitter is fine, image
    augmentation is not): a checksum per image is kept and a changed image raises.
    """

    def __init__(self) -> None:
        self._store: dict[int, torch.Tensor] = {}
        self._sums: dict[int, float] = {}

    def __len__(self) -> int:
        return len(self._store)

    def get(self, model: PromptedSam, images: torch.Tensor, indices: Sequence[int]) -> torch.Tensor:
        sums = images.detach().double().flatten(1).sum(1).tolist()
        missing = [j for j, i in enumerate(indices) if i not in self._store]
        for j, i in enumerate(indices):
            if i in self._sums and abs(self._sums[i] - sums[j]) > 1e-6 * (1 + abs(sums[j])):
                raise ValueError(
                    f"dataset item {i} returned a different image than before, so its embedding "
                    "cannot be reused (image augmentation?); set runtime.cache_embeddings=false"
                )
        if missing:
            with torch.no_grad():
                new = model.embed(images[missing])
            for j, emb in zip(missing, new, strict=True):
                self._store[indices[j]] = emb.detach().cpu()
                self._sums[indices[j]] = sums[j]
        return torch.stack([self._store[i] for i in indices]).to(images.device)


class Indexed(torch.utils.data.Dataset):
    """A dataset view whose items also carry their index (the cache and sampling key)."""

    def __init__(self, dataset: Any, indices: Sequence[int]):
        self.dataset, self.indices = dataset, list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int) -> dict:
        index = self.indices[position]
        item = dict(self.dataset[index])
        item["index"] = index
        return item


def build_model(config: TrainConfig, adapter: str | Path | None = None) -> tuple[Sam, Any]:
    """The run's SAM with its PEFT variant applied (seeded), or loaded from an adapter directory."""
    seed_everything(config.runtime.seed)
    ckpt = config.model.checkpoint
    if ckpt == "foundation":
        if config.model.type != "tiny":
            raise ConfigError("model.checkpoint=foundation exists only for model.type=tiny")
        sam = load_foundation_model()
    else:
        sam = build_sam(config.model.type, ckpt)
    if adapter is not None:
        load_adapter(sam, adapter)
        if peft_config_of(sam) != config.peft:
            names = ("adapter", "config")
            raise ConfigError(
                f"adapter {adapter} holds another PEFT variant than the config asks for "
                f"({differing_keys(peft_config_of(sam), config.peft, names)})"
            )
        return sam, summarize(sam)
    return sam, apply_peft(sam, config.peft)


def _resolve_root(root: str) -> Path:
    if root.startswith("demo:"):
        return Path(ensure_demo_data(root.split(":", 1)[1]))
    return Path(root)


def _prompt_kwargs(config: TrainConfig) -> dict[str, Any]:
    d = config.data
    return {"prompt": d.prompt, "points": d.points, "negative_points": d.negative_points}


def build_datasets(config: TrainConfig, need_train: bool = True) -> tuple[Any, Any]:
    """(train set, eval set) from ``data`` (eval set None when ``eval.enabled`` is false).

    Every file of the splits used is checked first (``data.validation``: each image and mask
    decoded once, cached by size and modification time), so a bad file stops the run before
    any step with one message listing every bad file.
    """
    if config.data.root is None:
        raise ConfigError("data.root is not set (a dataset folder, or demo:nuclei / demo:mri)")
    root = _resolve_root(config.data.root)
    common = {"format": config.data.format, "image_size": input_size(config.model.type),
              **_prompt_kwargs(config)}  # fmt: skip
    splits = [config.data.train_split] if need_train else []
    splits += [config.data.eval_split] if config.eval.enabled else []
    val = config.data.val_split
    if need_train and val is not None and (root / "splits" / f"{val}.txt").is_file():
        splits.append(val)  # checked with the rest; a missing split is build_val_set's to explain

    def build() -> tuple[Any, Any]:
        try:
            require_valid_dataset(
                root, list(dict.fromkeys(splits)), config.data.format, config.runtime.progress
            )
        except DatasetError as exc:
            raise RunDatasetError(f"data.root={config.data.root!r}: {exc}") from None
        train = None
        if need_train:
            train = load_dataset(
                root, config.data.train_split, train=True, jitter=config.data.jitter,
                seed=config.runtime.seed, max_instances=config.data.max_instances, **common,
            )  # fmt: skip
        evals = None
        if config.eval.enabled:
            evals = load_dataset(root, config.data.eval_split, train=False, **common)
        return train, evals

    return dist.main_first(build)  # rank 0 fills the caches, the others reuse them


def build_val_set(config: TrainConfig) -> Any:
    """The validation set (``data.val_split``; None when it is null), scored like the eval set.

    A dataset without that split is a ConfigError that says how to add one or switch
    validation off (``engine.validation``).
    """
    split = config.data.val_split
    if split is None:
        return None
    if config.data.root is None:
        raise ConfigError("data.root is not set (a dataset folder, or demo:nuclei / demo:mri)")
    root = _resolve_root(config.data.root)
    try:
        return load_dataset(
            root, split, train=False, format=config.data.format,
            image_size=input_size(config.model.type), **_prompt_kwargs(config),
        )  # fmt: skip
    except FileNotFoundError as exc:
        if "split file not found" not in str(exc):
            raise
        raise ConfigError(
            f"data.val_split={split!r}, but the dataset has no such split: {exc}. Training "
            "keeps the adapter that scores best on the validation split; add one (a "
            f"splits/{split}.txt listing held-out image names, e.g. drawn with "
            "cobot_lib.data.split_groups), or set data.val_split=null to train without "
            "validation (the last epoch's adapter is then kept, unchecked against zero-shot)"
        ) from exc


def check_dataset(dataset: Any, what: str) -> None:
    if dataset is None:
        return
    try:
        n = len(dataset)
    except TypeError:
        raise ConfigError(f"the {what} set must be a sized dataset, got {type(dataset)}") from None
    if n == 0:
        raise ConfigError(f"the {what} set is empty (no images with instances); check data.root")
