"""Evaluation at the original image size, checked against segment_anything's own SamPredictor,
the paper-style seed summary, and the two CLIs end to end on a folder dataset."""

from __future__ import annotations

import json
import statistics

import numpy as np
import pytest
import torch
from segment_anything import SamPredictor

from cobot_lib.backbone.sam import build_sam
from cobot_lib.data import write_dataset_json, write_mask, write_splits
from cobot_lib.data.layout import write_image
from cobot_lib.engine import evaluation as evaluate
from cobot_lib.engine import trainer as train
from cobot_lib.engine.checkpoint import CHECKPOINT_NAME
from cobot_lib.engine.evaluation import evaluate_model, format_mean_std, mean_std, seed_table

pytestmark = pytest.mark.usefixtures("one_thread")


def _scene(seed: int, h: int, w: int):
    """A smooth RGB image (H, W, 3) uint8 with two rectangles as ground-truth instances."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    base = 120 + 60 * np.sin(xx / 9.0 + seed) * np.cos(yy / 13.0)
    image = np.stack([base, base * 0.8, 255 - base], -1) + rng.normal(0, 5, (h, w, 3))
    masks = np.zeros((2, h, w), bool)
    masks[0, h // 8 : h // 2, w // 10 : w // 2] = True
    masks[1, h // 2 : h - 5, w // 2 : w - 8] = True
    for m in masks:
        image[m] = [230, 40, 40]
    boxes = np.array([[xx[m].min(), yy[m].min(), xx[m].max(), yy[m].max()] for m in masks])
    return image.clip(0, 255).astype(np.uint8), masks, boxes.astype(np.float32)


class _PredictorItems:
    """Items made with SamPredictor's own preprocessing (so both paths see the same input)."""

    def __init__(self, sam, scenes):
        self.predictor = SamPredictor(sam)
        self.items, self.gt = [], []
        for k, (image, masks, boxes) in enumerate(scenes):
            t = self.predictor.transform
            pixels = torch.as_tensor(t.apply_image(image)).permute(2, 0, 1)[None].float()
            self.items.append(
                {
                    "image": sam.preprocess(pixels)[0],
                    "masks": torch.zeros(len(masks), 1, 1),  # unused by evaluation
                    "boxes": torch.as_tensor(t.apply_boxes(boxes, image.shape[:2])),
                    "original_size": image.shape[:2],
                    "input_size": tuple(pixels.shape[-2:]),
                    "name": f"scene/{k}",
                }
            )
            self.gt.append(masks)

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        return self.items[index]

    def original_masks(self, index):
        return self.gt[index]


def test_masks_and_scores_at_original_size_match_sam_predictor(tmp_path):
    torch.manual_seed(0)
    sam = build_sam("tiny")
    scenes = [_scene(0, 90, 150), _scene(1, 200, 120)]
    data = _PredictorItems(sam, scenes)
    result = evaluate_model(sam, data, save_masks=tmp_path)
    assert [(r["index"], r["instance"]) for r in result.rows] == [(0, 0), (0, 1), (1, 0), (1, 1)]

    for k, (image, gt, boxes) in enumerate(scenes):
        saved = np.load(tmp_path / f"scene_{k}.npz")
        data.predictor.set_image(image)
        for j, box in enumerate(boxes):
            oracle, _, _ = data.predictor.predict(box=box, multimask_output=False)
            assert saved["masks"][j].shape == image.shape[:2]
            np.testing.assert_array_equal(saved["masks"][j], oracle[0])
            inter = np.logical_and(oracle[0], gt[j]).sum()
            dsc = 2 * inter / (oracle[0].sum() + gt[j].sum())
            iou = inter / np.logical_or(oracle[0], gt[j]).sum()
            row = result.rows[2 * k + j]
            assert row["dsc"] == pytest.approx(dsc) and row["iou"] == pytest.approx(iou)
            assert row["area"] == gt[j].sum()
    assert 0 < result.summary()["mdsc"] < 1  # a non-trivial check, not all-empty masks
    summary = result.summary()
    assert summary["miou"] == pytest.approx(np.mean([r["iou"] for r in result.rows]))
    assert (summary["n_instances"], summary["n_images"]) == (4, 2)


def test_mean_std_in_the_papers_style():
    runs = [0.913, 0.909, 0.918]
    mean, std = mean_std(runs)
    assert (mean, std) == pytest.approx((statistics.mean(runs), statistics.stdev(runs)))
    text = f"{100 * statistics.mean(runs):.1f} ± {100 * statistics.stdev(runs):.1f}"
    assert format_mean_std(runs) == text
    assert format_mean_std([0.5]) == "50.0 ± 0.0"
    table = seed_table({"LoRA": {"nuclei": runs}, "freeze": {"nuclei": [0.5], "mri": [0.25]}})
    lines = table.splitlines()
    assert lines[0] == "| method | nuclei | mri |"
    assert lines[2] == f"| LoRA | {text} |  |"
    with pytest.raises(ValueError, match="at least one"):
        mean_std([])


def _folder_dataset(root):
    names = {"train": ["a", "b"], "val": ["d"], "test": ["c"]}
    for seed, name in enumerate(names["train"] + names["test"] + names["val"]):
        image, masks, _ = _scene(seed, 80, 120)
        write_image(root / "images" / f"{name}.png", image)
        write_mask(root / "masks" / name, masks)
    write_splits(root, names)
    write_dataset_json(root, {"name": "toy", "domain": "natural", "metric": "miou"})


def test_train_and_evaluate_clis_end_to_end(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COBOT_CACHE", str(tmp_path / "cache"))  # the dataset check's cache
    _folder_dataset(tmp_path / "toy")
    config = tmp_path / "toy.yaml"
    config.write_text(
        f"name: toy\noutput_dir: {tmp_path}/runs/{{name}}\n"
        "model: {type: tiny, checkpoint: null}\n"
        f"data: {{root: {tmp_path}/toy, jitter: 3}}\n"
        "peft: {method: lora, cobot: true}\n"
        "optim: {epochs: 1, lr: 1e-3}\nruntime: {progress: false}\n"
    )
    assert train.main([str(config), "eval.save_masks=true"]) == 0
    run = tmp_path / "runs" / "toy"
    trained = json.loads((run / "results.json").read_text())
    assert {CHECKPOINT_NAME, "metrics.jsonl", "adapter", "masks"} <= {p.name for p in run.iterdir()}
    assert trained["metrics"]["n_instances"] == 2
    events = [r["event"] for r in trained["history"]]
    assert events == ["val", "step", "step", "epoch", "val", "eval"]  # zero-shot val first
    assert trained["validation"]["val_count"] == 2

    assert evaluate.main([str(config)]) == 0
    scored = json.loads((run / "eval.json").read_text())
    assert scored["summary"] == pytest.approx(trained["metrics"])

    assert train.main([str(config), "optim.lr_max=3"]) == 2
    assert "unknown config key 'optim.lr_max'" in capsys.readouterr().err
    assert evaluate.main([str(config), "--adapter", str(tmp_path / "nowhere")]) == 2
    assert "no adapter config at" in capsys.readouterr().err
