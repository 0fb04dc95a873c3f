"""Measurements behind docs/results/benchmark_protocol.md (issue 15), one torch thread.

    python benchmarks/bench_benchmark.py prepare --out DIR             # render + time each domain
    python benchmarks/bench_benchmark.py zero-shot --out DIR           # Freeze on every val split
    python benchmarks/bench_benchmark.py tune --out DIR DOMAIN METHOD STEPS LR [--cobot] [--seed S]
                                                                   [--schedule cosine]
    python benchmarks/bench_benchmark.py time --out DIR DOMAIN METHOD [--cobot]
    python benchmarks/bench_benchmark.py rerun --out DIR TABLE ROW DOMAIN [--seed S]
    python benchmarks/bench_benchmark.py schedules --out docs/results   # constant vs cosine table
    python benchmarks/bench_benchmark.py real --out docs/results        # the real sets' choice

``tune`` trains one point and scores the *validation* split (the protocol is chosen there);
``time`` runs one grid point exactly as the grid would (test split) and prints only its wall time,
never its score, so no choice can lean on the test split. ``rerun`` re-trains one stored grid point
(docs/results/benchmark) and prints how far its score lands from the stored one, beside notebook
05's tolerance (sigma_seed / 4); run it under ``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2
MKL_ENABLE_INSTRUCTIONS=AVX2`` to stand for a CPU without AVX-512 (other kernels, other rounding).
Each prints one JSON line, except ``real`` (the markdown table of the real sets' validation runs,
section 3c) and ``schedules``, which reads the validation runs in
``DIR/benchmark_protocol_runs.jsonl`` and prints the markdown tables of
docs/results/benchmark_protocol.md section 3b (constant against cosine lr, seed by seed, at each
domain's steps and lr 1e-3).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
from scipy import stats

from cobot_lib.backbone.foundation import load_foundation_model
from cobot_lib.data import load_dataset
from cobot_lib.data.benchmark_sets import ensure_benchmark_domain
from cobot_lib.data.domains import DOMAINS, write_domain
from cobot_lib.engine.evaluation import evaluate_model
from cobot_lib.experiments.benchmark import (
    BenchmarkPoint,
    DomainProtocol,
    index_rows,
    key_of,
    load_grid,
    read_rows,
    run_point,
)
from cobot_lib.experiments.benchmark.report import metric_of, seed_scores
from cobot_lib.machine import cpu_name

GRID = Path(__file__).resolve().parents[1] / "configs" / "benchmark" / "grid.yaml"
RESULTS = GRID.parents[2] / "docs" / "results" / "benchmark"


def _emit(record: dict) -> None:
    """Print one JSON line; ``cpu_seconds`` is this process's CPU time so far: with one thread
    on a shared machine it is close to the wall time the same work takes on a free core."""
    record.update(
        cpu_seconds=round(time.process_time(), 1), load=os.getloadavg(), cpu=cpu_name(),
        threads=torch.get_num_threads(), python=platform.python_version(),
    )  # fmt: skip
    print(json.dumps(record), flush=True)


def schedule_tables(path: Path) -> str:
    """Markdown: per domain and schedule, the val scores by seed (points of the domain's metric)
    of every method run at the grid's steps and lr 1e-3, and the paired spread of COBOT -
    Adaptformer with the 5-seed half-width it predicts (t_4 x sd / sqrt 5)."""
    runs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    steps = {d: p.steps for d, p in load_grid(GRID).domains.items()}
    by: dict[tuple, dict[int, float]] = {}
    for r in runs:
        if r["domain"] not in DOMAINS or "mdsc" not in r:  # the synthetic domains' runs
            continue
        if r.get("lr") != 1e-3 or r["steps"] != steps[r["domain"]]:
            continue
        key = (r["domain"], r.get("schedule", "constant"), r["method"], r["cobot"])
        by.setdefault(key, {})[r["seed"]] = 100 * r[metric_of(r["domain"])]
    lines = ["| domain | schedule | row | seeds 0, 1, 2 | mean | sd |", "|---|---|---|---|---|---|"]
    spread = ["| domain | schedule | d = COBOT - Adaptformer per seed | sd of d | "
              "5-seed half-width |", "|---|---|---|---|---|"]  # fmt: skip
    for (domain, schedule, method, cobot), scores in sorted(by.items()):
        values = [scores[s] for s in sorted(scores) if s < 3]
        if len(values) < 3:
            continue
        name = f"{method}{'+COBOT' if cobot else ''}"
        lines.append(f"| {domain} | {schedule} | {name} | {', '.join(f'{v:.2f}' for v in values)}"
                     f" | {np.mean(values):.2f} | {np.std(values, ddof=1):.2f} |")  # fmt: skip
        base = by.get((domain, schedule, method, False))
        if cobot and method == "adaptformer" and base and all(s in base for s in range(3)):
            d = [scores[s] - base[s] for s in range(3)]
            sd = float(np.std(d, ddof=1))
            width = stats.t.ppf(0.975, 4) * sd / np.sqrt(5)
            spread.append(f"| {domain} | {schedule} | {', '.join(f'{x:+.2f}' for x in d)} | "
                          f"{sd:.2f} | {width:.2f} |")  # fmt: skip
    return "\n".join(lines) + "\n\n" + "\n".join(spread)


def real_tables(path: Path) -> str:
    """Markdown: the validation runs that chose the real sets' protocols (kind ``real-val``),
    per domain, steps and lr: each Table 4 row's scores on seeds 0-2 (points), their mean, and
    the mean minus Freeze's validation score (kind ``real-zero-shot-val``)."""
    runs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    freeze = {r["domain"]: 100 * r[metric_of(r["domain"])]
              for r in runs if r.get("kind") == "real-zero-shot-val"}  # fmt: skip
    by: dict[tuple, dict[int, float]] = {}
    for r in runs:
        if r.get("kind") == "real-val":
            key = (
                r["domain"],
                r["steps"],
                r["lr"],
                f"{r['method']}{'+COBOT' if r['cobot'] else ''}",
            )
            by.setdefault(key, {})[r["seed"]] = 100 * r[metric_of(r["domain"])]
    lines = ["| domain | Freeze | steps | lr | row | by seed (0, 1, 2) | mean | mean - Freeze |",
             "|---|---:|---:|---:|---|---|---:|---:|"]  # fmt: skip
    for (domain, steps, lr, name), scores in sorted(by.items()):
        values = [scores[s] for s in sorted(scores)]
        mean = float(np.mean(values))
        lines.append(f"| {domain} | {freeze[domain]:.2f} | {steps} | {lr:g} | {name} | "
                     f"{', '.join(f'{v:.2f}' for v in values)} | {mean:.2f} | "
                     f"{mean - freeze[domain]:+.2f} |")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "command",
        choices=("prepare", "zero-shot", "tune", "time", "rerun", "schedules", "real"),
    )
    parser.add_argument("args", nargs="*")
    parser.add_argument("--out", required=True, help="folder holding <domain>/")
    parser.add_argument("--cobot", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--schedule", default="constant", help="tune: constant or cosine")
    a = parser.parse_intermixed_args()
    torch.set_num_threads(1)
    out = Path(a.out)
    if a.command == "prepare":
        for name in a.args or DOMAINS:
            start = time.perf_counter()
            root = write_domain(name, out / name)
            counts = json.loads((root / "dataset.json").read_text())["counts"]
            _emit({"domain": name, "seconds": round(time.perf_counter() - start, 1), **counts})
    elif a.command == "zero-shot":
        sam = load_foundation_model()
        for name in a.args or DOMAINS:
            start = time.perf_counter()
            root = ensure_benchmark_domain(name, out / name)
            result = evaluate_model(sam, load_dataset(root, "val", 256)).summary()
            _emit({"domain": name, "split": "val", **result,
                   "seconds": round(time.perf_counter() - start, 1)})  # fmt: skip
    elif a.command == "tune":
        domain, method, steps, lr = a.args
        protocol = DomainProtocol(int(steps), float(lr), schedule=a.schedule)  # wd, jitter: grid's
        point = BenchmarkPoint.of(domain, a.seed, protocol, method, cobot=a.cobot)
        row = run_point(point, ensure_benchmark_domain(domain, out / domain), eval_split="val")
        _emit({k: row[k] for k in ("domain", "method", "cobot", "steps", "lr", "schedule", "seed",
                                   "miou", "mdsc", "seconds")})  # fmt: skip
    elif a.command == "schedules":
        print(schedule_tables(out / "benchmark_protocol_runs.jsonl"))
    elif a.command == "real":
        print(real_tables(out / "benchmark_protocol_runs.jsonl"))
    elif a.command == "rerun":
        table, name, domain = a.args
        grid = load_grid(GRID)
        spec = grid.tables[table][name]
        point = BenchmarkPoint.of(domain, a.seed, grid.domains[domain], **spec)
        index = index_rows(read_rows(RESULTS))
        stored, metric = index[key_of(point.columns())], metric_of(domain)
        sigma = float(seed_scores(index, grid, domain, spec).std(ddof=1))
        row = run_point(point, out / domain, eval_split="test")
        caps = {k: os.environ.get(k) for k in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA",
                                               "MKL_ENABLE_INSTRUCTIONS")}  # fmt: skip
        _emit({"point": f"{point.label()} / {domain} / seed {a.seed}", "metric": metric,
               "stored": stored[metric], "fresh": row[metric],
               "gap_points": 100 * abs(row[metric] - stored[metric]),
               "tolerance_points": sigma / 4, "stored_cpu": stored["cpu"], **caps})  # fmt: skip
    else:
        domain, method = a.args
        protocol = load_grid(GRID).domains[domain]
        point = BenchmarkPoint.of(domain, a.seed, protocol, method, cobot=a.cobot)
        row = run_point(point, out / domain, eval_split="test")
        _emit({k: row[k] for k in ("domain", "method", "cobot", "steps", "seed", "seconds")})


if __name__ == "__main__":
    main()
