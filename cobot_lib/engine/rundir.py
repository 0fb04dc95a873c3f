"""A run folder holds one run: starting over moves the previous run aside, never mixes with it.

``check_output_dir`` refuses, before any work, an ``output_dir`` that is an existing file (or
lies below one). ``prepare_run_dir`` is called when a run starts. It removes the temporary files
a killed writer left (``files.remove_orphans``). When the run starts fresh (nothing resumed from
its own folder), a folder that holds a previous run is renamed, in one atomic ``os.rename``, to
``<name>.old-<UTC time>`` beside it, so the new run's metrics never sit beside the old run's
checkpoint or adapter, and nothing of the old run is lost. A folder that holds files that are not
a run's (a user pointed ``output_dir`` at a data folder, say) is refused, naming them. The run
marks its folder with ``run.json`` (config and fingerprint), so a later start knows the folder
is a run's whatever files the run wrote.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from ..files import atomic_write, remove_orphans
from .config import ConfigError

__all__ = ["RUN_MARKER", "RUN_FILES", "check_output_dir", "prepare_run_dir", "write_run_marker"]

RUN_MARKER = "run.json"
#: what runs of this project write (runs older than the marker hold only these)
RUN_FILES = (RUN_MARKER, "checkpoint.safetensors", "checkpoint.pt", "metrics.jsonl",
             "results.json", "eval.json", "metrics.json", "adapter", "last_adapter",
             "masks")  # fmt: skip


def check_output_dir(run_dir: Path) -> None:
    """Refuse an output folder that is an existing file, or lies inside one."""
    for path in (run_dir, *run_dir.parents):
        if path.exists() and not path.is_dir():
            what = "is" if path == run_dir else f"lies inside {path}, which is"
            raise ConfigError(
                f"output_dir {run_dir} {what} an existing file, not a folder; set output_dir to "
                "a new or existing folder"
            )


def _foreign(run_dir: Path) -> list[str]:
    """Entries of ``run_dir`` that no run writes (empty for a run folder)."""
    if (run_dir / RUN_MARKER).is_file():
        return []
    return sorted(p.name for p in run_dir.iterdir()
                  if p.name not in RUN_FILES and not p.name.startswith("."))  # fmt: skip


def prepare_run_dir(run_dir: Path, fresh: bool) -> Path | None:
    """Make ``run_dir`` ready for a run; returns where a previous run went (None if nowhere).

    Orphaned temporary files are removed. For a ``fresh`` run an empty or missing folder is
    used as it is, a previous run is moved aside atomically to ``<name>.old-<UTC time>``, and a
    folder holding other files raises ConfigError naming them.
    """
    check_output_dir(run_dir)
    if not run_dir.is_dir():
        run_dir.mkdir(parents=True)
        return None
    remove_orphans(run_dir, recursive=True)
    if not fresh or not any(run_dir.iterdir()):
        return None
    foreign = _foreign(run_dir)
    if foreign:
        raise ConfigError(
            f"output_dir {run_dir} holds files that no run writes ({foreign[:5]}); a new run "
            "would mix with them. Choose a new or empty output_dir"
        )
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    for n in range(1000):
        aside = run_dir.with_name(f"{run_dir.name}.old-{stamp}" + (f"-{n}" if n else ""))
        if not aside.exists():
            break
    os.rename(run_dir, aside)  # atomic: the old run is whole, either here or there
    run_dir.mkdir()
    return aside


def write_run_marker(run_dir: Path, config: dict[str, Any], fingerprint: str) -> None:
    """Mark ``run_dir`` as a run's folder (``run.json``: the config and its fingerprint)."""
    text = json.dumps({"fingerprint": fingerprint, "config": config}, indent=1, default=str)
    atomic_write(run_dir / RUN_MARKER, lambda tmp: tmp.write_text(text))
