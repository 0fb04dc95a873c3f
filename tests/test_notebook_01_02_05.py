"""Notebooks 01, 02, 05 and appendix A1 stop in their parameter-check cell, with a clear
message, on bad papermill parameters (as 03, 04, 06 and 07 do: tests/test_notebook_03_06_07.py,
test_notebook_04.py).

05 runs through papermill with bad ``-p`` values (the cell that raised must be its
``check_benchmark`` cell); 01, 02 and A1 run their parameters cell and then their own check cell
in this process (``refused``, see test_notebook_03_06_07.py). Each case checks that the message
names every bad value and what was expected. Their default runs are checked by nbval and
tests/test_walkthrough_notebooks.py.
"""

from __future__ import annotations

import pytest
from test_notebook_03_06_07 import _fails, refused

from cobot_lib.notebook.params import ParameterError, check_benchmark


def _stopped_at_check(err, check: str) -> None:
    assert err.ename == "ParameterError" and f"{check}(globals())" in err.source


def test_01_wrong_type_bad_item_and_below_minimum():
    text = refused("01_t_product.ipynb", "check_t_product", n3="4", n1=9, num_modules=0)
    assert "n3 = '4' (str): wrong type str" in text
    assert "n1 = 9 (int): above the maximum 8" in text
    assert "num_modules = 0 (int): below the minimum 2" in text


def test_a1_bad_timing_list():
    text = refused("A1_fft_timing.ipynb", "check_fft_timing", timing_n3=[2, "x"], timing_repeats=0)
    assert "timing_n3 = [2, 'x'] (list): elements that are not int: ['x']" in text
    assert "timing_repeats = 0 (int): below the minimum 1" in text


def test_02_zero_axis_and_widths_not_multiples_of_four():
    text = refused(
        "02_hamilton_product.ipynb", "check_hamilton", rotation_axis=[0, 0, 0], layer_width=6,
        widths=[4, 6],
    )  # fmt: skip
    assert "rotation_axis = [0, 0, 0] (list): expected three numbers, not all zero" in text
    assert "layer_width = 6 (int): expected a multiple of 4" in text
    assert "widths = [4, 6] (list): expected multiples of 4" in text


def test_05_missing_results_unknown_domain_and_wrong_type(tmp_path):
    missing = str(tmp_path / "no_such_folder")
    err = _fails(
        "05_ablations.ipynb",
        tmp_path,
        results_dir=missing,
        panel_domain="mars",
        rerun_check="yes",
    )
    _stopped_at_check(err, "check_benchmark")
    assert f"results_dir = '{missing}' (str): expected a folder holding results.jsonl" in err.evalue
    assert "panel_domain = 'mars' (str): unknown value" in err.evalue
    assert "rerun_check = 'yes' (str): wrong type str" in err.evalue


def test_05_table_row_and_seed_the_grid_does_not_have():
    """The checks that need the grid file (the same function the notebook calls; the papermill
    path is the test above)."""
    good = {"results_dir": "docs/results/benchmark", "grid_file": "configs/benchmark/grid.yaml",
            "panel_domain": "sonar", "panel_table": "table1", "rerun_check": False,
            "rerun_table": "table1", "rerun_row": "+CoS+RM+HL", "rerun_domain": "aerial",
            "rerun_seed": 0}  # fmt: skip
    assert set(check_benchmark(good)["grid"].tables) >= {"table1", "controls_cos"}
    bad = {**good, "panel_table": "table9", "rerun_row": "+XY", "rerun_seed": 9}
    with pytest.raises(ParameterError) as err:
        check_benchmark(bad)
    text = str(err.value)
    assert "panel_table = 'table9': not a table of configs/benchmark/grid.yaml" in text
    assert "rerun_row = '+XY': not a row of table1" in text
    assert "rerun_seed = 9: not a seed of aerial in the grid [0, 1, 2, 3, 4, 5, 6, 7]" in text
    assert check_benchmark({**good, "rerun_seed": 7})["rerun_seed"] == 7  # aerial runs 8 seeds
    with pytest.raises(ParameterError, match="rerun_seed = 7: not a seed of sonar"):
        check_benchmark({**good, "rerun_domain": "sonar", "rerun_seed": 7})
