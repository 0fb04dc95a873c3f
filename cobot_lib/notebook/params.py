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
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Param", "ParameterError", "check_params"]


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
