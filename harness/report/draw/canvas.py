"""The figure around the panels: a grid of panels on an Agg canvas, the legend (only what is drawn), the footnote
(variants with rows but nothing drawn, named once, with their statuses) and saving the image files (or SVG text).
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from harness.report.draw.style import STATUS_ORDER, Style, status_label, status_marker
from harness.report.rows import variant_order

if TYPE_CHECKING:  # matplotlib is imported where a figure is drawn: report.md's tables need none of it
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

__all__ = ["blank_figure", "draw_footnote", "draw_legend", "figure_svg", "new_figure", "panel_grid", "save_figure"]

#: Most panels side by side in a figure's row.
_MAX_COLS = 3
_PANEL_W, _PANEL_H = 4.8, 3.5
#: Constrained layout's padding in the report's panel figures (inches and figure fractions): tight, so many small
#: panels fit.
_PANEL_PADS = {"h_pad": 0.08, "w_pad": 0.06, "hspace": 0.06, "wspace": 0.04}
_FORMATS = ("png",)


def panel_grid(n: int, ncols_max: int = _MAX_COLS) -> tuple[int, int]:
    """``(rows, columns)`` of a grid for ``n`` panels: at most ``ncols_max`` side by side, 2 x 2 for four."""
    ncols = 2 if n == 4 and ncols_max >= 2 else max(1, min(ncols_max, n))  # 2 x 2, not 3 + 1
    return math.ceil(n / ncols), ncols


def blank_figure(width: float, height: float, nrows: int, ncols: int, *, sharex: bool | str = False,
                 pads: dict[str, float] | None = None) -> tuple[Figure, np.ndarray]:
    """A ``width`` x ``height`` inch figure with constrained layout on its own Agg canvas (no pyplot state, so
    figures drawn in parallel or in a library share nothing) and a grid of axes.

    Args:
        width / height: the figure's size in inches.
        nrows / ncols: the grid of axes.
        sharex: as matplotlib's ``subplots`` (``"col"``: one x axis per column).
        pads: constrained layout's ``h_pad``, ``w_pad``, ``hspace``, ``wspace`` (None: matplotlib's defaults).

    Returns:
        ``(figure, axes)``, the axes as a ``nrows x ncols`` array.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    if pads is not None:
        fig.get_layout_engine().set(**pads)
    return fig, fig.subplots(nrows, ncols, squeeze=False, sharex=sharex)


def new_figure(nrows: int, ncols: int, w: float = _PANEL_W, h: float = _PANEL_H) -> tuple[Figure, np.ndarray]:
    """A figure of ``nrows`` x ``ncols`` panels of ``w`` x ``h`` inches, with room at the right for the legend and
    under the panels for the footnote; the axes flat, row by row."""
    fig, axes = blank_figure(w * ncols + 2.2, h * nrows + 0.9, nrows, ncols, pads=_PANEL_PADS)
    return fig, axes.ravel()


def draw_legend(fig: Figure, styles: dict[str, Style], drawn: list[str], failed: set[str], contended: bool,
                extra: list[tuple[Line2D, str]] = ()) -> None:
    """The figure's legend: the variants drawn (colour, marker, line style), the guide lines, what a hollow
    marker means (only when one is drawn), and the failure markers drawn."""
    from matplotlib.lines import Line2D

    handles, labels = [], []
    for v in variant_order(drawn):
        st = styles[v]
        handles.append(Line2D([], [], color=st.color, marker=st.marker, ls=st.linestyle,
                              lw=2.6 if st.baseline else 1.6, markersize=6, markeredgecolor=st.edge,
                              markeredgewidth=0.7))
        labels.append(st.label)
    for h, lab in extra:
        handles.append(h)
        labels.append(lab)
    if contended:
        handles.append(Line2D([], [], linestyle="none", marker="o", markersize=7, markerfacecolor="white",
                              markeredgecolor="0.3", markeredgewidth=1.4))
        labels.append("hollow: contended\n(timed while other work\ntook the cores)")
    shown = [s for s in STATUS_ORDER if s in failed] + sorted(s for s in failed if s not in STATUS_ORDER)
    if shown:
        handles.append(Line2D([], [], linestyle="none"))
        labels.append("failed (under the data):")
    for s in shown:
        handles.append(Line2D([], [], linestyle="none", marker=status_marker(s), markersize=8,
                              markerfacecolor="0.65", markeredgecolor="black"))
        labels.append(status_label(s))
    fig.legend(handles, labels, loc="outside right center", fontsize=9, frameon=False, title="variant",
               title_fontsize=9)


def draw_footnote(fig: Figure, frame: pd.DataFrame, drawn: set[str], what: str = "nothing to draw",
                  note: str = "") -> None:
    """One line under the figure naming the variants with rows but no drawn value, and why (their statuses)."""
    missing = [v for v in variant_order(frame["variant"]) if v not in drawn]
    text = note
    if missing:
        parts = []
        for v in missing:
            counts = frame.loc[frame["variant"] == v, "status"].value_counts()
            parts.append(f"{v} ({', '.join(f'{s} {int(c)}' for s, c in counts.items())})")
        text += (" " if text else "") + f"Not drawn ({what}): " + "; ".join(parts) + \
            ". See report.md, \u201cNot measured\u201d."
    if text:  # wrapped to the figure's width (about 14 characters of 8.5 pt per inch)
        width = max(60, min(170, int(fig.get_figwidth() * 14)))
        fig.supxlabel("\n".join(textwrap.wrap(text, width)), fontsize=8.5, color="0.3")


def save_figure(fig: Figure, out_dir: str | Path, name: str, formats: tuple[str, ...] = _FORMATS) -> list[Path]:
    """Write ``fig`` as ``out_dir/name.<fmt>`` for each format (PNG at 100 dpi).

    The figures use constrained layout, which already fits titles, labels and the legend outside the axes into
    the canvas, so no ``bbox_inches="tight"`` pass (a second full draw of the figure) is made.

    Returns:
        The files written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        path = out / f"{name}.{fmt}"
        fig.savefig(path, dpi=100, metadata={"Date": None} if fmt == "svg" else None)
        paths.append(path)
    return paths


def figure_svg(fig: Figure) -> str:
    """``fig`` as SVG text for a web page (report.html): text kept as text (smaller, and searchable), no date, ids
    that do not change from one drawing to the next."""
    import io

    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "attnbench"}):
        fig.savefig(buf, format="svg", dpi=100, metadata={"Date": None})
    return buf.getvalue()
