"""Notebook 04 stops in its first cells, with a clear message, on bad papermill parameters.

Two cases execute the real notebook with papermill (as a sweep does) and check the error's text
and that the failing cell is one of the first few: 0 title, 1 threads, 2 parameters,
3 papermill's injected parameters, 4 check_finetune, 5 config + datasets. The other cases call
what those two cells call (``check_finetune`` on the parameters cell's defaults with the bad
values, then ``prepare``) in this process: the same checks without a kernel start each (about
8 s apiece). Nothing is trained in any case.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import papermill
import pytest
from papermill.exceptions import PapermillExecutionError

from cobot_lib.engine.config import ConfigError
from cobot_lib.notebook.finetune import prepare
from cobot_lib.notebook.params import ParameterError, check_finetune

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "04_finetune.ipynb"
LAST_CHECK_CELL = 5  # the config + dataset cell (index in the executed notebook)


def _fail(tmp_path: Path, **params) -> PapermillExecutionError:
    params = {"checkpoint": "random", "output_dir": str(tmp_path / "run"), **params}
    with pytest.raises(PapermillExecutionError) as info:
        papermill.execute_notebook(
            str(NOTEBOOK), str(tmp_path / "out.ipynb"), parameters=params,
            kernel_name="python3", progress_bar=False, cwd=str(tmp_path),
        )  # fmt: skip
    err = info.value
    assert err.cell_index <= LAST_CHECK_CELL, (err.cell_index, err.evalue)
    assert not (tmp_path / "run").exists(), "the run wrote files before the check failed"
    return err


def _refused(tmp_path: Path, error: type[Exception], **params) -> str:
    """The message with which the notebook's check cells (3 and 4) refuse ``params``, run in
    this process on the parameters cell's defaults; nothing may be written."""
    namespace: dict = {}
    exec(nbformat.read(NOTEBOOK, as_version=4).cells[2].source, namespace)  # our own file
    namespace.update({"checkpoint": "random", "output_dir": str(tmp_path / "run"), **params})
    with pytest.raises(error) as info:
        prepare(check_finetune(namespace))
    assert not (tmp_path / "run").exists(), "the run wrote files before the check failed"
    return str(info.value)


def test_the_check_cells_are_where_the_tests_expect() -> None:
    cells = nbformat.read(NOTEBOOK, as_version=4).cells
    assert cells[0].cell_type == "markdown"
    assert "set_threads()" in cells[1].source
    assert cells[2].metadata.get("tags") == ["parameters"]
    assert "check_finetune(globals())" in cells[3].source  # index 4 once papermill injects
    assert "prepare(run)" in cells[4].source  # index 5


@pytest.mark.slow
def test_a_bad_parameter_stops_the_real_notebook_in_its_check_cell(tmp_path: Path) -> None:
    err = _fail(tmp_path, epochs="10")
    assert err.ename == "ParameterError"
    for fragment in ["epochs = '10' (str)", "wrong type", "expected int"]:
        assert fragment in err.evalue, (fragment, err.evalue)


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"method": "lorra"}, ["method = 'lorra'", "unknown value", "'adaptformer'"]),
        ({"checkpoint": "/nonexistent/sam_vit_b.pth"}, ["no such file", "sam_vit_b.pth"]),
        ({"method": "freeze", "cobot": True}, ["method='freeze'", "cobot must be False"]),
        ({"cobot": False, "relation": "off"}, ["only apply with cobot=True"]),
        ({"val_split": "test"}, ["val_split='test' is the evaluation split", "held-out"]),
        ({"negative_points": 2}, ["{'negative_points': 2} only apply with point prompts"]),
    ],
    ids=["unknown-method", "missing-checkpoint", "cobot-on-freeze",
         "switch-without-cobot", "select-on-test", "points-without-point-prompts"],
)  # fmt: skip
def test_bad_parameter_stops_early(tmp_path: Path, params: dict, expected: list[str]) -> None:
    text = _refused(tmp_path, ParameterError, **params)
    for fragment in expected:
        assert fragment in text, (fragment, text)


def test_folder_that_is_not_a_dataset(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    text = _refused(tmp_path, ConfigError, dataset=str(empty))
    assert f"dataset='{empty}' gives no usable samples" in text and "not found" in text


@pytest.mark.slow
def test_dataset_folder_with_no_samples(tmp_path: Path) -> None:
    root = tmp_path / "data"
    for sub in ("images", "masks", "splits"):
        (root / sub).mkdir(parents=True)
    for split in ("train", "test"):
        (root / "splits" / f"{split}.txt").write_text("")
    err = _fail(tmp_path, dataset=str(root))
    assert err.ename == "ConfigError"
    assert "gives no usable samples" in err.evalue and "is empty" in err.evalue


def test_validation_split_that_the_dataset_lacks(tmp_path: Path) -> None:
    text = _refused(tmp_path, ConfigError, val_split="holdout")  # demo:nuclei: train, val, test
    assert "val_split='holdout' (data.val_split)" in text
    assert "holdout.txt" in text and "data.val_split=null" in text
