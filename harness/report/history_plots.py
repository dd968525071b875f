"""A figure per stepped case of a history: each variant's time (and memory, where it stepped) over the runs, with the
machine yardstick under it, the steps marked.

Values are drawn relative to the series' first level (the median of its runs before its first step), so variants
of very different speeds share one axis and a 10% step reads as 110%. A step is a vertical line between its two
runs: solid dark red when put down to the code (or with no yardstick to tell), dashed grey when the machine's;
stepped series carry their fitted levels as thin lines.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from harness.report.draw.canvas import blank_figure, figure_svg, save_figure
from harness.report.draw.style import Style
from harness.report.history import METRICS, YARDSTICK, History, HistoryStep
from harness.report.rows import variant_order
from harness.store.columns import CASE_KEY

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["CAUSE_COLORS", "figure_name", "step_figure", "step_figure_svgs", "stepped_cases", "write_step_figures"]

#: Colour of a step's line by cause.
CAUSE_COLORS = {"code": "#B2182B", "no yardstick": "#B2182B", "machine": "#7f7f7f"}
_PANEL_H = 2.5
_MAX_TICKS = 40


def stepped_cases(hist: History) -> list[str]:
    """The case keys with at least one step, in the order of their first step."""
    return list(dict.fromkeys(s.case_key for s in hist.steps))


def figure_name(hist: History, case_key: str) -> str:
    """A file name for a stepped case's figure: ``step_01_cpu_float32_B1_H8_N1024_D64_causal_fwd``."""
    i = stepped_cases(hist).index(case_key) + 1
    text = str(hist.series.loc[hist.series[CASE_KEY] == case_key, "case"].iloc[0])
    slug = re.sub(r"[^A-Za-z0-9.]+", "_", text).strip("_")[:80]
    return f"step_{i:02d}_{slug}"


def _first_level(values: pd.Series, steps: list[HistoryStep]) -> float:
    """The series' level before its first step (the median of all its values when it never stepped)."""
    if steps:
        return steps[0].before
    vals = values.dropna()
    return float(vals.median()) if len(vals) else float("nan")


def _mark_steps(ax: Axes, steps: list[HistoryStep], label: bool) -> None:
    """A vertical line between the two runs of each step, one per run and cause; on top (when ``label``) the
    variants that stepped there and by how much, or the machine's step."""
    groups: dict[tuple[int, str], list[HistoryStep]] = {}
    for s in steps:
        groups.setdefault((s.position, s.cause), []).append(s)
    for (pos, cause), group in groups.items():
        x = pos - 0.5
        color = CAUSE_COLORS[cause]
        ax.axvline(x, color=color, ls="--" if cause == "machine" else "-", lw=1.3, zorder=1)
        if not label:
            continue
        if cause == "machine":
            text = f"machine\n(yardstick {100 * (float(np.median([s.yardstick_ratio for s in group])) - 1):+.1f}%)"
        else:
            text = "\n".join(f"{s.variant} {100 * (s.ratio - 1):+.1f}%" for s in group) + f"\n({cause})"
        ax.annotate(text, (x, 1.0), xycoords=("data", "axes fraction"), xytext=(3, -3), textcoords="offset points",
                    ha="left", va="top", fontsize=7.5, color=color,
                    bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "none", "alpha": 0.85}, zorder=4)


def _draw_metric(ax: Axes, sub: pd.DataFrame, col: str, steps: list[HistoryStep], styles: dict[str, Style]) -> None:
    """Each variant's values of ``col`` over the runs, relative to its first level, with fitted levels."""
    for v in variant_order(sub["variant"]):
        s = sub[(sub["variant"] == v) & sub[col].notna()]
        if s.empty:
            continue
        own = [x for x in steps if x.variant == v]
        level = _first_level(s[col], own)
        st = styles.get(v, Style(color="#333333", marker="o"))
        ax.plot(s["position"], s[col] / level, color=st.color, marker=st.marker, ms=4, lw=1.0, ls=st.linestyle,
                label=v, zorder=3)
        bounds = [int(s["position"].min()), *[x.position for x in own], int(s["position"].max()) + 1]
        levels = [own[0].before, *[x.after for x in own]] if own else []
        for lo, hi, lev in zip(bounds[:-1], bounds[1:], levels):
            ax.hlines(lev / level, lo - 0.4, hi - 0.6, color=st.color, lw=2.2, alpha=0.45, zorder=2)
    ax.yaxis.set_major_formatter(_percent_formatter())
    ax.grid(axis="y", color="0.9", lw=0.6)


def _percent_formatter():
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda y, _pos: f"{100 * y:.0f}%")


def _draw_yardstick(ax: Axes, sub: pd.DataFrame, steps: list[HistoryStep]) -> None:
    """The machine yardstick of the case (the median over its variants per run), relative to its first runs."""
    y = sub.groupby("position")[YARDSTICK].median().dropna()
    machine = [s for s in steps if s.cause == "machine"]
    first = y[y.index < machine[0].position] if machine else y
    ax.plot(y.index, y / float((first if len(first) else y).median()), color="black", marker=".", lw=1.0)
    ax.set_ylabel("machine yardstick\n/ its first level", fontsize=8.5)
    ax.yaxis.set_major_formatter(_percent_formatter())
    ax.grid(axis="y", color="0.9", lw=0.6)


def _run_ticks(ax: Axes, hist: History) -> None:
    names = [r.name for r in hist.runs]
    every = max(1, int(np.ceil(len(names) / _MAX_TICKS)))
    ticks = list(range(0, len(names), every))
    ax.set_xticks(ticks, [names[i] for i in ticks], rotation=90, fontsize=7)
    ax.set_xlim(-0.7, len(names) - 0.3)
    ax.set_xlabel("run (in time order)", fontsize=8.5)


def step_figure(hist: History, case_key: str, styles: dict[str, Style]) -> Figure:
    """The figure of one case: time (always), memory (when it stepped) and the yardstick (when recorded).

    Args:
        hist: the history.
        case_key: the case (one of :func:`stepped_cases`, or any case of the history).
        styles: each variant's look (:func:`harness.report.draw.style.variant_styles`).

    Returns:
        A matplotlib figure on its own canvas.
    """
    sub = hist.series[hist.series[CASE_KEY] == case_key]
    steps = [s for s in hist.steps if s.case_key == case_key]
    metrics = [m for m in METRICS if m == "time" or any(s.metric == m for s in steps)]
    yard = bool(sub[YARDSTICK].notna().any())
    n = len(metrics) + yard
    fig, axes = blank_figure(max(7.5, 0.2 * len(hist.runs) + 4.5), _PANEL_H * n + 1.6, n, 1, sharex="col")
    axes = axes.ravel()
    for ax, metric in zip(axes, metrics):
        col, _, what = METRICS[metric]
        mine = [s for s in steps if s.metric == metric]
        _draw_metric(ax, sub, col, mine, styles)
        _mark_steps(ax, mine, label=True)
        lo, hi = ax.get_ylim()
        ax.set_ylim(lo, hi + 0.25 * (hi - lo))  # room for the steps' labels above the data
        ax.set_ylabel(f"{what}\n/ its first level", fontsize=8.5)
    if yard:
        _draw_yardstick(axes[-1], sub, steps)
        _mark_steps(axes[-1], [s for s in steps if s.cause == "machine"], label=False)
    _run_ticks(axes[-1], hist)
    axes[0].legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False, title="variant",
                   title_fontsize=8.5)
    fig.suptitle(str(sub["case"].iloc[0]), fontsize=10)
    return fig


def write_step_figures(hist: History, out_dir: str | Path, styles: dict[str, Style],
                       formats: tuple[str, ...] = ("png",)) -> dict[str, list[Path]]:
    """Draw and write the figure of every stepped case into ``out_dir``.

    Returns:
        case key -> the files written (named by :func:`figure_name`).
    """
    out = {}
    for key in stepped_cases(hist):
        fig = step_figure(hist, key, styles)
        out[key] = save_figure(fig, out_dir, figure_name(hist, key), formats)
        fig.clear()
    return out


def step_figure_svgs(hist: History, styles: dict[str, Style]) -> dict[str, str]:
    """The figure of every stepped case as SVG text (:func:`harness.report.draw.canvas.figure_svg`), for
    report.html."""
    out = {}
    for key in stepped_cases(hist):
        fig = step_figure(hist, key, styles)
        out[key] = figure_svg(fig)
        fig.clear()
    return out
