"""Small user worlds for the bad-input tests: datasets, configs, hostile files, file hashes.

Imported by tests/test_bad_input_*.py, test_safe_loading.py and test_data_validation.py (pytest
puts tests/ on the path). Everything is tiny (32 px images, 3 images) so each case runs in
well under a second.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
import torch
from PIL import Image

from cobot_lib.data.layout import write_dataset_json, write_splits

S = 32  # image side in pixels
SPLITS = {"train": ["a", "b"], "test": ["c"]}


class Payload:
    """Unpickling this creates the folder ``marker``: proof that loading a file ran code."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def pickle_bomb(path: Path, marker: Path) -> Path:
    """A plain pickle that runs ``os.mkdir(marker)`` when loaded."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps({"state": Payload(marker)}))
    return path


def torch_bomb(path: Path, marker: Path, **extra) -> Path:
    """A ``torch.save`` file (zip + pickle) that runs ``os.mkdir(marker)`` when unpickled,
    shaped like an old training checkpoint (format_version 1) plus ``extra``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format_version": 1, "payload": Payload(marker), **extra}, path)
    return path


def image(seed: int, h: int = S, w: int = S) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w), dtype=np.uint8)


def box_mask(h: int = S, w: int = S, value: int = 1) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    m[8:20, 10:25] = value
    m[22:28, 2:8] = value + 1
    return m


def folder_set(root: Path, splits: dict[str, list[str]] | None = None) -> Path:
    """A valid folder dataset: 32 px grey PNGs, two instances each, train a/b, test c."""
    splits = splits or SPLITS
    for folder in ("images", "masks"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for k, name in enumerate(n for names in splits.values() for n in names):
        Image.fromarray(image(k)).save(root / "images" / f"{name}.png")
        Image.fromarray(box_mask()).save(root / "masks" / f"{name}.png")
    write_splits(root, splits)
    write_dataset_json(root, {"name": "toy", "domain": "natural", "metric": "miou"})
    return root


def float_tiff(path: Path, bad: float) -> Path:
    """A float32 TIFF image with one pixel ``bad`` (NaN or inf)."""
    pixels = np.random.default_rng(0).random((S, S)).astype(np.float32)
    pixels[3, 4] = bad
    tifffile.imwrite(path, pixels)
    return path


def truncate(path: Path, keep: float = 0.5) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def coco_set(root: Path) -> Path:
    """A valid COCO-format set: three 32 px images, one polygon instance each."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    images, anns = [], []
    for k, name in enumerate(n for names in SPLITS.values() for n in names):
        Image.fromarray(image(k)).save(root / "images" / f"{name}.png")
        images.append({"id": k + 1, "file_name": f"{name}.png", "height": S, "width": S})
        poly = [4.0, 4.0, 20.0, 4.0, 20.0, 18.0, 4.0, 18.0]
        anns.append({"id": k + 1, "image_id": k + 1, "category_id": 1, "iscrowd": 0,
                     "segmentation": [poly], "area": 224.0, "bbox": [4, 4, 16, 14]})  # fmt: skip
    coco = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "thing"}]}
    (root / "annotations.json").write_text(json.dumps(coco))
    write_splits(root, SPLITS)
    write_dataset_json(root, {"name": "toy", "domain": "natural", "format": "coco"})
    return root


def edit_coco(root: Path, edit) -> None:
    path = root / "annotations.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def config_yaml(path: Path, root: Path | str, out: Path, extra: str = "") -> Path:
    """A training config: tiny SAM with random weights, LoRA + COBOT, one epoch, no bars."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f"name: toy\noutput_dir: {out}\n"
        "model: {type: tiny, checkpoint: null}\n"
        f"data: {{root: '{root}', jitter: 2, val_split: null}}\n"
        "peft: {method: lora, cobot: true}\n"
        "optim: {epochs: 1, lr: 1.0e-3}\nruntime: {progress: false}\n" + extra
    )
    return path


def tree(root: Path) -> dict[str, str]:
    """{relative path: SHA-256} of every file under ``root`` (folders count by their files)."""
    if not root.exists():
        return {}
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def steps_logged(run_dir: Path) -> int:
    """How many training steps a run folder's metrics.jsonl records (0 without one)."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return 0
    return sum(json.loads(line).get("event") == "step" for line in path.read_text().splitlines())


# ---- the catalogue's harness ------------------------------------------------------------------


@dataclass
class Refusal:
    """One bad input: what to run, what its message must name, where a run would have logged
    steps (``run_dir``), and whether the input can only be found while training runs."""

    action: Callable[[], Any]
    culprits: list[Any]
    run_dir: Path | None = None
    during_training: bool = False


def registry() -> tuple[dict[str, Callable], Callable]:
    """A dict of case builders and the decorator that fills it (one per catalogue file)."""
    cases: dict[str, Callable] = {}

    def case(build: Callable) -> Callable:
        cases[build.__name__] = build
        return build

    return cases, case


def message_of(action: Callable[[], Any], capsys) -> str:
    """The error a bad input gets: a raised ValueError / OSError / DivergenceError /
    AssertionError (anything else, a bare KeyError say, fails the test), or a CLI's exit
    status 1 or 2 with what it printed."""
    capsys.readouterr()
    try:
        status = action()
    except (ValueError, OSError, RuntimeError, AssertionError) as exc:
        return f"{type(exc).__name__}: {exc}"
    printed = capsys.readouterr()
    assert status in (1, 2), f"the bad input was accepted (exit status {status!r})"
    return printed.err + printed.out


def check_refusal(build: Callable, tmp_path: Path, capsys) -> str:
    """Run one catalogue case: the message names every culprit, has no traceback, comes before
    any training step (when the input is known before training) and leaves the user's files
    (everything under tmp_path/user) as they were."""
    user, out = tmp_path / "user", tmp_path / "out"
    user.mkdir()
    refusal = build(user, out)
    before = tree(user)
    message = message_of(refusal.action, capsys)
    for culprit in refusal.culprits:
        assert str(culprit) in message, f"{culprit!s} not named in: {message}"
    assert "Traceback" not in message
    if not refusal.during_training:
        assert steps_logged(refusal.run_dir or out) == 0
    assert tree(user) == before, "a user file was changed or lost"
    return message
