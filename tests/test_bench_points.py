"""benchmarks/bench_points.py end to end at toy scale (random tiny SAM, one seed, 1 epoch):
the script's mechanics (a Freeze and a trained row per seed, the verdict line, the validation
line of each trained run). Whether training with points beats Freeze is a measurement of the
foundation model, reported in the README, not something a random model can show."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch

from cobot_lib.data import write_dataset_json, write_mask, write_splits
from cobot_lib.data.layout import write_image

_PATH = Path(__file__).parents[1] / "benchmarks" / "bench_points.py"
_SPEC = importlib.util.spec_from_file_location("bench_points", _PATH)
bench = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(bench)


def test_bench_points_writes_its_table(tmp_path):
    root = tmp_path / "toy"
    for i in range(4):
        image = np.full((48, 48), 20, np.uint8)
        masks = np.zeros((1, 48, 48), bool)
        masks[0, 8 + i : 30, 10:34] = True
        image[masks[0]] = 220
        write_image(root / "images" / f"im{i}.png", image)
        write_mask(root / "masks" / f"im{i}", masks)
    write_splits(root, {"train": ["im0", "im1"], "val": ["im2"], "test": ["im3"]})
    write_dataset_json(root, {"name": "toy"})
    out = tmp_path / "points.md"
    before = torch.get_num_threads()
    try:
        args = ["--dataset", str(root), "--seeds", "0", "--epochs", "1", "--checkpoint", "null",
                "--negatives", "1", "--out", str(out)]  # fmt: skip
        assert bench.main(args) == 0
    finally:
        torch.set_num_threads(before)
    text = out.read_text()
    assert "| seed | Freeze mIoU | trained mIoU |" in text
    assert "Trained beats Freeze (mIoU and DSC) in" in text and "of 1 seeds" in text
    assert "- seed 0: validation mIoU on 'val': zero-shot" in text
