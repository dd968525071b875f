"""Draw docs/img/architecture.png from the code: harness's subpackages as layers, their modules inside, and the
imports between subpackages as arrows.

The picture is made from the imports the code has (``ast``, every import anywhere in a module), so it cannot
drift from the code: rerun it after moving a module.

    python scripts/architecture_picture.py [--out docs/img/architecture.png]
"""

from __future__ import annotations

import argparse
import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: Rows of the picture, top to bottom: who may import whom runs downwards (tests/test_structure.py holds it).
ROWS: list[list[str]] = [["cli"], ["run", "report"], ["measure", "show"], ["testing", "store"], ["inputs"], ["core"],
                         ["base"]]
#: One line per subpackage: what it is for.
ROLE: dict[str, str] = {
    "cli": "the attnbench command",
    "run": "config, launch, sweep loop, isolation",
    "report": "tables, plots, compare (no torch)",
    "measure": "timing, memory, contention, ceilings",
    "show": "pictures: mask, float64 weights, error maps",
    "testing": "the conformance kit",
    "store": "columns, records, the reader",
    "inputs": "seeded q, k, v",
    "core": "case, pattern, variant, registry, float64 baseline",
    "base": "atomic files, process checks",
}


def _package_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "harness" or len(parts) < 2:
        return None
    return parts[1] if parts[1] != "__main__" else None


def _modules() -> dict[str, list[str]]:
    """Subpackage -> its module names (``testing`` is the one top-level module drawn as a box)."""
    out: dict[str, list[str]] = defaultdict(list)
    for path in sorted((ROOT / "harness").rglob("*.py")):
        parts = path.relative_to(ROOT / "harness").with_suffix("").parts
        if len(parts) == 1 and parts[0] == "testing":
            out["testing"].append("testing")
        elif len(parts) == 2 and parts[1] != "__init__":
            out[parts[0]].append(parts[1])
        elif len(parts) == 3 and parts[2] != "__init__":
            out[parts[0]].append(f"{parts[1]}/{parts[2]}")
    return out


def _imports() -> set[tuple[str, str]]:
    """(importing subpackage, imported subpackage) pairs found anywhere in the code."""
    edges = set()
    for path in sorted((ROOT / "harness").rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        src = _package_of(".".join(parts))
        if src is None:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0
                     else [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            for name in names:
                dst = _package_of(name)
                if dst and dst != src:
                    edges.add((src, dst))
    return edges


def draw(out: Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    mods, edges = _modules(), _imports()
    uses: dict[str, list[str]] = defaultdict(list)
    for src, dst in sorted(edges):
        uses[src].append(dst)
    order = [p for row in ROWS for p in row]
    height = 1.6 + 1.6 * len(ROWS)
    fig = Figure(figsize=(12, height))
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, 12)
    ax.set_ylim(0, height)
    ax.axis("off")
    left, right, gap = 0.9, 11.8, 0.25
    for r, row in enumerate(ROWS):
        width = (right - left - gap * (len(row) - 1)) / len(row)
        y = height - 0.75 - (r + 1) * 1.6
        for c, pkg in enumerate(row):
            x = left + c * (width + gap)
            ax.add_patch(FancyBboxPatch((x, y), width, 1.4, boxstyle="round,pad=0.02", fc="#eef3fa",
                                        ec="#3b6ea5", lw=1.4))
            title = "harness/testing.py" if pkg == "testing" else f"harness/{pkg}/"
            ax.text(x + 0.12, y + 1.18, title, fontsize=12, weight="bold", va="center", color="#1d3c63")
            ax.text(x + 0.12, y + 0.93, ROLE.get(pkg, ""), fontsize=9.5, va="center", color="#444444",
                    style="italic")
            names = ", ".join(m for m in mods.get(pkg, []) if m != "testing")
            if names:
                ax.text(x + 0.12, y + 0.52, _wrap(names, width), fontsize=8.5, va="center", color="#222222",
                        family="monospace")
            below = sorted(uses.get(pkg, []), key=order.index)
            if below:
                bad = [d for d in below if order.index(d) < order.index(pkg)]
                ax.text(x + 0.12, y + 0.11, "imports " + ", ".join(below), fontsize=8, va="center",
                        color="#c0392b" if bad else "#2e7d32")
    ax.add_patch(FancyArrowPatch((0.45, height - 1.0), (0.45, 1.0), arrowstyle="-|>", mutation_scale=18,
                                 color="#7f8c8d", lw=2))
    ax.text(0.3, height / 2, "imports run downwards", rotation=90, fontsize=10, va="center", ha="center",
            color="#555555")
    ax.text(left, height - 0.4, "attnbench: harness's subpackages, a layer each", fontsize=14, weight="bold",
            color="#1d3c63")
    ax.text(left, 0.35, "variants/ (the built-ins) and plugins import only the names harness exports; harness imports "
            "no variant.\nDrawn from the code's imports by scripts/architecture_picture.py; tests/test_structure.py "
            "holds the layering.", fontsize=9, color="#444444", va="center")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    return out


def _wrap(text: str, width: float) -> str:
    per_line = max(20, int(width * 12.8))
    lines, line = [], ""
    for word in text.split(" "):
        if len(line) + len(word) + 1 > per_line:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    lines.append(line)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img" / "architecture.png")
    print(draw(parser.parse_args().out))


if __name__ == "__main__":
    main()
