"""The harness of notebook 04 (one fine-tuning run), so that its cells show the experiment.

    run = check_finetune(globals())               # cobot_lib.notebook.params
    cfg, train_set, eval_set, val_set = prepare(run)  # the TrainConfig and datasets, checked
    trainer = Trainer(cfg, train_set=train_set, eval_set=eval_set, val_set=val_set)
    zero, plain_weights = zero_shot(run, eval_set, trainer.env.device)
    ...
    write_metrics(run, final, zero, trainer, history, seconds)

What is here is bookkeeping: the run's configuration from the notebook's parameters, the plain
foundation model's scores (the paper's *Freeze* row), SHA-256 fingerprints of weights (to show
that training leaves every frozen weight bitwise unchanged), the overlays' pictures and the
metrics JSON that ``python -m cobot_lib.sweep`` collects.
"""

from __future__ import annotations

import hashlib
import json
import platform
import shutil
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from segment_anything.modeling import Sam

from ..backbone.foundation import load_foundation_model
from ..backbone.prompting import decode_prompts, encode_images, upsample_logits
from ..backbone.sam import PIXEL_MEAN, PIXEL_STD, build_sam
from ..data.predictions import read_coco_masks
from ..engine.config import ConfigError, TrainConfig, config_from_dict
from ..engine.evaluation import EvalResult, evaluate_model, mask_file
from ..engine.runtime import build_val_set, check_dataset, item_prompts, seed_everything
from ..engine.trainer import Trainer, build_datasets
from ..engine.validation import validation_fields
from ..experiments.point import notebook_config
from ..files import atomic_write
from .params import FinetuneRun
from .viz import overlay

__all__ = [
    "copy_split_images",
    "metrics_record",
    "missing_weights",
    "overlay_rows",
    "prepare",
    "same_masks",
    "tensors_without_gradient",
    "weight_fingerprints",
    "write_metrics",
    "zero_shot",
]


def prepare(run: FinetuneRun) -> tuple[TrainConfig, Any, Any, Any]:
    """The run's TrainConfig and its (training, evaluation, validation) sets; an unusable
    dataset stops here, before any model is built, with a ConfigError naming the ``dataset``
    or ``val_split`` parameter. The validation set is None without training or validation."""
    p = run.params
    cfg = config_from_dict(notebook_config(p, p["output_dir"]), "the parameters of 04_finetune")
    trains = p["method"] != "freeze" and p["epochs"] > 0
    try:
        train_set, eval_set = build_datasets(cfg, need_train=trains)
        check_dataset(train_set, "training")
        check_dataset(eval_set, "evaluation")
    except (FileNotFoundError, ConfigError) as exc:
        raise ConfigError(
            f"dataset={p['dataset']!r} gives no usable samples "
            f"({cfg.data.train_split!r} and {cfg.data.eval_split!r} splits with at least one "
            f"instance are needed): {exc}"
        ) from exc
    try:
        val_set = build_val_set(cfg) if trains else None
        check_dataset(val_set, "validation")
    except (FileNotFoundError, ConfigError) as exc:
        raise ConfigError(f"val_split={p['val_split']!r} (data.val_split): {exc}") from exc
    return cfg, train_set, eval_set, val_set


def weight_fingerprints(model: torch.nn.Module, trainable: bool | None = None) -> dict[str, str]:
    """SHA-256 of every parameter's bytes (only trainable or only frozen ones, or all)."""
    return {
        name: hashlib.sha256(p.detach().cpu().contiguous().numpy().tobytes()).hexdigest()
        for name, p in model.named_parameters()
        if trainable is None or p.requires_grad == trainable
    }


def zero_shot(run: FinetuneRun, eval_set: Any, device: torch.device) -> tuple[EvalResult, dict]:
    """The plain starting model's scores on ``eval_set`` (the paper's *Freeze* row) and the
    fingerprints of its weights. A random-init model is drawn from the seed, as Trainer does."""
    p = run.params
    seed_everything(p["seed"])
    if p["checkpoint"] == "foundation":
        plain = load_foundation_model()
    else:
        plain = build_sam(p["model_type"], None if p["checkpoint"] == "random" else p["checkpoint"])
    result = evaluate_model(plain.to(device), eval_set, amp=p["amp"])
    return result, weight_fingerprints(plain)


def missing_weights(plain: dict[str, str], adapted: Sam) -> Counter:
    """Weights of the plain model that the adapted model does not hold bit for bit (by hash)."""
    return Counter(plain.values()) - Counter(weight_fingerprints(adapted).values())


def tensors_without_gradient(sam: Sam) -> list[str]:
    """Trainable tensors whose gradient is None or exactly zero after the last step."""
    return sorted(
        name
        for name, p in sam.named_parameters()
        if p.requires_grad and (p.grad is None or not p.grad.any())
    )


def overlay_rows(
    sam: Sam, eval_set: Any, indices: Sequence[int], dsc: dict[int, tuple[float, float]]
) -> list[list[tuple[str, np.ndarray]]]:
    """Rows of (title, RGB picture) for ``viz.image_grid``: image, ground truth, prediction.

    Drawn in the model's input frame (resized, padding cropped), one colour per instance.
    ``dsc[i]`` = (mean DSC after training, zero-shot) of image i, for the titles.
    """
    sam.eval()
    device = next(sam.parameters()).device
    mean = np.array(PIXEL_MEAN)[:, None, None]
    std = np.array(PIXEL_STD)[:, None, None]
    rows = []
    for i in indices:
        item = eval_set[i]
        h, w = item["input_size"]
        image = (item["image"].numpy() * std + mean)[:, :h, :w].transpose(1, 2, 0) / 255.0
        with torch.no_grad():  # the item's prompts (box, points or both), as evaluate gives them
            embedding = encode_images(sam, item["image"][None].to(device))[0]
            low, _ = decode_prompts(sam, embedding, item_prompts(item).to(device))
            logits = upsample_logits(low, sam.image_encoder.img_size)
        pred = (logits[:, 0, :h, :w] > sam.mask_threshold).cpu().numpy()
        truth = item["masks"][:, :h, :w].numpy() > 0.5
        after, before = dsc[i]
        title = f"prediction: DSC {100 * after:.1f}% (zero-shot {100 * before:.1f}%)"
        rows.append(
            [
                (str(item["name"]), image),
                ("ground truth", overlay(image, truth)),
                (title, overlay(image, pred)),
            ]
        )
    return rows


def metrics_record(
    run: FinetuneRun,
    final: dict,
    zero: dict,
    trainer: Trainer,
    steps: Sequence[dict],
    seconds: float,
    train_seconds: float,
) -> dict[str, Any]:
    """One flat record: the parameters (rank resolved), the scores as fractions, the time,
    the trainable parameter counts and model selection's ``VALIDATION_FIELDS`` (what a sweep
    tabulates)."""
    device = trainer.env.device
    return {
        **{k: v for k, v in run.params.items() if k not in ("output_dir", "metrics_path")},
        "rank": run.rank,
        "miou": final["miou"],
        "mdsc": final["mdsc"],
        "n_instances": final["n_instances"],
        "n_images": final["n_images"],
        "zero_shot_miou": zero["miou"],
        "zero_shot_mdsc": zero["mdsc"],
        "seconds": seconds,
        "train_seconds": train_seconds,
        "steps": len(steps),
        "final_loss": steps[-1]["loss"] if steps else None,
        "trainable_params": trainer.summary.total,
        "image_encoder_params": trainer.summary.image_encoder,
        "device_name": (
            torch.cuda.get_device_name(device)
            if device.type == "cuda"
            else platform.processor() or platform.machine()
        ),
        "torch_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        **validation_fields(trainer.validation),  # all None for a run without validation
    }


def write_metrics(path: Path, record: dict[str, Any]) -> None:
    """The record as JSON, written atomically (a run stopped earlier leaves no file)."""
    atomic_write(Path(path), lambda tmp: tmp.write_text(json.dumps(record, indent=1)))


def copy_split_images(dataset: Any, folder: Path) -> Path:
    """The dataset's image files copied into ``folder`` (made empty first), as a user's folder
    of new images would be: what ``predict_folder`` reads, without masks or split files."""
    folder = Path(folder)
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for path in dataset.image_paths:
        shutil.copy2(path, folder / Path(path).name)
    return folder


def same_masks(predictions: Path, masks_dir: Path, dataset: Any) -> tuple[bool, int]:
    """Whether predict's masks (its COCO RLE ``predictions.json``) equal evaluate's saved masks
    (``masks_dir/NAME.npz``, ``evaluate_model(save_masks=...)``) for every image of ``dataset``,
    bit for bit and in the same order; and the number of instances compared."""
    predicted = read_coco_masks(predictions)
    same, count = True, 0
    for name, path in zip(dataset.names, dataset.image_paths, strict=True):
        oracle = np.load(mask_file(masks_dir, name))["masks"]
        got = predicted.get(Path(path).name, np.zeros((0, *oracle.shape[1:]), bool))
        same = same and got.shape == oracle.shape and bool(np.array_equal(got, oracle))
        count += len(oracle)
    return same, count
