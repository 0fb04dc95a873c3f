"""The tiny foundation SAM: shipped with the repository, verified on every load, never retrained
behind the user's back.

The CPU workbook adapts a tiny SAM that ``data_scripts/pretrain_tiny_sam.py`` pretrained on
synthetic shapes (about 14 minutes on 2 cores with native bf16). Its weights ship inside the
package as safetensors with a model card (JSON: recipe, steps, seed, held-out score, SHA-256 of
the weights, torch version, CPU, the exact command), so a fresh clone runs the notebooks and
the tests at once and every machine adapts the same model.

Which file is used (``foundation_checkpoint_path``), by ``$COBOT_FOUNDATION``:
- unset or ``shipped``: the shipped file (the default);
- ``cache``: a model rebuilt by the current recipe in ``cache_dir()`` (pretrain_tiny_sam.py's
  default output); an older recipe's file there is refused, with the command that rebuilds it;
- a path: that ``.safetensors`` file, with its card beside it (``<name>.json``).

``load_foundation_model`` checks the card and the weights' SHA-256 before building the model,
so a missing, truncated or altered file is one clear error naming the file and how to rebuild.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from segment_anything.modeling import Sam

from ..files import cache_dir
from .sam import build_sam

__all__ = [
    "FOUNDATION_RECIPE",
    "SHIPPED_FOUNDATION",
    "FoundationError",
    "card_path",
    "foundation_checkpoint_path",
    "load_foundation_model",
    "read_card",
    "rebuilt_foundation_path",
    "sha256_of",
    "verify_foundation",
]

#: Bumped whenever pretrain_tiny_sam.py's default recipe changes, so a model built by an older
#: recipe is never taken for the current one. 2: Muon for linear layers; 3: safetensors + card,
#: Newton-Schulz in fp32 on the CPU by default.
FOUNDATION_RECIPE = 3
SHIPPED_FOUNDATION = Path(__file__).resolve().parent / "weights" / "tiny_sam_foundation.safetensors"
REBUILD = "python data_scripts/pretrain_tiny_sam.py"
CARD_KEYS = ("recipe", "sha256", "held_out_miou", "held_out_instances", "steps", "seed", "command")


class FoundationError(FileNotFoundError):
    """The foundation model's file or card is missing, unreadable or does not match."""


def card_path(weights: Path) -> Path:
    """The model card beside a weights file: ``x.safetensors`` -> ``x.json``."""
    return weights.with_suffix(".json")


def rebuilt_foundation_path(recipe: int = FOUNDATION_RECIPE) -> Path:
    """Where ``pretrain_tiny_sam.py`` writes a rebuilt model by default."""
    return cache_dir() / f"tiny_sam_foundation_r{recipe}.safetensors"


def foundation_checkpoint_path() -> Path:
    """The foundation model's weights file, chosen by ``$COBOT_FOUNDATION`` (module docstring)."""
    choice = os.environ.get("COBOT_FOUNDATION", "shipped").strip()
    if choice in ("", "shipped"):
        return SHIPPED_FOUNDATION
    if choice == "cache":
        path = rebuilt_foundation_path()
        if not path.is_file():
            older = sorted(cache_dir().glob("tiny_sam_foundation_r*"))
            hint = (
                f" (found {', '.join(p.name for p in older)} from an older recipe: it is not "
                f"used, recipe {FOUNDATION_RECIPE} differs)"
                if older
                else ""
            )
            raise FoundationError(
                f"COBOT_FOUNDATION=cache, but no model of recipe {FOUNDATION_RECIPE} is at "
                f"{path}{hint}; rebuild it with `{REBUILD}` or unset COBOT_FOUNDATION to use "
                "the shipped model"
            )
        return path
    return Path(choice).expanduser()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_card(weights: Path) -> dict[str, Any]:
    """The model card of ``weights`` (checked for the keys every card has)."""
    card = card_path(weights)
    if not card.is_file():
        raise FoundationError(
            f"the model card {card} of {weights} is missing; rebuild with `{REBUILD}` "
            "(it writes both files)"
        )
    try:
        data = json.loads(card.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FoundationError(f"the model card {card} is not valid JSON: {exc}") from None
    missing = [k for k in CARD_KEYS if not isinstance(data, dict) or k not in data]
    if missing:
        raise FoundationError(f"the model card {card} lacks {missing}; rebuild with `{REBUILD}`")
    return data


def verify_foundation(weights: Path | None = None) -> dict[str, Any]:
    """Check that ``weights`` exists, is of the current recipe and matches its card's SHA-256.

    Returns the card. Raises FoundationError naming the file and how to rebuild it.
    """
    weights = Path(weights) if weights is not None else foundation_checkpoint_path()
    if not weights.is_file():
        raise FoundationError(
            f"the tiny foundation model is missing at {weights}; restore the shipped file "
            f"(`git checkout -- {weights.name}` in a clone) or rebuild it with `{REBUILD}`"
        )
    card = read_card(weights)
    if card["recipe"] != FOUNDATION_RECIPE:
        raise FoundationError(
            f"{weights} was built by recipe {card['recipe']}, this code expects recipe "
            f"{FOUNDATION_RECIPE}; rebuild it with `{REBUILD}`"
        )
    actual = sha256_of(weights)
    if actual != card["sha256"]:
        raise FoundationError(
            f"{weights} does not match its card {card_path(weights).name} (SHA-256 {actual[:12]}… "
            f"instead of {card['sha256'][:12]}…): the file is truncated or altered; restore it "
            f"or rebuild it with `{REBUILD}`"
        )
    return card


def load_foundation_model() -> Sam:
    """The verified tiny foundation SAM (the frozen starting point of every CPU experiment)."""
    path = foundation_checkpoint_path()
    verify_foundation(path)
    return build_sam("tiny", path)
