"""Bad input gets a clear error naming the value or file, and leaves the model untouched."""

from __future__ import annotations

import json

import pytest
import torch

import cobot_lib.peft.inject as inject
from cobot_lib import apply_peft, build_sam, load_adapter, save_adapter
from cobot_lib.peft import CobotConfig, PeftConfig


def snapshot(sam):
    return (
        {k: v.clone() for k, v in sam.state_dict().items()},
        {n: p.requires_grad for n, p in sam.named_parameters()},
        [type(m).__name__ for m in sam.modules()],
    )


def assert_untouched(sam, snap):
    state, flags, types = snap
    assert [type(m).__name__ for m in sam.modules()] == types
    assert {n: p.requires_grad for n, p in sam.named_parameters()} == flags
    now = sam.state_dict()
    assert now.keys() == state.keys() and all(torch.equal(now[k], state[k]) for k in state)
    assert not hasattr(sam, "peft_config")


def test_unknown_model_type():
    with pytest.raises(ValueError, match=r"unknown model_type 'vit_x'.*vit_b"):
        build_sam("vit_x")


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({"method": "lorax"}, r"unknown PEFT method 'lorax'"),
        ({"method": "lora", "rank": 0}, r"rank must be a positive integer, got 0"),
        ({"method": "lora", "rank": -3}, r"got -3"),
        ({"method": "adaptformer", "rank": 6, "cobot": True}, r"divisible by 4, got rank=6"),
        ({"method": "decoder", "cobot": True}, r"COBOT sits inside LoRA or Adaptformer"),
        ({"method": "lora", "cobot": {"relation": "learned"}}, r"relation='learned'"),
        ({"method": "lora", "cobot": {"head": "complex"}}, r"head='complex'"),
    ],
)
def test_bad_peft_config_leaves_model_untouched(tiny_sam, kwargs, pattern):
    snap = snapshot(tiny_sam)
    with pytest.raises(ValueError, match=pattern):
        apply_peft(tiny_sam, **kwargs)
    assert_untouched(tiny_sam, snap)


def test_rank_not_divisible_by_4_is_fine_without_quaternion_head(tiny_sam):
    assert apply_peft(tiny_sam, "lora", rank=6, cobot={"head": "linear"}).config.rank == 6


def test_failure_midway_rolls_back(tiny_sam, monkeypatch):
    snap = snapshot(tiny_sam)
    calls = {"n": 0}
    real = inject._set_submodule

    def flaky(root, path, module):
        calls["n"] += 1
        if calls["n"] == 7:
            raise RuntimeError("simulated failure while swapping modules")
        real(root, path, module)

    monkeypatch.setattr(inject, "_set_submodule", flaky)
    with pytest.raises(RuntimeError, match="simulated"):
        apply_peft(tiny_sam, "lora", cobot=True)
    assert_untouched(tiny_sam, snap)


def test_apply_twice_is_refused(tiny_sam):
    apply_peft(tiny_sam, "lora")
    with pytest.raises(ValueError, match="already has PEFT applied"):
        apply_peft(tiny_sam, "adaptformer")


def test_missing_checkpoint(tmp_path):
    path = tmp_path / "nope.pth"
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        build_sam("vit_b", path)


def test_unreadable_checkpoint(tmp_path):
    path = tmp_path / "broken.pth"
    path.write_bytes(b"this is not a torch file")
    with pytest.raises(ValueError, match=r"could not read SAM checkpoint .*broken.pth"):
        build_sam("tiny", path)


def test_checkpoint_of_another_model_type(tmp_path):
    path = tmp_path / "tiny.pth"
    torch.save(build_sam("tiny").state_dict(), path)
    with pytest.raises(ValueError, match=r"tiny.pth holds a tiny model.*expects a vit_b model"):
        build_sam("vit_b", path)


def test_checkpoint_round_trip(tmp_path):
    sam = build_sam("tiny")
    path = tmp_path / "tiny.pth"
    torch.save(sam.state_dict(), path)
    again = build_sam("tiny", path)
    before, after = sam.state_dict(), again.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


def test_adapter_for_another_configuration(tiny_sam, tmp_path):
    apply_peft(tiny_sam, "lora", cobot=True)
    save_adapter(tiny_sam, tmp_path)
    # the JSON says LoRA+COBOT but the weights are edited to be another rank's
    meta = json.loads((tmp_path / "adapter_config.json").read_text())
    meta["peft"]["rank"] = 8
    (tmp_path / "adapter_config.json").write_text(json.dumps(meta))
    fresh = build_sam("tiny")
    snap = snapshot(fresh)
    with pytest.raises(ValueError, match=r"adapter_model.safetensors do not fit"):
        load_adapter(fresh, tmp_path)
    assert_untouched(fresh, snap)


def test_adapter_on_an_already_adapted_model_of_another_kind(tiny_sam, tmp_path):
    apply_peft(tiny_sam, "lora", cobot=True)
    save_adapter(tiny_sam, tmp_path)
    other = build_sam("tiny")
    apply_peft(other, "adaptformer")
    with pytest.raises(ValueError, match="already has"):
        load_adapter(other, tmp_path)


def test_adapter_for_another_backbone(tmp_path):
    sam = build_sam("tiny")
    apply_peft(sam, "lora")
    save_adapter(sam, tmp_path)
    with pytest.raises(
        ValueError, match=r"saved for a backbone .*'embed_dim': 128.*'embed_dim': 768"
    ):
        load_adapter(build_sam("vit_b"), tmp_path)


def test_adapter_dir_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="adapter_config.json"):
        load_adapter(build_sam("tiny"), tmp_path / "none")


def test_config_round_trip():
    c = PeftConfig("adaptformer", 8, CobotConfig(relation="fixed", head="linear"))
    assert PeftConfig.from_dict(c.to_dict()) == c
    with pytest.raises(ValueError, match="unknown PeftConfig keys"):
        PeftConfig.from_dict({"method": "lora", "rnak": 4})
