"""The package's import graph: no cycles, and no module imports another module's ``_private`` names."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("harness", "variants")
#: Private names still imported across modules, each with the issue item that removes it. Nothing may be added.
KNOWN = {("harness.compare", "harness.results_io", "_read_runs"),  # issue 18.2, the reports side
         ("harness.report", "harness.results_io", "_read_runs")}


def _modules() -> dict[str, ast.Module]:
    out = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).glob("*.py")):
            name = pkg if path.stem == "__init__" else f"{pkg}.{path.stem}"
            out[name] = ast.parse(path.read_text(encoding="utf-8"))
    return out


def _graph(mods: dict[str, ast.Module]) -> tuple[dict[str, set[str]], set[tuple[str, str, str]]]:
    """Module -> modules it imports (anywhere in its body), and (importer, module, name) for private names."""
    edges: dict[str, set[str]] = {m: set() for m in mods}
    private: set[tuple[str, str, str]] = set()
    for name, tree in mods.items():
        aliases: dict[str, str] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                if node.module in mods:
                    edges[name].add(node.module)
                for a in node.names:
                    full = f"{node.module}.{a.name}"
                    if full in mods:
                        edges[name].add(full)
                        aliases[a.asname or a.name] = full
                    elif node.module in mods and a.name.startswith("_") and not a.name.startswith("__"):
                        private.add((name, node.module, a.name))
            elif isinstance(node, ast.Import):
                for a in node.names:
                    if a.name in mods:
                        edges[name].add(a.name)
                        aliases[a.asname or a.name] = a.name
        for node in ast.walk(tree):  # module._name through an imported module
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                    and node.attr.startswith("_") and not node.attr.startswith("__")):
                private.add((name, aliases[node.value.id], node.attr))
        edges[name].discard(name)
        # a submodule importing its package's __init__ for a name defined there is not a cycle through modules
        edges[name].discard(name.split(".")[0])
    return edges, private


def _cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (as a path), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(edges.get(m, ())):
            if state.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if n not in state:
                found = visit(n)
                if found:
                    return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(edges):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


def test_no_import_cycles():
    edges, _ = _graph(_modules())
    assert _cycle(edges) is None, " -> ".join(_cycle(edges) or [])


def test_no_private_names_across_modules():
    _, private = _graph(_modules())
    assert private <= KNOWN, sorted(private - KNOWN)


def test_no_private_hydra_and_no_argv_swapping():
    """Hydra through its public API only (issue 18.6): no ``hydra._internal``, no assignment to ``sys.argv``."""
    for name, tree in _modules().items():
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not node.module.startswith("hydra._internal"), f"{name} imports {node.module}"
            if isinstance(node, ast.Import):
                assert not any(a.name.startswith("hydra._internal") for a in node.names), name
            if isinstance(node, ast.Assign):
                for t in node.targets:
                    assert not (isinstance(t, ast.Attribute) and t.attr == "argv"), f"{name} assigns sys.argv"


def test_the_checker_sees_a_cycle_and_a_private_import():
    """The two checks above can fail: a planted cycle and a planted private import are found."""
    mods = {"harness.a": ast.parse("from harness.b import _x\n"), "harness.b": ast.parse("import harness.a\n")}
    edges, private = _graph(mods)
    assert _cycle(edges) in (["harness.a", "harness.b", "harness.a"], ["harness.b", "harness.a", "harness.b"])
    assert private == {("harness.a", "harness.b", "_x")}


def test_docs_list_every_column_in_order():
    """docs/sweeps.md's column list is the store's: public columns, then the fixed extras, in order."""
    import re

    from harness.store import EXTRA_COLUMNS, PUBLIC_COLUMNS

    text = (ROOT / "docs" / "sweeps.md").read_text(encoding="utf-8")
    section = text[text.index("`results.csv` columns:"):]
    section = section[:section.index("then any other column")]
    listed = [c for block in re.findall(r"`([^`]+)`", section) for c in re.split(r",\s*", block) if c]
    listed = [c for c in listed if c != "results.csv"]
    assert listed == [*PUBLIC_COLUMNS, *EXTRA_COLUMNS]
