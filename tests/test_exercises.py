"""Every exercise solution of every notebook runs and checks its answer (so none can rot).

The solutions live in cobot_lib/notebook/exercises/ (one module per notebook); each asserts its
answer against an independent route (a closed form, scipy, autograd, the stored CSV read with
pandas) and returns it as a sentence. tests/test_notebook_outputs.py checks that every notebook
lists as many exercises as its module has solutions.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cobot_lib.notebook.exercises import module_for, solutions

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parents[1]
STEMS = sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9A-Z][0-9]_*.ipynb"))
CASES = [(stem, fn.__name__) for stem in STEMS for fn in solutions(stem)]


@pytest.mark.parametrize(("stem", "name"), CASES, ids=[f"{s}-{n}" for s, n in CASES])
def test_solution_runs_and_answers(stem, name):
    answer = getattr(module_for(stem), name)()
    assert isinstance(answer, str) and answer.strip()


def test_every_notebook_has_two_to_four_solutions():
    assert {stem: 2 <= len(solutions(stem)) <= 4 for stem in STEMS} == dict.fromkeys(STEMS, True)
