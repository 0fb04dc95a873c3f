"""Unlabelled inputs for prediction: a folder of images and/or NIfTI volumes, read lazily.

``list_inputs`` reads only headers (sizes), so checking a folder of thousands of files costs
little and nothing is held in memory; ``iter_slices`` then yields the 2-D images of one file
at a time: an image file is one slice; a volume (brought to RAS+ like ``nifti.load_canonical``)
yields its axial slices as ``nifti.axial_slice`` shows them, its intensities normalised per
volume as the NIfTI converter does (MR: percentiles of non-zero voxels; CT: a window).
``write_volume_labels`` puts a label volume predicted in that frame back into the input's own
voxel order and writes it with the input's affine. ``plan_inputs`` checks a folder and a prompt
file against each other before anything runs: every prompt names an input, every input has
prompts, volumes' objects name a slice that exists, every prompt lies inside its image, and no
two inputs share a stem (their outputs would collide).
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.orientations import apply_orientation, axcodes2ornt, io_orientation, ornt_transform

from .nifti import axial_slice, ct_window, load_canonical, mr_normalise
from .prompt_file import ObjectPrompt, PromptFileError, check_bounds, read_prompt_file
from .readers import IMAGE_EXTS, image_hw, read_image

__all__ = [
    "VOLUME_SUFFIXES",
    "InputFile",
    "list_inputs",
    "Plan",
    "plan_inputs",
    "iter_slices",
    "write_volume_labels",
]

VOLUME_SUFFIXES = (".nii.gz", ".nii")


@dataclass(frozen=True)
class InputFile:
    """One input: ``kind`` "image" (size (H, W)) or "volume" (RAS+ shape (X, Y, Z))."""

    path: Path
    kind: str
    shape: tuple[int, ...]

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def stem(self) -> str:
        for suffix in VOLUME_SUFFIXES:
            if self.name.lower().endswith(suffix):
                return self.name[: -len(suffix)]
        return self.path.stem

    @property
    def slices(self) -> int:
        return 1 if self.kind == "image" else self.shape[2]

    @property
    def slice_size(self) -> tuple[int, int]:
        """(H, W) of each 2-D slice (an axial slice of a volume: (Y, X))."""
        return self.shape if self.kind == "image" else (self.shape[1], self.shape[0])


def _volume_shape(path: Path) -> tuple[int, int, int]:
    """The RAS+ shape of a volume from its header (no voxels read)."""
    try:
        img = nib.load(str(path))
        shape, affine = img.shape, img.affine
    except Exception as exc:
        raise ValueError(f"could not read NIfTI file {path}: {exc}") from exc
    if len(shape) != 3:
        raise ValueError(f"NIfTI file {path} has shape {shape}; predict takes 3-D volumes")
    ornt = io_orientation(affine)
    out = [0, 0, 0]
    for axis, (target, _) in enumerate(ornt):
        out[int(target)] = int(shape[axis])
    return tuple(out)


def _kind(path: Path) -> str | None:
    name = path.name.lower()
    if name.endswith(VOLUME_SUFFIXES):
        return "volume"
    if path.suffix.lower().lstrip(".") in IMAGE_EXTS:
        return "image"
    return None


def list_inputs(source: str | os.PathLike) -> list[InputFile]:
    """The images and volumes of a folder (not recursive, sorted by name), or one file.

    Files of other types in a folder are ignored; a folder with no inputs, a file of an
    unsupported type, or an unreadable header is an error naming the path.
    """
    source = Path(source)
    if source.is_dir():
        paths = sorted(p for p in source.iterdir() if p.is_file() and _kind(p))
        if not paths:
            raise FileNotFoundError(
                f"no images ({', '.join(IMAGE_EXTS)}) or NIfTI volumes (.nii, .nii.gz) in {source}"
            )
    elif source.is_file():
        if _kind(source) is None:
            raise ValueError(
                f"input {source} is neither an image ({', '.join(IMAGE_EXTS)}) nor a NIfTI "
                "volume (.nii, .nii.gz)"
            )
        paths = [source]
    else:
        raise FileNotFoundError(f"input not found: {source}")
    out = []
    for path in paths:
        if _kind(path) == "volume":
            out.append(InputFile(path, "volume", _volume_shape(path)))
        else:
            out.append(InputFile(path, "image", image_hw(path)))
    return out


@dataclass
class Plan:
    """Checked inputs: the files and, in prompted mode, their objects by slice (None: 2-D)."""

    inputs: list[InputFile]
    prompts: dict[Path, dict[int | None, list[ObjectPrompt]]] | None

    @property
    def units(self) -> int:
        """Number of 2-D images the model will see."""
        if self.prompts is None:
            return sum(f.slices for f in self.inputs)
        return sum(len(by_slice) for by_slice in self.prompts.values())


def _resolve(key: str, by_name: dict, by_stem: dict, prompts: Path, folder: Path) -> InputFile:
    if key in by_name:
        return by_name[key]
    found = by_stem.get(key, [])
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        raise PromptFileError(
            f"{prompts}: image {key!r} matches {[f.name for f in found]} in {folder}; use the "
            "full file name"
        )
    raise PromptFileError(
        f"{prompts}: image {key!r} is not in {folder} (no file named {key!r} or with that stem)"
    )


def plan_inputs(source: str | Path, prompts: str | Path | None = None) -> Plan:
    """Check every input and prompt before anything runs (see the module docstring)."""
    source = Path(source)
    inputs = list_inputs(source)
    stems: dict[str, list[InputFile]] = defaultdict(list)
    for f in inputs:
        stems[f.stem].append(f)
    clash = {s: [f.name for f in fs] for s, fs in stems.items() if len(fs) > 1}
    if clash:
        first = next(iter(clash.items()))
        raise ValueError(
            f"inputs {first[1]} in {source} share the name {first[0]!r}, so their output files "
            "would overwrite each other; rename one"
        )
    if prompts is None:
        return Plan(inputs, None)
    prompts = Path(prompts)
    table = read_prompt_file(prompts)
    by_name = {f.name: f for f in inputs}
    folder = source if source.is_dir() else source.parent
    grouped: dict[Path, dict[int | None, list[ObjectPrompt]]] = {}
    for key, objects in table.items():
        target = _resolve(key, by_name, stems, prompts, folder)
        by_slice = grouped.setdefault(target.path, {})
        for obj in objects:
            if target.kind == "volume" and obj.slice is None:
                raise PromptFileError(
                    f"{obj.where}: {target.name} is a volume of {target.slices} axial slices; "
                    "each object needs a 'slice'"
                )
            if target.kind == "image" and obj.slice is not None:
                raise PromptFileError(f"{obj.where}: {target.name} is a 2-D image; drop 'slice'")
            if obj.slice is not None and obj.slice >= target.slices:
                raise PromptFileError(
                    f"{obj.where}: slice {obj.slice} is outside {target.name}, which has "
                    f"{target.slices} axial slices (0..{target.slices - 1})"
                )
            by_slice.setdefault(obj.slice, []).append(obj)
    for f in inputs:
        if not grouped.get(f.path):
            raise PromptFileError(
                f"image {f.path} has no prompts in {prompts}; add prompts for it, move it out of "
                "the input folder, or run without --prompts for automatic masks"
            )
        for k, objects in grouped[f.path].items():
            name = f.name if k is None else f"{f.name} slice {k}"
            check_bounds(objects, f.slice_size, name)
    return Plan(inputs, grouped)


def iter_slices(
    item: InputFile, modality: str = "mr", window: tuple[float, float] = (40.0, 400.0)
) -> Iterator[tuple[int | None, np.ndarray]]:
    """(slice index or None, 2-D image) of one input; a volume is normalised as a whole first.

    Image pixels come in their stored dtype (``transforms.prepare_image`` scales them); volume
    slices come as uint8 (MR: ``nifti.mr_normalise``; CT: ``nifti.ct_window(level, width)``).
    """
    if item.kind == "image":
        yield None, read_image(item.path)
        return
    if modality not in ("mr", "ct"):
        raise ValueError(f"modality must be 'mr' or 'ct', got {modality!r}")
    data, _ = load_canonical(item.path)
    pixels = mr_normalise(data) if modality == "mr" else ct_window(data, *window)
    del data
    for k in range(pixels.shape[2]):
        yield k, np.ascontiguousarray(axial_slice(pixels, k))


def write_volume_labels(path: str | os.PathLike, slices: np.ndarray, source: InputFile) -> Path:
    """Write labels predicted per axial slice (Z, H, W), as ``iter_slices`` showed them, as a
    NIfTI label volume in the source's voxel order with its affine (uint16)."""
    if slices.shape != (source.slices, *source.slice_size):
        raise ValueError(f"labels of shape {slices.shape} do not fit {source.path} {source.shape}")
    canonical = np.stack([np.flipud(s).T for s in slices], axis=2)  # axial_slice inverted
    original = nib.load(str(source.path))
    back = ornt_transform(axcodes2ornt(("R", "A", "S")), io_orientation(original.affine))
    data = apply_orientation(canonical, back).astype(np.uint16)
    out = nib.Nifti1Image(data, original.affine)
    out.set_qform(original.affine, code=int(original.header.get("qform_code", 1)) or 1)
    out.set_sform(original.affine, code=int(original.header.get("sform_code", 1)) or 1)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(out, str(path))
    return path
