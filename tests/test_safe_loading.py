"""No file a user hands over runs code: a hostile pickle planted wherever the project reads a file.

The payload (``bad_inputs.Payload``) creates a marker folder when it is unpickled; the first test
shows that plain ``pickle`` and ``torch.load(weights_only=False)`` do run it, so the marker is a
live oracle. Every other test plants it in one place the project reads (training checkpoint via
``runtime.resume=PATH`` and under ``resume=auto``, adapters, SAM weights, the foundation model,
configs, every kind of dataset file, sweep and ablation tables, the caches) and asserts that the
payload never runs and that the error names the planted file.
"""

from __future__ import annotations

import json
import pickle
import shutil

import nibabel as nib
import numpy as np
import pytest
import torch
from bad_inputs import coco_set, config_yaml, folder_set, pickle_bomb, torch_bomb
from safetensors.torch import save_file

from cobot_lib.backbone.foundation import (
    FOUNDATION_RECIPE,
    card_path,
    load_foundation_model,
    sha256_of,
)
from cobot_lib.backbone.sam import build_sam
from cobot_lib.data.nifti import nifti_folder_to_slices, slice_cache_dir
from cobot_lib.data.validation import (
    DatasetError,
    require_valid_dataset,
    validate_dataset,
    validation_cache_path,
)
from cobot_lib.engine import trainer as train_cli
from cobot_lib.engine.checkpoint import CHECKPOINT_NAME, CheckpointError
from cobot_lib.engine.config import ConfigError, load_config
from cobot_lib.engine.evaluation import check_adapter_run
from cobot_lib.engine.trainer import Trainer
from cobot_lib.experiments.benchmark.runner import JSONL, read_rows
from cobot_lib.experiments.sweep import SweepError, load_results, load_sweep
from cobot_lib.peft import apply_peft, load_adapter, save_adapter


@pytest.fixture
def marker(tmp_path):
    """Where the payload would create its folder; checked to be absent after every test."""
    path = tmp_path / "PAYLOAD_RAN"
    yield path
    assert not path.exists(), "a planted pickle ran code"


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("COBOT_CACHE", str(tmp_path / "cache"))


def _config(tmp_path, **runtime):
    return load_config({
        "output_dir": str(tmp_path / "run"),
        "model": {"type": "tiny", "checkpoint": None},
        "peft": {"method": "lora", "cobot": True},
        "optim": {"epochs": 1, "lr": 1e-3},
        "runtime": {"progress": False, **runtime},
    })  # fmt: skip


def test_the_payload_runs_when_unpickled(tmp_path):
    """The oracle is live: plain pickle and torch.load(weights_only=False) run it."""
    for k, load in enumerate((
        lambda p: pickle.loads(p.read_bytes()),
        lambda p: torch.load(p, weights_only=False),
    )):  # fmt: skip
        marker = tmp_path / f"ran{k}"
        bomb = (pickle_bomb if k == 0 else torch_bomb)(tmp_path / f"bomb{k}", marker)
        load(bomb)
        assert marker.is_dir()


# ---- training checkpoints ------------------------------------------------------------------
@pytest.mark.parametrize("name", ["checkpoint.pt", CHECKPOINT_NAME, "weights.bin"])
def test_resume_path_never_unpickles(tmp_path, marker, name):
    bomb = torch_bomb(tmp_path / "elsewhere" / name, marker)
    with pytest.raises(CheckpointError) as info:
        Trainer(_config(tmp_path, resume=str(bomb)), train_set=[1])
    assert str(bomb) in str(info.value)


@pytest.mark.parametrize("name", ["checkpoint.pt", CHECKPOINT_NAME])
def test_resume_auto_never_unpickles_what_sits_in_the_run_folder(tmp_path, marker, name):
    bomb = torch_bomb(tmp_path / "run" / name, marker)
    with pytest.raises(CheckpointError) as info:
        Trainer(_config(tmp_path), train_set=[1])
    assert str(bomb) in str(info.value)


def test_train_cli_with_a_planted_checkpoint_says_so(tmp_path, marker, capsys):
    data = folder_set(tmp_path / "data")
    bomb = torch_bomb(tmp_path / "run" / "checkpoint.pt", marker)
    config = config_yaml(tmp_path / "c.yaml", data, tmp_path / "run")
    assert train_cli.main([str(config)]) == 2
    err = capsys.readouterr().err
    assert str(bomb) in err and "pickle" in err and "Traceback" not in err


# ---- adapters, SAM weights, the foundation model -------------------------------------------
def _adapter(tmp_path):
    sam = build_sam("tiny")
    apply_peft(sam, "lora", cobot=True)
    return save_adapter(sam, tmp_path / "adapter")


@pytest.mark.parametrize("name", ["adapter_model.safetensors", "adapter_config.json"])
def test_adapter_files_never_unpickle(tmp_path, marker, name):
    folder = _adapter(tmp_path)
    bomb = pickle_bomb(folder / name, marker)
    with pytest.raises(ValueError) as info:
        load_adapter(build_sam("tiny"), folder)
    assert str(bomb) in str(info.value)


def test_adapter_run_record_never_unpickles(tmp_path, marker):
    folder = _adapter(tmp_path)
    bomb = pickle_bomb(folder / "run.json", marker)
    with pytest.raises(ConfigError) as info:
        check_adapter_run(folder, _config(tmp_path))
    assert str(bomb) in str(info.value)


@pytest.mark.parametrize("writer", [torch_bomb, pickle_bomb])
def test_sam_weights_never_unpickle(tmp_path, marker, writer):
    bomb = writer(tmp_path / "sam_vit_b.pth", marker)
    with pytest.raises(ValueError) as info:
        build_sam("tiny", bomb)
    assert str(bomb) in str(info.value)


def test_foundation_model_file_never_unpickles(tmp_path, marker, monkeypatch):
    """Even a pickle whose card vouches for it (matching SHA-256) is read with the allow-list."""
    bomb = torch_bomb(tmp_path / "foundation.pth", marker)
    card = {"recipe": FOUNDATION_RECIPE, "sha256": sha256_of(bomb), "held_out_miou": 0.9,
            "held_out_instances": 1, "steps": 1, "seed": 0, "command": "x"}  # fmt: skip
    card_path(bomb).write_text(json.dumps(card))
    monkeypatch.setenv("COBOT_FOUNDATION", str(bomb))
    with pytest.raises(ValueError) as info:
        load_foundation_model()
    assert str(bomb) in str(info.value)


# ---- configs ---------------------------------------------------------------------------------
def test_yaml_config_cannot_construct_objects(tmp_path, marker):
    path = tmp_path / "evil.yaml"
    path.write_text(f"name: !!python/object/apply:os.mkdir ['{marker}']\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_pickle_as_config_is_refused(tmp_path, marker):
    bomb = pickle_bomb(tmp_path / "config.yaml", marker)
    with pytest.raises(ConfigError) as info:
        load_config(bomb)
    assert str(bomb) in str(info.value)


# ---- datasets --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "where", ["images/a.png", "masks/b.png", "dataset.json", "splits/train.txt"]
)
def test_folder_dataset_files_never_unpickle(tmp_path, marker, where):
    root = folder_set(tmp_path / "data")
    bomb = pickle_bomb(root / where, marker)
    with pytest.raises(DatasetError) as info:
        require_valid_dataset(root, ["train", "test"])
    assert str(bomb) in str(info.value)


def test_coco_annotations_never_unpickle(tmp_path, marker):
    root = coco_set(tmp_path / "coco")
    bomb = pickle_bomb(root / "annotations.json", marker)
    with pytest.raises(DatasetError) as info:
        require_valid_dataset(root, ["train"])
    assert str(bomb) in str(info.value)


def test_nifti_volume_never_unpickles(tmp_path, marker):
    root = tmp_path / "vols"
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True)
    label = np.zeros((8, 8, 4), np.uint8)
    label[2:6, 2:6, 1:3] = 1
    nib.save(nib.Nifti1Image(label, np.eye(4)), str(root / "masks" / "c1.nii.gz"))
    bomb = pickle_bomb(root / "images" / "c1.nii.gz", marker)
    (root / "dataset.json").write_text('{"format": "nifti"}')
    with pytest.raises(DatasetError) as info:
        require_valid_dataset(root)
    assert str(bomb) in str(info.value)


# ---- sweeps and tables -----------------------------------------------------------------------
def test_sweep_grid_cannot_construct_objects(tmp_path, marker):
    path = tmp_path / "grid.yaml"
    path.write_text(f"grid: {{seed: !!python/object/apply:os.mkdir ['{marker}']}}\n")
    with pytest.raises(SweepError) as info:
        load_sweep(path)
    assert str(path) in str(info.value)


def test_sweep_table_never_unpickles(tmp_path, marker):
    bomb = pickle_bomb(tmp_path / "sweep" / "results.csv", marker)
    with pytest.raises(SweepError) as info:
        load_results(tmp_path / "sweep")
    assert str(bomb) in str(info.value)


def test_benchmark_results_never_unpickle(tmp_path, marker):
    bomb = pickle_bomb(tmp_path / "benchmark" / JSONL, marker)
    with pytest.raises(ValueError) as info:
        read_rows(tmp_path / "benchmark")
    assert str(bomb) in str(info.value)


# ---- the caches: a planted file is ignored and rebuilt, never loaded -------------------------
def test_validation_cache_never_unpickles(tmp_path, marker):
    root = folder_set(tmp_path / "data")
    pickle_bomb(validation_cache_path(root), marker)
    report = validate_dataset(root)
    assert report.ok and report.decoded == report.files == 6


def test_slice_cache_record_never_unpickles(tmp_path, marker):
    root = tmp_path / "vols"
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True)
    label = np.zeros((8, 8, 4), np.uint8)
    label[2:6, 2:6, 1:3] = 1
    volume = np.random.default_rng(0).normal(size=(8, 8, 4)).astype(np.float32)
    nib.save(nib.Nifti1Image(label, np.eye(4)), str(root / "masks" / "c1.nii.gz"))
    nib.save(nib.Nifti1Image(volume, np.eye(4)), str(root / "images" / "c1.nii.gz"))
    (root / "dataset.json").write_text(
        '{"format": "nifti", "modality": "mr", "min_voxels_3d": 1, "min_pixels_2d": 1}'
    )
    out = nifti_folder_to_slices(root)
    assert out == slice_cache_dir(root)
    pickle_bomb(out / "sources.json", marker)
    assert nifti_folder_to_slices(root) == out  # rebuilt
    assert (out / "sources.json").read_text().startswith("{")
    shutil.rmtree(out)


def test_a_plain_safetensors_file_is_not_taken_for_a_checkpoint(tmp_path):
    path = tmp_path / CHECKPOINT_NAME
    save_file({"w": torch.zeros(2)}, str(path))
    with pytest.raises(CheckpointError, match="not a cobot_lib training checkpoint"):
        Trainer(_config(tmp_path, resume=str(path)), train_set=[1])
