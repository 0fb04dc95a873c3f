"""Data-side figures the README quotes: sample load time of the demo sets, and how well the tiny
foundation model segments them zero-shot (box prompts, no adaptation).

    .venv/bin/python benchmarks/bench_data.py          # ~1 min on 2 cores; writes results_data.md

Load time: one ``dataset[i]`` call (read the image and the label file, split instances, SAM's
resize / normalise / pad, tight boxes), median and 90th percentile over several passes of the
training split after one warm-up pass (the OS file cache is warm, as it is during training).
Zero-shot: ``evaluate_model`` on the test split of each demo set with tight boxes, the
foundation checkpoint as it is (issue 4 asks that it leaves room for adaptation).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from cobot_lib.backbone.foundation import (
    foundation_checkpoint_path,
    load_foundation_model,
    read_card,
)
from cobot_lib.backbone.sam import input_size
from cobot_lib.data import load_dataset
from cobot_lib.data.demo import DEMO_NAMES, ensure_demo_data
from cobot_lib.engine.evaluation import evaluate_model

HERE = Path(__file__).resolve().parent


def load_times_ms(name: str, passes: int = 5) -> list[float]:
    """Milliseconds per ``dataset[i]`` over ``passes`` passes of the training split (1 warm-up)."""
    dataset = load_dataset(ensure_demo_data(name), "train", input_size("tiny"), train=True)
    for i in range(len(dataset)):
        dataset[i]
    times = []
    for epoch in range(passes):
        dataset.set_epoch(epoch)
        for i in range(len(dataset)):
            start = time.perf_counter()
            dataset[i]
            times.append(1e3 * (time.perf_counter() - start))
    return times


def zero_shot(name: str) -> dict:
    """The foundation model on the demo set's test split: mean IoU / DSC over instances."""
    sam = load_foundation_model()
    dataset = load_dataset(ensure_demo_data(name), "test", input_size("tiny"), train=False)
    return evaluate_model(sam, dataset, device="cpu").summary()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=HERE / "results_data.md")
    p.add_argument("--passes", type=int, default=5)
    args = p.parse_args(argv)

    lines = [
        "# Data figures (benchmarks/bench_data.py)",
        "",
        f"Machine: {platform.machine()}, {torch.get_num_threads()} torch threads, "
        f"torch {torch.__version__}, {platform.python_version()}.",
        "",
        "| demo set | sample load, median (ms) | 90th percentile (ms) | samples timed |",
        "|---|---|---|---|",
    ]
    results: dict = {"load_ms": {}, "zero_shot": {}}
    for name in DEMO_NAMES:
        times = load_times_ms(name, args.passes)
        median, p90 = statistics.median(times), statistics.quantiles(times, n=10)[-1]
        results["load_ms"][name] = {"median": median, "p90": p90, "n": len(times)}
        lines.append(f"| {name} | {median:.1f} | {p90:.1f} | {len(times)} |")
    if foundation_checkpoint_path().is_file():
        meta = read_card(foundation_checkpoint_path())
        lines += [
            "",
            "Tiny foundation model (`data_scripts/pretrain_tiny_sam.py`): held-out synthetic "
            f"mIoU {meta.get('held_out_miou', float('nan')):.3f} after {meta.get('steps')} steps "
            f"in {meta.get('seconds')} s (model card). Zero-shot on the demo test splits "
            "(tight boxes):",
            "",
            "| demo set | instances | mIoU | mean DSC |",
            "|---|---|---|---|",
        ]
        for name in DEMO_NAMES:
            summary = zero_shot(name)
            results["zero_shot"][name] = summary
            lines.append(
                f"| {name} | {summary['n_instances']} | {summary['miou']:.3f} | "
                f"{summary['mdsc']:.3f} |"
            )
    text = "\n".join(lines) + "\n"
    args.out.write_text(text)
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
