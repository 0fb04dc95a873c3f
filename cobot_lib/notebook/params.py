"""Check a notebook's papermill parameters in its first cells, before any work starts.

Papermill injects parameters as plain assignments, so a typo (``steps="50"``, ``method="lorra"``)
would otherwise surface deep inside training. Every notebook declares what it accepts and calls

    from cobot_lib.notebook.params import Param, check_params
    check_params(globals(), {
        "model_type": Param(str, choices=("tiny", "vit_b")),
        "steps": Param(int, minimum=1),
        "lr": Param(float, minimum=0.0),
        "checkpoint": Param(str, optional=True, path="file"),
    })

which raises one ``ParameterError`` listing every bad value (name, value, type, what was
expected), and returns the checked values as a dict. ``bool`` is never accepted as a number,
an ``int`` is accepted where a float is expected, and ``path="file"|"dir"`` checks existence.

Each notebook's own parameters are declared below (``check_t_product`` ...
``check_parameter_space``),
with the checks that one type cannot express (e.g. COBOT switches without COBOT), so the
notebook's second cell is one call that names what the notebook accepts.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..backbone.foundation import foundation_checkpoint_path
from ..backbone.sam import MODEL_TYPES
from ..data.base import PROMPTS
from ..data.benchmark_sets import BENCHMARK_DOMAINS
from ..engine.config import DataSection
from ..experiments.benchmark import JSONL, load_grid
from ..files import resolve_path
from ..peft.config import COBOT_CHOICES, DEFAULT_RANK, METHODS, PEFT_METHODS, CobotConfig

__all__ = [
    "FinetuneRun",
    "Param",
    "ParameterError",
    "check_anatomy",
    "check_benchmark",
    "check_fft_timing",
    "check_finetune",
    "check_hamilton",
    "check_parameter_space",
    "check_params",
    "check_t_product",
    "model_label",
]


class ParameterError(ValueError):
    """A notebook parameter has the wrong type, an unknown value, or names a missing file."""


@dataclass(frozen=True)
class Param:
    """What one parameter accepts.

    kind: the type (or a tuple of types) of the value; ``float`` also accepts ``int``.
    choices: the allowed values (checked after the type).
    minimum / maximum: inclusive bounds for numbers (for each element when ``items`` is set).
    items: for a list, the type every element must have; the list must not be empty.
    optional: None is allowed too.
    path: "file" or "dir": the value is a path that must exist (unless it is one of
        ``path_keywords``, e.g. "foundation" for a checkpoint).
    path_keywords: values that are not paths (checked before the path).
    check: a predicate for anything else, with ``check_message`` saying what it expects.
    """

    kind: type | tuple[type, ...]
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    items: type | None = None
    optional: bool = False
    path: str | None = None
    path_keywords: tuple[str, ...] = ()
    check: Callable[[Any], bool] | None = None
    check_message: str = "a valid value"

    def __post_init__(self) -> None:
        if self.path not in (None, "file", "dir"):
            raise ValueError(f"Param.path must be None, 'file' or 'dir', got {self.path!r}")

    def _kinds(self) -> tuple[type, ...]:
        kinds = self.kind if isinstance(self.kind, tuple) else (self.kind,)
        return kinds + ((int,) if float in kinds and int not in kinds else ())

    def describe(self) -> str:
        """What this parameter expects, in words."""
        names = " or ".join(k.__name__ for k in self._kinds())
        text = f"{names}{' or None' if self.optional else ''}"
        if self.items is not None:
            text += f" of {self.items.__name__} (not empty)"
        if self.choices is not None:
            text += f", one of {list(self.choices)}"
        if self.minimum is not None:
            text += f", >= {self.minimum}"
        if self.maximum is not None:
            text += f", <= {self.maximum}"
        if self.path is not None:
            text += f", an existing {self.path}"
            if self.path_keywords:
                text += f" (or one of {list(self.path_keywords)})"
        return text

    def problem(self, value: Any) -> str | None:
        """None if ``value`` is acceptable, else what is wrong with it."""
        if value is None:
            return None if self.optional else "None is not allowed"
        kinds = self._kinds()
        if isinstance(value, bool) and bool not in kinds:
            return f"a bool ({value!r}) is not a {'/'.join(k.__name__ for k in kinds)}"
        if not isinstance(value, kinds):
            return f"wrong type {type(value).__name__}"
        if self.choices is not None and value not in self.choices:
            return "unknown value"
        numbers = [value]
        if self.items is not None:
            if not value:
                return "an empty list"
            item_kinds = (self.items, int) if self.items is float else (self.items,)
            wrong = [x for x in value if isinstance(x, bool) or not isinstance(x, item_kinds)]
            if wrong:
                return f"elements that are not {self.items.__name__}: {wrong}"
            numbers = list(value)
        if self.minimum is not None and min(numbers) < self.minimum:
            return f"below the minimum {self.minimum}"
        if self.maximum is not None and max(numbers) > self.maximum:
            return f"above the maximum {self.maximum}"
        if self.path is not None and value not in self.path_keywords:
            p = Path(value).expanduser()
            exists = p.is_file() if self.path == "file" else p.is_dir()
            if not exists:
                return f"no such {self.path}: {p}"
        if self.check is not None and not self.check(value):
            return f"expected {self.check_message}"
        return None


def check_params(namespace: Mapping[str, Any], spec: Mapping[str, Param]) -> dict[str, Any]:
    """Check the parameters named in ``spec`` in ``namespace`` (a notebook's ``globals()``).

    Returns {name: value}. Raises ParameterError naming every missing or bad parameter, its value
    and type, and what it expects.
    """
    if not isinstance(namespace, Mapping):
        raise TypeError(f"namespace must be a mapping such as globals(), got {type(namespace)}")
    problems, values = [], {}
    for name, param in spec.items():
        if not isinstance(param, Param):
            raise TypeError(f"spec[{name!r}] must be a Param, got {param!r}")
        if name not in namespace:
            problems.append(f"  {name}: missing (expected {param.describe()})")
            continue
        value = namespace[name]
        issue = param.problem(value)
        if issue is not None:
            problems.append(
                f"  {name} = {value!r} ({type(value).__name__}): {issue}; "
                f"expected {param.describe()}"
            )
        values[name] = value
    if problems:
        raise ParameterError(
            "bad notebook parameter(s) — fix the `parameters` cell or the papermill -p values:\n"
            + "\n".join(problems)
        )
    return values


# --- the notebooks' parameters ------------------------------------------------------------------

DEMO_SETS = ("demo:nuclei", "demo:mri")
COBOT_SWITCHES = {k: getattr(CobotConfig(), k) for k in ("coefficient_sets", "relation", "head")}
POINT_DEFAULTS = {"points": DataSection.points, "negative_points": DataSection.negative_points}


def _multiple_of_4(**bounds: Any) -> Param:
    return Param(int, check=lambda v: v % 4 == 0, check_message="a multiple of 4", **bounds)


def _dataset(extra: tuple[str, ...] = ()) -> Param:
    names = DEMO_SETS + extra
    return Param(str, check=lambda v: v in names or Path(v).expanduser().is_dir(),
                 check_message=f"one of {list(names)} or an existing dataset folder")  # fmt: skip


def _device(*words: str) -> Param:
    expected = " or ".join(repr(w) for w in (*words, "cuda", "cuda:N"))
    return Param(str, check=lambda v: v in words or v.startswith("cuda"), check_message=expected)


def _three_numbers(v: Any) -> bool:
    numbers = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)
    return len(v) == 3 and numbers and math.hypot(*v) > 0


def model_label(model_type: str, checkpoint: str) -> str:
    """How a run's starting model is named in titles ('tiny SAM, foundation-pretrained', ...)."""
    return {
        "foundation": f"{model_type} SAM, foundation-pretrained",
        "random": f"{model_type} SAM, RANDOM INIT (not pretrained)",
    }.get(checkpoint, f"{model_type} SAM from {checkpoint}")


def _check_foundation(model_type: str, checkpoint: str) -> None:
    """checkpoint='foundation' is the shipped tiny model: it must be tiny, and present."""
    if checkpoint != "foundation":
        return
    if model_type != "tiny":
        raise ParameterError(
            f"checkpoint='foundation' is the pretrained tiny model; model_type={model_type!r} "
            "needs a SAM checkpoint file (data_scripts/fetch_sam_checkpoints.py fetches them)"
        )
    if not foundation_checkpoint_path().is_file():
        raise FileNotFoundError(
            f"the tiny foundation model is missing at {foundation_checkpoint_path()}; rebuild it "
            "with `python data_scripts/pretrain_tiny_sam.py`, or set checkpoint='random' for a "
            "clearly labelled run on a random-init tiny SAM"
        )


def check_t_product(namespace: Mapping[str, Any]) -> dict[str, Any]:
    """Notebook 01: the sizes of the tensors drawn and checked, and the seed."""
    return check_params(namespace, {
        "n1": Param(int, minimum=1, maximum=8), "n2": Param(int, minimum=1, maximum=8),
        "ell": Param(int, minimum=1, maximum=8), "n3": Param(int, minimum=2, maximum=12),
        "num_modules": Param(int, minimum=2, maximum=48),
        "rank": Param(int, minimum=1, maximum=64), "seed": Param(int, minimum=0),
    })  # fmt: skip


def check_fft_timing(namespace: Mapping[str, Any]) -> dict[str, Any]:
    """Appendix A1: the slice counts, sizes and repeats of the bcirc vs FFT timing."""
    return check_params(namespace, {
        "timing_n3": Param(list, items=int, minimum=1, maximum=1024),
        "timing_size": Param(int, minimum=1, maximum=128),
        "timing_repeats": Param(int, minimum=1, maximum=50), "seed": Param(int, minimum=0),
    })  # fmt: skip


def check_hamilton(namespace: Mapping[str, Any]) -> dict[str, Any]:
    """Notebook 02: numbers of checks, the rotation axis and angle, layer widths."""
    return check_params(namespace, {
        "n_checks": Param(int, minimum=10, maximum=1_000_000),
        "rotation_axis": Param(list, check=_three_numbers,
                               check_message="three numbers, not all zero"),
        "initial_angle": Param(int, minimum=0, maximum=360),
        "layer_width": _multiple_of_4(minimum=4, maximum=64),
        "widths": Param(list, items=int, minimum=4, maximum=512,
                        check=lambda v: all(x % 4 == 0 for x in v),
                        check_message="multiples of 4"),
        "init_trials": Param(int, minimum=2, maximum=10_000),
        "seed": Param(int, minimum=0),
    })  # fmt: skip


def check_anatomy(namespace: Mapping[str, Any]) -> dict[str, Any]:
    """Notebook 03: which backbones to count, which model's relation tensors to draw."""
    return check_params(namespace, {
        "backbones": Param(list, check=lambda v: len(v) > 0 and all(b in MODEL_TYPES for b in v),
                           check_message=f"a non-empty list of model types from "
                                         f"{list(MODEL_TYPES)}"),
        "inspect_backbone": Param(str, choices=MODEL_TYPES),
        "inspect_method": Param(str, choices=PEFT_METHODS),
        "relation": Param(str, choices=("fixed", "learnable")),
        "c_spread": Param(float, minimum=0.0),
        "seed": Param(int, minimum=0),
    })  # fmt: skip


@dataclass(frozen=True)
class FinetuneRun:
    """Notebook 04's checked parameters and what follows from them."""

    params: dict[str, Any]
    rank: int | None  # V resolved to the method's default (None: no PEFT modules)
    name: str  # 'lora (V=4) + COBOT [relation=off]'
    model_label: str
    metrics_path: Path


def _check_validation(params: Mapping[str, Any]) -> None:
    """Notebook 04's validation and prompt parameters, in combination (one error each)."""
    split, test = params["val_split"], DataSection.eval_split
    if split in (DataSection.train_split, test):
        raise ParameterError(
            f"val_split={split!r} is the {'training' if split != test else 'evaluation'} split; "
            "the kept adapter must be chosen on held-out images that are not scored afterwards "
            "(use 'val', another split file's name, or None for no validation)"
        )
    if split is None:
        rules = {k: params[k] for k in ("val_every_steps", "patience") if params[k] is not None}
        if rules:
            raise ParameterError(
                f"{rules} only apply with validation (got val_split=None); set val_split (e.g. "
                "'val') or leave them None"
            )
    point_options = {k: params[k] for k, v in POINT_DEFAULTS.items() if params[k] != v}
    if point_options and "point" not in params["prompt"]:
        raise ParameterError(
            f"{point_options} only apply with point prompts (got prompt={params['prompt']!r}); "
            f"set prompt='point' or 'box+point', or leave them at {POINT_DEFAULTS}"
        )


def check_finetune(namespace: Mapping[str, Any]) -> FinetuneRun:
    """Notebook 04: every parameter of one fine-tuning run, and their combinations."""
    params = check_params(namespace, {
        "model_type": Param(str, choices=MODEL_TYPES),
        "checkpoint": Param(str, path="file", path_keywords=("foundation", "random")),
        "dataset": _dataset(), "method": Param(str, choices=METHODS), "cobot": Param(bool),
        **{k: Param(str, choices=COBOT_CHOICES[k]) for k in COBOT_SWITCHES},
        "rank": Param(int, optional=True, minimum=1), "epochs": Param(int, minimum=0),
        "max_steps": Param(int, optional=True, minimum=1), "lr": Param(float, minimum=0.0),
        "weight_decay": Param(float, minimum=0.0), "box_jitter_px": Param(float, minimum=0.0),
        "seed": Param(int, minimum=0), "device": _device("cpu", "auto"),
        "amp": Param(str, choices=("auto", "bf16", "fp16", "off")),
        "val_split": Param(str, optional=True, check=lambda v: v.strip() == v != "",
                           check_message="a split name (splits/NAME.txt) or None"),
        "val_every_steps": Param(int, optional=True, minimum=1),
        "patience": Param(int, optional=True, minimum=1), "prompt": Param(str, choices=PROMPTS),
        "points": Param(int, minimum=1), "negative_points": Param(int, minimum=0),
        "eval_every_epoch": Param(bool), "expect_gain": Param(bool),
        "num_overlays": Param(int, minimum=0), "output_dir": Param(str),
        "metrics_path": Param(str),
    })  # fmt: skip
    _check_validation(params)
    method, cobot, rank = params["method"], params["cobot"], params["rank"]
    if method not in PEFT_METHODS and (cobot or rank is not None):
        raise ParameterError(
            f"method={method!r} has no PEFT modules, so cobot must be False and rank None (got "
            f"cobot={cobot!r}, rank={rank!r}); COBOT and rank apply to {list(PEFT_METHODS)}"
        )
    changed = {k: params[k] for k, v in COBOT_SWITCHES.items() if params[k] != v}
    if changed and not cobot:
        raise ParameterError(
            f"the COBOT switches {changed} only apply with cobot=True (got cobot=False); leave "
            f"them at their defaults {COBOT_SWITCHES} for a run without COBOT"
        )
    _check_foundation(params["model_type"], params["checkpoint"])
    resolved = rank if rank is not None or method not in PEFT_METHODS else DEFAULT_RANK[method]
    name = method + (f" (V={resolved})" if resolved else "") + (" + COBOT" if cobot else "")
    if changed:
        name += " [" + ", ".join(f"{k}={v}" for k, v in changed.items()) + "]"
    metrics = Path(params["metrics_path"] or f"{params['output_dir']}/metrics.json")
    label = model_label(params["model_type"], params["checkpoint"])
    return FinetuneRun(params, resolved, name, label, metrics)


def check_benchmark(namespace: Mapping[str, Any]) -> dict[str, Any]:
    """Notebook 05: the stored benchmark results and grid, the panel's first choice and the
    re-run check (a table, row, domain and seed that the grid file really has)."""
    domains = BENCHMARK_DOMAINS
    params = check_params(namespace, {
        "results_dir": Param(str, check=lambda v: (resolve_path(v) / JSONL).is_file(),
                             check_message=f"a folder holding {JSONL} (make it: python -m "
                                           "cobot_lib.experiments.benchmark run --out DIR)"),
        "grid_file": Param(str, check=lambda v: resolve_path(v).is_file(),
                           check_message="an existing grid file (configs/benchmark/grid.yaml)"),
        "panel_domain": Param(str, choices=domains), "panel_table": Param(str),
        "rerun_check": Param(bool), "rerun_table": Param(str), "rerun_row": Param(str),
        "rerun_domain": Param(str, choices=domains), "rerun_seed": Param(int, minimum=0),
    })  # fmt: skip
    grid = load_grid(resolve_path(params["grid_file"]))
    tables, problems = grid.tables, []
    for name in ("panel_table", "rerun_table"):
        if params[name] not in tables:
            problems.append(f"  {name} = {params[name]!r}: not a table of {params['grid_file']} "
                            f"(it has {list(tables)})")  # fmt: skip
    rows = tables.get(params["rerun_table"], {})
    if rows and params["rerun_row"] not in rows:
        problems.append(f"  rerun_row = {params['rerun_row']!r}: not a row of "
                        f"{params['rerun_table']} (it has {list(rows)})")  # fmt: skip
    seeds = grid.seeds_of(params["rerun_domain"])
    if params["rerun_seed"] not in seeds:
        problems.append(f"  rerun_seed = {params['rerun_seed']}: not a seed of "
                        f"{params['rerun_domain']} in the grid {list(seeds)}")  # fmt: skip
    if problems:
        raise ParameterError("bad notebook parameter(s):\n" + "\n".join(problems))
    return {**params, "grid": grid}


def check_parameter_space(namespace: Mapping[str, Any]) -> dict[str, Any]:
    """Notebook 06: the two short runs (RM on / off) and what is measured after them."""
    params = check_params(namespace, {
        "model_type": Param(str, choices=MODEL_TYPES),
        "checkpoint": Param(str, path="file", path_keywords=("foundation", "random")),
        "dataset": _dataset(("synthetic",)), "method": Param(str, choices=PEFT_METHODS),
        "rank": _multiple_of_4(minimum=4), "steps": Param(int, minimum=1),
        "lr": Param(float, minimum=0.0), "box_jitter_px": Param(float, minimum=0.0),
        "grad_images": Param(int, minimum=1), "top_k": Param(int, minimum=1),
        "seed": Param(int, minimum=0), "device": _device("cpu"), "output_dir": Param(str),
    })  # fmt: skip
    _check_foundation(params["model_type"], params["checkpoint"])
    return params
