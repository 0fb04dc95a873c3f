"""Writing a file so that a crash never leaves half of it: one helper for every writer.

Checkpoints, adapters, results tables, dataset descriptions and the foundation model are all
written to a temporary file beside the target and renamed over it (``os.replace`` is atomic on
POSIX and Windows): a reader sees the old file or the new one, never a torn one.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

__all__ = ["atomic_write", "cache_dir"]


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
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
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
