"""Thread policy and CPU precision, measured on the machine at hand (README's tables).

1. Threads: one tiny-SAM pretraining step (4 images, every parameter trains, Muon + AdamW) with
   1 thread, 2 threads and the policy of ``cobot_lib.machine.choose_threads`` ("auto"), each
   on a quiet machine and beside one busy competing process (a Python busy loop). Each
   configuration runs in a fresh process; rounds alternate the configurations so slow drifts
   of the machine hit all of them alike. The issue's target: the policy's step beside a busy
   process costs at most 1.2x the quiet single-thread step.
2. Precision: a 512x512x512 matmul in fp32 and in bf16, and the pretraining step with Muon's
   Newton-Schulz in fp32, in bf16, and with AdamW alone (1 thread). On a CPU without native
   bf16 the bf16 matmul is emulated; the target there is Muon (fp32) <= 1.3x AdamW. On a CPU
   with native bf16, ``--emulate-avx2`` caps oneDNN and MKL at AVX2 in the measuring processes
   (``ONEDNN_MAX_CPU_ISA=AVX2``, ``MKL_ENABLE_INSTRUCTIONS=AVX2``), which is what an AMD EPYC
   with AVX2 only offers them.

    .venv/bin/python benchmarks/bench_threads.py            # ~6 min on 2 cores
    .venv/bin/python benchmarks/bench_threads.py --rounds 1 --steps 2   # a smoke run (CI)
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from cobot_lib.machine import available_cpus, cpu_name, has_native_bf16, set_threads

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
THREADS = ("1", "2", "auto")
LOADS = ("quiet", "busy")
BUSY_LOOP = "while True: pass"
AVX2_ONLY = {
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "DNNL_MAX_CPU_ISA": "AVX2",
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",
}


def _pretrain_module():
    spec = importlib.util.spec_from_file_location(
        "pretrain_tiny_sam", ROOT / "data_scripts" / "pretrain_tiny_sam.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def step_times_ms(optimizer: str, ns_dtype: str, steps: int, warmup: int = 2) -> list[float]:
    """Wall time of ``steps`` pretraining steps (after ``warmup``), in milliseconds."""
    pretrain = _pretrain_module()
    args = pretrain.parse_args(["--optimizer", optimizer, "--newton-schulz-dtype", ns_dtype])
    torch.manual_seed(0)
    sam = pretrain.build_sam("tiny").train()
    data = pretrain.SyntheticShapes(64, seed=0, train=True, jitter_px=args.jitter)
    optimizers = pretrain.make_optimizers(sam, args)
    times = []
    for step in range(warmup + steps):
        images, boxes, masks = pretrain._batch(data, step * args.batch_size, args.batch_size)
        start = time.perf_counter()
        logits = pretrain.predict_masks(sam, images, boxes)
        loss = torch.stack(
            [pretrain.bce_dice_loss(lg, m[:, None]) for lg, m in zip(logits, masks, strict=True)]
        ).mean()
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        loss.backward()
        for opt in optimizers:
            opt.step()
        if step >= warmup:
            times.append((time.perf_counter() - start) * 1e3)
    return times


def matmul_ms(dtype: torch.dtype, n: int = 512, repeats: int = 5) -> float:
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return (time.perf_counter() - start) / repeats * 1e3


def worker(threads: str, steps: int, optimizer: str, ns_dtype: str) -> dict:
    chosen = set_threads(None if threads == "auto" else int(threads))
    if optimizer == "matmul":
        dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[ns_dtype]
        return {"threads": chosen, "median_ms": matmul_ms(dtype)}
    times = step_times_ms(optimizer, ns_dtype, steps)
    return {"threads": chosen, "median_ms": statistics.median(times)}


def _run_worker(
    threads: str, steps: int, optimizer="muon", ns_dtype="auto", extra_env=None
) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "COBOT_THREADS")}
    env.update(extra_env or {})
    argv = [sys.executable, __file__, "--worker", threads, "--steps", str(steps)]
    argv += ["--optimizer", optimizer, "--ns-dtype", ns_dtype]
    done = subprocess.run(argv, capture_output=True, text=True, env=env, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure_threads(rounds: int, steps: int) -> dict[tuple[str, str], list[dict]]:
    configs = [(t, load) for load in LOADS for t in THREADS]
    results: dict[tuple[str, str], list[dict]] = {c: [] for c in configs}
    for r in range(rounds):
        for threads, load in configs[r % len(configs) :] + configs[: r % len(configs)]:
            busy = None
            if load == "busy":
                busy = subprocess.Popen([sys.executable, "-c", BUSY_LOOP])
                time.sleep(1.0)  # let the competitor take its core before the policy looks
            try:
                results[(threads, load)].append(_run_worker(threads, steps))
            finally:
                if busy is not None:
                    busy.kill()
                    busy.wait()
    return results


def measure_precision(rounds: int, steps: int, extra_env: dict) -> dict:
    """Matmul and pretraining-step medians (1 thread), each in its own process."""
    out = {}
    for key, optimizer, ns in (
        ("matmul_fp32_ms", "matmul", "float32"),
        ("matmul_bf16_ms", "matmul", "bfloat16"),
        ("muon_float32", "muon", "float32"),
        ("muon_bfloat16", "muon", "bfloat16"),
        ("adamw", "adamw", "auto"),
    ):
        runs = [_run_worker("1", steps, optimizer, ns, extra_env) for _ in range(rounds)]
        out[key] = statistics.median(r["median_ms"] for r in runs)
    return out


def report(results, precision: dict, rounds: int, steps: int, emulated: bool) -> str:
    lines = [
        "# Threads and precision (benchmarks/bench_threads.py)",
        "",
        f"CPU: {cpu_name()} ({available_cpus()} usable CPUs; native bf16: "
        f"{'yes' if has_native_bf16() else 'no'}); torch {torch.__version__}; load average at "
        f"the end {os.getloadavg()[0]:.2f}. {rounds} rounds x {steps} steps, medians.",
        "",
    ]
    if results:
        lines += [
            "One pretraining step of the tiny SAM (4 images, every parameter, Muon + AdamW):",
            "",
            "| threads | machine | threads used | step (ms) | / quiet 1-thread step |",
            "|---|---|---|---|---|",
        ]
        base = statistics.median(r["median_ms"] for r in results[("1", "quiet")])
    for (threads, load), runs in results.items():
        ms = statistics.median(r["median_ms"] for r in runs)
        used = sorted({r["threads"] for r in runs})
        lines.append(f"| {threads} | {load} | {used} | {ms:.0f} | {ms / base:.2f} |")
    lines += [
        "",
        "Precision (1 thread"
        + (
            ", oneDNN and MKL capped at AVX2 to stand for a CPU without native bf16"
            if emulated
            else ""
        )
        + "): 512^3 matmul fp32 "
        f"{precision['matmul_fp32_ms']:.1f} ms, bf16 {precision['matmul_bf16_ms']:.1f} ms "
        f"({precision['matmul_bf16_ms'] / precision['matmul_fp32_ms']:.1f}x). Pretraining step:",
        "",
        "| optimiser | Newton-Schulz | step (ms) | / AdamW step |",
        "|---|---|---|---|",
    ]
    adamw = precision["adamw"]
    for name, ns in (("muon", "float32"), ("muon", "bfloat16"), ("adamw", "-")):
        ms = precision[name if name == "adamw" else f"muon_{ns}"]
        lines.append(f"| {name} | {ns} | {ms:.0f} | {ms / adamw:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--out", type=Path, default=HERE / "results_threads.md")
    p.add_argument("--worker", choices=THREADS, help=argparse.SUPPRESS)
    p.add_argument("--optimizer", default="muon", help=argparse.SUPPRESS)
    p.add_argument("--ns-dtype", default="auto", help=argparse.SUPPRESS)
    p.add_argument("--emulate-avx2", action="store_true", help="precision part: AVX2 only")
    p.add_argument("--skip-threads", action="store_true", help="precision part only")
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.steps, args.optimizer, args.ns_dtype)))
        return 0
    results = {} if args.skip_threads else measure_threads(args.rounds, args.steps)
    extra_env = AVX2_ONLY if args.emulate_avx2 else {}
    precision = measure_precision(args.rounds, args.steps, extra_env)
    text = report(results, precision, args.rounds, args.steps, args.emulate_avx2)
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
