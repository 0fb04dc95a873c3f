"""The benchmark's grid file, one grid point, one run (issue 15).

    grid = load_grid("configs/benchmark/grid.yaml")
    points = grid.points()                           # every run: rows x domains x seeds
    row = run_point(points[0], domain_root("sonar"))  # train + score one point in-process

A grid file (YAML) names the domains (``data.domains``) with each one's protocol (steps, lr,
weight decay, box jitter, lr schedule; chosen on the validation split,
``docs/results/benchmark_protocol.md``), the seeds, and the rows of each table: a row is a
method with its COBOT switches and V (``ROW_KEYS``), which ``BenchmarkPoint.of`` turns into
the point's PeftConfig. A row that appears in several tables (the full COBOT at V=16 is in
Tables 1, 2, 3 and Fig. 5) is one run per domain and seed.

A point is trained for ``steps`` Adam steps on the domain's train split, one image per step, and
scored once on ``eval_split`` (the test split in the grid, the validation split while tuning) with
the last step's weights (no model selection). One torch thread; every random draw seeded by
``seed`` (sample order, box jitter, dropout, adapter init, the fixed relation matrix), so the same
seed gives the same images, order and jitter to every row: the pairing ``experiments.statistics``
relies on.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch

from ...data.benchmark_sets import BENCHMARK_DOMAINS
from ...engine.config import TrainConfig, config_from_dict, parse_yaml, peft_section
from ...engine.schedule import SCHEDULES
from ...engine.trainer import run_experiment
from ...peft.config import COBOT_CHOICES, PEFT_METHODS, PeftConfig
from ..tables import config_columns, row_config, variant_label

__all__ = [
    "KEY",
    "ROW_KEYS",
    "index_rows",
    "key_of",
    "BenchmarkPoint",
    "DomainProtocol",
    "Grid",
    "load_grid",
    "point_config",
    "run_point",
]

ROW_KEYS = ("method", "cobot", *COBOT_CHOICES, "rank", "down_init_scale")
METHODS = ("freeze", "decoder", *PEFT_METHODS)


@dataclass(frozen=True)
class DomainProtocol:
    """How a domain is trained: Adam steps (one image each), lr, weight decay, box jitter (px),
    and the lr schedule over the steps (``engine.schedule``: constant or cosine to 0)."""

    steps: int
    lr: float
    weight_decay: float = 0.0
    jitter: float = 2.0
    schedule: str = "constant"


#: The columns that name one run in a results table (``BenchmarkPoint.columns``).
KEY = ("domain", "seed", *ROW_KEYS, *(f.name for f in fields(DomainProtocol)), "eval_split")


def key_of(row: Mapping[str, Any]) -> tuple:
    """The ``KEY`` values of a results row (or of ``BenchmarkPoint.columns()``): which run it is."""
    return tuple(row[k] for k in KEY)


def index_rows(rows: Iterable[Mapping[str, Any]]) -> dict[tuple, Mapping[str, Any]]:
    """Results rows by their run (``key_of``); a later row of the same run replaces an earlier."""
    return {key_of(r): r for r in rows}


@dataclass(frozen=True)
class BenchmarkPoint:
    """One run: the PeftConfig ``peft`` trained on ``domain`` with ``seed`` under ``protocol``.

    ``peft.method`` is a PEFT method (LoRA / Adaptformer, with or without COBOT), ``freeze``
    (zero-shot) or ``decoder`` (the paper's Lightweight row: only the mask decoder trained).
    ``seed`` draws everything random in the run, COBOT's included (``peft.cobot.seed`` is set to
    it). ``BenchmarkPoint.of`` builds one from a grid row's keys (``ROW_KEYS``); ``row()`` gives
    them back ("-" for the switches of a plain method).
    """

    domain: str
    peft: PeftConfig
    seed: int
    protocol: DomainProtocol

    def __post_init__(self) -> None:
        if not isinstance(self.peft, PeftConfig) or self.peft.method not in METHODS:
            raise ValueError(f"peft={self.peft!r}; expected a PeftConfig of {list(METHODS)}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"seed must be an integer, got {self.seed!r}")
        cobot = self.peft.cobot
        if cobot is not None and cobot.seed != self.seed:
            object.__setattr__(self, "peft", self.peft.with_(cobot=replace(cobot, seed=self.seed)))

    @classmethod
    def of(
        cls, domain: str, seed: int, protocol: DomainProtocol, method: str, cobot: bool = False,
        rank: int | None = None, down_init_scale: float = 1.0, **switches: str,
    ) -> BenchmarkPoint:  # fmt: skip
        """The point of a grid row (``ROW_KEYS``: method, cobot, COBOT's switches, rank and
        the down map's initial scale; the switches count only when ``cobot`` is true). Raises
        ValueError for a bad row."""
        if method not in METHODS:
            raise ValueError(f"method={method!r}; expected one of {list(METHODS)}")
        plain = rank is None and down_init_scale == 1.0
        if method not in PEFT_METHODS and (cobot or switches or not plain):
            raise ValueError(
                f"COBOT, rank V and down_init_scale belong to the modules of "
                f"{list(PEFT_METHODS)}; {method!r} takes none of them"
            )
        peft = row_config({"method": method, "cobot": cobot, "rank": rank,
                           "down_init_scale": down_init_scale, **switches})  # fmt: skip
        return cls(domain, peft, seed, protocol)

    def row(self) -> dict[str, Any]:
        """The configuration's columns without domain, seed and protocol (``ROW_KEYS``)."""
        return config_columns(self.peft)

    def label(self) -> str:
        """The configuration's name: 'Adaptformer+CoS+RM+HL V=16', 'Freeze (zero-shot)'."""
        return variant_label(self.peft)

    def columns(self, eval_split: str = "test") -> dict[str, Any]:
        """What names the run in a results table (``KEY``): domain, seed, the row, the protocol
        and the split scored; a results row with these values is this run."""
        return {"domain": self.domain, "seed": self.seed, **self.row(),
                **asdict(self.protocol), "eval_split": eval_split}  # fmt: skip


@dataclass(frozen=True)
class Grid:
    """A parsed grid file: protocols per domain, seeds, and each table's named rows.

    ``seeds`` and the tables apply to every domain unless the domain's entry names its own
    (``domain_seeds``: more seeds where the spread is larger; ``domain_tables``: a subset, where
    the whole grid would not fit the time budget); ``seeds_of`` / ``tables_of`` resolve them.
    """

    domains: dict[str, DomainProtocol]
    seeds: tuple[int, ...]
    tables: dict[str, dict[str, dict[str, Any]]]
    equivalence_bound: float
    domain_seeds: dict[str, tuple[int, ...]] = field(default_factory=dict)
    domain_tables: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def seeds_of(self, domain: str) -> tuple[int, ...]:
        """The seeds ``domain`` runs with (its own list, else the grid's)."""
        return self.domain_seeds.get(domain, self.seeds)

    def tables_of(self, domain: str) -> dict[str, dict[str, dict[str, Any]]]:
        """The tables ``domain`` runs (its own list, else all), in the grid file's order."""
        wanted = self.domain_tables.get(domain)
        return {t: rows for t, rows in self.tables.items() if wanted is None or t in wanted}

    def points(self) -> list[BenchmarkPoint]:
        """Every distinct run (a row shared by several tables is run once), domain-major.

        Freeze trains nothing and scores tight boxes, so its score is the same for every seed:
        it runs once per domain (first seed), and a table pairs every seed with that score.
        """
        out: dict[tuple, BenchmarkPoint] = {}
        for domain, protocol in self.domains.items():
            for rows in self.tables_of(domain).values():
                for row in rows.values():
                    seeds = self.seeds_of(domain)
                    for seed in seeds[:1] if row["method"] == "freeze" else seeds:
                        point = BenchmarkPoint.of(domain, seed, protocol, **row)
                        out.setdefault((domain, seed, tuple(point.row().values())), point)
        return list(out.values())

    def comparisons(self, domain: str | None = None) -> int:
        """Paired comparisons the tables make on ``domain`` (each row against its table's
        first); without a domain, those of the whole list of tables."""
        tables = self.tables if domain is None else self.tables_of(domain)
        return sum(len(rows) - 1 for rows in tables.values())


def _seeds(seeds: Any, where: str) -> tuple[int, ...]:
    ok = (
        isinstance(seeds, list)
        and seeds
        and all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)
    )
    if not ok or len(set(seeds)) != len(seeds):
        raise ValueError(f"{where} must be a non-empty list of distinct integers, got {seeds!r}")
    return tuple(seeds)


def _protocol(domain: str, data: Any, where: str) -> DomainProtocol:
    if not isinstance(data, dict):
        raise ValueError(f"{where}: domains.{domain} must be a mapping of steps, lr, ...")
    known = {f.name for f in fields(DomainProtocol)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{where}: domains.{domain} has unknown keys {unknown} (known {known})")
    try:
        protocol = DomainProtocol(**data)
    except TypeError as exc:
        raise ValueError(f"{where}: domains.{domain}: {exc}") from None
    if not isinstance(protocol.steps, int) or protocol.steps < 1 or protocol.lr <= 0:
        raise ValueError(f"{where}: domains.{domain} needs steps >= 1 and lr > 0, got {data}")
    if protocol.schedule not in SCHEDULES:
        raise ValueError(
            f"{where}: domains.{domain}.schedule={protocol.schedule!r}; "
            f"expected one of {list(SCHEDULES)}"
        )
    return protocol


def _domain(
    name: str, entry: Any, table_names: list[str], path: Path
) -> tuple[DomainProtocol, tuple[int, ...] | None, tuple[str, ...] | None]:
    """A grid file's ``domains.<name>`` entry: its protocol, and its own seeds and tables
    (None: the grid's)."""
    if name not in BENCHMARK_DOMAINS:
        raise ValueError(f"{path}: domains.{name}: unknown benchmark domain {name!r}; expected "
                         f"one of {list(BENCHMARK_DOMAINS)}")  # fmt: skip
    entry = dict(entry) if isinstance(entry, dict) else entry
    seeds = tables = None
    if isinstance(entry, dict) and "seeds" in entry:
        seeds = _seeds(entry.pop("seeds"), f"{path}: domains.{name}.seeds")
    if isinstance(entry, dict) and "tables" in entry:
        tables = entry.pop("tables")
        listed = isinstance(tables, list) and tables and all(isinstance(t, str) for t in tables)
        if not listed or not set(tables) <= set(table_names):
            raise ValueError(f"{path}: domains.{name}.tables must list tables of the grid "
                             f"({table_names}), got {tables!r}")  # fmt: skip
        tables = tuple(tables)
    return _protocol(name, entry, str(path)), seeds, tables


def load_grid(path: str | os.PathLike) -> Grid:
    """The grid file at ``path`` (YAML, safe loader); one ValueError naming the bad key."""
    path = Path(path)
    data = parse_yaml(path.read_text(encoding="utf-8"))
    keys = ("domains", "seeds", "tables", "equivalence_bound")
    for key in keys:
        if not isinstance(data, dict) or key not in data:
            raise ValueError(f"{path}: missing top-level key {key!r} (expected {keys})")
    bound = data["equivalence_bound"]
    if isinstance(bound, bool) or not isinstance(bound, int | float) or not bound > 0:
        raise ValueError(f"{path}: equivalence_bound must be a number of points > 0, got {bound!r}")
    if not isinstance(data["domains"], dict) or not data["domains"]:
        raise ValueError(f"{path}: domains must map domain names to their protocols")
    if not isinstance(data["tables"], dict):
        raise ValueError(f"{path}: tables must map table names to their rows")
    seeds = _seeds(data["seeds"], f"{path}: seeds")
    domains, domain_seeds, domain_tables = {}, {}, {}
    for name, entry in data["domains"].items():
        domains[name], own_seeds, own_tables = _domain(name, entry, list(data["tables"]), path)
        if own_seeds is not None:
            domain_seeds[name] = own_seeds
        if own_tables is not None:
            domain_tables[name] = own_tables
    tables = {}
    for table, rows in data["tables"].items():
        if not isinstance(rows, dict) or len(rows) < 2:
            raise ValueError(f"{path}: tables.{table} must map at least two row names to rows")
        for name, row in rows.items():
            if not isinstance(row, dict) or "method" not in row:
                raise ValueError(f"{path}: tables.{table}.{name} must be a mapping with a method")
            bad = sorted(set(row) - set(ROW_KEYS))
            if bad:
                raise ValueError(f"{path}: tables.{table}.{name} has unknown keys {bad}")
            try:  # the row must make a valid point
                BenchmarkPoint.of(next(iter(domains)), 0, DomainProtocol(1, 1.0), **row)
            except ValueError as exc:
                raise ValueError(f"{path}: tables.{table}.{name}: {exc}") from None
        tables[table] = {name: dict(row) for name, row in rows.items()}
    return Grid(domains, seeds, tables, float(bound), domain_seeds, domain_tables)


def point_config(
    point: BenchmarkPoint, root: str | os.PathLike, output_dir: str | os.PathLike,
    eval_split: str = "test",
) -> TrainConfig:  # fmt: skip
    """The training config of ``point`` on the prepared domain at ``root``."""
    p = point.protocol
    data = {
        "name": f"benchmark_{point.domain}",
        "output_dir": str(output_dir),
        "model": {"type": "tiny", "checkpoint": "foundation"},
        "peft": peft_section(point.peft),
        "data": {"root": str(root), "jitter": p.jitter, "eval_split": eval_split,
                 "val_split": None},
        "optim": {"lr": p.lr, "weight_decay": p.weight_decay, "epochs": p.steps,
                  "schedule": p.schedule,
                  "decay_steps": p.steps if p.schedule != "constant" else None},
        "runtime": {"seed": point.seed, "device": "cpu", "max_steps": p.steps,
                    "resume": "never", "progress": False},
        "eval": {"enabled": True},
    }  # fmt: skip
    return config_from_dict(data, f"<benchmark {point.label()} on {point.domain}>")


def run_point(
    point: BenchmarkPoint, root: str | os.PathLike, eval_split: str = "test"
) -> dict[str, Any]:
    """Train and score ``point`` in this process on one torch thread (a throw-away run folder).

    Returns the row: domain, seed, the row keys, the protocol, miou / mdsc (fractions),
    n_instances, seconds (build + training + evaluation, wall clock), image_encoder_params.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with tempfile.TemporaryDirectory(prefix="benchmark-") as tmp:
            start = time.perf_counter()
            result = run_experiment(point_config(point, root, Path(tmp) / "run", eval_split))
            seconds = time.perf_counter() - start
    finally:
        torch.set_num_threads(threads)
    metrics = result["metrics"]
    return {
        **point.columns(eval_split), "miou": float(metrics["miou"]), "mdsc": float(metrics["mdsc"]),
        "n_instances": int(metrics["n_instances"]), "seconds": round(seconds, 2),
        "image_encoder_params": int(result["image_encoder_parameters"]),
    }  # fmt: skip
