"""The bad-input catalogue, part 2: configs, checkpoints, adapters and numerics.

Configs and checkpoints go to ``python -m cobot_lib.train`` and adapters to
``python -m cobot_lib.evaluate`` (in-process); each case checks, through
``bad_inputs.check_refusal``, exit status 2 and a message naming the key, value or file, no
traceback, no training step when the input is known before training, and every user file
(config, data, checkpoint, adapter, a previous run) as it was.
"""

from __future__ import annotations

import json

import pytest
import torch
from bad_inputs import Refusal, check_refusal, config_yaml, folder_set, registry, torch_bomb
from safetensors import safe_open
from safetensors.torch import save_file

from cobot_lib.backbone.sam import SamSpec, _assemble, build_sam
from cobot_lib.engine import evaluation as evaluate_cli
from cobot_lib.engine import trainer as train_cli
from cobot_lib.engine.checkpoint import CHECKPOINT_NAME, atomic_save, training_state
from cobot_lib.engine.config import load_config
from cobot_lib.engine.rundir import write_run_marker
from cobot_lib.engine.trainer import Trainer
from cobot_lib.peft import apply_peft, save_adapter

CASES, case = registry()


def _setup(user, out, extra: str = ""):
    data = folder_set(user / "data")
    return data, config_yaml(user / "config.yaml", data, out, extra)


def _train(user, out, *overrides: str, extra: str = "", culprits=()) -> Refusal:
    _, config = _setup(user, out, extra)
    return Refusal(lambda: train_cli.main([str(config), *overrides]), list(culprits))


def _raw_config(user, out, text: str, culprits) -> Refusal:
    folder_set(user / "data")
    path = user / "config.yaml"
    path.write_bytes(text.encode("latin-1") if isinstance(text, str) else text)
    return Refusal(lambda: train_cli.main([str(path)]), [path, *culprits])


# ---- configs ----------------------------------------------------------------------------------
@case
def config_unknown_key(user, out):
    return _train(user, out, "optim.learning_rate=1e-3", culprits=["optim.learning_rate", "'lr'"])


@case
def config_wrong_type(user, out):
    return _train(user, out, "optim.epochs=1.5", culprits=["optim.epochs must be int"])


@case
def config_lr_nan(user, out):
    return _train(user, out, "optim.lr=.nan", culprits=["optim.lr must be a finite number"])


@case
def config_lr_infinite(user, out):
    return _train(user, out, "optim.lr=inf", culprits=["optim.lr must be a finite number"])


@case
def config_lr_negative(user, out):
    return _train(user, out, "optim.lr=-1e-3", culprits=["optim.lr must be >= 0"])


@case
def config_jitter_nan(user, out):
    return _train(user, out, "data.jitter=nan", culprits=["data.jitter must be a finite number"])


@case
def config_unknown_method_with_cobot_on(user, out):
    methods = "['lora', 'adaptformer', 'freeze', 'decoder', 'full']"
    return _train(user, out, "peft.method=lorra", culprits=["peft.method='lorra'", methods])


@case
def config_cobot_yes(user, out):
    return _train(user, out, "peft.cobot=yes", culprits=["peft.cobot", "'yes'", "true / false"])


@case
def config_cobot_on_a_method_without_modules(user, out):
    return _train(user, out, "peft.method=decoder", culprits=["peft.method='decoder'", "COBOT"])


@case
def config_unknown_amp(user, out):
    return _train(user, out, "runtime.amp=fp8", culprits=["runtime.amp='fp8'"])


@case
def config_betas_out_of_range(user, out):
    return _train(user, out, "optim.betas=[1.5, 0.9]", culprits=["optim.betas", "[1.5, 0.9]"])


@case
def config_divergence_factor_below_one(user, out):
    return _train(user, out, "runtime.divergence_factor=0.5", culprits=["divergence_factor", "0.5"])


@case
def config_required_path_placeholder(user, out):
    return _train(user, out, "data.root=???", culprits=["data.root is not set"])


@case
def config_override_without_equals(user, out):
    return _train(user, out, "optim.lr", culprits=["override 'optim.lr'"])


@case
def config_output_dir_is_a_file(user, out):
    (user / "results").write_text("a file, not a folder")
    return _train(user, out, f"output_dir={user / 'results'}", culprits=[user / "results"])


@case
def config_output_dir_holds_other_files(user, out):
    mine = user / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("x")
    return _train(user, out, f"output_dir={mine}", "runtime.resume=never",
                  culprits=[mine, "thesis.tex"])  # fmt: skip


@case
def config_model_checkpoint_missing(user, out):
    return _train(user, out, f"model.checkpoint={user / 'sam.pth'}", culprits=[user / "sam.pth"])


@case
def config_model_checkpoint_of_another_model(user, out):
    path = user / "micro.pth"
    user.mkdir(exist_ok=True)
    torch.save(_assemble(SamSpec(32, 4, 2, (1, 3), 64, 16, 4, 32, 64, 2, 32)).state_dict(), path)
    return _train(user, out, f"model.checkpoint={path}", culprits=[path, "model_type='tiny'"])


@case
def config_file_missing(user, out):
    return Refusal(lambda: train_cli.main([str(user / "nope.yaml")]), [user / "nope.yaml"])


@case
def config_not_utf8(user, out):
    return _raw_config(user, out, "name: caf\xe9\n", ["not UTF-8"])


@case
def config_not_yaml(user, out):
    return _raw_config(user, out, "optim: {lr: 1e-3\n", ["not valid YAML"])


@case
def config_a_list(user, out):
    return _raw_config(user, out, "- optim\n- lr\n", ["must hold a mapping"])


@case
def config_base_missing(user, out):
    return _raw_config(user, out, "base: parent.yaml\n", [user / "parent.yaml"])


@case
def config_base_includes_itself(user, out):
    return _raw_config(user, out, "base: config.yaml\n", ["includes itself"])


# ---- checkpoints (runtime.resume) ---------------------------------------------------------
def _checkpoint(user, out, config, path, edit=None):
    """A real training checkpoint of ``config`` at ``path`` (no step taken), optionally with
    ``edit(meta)`` applied to its JSON."""
    trainer = Trainer(load_config(config))
    state = training_state(trainer.sam, trainer.optimizer, trainer.scaler, (1, 0, 2), 1,
                           trainer.config, [], {})  # fmt: skip
    atomic_save(state, path)
    if edit is not None:
        with safe_open(str(path), "pt") as handle:
            meta, tensors = handle.metadata(), {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118
        data = json.loads(meta["cobot_lib.checkpoint"])
        edit(data)
        save_file(tensors, str(path), metadata={"cobot_lib.checkpoint": json.dumps(data)})
    return path


def _resume(user, out, make, culprits) -> Refusal:
    _, config = _setup(user, out)
    path = make(config)
    return Refusal(
        lambda: train_cli.main([str(config), f"runtime.resume={path}"]), [path, *culprits]
    )


@case
def resume_path_missing(user, out):
    return _resume(user, out, lambda c: user / "ckpt" / CHECKPOINT_NAME, ["not found"])


@case
def resume_not_a_checkpoint(user, out):
    def make(config):
        (user / "notes.safetensors").write_text("hello")
        return user / "notes.safetensors"

    return _resume(user, out, make, ["could not read checkpoint"])


@case
def resume_pickle_checkpoint(user, out):
    return _resume(user, out, lambda c: torch_bomb(user / "old.pt", user / "RAN"), ["pickle"])


@case
def resume_plain_safetensors(user, out):
    def make(config):
        save_file({"w": torch.zeros(3)}, str(user / "weights.safetensors"))
        return user / "weights.safetensors"

    return _resume(user, out, make, ["not a cobot_lib training checkpoint"])


@case
def resume_checkpoint_missing_keys(user, out):
    def make(config):
        drop = lambda meta: [meta.pop(k) for k in ("optimizer", "global_step")]  # noqa: E731
        return _checkpoint(user, out, config, user / "ck" / CHECKPOINT_NAME, drop)

    return _resume(user, out, make, ["missing entries", "optimizer", "global_step"])


@case
def resume_checkpoint_truncated(user, out):
    def make(config):
        path = _checkpoint(user, out, config, user / "ck" / CHECKPOINT_NAME)
        path.write_bytes(path.read_bytes()[:4000])
        return path

    return _resume(user, out, make, ["could not read checkpoint"])


@case
def resume_checkpoint_of_another_configuration(user, out):
    def make(config):
        other = user / "other.yaml"
        other.write_text(config.read_text().replace("lr: 1.0e-3", "lr: 5.0e-4"))
        return _checkpoint(user, out, other, user / "ck" / CHECKPOINT_NAME)

    return _resume(user, out, make, ["another configuration", "optim.lr: 0.0005 -> 0.001"])


@case
def resume_auto_finds_an_old_pickle_checkpoint(user, out):
    run = user / "run"
    torch_bomb(run / "checkpoint.pt", user / "RAN")
    refusal = _train(user, out, f"output_dir={run}", culprits=[run / "checkpoint.pt", "pickle"])
    refusal.run_dir = run
    return refusal


# ---- adapters (evaluate) ----------------------------------------------------------------------
def _adapter(user, out, break_it, extra: str = "") -> Refusal:
    _, config = _setup(user, out, extra)
    sam = build_sam("tiny")
    apply_peft(sam, "lora", cobot=True)
    folder = save_adapter(sam, user / "adapter")
    culprits = break_it(folder, config)
    return Refusal(lambda: evaluate_cli.main([str(config), "--adapter", str(folder)]), culprits)


@case
def adapter_folder_missing(user, out):
    def broken(folder, config):
        for path in folder.iterdir():
            path.unlink()
        folder.rmdir()
        return [folder / "adapter_config.json"]

    return _adapter(user, out, broken)


@case
def adapter_config_not_json(user, out):
    def broken(folder, config):
        (folder / "adapter_config.json").write_text("{peft: lora")
        return [folder / "adapter_config.json", "not a valid adapter config"]

    return _adapter(user, out, broken)


@case
def adapter_config_not_utf8(user, out):
    def broken(folder, config):
        (folder / "adapter_config.json").write_bytes(b'{"peft": "\xff"}')
        return [folder / "adapter_config.json"]

    return _adapter(user, out, broken)


@case
def adapter_weights_missing(user, out):
    def broken(folder, config):
        (folder / "adapter_model.safetensors").unlink()
        return [folder / "adapter_model.safetensors", "missing"]

    return _adapter(user, out, broken)


@case
def adapter_weights_not_safetensors(user, out):
    def broken(folder, config):
        (folder / "adapter_model.safetensors").write_bytes(b"\x00" * 64)
        return [folder / "adapter_model.safetensors", "could not read adapter weights"]

    return _adapter(user, out, broken)


@case
def adapter_of_another_backbone(user, out):
    def broken(folder, config):
        micro = _assemble(SamSpec(32, 4, 2, (1, 3), 64, 16, 4, 32, 64, 2, 32))
        apply_peft(micro, "lora", cobot=True)
        save_adapter(micro, folder)
        return [folder, "saved for a backbone", "'embed_dim': 32"]

    return _adapter(user, out, broken)


@case
def adapter_of_another_variant(user, out):
    def broken(folder, config):
        config.write_text(config.read_text().replace("method: lora", "method: adaptformer"))
        return [folder, "method: 'lora' (adapter) vs 'adaptformer' (config)"]

    return _adapter(user, out, broken)


@case
def adapter_of_another_run(user, out):
    def broken(folder, config):
        trained = load_config(config, ["optim.lr=2e-3"])
        write_run_marker(folder, trained.to_dict(), "0123456789abcdef")
        return [folder, "trained by another configuration", "optim.lr: 0.002 -> 0.001"]

    return _adapter(user, out, broken)


# ---- numerics found only while training ----------------------------------------------------
@case
def lr_so_large_the_loss_blows_up(user, out):
    refusal = _train(user, out, "optim.lr=1e6", "optim.epochs=4",
                     culprits=["global step", "sample(s) ['", "checkpoint"])  # fmt: skip
    refusal.during_training = True
    return refusal


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_config_checkpoint_adapter_or_numbers(name, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COBOT_CACHE", str(tmp_path / "cache"))
    torch.set_num_threads(1)
    message = check_refusal(CASES[name], tmp_path, capsys)
    assert not (tmp_path / "user" / "RAN").exists()  # no planted pickle ran
    if name == "lr_so_large_the_loss_blows_up":
        assert "non-finite loss" in message or "runtime.divergence_factor=20" in message
