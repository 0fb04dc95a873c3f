"""The layers of cobot_lib (docs/ARCHITECTURE.md): imports only point down, no cycles, no private
names across modules, no function-level imports of the library."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[1] / "cobot_lib"
#: Bottom to top. A module may import from its own layer and the layers below it.
LAYERS = ("files", "machine", "algebra", "backbone", "peft", "data", "engine", "experiments",
          "notebook", "cli")  # fmt: skip
#: Top-level modules that are command-line entry points only.
CLI = {"train", "evaluate", "sweep", "walkthrough", "ablations", "predict", "export"}


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> str | None:
    """The layer of ``cobot_lib.x...``; None for the package facade ``cobot_lib`` itself."""
    parts = module.split(".")
    if len(parts) == 1:
        return None
    return "cli" if len(parts) == 2 and parts[1] in CLI else parts[1]


def resolve(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(path: Path, root: Path) -> list[tuple[str, int, str, list[str], bool]]:
    """(target module, line, source text, imported names, at module level) of every import of
    the package in ``path``."""
    module = module_name(path, root)
    tree = ast.parse(path.read_text(), str(path))
    top = {id(n) for n in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            target = resolve(node, module, path.name == "__init__.py")
            names = [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            target, names = node.names[0].name, []
        else:
            continue
        if target.split(".")[0] != root.name:
            continue
        text = ast.get_source_segment(path.read_text(), node) or ""
        found.append((target, node.lineno, text, names, id(node) in top))
    return found


def violations(root: Path = PACKAGE) -> list[str]:
    """Readable problems: upward imports, private names, function-level library imports."""
    problems = []
    for path in sorted(root.rglob("*.py")):
        module = module_name(path, root)
        own = layer_of(module)
        for target, line, text, names, at_top in imports_of(path, root):
            where = f"{path.relative_to(root.parent)}:{line} `{text}`"
            if not at_top:
                problems.append(f"{where}: a function-level import of the library")
            private = [n for n in names if n.startswith("_") and n != "__version__"]
            if private:
                problems.append(f"{where}: imports private name(s) {private} from {target}")
            theirs = layer_of(target)
            if own is None or theirs is None:
                continue
            for name in names:  # `from . import x` names a module of the target package
                sub = layer_of(f"{target}.{name}") if target == root.name else None
                theirs = sub or theirs
            if LAYERS.index(theirs) > LAYERS.index(own):
                problems.append(
                    f"{where}: layer '{own}' imports from layer '{theirs}' above it "
                    f"(order, bottom to top: {' < '.join(LAYERS)})"
                )
    return problems


def test_every_module_belongs_to_a_layer():
    for path in PACKAGE.rglob("*.py"):
        layer = layer_of(module_name(path, PACKAGE))
        assert layer is None or layer in LAYERS, f"{path}: not in a layer of {LAYERS}"


def test_imports_only_point_down():
    problems = violations()
    assert not problems, "\n".join(problems)


def test_no_import_cycles_between_modules():
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        module = module_name(path, PACKAGE)
        graph[module] = {t for t, *_ in imports_of(path, PACKAGE) if t != module}
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if nxt == PACKAGE.name or nxt not in graph:
                continue  # the package facade imports everything by design
            if state.get(nxt) == 1:
                cycle = trail[trail.index(nxt) :] + [nxt] if nxt in trail else [node, nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if state.get(nxt) is None:
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for module in sorted(graph):
        if state.get(module) is None:
            visit(module, [module])


def test_the_checker_reports_a_forbidden_import(tmp_path):
    """Shown failing once: a peft module importing from the engine is reported, readably."""
    root = tmp_path / "cobot_lib"
    for package in ("peft", "engine"):
        (root / package).mkdir(parents=True)
        (root / package / "__init__.py").write_text("")
    (root / "__init__.py").write_text("")
    (root / "engine" / "trainer.py").write_text("def fit():\n    pass\n")
    (root / "peft" / "layers.py").write_text(
        "from ..engine.trainer import fit\nfrom .config import _hidden\n\n\n"
        "def f():\n    from ..engine import trainer\n"
    )
    problems = violations(root)
    assert any("layer 'peft' imports from layer 'engine' above it" in p for p in problems)
    assert any("private name(s) ['_hidden']" in p for p in problems)
    assert any("function-level import" in p for p in problems)
    assert all("cobot_lib/peft/layers.py:" in p for p in problems), problems
