"""The project's dataset layout on disk: every converter writes it, every loader reads it.

    <root>/images/<name>.<png|tif|tiff|jpg|jpeg>
    <root>/masks/<name>.<png|tif|tiff>   label image (0 background, 1..K instances) or a binary
                                         mask; a multi-page TIFF (N, H, W) when instances overlap
    <root>/splits/{train,val,test}.txt   one name per line, fixed once written
    <root>/dataset.json                  optional: {"name", "domain": "medical" | "natural" |
                                         "remote_sensing", "metric": "dsc" | "miou",
                                         "format": "folder" | "coco" | "nifti", ...}

COCO-format sets keep their JSON (instances may overlap) as <root>/annotations.json with
images under <root>/images/ and names = the image ``file_name`` without its extension.

Splits are never random at load time: ``split_groups`` draws them once from a seed, by group
(a patient, a volume, a scene), so that no group straddles two splits, and ``write_splits``
refuses to replace existing split files with different ones.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
from PIL import Image

from ..files import atomic_write

__all__ = [
    "SPLITS",
    "DOMAINS",
    "METRICS",
    "read_split",
    "read_text_file",
    "write_splits",
    "split_groups",
    "names_by_split",
    "read_dataset_json",
    "write_dataset_json",
    "write_image",
    "write_mask",
    "place_file",
]

SPLITS = ("train", "val", "test")
DOMAINS = ("medical", "natural", "remote_sensing")
METRICS = ("dsc", "miou")
FORMATS = ("folder", "coco", "nifti")


def read_text_file(path: Path, what: str) -> str:
    """The UTF-8 text of ``path``; a ValueError naming the file (and the byte) if it is not."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"{what} {path} is not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset "
            f"{exc.start}); save it as UTF-8"
        ) from None


def read_split(root: str | os.PathLike, split: str) -> list[str]:
    """Names listed in <root>/splits/<split>.txt (blank lines and # comments ignored).

    A file that is not UTF-8, lists no name, or lists a name twice is a ValueError naming it.
    """
    path = Path(root) / "splits" / f"{split}.txt"
    if not path.is_file():
        have = sorted(p.stem for p in (Path(root) / "splits").glob("*.txt"))
        raise FileNotFoundError(f"split file not found: {path} (splits present: {have})")
    names = [ln.strip() for ln in read_text_file(path, "split file").splitlines()]
    names = [n for n in names if n and not n.startswith("#")]
    if not names:
        raise ValueError(
            f"split file {path} lists no names (it is empty, or holds only blank lines and "
            "# comments); write one image name per line"
        )
    dup = sorted({n for n in names if names.count(n) > 1}) if len(set(names)) < len(names) else []
    if dup:
        raise ValueError(f"split file {path} lists names twice: {dup[:5]}")
    return names


def write_splits(
    root: str | os.PathLike, splits: Mapping[str, Sequence[str]], overwrite: bool = False
) -> None:
    """Write <root>/splits/<split>.txt; splits must be disjoint; existing files must agree."""
    seen: dict[str, str] = {}
    for split, names in splits.items():
        for n in names:
            if n in seen:
                raise ValueError(f"name {n!r} is in both split {seen[n]!r} and {split!r}")
            if not n or n != n.strip() or "\n" in n:
                raise ValueError(f"invalid name {n!r} in split {split!r}")
            seen[n] = split
    folder = Path(root) / "splits"
    folder.mkdir(parents=True, exist_ok=True)
    for split, names in splits.items():
        path = folder / f"{split}.txt"
        text = "".join(f"{n}\n" for n in names)
        if path.is_file() and not overwrite:
            if path.read_text() != text:
                raise FileExistsError(
                    f"split file {path} exists with other names; splits are fixed once written "
                    "(delete it, or pass overwrite=True, to redraw)"
                )
            continue
        path.write_text(text)


def split_groups(
    groups: Iterable[str],
    fractions: Mapping[str, float] | None = None,
    seed: int = 0,
    fixed: Mapping[str, str] | None = None,
) -> dict[str, list[str]]:
    """Assign each distinct group to a split: seeded, reproducible, disjoint.

    ``fractions`` (default train 0.7, val 0.1, test 0.2) are taken over the groups not in
    ``fixed`` (group -> split, e.g. an official test set). Every split with a positive
    fraction gets at least one group when there are enough groups.
    """
    fractions = dict(fractions or {"train": 0.7, "val": 0.1, "test": 0.2})
    if any(f < 0 for f in fractions.values()) or sum(fractions.values()) <= 0:
        raise ValueError(f"split fractions must be >= 0 with a positive sum, got {fractions}")
    fixed = dict(fixed or {})
    free = sorted(set(groups) - set(fixed))
    order = [free[i] for i in np.random.default_rng(seed).permutation(len(free))]
    total = sum(fractions.values())
    names = list(fractions)
    counts = {s: int(round(fractions[s] / total * len(order))) for s in names}
    positive = [s for s in names if fractions[s] > 0]
    if len(order) >= len(positive):
        for s in positive:
            if counts[s] == 0:
                counts[s] = 1
    # the first split (train) takes whatever rounding leaves
    counts[names[0]] = len(order) - sum(counts[s] for s in names[1:])
    while counts[names[0]] < 0:
        biggest = max(names[1:], key=lambda s: counts[s])
        counts[biggest] -= 1
        counts[names[0]] += 1
    out: dict[str, list[str]] = {s: [] for s in names}
    start = 0
    for s in names:
        out[s] = sorted(order[start : start + counts[s]])
        start += counts[s]
    for g, s in fixed.items():
        out.setdefault(s, []).append(g)
    return {s: sorted(v) for s, v in out.items()}


def names_by_split(
    group_of: Mapping[str, str], group_splits: Mapping[str, Sequence[str]]
) -> dict[str, list[str]]:
    """Names per split from name -> group and group splits (every name lands in one split)."""
    where = {g: s for s, gs in group_splits.items() for g in gs}
    out: dict[str, list[str]] = {s: [] for s in group_splits}
    for name, g in sorted(group_of.items()):
        if g not in where:
            raise ValueError(f"group {g!r} of {name!r} is in no split")
        out[where[g]].append(name)
    return out


def read_dataset_json(root: str | os.PathLike) -> dict[str, Any]:
    """<root>/dataset.json, or {} when there is none; checks the documented fields."""
    path = Path(root) / "dataset.json"
    if not path.is_file():
        return {}
    try:
        info = json.loads(read_text_file(path, "dataset description"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(info, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(info).__name__}")
    for key, allowed in (("domain", DOMAINS), ("metric", METRICS), ("format", FORMATS)):
        if key in info and info[key] not in allowed:
            raise ValueError(f"{path}: {key}={info[key]!r}, expected one of {allowed}")
    return info


def write_dataset_json(root: str | os.PathLike, info: Mapping[str, Any]) -> Path:
    """Write <root>/dataset.json (validated); written last by converters, so it marks 'done'."""
    text = json.dumps(dict(info), indent=2, sort_keys=True) + "\n"
    path = atomic_write(Path(root) / "dataset.json", lambda tmp: tmp.write_text(text))
    read_dataset_json(root)
    return path


def write_image(path: str | os.PathLike, image: np.ndarray) -> Path:
    """Save pixels losslessly: PNG for 8/16-bit grey and 8-bit RGB(A), else TIFF."""
    path, image = Path(path), np.asarray(image)
    path.parent.mkdir(parents=True, exist_ok=True)
    png_ok = (image.dtype == np.uint8 and image.ndim in (2, 3)) or (
        image.dtype == np.uint16 and image.ndim == 2
    )
    if path.suffix.lower() == ".png":
        if not png_ok:
            raise ValueError(f"cannot save dtype {image.dtype} shape {image.shape} as PNG {path}")
        Image.fromarray(image).save(path)
    elif path.suffix.lower() in (".tif", ".tiff"):
        tifffile.imwrite(path, image, compression="zlib")
    else:
        raise ValueError(f"write_image saves .png or .tif, got {path}")
    return path


def write_mask(path_stem: str | os.PathLike, masks: np.ndarray, labels=None) -> Path:
    """Save instance masks (N, H, W) as a label PNG (disjoint) or a TIFF stack (overlapping).

    ``labels`` (N,) gives each disjoint instance its value in the label image (default 1..N);
    a (H, W) array is taken as a label image already. Returns the written path.
    """
    masks = np.asarray(masks)
    stem = Path(path_stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    if masks.ndim == 2:
        label = masks
    else:
        masks = masks.astype(bool)
        values = np.arange(1, len(masks) + 1) if labels is None else np.asarray(labels)
        if len(values) != len(masks) or (values < 1).any() or len(set(values)) != len(values):
            raise ValueError(f"labels must be {len(masks)} distinct values >= 1, got {values}")
        if masks.sum(axis=0).max(initial=0) > 1:
            path = stem.with_name(stem.name + ".tif")
            tifffile.imwrite(path, masks.astype(np.uint8), compression="zlib")
            return path
        label = np.zeros(masks.shape[1:], dtype=np.int64)
        for v, m in zip(values, masks, strict=True):
            label[m] = v
    if label.min(initial=0) < 0 or label.max(initial=0) >= 2**16:
        raise ValueError(f"labels must lie in 0..65535 for a PNG mask, got max {label.max()}")
    dtype = np.uint8 if label.max(initial=0) < 256 else np.uint16
    return write_image(stem.with_name(stem.name + ".png"), label.astype(dtype))


def place_file(src: str | os.PathLike, dst: str | os.PathLike, mode: str = "copy") -> Path:
    """Put ``src`` at ``dst`` by "copy", "symlink" or "hardlink" (parents created)."""
    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise FileNotFoundError(f"source file not found: {src}")
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists() or dst.is_symlink():
        dst.unlink()
    if mode == "copy":
        shutil.copyfile(src, dst)
    elif mode == "symlink":
        dst.symlink_to(src.resolve())
    elif mode == "hardlink":
        os.link(src, dst)
    else:
        raise ValueError(f"mode must be copy, symlink or hardlink, got {mode!r}")
    return dst
