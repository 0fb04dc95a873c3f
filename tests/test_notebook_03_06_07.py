"""Notebooks 03, 06 and 07 stop in their first cells, with a clear message, on bad parameters.

A case that reaches past the parameter check (06's dataset cell) runs the real notebook through
papermill with bad ``-p`` values and checks which cell raised (by its source) and the message.
The parameter checks themselves run in this process (``refused``): the notebook's parameters
cell, the bad values as papermill would inject them, then the notebook's own check cell, which
must come right after the parameters; papermill's injection into a kernel is exercised by the
papermill cases here and in test_notebook_04.py / test_notebook_01_02_05.py, and every default
run by nbval. A kernel start costs about 8 s a case.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
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


def refused(name: str, check: str, **parameters) -> str:
    """The message of the ParameterError with which notebook ``name``'s check cell (the cell
    right after its parameters cell, calling ``check(globals())``) refuses ``parameters``."""
    from cobot_lib.notebook.params import ParameterError

    cells = nbformat.read(NOTEBOOKS / name, as_version=4).cells
    index = next(i for i, c in enumerate(cells) if "parameters" in c.metadata.get("tags", []))
    check_cell = cells[index + 1]
    assert f"{check}(globals())" in check_cell.source, check_cell.source
    namespace: dict = {}
    exec(cells[index].source, namespace)  # the notebook's defaults (our own file)
    namespace.update(parameters)
    with pytest.raises(ParameterError) as info:
        exec(check_cell.source, namespace)
    return str(info.value)


def test_06_bad_type_value_and_missing_checkpoint(tmp_path):
    text = refused(
        "06_relation_matrix.ipynb",
        "check_parameter_space",
        method="lorra",
        rank=6,
        steps="20",
        checkpoint=str(tmp_path / "missing.pth"),
    )
    assert "method = 'lorra' (str): unknown value" in text
    assert "rank = 6 (int): expected a multiple of 4" in text
    assert "steps = '20' (str): wrong type str" in text
    assert f"no such file: {tmp_path / 'missing.pth'}" in text


@pytest.mark.parametrize("name", ["06_relation_matrix.ipynb", "07_projection_directions.ipynb"])
def test_06_07_foundation_needs_the_tiny_model(name):
    text = refused(name, "check_parameter_space", model_type="vit_b")
    assert "checkpoint='foundation' is the pretrained tiny model; model_type='vit_b'" in text


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


def test_03_bad_values():
    text = refused(
        "03_cobot_anatomy.ipynb", "check_anatomy", backbones=["vit_x"], relation="learn",
        c_spread=-1,
    )  # fmt: skip
    assert "backbones = ['vit_x'] (list): expected a non-empty list of model types" in text
    assert "relation = 'learn' (str): unknown value" in text
    assert "c_spread = -1 (int): below the minimum 0.0" in text
