"""One grid point of a sweep as one unit of work: what a process or a cluster job runs.

A point on one device (``processes == 1``) executes ``notebooks/04_finetune.ipynb`` through
papermill (``sweep.run_one``), exactly as a local sweep always has: the notebook's checks, its
figures and its metrics JSON come with every run.

A point on several GPUs cannot run in a notebook kernel: DDP needs one process per GPU, which
torchrun starts. Such a point writes the training config the notebook would build from the same
parameters (``notebook_config``, which the notebook's ``prepare`` calls too) to
``RUN/train_config.yaml`` and runs

    python -m torch.distributed.run --standalone --nnodes=1 --nproc_per_node=G \\
        -m cobot_lib.train RUN/train_config.yaml

(``torch.distributed.run`` is the ``torchrun`` script, started with this job's Python), the same
``Trainer`` and evaluation the notebook calls. Differences, stated in the table: the global batch
is G images per Adam step (one per GPU; the notebook and the paper take 1), so an epoch has 1/G
of the steps, and the row has a ``batch_size`` column; the run resumes from its own checkpoint
when the job is run again (the notebook always starts over). Afterwards this process scores the
frozen model (the zero-shot row, as the notebook does) on the first GPU and writes
``metrics.json`` with the notebook's keys (model selection's fields from ``results.json``), plus
``batch_size``. The ranks' output goes to
``RUN/torchrun.log``.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from ..backbone.foundation import load_foundation_model
from ..backbone.sam import build_sam
from ..engine.config import config_from_dict
from ..engine.distributed import resolve_device
from ..engine.evaluation import evaluate_model
from ..engine.runtime import build_datasets, seed_everything
from ..engine.validation import validation_fields
from ..files import atomic_write
from ..peft import DEFAULT_RANK, PEFT_METHODS
from .sweep import NOTEBOOK, RESERVED, read_metrics, run_directory, run_one, run_slug

__all__ = ["PointFailed", "PointJob", "notebook_config", "torchrun_metrics"]


class PointFailed(RuntimeError):
    """A grid point ended without its metrics; the message is the run's error."""


def notebook_config(params: dict[str, Any], output_dir: str | os.PathLike) -> dict[str, Any]:
    """The training config notebook 04 builds from its parameters (``notebook.finetune.prepare``
    calls this), as plain data.

    ``params`` must hold every notebook parameter (defaults filled in).
    """
    p = params
    return {
        "name": "04_finetune",
        "output_dir": str(output_dir),
        "model": {"type": p["model_type"],
                  "checkpoint": None if p["checkpoint"] == "random" else p["checkpoint"]},
        "peft": {
            "method": p["method"],
            "rank": p["rank"],
            "cobot": {"enabled": p["cobot"], "coefficient_sets": p["coefficient_sets"],
                      "relation": p["relation"], "head": p["head"], "seed": p["seed"]},
        },
        "data": {"root": p["dataset"], "jitter": p["box_jitter_px"], "val_split": p["val_split"],
                 "prompt": p["prompt"], "points": p["points"],
                 "negative_points": p["negative_points"]},
        "optim": {"lr": p["lr"], "weight_decay": p["weight_decay"], "epochs": p["epochs"]},
        "runtime": {"seed": p["seed"], "device": p["device"], "amp": p["amp"],
                    "max_steps": p["max_steps"], "resume": "never", "progress": False},
        "eval": {"enabled": True, "every_epoch": p["eval_every_epoch"]},
        "validation": {"every_steps": p["val_every_steps"], "patience": p["patience"]},
    }  # fmt: skip


def torchrun_metrics(
    params: dict[str, Any], result: dict[str, Any], zero_shot: dict[str, Any], batch_size: int,
    device: torch.device, threads: int,
) -> dict[str, Any]:  # fmt: skip
    """A metrics row with the notebook's keys (its last cell) from ``cobot_lib.train``'s
    ``results.json`` and a zero-shot evaluation summary.

    ``seconds``: the training run (model build, training, final evaluation); ``train_seconds``:
    the sum of the epochs' times; ``steps`` and ``final_loss``: from the step records (one per
    Adam step, the trainer's default, as in the notebook).
    """
    history = result["history"]
    steps = [r for r in history if r["event"] == "step"]
    method, rank = params["method"], params["rank"]
    final = result["metrics"]
    return {
        **{k: v for k, v in params.items() if k not in RESERVED},
        "rank": rank if rank is not None or method not in PEFT_METHODS else DEFAULT_RANK[method],
        "miou": final["miou"],
        "mdsc": final["mdsc"],
        "n_instances": final["n_instances"],
        "n_images": final["n_images"],
        "zero_shot_miou": zero_shot["miou"],
        "zero_shot_mdsc": zero_shot["mdsc"],
        "seconds": result["seconds"],
        "train_seconds": sum(r.get("seconds", 0.0) for r in history if r["event"] == "epoch"),
        "steps": len(steps),
        "final_loss": steps[-1]["loss"] if steps else None,
        "trainable_params": result["trainable_parameters"],
        "image_encoder_params": result["image_encoder_parameters"],
        "device_name": (
            torch.cuda.get_device_name(device)
            if device.type == "cuda"
            else platform.processor() or platform.machine()
        ),
        "torch_threads": threads,
        "torch_version": torch.__version__,
        **(result.get("validation") or validation_fields(None)),
        "batch_size": batch_size,
    }


@dataclass(frozen=True)
class PointJob:
    """One grid point: ``params`` (the grid's explicit values), run under ``out_dir/runs/<slug>``.

    ``defaults``: the notebook's parameters (filled in for a torchrun point); ``processes``: 1
    for the notebook, G > 1 for torchrun on G GPUs; ``threads``: OMP_NUM_THREADS for the run's
    processes (None: leave the environment as it is). Picklable: submitit ships it to the job.
    """

    params: dict[str, Any]
    out_dir: str
    defaults: dict[str, Any]
    notebook: str = str(NOTEBOOK)
    processes: int = 1
    threads: int | None = None
    kernel: str = "python3"

    @property
    def slug(self) -> str:
        return run_slug(self.params)

    @property
    def run_dir(self) -> Path:
        return run_directory(self.out_dir, self.params)

    @property
    def config_path(self) -> Path:
        return self.run_dir / "train_config.yaml"

    def full_params(self) -> dict[str, Any]:
        """Every notebook parameter: the grid's values over the notebook's defaults."""
        return {k: self.params.get(k, v) for k, v in self.defaults.items() if k not in RESERVED}

    def command(self) -> list[str]:
        """What the job executes: the torchrun command, or papermill's notebook execution."""
        if self.processes == 1:
            return ["papermill", self.notebook, str(self.run_dir / Path(self.notebook).name)]
        return [
            sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes=1",
            f"--nproc_per_node={self.processes}", "-m", "cobot_lib.train", str(self.config_path),
        ]  # fmt: skip

    def train_config(self) -> dict[str, Any]:
        """A torchrun point's training config: the notebook's, with a global batch of one image
        per process and resuming from its own checkpoint; checked (raises ConfigError)."""
        data = notebook_config(self.full_params(), self.run_dir / "train")
        data["optim"]["batch_size"] = self.processes
        data["runtime"]["resume"] = "auto"
        config_from_dict(data, f"grid point {self.slug}")
        return data

    def prepare(self) -> None:
        """Write ``params.json`` (and a torchrun point's config) before submission."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "params.json").write_text(json.dumps(self.params, indent=1))
        if self.processes > 1:
            text = yaml.safe_dump(self.train_config(), sort_keys=False)
            atomic_write(self.config_path, lambda tmp: tmp.write_text(text))

    def run(self) -> dict[str, Any]:
        """Run the point unless done: {slug, status ("done", "ran", "failed"), seconds, error}."""
        if self.threads is not None:
            os.environ["OMP_NUM_THREADS"] = str(self.threads)
        if self.processes == 1:
            return run_one(self.params, self.out_dir, self.notebook, self.kernel)
        return self._torchrun()

    def __call__(self) -> dict[str, Any]:
        """The job's entry point: ``run``, raising PointFailed so the scheduler sees a failure."""
        outcome = self.run()
        if outcome["status"] == "failed":
            raise PointFailed(f"{outcome['slug']}: {outcome['error']}")
        return outcome

    def _torchrun(self) -> dict[str, Any]:
        metrics = self.run_dir / "metrics.json"
        if read_metrics(metrics) is not None:
            return {"slug": self.slug, "status": "done", "seconds": 0.0, "error": None}
        start, error = time.perf_counter(), None
        try:
            self.prepare()
            log = self.run_dir / "torchrun.log"
            with open(log, "w") as handle:
                code = subprocess.run(self.command(), stdout=handle, stderr=subprocess.STDOUT,
                                      cwd=os.getcwd(), check=False).returncode  # fmt: skip
            if code != 0:
                tail = log.read_text().strip().splitlines()[-3:]
                error = f"torchrun exited with {code} (log: {log}): " + " | ".join(tail)
            else:
                self._write_metrics(metrics)
        except Exception as exc:  # a broken results.json, CUDA errors in the zero-shot pass...
            error = f"{type(exc).__name__}: {exc}"
        seconds = time.perf_counter() - start
        if error is not None:
            (self.run_dir / "error.txt").write_text(error + "\n")
            return {"slug": self.slug, "status": "failed", "seconds": seconds, "error": error}
        (self.run_dir / "error.txt").unlink(missing_ok=True)
        return {"slug": self.slug, "status": "ran", "seconds": seconds, "error": None}

    def _write_metrics(self, path: Path) -> None:
        """Zero-shot score of the frozen model (as the notebook's cell 8) and the metrics row."""
        params = self.full_params()
        result = json.loads((self.run_dir / "train" / "results.json").read_text())
        cfg = config_from_dict(notebook_config(params, self.run_dir / "train"), self.slug)
        _, eval_set = build_datasets(cfg, need_train=False)
        device = resolve_device(params["device"])
        seed_everything(params["seed"])  # a random-init model is drawn from the seed
        if params["checkpoint"] == "foundation":
            plain = load_foundation_model()
        else:
            checkpoint = None if params["checkpoint"] == "random" else params["checkpoint"]
            plain = build_sam(params["model_type"], checkpoint)
        zero = evaluate_model(plain.to(device), eval_set, amp=params["amp"]).summary()
        threads = int(os.environ.get("OMP_NUM_THREADS") or torch.get_num_threads())
        row = torchrun_metrics(params, result, zero, self.processes, device, threads)
        atomic_write(path, lambda tmp: tmp.write_text(json.dumps(row, indent=1)))
