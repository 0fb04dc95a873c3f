"""``FolderDataset``: a folder of images and instance masks in the project layout (``layout``).

Every name of the split must have exactly one image and one mask; a missing file, two images
with the same name, or an image and mask of different sizes are errors that name the files,
raised when the dataset is built (sizes come from the file headers, so this stays fast). Each
mask is read once at construction to index its instances; images whose mask is empty and
instances smaller than ``min_area`` are skipped and counted in ``skipped``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .base import BoxPromptDataset
from .layout import read_split
from .readers import IMAGE_EXTS, MASK_EXTS, image_hw, mask_instances, read_image, read_mask

__all__ = ["FolderDataset", "index_files"]


def index_files(folder: Path, exts: tuple[str, ...]) -> dict[str, Path]:
    """name -> file for the files of ``folder`` with one of ``exts``; a name twice is an error."""
    if not folder.is_dir():
        raise FileNotFoundError(f"folder not found: {folder}")
    out: dict[str, Path] = {}
    for entry in os.scandir(folder):
        stem, dot, ext = entry.name.rpartition(".")
        if not dot or ext.lower() not in exts:
            continue
        if stem in out:
            raise ValueError(
                f"two files for name {stem!r} in {folder}: {out[stem].name} and {entry.name}"
            )
        out[stem] = Path(entry.path)
    return out


class FolderDataset(BoxPromptDataset):
    """Images and masks under ``root`` for the names of ``splits/<split>.txt``.

    Args:
        root: the dataset folder (images/, masks/, splits/).
        split: "train", "val", "test" or any split file's stem; None takes every image that
            has a mask (for quick looks; experiments use split files).
        image_size, train, jitter_px, seed, min_area, max_instances, intensity, prompt,
            points, negative_points: see ``BoxPromptDataset``.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str | None,
        image_size: int,
        train: bool = False,
        jitter_px: float = 50.0,
        seed: int = 0,
        min_area: int = 1,
        max_instances: int | None = None,
        intensity: str = "percentile",
        prompt: str = "box",
        points: int = 1,
        negative_points: int = 0,
    ) -> None:
        super().__init__(
            image_size, train, jitter_px, seed, min_area, max_instances, intensity,
            prompt, points, negative_points,
        )  # fmt: skip
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"dataset folder not found: {self.root}")
        images = index_files(self.root / "images", IMAGE_EXTS)
        masks = index_files(self.root / "masks", MASK_EXTS)
        names = read_split(self.root, split) if split is not None else sorted(masks)
        self.split = split
        self.image_paths: list[Path] = []
        self.mask_paths: list[Path] = []
        for name in names:
            if name not in images:
                raise FileNotFoundError(
                    f"image for {name!r} (split {split!r}) not found in {self.root / 'images'} "
                    f"(looked for {name}.{{{','.join(IMAGE_EXTS)}}})"
                )
            if name not in masks:
                raise FileNotFoundError(
                    f"mask for {name!r} (split {split!r}) not found in {self.root / 'masks'} "
                    f"(looked for {name}.{{{','.join(MASK_EXTS)}}})"
                )
            mask = read_mask(masks[name])
            hw = image_hw(images[name])
            if hw != mask.shape[-2:]:
                raise ValueError(
                    f"image {images[name]} is {hw[0]}x{hw[1]} but its mask {masks[name]} is "
                    f"{mask.shape[-2]}x{mask.shape[-1]} (H x W); they must match"
                )
            before = len(self.names)
            self._add_image(name, hw, *mask_instances(mask))
            if len(self.names) > before:
                self.image_paths.append(images[name])
                self.mask_paths.append(masks[name])

    def _read(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        image = read_image(self.image_paths[index])
        mask = read_mask(self.mask_paths[index])
        if image.shape[:2] != mask.shape[-2:]:
            raise ValueError(
                f"image {self.image_paths[index]} is {image.shape[:2]} but mask "
                f"{self.mask_paths[index]} is {mask.shape[-2:]}"
            )
        if mask.ndim == 3:
            return image, mask[self.instance_labels[index] - 1]
        return image, mask  # a label image: build_item takes the indexed values
