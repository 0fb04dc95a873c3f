"""Notebook 04's prediction check (``notebook.finetune.same_masks``) is not vacuous: it finds a
single flipped pixel, a swapped object order and a missing image, and counts the instances."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np

from cobot_lib.data.predictions import CocoWriter, read_coco_masks
from cobot_lib.engine.evaluation import mask_file
from cobot_lib.notebook.finetune import same_masks


def _setup(tmp_path: Path, masks: dict[str, np.ndarray]) -> tuple[Path, SimpleNamespace]:
    """predictions.json from CocoWriter (pycocotools RLE) and evaluate-style .npz oracles."""
    writer = CocoWriter(tmp_path / "predictions.json")
    for name, m in masks.items():
        writer.add(f"{name}.png", m.shape[1:], m, scores=[1.0] * len(m))
        np.savez_compressed(mask_file(tmp_path / "masks", name), masks=m)
    writer.close()
    paths = [tmp_path / f"{name}.png" for name in masks]
    return tmp_path / "predictions.json", SimpleNamespace(names=list(masks), image_paths=paths)


def test_same_masks_finds_any_difference(tmp_path):
    rng = np.random.default_rng(0)
    masks = {"a": rng.random((3, 9, 7)) > 0.5, "b": rng.random((2, 5, 11)) > 0.5}
    (tmp_path / "masks").mkdir()
    predictions, dataset = _setup(tmp_path, masks)
    assert same_masks(predictions, tmp_path / "masks", dataset) == (True, 5)
    decoded = read_coco_masks(predictions)
    assert decoded.keys() == {"a.png", "b.png"} and decoded["b.png"].dtype == bool

    flipped = masks["a"].copy()
    flipped[1, 4, 3] ^= True
    np.savez_compressed(mask_file(tmp_path / "masks", "a"), masks=flipped)
    assert same_masks(predictions, tmp_path / "masks", dataset) == (False, 5)

    np.savez_compressed(mask_file(tmp_path / "masks", "a"), masks=masks["a"][::-1])
    assert same_masks(predictions, tmp_path / "masks", dataset)[0] is False

    np.savez_compressed(mask_file(tmp_path / "masks", "a"), masks=masks["a"])
    extra = SimpleNamespace(names=[*dataset.names, "c"],
                            image_paths=[*dataset.image_paths, tmp_path / "c.png"])  # fmt: skip
    np.savez_compressed(mask_file(tmp_path / "masks", "c"), masks=masks["b"])
    assert same_masks(predictions, tmp_path / "masks", extra) == (False, 7)  # c not predicted
