"""ONNX vs PyTorch on the CPU: export time, file size, agreement and inference time per model.

    .venv/bin/python benchmarks/bench_onnx.py                 # tiny and vit_b, ~6 min on 2 cores
    .venv/bin/python benchmarks/bench_onnx.py --skip-vit-b    # tiny only, ~1 min

Each model is SAM with LoRA+COBOT (random weights, every adapter tensor non-zero), merged for
export by ``cobot_lib.export``. PyTorch runs the same merged model (what one would deploy in
PyTorch); onnxruntime runs the exported graphs; both on one thread. Inputs: scikit-image's
photograph "chelsea" resized to the model's input size, and one box prompt. The image encoder
(with SAM's normalise-and-pad) and the prompt encoder + mask decoder (``SamOnnxModel``, one mask)
are timed separately, alternating PyTorch and onnxruntime in every round; medians are reported.
Agreement: largest |onnxruntime - PyTorch| on the unmerged model's outputs (``check_export``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import onnxruntime as ort
import torch

from cobot_lib import apply_peft, build_sam
from cobot_lib.engine.export import (
    ImageEncoderOnnx,
    MaskDecoderOnnx,
    check_export,
    deployable,
    example_inputs,
    export_onnx,
    session,
)
from cobot_lib.machine import cpu_name

HERE = Path(__file__).resolve().parent


def adapted(model_type: str):
    """SAM with LoRA+COBOT whose adapter tensors all carry non-trivial values."""
    sam = build_sam(model_type)
    apply_peft(sam, "lora", cobot=True)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in sam.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn(p.shape, generator=gen))
    return sam.eval()


def _interleaved(fns: dict, rounds: int) -> dict[str, list[float]]:
    """Seconds per call of each fn (one warm-up call each), alternating the order per round."""
    for fn in fns.values():
        fn()
    names, times = list(fns), {n: [] for n in fns}
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            start = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - start)
    return times


def measure(model_type: str, rounds: int, tmp: Path) -> dict:
    sam = adapted(model_type)
    start = time.perf_counter()
    paths = export_onnx(sam, tmp / model_type)
    export_s = time.perf_counter() - start
    diffs = check_export(sam, paths)
    merged = deployable(sam)
    pixels, prompts = example_inputs(merged)
    encoder, decoder = session(paths["encoder"]), session(paths["decoder"])
    torch_encoder = ImageEncoderOnnx(merged)
    torch_decoder = MaskDecoderOnnx(merged, return_single_mask=True)
    x = torch.from_numpy(pixels)
    with torch.no_grad():
        embedding = torch_encoder(x)
    feed = {"image_embeddings": embedding.numpy(), **prompts}
    torch_prompts = [torch.from_numpy(v) for v in prompts.values()]

    def torch_enc():
        with torch.no_grad():
            torch_encoder(x)

    times = _interleaved(
        {
            "encoder torch": torch_enc,
            "encoder onnxruntime": lambda: encoder.run(None, {"image": pixels}),
            "decoder torch": lambda: torch_decoder(embedding, *torch_prompts),
            "decoder onnxruntime": lambda: decoder.run(None, feed),
        },
        rounds,
    )
    return {
        "model": model_type,
        "rounds": rounds,
        "export_s": export_s,
        "mib": {k: p.stat().st_size / 2**20 for k, p in paths.items()},
        "diffs": diffs,
        "median_ms": {k: 1000 * statistics.median(v) for k, v in times.items()},
        "ratio": {part: _ratio(times, part) for part in ("encoder", "decoder")},
    }


def _ratio(times: dict[str, list[float]], part: str) -> tuple[float, float, float]:
    """Median and quartiles of the per-round ratio onnxruntime / PyTorch (a round's two calls
    run back to back, so load from other processes hits both sides alike)."""
    pairs = zip(times[f"{part} onnxruntime"], times[f"{part} torch"], strict=True)
    ratios = sorted(o / t for o, t in pairs)
    q = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else ratios * 3
    return statistics.median(ratios), q[0], q[-1]


def report(results: list[dict], args: argparse.Namespace, load: tuple[float, float]) -> str:
    lines = [
        "# ONNX vs PyTorch on the CPU (SAM + LoRA+COBOT, merged)",
        "",
        f"CPU: {cpu_name()} ({os.cpu_count()} cores, shared with other jobs while measuring: "
        f"load average {load[0]:.2f} before, {load[1]:.2f} after; the benchmark adds about 1). "
        f"One thread each: torch {torch.__version__} (`torch.set_num_threads(1)`), onnxruntime "
        f"{ort.__version__} (CPUExecutionProvider, intra-op 1, inter-op 1). Exporter: torch's "
        'TorchScript exporter, opset 17. Input: scikit-image\'s photograph "chelsea" '
        "(300 x 451) resized to the model's size, one box. Command: "
        f"`.venv/bin/python benchmarks/bench_onnx.py{' --skip-vit-b' if args.skip_vit_b else ''}`.",
        "",
        "| model | part | PyTorch (ms) | onnxruntime (ms) | onnxruntime / PyTorch "
        "[quartiles] | file (MiB) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in results:
        for part in ("encoder", "decoder"):
            t, o = r["median_ms"][f"{part} torch"], r["median_ms"][f"{part} onnxruntime"]
            ratio, low, high = r["ratio"][part]
            lines.append(
                f"| {r['model']} | {part} | {t:.1f} | {o:.1f} | {ratio:.2f} [{low:.2f}, "
                f"{high:.2f}] | {r['mib'][part]:.1f} |"
            )
    lines += [
        "",
        "Times: medians over the rounds below; the ratio is the median of per-round ratios "
        "(PyTorch and onnxruntime alternate in every round).",
        "",
        "| model | rounds | export (s) | max abs diff: embeddings | low-res logits | masks | "
        "IoU scores | max abs low-res logit |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        d = r["diffs"]
        lines.append(
            f"| {r['model']} | {r['rounds']} | {r['export_s']:.1f} | "
            f"{d['image_embeddings']:.2e} | {d['low_res_masks']:.2e} | {d['masks']:.2e} | "
            f"{d['iou_predictions']:.2e} | {d['low_res_masks_max_abs_logit']:.2f} |"
        )
    lines += [
        "",
        "Differences compare onnxruntime on the merged, exported graphs with PyTorch on the "
        "unmerged model (COBOT bridges and LoRA branches as trained), encoder to decoder.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30, help="rounds for the tiny model")
    parser.add_argument("--vit-b-rounds", type=int, default=3)
    parser.add_argument("--skip-vit-b", action="store_true")
    parser.add_argument("--out", type=Path, default=HERE / "results_onnx.md")
    args = parser.parse_args()
    torch.set_num_threads(1)
    load_before = os.getloadavg()[0]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        runs = [("tiny", args.rounds)] + ([] if args.skip_vit_b else [("vit_b", args.vit_b_rounds)])
        for model_type, rounds in runs:
            results.append(measure(model_type, rounds, Path(tmp)))
            print(results[-1], flush=True)
    text = report(results, args, (load_before, os.getloadavg()[0]))
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
