"""The package's import graph: the layering of harness's subpackages, no cycles, and no module imports another
module's ``_private`` names."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("harness", "variants")
#: Private names still imported across modules. Nothing may be added.
KNOWN: set[tuple[str, str, str]] = set()

#: Which subpackage of harness may import which (besides itself). The order is the layering, lowest first; the
#: top-level modules (``harness``, ``harness.testing``, ``harness.__main__``) sit above ``measure`` and beside
#: ``run``. ``report`` reads ``core`` only for the names in ``core.names`` (torch-free); it reaches ``show`` only
#: through the ``attnbench show`` command in a child process.
LAYERS: dict[str, set[str]] = {
    "base": set(),
    "core": {"base"},
    "inputs": {"core", "base"},
    "measure": {"core", "inputs", "base"},
    "store": {"core", "base"},
    "report": {"store", "base", "core.names"},
    "testing": {"core", "inputs", "base"},
    "run": {"core", "inputs", "measure", "store", "base"},
    "show": {"core", "inputs", "base"},
    "cli": {"run", "report", "store", "measure", "inputs", "core", "base", "testing", "show"},
}


def _modules() -> dict[str, ast.Module]:
    out = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
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
        # a submodule importing a package's __init__ (``from harness.core import varlen``, or ``harness``'s lazy
        # names) is an edge to the package's face, not a cycle through modules
        for pkg in list(edges[name]):
            if name.startswith(pkg + "."):
                edges[name].discard(pkg)
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


def _layer(module: str) -> str | None:
    """The layer of a harness module: its subpackage (``harness.core.case`` -> ``core``), or ``testing``."""
    parts = module.split(".")
    if parts[0] != "harness" or len(parts) < 2 or parts[1] in ("__main__",):
        return None
    return parts[1]


def _layer_violations(edges: dict[str, set[str]]) -> list[str]:
    out = []
    for src, targets in sorted(edges.items()):
        layer = _layer(src)
        if layer is None:
            continue
        allowed = LAYERS[layer]
        for dst in sorted(targets):
            other = _layer(dst)
            if other is None or other == layer:
                continue
            sub = ".".join(dst.split(".")[1:3])
            if other not in allowed and sub not in allowed:
                out.append(f"{src} -> {dst} ({layer} may import: {', '.join(sorted(allowed)) or 'nothing'})")
    return out


def test_every_subpackage_has_a_layer():
    names = {p.name for p in (ROOT / "harness").iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert names | {"testing"} == set(LAYERS), sorted(names ^ set(LAYERS))


def test_subpackages_import_only_the_layers_below():
    edges, _ = _graph(_modules())
    assert _layer_violations(edges) == []


def test_the_layering_check_sees_an_upward_import():
    """The check above can fail: core importing run, and report importing torch-side core, are both caught."""
    mods = {"harness.core.case": ast.parse("from harness.run.sweep import run_sweep\n"),
            "harness.run.sweep": ast.parse(""),
            "harness.report.plots": ast.parse("from harness.core.case import Case\nfrom harness.core.names import X\n"),
            "harness.core.names": ast.parse("")}
    edges, _ = _graph(mods)
    found = _layer_violations(edges)
    assert any(v.startswith("harness.core.case -> harness.run.sweep") for v in found)
    assert any(v.startswith("harness.report.plots -> harness.core.case") for v in found)
    assert not any("core.names" in v.split(" (")[0] for v in found)


def test_report_and_store_import_no_torch_at_module_level():
    """Reports run where torch is not wanted: no module of report/ or store/ imports torch outside a function."""
    for name, tree in _modules().items():
        if _layer(name) not in ("report", "store", "base"):
            continue
        for node in tree.body:
            mods = ([a.name for a in node.names] if isinstance(node, ast.Import)
                    else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(m.split(".")[0] == "torch" for m in mods), f"{name} imports torch at module level"


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

    from harness.store.records import EXTRA_COLUMNS, PUBLIC_COLUMNS

    text = (ROOT / "docs" / "sweeps.md").read_text(encoding="utf-8")
    section = text[text.index("`results.csv` columns:"):]
    section = section[:section.index("then any other column")]
    listed = [c for block in re.findall(r"`([^`]+)`", section) for c in re.split(r",\s*", block) if c]
    listed = [c for c in listed if c != "results.csv"]
    assert listed == [*PUBLIC_COLUMNS, *EXTRA_COLUMNS]


def test_the_architecture_doc_names_every_module():
    """docs/architecture.md is the map: every module of harness/ (and every benchmark) is named in it."""
    doc = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    unnamed = [str(p.relative_to(ROOT)) for p in sorted((ROOT / "harness").rglob("*.py"))
               if p.name not in ("__init__.py", "__main__.py") and p.name not in doc]
    unnamed += [str(p.relative_to(ROOT)) for p in sorted((ROOT / "benchmarks").glob("*.py"))
                if p.name not in ("__init__.py", "conftest.py") and p.name not in doc]
    assert unnamed == []
