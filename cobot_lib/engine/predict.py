"""Segment new images (no ground truth): prompted or automatic, with a plain, adapted or merged
SAM. The CLI is ``python -m cobot_lib.predict``; notebooks call ``load_model`` and
``predict_folder`` (``data.inputs.plan_inputs`` checks a folder and prompt file alone).

    python -m cobot_lib.predict IMAGES/ --out preds/ --prompts prompts.json \\
        --model-type tiny --checkpoint foundation --adapter runs/demo/nuclei_lora/adapter
    python -m cobot_lib.predict IMAGES/ --out preds/          # no prompts: automatic masks

Inputs: a folder (or one file) of images (PNG, JPEG, TIFF; 8/16-bit, grey or colour) and/or
NIfTI volumes (.nii, .nii.gz; axial slices, RAS+). Prompts: ``data.prompt_file`` (JSON or CSV,
boxes and/or positive/negative points per object, COCO boxes accepted). Without prompts,
segment_anything's ``SamAutomaticMaskGenerator`` proposes masks from a grid of points.

Model: ``--checkpoint`` (``foundation``: the tiny foundation SAM; a SAM ``.pth``, e.g. a merged
model saved with ``torch.save(sam.state_dict())``; ``random``: random weights, for tests) plus
an optional ``--adapter`` directory (``peft.save_adapter``, e.g. RUN_DIR/adapter), folded into
the weights first with ``--merge`` (same masks up to float rounding, no adapter cost).

Outputs in ``--out``: ``masks/STEM.png`` (or ``.tif``) label images at the original size
(object k of an image has value k, or its ``label`` from the prompt file; where objects
overlap the later one wins; automatic masks largest first), ``masks/STEM.nii.gz`` for a volume
(the input's voxel grid and affine, unprompted slices 0), ``overlays/STEM.png`` (volumes:
``STEM_zK.png`` per predicted slice), ``predictions.json`` (COCO results: every object's full
mask as RLE, its box, area and score, i.e. SAM's predicted IoU) and ``predict.json`` (the
settings). Masks are computed exactly as ``engine.evaluation`` computes them (same
preprocessing, same single-mask decoder call per image and prompt kind,
``Sam.postprocess_masks``, threshold 0), so a prompt file written by
``data.prompt_file.prompts_from_dataset`` reproduces ``evaluate``'s masks.

Everything is checked before the model runs: the inputs and their sizes (headers only), the
prompt file, that every image has prompts and every prompt names an input, that prompts lie
inside their image, that output names do not collide, that the adapter fits the backbone. Then
the files stream through: one batch of images in memory at a time, every result written and
dropped at once (volumes: one volume at a time), so memory stays flat however long the folder.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from segment_anything import SamAutomaticMaskGenerator
from segment_anything.modeling import Sam

from ..backbone.foundation import load_foundation_model
from ..backbone.prompting import Prompts, decode_prompts, encode_images
from ..backbone.sam import MODEL_TYPES, SAM_SPECS, build_sam
from ..data.inputs import InputFile, Plan, iter_slices, plan_inputs
from ..data.predictions import PredictionWriter
from ..data.prompt_file import ObjectPrompt
from ..data.transforms import (
    INTENSITY_MODES,
    map_boxes,
    map_points,
    prepare_image,
    to_rgb,
    to_uint8_range,
)
from ..peft import load_adapter, merge, read_adapter_config
from .runtime import seed_everything

__all__ = ["PredictOptions", "load_model", "predict_folder", "main"]


@dataclass
class PredictOptions:
    """How predictions are computed and written (the CLI's flags)."""

    batch_size: int = 1  # images per image-encoder pass (prompted mode)
    mask_format: str = "png"  # png | tif for 2-D masks (volumes: .nii.gz)
    overlays: bool = True
    coco: bool = True
    intensity: str = "percentile"  # how 16-bit / float images become 0..255 (data.transforms)
    modality: str = "mr"  # volumes: mr (percentiles) | ct (window)
    window: tuple[float, float] = (40.0, 400.0)  # CT level, width (HU)
    points_per_side: int = 16  # automatic mode: grid of points_per_side^2 prompts
    pred_iou_thresh: float = 0.88  # automatic mode: SAM's defaults
    stability_score_thresh: float = 0.95
    progress: bool = True

    def check(self) -> PredictOptions:
        if self.batch_size < 1:
            raise ValueError(f"batch size must be >= 1, got {self.batch_size}")
        if self.mask_format not in ("png", "tif"):
            raise ValueError(f"mask format must be png or tif, got {self.mask_format!r}")
        if self.intensity not in INTENSITY_MODES:
            raise ValueError(f"intensity must be one of {INTENSITY_MODES}, got {self.intensity!r}")
        if self.modality not in ("mr", "ct"):
            raise ValueError(f"modality must be mr or ct, got {self.modality!r}")
        if self.points_per_side < 1:
            raise ValueError(f"points per side must be >= 1, got {self.points_per_side}")
        return self


# ---- the model ------------------------------------------------------------------------------
def _spec_signature(model_type: str) -> dict[str, int]:
    """``peft.backbone_signature`` of a model type, read off its spec (nothing is built)."""
    spec = SAM_SPECS[model_type]
    return {"embed_dim": spec.embed_dim, "depth": spec.depth, "image_size": spec.image_size,
            "prompt_embed_dim": spec.prompt_embed_dim}  # fmt: skip


def load_model(
    model_type: str = "tiny",
    checkpoint: str | None = "foundation",
    adapter: str | Path | None = None,
    merge_adapter: bool = False,
    device: str | torch.device = "cpu",
) -> Sam:
    """A SAM for prediction, in eval mode on ``device``; the adapter is checked against the
    backbone before any weights are read."""
    if model_type not in MODEL_TYPES:
        raise ValueError(f"unknown model type {model_type!r}; expected one of {list(MODEL_TYPES)}")
    if adapter is not None:
        _, saved = read_adapter_config(adapter)
        ours = _spec_signature(model_type)
        if saved != ours:
            fits = [t for t in MODEL_TYPES if _spec_signature(t) == saved]
            hint = f"; it fits --model-type {fits[0]}" if fits else ""
            raise ValueError(
                f"adapter {adapter} was trained on a backbone {saved}, but --model-type "
                f"{model_type} is {ours}{hint}"
            )
    elif merge_adapter:
        raise ValueError("--merge folds an adapter into the weights; give --adapter too")
    if checkpoint == "foundation":
        if model_type != "tiny":
            raise ValueError("checkpoint 'foundation' is the tiny model; use --model-type tiny")
        sam = load_foundation_model()
    elif checkpoint in (None, "random"):
        seed_everything(0)
        sam = build_sam(model_type, None)
    else:
        sam = build_sam(model_type, checkpoint)
    if adapter is not None:
        load_adapter(sam, adapter)
        if merge_adapter:
            merge(sam)
    return sam.to(device).eval()


# ---- prediction ----------------------------------------------------------------------------
@dataclass
class _Unit:
    """One 2-D image to predict: its file, slice, pixels and prompts (None: automatic)."""

    file: InputFile
    slice: int | None
    image: np.ndarray
    objects: list[ObjectPrompt] | None


def _units(plan: Plan, options: PredictOptions) -> Iterator[_Unit]:
    for f in plan.inputs:
        wanted = None if plan.prompts is None else plan.prompts[f.path]
        for k, image in iter_slices(f, options.modality, options.window):
            if wanted is None:
                yield _Unit(f, k, image, None)
            elif k in wanted:
                yield _Unit(f, k, image, wanted[k])


def _prompt_groups(
    objects: list[ObjectPrompt], original: tuple[int, int], input_size: tuple[int, int]
) -> list[tuple[list[int], Prompts]]:
    """Objects grouped by (box or not, number of points), each group as model-frame Prompts:
    objects of one group share a decoder call, none is padded (padding would change masks)."""
    groups: dict[tuple[bool, int], list[int]] = defaultdict(list)
    for i, obj in enumerate(objects):
        groups[(obj.box is not None, len(obj.points))].append(i)
    out = []
    for (has_box, n_points), index in groups.items():
        boxes = points = labels = None
        if has_box:
            raw = np.array([objects[i].box for i in index], dtype=np.float64)
            boxes = torch.from_numpy(map_boxes(raw, original, input_size))
        if n_points:
            raw = np.array([objects[i].points for i in index], dtype=np.float64)
            points = torch.from_numpy(map_points(raw, original, input_size))
            labels = torch.tensor([objects[i].labels for i in index], dtype=torch.int64)
        out.append((index, Prompts(boxes, points, labels)))
    return out


@torch.no_grad()
def _predict_prompted(
    sam: Sam, units: list[_Unit], options: PredictOptions
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(masks (N, H, W) bool, scores (N,)) per unit, one image-encoder pass for the batch."""
    device = next(sam.parameters()).device
    size = sam.image_encoder.img_size
    prepared = [prepare_image(u.image, size, options.intensity) for u in units]
    embeddings = encode_images(sam, torch.stack([p for p, _ in prepared]).to(device))
    out = []
    for unit, (_, input_size), embedding in zip(units, prepared, embeddings, strict=True):
        original = tuple(unit.image.shape[:2])
        masks = torch.zeros((len(unit.objects), *original), dtype=torch.bool)
        scores = torch.zeros(len(unit.objects))
        for index, prompts in _prompt_groups(unit.objects, original, input_size):
            low, iou = decode_prompts(sam, embedding, prompts.to(device))
            up = sam.postprocess_masks(low.float(), tuple(input_size), original)
            masks[index] = (up[:, 0] > sam.mask_threshold).cpu()
            scores[index] = iou[:, 0].float().cpu()
        out.append((masks.numpy(), scores.numpy()))
    return out


def _as_uint8_rgb(image: np.ndarray, intensity: str) -> np.ndarray:
    """The (H, W, 3) uint8 image SamAutomaticMaskGenerator takes, scaled as in prompted mode."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    scaled = to_uint8_range(image if image.ndim == 2 else image[:, :, :3], intensity)
    return to_rgb(np.round(scaled).astype(np.uint8))


def _predict_automatic(
    generator: SamAutomaticMaskGenerator, unit: _Unit, options: PredictOptions
) -> tuple[np.ndarray, np.ndarray]:
    records = generator.generate(_as_uint8_rgb(unit.image, options.intensity))
    records.sort(key=lambda r: -r["area"])  # largest first: small objects paint last
    h, w = unit.image.shape[:2]
    masks = np.array([r["segmentation"] for r in records], dtype=bool).reshape(-1, h, w)
    return masks, np.array([r["predicted_iou"] for r in records], dtype=np.float32)


def _check_out(out: Path, source: Path, overwrite: bool) -> None:
    folder = source if source.is_dir() else source.parent
    if out.resolve() == folder.resolve():
        raise ValueError(f"--out {out} is the input folder; choose another folder")
    taken = [n for n in ("masks", "overlays", "predictions.json", "predict.json")
             if (out / n).exists()]  # fmt: skip
    if taken and not overwrite:
        raise FileExistsError(
            f"{out} already holds predictions ({', '.join(taken)}); choose another --out or "
            "pass --overwrite"
        )


def predict_folder(
    sam: Sam,
    source: str | Path,
    out: str | Path,
    prompts: str | Path | None = None,
    options: PredictOptions | None = None,
    overwrite: bool = False,
    plan: Plan | None = None,
) -> dict[str, Any]:
    """Predict every input of ``source`` into ``out`` (see the module docstring); returns a
    summary {"files", "images", "objects", "seconds", "out", "mode"} (also in predict.json)."""
    options = (options or PredictOptions()).check()
    source, out = Path(source), Path(out)
    plan = plan or plan_inputs(source, prompts)
    _check_out(out, source, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    was_training = sam.training
    sam.eval()
    writer = PredictionWriter(out, options.mask_format, options.overlays, options.coco,
                              total=len(plan.inputs), progress=options.progress)  # fmt: skip
    units = 0
    try:
        if plan.prompts is None:
            generator = SamAutomaticMaskGenerator(
                sam, points_per_side=options.points_per_side,
                pred_iou_thresh=options.pred_iou_thresh,
                stability_score_thresh=options.stability_score_thresh,
            )  # fmt: skip
            for unit in _units(plan, options):
                masks, scores = _predict_automatic(generator, unit, options)
                writer.add(unit.file, unit.slice, unit.image, masks, scores)
                units += 1
        else:
            stream = _units(plan, options)
            while batch := list(itertools.islice(stream, options.batch_size)):
                for u, (masks, scores) in zip(batch, _predict_prompted(sam, batch, options),
                                              strict=True):  # fmt: skip
                    writer.add(u.file, u.slice, u.image, masks, scores, u.objects)
                units += len(batch)
    finally:
        writer.close()
        sam.train(was_training)
    summary = {
        "mode": "automatic" if plan.prompts is None else "prompted",
        "files": len(plan.inputs),
        "images": units,
        "objects": writer.objects,
        "seconds": time.perf_counter() - start,
        "out": str(out),
        "options": asdict(options),
    }
    (out / "predict.json").write_text(json.dumps(summary, indent=1))
    return summary


def main(argv: list[str] | None = None) -> int:
    """CLI: predict masks for a folder of images or NIfTI volumes (see the module docstring)."""
    p = argparse.ArgumentParser(prog="python -m cobot_lib.predict", description=main.__doc__)
    p.add_argument("input", help="a folder of images / NIfTI volumes, or one file")
    p.add_argument("--out", required=True, help="output folder (masks/, overlays/, JSON)")
    p.add_argument("--prompts", help="JSON or CSV prompt file (none: automatic masks)")
    p.add_argument("--model-type", default="tiny", choices=MODEL_TYPES)
    p.add_argument(
        "--checkpoint",
        default="foundation",
        help="foundation | random | path to a SAM .pth (default: foundation)",
    )
    p.add_argument("--adapter", help="adapter directory (peft.save_adapter), e.g. RUN_DIR/adapter")
    p.add_argument("--merge", action="store_true", help="fold the adapter into the weights")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--batch-size", type=int, default=1, help="images per encoder pass")
    p.add_argument("--mask-format", default="png", choices=("png", "tif"))
    p.add_argument("--no-overlays", action="store_true")
    p.add_argument("--no-coco", action="store_true", help="skip predictions.json")
    p.add_argument("--intensity", default="percentile", choices=INTENSITY_MODES)
    p.add_argument("--modality", default="mr", choices=("mr", "ct"), help="volumes only")
    p.add_argument(
        "--window",
        type=float,
        nargs=2,
        default=(40.0, 400.0),
        metavar=("LEVEL", "WIDTH"),
        help="CT window (volumes, --modality ct)",
    )
    p.add_argument("--points-per-side", type=int, default=16, help="automatic mode")
    p.add_argument("--pred-iou-thresh", type=float, default=0.88, help="automatic mode")
    p.add_argument("--stability-score-thresh", type=float, default=0.95, help="automatic mode")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--overwrite", action="store_true", help="replace predictions in --out")
    args = p.parse_args(argv)  # fmt: skip
    try:
        if args.threads is not None:
            if args.threads < 1:
                raise ValueError(f"--threads must be >= 1, got {args.threads}")
            torch.set_num_threads(args.threads)
        options = PredictOptions(
            batch_size=args.batch_size, mask_format=args.mask_format,
            overlays=not args.no_overlays, coco=not args.no_coco, intensity=args.intensity,
            modality=args.modality, window=tuple(args.window),
            points_per_side=args.points_per_side, pred_iou_thresh=args.pred_iou_thresh,
            stability_score_thresh=args.stability_score_thresh, progress=not args.no_progress,
        ).check()  # fmt: skip
        plan = plan_inputs(args.input, args.prompts)
        _check_out(Path(args.out), Path(args.input), args.overwrite)
        device = torch.device(args.device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"--device {args.device}, but CUDA is not available here")
        sam = load_model(args.model_type, args.checkpoint, args.adapter, args.merge, device)
        summary = predict_folder(sam, args.input, args.out, options=options,
                                 overwrite=args.overwrite, plan=plan)  # fmt: skip
    except (ValueError, FileNotFoundError, FileExistsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(
        f"{summary['mode']}: {summary['objects']} masks on {summary['images']} images from "
        f"{summary['files']} files in {summary['seconds']:.1f} s -> {summary['out']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
