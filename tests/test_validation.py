"""Validated training (issue 18): the kept adapter is the best on validation, early stopping,
the zero-shot warning, resuming model selection, and validation leaving training unchanged.

Runs use the micro SAM of test_train.py (random init, 64 px, 4 blocks) on synthetic shapes,
so each test takes seconds on one CPU thread. Scores are re-measured from the files a run
leaves (RUN_DIR/adapter loaded into a fresh model), not read back from the trainer.

The oracle for "the kept adapter is the best": a validation set whose ground truth is the
prediction of one chosen model (pseudo-labels). That model scores exactly 1 on it and every
model that predicts anything else scores less, so the run must keep exactly that model: the
epoch-2 model of the same run, or the zero-shot model for the warning test.
"""

from __future__ import annotations

import copy
import json

import pytest
import torch
from run_configs import tiny_run_config

from cobot_lib.backbone.prompting import upsample_logits
from cobot_lib.backbone.sam import SamSpec, _assemble
from cobot_lib.data.synthetic import SyntheticShapes
from cobot_lib.engine.config import ConfigError
from cobot_lib.engine.evaluation import evaluate_model
from cobot_lib.engine.runtime import PromptedSam, build_val_set, item_prompts
from cobot_lib.engine.trainer import Trainer
from cobot_lib.engine.validation import Validator
from cobot_lib.peft import adapter_state_dict, load_adapter

pytestmark = pytest.mark.usefixtures("one_thread")

MICRO = SamSpec(32, 4, 2, (1, 3), 64, 16, 4, 32, 64, 2, 32)


def _micro_sam():
    torch.manual_seed(11)
    return _assemble(MICRO).eval()


def _config(tmp_path, name="run", **sections):
    return tiny_run_config(tmp_path, name, epochs=4, lr=1e-4, **sections)


def _train_set():
    return SyntheticShapes(4, image_size=64, seed=3, train=True, jitter_px=3, max_instances=3)


def _val_set():
    return SyntheticShapes(3, image_size=64, seed=8, train=False, max_instances=3)


def _vals(trainer):
    return [r for r in trainer.history if r["event"] == "val"]


def _score_adapter(directory, val_set) -> float:
    """mIoU of a fresh micro SAM with the saved adapter: an independent re-measurement."""
    sam = _micro_sam()
    load_adapter(sam, directory)
    return evaluate_model(sam, val_set).summary()["miou"]


class _PseudoLabelled(torch.utils.data.Dataset):
    """Validation items whose ground truth is the given model's own prediction: that model
    scores exactly 1 on them, so no other weights can beat it (an exact oracle)."""

    def __init__(self, sam, base):
        model, self.items = PromptedSam(sam.eval()), []
        for i in range(len(base)):
            item = dict(base[i])
            with torch.no_grad():
                logits = model([item_prompts(item)], images=item["image"][None])[0]
            item["masks"] = (upsample_logits(logits, 64)[:, 0] > 0).float()
            self.items.append(item)

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        return self.items[index]


@pytest.fixture(scope="module")
def epoch2_val_set(tmp_path_factory):
    """Validation items labelled by the epoch-2 model of a run without validation."""
    tmp = tmp_path_factory.mktemp("reference")
    kept = {}
    trainer = Trainer(_config(tmp), sam=_micro_sam(), train_set=_train_set(),
                      callbacks=[lambda r: r["event"] == "epoch" and r["epoch"] == 2 and
                                 kept.setdefault("sam", copy.deepcopy(trainer.sam))])  # fmt: skip
    trainer.fit()
    return _PseudoLabelled(kept["sam"], _val_set())


@pytest.fixture(scope="module")
def validated(tmp_path_factory, epoch2_val_set):
    tmp = tmp_path_factory.mktemp("validated")
    trainer = Trainer(_config(tmp), sam=_micro_sam(), train_set=_train_set(),
                      val_set=epoch2_val_set)  # fmt: skip
    trainer.fit()
    return trainer


def test_the_kept_adapter_is_the_best_on_validation(validated, epoch2_val_set):
    vals = _vals(validated)
    assert [r["global_step"] for r in vals] == [0, 4, 8, 12, 16]  # zero-shot, then every epoch
    best = max(vals, key=lambda r: r["miou"])
    assert (best["epoch"], best["miou"]) == (2, 1.0)  # the model that labelled the set
    assert all(r["miou"] < 1.0 for r in vals if r is not best)
    summary = validated.validation
    assert (summary.best, summary.best_step, summary.best_epoch) == (
        best["miou"],
        best["global_step"],
        best["epoch"],
    )
    run = validated.run_dir
    assert _score_adapter(run / "adapter", epoch2_val_set) == best["miou"]
    assert _score_adapter(run / "last_adapter", epoch2_val_set) == vals[-1]["miou"]
    selection = json.loads((run / "adapter" / "selection.json").read_text())
    assert selection["global_step"] == best["global_step"]
    # the trainer's model ends holding the kept weights
    assert evaluate_model(validated.sam, epoch2_val_set).summary()["miou"] == best["miou"]
    assert summary.beat_zero_shot is True
    assert summary.zero_shot == vals[0]["miou"] and summary.final == vals[-1]["miou"]


def test_the_summary_line_compares_zero_shot_best_and_final(validated):
    line = validated.validation.line("val")
    s = validated.validation
    for value in (s.zero_shot, s.best, s.final):
        assert f"{100 * value:.1f}%" in line
    assert line.startswith("validation mIoU on 'val': zero-shot")


def test_validation_does_not_change_what_is_trained(validated, tmp_path):
    plain = Trainer(_config(tmp_path), sam=_micro_sam(), train_set=_train_set())
    plain.fit()
    assert plain.selection is None and not _vals(plain)
    last = _micro_sam()
    load_adapter(last, validated.run_dir / "last_adapter")
    for key, value in adapter_state_dict(plain.sam).items():
        assert torch.equal(adapter_state_dict(last)[key], value), key


def test_resumed_selection_keeps_the_same_adapter(validated, epoch2_val_set, tmp_path):
    def crash(record):
        if record["event"] == "step" and record["global_step"] == 10:
            raise KeyboardInterrupt("simulated kill")

    first = Trainer(_config(tmp_path), sam=_micro_sam(), train_set=_train_set(),
                    val_set=epoch2_val_set, callbacks=[crash])  # fmt: skip
    with pytest.raises(KeyboardInterrupt):
        first.fit()
    resumed = Trainer(_config(tmp_path), sam=_micro_sam(), train_set=_train_set(),
                      val_set=epoch2_val_set)  # fmt: skip
    resumed.fit()
    assert [(r["global_step"], r["miou"]) for r in _vals(resumed)] == [
        (r["global_step"], r["miou"]) for r in _vals(validated)
    ]
    assert resumed.validation == validated.validation
    for key, value in adapter_state_dict(validated.sam).items():
        assert torch.equal(adapter_state_dict(resumed.sam)[key], value), key


def test_too_high_lr_ends_with_the_zero_shot_warning(tmp_path, capsys):
    sam = _micro_sam()
    val_set = _PseudoLabelled(sam, _val_set())
    cfg = _config(tmp_path, optim={"epochs": 2, "lr": 0.5})  # deliberately far too high
    trainer = Trainer(cfg, sam=sam, train_set=_train_set(), val_set=val_set)
    trainer.fit()
    s = trainer.validation
    assert s.zero_shot == 1.0 and s.best_trained < 1.0 and s.beat_zero_shot is False
    assert (s.best_epoch, s.best_step) == (0, 0)
    err = capsys.readouterr()
    assert "adaptation never beat the zero-shot model" in err.err
    assert "lower learning rate (optim.lr=0.5, e.g. 0.05)" in err.err
    assert "fewer epochs (optim.epochs=2)" in err.err and "more training data" in err.err
    assert err.out.strip().splitlines()[-1].endswith("kept: the zero-shot model")
    # the kept adapter is the untrained one: the model predicts what zero-shot predicts
    assert evaluate_model(trainer.sam, val_set).summary()["miou"] == 1.0
    assert _score_adapter(trainer.run_dir / "adapter", val_set) == 1.0


def test_early_stopping_after_patience_and_a_resume_stays_stopped(tmp_path, capsys):
    cfg = _config(tmp_path, validation={"patience": 1, "min_delta": 1.0})  # nothing can improve
    trainer = Trainer(cfg, sam=_micro_sam(), train_set=_train_set(), val_set=_val_set())
    trainer.fit()
    events = [r["event"] for r in trainer.history]
    assert events.count("step") == 4 and events[-1] == "early_stop"  # one epoch of 4 steps
    assert trainer.validation.early_stopped and trainer.position == (1, 0, 4)
    assert "stopped early" in capsys.readouterr().out
    again = Trainer(cfg, sam=_micro_sam(), train_set=_train_set(), val_set=_val_set())
    again.fit()
    assert [r["event"] for r in again.history].count("step") == 4


def test_validation_every_n_steps(tmp_path):
    cfg = _config(tmp_path, optim={"epochs": 2}, validation={"every_steps": 3})
    trainer = Trainer(cfg, sam=_micro_sam(), train_set=_train_set(), val_set=_val_set())
    trainer.fit()
    # zero-shot, steps 3 and 6 (mid-epoch), and the last step 8 scored at the end
    assert [r["global_step"] for r in _vals(trainer)] == [0, 3, 6, 8]


def test_validator_rules():
    v = Validator("miou", patience=2, min_delta=0.01)
    assert v.observe({"miou": 0.5}, 0, 0)["improved"]
    assert not v.observe({"miou": 0.505}, 1, 4)["improved"]  # within min_delta
    assert v.observe({"miou": 0.52}, 2, 8)["improved"] and not v.stopped
    v.observe({"miou": 0.1}, 3, 12)
    v.observe({"miou": 0.2}, 4, 16)
    assert v.stopped and v.summary().best_step == 8
    with pytest.raises(ValueError, match="metric must be one of"):
        Validator("accuracy")


def test_a_dataset_without_the_val_split_is_a_clear_error(tmp_path):
    from cobot_lib.data import write_dataset_json, write_mask, write_splits
    from cobot_lib.data.layout import write_image

    root = tmp_path / "set"
    image, masks = torch.zeros(32, 32, dtype=torch.uint8).numpy(), torch.zeros(1, 32, 32).bool()
    masks[0, 4:9, 4:9] = True
    for name in ("a", "b"):
        write_image(root / "images" / f"{name}.png", image)
        write_mask(root / "masks" / name, masks.numpy())
    write_splits(root, {"train": ["a"], "test": ["b"]})
    write_dataset_json(root, {"name": "toy"})
    cfg = _config(tmp_path, data={"root": str(root)})
    with pytest.raises(ConfigError) as info:
        build_val_set(cfg)
    text = str(info.value)
    assert "data.val_split='val'" in text and str(root / "splits" / "val.txt") in text
    assert "data.val_split=null" in text
    assert build_val_set(_config(tmp_path, data={"root": str(root), "val_split": None})) is None


def test_sweep_tables_take_the_validation_fields_as_results_not_parameters(validated):
    import pandas as pd

    from cobot_lib.engine.validation import VALIDATION_FIELDS, validation_fields
    from cobot_lib.experiments.tables import summarise, tidy

    base = {"dataset": "demo:nuclei", "method": "lora", "cobot": True, "rank": 4, "miou": 0.8,
            "mdsc": 0.85, "seconds": 10.0, "zero_shot_miou": 0.7, "zero_shot_mdsc": 0.75,
            "trainable_params": 10, "image_encoder_params": 5}  # fmt: skip
    rows = [
        {**base, "seed": 0, **validation_fields(validated.validation)},
        {**base, "seed": 1, **validation_fields(None)},
    ]
    assert set(validation_fields(None)) == set(VALIDATION_FIELDS)
    df = tidy(pd.DataFrame(rows))
    assert str(df["val_best_epoch"].dtype) == "Int64"
    summary = summarise(df)
    assert len(summary) == 1 and summary["n_seeds"].item() == 2  # not split by val_* values
