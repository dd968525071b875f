"""Text the command line prints: aligned tables whose columns never run together, and ``attnbench sweep --help``.

Imports neither torch nor Hydra, so ``attnbench sweep --help`` answers at once: the keys come from the schema
(:func:`harness.run.config.schema_keys`), the values a plain ``attnbench sweep`` uses from the default preset read as
YAML (:mod:`configs`).
"""

from __future__ import annotations

import shutil
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["GAP", "PlainSweep", "fmt_value", "plain_sweep_values", "sweep_help", "table"]

#: Spaces between two columns.
GAP = 2


def table(rows: Sequence[Sequence[str]], widths: Sequence[int], total: int | None = None, indent: int = 2) -> str:
    """Rows as aligned columns; the last column wraps to ``total`` characters with a hanging indent.

    A cell wider than its column never runs into the next one: the rest of that row continues on a new line,
    aligned at its column.

    Args:
        rows: the cells of each row (all but the last fit ``widths``, or overflow as said).
        widths: the width of every column but the last.
        total: line width (default: the terminal's, at least 80).
        indent: spaces before the first column.

    Returns:
        The lines, newline-terminated.
    """
    total = total or max(80, shutil.get_terminal_size((100, 24)).columns)
    starts = [indent]
    for w in widths:
        starts.append(starts[-1] + w + GAP)
    out: list[str] = []
    for row in rows:
        line = ""
        for i, cell in enumerate(row):
            start = starts[i]
            last = i == len(row) - 1
            if len(line) > start - (GAP if i else 0):  # the previous cell overflowed: continue below
                out.append(line.rstrip())
                line = ""
            line = line.ljust(start)
            if last and i == len(widths):
                room = max(20, total - start)
                wrapped = textwrap.wrap(cell, room) or [""]
                line += wrapped[0]
                for more in wrapped[1:]:
                    out.append(line.rstrip())
                    line = " " * start + more
            else:
                line += cell
        out.append(line.rstrip())
    return "\n".join(out) + "\n"


def fmt_value(value: Any) -> str:
    """A config value as a user types it: lists as ``[a, b]``, the timestamp default as words."""
    if isinstance(value, list | tuple):
        return "[" + ", ".join(fmt_value(v) for v in value) + "]"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        if value.startswith("${now:"):
            return "a timestamp"
        return value if value else "''"
    return str(value)


@dataclass
class PlainSweep:
    """What a plain ``attnbench sweep`` uses.

    Args:
        preset: the default preset's name.
        values: the schema's defaults with that preset applied.
        changed: the keys the preset sets (to their values).
        grid: its ``hydra.sweeper.params`` (one Hydra job per value).
    """

    preset: str
    values: dict[str, Any]
    changed: dict[str, Any] = field(default_factory=dict)
    grid: dict[str, Any] = field(default_factory=dict)


def plain_sweep_values() -> PlainSweep:
    """What a plain ``attnbench sweep`` uses: the schema's defaults and the default preset (read as YAML)."""
    import configs
    from harness.run.config import schema_keys

    plain = PlainSweep(preset=configs.default_preset(), values={key: default for key, _, default, _ in schema_keys()})
    if plain.preset != "none":
        keys, plain.grid = configs.preset_values(plain.preset)
        plain.changed = {k: v for k, v in keys.items() if k in plain.values}
        plain.values.update(plain.changed)
    return plain


def sweep_help(total: int | None = None) -> str:
    """Help of ``attnbench sweep``: usage, every key with its type and the value a plain sweep uses, the presets.

    Args:
        total: line width (default: the terminal's).

    Returns:
        The text.
    """
    import configs
    from harness.run.config import schema_keys

    plain = plain_sweep_values()
    preset, values, changed, grid = plain.preset, plain.values, plain.changed, plain.grid
    lines = [
        "usage: attnbench sweep [-m] [KEY=VALUE ...] [hydra flags]",
        "",
        "Measure the selected variants on every case of the grid; one record per (case, variant, mode) under",
        "RESULTS_DIR/RUN_NAME (printed at the end). Running again with the same run_name resumes the run.",
        "",
        "Axis keys take one value or several: `seq_len=[512,1024]` or `seq_len=512,1024` expands into cases",
        "inside one job; with -m (Hydra multirun) each comma list is a grid of Hydra jobs instead. A preset",
        "that carries a hydra.sweeper.params grid, or a sweep on a non-axis key, implies -m.",
        "",
        f"keys, with the values a plain `attnbench sweep` uses: the {preset} preset applied to the schema's",
        "defaults (* = set by the preset):",
        "",
    ]
    rows = [("KEY", "TYPE", "VALUE", "MEANING")]
    for key, typ, _, text in schema_keys():
        shown = fmt_value(values[key]) + (" *" if key in changed else "")
        if key in grid:
            shown = f"{fmt_value(grid[key])} * (one job each)"
        rows.append((key, typ, shown, text))
    for key, value in grid.items():
        if key not in values:
            rows.append((key, "", f"{fmt_value(value)} * (one job each)", ""))
    widths = [max(len(r[0]) for r in rows), max(len(r[1]) for r in rows), min(26, max(len(r[2]) for r in rows))]
    lines.append(table(rows, widths, total).rstrip("\n"))
    lines += ["", f"presets (preset=NAME; default {preset}; `preset=none` keeps the schema's defaults):", ""]
    prow = [(name + (" (default)" if name == preset else ""), configs.preset_description(name))
            for name in configs.presets()]
    lines.append(table(prow, [max(len(r[0]) for r in prow)], total).rstrip("\n"))
    lines += [
        "",
        "examples:",
        f"  attnbench sweep                                   # the {preset} preset",
        "  attnbench sweep variants=[full,sdpa*] seq_len=[1024,4096] pattern=causal",
        "  attnbench sweep -m seq_len=512,1024,2048 heads=4,8 device=cpu,cuda",
        "  attnbench sweep preset=long_context run_name=lc1  # rerun the same line to resume",
        "",
        "Hydra's own flags (--cfg job, --info, --hydra-help, hydra/launcher=joblib, ...) are passed through.",
    ]
    return "\n".join(lines) + "\n"
