"""Notebooks 03, 06 and 07 stop in their first cells, with a clear message, on bad parameters.

Each case runs the real notebook through papermill with bad ``-p`` values and checks which cell
raised (by its source: the parameter check, or the dataset cell before any training) and that the
message names the value and what was expected. Their default runs are checked by nbval.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

papermill = pytest.importorskip("papermill")
from papermill.exceptions import PapermillExecutionError  # noqa: E402

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def _fails(name: str, tmp_path: Path, **parameters) -> PapermillExecutionError:
    with pytest.raises(PapermillExecutionError) as info:
        papermill.execute_notebook(
            str(NOTEBOOKS / name),
            str(tmp_path / name),
            parameters=parameters,
            cwd=str(NOTEBOOKS),
            progress_bar=False,
        )
    return info.value


def test_06_bad_type_value_and_missing_checkpoint(tmp_path):
    err = _fails(
        "06_relation_matrix.ipynb",
        tmp_path,
        method="lorra",
        rank=6,
        steps="20",
        checkpoint=str(tmp_path / "missing.pth"),
    )
    assert err.ename == "ParameterError" and "check_parameter_space(globals())" in err.source
    assert "method = 'lorra' (str): unknown value" in err.evalue
    assert "rank = 6 (int): expected a multiple of 4" in err.evalue
    assert "steps = '20' (str): wrong type str" in err.evalue
    assert f"no such file: {tmp_path / 'missing.pth'}" in err.evalue


@pytest.mark.parametrize("name", ["06_relation_matrix.ipynb", "07_projection_directions.ipynb"])
def test_06_07_foundation_needs_the_tiny_model(tmp_path, name):
    err = _fails(name, tmp_path, model_type="vit_b")
    assert err.ename == "ParameterError" and "check_parameter_space(globals())" in err.source
    assert "checkpoint='foundation' is the pretrained tiny model; model_type='vit_b'" in err.evalue


def test_06_dataset_without_samples_stops_before_training(tmp_path):
    root = tmp_path / "no_samples"
    for sub in ("images", "masks", "splits"):
        (root / sub).mkdir(parents=True)
    Image.fromarray(np.full((32, 32), 128, np.uint8)).save(root / "images" / "a.png")
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(root / "masks" / "a.png")  # no instance
    for split in ("train", "test"):
        (root / "splits" / f"{split}.txt").write_text("a\n")
    err = _fails("06_relation_matrix.ipynb", tmp_path, dataset=str(root), checkpoint="random")
    assert err.ename == "ConfigError" and "datasets(params)" in err.source
    assert "train_recorded(" not in err.source
    assert "the training set is empty" in err.evalue


def test_03_bad_values(tmp_path):
    err = _fails(
        "03_cobot_anatomy.ipynb", tmp_path, backbones=["vit_x"], relation="learn", c_spread=-1
    )
    assert err.ename == "ParameterError" and "check_anatomy(globals())" in err.source
    assert "backbones = ['vit_x'] (list): expected a non-empty list of model types" in err.evalue
    assert "relation = 'learn' (str): unknown value" in err.evalue
    assert "c_spread = -1 (int): below the minimum 0.0" in err.evalue
