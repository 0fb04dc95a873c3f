"""Tables 1-3 and Fig. 5 of the paper beside their miniature on the demo sets, with verdicts
computed from the numbers (never written by hand).

The paper's rows (Sec. 5.2, base Adaptformer on ViT-B; METHOD.md section 4) are kept here as
data. Pairing: demo:mri (DSC, medical) stands beside ADOME (DSC); demo:nuclei (mIoU) beside NWPU
and TRCAN (mIoU). What is compared is the *difference* a switch makes (a row minus its reference
row, in percentage points), because a tiny SAM on 36 images cannot reach the paper's levels:

- the paper's difference is positive, zero (|d| < 0.05) or negative;
- the miniature's difference is paired by seed: runs with the same seed see the same images in
  the same order with the same box jitter, so most of the seed-to-seed spread (which is shared)
  cancels. d = mean over seeds of (row - reference), se = std(row - reference) / sqrt(n);
- verdict: "agrees" (same sign, |d| > 2 se), "same sign, within noise", "opposite sign, within
  noise", "disagrees" (opposite sign, |d| > 2 se), "no difference" (d = 0); for a paper
  difference of zero, "agrees (no clear change)" when |d| <= 2 se, else "disagrees (changes)";
  with a single common seed there is no se and the verdict says "(one seed)".
"""

from __future__ import annotations

import argparse
import math
import sys
from collections import Counter
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..engine.evaluation import mean_std
from .ablations import DATASETS, GRID_STEPS, RANKS, AblationSpec, run_grid, select

__all__ = [
    "PAIRS",
    "TABLE1",
    "TABLE2",
    "TABLE3",
    "PAPER_TABLE1",
    "PAPER_TABLE2",
    "PAPER_TABLE3",
    "check_comparison",
    "configurations",
    "grid_specs",
    "rerun_tolerance",
    "main",
    "verdict",
    "seed_scores",
    "table_comparison",
    "fig5_comparison",
    "summary_sentences",
    "markdown_report",
]

PAIRS = {"demo:mri": ("ADOME",), "demo:nuclei": ("NWPU", "TRCAN")}
_BASE = AblationSpec.of(cobot=False)
_FULL = AblationSpec()  # CoS + RM + HL, V = 16

#: Table 1 rows in order (the check marks, read from the paper's prose; METHOD.md section 4).
TABLE1 = {
    "Adaptformer": _BASE,
    "+CoS": _FULL.varied(relation="off", head="none"),
    "+HL": _FULL.varied(coefficient_sets="single", relation="off"),
    "+CoS+HL": _FULL.varied(relation="off"),
    "+CoS+RM": _FULL.varied(head="none"),
    "+CoS+RM+HL": _FULL,
}
TABLE2 = {"Fixed": _FULL.varied(relation="fixed"), "Learnable": _FULL}
TABLE3 = {"Linear": _FULL.varied(head="linear"), "HL": _FULL}

#: Table 1 of the paper (%): one value per row of TABLE1.
PAPER_TABLE1 = {
    "ADOME": (90.1, 90.1, 90.3, 90.4, 90.9, 91.3),
    "NWPU": (83.0, 83.1, 83.3, 83.3, 83.7, 84.0),
    "TRCAN": (73.3, 73.4, 73.5, 73.5, 73.9, 74.1),
}
#: Tables 2 and 3 of the paper (%): (mean, std) per row.
PAPER_TABLE2 = {
    "ADOME": ((90.2, 0.6), (91.3, 0.5)),
    "NWPU": ((83.4, 0.6), (84.0, 0.3)),
    "TRCAN": ((73.3, 0.2), (74.1, 0.0)),
}
PAPER_TABLE3 = {
    "ADOME": ((90.9, 0.6), (91.3, 0.5)),
    "NWPU": ((83.8, 0.2), (84.0, 0.3)),
    "TRCAN": ((73.9, 0.1), (74.1, 0.0)),
}
#: Fig. 5 has no printed numbers; its text (Sec. 5.3, "Different Hidden Dimensions", not the
#: ablations of Sec. 5.2) claims: COBOT beats Adaptformer at every V, and the
#: gain is larger at V <= 16 (over 1.6 points DSC on ADOME).
FIG5_CLAIM = "COBOT > Adaptformer at every V; larger gains at V <= 16"


def configurations(ranks: Iterable[int] = RANKS) -> list[AblationSpec]:
    """Every configuration of Tables 1-3 and Fig. 5 (on the default dataset and seed)."""
    found = [*TABLE1.values(), *TABLE2.values(), *TABLE3.values()]
    for rank in ranks:
        found += [_BASE.varied(rank=rank), _FULL.varied(rank=rank)]
    unique: dict[tuple, AblationSpec] = {}
    for spec in found:
        unique.setdefault(spec.key(), spec)
    return list(unique.values())


def verdict(paper_diff: float, diff: float, se: float) -> str:
    """Whether a miniature difference ``diff`` (± ``se``) agrees with the paper's (module doc)."""
    if math.isnan(diff):
        return "not run"
    if math.isnan(se):
        same = np.sign(diff) == np.sign(paper_diff)
        return ("same sign" if same else "opposite sign") + " (one seed)"
    noise = abs(diff) <= 2 * se
    if abs(paper_diff) < 0.05:
        return "agrees (no clear change)" if noise else "disagrees (changes)"
    if diff == 0:
        return "no difference"
    same = np.sign(diff) == np.sign(paper_diff)
    if noise:
        return "same sign, within noise" if same else "opposite sign, within noise"
    return "agrees" if same else "disagrees"


def seed_scores(table: pd.DataFrame, spec: AblationSpec, dataset: str, steps: int,
                checkpoint: str) -> pd.Series:  # fmt: skip
    """The metric of ``dataset`` (in %) of ``spec``'s configuration, indexed by seed."""
    spec = replace(spec, dataset=dataset, steps=steps, checkpoint=checkpoint)
    rows = select(table, spec).drop_duplicates("seed")
    seeds = rows["seed"].astype(int).to_numpy()
    values = 100.0 * rows[spec.metric].to_numpy(dtype=float)
    return pd.Series(values, index=seeds, dtype=float).sort_index()


def _stats(values: pd.Series) -> tuple[float, float, int]:
    """Mean, sample std (``evaluate.mean_std``) and count; NaNs when there are no values."""
    if values.empty:
        return math.nan, math.nan, 0
    return (*mean_std(values.to_numpy()), len(values))


def _diff(a: pd.Series, b: pd.Series) -> tuple[float, float]:
    """Mean and standard error of the per-seed differences a - b (seeds both have)."""
    paired = (a - b).dropna()
    if paired.empty:
        return math.nan, math.nan
    se = float(paired.std(ddof=1)) / math.sqrt(len(paired)) if len(paired) > 1 else math.nan
    return float(paired.mean()), se


def _fmt(mean: float, std: float) -> str:
    return "—" if math.isnan(mean) else f"{mean:.1f} ± {std:.1f}"


def table_comparison(table: pd.DataFrame, which: int, steps: int = GRID_STEPS,
                     checkpoint: str = "foundation") -> pd.DataFrame:  # fmt: skip
    """Table 1, 2 or 3 of the paper beside the miniature: one row per (demo set, table row).

    Columns: dataset, row, n (seeds), miniature (mean ± std, %), mean, vs (the reference row:
    the baseline in Table 1, the row above in Tables 2 and 3), d (difference to it, points),
    se, paper (the paired paper sets, e.g. "NWPU / TRCAN"), paper value, paper d and verdict
    (one per paired set, joined by " / ").
    """
    rows_of = {1: TABLE1, 2: TABLE2, 3: TABLE3}[which]
    names = list(rows_of)
    out = []
    for dataset, papers in PAIRS.items():
        scores = {n: seed_scores(table, s, dataset, steps, checkpoint) for n, s in rows_of.items()}
        for i, name in enumerate(names):
            mean, std, n = _stats(scores[name])
            ref = names[0] if which == 1 else names[max(i - 1, 0)]
            d, se = _diff(scores[name], scores[ref]) if i else (math.nan, math.nan)
            values, diffs = [], []
            for paper in papers:
                if which == 1:
                    value, ref_value = PAPER_TABLE1[paper][i], PAPER_TABLE1[paper][0]
                    values.append(f"{value:.1f}")
                else:
                    pairs = (PAPER_TABLE2 if which == 2 else PAPER_TABLE3)[paper]
                    value, ref_value = pairs[i][0], pairs[names.index(ref)][0]
                    values.append(_fmt(*pairs[i]))
                diffs.append(round(value - ref_value, 1))
            verdicts = [verdict(p, d, se) for p in diffs] if i else [""]
            out.append({
                "dataset": dataset, "row": name, "n": n, "miniature": _fmt(mean, std),
                "mean": mean, "vs": ref if i else "", "d": d, "se": se,
                "paper": " / ".join(papers), "paper value": " / ".join(values),
                "paper d": " / ".join(f"{x:+.1f}" for x in diffs) if i else "",
                "verdict": " / ".join(verdicts),
            })  # fmt: skip
    return pd.DataFrame(out)


def check_comparison(comparison: pd.DataFrame, table: pd.DataFrame, which: int,
                     steps: int = GRID_STEPS, checkpoint: str = "foundation") -> int:  # fmt: skip
    """Check a ``table_comparison`` against the raw rows; returns the number of rows checked.

    For every compared row, d and se are recomputed with pandas from the two runs of each seed
    (aligned on the seed index), and each verdict's "agrees" is re-derived from the rule of the
    module docstring: for a paper difference of zero, |d| <= 2 se; otherwise the same sign and
    |d| > 2 se. An AssertionError names the first row that disagrees.
    """
    rows_of = {1: TABLE1, 2: TABLE2, 3: TABLE3}[which]
    checked = 0
    for _, row in comparison[comparison["vs"] != ""].iterrows():
        a = seed_scores(table, rows_of[row["row"]], row["dataset"], steps, checkpoint)
        b = seed_scores(table, rows_of[row["vs"]], row["dataset"], steps, checkpoint)
        paired = (a - b).dropna()
        if len(paired) < 2:
            continue
        assert np.isclose(row["d"], paired.mean()), (row["row"], row["d"], paired.mean())
        assert np.isclose(row["se"], paired.std() / np.sqrt(len(paired))), row["row"]
        beyond = abs(row["d"]) > 2 * row["se"]
        pairs = zip(row["paper d"].split(" / "), row["verdict"].split(" / "), strict=True)
        for paper_d, text in pairs:
            same = np.sign(row["d"]) == np.sign(float(paper_d))
            agrees = (not beyond) if abs(float(paper_d)) < 0.05 else (same and beyond)
            assert text.startswith("agrees") == agrees, (row["dataset"], row["row"], text)
        checked += 1
    return checked


def rerun_tolerance(table: pd.DataFrame, spec: AblationSpec, fraction: float = 0.25
                    ) -> dict[str, float]:  # fmt: skip
    """How close a re-run of the stored row ``spec`` must come, per metric (fractions).

    ``fraction`` x the seed-to-seed standard deviation of ``spec``'s configuration (same
    dataset, steps, starting model) over the stored seeds. Changing only the seed moves a score
    by about sqrt(2) such deviations, so a stored row from another seed or configuration lands
    outside this band (a different seed by chance inside it with probability ~14% for 1/4),
    while the float rounding of another CPU, far smaller than a seed's effect, stays inside.
    """
    rows = select(table, spec).drop_duplicates("seed")
    if len(rows) < 2:
        raise ValueError(f"{spec.label()} on {spec.dataset} has {len(rows)} stored seeds; the "
                         "tolerance needs the spread of at least 2")  # fmt: skip
    return {m: fraction * float(rows[m].astype(float).std(ddof=1)) for m in ("miou", "mdsc")}


def fig5_comparison(table: pd.DataFrame, ranks: Iterable[int] = RANKS, steps: int = GRID_STEPS,
                    checkpoint: str = "foundation") -> pd.DataFrame:  # fmt: skip
    """Fig. 5 in miniature: Adaptformer vs Adaptformer+COBOT per V; d = COBOT minus plain."""
    out = []
    for dataset in PAIRS:
        for rank in ranks:
            plain = seed_scores(table, _BASE.varied(rank=rank), dataset, steps, checkpoint)
            full = seed_scores(table, _FULL.varied(rank=rank), dataset, steps, checkpoint)
            d, se = _diff(full, plain)
            (mp, sp, _), (mf, sf, _) = _stats(plain), _stats(full)
            out.append({
                "dataset": dataset, "V": rank, "n": min(len(plain), len(full)),
                "Adaptformer": _fmt(mp, sp), "Adaptformer+COBOT": _fmt(mf, sf),
                "plain_mean": mp, "cobot_mean": mf,
                "d": d, "se": se, "verdict": verdict(1.0, d, se),
            })  # fmt: skip
    return pd.DataFrame(out)


def summary_sentences(comparison: pd.DataFrame) -> list[str]:
    """Plain sentences computed from a comparison table (Table 1-3 or Fig. 5)."""
    lines = []
    for dataset, part in comparison.groupby("dataset", sort=False):
        verdicts = [v for text in part["verdict"] if text for v in text.split(" / ")]
        counts = Counter(v.split(" (")[0] for v in verdicts)
        verdicts = [v for v in verdicts if v != "not run"]
        order = ["agrees", "same sign, within noise", "no difference",
                 "opposite sign, within noise", "disagrees"]  # fmt: skip
        order += sorted(set(counts) - {*order, "not run"}) + ["not run"]
        tally = "; ".join(f"{k}: {counts[k]}" for k in order if counts[k])
        lines.append(f"{dataset}: {len(verdicts)} paper differences; verdicts — {tally}.")
        if "row" in part and part["mean"].notna().any():
            best = part.loc[part["mean"].idxmax(), "row"]
            lines.append(f"{dataset}: the best miniature row is {best} "
                         f"(the paper's best is {part['row'].iloc[-1]}).")  # fmt: skip
        if "V" in part:
            small = part[part["V"] <= 16]["d"].mean()
            large = part[part["V"] > 16]["d"].mean()
            if not (math.isnan(small) or math.isnan(large)):
                word = "larger" if small > large else "not larger"
                lines.append(
                    f"{dataset}: the mean COBOT gain at V <= 16 ({small:+.2f} points) "
                    f"is {word} than at V > 16 ({large:+.2f}); the paper: larger."
                )
    return lines


def _cell(value, signed: bool = True) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:+.2f}" if signed else f"{value:.2f}"
    return str(value)


def _markdown(frame: pd.DataFrame) -> str:
    cells = frame.apply(lambda col: col.map(lambda v: _cell(v, signed=col.name == "d")))
    lines = ["| " + " | ".join(map(str, frame.columns)) + " |",
             "|" + "---|" * len(frame.columns)]  # fmt: skip
    lines += ["| " + " | ".join(r) + " |" for r in cells.astype(str).to_numpy().tolist()]
    return "\n".join(lines)


def markdown_report(table: pd.DataFrame, source: str = "the results table",
                    steps: int = GRID_STEPS, checkpoint: str = "foundation") -> str:  # fmt: skip
    """Tables 1-3 and Fig. 5, miniature beside the paper, with the computed sentences."""
    parts = [
        "# Ablations in miniature (tiny SAM on the demo sets)",
        "",
        f"Generated by `python -m cobot_lib.ablations` from {source}: {steps} steps per run, "
        f"checkpoint {checkpoint}, seeds {sorted(set(table['seed']))}. Values in %, "
        "mean ± std over seeds; d = mean per-seed difference to the reference row (points; runs "
        "with the same seed see the same images, order and box jitter), se its standard error. "
        "demo:mri (DSC) stands beside ADOME, demo:nuclei (mIoU) beside NWPU and TRCAN.",
    ]
    titles = {1: "Table 1 (components)", 2: "Table 2 (RM fixed vs learnable)",
              3: "Table 3 (linear vs hyper-complex head)"}  # fmt: skip
    for which, title in titles.items():
        comparison = table_comparison(table, which, steps, checkpoint)
        parts += ["", f"## {title}", "", _markdown(comparison.drop(columns="mean")), ""]
        parts += [f"- {s}" for s in summary_sentences(comparison)]
    fig5 = fig5_comparison(table, steps=steps, checkpoint=checkpoint)
    parts += ["", "## Fig. 5 (hidden size V)", "", f"Paper: {FIG5_CLAIM}.", ""]
    parts += [_markdown(fig5.drop(columns=["plain_mean", "cobot_mean"])), ""]
    parts += [f"- {s}" for s in summary_sentences(fig5)]
    return "\n".join(parts) + "\n"


def grid_specs(
    datasets: Iterable[str] = DATASETS,
    seeds: Iterable[int] = (0, 1, 2),
    steps: int = GRID_STEPS,
    checkpoint: str = "foundation",
    ranks: Iterable[int] = RANKS,
) -> list[AblationSpec]:
    """Every run of Tables 1-3 and Fig. 5 (base Adaptformer), without duplicates.

    Table 1: baseline, CoS, HL, CoS+HL, CoS+RM, CoS+RM+HL (METHOD.md section 4: RM off = S
    identity, HL off = W identity, CoS off = lambda_LM only); Table 2: RM fixed; Table 3: a dense
    linear head; Fig. 5: baseline and full COBOT at each V in ``ranks``.
    """
    specs: dict[tuple, AblationSpec] = {}
    for dataset in datasets:
        for seed in seeds:
            for base in configurations(ranks):
                spec = replace(base, dataset=dataset, seed=seed, steps=steps, checkpoint=checkpoint)
                specs.setdefault(spec.key(), spec)
    return list(specs.values())


def main(argv: list[str] | None = None) -> int:
    """CLI: run the ablation grid into a CSV (resumable) and write its markdown summary."""
    parser = argparse.ArgumentParser(prog="python -m cobot_lib.ablations", description=main.__doc__)
    parser.add_argument("--out", default="docs/results/ablations_demo.csv", help="results CSV")
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=GRID_STEPS, help="optimiser steps per run")
    parser.add_argument("--ranks", nargs="+", type=int, default=list(RANKS), help="V of Fig. 5")
    parser.add_argument("--checkpoint", default="foundation", choices=("foundation", "random"))
    parser.add_argument("--markdown", default=None, help="summary (default: OUT with .md)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    try:
        specs = grid_specs(args.datasets, args.seeds, args.steps, args.checkpoint, args.ranks)
        table = run_grid(args.out, specs)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    md = Path(args.markdown or Path(args.out).with_suffix(".md"))
    md.write_text(markdown_report(table, Path(args.out).name, args.steps, args.checkpoint))
    print(f"{len(table)} rows in {args.out}; summary in {md}")
    return 0
