"""The checks a notebook asserts about its results, with messages that say which key failed.

A bare ``assert FINAL == ZERO, (FINAL, ZERO)`` prints two dicts and leaves the reader to find
the difference; these name it:

    check_same(FINAL, ZERO, "scores without a training step", ("final", "zero-shot"))
    check_gain(FINAL, ZERO, keys=("miou", "mdsc"))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..peft import differing_keys

__all__ = ["check_same", "check_gain"]


def check_same(
    got: Mapping[str, Any], expected: Mapping[str, Any], what: str, names: tuple[str, str]
) -> None:
    """AssertionError naming every key whose value differs (nested keys dotted)."""
    if dict(got) != dict(expected):
        raise AssertionError(f"{what} differ: {differing_keys(got, expected, names)}")


def check_gain(
    final: Mapping[str, float],
    baseline: Mapping[str, float],
    keys: Sequence[str] = ("miou", "mdsc"),
    names: tuple[str, str] = ("adapted", "zero-shot"),
) -> None:
    """AssertionError naming each of ``keys`` where ``final`` is not above ``baseline``."""
    missing = [k for k in keys if k not in final or k not in baseline]
    if missing:
        raise AssertionError(f"scores lack {missing} (have {sorted(final)} and {sorted(baseline)})")
    worse = [
        f"{k}: {final[k]:.4f} ({names[0]}) <= {baseline[k]:.4f} ({names[1]})"
        for k in keys
        if not final[k] > baseline[k]
    ]
    if worse:
        raise AssertionError(f"{names[0]} does not beat {names[1]} on: " + "; ".join(worse))
