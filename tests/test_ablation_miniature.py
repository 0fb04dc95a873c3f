"""The ablation miniature on the two demo sets (``python -m cobot_lib.ablations``): its runs and
report. (Notebook 05 now reads the powered benchmark; its panel: tests/test_benchmark_panel.py.)

Oracles: the closed-form parameter counts of METHOD.md sections 1-2 (that each switch reaches the
model), hand-made tables with known means and standard deviations, and numpy for the report's
numbers. Runs use the tiny foundation model when it exists, else random weights, and one or two
steps.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from cobot_lib.backbone.foundation import foundation_checkpoint_path
from cobot_lib.experiments.ablation_report import (
    TABLE1,
    configurations,
    fig5_comparison,
    grid_specs,
    summary_sentences,
    table_comparison,
    verdict,
)
from cobot_lib.experiments.ablations import (
    COLUMNS,
    RANKS,
    AblationSpec,
    find_row,
    read_results,
    run_grid,
    run_or_load,
    run_spec,
    spec_of,
)

CHECKPOINT = "foundation" if foundation_checkpoint_path().is_file() else "random"
L, D = 12, 128  # the tiny model's blocks and width (cobot_lib.backbone.sam.SAM_SPECS["tiny"])


def quick(**kwargs) -> AblationSpec:
    return AblationSpec.of(steps=kwargs.pop("steps", 1), checkpoint=CHECKPOINT, **kwargs)


def closed_form(spec: AblationSpec) -> int:
    """Trainable image-encoder parameters (METHOD.md sections 1-2, the Table 4 column)."""
    v = spec.rank
    if spec.method == "lora":
        base, m = L * 2 * (D * v + v * D), 2 * L
    else:
        base, m = L * (2 * D + (D * v + v) + (v * D + D)), L
    if not spec.cobot:
        return base
    extra = m * v  # c
    extra += m * v if spec.coefficient_sets == "dual" else 0  # lambda_MC
    extra += m * m if spec.relation == "learnable" else 0  # S (a buffer when fixed or off)
    extra += {"hypercomplex": m * v * v // 4, "linear": m * v * v, "none": 0}[spec.head]
    return base + extra


@pytest.mark.parametrize(
    "spec",
    [
        quick(cobot=False, rank=8),
        quick(rank=8),
        quick(head="linear", relation="fixed"),
        quick(coefficient_sets="single", relation="off", head="none", rank=4),
        quick(method="lora", dataset="demo:mri"),
    ],
    ids=lambda s: s.label(),
)
def test_each_switch_reaches_the_model(spec):
    row = run_spec(spec)
    assert row["params"] == closed_form(spec)
    assert {k: row[k] for k in ("method", "rank", "dataset", "seed")} == {
        "method": spec.method, "rank": spec.rank, "dataset": spec.dataset, "seed": spec.seed
    }  # fmt: skip
    assert 0.0 <= row["miou"] <= row["mdsc"] <= 1.0  # IoU <= DSC for every instance
    assert [r["global_step"] for r in row["history"] if r["event"] == "step"] == [1]


def test_same_seed_same_row_and_the_table_is_reused():
    spec = quick(seed=3, steps=2, dataset="demo:mri", relation="fixed")
    first, second = run_or_load(spec), run_or_load(spec)
    assert first["source"] == second["source"] == "run"
    assert (first["miou"], first["mdsc"]) == (second["miou"], second["mdsc"])
    table = pd.DataFrame([{**{k: first[k] for k in COLUMNS}, "seconds": 123.0}])
    loaded = run_or_load(spec, table)
    assert loaded["source"] == "table" and loaded["seconds"] == 123.0
    assert loaded["mdsc"] == first["mdsc"]
    # another schedule, seed or switch is another row
    for other in (quick(seed=3, steps=3, dataset="demo:mri", relation="fixed"),
                  quick(seed=4, steps=2, dataset="demo:mri", relation="fixed"),
                  quick(seed=3, steps=2, dataset="demo:mri")):  # fmt: skip
        assert find_row(table, other) is None


def test_grid_resumes_and_ends_with_the_same_table(tmp_path):
    out, logs = tmp_path / "grid.csv", []
    specs = [quick(cobot=False, rank=4), quick(rank=4, relation="off", head="none")]
    first = run_grid(out, specs, log=logs.append)
    assert len(first) == 2 and "0 of 2 runs already" in logs[0]
    again = run_grid(out, specs, log=logs.append)
    assert "2 of 2 runs already" in logs[-1]
    pd.testing.assert_frame_equal(again, read_results(out))
    read_results(out).iloc[:1].to_csv(out, index=False)  # as if stopped after the first run
    resumed = run_grid(out, specs, log=logs.append)
    assert "1 of 2 runs already" in logs[-2]
    metrics = ["miou", "mdsc", "params"]
    pd.testing.assert_frame_equal(resumed[metrics], first[metrics].astype(resumed[metrics].dtypes))


def test_grid_covers_tables_1_to_3_and_fig5():
    configs = configurations()
    assert len(configs) == 14  # 6 (Table 1) + fixed RM + linear head + 2 x 3 further V
    specs = grid_specs(seeds=(0, 1, 2))
    assert len(specs) == 14 * 2 * 3 and len({s.key() for s in specs}) == len(specs)
    assert list(TABLE1.values())[0].cobot is False and list(TABLE1.values())[-1] == AblationSpec()
    for spec in specs:  # a results row names its spec; the run's seed draws COBOT's too
        assert spec_of({k: getattr(spec, k) for k in COLUMNS if hasattr(spec, k)}) == spec
        assert spec.peft.cobot is None or spec.peft.cobot.seed == spec.seed


def test_fig5_pairs_plain_and_cobot_at_every_rank_of_the_stored_grid():
    fig5 = fig5_comparison(read_results("docs/results/ablations_demo.csv"))
    assert sorted(fig5["V"]) == sorted(RANKS * 2) and (fig5["n"] == 3).all()


def test_bad_input_is_named(tmp_path):
    with pytest.raises(ValueError, match="divisible by 4"):
        AblationSpec.of(rank=6)
    with pytest.raises(ValueError, match="demo:coco"):
        AblationSpec(dataset="demo:coco")
    with pytest.raises(ValueError, match="relation"):
        AblationSpec.of(relation="sometimes")
    with pytest.raises(ValueError, match="steps"):
        AblationSpec(steps=0)
    with pytest.raises(FileNotFoundError, match="nothing.csv"):
        read_results(tmp_path / "nothing.csv")
    (tmp_path / "bad.csv").write_text("method,seed\nlora,0\n")
    with pytest.raises(ValueError, match="miou"):
        read_results(tmp_path / "bad.csv")


def _stored(values: list[float], **kwargs) -> pd.DataFrame:
    rows = []
    for seed, value in enumerate(values):
        spec = AblationSpec.of(seed=seed, steps=7, checkpoint="random", **kwargs)
        row = {k: getattr(spec, k) for k in COLUMNS if hasattr(spec, k)}
        rows.append({**row, "miou": value, "mdsc": value, "seconds": 1.0, "params": 1})
    return pd.DataFrame(rows, columns=COLUMNS)


def test_verdicts():
    assert verdict(1.2, 3.0, 1.0) == "agrees"
    assert verdict(1.2, 1.0, 1.0) == "same sign, within noise"
    assert verdict(1.2, -1.0, 1.0) == "opposite sign, within noise"
    assert verdict(1.2, -3.0, 1.0) == "disagrees"
    assert verdict(0.0, 0.5, 1.0) == "agrees (no clear change)"
    assert verdict(0.0, 5.0, 1.0) == "disagrees (changes)"
    assert verdict(0.4, math.nan, math.nan) == "not run"
    assert verdict(0.4, -0.1, math.nan) == "opposite sign (one seed)"


def test_table_comparison_numbers():
    base, full = [0.50, 0.52, 0.54], [0.60, 0.66, 0.63]
    table = pd.concat([
        _stored(base, cobot=False, dataset="demo:mri"),
        _stored(full, dataset="demo:mri"),
        _stored(full, cobot=False, dataset="demo:nuclei"),  # reversed on nuclei
        _stored(base, dataset="demo:nuclei"),
    ], ignore_index=True)  # fmt: skip
    comparison = table_comparison(table, 1, steps=7, checkpoint="random")
    mri = comparison[comparison.dataset == "demo:mri"].set_index("row")
    paired = 100 * (np.array(full) - np.array(base))  # the same seeds 0, 1, 2
    d, se = paired.mean(), paired.std(ddof=1) / math.sqrt(3)
    assert mri.loc["+CoS+RM+HL", "d"] == pytest.approx(d)
    assert mri.loc["+CoS+RM+HL", "se"] == pytest.approx(se)
    assert mri.loc["+CoS+RM+HL", "verdict"] == "agrees" and d > 2 * se
    assert mri.loc["+CoS+RM+HL", "paper d"] == "+1.2"
    assert mri.loc["+CoS", "verdict"] == "not run"
    nuclei = comparison[comparison.dataset == "demo:nuclei"].set_index("row")
    assert nuclei.loc["+CoS+RM+HL", "verdict"] == "disagrees / disagrees"
    assert nuclei.loc["+CoS+RM+HL", "paper"] == "NWPU / TRCAN"
    text = summary_sentences(comparison)
    assert any("demo:mri" in t and "best miniature row is +CoS+RM+HL" in t for t in text)
    assert "demo:nuclei: 2 paper differences; verdicts — disagrees: 2; not run: 8." in text
