"""CPU benchmark of the training engine: step time and memory of every method with and without
COBOT, merged vs unmerged inference, and the embedding cache of the ``decoder`` baseline.

    .venv/bin/python benchmarks/bench_cpu.py   # ~13 min on 2 cores (vit_b: ~10; --skip-vit-b)

Timings alternate between methods inside every round (round r visits the methods in a rotated
order) and report medians, and every ratio is the median of per-round paired ratios, so that
load from other processes on a shared machine hits both sides of a ratio alike. The step is the
trainer's own ``Trainer._step`` (forward, BCE + Dice, backward, Adam) on one 256 px image with
four box prompts; "forward" is the box-prompted inference pass (``predict_masks``, no grad).
Memory: bytes saved for backward (exact, from autograd's saved-tensor hooks) and the growth of
the process's peak RSS over one step (a fresh process per method).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from cobot_lib.backbone.prompting import predict_masks
from cobot_lib.backbone.sam import build_sam
from cobot_lib.data import collate_samples
from cobot_lib.data.synthetic import SyntheticShapes
from cobot_lib.engine.config import load_config
from cobot_lib.engine.trainer import Trainer
from cobot_lib.peft import apply_peft, merge

HERE = Path(__file__).resolve().parent
METHODS = {
    "decoder": ("decoder", False),
    "lora": ("lora", False),
    "lora+cobot": ("lora", True),
    "adaptformer": ("adaptformer", False),
    "adaptformer+cobot": ("adaptformer", True),
    "full": ("full", False),
}


def one_batch(size: int = 256, instances: int = 4) -> dict:
    data = SyntheticShapes(8, image_size=size, seed=5, train=True, max_instances=instances)
    item = next(data[i] for i in range(8) if len(data[i]["boxes"]) == instances)
    batch = collate_samples([item])
    batch["index"] = [0]
    return batch


def make_trainer(
    method: str, tmp: Path, model: str = "tiny", epochs: int = 1, train_set=None, **runtime
) -> Trainer:
    name, cobot = METHODS[method]
    config = load_config(
        {
            "name": method.replace("+", "_"),
            "output_dir": str(tmp / "{name}"),
            "model": {"type": model, "checkpoint": None},
            "peft": {"method": name, "cobot": cobot},
            "optim": {"epochs": epochs, "lr": 1e-4},
            "runtime": {
                "progress": False,
                "resume": "never",
                "cache_embeddings": "false",
                **runtime,
            },
        }
    )
    return Trainer(config, train_set=train_set or [None], eval_set=None)


def _clock(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved(fns: dict, rounds: int, warmup: int = 2) -> dict[str, list[float]]:
    """Seconds per call of each fn, one call of each per round, in a rotated order."""
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            times[name].append(_clock(fns[name]))
    return times


def _ratio(times: dict, top: str, bottom: str) -> tuple[float, float, float]:
    """Median and quartiles of the per-round ratio top / bottom."""
    ratios = sorted(a / b for a, b in zip(times[top], times[bottom], strict=True))
    q = statistics.quantiles(ratios, n=4)
    return statistics.median(ratios), q[0], q[2]


def _saved_bytes(trainer: Trainer, batch: dict) -> int:
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor):
        storage = t.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        trainer._step(batch, 0, 0, 0)
    return sum(seen.values())


def memory_of(method: str, tmp: Path) -> dict:
    """Run in a fresh process: peak-RSS growth over two steps, and bytes saved for backward."""
    trainer, batch = make_trainer(method, tmp), one_batch()
    with open("/proc/self/statm") as handle:
        rss_before = int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    for _ in range(2):
        trainer._step(batch, 0, 0, 0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"peak_rss_growth_mib": max(peak - rss_before, 0) / 2**20,
            "saved_for_backward_mib": _saved_bytes(trainer, batch) / 2**20}  # fmt: skip


def step_times(tmp: Path, rounds: int) -> dict[str, list[float]]:
    batch = one_batch()
    trainers = {m: make_trainer(m, tmp) for m in METHODS}
    fns = {m: (lambda t=t: t._step(batch, 0, 0, 0)) for m, t in trainers.items()}
    lora = trainers["lora"].sam
    images, boxes = batch["image"], batch["boxes"]
    fns["forward (lora, no grad)"] = lambda: infer(lora, images, boxes)
    return interleaved(fns, rounds)


def vit_b_step_times(tmp: Path, rounds: int) -> dict[str, list[float]]:
    """The LoRA step and the no-grad forward on vit_b at 1024 px (the paper's setting), where
    large matmuls rather than per-op overheads set the cost: a few interleaved rounds."""
    batch = one_batch(size=1024)
    trainer = make_trainer("lora", tmp, model="vit_b")
    images, boxes = batch["image"], batch["boxes"]
    fns = {
        "lora": lambda: trainer._step(batch, 0, 0, 0),
        "forward (lora, no grad)": lambda: infer(trainer.sam, images, boxes),
    }
    return interleaved(fns, rounds, warmup=1)


@torch.no_grad()
def infer(sam, images, boxes):
    return predict_masks(sam, images, boxes)


def inference_times(rounds: int) -> tuple[dict[str, list[float]], float]:
    """Plain SAM vs LoRA / LoRA+COBOT / Adaptformer+COBOT, unmerged and merged."""
    batch = one_batch()
    images, boxes = batch["image"], batch["boxes"]
    models = {"plain SAM": build_sam("tiny").eval()}
    worst = 0.0
    for label, method, cobot in (("lora", "lora", False), ("lora+cobot", "lora", True),
                                 ("adaptformer+cobot", "adaptformer", True)):  # fmt: skip
        for merged in (False, True):
            torch.manual_seed(0)
            sam = build_sam("tiny")
            apply_peft(sam, method, cobot=cobot)
            with torch.no_grad():  # non-zero up-projections so merging changes the weights
                for name, p in sam.named_parameters():
                    if "lora_b" in name or "adapter_up" in name:
                        p.normal_(0, 0.02)
            sam.eval()
            reference = infer(sam, images, boxes)
            if merged:
                merge(sam)
                got = infer(sam, images, boxes)
                diffs = [(a - b).abs().max().item() for a, b in zip(got, reference, strict=True)]
                worst = max(worst, *diffs)
            models[f"{label} {'merged' if merged else 'unmerged'}"] = sam
    fns = {k: (lambda s=s: infer(s, images, boxes)) for k, s in models.items()}
    return interleaved(fns, rounds), worst


def cache_epochs(tmp: Path, model: str, images: int) -> dict[str, float]:
    """Seconds of a decoder-baseline epoch without the cache and with a warm cache."""
    size = 1024 if model != "tiny" else 256
    data = SyntheticShapes(images, image_size=size, seed=2, train=True, max_instances=4)
    items = [data[i] for i in range(images)]  # in memory: time the model, not the renderer
    out = {}
    for cache, epochs in (("false", 1), ("true", 2)):
        trainer = make_trainer("decoder", tmp, model, epochs, items, cache_embeddings=cache)
        trainer.fit()
        out[cache] = [r["seconds"] for r in trainer.history if r["event"] == "epoch"][-1]
    return {"uncached": out["false"], "cached": out["true"]}


def _fmt(ms: float) -> str:
    return f"{ms * 1000:.1f}"


def report(steps, memory, infer, worst, caches, vit_b_steps, args) -> str:
    med = {k: statistics.median(v) for k, v in {**steps, **infer}.items()}
    lines = [
        "# CPU benchmark (tiny SAM, 256 px, one image with 4 box prompts)",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__}, {torch.get_num_threads()} "
        f"thread(s); {args.rounds} interleaved rounds; load average before/after "
        f"{args.load_before} / {os.getloadavg()[0]:.2f} (the benchmark itself adds about 1). "
        "Command: "
        "`.venv/bin/python benchmarks/bench_cpu.py`.",
        "",
        "## Training step per method",
        "",
        "| method | step (ms, median) | saved for backward (MiB) | peak RSS growth (MiB) |",
        "|---|---:|---:|---:|",
    ]
    for m in METHODS:
        mem = memory.get(m, {})
        lines.append(
            f"| {m} | {_fmt(med[m])} | {mem.get('saved_for_backward_mib', float('nan')):.1f} "
            f"| {mem.get('peak_rss_growth_mib', float('nan')):.1f} |"
        )
    lines += ["", "## Inference (box-prompted forward, no grad)", "",
              "| model | forward (ms, median) |", "|---|---:|"]  # fmt: skip
    lines += [f"| {k} | {_fmt(v)} |" for k, v in med.items() if k in infer]
    lines += ["", f"Largest |merged - unmerged| logit difference: {worst:.2e}.", ""]
    rows = [
        ("COBOT overhead: lora+cobot / lora step", _ratio(steps, "lora+cobot", "lora"), "<= 1.03"),
        ("COBOT overhead: adaptformer+cobot / adaptformer step",
         _ratio(steps, "adaptformer+cobot", "adaptformer"), "<= 1.03"),
        ("merged LoRA / plain SAM forward", _ratio(infer, "lora merged", "plain SAM"), "<= 1.02"),
        ("merged LoRA+COBOT / plain SAM forward",
         _ratio(infer, "lora+cobot merged", "plain SAM"), "<= 1.02"),
        ("unmerged LoRA+COBOT / plain SAM forward",
         _ratio(infer, "lora+cobot unmerged", "plain SAM"), "(for reference)"),
        ("LoRA step / LoRA forward (no grad)", _ratio(steps, "lora", "forward (lora, no grad)"),
         "<= 2.3"),
    ]  # fmt: skip
    if vit_b_steps:
        rows.append((
            f"LoRA step / LoRA forward (no grad), vit_b 1024 px, {len(vit_b_steps['lora'])} rounds "
            f"(step {statistics.median(vit_b_steps['lora']):.1f} s)",
            _ratio(vit_b_steps, "lora", "forward (lora, no grad)"), "<= 2.3"))  # fmt: skip
    lines += ["## Ratios (median of per-round ratios [quartiles])", "",
              "| ratio | measured | target |", "|---|---:|---:|"]  # fmt: skip
    lines += [f"| {n} | {r[0]:.3f} [{r[1]:.3f}, {r[2]:.3f}] | {t} |" for n, r, t in rows]
    lines += ["", "## Embedding cache (`decoder` baseline, seconds per epoch)", "",
              "| model | images | uncached | cached | speed-up | target |",
              "|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    for model, (n, c) in caches.items():
        lines.append(
            f"| {model} | {n} | {c['uncached']:.2f} | {c['cached']:.2f} | "
            f"{c['uncached'] / c['cached']:.1f}x | >= 10x |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: robust)")
    parser.add_argument("--cache-images", type=int, default=3, help="images per cache epoch")
    parser.add_argument("--skip-vit-b", action="store_true", help="no vit_b measurements")
    parser.add_argument("--vit-b-rounds", type=int, default=5, help="vit_b step/forward rounds")
    parser.add_argument("--out", default=str(HERE / "results_cpu.md"))
    parser.add_argument("--memory-of", help=argparse.SUPPRESS)
    parser.add_argument("--tmp", default="/tmp/cobot_bench")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tmp = Path(args.tmp)
    if args.memory_of:
        print(json.dumps(memory_of(args.memory_of, tmp)))
        return
    args.load_before = f"{os.getloadavg()[0]:.2f}"
    memory = {}
    for m in METHODS:
        cmd = [sys.executable, __file__, "--memory-of", m, "--threads", str(args.threads)]
        done = subprocess.run(cmd, capture_output=True, text=True, check=True)
        memory[m] = json.loads(done.stdout.strip().splitlines()[-1])
        print(m, memory[m], flush=True)
    steps = step_times(tmp, args.rounds)
    print("steps done", flush=True)
    infer, worst = inference_times(args.rounds)
    print("inference done", flush=True)
    caches = {"tiny (256 px)": (8, cache_epochs(tmp, "tiny", 8))}
    if not args.skip_vit_b:
        caches["vit_b (1024 px)"] = (
            args.cache_images,
            cache_epochs(tmp, "vit_b", args.cache_images),
        )
    vit_b_steps = {} if args.skip_vit_b else vit_b_step_times(tmp, args.vit_b_rounds)
    text = report(steps, memory, infer, worst, caches, vit_b_steps, args)
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
