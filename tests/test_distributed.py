"""DDP with torchrun (gloo, CPU): two processes train the tiny model like one with the same
global batch, hold identical adapters, and only rank 0 writes the run's files."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from cobot_lib.engine import distributed as dist

WORKER = textwrap.dedent(
    """
    import sys
    import torch
    torch.set_num_threads(1)
    from cobot_lib.engine import distributed as dist
    from cobot_lib.engine.config import load_config
    from cobot_lib.data.synthetic import SyntheticShapes
    from cobot_lib.peft import adapter_state_dict
    from cobot_lib.engine.trainer import Trainer

    out = sys.argv[1]
    config = load_config({
        "output_dir": out + "/run",
        "model": {"type": "tiny", "checkpoint": None},
        "peft": {"method": "lora", "cobot": True},  # LoRA has no dropout: deterministic
        "optim": {"epochs": 2, "lr": 2e-3, "batch_size": 2},
        "runtime": {"progress": False, "resume": "never"},
    })
    train = SyntheticShapes(4, seed=3, train=True, jitter_px=6, max_instances=3)
    evals = SyntheticShapes(3, seed=4, train=False, max_instances=3)
    trainer = Trainer(config, train_set=train, eval_set=evals)
    trainer.fit()
    rows = trainer.evaluate().rows
    state = {k: v.clone() for k, v in adapter_state_dict(trainer.sam).items()}
    torch.save({"adapter": state, "history": trainer.history, "rows": rows,
                "world": dist.world_size()}, f"{out}/result_rank{dist.rank()}.pt")
    dist.shutdown()
    """
)


def _run(args, tmp_path, env_extra=None):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env_extra or {})}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    done = subprocess.run(
        [*args, str(script), str(tmp_path)], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def _steps(history):
    return [(r["global_step"], r["loss"]) for r in history if r["event"] == "step"]


@pytest.mark.slow
def test_two_process_ddp_equals_one_process_with_the_same_global_batch(tmp_path):
    ddp_dir, single_dir = tmp_path / "ddp", tmp_path / "single"
    ddp_dir.mkdir(), single_dir.mkdir()
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    _run([*torchrun, "--nproc_per_node=2"], ddp_dir)
    _run([sys.executable], single_dir)

    rank0, rank1 = (torch.load(ddp_dir / f"result_rank{r}.pt", weights_only=True) for r in (0, 1))
    (single,) = (torch.load(single_dir / "result_rank0.pt", weights_only=True),)
    assert (rank0["world"], rank1["world"], single["world"]) == (2, 2, 1)
    assert rank0["adapter"].keys() == single["adapter"].keys() and rank0["adapter"]
    moved = 0
    for key, value in single["adapter"].items():
        assert torch.equal(rank0["adapter"][key], rank1["adapter"][key]), key
        # DDP sums the two halves' gradients in another order than one process does, so the
        # gradients differ by float rounding (~1e-7 relative). Adam divides each entry by its own
        # gradient scale, so an entry whose gradient is at rounding level can move differently
        # by up to lr per step: elementwise tolerances fail on such entries on some CPUs. Per
        # tensor, norm-wise, those entries are a tiny share; a DDP bug (no all-reduce, a sum
        # instead of a mean) changes whole updates, far beyond 1e-3 of the tensor's norm.
        difference = (rank0["adapter"][key] - value).norm() / value.norm().clamp_min(1e-12)
        assert difference <= 1e-3, (key, difference.item())
        moved += ".lora_b_" in key and bool(value.abs().sum() > 0)  # B starts at zero
    assert moved == 24  # every LoRA up-projection trained

    # losses are reduced over ranks: the logged global-batch loss matches the single run
    steps = _steps(rank0["history"])
    assert [s for s, _ in steps] == [1, 2, 3, 4] == [s for s, _ in _steps(single["history"])]
    assert [v for _, v in steps] == pytest.approx([v for _, v in _steps(single["history"])], 1e-4)
    # evaluation is sharded and gathered: every rank sees all rows
    for rows in (rank0["rows"], rank1["rows"]):
        assert [(r["index"], r["instance"]) for r in rows] == [
            (r["index"], r["instance"]) for r in single["rows"]
        ]
        assert [r["dsc"] for r in rows] == pytest.approx([r["dsc"] for r in single["rows"]], 1e-3)
    # only rank 0 wrote the run's files: one line per step, not two
    lines = (ddp_dir / "run" / "metrics.jsonl").read_text().splitlines()
    assert sum('"event": "step"' in line for line in lines) == 4


def test_single_process_helpers_are_the_identity():
    assert (dist.rank(), dist.world_size(), dist.is_main(), dist.is_distributed()) == (
        0,
        1,
        True,
        False,
    )
    assert dist.all_reduce_sum([1.5, 2.0]).tolist() == [1.5, 2.0]
    assert dist.all_gather_objects({"a": 1}) == [{"a": 1}]
    assert dist.broadcast_object("x") == "x"


def test_device_resolution_and_bad_names():
    assert dist.resolve_device("cpu").type == "cpu"
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert dist.resolve_device("auto").type == expected
    with pytest.raises(ValueError, match="not a device name"):
        dist.resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            dist.resolve_device("cuda:0")


VALIDATION_WORKER = textwrap.dedent(
    """
    import sys
    import torch
    torch.set_num_threads(1)
    from cobot_lib.engine import distributed as dist
    from cobot_lib.engine.config import load_config
    from cobot_lib.data.synthetic import SyntheticShapes
    from cobot_lib.peft import adapter_state_dict
    from cobot_lib.engine.trainer import Trainer

    out = sys.argv[1]
    config = load_config({
        "output_dir": out + "/run",
        "model": {"type": "tiny", "checkpoint": None},
        "peft": {"method": "lora", "cobot": True},
        "optim": {"epochs": 2, "lr": 2e-3, "batch_size": 2},
        "runtime": {"progress": False, "resume": "never"},
    })
    train = SyntheticShapes(4, seed=3, train=True, jitter_px=6, max_instances=3)
    val = SyntheticShapes(3, seed=5, train=False, max_instances=3)
    trainer = Trainer(config, train_set=train, val_set=val)
    trainer.fit()
    state = {k: v.clone() for k, v in adapter_state_dict(trainer.sam).items()}
    torch.save({"adapter": state, "history": trainer.history,
                "summary": trainer.validation.to_dict()},
               f"{out}/result_rank{dist.rank()}.pt")
    dist.shutdown()
    """
)


@pytest.mark.slow
def test_ddp_model_selection_agrees_on_every_rank(tmp_path):
    """Validation is sharded and gathered, so every rank makes the same choice and stops
    together; only rank 0 writes the kept adapter and the log."""
    script = tmp_path / "worker.py"
    script.write_text(VALIDATION_WORKER)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    done = subprocess.run([*torchrun, str(script), str(tmp_path)], env=env, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rank0, rank1 = (torch.load(tmp_path / f"result_rank{r}.pt") for r in (0, 1))
    vals = [[(r["global_step"], r["miou"]) for r in h["history"] if r["event"] == "val"]
            for h in (rank0, rank1)]  # fmt: skip
    assert vals[0] == vals[1] and [s for s, _ in vals[0]] == [0, 2, 4]
    assert rank0["summary"] == rank1["summary"] is not None
    for key, value in rank0["adapter"].items():
        assert torch.equal(rank1["adapter"][key], value), key
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert sum('"event": "val"' in line for line in lines) == 3
    assert (tmp_path / "run" / "adapter" / "selection.json").is_file()
    assert done.stdout.count("validation mIoU on 'val'") == 1  # printed by rank 0 only
