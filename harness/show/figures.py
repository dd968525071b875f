"""The pictures, drawn with matplotlib on an Agg canvas (no pyplot state): the mask, the attention weights per head,
a variant's weight error per head, and the error of output rows by query position.

Every picture has its axes in tokens (query and key positions; short queries sit at their key positions, bottom
right), a colour bar with what its colour measures, colour-blind safe colour maps (viridis for weights, cividis for
masks and errors) and a title that says the case and how the matrix was drawn (exact, or the tile size). Panels are
sized so that every tile gets a whole number of pixels, at least one (:mod:`harness.show.layout` places them on
whole pixels): nothing is dropped or doubled by resampling.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from harness.show.layout import DPI, Block, error_layout, matrix_layout
from harness.show.maps import ErrorMap, MatrixMap

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["DPI", "error_figure", "mask_figure", "save", "weight_error_figure", "weights_figure"]

#: Smallest side of a matrix panel, inches.
_MIN_PANEL_IN = 2.6
#: A matrix with at most this many query rows is drawn as a strip (decode), not a square.
_STRIP_ROWS = 32
#: Below this share of the largest value, a log-scale picture shows the lowest colour.
_LOG_RANGE = 1e-6


def save(fig: Figure, path) -> None:
    """Write ``fig`` as a PNG at :data:`DPI` (no software tag in its metadata, so a rerun writes the same bytes)."""
    fig.savefig(path, dpi=DPI, metadata={"Software": None})


def _side(tiles: int, least: float) -> float:
    """Inches of a panel side of ``tiles`` tiles: a whole number of pixels per tile, at least ``least`` inches."""
    return tiles * max(1, math.ceil(least * DPI / tiles)) / DPI


def _block(m: MatrixMap, n: int) -> Block:
    """``n`` panels of ``m``, a whole number of pixels per tile; strips (few query rows) one per row."""
    nr, nc = m.values.shape[1:]
    if nr <= _STRIP_ROWS and nr < nc:
        return Block(n, 1, _side(nc, 6.0), _side(nr, 0.12 * nr + 0.2))
    width, height = _side(nc, _MIN_PANEL_IN), _side(nr, _MIN_PANEL_IN * min(1.0, nr / nc))
    return Block(n, min(n, 2) if (width > 4 or n == 4) else min(n, 3), width, height)


def _matrix_axes(ax: Axes, m: MatrixMap, data: np.ndarray, **kw):
    """``data`` (tile rows x tile cols) in token coordinates: keys across, query positions down."""
    t = m.tiling
    extent = (m.k_offset, m.k_offset + t.cols, m.q_offset + t.rows, m.q_offset)
    img = ax.imshow(data, extent=extent, interpolation="nearest", aspect="auto", **kw)
    ax.set_xlabel("key position (token)")
    if t.rows <= 8:  # a strip: each query row labelled with its position
        ax.set_ylabel("query\n(token)", fontsize=8)
        ax.set_yticks([m.q_offset + i + 0.5 * t.row_tile for i in range(0, t.rows, t.row_tile)],
                      [str(m.q_offset + i) for i in range(0, t.rows, t.row_tile)])
    else:
        ax.set_ylabel("query position (token)")
    return img


def mask_figure(m: MatrixMap, title: str, zoom: MatrixMap | None = None) -> Figure:
    """The mask: attended (1) or not (0) per pair, or the attended fraction of each tile; ``zoom`` (short queries)
    adds the exact mask of the last keys under it."""
    blocks = [_block(m, 1)] + ([_block(zoom, 1)] if zoom is not None else [])
    fig, placed = matrix_layout(blocks, title, min_width=5.6)
    _mask_panel(fig, placed[0], m)
    if zoom is not None:
        _mask_panel(fig, placed[1], zoom)
        placed[1][0][0].set_title(zoom.panels[0] + ": query row i sits at key position seq_len - q_len + i",
                                  fontsize=9)
    return fig


def _mask_panel(fig: Figure, placed: tuple[list, Axes], m: MatrixMap) -> None:
    from matplotlib import colormaps
    from matplotlib.colors import BoundaryNorm, ListedColormap

    (ax,), bar_ax = placed
    if m.tiling.exact:
        cmap = ListedColormap([colormaps["cividis"](0.0), colormaps["cividis"](1.0)])
        img = _matrix_axes(ax, m, m.values[0], cmap=cmap, norm=BoundaryNorm([-0.5, 0.5, 1.5], 2))
        bar = fig.colorbar(img, cax=bar_ax, ticks=[0, 1])
        bar.ax.set_yticklabels(["not\nattended", "attended"])
    else:
        img = _matrix_axes(ax, m, m.values[0], cmap="cividis", vmin=0.0, vmax=1.0)
        fig.colorbar(img, cax=bar_ax, label="attended fraction\nof the tile's pairs")


def _log_norm(values: np.ndarray, robust: bool = False):
    """A log colour scale over the positive values, at most :data:`_LOG_RANGE` deep; ``robust`` starts it at the
    1st percentile (the few smaller values share the lowest colour, and the colour bar says so)."""
    from matplotlib.colors import LogNorm

    pos = values[np.isfinite(values) & (values > 0)]
    if pos.size == 0:
        return LogNorm(1e-12, 1.0)
    top = float(pos.max())
    low = float(np.percentile(pos, 1)) if robust else float(pos.min())
    return LogNorm(max(low, top * _LOG_RANGE), top) if low < top else LogNorm(top / 10, top)


def _matrix_panels(m: MatrixMap, data: np.ndarray, title: str, cmap: str, norm, label: str) -> Figure:
    """One panel per entry of ``data`` (one per head) with a shared colour bar; NaN drawn white."""
    from matplotlib import colormaps

    fig, ((axes, bar_ax),) = matrix_layout([_block(m, len(data))], title)
    cm = colormaps[cmap].with_extremes(bad="white")
    img = None
    for ax, values, name in zip(axes, data, m.panels):
        img = _matrix_axes(ax, m, values, cmap=cm, norm=norm)
        ax.set_title(name, fontsize=9)
    fig.colorbar(img, cax=bar_ax, label=label)
    return fig


def weights_figure(m: MatrixMap, title: str, scale: str = "log") -> Figure:
    """The float64 attention weights per head, on a log scale or (``scale="row"``) divided by each row's largest."""
    from matplotlib.colors import Normalize

    what = ("weight (probability)" if m.tiling.exact
            else "weight a query puts on the key tile\n(mean over the tile's queries)")
    if scale == "row":
        top = np.nanmax(np.where(np.isfinite(m.values), m.values, -np.inf), axis=-1, keepdims=True)
        data = m.values / np.where(top > 0, top, 1.0)
        return _matrix_panels(m, data, title, "viridis", Normalize(0.0, 1.0), what + " / the row's largest")
    return _matrix_panels(m, m.values, title, "viridis", _log_norm(m.values), what + ", log scale")


def weight_error_figure(m: MatrixMap, title: str) -> Figure:
    """``|W - P|`` per head: a variant's weights against the float64 ones, log scale, zero drawn white."""
    what = ("|weight - exact weight|" if m.tiling.exact
            else "|weight - exact| summed over the key tile\n(mean over the tile's queries)")
    data = np.where(m.values > 0, m.values, np.nan)
    return _matrix_panels(m, data, title, "cividis", _log_norm(m.values), what + ", log scale")


def error_figure(e: ErrorMap, title: str) -> Figure:
    """The relative error of each output row: a heads x query position map, and the spread over heads by position."""
    from matplotlib import colormaps

    n_heads = e.values.shape[0]
    fig, top, bottom, bar_ax = error_layout(n_heads, title)
    pos = e.rows + e.q_offset
    data = np.where(e.values > 0, e.values, np.nan)
    step = (pos[-1] - pos[0]) / max(1, len(pos) - 1) if len(pos) > 1 else 1.0
    extent = (pos[0] - 0.5 * step, pos[-1] + 0.5 * step, n_heads, 0)
    norm = _log_norm(e.values, robust=True)
    img = top.imshow(data, extent=extent, aspect="auto", interpolation="nearest",
                     cmap=colormaps["cividis"].with_extremes(bad="white"), norm=norm)
    top.set_yticks(np.arange(n_heads) + 0.5, e.heads, fontsize=8)
    zeros = bool((e.values == 0).any())
    clipped = bool((data < norm.vmin).any())
    fig.colorbar(img, cax=bar_ax, extend="min" if clipped else "neither",
                 label="relative error\n|o - o*| / |o*|" + ("\n(white: exactly 0)" if zeros else ""))
    _spread_panel(bottom, pos, data, e.overall)
    bottom.set_xlabel("query position (token)" + (f"; {len(e.rows)} evenly spaced of {e.q_len} query rows"
                                                   if e.sampled else ""))
    return fig


def _spread_panel(ax: Axes, pos: np.ndarray, data: np.ndarray, overall: float) -> None:
    """Median over heads by position, the band from the smallest to the largest head, the overall error dashed."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns (rows with no reference)
        med, lo, hi = np.nanmedian(data, axis=0), np.nanmin(data, axis=0), np.nanmax(data, axis=0)
    colour = "#0072B2"
    marker = "o" if len(pos) <= 64 else None
    ax.fill_between(pos, lo, hi, color=colour, alpha=0.25, lw=0, label="smallest to largest head")
    ax.plot(pos, med, color=colour, lw=1.2, marker=marker, ms=3, label="median over heads")
    if math.isfinite(overall) and overall > 0:
        ax.axhline(overall, color="black", ls="--", lw=1, label=f"relative L2 over all rows drawn: {overall:.3g}")
    if np.isfinite(data).any():
        ax.set_yscale("log")
    if len(pos) <= 16:
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("relative error of the row")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
