"""The training engine: exact resume, atomic checkpoints, fast paths and failing early.

Runs use a randomly initialised *micro* SAM (the tiny family's layout at 64 px, 4 blocks,
seeded) on a few synthetic images, so the file needs no pretrained model and each test takes
seconds on 2 CPU cores; activation checkpointing is checked on the tiny model itself.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from run_configs import tiny_run_config

from cobot_lib.backbone.prompting import Prompts
from cobot_lib.backbone.sam import SamSpec, _assemble
from cobot_lib.data.synthetic import SyntheticShapes
from cobot_lib.engine import checkpoint
from cobot_lib.engine.checkpoint import (
    CHECKPOINT_NAME,
    CheckpointError,
    atomic_save,
    capture_rng,
    load_checkpoint,
    restore_rng,
)
from cobot_lib.engine.config import ConfigError, load_config
from cobot_lib.engine.runtime import (
    EmbeddingCache,
    PromptedSam,
    disable_activation_checkpointing,
    enable_activation_checkpointing,
)
from cobot_lib.engine.trainer import NonFiniteLossError, Trainer
from cobot_lib.peft import adapter_state_dict

pytestmark = pytest.mark.usefixtures("one_thread")


def _config(tmp_path, name="run", **sections):
    return tiny_run_config(tmp_path, name, epochs=2, lr=1e-3, **sections)


MICRO = SamSpec(32, 4, 2, (1, 3), 64, 16, 4, 32, 64, 2, 32)


def _micro_sam():
    torch.manual_seed(11)
    return _assemble(MICRO).eval()


def _train_set(n=4):
    return SyntheticShapes(n, image_size=64, seed=3, train=True, jitter_px=3, max_instances=3)


def _trainer(config, **kwargs):
    return Trainer(config, sam=_micro_sam(), **kwargs)


def _weights(trainer):
    return {k: v.detach().clone() for k, v in adapter_state_dict(trainer.sam).items()}


def _step_losses(trainer):
    return [(r["global_step"], r["loss"]) for r in trainer.history if r["event"] == "step"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted 2-epoch run (8 steps) of Adaptformer + COBOT, dropout on."""
    tmp = tmp_path_factory.mktemp("reference")
    trainer = _trainer(_config(tmp), train_set=_train_set())
    trainer.fit()
    return trainer


def test_stop_mid_epoch_and_resume_gives_the_same_weights(reference, tmp_path):
    first = _trainer(_config(tmp_path, runtime={"max_steps": 5}), train_set=_train_set())
    first.fit()
    saved = load_checkpoint(tmp_path / "run")
    assert (saved["epoch"], saved["step_in_epoch"], saved["global_step"]) == (1, 1, 5)
    resumed = _trainer(_config(tmp_path), train_set=_train_set())
    resumed.fit()
    ref, got = _weights(reference), _weights(resumed)
    assert ref.keys() == got.keys() and len(ref) > 0
    for key in ref:
        torch.testing.assert_close(got[key], ref[key], rtol=0, atol=0, msg=key)
    assert _step_losses(resumed) == _step_losses(reference)
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["event"] for x in lines].count("step") == 8


def test_crash_mid_epoch_resumes_from_the_last_epoch_checkpoint(reference, tmp_path):
    def crash(record):
        if record.get("global_step") == 6 and record["event"] == "step":
            raise KeyboardInterrupt("simulated kill")

    with pytest.raises(KeyboardInterrupt):
        _trainer(_config(tmp_path), train_set=_train_set(), callbacks=[crash]).fit()
    assert load_checkpoint(tmp_path / "run")["global_step"] == 4  # end of epoch 1
    resumed = _trainer(_config(tmp_path), train_set=_train_set())
    resumed.fit()
    for key, value in _weights(reference).items():
        torch.testing.assert_close(_weights(resumed)[key], value, rtol=0, atol=0, msg=key)


def test_resuming_a_finished_run_trains_no_more(reference, tmp_path):
    again = _trainer(_config(reference.run_dir.parent), train_set=[1])
    assert again.resume is not None and again.position == (0, 0, 0)
    again.fit()
    assert again.position[0] == 2
    for key, value in _weights(reference).items():
        assert torch.equal(_weights(again)[key], value)


def test_checkpoint_write_is_atomic_and_round_trips(reference, tmp_path, monkeypatch):
    payload = load_checkpoint(reference.run_dir)
    del payload["path"]
    path = atomic_save(payload, tmp_path / CHECKPOINT_NAME)
    before = path.read_bytes()
    assert before == (reference.run_dir / CHECKPOINT_NAME).read_bytes()  # read + write = same

    def torn_save(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint, "save_file", torn_save)
    with pytest.raises(OSError, match="disk full"):
        atomic_save(payload, path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == [CHECKPOINT_NAME]


def test_checkpoint_round_trips_every_rng_state_exactly(reference, tmp_path):
    payload = load_checkpoint(reference.run_dir)
    del payload["path"]
    random.seed(5), np.random.seed(7), torch.manual_seed(9)
    fake_cuda = [torch.randint(0, 256, (16,), dtype=torch.uint8) for _ in range(2)]
    payload["rng"] = {**capture_rng(), "cuda": fake_cuda}  # CUDA states: stored as tensors
    after = (random.random(), np.random.rand(), torch.rand(3))  # the draws that must repeat
    again = load_checkpoint(atomic_save(payload, tmp_path / CHECKPOINT_NAME))
    assert all(torch.equal(a, b) for a, b in zip(again["rng"]["cuda"], fake_cuda, strict=True))
    restore_rng(again["rng"])  # (the CUDA part only where CUDA is)
    assert (random.random(), np.random.rand()) == after[:2]
    assert torch.equal(torch.rand(3), after[2])
    state, saved = again["optimizer"]["state"], payload["optimizer"]["state"]
    assert state.keys() == saved.keys() and len(state) > 0
    for index, values in saved.items():
        for name, value in values.items():
            assert torch.equal(state[index][name], value), (index, name)


class _PoisonedAfterEpoch(SyntheticShapes):
    """Returns a NaN image for index ``bad`` from epoch ``epoch`` on."""

    def __init__(self, bad: int, epoch: int):
        super().__init__(4, image_size=64, seed=3, train=True, jitter_px=3, max_instances=3)
        self.bad, self.from_epoch = bad, epoch

    def __getitem__(self, index):
        item = super().__getitem__(index)
        if index == self.bad and self.epoch >= self.from_epoch:
            item["image"] = torch.full_like(item["image"], float("nan"))
        return item


def test_nan_loss_names_step_and_sample_and_keeps_the_checkpoint(tmp_path):
    trainer = _trainer(_config(tmp_path), train_set=_PoisonedAfterEpoch(bad=2, epoch=1))
    with pytest.raises(NonFiniteLossError) as info:
        trainer.fit()
    message = str(info.value)
    assert "synthetic_s3_000002" in message and "epoch 2" in message
    assert "global step" in message and CHECKPOINT_NAME in message
    kept = load_checkpoint(tmp_path / "run")
    assert (kept["epoch"], kept["step_in_epoch"]) == (1, 0)
    for value in kept["adapter"].values():
        assert torch.isfinite(value).all()


def test_empty_dataset_and_unknown_key_fail_before_any_work(tmp_path):
    with pytest.raises(ConfigError, match="training set is empty"):
        _trainer(_config(tmp_path), train_set=[])
    with pytest.raises(ConfigError, match=r"unknown config key 'optim\.learning_rate'.*'lr'"):
        load_config(_config(tmp_path).to_dict(), ["optim.learning_rate=1e-3"])
    assert not (tmp_path / "run").exists()


def test_resuming_from_another_configuration_is_refused(reference, tmp_path):
    run_dir = reference.run_dir
    before = (run_dir / CHECKPOINT_NAME).read_bytes()
    other = _config(run_dir.parent, optim={"lr": 5e-4})
    with pytest.raises(CheckpointError, match=r"optim\.lr: 0\.001 -> 0\.0005"):
        _trainer(other, train_set=_train_set())
    assert (run_dir / CHECKPOINT_NAME).read_bytes() == before


def test_frozen_parameters_get_no_gradients(tmp_path):
    for method in ("lora", "decoder"):
        trainer = _trainer(
            _config(tmp_path, name=method, peft={"method": method, "cobot": False},
                    optim={"epochs": 1}, runtime={"max_steps": 1}),
            train_set=_train_set(2),
        )  # fmt: skip
        trainer.fit()
        for name, p in trainer.sam.named_parameters():
            if not p.requires_grad:
                assert p.grad is None, name
            elif "iou_prediction_head" not in name:  # the IoU head is not in the loss (Eq. 22)
                assert p.grad is not None, name
        encoder_grads = [p for p in trainer.sam.image_encoder.parameters() if p.grad is not None]
        assert (len(encoder_grads) > 0) == (method == "lora")
        assert (trainer.cache is not None) == (method == "decoder")


def test_embedding_cache_gives_the_same_training(tmp_path):
    runs = {}
    for cache in ("true", "false"):
        cfg = _config(tmp_path, name=cache, peft={"method": "decoder", "cobot": False},
                      runtime={"cache_embeddings": cache})  # fmt: skip
        trainer = _trainer(cfg, train_set=_train_set(3))
        trainer.fit()
        runs[cache] = (_weights(trainer), _step_losses(trainer), trainer.cache)
    assert runs["false"][2] is None and len(runs["true"][2]) == 3
    steps = [[s for s, _ in runs[c][1]] for c in ("true", "false")]
    assert steps[0] == steps[1] == [1, 2, 3, 4, 5, 6]
    losses = [[v for _, v in runs[c][1]] for c in ("true", "false")]
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    for key, value in runs["false"][0].items():
        torch.testing.assert_close(runs["true"][0][key], value, rtol=1e-4, atol=1e-6)


def test_embedding_cache_refuses_changing_images(tiny_sam):
    cache, model = EmbeddingCache(), PromptedSam(tiny_sam)
    images = torch.randn(1, 3, 256, 256)
    assert cache.get(model, images, [0]).shape == (1, 128, 16, 16)
    cache.get(model, images, [0])
    with pytest.raises(ValueError, match="different image"):
        cache.get(model, images + 1, [0])


def test_activation_checkpointing_gives_the_same_gradients(tiny_sam, tiny_batch):
    from cobot_lib.peft import apply_peft

    apply_peft(tiny_sam, "lora", cobot=True)
    for p in tiny_sam.image_encoder.parameters():  # non-zero B so every path gets a gradient
        if p.requires_grad and p.dim() == 2:
            torch.nn.init.normal_(p, std=0.02)
    images, boxes = tiny_batch
    model = PromptedSam(tiny_sam)

    def grads():
        tiny_sam.zero_grad()
        prompts = [Prompts(boxes=b) for b in boxes]
        sum(x.square().mean() for x in model(prompts, images=images)).backward()
        return {n: p.grad.clone() for n, p in tiny_sam.named_parameters() if p.grad is not None}

    plain = grads()
    enable_activation_checkpointing(tiny_sam)
    checkpointed = grads()
    disable_activation_checkpointing(tiny_sam)
    assert plain.keys() == checkpointed.keys()
    trainable = {n for n, p in tiny_sam.named_parameters() if p.requires_grad}
    assert {n for n in trainable if n.startswith("image_encoder.")} <= plain.keys()
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name], rtol=1e-5, atol=1e-7)
