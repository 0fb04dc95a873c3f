"""Evaluation: DSC and IoU per instance at the original image size, per-dataset means, seeds.

    result = evaluate_model(sam, dataset)       # one row per instance
    result.summary()                            # {"mdsc": ..., "miou": ..., ...}
    format_mean_std([0.913, 0.909, 0.918])      # "91.3 ± 0.5" (the paper's style, in %)

Each object's prompt (its box, points, or both: the item's "prompt") gives low-resolution
logits that are brought back to the original image exactly as SAM does
(``Sam.postprocess_masks``: upsample to the input frame, crop the padding, resize to the
original size) and thresholded at 0; the ground truth is the original-size mask. The paper
reports DSC for medical data and mIoU (mean IoU over instances) for natural and remote-sensing
data (Sec. 5.1); both are computed for every dataset. Across seeds it reports mean ± std; we use
the sample standard deviation (ddof=1; 0 for a single run).

CLI: ``python -m cobot_lib.evaluate CONFIG.yaml [key=value ...] [--adapter DIR] [--save-masks]``.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from segment_anything.modeling import Sam
from tqdm.auto import tqdm

from ..data import collate_samples
from . import distributed as dist
from .checkpoint import fingerprint, fingerprint_diff
from .config import ConfigError, TrainConfig, load_config
from .metrics import dice_score, iou_score
from .rundir import RUN_MARKER, check_output_dir
from .runtime import (
    EmbeddingCache,
    Indexed,
    PromptedSam,
    autocast,
    batch_prompts,
    build_datasets,
    build_model,
    precision,
)

__all__ = [
    "EvalResult",
    "evaluate_model",
    "mask_file",
    "original_masks",
    "mean_std",
    "format_mean_std",
    "seed_table",
    "main",
]


@dataclass
class EvalResult:
    """Per-instance rows: image name, dataset index, instance number, dsc, iou, area (pixels)."""

    rows: list[dict[str, Any]]

    def summary(self) -> dict[str, float | int]:
        """Mean DSC and mIoU over all instances (fractions in [0, 1]) and the counts."""
        if not self.rows:
            return {"mdsc": math.nan, "miou": math.nan, "n_instances": 0, "n_images": 0}
        return {
            "mdsc": float(np.mean([r["dsc"] for r in self.rows])),
            "miou": float(np.mean([r["iou"] for r in self.rows])),
            "n_instances": len(self.rows),
            "n_images": len({r["index"] for r in self.rows}),
        }


def original_masks(item: dict, dataset: Any = None) -> torch.Tensor:
    """Ground-truth masks (N, H, W) as bool at the item's original size.

    Uses, in order: the item's ``original_masks``; ``dataset.original_masks(index)``; else the
    padded-frame masks cropped to ``input_size`` and resized (nearest) to ``original_size``
    (exact when no resize happened, as for synthetic data).
    """
    if item.get("original_masks") is not None:
        return torch.as_tensor(np.asarray(item["original_masks"])).bool()
    if dataset is not None and hasattr(dataset, "original_masks"):
        return torch.as_tensor(np.asarray(dataset.original_masks(item["index"]))).bool()
    (h, w), (hh, ww) = item["input_size"], item["original_size"]
    masks = torch.as_tensor(item["masks"])[:, :h, :w].float()
    if (h, w) != (hh, ww):
        masks = F.interpolate(masks[:, None], size=(hh, ww), mode="nearest")[:, 0]
    return masks > 0.5


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(name)).strip("_") or "image"


def mask_file(directory: str | Path, name: str) -> Path:
    """Where ``evaluate_model(save_masks=directory)`` writes image ``name``'s masks (``.npz``:
    ``masks`` bool (N, H, W) at the original size, ``dsc``, ``iou``)."""
    return Path(directory) / f"{_safe_name(name)}.npz"


@torch.no_grad()
def evaluate_model(
    sam: Sam,
    dataset: Any,
    *,
    device: str | torch.device | None = None,
    batch_size: int = 1,
    amp: str = "off",
    save_masks: str | Path | None = None,
    progress: bool = False,
    cache: EmbeddingCache | None = None,
) -> EvalResult:
    """Prompted predictions for every instance of ``dataset``, scored at the original size.

    Args:
        sam: a Sam (with or without adapters); put in eval mode for the call.
        dataset: items in the project's format (``cobot_lib.data``); each item's "prompt"
            says which of its boxes / points the model gets (boxes when absent).
        device: defaults to the device of ``sam``'s parameters.
        save_masks: directory for ``NAME.npz`` files (bool masks (N, H, W), dsc, iou); written
            by rank 0 only.
        cache: an EmbeddingCache to reuse image embeddings (frozen encoders).
    Under torchrun each rank scores a shard and the rows are gathered on every rank.
    """
    if len(dataset) == 0:
        raise ValueError("the evaluation dataset is empty (no images with instances)")
    device = torch.device(device) if device is not None else next(sam.parameters()).device
    dtype, _ = precision(amp, device)
    model = PromptedSam(sam)
    was_training = sam.training
    sam.eval()
    indices = list(range(len(dataset)))[dist.rank() :: dist.world_size()]
    loader = torch.utils.data.DataLoader(
        Indexed(dataset, indices), batch_size=batch_size, collate_fn=collate_samples
    )
    rows, kept = [], []
    bar = tqdm(loader, desc="evaluate", disable=not (progress and dist.is_main()), leave=False)
    for batch in bar:
        images = batch["image"].to(device)
        prompts = batch_prompts(batch, device)
        with autocast(device, dtype):
            emb = cache.get(model, images, batch["index"]) if cache is not None else None
            logits = model(prompts, images=None if emb is not None else images, embeddings=emb)
        for j, low in enumerate(logits):
            item = {k: v[j] for k, v in batch.items() if k != "image"}
            gt = original_masks(item, dataset)
            up = sam.postprocess_masks(low.float(), tuple(item["input_size"]), gt.shape[-2:])
            pred = (up[:, 0] > sam.mask_threshold).cpu()
            dsc, iou = dice_score(pred, gt), iou_score(pred, gt)
            for k in range(len(gt)):
                rows.append(
                    {
                        "image": str(item["name"]),
                        "index": int(item["index"]),
                        "instance": k,
                        "dsc": float(dsc[k]),
                        "iou": float(iou[k]),
                        "area": int(gt[k].sum()),
                    }
                )
            if save_masks is not None:
                kept.append((str(item["name"]), np.packbits(pred.numpy(), axis=-1), pred.shape))
    sam.train(was_training)
    rows = sorted(
        (r for part in dist.all_gather_objects(rows) for r in part),
        key=lambda r: (r["index"], r["instance"]),
    )
    result = EvalResult(rows)
    if save_masks is not None:
        everything = [k for part in dist.all_gather_objects(kept) for k in part]
        if dist.is_main():
            _write_masks(Path(save_masks), everything, result)
    return result


def _write_masks(directory: Path, kept: list, result: EvalResult) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    scores: dict[str, list] = {}
    for r in result.rows:
        scores.setdefault(r["image"], []).append((r["dsc"], r["iou"]))
    for name, packed, shape in kept:
        masks = np.unpackbits(packed, axis=-1, count=shape[-1]).astype(bool)
        dsc, iou = np.array(scores.get(name, [])).reshape(-1, 2).T
        np.savez_compressed(mask_file(directory, name), masks=masks, dsc=dsc, iou=iou)


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0.0 for one value)."""
    arr = np.asarray(values, dtype=float)
    if arr.size == 0:
        raise ValueError("mean_std needs at least one value")
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else 0.0


def format_mean_std(values: Sequence[float], scale: float = 100.0, digits: int = 1) -> str:
    """'91.3 ± 0.5': fractions shown in percent with the paper's one decimal."""
    mean, std = mean_std(values)
    return f"{mean * scale:.{digits}f} ± {std * scale:.{digits}f}"


def seed_table(results: dict[str, dict[str, Sequence[float]]], digits: int = 1) -> str:
    """A markdown table: one row per method, one column per dataset, cells 'mean ± std' (%)."""
    columns = list(dict.fromkeys(c for per in results.values() for c in per))
    lines = [
        "| method | " + " | ".join(columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    for method, per in results.items():
        cells = [format_mean_std(per[c], digits=digits) if c in per else "" for c in columns]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def check_adapter_run(adapter: Path, config: TrainConfig) -> None:
    """Refuse an adapter that a run of another configuration trained.

    The trainer records its config beside the adapter (``adapter/run.json``); every key that
    decides the trained weights must agree (the evaluation split may differ). An adapter saved
    by hand (no record) is only checked for its PEFT variant, by ``build_model``.
    """
    record = adapter / RUN_MARKER
    if not record.is_file():
        return
    try:
        saved = json.loads(record.read_text(encoding="utf-8"))
        same = saved["fingerprint"] == fingerprint(config)
        diff = [] if same else fingerprint_diff(saved["config"], config, ("data.eval_split",))
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(
            f"{record} is damaged ({exc!r}); cannot tell which run made {adapter}"
        ) from None
    if diff:
        raise ConfigError(
            f"adapter {adapter} was trained by another configuration than the one given "
            f"({'; '.join(diff)}); evaluate it with the config it was trained with (recorded in "
            f"{record}), or train this configuration first"
        )


def _evaluate_run(config: TrainConfig, adapter: Path | None, save_masks: bool) -> None:
    env = dist.init_distributed(config.runtime.device)
    check_output_dir(config.run_dir)
    adapter = adapter or config.run_dir / "adapter"
    if config.peft.method != "freeze":
        check_adapter_run(adapter, config)
    sam, _ = build_model(config, adapter=adapter if config.peft.method != "freeze" else None)
    _, eval_set = build_datasets(config, need_train=False)
    result = evaluate_model(
        sam.to(env.device),
        eval_set,
        amp=config.runtime.amp,
        progress=config.runtime.progress,
        save_masks=config.run_dir / "masks" if save_masks else None,
    )
    if dist.is_main():
        config.run_dir.mkdir(parents=True, exist_ok=True)
        out = config.run_dir / "eval.json"
        summary = result.summary()
        out.write_text(json.dumps({"summary": summary, "per_instance": result.rows}, indent=1))
        print(json.dumps(summary, indent=2))
        print(f"per-instance table written to {out}")


def main(argv: list[str] | None = None) -> int:
    """CLI: score a run's adapter (zero-shot SAM for method=freeze) on data.eval_split."""

    parser = argparse.ArgumentParser(prog="python -m cobot_lib.evaluate", description=main.__doc__)
    parser.add_argument("config", help="YAML config (the one the run was trained with)")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. data.eval_split=val")
    parser.add_argument("--adapter", help="adapter directory (default: RUN_DIR/adapter)")
    parser.add_argument("--save-masks", action="store_true", help="write RUN_DIR/masks/*.npz")
    args = parser.parse_args(argv)

    def evaluate() -> None:
        config = load_config(args.config, args.overrides)
        _evaluate_run(config, Path(args.adapter) if args.adapter else None, args.save_masks)

    return dist.run_command(evaluate)


if __name__ == "__main__":
    sys.exit(main())
