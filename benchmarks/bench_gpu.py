"""GPU benchmark: the paper's backbones at 1024 px, every method with and without COBOT.

For each backbone (vit_b, and vit_l / vit_h while memory allows) and precision (fp32, and
autocast in bf16 and fp16), one training step of the trainer itself (``Trainer._step``: forward,
BCE + Dice, backward, Adam; one image with four box prompts, random weights: speed does not
depend on them) is timed for Lightweight (decoder), LoRA, LoRA+COBOT, Adaptformer,
Adaptformer+COBOT; the table gives the step time, images per second and the peak GPU memory.
Inference compares a plain SAM with a merged LoRA+COBOT model (the merge must cost nothing).

    python benchmarks/bench_gpu.py                       # on a GPU: ~5 min for vit_b/l/h
    python benchmarks/bench_gpu.py --smoke               # seconds, on the CPU (CI)

Writes results_gpu.md (the README's table) and results_gpu.json: every measured row, plus the
step-time section the sweep's GPU-hour estimate reads (``cobot_lib.experiments.estimate``:
``amp``, ``train_step_seconds`` {backbone: {method: s}} and ``eval_image_seconds`` {backbone: s},
from the preferred precision: bf16 where measured, else the first one).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from cobot_lib.backbone.prompting import predict_masks
from cobot_lib.backbone.sam import build_sam
from cobot_lib.engine.runtime import autocast
from cobot_lib.machine import cpu_name
from cobot_lib.peft import apply_peft, merge

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_cpu import make_trainer, one_batch  # noqa: E402  (a sibling script)

METHODS = ("decoder", "lora", "lora+cobot", "adaptformer", "adaptformer+cobot")
PRECISIONS = {"fp32": "off", "bf16": "bf16", "fp16": "fp16"}
AMP_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device: torch.device, steps: int, warmup: int) -> float:
    """Median seconds of ``fn`` over ``steps`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(steps):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def train_step(model: str, precision: str, method: str, device: torch.device, steps: int,
               warmup: int, tmp: Path) -> dict:  # fmt: skip
    size = 256 if model == "tiny" else 1024
    batch = one_batch(size=size)
    trainer = make_trainer(method, tmp, model=model, device=str(device), amp=PRECISIONS[precision])
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    seconds = _timed(lambda: trainer._step(batch, 0, 0, 0), device, steps, warmup)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return {"step_s": seconds, "images_per_s": 1 / seconds, "peak_gib": peak}


def inference(model: str, precision: str, device: torch.device, steps: int, warmup: int) -> dict:
    """No-grad box-prompted forward: plain SAM vs a merged LoRA+COBOT SAM."""
    size = 256 if model == "tiny" else 1024
    batch = one_batch(size=size)
    images, boxes = batch["image"].to(device), [b.to(device) for b in batch["boxes"]]
    plain = build_sam(model).to(device).eval()
    adapted = build_sam(model)
    apply_peft(adapted, "lora", cobot=True)
    merged = merge(adapted).to(device).eval()
    dtype = AMP_DTYPES[precision]
    out = {}
    for name, sam in (("plain", plain), ("merged lora+cobot", merged)):

        def forward(sam=sam):
            with torch.no_grad(), autocast(device, dtype):
                predict_masks(sam, images, boxes)

        out[name] = _timed(forward, device, steps, warmup)
    return out


def run(models, precisions, device, steps, warmup) -> dict:
    results: dict = {"device": _device_name(device), "steps": steps, "rows": []}
    with tempfile.TemporaryDirectory() as tmp:
        for model in models:
            for precision in precisions:
                for method in METHODS:
                    try:
                        row = train_step(model, precision, method, device, steps, warmup,
                                         Path(tmp))  # fmt: skip
                    except torch.OutOfMemoryError:
                        row = {"step_s": None, "images_per_s": None, "peak_gib": None}
                        torch.cuda.empty_cache()
                    results["rows"].append(
                        {"model": model, "precision": precision, "method": method, **row}
                    )
                    print(json.dumps(results["rows"][-1]), flush=True)
                infer = inference(model, precision, device, steps, warmup)
                results["rows"].append(
                    {"model": model, "precision": precision, "method": "inference", **infer}
                )
    return results


def step_time_section(results: dict) -> dict:
    """The estimate's step-time keys from the measured rows (one precision)."""
    measured = [r["precision"] for r in results["rows"]]
    amp = "bf16" if "bf16" in measured else measured[0]
    train: dict[str, dict[str, float]] = {}
    evaluation: dict[str, float] = {}
    for r in results["rows"]:
        if r["precision"] != amp:
            continue
        if r["method"] == "inference":
            evaluation[r["model"]] = r["plain"]
        elif r["step_s"] is not None:
            train.setdefault(r["model"], {})[r["method"]] = r["step_s"]
    return {"amp": amp, "train_step_seconds": train, "eval_image_seconds": evaluation}


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU: {cpu_name()}, {torch.get_num_threads()} threads"


def markdown(results: dict) -> str:
    lines = [
        "# GPU benchmark (benchmarks/bench_gpu.py)",
        "",
        f"Device: {results['device']}; torch {torch.__version__}; median of "
        f"{results['steps']} steps; one 1024 px image with 4 boxes per step (tiny: 256 px).",
        "",
        "| backbone | precision | method | step (ms) | images/s | peak memory (GiB) |",
        "|---|---|---|---|---|---|",
    ]
    for r in results["rows"]:
        if r["method"] == "inference":
            continue
        step = "OOM" if r["step_s"] is None else f"{r['step_s'] * 1e3:.1f}"
        ips = "-" if r["images_per_s"] is None else f"{r['images_per_s']:.1f}"
        peak = "-" if r["peak_gib"] is None else f"{r['peak_gib']:.2f}"
        lines.append(
            f"| {r['model']} | {r['precision']} | {r['method']} | {step} | {ips} | {peak} |"
        )
    lines += ["", "| backbone | precision | plain SAM (ms) | merged LoRA+COBOT (ms) | ratio |",
              "|---|---|---|---|---|"]  # fmt: skip
    for r in results["rows"]:
        if r["method"] == "inference":
            plain, merged = r["plain"], r["merged lora+cobot"]
            lines.append(
                f"| {r['model']} | {r['precision']} | {plain * 1e3:.1f} | {merged * 1e3:.1f} | "
                f"{merged / plain:.3f} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["vit_b", "vit_l", "vit_h"])
    p.add_argument("--precisions", nargs="+", default=list(PRECISIONS), choices=PRECISIONS)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--smoke", action="store_true", help="tiny model, CPU, fp32, 1 step")
    p.add_argument("--out", type=Path, default=HERE / "results_gpu")
    args = p.parse_args(argv)
    if args.smoke:
        device, models, precisions, steps, warmup = torch.device("cpu"), ["tiny"], ["fp32"], 1, 0
    else:
        if not torch.cuda.is_available():
            p.error("no CUDA device: run on a GPU, or use --smoke for the CPU check")
        device, models, precisions = torch.device("cuda"), args.models, args.precisions
        steps, warmup = args.steps, args.warmup
    results = run(models, precisions, device, steps, warmup)
    results.update(step_time_section(results))
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    text = markdown(results)
    args.out.with_suffix(".md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
