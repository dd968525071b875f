"""Comparison plots of a run's results (matplotlib, Agg canvas, no pyplot state), made to be read in seconds.

Every figure takes its series from the data: a newly registered variant appears with no code change. Panels are
faceted by the columns that vary in the data apart from seq_len (heads, device, dtype, pattern, mode...).

How a figure reads:

- **Variants**: one colour (Okabe-Ito, colour-blind safe, then three of Paul Tol's) *and* one marker each, fixed
  for a report (:func:`variant_styles`); ``full``, the baseline, is black and thicker. Approximate variants
  (:func:`approximate_variants`) are dashed and labelled ``approx.`` with their median error, so they are never
  read as computing what the exact ones compute.
- **Legend**: only what is drawn. A variant with no value anywhere in a figure (``unsupported`` everywhere, say)
  is named once, in a footnote, not drawn in every panel.
- **Units** follow the data: µs / ms / s, KiB / MiB / GiB, GFLOP/s and GB/s on a CPU, TFLOP/s and TB/s on a
  GPU.
- **Contended rows** (the ``contended`` column: timed while other work took the cores) are hollow markers in the
  figures whose value comes from a time.
- **Failures** of a drawn variant (``oom``, ``error``, ``numerics``, ``timeout``, ``crashed``) are a marker per
  status, in the variant's colour, under the data at their seq_len. ``unsupported`` rows are not drawn (report.md
  lists them once, in "Not measured").

A figure is a function of ``(frame, facets, styles)``; :mod:`harness.report.figures` lists the report's figures (these,
the decode and roofline figures of :mod:`harness.report.roofline_plots`, the pad-or-pack figure of
:mod:`harness.report.varlen_report`), which share this module's styles, units, legend and footnote.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from harness.core.names import BASELINE
from harness.store.columns import CASE_COLUMNS, CASE_KEY, CASE_PARAMS, value_text

if TYPE_CHECKING:  # matplotlib is imported where a figure is drawn: report.md's tables need none of it
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

#: Marker of each failed status, with its legend text. ``unsupported`` is listed for completeness (the footnote
#: and report.md name unsupported rows; they are not drawn).
STATUS_MARKERS: dict[str, tuple[str, str]] = {
    "unsupported": ("s", "unsupported"),
    "oom": ("X", "oom (out of memory)"),
    "error": ("D", "error (exception)"),
    "numerics": ("^", "numerics (NaN/Inf)"),
    "timeout": ("v", "timeout"),
    "crashed": ("*", "crashed"),
}
#: Marker of any other status a future store may write.
OTHER_STATUS_MARKER = "P"
#: Statuses never drawn in a panel (said once, in the footnote and in report.md).
NOT_DRAWN_STATUSES = ("unsupported",)
#: ``ok`` rows that lack the plotted value (a speedup with no ``full`` to compare, say).
NO_VALUE = "ok, no value"
#: Colours: Okabe & Ito's (without black, kept for the baseline; yellow last), then Tol's muted wine, olive, indigo.
PALETTE: tuple[str, ...] = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442",
                            "#882255", "#999933", "#332288")
#: Markers of the non-baseline variants; 11 markers against 10 colours: no two variants share both below 110.
MARKERS: tuple[str, ...] = ("s", "^", "D", "v", "o", "P", "<", "h", ">", "p", "*")
#: An approximation: a variant whose rows say ``exact=False`` or, in runs without that column, whose median
#: ``err_rel_l2`` exceeds this (exact kernels are within ~1e-2 even in bf16; approximations are off by 10-100%).
APPROX_ERR_THRESHOLD = 0.05
#: ``gid`` of the artists: a variant's filled markers, its hollow (contended) ones, failure markers.
POINTS_GID, HOLLOW_GID, FAILURE_GID = "points", "contended", "failure"
_STATUS_ORDER = tuple(STATUS_MARKERS)
_PANEL_W, _PANEL_H = 4.8, 3.5
_MAX_COLS = 3
_MAX_PARETO_LENGTHS = 6
_BASELINE_COLOR = "#000000"
_BASELINE_MARKER = "o"
_REFERENCE_COLOR = "#8c8c8c"
_PARETO_REL_TOL = 0.02
_FAIL_LANE = 0.055  # axes fraction per variant lane of failure markers under the data
_FORMATS = ("png",)


# ---------------------------------------------------------------------------------------------- styles
@dataclass(frozen=True)
class Style:
    """How one variant is drawn in every figure of a report.

    Args:
        color: line and marker colour.
        marker: marker symbol.
        approx: an approximation (dashed line, ``approx.`` label).
        label: the legend text (``linear (approx., err 0.71)``, ``full (baseline)``).
    """

    color: str
    marker: str
    approx: bool = False
    label: str = ""

    @property
    def baseline(self) -> bool:
        return self.label.endswith("(baseline)")

    @property
    def linestyle(self) -> str | tuple:
        return (0, (5, 2.5)) if self.approx else "-"

    @property
    def edge(self) -> str:
        """A darker edge of the same hue, so light colours (yellow, sky blue) stay visible on white."""
        from matplotlib.colors import to_rgb

        r, g, b = to_rgb(self.color)
        return "#" + "".join(f"{int(255 * 0.62 * c):02x}" for c in (r, g, b))


def variant_order(variants) -> list[str]:
    """Variant names with ``full`` first, then by name."""
    return sorted({str(v) for v in variants}, key=lambda v: (v != BASELINE, v))


def variant_colors(variants: list[str] | tuple[str, ...] | pd.Series) -> dict[str, str]:
    """One colour per variant, fixed for a report: ``full`` black, the others from :data:`PALETTE` in name order
    (repeating after 10, when the marker still tells them apart).

    Args:
        variants: variant names (duplicates allowed).

    Returns:
        name -> colour (hex string).
    """
    names = sorted({str(v) for v in variants} - {BASELINE})
    colors = {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(names)}
    colors[BASELINE] = _BASELINE_COLOR
    return colors


def variant_markers(variants) -> dict[str, str]:
    """One marker per variant, in the same order as :func:`variant_colors`."""
    names = sorted({str(v) for v in variants} - {BASELINE})
    markers = {name: MARKERS[i % len(MARKERS)] for i, name in enumerate(names)}
    markers[BASELINE] = _BASELINE_MARKER
    return markers


def _truthy(value: object) -> bool | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, bool | np.bool_):
        return bool(value)
    text = str(value).strip().lower()
    if text in ("true", "1", "1.0", "yes"):
        return True
    if text in ("false", "0", "0.0", "no"):
        return False
    return None


def approximate_variants(frame: pd.DataFrame) -> set[str]:
    """The variants of ``frame`` that are approximations.

    A variant whose rows carry ``exact`` (the sweep writes the variant's declaration) is approximate when any says
    False. Rows without it (older runs, pytest-benchmark files) fall back to the error: approximate when the median
    ``err_rel_l2`` of its ``ok`` rows exceeds :data:`APPROX_ERR_THRESHOLD`.

    Args:
        frame: normalized result rows.

    Returns:
        Variant names.
    """
    out: set[str] = set()
    has_exact = "exact" in frame.columns
    for variant, sub in frame.groupby("variant", sort=False):
        declared = [x for x in (sub["exact"].map(_truthy) if has_exact else []) if x is not None]
        if declared:
            if not all(declared):
                out.add(str(variant))
            continue
        ok = sub[sub["status"] == "ok"]
        err = pd.to_numeric(ok["err_rel_l2"], errors="coerce").dropna() if "err_rel_l2" in ok else pd.Series([])
        if len(err) and float(err.median()) > APPROX_ERR_THRESHOLD:
            out.add(str(variant))
    return out


def variant_styles(frame: pd.DataFrame) -> dict[str, Style]:
    """The :class:`Style` of every variant in ``frame``: colour, marker, whether it approximates, legend label.

    Args:
        frame: normalized result rows (``err_metric`` gives an approximation's median error for its label).

    Returns:
        name -> style.
    """
    names = variant_order(frame["variant"])
    colors, markers = variant_colors(names), variant_markers(names)
    approx = approximate_variants(frame)
    styles = {}
    for v in names:
        label = v
        if v == BASELINE:
            label = f"{v} (baseline)"
        elif v in approx:
            ok = frame[(frame["variant"] == v) & (frame["status"] == "ok")]
            err = pd.to_numeric(ok.get("err_metric", ok.get("err_rel_l2")), errors="coerce").dropna()
            label = f"{v} (approx., err {float(err.median()):.2g})" if len(err) else f"{v} (approx.)"
        styles[v] = Style(color=colors[v], marker=markers[v], approx=v in approx, label=label)
    return styles


# ---------------------------------------------------------------------------------------------- units
@dataclass(frozen=True)
class Unit:
    """A display unit: ``shown = raw * factor``."""

    name: str
    factor: float = 1.0


def time_unit(values_ms) -> Unit:
    """µs below a millisecond, s from a second (by the median value), else ms."""
    v = _positive(values_ms)
    if v.size == 0:
        return Unit("ms")
    mid = float(np.median(v))
    if mid < 1.0:
        return Unit("µs", 1e3)
    if mid >= 1000.0:
        return Unit("s", 1e-3)
    return Unit("ms")


def bytes_unit(values_bytes) -> Unit:
    """KiB, MiB or GiB by the largest value."""
    v = _positive(values_bytes)
    top = float(v.max()) if v.size else 0.0
    if top >= 2**30:
        return Unit("GiB", 2.0**-30)
    if 0 < top < 2**20:
        return Unit("KiB", 2.0**-10)
    return Unit("MiB", 2.0**-20)


def flops_unit(values_tflops) -> Unit:
    """TFLOP/s when the largest value reaches 1 TFLOP/s (a GPU), else GFLOP/s (a CPU)."""
    v = _positive(values_tflops)
    if v.size and float(v.max()) >= 1.0:
        return Unit("TFLOP/s")
    return Unit("GFLOP/s", 1e3)


def bandwidth_unit(values_gbps) -> Unit:
    """TB/s when the largest value reaches 1000 GB/s (a GPU's memory), else GB/s."""
    v = _positive(values_gbps)
    if v.size and float(v.max()) >= 1000.0:
        return Unit("TB/s", 1e-3)
    return Unit("GB/s")


def _positive(values) -> np.ndarray:
    v = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=float)
    return v[np.isfinite(v) & (v > 0)]


# ---------------------------------------------------------------------------------------------- facets
#: Columns that may split panels: every case parameter but seq_len (from :data:`harness.store.columns.CASE_COLUMNS`,
#: so a new case parameter splits panels with no change here), and the device's name beside the device.
FACET_CANDIDATES: tuple[str, ...] = tuple(
    c for col in CASE_COLUMNS if col != "seq_len" for c in ((col, "device_name") if col == "device" else (col,)))


def facet_columns(frame: pd.DataFrame) -> list[str]:
    """The columns to facet panels by: those that vary in the data, other than seq_len and what seq_len fixes.

    A column that changes only together with seq_len (e.g. batch in a ``batch x seq_len = const`` grid) is not a
    facet: splitting by it would leave one point per panel. ``run`` is a facet only when runs repeat a case.

    Args:
        frame: normalized result rows.

    Returns:
        Column names, in a fixed order.
    """
    candidates = [c for c in FACET_CANDIDATES if c in frame.columns]
    df = frame.replace({c: {"": np.nan} for c in candidates})
    out: list[str] = []
    for col in candidates:
        if df[col].nunique() < 2:
            continue
        # a column fixed by seq_len and the facets already chosen (batch in a batch x seq_len = const grid, the
        # device name of a device) would add panels with nothing new in them
        key = out + ["seq_len"]
        if df.dropna(subset=[col]).groupby(key, dropna=False)[col].nunique().max() <= 1:
            continue
        out.append(col)
    if "run" in frame.columns and frame["run"].nunique() > 1:
        key = [CASE_KEY, "variant"] if CASE_KEY in frame.columns else ["variant", "seq_len"]
        if frame.groupby(key, dropna=False)["run"].nunique().max() > 1:
            out.append("run")
    return out


_FACET_NAMES = {"pattern_label": "pattern", "device_name": "device name"}


def facet_title(facets: list[str], values: tuple, width: int = 46) -> str:
    """Panel title such as ``heads=8, pattern=causal``, wrapped to ``width`` characters per line."""
    parts = []
    for col, val in zip(facets, values):
        if isinstance(val, float) and val.is_integer():
            val = int(val)
        parts.append(f"{_FACET_NAMES.get(col, col)}={val}")
    return "\n".join(textwrap.wrap(", ".join(parts), width, break_long_words=False)) if parts else ""


_TITLE_EXTRAS = tuple(c for c in FACET_CANDIDATES if c != "device_name")


def _panel_title(frame: pd.DataFrame, facets: list[str], key: tuple, sub: pd.DataFrame, width: int = 46) -> str:
    """The facet values, plus columns that vary across the data but are fixed within this panel (the dtype of a
    device's panel, say), so a panel's title says everything that sets it apart."""
    cols, vals = list(facets), list(key)
    for c in _TITLE_EXTRAS:
        if c in facets or c not in frame.columns or frame[c].nunique() < 2:
            continue
        if sub[c].nunique() == 1 and not _at_default(sub, c):
            cols.append(c)
            vals.append(sub[c].iloc[0])
    return facet_title(cols, tuple(vals), width)


_DEFAULT_FROM = {p.name: p.default_from for p in CASE_PARAMS if p.default_from}


def _at_default(sub: pd.DataFrame, col: str) -> bool:
    """A parameter that only repeats another in these rows (``q_len`` = ``seq_len``, ``kv_heads`` = ``heads``)."""
    src = _DEFAULT_FROM.get(col)
    if src is None or src not in sub.columns:
        return False
    return bool((sub[col].map(value_text) == sub[src].map(value_text)).all())


#: Panel order of pattern kinds: dense first, then sparser (a kind not listed sorts after them, by name).
_PATTERN_ORDER = ("full", "causal", "window", "window_sym", "block_sparse", "block_sparse_causal")


def _sort_value(col: str, value: object) -> tuple:
    if col in ("pattern", "pattern_label"):
        kind = str(value).split("(")[0]
        return (0, _PATTERN_ORDER.index(kind) if kind in _PATTERN_ORDER else len(_PATTERN_ORDER), str(value))
    if isinstance(value, float) and math.isnan(value):
        return (1, 0, "")
    return (0, value if isinstance(value, int | float | np.integer | np.floating) else 0, str(value))


def facet_sort_key(facets: list[str], key: tuple) -> tuple:
    """Sort key of a panel (its facet values): pattern kinds dense to sparse, numbers as numbers, the rest by name.
    The plots and report.md's tables order their panels by it."""
    return tuple(_sort_value(c, v) for c, v in zip(facets, key))


def facet_panels(frame: pd.DataFrame, facets: list[str]) -> list[tuple[tuple, pd.DataFrame]]:
    """``(facet values, rows)`` of each panel, in :func:`facet_sort_key` order (one panel when no facets)."""
    if not facets:
        return [((), frame)]
    out = []
    for key, sub in frame.groupby(facets, dropna=False, sort=True):
        out.append((key if isinstance(key, tuple) else (key,), sub))
    out.sort(key=lambda p: facet_sort_key(facets, p[0]))
    return out



def panel_grid(n: int, ncols_max: int = _MAX_COLS) -> tuple[int, int]:
    ncols = 2 if n == 4 and ncols_max >= 2 else max(1, min(ncols_max, n))  # 2 x 2, not 3 + 1
    return math.ceil(n / ncols), ncols


def new_figure(nrows: int, ncols: int, w: float = _PANEL_W, h: float = _PANEL_H) -> tuple[Figure, np.ndarray]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w * ncols + 2.2, h * nrows + 0.9), layout="constrained")
    FigureCanvasAgg(fig)
    fig.get_layout_engine().set(h_pad=0.08, w_pad=0.06, hspace=0.06, wspace=0.04)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False).ravel())
    return fig, axes


def _fmt_len(n: float) -> str:
    n = int(n)
    if n >= 1024 and n % 1024 == 0:
        return f"{n // 1024}k"
    return str(n)


def _set_len_axis(ax, lengths: list[float], label: str = "sequence length N (tokens)") -> None:
    ax.set_xscale("log", base=2)
    lengths = sorted({float(x) for x in lengths if np.isfinite(x) and x > 0})
    if lengths:
        if len(lengths) > 10:
            step = math.ceil(len(lengths) / 10)
            lengths = lengths[::step]
        ax.set_xticks(lengths, [_fmt_len(x) for x in lengths])
        ax.minorticks_off()
        lo, hi = min(lengths), max(lengths)
        ax.set_xlim(lo / 1.35, hi * 1.35)
    ax.set_xlabel(label)


def status_marker(status: str) -> str:
    """The marker of a failed status."""
    return STATUS_MARKERS.get(status, (OTHER_STATUS_MARKER, status))[0]


def status_label(status: str) -> str:
    """The legend text of a failed status."""
    return STATUS_MARKERS.get(status, (OTHER_STATUS_MARKER, status))[1]


def log_ticks(axis, lo: float, hi: float) -> None:
    """Readable ticks on a log axis spanning ``[lo, hi]``: powers of ten (at most ~6), or 1-2-5 steps when the
    range is under two decades; no minor tick labels (they crowd, and are slow to lay out)."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter, NullLocator

    if not (lo > 0 and hi > lo):
        return
    a, b = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    ticks: list[float] = []
    if b - a >= 3:
        step = max(1, math.ceil((b - a) / 6))
        ticks = [t for t in (10.0 ** e for e in range(a, b + 1, step)) if lo <= t <= hi]
    if len(ticks) < 3:  # under about three decades: 1-2-5 steps (or finer) so the axis has at least 3 labels
        for subs in ((1, 2, 5), (1, 2, 3, 5), (1, 1.5, 2, 3, 4, 5, 6, 8)):
            ticks = [t for t in (m * 10.0 ** e for e in range(a, b + 1) for m in subs) if lo <= t <= hi]
            if len(ticks) >= 3:
                break
        if len(ticks) > 8:  # 1-2-5 over three decades: every other one
            ticks = ticks[::2]
    axis.set_major_locator(FixedLocator(ticks))
    axis.set_major_formatter(FuncFormatter(_tick_text))
    axis.set_minor_locator(NullLocator())
    axis.set_minor_formatter(NullFormatter())


_SUPERSCRIPT = str.maketrans("-0123456789", "\u207b\u2070\u00b9\u00b2\u00b3\u2074\u2075\u2076\u2077\u2078\u2079")


def _tick_text(x: float, _pos=None) -> str:
    """``0.01``, ``250``, ``10⁻⁶``, ``2×10⁻⁷`` (plain unicode: mathtext is slow to lay out)."""
    if x == 0:
        return "0"
    if 1e-3 <= abs(x) < 1e4:
        return f"{x:g}"
    exp = math.floor(math.log10(abs(x)) + 1e-9)
    mant = x / 10.0 ** exp
    power = "10" + str(exp).translate(_SUPERSCRIPT)
    return power if abs(mant - 1) < 1e-6 else f"{mant:g}\u00d7{power}"


def _fit_ylim(ax, values: list[float], log: bool, bottom_frac: float, floor: float | None = None) -> None:
    """Set y-limits so the data fill the panel above ``bottom_frac`` (the failure markers' room)."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator

    vals = np.asarray([v for v in values if np.isfinite(v) and (v > 0 or not log)], dtype=float)
    if floor is not None:
        vals = np.append(vals, floor)
    tr = (np.log10 if log else (lambda a: a))
    inv = ((lambda a: 10.0 ** a) if log else (lambda a: a))
    if vals.size == 0:
        lo, hi = (0.0, 1.0)
    else:
        lo, hi = float(tr(vals).min()), float(tr(vals).max())
    span = hi - lo
    if span <= 0:
        span = 0.5 if log else (abs(hi) * 0.2 or 1.0)
        lo, hi = lo - span / 2, hi + span / 2
    top_margin, gap = 0.08, 0.06
    data_frac = 1.0 - bottom_frac - top_margin - gap
    total = span / data_frac
    y0, y1 = inv(lo - gap * total - bottom_frac * total), inv(hi + top_margin * total)
    ax.set_ylim(y0, y1)
    data_lo = inv(lo - gap * total)
    if log:
        log_ticks(ax.yaxis, data_lo, y1)
    else:  # no ticks in the failure markers' room: a value there would read as data
        ticks = [t for t in MaxNLocator(6).tick_values(data_lo, y1) if data_lo <= t <= y1]
        ax.yaxis.set_major_locator(FixedLocator(ticks))
        ax.yaxis.set_major_formatter(FuncFormatter(_tick_text))


def _at_least_decades(values: list[float], decades: float) -> list[float]:
    """``values`` plus two points around their geometric middle spanning ``decades``, so a log axis shows at least
    that range (differences at round-off level then look as small as they are)."""
    v = np.asarray([x for x in values if np.isfinite(x) and x > 0], dtype=float)
    if v.size == 0:
        return list(values)
    lo, hi = np.log10(v.min()), np.log10(v.max())
    if hi - lo >= decades:
        return list(values)
    mid = (lo + hi) / 2
    return list(values) + [10 ** (mid - decades / 2), 10 ** (mid + decades / 2)]


def _no_values(ax) -> None:
    """A panel with nothing to plot: say so, and show no meaningless y ticks."""
    ax.set_yticks([])
    ax.text(0.5, 0.5, "no values recorded", transform=ax.transAxes, ha="center", va="center", fontsize=9,
            color="0.4")


def draw_points(ax, xs, ys, hollow, style: Style, size: float, zorder: float = 3.2) -> None:
    """Markers of one variant: filled, or hollow where ``hollow`` (a contended row)."""
    xs, ys, hollow = np.asarray(xs, float), np.asarray(ys, float), np.asarray(hollow, bool)
    for mask, face in ((~hollow, style.color), (hollow, "white")):
        if mask.any():
            ax.plot(xs[mask], ys[mask], linestyle="none", marker=style.marker, markersize=size, color=style.color,
                    markerfacecolor=face, markeredgecolor=style.edge if face != "white" else style.color,
                    markeredgewidth=0.7 if face != "white" else 1.4, zorder=zorder,
                    gid=HOLLOW_GID if face == "white" else POINTS_GID)


def _draw_failures(ax, fails: list[tuple[str, str, float]], styles: dict[str, Style], x_in_axes: bool = False) -> set:
    """Failure markers (variant, status, x) in lanes under the data, one lane per variant; the statuses drawn."""
    if not fails:
        return set()
    lanes = variant_order({v for v, _, _ in fails})
    trans = ax.transAxes if x_in_axes else ax.get_xaxis_transform()
    top = _FAIL_LANE * len(lanes) + 0.02
    ax.plot([0, 1], [top, top], transform=ax.transAxes, color="0.7", lw=0.7, ls=":", zorder=1)
    points: dict[tuple[str, str], tuple[list[float], list[float]]] = {}
    for i, (variant, status, x) in enumerate(sorted(fails, key=lambda e: (lanes.index(e[0]), e[1]))):
        y = top - (lanes.index(variant) + 0.5) * _FAIL_LANE - 0.01
        if x_in_axes:
            x = 0.06 + 0.88 * (i + 0.5) / len(fails)
        xs, ys = points.setdefault((variant, status), ([], []))
        xs.append(x)
        ys.append(y)
    for (variant, status), (xs, ys) in points.items():
        st = styles.get(variant, Style("0.5", "o"))
        ax.plot(xs, ys, transform=trans, marker=status_marker(status), linestyle="none", markersize=8,
                markerfacecolor=st.color, markeredgecolor="black", markeredgewidth=0.8, clip_on=False, zorder=5,
                gid=FAILURE_GID)
    return {s for _, s, _ in fails}


def _fail_room(n_lanes: int) -> float:
    return 0.0 if n_lanes == 0 else _FAIL_LANE * n_lanes + 0.03


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
    shown = [s for s in _STATUS_ORDER if s in failed] + sorted(s for s in failed if s not in _STATUS_ORDER)
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


def contended_mask(df: pd.DataFrame) -> pd.Series:
    if "contended" not in df.columns:
        return pd.Series(False, index=df.index)
    return df["contended"].map(lambda x: bool(_truthy(x))).astype(bool)


# ---------------------------------------------------------------------------------------------- figures
def plot_vs_seq_len(
    frame: pd.DataFrame,
    value: str | Callable[[pd.DataFrame], pd.Series],
    ylabel: str,
    title: str,
    *,
    facets: list[str] | None = None,
    styles: dict[str, Style] | None = None,
    logy: bool = True,
    unit: Callable[[pd.Series], Unit] | None = None,
    hollow_contended: bool = False,
    reference: tuple[str, str] | None = None,
    hline: tuple[float | str, str] | None = None,
    variants: list[str] | None = None,
    no_value_label: str = NO_VALUE,
    panel_ylabel: Callable[[pd.DataFrame], str | None] | None = None,
    note: str = "",
    xlabel: str = "sequence length N (tokens)",
) -> Figure:
    """One line per variant of ``value`` against seq_len (log2 x), a panel per facet.

    Args:
        frame: normalized result rows (all statuses).
        value: the column to plot, or a function of the frame giving the values.
        ylabel / title: axis label and figure title; ``{unit}`` in ``ylabel`` becomes the unit's name.
        facets: columns to split panels by (default: :func:`facet_columns`).
        styles: variant -> :class:`Style` (default: :func:`variant_styles` of the frame).
        logy: log y axis.
        unit: picks the display unit from the values (:func:`time_unit`, :func:`bytes_unit`,
            :func:`flops_unit`); None: values as they are.
        hollow_contended: draw the points of contended rows hollow (figures whose value comes from a time).
        reference: ``(column, label)`` drawn as a dashed grey line (median per seq_len), e.g. the textbook error
            in the same dtype.
        hline: ``(y, label)`` of a horizontal guide line (e.g. speedup 1 = as fast as ``full``); ``y`` may name a
            column, drawn at its median in each panel, in the figure's unit (a measured ceiling).
        variants: the variants to draw (default: all in the frame).
        no_value_label: what the footnote calls a variant with rows but no value.
        panel_ylabel: a panel's own y label, from its rows (None: ``ylabel``).
        note: a sentence for the footnote (what the figure leaves out on purpose, say).
        xlabel: the x axis's label (seq_len's meaning: ``context length`` in decode figures).

    Returns:
        The figure (not saved); its legend lists the variants drawn and the failure markers drawn.
    """
    from matplotlib.lines import Line2D

    facets = facet_columns(frame) if facets is None else facets
    styles = variant_styles(frame) if styles is None else styles
    variants = variant_order(frame["variant"]) if variants is None else variant_order(variants)
    df = frame[frame["variant"].isin(variants)].copy()
    raw = df[value] if isinstance(value, str) else value(df)
    df["_y"] = pd.to_numeric(raw, errors="coerce")
    shown_unit = unit(df.loc[df["status"] == "ok", "_y"]) if unit is not None else Unit("")
    df["_y"] = df["_y"] * shown_unit.factor
    df["_hollow"] = contended_mask(df) if hollow_contended else False
    good_all = df[(df["status"] == "ok") & np.isfinite(df["_y"]) & ((df["_y"] > 0) if logy else True)]
    drawn = set(good_all["variant"])
    panels = [p for p in facet_panels(df, facets) if not p[1]["status"].isin(NOT_DRAWN_STATUSES).all()] or \
        facet_panels(df, facets)  # a panel where nothing ran is said once (footnote, report.md), not drawn empty
    nrows, ncols = panel_grid(len(panels))
    fig, axes = new_figure(nrows, ncols)
    failed: set[str] = set()
    any_hollow = False
    extra: list[tuple[Line2D, str]] = []
    for ax, (key, sub) in zip(axes, panels):
        ys: list[float] = []
        fails = [(r.variant, r.status, r.seq_len) for r in sub.itertuples()
                 if r.status != "ok" and r.status not in NOT_DRAWN_STATUSES and r.variant in drawn]
        for variant in variants:
            vs = sub[sub["variant"] == variant].sort_values("seq_len")
            good = good_all.loc[good_all.index.intersection(vs.index)]
            if good.empty:
                continue
            st = styles.get(variant, Style("0.5", "o", label=variant))
            med = good.groupby("seq_len")["_y"].median()
            hollow = good.groupby("seq_len")["_hollow"].any()
            # every length the variant has a row at, NaN where it has no value: the line breaks there instead of
            # bridging a failed or missing point
            line = med.reindex(sorted(set(vs["seq_len"].dropna())))
            base = st.baseline
            # the baseline is drawn wider and underneath, so a variant with identical values (an exact variant's
            # error, say) leaves it visible as a dark outline instead of hiding it
            ax.plot(line.index, line.values, color=st.color, ls=st.linestyle, lw=2.8 if base else 1.6,
                    label=variant, zorder=2.5 if base else 3)
            draw_points(ax, med.index, med.values, hollow.to_numpy(), st, 6.5 if base else 5.5,
                         zorder=2.6 if base else 3.2)
            any_hollow |= bool(hollow.any())
            ys.extend(med.tolist())
        if reference is not None and reference[0] in sub.columns:
            ref = pd.to_numeric(sub[reference[0]], errors="coerce") * shown_unit.factor
            ref = ref[np.isfinite(ref) & (ref > 0)].groupby(sub["seq_len"]).median()
            if not ref.empty:
                ax.plot(ref.index, ref.values, color=_REFERENCE_COLOR, ls=(0, (4, 3)), lw=1.6, zorder=4)
                ys.extend(ref.tolist())
                if not any(lab == reference[1] for _, lab in extra):
                    extra.append((Line2D([], [], color=_REFERENCE_COLOR, ls=(0, (4, 3)), lw=1.6), reference[1]))
        y_line = _guide_value(hline[0], sub, shown_unit) if hline is not None else math.nan
        if hline is not None and math.isfinite(y_line):
            ax.axhline(y_line, color="0.45", lw=1.0, ls="-.", zorder=1)
            ys.append(y_line)
            if not any(lab == hline[1] for _, lab in extra):
                extra.append((Line2D([], [], color="0.45", ls="-.", lw=1.0), hline[1]))
        if logy:
            ax.set_yscale("log")
        room = _fail_room(len({v for v, _, _ in fails}))
        _fit_ylim(ax, ys, logy, room, floor=None if logy else 0.0)
        if not ys:
            _no_values(ax)
        failed |= _draw_failures(ax, fails, styles)
        _set_len_axis(ax, sub["seq_len"].tolist(), xlabel)
        own = panel_ylabel(sub) if panel_ylabel is not None else None
        ax.set_ylabel(own or ylabel.format(unit=shown_unit.name))
        ax.set_title(_panel_title(df, facets, key, sub), fontsize=9)
        ax.grid(True, which="major", alpha=0.3)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    fig.suptitle(title, fontsize=12)
    draw_legend(fig, styles, sorted(drawn), failed, any_hollow, extra)
    draw_footnote(fig, df, drawn, "no value" if no_value_label == NO_VALUE else no_value_label, note)
    return fig


def _guide_value(y: float | str, sub: pd.DataFrame, unit: Unit) -> float:
    """A guide line's height in a panel: ``y`` itself, or the panel's median of the column ``y`` in ``unit``."""
    if not isinstance(y, str):
        return float(y)
    if y not in sub.columns:
        return math.nan
    vals = pd.to_numeric(sub[y], errors="coerce")
    vals = vals[np.isfinite(vals) & (vals > 0)]
    return float(vals.median()) * unit.factor if len(vals) else math.nan


def pareto_front(points: pd.DataFrame, x: str, y: str, rel_tol: float = 0.0, floor: float = 0.0) -> pd.DataFrame:
    """Rows not dominated by another row (one that is no worse in both ``x`` and ``y`` and better in one).

    Args:
        points: rows with finite ``x`` (cost) and ``y`` (error); lower is better in both.
        rel_tol: a slower row joins the frontier only when its ``y`` is lower by more than this fraction (errors
            that differ by round-off tie, and the faster row wins).
        floor: ``y`` values below it count as equal to it (all within round-off of exact).

    Returns:
        The frontier rows, sorted by ``x``.
    """
    pts = points.sort_values([x, y])
    keep, best = [], math.inf
    for idx, val in zip(pts.index, pts[y]):
        val = max(float(val), floor)
        if val < best * (1.0 - rel_tol):
            keep.append(idx)
            best = val
    return pts.loc[keep]


def plot_pareto(frame: pd.DataFrame, *, facets: list[str] | None = None, styles: dict[str, Style] | None = None,
                error: str = "err_metric", max_lengths: int = _MAX_PARETO_LENGTHS) -> Figure:
    """Accuracy against cost: error against median time for each case, the Pareto frontier marked.

    A panel per case (facet and seq_len); at most ``max_lengths`` lengths per facet are shown (spread over the
    range, the longest always included) to keep panels readable. Rows that failed have no time: a panel names
    them in a line at its bottom; ``unsupported`` rows are left to the footnote and report.md.

    Args:
        frame: normalized result rows.
        facets / styles: as in :func:`plot_vs_seq_len`.
        error: the error column (``err_metric``: ``approx_err_rel_l2`` where set, else ``err_rel_l2``).
        max_lengths: most seq_len panels per facet.

    Returns:
        The figure (not saved).
    """
    from matplotlib.lines import Line2D

    facets = facet_columns(frame) if facets is None else facets
    styles = variant_styles(frame) if styles is None else styles
    panels = []
    hidden: set[float] = set()
    for key, sub in facet_panels(frame, facets):
        lengths = sorted(sub["seq_len"].dropna().unique())
        if len(lengths) > max_lengths:
            pick = np.unique(np.round(np.linspace(0, len(lengths) - 1, max_lengths)).astype(int))
            hidden |= set(lengths) - {lengths[i] for i in pick}
            lengths = [lengths[i] for i in pick]
        for n in lengths:
            at = sub[sub["seq_len"] == n]
            if at["status"].isin(NOT_DRAWN_STATUSES).all():  # nothing ran: said once, not as an empty panel
                continue
            panels.append((key, n, at))
    ok_all = frame[frame["status"] == "ok"]
    t_all = pd.to_numeric(ok_all["time_ms_median"], errors="coerce")
    e_all = pd.to_numeric(ok_all[error], errors="coerce")
    good_all = ok_all[np.isfinite(t_all) & np.isfinite(e_all) & (t_all > 0) & (e_all > 0)]
    unit = time_unit(good_all["time_ms_median"])
    drawn = set(good_all["variant"])
    # one row per facet and one column per length where the lengths fit, so columns line up by length (a
    # facet without some length leaves that cell empty); otherwise the panels flow row by row
    keys = list(dict.fromkeys(p[0] for p in panels))
    union = sorted({p[1] for p in panels})
    if 0 < len(union) <= max_lengths:
        nrows, ncols = len(keys), len(union)
        cells = [keys.index(k) * ncols + union.index(n) for k, n, _ in panels]
    else:
        per_facet = max([sum(1 for p in panels if p[0] == k) for k in keys] or [1])
        ncols = max(1, min(per_facet, max_lengths))
        nrows = max(1, math.ceil(len(panels) / ncols))
        cells = list(range(len(panels)))
    fig, axes = new_figure(nrows, ncols, w=3.5, h=3.1)
    frontier_handle = None
    any_hollow = reference_drawn = False
    for ax in axes:
        ax.set_visible(False)
    for cell, (key, n, sub) in zip(cells, panels):
        ax = axes[cell]
        ax.set_visible(True)
        good = good_all.loc[good_all.index.intersection(sub.index)]
        t = good["time_ms_median"].astype(float) * unit.factor
        err = good[error].astype(float)
        hollow = contended_mask(good)
        for v, idx in good.groupby("variant", sort=False).groups.items():
            st = styles.get(v, Style("0.5", "o", label=v))
            draw_points(ax, t[idx], err[idx], hollow[idx], st, 7, zorder=4)
        any_hollow |= bool(hollow.any())
        # the textbook error in the same dtype is the round-off yardstick where the panel's errors are against the
        # pattern itself; on sparse patterns they are against dense attention (what the pattern drops) instead
        ref = _textbook_reference(sub).dropna()
        ref = float(ref.median()) if len(ref) else math.nan
        ys = err.tolist()
        if math.isfinite(ref):
            ax.axhline(ref, color=_REFERENCE_COLOR, ls=(0, (4, 3)), lw=1.2, zorder=1)
            ys.append(ref)
            reference_drawn = True
        if len(good):
            # errors within 2x textbook attention's in the same dtype are all round-off (FlashAttention's test),
            # and errors 2% apart are the same error: they tie, and the faster one is on the frontier
            tie = 2 * ref if math.isfinite(ref) else 0.0
            front = pareto_front(pd.DataFrame({"t": t, "e": err}), "t", "e", rel_tol=_PARETO_REL_TOL, floor=tie)
            ax.step(front["t"], front["e"], where="post", color="0.3", lw=1.0, ls="--", zorder=2)
            ax.plot(front["t"], front["e"], marker="o", markersize=12.5, linestyle="none", markerfacecolor="none",
                    markeredgecolor="black", markeredgewidth=1.1, zorder=5)
            frontier_handle = Line2D([], [], color="0.3", ls="--", marker="o", markersize=10, markerfacecolor="none",
                                     markeredgecolor="black")
            ax.set_xscale("log")
            lo, hi = t.min() / 1.6, t.max() * 1.6
            ax.set_xlim(lo, hi)
            log_ticks(ax.xaxis, lo, hi)
        ax.set_yscale("log")
        bad = sub[(sub["status"] != "ok") & ~sub["status"].isin(NOT_DRAWN_STATUSES)]
        room = 0.1 if len(bad) else 0.0
        _fit_ylim(ax, _at_least_decades(ys, 3), True, room)
        if good.empty:
            _no_values(ax)
            ax.set_xticks([])
        if len(bad):
            text = "failed: " + ", ".join(f"{v} ({s})" for v, s in sorted(zip(bad["variant"], bad["status"])))
            ax.text(0.02, 0.02, "\n".join(textwrap.wrap(text, 44)), transform=ax.transAxes, fontsize=8,
                    color="0.25", va="bottom", ha="left", gid=FAILURE_GID)
        ax.set_xlabel(f"median time ({unit.name}, log)")
        ax.set_ylabel("rel. L2 error (log)" if math.isfinite(ref) or good.empty else "rel. L2 error vs dense (log)")
        title = _panel_title(frame, facets, key, sub, width=34)
        ax.set_title(f"{title}\nN={_fmt_len(n)}" if title else f"N={_fmt_len(n)}", fontsize=9)
        ax.grid(True, which="major", alpha=0.3)
    title = "Accuracy vs cost per case (lower-left is better; ringed: Pareto frontier)"
    if hidden:
        title += f"\nlengths not shown here (see the other plots): {', '.join(_fmt_len(n) for n in sorted(hidden))}"
    fig.suptitle(title, fontsize=12)
    extra = [(frontier_handle, "Pareto frontier\n(errors within 2x textbook's tie)")] if frontier_handle else []
    if reference_drawn:
        extra.append((Line2D([], [], color=_REFERENCE_COLOR, ls=(0, (4, 3)), lw=1.2),
                      "textbook attention,\nsame dtype"))
    draw_legend(fig, styles, sorted(drawn), set(), any_hollow, extra)
    draw_footnote(fig, frame, drawn, "no time and error")
    return fig


def _speedup(df: pd.DataFrame) -> pd.Series:
    return df["speedup_vs_full"] if "speedup_vs_full" in df.columns else pd.Series(np.nan, index=df.index)


def time_figure(frame: pd.DataFrame, facets: list[str], styles: dict[str, Style]) -> Figure:
    return plot_vs_seq_len(frame, "time_ms_median", "median time ({unit})",
                           "Median time per call vs sequence length (log-log; lower is better)", facets=facets,
                           styles=styles, unit=time_unit, hollow_contended=True)


def memory_figure(frame: pd.DataFrame, facets: list[str], styles: dict[str, Style]) -> Figure:
    return plot_vs_seq_len(frame, "peak_mem_bytes", "peak memory above inputs ({unit})",
                           "Peak memory vs sequence length (log-log; lower is better)", facets=facets, styles=styles,
                           unit=bytes_unit)


def _textbook_reference(frame: pd.DataFrame) -> pd.Series:
    """The textbook error in the same dtype on rows whose error is against their own pattern (NaN on rows whose
    ``err_metric`` is against dense attention: approximations and sparse patterns)."""
    ref = pd.to_numeric(frame.get("textbook_err_rel_l2", pd.Series(np.nan, index=frame.index)), errors="coerce")
    if "approx_err_rel_l2" in frame.columns:
        ref = ref.where(pd.to_numeric(frame["approx_err_rel_l2"], errors="coerce").isna())
    return ref.where(ref > 0)


def error_figure(frame: pd.DataFrame, facets: list[str], styles: dict[str, Style]) -> Figure:
    return plot_vs_seq_len(frame.assign(_textbook=_textbook_reference(frame)), "err_metric",
                           "relative L2 error vs float64",
                           "Error against exact float64 attention (lower is better; sparse patterns and "
                           "approximations: against dense attention)", facets=facets, styles=styles,
                           reference=("_textbook", "textbook attention,\nsame dtype"),
                           panel_ylabel=lambda sub: None if _textbook_reference(sub).notna().any()
                           or sub["status"].ne("ok").all() else "relative L2 error vs dense float64")


def speedup_figure(frame: pd.DataFrame, facets: list[str], styles: dict[str, Style]) -> Figure:
    return plot_vs_seq_len(frame, _speedup, "speedup over full (×, log)",
                           "Speedup over full on the same inputs (above 1: faster than full)", facets=facets,
                           styles=styles, hollow_contended=True, hline=(1.0, "as fast as full"),
                           no_value_label="no full to compare")


def throughput_figure(frame: pd.DataFrame, facets: list[str], styles: dict[str, Style]) -> Figure:
    return plot_vs_seq_len(frame, "tflops", "useful throughput ({unit})",
                           "Throughput vs sequence length (attended pairs only; higher is better)", facets=facets,
                           styles=styles, logy=False, unit=flops_unit, hollow_contended=True)


def pct_of_peak_figure(frame: pd.DataFrame, facets: list[str], styles: dict[str, Style]) -> Figure:
    exact = [v for v in variant_order(frame["variant"]) if not styles.get(v, Style("", "")).approx]
    left = [v for v in variant_order(frame["variant"]) if v not in exact]
    note = (f"Approximations not drawn ({', '.join(left)}): they skip the work their useful FLOPs count, so a share "
            "of the peak says nothing about them." if left else "")
    return plot_vs_seq_len(frame, "pct_of_peak", "% of measured matmul peak",
                           "Throughput as a share of the device's measured matmul peak (exact variants)",
                           facets=facets, styles=styles, logy=False, hollow_contended=True, variants=exact, note=note)


def accuracy_vs_cost_figure(frame: pd.DataFrame, facets: list[str], styles: dict[str, Style]) -> Figure:
    return plot_pareto(frame, facets=facets, styles=styles)


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
