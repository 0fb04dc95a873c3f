"""Writing a file so that a crash never leaves half of it: one helper for every writer.

Checkpoints, adapters, results tables, dataset descriptions and the foundation model are all
written to a temporary file beside the target and renamed over it (``os.replace`` is atomic on
POSIX and Windows): a reader sees the old file or the new one, never a torn one.

A writer killed between the two steps leaves its temporary file (``.NAME.tmp-PID``) behind;
``remove_orphans`` deletes those of processes that no longer run, and every program that writes
into a folder calls it when it starts there (the trainer for its run folder, the caches).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

__all__ = ["atomic_write", "cache_dir", "remove_orphans", "resolve_path", "temporary_path"]

_TMP = re.compile(r"^\..+\.tmp-(\d+)$")
_REPO = Path(__file__).resolve().parents[1]


def temporary_path(path: str | os.PathLike) -> Path:
    """The temporary file ``atomic_write`` uses for ``path`` in this process."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def _running(pid: int) -> bool:
    """Whether another process with this id runs (POSIX); on other systems assume it does."""
    if pid == os.getpid():
        return False  # our own leftovers: this process is not writing while it starts
    if os.name != "posix":
        return True  # no safe liveness probe (os.kill would terminate the process on Windows)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    return True


def remove_orphans(folder: str | os.PathLike, recursive: bool = False) -> list[Path]:
    """Delete the temporary files that killed ``atomic_write`` calls left in ``folder``.

    Only files named like ours (``.NAME.tmp-PID``) whose process no longer runs are removed;
    a writer still running keeps its file. Returns the removed paths (none if no folder).
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = folder.rglob(".*.tmp-*") if recursive else folder.glob(".*.tmp-*")
    removed = []
    for path in sorted(found):
        match = _TMP.match(path.name)
        if match and path.is_file() and not _running(int(match.group(1))):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def atomic_write(
    path: str | os.PathLike, write: Callable[[Path], object], durable: bool = False
) -> Path:
    """Call ``write(tmp)`` on a temporary path beside ``path``, then rename it to ``path``.

    Args:
        path: the file to create or replace (its folder is created).
        write: writes the whole content to the path it is given.
        durable: also fsync the file and its folder, so the new file survives a power cut
            (training checkpoints); results tables do without.
    Returns:
        ``path`` as a Path. On any error the temporary file is removed and the old file is kept.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    try:
        write(tmp)
        if durable:
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable and hasattr(os, "O_DIRECTORY"):  # make the rename itself durable
        fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    return path


def cache_dir() -> Path:
    """Where downloaded, pretrained or derived files live: $COBOT_CACHE or ~/.cache/cobot_lib."""
    return Path(os.environ.get("COBOT_CACHE", Path.home() / ".cache" / "cobot_lib"))


def resolve_path(path: str | os.PathLike) -> Path:
    """``path`` as given when it exists or is absolute, else relative to the repository (so a
    notebook under ``notebooks/`` finds ``docs/results/...``)."""
    path = Path(path).expanduser()
    if path.is_absolute() or path.exists():
        return path
    return _REPO / path
