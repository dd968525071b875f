"""Where a picture's axes go, in inches, placed by hand: panels of a fixed size (so every tile gets at least one
pixel), their tick labels and titles around them, a colour bar beside each block of panels, the title on top.

No layout engine: one would draw every figure twice to measure it, and could shrink a panel below one pixel per
tile to make room for its labels.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["DPI", "Block", "error_layout", "matrix_layout", "new_figure"]

#: Dots per inch of the written PNGs.
DPI = 100
#: Inches left of a panel (the query axis' ticks and label), under it (the key axis'), over it (its title), right of
#: it; the colour bar column (bar and labels); one line of the figure's title. Whole pixels at :data:`DPI`, so that
#: panels of a whole number of pixels per tile start on a pixel.
_LEFT, _BOTTOM, _TOP, _GAP, _BAR, _LINE = 0.85, 0.55, 0.3, 0.2, 1.55, 0.17
#: Title font size, points; characters per inch of title at that size.
TITLE_SIZE = 9.5
_CHARS_PER_IN = 13


@dataclass(frozen=True)
class Block:
    """``n`` panels of ``width x height`` inches in ``cols`` columns, sharing one colour bar."""

    n: int
    cols: int
    width: float
    height: float

    @property
    def rows(self) -> int:
        return -(-self.n // self.cols)

    @property
    def size(self) -> tuple[float, float]:
        """(width, height) in inches, labels included, colour bar excluded."""
        return self.cols * (self.width + _LEFT + _GAP), self.rows * (self.height + _TOP + _BOTTOM)


def new_figure(width: float, height: float) -> Figure:
    """A ``width x height`` inch figure on its own Agg canvas (no pyplot state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def _title(fig: Figure, text: str, height: float) -> None:
    fig.text(0.5, 1 - 0.06 / height, text, ha="center", va="top", fontsize=TITLE_SIZE)


def _wrapped(text: str, width: float) -> str:
    per_line = max(40, int(width * _CHARS_PER_IN))
    return "\n".join(w for line in text.splitlines() for w in textwrap.wrap(line, per_line) or [""])


def _axes(fig: Figure, left: float, bottom: float, width: float, height: float) -> Axes:
    fw, fh = fig.get_size_inches()
    return fig.add_axes((left / fw, bottom / fh, width / fw, height / fh))


def matrix_layout(blocks: list[Block], title: str, min_width: float = 0.0) -> tuple[Figure, list[tuple[list, Axes]]]:
    """A figure of ``blocks`` stacked top to bottom, each with its colour bar on the right, ``title`` on top.

    Returns:
        The figure and, per block, ``(its panels' axes, its colour bar's axes)``.
    """
    width = max(min_width, max(b.size[0] for b in blocks) + _BAR)
    text = _wrapped(title, width)
    head = _LINE * (text.count("\n") + 1) + 0.2
    height = head + sum(b.size[1] for b in blocks) + 0.05
    fig = new_figure(width, height)
    _title(fig, text, height)
    out, top = [], height - head
    for b in blocks:
        axes = [_axes(fig, _LEFT + (i % b.cols) * (b.width + _LEFT + _GAP),
                      top - (i // b.cols) * (b.height + _TOP + _BOTTOM) - _TOP - b.height, b.width, b.height)
                for i in range(b.n)]
        span = b.size[1] - _TOP - _BOTTOM
        bar_h = min(span, max(0.8 * span, 0.6), 4.5)
        bar = _axes(fig, b.size[0] + 0.05, top - _TOP - span / 2 - bar_h / 2, 0.16, bar_h)
        out.append((axes, bar))
        top -= b.size[1]
    return fig, out


def error_layout(n_heads: int, title: str, width: float = 9.0) -> tuple[Figure, Axes, Axes, Axes]:
    """The error picture: a heads x position map over a line panel sharing its query axis, a colour bar for the map.

    Returns:
        ``(figure, map axes, line axes, colour bar axes)``.
    """
    left, right = 1.45, 1.45
    map_h, line_h, gap = 0.22 * n_heads + 0.35, 2.6, 0.12
    text = _wrapped(title, width)
    head = _LINE * (text.count("\n") + 1) + 0.2
    height = head + map_h + gap + line_h + _BOTTOM + 0.05
    fig = new_figure(width, height)
    _title(fig, text, height)
    inner = width - left - right
    bottom = _axes(fig, left, _BOTTOM, inner, line_h)
    top = _axes(fig, left, _BOTTOM + line_h + gap, inner, map_h)
    top.sharex(bottom)
    top.tick_params(labelbottom=False)
    bar = _axes(fig, left + inner + 0.1, _BOTTOM + line_h + gap, 0.14, map_h)
    return fig, top, bottom, bar
