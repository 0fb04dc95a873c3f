"""Run configuration: YAML + dotted overrides, strict keys, placeholders, the shipped configs,
and the fingerprint that guards resuming."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cobot_lib.engine.checkpoint import fingerprint, fingerprint_diff
from cobot_lib.engine.config import (
    PAPER_DEFAULTS,
    ConfigError,
    TrainConfig,
    config_from_dict,
    load_config,
)
from cobot_lib.peft import CobotConfig, PeftConfig

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
PAPER = sorted(p for p in (CONFIGS / "paper").rglob("*.yaml") if not p.name.startswith("_"))
DEMO = sorted(p for p in (CONFIGS / "demo").rglob("*.yaml") if not p.name.startswith("_"))
FILLED = ["model.checkpoint=/ckpt/sam_vit_b.pth", "data.root=/data/set"]


def test_defaults_and_dotted_overrides():
    cfg = load_config(None, ["optim.lr=3e-4", "peft.cobot=true", "peft.cobot.relation=fixed"])
    assert isinstance(cfg, TrainConfig) and cfg.lr == 3e-4
    assert cfg.peft == PeftConfig("lora", cobot=CobotConfig(relation="fixed"))
    assert cfg.epochs == PAPER_DEFAULTS["natural"]["epochs"]
    assert load_config(None, ["domain=medical"]).lr == PAPER_DEFAULTS["medical"]["lr"]
    assert load_config(None, ["data.max_instances=null"]).data.max_instances is None
    assert load_config(None, ["optim.betas=[0.8, 0.9]"]).optim.betas == (0.8, 0.9)
    # YAML 1.1 would read "off" as false: the relation switch must stay a string
    on = {"peft": {"cobot": {"enabled": True, "relation": "off"}}}
    assert load_config(on).peft.cobot.relation == "off"
    # switches without ``enabled: true`` leave COBOT off (they are still checked)
    assert load_config(None, ["peft.cobot.relation=off"]).peft.cobot is None


@settings(max_examples=50, deadline=None)
@given(st.floats(min_value=1e-12, max_value=10.0, allow_nan=False), st.integers(0, 10**6))
def test_numbers_round_trip_through_overrides(lr, seed):
    cfg = load_config(None, [f"optim.lr={lr!r}", f"runtime.seed={seed}"])
    assert (cfg.lr, cfg.runtime.seed) == (lr, seed)


def test_unknown_keys_are_named_with_the_valid_ones(tmp_path):
    with pytest.raises(ConfigError, match=r"'optim\.learning_rate'.*valid keys here: \['lr'"):
        load_config(None, ["optim.learning_rate=1e-4"])
    with pytest.raises(ConfigError, match=r"'peft\.cobot\.relaton'.*'relation'"):
        load_config(None, ["peft.cobot.relaton=fixed"])
    with pytest.raises(ConfigError, match=r"'peft\.rnk'.*valid keys here: \['method', 'rank'"):
        load_config(None, ["peft.rnk=4"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("runtime:\n  sed: 3\n")
    with pytest.raises(ConfigError, match=rf"'runtime\.sed' in {bad}"):
        load_config(bad)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.epochs=1.5", r"optim\.epochs must be int"),
        ("optim.batch_size=0", r"optim\.batch_size must be a positive integer"),
        ("optim.betas=3", r"optim\.betas must be a list of two numbers"),
        ("optim.lr=fast", r"optim\.lr must be a number"),
        ("runtime.amp=fp8", r"runtime\.amp='fp8'"),
        ("domain=space", r"domain='space'"),
        ("peft.method=prompt", r"unknown PEFT method 'prompt'"),
        ("peft.cobot.head=octonion", r"CobotConfig\.head='octonion'"),
        ("peft.method=decoder", None),
        ("data.jitter=-1", r"data\.jitter must be >= 0"),
        ("optim.lr", r"must look like key\.sub=value"),
    ],
)
def test_bad_values_fail_with_the_key_named(override, message):
    if message is None:  # decoder with the default (no COBOT) is fine
        assert load_config(None, [override]).peft.method == "decoder"
        with pytest.raises(ConfigError, match="takes no rank and no COBOT"):
            load_config(None, [override, "peft.cobot=true"])
        return
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_base_files_merge_and_cycles_are_caught(tmp_path):
    (tmp_path / "base.yaml").write_text("optim:\n  lr: 1e-3\n  epochs: 4\npeft:\n  method: lora\n")
    (tmp_path / "child.yaml").write_text("base: base.yaml\noptim:\n  epochs: 7\n")
    cfg = load_config(tmp_path / "child.yaml")
    assert (cfg.lr, cfg.epochs, cfg.peft.method) == (1e-3, 7, "lora")
    (tmp_path / "loop.yaml").write_text("base: loop.yaml\n")
    with pytest.raises(ConfigError, match="includes itself"):
        load_config(tmp_path / "loop.yaml")
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")


def test_every_paper_config_needs_its_paths_then_follows_the_paper():
    assert len(PAPER) == 3 * 6
    for path in PAPER:
        with pytest.raises(
            ConfigError, match=r"model\.checkpoint is not set \(placeholder '\?\?\?'"
        ):
            load_config(path)
        cfg = load_config(path, FILLED)
        domain = path.parent.name
        assert cfg.domain == domain and cfg.model.type == "vit_b"
        assert cfg.name == f"{domain}_{path.stem}"
        assert cfg.data.jitter == 50 and cfg.optim.batch_size == 1
        if cfg.peft.method != "freeze":
            expected = PAPER_DEFAULTS[domain]
            assert (cfg.lr, cfg.weight_decay, cfg.epochs) == (
                expected["lr"],
                expected["weight_decay"],
                expected["epochs"],
            )
        assert cfg.peft.cobot == (CobotConfig() if "cobot" in path.stem else None)


def test_every_demo_config_loads_as_shipped():
    assert len(DEMO) == 2 * 6
    for path in DEMO:
        cfg = load_config(path)
        assert cfg.model.type == "tiny" and cfg.model.checkpoint == "foundation"
        assert cfg.data.root == f"demo:{path.parent.name}"
        assert cfg.name == f"{path.parent.name}_{path.stem}"
        assert cfg.peft.cobot == (CobotConfig() if "cobot" in path.stem else None)
        assert load_config(cfg.to_dict()) == cfg  # the YAML shape round-trips


def test_fingerprint_tracks_what_decides_the_weights():
    base = load_config(None, ["data.root=/d"])
    same = load_config(
        None, ["data.root=/d", "runtime.progress=false", "runtime.max_steps=3", "output_dir=/x"]
    )
    assert fingerprint(same) == fingerprint(base)
    # the same PeftConfig however it is written: the default rank, or switches of COBOT left off
    for spelling in ("peft.rank=4", "peft.cobot.relation=off"):
        assert fingerprint(load_config(None, ["data.root=/d", spelling])) == fingerprint(base)
    for change in ("optim.lr=0.5", "peft.cobot=true", "runtime.seed=4", "data.jitter=3"):
        other = load_config(None, ["data.root=/d", change])
        assert fingerprint(other) != fingerprint(base), change
    diff = fingerprint_diff(base.to_dict(), load_config(None, ["data.root=/d", "optim.lr=0.5"]))
    assert diff == ["optim.lr: 0.0001 -> 0.5"]


def test_override_none_is_the_head_value_and_null_is_none():
    from cobot_lib.engine.config import apply_overrides

    data = apply_overrides({}, ["peft.cobot.head=none", "model.checkpoint=null"])
    assert data == {"peft": {"cobot": {"head": "none"}}, "model": {"checkpoint": None}}


def test_issue16_controls_are_run_config_keys_that_round_trip():
    """The symmetry-breaking and control switches (PeftConfig.down_init_scale, CobotConfig's
    base_init / linear_init / head_init) are settable from a run config, reach the PeftConfig
    and come back from to_dict unchanged; they change the fingerprint (they decide the weights)."""
    overrides = ["data.root=/d", "peft.method=adaptformer", "peft.down_init_scale=2.0",
                 "peft.cobot.enabled=true", "peft.cobot.base_init=perturbed",
                 "peft.cobot.linear_init=like_hypercomplex", "peft.cobot.head=linear"]  # fmt: skip
    cfg = load_config(None, overrides)
    assert cfg.peft.down_init_scale == 2.0
    assert (cfg.peft.cobot.base_init, cfg.peft.cobot.linear_init) == (
        "perturbed",
        "like_hypercomplex",
    )
    assert config_from_dict(cfg.to_dict()).peft == cfg.peft
    plain = load_config(
        None, ["data.root=/d", "peft.method=adaptformer", "peft.cobot.enabled=true"]
    )
    assert fingerprint(cfg) != fingerprint(plain)
    with pytest.raises(ConfigError, match="base_init"):
        load_config(None, ["data.root=/d", "peft.cobot.enabled=true", "peft.cobot.base_init=noisy"])
