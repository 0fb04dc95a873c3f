"""What a grid file points at on disk: ``paths`` placeholders and the checks before a sweep.

A grid's ``paths`` section names folders and files that differ between machines (dataset roots,
SAM checkpoints); a string value in ``fixed`` or ``grid`` may contain ``{name}``, replaced by
the path (made absolute, ``~`` expanded). ``???`` marks a path the user must set
(``--set name=VALUE``). ``check_inputs`` then finds, in one pass, every unset path, missing
dataset folder or split file and missing checkpoint, and raises one SweepError naming them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ..backbone.foundation import foundation_checkpoint_path
from ..data.demo import DEMO_NAMES
from .resources import PLACEHOLDER, SweepError

__all__ = ["PATH_REF", "resolve_paths", "substitute", "check_inputs"]

PATH_REF = re.compile(r"\{([A-Za-z_]\w*)\}")
#: the splits the notebook reads (the training config's defaults)
SPLITS = ("train", "test")


def resolve_paths(paths: Any, settings: dict[str, str], source: str) -> dict[str, str]:
    """{name: absolute path or PLACEHOLDER} from the file's ``paths`` and ``--set`` values."""
    paths = dict(paths or {})
    if not all(isinstance(k, str) and PATH_REF.fullmatch("{" + k + "}") for k in paths):
        raise SweepError(f"{source}: 'paths' must map names (letters, digits, _) to paths")
    unknown = [k for k in settings if k not in paths]
    if unknown:
        raise SweepError(
            f"--set {unknown[0]}=...: {source} has no path {unknown[0]!r}; its paths are "
            f"{sorted(paths)}"
        )
    out = {}
    for name, value in {**paths, **settings}.items():
        if value in (None, "", PLACEHOLDER):
            out[name] = PLACEHOLDER
        elif isinstance(value, str):
            out[name] = str(Path(value).expanduser().resolve())
        else:
            raise SweepError(f"{source}: paths.{name}={value!r} must be a path (a string)")
    return out


def substitute(value: Any, paths: dict[str, str], where: str) -> Any:
    """``value`` with every ``{name}`` replaced by its path (an unset one stays as it is)."""
    if not isinstance(value, str):
        return value

    def one(match: re.Match) -> str:
        name = match[1]
        if name not in paths:
            raise SweepError(
                f"{where}={value!r} refers to {{{name}}}, which is not under 'paths' (paths: "
                f"{sorted(paths)})"
            )
        return match[0] if paths[name] == PLACEHOLDER else paths[name]

    return PATH_REF.sub(one, value)


def check_inputs(name: str, runs: list[dict[str, Any]], paths: dict[str, str]) -> None:
    """Raise one SweepError listing every unset path, missing dataset and missing checkpoint.

    Run before anything starts; the notebook checks the same again in each run.
    """
    problems: list[str] = []
    unset = sorted(k for k, v in paths.items() if v == PLACEHOLDER)
    used = {m for run in runs for v in run.values() if isinstance(v, str)
            for m in PATH_REF.findall(v)}  # fmt: skip
    for key in unset:
        if key in used:
            problems.append(
                f"paths.{key} is not set ({PLACEHOLDER!r}): pass --set {key}=/path/to/it"
            )
    for root in dict.fromkeys(str(run["dataset"]) for run in runs):
        if PATH_REF.search(root):
            continue  # reported as an unset path
        if root.startswith("demo:"):
            if root.split(":", 1)[1] not in DEMO_NAMES:
                problems.append(
                    f"dataset {root!r} is not a demo set; expected one of "
                    f"{[f'demo:{n}' for n in DEMO_NAMES]} or a dataset folder"
                )
            continue
        folder = Path(root)
        if not folder.is_dir():
            problems.append(
                f"dataset {root!r} does not exist (prepare it with data_scripts/prepare_*.py, "
                f"or fix the grid's paths)"
            )
            continue
        missing = [s for s in SPLITS if not (folder / "splits" / f"{s}.txt").is_file()]
        if missing:
            problems.append(
                f"dataset {root!r} has no splits/{missing[0]}.txt (the notebook trains on "
                f"'train' and scores 'test'); is it a prepared dataset folder?"
            )
    pairs = {(str(r["checkpoint"]), str(r["model_type"])) for r in runs}
    for checkpoint, model_type in sorted(pairs):
        if PATH_REF.search(checkpoint) or checkpoint == "random":
            continue
        if checkpoint == "foundation":
            if model_type == "tiny" and not foundation_checkpoint_path().is_file():
                problems.append(
                    f"checkpoint 'foundation': the tiny foundation model is missing at "
                    f"{foundation_checkpoint_path()}"
                )
        elif not Path(checkpoint).is_file():
            problems.append(f"checkpoint {checkpoint!r} ({model_type}) is not a file")
    if problems:
        raise SweepError(f"sweep {name!r} cannot start:\n  - " + "\n  - ".join(problems))
