"""workbook.py's install stamp: a later call skips the install only when pyproject.toml is the
same and every extra it needs is already installed (``run`` installs fewer extras than ``test``).
Oracle: stamps written by hand in the format setup() writes."""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _workbook(tmp_path: Path, monkeypatch):
    spec = importlib.util.spec_from_file_location("workbook_under_test", REPO / "workbook.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "python").touch()
    monkeypatch.setattr(module, "PYTHON", tmp_path / "bin" / "python")
    monkeypatch.setattr(module, "STAMP", tmp_path / "stamp")
    return module


def test_the_stamp_lists_the_installed_extras_of_this_pyproject(tmp_path, monkeypatch):
    wb = _workbook(tmp_path, monkeypatch)
    assert wb.installed_extras("abc") == set()  # no stamp: install
    wb.STAMP.write_text("abc notebooks")
    assert wb.installed_extras("abc") == {"notebooks"}
    assert not set(wb.EVERYTHING) <= wb.installed_extras("abc")  # test after run installs dev
    assert set(wb.NOTEBOOKS_ONLY) <= wb.installed_extras("abc")
    assert wb.installed_extras("def") == set()  # pyproject.toml changed: install again
    wb.STAMP.write_text("abc")  # the stamp of an older workbook.py: install again
    assert wb.installed_extras("abc") == set()


def test_an_up_to_date_environment_is_not_touched(tmp_path, monkeypatch, capsys):
    wb = _workbook(tmp_path, monkeypatch)
    digest = hashlib.sha256((REPO / "pyproject.toml").read_bytes()).hexdigest()
    wb.STAMP.write_text(f"{digest} dev,notebooks")
    monkeypatch.setattr(wb, "run", lambda *a, **k: (_ for _ in ()).throw(AssertionError(a)))
    wb.setup(wb.NOTEBOOKS_ONLY)
    wb.setup(wb.EVERYTHING)
    assert capsys.readouterr().out.count("environment is up to date") == 2
