"""The learning-rate schedule (``engine.schedule``), against torch's CosineAnnealingLR.

The rate is a pure function of the global step: a cosine run stopped and resumed ends on the
same weights as one that was never stopped, and a constant run keeps the fingerprint it had
before the schedule existed.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from run_configs import tiny_run_config

from cobot_lib.backbone.sam import SamSpec, _assemble
from cobot_lib.data.synthetic import SyntheticShapes
from cobot_lib.engine.checkpoint import CheckpointError, result_items
from cobot_lib.engine.config import ConfigError
from cobot_lib.engine.schedule import lr_factor
from cobot_lib.engine.trainer import Trainer
from cobot_lib.peft import adapter_state_dict

pytestmark = pytest.mark.usefixtures("one_thread")
LR = 1e-3
MICRO = SamSpec(32, 4, 2, (1, 3), 64, 16, 4, 32, 64, 2, 32)


def torch_cosine(horizon: int) -> list[float]:
    """The rates torch's own scheduler gives for steps 0 .. horizon (eta_min = 0)."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=LR)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=horizon)
    rates = []
    for _ in range(horizon + 1):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 300))
def test_cosine_is_torchs_cosine_annealing_and_stays_at_zero_after(horizon: int) -> None:
    ours = [LR * lr_factor("cosine", t, horizon) for t in range(horizon + 1)]
    assert ours == pytest.approx(torch_cosine(horizon), rel=1e-9, abs=1e-15)
    assert lr_factor("cosine", horizon + 5, horizon) == 0.0
    assert all(lr_factor("constant", t, horizon) == 1.0 for t in range(horizon + 2))


def test_bad_schedule_or_horizon_is_refused() -> None:
    with pytest.raises(ValueError, match=r"schedule='linear'; expected one of"):
        lr_factor("linear", 0, 4)
    with pytest.raises(ValueError, match="horizon must be a positive"):
        lr_factor("cosine", 0, 0)


def _config(tmp_path, max_steps=None, **optim):
    runtime = {"progress": False, "max_steps": max_steps}
    return tiny_run_config(tmp_path, "run", epochs=2, lr=LR, optim=optim, runtime=runtime)


def _trainer(config, **kwargs) -> Trainer:
    torch.manual_seed(11)
    sam = _assemble(MICRO).eval()
    data = SyntheticShapes(4, image_size=64, seed=3, train=True, jitter_px=3, max_instances=3)
    return Trainer(config, sam=sam, train_set=data, **kwargs)


def test_the_trainer_steps_with_the_cosine_rates(tmp_path) -> None:
    rates: list[float] = []
    trainer = _trainer(_config(tmp_path, schedule="cosine"))
    trainer.callbacks.append(
        lambda r: rates.append(trainer.optimizer.param_groups[0]["lr"]) if r["event"] == "step"
        else None
    )  # fmt: skip
    trainer.fit()
    assert rates == pytest.approx(torch_cosine(8)[:8], rel=1e-9)  # 2 epochs x 4 images


def test_a_stopped_cosine_run_resumes_onto_the_same_weights(tmp_path) -> None:
    straight = _trainer(_config(tmp_path / "a", schedule="cosine", decay_steps=6))
    straight.fit()
    _trainer(_config(tmp_path / "b", 3, schedule="cosine", decay_steps=6)).fit()
    resumed = _trainer(_config(tmp_path / "b", schedule="cosine", decay_steps=6))
    resumed.fit()
    ref, got = adapter_state_dict(straight.sam), adapter_state_dict(resumed.sam)
    assert ref.keys() == got.keys() and len(ref) > 0
    for key in ref:
        torch.testing.assert_close(got[key], ref[key], rtol=0, atol=0, msg=key)


def test_constant_keeps_its_fingerprint_and_cosine_is_part_of_it(tmp_path) -> None:
    constant = result_items(_config(tmp_path))
    assert not any(k.startswith(("optim.schedule", "optim.decay_steps")) for k in constant)
    cosine = result_items(_config(tmp_path, schedule="cosine"))
    assert cosine["optim.schedule"] == "cosine" and "optim.decay_steps" not in cosine
    _trainer(_config(tmp_path, 1)).fit()
    with pytest.raises(CheckpointError, match=r"optim\.schedule"):
        _trainer(_config(tmp_path, schedule="cosine"))


@pytest.mark.parametrize(
    ("optim", "match"),
    [
        ({"schedule": "linear"}, r"optim\.schedule='linear'; expected one of \['constant'"),
        ({"schedule": "constant", "decay_steps": 10}, r"decay_steps=10 only applies with"),
        ({"schedule": "cosine", "decay_steps": 0}, r"optim\.decay_steps must be a positive"),
    ],
)
def test_bad_schedule_settings_name_the_key(tmp_path, optim, match) -> None:
    with pytest.raises(ConfigError, match=match):
        _config(tmp_path, **optim).validate()
