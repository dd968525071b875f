"""Decode and roofline figures: time and bandwidth against context length, and achieved FLOP/s against intensity.

- ``decode_time`` and ``decode_gbps``: rows whose queries are fewer than their keys (``q_len < seq_len``: decode,
  speculative decode, chunked prefill), median time and achieved bandwidth (:mod:`harness.core.roofline`) against the
  context length ``seq_len``: the report's line figure (:func:`harness.report.plots.plot_vs_seq_len`) on those rows, a
  panel per case parameter that varies among them, the parameters they share in the title; the bandwidth panels
  draw the device's measured copy ceiling.
- ``roofline``: every ``ok`` row of an exact variant as a point, achieved FLOP/s against arithmetic intensity
  (useful FLOP per byte moved), log-log, a panel per device, dtype and (CPU) thread count, under both measured
  ceilings: the copy ceiling's slope (``intensity x bandwidth``) up to the ridge point and the matmul ceiling
  beyond it. Approximations are left out (a footnote names them): their useful FLOPs are exact attention's, which
  they skip, so they would sit above the ceiling as if they beat the hardware.

Every figure draws with the report's toolkit (:mod:`harness.report.draw`): each variant in the report's style
(colour, marker, dashed approximations, hollow contended points), units that follow the data (GFLOP/s and GB/s on
a CPU, TFLOP/s and TB/s on a GPU). :data:`FIGURE_MAKERS` lists them for :mod:`harness.report.figures`; a new figure
is one function of ``(frame, facets, styles)`` and one entry there (and in :func:`figure_names` when it needs
particular rows).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from harness.report.draw.axes import draw_points, log_ticks
from harness.report.draw.canvas import draw_footnote, draw_legend, new_figure, panel_grid
from harness.report.draw.style import Style
from harness.report.draw.units import Unit, bandwidth_unit, flops_unit, time_unit
from harness.report.facets import facet_columns
from harness.report.plots import plot_vs_seq_len
from harness.report.rows import contended_mask, variant_order
from harness.store.columns import CASE_COLUMNS, case_text

__all__ = ["COLUMNS", "CONTEXT_LABEL", "FIGURES", "FIGURE_MAKERS", "decode_gbps_figure", "decode_rows",
           "decode_time_figure", "figure_names", "roofline_figure", "roofline_rows", "shared_text"]

if TYPE_CHECKING:  # imported where a figure is drawn (report.md's tables need no matplotlib)
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

#: Columns the figures read (besides the case parameters).
COLUMNS: tuple[str, ...] = ("q_len", "kv_heads", "model", "achieved_gbps", "copy_ceiling_gbps", "arith_intensity",
                            "matmul_ceiling_tflops", "tflops", "time_ms_median", "contended", "exact", "device_name")
#: What the x axis of the decode figures is.
CONTEXT_LABEL = "context length (keys in the cache, seq_len)"
_CEILING_COLOR = "#000000"
_RIDGE_COLOR = "0.45"
_ROOF_W = 6.2  # inches per roofline panel (a single panel carries the figure's title and footnote)


def _num(frame: pd.DataFrame, col: str) -> pd.Series:
    return pd.to_numeric(frame[col], errors="coerce") if col in frame.columns else pd.Series(np.nan, frame.index)


def decode_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows with fewer queries than keys."""
    if "q_len" not in frame.columns:
        return frame.iloc[0:0]
    q = _num(frame, "q_len")
    return frame[q.notna() & (q < _num(frame, "seq_len"))]


def roofline_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The ``ok`` rows with an arithmetic intensity and a throughput (any variant)."""
    ok = frame[frame["status"] == "ok"] if "status" in frame.columns else frame
    return ok[_num(ok, "arith_intensity").gt(0) & _num(ok, "tflops").gt(0)]


def figure_names(frame: pd.DataFrame) -> list[str]:
    """This module's figures that ``frame`` has data for."""
    names = []
    if len(decode_rows(frame)):
        names += ["decode_time", "decode_gbps"]
    if len(roofline_rows(frame)):
        names.append("roofline")
    return names


def _plural(text: str) -> str:
    return re.sub(r"\b1 threads\b", "1 thread", text)


def shared_text(rows: pd.DataFrame, facets: list[str]) -> str:
    """The case parameters all ``rows`` share (the figure's panels split by ``facets``, x is seq_len), in one line:
    ``cpu float32 B1 H32 KV8 Q1 D128 fwd model=llama3_8b 1 thread``."""
    fixed = {}
    for col in CASE_COLUMNS:
        if col in facets or col == "seq_len" or col not in rows.columns:
            continue
        vals = rows[col].dropna().unique()
        if len(vals) == 1:
            fixed[col] = vals[0]
    if "q_len" in fixed and "seq_len" not in fixed:
        fixed["seq_len"] = math.nan  # so q_len is not read as its default (seq_len)
    return _plural(case_text(fixed))


def _styles_for(frame: pd.DataFrame, styles: dict[str, Style]) -> dict[str, Style]:
    """``styles`` with a plain one for any variant it lacks (a frame filtered after the styles were made)."""
    out = dict(styles)
    for v in variant_order(frame["variant"]):
        out.setdefault(v, Style("0.5", "o", label=v))
    return out


# ---------------------------------------------------------------------------------------------- decode
def _decode_figure(frame: pd.DataFrame, styles: dict[str, Style], value: str, ylabel: str, what: str,
                   unit: Callable[[pd.Series], Unit], hline: tuple[str, str] | None = None) -> Figure:
    rows = decode_rows(frame)
    facets = facet_columns(rows)
    shared = shared_text(rows, facets)
    title = f"Decode: {what}" + (f"\n{shared}" if shared else "")
    return plot_vs_seq_len(rows, value, ylabel, title, facets=facets, styles=_styles_for(rows, styles), unit=unit,
                           hollow_contended=True, hline=hline, xlabel=CONTEXT_LABEL)


def decode_time_figure(frame: pd.DataFrame, facets: list[str] | None = None,
                       styles: dict[str, Style] | None = None) -> Figure:
    """Median time of the decode rows (``q_len < seq_len``) against the context length.

    Args:
        frame: result rows (all statuses); only the decode rows are drawn.
        facets: the report's facets (unused: the panels split by what varies among the decode rows).
        styles: variant -> style (the report's).

    Returns:
        The figure.
    """
    return _decode_figure(frame, styles or {}, "time_ms_median", "median time ({unit}, log)",
                          "median time per call vs context length (log-log; lower is better)", time_unit)


def decode_gbps_figure(frame: pd.DataFrame, facets: list[str] | None = None,
                       styles: dict[str, Style] | None = None) -> Figure:
    """Achieved bandwidth (bytes moved / median time) of the decode rows against the context length, with the
    device's measured copy ceiling (dash-dot).

    Args:
        frame: result rows (all statuses); only the decode rows are drawn.
        facets: the report's facets (unused: the panels split by what varies among the decode rows).
        styles: variant -> style (the report's).

    Returns:
        The figure.
    """
    rows = decode_rows(frame)
    ceiling = _num(rows, "copy_ceiling_gbps")
    ceiling = ceiling[ceiling.gt(0)]
    label = "measured copy ceiling"
    if len(ceiling) and ceiling.nunique() == 1:
        u = bandwidth_unit(ceiling)
        label += f"\n({float(ceiling.iloc[0]) * u.factor:.3g} {u.name}, read + write)"
    return _decode_figure(frame, styles or {}, "achieved_gbps", "achieved bandwidth ({unit}, log)",
                          "achieved bandwidth (bytes moved / time) vs context length (higher is better)",
                          bandwidth_unit,
                          hline=("copy_ceiling_gbps", label))


# ---------------------------------------------------------------------------------------------- roofline
def _panel_key(rows: pd.DataFrame) -> pd.Series:
    """One roofline panel per device, dtype and, on CPU, thread count."""
    def key(r: pd.Series) -> tuple:
        threads = r.get("threads")
        cpu = str(r.get("device", "")).startswith("cpu")
        return (str(r.get("device", "")), str(r.get("device_name", "") if pd.notna(r.get("device_name")) else ""),
                str(r.get("dtype", "")), int(threads) if cpu and pd.notna(threads) else -1)
    return rows.apply(key, axis=1)


def _panel_title(key: tuple, copy: float, matmul: float, fu: Unit) -> str:
    device, name, dtype, threads = key
    head = f"{name} ({device})" if name and name != device else device
    head += f", {dtype}"
    if threads > 0:
        head += f", {threads} thread" + ("s" if threads != 1 else "")
    if math.isfinite(copy) and math.isfinite(matmul) and copy > 0:
        bu = bandwidth_unit([copy])
        head += (f"\nceilings: copy {copy * bu.factor:.3g} {bu.name}, matmul {matmul * fu.factor:.3g} {fu.name}; "
                 f"ridge {matmul * 1e12 / (copy * 1e9):.3g} FLOP/B")
    return head


def _ridge(copy: float, matmul: float) -> float:
    """The ridge point (FLOP/byte) where the copy ceiling's slope meets the matmul ceiling; NaN unless both were
    measured."""
    if not (math.isfinite(matmul) and math.isfinite(copy) and copy > 0 and matmul > 0):
        return math.nan
    return matmul * 1e12 / (copy * 1e9)


def _draw_roof(ax: Axes, lo: float, hi: float, copy: float, matmul: float, fu: Unit) -> np.ndarray:
    """The roof over ``[lo, hi]`` (the copy ceiling's slope up to the ridge point, the matmul ceiling beyond) and
    the ridge point (dotted); the roof's values in ``fu``."""
    grid = np.geomspace(lo, hi, 256)
    roof = np.minimum(grid * copy * 1e9 / 1e12, matmul) * fu.factor
    ax.plot(grid, roof, color=_CEILING_COLOR, lw=1.6, zorder=2)
    ax.axvline(_ridge(copy, matmul), color=_RIDGE_COLOR, ls=":", lw=1.1, zorder=1)
    return roof


def _draw_roof_panel(ax: Axes, key: tuple, sub: pd.DataFrame, styles: dict[str, Style], fu: Unit) -> bool:
    """One device's (dtype's, thread count's) panel: each variant's points under the ceilings, log-log; whether
    a point is hollow (contended)."""
    x, y = _num(sub, "arith_intensity"), _num(sub, "tflops") * fu.factor
    hollow = contended_mask(sub)
    for variant in variant_order(sub["variant"]):
        pick = (sub["variant"] == variant).to_numpy()
        st = styles[variant]
        draw_points(ax, x[pick], y[pick], hollow[pick], st, 8 if st.baseline else 6.5,
                    zorder=3.0 if st.baseline else 3.2)
    matmul, copy = _num(sub, "matmul_ceiling_tflops").median(), _num(sub, "copy_ceiling_gbps").median()
    lo, hi = float(x.min()) / 2.5, float(x.max()) * 2.5
    ylo, yhi = float(y.min()), float(y.max())
    ridge = _ridge(copy, matmul)
    if math.isfinite(ridge):
        lo, hi = min(lo, ridge / 8), max(hi, ridge * 8)
        roof = _draw_roof(ax, lo, hi, copy, matmul, fu)
        ylo, yhi = min(ylo, float(roof.min())), max(yhi, matmul * fu.factor)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, hi)
    ax.set_ylim(ylo / 2, yhi * 2.2)
    log_ticks(ax.xaxis, lo, hi)
    log_ticks(ax.yaxis, ylo / 2, yhi * 2.2)
    ax.set_xlabel("arithmetic intensity (useful FLOP / byte moved, log)")
    ax.set_ylabel(f"achieved {fu.name} (useful, log)")
    ax.set_title(_panel_title(key, copy, matmul, fu), fontsize=9)
    ax.grid(True, which="major", alpha=0.3)
    return bool(hollow.any())


def roofline_figure(frame: pd.DataFrame, facets: list[str] | None = None,
                    styles: dict[str, Style] | None = None) -> Figure:
    """Achieved FLOP/s against arithmetic intensity for every ``ok`` row of an exact variant, under the measured
    copy and matmul ceilings.

    Approximate variants are not drawn (the footnote names them): their useful FLOPs are those of the exact
    attention they approximate, not of the work they do, so their points would sit above the ceilings.

    Args:
        frame: result rows (all statuses).
        facets: the report's facets (unused: a panel per device, dtype and CPU thread count).
        styles: variant -> style (the report's).

    Returns:
        The figure.
    """
    from matplotlib.lines import Line2D

    styles = _styles_for(frame, styles or {})
    approx = [v for v in variant_order(frame["variant"]) if styles[v].approx]
    exact_rows = frame[~frame["variant"].isin(approx)]
    rows = roofline_rows(exact_rows).copy()
    rows["_panel"] = _panel_key(rows) if len(rows) else pd.Series(dtype=object)
    panels = sorted(rows["_panel"].unique())
    fu = flops_unit(pd.concat([_num(rows, "tflops"), _num(rows, "matmul_ceiling_tflops")]))
    nrows, ncols = panel_grid(max(1, len(panels)))
    fig, axes = new_figure(nrows, ncols, w=_ROOF_W if ncols == 1 else _ROOF_W * 0.8)
    any_hollow = False
    for ax, key in zip(axes, panels):
        any_hollow |= _draw_roof_panel(ax, key, rows[rows["_panel"] == key], styles, fu)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    if not panels:
        axes[0].set_visible(True)
        axes[0].set_yticks([])
        axes[0].text(0.5, 0.5, "no exact variant has a throughput", transform=axes[0].transAxes, ha="center",
                     va="center", fontsize=9, color="0.4")
    fig.suptitle("Roofline: achieved throughput vs arithmetic intensity\n(exact variants, under the measured ceilings)",
                 fontsize=12)
    extra = [(Line2D([], [], color=_CEILING_COLOR, lw=1.6), "ceiling: min(copy bandwidth\nx intensity, matmul)"),
             (Line2D([], [], color=_RIDGE_COLOR, ls=":", lw=1.1), "ridge point")]
    drawn = set(rows["variant"])
    draw_legend(fig, styles, sorted(drawn), set(), any_hollow, extra)
    note = (f"Approximations not drawn ({', '.join(approx)}): their useful FLOPs are exact attention's, which they "
            "skip, so they would sit above the ceiling." if approx else "")
    draw_footnote(fig, exact_rows, drawn, "no throughput", note)
    return fig


#: This module's figures, for :data:`harness.report.figures.FIGURE_MAKERS`: name -> function of
#: ``(frame, facets, styles)``.
FIGURE_MAKERS: dict[str, Callable[..., Figure]] = {
    "decode_time": decode_time_figure,
    "decode_gbps": decode_gbps_figure,
    "roofline": roofline_figure,
}
#: Their names, in the order a report lists them.
FIGURES: tuple[str, ...] = tuple(FIGURE_MAKERS)
