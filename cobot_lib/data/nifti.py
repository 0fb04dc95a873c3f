"""NIfTI volumes to axial 2-D slices in the project layout, as MedSAM's preprocessing does.

* Orientation: image and label are both brought to the closest canonical (RAS+) orientation
  with ``nibabel.as_closest_canonical``, so a volume stored in another orientation gives the
  same slices. A slice is shown with anterior up and the patient's left on the image's left
  (``np.flipud(volume[:, :, k].T)``). Image and label must then have the same shape and affine,
  or a ``VolumeError`` names both files (converters skip such a case and report it).
* Intensities (per volume): CT is clipped to a window (level, width), e.g. (40, 400) for
  abdominal soft tissue, and mapped linearly to 0..255; MR is clipped to the 0.5 and 99.5
  percentiles of its non-zero voxels and mapped to 0..255, zero voxels staying 0.
* Labels: integer label volumes (0 background, one value per structure), a list of binary
  volumes (one per structure, which may overlap), or an integer volume of sub-labels with
  ``label_groups`` saying which sub-labels make up each structure (structures may then
  overlap, as in SegRap2023's one-hot release, where e.g. the lens is inside the eye).
  Connected components smaller than ``min_voxels_3d`` (3-D, 26-connected) and, per slice,
  ``min_pixels_2d`` (8-connected) are removed (MedSAM: 1000 and 100; the converters choose
  per dataset); slices left without foreground are skipped.

Each kept slice k of a volume becomes images/<prefix>_z<k>.png (8-bit grey) and
masks/<prefix>_z<k>.png (labels; a multi-page TIFF when structures overlap, page i = structure
i + 1). ``nifti_to_slices`` returns the names, so callers split by volume, never by slice.

``nifti_folder_to_slices`` keeps the slices of a whole folder of volumes as a derived dataset,
by default in the cache (``slice_cache_dir``: <cache>/slices/<hash of the folder's path>), not in
the user's data folder. It records a fingerprint of its sources (size and modification time of
every volume, split file and dataset.json) and of the slicing settings in ``sources.json``, and
rebuilds the slices (into a new folder, swapped in when complete) whenever that fingerprint
changes, so slices of an old volume or of other settings are never reused.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from scipy import ndimage

from ..files import atomic_write, cache_dir, remove_orphans
from .layout import (
    names_by_split,
    read_dataset_json,
    read_split,
    write_dataset_json,
    write_image,
    write_mask,
    write_splits,
)

__all__ = [
    "VolumeError",
    "load_canonical",
    "ct_window",
    "mr_normalise",
    "remove_small_components",
    "axial_slice",
    "nifti_to_slices",
    "check_case",
    "nifti_cases",
    "slice_settings",
    "slice_cache_dir",
    "nifti_folder_to_slices",
]

#: bump when the slicing itself changes, so caches of an older converter are rebuilt
SLICER_VERSION = 1
SOURCES_NAME = "sources.json"

VolumeLike = str | os.PathLike | nib.spatialimages.SpatialImage
_NII = (".nii.gz", ".nii")


class VolumeError(ValueError):
    """One case's files cannot be used as they are: unreadable, or image and label disagree.

    Converters of many volumes skip such a case and report it; any other error stops them.
    """


def _describe(src: VolumeLike) -> str:
    if isinstance(src, str | os.PathLike):
        return str(src)
    return getattr(src, "get_filename", lambda: None)() or f"<in-memory {type(src).__name__}>"


def load_canonical(src: VolumeLike, channel: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(data (X, Y, Z), affine) of a NIfTI file or image in RAS+ orientation.

    4-D volumes (several modalities, as in MSD BrainTumour/Prostate) need ``channel``.
    """
    where = _describe(src)
    if isinstance(src, str | os.PathLike):
        if not Path(src).is_file():
            raise FileNotFoundError(f"NIfTI file not found: {src}")
        try:
            src = nib.load(str(src))
        except Exception as exc:
            raise VolumeError(f"could not read NIfTI file {where}: {exc}") from exc
    try:
        img = nib.as_closest_canonical(src)
        data = np.asarray(img.dataobj)
    except Exception as exc:
        raise VolumeError(f"could not read the volume of {where}: {exc}") from exc
    if data.ndim == 4:
        if channel is None:
            raise ValueError(f"{where} is 4-D {data.shape}; choose a modality with channel=")
        if not 0 <= channel < data.shape[3]:
            raise ValueError(f"channel {channel} out of range for {where} of shape {data.shape}")
        data = data[..., channel]
    elif data.ndim != 3:
        raise ValueError(f"{where} has shape {data.shape}; expected a 3-D volume")
    return data, img.affine


def ct_window(volume: np.ndarray, level: float, width: float) -> np.ndarray:
    """CT Hounsfield units clipped to [level - width/2, level + width/2], as uint8 0..255."""
    if width <= 0:
        raise ValueError(f"CT window width must be > 0, got {width}")
    lo = level - width / 2
    x = (np.clip(volume.astype(np.float32), lo, lo + width) - lo) * (255.0 / width)
    return np.round(x).astype(np.uint8)


def mr_normalise(volume: np.ndarray, low: float = 0.5, high: float = 99.5) -> np.ndarray:
    """MR intensities clipped to the low/high percentiles of non-zero voxels, as uint8 0..255."""
    x = volume.astype(np.float32)
    fg = x[x != 0]
    if fg.size == 0:
        return np.zeros(x.shape, np.uint8)
    lo, hi = np.percentile(fg, (low, high))
    if hi <= lo:
        out = (x != 0).astype(np.uint8) * 255
    else:
        out = np.round((np.clip(x, lo, hi) - lo) * (255.0 / (hi - lo))).astype(np.uint8)
    out[x == 0] = 0
    return out


def remove_small_components(mask: np.ndarray, min_size: int) -> np.ndarray:
    """Binary mask (2-D or 3-D) without connected components (full connectivity) < min_size."""
    if min_size <= 1 or not mask.any():
        return mask
    comps, n = ndimage.label(mask, structure=np.ones((3,) * mask.ndim, dtype=bool))
    sizes = np.bincount(comps.ravel(), minlength=n + 1)
    keep = sizes >= min_size
    keep[0] = False
    return keep[comps]


def axial_slice(volume: np.ndarray, k: int) -> np.ndarray:
    """Axial slice k of a RAS+ volume as an image: anterior up, patient's left on the left."""
    return np.flipud(volume[:, :, k].T)


def _grouped(
    data: np.ndarray, groups: Mapping[int, Sequence[int]], where: str
) -> tuple[list[np.ndarray], list[int]]:
    """Structure k = the voxels whose sub-label is one of ``groups[k]`` (structures may overlap).

    Every structure 1..K gets a volume, empty or not, so that page i of a slice's stack is
    structure i + 1 whatever the case holds (as with one binary file per structure).
    """
    if sorted(groups) != list(range(1, len(groups) + 1)):
        raise ValueError(f"label_groups must map structures 1..K, got keys {sorted(groups)}")
    known = {int(v) for members in groups.values() for v in members}
    if not known:
        raise ValueError("label_groups names no sub-label values")
    present = np.flatnonzero(np.bincount(data.ravel()))  # data is >= 0 here
    unknown = sorted(set(present.tolist()) - known - {0})
    if unknown:
        raise VolumeError(
            f"label {where} holds sub-labels {unknown[:10]} that belong to no structure of the "
            f"table given (it knows {min(known)}..{max(known)}): another task's label volume?"
        )
    values = sorted(groups)
    return [np.isin(data, np.asarray(groups[k])) for k in values], values


def _label_stack(
    label: VolumeLike | Sequence[VolumeLike],
    shape: tuple,
    affine: np.ndarray,
    image_name: str,
    label_groups: Mapping[int, Sequence[int]] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(binary volumes (N, X, Y, Z), label values (N,)) from a label volume or a list."""
    sources = [label] if not isinstance(label, list | tuple) else list(label)
    if label_groups is not None and len(sources) != 1:
        raise ValueError("label_groups decodes one sub-label volume, not a list of volumes")
    stack, values = [], []
    for i, src in enumerate(sources):
        data, aff = load_canonical(src)
        where = _describe(src)
        if data.shape != shape:
            raise VolumeError(
                f"label {where} has shape {data.shape} in RAS+ but image {image_name} has "
                f"{shape}; they must cover the same voxels"
            )
        if not np.allclose(aff, affine, rtol=1e-4, atol=1e-2):
            raise VolumeError(
                f"label {where} and image {image_name} have different affines (voxel-to-world "
                f"maps):\n{np.round(aff, 3)}\nvs\n{np.round(affine, 3)}"
            )
        if np.issubdtype(data.dtype, np.floating) and (data != np.round(data)).any():
            raise VolumeError(
                f"label {where} holds non-integer values; threshold probability maps first"
            )
        data = data.astype(np.int64)
        if (data < 0).any():
            raise VolumeError(f"label {where} holds negative values")
        if label_groups is not None:
            stack, values = _grouped(data, label_groups, where)
        elif len(sources) > 1:
            stack.append(data > 0)
            values.append(i + 1)
        else:
            for v in np.unique(data[data > 0]):
                stack.append(data == v)
                values.append(int(v))
    if not stack:
        return np.zeros((0, *shape), bool), np.zeros(0, np.int64)
    return np.stack(stack), np.asarray(values, dtype=np.int64)


def check_case(
    image: VolumeLike, label: VolumeLike | Sequence[VolumeLike], channel: int | None = None
) -> dict[str, Any]:
    """Decode one case (image and label volumes) and check it as ``nifti_to_slices`` needs it:
    readable, 3-D (or 4-D with ``channel``), finite intensities, integer non-negative labels on
    the image's voxel grid. Returns {"shape", "labels"}; raises ValueError naming the file."""
    data, affine = load_canonical(image, channel)
    if np.issubdtype(data.dtype, np.floating):
        bad = int(np.count_nonzero(~np.isfinite(data)))
        if bad:
            raise ValueError(f"volume {_describe(image)} holds {bad} NaN or infinite voxels")
    _, values = _label_stack(label, data.shape, affine, _describe(image))
    return {"shape": list(data.shape), "labels": values.tolist()}


def nifti_to_slices(
    image: VolumeLike,
    label: VolumeLike | Sequence[VolumeLike],
    out_root: str | os.PathLike,
    prefix: str,
    modality: str = "ct",
    window: tuple[float, float] = (40.0, 400.0),
    channel: int | None = None,
    label_values: Sequence[int] | None = None,
    min_voxels_3d: int = 1000,
    min_pixels_2d: int = 100,
    label_groups: Mapping[int, Sequence[int]] | None = None,
) -> list[str]:
    """Write the foreground axial slices of one volume; return their names (sorted by slice).

    Args:
        image, label: paths or nibabel images; ``label`` is an integer label volume or a list
            of binary volumes (structure i + 1), all on the image's voxel grid.
        out_root: the dataset folder (images/ and masks/ are written there).
        prefix: the volume's name; slices are <prefix>_z<k:04d>.
        modality: "ct" (``window`` = (level, width) in HU) or "mr" (percentile normalisation).
        label_values: keep only these label values (e.g. the organs of a task); None keeps all.
        label_groups: structure value -> the sub-label values it is made of, for one sub-label
            volume whose structures overlap (SegRap2023's one-hot labels); structures are then
            the keys. A sub-label outside every group is a ``VolumeError``.

    Raises:
        VolumeError: the case cannot be used as it is (unreadable file, image and label on
            different grids, non-integer or negative labels); nothing of it has been written.
    """
    if modality not in ("ct", "mr"):
        raise ValueError(f"modality must be 'ct' or 'mr', got {modality!r}")
    data, affine = load_canonical(image, channel)
    image_name = _describe(image)
    stack, values = _label_stack(label, data.shape, affine, image_name, label_groups)
    if label_values is not None:
        keep = np.isin(values, np.asarray(label_values))
        stack, values = stack[keep], values[keep]
    if len(stack):
        stack = np.stack([remove_small_components(m, min_voxels_3d) for m in stack])
    pixels = ct_window(data, *window) if modality == "ct" else mr_normalise(data)
    out_root = Path(out_root)
    names = []
    for k in range(data.shape[2]):
        masks = np.stack([remove_small_components(axial_slice(m, k), min_pixels_2d) for m in stack])
        present = masks.reshape(len(masks), -1).any(axis=1) if len(masks) else np.zeros(0, bool)
        if not present.any():
            continue
        name = f"{prefix}_z{k:04d}"
        picture = np.ascontiguousarray(axial_slice(pixels, k))
        write_image(out_root / "images" / f"{name}.png", picture)
        overlap = masks.sum(axis=0).max() > 1
        if overlap:  # every page, so that page i is structure values[i] in every slice
            write_mask(out_root / "masks" / name, masks)
        else:
            write_mask(out_root / "masks" / name, masks[present], labels=values[present])
        names.append(name)
    return names


def _case_name(path: Path) -> str:
    for ext in _NII:
        if path.name.endswith(ext):
            return path.name[: -len(ext)]
    return path.stem


def nifti_cases(root: str | os.PathLike) -> tuple[dict[str, tuple[Path, Path]], dict[str, list]]:
    """({case: (image volume, label volume)}, {split: cases}) of a folder of volumes.

    The cases are those of the split files (all volumes when there are none); a case without
    its image or label volume is a FileNotFoundError naming the folder.
    """
    root = Path(root)
    images = {_case_name(p): p for p in sorted((root / "images").glob("*.nii*"))}
    masks = {_case_name(p): p for p in sorted((root / "masks").glob("*.nii*"))}
    if not images:
        raise FileNotFoundError(f"no NIfTI volumes (*.nii, *.nii.gz) in {root / 'images'}")
    splits = {s: read_split(root, s) for s in ("train", "val", "test")
              if (root / "splits" / f"{s}.txt").is_file()}  # fmt: skip
    cases = sorted({c for names in splits.values() for c in names}) if splits else sorted(images)
    for case in cases:
        if case not in images:
            raise FileNotFoundError(f"volume for case {case!r} not found in {root / 'images'}")
        if case not in masks:
            raise FileNotFoundError(f"label volume for case {case!r} not found in {root / 'masks'}")
    return {c: (images[c], masks[c]) for c in cases}, splits


def slice_settings(info: dict[str, Any], where: str = "dataset.json") -> dict[str, Any]:
    """The slicing settings of a dataset.json (with their defaults), checked; ValueError names
    the key."""
    settings = {
        "modality": info.get("modality", "ct"),
        "window": info.get("window", [40.0, 400.0]),
        "channel": info.get("channel"),
        "label_values": info.get("label_values"),
        "min_voxels_3d": info.get("min_voxels_3d", 1000),
        "min_pixels_2d": info.get("min_pixels_2d", 100),
    }
    problems = []
    if settings["modality"] not in ("ct", "mr"):
        problems.append(f"modality={settings['modality']!r} (expected 'ct' or 'mr')")
    window = settings["window"]
    if not (isinstance(window, list) and len(window) == 2 and all(_number(v) for v in window)
            and window[1] > 0):  # fmt: skip
        problems.append(f"window={window!r} (expected [level, width > 0])")
    for key in ("min_voxels_3d", "min_pixels_2d"):
        if not (isinstance(settings[key], int) and not isinstance(settings[key], bool)):
            problems.append(f"{key}={settings[key]!r} (expected an integer)")
    if settings["channel"] is not None and not isinstance(settings["channel"], int):
        problems.append(f"channel={settings['channel']!r} (expected an integer or null)")
    values = settings["label_values"]
    if values is not None and not (
        isinstance(values, list) and all(isinstance(v, int) for v in values)
    ):
        problems.append(f"label_values={values!r} (expected a list of integers or null)")
    if problems:
        raise ValueError(f"{where} has bad slicing settings: " + "; ".join(problems))
    return settings


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def slice_cache_dir(root: str | os.PathLike) -> Path:
    """Where the slices of the volume folder ``root`` are kept: <cache>/slices/<path hash>."""
    key = hashlib.sha256(str(Path(root).resolve()).encode()).hexdigest()[:16]
    return cache_dir() / "slices" / f"{Path(root).resolve().name}-{key}"


def _stamp(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


def _sources(root: Path, cases: dict[str, tuple[Path, Path]], settings: dict) -> dict[str, Any]:
    files = [p for pair in cases.values() for p in pair]
    files += sorted((root / "splits").glob("*.txt")) + [root / "dataset.json"]
    return {
        "slicer_version": SLICER_VERSION,
        "settings": settings,
        "files": {p.relative_to(root).as_posix(): _stamp(p) for p in files if p.is_file()},
    }


def nifti_folder_to_slices(root: str | os.PathLike, out: str | os.PathLike | None = None) -> Path:
    """Slice a folder of volumes (images/<case>.nii[.gz], masks/<case>.nii[.gz], splits of cases)
    into a folder dataset at ``out`` (default ``slice_cache_dir(root)``); returns its path.

    Conversion settings come from <root>/dataset.json: "modality", "window", "channel",
    "label_values", "min_voxels_3d", "min_pixels_2d". The slices are reused while the volumes,
    split files, dataset.json and settings are unchanged (``sources.json``), rebuilt otherwise.
    """
    root = Path(root)
    out = Path(out) if out is not None else slice_cache_dir(root)
    info = read_dataset_json(root)
    settings = slice_settings(info, str(root / "dataset.json"))
    cases, splits = nifti_cases(root)
    sources = _sources(root, cases, settings)
    recorded = out / SOURCES_NAME
    if recorded.is_file() and (out / "dataset.json").is_file():
        try:
            if json.loads(recorded.read_text(encoding="utf-8")) == sources:
                return out
        except (ValueError, OSError):
            pass  # unreadable record: rebuild
    elif out.is_dir() and any(out.iterdir()):
        raise FileExistsError(
            f"{out} holds files that are not slices made by nifti_folder_to_slices (no "
            f"{SOURCES_NAME}); give an empty or new folder as out"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_orphans(out.parent)
    building = out.with_name(f".{out.name}.building-{os.getpid()}")
    shutil.rmtree(building, ignore_errors=True)
    group_of: dict[str, str] = {}
    for case, (image, label) in cases.items():
        for name in nifti_to_slices(
            image, label, building, case,
            modality=settings["modality"],
            window=tuple(settings["window"]),
            channel=settings["channel"],
            label_values=settings["label_values"],
            min_voxels_3d=settings["min_voxels_3d"],
            min_pixels_2d=settings["min_pixels_2d"],
        ):  # fmt: skip
            group_of[name] = case
    by_split = names_by_split(group_of, splits) if splits else {"all": list(group_of)}
    empty = [split for split, names in by_split.items() if not names]
    if empty:
        shutil.rmtree(building, ignore_errors=True)
        raise ValueError(
            f"the volumes of {root} give no foreground slice for split(s) {empty} with the "
            f"settings of {root / 'dataset.json'} ({settings}); lower min_voxels_3d / "
            "min_pixels_2d there, or check the label volumes"
        )
    write_splits(building, by_split if splits else {})
    write_dataset_json(building, {**info, "format": "folder"})
    text = json.dumps(sources, indent=1)
    atomic_write(building / SOURCES_NAME, lambda tmp: tmp.write_text(text))
    _swap_in(building, out)
    return out


def _swap_in(new: Path, out: Path) -> None:
    """Replace the folder ``out`` by the complete folder ``new`` (two renames; a reader in
    between finds no ``out`` and rebuilds, never a half-written one)."""
    old = out.with_name(f".{out.name}.replaced-{os.getpid()}")
    if out.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.rename(out, old)
    os.rename(new, out)
    shutil.rmtree(old, ignore_errors=True)
