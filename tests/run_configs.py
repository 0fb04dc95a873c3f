"""The tiny run config the training and validation tests start from (one builder, so the two
suites differ only in what they pass)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cobot_lib.engine.config import TrainConfig, load_config


def tiny_run_config(
    tmp_path: Path, name: str = "run", *, epochs: int, lr: float, **sections: Any
) -> TrainConfig:
    """Adaptformer+COBOT on a random-init tiny SAM writing under ``tmp_path``; each keyword
    section is merged into the defaults (a non-mapping value replaces the section)."""
    data: dict[str, Any] = {
        "name": name,
        "output_dir": str(tmp_path / "{name}"),
        "model": {"type": "tiny", "checkpoint": None},
        "peft": {"method": "adaptformer", "cobot": True},
        "optim": {"epochs": epochs, "lr": lr},
        "runtime": {"progress": False},
    }
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    return load_config(data)
