"""How long the dataset check before training takes (``cobot_lib.data.validation``).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_validation.py   # ~1 min; writes
                                                                          # results_validation.md

* Cold: ``validate_dataset(root, use_cache=False)``: every image and mask of the nuclei demo
  set decoded and checked; the median of ``--rounds`` passes after one warm-up pass (the OS file
  cache is warm, as it is for a dataset that was just copied or written), scaled to seconds per
  1,000 images.
* Cached: the same check again with the cache filled (what a second training run adds):
  median over ``--rounds`` passes, in seconds for the whole set, and what ``build_datasets``
  adds to a run (``require_valid_dataset`` on the train and test splits).
* The same for a synthetic set of larger images (1024 x 1024 RGB PNG, SAM's input size), since
  decoding time grows with the pixels: the nuclei tiles are small (128 x 128 grey).

The cache is a temporary folder ($COBOT_CACHE), so the user's cache is not touched.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from cobot_lib.data.demo import ensure_demo_data
from cobot_lib.data.layout import write_image, write_mask, write_splits
from cobot_lib.data.validation import require_valid_dataset, validate_dataset

HERE = Path(__file__).resolve().parent


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        return next(ln.split(":", 1)[1].strip() for ln in out.splitlines() if "Model name" in ln)
    except (OSError, subprocess.CalledProcessError, StopIteration):
        return platform.processor() or platform.machine()


def timed(work, rounds: int) -> list[float]:
    work()  # warm-up: OS file cache, imports
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return times


def large_set(root: Path, n: int, side: int = 1024) -> Path:
    """``n`` random RGB images of side x side with 20 square instances each."""
    rng = np.random.default_rng(0)
    names = [f"im{k:03d}" for k in range(n)]
    for name in names:
        write_image(
            root / "images" / f"{name}.png", rng.integers(0, 256, (side, side, 3), np.uint8)
        )
        label = np.zeros((side, side), np.uint16)
        for v in range(1, 21):
            y, x = rng.integers(0, side - 64, 2)
            label[y : y + 48, x : x + 48] = v
        write_mask(root / "masks" / name, label)
    write_splits(root, {"train": names})
    return root


def measure(root: Path, rounds: int) -> dict:
    """Median seconds of a full check with 1 thread and with the default threads, and of a
    cached check."""
    one = timed(lambda: validate_dataset(root, use_cache=False, workers=1), rounds)
    cold = timed(lambda: validate_dataset(root, use_cache=False), rounds)
    report = validate_dataset(root)  # fills the cache
    warm = timed(lambda: validate_dataset(root), rounds)
    images = report.files // 2
    return {"images": images, "files": report.files, "one": statistics.median(one),
            "cold": statistics.median(cold), "warm": statistics.median(warm),
            "warm_max": max(warm)}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=HERE / "results_validation.md")
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--large", type=int, default=40, help="images in the 1024 px set")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-validation-") as tmp:
        os.environ["COBOT_CACHE"] = str(Path(tmp) / "cache")
        nuclei = ensure_demo_data("nuclei")
        rows = {"nuclei demo set (128 x 128 grey PNG)": measure(nuclei, args.rounds)}
        require_valid_dataset(nuclei, ["train", "test"])
        run = timed(lambda: require_valid_dataset(nuclei, ["train", "test"]), args.rounds)
        big = large_set(Path(tmp) / "large", args.large)
        rows["synthetic, 1024 x 1024 RGB PNG"] = measure(big, max(2, args.rounds // 3))
    lines = [
        "# Dataset check before training (benchmarks/bench_validation.py)",
        "",
        f"CPU: {cpu_name()}, {os.cpu_count()} cores visible, one process, "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}; Python "
        f"{platform.python_version()}. Medians of {args.rounds} passes after a warm-up pass (OS "
        "file cache warm). The machine was shared with other jobs (1-minute load average "
        f"{os.getloadavg()[0]:.1f} at the end): times are upper bounds.",
        "",
        f"| images | files checked | first check, 1 thread (s) | s per 1,000 images, 1 thread "
        f"| s per 1,000 images, {min(8, os.cpu_count() or 1)} threads | cached check (s) | "
        "cached, slowest pass (s) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for label, r in rows.items():
        per_k, per_k_threads = (r[k] / r["images"] * 1000 for k in ("one", "cold"))
        lines.append(
            f"| {label}: {r['images']} | {r['files']} | {r['one']:.3f} | {per_k:.1f} | "
            f"{per_k_threads:.1f} | {r['warm']:.4f} | {r['warm_max']:.4f} |"
        )
    lines += [
        "",
        f"What a second training run on the unchanged nuclei set adds (``build_datasets``: the "
        f"train and test splits, cached): {statistics.median(run) * 1e3:.1f} ms (median), "
        f"{max(run) * 1e3:.1f} ms (slowest of {args.rounds}).",
    ]
    text = "\n".join(lines) + "\n"
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
