"""The notebooks' parameter check: wrong types, unknown values and missing paths stop early."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cobot_lib.experiments.sweep import notebook_parameters
from cobot_lib.notebook.params import Param, ParameterError, check_finetune, check_params

SPEC = {
    "model_type": Param(str, choices=("tiny", "vit_b")),
    "steps": Param(int, minimum=1),
    "lr": Param(float, minimum=0.0),
    "checkpoint": Param(str, optional=True, path="file", path_keywords=("foundation",)),
}
GOOD = {"model_type": "tiny", "steps": 5, "lr": 1e-3, "checkpoint": None}


def test_good_values_are_returned():
    assert check_params({**GOOD, "other": object()}, SPEC) == GOOD


def test_int_is_accepted_as_float_but_bool_is_no_number():
    assert check_params({**GOOD, "lr": 1}, SPEC)["lr"] == 1
    with pytest.raises(ParameterError, match=r"steps = True \(bool\)"):
        check_params({**GOOD, "steps": True}, SPEC)


@pytest.mark.parametrize(
    "name, value, words",
    [
        ("steps", "50", "wrong type str"),
        ("steps", 0, "below the minimum 1"),
        ("lr", "1e-3", "wrong type str"),
        ("model_type", "vit_x", "unknown value"),
        ("checkpoint", "/no/such/file.pt", "no such file"),
        ("model_type", None, "None is not allowed"),
    ],
)
def test_each_problem_is_named(name, value, words):
    with pytest.raises(ParameterError) as info:
        check_params({**GOOD, name: value}, SPEC)
    message = str(info.value)
    assert f"{name} = {value!r}" in message and words in message
    assert "expected" in message


def test_all_problems_reported_at_once_and_missing_names():
    with pytest.raises(ParameterError) as info:
        check_params({"model_type": "big", "lr": "x"}, SPEC)
    lines = str(info.value).splitlines()[1:]
    assert len(lines) == 4
    assert any(line.strip().startswith("steps: missing") for line in lines)


def test_path_keywords_and_existing_paths(tmp_path):
    f = tmp_path / "ckpt.pt"
    f.write_bytes(b"x")
    assert check_params({**GOOD, "checkpoint": "foundation"}, SPEC)["checkpoint"] == "foundation"
    assert check_params({**GOOD, "checkpoint": str(f)}, SPEC)["checkpoint"] == str(f)
    with pytest.raises(ParameterError, match="no such dir"):
        check_params({"d": str(f)}, {"d": Param(str, path="dir")})


def test_custom_check_and_bad_spec():
    spec = {"v": Param(int, check=lambda v: v % 4 == 0, check_message="a multiple of 4")}
    assert check_params({"v": 8}, spec) == {"v": 8}
    with pytest.raises(ParameterError, match="a multiple of 4"):
        check_params({"v": 6}, spec)
    with pytest.raises(TypeError):
        check_params({"v": 1}, {"v": int})
    with pytest.raises(ValueError):
        Param(str, path="folder")


@given(st.integers(min_value=-1000, max_value=1000))
def test_bounds_agree_with_comparison(n):
    spec = {"n": Param(int, minimum=-10, maximum=10)}
    if -10 <= n <= 10:
        assert check_params({"n": n}, spec) == {"n": n}
    else:
        with pytest.raises(ParameterError):
            check_params({"n": n}, spec)


@pytest.mark.parametrize(
    "value, words",
    [
        ([4, 8], None),
        ([], "an empty list"),
        ([4, "8"], "elements that are not int: ['8']"),
        ([4, True], "elements that are not int: [True]"),
        ([4, 0], "below the minimum 1"),
        ([4, 2048], "above the maximum 1024"),
        ("4, 8", "wrong type str"),
    ],
)
def test_list_params_check_every_element(value, words):
    param = Param(list, items=int, minimum=1, maximum=1024)
    assert param.problem(value) == words
    assert param.describe() == "list of int (not empty), >= 1, <= 1024"


# ---- notebook 04's validation and prompt parameters (check_finetune, without a kernel) ------
NOTEBOOK_04 = Path(__file__).resolve().parents[1] / "notebooks" / "04_finetune.ipynb"


@pytest.fixture(scope="module")
def finetune_defaults() -> dict:
    """Notebook 04's parameters cell, read as papermill (and a sweep) reads it."""
    return notebook_parameters(NOTEBOOK_04)


def test_finetune_defaults_validate_on_val_with_box_prompts(finetune_defaults):
    run = check_finetune(finetune_defaults)
    assert run.params["val_split"] == "val" and run.params["prompt"] == "box"
    no_validation = check_finetune({**finetune_defaults, "val_split": None})  # the tables' protocol
    assert no_validation.params["val_split"] is None


@pytest.mark.parametrize(
    "bad, words",
    [
        ({"val_split": "test"}, "val_split='test' is the evaluation split"),
        ({"val_split": "train"}, "val_split='train' is the training split"),
        ({"val_split": ""}, "a split name (splits/NAME.txt) or None"),
        ({"val_every_steps": 0}, "val_every_steps = 0 (int): below the minimum 1"),
        ({"patience": 2.5}, "patience = 2.5 (float): wrong type float"),
        ({"val_split": None, "patience": 3}, "{'patience': 3} only apply with validation"),
        ({"prompt": "points"}, "prompt = 'points' (str): unknown value"),
        ({"points": 0, "prompt": "point"}, "points = 0 (int): below the minimum 1"),
        ({"negative_points": 2}, "{'negative_points': 2} only apply with point prompts"),
    ],
)
def test_finetune_validation_and_prompt_errors(finetune_defaults, bad, words):
    with pytest.raises(ParameterError) as info:
        check_finetune({**finetune_defaults, **bad})
    assert words in str(info.value), str(info.value)


def test_finetune_point_prompts_are_accepted(finetune_defaults):
    run = check_finetune({**finetune_defaults, "prompt": "box+point", "negative_points": 2})
    assert (run.params["points"], run.params["negative_points"]) == (1, 2)
