"""The benchmark grid file: its rows are the paper's (checked against the check marks written
with CobotConfig alone), every domain with >= 5 seeds, and a point's config is the protocol."""

from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest

from cobot_lib.data.benchmark_sets import BENCHMARK_DOMAINS
from cobot_lib.data.domains import DOMAINS, write_domain
from cobot_lib.experiments.benchmark import (
    BenchmarkPoint,
    DomainProtocol,
    load_grid,
    point_config,
    run_point,
)
from cobot_lib.experiments.benchmark.paper import TABLE1_ROWS, TABLE2_ROWS, TABLE3_ROWS
from cobot_lib.experiments.tables import row_config, variant_label
from cobot_lib.peft.config import CobotConfig, PeftConfig

GRID = Path(__file__).resolve().parents[1] / "configs" / "benchmark" / "grid.yaml"


def _point(grid, table, name, seed=0):
    return BenchmarkPoint.of("sonar", seed, DomainProtocol(1, 1.0), **grid.tables[table][name])


def test_grid_covers_every_domain_table_and_seed():
    grid = load_grid(GRID)
    assert set(grid.domains) == set(BENCHMARK_DOMAINS)  # 3 synthetic + 2 real
    for domain in grid.domains:
        seeds = grid.seeds_of(domain)
        assert len(seeds) >= 5 and len(set(seeds)) == len(seeds), domain
        tables = set(grid.tables_of(domain))
        if domain in DOMAINS:  # the synthetic domains run every table
            assert tables == set(grid.tables), domain
        else:  # the real ones Table 4 (every method vs Freeze, each +COBOT vs its base)
            assert tables == {t for t in grid.tables if t.startswith("table4")}, domain
    points = grid.points()
    configs = {tuple(p.row().values()) for p in points}
    # 6 + 1 + 1 (Tables 1-3) + 6 (Fig. 5 V != 16) + 4 (Table 4) + 4 (issue 16's controls)
    assert len(configs) == 22
    trained = Counter(p.domain for p in points if p.peft.method != "freeze")
    assert trained == {"sonar": 21 * 5, "ct": 21 * 5, "aerial": 21 * 8,
                       "nuclei": 5 * 5, "mri": 5 * 5}  # fmt: skip
    assert sum(p.peft.method == "freeze" for p in points) == len(grid.domains)
    ranks = {p.peft.rank for p in points if p.peft.method == "adaptformer"}
    assert ranks == {4, 8, 16, 32}
    assert list(grid.tables["table4"]) == [
        "Freeze", "Lightweight", "LoRA", "LoRA+COBOT", "Adaptformer", "Adaptformer+COBOT",
    ]  # fmt: skip
    assert grid.comparisons() == 24 and grid.comparisons("mri") == 7
    assert grid.equivalence_bound > 0


def test_a_domain_may_run_its_own_seeds_and_tables(tmp_path):
    path = tmp_path / "grid.yaml"
    path.write_text(
        "domains:\n  ct: {steps: 4, lr: 0.1}\n"
        "  mri: {steps: 2, lr: 0.1, seeds: [3, 4], tables: [b]}\n"
        "seeds: [0, 1, 2]\nequivalence_bound: 0.5\n"
        "tables:\n  a: {A: {method: lora}, B: {method: adaptformer}}\n"
        "  b: {F: {method: freeze}, B: {method: adaptformer}}\n"
    )
    grid = load_grid(path)
    assert grid.seeds_of("ct") == (0, 1, 2) and grid.seeds_of("mri") == (3, 4)
    assert list(grid.tables_of("ct")) == ["a", "b"] and list(grid.tables_of("mri")) == ["b"]
    runs = sorted((p.domain, p.peft.method, p.seed) for p in grid.points())
    assert runs == sorted(
        [("ct", m, s) for m in ("lora", "adaptformer") for s in (0, 1, 2)] + [("ct", "freeze", 0)]
        + [("mri", "adaptformer", 3), ("mri", "adaptformer", 4), ("mri", "freeze", 3)]
    )  # fmt: skip
    assert grid.comparisons("ct") == 2 and grid.comparisons("mri") == 1


def test_control_rows_change_one_initialisation_each():
    """Issue 16's controls: each differs from the paper's row it controls in exactly one
    initialisation switch, and its label says which."""
    grid = load_grid(GRID)
    full = _point(grid, "table1", "+CoS+RM+HL").peft
    plain = _point(grid, "table1", "Adaptformer").peft
    linear = _point(grid, "table3", "Linear").peft
    cases = [
        ("controls_cos", "Adaptformer (A x2)", plain.with_(down_init_scale=2.0), "(A x2)"),
        ("controls_base", "+CoS+RM+HL (c perturbed)",
         full.with_(cobot=replace(full.cobot, base_init="perturbed")), "(c perturbed)"),
        ("controls_head_orthogonal", "HL (orthogonal init)",
         full.with_(cobot=replace(full.cobot, head_init="orthogonal")), "(HL init orthogonal)"),
        ("controls_head_init_hl", "Linear (init like HL)",
         linear.with_(cobot=replace(linear.cobot, linear_init="like_hypercomplex")),
         "(Linear init like HL)"),
    ]  # fmt: skip
    for table, name, expected, suffix in cases:
        point = _point(grid, table, name)
        assert point.peft == expected, name
        assert variant_label(point.peft).endswith(suffix), name
        assert row_config(point.row()) == expected, name  # the results columns name it back


def _cobot(**switches) -> PeftConfig:
    """Adaptformer (V = 16) with COBOT, its switches as the paper's text sets them (seed 0)."""
    return PeftConfig("adaptformer", rank=16, cobot=CobotConfig(seed=0, **switches))


#: Tables 1-3 by the paper's check marks (METHOD.md section 4), written with CobotConfig alone:
#: RM off = relation "off" (S identity), HL off = head "none" (W identity), CoS off = one set.
PAPER_ROWS = {
    "table1": {
        "Adaptformer": PeftConfig("adaptformer", rank=16),
        "+CoS": _cobot(relation="off", head="none"),
        "+HL": _cobot(coefficient_sets="single", relation="off"),
        "+CoS+HL": _cobot(relation="off"),
        "+CoS+RM": _cobot(head="none"),
        "+CoS+RM+HL": _cobot(),
    },
    "table2": {"Fixed": _cobot(relation="fixed"), "Learnable": _cobot()},
    "table3": {"Linear": _cobot(head="linear"), "HL": _cobot()},
}


@pytest.mark.parametrize("table", list(PAPER_ROWS))
def test_ablation_rows_are_the_papers_check_marks(table):
    grid = load_grid(GRID)
    assert list(grid.tables[table]) == list(PAPER_ROWS[table])
    assert tuple(PAPER_ROWS[table]) == {"table1": TABLE1_ROWS, "table2": TABLE2_ROWS,
                                        "table3": TABLE3_ROWS}[table]  # fmt: skip
    for name, expected in PAPER_ROWS[table].items():
        assert _point(grid, table, name).peft == expected, name


def test_a_point_carries_its_peft_config():
    grid = load_grid(GRID)
    for name in grid.tables["table4"]:
        point = _point(grid, "table4", name, seed=3)
        again = row_config(point.row())  # the columns name the config back
        if again.cobot is not None:
            again = again.with_(cobot=replace(again.cobot, seed=3))
        assert again == point.peft, name
        assert point.peft.cobot is None or point.peft.cobot.seed == 3  # COBOT seeded by the run
    assert variant_label(_point(grid, "fig5_v8", "Adaptformer+COBOT").peft) == (
        "Adaptformer+CoS+RM+HL V=8"
    )


def test_point_config_is_the_protocol():
    grid = load_grid(GRID)
    point = next(p for p in grid.points() if p.domain == "ct" and p.peft.cobot and p.seed == 3)
    config = point_config(point, "/data/ct", "/tmp/run")
    assert config.data.eval_split == "test" and config.data.val_split is None
    assert config.runtime.max_steps == grid.domains["ct"].steps
    assert config.optim.lr == grid.domains["ct"].lr and config.runtime.seed == 3
    assert config.peft == point.peft  # the run config reads back the point's PeftConfig
    assert config.peft.cobot is not None and config.peft.cobot.seed == 3
    assert point_config(point, "/data/ct", "/tmp/run", "val").data.eval_split == "val"
    for schedule, decay_steps in (("cosine", grid.domains["ct"].steps), ("constant", None)):
        other = replace(point, protocol=replace(point.protocol, schedule=schedule))
        optim = point_config(other, "/data/ct", "/tmp/run").optim
        assert (optim.schedule, optim.decay_steps) == (schedule, decay_steps)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("seeds: [0]\ntables: {}\nequivalence_bound: 0.5\n", "missing top-level key 'domains'"),
        ("domains: {ct: {steps: 4, lr: 0.1, epochs: 3}}\nseeds: [0]\ntables: {}\n"
         "equivalence_bound: 0.5\n", "unknown keys"),
        ("domains: {ct: {steps: 4, lr: 0.1}}\nseeds: [0]\nequivalence_bound: 0.5\n"
         "tables: {t: {A: {method: lora}, B: {method: lora, alpha: 2}}}\n", "t.B has unknown"),
        ("domains: {ct: {steps: 4, lr: 0.1}}\nseeds: [0]\nequivalence_bound: 0.5\n"
         "tables: {t: {A: {method: lora}, B: {method: freeze, cobot: true}}}\n", "t.B: COBOT"),
        ("domains: {ct: {steps: 4, lr: 0.1}}\nseeds: [0]\nequivalence_bound: -1\n"
         "tables: {}\n", "equivalence_bound"),
        ("domains: {ct: {steps: 4, lr: 0.1, schedule: step}}\nseeds: [0]\ntables: {}\n"
         "equivalence_bound: 0.5\n", r"domains\.ct\.schedule='step'; expected one of"),
        ("domains: {cells: {steps: 4, lr: 0.1}}\nseeds: [0]\ntables: {}\n"
         "equivalence_bound: 0.5\n", "domains.cells: unknown benchmark domain 'cells'"),
        ("domains: {ct: {steps: 4, lr: 0.1, seeds: [1, 1]}}\nseeds: [0]\ntables: {}\n"
         "equivalence_bound: 0.5\n", r"domains\.ct\.seeds must be .* distinct"),
        ("domains: {ct: {steps: 4, lr: 0.1, tables: [t9]}}\nseeds: [0]\nequivalence_bound: 0.5\n"
         "tables: {t: {A: {method: lora}, B: {method: adaptformer}}}\n",
         r"domains\.ct\.tables must list tables of the grid \(\['t'\]\), got \['t9'\]"),
    ],
)  # fmt: skip
def test_bad_grid_files_name_the_key(tmp_path, text, match):
    path = tmp_path / "grid.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=match):
        load_grid(path)


# two one-step trainings on one image each: about 1 s
def test_a_point_runs_and_repeats_exactly(tmp_path):
    root = write_domain("ct", tmp_path / "ct", sizes=(1, 1, 1))
    point = BenchmarkPoint.of("ct", 1, DomainProtocol(1, 1e-3), "adaptformer", cobot=True)
    first, again = run_point(point, root), run_point(point, root)
    assert first["n_instances"] > 0 and 0 <= first["miou"] <= 1
    assert (first["miou"], first["mdsc"]) == (again["miou"], again["mdsc"])  # seed-paired runs
    assert first["image_encoder_params"] > 0 and first["eval_split"] == "test"
