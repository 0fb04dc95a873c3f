"""Run configuration as data: a ``TrainConfig`` dataclass tree from YAML plus dotted overrides.

    cfg = load_config("configs/demo/tiny_nuclei_lora.yaml", ["optim.lr=3e-3", "runtime.seed=1"])

Every key is checked: an unknown key (in a file or an override) is an error naming the key, the
file and the keys that exist. A file may start from another with ``base: other.yaml`` (path
relative to the file; deep-merged). The value ``???`` marks a required path (the paper configs'
SAM checkpoint and dataset root) and fails with a message saying how to set it.

The ``peft`` section is a ``cobot_lib.peft.PeftConfig`` (``peft_from_dict`` reads it,
``peft_section`` writes it); ``peft.cobot`` is ``true`` / ``false`` or a mapping of
``enabled`` and CobotConfig's switches.

The paper's protocol (Sec. 5.1, METHOD.md section 5) lives in ``PAPER_DEFAULTS``: ``optim.lr``,
``optim.weight_decay`` and ``optim.epochs`` left at ``null`` take the value of ``domain``.
Those numbers are for ViT-B on full datasets; the tiny demo configs set their own.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, get_type_hints

import yaml

from ..data.base import PROMPTS
from ..peft import METHODS, PEFT_METHODS, CobotConfig, PeftConfig
from .schedule import SCHEDULES

__all__ = [
    "PAPER_DEFAULTS",
    "MISSING",
    "ModelSection",
    "DataSection",
    "OptimSection",
    "RuntimeSection",
    "EvalSection",
    "ValidationSection",
    "TrainConfig",
    "ConfigError",
    "load_config",
    "config_from_dict",
    "peft_from_dict",
    "peft_section",
    "PEFT_KEYS",
    "COBOT_KEYS",
    "apply_overrides",
    "parse_yaml",
]

MISSING = "???"
DOMAINS = ("medical", "natural", "remote_sensing")

#: Sec. 5.1 of the paper: Adam, one image per batch.
PAPER_DEFAULTS: dict[str, dict[str, Any]] = {
    "medical": {"lr": 1.25e-6, "weight_decay": 5e-4, "epochs": 25, "metric": "dsc"},
    "natural": {"lr": 1e-4, "weight_decay": 5e-5, "epochs": 20, "metric": "miou"},
    "remote_sensing": {"lr": 1e-4, "weight_decay": 5e-5, "epochs": 20, "metric": "miou"},
}


class _Loader(yaml.SafeLoader):
    """YAML with 1.2-style booleans: only true/false, so ``relation: off`` stays a string."""


_Loader.yaml_implicit_resolvers = {
    key: [r for r in resolvers if r[0] != "tag:yaml.org,2002:bool"]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def parse_yaml(text: str) -> Any:
    """YAML 1.2-style booleans (``relation: off`` stays a string), safe loader only."""
    return yaml.load(text, Loader=_Loader)  # a SafeLoader subclass: no arbitrary objects


class ConfigError(ValueError):
    """A configuration problem, raised before any work starts."""


@dataclass
class ModelSection:
    """type: vit_b | vit_l | vit_h | tiny. checkpoint: a SAM state dict path, "foundation" (the
    pretrained tiny SAM, ``backbone.foundation``) or null (random weights)."""

    type: str = "tiny"
    checkpoint: str | None = "foundation"


@dataclass
class DataSection:
    """root: a dataset folder, or "demo:nuclei" / "demo:mri" (built offline on first use).
    format: folder | coco | nifti (null: the set's dataset.json says). jitter: largest outward
    move of each box side, in original-image pixels (paper: 50).
    max_instances: in training, at most this many instances per image (a seeded random subset
    per epoch; null = all; evaluation always scores all).
    val_split: the split that picks the kept adapter (``validation``); null = no validation.
    prompt: box | point | box+point, in training and evaluation; points / negative_points:
    per instance, drawn inside / near outside each mask (``data.points``), fresh every epoch in
    training, the same for every run in evaluation."""

    root: str | None = None
    format: str | None = None
    train_split: str = "train"
    eval_split: str = "test"
    jitter: float = 50.0
    max_instances: int | None = None
    num_workers: int = 0
    val_split: str | None = "val"
    prompt: str = "box"
    points: int = 1
    negative_points: int = 0


@dataclass
class OptimSection:
    """Adam. lr / weight_decay / epochs null = the paper's value for ``domain``.
    batch_size is the global batch (images per optimiser step, summed over processes).
    schedule: constant (the paper's) | cosine (decay from lr to 0 over decay_steps optimiser
    steps; null: the whole run, epochs x steps per epoch; ``engine.schedule``)."""

    lr: float | None = None
    weight_decay: float | None = None
    epochs: int | None = None
    batch_size: int = 1
    betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float | None = None
    schedule: str = "constant"
    decay_steps: int | None = None


@dataclass
class RuntimeSection:
    """How the run executes (none of it changes the result beyond float rounding).

    device: auto | cpu | cuda | cuda:N. amp: auto (bf16 on CUDA if supported, else fp16 with a
    GradScaler; off on CPU) | bf16 | fp16 | off. cache_embeddings: auto (on for decoder and
    freeze) | true | false. max_steps: stop after this many optimiser steps in total (a
    checkpoint is written there; resuming continues exactly). save_every: also checkpoint every
    N steps inside an epoch. resume: auto (continue from output_dir's checkpoint if any) |
    never (start over) | a checkpoint path. log_every: one "step" record per N steps (long runs).
    divergence_factor: stop when a step's loss exceeds this many times the running median of the
    last divergence_window losses (null: stop only on NaN/inf); see ``engine.guard``."""

    seed: int = 0
    device: str = "auto"
    amp: str = "auto"
    activation_checkpointing: bool = False
    cache_embeddings: str = "auto"
    max_steps: int | None = None
    save_every: int | None = None
    resume: str = "auto"
    progress: bool = True
    log_every: int = 1
    divergence_factor: float | None = 20.0
    divergence_window: int = 50


@dataclass
class EvalSection:
    """Evaluation on ``data.eval_split`` at the original image size after training."""

    enabled: bool = True
    save_masks: bool = False
    every_epoch: bool = False


@dataclass
class ValidationSection:
    """Model selection on ``data.val_split`` (``engine.validation``): the zero-shot model is
    scored first, then after every epoch (or every ``every_steps`` optimiser steps); RUN_DIR/
    adapter is the best so far by the run's metric (mIoU or DSC, ``domain``). patience: stop
    after this many validations in a row without an improvement larger than min_delta
    (null: never stop early)."""

    every_steps: int | None = None
    patience: int | None = None
    min_delta: float = 0.0


@dataclass
class TrainConfig:
    """One fine-tuning run: what to train (model, peft), on what (data), how (optim, runtime)."""

    name: str = "run"
    domain: str = "natural"
    output_dir: str = "runs/{name}"
    model: ModelSection = field(default_factory=ModelSection)
    peft: PeftConfig = field(default_factory=lambda: PeftConfig("lora"))
    data: DataSection = field(default_factory=DataSection)
    optim: OptimSection = field(default_factory=OptimSection)
    runtime: RuntimeSection = field(default_factory=RuntimeSection)
    eval: EvalSection = field(default_factory=EvalSection)
    validation: ValidationSection = field(default_factory=ValidationSection)

    @property
    def lr(self) -> float:
        return _default(self.optim.lr, self.domain, "lr")

    @property
    def weight_decay(self) -> float:
        return _default(self.optim.weight_decay, self.domain, "weight_decay")

    @property
    def epochs(self) -> int:
        return _default(self.optim.epochs, self.domain, "epochs")

    @property
    def metric(self) -> str:
        return PAPER_DEFAULTS[self.domain]["metric"]

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir.format(name=self.name))

    def to_dict(self) -> dict[str, Any]:
        """Plain data in the YAML's own shape (``load_config`` reads it back unchanged)."""
        return {**asdict(self), "peft": peft_section(self.peft)}

    def validate(self) -> TrainConfig:
        """Check values that the types do not; raises ConfigError naming the key."""
        _choice("domain", self.domain, DOMAINS)
        _choice("runtime.amp", self.runtime.amp, ("auto", "bf16", "fp16", "off"))
        cache = str(self.runtime.cache_embeddings).lower()
        _choice("runtime.cache_embeddings", cache, ("auto", "true", "false"))
        _choice("data.format", self.data.format, (None, "folder", "coco", "nifti"))
        _choice("data.prompt", self.data.prompt, PROMPTS)
        _choice("optim.schedule", self.optim.schedule, SCHEDULES)
        if self.optim.decay_steps is not None and self.optim.schedule == "constant":
            raise ConfigError(
                f"optim.decay_steps={self.optim.decay_steps} only applies with "
                "optim.schedule=cosine (a constant rate does not decay)"
            )
        for key, value in (
            ("optim.batch_size", self.optim.batch_size),
            ("optim.decay_steps", self.optim.decay_steps),
            ("runtime.max_steps", self.runtime.max_steps),
            ("runtime.save_every", self.runtime.save_every),
            ("runtime.log_every", self.runtime.log_every),
            ("runtime.divergence_window", self.runtime.divergence_window),
            ("data.max_instances", self.data.max_instances),
            ("data.points", self.data.points),
            ("validation.every_steps", self.validation.every_steps),
            ("validation.patience", self.validation.patience),
        ):
            if value is not None and value < 1:
                raise ConfigError(f"{key} must be a positive integer, got {value!r}")
        for key, value in (
            ("optim.epochs", self.epochs),
            ("optim.lr", self.lr),
            ("optim.weight_decay", self.weight_decay),
            ("data.jitter", self.data.jitter),
            ("data.negative_points", self.data.negative_points),
            ("validation.min_delta", self.validation.min_delta),
        ):
            if value < 0:
                raise ConfigError(f"{key} must be >= 0, got {value!r}")
        if not all(0.0 <= b < 1.0 for b in self.optim.betas):
            raise ConfigError(f"optim.betas must both lie in [0, 1), got {list(self.optim.betas)}")
        if self.optim.grad_clip is not None and not self.optim.grad_clip > 0:
            raise ConfigError(f"optim.grad_clip must be > 0 or null, got {self.optim.grad_clip!r}")
        factor = self.runtime.divergence_factor
        if factor is not None and not factor > 1:
            raise ConfigError(
                f"runtime.divergence_factor must be > 1 (a multiple of the running median loss) "
                f"or null (stop only on NaN/inf), got {factor!r}"
            )
        for key in ("model.checkpoint", "data.root"):
            section, name = key.split(".")
            if getattr(getattr(self, section), name) == MISSING:
                raise ConfigError(
                    f"{key} is not set (placeholder {MISSING!r}); pass it on the command line, "
                    f"e.g. `python -m cobot_lib.train CONFIG.yaml {key}=/path/to/...`"
                )
        return self


def _default(value: Any, domain: str, key: str) -> Any:
    _choice("domain", domain, DOMAINS)
    return PAPER_DEFAULTS[domain][key] if value is None else value


def _choice(key: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        raise ConfigError(f"{key}={value!r}; expected one of {list(allowed)}")


# ---- building from plain data ----------------------------------------------------------------


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Check / convert a YAML value to the annotated type (int -> float allowed)."""
    text = str(hint)
    if value is None:
        if "None" in text:
            return None
        raise ConfigError(f"{key} may not be null (expected {text})")
    if value == MISSING:
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key} must be true or false, got {value!r}")
    if hint is tuple[float, float] or text.startswith("tuple"):
        pair = [_coerce(v, float, key) for v in value] if isinstance(value, list | tuple) else []
        if len(pair) == 2:
            return tuple(pair)
        raise ConfigError(f"{key} must be a list of two numbers, got {value!r}")
    wants_float, wants_int, wants_str = "float" in text, "int" in text, "str" in text
    if isinstance(value, str) and (wants_float or wants_int) and not wants_str:
        try:  # YAML 1.1 reads "1e-4" as a string
            value = (
                int(value) if wants_int and value.strip().lstrip("-").isdigit() else float(value)
            )
        except ValueError:
            raise ConfigError(f"{key} must be a number, got {value!r}") from None
    if isinstance(value, bool):
        if wants_str:
            return str(value).lower()
        raise ConfigError(f"{key} must be {text}, got {value!r}")
    if isinstance(value, int) and (wants_int or wants_float):
        return value if wants_int else float(value)
    if isinstance(value, float) and wants_float:
        if not math.isfinite(value):
            raise ConfigError(f"{key} must be a finite number, got {value!r}")
        return value
    if isinstance(value, str) and wants_str:
        return value
    if isinstance(value, (int, float)) and wants_str:
        return str(value)
    raise ConfigError(f"{key} must be {text}, got {value!r} ({type(value).__name__})")


def _build(cls: type, data: dict[str, Any], prefix: str, source: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'config'} in {source} must be a mapping, got {data!r}")
    hints = get_type_hints(cls)
    valid = [f.name for f in fields(cls)]
    kwargs = {}
    for key, value in data.items():
        full = f"{prefix}{key}"
        if key not in valid:
            raise ConfigError(f"unknown config key {full!r} in {source}; valid keys here: {valid}")
        hint = hints[key]
        if hint is PeftConfig:
            kwargs[key] = peft_from_dict({} if value is None else value, source)
        elif dataclasses.is_dataclass(hint):
            switch = "enabled" in hint.__dataclass_fields__
            if isinstance(value, bool) and switch:
                value = {"enabled": value}
            elif value is not None and not isinstance(value, dict):
                expected = "true, false or a mapping" if switch else "a mapping"
                raise ConfigError(
                    f"{full} in {source} must be {expected} of {[f.name for f in fields(hint)]}, "
                    f"got {value!r}" + (" (booleans are written true / false)" if switch else "")
                )
            kwargs[key] = _build(hint, value or {}, f"{full}.", source)
        else:
            kwargs[key] = _coerce(value, hint, full)
    return cls(**kwargs)


# ---- the peft section: a PeftConfig written as YAML ------------------------------------------

#: The ``peft`` section's keys: PeftConfig's fields (``extra`` is not settable from a file).
PEFT_KEYS = tuple(f.name for f in fields(PeftConfig) if f.name != "extra")
#: ``peft.cobot``: ``true`` / ``false``, or a mapping of the on/off switch and CobotConfig's fields.
COBOT_KEYS = ("enabled", *(f.name for f in fields(CobotConfig)))


def peft_section(config: PeftConfig) -> dict[str, Any]:
    """``config`` as the run config's ``peft`` section (what ``peft_from_dict`` reads back):
    ``cobot`` is ``{enabled, coefficient_sets, ...}``, its switches at their defaults when off."""
    cobot = {"enabled": config.cobot is not None, **asdict(config.cobot or CobotConfig())}
    return {**{key: getattr(config, key) for key in PEFT_KEYS}, "cobot": cobot}


def peft_from_dict(data: Any, source: str) -> PeftConfig:
    """The ``peft`` section as a ``PeftConfig``; a bad key or value is one ConfigError naming it.

    ``cobot`` is ``true`` / ``false`` or a mapping whose ``enabled`` (default false) switches
    COBOT on; its switches are checked either way. ``rank`` and ``cobot`` belong to the methods
    that inject modules (``PEFT_METHODS``); ``train_decoder`` is ignored by the others, which
    train the decoder (``decoder``, ``full``) or nothing (``freeze``) whatever it says.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"peft in {source} must be a mapping of {list(PEFT_KEYS)}, got {data!r}")
    hints = get_type_hints(PeftConfig)
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key not in PEFT_KEYS:
            raise ConfigError(
                f"unknown config key 'peft.{key}' in {source}; valid keys here: {list(PEFT_KEYS)}"
            )
        values[key] = value if key == "cobot" else _coerce(value, hints[key], f"peft.{key}")
    method = values.setdefault("method", "lora")
    if method not in METHODS:  # before COBOT's checks, which would blame COBOT
        raise ConfigError(
            f"peft.method={method!r}: unknown PEFT method {method!r}; expected one of "
            f"{list(METHODS)}"
        )
    cobot = _cobot_from_value(values.pop("cobot", None), source)
    if method not in PEFT_METHODS:
        if values.get("rank") is not None or cobot is not None:
            raise ConfigError(
                f"peft.method={method!r} takes no rank and no COBOT (peft.rank and peft.cobot "
                f"belong to {list(PEFT_METHODS)})"
            )
        values.pop("train_decoder", None)
    try:
        return PeftConfig(**values, cobot=cobot)
    except ValueError as exc:
        raise ConfigError(f"peft section in {source}: {exc}") from exc


def _cobot_from_value(value: Any, source: str) -> CobotConfig | None:
    """``peft.cobot`` (a bool, a mapping or null) as the CobotConfig it switches on, or None."""
    if value is None or isinstance(value, bool):
        value = {"enabled": bool(value)}
    if not isinstance(value, dict):
        raise ConfigError(
            f"peft.cobot in {source} must be true, false or a mapping of {list(COBOT_KEYS)}, "
            f"got {value!r} (booleans are written true / false)"
        )
    hints = {"enabled": bool, **get_type_hints(CobotConfig)}
    switches: dict[str, Any] = {}
    for key, item in value.items():
        if key not in COBOT_KEYS:
            raise ConfigError(
                f"unknown config key 'peft.cobot.{key}' in {source}; valid keys here: "
                f"{list(COBOT_KEYS)}"
            )
        switches[key] = _coerce(item, hints[key], f"peft.cobot.{key}")
    enabled = switches.pop("enabled", False)
    try:
        cobot = CobotConfig(**switches)  # checked even when off: a typo is an error either way
    except ValueError as exc:
        raise ConfigError(f"peft section in {source}: {exc}") from exc
    return cobot if enabled else None


def config_from_dict(data: dict[str, Any], source: str = "<dict>") -> TrainConfig:
    """A validated TrainConfig from nested plain data (as YAML gives it)."""
    return _build(TrainConfig, data, "", source).validate()


def _merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _read_yaml(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    if path.resolve() in seen:
        raise ConfigError(f"config {path} includes itself through 'base:'")
    try:
        data = parse_yaml(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"config {path} is not UTF-8 text (byte {exc.start}): {exc.reason}"
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config {path} must hold a mapping at the top, got {type(data)}")
    base = data.pop("base", None)
    if base is not None:
        if not isinstance(base, str) or not (path.parent / base).is_file():
            raise ConfigError(
                f"config {path} starts from base: {base!r}, which is not a file "
                f"({path.parent / str(base)}; a base path is relative to the config)"
            )
        data = _merge(_read_yaml(path.parent / base, (*seen, path.resolve())), data)
    return data


def _parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key.sub=value (e.g. optim.lr=1e-4)")
    key, raw = text.split("=", 1)
    try:
        value = parse_yaml(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    # YAML's own null (``null``, ``~``) is None; "none" stays a string because it is a value
    # of some keys (peft.cobot.head=none).
    return key.strip().split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Nested data with ``a.b=value`` overrides applied (values parsed as YAML scalars)."""
    data = json.loads(json.dumps(data))  # deep copy of plain data
    for text in overrides:
        path, value = _parse_override(text)
        node = data
        for part in path[:-1]:
            if not isinstance(node.get(part, {}), dict):
                node[part] = {"enabled": node[part]} if isinstance(node[part], bool) else {}
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return data


def load_config(
    source: str | os.PathLike | dict | TrainConfig | None = None,
    overrides: list[str] | None = None,
) -> TrainConfig:
    """A TrainConfig from a YAML path, a dict or another TrainConfig, plus dotted overrides."""
    overrides = list(overrides or [])
    if isinstance(source, TrainConfig):
        data, where = source.to_dict(), "<TrainConfig>"
    elif isinstance(source, dict):
        data, where = source, "<dict>"
    elif source is None:
        data, where = {}, "<defaults>"
    else:
        data, where = _read_yaml(Path(source)), str(source)
    if overrides:
        where += " + overrides " + " ".join(overrides)
    return config_from_dict(apply_overrides(data, overrides), where)
