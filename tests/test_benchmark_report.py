"""The benchmark report on a synthetic results table whose answer is known: every run of the real
grid gets score = domain level + a chosen effect per configuration + seeded noise. The oracle
for every interval is scipy (``ttest_rel`` / ``ttest_1samp`` and their confidence intervals),
for the family reading Holm's sequential reject-and-stop procedure, run on scipy's p-values."""

from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from cobot_lib.experiments.benchmark import BenchmarkPoint, index_rows, key_of, load_grid, read_rows
from cobot_lib.experiments.benchmark.paper import PAPER_TABLE4
from cobot_lib.experiments.benchmark.report import (
    comparisons,
    cost,
    forest_data,
    half_widths,
    markdown_report,
)
from cobot_lib.notebook.viz import forest_figure

GRID = load_grid(Path(__file__).resolve().parents[1] / "configs" / "benchmark" / "grid.yaml")
FULL, BASE = "Adaptformer+CoS+RM+HL V=16", "Adaptformer V=16"
#: Known effects (points) over the domain's level; every other configuration gets a random one.
EFFECTS = {BASE: 0.0, FULL: 3.0, "Adaptformer+CoS V=16": 0.0, "Freeze (zero-shot)": -20.0}
#: The noise sd (points) per configuration (else 0.5): tiny for the base and +CoS, so that
#: +CoS - base (true difference 0) has an interval far inside +-0.5: "no difference".
NOISE = {BASE: 0.01, "Adaptformer+CoS V=16": 0.01}
LEVEL = {"sonar": 70.0, "ct": 80.0, "aerial": 30.0, "nuclei": 85.0, "mri": 60.0}
#: A run's seconds: 30 s, except the control rows' configurations (issue 16) and Freeze.
SECONDS = {"Freeze (zero-shot)": 6.0, "Adaptformer V=16 (A x2)": 60.0,
           "Adaptformer+CoS+RM+Linear V=16 (Linear init like HL)": 60.0,
           "Adaptformer+CoS+RM+HL V=16 (HL init orthogonal)": 60.0,
           "Adaptformer+CoS+RM+HL V=16 (c perturbed)": 60.0}  # fmt: skip
METRIC = {"sonar": "miou", "ct": "mdsc", "aerial": "miou", "nuclei": "miou", "mri": "mdsc"}


def _synthetic():
    """(results rows, truth: (domain, label, seed) -> score in points)."""
    rng = np.random.default_rng(15)
    effects = dict(EFFECTS)
    rows, truth = [], {}
    for point in GRID.points():
        label = point.label()
        effect = effects.setdefault(label, float(rng.normal(0, 2)))
        score = LEVEL[point.domain] + effect + rng.normal(0, NOISE.get(label, 0.5))
        truth[point.domain, label, point.seed] = score
        other = "mdsc" if METRIC[point.domain] == "miou" else "miou"
        rows.append({**point.columns(), METRIC[point.domain]: score / 100, other: 0.0,
                     "seconds": SECONDS.get(label, 30.0), "command": "cmd", "commit": "abc",
                     "cpu": "cpu", "torch": "2"})  # fmt: skip
    return rows, truth


ROWS, TRUTH = _synthetic()


def _label(table, name, domain="sonar"):
    return BenchmarkPoint.of(domain, 0, GRID.domains[domain], **GRID.tables[table][name]).label()


def _oracle(domain, table, name):
    """scipy's mean difference, 95% interval and p of row ``name`` against its table's first."""
    reference = next(iter(GRID.tables[table]))
    ref, row = _label(table, reference, domain), _label(table, name, domain)
    seeds = GRID.seeds_of(domain)
    a = np.array([TRUTH[domain, row, s] for s in seeds])
    if reference == "Freeze":  # one run stands for every seed
        b = np.full(len(a), TRUTH[domain, ref, seeds[0]])
        test = stats.ttest_1samp(a - b, 0.0)
    else:
        b = np.array([TRUTH[domain, ref, s] for s in seeds])
        test = stats.ttest_rel(a, b)
    return float(np.mean(a - b)), test.confidence_interval(0.95), test.pvalue


def test_every_interval_is_scipys():
    table = comparisons(ROWS, GRID)
    assert len(table) == sum(GRID.comparisons(d) for d in GRID.domains)
    assert dict(table.groupby("domain")["n"].max()) == dict(table.groupby("domain")["n"].min())
    assert dict(table.groupby("domain")["n"].max()) == {"sonar": 5, "ct": 5, "aerial": 8,
                                                        "nuclei": 5, "mri": 5}  # fmt: skip
    for _, r in table.iterrows():
        d, ci, p = _oracle(r["domain"], r["table"], r["grid_row"])
        assert r["d"] == pytest.approx(d, abs=1e-9), (r["domain"], r["table"], r["grid_row"])
        assert (r["low"], r["high"]) == pytest.approx((ci.low, ci.high), abs=1e-9)
        assert r["p"] == pytest.approx(p, rel=1e-9, abs=1e-12)


def test_constructed_differences_get_their_verdicts():
    table = comparisons(ROWS, GRID).set_index(["domain", "table", "grid_row"])
    for domain in GRID.domains:
        full = table.loc[(domain, "table4_adaptformer_cobot", "Adaptformer+COBOT"), "verdict"]
        assert full == "better"  # +3 points
        if domain in ("nuclei", "mri"):  # Table 4 only
            assert (domain, "table1", "+CoS") not in table.index
        else:
            assert table.loc[(domain, "table1", "+CoS+RM+HL"), "verdict"] == "better"
            cos = table.loc[(domain, "table1", "+CoS"), "verdict"]
            assert cos == "no difference larger than +-0.5 points"  # true d 0, tiny noise
        for name in ("Lightweight", "LoRA", "Adaptformer"):  # Freeze is 20 points below
            assert table.loc[(domain, "table4", name), "verdict"] == "better"


def test_sections_count_their_comparisons_and_holm_reads_them():
    table = comparisons(ROWS, GRID)
    families = table.groupby(["domain", "section"])["family"].agg(["first", "size"])
    assert (families["first"] == families["size"]).all()
    assert dict(families.loc["ct"]["size"]) == {"table1": 5, "table2": 1, "table3": 1,
                                                "fig5": 4, "table4": 7, "controls": 6}  # fmt: skip
    assert dict(families.loc["mri"]["size"]) == {"table4": 7}
    for _, part in table.groupby(["domain", "section"]):
        p = [_oracle(r["domain"], r["table"], r["grid_row"])[2] for _, r in part.iterrows()]
        m, rejected = len(p), set()
        for k, i in enumerate(np.argsort(p)):  # Holm: reject in order until the first failure
            if p[i] > 0.05 / (m - k):
                break
            rejected.add(i)
        assert {i for i, q in enumerate(part["p_holm"]) if q <= 0.05} == rejected


def test_median_half_width_and_forest_data():
    table = comparisons(ROWS, GRID)
    widths = half_widths(table)
    for domain in GRID.domains:
        ours = table[table["domain"] == domain]
        scipy_widths = []
        for _, r in ours.iterrows():
            ci = _oracle(domain, r["table"], r["grid_row"])[1]
            scipy_widths.append((ci.high - ci.low) / 2)
        assert widths.loc[domain, "median"] == pytest.approx(np.median(scipy_widths))
        assert widths.loc[domain, "comparisons"] == GRID.comparisons(domain)
    forest = forest_data(table)
    assert list(forest.columns) == ["domain", "section", "label", "d", "low", "high", "verdict"]
    assert len(forest) == len(table) and np.allclose(forest["d"], table["d"])
    assert forest["label"].iloc[0] == "Table 1: +CoS − Adaptformer"
    figure = forest_figure(forest, GRID.equivalence_bound)
    assert len(figure.data) == len(GRID.domains)
    assert np.allclose(figure.data[0].x, forest[forest["domain"] == "sonar"]["d"])


def test_paper_numbers_and_missing_rows():
    table = comparisons(ROWS, GRID).set_index(["domain", "table", "grid_row"])
    sonar = table.loc[("sonar", "table4", "LoRA+COBOT")]
    assert sonar["paper_set"] == "SONAR" and sonar["paper"] == PAPER_TABLE4["LoRA+COBOT"][4]
    assert sonar["paper_ref"] == PAPER_TABLE4["Freeze"][4]
    assert table.loc[("ct", "table1", "+CoS+RM+HL"), "paper_set"] == "ADOME"
    nuclei = table.loc[("nuclei", "table4", "LoRA")]  # no paper set beside the real ones
    assert nuclei["paper_set"] == "—" and np.isnan(nuclei["paper"])
    fewer = [r for r in ROWS if not (r["domain"] == "ct" and r["method"] == "lora")]
    partial = comparisons(fewer, GRID).set_index(["domain", "table", "grid_row"])
    assert partial.loc[("ct", "table4", "LoRA"), "verdict"] == "not run"
    assert np.isnan(partial.loc[("ct", "table4", "LoRA"), "p_holm"])
    assert partial.loc[("ct", "table4", "Adaptformer"), "family"] == 7  # still a family of 7
    assert partial.loc[("ct", "table4", "Adaptformer"), "verdict"] == "better"


def test_cost_sums_each_domains_runs_and_parts_out_the_controls():
    spent = cost(ROWS, GRID)
    # a synthetic domain: Freeze once, 17 paper configurations and 4 control-only ones per seed
    for domain, seeds in (("sonar", 5), ("aerial", 8)):
        assert spent.loc[domain, "points"] == spent.loc[domain, "run"] == 1 + 21 * seeds
        minutes = (6 + seeds * (17 * 30 + 4 * 60)) / 60
        assert spent.loc[domain, "minutes"] == pytest.approx(minutes)
        assert spent.loc[domain, "controls_minutes"] == pytest.approx(seeds * 4 * 60 / 60)
        assert spent.loc[domain, "wall_minutes"] == pytest.approx(minutes / 2)
    assert spent.loc["mri", "minutes"] == pytest.approx((6 + 5 * 5 * 30) / 60)  # Table 4 only
    assert spent.loc["mri", "controls_minutes"] == 0
    fewer = cost([r for r in ROWS if r["domain"] != "ct" or r["method"] != "lora"], GRID)
    assert fewer.loc["ct", "run"] == fewer.loc["ct", "points"] - 10  # LoRA, LoRA+COBOT x 5


def test_markdown_report_states_what_a_reader_needs():
    text = markdown_report(ROWS, GRID, "results", "python -m x report")
    for domain in GRID.domains:
        assert f"## {domain} (" in text
    assert "no difference larger than +-0.5 points" in text and "`python -m x report`" in text
    assert text.count("This table makes 5 paired comparisons") == 3  # Table 1, synthetic
    assert text.count("Holm reading:") == 6 * 3 + 1 * 2  # 5 paper sections + controls; Table 4
    assert "## Median 95% interval half-width per domain (points)" in text
    assert "Runs made by: `cmd`" in text and "CPU: cpu" in text
    assert "## Cost (sum of the runs' wall times, one thread each)" in text
    assert "| mri | 26 of 26 | 12.6 | 0.0 | 6.3 |" in text  # (6 + 25 x 30) s


def test_the_committed_report_is_made_from_the_committed_results():
    """docs/results/benchmark.md says 'do not edit by hand': it is exactly what ``report`` makes
    from the committed results.jsonl and grid file (so its numbers, and the README's taken from
    it, come from the runs), and the results cover every point of the grid."""
    repo = Path(__file__).resolve().parents[1]
    rows = read_rows(repo / "docs" / "results" / "benchmark")
    done = index_rows(rows)
    assert [p.label() for p in GRID.points() if key_of(p.columns()) not in done] == []
    command = ("python -m cobot_lib.experiments.benchmark report --results docs/results/benchmark"
               " --grid configs/benchmark/grid.yaml --out docs/results/benchmark.md")  # fmt: skip
    text = markdown_report(rows, GRID, "docs/results/benchmark", command)
    assert (repo / "docs" / "results" / "benchmark.md").read_text(encoding="utf-8") == text


def test_every_interval_the_readme_quotes_is_in_the_committed_report():
    """The README's benchmark paragraphs quote differences with their 95% intervals by hand
    (prose); each quoted 'd [low, high]' must be a row of docs/results/benchmark.md, so a re-run
    that changes them fails here until the README says the new numbers."""
    import re

    repo = Path(__file__).resolve().parents[1]
    readme = " ".join((repo / "README.md").read_text(encoding="utf-8").split())
    report = (repo / "docs" / "results" / "benchmark.md").read_text(encoding="utf-8")
    number = r"[+-]\d+\.\d\d"
    quoted = re.findall(rf"({number})(?: [A-Za-z]+)? \[({number}), ({number})\]", readme)
    assert len(quoted) >= 8, quoted  # the benchmark and issue 16 paragraphs
    missing = [q for q in quoted if f"{q[0]} [{q[1]}, {q[2]}]" not in report]
    assert missing == [], missing


def _protocol_page_section(marker: str) -> tuple[str, object, Path]:
    """(the text between ``<!-- marker: begin/end -->`` on the protocol page, the module
    benchmarks/bench_benchmark.py, the committed validation runs)."""
    import importlib.util

    repo = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location(
        "bench_benchmark", repo / "benchmarks" / "bench_benchmark.py"
    )
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    page = (repo / "docs" / "results" / "benchmark_protocol.md").read_text(encoding="utf-8")
    shown = page.split(f"<!-- {marker}: begin -->\n")[1].split(f"\n<!-- {marker}: end -->")[0]
    return shown, bench, repo / "docs" / "results" / "benchmark_protocol_runs.jsonl"


def test_the_protocol_pages_schedule_tables_are_made_from_the_stored_runs():
    """docs/results/benchmark_protocol.md section 3b prints the constant-vs-cosine validation
    runs; its tables must be what ``bench_benchmark.py schedules`` makes from the committed runs."""
    shown, bench, runs = _protocol_page_section("schedules")
    made = bench.schedule_tables(runs)
    assert shown == made
    assert "| ct | cosine | lora |" in made and "| aerial | cosine |" in made


def test_the_protocol_pages_real_set_table_is_made_from_the_stored_runs():
    """Section 3c prints the validation runs that chose the real sets' steps and lr; it must be
    what ``bench_benchmark.py real`` makes from the committed runs, and the grid's protocol for
    each real set must be one of the runs it shows."""
    shown, bench, runs = _protocol_page_section("real")
    made = bench.real_tables(runs)
    assert shown == made
    for domain in ("nuclei", "mri"):
        protocol = GRID.domains[domain]
        assert f"| {domain} |" in made and f"| {protocol.steps} | {protocol.lr:g} |" in made
