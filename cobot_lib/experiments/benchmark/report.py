"""The benchmark's report: per domain, Tables 1-3, Fig. 5 and Table 4 with 95% t-intervals,
paired differences, verdicts, the family-wise reading and the paper's numbers beside them.

    table = comparisons(read_rows("docs/results/benchmark"), load_grid(GRID))
    text = markdown_report(rows, grid)            # docs/results/benchmark.md
    forest = forest_data(table)                   # notebook.viz.forest_figure(forest, bound)

Scores are in points (percent) of the domain's metric (``data.benchmark_sets``: DSC for ct and
mri, mIoU for sonar, aerial and nuclei). Each table row is compared with its table's first row
seed by seed (``statistics``: d_s = row_s - reference_s, the 95% t-interval of their mean, the
verdict with the grid's equivalence bound). Freeze trains nothing and ran once per domain: a
comparison with it pairs every seed with its one score. A *section* is one of the paper's tables:
the grid's tables named ``fig5_*`` form Fig. 5 and ``table4*`` form Table 4; its m comparisons are
one family, read with Holm-adjusted p-values (over the section) and Bonferroni intervals.

Paired paper sets (the paper's numbers are data here; METHOD.md sections 4-5): Tables 1-3 report
ADOME, NWPU and TRCAN: ct stands beside ADOME (abdominal CT, DSC), aerial beside NWPU (remote
sensing), sonar beside TRCAN (the only underwater set of Tables 1-3). Table 4 has a SONAR
column: sonar stands beside SONAR, ct beside ADOME, aerial beside NWPU; the real sets (nuclei,
mri) have no paper set beside them. Fig. 5 prints no numbers, only a claim
(``paper.FIG5_CLAIM``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from ...data.benchmark_sets import benchmark_metric
from ..statistics import holm, multiplicity_note, paired_differences, t_interval, verdict
from .grid import BenchmarkPoint, Grid, index_rows, key_of
from .paper import (
    FIG5_CLAIM,
    PAPER_SETS,
    PAPER_TABLE1,
    PAPER_TABLE2,
    PAPER_TABLE3,
    PAPER_TABLE4,
    TABLE1_ROWS,
    TABLE2_ROWS,
    TABLE3_ROWS,
    TABLE4_SETS,
)

__all__ = [
    "SECTIONS",
    "section_of",
    "metric_of",
    "METRIC_NAMES",
    "seed_scores",
    "comparisons",
    "forest_data",
    "half_widths",
    "cost",
    "verdict_lines",
    "section_frame",
    "markdown_report",
]

#: The paper's tables, in the report's order: section -> title.
SECTIONS = {
    "table1": "Table 1 (COBOT's components on Adaptformer)",
    "table2": "Table 2 (relation matrix fixed vs learnable)",
    "table3": "Table 3 (dense vs hyper-complex head)",
    "fig5": "Fig. 5 (hidden size V)",
    "table4": "Table 4 (every method against Freeze; each +COBOT against its base method)",
    "controls": "Controls (issue 16: initial scale, head initialisation, base coefficients)",
}


def section_of(table: str) -> str:
    """The paper's table a grid table belongs to: 'fig5_v8' -> 'fig5', 'table4_x' -> 'table4'."""
    return table.split("_")[0]


def metric_of(domain: str) -> str:
    """The results column of ``domain``'s reported metric: 'mdsc' (DSC) or 'miou'."""
    return "mdsc" if benchmark_metric(domain) == "dsc" else "miou"


#: How a results column is named in the text: DSC, mIoU.
METRIC_NAMES = {"mdsc": "DSC", "miou": "mIoU"}


def seed_scores(
    index: Mapping[tuple, Mapping[str, Any]], grid: Grid, domain: str, spec: Mapping[str, Any]
) -> pd.Series:
    """The scores (points) of the grid row ``spec`` on ``domain``, indexed by seed; ``index``
    maps a row's KEY values to the row. Freeze's one run stands for every seed."""
    protocol, values, seeds = grid.domains[domain], {}, grid.seeds_of(domain)
    for seed in seeds:
        run = seed if spec["method"] != "freeze" else seeds[0]
        found = index.get(key_of(BenchmarkPoint.of(domain, run, protocol, **spec).columns()))
        if found is not None:
            values[seed] = 100.0 * float(found[metric_of(domain)])
    return pd.Series(values, dtype=float)


def _paper(section: str, name: str, domain: str) -> float:
    """The paper's number of row ``name`` of ``section`` beside ``domain`` (NaN: none)."""
    if domain not in PAPER_SETS:
        return math.nan
    ablations, table4 = PAPER_SETS[domain]
    if section == "table1" and name in TABLE1_ROWS:
        return PAPER_TABLE1[ablations][TABLE1_ROWS.index(name)]
    for which, data, rows in (("table2", PAPER_TABLE2, TABLE2_ROWS),
                              ("table3", PAPER_TABLE3, TABLE3_ROWS)):  # fmt: skip
        if section == which and name in rows:
            return data[ablations][rows.index(name)][0]
    if section == "table4" and name in PAPER_TABLE4:
        return PAPER_TABLE4[name][TABLE4_SETS.index(table4)]
    return math.nan


def _name(section: str, name: str, spec: Mapping[str, Any]) -> str:
    """A row's name in the report: Fig. 5's rows carry their V ('Adaptformer V=8')."""
    return f"{name} V={spec['rank']}" if section == "fig5" and "rank" in spec else name


def _own(scores: pd.Series, confidence: float, once: bool) -> tuple[float, float]:
    """A row's mean and the half-width of its own t-interval (NaN with fewer than 2 seeds, and
    for a row that ran ``once``: Freeze, whose one score stands for every seed)."""
    values = scores.to_numpy()
    if len(values) == 0:
        return math.nan, math.nan
    if len(values) < 2 or once:
        return float(values.mean()), math.nan
    return float(values.mean()), t_interval(values, confidence).half_width


def comparisons(
    rows: Sequence[Mapping[str, Any]], grid: Grid, confidence: float = 0.95
) -> pd.DataFrame:
    """Every row of every table against its table's first row, per domain (module doc).

    Columns: domain, metric, section, table, grid_row (the row's name in the grid file), row
    and vs (the names shown: Fig. 5's carry their V), n (paired seeds), mean and ci (the row's
    own mean and 95% half-width), ref_mean, d, low, high, half_width, p, verdict, family (m, the
    section's comparisons), p_holm (Holm over the section), low_bonf, high_bonf,
    family_verdict, paper_set, paper, paper_ref, paper_d. A row with fewer than 2 paired seeds
    has NaN statistics and the verdict "not run".
    """
    index = index_rows(rows)
    out = []
    for domain in grid.domains:
        for section in SECTIONS:
            tables = {t: r for t, r in grid.tables_of(domain).items() if section_of(t) == section}
            m = sum(len(r) - 1 for r in tables.values())
            wide = 1 - (1 - confidence) / max(m, 1)
            start = len(out)
            for table, specs in tables.items():
                reference = next(iter(specs))
                ref_scores = seed_scores(index, grid, domain, specs[reference])
                for name, spec in list(specs.items())[1:]:
                    scores = seed_scores(index, grid, domain, spec)
                    row = _compare(scores, ref_scores, confidence, wide, grid.equivalence_bound)
                    once = spec["method"] == "freeze"
                    paper, paper_ref = (_paper(section, n, domain) for n in (name, reference))
                    out.append({
                        "domain": domain, "metric": metric_of(domain), "section": section,
                        "table": table, "grid_row": name, "row": _name(section, name, spec),
                        "vs": _name(section, reference, specs[reference]),
                        **dict(zip(("mean", "ci"), _own(scores, confidence, once), strict=True)),
                        "ref_mean": _own(ref_scores, confidence, True)[0], **row, "family": m,
                        "paper_set": PAPER_SETS.get(domain, ("—", "—"))[section == "table4"],
                        "paper": paper, "paper_ref": paper_ref, "paper_d": paper - paper_ref,
                    })  # fmt: skip
            # Holm over the whole section; a comparison not run counts as p = 1 (conservative)
            ps = [1.0 if math.isnan(r["p"]) else r["p"] for r in out[start:]]
            for r, value in zip(out[start:], holm(ps) if ps else [], strict=True):
                r["p_holm"] = math.nan if math.isnan(r["p"]) else float(value)
    return pd.DataFrame(out)


def _compare(row: pd.Series, reference: pd.Series, confidence: float, wide: float,
             bound: float) -> dict[str, Any]:  # fmt: skip
    """The paired statistics of ``row`` against ``reference`` (NaN / "not run" under 2 seeds)."""
    common = sorted(set(row.index) & set(reference.index))
    if len(common) < 2:
        nan = math.nan
        return {"n": len(common), "d": nan, "low": nan, "high": nan, "half_width": nan,
                "p": nan, "verdict": "not run", "low_bonf": nan, "high_bonf": nan,
                "family_verdict": "not run"}  # fmt: skip
    d = paired_differences(row, reference)
    one, both = t_interval(d, confidence), t_interval(d, wide)
    return {"n": one.n, "d": one.mean, "low": one.low, "high": one.high,
            "half_width": one.half_width, "p": one.p, "verdict": verdict(one, bound),
            "low_bonf": both.low, "high_bonf": both.high,
            "family_verdict": verdict(both, bound)}  # fmt: skip


def forest_data(table: pd.DataFrame) -> pd.DataFrame:
    """The forest plot's rows: domain, section, label ('Table 1: +CoS - Adaptformer'), d, low,
    high (points), verdict; compared rows only, in the report's order."""
    done = table[table["n"] >= 2] if len(table) else table
    names = zip(done["section"], done["row"], done["vs"], strict=True)
    labels = [f"{SECTIONS[s].split(' (')[0]}: {r} − {v}" for s, r, v in names]
    data = {"domain": done["domain"], "section": done["section"], "label": labels,
            "d": done["d"], "low": done["low"], "high": done["high"],
            "verdict": done["verdict"]}  # fmt: skip
    return pd.DataFrame(data).reset_index(drop=True)


def half_widths(table: pd.DataFrame) -> pd.DataFrame:
    """Per domain: comparisons made, median / min / max interval half-width (points)."""
    if table.empty:
        return pd.DataFrame(columns=["comparisons", "median", "min", "max"])
    done = table[table["n"] >= 2]
    grouped = done.groupby("domain", sort=False)["half_width"]
    return pd.DataFrame({"comparisons": grouped.size(), "median": grouped.median(),
                         "min": grouped.min(), "max": grouped.max()})  # fmt: skip


def cost(rows: Sequence[Mapping[str, Any]], grid: Grid, jobs: int = 2) -> pd.DataFrame:
    """Per domain: the grid's points, the sum of their ``seconds`` (each run's wall time, one
    thread) in minutes, the part spent on configurations only issue 16's control tables run,
    and that sum / ``jobs``: the wall time the domain takes on ``jobs`` one-thread workers."""
    index, out, every = index_rows(rows), {}, grid.points()
    for domain in grid.domains:
        paper = {tuple(BenchmarkPoint.of(domain, 0, grid.domains[domain], **spec).row().values())
                 for table, specs in grid.tables_of(domain).items()
                 if section_of(table) != "controls" for spec in specs.values()}  # fmt: skip
        points = [p for p in every if p.domain == domain]
        found = [(p, index.get(key_of(p.columns()))) for p in points]
        seconds = [float(r["seconds"]) for _, r in found if r is not None]
        controls = [float(r["seconds"]) for p, r in found
                    if r is not None and tuple(p.row().values()) not in paper]  # fmt: skip
        out[domain] = {"points": len(points), "run": len(seconds),
                       "minutes": sum(seconds) / 60, "controls_minutes": sum(controls) / 60,
                       "wall_minutes": sum(seconds) / 60 / jobs}  # fmt: skip
    return pd.DataFrame.from_dict(out, orient="index")


def section_frame(table: pd.DataFrame, section: str) -> pd.DataFrame:
    """One paper table's comparisons (rows of ``comparisons``) for reading in a notebook: domain,
    row, vs, seeds, the row's mean ± 95%, d [95% interval] (points), verdict, Holm p and the
    paper's d beside it (Fig. 5: its claim)."""
    part = table[table["section"] == section]
    paper = ["> 0 (claim)" if section == "fig5" else _num(d, True, 1) for d in part["paper_d"]]
    return pd.DataFrame({
        "domain": part["domain"], "row": part["row"], "vs": part["vs"], "seeds": part["n"],
        "row mean ± 95%": [f"{_num(m)} ± {_num(c)}" if not math.isnan(c) else _num(m)
                           for m, c in zip(part["mean"], part["ci"], strict=True)],
        "d [95% interval]": [f"{_num(d, True)} [{_num(lo, True)}, {_num(hi, True)}]"
                             for d, lo, hi in zip(part["d"], part["low"], part["high"],
                                                  strict=True)],
        "verdict": part["verdict"], "p (Holm)": [_num(p, digits=3) for p in part["p_holm"]],
        "paper d": paper,
    }).reset_index(drop=True)  # fmt: skip


def verdict_lines(table: pd.DataFrame) -> list[str]:
    """One sentence per comparison of ``table`` (rows of ``comparisons``), computed, never
    typed: 'sonar: +CoS − Adaptformer = +0.31 [-0.90, +1.52] points DSC → undecided (paper
    TRCAN: +0.1)'."""
    out = []
    for _, r in table.iterrows():
        if r["n"] < 2:
            out.append(f"{r['domain']}: {r['row']} − {r['vs']}: not run")
            continue
        paper = (f"paper {r['paper_set']}: {_num(r['paper_d'], True, 1)}"
                 if not math.isnan(r["paper_d"]) else "no paper number")  # fmt: skip
        out.append(f"{r['domain']}: {r['row']} − {r['vs']} = {_num(r['d'], True)} "
                   f"[{_num(r['low'], True)}, {_num(r['high'], True)}] points "
                   f"{METRIC_NAMES[r['metric']]} → {r['verdict']} ({paper})")  # fmt: skip
    return out


def _num(value: float, signed: bool = False, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _section_lines(part: pd.DataFrame) -> list[str]:
    """One section of one domain: the table, its multiplicity note and the family reading."""
    head = ("| row | vs | n | row: mean ± 95% | d [95% interval] | verdict | p | p (Holm) | "
            "family verdict (Bonferroni) | paper | paper d |")  # fmt: skip
    lines = [head, "|---|---|---:|---:|---:|---|---:|---:|---|---:|---:|"]
    for _, r in part.iterrows():
        own = f"{_num(r['mean'])} ± {_num(r['ci'])}" if not math.isnan(r["ci"]) else _num(r["mean"])
        diff = f"{_num(r['d'], True)} [{_num(r['low'], True)}, {_num(r['high'], True)}]"
        paper = _num(r["paper"], digits=1) if r["section"] != "fig5" else "(no number)"
        paper_d = _num(r["paper_d"], True, 1) if r["section"] != "fig5" else "> 0 (claim)"
        lines.append(f"| {r['row']} | {r['vs']} | {r['n']} | {own} | {diff} | {r['verdict']} | "
                     f"{_num(r['p'], digits=3)} | {_num(r['p_holm'], digits=3)} | "
                     f"{r['family_verdict']} | {paper} | {paper_d} |")  # fmt: skip
    m = int(part["family"].iloc[0])
    decided = part[part["p_holm"] <= 0.05]
    names = ", ".join(f"{r} ({_num(d, True)})" for r, d in zip(decided["row"], decided["d"],
                                                               strict=True)) or "none"  # fmt: skip
    lines += ["", multiplicity_note(m),
              f"Holm reading: {len(decided)} of {m} comparisons decided for the whole table "
              f"(p_holm <= 0.05): {names}."]  # fmt: skip
    if part["section"].iloc[0] == "fig5":
        lines += [f"Paper (Fig. 5, no printed numbers): {FIG5_CLAIM}."]
    return lines


def _metric_list(grid: Grid) -> str:
    """'DSC for ct and mri, mIoU for sonar, aerial and nuclei' for the grid's domains."""
    parts = []
    for metric, name in METRIC_NAMES.items():
        names = [d for d in grid.domains if metric_of(d) == metric]
        if names:
            listed = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
            parts.append(f"{name} for {listed}")
    return ", ".join(parts)


def markdown_report(
    rows: Sequence[Mapping[str, Any]], grid: Grid, source: str = "", command: str = ""
) -> str:
    """The whole report (module doc) as markdown, computed from ``rows`` and ``grid``."""
    table = comparisons(rows, grid)
    bound = grid.equivalence_bound
    made = pd.DataFrame(list(rows))
    facts = {k: sorted(set(made[k].astype(str))) if k in made else []
             for k in ("command", "commit", "cpu", "torch")}  # fmt: skip
    out = [
        "# The powered miniature benchmark (issue 15)", "",
        f"Generated by `{command or 'python -m cobot_lib.experiments.benchmark report'}` from "
        f"{len(rows)} runs in {source or 'the results'}; do not edit by hand.", "",
        "Runs made by: " + "; ".join(f"`{c}`" for c in facts["command"]) + ".",
        f"Commits: {', '.join(facts['commit']) or '—'}. CPU: {', '.join(facts['cpu']) or '—'} "
        f"(one torch thread per process). torch: {', '.join(facts['torch']) or '—'}.", "",
        f"Values in points (%) of the domain's metric ({_metric_list(grid)}), on the test split. "
        "A domain runs the tables its grid entry lists (default: all) with its own seeds. "
        "Per row: its mean over seeds ± the half-width of its own 95% "
        "t-interval; d = the mean per-seed difference to the reference row (same seed = same "
        "images, order, box jitter), with its 95% Student-t interval. Verdict: 'better' / "
        "'worse' when the interval excludes 0, 'no difference larger than "
        f"+-{bound:g} points' when it lies inside +-{bound:g} (the equivalence bound, "
        "`equivalence_bound` in the grid file), else 'undecided'. Freeze ran once per domain "
        "(it trains nothing); a comparison with it is the row's own interval minus that score. "
        "'paper' is the paper's number for the paired set (module doc of "
        "`cobot_lib.experiments.benchmark.report`), 'paper d' its difference.", "",
        "## Median 95% interval half-width per domain (points)", "",
        "| domain | metric | comparisons | median | min | max |", "|---|---|---:|---:|---:|---:|",
    ]  # fmt: skip
    for domain, r in half_widths(table).iterrows():
        out.append(f"| {domain} | {METRIC_NAMES[metric_of(domain)]} | {int(r['comparisons'])} | "
                   f"{_num(r['median'])} | {_num(r['min'])} | {_num(r['max'])} |")  # fmt: skip
    spent = cost(rows, grid)
    out += ["", "## Cost (sum of the runs' wall times, one thread each)", "",
            "| domain | points | run-minutes | of which issue 16's controls | / 2 workers |",
            "|---|---:|---:|---:|---:|"]  # fmt: skip
    for domain, r in spent.iterrows():
        out.append(f"| {domain} | {int(r['run'])} of {int(r['points'])} | {r['minutes']:.1f} | "
                   f"{r['controls_minutes']:.1f} | {r['wall_minutes']:.1f} |")  # fmt: skip
    total = spent.sum()
    out += [
        f"| all | {int(total['run'])} of {int(total['points'])} | {total['minutes']:.1f} | "
        f"{total['controls_minutes']:.1f} | {total['wall_minutes']:.1f} |",
        "",
        "A run's seconds are its own wall clock (build, train, score) and grow when the "
        "machine is shared; the last column is the grid's wall time on two free cores "
        "with two one-thread workers, before the seconds each worker spends starting.",
    ]
    for domain in grid.domains:
        ablations, table4 = PAPER_SETS.get(domain, ("no paper set", "no paper set"))
        name = METRIC_NAMES[metric_of(domain)]
        out += ["", f"## {domain} ({name}; beside {ablations} in Tables 1-3, {table4} in Table 4)"]
        for section, title in SECTIONS.items():
            part = table[(table["domain"] == domain) & (table["section"] == section)]
            if not part.empty:
                out += ["", f"### {title}", "", *_section_lines(part)]
    return "\n".join(out) + "\n"
