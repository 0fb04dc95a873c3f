"""Worked solutions of the notebooks' exercises, one module per notebook, run by the tests.

Notebook ``NN_name.ipynb`` (or the appendix ``A1_name.ipynb``) ends with an "Exercises" section
of 2-4 numbered exercises; ``exercises/name.py`` holds ``exercise_1`` ... ``exercise_n``, one
per exercise in the same order. Each solution computes the answer, checks it against an
independent route (a closed form, a second library, autograd) with ``assert`` and returns the
answer as one sentence. tests/test_exercises.py runs every solution and checks that the
notebooks' numbered lists and these functions agree, so an exercise never rots.

    from cobot_lib.notebook.exercises import solutions
    for exercise in solutions("01_t_product"):
        print(exercise())
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType

__all__ = ["module_for", "solutions"]


def module_for(notebook: str) -> ModuleType:
    """The solutions module of a notebook stem ('01_t_product' -> exercises.t_product)."""
    name = notebook.split("_", 1)[1] if "_" in notebook else notebook
    return importlib.import_module(f"{__name__}.{name}")


def solutions(notebook: str) -> list[Callable[[], str]]:
    """exercise_1, exercise_2, ... of a notebook, in order."""
    module = module_for(notebook)
    found, n = [], 1
    while hasattr(module, f"exercise_{n}"):
        found.append(getattr(module, f"exercise_{n}"))
        n += 1
    return found
