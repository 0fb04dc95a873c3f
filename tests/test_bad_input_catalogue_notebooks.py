"""The bad-input catalogue, part 3: notebook parameters and result checks, sweeps and tables.

Notebooks are not executed: their parameters cell is checked by the library
(``notebook.params.check_params``) against the kinds notebook 04 declares, built here from the
library's own constants, and their result checks by ``notebook.checks``. Sweeps go to
``python -m cobot_lib.sweep GRID --dry-run`` (in-process), tables to ``load_results`` / the
benchmark's ``read_rows``. Every case goes through ``bad_inputs.check_refusal``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from bad_inputs import Refusal, check_refusal, registry

from cobot_lib.backbone.sam import MODEL_TYPES
from cobot_lib.experiments.benchmark.runner import JSONL, read_rows
from cobot_lib.experiments.cli import main as sweep_cli
from cobot_lib.experiments.sweep import load_results
from cobot_lib.notebook.checks import check_gain, check_same
from cobot_lib.notebook.params import Param, check_params
from cobot_lib.peft import METHODS

CASES, case = registry()

#: the kinds notebook 04's parameters cell declares (see its second cell)
FINETUNE = {
    "model_type": Param(str, choices=MODEL_TYPES),
    "checkpoint": Param(str, path="file", path_keywords=("foundation", "random")),
    "method": Param(str, choices=METHODS),
    "cobot": Param(bool),
    "relation": Param(str, choices=("learnable", "fixed", "off")),
    "rank": Param(int, optional=True, minimum=1),
    "epochs": Param(int, minimum=0),
    "lr": Param(float, minimum=0.0),
    "seed": Param(int, minimum=0),
    "device": Param(
        str,
        check=lambda v: v in ("cpu", "auto") or v.startswith("cuda"),
        check_message="'cpu', 'auto', 'cuda' or 'cuda:N'",
    ),  # fmt: skip
}
GOOD = {"model_type": "tiny", "checkpoint": "foundation", "method": "lora", "cobot": True,
        "relation": "learnable", "rank": None, "epochs": 8, "lr": 1e-4, "seed": 0,
        "device": "cpu"}  # fmt: skip


def _params(name: str, value, *culprits) -> callable:
    def build(user, out):
        return Refusal(lambda: check_params({**GOOD, name: value}, FINETUNE),
                       [f"{name} = {value!r}", *culprits])  # fmt: skip

    build.__name__ = f"notebook_{name}_{type(value).__name__}"
    return case(build)


_params("epochs", "8", "wrong type str")
_params("method", "lorra", "unknown value", "'adaptformer'")
_params("lr", True, "a bool (True) is not a float")
_params("checkpoint", "/no/such/sam_vit_b.pth", "no such file")
_params("rank", 0, "below the minimum 1")
_params("seed", -1, "below the minimum 0")
_params("device", "gpu", "expected 'cpu', 'auto', 'cuda' or 'cuda:N'")
_params("relation", "off ", "unknown value")
_params("model_type", "vit_x", "unknown value", "'vit_b'")


@case
def notebook_parameter_missing(user, out):
    namespace = {k: v for k, v in GOOD.items() if k != "lr"}
    return Refusal(lambda: check_params(namespace, FINETUNE), ["lr: missing"])


@case
def notebook_final_scores_differ_from_zero_shot(user, out):
    final = {"miou": 0.8, "mdsc": 0.9, "n_instances": 20}
    zero = {"miou": 0.8, "mdsc": 0.85, "n_instances": 20}
    what = "scores without a training step"
    return Refusal(lambda: check_same(final, zero, what, ("final", "zero-shot")),
                   ["mdsc: 0.9 (final) vs 0.85 (zero-shot)"])  # fmt: skip


@case
def notebook_no_gain_over_zero_shot(user, out):
    final, zero = {"miou": 0.70, "mdsc": 0.86}, {"miou": 0.72, "mdsc": 0.85}
    return Refusal(lambda: check_gain(final, zero), ["miou: 0.7000 (adapted) <= 0.7200"])


# ---- sweeps -----------------------------------------------------------------------------------
def _grid(text: str | bytes, *culprits) -> callable:
    def build(user, out):
        path = user / "grid.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        return Refusal(lambda: sweep_cli([str(path), "--dry-run", "--out", str(out)]),
                       [path, *culprits])  # fmt: skip

    return build


for _name, _text, _culprits in (
    ("grid_not_yaml", "grid: {seed: [0, 1}\n", ["not valid YAML"]),
    ("grid_not_utf8", b"grid: {seed: [0]}\nname: caf\xe9\n", ["not valid YAML"]),
    ("grid_a_list", "- seed\n", ["must hold a mapping"]),
    ("grid_unknown_top_key", "grid: {seed: [0]}\nruns: 3\n", ["unknown key(s) ['runs']"]),
    ("grid_missing", "name: x\n", ["no 'grid'"]),
    ("grid_unknown_parameter", "grid: {learning_rate: [0.1]}\n", ["['learning_rate']"]),
    ("grid_wrong_type", "grid: {epochs: ['8']}\n", ["epochs='8'", "wrong type"]),
    ("grid_reserved_parameter", "grid: {output_dir: [x]}\n", ["set by the sweep"]),
    ("grid_empty_values", "grid: {seed: []}\n", ["seed must be a non-empty list"]),
    ("grid_value_not_a_list", "grid: {seed: 3}\n", ["put single values under 'fixed'"]),
    ("grid_fixed_and_grid", "fixed: {seed: 0}\ngrid: {seed: [1]}\n", ["also under 'fixed'"]),
    ("grid_notebook_missing", "notebook: nb/none.ipynb\ngrid: {seed: [0]}\n", ["none.ipynb"]),
):
    _build = _grid(_text, *_culprits)
    _build.__name__ = _name
    case(_build)


@case
def sweep_table_not_csv(user, out):
    table = user / "sweep" / "results.csv"
    table.parent.mkdir(parents=True)
    table.write_bytes(b"\x80\x04\x95 not text at all \xff\xfe")
    return Refusal(lambda: load_results(table.parent), [table, "not a sweep table"])


@case
def sweep_table_missing(user, out):
    return Refusal(lambda: load_results(user / "nowhere"), [user / "nowhere", "no sweep table"])


@case
def benchmark_results_lack_columns(user, out):
    table = user / JSONL
    user.mkdir(exist_ok=True)
    table.write_text('{"method": "lora", "miou": 0.8}\n')
    return Refusal(lambda: read_rows(user), [f"{table}:1", "lacks the columns"])


@case
def benchmark_results_not_utf8(user, out):
    table = user / JSONL
    user.mkdir(exist_ok=True)
    table.write_bytes('{"method": "löra"}\n'.encode("utf-16"))
    return Refusal(lambda: read_rows(user), [table, "not UTF-8"])


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_notebook_parameter_sweep_or_table(name, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(Path(__file__).resolve().parents[1])  # relative notebook paths
    check_refusal(CASES[name], tmp_path, capsys)


def test_the_catalogue_has_at_least_60_bad_inputs():
    from test_bad_input_catalogue_data import CASES as DATA
    from test_bad_input_catalogue_runs import CASES as RUNS

    assert len(DATA) + len(RUNS) + len(CASES) >= 60
