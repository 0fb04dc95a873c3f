"""Multi-process training helpers: torchrun environment, DDP set-up, reductions, rank-0 writes.

Launch: ``torchrun --nproc_per_node=N -m cobot_lib.train CONFIG.yaml``. torchrun sets RANK,
WORLD_SIZE and LOCAL_RANK; ``init_distributed`` reads them and joins the process group with
NCCL when the run uses CUDA and gloo on the CPU. Without torchrun everything here degrades to a
single process (rank 0 of 1) and every reduction is the identity, so the trainer has one code
path. Only rank 0 writes files (``is_main``); metrics are summed across ranks before logging.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

__all__ = [
    "DistEnv",
    "init_distributed",
    "resolve_device",
    "is_distributed",
    "is_main",
    "rank",
    "world_size",
    "all_reduce_sum",
    "all_gather_objects",
    "broadcast_object",
    "main_first",
    "shutdown",
    "run_command",
]

T = TypeVar("T")


@dataclass(frozen=True)
class DistEnv:
    """Where this process sits: rank of world_size, its local rank and its device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str | None

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """ "auto" -> cuda:LOCAL_RANK if CUDA is available, else cpu; otherwise the named device."""
    if name == "auto":
        name = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    elif name == "cuda":
        name = f"cuda:{local_rank}"
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ValueError(
            f"runtime.device={name!r} is not a device name (auto, cpu, cuda:N)"
        ) from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"runtime.device={name!r} but CUDA is not available; use cpu or auto")
    return device


def _env_int(key: str, default: int) -> int:
    value = os.environ.get(key)
    try:
        return default if value is None else int(value)
    except ValueError:
        raise ValueError(f"environment variable {key}={value!r} is not an integer") from None


def init_distributed(device: str = "auto") -> DistEnv:
    """Join torchrun's process group if WORLD_SIZE > 1 (idempotent); return this process's place."""
    world = _env_int("WORLD_SIZE", 1)
    local_rank = _env_int("LOCAL_RANK", 0)
    dev = resolve_device(device, local_rank)
    if world <= 1:
        return DistEnv(0, 1, 0, dev, None)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return DistEnv(dist.get_rank(), dist.get_world_size(), local_rank, dev, backend)


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """True on the one process that writes files (rank 0, or the only process)."""
    return rank() == 0


def _comm_device() -> torch.device:
    if is_distributed() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_sum(values: list[float] | torch.Tensor) -> torch.Tensor:
    """Elementwise sum over ranks of a float64 vector (identity on one process)."""
    tensor = torch.as_tensor(values, dtype=torch.float64).to(_comm_device())
    if is_distributed():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.cpu()


def all_gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj`` in rank order (``[obj]`` on one process)."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def main_first(work: Callable[[], T]) -> T:
    """``work()`` on rank 0, then on the other ranks once it has succeeded there.

    For work that fills a shared cache (dataset checks, NIfTI slices): rank 0 does it, the
    others find it done. A failure on rank 0 is raised there and, as a ValueError with the same
    message, on every other rank, so no rank waits for ever.
    """
    if not is_distributed():
        return work()
    result, failure = None, None
    if is_main():
        try:
            result = work()
        except Exception as exc:  # re-raised below, after the others have been told
            failure = exc
    message = broadcast_object(None if failure is None else str(failure))
    if failure is not None:
        raise failure
    if message is not None:
        raise ValueError(message)
    return result if is_main() else work()


def shutdown() -> None:
    """Leave the process group (end of a torchrun run)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def run_command(work: Callable[[], None], errors: tuple[type[BaseException], ...] = ()) -> int:
    """A command line's exit status for ``work()``: 0 when it returns; 2, with the one line
    ``error: <message>`` on stderr and no traceback, when it raises what a user's input causes
    (ValueError, which ConfigError, CheckpointError and DatasetError are; OSError, e.g. a
    missing file; or one of ``errors``). Anything else is a bug and keeps its traceback. The
    process group (torchrun) is left either way."""
    try:
        work()
    except (ValueError, OSError, *errors) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        shutdown()
    return 0
