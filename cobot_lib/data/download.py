"""Downloads that are verified before they are used, and safe archive extraction.

A file is downloaded to ``<dest>.part``, its SHA-256 or MD5 is checked against the published
value, and only then renamed to ``dest``; a file already at ``dest`` that verifies is not
fetched again. ``verify_file`` is the check on its own (e.g. for a file fetched by hand).
Archives are extracted only when none of their members would land outside the target folder.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
import urllib.request
import zipfile
from pathlib import Path

from tqdm import tqdm

__all__ = ["ChecksumError", "file_digest", "verify_file", "download", "extract"]


class ChecksumError(ValueError):
    """A file's digest differs from the published one."""


def file_digest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in 1 MiB chunks."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify_file(path: str | os.PathLike, sha256: str | None = None, md5: str | None = None) -> str:
    """Check a file against its published SHA-256 (preferred) or MD5; returns the algorithm used.

    Raises:
        FileNotFoundError: no file at ``path``.
        ChecksumError: the digest differs (the message names the file and both digests).
        ValueError: no checksum was given.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"file to verify not found: {path}")
    checks = [(a, v.lower()) for a, v in (("sha256", sha256), ("md5", md5)) if v]
    if not checks:
        raise ValueError(f"no checksum given to verify {path}")
    for algorithm, expected in checks:
        actual = file_digest(path, algorithm)
        if actual != expected:
            raise ChecksumError(
                f"{path}: {algorithm} is {actual}, expected {expected} (corrupt or incomplete "
                "download, or another file; delete it and fetch it again)"
            )
    return checks[0][0]


def download(
    url: str,
    dest: str | os.PathLike,
    sha256: str | None = None,
    md5: str | None = None,
    progress: bool = True,
) -> Path:
    """Fetch ``url`` to ``dest`` and verify it; a verified ``dest`` is kept as it is."""
    dest = Path(dest)
    if sha256 is None and md5 is None:
        raise ValueError(f"refusing to download {url} without a checksum to verify it")
    if dest.is_file():
        try:
            verify_file(dest, sha256, md5)
            return dest
        except ChecksumError:
            pass  # fetch it again
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    request = urllib.request.Request(url, headers={"User-Agent": "cobot_lib"})
    with urllib.request.urlopen(request) as response, open(part, "wb") as out:
        total = int(response.headers.get("Content-Length") or 0) or None
        bar = tqdm(total=total, unit="B", unit_scale=True, desc=dest.name, disable=not progress)
        with bar:
            for chunk in iter(lambda: response.read(1 << 20), b""):
                out.write(chunk)
                bar.update(len(chunk))
    try:
        verify_file(part, sha256, md5)
    except ChecksumError:
        part.unlink()
        raise
    os.replace(part, dest)
    return dest


def _inside(root: Path, member: str) -> bool:
    target = (root / member).resolve()
    return target == root or root in target.parents


def extract(archive: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Extract a .zip, .tar, .tar.gz or .tgz archive into ``dest`` (path traversal refused)."""
    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    root = dest.resolve()
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            bad = [n for n in zf.namelist() if not _inside(root, n)]
            if bad:
                raise ValueError(f"{archive} has members outside the target folder: {bad[:3]}")
            zf.extractall(dest)
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            members = tf.getmembers()
            bad = [m.name for m in members if not _inside(root, m.name) or m.islnk() or m.issym()]
            if bad:
                raise ValueError(f"{archive} has unsafe members (outside, or links): {bad[:3]}")
            # "data": no device files, no absolute or outside paths, no set-uid bits
            safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tf.extractall(dest, members=members, **safe)
    else:
        raise ValueError(f"{archive} is neither a zip nor a tar archive")
    return dest
