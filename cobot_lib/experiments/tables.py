"""The tables of a sweep (``cobot_lib.sweep``): per-run rows, mean ± std over seeds, markdown.

Mean and standard deviation are ``evaluate.mean_std`` (sample std, ddof=1) and the paper-style
cells "91.3 ± 0.5" come from ``evaluate.format_mean_std`` / ``evaluate.seed_table``.
"""

from __future__ import annotations

import datetime
import os
import platform
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..engine.evaluation import format_mean_std, mean_std, seed_table
from ..engine.validation import VALIDATION_FIELDS
from ..peft.config import COBOT_CHOICES, PEFT_METHODS, CobotConfig, PeftConfig

__all__ = [
    "GROUP_COLUMNS",
    "tidy",
    "variant_label",
    "row_config",
    "config_columns",
    "control_labels",
    "summarise",
    "results_markdown",
    "write_tables",
    "machine_info",
    "export",
]

#: parameters that name a configuration in every summary (others only when they vary)
GROUP_COLUMNS = ("dataset", "method", "cobot", "coefficient_sets", "relation", "head", "rank")
#: parameters that do not change what is computed (beyond float rounding) or are bookkeeping
_NOT_CONFIG = ("seed", "device", "amp", "eval_every_epoch", "expect_gain", "num_overlays")
_RESULTS = ("miou", "mdsc", "n_instances", "n_images", "zero_shot_miou", "zero_shot_mdsc",
            "seconds", "train_seconds", "steps", "final_loss", "trainable_params",
            "image_encoder_params", "device_name", "torch_threads", "torch_version",
            *VALIDATION_FIELDS)  # fmt: skip
_INTS = ("rank", "max_steps", "epochs", "seed", "steps", "n_instances", "n_images",
         "trainable_params", "image_encoder_params", "torch_threads", "num_overlays",
         "batch_size", "val_best_epoch", "val_best_step", "val_count", "val_every_steps",
         "patience", "points", "negative_points")  # fmt: skip
_NAMES = {"freeze": "Freeze (zero-shot)", "decoder": "Lightweight (decoder)", "lora": "LoRA",
          "adaptformer": "Adaptformer", "full": "Full fine-tuning"}  # fmt: skip


def tidy(df: pd.DataFrame) -> pd.DataFrame:
    """Fixed dtypes (nullable ints, bools) and a stable row order, whatever the source (JSON
    files or a CSV), so a table read back equals the one written."""
    df = df.copy()
    for col in df.columns:  # all empty (e.g. val_split null, no validation): NaN, as a CSV reads
        if df[col].dtype == object and df[col].isna().all():
            df[col] = df[col].astype("float64")
    for col in _INTS:
        if col in df:
            df[col] = pd.to_numeric(df[col]).astype("Int64")
    for col in ("cobot", "eval_every_epoch", "expect_gain"):
        if col in df:
            df[col] = df[col].astype(bool)
    params = [c for c in df.columns if c != "run" and c not in _RESULTS]
    order = [c for c in (*GROUP_COLUMNS, *params) if c in df]
    order = list(dict.fromkeys(order)) + (["run"] if "run" in df else [])
    if len(df) and order:
        df = df.sort_values(order, na_position="first", kind="mergesort", key=_paper_order)
    return df.reset_index(drop=True)


def _paper_order(col: pd.Series) -> pd.Series:
    """Sort key: methods in the paper's row order (Table 4), unknown ones after them."""
    if col.name != "method":
        return col
    rank = {m: f"{i:02d}" for i, m in enumerate(_NAMES)}
    return col.map(lambda m: rank.get(m, f"99{m}"))


def variant_label(config: PeftConfig) -> str:
    """A PEFT variant's name in the paper's notation: 'Freeze (zero-shot)', 'LoRA V=4',
    'Adaptformer+CoS+RM+HL V=16', 'Adaptformer+RM(fixed)+Linear V=8'. COBOT's parts (Tables
    1-3): CoS = dual coefficient sets, RM = learnable relation matrix (RM(fixed): a fixed random
    one), HL = hypercomplex head (Linear: a dense one); '+c only' when all three are off."""
    name = _NAMES[config.method]
    if config.method not in PEFT_METHODS:
        return name
    if config.cobot is not None:
        cobot = config.cobot
        parts = ["CoS"] if cobot.coefficient_sets == "dual" else []
        parts += {"learnable": ["RM"], "fixed": ["RM(fixed)"], "off": []}[cobot.relation]
        parts += {"hypercomplex": ["HL"], "linear": ["Linear"], "none": []}[cobot.head]
        name += "+" + "+".join(parts) if parts else "+c only"
    controls = control_labels(config)
    return f"{name} V={config.rank}" + (f" ({', '.join(controls)})" if controls else "")


def control_labels(config: PeftConfig) -> list[str]:
    """The initialisation controls of issue 16 a config departs to (empty for the paper's):
    'A x2' (down map scaled), 'c perturbed' (base_init), 'HL init orthogonal' / 'HL init
    official' (head_init), 'Linear init like HL' (linear_init)."""
    out = [f"A x{config.down_init_scale:g}"] if config.down_init_scale != 1.0 else []
    cobot = config.cobot
    if cobot is not None:
        out += ["c perturbed"] if cobot.base_init == "perturbed" else []
        out += [f"HL init {cobot.head_init}"] if cobot.head_init != "paper" else []
        out += ["Linear init like HL"] if cobot.linear_init == "like_hypercomplex" else []
    return out


def row_config(row: pd.Series | dict[str, Any]) -> PeftConfig:
    """The PeftConfig a sweep row names (its columns method, rank, cobot and COBOT's switches;
    an absent or empty column takes PeftConfig's default)."""
    method = row["method"]
    if method not in PEFT_METHODS:
        return PeftConfig(method)
    cobot = None
    if bool(row.get("cobot", False)):
        switches = {k: row[k] for k in COBOT_CHOICES if k in row and pd.notna(row[k])}
        cobot = CobotConfig(**switches)
    rank, scale = row.get("rank"), row.get("down_init_scale")
    scale = float(scale) if scale is not None and pd.notna(scale) else 1.0
    rank = int(rank) if pd.notna(rank) else None
    return PeftConfig(method, rank=rank, cobot=cobot, down_init_scale=scale)


def config_columns(config: PeftConfig) -> dict[str, Any]:
    """The columns a results row names ``config`` by (the inverse of ``row_config``): method,
    cobot, every COBOT switch ("-" when COBOT is off), rank (None for the methods without
    modules) and down_init_scale."""
    cobot = config.cobot
    switches = {k: getattr(cobot, k) if cobot else "-" for k in COBOT_CHOICES}
    return {"method": config.method, "cobot": cobot is not None, **switches, "rank": config.rank,
            "down_init_scale": config.down_init_scale}  # fmt: skip


def _config_columns(df: pd.DataFrame) -> list[str]:
    """Group keys: GROUP_COLUMNS present, plus any other parameter that varies."""
    params = [c for c in df.columns if c not in ("run", *_RESULTS, *_NOT_CONFIG)]
    varying = [c for c in params if df[c].nunique(dropna=False) > 1]
    return [c for c in GROUP_COLUMNS if c in df] + [c for c in varying if c not in GROUP_COLUMNS]


def summarise(df: pd.DataFrame) -> pd.DataFrame:
    """Mean ± std over seeds, one row per configuration (see ``cobot_lib.sweep``)."""
    if df.empty:
        raise ValueError("summarise needs at least one run")
    keys = _config_columns(df)
    rows = []
    for values, group in df.groupby(keys, dropna=False, sort=False):
        row = dict(zip(keys, values if isinstance(values, tuple) else (values,), strict=True))
        row["variant"] = variant_label(row_config(row))
        row["n_seeds"] = len(group)
        row["seeds"] = " ".join(str(s) for s in sorted(group["seed"].tolist()))
        for metric in ("miou", "mdsc", "seconds"):
            row[f"{metric}_mean"], row[f"{metric}_std"] = mean_std(group[metric])
        row["zero_shot_miou_mean"] = float(group["zero_shot_miou"].mean())
        row["zero_shot_mdsc_mean"] = float(group["zero_shot_mdsc"].mean())
        for col in ("trainable_params", "image_encoder_params"):
            row[col] = int(group[col].max())
        rows.append(row)
    return pd.DataFrame(rows)


def _row_names(df: pd.DataFrame) -> pd.Series:
    """Row label per run: the variant, plus the other configuration columns that vary."""
    extra = [c for c in _config_columns(df) if c not in GROUP_COLUMNS]
    labels = df.apply(lambda row: variant_label(row_config(row)), axis=1)
    for col in extra:
        labels = labels + ", " + col + "=" + df[col].astype(str)
    return labels


def results_markdown(df: pd.DataFrame, title: str = "", description: str = "") -> str:
    """Paper-style tables (rows: variants, columns: datasets, mean ± std over seeds, %)."""
    rows, datasets = _row_names(df), list(dict.fromkeys(df["dataset"]))
    seeds = sorted(set(df["seed"].tolist()))
    out = [f"# {title}" if title else "# Sweep results", ""]
    if description:
        out += [description, ""]
    out += [f"{len(df)} runs; seeds {seeds}; cells: mean ± std over seeds (sample std), in %.", ""]
    for metric, name in (("miou", "mIoU (%)"), ("mdsc", "mean DSC (%)")):
        table = {
            r: {d: df.loc[(rows == r) & (df["dataset"] == d), metric].tolist() for d in datasets
                if ((rows == r) & (df["dataset"] == d)).any()}
            for r in dict.fromkeys(rows)
        }  # fmt: skip
        out += [f"## {name}", "", seed_table(table), ""]
    out += ["## Seconds per run (training + final evaluation, wall clock)", ""]
    out += ["| method | " + " | ".join(datasets) + " |", "|---|" + "---:|" * len(datasets)]
    for r in dict.fromkeys(rows):
        cells = []
        for d in datasets:
            sel = df.loc[(rows == r) & (df["dataset"] == d), "seconds"]
            cells.append(format_mean_std(sel, scale=1.0, digits=0) if len(sel) else "")
        out.append(f"| {r} | " + " | ".join(cells) + " |")
    out += ["", *_versus_freeze(df, rows)]
    return "\n".join(out).rstrip() + "\n"


def _versus_freeze(df: pd.DataFrame, rows: pd.Series) -> list[str]:
    """Per dataset: does each trained variant's mean beat Freeze's (and in how many seeds)?"""
    if not (df["method"] == "freeze").any():
        return []
    out = ["## Against Freeze (the zero-shot model)", "",
           "| method | dataset | Δ mIoU (points) | Δ mean DSC (points) | beats Freeze |",
           "|---|---|---:|---:|---|"]  # fmt: skip
    for d in dict.fromkeys(df["dataset"]):
        here = df["dataset"] == d
        frozen = df[here & (df["method"] == "freeze")]
        if frozen.empty:
            continue
        f_iou, f_dsc = frozen["miou"].mean(), frozen["mdsc"].mean()
        for r in dict.fromkeys(rows[here & (df["method"] != "freeze")]):
            sel = df[here & (rows == r)]
            d_iou, d_dsc = 100 * (sel["miou"].mean() - f_iou), 100 * (sel["mdsc"].mean() - f_dsc)
            wins = int(((sel["miou"] > f_iou) & (sel["mdsc"] > f_dsc)).sum())
            verdict = "yes" if d_iou > 0 and d_dsc > 0 else "**no**"
            out.append(f"| {r} | {d} | {d_iou:+.1f} | {d_dsc:+.1f} | "
                       f"{verdict} ({wins}/{len(sel)} seeds) |")  # fmt: skip
    return out + [""]


def write_tables(df: pd.DataFrame, out: str | os.PathLike, title: str = "",
                 description: str = "") -> list[Path]:  # fmt: skip
    """results.csv (per run), summary.csv (``summarise``) and results.md in ``out``."""
    out = Path(out)
    paths = [out / "results.csv", out / "summary.csv", out / "results.md"]
    df.to_csv(paths[0], index=False)
    summarise(df).to_csv(paths[1], index=False)
    paths[2].write_text(results_markdown(df, title, description))
    return paths


def machine_info() -> dict[str, str]:
    """CPU model, cores, threads setting, Python / torch versions, date: the table's conditions."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    return {
        "cpu": cpu,
        "logical cores": str(os.cpu_count()),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "unset"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "os": f"{platform.system()} {platform.release()}",
        "date (UTC)": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"),
    }


def export(df: pd.DataFrame, prefix: str | os.PathLike, sweep: Any, grid_path: str,
           note: str = "") -> list[Path]:  # fmt: skip
    """PREFIX.csv (the per-run table) and PREFIX.md (conditions + the markdown tables)."""
    prefix = Path(prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    csv, md = prefix.with_suffix(".csv"), prefix.with_suffix(".md")
    df.to_csv(csv, index=False)
    info = machine_info()
    seconds = df["seconds"].to_numpy(dtype=float)
    fixed = ", ".join(f"`{k}={v}`" for k, v in sweep.fixed.items()) or "none"
    head = [
        f"Generated by `python -m cobot_lib.sweep {grid_path} --export {prefix}` from the "
        f"sweep's own table (per-run rows: `{csv.name}`); do not edit by hand.",
        "",
        f"Fixed parameters: {fixed}.",
        "",
        "Machine and conditions: " + "; ".join(f"{k}: {v}" for k, v in info.items()) + ".",
        f"Per-run seconds: median {np.median(seconds):.0f}, max {seconds.max():.0f}, "
        f"total {seconds.sum() / 60:.1f} min (training + evaluation, wall clock).",
    ]
    if note:
        head += ["", note]
    body = results_markdown(df, sweep.name, sweep.description).split("\n")
    md.write_text("\n".join(body[:2] + head + [""] + body[2:]))
    return [md, csv]
