"""Peak memory of ``cobot_lib.predict`` over folders of 10 and 1,000 images: is it flat?

For each size N a folder of N small grey PNGs (64 x 64, three bright blobs each) and a prompt
file (one box per blob) are generated under a temporary folder; each prediction runs in a fresh
child process (one torch thread) that loads the tiny model, records its resident memory, runs
``predict_folder`` (masks, overlays, COCO file) and reports its peak resident memory
(``ru_maxrss``, Linux: KiB). If predict held results, the peak would grow with N.

    python benchmarks/bench_predict_memory.py [--sizes 10 1000] [--automatic]
        [--out benchmarks/results_predict_memory.md]

The model is the tiny foundation SAM when it is on this machine, else the tiny SAM with random
weights (the same shapes and memory). Timings depend on the machine and its load; the CPU
model and thread count are written into the results.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cobot_lib.backbone.foundation import foundation_checkpoint_path  # noqa: E402
from cobot_lib.data.layout import write_image  # noqa: E402


def make_folder(root: Path, n: int, side: int = 64) -> Path:
    """N grey PNGs with three bright discs each, and prompts.json with their boxes."""
    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[:side, :side]
    prompts = {}
    for i in range(n):
        rng = np.random.default_rng(i)
        image = rng.integers(0, 40, (side, side)).astype(np.uint8)
        objects = []
        for _ in range(3):
            cx, cy, r = rng.integers(10, side - 10), rng.integers(10, side - 10), rng.integers(4, 9)
            disc = (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
            image[disc] = 200
            ys, xs = np.nonzero(disc)
            objects.append({"box": [int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())]})
        write_image(images / f"img{i:05d}.png", image)
        prompts[f"img{i:05d}.png"] = objects
    (root / "prompts.json").write_text(json.dumps({"images": prompts}))
    return root


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return -1


def child(folder: Path, out: Path, automatic: bool) -> None:
    """Run predict in this process and print one JSON line of measurements."""
    import torch

    from cobot_lib.engine.predict import PredictOptions, load_model, predict_folder

    torch.set_num_threads(1)
    checkpoint = "foundation" if foundation_checkpoint_path().is_file() else "random"
    sam = load_model("tiny", checkpoint)
    before = _rss_kib()
    options = PredictOptions(progress=False, points_per_side=8)
    prompts = None if automatic else folder / "prompts.json"
    start = time.perf_counter()
    summary = predict_folder(sam, folder / "images", out, prompts, options)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"checkpoint": checkpoint, "rss_after_model_kib": before,
                      "peak_rss_kib": peak, "seconds": seconds, "images": summary["images"],
                      "objects": summary["objects"]}))  # fmt: skip


def measure(n: int, tmp: Path, automatic: bool) -> dict:
    folder = make_folder(tmp / f"n{n}", n)
    out = tmp / f"out{n}{'_auto' if automatic else ''}"
    cmd = [sys.executable, __file__, "--child", str(folder), str(out)]
    cmd += ["--automatic"] if automatic else []
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if done.returncode:
        raise RuntimeError(f"child failed:\n{done.stderr}")
    return {"n": n, "mode": "automatic" if automatic else "prompted",
            **json.loads(done.stdout.strip().splitlines()[-1])}  # fmt: skip


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[10, 1000])
    p.add_argument("--automatic", action="store_true", help="also measure automatic mode")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results_predict_memory.md")
    p.add_argument("--child", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        child(*args.child, automatic=args.automatic)
        return 0
    rows = []
    with tempfile.TemporaryDirectory(prefix="cobot_predict_bench_") as tmp:
        for automatic in (False, True) if args.automatic else (False,):
            for n in args.sizes:
                rows.append(measure(n, Path(tmp), automatic))
                print(rows[-1], flush=True)
    lines = [
        "# Peak memory of `python -m cobot_lib.predict` (generated by "
        "`benchmarks/bench_predict_memory.py`; do not edit by hand)",
        "",
        f"CPU: {cpu_name()}; 1 torch thread; model: tiny SAM ({rows[0]['checkpoint']}); "
        "64 x 64 grey PNGs, 3 objects each; masks, overlays and the COCO file written. "
        "Each run is a fresh process; RSS in MiB (resident set, Linux ru_maxrss).",
        "",
        "| mode | images | objects | RSS after loading the model | peak RSS | peak - loaded | "
        "seconds |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        a, b = r["rss_after_model_kib"] / 1024, r["peak_rss_kib"] / 1024
        lines.append(f"| {r['mode']} | {r['images']} | {r['objects']} | {a:.1f} | {b:.1f} | "
                     f"{b - a:.1f} | {r['seconds']:.1f} |")  # fmt: skip
    args.out.write_text("\n".join(lines) + "\n")
    print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
