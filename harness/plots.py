"""Comparison plots of a run's results (matplotlib, Agg canvas, no pyplot state).

Every figure takes its series from the data: a newly registered variant appears with no code change, and each
variant keeps one colour across all figures of a report (``full``, the baseline, is always near-black). Panels
are faceted by the columns that vary in the data apart from seq_len (heads, device, dtype, pattern, mode...).

A row that did not produce the plotted value is never silently missing: rows with status ``oom``,
``unsupported``, ``error``, ``numerics``, ``timeout`` or ``crashed`` (and ``ok`` rows that lack the value, e.g. a
speedup with no ``full`` baseline) are drawn at their seq_len in a strip at the bottom of the panel, with a
marker per status in the variant's colour, and each status present has a legend entry.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator, NullFormatter, NullLocator

from harness import roofline_plots
from harness.columns import CASE_COLUMNS, CASE_KEY
from harness.scaling import BASELINE

#: Marker of each non-ok status (and of "ok but no value"), with its legend text.
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
#: Pseudo-status of ``ok`` rows that lack the plotted value.
NO_VALUE = "ok, no value"
_NO_VALUE_MARKER = "o"
_STATUS_ORDER = tuple(STATUS_MARKERS) + (NO_VALUE,)
_PANEL_W, _PANEL_H = 4.8, 3.5
_MAX_COLS = 3
_MAX_PARETO_LENGTHS = 6
_BASELINE_COLOR = "#222222"
_REFERENCE_COLOR = "#8c8c8c"
_FORMATS = ("png",)


def variant_colors(variants: list[str] | tuple[str, ...] | pd.Series) -> dict[str, str]:
    """One colour per variant, fixed for a report: ``full`` near-black, the others from tab10/tab20 in name order.

    Args:
        variants: variant names (duplicates allowed).

    Returns:
        name -> colour (hex string).
    """
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    names = sorted({str(v) for v in variants} - {BASELINE})
    palette = [to_hex(c) for c in colormaps["tab10"].colors]
    if len(names) > len(palette):
        palette = [to_hex(c) for c in colormaps["tab20"].colors]
    if len(names) > len(palette):
        hsv = colormaps["hsv"]
        palette = [to_hex(hsv(i / len(names))) for i in range(len(names))]
    colors = {name: palette[i] for i, name in enumerate(names)}
    colors[BASELINE] = _BASELINE_COLOR
    return colors


def variant_order(variants) -> list[str]:
    """Variant names with ``full`` first, then by name."""
    return sorted({str(v) for v in variants}, key=lambda v: (v != BASELINE, v))


#: Columns that may split panels: every case parameter but seq_len (from :data:`harness.columns.CASE_COLUMNS`,
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


def facet_title(facets: list[str], values: tuple) -> str:
    """Panel title such as ``heads=8, pattern=causal``."""
    parts = []
    for col, val in zip(facets, values):
        if isinstance(val, float) and val.is_integer():
            val = int(val)
        parts.append(f"{_FACET_NAMES.get(col, col)}={val}")
    return "\n".join(textwrap.wrap(", ".join(parts), 48)) if parts else ""


_TITLE_EXTRAS = tuple(c for c in FACET_CANDIDATES if c != "device_name")


def _panel_title(frame: pd.DataFrame, facets: list[str], key: tuple, sub: pd.DataFrame) -> str:
    """The facet values, plus columns that vary across the data but are fixed within this panel (the dtype of a
    device's panel, say), so a panel's title says everything that sets it apart."""
    cols, vals = list(facets), list(key)
    for c in _TITLE_EXTRAS:
        if c in facets or c not in frame.columns or frame[c].nunique() < 2:
            continue
        if sub[c].nunique() == 1:
            cols.append(c)
            vals.append(sub[c].iloc[0])
    return facet_title(cols, tuple(vals))


def _panels(frame: pd.DataFrame, facets: list[str]) -> list[tuple[tuple, pd.DataFrame]]:
    if not facets:
        return [((), frame)]
    out = []
    for key, sub in frame.groupby(facets, dropna=False, sort=True):
        out.append((key if isinstance(key, tuple) else (key,), sub))
    return out


def _grid(n: int, ncols_max: int = _MAX_COLS) -> tuple[int, int]:
    ncols = max(1, min(ncols_max, n))
    return math.ceil(n / ncols), ncols


def _new_figure(nrows: int, ncols: int, w: float = _PANEL_W, h: float = _PANEL_H) -> tuple[Figure, np.ndarray]:
    fig = Figure(figsize=(w * ncols, h * nrows + 0.6), layout="constrained")
    FigureCanvasAgg(fig)
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


@dataclass
class _Strip:
    """Markers for rows without a plotted value, drawn in a band at the bottom of a panel."""

    entries: list[tuple[str, str, float | None]] = field(default_factory=list)  # (variant, status, x)

    def add(self, variant: str, status: str, x: float | None) -> None:
        self.entries.append((variant, status, x))

    @property
    def lanes(self) -> list[str]:
        return variant_order({v for v, _, _ in self.entries})

    def fraction(self) -> float:
        """Fraction of the panel's height the band takes."""
        n = len(self.lanes)
        return 0.0 if n == 0 else min(0.4, 0.05 + 0.065 * n)


def _status_marker(status: str) -> str:
    if status == NO_VALUE:
        return _NO_VALUE_MARKER
    return STATUS_MARKERS.get(status, (OTHER_STATUS_MARKER, status))[0]


def _status_label(status: str) -> str:
    if status == NO_VALUE:
        return NO_VALUE
    return STATUS_MARKERS.get(status, (OTHER_STATUS_MARKER, status))[1]


def _log_ticks(axis, lo: float, hi: float) -> None:
    """Readable ticks on a log axis spanning ``[lo, hi]``: powers of ten (at most ~6), or 1-2-5 steps when the
    range is under two decades; no minor tick labels (they crowd, and are slow to lay out)."""
    if not (lo > 0 and hi > lo):
        return
    a, b = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    if b - a >= 3:
        step = max(1, math.ceil((b - a) / 6))
        ticks = [10.0 ** e for e in range(a, b + 1, step)]
    else:
        for subs in ((1, 2, 5), (1, 2, 3, 5, 7), (1, 1.5, 2, 3, 4, 5, 6, 8)):
            ticks = [t for t in (m * 10.0 ** e for e in range(a, b + 1) for m in subs) if lo <= t <= hi]
            if len(ticks) >= 3:
                break
    ticks = [t for t in ticks if lo <= t <= hi]
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


def _fit_ylim(ax, values: list[float], log: bool, strip_frac: float, floor: float | None = None) -> None:
    """Set y-limits so the data fill the panel above the strip band."""
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
    top_margin, gap = 0.08, 0.08
    data_frac = 1.0 - strip_frac - top_margin - gap
    total = span / data_frac
    y0, y1 = inv(lo - gap * total - strip_frac * total), inv(hi + top_margin * total)
    ax.set_ylim(y0, y1)
    data_lo = inv(lo - gap * total)
    if log:
        _log_ticks(ax.yaxis, data_lo, y1)
    else:  # no ticks in the strip band: a value there would read as data (e.g. a negative percentage)
        ticks = [t for t in MaxNLocator(6).tick_values(data_lo, y1) if data_lo <= t <= y1]
        ax.yaxis.set_major_locator(FixedLocator(ticks))


def _no_values(ax, strip_frac: float) -> None:
    """A panel with nothing to plot: say so, and show no meaningless y ticks."""
    ax.set_yticks([])
    ax.text(0.5, (1 + strip_frac) / 2, "no values recorded", transform=ax.transAxes, ha="center", va="center",
            fontsize=9, color="0.4")


def _draw_strip(ax, strip: _Strip, colors: dict[str, str], x_in_axes: bool = False) -> set[str]:
    """Draw the strip band; returns the statuses drawn."""
    lanes = strip.lanes
    if not lanes:
        return set()
    frac = strip.fraction()
    ax.add_patch(Rectangle((0, 0), 1, frac, transform=ax.transAxes, facecolor="0.94", edgecolor="none", zorder=0))
    ax.plot([0, 1], [frac, frac], transform=ax.transAxes, color="0.6", lw=0.8, ls=":", zorder=1)
    trans = ax.transAxes if x_in_axes else ax.get_xaxis_transform()
    lane_h = frac / len(lanes)
    drawn = set()
    # one artist per (variant, status) with all its points: the same markers, far fewer artists to lay out and
    # draw (a default CPU run has ~80 non-ok rows per figure)
    points: dict[tuple[str, str], tuple[list[float], list[float]]] = {}
    for i, (variant, status, x) in enumerate(sorted(strip.entries, key=lambda e: (lanes.index(e[0]), e[1]))):
        lane = lanes.index(variant)
        y = frac - (lane + 0.5) * lane_h
        if x_in_axes:
            x = 0.06 + 0.88 * (i + 0.5) / len(strip.entries)
        xs, ys = points.setdefault((variant, status), ([], []))
        xs.append(x)
        ys.append(y)
    for (variant, status), (xs, ys) in points.items():
        ax.plot(xs, ys, transform=trans, marker=_status_marker(status), linestyle="none", markersize=8,
                markerfacecolor=colors.get(variant, "0.5") if status != NO_VALUE else "none",
                markeredgecolor="black" if status != NO_VALUE else colors.get(variant, "0.5"),
                markeredgewidth=0.8 if status != NO_VALUE else 1.5, clip_on=False, zorder=5)
        drawn.add(status)
    return drawn


def _legend(fig: Figure, colors: dict[str, str], variants: list[str], statuses: set[str],
            extra: list[tuple[Line2D, str]] = (), no_value_label: str = NO_VALUE) -> None:
    handles, labels = [], []
    for v in variant_order(variants):
        handles.append(Line2D([], [], color=colors[v], marker="o", lw=2 if v == BASELINE else 1.6, markersize=5))
        labels.append(f"{v} (baseline)" if v == BASELINE else v)
    for h, lab in extra:
        handles.append(h)
        labels.append(lab)
    shown = [s for s in _STATUS_ORDER if s in statuses] + sorted(s for s in statuses if s not in _STATUS_ORDER)
    if shown:
        handles.append(Line2D([], [], linestyle="none"))
        labels.append("not measured:")
    for s in shown:
        handles.append(Line2D([], [], linestyle="none", marker=_status_marker(s), markersize=8,
                              markerfacecolor="0.65" if s != NO_VALUE else "none", markeredgecolor="black"))
        labels.append(no_value_label if s == NO_VALUE else _status_label(s))
    fig.legend(handles, labels, loc="outside right center", fontsize=9, frameon=False, title="variant",
               title_fontsize=9)


def plot_vs_seq_len(
    frame: pd.DataFrame,
    value: str | Callable[[pd.DataFrame], pd.Series],
    ylabel: str,
    title: str,
    *,
    facets: list[str] | None = None,
    colors: dict[str, str] | None = None,
    logy: bool = True,
    reference: tuple[str, str] | None = None,
    hline: tuple[float, str] | None = None,
    variants: list[str] | None = None,
    no_value_label: str = NO_VALUE,
) -> Figure:
    """One line per variant of ``value`` against seq_len (log2 x), a panel per facet.

    Args:
        frame: normalized result rows (all statuses).
        value: the column to plot, or a function of the frame giving the values.
        ylabel / title: axis label (with units) and figure title.
        facets: columns to split panels by (default: :func:`facet_columns`).
        colors: variant -> colour (default: :func:`variant_colors` of the frame).
        logy: log y axis.
        reference: ``(column, label)`` drawn as a dashed black line (median per seq_len), e.g. the textbook
            error in the same dtype.
        hline: ``(y, label)`` of a horizontal guide line (e.g. speedup 1 = as fast as ``full``).
        variants: the variants to draw (default: all in the frame).
        no_value_label: legend text of ``ok`` rows without a value (e.g. a speedup with no ``full`` to compare).

    Returns:
        The figure (not saved); its legend lists every variant and every status drawn.
    """
    facets = facet_columns(frame) if facets is None else facets
    colors = variant_colors(frame["variant"]) if colors is None else colors
    variants = variant_order(frame["variant"]) if variants is None else variant_order(variants)
    df = frame[frame["variant"].isin(variants)].copy()
    df["_y"] = df[value] if isinstance(value, str) else value(df)
    panels = _panels(df, facets)
    nrows, ncols = _grid(len(panels))
    fig, axes = _new_figure(nrows, ncols)
    statuses: set[str] = set()
    extra: list[tuple[Line2D, str]] = []
    for ax, (key, sub) in zip(axes, panels):
        strip = _Strip()
        ys: list[float] = []
        for variant in variants:
            vs = sub[sub["variant"] == variant].sort_values("seq_len")
            if vs.empty:
                continue
            ok = vs[vs["status"] == "ok"]
            good = ok[np.isfinite(ok["_y"]) & ((ok["_y"] > 0) if logy else True)]
            good = good.groupby("seq_len", as_index=False)["_y"].median()
            if not good.empty:
                # every length the variant has a row at, NaN where it has no value: the line breaks there
                # instead of bridging a failed or missing point
                line = good.set_index("seq_len")["_y"].reindex(sorted(set(vs["seq_len"].dropna())))
                # the baseline is drawn wider and underneath, so a variant with identical values (an exact
                # variant's error, say) leaves it visible as a dark outline instead of hiding it
                base = variant == BASELINE
                ax.plot(line.index, line.values, marker="o", markersize=6 if base else 4,
                        color=colors.get(variant, "0.5"), lw=3.2 if base else 1.6, label=variant,
                        zorder=2.5 if base else 3)
                ys.extend(good["_y"].tolist())
            for _, row in vs[vs["status"] != "ok"].iterrows():
                strip.add(variant, row["status"], row["seq_len"])
            missing = ok[~ok["seq_len"].isin(good["seq_len"])]
            for n in sorted(set(missing["seq_len"])):
                strip.add(variant, NO_VALUE, n)
        if reference is not None and reference[0] in sub.columns:
            ref = sub[np.isfinite(sub[reference[0]]) & (sub[reference[0]] > 0)]
            ref = ref.groupby("seq_len")[reference[0]].median()
            if not ref.empty:
                ax.plot(ref.index, ref.values, color=_REFERENCE_COLOR, ls=(0, (4, 3)), lw=1.6, zorder=4)
                ys.extend(ref.tolist())
                if not extra:
                    extra.append((Line2D([], [], color=_REFERENCE_COLOR, ls=(0, (4, 3)), lw=1.6), reference[1]))
        if hline is not None:
            ax.axhline(hline[0], color="0.45", lw=1.0, ls="-.", zorder=1)
            ys.append(hline[0])
            if not any(lab == hline[1] for _, lab in extra):
                extra.append((Line2D([], [], color="0.45", ls="-.", lw=1.0), hline[1]))
        if logy:
            ax.set_yscale("log")
        _fit_ylim(ax, ys, logy, strip.fraction(), floor=None if logy else 0.0)
        if not ys:
            _no_values(ax, strip.fraction())
        statuses |= _draw_strip(ax, strip, colors)
        _set_len_axis(ax, sub["seq_len"].tolist())
        ax.set_ylabel(ylabel)
        ax.set_title(_panel_title(df, facets, key, sub), fontsize=9)
        ax.grid(True, which="major", alpha=0.3)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    fig.suptitle(title, fontsize=12)
    _legend(fig, colors, [v for v in variants if v in set(df["variant"])], statuses, extra, no_value_label)
    return fig


def pareto_front(points: pd.DataFrame, x: str, y: str) -> pd.DataFrame:
    """Rows not dominated by another row (one that is no worse in both ``x`` and ``y`` and better in one).

    Args:
        points: rows with finite ``x`` (cost) and ``y`` (error); lower is better in both.

    Returns:
        The frontier rows, sorted by ``x``.
    """
    pts = points.sort_values([x, y])
    keep, best = [], math.inf
    for idx, val in zip(pts.index, pts[y]):
        if val < best:
            keep.append(idx)
            best = val
    return pts.loc[keep]


def plot_pareto(frame: pd.DataFrame, *, facets: list[str] | None = None, colors: dict[str, str] | None = None,
                error: str = "err_metric", max_lengths: int = _MAX_PARETO_LENGTHS) -> Figure:
    """Accuracy against cost: error against median time for each case, the Pareto frontier marked.

    A panel per case (facet and seq_len); at most ``max_lengths`` lengths per facet are shown (spread over the
    range, the longest always included) to keep panels readable.

    Args:
        frame: normalized result rows.
        facets / colors: as in :func:`plot_vs_seq_len`.
        error: the error column (``err_metric``: ``approx_err_rel_l2`` where set, else ``err_rel_l2``).
        max_lengths: most seq_len panels per facet.

    Returns:
        The figure (not saved).
    """
    facets = facet_columns(frame) if facets is None else facets
    colors = variant_colors(frame["variant"]) if colors is None else colors
    panels = []
    hidden: set[float] = set()
    for key, sub in _panels(frame, facets):
        lengths = sorted(sub["seq_len"].dropna().unique())
        if len(lengths) > max_lengths:
            pick = np.unique(np.round(np.linspace(0, len(lengths) - 1, max_lengths)).astype(int))
            hidden |= set(lengths) - {lengths[i] for i in pick}
            lengths = [lengths[i] for i in pick]
        for n in lengths:
            panels.append((key, n, sub[sub["seq_len"] == n]))
    # one row per facet where the lengths fit (at most max_lengths columns), so columns line up by length
    per_facet = max([sum(1 for p in panels if p[0] == k) for k in {p[0] for p in panels}] or [1])
    ncols = max(1, min(per_facet, max_lengths))
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = _new_figure(nrows, ncols, w=3.5, h=3.1)
    statuses: set[str] = set()
    frontier_handle = None
    for ax, (key, n, sub) in zip(axes, panels):
        strip = _Strip()
        ok = sub[sub["status"] == "ok"]
        good = ok[np.isfinite(ok["time_ms_median"]) & np.isfinite(ok[error]) & (ok["time_ms_median"] > 0)
                  & (ok[error] > 0)]
        for _, row in sub[sub["status"] != "ok"].iterrows():
            strip.add(row["variant"], row["status"], None)
        for v in sorted(set(ok["variant"]) - set(good["variant"])):
            strip.add(v, NO_VALUE, None)
        for _, row in good.iterrows():
            ax.plot([row["time_ms_median"]], [row[error]], marker="o", markersize=7, linestyle="none",
                    color=colors.get(row["variant"], "0.5"), markeredgecolor="white", zorder=4)
        if len(good):
            front = pareto_front(good, "time_ms_median", error)
            ax.step(front["time_ms_median"], front[error], where="post", color="0.3", lw=1.0, ls="--", zorder=2)
            ax.plot(front["time_ms_median"], front[error], marker="o", markersize=12, linestyle="none",
                    markerfacecolor="none", markeredgecolor="black", markeredgewidth=1.2, zorder=5)
            frontier_handle = Line2D([], [], color="0.3", ls="--", marker="o", markersize=10, markerfacecolor="none",
                                     markeredgecolor="black")
            ax.set_xscale("log")
            t = good["time_ms_median"]
            ax.set_xlim(t.min() / 1.6, t.max() * 1.6)
            _log_ticks(ax.xaxis, t.min() / 1.6, t.max() * 1.6)
        ax.set_yscale("log")
        _fit_ylim(ax, good[error].tolist(), True, strip.fraction())
        if good.empty:
            _no_values(ax, strip.fraction())
            ax.set_xticks([])
        statuses |= _draw_strip(ax, strip, colors, x_in_axes=True)
        ax.set_xlabel("median time (ms, log)")
        ax.set_ylabel("rel. L2 error (log)")
        title = _panel_title(frame, facets, key, sub)
        ax.set_title(f"{title}\nN={_fmt_len(n)}" if title else f"N={_fmt_len(n)}", fontsize=9)
        ax.grid(True, which="major", alpha=0.3)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    title = "Accuracy vs cost per case (lower-left is better; ringed: Pareto frontier)"
    if hidden:
        title += f"\nlengths not shown here (see the other plots): {', '.join(_fmt_len(n) for n in sorted(hidden))}"
    fig.suptitle(title, fontsize=12)
    extra = [(frontier_handle, "Pareto frontier")] if frontier_handle is not None else []
    _legend(fig, colors, list(set(frame["variant"])), statuses, extra)
    return fig


def _speedup(df: pd.DataFrame) -> pd.Series:
    return df["speedup_vs_full"] if "speedup_vs_full" in df.columns else pd.Series(np.nan, index=df.index)


#: Columns the figures read (besides facets and panel titles).
_PLOTTED = ("run", "variant", "status", "seq_len", "time_ms_median", "peak_mem_bytes", "err_metric",
            "textbook_err_rel_l2", "speedup_vs_full", "tflops", "pct_of_peak", CASE_KEY) + roofline_plots.COLUMNS
#: The report's figures, the most expensive first (so parallel workers finish together).
FIGURES: tuple[str, ...] = ("accuracy_vs_cost", "time", "memory", "error", "speedup", "throughput", "pct_of_peak")


def figure_names(frame: pd.DataFrame) -> list[str]:
    """The figures a report of ``frame`` has: all of :data:`FIGURES`, ``pct_of_peak`` only where recorded, and the
    decode and roofline figures of :mod:`harness.roofline_plots` where there is data for them."""
    has_peak = "pct_of_peak" in frame.columns and frame["pct_of_peak"].notna().any()
    return [n for n in FIGURES if n != "pct_of_peak" or has_peak] + roofline_plots.figure_names(frame)


def _slim(frame: pd.DataFrame, facets: list[str]) -> pd.DataFrame:
    """Only the columns the figures read: every filter copies the frame, and a run's rows are wide."""
    return frame[[c for c in frame.columns if c in _PLOTTED or c in facets or c in FACET_CANDIDATES]]


def make_figure(name: str, frame: pd.DataFrame, facets: list[str], colors: dict[str, str]) -> Figure:
    """One report figure by name (see :data:`FIGURES`)."""
    kw = dict(facets=facets, colors=colors)
    if name == "time":
        return plot_vs_seq_len(frame, "time_ms_median", "median time (ms)",
                               "Median time vs sequence length (log-log)", **kw)
    if name == "memory":
        return plot_vs_seq_len(frame, lambda d: d["peak_mem_bytes"] / 2**20, "peak memory above inputs (MiB)",
                               "Peak memory vs sequence length (log-log)", **kw)
    if name == "error":
        return plot_vs_seq_len(frame, "err_metric", "relative L2 error vs float64", "Error vs sequence length",
                               reference=("textbook_err_rel_l2", "textbook attention, same dtype"), **kw)
    if name == "speedup":
        return plot_vs_seq_len(frame, _speedup, "speedup over full (x, log)",
                               "Speedup over full on the same inputs (>1: faster)",
                               hline=(1.0, "as fast as full"), no_value_label="ok, but no full to compare", **kw)
    if name == "throughput":
        return plot_vs_seq_len(frame, "tflops", "throughput (TFLOP/s)", "Throughput vs sequence length",
                               logy=False, **kw)
    if name == "accuracy_vs_cost":
        return plot_pareto(frame, **kw)
    if name in roofline_plots.FIGURES:
        return roofline_plots.make_figure(name, frame, colors)
    if name == "pct_of_peak":
        return plot_vs_seq_len(frame, "pct_of_peak", "% of measured device peak",
                               "Throughput as a fraction of the device's measured peak", logy=False, **kw)
    raise ValueError(f"figure {name!r} is not a report figure (allowed: "
                     f"{', '.join(FIGURES + roofline_plots.FIGURES)})")


def make_figures(frame: pd.DataFrame, facets: list[str] | None = None) -> dict[str, Figure]:
    """All report figures for ``frame`` (normalized rows, with ``speedup_vs_full`` from the summary).

    Args:
        frame: rows of all runs; a ``speedup_vs_full`` column is used for the speedup figure when present.
        facets: facet columns (default: :func:`facet_columns`).

    Returns:
        figure name -> figure: ``time``, ``memory``, ``error``, ``speedup``, ``throughput``, ``accuracy_vs_cost``
        and, when any row has ``pct_of_peak``, ``pct_of_peak``.
    """
    facets = facet_columns(frame) if facets is None else facets
    colors = variant_colors(frame["variant"])
    slim = _slim(frame, facets)
    return {name: make_figure(name, slim, facets, colors) for name in figure_names(frame)}


_job: tuple | None = None  # what a forked worker of write_figures draws from


def _write_one(name: str, job: tuple | None = None) -> tuple[str, list[Path]]:
    frame, facets, colors, out_dir, formats = job if job is not None else _job  # type: ignore[misc]
    fig = make_figure(name, frame, facets, colors)
    try:
        return name, save_figure(fig, out_dir, name, formats)
    finally:
        fig.clear()


def write_figures(frame: pd.DataFrame, out_dir: str | Path, facets: list[str] | None = None,
                  formats: tuple[str, ...] = ("png",), workers: int | None = None) -> dict[str, list[Path]]:
    """Build and save every report figure, in parallel processes where the machine has more than one core.

    Each worker builds and writes whole figures (drawing a figure is single-threaded matplotlib work, most of a
    report's time). Workers are forked, or spawned when torch is loaded in this process (a process forked after
    OpenMP started may hang); one worker, or a failure to start them, means the figures are written here.

    Args:
        frame: normalized rows, with ``speedup_vs_full`` (see :func:`harness.report.with_baseline_ratios`).
        out_dir: the folder of the image files (created).
        facets: facet columns (default: :func:`facet_columns`).
        formats: image formats (``png``, ``svg``).
        workers: processes (default: the CPU cores available, at most 4).

    Returns:
        figure name -> the files written, in :data:`FIGURES` order.
    """
    import os
    import sys

    global _job
    facets = facet_columns(frame) if facets is None else facets
    names = figure_names(frame)
    job = (_slim(frame, facets), facets, variant_colors(frame["variant"]), Path(out_dir), tuple(formats))
    if workers is None:
        avail = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        workers = min(avail, 4)
    workers = max(1, min(workers, len(names)))
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    done: dict[str, list[Path]] = {}
    if workers > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        spawn = "torch" in sys.modules or sys.platform != "linux"
        ctx = mp.get_context("spawn" if spawn else "fork")
        _job = job
        try:
            with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
                futures = [pool.submit(_write_one, n, job if spawn else None) for n in names]
                done = dict(f.result() for f in futures)
        except (OSError, RuntimeError):  # no processes here (a sandbox, a broken pool): draw them here
            done = {}
        finally:
            _job = None
    for name in names:
        if name not in done:
            done[name] = _write_one(name, job)[1]
    return {name: done[name] for name in names}


def save_figure(fig: Figure, out_dir: str | Path, name: str, formats: tuple[str, ...] = _FORMATS) -> list[Path]:
    """Write ``fig`` as ``out_dir/name.<fmt>`` for each format (PNG at 110 dpi).

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
        fig.savefig(path, dpi=110, metadata={"Date": None} if fmt == "svg" else None)
        paths.append(path)
    return paths
