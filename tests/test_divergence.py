"""The divergence guard: a run stops on a blow-up, keeps only a checkpoint from before it, and
resumes from finite weights.

Unit tests feed the guard loss sequences whose verdicts follow from the rule by hand (constant
losses have median 1, so a loss of 19.9 is 19.9x the median). Training tests use a seeded micro
SAM (test_train's) on synthetic shapes, four steps per epoch, and steer the loss with
``ScheduledLoss``: its value is set per step (the gradient scaled alike), or its gradient is made
NaN while its value stays finite, the two ways a "last good" checkpoint used to go bad.
"""

from __future__ import annotations

import math

import pytest
import torch
from bad_inputs import steps_logged
from safetensors.torch import load_file

from cobot_lib.backbone.sam import SamSpec, _assemble
from cobot_lib.data.synthetic import SyntheticShapes
from cobot_lib.engine import trainer as trainer_module
from cobot_lib.engine.checkpoint import CHECKPOINT_NAME, load_checkpoint
from cobot_lib.engine.config import ConfigError, load_config
from cobot_lib.engine.guard import DivergenceError, DivergenceGuard, NonFiniteLossError
from cobot_lib.engine.losses import bce_dice_loss
from cobot_lib.engine.trainer import Trainer
from cobot_lib.peft import adapter_state_dict

pytestmark = pytest.mark.usefixtures("one_thread")

MICRO = SamSpec(32, 4, 2, (1, 3), 64, 16, 4, 32, 64, 2, 32)


def _names():
    return lambda: ["img"]


def _feed(guard: DivergenceGuard, losses, start: int = 1) -> None:
    for step, loss in enumerate(losses, start=start):
        guard.check_loss(loss, step, f"global step {step}", _names())


# ---- the rule ---------------------------------------------------------------------------------
def test_factor_of_the_median_stops_and_sqrt_factor_holds_checkpoints_back():
    guard = DivergenceGuard(factor=20.0, window=50)
    _feed(guard, [1.0] * 10)
    assert guard.may_save() and guard.reference() == 1.0
    _feed(guard, [4.4], start=11)  # below sqrt(20) = 4.47: nothing happens
    assert guard.may_save()
    _feed(guard, [19.9], start=12)  # elevated, not stopped
    assert not guard.may_save() and guard.trouble_since == 12
    _feed(guard, [1.0], start=13)  # back to normal: checkpoints may be written again
    assert guard.may_save() and guard.trouble_since is None
    with pytest.raises(DivergenceError) as info:
        _feed(guard, [20.5], start=14)
    assert "20.5x the running median 1" in str(info.value) and "global step 14" in str(info.value)


def test_trouble_start_is_named_and_kept_checkpoint_predates_it():
    guard = DivergenceGuard(factor=20.0, window=50)
    _feed(guard, [2.0] * 6)
    guard.saved("run/checkpoint.safetensors", 6)
    _feed(guard, [10.0], start=7)  # 5x: trouble begins at step 7
    with pytest.raises(DivergenceError) as info:
        _feed(guard, [100.0], start=8)  # median of [2]*6 + [10] is 2: 50x
    text = str(info.value)
    assert "first rose above 4.5x the median at global step 7" in text
    assert "Kept checkpoint: run/checkpoint.safetensors (after global step 6" in text
    assert "written before step 7" in text


def test_warm_up_zero_losses_and_the_window():
    guard = DivergenceGuard(factor=20.0, window=50)
    assert guard.reference() is None
    _feed(guard, [1.0, 2.0, 39.0])  # while fewer than 5 are known: against the maximum
    assert guard.reference() == 39.0 and not guard.may_save()  # 39 is 19.5x 2: elevated
    with pytest.raises(DivergenceError, match=r"20.5x the running maximum 39"):
        _feed(guard, [799.5], start=4)
    zeros = DivergenceGuard(factor=20.0, window=50)
    _feed(zeros, [0.0] * 8 + [5.0])  # steps without instances say nothing about the scale
    assert list(zeros.losses) == [5.0] and zeros.reference() == 5.0
    short = DivergenceGuard(factor=20.0, window=3)
    _feed(short, [1.0, 1.0, 1.0, 10.0, 10.0])  # 10 against medians of [1, 1, 1], [1, 1, 10]
    assert not short.may_save()
    _feed(short, [10.0], start=6)  # against [1, 10, 10]: median 10, the new level is normal
    assert short.may_save() and short.reference() == 10.0


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_loss_stops_even_without_a_factor(bad):
    guard = DivergenceGuard(factor=None)
    _feed(guard, [1.0, 1e9, 1.0])  # no ratio test at all
    with pytest.raises(NonFiniteLossError, match="non-finite loss"):
        _feed(guard, [bad], start=4)


def test_state_round_trip_and_bad_settings():
    guard = DivergenceGuard(factor=20.0, window=4)
    _feed(guard, [1.0, 2.0, 3.0, 4.0, 5.0, 40.0])
    again = DivergenceGuard(factor=20.0, window=4)
    again.load_state_dict(guard.state_dict())
    assert list(again.losses) == [3.0, 4.0, 5.0, 40.0] and again.trouble_since == 6
    for factor, window in ((1.0, 50), (0.5, 50), (20.0, 0)):
        with pytest.raises(ValueError):
            DivergenceGuard(factor, window)
    with pytest.raises(ConfigError, match="runtime.divergence_factor must be > 1"):
        load_config(None, ["runtime.divergence_factor=1"])
    assert load_config(None, ["runtime.divergence_factor=null"]).runtime.divergence_factor is None


def test_check_finite_names_the_tensors():
    guard = DivergenceGuard()
    guard.check_finite([("a", torch.ones(3)), ("steps", torch.tensor([1, 2]))], 5)
    with pytest.raises(DivergenceError, match=r"after global step 5 1 tensors.*\['b'\]"):
        guard.check_finite([("a", torch.ones(3)), ("b", torch.tensor([0.0, math.nan]))], 5)


# ---- in a training run ------------------------------------------------------------------------
class ScheduledLoss:
    """bce_dice_loss with the value ``values[step]`` at the given (1-based) steps, gradients
    scaled alike; at step ``nan_grad_at`` the value stays but the gradient becomes NaN."""

    def __init__(self, values: dict[int, float], nan_grad_at: int | None = None):
        self.values, self.nan_grad_at, self.calls = values, nan_grad_at, 0

    def __call__(self, logits, target):
        self.calls += 1  # one image per step: one call per step
        loss = bce_dice_loss(logits, target)
        if self.calls in self.values:
            loss = loss / loss.detach() * self.values[self.calls]
        if self.calls == self.nan_grad_at:
            logits.register_hook(lambda g: g * math.nan)
        return loss


def _trainer(tmp_path, epochs=3):
    config = load_config({
        "output_dir": str(tmp_path / "run"),
        "model": {"type": "tiny", "checkpoint": None},
        "peft": {"method": "lora", "cobot": True},
        "optim": {"epochs": epochs, "lr": 1e-3},
        "runtime": {"progress": False},
    })  # fmt: skip
    torch.manual_seed(11)
    sam = _assemble(MICRO).eval()
    data = SyntheticShapes(4, image_size=64, seed=3, train=True, jitter_px=3, max_instances=3)
    return Trainer(config, sam=sam, train_set=data)


def _resume_is_finite(tmp_path, kept_step: int) -> None:
    """Resuming (resume=auto) starts from the kept checkpoint's finite weights and finishes."""
    resumed = _trainer(tmp_path)
    assert resumed.resume["global_step"] == kept_step
    resumed.fit()
    assert resumed.position == (3, 0, 12) and steps_logged(resumed.run_dir) == 12
    for name, value in adapter_state_dict(resumed.sam).items():
        assert torch.isfinite(value).all(), name


def _kept(tmp_path, step: int) -> dict:
    kept = load_checkpoint(tmp_path / "run")
    assert kept["global_step"] == step
    for name, value in kept["adapter"].items():
        assert torch.isfinite(value).all(), name
    exported = load_file(str(tmp_path / "run" / "adapter" / "adapter_model.safetensors"))
    assert exported.keys() == kept["adapter"].keys()  # the adapter is the kept checkpoint's
    for name, value in exported.items():
        assert torch.equal(value, kept["adapter"][name]), name
    return kept


def test_finite_blow_up_stops_and_keeps_the_checkpoint_before_the_trouble(tmp_path, monkeypatch):
    # steps 1-7 at loss 1 (median 1); step 8, the last of epoch 2, is elevated (10x), so the
    # epoch-2 checkpoint is held back; step 9 is 1000x: stop. Kept: the epoch-1 checkpoint.
    schedule = {k: 1.0 for k in range(1, 8)} | {8: 10.0, 9: 1000.0}
    monkeypatch.setattr(trainer_module, "bce_dice_loss", ScheduledLoss(schedule))
    trainer = _trainer(tmp_path)
    with pytest.raises(DivergenceError) as info:
        trainer.fit()
    text = str(info.value)
    assert "epoch 3, step 1 (global step 9)" in text and "1e+03x the running median 1" in text
    assert "runtime.divergence_factor=20" in text and "at global step 8" in text
    assert "synthetic_s3_" in text  # the samples of the batch
    assert f"{tmp_path / 'run' / CHECKPOINT_NAME} (after global step 4" in text
    assert steps_logged(tmp_path / "run") == 8  # step 9's update was never applied
    _kept(tmp_path, 4)
    monkeypatch.undo()
    _resume_is_finite(tmp_path, 4)


def test_weights_damaged_by_a_finite_loss_are_never_checkpointed(tmp_path, monkeypatch):
    # step 8's loss is finite but its gradient is NaN: Adam writes NaN into the weights. The
    # epoch-2 checkpoint would hold them; it is refused and the epoch-1 one is kept.
    monkeypatch.setattr(trainer_module, "bce_dice_loss", ScheduledLoss({}, nan_grad_at=8))
    trainer = _trainer(tmp_path)
    with pytest.raises(DivergenceError) as info:
        trainer.fit()
    assert "after global step 8" in str(info.value) and "NaN or inf" in str(info.value)
    assert "(after global step 4" in str(info.value)
    assert any(not torch.isfinite(v).all() for v in adapter_state_dict(trainer.sam).values())
    _kept(tmp_path, 4)
    monkeypatch.undo()
    _resume_is_finite(tmp_path, 4)


def test_an_excursion_at_the_last_step_still_writes_the_final_checkpoint(tmp_path, monkeypatch):
    schedule = {k: 1.0 for k in range(1, 8)} | {8: 10.0}  # elevated at the run's last step
    monkeypatch.setattr(trainer_module, "bce_dice_loss", ScheduledLoss(schedule))
    trainer = _trainer(tmp_path, epochs=2)
    trainer.fit()
    _kept(tmp_path, 8)  # nothing can follow the last step: its state is the run's result
