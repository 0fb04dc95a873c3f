"""A run folder holds one run: starting over moves the old run aside whole; evaluate refuses an
adapter of another configuration; a killed writer's temporary files go on the next start."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from bad_inputs import config_yaml, folder_set, steps_logged, tree

from cobot_lib.backbone.sam import SamSpec, _assemble
from cobot_lib.data.synthetic import SyntheticShapes
from cobot_lib.engine import evaluation as evaluate_cli
from cobot_lib.engine import trainer as train_cli
from cobot_lib.engine.checkpoint import CHECKPOINT_NAME
from cobot_lib.engine.config import ConfigError, load_config
from cobot_lib.engine.trainer import Trainer
from cobot_lib.files import atomic_write, remove_orphans

pytestmark = pytest.mark.usefixtures("one_thread")

MICRO = SamSpec(32, 4, 2, (1, 3), 64, 16, 4, 32, 64, 2, 32)


@pytest.fixture(autouse=True)
def _setup(tmp_path, monkeypatch):
    monkeypatch.setenv("COBOT_CACHE", str(tmp_path / "cache"))


def _trainer(out, resume="auto", lr=1e-3):
    config = load_config({
        "output_dir": str(out),
        "model": {"type": "tiny", "checkpoint": None},
        "peft": {"method": "lora", "cobot": True},
        "optim": {"epochs": 1, "lr": lr},
        "runtime": {"progress": False, "resume": resume},
    })  # fmt: skip
    torch.manual_seed(11)
    data = SyntheticShapes(2, image_size=64, seed=3, train=True, jitter_px=3, max_instances=2)
    return Trainer(config, sam=_assemble(MICRO).eval(), train_set=data)


def test_starting_over_moves_the_previous_run_aside_whole(tmp_path):
    out = tmp_path / "run"
    _trainer(out).fit()
    old = tree(out)
    assert {CHECKPOINT_NAME, "metrics.jsonl", "run.json"} <= set(old)
    _trainer(out, resume="never", lr=5e-4).fit()
    (aside,) = [p for p in tmp_path.iterdir() if p.name.startswith("run.old-")]
    assert tree(aside) == old  # nothing of the old run changed or lost
    marker = json.loads((out / "run.json").read_text())
    assert marker["config"]["optim"]["lr"] == 5e-4
    assert steps_logged(out) == 2 and not list(out.glob("*.old-*"))


def test_a_failed_fresh_start_leaves_no_mixed_folder(tmp_path, monkeypatch):
    out = tmp_path / "run"
    _trainer(out).fit()
    old = tree(out)

    def crash(record):
        raise KeyboardInterrupt("killed")

    trainer = _trainer(out, resume="never", lr=5e-4)
    trainer.callbacks.append(crash)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    (aside,) = tmp_path.glob("run.old-*")
    assert tree(aside) == old
    assert not (out / "adapter").exists() and not (out / CHECKPOINT_NAME).exists()


def test_a_folder_with_other_files_is_refused_not_moved(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("my own notes")
    (out / "metrics.jsonl").write_text("")
    before = tree(out)
    with pytest.raises(ConfigError, match=r"holds files that no run writes \(\['notes.txt'\]\)"):
        _trainer(out, resume="never").fit()
    assert tree(out) == before and not list(tmp_path.glob("mine.old-*"))


def test_output_dir_that_is_a_file_is_refused_before_any_work(tmp_path):
    path = tmp_path / "results"
    path.write_text("not a folder")
    for out in (path, path / "run"):
        with pytest.raises(ConfigError, match=f"output_dir {out} .*existing file"):
            _trainer(out)
    assert path.read_text() == "not a folder"


def test_evaluate_refuses_an_adapter_of_another_configuration(tmp_path, capsys):
    data = folder_set(tmp_path / "data")
    config = config_yaml(tmp_path / "toy.yaml", data, tmp_path / "run")
    assert train_cli.main([str(config)]) == 0
    capsys.readouterr()
    assert evaluate_cli.main([str(config), "data.eval_split=train"]) == 0  # other split: fine
    capsys.readouterr()
    assert evaluate_cli.main([str(config), "optim.lr=5e-4"]) == 2
    err = capsys.readouterr().err
    assert f"adapter {tmp_path / 'run' / 'adapter'} was trained by another configuration" in err
    assert "optim.lr: 0.001 -> 0.0005" in err and "Traceback" not in err


def test_orphaned_temporary_files_are_removed_on_the_next_start(tmp_path):
    out = tmp_path / "run"
    _trainer(out).fit()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    orphan = out / f".{CHECKPOINT_NAME}.tmp-{dead}"
    orphan.write_bytes(b"half a checkpoint")
    live = out / f".metrics.jsonl.tmp-{os.getppid()}"  # a running process: not ours to delete
    live.write_bytes(b"being written")
    _trainer(out).fit()
    assert not orphan.exists() and live.exists()


def test_remove_orphans_only_touches_temporary_files_of_atomic_write(tmp_path):
    target = tmp_path / "table.csv"
    atomic_write(target, lambda tmp: tmp.write_text("a,b\n"))
    keep = [tmp_path / ".hidden", tmp_path / "x.tmp-1", tmp_path / ".x.tmp-abc"]
    for path in keep:
        path.write_text("user file")
    mine = tmp_path / f".table.csv.tmp-{os.getpid()}"  # this process writes nothing now
    mine.write_text("torn")
    assert remove_orphans(tmp_path) == [mine]
    assert all(p.exists() for p in keep) and target.read_text() == "a,b\n"
    assert remove_orphans(tmp_path / "missing") == []
